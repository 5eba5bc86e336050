"""In-memory fakes of the metadata store and the ledger client for managed-ledger unit tests.

They keep the contracts' observable behaviour (versions and compare-and-set, parents created
on create, fencing by recovery, in-order append completion) and add knobs the tests turn:
hold appends until released, fail the next create/append/set, count storage reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace

from twisted.internet import defer

from storage.ledger.errors import (
    EntryRangeError,
    LedgerClosedError,
    LedgerFencedError,
    NoSuchLedgerError,
    NotEnoughNodesError,
)
from storage.metadata.api import Versioned
from storage.metadata.errors import (
    BadVersionError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
)
from storage.node.buffers import join_payload


class FakeMetadataStore:
    def __init__(self) -> None:
        self.nodes: dict[str, Versioned] = {}
        self.set_count = 0
        # When set: the next set() raises this; applied_anyway=True also stores the value
        # (a write whose answer was lost).
        self.fail_next_set: Exception | None = None
        self.applied_anyway = False

    def get(self, path: str) -> defer.Deferred[Versioned | None]:
        return defer.succeed(self.nodes.get(path))

    def create(self, path: str, value: bytes = b"", *, ephemeral: bool = False,
               sequential: bool = False) -> defer.Deferred[str]:
        if path in self.nodes:
            return defer.fail(NodeExistsError(f"{path} exists", path))
        parts = path.strip("/").split("/")
        for depth in range(1, len(parts)):
            self.nodes.setdefault("/" + "/".join(parts[:depth]), Versioned(b"", 0))
        self.nodes[path] = Versioned(bytes(value), 0)
        return defer.succeed(path)

    def set(self, path: str, value: bytes, *,
            expected_version: int | None = None) -> defer.Deferred[int]:
        self.set_count += 1
        if self.fail_next_set is not None:
            error, self.fail_next_set = self.fail_next_set, None
            if self.applied_anyway:
                self.nodes[path] = Versioned(bytes(value), self.nodes[path].version + 1)
            return defer.fail(error)
        current = self.nodes.get(path)
        if current is None:
            return defer.fail(NoNodeError(f"{path} missing", path))
        if expected_version is not None and expected_version != current.version:
            return defer.fail(BadVersionError(f"{path} is at {current.version}", path))
        self.nodes[path] = Versioned(bytes(value), current.version + 1)
        return defer.succeed(current.version + 1)

    def delete(self, path: str, *, expected_version: int | None = None,
               recursive: bool = False) -> defer.Deferred[None]:
        current = self.nodes.get(path)
        if current is None:
            return defer.fail(NoNodeError(f"{path} missing", path))
        if expected_version is not None and expected_version != current.version:
            return defer.fail(BadVersionError(f"{path} is at {current.version}", path))
        below = [other for other in self.nodes if other.startswith(path + "/")]
        if below and not recursive:
            return defer.fail(NotEmptyError(f"{path} has children", path))
        for other in [*below, path]:
            del self.nodes[other]
        return defer.succeed(None)

    def children(self, path: str) -> defer.Deferred[list[str]]:
        prefix = path.rstrip("/") + "/"
        names = {other[len(prefix):] for other in self.nodes if other.startswith(prefix)}
        return defer.succeed(sorted(name for name in names if "/" not in name))


@dataclass
class FakeLedger:
    ledger_id: int
    custom: dict[str, str]
    entries: list[bytes] = field(default_factory=list)
    closed: bool = False
    fenced: bool = False
    last_entry_id: int = -1  # sealed last entry once closed

    @property
    def length(self) -> int:
        return sum(len(entry) for entry in self.entries[: self.last_entry_id + 1])


class FakeReadHandle:
    def __init__(self, client: FakeLedgerClient, ledger: FakeLedger, last_add_confirmed: int):
        self.client = client
        self.ledger = ledger
        self.ledger_id = ledger.ledger_id
        self.last_add_confirmed = last_add_confirmed

    @property
    def metadata(self) -> SimpleNamespace:
        return SimpleNamespace(length=self.ledger.length, last_entry_id=self.ledger.last_entry_id)

    def read(self, first_entry: int, last_entry: int) -> defer.Deferred[list[bytes]]:
        if self.ledger.ledger_id not in self.client.ledgers:
            return defer.fail(NoSuchLedgerError(f"ledger {self.ledger_id} was deleted"))
        if not 0 <= first_entry <= last_entry <= self.last_add_confirmed:
            return defer.fail(EntryRangeError(
                f"{first_entry}..{last_entry} outside 0..{self.last_add_confirmed}"))
        self.client.storage_reads += 1
        return defer.succeed(self.ledger.entries[first_entry: last_entry + 1])

    def read_last_add_confirmed(self) -> defer.Deferred[int]:
        return defer.succeed(self.last_add_confirmed)

    def close(self) -> defer.Deferred[None]:
        return defer.succeed(None)


class FakeWriteHandle(FakeReadHandle):
    def __init__(self, client: FakeLedgerClient, ledger: FakeLedger) -> None:
        super().__init__(client, ledger, -1)
        self.length = 0
        self.closing = False

    def append(self, payload: bytes) -> defer.Deferred[int]:
        if self.ledger.fenced:
            return defer.fail(LedgerFencedError(f"ledger {self.ledger_id} is fenced"))
        if self.closing:
            return defer.fail(LedgerClosedError(f"ledger {self.ledger_id} is closed"))
        if self.client.fail_next_append is not None:
            error, self.client.fail_next_append = self.client.fail_next_append, None
            return defer.fail(error)
        entry_id = len(self.ledger.entries)
        stored = bytes(join_payload(payload))  # bytes or parts, as the real writer takes
        self.ledger.entries.append(stored)  # on the nodes now; acked when released
        self.length += len(stored)
        done: defer.Deferred[int] = defer.Deferred()
        self.client.held.append((self, entry_id, done))
        if not self.client.hold_appends:
            self.client.release_appends()
        return done

    def _acknowledge(self, entry_id: int, done: defer.Deferred[int]) -> None:
        self.last_add_confirmed = entry_id
        done.callback(entry_id)

    def close(self) -> defer.Deferred[None]:
        self.closing = True
        if self.ledger.fenced:
            return defer.fail(LedgerFencedError(f"ledger {self.ledger_id} was recovered"))
        if self.client.fail_next_close is not None:
            error, self.client.fail_next_close = self.client.fail_next_close, None
            return defer.fail(error)
        self.ledger.closed = True
        self.ledger.last_entry_id = self.last_add_confirmed
        return defer.succeed(None)


class FakeLedgerClient:
    def __init__(self) -> None:
        self.ledgers: dict[int, FakeLedger] = {}
        self.next_id = 100
        self.hold_appends = False
        self.held: list[tuple[FakeWriteHandle, int, defer.Deferred[int]]] = []
        self.fail_next_create: Exception | None = None
        self.fail_next_append: Exception | None = None
        self.fail_next_close: Exception | None = None
        self.storage_reads = 0
        self.deleted: list[int] = []

    def create_ledger(self, ensemble_size: int, write_quorum: int, ack_quorum: int,
                      custom: dict[str, str] | None = None) -> defer.Deferred[FakeWriteHandle]:
        if self.fail_next_create is not None:
            error, self.fail_next_create = self.fail_next_create, None
            return defer.fail(error)
        ledger = FakeLedger(self.next_id, dict(custom or {}))
        self.next_id += 1
        self.ledgers[ledger.ledger_id] = ledger
        return defer.succeed(FakeWriteHandle(self, ledger))

    def open_ledger(self, ledger_id: int, *,
                    recovery: bool = True) -> defer.Deferred[FakeReadHandle]:
        ledger = self.ledgers.get(ledger_id)
        if ledger is None:
            return defer.fail(NoSuchLedgerError(f"ledger {ledger_id} does not exist"))
        if recovery and not ledger.closed:
            # Every entry on the nodes "may have been acknowledged": recovery keeps them all.
            ledger.fenced = True
            ledger.closed = True
            ledger.last_entry_id = len(ledger.entries) - 1
        last = ledger.last_entry_id if ledger.closed else len(ledger.entries) - 1
        return defer.succeed(FakeReadHandle(self, ledger, last))

    def delete_ledger(self, ledger_id: int) -> defer.Deferred[None]:
        if self.ledgers.pop(ledger_id, None) is None:
            return defer.fail(NoSuchLedgerError(f"ledger {ledger_id} does not exist"))
        self.deleted.append(ledger_id)
        return defer.succeed(None)

    def release_appends(self, count: int | None = None, error: Exception | None = None) -> None:
        """Acknowledge held appends, oldest first (as a ledger completes them: in order), or
        fail them with error (their entries stay on the "nodes", as after a lost ack)."""
        while self.held and (count is None or count > 0):
            handle, entry_id, done = self.held.pop(0)
            if error is None:
                handle._acknowledge(entry_id, done)
            else:
                done.errback(error)
            if count is not None:
                count -= 1

    def ledger_of(self, ledger_id: int) -> FakeLedger:
        return self.ledgers[ledger_id]


NOT_ENOUGH_NODES = NotEnoughNodesError("only 0 storage nodes are live")
