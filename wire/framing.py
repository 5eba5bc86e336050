"""Split a byte stream into Kafka frames (a 4-byte big-endian size, then the payload).

``FrameSplitter`` keeps received chunks as they arrived, with a read offset
into the first, and copies each frame's bytes once, when the frame is
complete (a frame that is exactly one chunk is not copied at all). (Twisted's
``Int32StringReceiver`` re-concatenates its buffer per chunk, which is
quadratic on large frames.)

A size prefix that is negative or above ``max_frame_size`` raises
``FrameTooLargeError`` as soon as the 4 bytes arrive, before anything is
allocated for it; the splitter is then unusable (the stream has no frame
boundaries left to trust) and further calls raise the same error.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterator

from wire.errors import FrameTooLargeError

DEFAULT_MAX_FRAME_SIZE = 100 * 1024 * 1024  # Kafka's socket.request.max.bytes
_SIZE = struct.Struct(">i")


class FrameSplitter:
    """Feed it bytes as they arrive; iterate ``frames()`` for complete payloads."""

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if max_frame_size < 0:
            raise ValueError("max_frame_size must not be negative")
        self.max_frame_size = max_frame_size
        # Received chunks, unconsumed bytes only (the first from _offset on). Chunks are
        # kept as they came and joined once per frame: a 1 MiB frame read in 64 KiB chunks
        # is copied once, not appended into a growing buffer and then copied out again.
        self._chunks: deque[bytes] = deque()
        self._offset = 0
        self._buffered = 0
        self._consumed = 0  # bytes of the stream already returned (for error offsets)
        self._broken: FrameTooLargeError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as part of a frame."""
        return self._buffered

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes."""
        if self._broken is not None:
            raise self._broken
        if data:
            self._chunks.append(data if type(data) is bytes else bytes(data))
            self._buffered += len(data)
        self._check_next_size()

    def frames(self) -> Iterator[bytes]:
        """Yield every complete frame payload (without its size prefix), in order."""
        chunks = self._chunks
        while self._broken is None and chunks:
            first, offset = chunks[0], self._offset
            if len(first) - offset >= 4:
                size = _SIZE.unpack_from(first, offset)[0]
                self._check_size(size)
                end = offset + 4 + size
                if end <= len(first):  # the usual small frame: inside the first chunk
                    frame = first[offset + 4:end]
                    self._buffered -= 4 + size
                    if end == len(first):
                        chunks.popleft()
                        end = 0
                    self._offset = end
                    self._consumed += 4 + size
                    yield frame
                    continue
            size = self._next_size()
            if size is None:
                break
            self._check_size(size)
            if self._buffered < 4 + size:
                break
            self._skip(4)
            frame = self._take(size)
            self._consumed += 4 + size
            yield frame
        if self._broken is not None:
            raise self._broken

    def __iter__(self) -> Iterator[bytes]:
        return self.frames()

    def _next_size(self) -> int | None:
        if self._buffered < 4:
            return None
        first = self._chunks[0]
        if len(first) - self._offset >= 4:
            return _SIZE.unpack_from(first, self._offset)[0]
        return _SIZE.unpack(self._peek(4))[0]

    def _peek(self, count: int) -> bytes:
        return b"".join(self._gather(count))

    def _gather(self, count: int) -> list[bytes | memoryview]:
        """Views of the next `count` buffered bytes, chunk by chunk (nothing consumed)."""
        parts: list[bytes | memoryview] = []
        offset, remaining = self._offset, count
        for chunk in self._chunks:
            piece = memoryview(chunk)[offset:offset + remaining]
            parts.append(piece)
            remaining -= len(piece)
            offset = 0
            if not remaining:
                break
        return parts

    def _skip(self, count: int) -> None:
        while count:
            first = self._chunks[0]
            available = len(first) - self._offset
            if count < available:
                self._offset += count
                self._buffered -= count
                return
            self._chunks.popleft()
            self._offset = 0
            self._buffered -= available
            count -= available

    def _take(self, count: int) -> bytes:
        if count == 0:
            return b""
        first = self._chunks[0]
        if self._offset == 0 and count == len(first):
            frame = first  # the frame is exactly one chunk: no copy at all
        else:
            frame = b"".join(self._gather(count))  # the frame's one copy
        self._skip(count)
        return frame

    def _check_next_size(self) -> None:
        size = self._next_size()
        if size is not None:
            self._check_size(size)

    def _check_size(self, size: int) -> None:
        if size < 0 or size > self.max_frame_size:
            self._broken = FrameTooLargeError(
                f"frame size {size} is outside 0..{self.max_frame_size}",
                offset=self._consumed,
            )
            raise self._broken
