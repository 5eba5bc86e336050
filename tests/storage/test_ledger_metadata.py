"""Ledger metadata JSON and the per-entry framing: round trips, and bad input refused clearly."""

from __future__ import annotations

import json

import pytest

from storage.ledger.entry_format import HEADER_SIZE, frame_entry, unframe_entry
from storage.ledger.errors import CorruptEntryError, LedgerMetadataError
from storage.ledger.metadata import LedgerMetadata, LedgerState, Segment


def sample(**changes) -> LedgerMetadata:
    fields = dict(
        ledger_id=7, ensemble_size=3, write_quorum=2, ack_quorum=2,
        ensembles=(Segment(0, ("a:1", "b:1", "c:1")), Segment(10, ("a:1", "d:1", "c:1"))),
        state=LedgerState.CLOSED, last_entry_id=19, length=2048, ctime=1700000000.5,
        custom={"owner": "topic-0"},
    )
    fields.update(changes)
    return LedgerMetadata(**fields)


def test_metadata_round_trips_through_json():
    metadata = sample()
    assert LedgerMetadata.from_json(metadata.to_json()) == metadata


def test_segment_for_finds_the_ensemble_holding_an_entry():
    metadata = sample()
    assert metadata.segment_for(0).first_entry_id == 0
    assert metadata.segment_for(9).first_entry_id == 0
    assert metadata.segment_for(10).nodes == ("a:1", "d:1", "c:1")
    assert metadata.segment_for(500).first_entry_id == 10
    assert metadata.all_nodes() == {"a:1", "b:1", "c:1", "d:1"}


def test_ensemble_change_appends_a_segment_or_replaces_the_current_one_in_place():
    metadata = sample(state=LedgerState.OPEN)
    later = metadata.with_ensemble_change(15, {0: "e:1"})
    assert later.ensembles[-1] == Segment(15, ("e:1", "d:1", "c:1"))
    assert len(later.ensembles) == 3
    in_place = metadata.with_ensemble_change(10, {1: "e:1"})
    assert in_place.ensembles == (metadata.ensembles[0], Segment(10, ("a:1", "e:1", "c:1")))
    with pytest.raises(ValueError, match="precedes"):
        metadata.with_ensemble_change(5, {0: "e:1"})


@pytest.mark.parametrize("raw, message", [
    (b"\xff\xfe", "not valid JSON"),
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b'{"format": 2}', "unsupported ledger metadata format 2"),
    (b'{"format": 1, "ledger_id": 7}', "malformed"),
])
def test_undecodable_metadata_is_refused_with_a_clear_error(raw, message):
    with pytest.raises(LedgerMetadataError, match=message):
        LedgerMetadata.from_json(raw)


@pytest.mark.parametrize("field, value, message", [
    ("ledger_id", "7", "malformed"),
    ("ack_quorum", 3, "malformed"),  # Qa > Qw
    ("state", "HALF_OPEN", "malformed"),
    ("ensembles", [], "no ensemble"),
    ("ensembles", [[0, ["a:1", "b:1"]]], "does not have 3 nodes"),
    ("ensembles", [[0, ["a", "b", "c"]], [0, ["a", "b", "d"]]], "increasing entry order"),
    ("ensembles", [[5, ["a", "b", "c"]]], "must start at 0"),
    ("ensembles", [[0, ["a", "b", 3]]], "malformed"),
    ("custom", {"k": 1}, "malformed"),
])
def test_inconsistent_metadata_is_refused(field, value, message):
    document = json.loads(sample().to_json())
    document[field] = value
    with pytest.raises(LedgerMetadataError, match=message):
        LedgerMetadata.from_json(json.dumps(document).encode())


def test_constructing_metadata_with_impossible_quorums_is_a_value_error():
    with pytest.raises(ValueError):
        sample(ensemble_size=2, write_quorum=3)


def test_entry_framing_round_trips():
    stored = frame_entry(7, 3, 1000, b"payload")
    assert len(stored) == HEADER_SIZE + len(b"payload")
    assert unframe_entry(7, 3, stored) == (1000, b"payload")
    assert unframe_entry(7, 4, frame_entry(7, 4, 0, b"")) == (0, b"")


@pytest.mark.parametrize("position", [0, 1, 5, 9, 12, 13, 16])
def test_any_damaged_byte_is_detected(position):
    stored = bytearray(frame_entry(7, 3, 1000, b"payload"))
    stored[position] ^= 0x40
    with pytest.raises(CorruptEntryError):
        unframe_entry(7, 3, bytes(stored))


def test_a_copy_of_another_entry_or_ledger_is_detected():
    stored = frame_entry(7, 3, 1000, b"payload")
    with pytest.raises(CorruptEntryError, match="checksum"):
        unframe_entry(7, 4, stored)
    with pytest.raises(CorruptEntryError, match="checksum"):
        unframe_entry(8, 3, stored)


def test_truncated_entries_are_detected():
    with pytest.raises(CorruptEntryError, match="shorter than"):
        unframe_entry(7, 3, b"\x01\x00")
