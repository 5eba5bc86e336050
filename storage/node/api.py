"""The storage-node client interface, shared by the TCP client and the in-process one,
and the entry bitmap that LIST_ENTRIES answers with."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple, Protocol

from twisted.internet.defer import Deferred

from storage.node.buffers import Payload

MAX_LIST_ENTRIES = 8 * 1024 * 1024
"""Most entry ids one list_entries call covers (a 1 MiB bitmap)."""


def encode_entry_bitmap(entry_ids: Iterable[int], first_entry_id: int, count: int) -> bytes:
    """Bitmap of `count` bits: bit k (least significant first in each byte) is set when
    first_entry_id + k is among `entry_ids`; ids outside the range are ignored."""
    bits = bytearray((count + 7) // 8)
    for entry_id in entry_ids:
        offset = entry_id - first_entry_id
        if 0 <= offset < count:
            bits[offset >> 3] |= 1 << (offset & 7)
    return bytes(bits)


def decode_entry_bitmap(bitmap: bytes, first_entry_id: int) -> list[int]:
    """The entry ids whose bits are set, in increasing order."""
    held = []
    for index, byte in enumerate(bitmap):
        if byte:
            base = first_entry_id + index * 8
            held.extend(base + bit for bit in range(8) if byte >> bit & 1)
    return held


class LacResult(NamedTuple):
    """What a node knows of a ledger's end; -1 means none."""
    last_add_confirmed: int  # highest last-add-confirmed piggybacked on an add
    last_entry_id: int  # highest entry id the node holds


class StorageNodeClient(Protocol):
    address: str  # "host:port", or "local:<data dir>" for an in-process node

    def add_entry(self, ledger_id: int, entry_id: int, last_add_confirmed: int,
                  payload: Payload, *, recovery: bool = False) -> Deferred[None]:
        """Fires once the entry is fsync'd in the node's journal. `payload` is bytes or a
        sequence of parts (stored joined; the caller must not change them until it fires).
        A fenced ledger refuses ordinary adds (LedgerFencedError); recovery adds are always
        accepted."""

    def read_entry(self, ledger_id: int, entry_id: int, *, fence: bool = False) -> Deferred[bytes]:
        """The entry's payload. fence=True fences the ledger on the node first (durably)."""

    def read_last_add_confirmed(self, ledger_id: int, *,
                                fence: bool = False) -> Deferred[LacResult]:
        """What the node knows of the ledger's end; fence=True fences it first (durably)."""

    def delete_ledger(self, ledger_id: int) -> Deferred[None]:
        """Forget the ledger on this node (durably); its space is reclaimed later."""

    def list_entries(self, ledger_id: int, first_entry_id: int, count: int) -> Deferred[bytes]:
        """Which of entries first_entry_id .. first_entry_id + count - 1 the node holds, as
        a bitmap (see `decode_entry_bitmap`); count is at most MAX_LIST_ENTRIES.
        NoSuchLedgerError if the node holds nothing of the ledger."""

    def close(self) -> Deferred[None]:
        """Release the client's resources."""
