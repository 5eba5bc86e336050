"""The kcat adapter's translation between records and kcat's input, output and errors.

kcat itself is exercised by the suite's cells (tests/compat/test_compat_suite_can_fail.py
runs it against kop); these tests pin the parts that must be exact for any data.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compat_tests.clients import kcat
from compat_tests.model import BrokerError, Record


def split_as_kcat_does(
    data: bytes, message_delimiter: bytes, key_delimiter: bytes, null_flag: bool
):
    """kcat's producer input loop: split at the message delimiter, skip empty lines, split
    a line at the first key delimiter (no delimiter: null key), -Z makes empty null."""
    records = []
    for line in data.split(message_delimiter)[:-1]:
        if not line:
            continue
        at = line.find(key_delimiter)
        if at < 0:
            key, value = None, line
        else:
            key, value = line[:at], line[at + len(key_delimiter) :]
            if null_flag:
                key, value = key or None, value or None
        records.append((key, value))
    return records


keys = st.one_of(st.none(), st.binary(min_size=1, max_size=40))
values = st.one_of(st.none(), st.binary(max_size=200))


@given(st.lists(st.tuples(keys, values), min_size=1, max_size=8))
def test_stdin_splits_back_into_exactly_the_records(pairs):
    records = [Record(key, value, partition=0) for key, value in pairs]
    for run in kcat._runs([r for r in records if kcat.unproducible_reason(r) is None]):
        data, message_delimiter, key_delimiter = kcat._stdin_for(run.records)
        null_flag = run.null_flag == kcat._NEEDS_NULL_FLAG
        assert split_as_kcat_does(data, message_delimiter, key_delimiter, null_flag) == [
            (r.key, r.value) for r in run.records
        ]
        assert b"\\" not in message_delimiter + key_delimiter  # kcat would re-decode escapes


def test_runs_keep_each_partitions_order_and_split_on_headers_and_nulls():
    a = Record(b"k", b"1", partition=0)
    b = Record(b"k", b"2", partition=1)
    c = Record(b"k", None, partition=0)  # needs -Z
    d = Record(b"k", b"", partition=0)  # must not have -Z
    e = Record(b"k", b"3", (("h", b"v"),), partition=0)
    runs = kcat._runs([a, b, c, d, e])
    assert [(run.partition, run.records) for run in runs] == [
        (0, [a, c]),
        (0, [d]),
        (0, [e]),
        (1, [b]),
    ]


@pytest.mark.parametrize(
    "record, reason",
    [
        (Record(None, b""), "null key and an empty value"),
        (Record(b"", None), "empty key and a null value"),
        (Record(b"k", b"v", (("a=b", b"v"),)), "-H name=value"),
        (Record(b"k", b"v", (("h", b"a\0b"),)), "-H name=value"),
        (Record(b"k", b"v", (("h", b"a=b,c"),)), None),
        (Record(None, None), None),
    ],
)
def test_what_kcat_cannot_produce_is_named(record, reason):
    found = kcat.unproducible_reason(record)
    assert (found is None) if reason is None else (reason in found)


@pytest.mark.parametrize("length", [0, 1, 127, 128, 1000, 1024, 4095, 4096, 4097, 70_001])
def test_padding_fills_whole_chunks_with_whole_empty_lines(length):
    delimiter = b"\x01" * kcat._DELIMITER_BYTES
    padding = kcat._padding_to_chunk(length, delimiter)
    assert (length + len(padding)) % kcat._KCAT_READ_SIZE == 0
    assert padding == delimiter * (len(padding) // len(delimiter))


def test_json_output_gives_back_raw_bytes():
    # kcat writes bytes into JSON strings as they are, escaping only control characters.
    line = (
        b'{"topic":"t","partition":2,"offset":7,"tstype":"create","ts":1700000000123,'
        b'"broker":0,"headers":["h","\xc3\xa9\xff","h","\\u0000"],'
        b'"key":"\xfe\xff\\"k","payload":null}'
    )
    record = kcat._record_from_json(line)
    assert record == Record(
        key=b'\xfe\xff"k',
        value=None,
        headers=(("h", b"\xc3\xa9\xff"), ("h", b"\x00")),
        timestamp=1700000000123,
        partition=2,
        offset=7,
    )


def test_broker_errors_get_kafka_names_and_others_keep_kcats_words():
    refused = kcat._first_error(
        b"% Delivery failed for message: Broker: Message size too large\n", 1
    )
    assert isinstance(refused, BrokerError) and refused.name == "MESSAGE_TOO_LARGE"
    local = kcat._first_error(
        b"%3|1795776251.734|FAIL|rdkafka#producer-1| [thrd:main]: 127.0.0.1:1/bootstrap: "
        b"Connect to ipv4#127.0.0.1:1 failed: Connection refused\n"
        b"% ERROR: Failed to acquire metadata: Local: Broker transport failure\n",
        1,
    )
    assert isinstance(local, kcat.KcatFailed)
    assert "Connection refused" in str(local) and "|FAIL|" not in str(local)
