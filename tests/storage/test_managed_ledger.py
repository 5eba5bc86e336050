"""Managed ledger unit tests against in-memory fakes: appends, rollover, reads, find, cache,
listeners, close."""

from __future__ import annotations

import pytest
import pytest_twisted
from test_managed_ledger_fakes import (
    NOT_ENOUGH_NODES,
    FakeLedgerClient,
    FakeMetadataStore,
    FakeReadHandle,
)
from twisted.internet import task

from storage.ledger.errors import LedgerReadError
from storage.managed_ledger import (
    CorruptEntryError,
    ManagedLedgerClosedError,
    ManagedLedgerConfig,
    ManagedLedgerError,
    ManagedLedgerFactory,
    Position,
    State,
)
from storage.managed_ledger.entry_format import HEADER_SIZE
from storage.managed_ledger.info import ManagedLedgerInfo

NAME = "public/default/orders-partition-0"


class World:
    """One metadata store and ledger client; factories over them are 'processes'."""

    def __init__(self) -> None:
        self.store = FakeMetadataStore()
        self.ledgers = FakeLedgerClient()
        self.clock = task.Clock()
        self.clock.advance(1_700_000_000)

    def factory(self) -> ManagedLedgerFactory:
        return ManagedLedgerFactory(self.store, self.ledgers, clock=self.clock)

    def info(self, name: str = NAME) -> ManagedLedgerInfo:
        node = self.store.nodes[f"/managed-ledgers/{name}"]
        return ManagedLedgerInfo.from_json(node.value, where=name)


@pytest.fixture
def world() -> World:
    return World()


async def append_all(ledger, payloads, first_index=0):
    positions = []
    for offset, payload in enumerate(payloads):
        positions.append(await ledger.append(payload, first_index + offset))
    return positions


def payloads(count: int, size: int = 10) -> list[bytes]:
    return [f"entry-{i}".encode().ljust(size, b".") for i in range(count)]


@pytest_twisted.ensureDeferred
async def test_appends_get_increasing_positions_and_read_back_in_order(world):
    ledger = await world.factory().open(NAME)
    data = payloads(5)
    positions = await append_all(ledger, data, first_index=100)

    assert positions == sorted(positions)
    assert len({p.ledger_id for p in positions}) == 1
    assert [p.entry_id for p in positions] == [0, 1, 2, 3, 4]
    entries = await ledger.read(ledger.first_position, 10)
    assert [e.data for e in entries] == data
    assert [e.index for e in entries] == [100, 101, 102, 103, 104]
    assert [e.position for e in entries] == positions
    assert ledger.first_position == positions[0]
    assert ledger.last_confirmed_position == positions[-1]
    assert ledger.entry_count == 5
    assert ledger.total_bytes == sum(len(d) + HEADER_SIZE for d in data)


@pytest_twisted.ensureDeferred
async def test_empty_ledger_bounds_say_empty(world):
    ledger = await world.factory().open(NAME)
    assert ledger.first_position > ledger.last_confirmed_position
    assert ledger.entry_count == 0
    assert await ledger.read(ledger.first_position, 10) == []
    assert await ledger.find(0) is None
    position = await ledger.append(b"x", 0)
    assert position == ledger.first_position == ledger.last_confirmed_position


@pytest_twisted.ensureDeferred
async def test_rollover_by_entry_count_chains_ledgers_and_reads_across(world):
    config = ManagedLedgerConfig(max_entries_per_ledger=3, cache_bytes=0)
    ledger = await world.factory().open(NAME, config)
    data = payloads(10)
    positions = await append_all(ledger, data)

    assert [p.entry_id for p in positions] == [0, 1, 2, 0, 1, 2, 0, 1, 2, 0]
    assert len(ledger.ledger_ids) == 4
    assert ledger.ledger_ids == sorted(ledger.ledger_ids)
    entries = await ledger.read(Position(0, 0), 100)
    assert [e.data for e in entries] == data
    # Closed ledgers are recorded in the metadata with their counts and first index.
    recorded = world.info().ledgers
    assert [(lg.entries, lg.first_index) for lg in recorded[:3]] == [(3, 0), (3, 3), (3, 6)]
    assert all(lg.is_closed for lg in recorded[:3]) and not recorded[3].is_closed
    assert all(world.ledgers.ledger_of(lg.ledger_id).closed for lg in recorded[:3])
    assert ledger.entry_count == 10


@pytest_twisted.ensureDeferred
async def test_rollover_by_bytes(world):
    config = ManagedLedgerConfig(max_ledger_bytes=3 * (100 + HEADER_SIZE))
    ledger = await world.factory().open(NAME, config)
    positions = await append_all(ledger, payloads(7, size=100))
    assert [p.entry_id for p in positions] == [0, 1, 2, 0, 1, 2, 0]


@pytest_twisted.ensureDeferred
async def test_rollover_by_age_on_append_and_when_idle(world):
    config = ManagedLedgerConfig(max_ledger_age_seconds=60, maintenance_interval_seconds=10)
    ledger = await world.factory().open(NAME, config)
    first = await ledger.append(b"a", 0)
    world.clock.advance(61)  # maintenance notices the aged ledger and rolls it
    assert len(ledger.ledger_ids) == 2
    second = await ledger.append(b"b", 1)
    assert second.ledger_id > first.ledger_id and second.entry_id == 0
    world.clock.advance(59)
    third = await ledger.append(b"c", 2)
    assert third == Position(second.ledger_id, 1)
    world.clock.advance(2)
    fourth = await ledger.append(b"d", 3)  # the append itself sees the age
    assert fourth.ledger_id > third.ledger_id


@pytest_twisted.ensureDeferred
async def test_idle_empty_ledger_is_not_rolled(world):
    config = ManagedLedgerConfig(max_ledger_age_seconds=60, maintenance_interval_seconds=10)
    ledger = await world.factory().open(NAME, config)
    world.clock.advance(600)
    assert len(ledger.ledger_ids) == 1


@pytest_twisted.ensureDeferred
async def test_appends_during_rollover_queue_and_complete_in_order(world):
    config = ManagedLedgerConfig(max_entries_per_ledger=2)
    ledger = await world.factory().open(NAME, config)
    world.ledgers.hold_appends = True
    results: list[tuple[int, Position]] = []
    deferreds = [ledger.append(f"e{i}".encode(), i) for i in range(7)]
    for i, d in enumerate(deferreds):
        d.addCallback(lambda pos, i=i: results.append((i, pos)))
    # Two went to the first ledger; the rest wait for the rollover, which waits for them.
    assert len(world.ledgers.held) == 2
    world.ledgers.release_appends(1)
    assert [i for i, _ in results] == [0]
    world.ledgers.release_appends()  # rollover proceeds; later appends get held again
    while world.ledgers.held:
        world.ledgers.release_appends()
    assert [i for i, _ in results] == list(range(7))
    assert [pos for _, pos in results] == sorted(pos for _, pos in results)
    entries = await ledger.read(ledger.first_position, 10)
    assert [e.data for e in entries] == [f"e{i}".encode() for i in range(7)]


@pytest_twisted.ensureDeferred
async def test_read_limits_entries_and_bytes_but_returns_at_least_one(world):
    for cache_bytes in (0, 1 << 20):  # from storage and from the cache alike
        local = World()
        config = ManagedLedgerConfig(max_entries_per_ledger=4, cache_bytes=cache_bytes)
        ledger = await local.factory().open(NAME, config)
        await append_all(ledger, payloads(10, size=100))
        start = ledger.first_position
        assert len(await ledger.read(start, 3)) == 3
        assert len(await ledger.read(start, 100, max_bytes=250)) == 2
        assert len(await ledger.read(start, 100, max_bytes=50)) == 1
        assert len(await ledger.read(start, 100, max_bytes=1000)) == 10
        assert await ledger.read(start, 0) == []


@pytest_twisted.ensureDeferred
async def test_read_positions_between_or_past_entries(world):
    ledger = await world.factory().open(NAME, ManagedLedgerConfig(max_entries_per_ledger=2,
                                                                  cache_bytes=0))
    positions = await append_all(ledger, payloads(5))
    after_first_ledger = Position(positions[0].ledger_id, 7)  # no such entry: next ledger
    entries = await ledger.read(after_first_ledger, 10)
    assert [e.position for e in entries] == positions[2:]
    before_everything = Position(0, 0)
    assert [e.position for e in await ledger.read(before_everything, 1)] == positions[:1]
    past_end = Position(positions[-1].ledger_id, positions[-1].entry_id + 1)
    assert await ledger.read(past_end, 10) == []


@pytest_twisted.ensureDeferred
async def test_tail_reads_come_from_the_cache(world):
    ledger = await world.factory().open(NAME, ManagedLedgerConfig(max_entries_per_ledger=5))
    positions = await append_all(ledger, payloads(12))
    reads_before = world.ledgers.storage_reads
    entries = await ledger.read(positions[3], 100)
    assert [e.position for e in entries] == positions[3:]
    assert world.ledgers.storage_reads == reads_before


@pytest_twisted.ensureDeferred
async def test_cache_is_bounded_and_older_reads_go_to_storage(world):
    config = ManagedLedgerConfig(cache_bytes=5 * (1000 + 64))
    ledger = await world.factory().open(NAME, config)
    data = payloads(20, size=1000)
    positions = await append_all(ledger, data)
    assert ledger._cache.bytes_used <= config.cache_bytes
    assert len(ledger._cache) == 5
    reads_before = world.ledgers.storage_reads
    assert [e.data for e in await ledger.read(positions[15], 100)] == data[15:]
    assert world.ledgers.storage_reads == reads_before
    assert [e.data for e in await ledger.read(positions[0], 100)] == data
    assert world.ledgers.storage_reads > reads_before


def record_storage_reads(monkeypatch) -> list[tuple[int, int]]:
    """(first, last) of every range the managed ledger asks the (fake) ledger client for."""
    ranges: list[tuple[int, int]] = []
    real_read = FakeReadHandle.read

    def read(handle, first_entry, last_entry):
        ranges.append((first_entry, last_entry))
        return real_read(handle, first_entry, last_entry)

    monkeypatch.setattr(FakeReadHandle, "read", read)
    return ranges


@pytest_twisted.ensureDeferred
async def test_a_catch_up_reader_gets_each_entry_from_storage_once(world, monkeypatch):
    ledger = await world.factory().open(NAME, ManagedLedgerConfig(cache_bytes=0))
    data = payloads(10, size=1000)
    positions = await append_all(ledger, data)
    ranges = record_storage_reads(monkeypatch)
    read, position = [], positions[0]
    while len(read) < 10:  # fetches of 1,500 bytes: one entry each, like 1 MiB fetches of
        entries = await ledger.read(position, 100, max_bytes=1500)  # ~1 MB batches
        assert len(entries) == 1
        read += entries
        position = Position(position.ledger_id, entries[-1].position.entry_id + 1)
    assert [e.data for e in read] == data
    # The entry read past each fetch's budget is the next fetch's first: read once, kept.
    entry_ids_read = [e for first, last in ranges for e in range(first, last + 1)]
    assert sorted(entry_ids_read) == list(range(10))


@pytest_twisted.ensureDeferred
async def test_read_ahead_is_used_only_for_the_position_it_starts_at(world):
    ledger = await world.factory().open(NAME, ManagedLedgerConfig(cache_bytes=0))
    data = payloads(6, size=1000)
    positions = await append_all(ledger, data)
    assert [e.data for e in await ledger.read(positions[0], 100, max_bytes=1500)] == data[:1]
    # Another reader elsewhere, then both again: each gets what it asked for.
    assert [e.data for e in await ledger.read(positions[3], 2)] == data[3:5]
    assert [e.data for e in await ledger.read(positions[1], 100, max_bytes=2500)] == data[1:3]
    assert [e.data for e in await ledger.read(positions[2], 100)] == data[2:]
    assert [e.data for e in await ledger.read(positions[0], 1)] == data[:1]


@pytest_twisted.ensureDeferred
async def test_shrinking_the_cache_through_update_config(world):
    ledger = await world.factory().open(NAME)
    await append_all(ledger, payloads(10, size=1000))
    ledger.update_config(ManagedLedgerConfig(cache_bytes=2000))
    assert ledger._cache.bytes_used <= 2000


@pytest_twisted.ensureDeferred
async def test_find_returns_last_entry_with_index_at_or_below(world):
    for cache_bytes in (0, 1 << 20):
        local = World()
        config = ManagedLedgerConfig(max_entries_per_ledger=4, cache_bytes=cache_bytes)
        ledger = await local.factory().open(NAME, config)
        # Kafka-style: each entry is a batch of 10 offsets starting at its index.
        positions = [await ledger.append(b"batch", 10 * i) for i in range(15)]
        assert await ledger.find(-1) is None
        for i in range(15):
            assert await ledger.find(10 * i) == positions[i]
            assert await ledger.find(10 * i + 9) == positions[i]
        assert await ledger.find(10_000) == positions[-1]


@pytest_twisted.ensureDeferred
async def test_find_with_repeated_indexes_picks_the_last_of_them(world):
    ledger = await world.factory().open(NAME, ManagedLedgerConfig(cache_bytes=0,
                                                                  max_entries_per_ledger=3))
    indexes = [0, 5, 5, 5, 5, 9, 9, 12]
    positions = [await ledger.append(b"x", i) for i in indexes]
    assert await ledger.find(5) == positions[4]
    assert await ledger.find(8) == positions[4]
    assert await ledger.find(9) == positions[6]
    assert await ledger.find(4) == positions[0]


@pytest_twisted.ensureDeferred
async def test_find_binary_searches_with_few_reads(world):
    config = ManagedLedgerConfig(cache_bytes=0, max_entries_per_ledger=1000)
    ledger = await world.factory().open(NAME, config)
    positions = [await ledger.append(b"x", i * 2) for i in range(3000)]
    reads_before = world.ledgers.storage_reads
    assert await ledger.find(3001) == positions[1500]
    assert world.ledgers.storage_reads - reads_before <= 12  # ~log2(1000) + 1


@pytest_twisted.ensureDeferred
async def test_index_must_not_decrease(world):
    ledger = await world.factory().open(NAME)
    await ledger.append(b"a", 10)
    await ledger.append(b"b", 10)  # equal is fine
    with pytest.raises(ValueError, match="below the previous"):
        await ledger.append(b"c", 9)
    with pytest.raises(ValueError, match="64 bits"):
        await ledger.append(b"c", 2**63)
    assert ledger.entry_count == 2


@pytest_twisted.ensureDeferred
async def test_append_listeners_see_every_entry_in_order(world):
    ledger = await world.factory().open(NAME, ManagedLedgerConfig(max_entries_per_ledger=2))
    seen = []
    remove = ledger.add_append_listener(lambda entry: seen.append(entry))

    def broken_listener(entry):
        raise RuntimeError("listener bug")

    ledger.add_append_listener(broken_listener)
    positions = await append_all(ledger, payloads(5))
    assert [e.position for e in seen] == positions
    assert [e.index for e in seen] == [0, 1, 2, 3, 4]
    remove()
    await ledger.append(b"late", 5)
    assert len(seen) == 5


@pytest_twisted.ensureDeferred
async def test_failed_append_rolls_to_a_fresh_ledger_and_later_appends_succeed(world):
    ledger = await world.factory().open(NAME)
    first = await ledger.append(b"a", 0)
    world.ledgers.fail_next_append = LedgerReadError("node went away")
    with pytest.raises(ManagedLedgerError, match="node went away"):
        await ledger.append(b"b", 1)
    third = await ledger.append(b"b", 1)  # the caller retries with the same index
    assert third.ledger_id > first.ledger_id
    entries = await ledger.read(ledger.first_position, 10)
    assert [e.data for e in entries] == [b"a", b"b"]


@pytest_twisted.ensureDeferred
async def test_ledger_creation_failure_fails_waiting_appends_clearly_then_recovers(world):
    ledger = await world.factory().open(NAME, ManagedLedgerConfig(max_entries_per_ledger=1))
    await ledger.append(b"a", 0)
    world.ledgers.fail_next_create = NOT_ENOUGH_NODES
    with pytest.raises(ManagedLedgerError, match="could not create a ledger.*only 0 storage"):
        await ledger.append(b"b", 1)
    assert ledger.state is State.OPEN
    position = await ledger.append(b"b", 1)
    assert position.entry_id == 0
    assert [e.data for e in await ledger.read(ledger.first_position, 10)] == [b"a", b"b"]


@pytest_twisted.ensureDeferred
async def test_open_fails_clearly_when_no_ledger_can_be_created(world):
    world.ledgers.fail_next_create = NOT_ENOUGH_NODES
    with pytest.raises(ManagedLedgerError, match="could not create a ledger"):
        await world.factory().open(NAME)


@pytest_twisted.ensureDeferred
async def test_corrupt_entry_header_is_a_clear_error_on_that_entry_only(world):
    ledger = await world.factory().open(NAME, ManagedLedgerConfig(cache_bytes=0))
    positions = await append_all(ledger, payloads(3))
    world.ledgers.ledger_of(positions[1].ledger_id).entries[1] = b"\x07garbage-header"
    with pytest.raises(CorruptEntryError, match=r"entry .*:1 of managed ledger .*format 7"):
        await ledger.read(positions[1], 1)
    assert [e.data for e in await ledger.read(positions[2], 1)] == [payloads(3)[2]]
    assert [e.data for e in await ledger.read(positions[0], 1)] == [payloads(3)[0]]


@pytest_twisted.ensureDeferred
async def test_close_waits_for_pending_appends_and_seals_the_ledger(world):
    factory = world.factory()
    ledger = await factory.open(NAME, ManagedLedgerConfig(max_entries_per_ledger=2))
    world.ledgers.hold_appends = True
    pending = [ledger.append(b"x", i) for i in range(5)]
    closed, closed_again = ledger.close(), ledger.close()
    assert not closed.called and not closed_again.called
    with pytest.raises(ManagedLedgerClosedError):
        await ledger.append(b"late", 9)
    world.ledgers.hold_appends = False
    while world.ledgers.held:
        world.ledgers.release_appends()
    await closed
    await closed_again
    assert all(d.called for d in pending)
    assert ledger.state is State.CLOSED
    recorded = world.info().ledgers
    assert all(lg.is_closed for lg in recorded)
    assert sum(lg.entries for lg in recorded) == 5
    # Opening again sees everything and needs no recovery of an open ledger.
    again = await factory.open(NAME)
    assert again is not ledger
    assert len(await again.read(again.first_position, 10)) == 5


@pytest_twisted.ensureDeferred
async def test_closed_ledger_refuses_use(world):
    ledger = await world.factory().open(NAME)
    await ledger.close()
    await ledger.close()  # idempotent
    with pytest.raises(ManagedLedgerClosedError):
        await ledger.read(Position(0, 0), 1)
    with pytest.raises(ManagedLedgerClosedError):
        await ledger.open_cursor("c")
    with pytest.raises(ManagedLedgerClosedError):
        await ledger.trim()


@pytest_twisted.ensureDeferred
async def test_factory_returns_the_same_instance_while_open(world):
    factory = world.factory()
    first, second = factory.open(NAME), factory.open(NAME)
    a, b = await first, await second
    assert a is b
    assert await factory.open(NAME) is a
    assert len(world.info().ledgers) == 1
