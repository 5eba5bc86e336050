"""Errors raised by storage nodes and their clients.

Every failure a caller can act on has its own class; all of them derive from
`StorageNodeError`, so "anything went wrong on this node" is one `except`.
"""

from __future__ import annotations


class StorageNodeError(Exception):
    """Base class of every storage-node failure."""


class LedgerFencedError(StorageNodeError):
    """The ledger was fenced on this node: ordinary (non-recovery) adds are refused."""


class NoSuchLedgerError(StorageNodeError):
    """This node holds nothing for the ledger (never written, fenced or deleted)."""


class NoSuchEntryError(StorageNodeError):
    """The node knows the ledger but does not hold that entry."""


class CorruptEntryError(StorageNodeError):
    """The stored bytes of an entry failed their checksum; the data is never served."""


class InvalidRequestError(StorageNodeError):
    """The request itself is invalid (e.g. a negative entry id)."""


class NodeUnavailableError(StorageNodeError):
    """The node could not be reached: connection refused, lost, or a request timed out."""


class JournalFailedError(StorageNodeError):
    """A journal write or fsync failed; the node refuses further writes until restarted."""


class StorageFormatError(StorageNodeError):
    """A file in the data directory has an unknown format version or is not a kop file."""


class ProtocolError(StorageNodeError):
    """A peer sent bytes that are not a valid frame of the storage protocol."""
