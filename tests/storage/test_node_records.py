"""On-disk formats of the storage node: journal records, the crash scanner, segment headers
and index files. Pure functions on bytes; no reactor."""

from __future__ import annotations

import pytest

from storage.node.errors import CorruptEntryError, StorageFormatError
from storage.node.records import (
    RECORD_HEADER_BYTES,
    SEGMENT_HEADER_BYTES,
    RecordKind,
    check_segment_header,
    encode_record_header,
    encode_segment_header,
    payload_of_entry,
    read_record_info,
    scan_records,
)
from storage.node.segment_index import (
    decode_segment_index,
    encode_segment_index,
    read_segment_index,
    write_segment_index,
)

START = SEGMENT_HEADER_BYTES


def entry(ledger_id: int, entry_id: int, payload: bytes, lac: int = -1) -> bytes:
    return encode_record_header(RecordKind.ADD, ledger_id, entry_id, lac, payload) + payload


def segment_of(*records: bytes) -> bytes:
    return encode_segment_header(1) + b"".join(records)


def flip(data: bytes, offset: int) -> bytes:
    return data[:offset] + bytes([data[offset] ^ 0xFF]) + data[offset + 1:]


def test_entry_record_round_trips():
    record = entry(7, 3, b"hello", lac=2)
    assert payload_of_entry(record, 7, 3, "test") == b"hello"
    info = read_record_info(record)
    assert (info.kind, info.ledger_id, info.entry_id, info.last_add_confirmed, info.length) == (
        RecordKind.ADD, 7, 3, 2, RECORD_HEADER_BYTES + 5)


@pytest.mark.parametrize("offset", [0, 5, 12, 20, 30, RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + 4])
def test_any_flipped_byte_makes_the_entry_corrupt_with_a_clear_message(offset):
    record = flip(entry(7, 3, b"hello"), offset)
    with pytest.raises(CorruptEntryError, match="entry 3 of ledger 7 at somewhere is corrupt"):
        payload_of_entry(record, 7, 3, "somewhere")


def test_an_index_pointing_at_the_wrong_record_is_reported_not_served():
    with pytest.raises(CorruptEntryError, match="header names record kind 1, ledger 7, entry 4"):
        payload_of_entry(entry(7, 4, b"x"), 7, 3, "here")
    with pytest.raises(CorruptEntryError, match="does not match"):
        payload_of_entry(entry(7, 3, b"xyz")[:-1], 7, 3, "here")


def test_scan_reads_every_record_of_an_intact_segment():
    records = [entry(1, i, bytes([i]) * i) for i in range(10)]
    records.append(encode_record_header(RecordKind.FENCE, 1, -1, -1))
    data = segment_of(*records)
    result = scan_records(data, START)
    assert [(r.kind, r.entry_id) for r in result.records] == (
        [(RecordKind.ADD, i) for i in range(10)] + [(RecordKind.FENCE, -1)])
    assert result.valid_end == len(data)
    assert not result.corrupt_entries and not result.damaged_ranges


@pytest.mark.parametrize("cut", [1, RECORD_HEADER_BYTES - 1, RECORD_HEADER_BYTES + 3])
def test_scan_stops_before_a_torn_tail(cut):
    whole = segment_of(entry(1, 0, b"a" * 10), entry(1, 1, b"b" * 10))
    torn = whole + entry(1, 2, b"c" * 10)[:cut]
    result = scan_records(torn, START)
    assert [r.entry_id for r in result.records] == [0, 1]
    assert result.valid_end == len(whole)


def test_scan_treats_a_last_record_with_a_bad_payload_as_torn():
    whole = segment_of(entry(1, 0, b"a" * 10))
    torn = flip(whole + entry(1, 1, b"b" * 10), len(whole) + RECORD_HEADER_BYTES + 2)
    result = scan_records(torn, START)
    assert [r.entry_id for r in result.records] == [0]
    assert result.valid_end == len(whole)


def test_scan_keeps_a_corrupt_payload_in_the_middle_so_reads_can_report_it():
    first = entry(1, 0, b"a" * 10)
    data = flip(segment_of(first, entry(1, 1, b"b" * 10), entry(1, 2, b"c" * 10)),
                START + len(first) + RECORD_HEADER_BYTES + 3)
    result = scan_records(data, START)
    assert [r.entry_id for r in result.records] == [0, 1, 2]
    assert [r.entry_id for r in result.corrupt_entries] == [1]
    assert result.valid_end == len(data)


def test_scan_skips_a_damaged_header_in_the_middle_and_finds_what_follows():
    first = entry(1, 0, b"a" * 10)
    data = flip(segment_of(first, entry(1, 1, b"b" * 10), entry(1, 2, b"c" * 10)),
                START + len(first) + 20)
    result = scan_records(data, START)
    assert [r.entry_id for r in result.records] == [0, 2]
    second_start = START + len(first)
    assert result.damaged_ranges == [(second_start, second_start + len(entry(1, 1, b"b" * 10)))]
    assert result.valid_end == len(data)


def test_scan_of_zeros_after_the_records_finds_the_end():
    data = segment_of(entry(1, 0, b"a")) + bytes(4096)
    assert scan_records(data, START).valid_end == len(data) - 4096


def test_segment_header_identifies_kop_segments_and_their_version():
    assert check_segment_header(encode_segment_header(42), "f") == 42
    with pytest.raises(StorageFormatError, match="not a kop journal segment"):
        check_segment_header(b"GARBAGE!" + bytes(16), "f")
    with pytest.raises(StorageFormatError, match="too short"):
        check_segment_header(b"KOP", "f")
    with pytest.raises(StorageFormatError, match="checksum"):
        check_segment_header(flip(encode_segment_header(42), 10), "f")


def test_segment_header_of_an_unknown_version_is_refused_with_a_clear_error():
    import struct

    from crc32c import crc32c

    head = struct.pack("<8sIQ", b"KOPJSEG\x00", 9, 1)
    with pytest.raises(StorageFormatError, match="format version 9; this node reads version 1"):
        check_segment_header(head + struct.pack("<I", crc32c(head)), "f")


def test_index_file_round_trips(tmp_path):
    records = scan_records(segment_of(entry(1, 0, b"a"), entry(2, 5, b"bb", lac=4)), START).records
    path = tmp_path / "1.idx"
    write_segment_index(path, 1, 500, records)
    assert read_segment_index(path, 1, 500) == records
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("damage", ["truncate", "flip", "other segment", "other end"])
def test_an_untrustworthy_index_file_is_ignored_so_the_segment_is_scanned(damage, caplog):
    records = scan_records(segment_of(entry(1, 0, b"a")), START).records
    data = encode_segment_index(1, 500, records)
    segment, end = 1, 500
    if damage == "truncate":
        data = data[:-3]
    elif damage == "flip":
        data = flip(data, 30)
    elif damage == "other segment":
        segment = 2
    else:
        end = 501
    assert decode_segment_index(data, segment, end, "x.idx") is None
    assert "scanning the segment" in caplog.text


def test_a_missing_index_file_means_scan(tmp_path):
    assert read_segment_index(tmp_path / "none.idx", 1, 10) is None
