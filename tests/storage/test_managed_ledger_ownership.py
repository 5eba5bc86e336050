"""Managed ledger unit tests on fakes: single writer, reopen/recovery, fencing, metadata
that is malformed or whose writes fail."""

from __future__ import annotations

import pytest
import pytest_twisted
from test_managed_ledger import NAME, World, append_all, payloads
from twisted.internet import defer

from storage.ledger.errors import LedgerReadError
from storage.managed_ledger import (
    ManagedLedgerConfig,
    ManagedLedgerError,
    ManagedLedgerFencedError,
    ManagedLedgerMetadataError,
    Position,
    State,
)
from storage.metadata.api import Versioned
from storage.metadata.errors import ConnectionLossError


@pytest.fixture
def world() -> World:
    return World()


@pytest_twisted.ensureDeferred
async def test_reopen_recovers_every_acknowledged_entry_and_starts_a_new_ledger(world):
    writer = await world.factory().open(NAME, ManagedLedgerConfig(max_entries_per_ledger=4))
    data = payloads(10)
    positions = await append_all(writer, data, first_index=50)
    last_ledger = positions[-1].ledger_id

    # A new process (the first one "crashed": it never closed anything).
    reopened = await world.factory().open(NAME, ManagedLedgerConfig(cache_bytes=0))
    entries = await reopened.read(reopened.first_position, 100)
    assert [e.data for e in entries] == data
    assert [e.position for e in entries] == positions
    assert reopened.last_confirmed_position == positions[-1]
    assert reopened.ledger_ids[-1] > last_ledger
    recovered = next(lg for lg in world.info().ledgers if lg.ledger_id == last_ledger)
    assert (recovered.entries, recovered.first_index, recovered.is_closed) == (2, 58, True)
    assert await reopened.find(55) == positions[5]
    next_position = await reopened.append(b"more", 60)
    assert next_position == Position(reopened.ledger_ids[-1], 0)


@pytest_twisted.ensureDeferred
async def test_second_opener_fences_the_first_writer(world):
    first = await world.factory().open(NAME)
    acknowledged = await append_all(first, payloads(3))

    second = await world.factory().open(NAME)
    with pytest.raises(ManagedLedgerFencedError, match="fenced"):
        await first.append(b"late", 3)
    assert first.state is State.STOPPED
    with pytest.raises(ManagedLedgerFencedError):
        await first.append(b"later", 4)  # and it stays stopped
    entries = await second.read(second.first_position, 10)
    assert [e.position for e in entries] == acknowledged
    assert await second.append(b"new owner", 3) > acknowledged[-1]


@pytest_twisted.ensureDeferred
async def test_deposed_writer_loses_its_metadata_updates(world):
    first = await world.factory().open(NAME)
    cursor = await first.open_cursor("c")
    await first.append(b"a", 0)
    await world.factory().open(NAME)
    with pytest.raises(ManagedLedgerFencedError):
        await cursor.mark_delete(first.last_confirmed_position)
    with pytest.raises(ManagedLedgerFencedError):
        await first.set_properties({"k": "v"})


@pytest_twisted.ensureDeferred
async def test_in_flight_appends_of_a_fenced_writer_fail_or_are_kept(world):
    """Appends the old writer had sent when fenced either fail (fenced) or were
    acknowledged — and then the new owner has them."""
    first = await world.factory().open(NAME)
    world.ledgers.hold_appends = True
    in_flight = [first.append(f"e{i}".encode(), i) for i in range(3)]
    world.ledgers.hold_appends = False
    second = await world.factory().open(NAME)
    world.ledgers.release_appends()
    outcomes = await defer.DeferredList(in_flight, consumeErrors=True)
    acknowledged = [value for ok, value in outcomes if ok]
    entries = await second.read(second.first_position, 10)
    assert set(acknowledged) <= {e.position for e in entries}
    with pytest.raises(ManagedLedgerFencedError):
        await first.append(b"x", 5)


@pytest_twisted.ensureDeferred
async def test_writer_fenced_at_rollover_stops_and_deletes_the_ledger_it_made(world):
    first = await world.factory().open(NAME, ManagedLedgerConfig(max_entries_per_ledger=2))
    await append_all(first, payloads(2))  # full: the next append rolls over
    second = await world.factory().open(NAME)
    ledgers_before = set(world.ledgers.ledgers)
    with pytest.raises(ManagedLedgerFencedError):
        await first.append(b"c", 2)
    assert set(world.ledgers.ledgers) == ledgers_before
    assert first.state is State.STOPPED
    assert second.state is State.OPEN


@pytest_twisted.ensureDeferred
async def test_lost_compare_and_set_at_rollover_stops_the_writer(world):
    first = await world.factory().open(NAME, ManagedLedgerConfig(max_entries_per_ledger=2))
    await append_all(first, payloads(2))
    path = f"/managed-ledgers/{NAME}"
    node = world.store.nodes[path]
    world.store.nodes[path] = Versioned(node.value, node.version + 1)  # someone wrote it
    ledgers_before = set(world.ledgers.ledgers)
    with pytest.raises(ManagedLedgerFencedError, match="changed by someone else"):
        await first.append(b"c", 2)
    assert set(world.ledgers.ledgers) == ledgers_before
    assert first.state is State.STOPPED


@pytest_twisted.ensureDeferred
async def test_open_starts_over_when_the_old_writer_rolls_over_concurrently(world):
    first = await world.factory().open(NAME)
    await first.append(b"a", 0)
    # Simulate the race: right after the new opener read the metadata, the old writer
    # changes it (here: a cursor is added). The opener's CAS loses and it starts over.
    store = world.store
    real_get = store.get
    raced = []

    def racing_get(path):
        result = real_get(path)
        if path.endswith(NAME) and not raced:
            raced.append(True)
            first.open_cursor("sneaky")
        return result

    store.get = racing_get
    second = await world.factory().open(NAME)
    assert raced
    assert "sneaky" in second.cursor_names
    assert [e.data for e in await second.read(second.first_position, 5)] == [b"a"]
    recorded = world.info().ledgers
    assert sum(1 for lg in recorded if not lg.is_closed) == 1


@pytest_twisted.ensureDeferred
async def test_reopen_drops_an_empty_last_ledger(world):
    first = await world.factory().open(NAME)
    await append_all(first, payloads(2))
    await world.factory().open(NAME)  # leaves a new empty ledger behind ("crash")
    empty_ledger = world.info().ledgers[-1].ledger_id
    third = await world.factory().open(NAME)
    assert empty_ledger not in third.ledger_ids
    assert empty_ledger in world.ledgers.deleted
    assert len(await third.read(third.first_position, 10)) == 2


@pytest_twisted.ensureDeferred
async def test_unknown_outcome_of_a_metadata_write_is_resolved_by_reading_back(world):
    ledger = await world.factory().open(NAME)
    cursor = await ledger.open_cursor("c")
    position = await ledger.append(b"a", 0)
    world.store.fail_next_set = ConnectionLossError("connection dropped")
    world.store.applied_anyway = True
    await cursor.mark_delete(position)  # it landed: no error, no fencing
    assert cursor.mark_delete_position == position
    world.store.fail_next_set = ConnectionLossError("connection dropped")
    world.store.applied_anyway = False
    await ledger.set_properties({"k": "v"})  # it did not land: written again
    assert world.info().properties == {"k": "v"}
    assert ledger.state is State.OPEN


@pytest_twisted.ensureDeferred
async def test_store_unreachable_stops_the_writer_with_a_clear_error(world):
    ledger = await world.factory().open(NAME)
    world.store.fail_next_set = ConnectionLossError("connection dropped")

    def unreachable(path):
        return defer.fail(ConnectionLossError("still down"))

    world.store.get = unreachable
    with pytest.raises(ManagedLedgerError, match="metadata store unavailable"):
        await ledger.set_properties({"k": "v"})
    assert ledger.state is State.STOPPED


@pytest_twisted.ensureDeferred
async def test_malformed_metadata_fails_open_clearly_and_is_left_untouched(world):
    path = f"/managed-ledgers/{NAME}"
    for garbage in (b"{not json", b'{"format": 99}', b'{"format": 1, "ledgers": "x"}',
                    b'{"format":1,"ledgers":[{"id":1,"entries":null,"size":null,'
                    b'"first_index":null,"created":0,"closed":null},{"id":2,"entries":null,'
                    b'"size":null,"first_index":null,"created":0,"closed":null}],'
                    b'"cursors":{},"properties":{},"log_start":null}'):
        world.store.nodes[path] = Versioned(garbage, 3)
        with pytest.raises(ManagedLedgerMetadataError, match=NAME):
            await world.factory().open(NAME)
        assert world.store.nodes[path] == Versioned(garbage, 3)
        assert world.ledgers.ledgers == {}


@pytest_twisted.ensureDeferred
async def test_close_failure_is_resolved_by_recovering_the_ledger(world):
    ledger = await world.factory().open(NAME, ManagedLedgerConfig(max_entries_per_ledger=2))
    await append_all(ledger, payloads(2))
    world.ledgers.fail_next_close = LedgerReadError("nodes unreachable")
    third = await ledger.append(b"c", 2)
    assert third.entry_id == 0
    assert ledger.state is State.OPEN
    sealed = world.info().ledgers[0]
    assert (sealed.entries, sealed.is_closed) == (2, True)
    assert world.ledgers.ledger_of(sealed.ledger_id).closed


@pytest_twisted.ensureDeferred
async def test_entry_whose_append_failed_may_survive_recovery_and_reads_stay_whole(world):
    ledger = await world.factory().open(NAME)
    await ledger.append(b"a", 0)
    assert [e.data for e in await ledger.read(ledger.first_position, 10)] == [b"a"]
    world.ledgers.hold_appends = True
    lost_ack = ledger.append(b"b", 1)
    world.ledgers.hold_appends = False
    world.ledgers.fail_next_close = LedgerReadError("nodes unreachable")
    world.ledgers.release_appends(error=LedgerReadError("ack lost"))
    with pytest.raises(ManagedLedgerError, match="ack lost"):
        await lost_ack
    # The rollover's close failed, recovery sealed the ledger with "b" in it (it reached
    # the nodes). The log says so, and reads do not skip it.
    await ledger.append(b"c", 1)
    entries = await ledger.read(ledger.first_position, 10)
    assert [e.data for e in entries] == [b"a", b"b", b"c"]
    assert ledger.entry_count == 3
