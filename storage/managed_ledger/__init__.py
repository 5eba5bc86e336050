"""Managed ledgers: the log of one topic partition as a chain of replicated ledgers.

    factory = ManagedLedgerFactory(metadata_store, ledger_client)
    log = await factory.open("public/default/orders-partition-0", ManagedLedgerConfig())
    position = await log.append(batch_bytes, index=base_offset)
    entries = await log.read(log.first_position, max_entries=100)
"""

from storage.managed_ledger.config import ManagedLedgerConfig
from storage.managed_ledger.cursor import ManagedCursor
from storage.managed_ledger.errors import (
    CorruptEntryError,
    CursorNotFoundError,
    InvalidNameError,
    ManagedLedgerClosedError,
    ManagedLedgerError,
    ManagedLedgerFencedError,
    ManagedLedgerMetadataError,
    ManagedLedgerNotFoundError,
)
from storage.managed_ledger.factory import ManagedLedgerFactory
from storage.managed_ledger.managed_ledger import ManagedLedger, State
from storage.managed_ledger.position import Entry, Position

__all__ = [
    "CorruptEntryError",
    "CursorNotFoundError",
    "Entry",
    "InvalidNameError",
    "ManagedCursor",
    "ManagedLedger",
    "ManagedLedgerClosedError",
    "ManagedLedgerConfig",
    "ManagedLedgerError",
    "ManagedLedgerFactory",
    "ManagedLedgerFencedError",
    "ManagedLedgerMetadataError",
    "ManagedLedgerNotFoundError",
    "Position",
    "State",
]
