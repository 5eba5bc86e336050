"""FrameSplitter: frames out of arbitrary chunks, bad sizes refused before allocation."""

from __future__ import annotations

import struct
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wire.errors import DecodeError, FrameTooLargeError
from wire.framing import FrameSplitter


def framed(*payloads: bytes) -> bytes:
    return b"".join(struct.pack(">i", len(p)) + p for p in payloads)


def test_whole_frames_in_one_chunk() -> None:
    splitter = FrameSplitter()
    splitter.feed(framed(b"one", b"", b"three"))
    assert list(splitter.frames()) == [b"one", b"", b"three"]
    assert splitter.buffered == 0


def test_partial_frame_waits_for_the_rest() -> None:
    splitter = FrameSplitter()
    data = framed(b"hello", b"world")
    splitter.feed(data[:7])
    assert list(splitter.frames()) == []
    assert splitter.buffered == 7
    splitter.feed(data[7:11])
    assert list(splitter.frames()) == [b"hello"]
    assert splitter.buffered == 2
    splitter.feed(data[11:])
    assert list(splitter.frames()) == [b"world"]
    assert splitter.buffered == 0


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=12),
)
def test_any_chunking_yields_the_same_frames(payloads: list[bytes], cuts: list[int]) -> None:
    data = framed(*payloads)
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    splitter = FrameSplitter()
    received = []
    for start, end in zip(bounds, bounds[1:], strict=False):
        splitter.feed(data[start:end])
        received.extend(splitter.frames())
    assert received == payloads
    assert splitter.buffered == 0


@pytest.mark.parametrize("size", [-1, -(2**31), 1025])
def test_bad_size_is_refused_as_soon_as_the_prefix_arrives(size: int) -> None:
    splitter = FrameSplitter(max_frame_size=1024)
    with pytest.raises(FrameTooLargeError) as caught:
        splitter.feed(struct.pack(">i", size))
    assert isinstance(caught.value, DecodeError)
    assert str(size) in str(caught.value)
    # The stream has no trustworthy boundaries left: the splitter stays broken.
    with pytest.raises(FrameTooLargeError):
        splitter.feed(b"more")
    with pytest.raises(FrameTooLargeError):
        list(splitter.frames())


def test_bad_size_after_good_frames_yields_them_first() -> None:
    splitter = FrameSplitter(max_frame_size=10)
    splitter.feed(framed(b"ok") + struct.pack(">i", 11))  # the bad size is not next yet
    frames = splitter.frames()
    assert next(frames) == b"ok"
    with pytest.raises(FrameTooLargeError):
        next(frames)


def test_frame_exactly_at_the_limit_is_accepted() -> None:
    splitter = FrameSplitter(max_frame_size=4)
    splitter.feed(framed(b"abcd"))
    assert list(splitter.frames()) == [b"abcd"]


def test_a_huge_size_prefix_allocates_nothing() -> None:
    splitter = FrameSplitter()  # default limit: 100 MiB
    tracemalloc.start()
    try:
        splitter.feed(struct.pack(">i", 100 * 1024 * 1024) + b"x" * 100)
        assert list(splitter.frames()) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024
    assert splitter.buffered == 104


def test_large_frame_in_small_chunks_is_linear() -> None:
    """8 MiB in 4 KiB chunks: the buffer is appended to, never re-concatenated.

    Counted, not timed: the bytes the splitter holds never exceed one frame
    plus one chunk, and the frame comes out intact.
    """
    payload = bytes(range(256)) * (8 * 4096)
    data = framed(payload, b"tail")
    splitter = FrameSplitter()
    received = []
    most_buffered = 0
    for start in range(0, len(data), 4096):
        splitter.feed(data[start:start + 4096])
        received.extend(splitter.frames())
        most_buffered = max(most_buffered, splitter.buffered)
    assert received == [payload, b"tail"]
    assert most_buffered <= len(payload) + 4 + 4096


def test_consumed_bytes_are_released() -> None:
    splitter = FrameSplitter()
    for _ in range(100):
        splitter.feed(framed(bytes(100_000)) + b"\x00\x00")  # each time: a frame + 2 bytes of the next size
        assert len(list(splitter.frames())) == 1
        splitter.feed(b"\x00\x00")  # completes an empty frame
        assert list(splitter.frames()) == [b""]
    assert splitter.buffered == 0
    assert not splitter._chunks  # the consumed bytes were dropped, not kept behind the offset


def test_negative_limit_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        FrameSplitter(max_frame_size=-1)
