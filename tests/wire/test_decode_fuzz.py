"""Fuzzing: damaged and random frames only ever raise DecodeError, within bounded memory.

Frames are valid requests (any api, any version, drawn from the schema) that
then get damaged — bytes changed, cut, inserted, lengths and counts replaced
by huge or negative ones — or plain random bytes behind a real api key. Each
goes through the frame splitter and ``decode_request``. Checked for every case:

* nothing but ``DecodeError`` escapes;
* the memory allocated while decoding stays within a small multiple of the
  frame (a claimed 2 GiB string must not allocate 2 GiB);
* the fast path and the reference codec agree on accept/refuse and on the result;
* whatever decodes re-encodes, and decodes again to the same message.
"""

from __future__ import annotations

import contextlib
import struct
import tracemalloc

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.wire.message_strategies import message_strategy
from wire.codec import encode_message
from wire.construct_codec import construct_decode
from wire.errors import DecodeError
from wire.fastpath import FAST_DECODE_ERRORS, fast_decoder
from wire.framing import FrameSplitter
from wire.messages import MODELS
from wire.protocol import (
    API_BY_KEY,
    RequestHeader,
    decode_request,
    decode_request_header,
    encode_request,
)

FUZZ_SETTINGS = settings(
    max_examples=1000,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MEMORY_SLACK = 256 * 1024  # bytes of bookkeeping allowed on top of the frame-proportional part
MEMORY_PER_FRAME_BYTE = 64  # decoded objects may be this much bigger than their bytes

_API_KEYS = sorted(API_BY_KEY)
_HUGE_VALUES = [
    struct.pack(">i", 2**31 - 1),
    struct.pack(">i", -2),
    struct.pack(">i", -(2**31)),
    struct.pack(">h", 32767),
    struct.pack(">h", -7),
    b"\xff\xff\xff\xff\x0f",  # the largest 5-byte unsigned varint
    b"\x80\x80\x80\x80\x80\x01",  # a 6-byte varint
    b"\xff\xff\xff\x7f",
]


@st.composite
def valid_requests(draw: st.DrawFn) -> tuple[int, int, bytes]:
    api_key = draw(st.sampled_from(_API_KEYS))
    api = API_BY_KEY[api_key]
    version = draw(st.integers(api.min_version, api.max_version))
    message = draw(message_strategy(api.request_cls, version))
    frame = encode_request(RequestHeader(api_key, version, 7, draw(st.none() | st.text(max_size=4))), message)
    return api_key, version, frame[4:]


@st.composite
def damaged_requests(draw: st.DrawFn) -> bytes:
    _, _, payload = draw(valid_requests())
    data = bytearray(payload)
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, max(0, len(data) - 1)))
        kind = draw(st.sampled_from(["set", "cut", "insert", "huge"]))
        if kind == "set" and data:
            data[position] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[position:]
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        else:
            value = draw(st.sampled_from(_HUGE_VALUES))
            data[position:position + len(value)] = value
    return bytes(data)


@st.composite
def random_requests(draw: st.DrawFn) -> bytes:
    api_key = draw(st.sampled_from(_API_KEYS))
    api = API_BY_KEY[api_key]
    version = draw(st.integers(api.min_version - 1, api.max_version + 1))
    return struct.pack(">hhi", api_key, version, 1) + draw(st.binary(max_size=200))


def split_and_decode(payload: bytes) -> tuple[RequestHeader, object] | None:
    """Frame the payload, split it again and decode it; None if it is refused."""
    splitter = FrameSplitter(max_frame_size=1 << 20)
    try:
        splitter.feed(struct.pack(">i", len(payload)) + payload)
        (frame,) = list(splitter.frames())
        return decode_request(frame)
    except DecodeError:
        return None


def decode_and_check(payload: bytes) -> None:
    """Decode one frame payload and check every fuzzing invariant."""
    # The first decode of an (api, version) compiles its codecs; measure the second.
    decoded = split_and_decode(payload)
    # Traced only around the decode: tracing everything would slow the whole run.
    tracemalloc.start()
    try:
        again = split_and_decode(payload)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert again == decoded
    assert peak < MEMORY_SLACK + MEMORY_PER_FRAME_BYTE * len(payload)
    _check_agreement(payload)
    if decoded is not None:
        header, message = decoded
        again = decode_request(encode_request(header, message)[4:])
        assert again == (header, message)


def _check_agreement(payload: bytes) -> None:
    """The fast path and the reference codec accept or refuse alike, and agree."""
    try:
        header, offset = decode_request_header(payload)
    except DecodeError:
        return
    api = API_BY_KEY.get(header.api_key)
    if api is None or not api.min_version <= header.api_version <= api.max_version:
        return
    model = MODELS[api.request_cls.SPEC.name]
    try:
        fast = fast_decoder(model, header.api_version)(payload, offset, len(payload))
    except FAST_DECODE_ERRORS:
        fast = None
    try:
        reference = construct_decode(api.request_cls, payload, header.api_version, offset)
    except DecodeError:
        reference = None
    assert fast == reference
    if fast is not None:
        encode_message(fast[0], header.api_version)


@FUZZ_SETTINGS
@given(payload=damaged_requests())
def test_damaged_requests(payload: bytes) -> None:
    decode_and_check(payload)


@FUZZ_SETTINGS
@given(payload=random_requests())
def test_random_bytes_behind_a_real_api_key(payload: bytes) -> None:
    decode_and_check(payload)


@settings(max_examples=300, deadline=None, database=None)
@given(data=st.binary(max_size=64))
def test_random_frames_through_the_splitter(data: bytes) -> None:
    splitter = FrameSplitter(max_frame_size=256)
    with contextlib.suppress(DecodeError):  # the splitter may refuse a size
        splitter.feed(data)
        for frame in splitter.frames():
            with contextlib.suppress(DecodeError):
                decode_request(frame)


def test_huge_claims_in_every_position_of_a_big_request() -> None:
    """Systematically: a huge length or count written at every offset of a request."""
    api = API_BY_KEY[0]
    request = api.request_cls(acks=-1, timeout_ms=1, topic_data=[
        api.request_cls.TopicProduceData(name=f"t{i}", partition_data=[
            api.request_cls.PartitionProduceData(index=p, records=bytes(30)) for p in range(3)])
        for i in range(2)])
    for version in (3, 9):
        payload = encode_request(RequestHeader(0, version, 1, "c"), request)[4:]
        for position in range(len(payload)):
            for value in _HUGE_VALUES:
                damaged = bytearray(payload)
                damaged[position:position + len(value)] = value
                decode_and_check(bytes(damaged))
