"""In-memory fakes for the group coordinator's unit tests, and checks of the fakes themselves.

`FakeLedger` keeps the parts of the ManagedLedger contract CompactedLog relies on: entries
complete in append order, reads from a position, truncation moves the first position,
closing. Knobs: hold appends until released, fail the next append, fail every append.
`FakeGroupStorage` keeps one FakeLedger per partition across coordinator instances, so a new
coordinator over the same storage is a restarted broker.
"""

from __future__ import annotations

from types import SimpleNamespace

from twisted.internet import defer, task
from twisted.python.failure import Failure

from kop.configs import BROKER_DEFAULTS
from kop.groups import GroupCoordinator, JoinRequest
from kop.groups.compacted_log import CompactedLog
from storage.managed_ledger import Entry, Position

LEDGER_ID = 7


class StorageDown(Exception):
    pass


class FakeLedger:
    def __init__(self, name: str = "public/__kafka/persistent/__consumer_offsets-partition-0") -> None:
        self.name = name
        self.entries: list[Entry] = []
        self.start = 0  # entry id of the first entry still in the log
        self.hold = False
        self.held: list[tuple[bytes, int, defer.Deferred[Position]]] = []
        self.fail_next_append: Exception | None = None
        self.fail_appends: Exception | None = None
        self.closed = False

    def append(self, data: bytes, index: int) -> defer.Deferred[Position]:
        assert not self.closed, "append to a closed ledger"
        if self.fail_next_append is not None:
            error, self.fail_next_append = self.fail_next_append, None
            return defer.fail(error)
        if self.fail_appends is not None:
            return defer.fail(self.fail_appends)
        done: defer.Deferred[Position] = defer.Deferred()
        self.held.append((data, index, done))
        if not self.hold:
            self.release()
        return done

    def release(self, count: int | None = None) -> None:
        """Make held appends durable, oldest first."""
        while self.held and (count is None or count > 0):
            data, index, done = self.held.pop(0)
            position = Position(LEDGER_ID, len(self.entries))
            self.entries.append(Entry(position, index, data))
            done.callback(position)
            if count is not None:
                count -= 1

    @property
    def first_position(self) -> Position:
        return Position(LEDGER_ID, self.start)

    def read(self, start: Position, max_entries: int, max_bytes: int | None = None
             ) -> defer.Deferred[list[Entry]]:
        first = max(start.entry_id, self.start)
        return defer.succeed(self.entries[first:first + max_entries])

    def truncate_before(self, position: Position) -> defer.Deferred[None]:
        self.start = max(self.start, position.entry_id)
        return defer.succeed(None)

    def close(self) -> defer.Deferred[None]:
        self.closed = True
        return defer.succeed(None)

    @property
    def live_entries(self) -> list[Entry]:
        return self.entries[self.start:]


class FakeGroupStorage:
    def __init__(self, partitions: int = 4, snapshot_min_changes: int = 1000) -> None:
        self.partitions = partitions
        self.snapshot_min_changes = snapshot_min_changes
        self.ledgers: dict[int, FakeLedger] = {}
        self.fail_open: dict[int, Exception] = {}
        self.hold_open: dict[int, defer.Deferred[None]] = {}
        self.opens = 0

    async def partition_count(self) -> int:
        return self.partitions

    def ledger(self, partition: int) -> FakeLedger:
        if partition not in self.ledgers:
            self.ledgers[partition] = FakeLedger(
                f"public/__kafka/persistent/__consumer_offsets-partition-{partition}")
        return self.ledgers[partition]

    async def open(self, partition: int) -> CompactedLog:
        self.opens += 1
        if partition in self.hold_open:
            await self.hold_open[partition]
        if partition in self.fail_open:
            raise self.fail_open[partition]
        ledger = self.ledger(partition)
        ledger.closed = False
        compacted = CompactedLog(ledger, snapshot_min_changes=self.snapshot_min_changes)  # type: ignore[arg-type]
        await compacted.load()
        return compacted


class FakeBroker:
    """Owns every offsets-topic partition unless `owned` names some."""

    def __init__(self, settings: dict[str, str] | None = None, owned: set[int] | None = None) -> None:
        self.config = SimpleNamespace(settings={**BROKER_DEFAULTS, **(settings or {})})
        self.owned = owned

    def owns(self, topic: str, partition: int) -> bool:
        return self.owned is None or partition in self.owned


# Short timers keep the arithmetic of the tests readable (seconds on the fake clock).
TEST_SETTINGS = {
    "group.initial.rebalance.delay.ms": "3000",
    "group.min.session.timeout.ms": "1000",
    "group.max.session.timeout.ms": "60000",
}


def result_of(deferred: defer.Deferred):
    """The result of a Deferred that has fired (fails the test if it has not)."""
    results: list = []

    def keep(result):
        results.append(result)
        return None if isinstance(result, Failure) else result  # a failure is handled here

    deferred.addBoth(keep)
    assert results, "the Deferred has not fired"
    result = results[0]
    if isinstance(result, Failure):
        result.raiseException()
    return result


def has_fired(deferred: defer.Deferred) -> bool:
    fired: list = []
    deferred.addBoth(lambda result: fired.append(result) or result)
    return bool(fired)


def start_coordinator(storage: FakeGroupStorage | None = None, clock: task.Clock | None = None,
                      broker: FakeBroker | None = None, **settings: str
                      ) -> tuple[GroupCoordinator, task.Clock, FakeGroupStorage]:
    clock = clock or task.Clock()
    storage = storage or FakeGroupStorage()
    broker = broker or FakeBroker({**TEST_SETTINGS, **settings})
    coordinator = GroupCoordinator(broker, storage, reactor=clock)
    result_of(defer.ensureDeferred(coordinator.start()))
    return coordinator, clock, storage


def join_request(member_id: str = "", group_id: str = "g", *, instance_id: str | None = None,
                 protocols: list[tuple[str, bytes]] | None = None, session_ms: int = 10_000,
                 rebalance_ms: int = 30_000, protocol_type: str = "consumer",
                 two_step: bool = True, skip_assignment: bool = True,
                 client_id: str = "client") -> JoinRequest:
    return JoinRequest(
        group_id=group_id, member_id=member_id, group_instance_id=instance_id,
        client_id=client_id, client_host="/127.0.0.1", session_timeout_ms=session_ms,
        rebalance_timeout_ms=rebalance_ms, protocol_type=protocol_type,
        protocols=protocols if protocols is not None else [("range", b"meta")],
        require_known_member_id=two_step and instance_id is None,
        supports_skip_assignment=skip_assignment)


# -- the fakes keep the contract the code relies on ------------------------------------------


def test_fake_ledger_completes_held_appends_in_order_and_reads_from_the_start() -> None:
    ledger = FakeLedger()
    ledger.hold = True
    first, second = ledger.append(b"a", 0), ledger.append(b"b", 1)
    assert not has_fired(first)
    ledger.release(1)
    assert result_of(first) == Position(LEDGER_ID, 0) and not has_fired(second)
    ledger.release()
    ledger.truncate_before(Position(LEDGER_ID, 1))
    assert [e.data for e in result_of(ledger.read(Position(LEDGER_ID, 0), 10))] == [b"b"]


def test_fake_storage_keeps_ledgers_across_opens() -> None:
    storage = FakeGroupStorage()
    log = result_of(defer.ensureDeferred(storage.open(1)))
    result_of(log.write([(b"k", b"v")]))
    reopened = result_of(defer.ensureDeferred(storage.open(1)))
    assert dict(reopened.live) == {b"k": b"v"}
