"""Best-effort work started in the background (deleting ledgers nobody refers to), tracked so
that a factory's close() can wait for it instead of leaving it to a closed store."""

from __future__ import annotations

from twisted.internet import defer


class BackgroundTasks:
    def __init__(self) -> None:
        self._running: set[defer.Deferred] = set()

    def add(self, work: defer.Deferred) -> None:
        """Track work until it ends; its errors must already be handled by the caller."""
        if work.called:
            return
        self._running.add(work)
        work.addBoth(self._finished, work)

    def _finished(self, result: object, work: defer.Deferred) -> object:
        self._running.discard(work)
        return result

    def __len__(self) -> int:
        return len(self._running)

    def when_done(self) -> defer.Deferred[None]:
        """Fires once everything tracked now has ended."""
        running = [_observe(work) for work in self._running]
        return defer.DeferredList(running).addCallback(lambda _: None)


def _observe(work: defer.Deferred) -> defer.Deferred:
    observer: defer.Deferred = defer.Deferred()

    def relay(result: object) -> object:
        observer.callback(None)
        return result

    work.addBoth(relay)
    return observer
