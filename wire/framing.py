"""Split a byte stream into Kafka frames (a 4-byte big-endian size, then the payload).

``FrameSplitter`` keeps received bytes in one ``bytearray`` with a read
offset. Complete frames are sliced out without moving the rest; the consumed
prefix is dropped only once it is large (or the buffer is empty), so each byte
is moved at most a few times whatever the frame sizes. (Twisted's
``Int32StringReceiver`` re-concatenates its buffer per chunk, which is
quadratic on large frames.)

A size prefix that is negative or above ``max_frame_size`` raises
``FrameTooLargeError`` as soon as the 4 bytes arrive, before anything is
allocated for it; the splitter is then unusable (the stream has no frame
boundaries left to trust) and further calls raise the same error.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from wire.errors import FrameTooLargeError

DEFAULT_MAX_FRAME_SIZE = 100 * 1024 * 1024  # Kafka's socket.request.max.bytes
_SIZE = struct.Struct(">i")
# Drop the consumed prefix once it is at least this big (and at least half the buffer).
_COMPACT_THRESHOLD = 64 * 1024


class FrameSplitter:
    """Feed it bytes as they arrive; iterate ``frames()`` for complete payloads."""

    def __init__(self, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        if max_frame_size < 0:
            raise ValueError("max_frame_size must not be negative")
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()
        self._offset = 0  # start of the unconsumed bytes in _buffer
        self._broken: FrameTooLargeError | None = None

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as part of a frame."""
        return len(self._buffer) - self._offset

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Add received bytes."""
        if self._broken is not None:
            raise self._broken
        self._buffer += data
        self._check_next_size()

    def frames(self) -> Iterator[bytes]:
        """Yield every complete frame payload (without its size prefix), in order."""
        buffer = self._buffer
        while self._broken is None:
            start = self._offset
            if len(buffer) - start < 4:
                break
            size = _SIZE.unpack_from(buffer, start)[0]
            self._check_size(size)
            end = start + 4 + size
            if end > len(buffer):
                break
            with memoryview(buffer) as view:  # one copy, straight into the frame's bytes
                frame = bytes(view[start + 4:end])
            self._offset = end
            self._compact()
            yield frame
        if self._broken is not None:
            raise self._broken

    def __iter__(self) -> Iterator[bytes]:
        return self.frames()

    def _check_next_size(self) -> None:
        if len(self._buffer) - self._offset >= 4:
            self._check_size(_SIZE.unpack_from(self._buffer, self._offset)[0])

    def _check_size(self, size: int) -> None:
        if size < 0 or size > self.max_frame_size:
            self._broken = FrameTooLargeError(
                f"frame size {size} is outside 0..{self.max_frame_size}",
                offset=self._offset,
            )
            raise self._broken

    def _compact(self) -> None:
        offset = self._offset
        if offset == len(self._buffer):
            del self._buffer[:]
            self._offset = 0
        elif offset >= _COMPACT_THRESHOLD and offset * 2 >= len(self._buffer):
            del self._buffer[:offset]
            self._offset = 0
