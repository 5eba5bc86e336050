"""Unit tests of the managed ledger's pure parts: entry header, metadata JSON, entry cache,
retention rule, configuration checks."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.managed_ledger import CorruptEntryError, ManagedLedgerConfig, Position
from storage.managed_ledger.cache import ENTRY_OVERHEAD_BYTES, EntryCache
from storage.managed_ledger.entry_format import (
    HEADER_SIZE,
    decode_entry,
    decode_index,
    encode_entry,
)
from storage.managed_ledger.errors import ManagedLedgerMetadataError
from storage.managed_ledger.info import LedgerInfo, ManagedLedgerInfo
from storage.managed_ledger.position import Entry
from storage.managed_ledger.retention import ledgers_to_delete

# ---------------------------------------------------------------- entry format


@given(st.integers(-(2**63), 2**63 - 1), st.binary(max_size=200))
def test_entry_header_round_trips(index, data):
    stored = encode_entry(index, data)
    assert len(stored) == HEADER_SIZE + len(data)
    assert decode_entry(stored) == (index, data)
    assert decode_index(stored) == index


@pytest.mark.parametrize("stored, message", [
    (b"", "shorter than"),
    (b"\x01\x00\x00", "shorter than"),
    (b"\x02" + bytes(8) + b"data", "unknown entry format 2"),
])
def test_bad_entry_headers_are_clear_errors(stored, message):
    with pytest.raises(CorruptEntryError, match=message):
        decode_entry(stored, "entry 5:7")


@given(st.binary(max_size=40))
def test_decoding_arbitrary_bytes_returns_or_raises_corrupt_entry(stored):
    try:
        index, data = decode_entry(stored)
    except CorruptEntryError:
        return
    assert encode_entry(index, data) == stored


# ---------------------------------------------------------------- metadata JSON

SAMPLE = ManagedLedgerInfo(
    ledgers=(
        LedgerInfo(3, created=10.0, entries=5, size=500, first_index=0, closed=20.0),
        LedgerInfo(9, created=20.0),
    ),
    cursors={"group": Position(3, 4)},
    properties={"k": "v"},
    log_start=Position(3, 1),
)


def test_info_json_round_trips():
    assert ManagedLedgerInfo.from_json(SAMPLE.to_json(), "x") == SAMPLE
    assert ManagedLedgerInfo.from_json(ManagedLedgerInfo().to_json(), "x") == ManagedLedgerInfo()


def _mutated(**changes) -> bytes:
    document = json.loads(SAMPLE.to_json())
    document.update(changes)
    return json.dumps(document).encode()


@pytest.mark.parametrize("raw, message", [
    (b"\xff\xfe", "not valid JSON"),
    (b"[]", "top level is not an object"),
    (_mutated(format=2), "unsupported format 2"),
    (_mutated(ledgers=[{"id": 1}]), "malformed"),
    (_mutated(ledgers=[{"id": "1", "entries": None, "size": None, "first_index": None,
                        "created": 0, "closed": None}]), "ledger id should be an integer"),
    (_mutated(ledgers=[{"id": 5, "entries": 1, "size": 1, "first_index": 0, "created": 0,
                        "closed": 1},
                       {"id": 4, "entries": None, "size": None, "first_index": None,
                        "created": 0, "closed": None}]), "not strictly increasing"),
    (_mutated(ledgers=[{"id": 5, "entries": None, "size": None, "first_index": None,
                        "created": 0, "closed": 1}]), "lacks entries or size"),
    (_mutated(cursors={"c": [1]}), "not \\[ledger id, entry id\\]"),
    (_mutated(cursors={"c": [1, True]}), "should be an integer"),
    (_mutated(properties={"k": 1}), "should be str"),
    (_mutated(log_start="1:2"), "should be list"),
])
def test_malformed_info_is_refused_with_the_reason(raw, message):
    with pytest.raises(ManagedLedgerMetadataError, match=f"/ml/x: .*{message}"):
        ManagedLedgerInfo.from_json(raw, "/ml/x")


# ---------------------------------------------------------------- entry cache


def _entry(ledger_id: int, entry_id: int, index: int, size: int = 10) -> Entry:
    return Entry(Position(ledger_id, entry_id), index, b"x" * size)


def test_cache_reads_the_tail_and_declines_what_it_does_not_hold():
    cache = EntryCache(max_bytes=3 * (10 + ENTRY_OVERHEAD_BYTES))
    entries = [_entry(1, i, i) for i in range(3)] + [_entry(2, 0, 3), _entry(2, 1, 4)]
    for entry in entries:
        cache.add(entry)
    assert len(cache) == 3
    assert cache.first_position == Position(1, 2)
    assert cache.read(Position(1, 1), 10, None) is None
    assert cache.read(Position(1, 2), 10, None) == entries[2:]
    assert cache.read(Position(1, 5), 10, None) == entries[3:]  # no entry 1:5 -> next
    assert cache.read(Position(2, 2), 10, None) == []
    assert cache.read(Position(1, 2), 2, None) == entries[2:4]
    assert cache.read(Position(1, 2), 10, 15) == entries[2:3]
    assert cache.read(Position(1, 2), 10, 5) == entries[2:3]  # first entry always given


def test_cache_finds_by_index_and_evicts():
    cache = EntryCache(max_bytes=10**6)
    for i in range(10):
        cache.add(_entry(1, i, 100 + 10 * i))
    assert cache.last_at_or_below(99) is None
    assert cache.last_at_or_below(100).position == Position(1, 0)
    assert cache.last_at_or_below(155).position == Position(1, 5)
    assert cache.last_at_or_below(10**9).position == Position(1, 9)
    cache.evict_before(Position(1, 7))
    assert cache.first_position == Position(1, 7)
    assert cache.bytes_used == 3 * (10 + ENTRY_OVERHEAD_BYTES)
    cache.resize(0)
    assert len(cache) == 0 and cache.bytes_used == 0
    cache.add(_entry(1, 10, 200))
    assert len(cache) == 0


@given(st.lists(st.integers(0, 3000), max_size=60), st.integers(0, 20_000))
def test_cache_stays_within_its_budget_and_contiguous(sizes, budget):
    cache = EntryCache(max_bytes=budget)
    entries = [_entry(1, i, i, size) for i, size in enumerate(sizes)]
    for entry in entries:
        cache.add(entry)
        assert cache.bytes_used <= budget
    held = cache.read(cache.first_position, 10**6, None) if len(cache) else []
    assert held == entries[len(entries) - len(held):]


# ---------------------------------------------------------------- retention rule

NOW = 1000.0


def _chain(*sizes: int, closed_at: float = 0.0) -> list[LedgerInfo]:
    ledgers = [LedgerInfo(i + 1, created=0.0, entries=2, size=size, first_index=2 * i,
                          closed=closed_at) for i, size in enumerate(sizes)]
    current = LedgerInfo(len(sizes) + 1, created=0.0)
    return [*ledgers, current]


def _ids(ledgers: list[LedgerInfo]) -> list[int]:
    return [ledger.ledger_id for ledger in ledgers]


def test_retention_none_keeps_everything():
    chain = _chain(10, 10, 10)
    assert ledgers_to_delete(chain, now=NOW, retention_seconds=None, retention_bytes=None) == []


def test_retention_by_time_is_a_prefix_and_spares_the_current_ledger():
    chain = _chain(10, 10, 10)
    chain[1] = LedgerInfo(2, created=0.0, entries=2, size=10, first_index=2, closed=NOW)
    doomed = ledgers_to_delete(chain, now=NOW, retention_seconds=100, retention_bytes=None)
    assert _ids(doomed) == [1]  # ledger 3 is old too, but ledger 2 before it is young
    everything = ledgers_to_delete(_chain(10), now=NOW, retention_seconds=0,
                                   retention_bytes=None)
    assert _ids(everything) == [1]


def test_retention_by_size_counts_the_current_ledger():
    chain = _chain(10, 10, 10)
    doomed = ledgers_to_delete(chain, now=NOW, retention_seconds=None, retention_bytes=15,
                               current_ledger_bytes=5)
    assert _ids(doomed) == [1, 2]  # 35 -> 25 -> 15 (keeps >= 15)
    doomed = ledgers_to_delete(chain, now=NOW, retention_seconds=None, retention_bytes=16,
                               current_ledger_bytes=5)
    assert _ids(doomed) == [1]


def test_retention_waits_for_the_slowest_cursor():
    chain = _chain(10, 10, 10)
    def doomed(*cursors):
        return _ids(ledgers_to_delete(chain, now=NOW, retention_seconds=0, retention_bytes=None,
                                      cursor_positions=cursors))
    assert doomed(Position(1, 0)) == []
    assert doomed(Position(1, 1)) == [1]
    assert doomed(Position(3, 0), Position(2, 1)) == [1, 2]
    assert doomed(Position(9, 0)) == [1, 2, 3]


def test_ledgers_before_the_log_start_or_empty_go_regardless_of_retention():
    chain = _chain(10, 10, 10)
    chain[0] = LedgerInfo(1, created=0.0, entries=0, size=0, closed=0.0)
    doomed = ledgers_to_delete(chain, now=NOW, retention_seconds=None, retention_bytes=None,
                               log_start=Position(3, 0), cursor_positions=[Position(1, -1)])
    assert _ids(doomed) == [1, 2]


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize("settings, message", [
    (dict(ensemble_size=2, write_quorum=3), "ack_quorum <= write_quorum <= ensemble_size"),
    (dict(ack_quorum=0), "ack_quorum"),
    (dict(max_entries_per_ledger=0), "max_entries_per_ledger must be positive"),
    (dict(max_ledger_age_seconds=-1), "max_ledger_age_seconds must be positive"),
    (dict(retention_bytes=-5), "retention_bytes must not be negative"),
    (dict(cache_bytes=-1), "cache_bytes must not be negative"),
])
def test_inconsistent_config_is_refused(settings, message):
    with pytest.raises(ValueError, match=message):
        ManagedLedgerConfig(**settings)
