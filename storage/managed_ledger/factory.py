"""ManagedLedgerFactory: opens (as single writer), lists and deletes managed ledgers.

Opening reads the managed ledger's metadata, recovers its last ledger through the ledger
client (which fences whoever wrote it before, so a deposed writer can append no more), drops
it when empty, then starts a fresh ledger and records all of it with one compare-and-set.
Losing that compare-and-set means someone changed the chain meanwhile (for example the old
writer rolled over just now): the open starts again from the new state.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime

from storage.ledger.errors import NoSuchLedgerError as NoSuchLedgerIdError
from storage.managed_ledger.background import BackgroundTasks
from storage.managed_ledger.config import ManagedLedgerConfig
from storage.managed_ledger.entry_format import decode_index
from storage.managed_ledger.errors import (
    ManagedLedgerError,
    ManagedLedgerFencedError,
    ManagedLedgerNotFoundError,
)
from storage.managed_ledger.info import LedgerInfo, ManagedLedgerInfo
from storage.managed_ledger.managed_ledger import ManagedLedger
from storage.managed_ledger.names import MANAGED_LEDGERS_PATH, name_to_path, validate_name
from storage.managed_ledger.reader import ledger_length
from storage.metadata.errors import BadVersionError, NodeExistsError, NoNodeError, NotEmptyError

if TYPE_CHECKING:
    from storage.ledger import LedgerClient
    from storage.metadata.api import MetadataStore

log = logging.getLogger(__name__)

# How many times open/delete start over when the metadata changes under them.
MAX_ATTEMPTS = 10


class ManagedLedgerFactory:
    def __init__(
        self,
        store: MetadataStore,
        ledgers: LedgerClient,
        *,
        clock: IReactorTime | None = None,
    ) -> None:
        if clock is None:
            from twisted.internet import reactor

            clock = reactor  # type: ignore[assignment]
        self._store = store
        self._ledgers = ledgers
        self._clock = clock
        self._open: dict[str, ManagedLedger] = {}
        self._opening: dict[str, list[defer.Deferred[ManagedLedger]]] = {}
        self._background = BackgroundTasks()

    # ------------------------------------------------------------------ open

    def open(
        self, name: str, config: ManagedLedgerConfig | None = None
    ) -> defer.Deferred[ManagedLedger]:
        """The managed ledger as its single writer. Opening one already open through this
        factory returns the same instance (with config applied); concurrent opens of one
        name share the work."""
        try:
            validate_name(name)
        except ManagedLedgerError as exc:
            return defer.fail(exc)
        existing = self._open.get(name)
        if existing is not None:
            if config is not None:
                existing.update_config(config)
            return defer.succeed(existing)
        config = config if config is not None else ManagedLedgerConfig()
        waiter: defer.Deferred[ManagedLedger] = defer.Deferred()
        waiters = self._opening.get(name)
        if waiters is not None:
            waiters.append(waiter)
            return waiter
        self._opening[name] = [waiter]
        opened = defer.ensureDeferred(self._open_as_writer(name, config))
        opened.addBoth(self._finish_open, name)
        return waiter

    def _finish_open(self, result: object, name: str) -> None:
        waiters = self._opening.pop(name)
        if isinstance(result, ManagedLedger):
            self._open[name] = result
        for waiter in waiters:
            waiter.callback(result) if isinstance(result, ManagedLedger) else waiter.errback(result)

    async def _open_as_writer(self, name: str, config: ManagedLedgerConfig) -> ManagedLedger:
        path = name_to_path(name)
        for _ in range(MAX_ATTEMPTS):
            found = await self._store.get(path)
            if found is None or not found.value:
                await self._create_empty(path, found.version if found else None)
                continue
            info = ManagedLedgerInfo.from_json(found.value, where=path)
            info, unused = await self._recover_last_ledger(name, info)
            ledger = ManagedLedger(
                name=name,
                path=path,
                config=config,
                store=self._store,
                ledgers=self._ledgers,
                clock=self._clock,
                info=info,
                info_version=found.version,
                on_closed=self._forget,
                background=self._background,
            )
            try:
                await ledger._start()
            except ManagedLedgerFencedError:
                log.info("metadata of %s changed while opening it; starting over", name)
                continue
            for ledger_id in unused:
                ledger._delete_ledger_later(ledger_id)
            return ledger
        raise ManagedLedgerFencedError(
            f"could not open {name}: its metadata kept changing ({MAX_ATTEMPTS} attempts)"
        )

    async def _create_empty(self, path: str, directory_version: int | None) -> None:
        """Make an empty managed ledger at path (which may exist as a bare directory node
        because another name nests under it). Losing a race to another opener is fine."""
        empty = ManagedLedgerInfo().to_json()
        try:
            if directory_version is None:
                await self._store.create(path, empty)
            else:
                await self._store.set(path, empty, expected_version=directory_version)
        except (NodeExistsError, BadVersionError):
            pass

    async def _recover_last_ledger(
        self, name: str, info: ManagedLedgerInfo
    ) -> tuple[ManagedLedgerInfo, list[int]]:
        """Fence and seal the ledger the previous writer left open; describe it in the chain
        (or drop it when it holds nothing). Returns the new info and ledgers to delete."""
        if not info.ledgers or info.ledgers[-1].is_closed:
            return info, []
        last = info.ledgers[-1]
        try:
            handle = await self._ledgers.open_ledger(last.ledger_id, recovery=True)
        except NoSuchLedgerIdError:
            log.warning("%s: last ledger %s no longer exists; dropping it", name, last.ledger_id)
            return replace(info, ledgers=info.ledgers[:-1]), []
        entries = handle.last_add_confirmed + 1
        if entries == 0:
            return replace(info, ledgers=info.ledgers[:-1]), [last.ledger_id]
        first_index = last.first_index
        if first_index is None:
            first_index = decode_index(
                (await handle.read(0, 0))[0], f"entry {last.ledger_id}:0 of {name}"
            )
        recovered = LedgerInfo(
            ledger_id=last.ledger_id,
            created=last.created,
            entries=entries,
            size=await ledger_length(handle, entries),
            first_index=first_index,
            closed=self._clock.seconds(),
        )
        return replace(info, ledgers=(*info.ledgers[:-1], recovered)), []

    def _forget(self, ledger: ManagedLedger) -> None:
        if self._open.get(ledger.name) is ledger:
            del self._open[ledger.name]

    # ------------------------------------------------------------------ delete

    def delete(self, name: str) -> defer.Deferred[None]:
        """Delete the managed ledger and all its ledgers (closing it first if open here).
        ManagedLedgerNotFoundError when there is none of that name."""
        return defer.ensureDeferred(self._delete(name))

    async def _delete(self, name: str) -> None:
        path = name_to_path(name)
        opened = self._open.get(name)
        if opened is not None:
            await opened.close()
        for _ in range(MAX_ATTEMPTS):
            found = await self._store.get(path)
            if found is None or not found.value:
                raise ManagedLedgerNotFoundError(f"no managed ledger named {name!r}")
            info = ManagedLedgerInfo.from_json(found.value, where=path)
            try:
                await self._remove_node(path, found.version)
            except (BadVersionError, NoNodeError):
                continue  # changed meanwhile: look again
            for ledger in info.ledgers:
                try:
                    await self._ledgers.delete_ledger(ledger.ledger_id)
                except NoSuchLedgerIdError:
                    pass
                except Exception as exc:
                    log.warning("ledger %s of deleted %s left behind: %s",
                                ledger.ledger_id, name, exc)
            await self._prune_empty_parents(path)
            return
        raise ManagedLedgerError(f"could not delete {name}: its metadata kept changing")

    async def _remove_node(self, path: str, version: int) -> None:
        """Delete the node, or empty it when other managed ledgers nest below it."""
        if await self._store.children(path):
            await self._store.set(path, b"", expected_version=version)
            return
        try:
            await self._store.delete(path, expected_version=version)
        except NotEmptyError:
            await self._store.set(path, b"", expected_version=version)

    async def _prune_empty_parents(self, path: str) -> None:
        parent = path.rsplit("/", 1)[0]
        while parent != MANAGED_LEDGERS_PATH and parent.startswith(MANAGED_LEDGERS_PATH):
            found = await self._store.get(parent)
            if found is None or found.value or await self._store.children(parent):
                return
            try:
                await self._store.delete(parent, expected_version=found.version)
            except (NotEmptyError, BadVersionError, NoNodeError):
                return
            parent = parent.rsplit("/", 1)[0]

    # ------------------------------------------------------------------ list

    def list(self, prefix: str = "") -> defer.Deferred[list[str]]:
        """Names of existing managed ledgers starting with prefix, sorted."""
        return defer.ensureDeferred(self._list(prefix))

    async def _list(self, prefix: str) -> list[str]:
        # Walk only below the deepest directory the prefix names completely.
        directory = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        start = f"{MANAGED_LEDGERS_PATH}/{directory}" if directory else MANAGED_LEDGERS_PATH
        names: list[str] = []
        pending = [(start, directory)]
        while pending:
            path, name = pending.pop()
            for child in await self._store.children(path):
                child_name = f"{name}/{child}" if name else child
                if not (child_name.startswith(prefix) or prefix.startswith(child_name + "/")):
                    continue
                child_path = f"{path}/{child}"
                found = await self._store.get(child_path)
                if found is not None and found.value and child_name.startswith(prefix):
                    names.append(child_name)
                pending.append((child_path, child_name))
        return sorted(names)

    # ------------------------------------------------------------------ shutdown

    def close(self) -> defer.Deferred[None]:
        """Close every managed ledger opened through this factory and wait for background
        clean-up (deleting unused ledgers) to end."""
        return defer.ensureDeferred(self._close_all())

    async def _close_all(self) -> None:
        for ledger in list(self._open.values()):
            await ledger.close()
        await self._background.when_done()
