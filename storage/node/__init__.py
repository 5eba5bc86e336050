"""storage.node: kop's storage node (BookKeeper's "bookie").

A node keeps ledger entries durably (group-committed journal whose segments are
also the entry log, checkpointed index), fences ledgers for recovery, deletes
them and reclaims their space. Use it in-process through `LocalStorageNodeClient`
or over TCP (`server.listen`, `RemoteStorageNodeClient`); both implement
`StorageNodeClient`. `main.run_storage_node` runs one as a process.
"""

from storage.node.api import (
    MAX_LIST_ENTRIES,
    LacResult,
    StorageNodeClient,
    decode_entry_bitmap,
    encode_entry_bitmap,
)
from storage.node.client import LocalStorageNodeClient, RemoteStorageNodeClient
from storage.node.core import StorageNode, StorageNodeConfig
from storage.node.errors import (
    CorruptEntryError,
    InvalidRequestError,
    JournalFailedError,
    LedgerFencedError,
    NodeUnavailableError,
    NoSuchEntryError,
    NoSuchLedgerError,
    ProtocolError,
    StorageFormatError,
    StorageNodeError,
)

__all__ = [
    "MAX_LIST_ENTRIES",
    "CorruptEntryError",
    "InvalidRequestError",
    "JournalFailedError",
    "LacResult",
    "LedgerFencedError",
    "LocalStorageNodeClient",
    "NoSuchEntryError",
    "NoSuchLedgerError",
    "NodeUnavailableError",
    "ProtocolError",
    "RemoteStorageNodeClient",
    "StorageFormatError",
    "StorageNode",
    "StorageNodeClient",
    "StorageNodeConfig",
    "StorageNodeError",
    "decode_entry_bitmap",
    "encode_entry_bitmap",
]
