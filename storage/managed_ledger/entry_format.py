"""The bytes a managed ledger stores per ledger entry: a small header carrying the caller's
index, then the caller's data unchanged.

Layout (big-endian): format byte (1) | index (signed 64-bit) | data.
The index lets `find(index)` binary-search inside a ledger by reading entries.
Appends use `entry_parts`: the header goes in front of the data's parts, nothing is copied.
"""

from __future__ import annotations

import struct

from storage.managed_ledger.errors import CorruptEntryError
from storage.node.buffers import Buffer, Payload, as_parts

ENTRY_FORMAT_V1 = 1
_HEADER = struct.Struct(">Bq")
HEADER_SIZE = _HEADER.size


def entry_parts(index: int, data: Payload) -> tuple[Buffer, ...]:
    """The stored entry as parts: the header, then data's parts unchanged; index must fit a
    signed 64-bit integer."""
    return (_HEADER.pack(ENTRY_FORMAT_V1, index), *as_parts(data))


def encode_entry(index: int, data: Payload) -> bytes:
    """The stored entry joined: data (bytes or parts) prefixed with the header."""
    return b"".join(entry_parts(index, data))


def decode_index(stored: bytes, where: str = "entry") -> int:
    """The index from a stored entry's header (cheap: no copy of the data)."""
    _check(stored, where)
    return _HEADER.unpack_from(stored)[1]


def decode_entry(stored: bytes | memoryview,
                 where: str = "entry") -> tuple[int, memoryview]:
    """(index, data) of a stored entry, data as a view (no copy); CorruptEntryError when the
    header is not ours."""
    _check(stored, where)
    return _HEADER.unpack_from(stored)[1], memoryview(stored)[HEADER_SIZE:]


def _check(stored: bytes, where: str) -> None:
    if len(stored) < HEADER_SIZE:
        raise CorruptEntryError(
            f"{where}: {len(stored)} bytes is shorter than the {HEADER_SIZE}-byte entry header"
        )
    if stored[0] != ENTRY_FORMAT_V1:
        raise CorruptEntryError(
            f"{where}: unknown entry format {stored[0]} (expected {ENTRY_FORMAT_V1})"
        )
