"""Bad bytes on one connection close that connection only; kop and its data carry on."""

from __future__ import annotations

import random
import struct

import pytest

from tests.integration.clients import confluent_consume, confluent_produce
from tests.integration.raw import RawConnection, produce_raw
from wire.generated.error_codes import ErrorCode
from wire.messages import ApiVersionsRequest
from wire.records.record import BatchBuilder

BAD_FRAMES = {
    # A whole frame of noise. Its length is fixed: a random prefix would now and then announce
    # a frame the broker rightly waits for (any length up to the 100 MiB limit is legal).
    "garbage": struct.pack(">i", 60) + random.Random(20261127).randbytes(60),
    "negative length": struct.pack(">i", -5) + b"xxxx",
    "oversize length": struct.pack(">i", 200 * 1024 * 1024) + b"x" * 16,
    "unknown api key": struct.pack(">ihhih", 10, 777, 0, 1, 0),
    "unknown version": struct.pack(">ihhih", 10, 3, 99, 1, 0),
    "header cut short": struct.pack(">i", 3) + b"\x00\x03\x00",
    # Metadata v9: header v2, then a topic array announcing 4 topics that never come.
    "body cut short": struct.pack(">ihhih", 12, 3, 9, 1, 1) + b"x\x00\x05",
}


def _still_serves(bootstrap: str) -> None:
    connection = RawConnection(bootstrap)
    try:
        response = connection.call(18, 3, ApiVersionsRequest(client_software_name="check",
                                                              client_software_version="1"))
    finally:
        connection.close()
    assert response.error_code == ErrorCode.NONE


@pytest.mark.parametrize("name", list(BAD_FRAMES))
def test_bad_frames_close_the_connection_and_nothing_else(bootstrap: str, name: str) -> None:
    confluent_produce(bootstrap, "survivor", [{"value": b"kept"}])
    bystander = RawConnection(bootstrap)
    offender = RawConnection(bootstrap)
    offender.send_bytes(BAD_FRAMES[name])
    assert offender.read_frame() is None, "the broker should close the offending connection"
    offender.close()
    response = bystander.call(18, 0, ApiVersionsRequest())
    assert response.error_code == ErrorCode.NONE
    bystander.close()
    _still_serves(bootstrap)
    [record] = confluent_consume(bootstrap, "survivor", [0], 1)
    assert record.value == b"kept"


def test_a_truncated_frame_then_hangup_is_harmless(bootstrap: str) -> None:
    connection = RawConnection(bootstrap)
    connection.send_bytes(struct.pack(">i", 1000) + b"\x00\x12" + b"\x00" * 10)
    connection.close()
    _still_serves(bootstrap)


def _batch(values: list[bytes]) -> bytearray:
    builder = BatchBuilder()
    for value in values:
        builder.append(value)
    return bytearray(builder.build())


def test_corrupt_and_invalid_batches_get_per_partition_errors(bootstrap: str) -> None:
    confluent_produce(bootstrap, "strict", [{"value": b"first"}])

    corrupted = _batch([b"a", b"b"])
    corrupted[-1] ^= 0xFF  # breaks the CRC-32C
    assert produce_raw(bootstrap, "strict", 0, bytes(corrupted)).error_code == ErrorCode.CORRUPT_MESSAGE

    miscounted = _batch([b"a", b"b"])
    struct.pack_into(">i", miscounted, 57, 5)  # record count disagrees with the offsets
    answer = produce_raw(bootstrap, "strict", 0, bytes(miscounted))
    assert answer.error_code in (ErrorCode.CORRUPT_MESSAGE, ErrorCode.INVALID_RECORD)

    truncated = bytes(_batch([b"a"]))[:-3]
    assert produce_raw(bootstrap, "strict", 0, truncated).error_code == ErrorCode.CORRUPT_MESSAGE

    assert produce_raw(bootstrap, "strict", 0, bytes(_batch([b"second"]))).base_offset == 1
    consumed = confluent_consume(bootstrap, "strict", [0], 2)
    assert [c.value for c in consumed] == [b"first", b"second"]
