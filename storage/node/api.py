"""The storage-node client interface, shared by the TCP client and the in-process one."""

from __future__ import annotations

from typing import NamedTuple, Protocol

from twisted.internet.defer import Deferred


class LacResult(NamedTuple):
    """What a node knows of a ledger's end; -1 means none."""
    last_add_confirmed: int  # highest last-add-confirmed piggybacked on an add
    last_entry_id: int  # highest entry id the node holds


class StorageNodeClient(Protocol):
    address: str  # "host:port", or "local:<data dir>" for an in-process node

    def add_entry(self, ledger_id: int, entry_id: int, last_add_confirmed: int, payload: bytes,
                  *, recovery: bool = False) -> Deferred[None]:
        """Fires once the entry is fsync'd in the node's journal. A fenced ledger refuses
        ordinary adds (LedgerFencedError); recovery adds are always accepted."""

    def read_entry(self, ledger_id: int, entry_id: int, *, fence: bool = False) -> Deferred[bytes]:
        """The entry's payload. fence=True fences the ledger on the node first (durably)."""

    def read_last_add_confirmed(self, ledger_id: int, *,
                                fence: bool = False) -> Deferred[LacResult]:
        """What the node knows of the ledger's end; fence=True fences it first (durably)."""

    def delete_ledger(self, ledger_id: int) -> Deferred[None]:
        """Forget the ledger on this node (durably); its space is reclaimed later."""

    def close(self) -> Deferred[None]:
        """Release the client's resources."""
