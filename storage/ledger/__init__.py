"""Replicated ledgers: BookKeeper-style ledger client over kop's storage nodes.

A ledger is an append-only sequence of entries written by one writer, striped over an
ensemble of E storage nodes, each entry stored on Qw of them and acknowledged once Qa of them
made it durable. Metadata (ensembles, state, last entry) lives in the metadata store.
"""

from storage.ledger.client import LedgerClient
from storage.ledger.errors import (
    CorruptEntryError,
    EntryRangeError,
    EntryTooLargeError,
    LedgerClosedError,
    LedgerError,
    LedgerFencedError,
    LedgerMetadataError,
    LedgerReadError,
    LedgerRecoveryError,
    NoSuchEntryError,
    NoSuchLedgerError,
    NotEnoughNodesError,
)
from storage.ledger.metadata import LedgerMetadata, LedgerState, Segment
from storage.ledger.node_pool import NodePool, StorageNodeClient
from storage.ledger.reader import ReadHandle
from storage.ledger.settings import LedgerClientSettings
from storage.ledger.writer import WriteHandle

__all__ = [
    "CorruptEntryError",
    "EntryRangeError",
    "EntryTooLargeError",
    "LedgerClient",
    "LedgerClientSettings",
    "LedgerClosedError",
    "LedgerError",
    "LedgerFencedError",
    "LedgerMetadata",
    "LedgerMetadataError",
    "LedgerReadError",
    "LedgerRecoveryError",
    "LedgerState",
    "NoSuchEntryError",
    "NoSuchLedgerError",
    "NodePool",
    "NotEnoughNodesError",
    "ReadHandle",
    "Segment",
    "StorageNodeClient",
    "WriteHandle",
]
