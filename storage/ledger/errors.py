"""Errors raised by the ledger client (storage/ledger).

They are separate from the storage node's own errors (storage/node/errors.py): a node
says "this node fenced the ledger", the ledger client turns that into "this writer was
fenced", which is what callers (the managed ledger) act upon.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base class of every error the ledger client raises."""


class LedgerFencedError(LedgerError):
    """The ledger was fenced (recovered or closed by someone else): this writer must stop."""


class NotEnoughNodesError(LedgerError):
    """Too few live storage nodes to form (or repair) the ledger's ensemble."""


class LedgerClosedError(LedgerError):
    """The handle was closed (or is closing); no more appends are accepted."""


class NoSuchLedgerError(LedgerError):
    """No metadata exists for this ledger id."""


class NoSuchEntryError(LedgerError):
    """No replica holds the requested entry."""


class EntryTooLargeError(LedgerError, ValueError):
    """An entry larger than the client's limit (LedgerClientSettings.max_entry_bytes)."""


class EntryRangeError(LedgerError, ValueError):
    """A read asked for entries outside 0..last_add_confirmed."""


class CorruptEntryError(LedgerError):
    """Every reachable replica returned a damaged copy of an entry."""


class LedgerReadError(LedgerError):
    """No replica of an entry could be read (nodes unavailable or failing)."""


class LedgerRecoveryError(LedgerError):
    """Recovery could not decide the ledger's last entry (too many nodes unreachable)."""


class LedgerMetadataError(LedgerError):
    """Ledger metadata in the store is malformed or of an unknown format version."""
