"""Persistent watches: who wants to hear about which path, and calling them safely.

A store keeps one WatchRegistry. ``notify(path)`` runs on the reactor thread and calls
every callback registered for ``path``; a callback that raises is logged and does not
stop the others (one bad listener must not silence the rest of the process).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from twisted.logger import Logger

WatchCallback = Callable[[str], None]

_log = Logger()


class _Registration:
    """One watch() call; cancelling removes exactly this one even if the callback repeats."""

    __slots__ = ("callback",)

    def __init__(self, callback: WatchCallback) -> None:
        self.callback = callback


class WatchRegistry:
    """Callbacks per path, with hooks for when a path gains its first or loses its last watch."""

    def __init__(
        self,
        on_first_watch: Callable[[str], None] | None = None,
        on_last_unwatch: Callable[[str], None] | None = None,
    ) -> None:
        self._by_path: dict[str, list[_Registration]] = {}
        self._on_first_watch = on_first_watch
        self._on_last_unwatch = on_last_unwatch

    def add(self, path: str, callback: WatchCallback) -> Callable[[], None]:
        """Register ``callback`` for ``path``; returns an idempotent cancel()."""
        registration = _Registration(callback)
        registrations = self._by_path.get(path)
        first = registrations is None
        if first:
            registrations = self._by_path[path] = []
        registrations.append(registration)
        if first and self._on_first_watch is not None:
            self._on_first_watch(path)

        def cancel() -> None:
            current = self._by_path.get(path)
            if current is None or registration not in current:
                return
            current.remove(registration)
            if not current:
                del self._by_path[path]
                if self._on_last_unwatch is not None:
                    self._on_last_unwatch(path)

        return cancel

    def watched_paths(self) -> list[str]:
        return list(self._by_path)

    def is_watched(self, path: str) -> bool:
        return path in self._by_path

    def notify(self, path: str) -> None:
        """Call every callback watching ``path`` (a copy, so callbacks may cancel themselves)."""
        for registration in list(self._by_path.get(path, ())):
            try:
                registration.callback(path)
            except Exception:
                _log.failure("metadata watch callback for {path} raised", path=path)

    def notify_all(self, paths: Iterable[str]) -> None:
        for path in paths:
            self.notify(path)

    def clear(self) -> None:
        self._by_path.clear()
