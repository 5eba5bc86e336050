"""Payloads as sequences of buffers ("parts"), so no layer copies what it does not change.

A produced batch travels from the broker to the journal through three layers that each put
a small header in front of it (managed ledger, ledger, storage node record). Joining header
and payload at every layer copies the whole payload each time, about a megabyte per produce
request. Instead each layer adds its header as one more part, checksums are computed over
the parts one after the other (CRC-32C continues from the previous part's value), and the
journal hands the parts to `os.writev`. Only the layer that must have one contiguous buffer
(a socket write through Twisted, a reader that parses the bytes) joins them, once.

Every function here takes either one bytes-like object or a sequence of them (a `Payload`),
so callers that have plain bytes keep passing plain bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import crc32c

Buffer = bytes | bytearray | memoryview
"""One contiguous piece of a payload."""
Payload = Buffer | Sequence[Buffer]
"""A payload: one buffer, or its parts in order."""

_CONTIGUOUS = (bytes, bytearray, memoryview)


def as_parts(payload: Payload) -> tuple[Buffer, ...]:
    """The payload's parts, in order (a single buffer is one part)."""
    if isinstance(payload, _CONTIGUOUS):
        return (payload,)
    return tuple(payload)


def payload_length(payload: Payload) -> int:
    """Bytes in the payload, all parts together."""
    if isinstance(payload, _CONTIGUOUS):
        return len(payload)
    return sum(map(len, payload))


def payload_crc32c(payload: Payload, value: int = 0) -> int:
    """CRC-32C of the payload's bytes in order, continuing from `value`: the same as the
    CRC of the joined bytes, without joining them."""
    if isinstance(payload, _CONTIGUOUS):
        return crc32c.crc32c(payload, value=value)
    for part in payload:
        value = crc32c.crc32c(part, value=value)
    return value


def join_payload(payload: Payload) -> Buffer:
    """The payload as one buffer: a single buffer is returned as it is (no copy), parts are
    joined into new bytes."""
    if isinstance(payload, _CONTIGUOUS):
        return payload
    if len(payload) == 1:
        return payload[0]
    return b"".join(payload)
