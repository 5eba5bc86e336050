"""How the ledger client frames each entry it stores on the storage nodes.

Every stored entry is a 13-byte header followed by the caller's payload:

    format (u8, = 1) | running length (u64: payload bytes of entries 0..this one) | crc32c (u32)

The CRC-32C covers the ledger id, the entry id, the running length and the payload, so a
reader detects end to end a damaged copy or a copy of the wrong entry and tries another
replica. The running length lets recovery seal a ledger's length from its last entry alone.

The writer frames with `frame_entry_parts`: the header becomes one more part in front of the
payload's parts, and the CRC runs over the parts, so the payload is never copied here.
"""

from __future__ import annotations

import struct

import crc32c

from storage.ledger.errors import CorruptEntryError
from storage.node.buffers import Buffer, Payload, as_parts, payload_crc32c

FORMAT = 1
_HEADER = struct.Struct(">BQI")
_IDENTITY = struct.Struct(">qqQ")  # ledger id, entry id, running length: what the CRC binds
HEADER_SIZE = _HEADER.size


def _checksum(ledger_id: int, entry_id: int, running_length: int, payload: Payload) -> int:
    crc = crc32c.crc32c(_IDENTITY.pack(ledger_id, entry_id, running_length))
    return payload_crc32c(payload, value=crc)


def frame_entry_parts(ledger_id: int, entry_id: int, running_length: int,
                      payload: Payload) -> tuple[Buffer, ...]:
    """What to store for `payload` (bytes or parts) as entry `entry_id` of ledger
    `ledger_id`, as parts: the header, then the payload's parts unchanged."""
    checksum = _checksum(ledger_id, entry_id, running_length, payload)
    return (_HEADER.pack(FORMAT, running_length, checksum), *as_parts(payload))


def frame_entry(ledger_id: int, entry_id: int, running_length: int, payload: Payload) -> bytes:
    """The bytes to store for `payload` as entry `entry_id` of ledger `ledger_id`, joined."""
    return b"".join(frame_entry_parts(ledger_id, entry_id, running_length, payload))


def unframe_entry(ledger_id: int, entry_id: int,
                  stored: bytes | memoryview) -> tuple[int, memoryview]:
    """(running length, payload) of a stored entry; CorruptEntryError if it does not verify."""
    if len(stored) < HEADER_SIZE:
        raise CorruptEntryError(
            f"ledger {ledger_id} entry {entry_id}: {len(stored)} bytes, shorter than the "
            f"{HEADER_SIZE}-byte entry header"
        )
    version, running_length, checksum = _HEADER.unpack_from(stored)
    if version != FORMAT:
        raise CorruptEntryError(
            f"ledger {ledger_id} entry {entry_id}: unknown entry format {version}"
        )
    payload = memoryview(stored)[HEADER_SIZE:]
    if _checksum(ledger_id, entry_id, running_length, payload) != checksum:
        raise CorruptEntryError(
            f"ledger {ledger_id} entry {entry_id}: checksum mismatch (damaged or misplaced copy)"
        )
    return running_length, payload
