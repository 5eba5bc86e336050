"""In-memory fakes for the ledger client's unit tests: storage nodes and a metadata store.

Both answer synchronously by default, so a whole append → ack → completion chain runs inside
one call and tests read results straight off the Deferreds. FakeNode can also hold acks
(to reorder them), be down, refuse, or damage copies; FakeStore can run a hook before a set
(to play a concurrent writer or recoverer).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet import defer, task
from twisted.python.failure import Failure

from storage.ledger import LedgerClient, LedgerClientSettings, NodePool
from storage.ledger.entry_format import frame_entry
from storage.metadata.api import MetadataStore, SessionState, Versioned
from storage.metadata.errors import BadVersionError, NodeExistsError, NoNodeError, NotEmptyError
from storage.metadata.paths import ROOT, child_path, parent_of
from storage.node import errors as node_errors
from storage.node.buffers import join_payload


@dataclass(frozen=True)
class LacResult:
    last_add_confirmed: int
    last_entry_id: int


@dataclass
class AddRequest:
    ledger_id: int
    entry_id: int
    last_add_confirmed: int
    recovery: bool


class FakeNode:
    """A storage node client backed by dicts; see the module docstring for its knobs."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.entries: dict[tuple[int, int], bytes] = {}
        self.last_add_confirmed: dict[int, int] = {}
        self.fenced: set[int] = set()
        self.corrupt: set[tuple[int, int]] = set()
        self.down = False
        self.hold_acks = False  # store adds at once but acknowledge only on release_acks()
        # Adds stored but not yet acknowledged: (ledger id, entry id, pending ack).
        self.held: list[tuple[int, int, defer.Deferred[None]]] = []
        self.adds: list[AddRequest] = []
        self.closed = False

    # -- test controls ---------------------------------------------------------------------

    def release_acks(self, *entry_ids: int) -> None:
        """Acknowledge held adds (all of them, or only those of `entry_ids`), in order."""
        keep, releasing = [], []
        for held in self.held:
            (releasing if not entry_ids or held[1] in entry_ids else keep).append(held)
        self.held = keep
        for _, _, ack in releasing:
            ack.callback(None)

    def crash(self) -> None:
        """Go down: adds not yet acknowledged were not durable, so they are lost, and their
        requests fail as if the connection dropped."""
        self.down = True
        held, self.held = self.held, []
        for ledger_id, entry_id, _ in held:
            self.entries.pop((ledger_id, entry_id), None)
        for _, _, ack in held:
            ack.errback(node_errors.NodeUnavailableError(f"{self.address}: connection lost"))

    def stored_ids(self, ledger_id: int) -> list[int]:
        return sorted(e for (ledger, e) in self.entries if ledger == ledger_id)

    def knows(self, ledger_id: int) -> bool:
        return ledger_id in self.last_add_confirmed or ledger_id in self.fenced

    # -- StorageNodeClient -----------------------------------------------------------------

    def _unavailable(self) -> defer.Deferred:
        return defer.fail(node_errors.NodeUnavailableError(f"{self.address}: refused"))

    def add_entry(
        self, ledger_id: int, entry_id: int, last_add_confirmed: int, payload: bytes,
        *, recovery: bool = False,
    ) -> defer.Deferred[None]:
        if self.down:
            return self._unavailable()
        self.adds.append(AddRequest(ledger_id, entry_id, last_add_confirmed, recovery))
        if ledger_id in self.fenced and not recovery:
            return defer.fail(node_errors.LedgerFencedError(f"ledger {ledger_id} fenced"))
        self.entries[(ledger_id, entry_id)] = bytes(join_payload(payload))  # parts too
        self.corrupt.discard((ledger_id, entry_id))
        previous = self.last_add_confirmed.get(ledger_id, -1)
        self.last_add_confirmed[ledger_id] = max(previous, last_add_confirmed)
        if self.hold_acks:
            ack: defer.Deferred[None] = defer.Deferred()
            self.held.append((ledger_id, entry_id, ack))
            return ack
        return defer.succeed(None)

    def read_entry(
        self, ledger_id: int, entry_id: int, *, fence: bool = False
    ) -> defer.Deferred[bytes]:
        if self.down:
            return self._unavailable()
        if fence:
            self.fenced.add(ledger_id)
        if (ledger_id, entry_id) in self.corrupt:
            return defer.fail(node_errors.CorruptEntryError(f"entry {entry_id} damaged"))
        stored = self.entries.get((ledger_id, entry_id))
        if stored is None:
            if not self.knows(ledger_id):
                return defer.fail(node_errors.NoSuchLedgerError(f"ledger {ledger_id}"))
            return defer.fail(node_errors.NoSuchEntryError(f"entry {entry_id}"))
        return defer.succeed(stored)

    def read_last_add_confirmed(
        self, ledger_id: int, *, fence: bool = False
    ) -> defer.Deferred[LacResult]:
        if self.down:
            return self._unavailable()
        known = self.knows(ledger_id)
        if fence:
            self.fenced.add(ledger_id)
        if not known:
            return defer.fail(node_errors.NoSuchLedgerError(f"ledger {ledger_id}"))
        ids = self.stored_ids(ledger_id)
        return defer.succeed(
            LacResult(self.last_add_confirmed.get(ledger_id, -1), ids[-1] if ids else -1)
        )

    def delete_ledger(self, ledger_id: int) -> defer.Deferred[None]:
        if self.down:
            return self._unavailable()
        for key in [key for key in self.entries if key[0] == ledger_id]:
            del self.entries[key]
        self.last_add_confirmed.pop(ledger_id, None)
        self.fenced.discard(ledger_id)
        return defer.succeed(None)

    def close(self) -> defer.Deferred[None]:
        self.closed = True
        return defer.succeed(None)


class FakeStore(MetadataStore):
    """The MetadataStore contract (validation comes from the real base class), in a dict."""

    def __init__(self) -> None:
        self.nodes: dict[str, Versioned] = {ROOT: Versioned(b"", 0)}
        self.watches: dict[str, list[Callable[[str], None]]] = {}
        # Called as before_set(path, value) before every set is applied: lets a test change
        # the node first, as a concurrent client would.
        self.before_set: Callable[[str, bytes], None] | None = None
        # While True, sets wait in `held_sets` until release_sets() (a slow store).
        self.hold_sets = False
        self.held_sets: list[tuple[str, bytes, int | None, defer.Deferred[int]]] = []

    def release_sets(self) -> None:
        self.hold_sets = False
        held, self.held_sets = self.held_sets, []
        for path, value, expected_version, waiting in held:
            self._set(path, value, expected_version).chainDeferred(waiting)

    @property
    def session_state(self) -> SessionState:
        return SessionState.CONNECTED

    def _notify(self, path: str) -> None:
        for watched in (path, parent_of(path)):
            for callback in list(self.watches.get(watched, [])):
                callback(watched)

    def _get(self, path: str) -> defer.Deferred[Versioned | None]:
        return defer.succeed(self.nodes.get(path))

    def _create(self, path: str, value: bytes, ephemeral: bool, sequential: bool):
        if path in self.nodes:
            return defer.fail(NodeExistsError("exists", path))
        missing = []
        parent = parent_of(path)
        while parent not in self.nodes:
            missing.append(parent)
            parent = parent_of(parent)
        for ancestor in reversed(missing):
            self.nodes[ancestor] = Versioned(b"", 0)
            self._notify(ancestor)
        self.nodes[path] = Versioned(value, 0)
        self._notify(path)
        return defer.succeed(path)

    def _set(self, path: str, value: bytes, expected_version: int | None):
        if self.hold_sets:
            waiting: defer.Deferred[int] = defer.Deferred()
            self.held_sets.append((path, value, expected_version, waiting))
            return waiting
        if self.before_set is not None:
            self.before_set(path, value)
        current = self.nodes.get(path)
        if current is None:
            return defer.fail(NoNodeError("no node", path))
        if expected_version is not None and expected_version != current.version:
            return defer.fail(BadVersionError("bad version", path))
        self.nodes[path] = Versioned(value, current.version + 1)
        self._notify(path)
        return defer.succeed(current.version + 1)

    def _delete(self, path: str, expected_version: int | None, recursive: bool):
        current = self.nodes.get(path)
        if current is None:
            return defer.fail(NoNodeError("no node", path))
        if expected_version is not None and expected_version != current.version:
            return defer.fail(BadVersionError("bad version", path))
        descendants = [p for p in self.nodes if p.startswith(path + "/")]
        if descendants and not recursive:
            return defer.fail(NotEmptyError("has children", path))
        for doomed in [*descendants, path]:
            del self.nodes[doomed]
            self._notify(doomed)
        return defer.succeed(None)

    def _children(self, path: str) -> defer.Deferred[list[str]]:
        prefix = child_path(path, "")
        names = {p[len(prefix):] for p in self.nodes if p.startswith(prefix) and p != path}
        return defer.succeed(sorted(n for n in names if n and "/" not in n))

    def _watch(self, path: str, callback: Callable[[str], None]) -> Callable[[], None]:
        self.watches.setdefault(path, []).append(callback)
        return lambda: self.watches[path].remove(callback)

    def _add_session_listener(self, callback) -> None:
        pass

    def _close(self) -> defer.Deferred[None]:
        return defer.succeed(None)


def result_of(deferred: defer.Deferred):
    """The result of a Deferred that must already have succeeded."""
    outcome: list = []
    deferred.addBoth(outcome.append)
    assert outcome, "the Deferred has not fired"
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


def failure_of(deferred: defer.Deferred, *expected: type[BaseException]) -> BaseException:
    """The exception of a Deferred that must already have failed with one of `expected`."""
    outcome: list = []
    deferred.addBoth(outcome.append)
    assert outcome, "the Deferred has not fired"
    assert isinstance(outcome[0], Failure), f"expected a failure, got {outcome[0]!r}"
    assert outcome[0].check(*expected), f"unexpected failure: {outcome[0].value!r}"
    return outcome[0].value


def has_fired(deferred: defer.Deferred) -> bool:
    return deferred.called


class Cluster:
    """A fake store, fake nodes named n0, n1, ... and ledger clients sharing them."""

    def __init__(self, node_count: int, **settings: float) -> None:
        self.store = FakeStore()
        self.nodes = {f"n{i}": FakeNode(f"n{i}") for i in range(node_count)}
        for address in self.nodes:
            result_of(self.store.create(f"/storage-nodes/{address}", b"", ephemeral=True))
        self.clock = task.Clock()
        self.settings = LedgerClientSettings(**settings)
        self.pool = result_of(defer.ensureDeferred(NodePool.for_cluster(
            self.store, client_factory=self.nodes.__getitem__, clock=self.clock
        )))

    def client(self, seed: int = 0) -> LedgerClient:
        return LedgerClient(
            self.store, self.pool, settings=self.settings, clock=self.clock,
            rng=random.Random(seed),
        )

    def node(self, address: str) -> FakeNode:
        return self.nodes[address]

    def plant(self, ledger_id: int, entry_id: int, running_length: int, payload: bytes,
              *addresses: str) -> None:
        """Store an entry directly on some nodes, as a writer that crashed mid-add would."""
        stored = frame_entry(ledger_id, entry_id, running_length, payload)
        for address in addresses:
            self.nodes[address].entries[(ledger_id, entry_id)] = stored
            self.nodes[address].last_add_confirmed.setdefault(ledger_id, -1)
