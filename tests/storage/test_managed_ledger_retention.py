"""Managed ledger unit tests on fakes: durable cursors, retention by time and size,
truncate_before."""

from __future__ import annotations

import pytest
import pytest_twisted
from test_managed_ledger import NAME, World, append_all, payloads

from storage.managed_ledger import (
    CursorNotFoundError,
    InvalidNameError,
    ManagedLedgerConfig,
    Position,
)
from storage.managed_ledger.entry_format import HEADER_SIZE


@pytest.fixture
def world() -> World:
    return World()


def small_ledgers(**overrides) -> ManagedLedgerConfig:
    # Maintenance runs rarely unless a test wants it: tests call trim() themselves.
    settings = dict(max_entries_per_ledger=2, cache_bytes=0, maintenance_interval_seconds=1e6)
    settings.update(overrides)
    return ManagedLedgerConfig(**settings)


@pytest_twisted.ensureDeferred
async def test_cursor_starts_at_the_end_and_survives_reopen(world):
    ledger = await world.factory().open(NAME)
    positions = await append_all(ledger, payloads(3))
    cursor = await ledger.open_cursor("group-a")
    assert cursor.mark_delete_position == positions[-1]
    await cursor.mark_delete(positions[1])
    assert cursor.mark_delete_position == positions[1]

    reopened = await world.factory().open(NAME)
    again = await reopened.open_cursor("group-a")
    assert again.mark_delete_position == positions[1]
    assert reopened.cursor_names == ["group-a"]


@pytest_twisted.ensureDeferred
async def test_cursor_on_an_empty_ledger_is_before_the_first_entry(world):
    ledger = await world.factory().open(NAME)
    cursor = await ledger.open_cursor("c")
    first = await ledger.append(b"a", 0)
    assert cursor.mark_delete_position < first


@pytest_twisted.ensureDeferred
async def test_mark_delete_refuses_positions_past_the_end_and_keeps_call_order(world):
    ledger = await world.factory().open(NAME)
    positions = await append_all(ledger, payloads(3))
    cursor = await ledger.open_cursor("c")
    with pytest.raises(ValueError, match="last confirmed entry"):
        await cursor.mark_delete(Position(positions[-1].ledger_id, 99))
    writes_before = world.store.set_count
    marks = [cursor.mark_delete(p) for p in positions]
    for mark in marks:
        await mark
    assert cursor.mark_delete_position == positions[-1]
    assert world.store.set_count - writes_before <= len(positions)


@pytest_twisted.ensureDeferred
async def test_delete_cursor(world):
    ledger = await world.factory().open(NAME)
    cursor = await ledger.open_cursor("c")
    await ledger.delete_cursor("c")
    assert ledger.cursor_names == []
    with pytest.raises(CursorNotFoundError):
        await cursor.mark_delete(ledger.last_confirmed_position)
    with pytest.raises(CursorNotFoundError):
        await ledger.delete_cursor("c")
    with pytest.raises(InvalidNameError):
        await ledger.open_cursor("")
    reopened = await world.factory().open(NAME)
    assert reopened.cursor_names == []


@pytest_twisted.ensureDeferred
async def test_time_retention_deletes_old_ledgers_only_behind_every_cursor(world):
    config = small_ledgers(retention_seconds=100, maintenance_interval_seconds=10)
    ledger = await world.factory().open(NAME, config)
    cursor = await ledger.open_cursor("slow")
    await cursor.mark_delete(Position(0, 0))  # way behind: holds everything
    positions = await append_all(ledger, payloads(7))  # ledgers: 2 + 2 + 2 + 1 (current)
    world.clock.advance(101)
    assert await ledger.trim() == 0
    assert len(ledger.ledger_ids) == 4
    await cursor.mark_delete(positions[2])  # consumed ledger 1 and half of ledger 2
    assert await ledger.trim() == 1
    assert ledger.first_position == positions[2]
    await cursor.mark_delete(positions[6])
    world.clock.advance(11)  # maintenance applies retention by itself
    assert ledger.first_position == positions[6]
    assert len(ledger.ledger_ids) == 1  # the current ledger is never deleted
    assert sorted(world.ledgers.deleted) == sorted({p.ledger_id for p in positions[:6]})
    assert [e.data for e in await ledger.read(Position(0, 0), 10)] == [payloads(7)[6]]
    assert ledger.entry_count == 1


@pytest_twisted.ensureDeferred
async def test_time_retention_keeps_young_ledgers(world):
    ledger = await world.factory().open(NAME, small_ledgers(retention_seconds=100))
    await append_all(ledger, payloads(3))
    world.clock.advance(50)
    await append_all(ledger, payloads(3), first_index=3)
    world.clock.advance(55)  # first ledger is 105 s old; the second closed 55 s ago
    assert await ledger.trim() == 1
    assert ledger.entry_count == 4


@pytest_twisted.ensureDeferred
async def test_size_retention_keeps_at_least_the_limit(world):
    entry_bytes = 100 + HEADER_SIZE
    ledger = await world.factory().open(NAME, small_ledgers(retention_bytes=5 * entry_bytes))
    await append_all(ledger, payloads(9, size=100))  # 4 closed ledgers of 2 + current 1
    assert ledger.total_bytes == 9 * entry_bytes
    assert await ledger.trim() == 2  # 9 -> 7 -> 5 entries' worth; 3 would be below
    assert ledger.total_bytes == 5 * entry_bytes
    assert ledger.entry_count == 5
    assert await ledger.trim() == 0


@pytest_twisted.ensureDeferred
async def test_no_retention_keeps_everything(world):
    ledger = await world.factory().open(NAME, small_ledgers())
    await append_all(ledger, payloads(9))
    world.clock.advance(10**9)
    assert await ledger.trim() == 0
    assert ledger.entry_count == 9


@pytest_twisted.ensureDeferred
async def test_truncate_before_moves_the_start_and_deletes_whole_ledgers(world):
    ledger = await world.factory().open(NAME, small_ledgers())
    positions = await append_all(ledger, payloads(7), first_index=1000)
    await ledger.truncate_before(positions[3])
    assert ledger.first_position == positions[3]
    assert ledger.entry_count == 4
    assert positions[0].ledger_id in world.ledgers.deleted
    assert positions[2].ledger_id not in world.ledgers.deleted  # holds the new start
    entries = await ledger.read(Position(0, 0), 10)
    assert [e.position for e in entries] == positions[3:]
    assert await ledger.find(1002) is None  # now before the log
    assert await ledger.find(1003) == positions[3]
    await ledger.truncate_before(positions[1])  # backwards: nothing happens
    assert ledger.first_position == positions[3]

    reopened = await world.factory().open(NAME, small_ledgers())
    assert reopened.first_position == positions[3]
    assert reopened.entry_count == 4


@pytest_twisted.ensureDeferred
async def test_truncate_everything_and_refuse_beyond_the_end(world):
    ledger = await world.factory().open(NAME, small_ledgers())
    positions = await append_all(ledger, payloads(3))
    end = Position(positions[-1].ledger_id, positions[-1].entry_id + 1)
    with pytest.raises(ValueError, match="log ends at"):
        await ledger.truncate_before(Position(end.ledger_id, end.entry_id + 1))
    await ledger.truncate_before(end)
    assert ledger.entry_count == 0
    assert ledger.first_position > ledger.last_confirmed_position
    assert await ledger.read(Position(0, 0), 10) == []
    new = await ledger.append(b"after", 3)
    assert ledger.first_position == new == ledger.last_confirmed_position
