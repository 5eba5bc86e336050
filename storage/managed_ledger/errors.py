"""Errors raised by managed ledgers, cursors and their factory."""

from __future__ import annotations


class ManagedLedgerError(Exception):
    """Base class of every managed-ledger error."""


class ManagedLedgerFencedError(ManagedLedgerError):
    """Another writer opened (or someone deleted) this managed ledger; this instance stopped.

    Raised by appends and metadata updates of a deposed writer. The instance never recovers:
    the new owner holds the log now.
    """


class ManagedLedgerClosedError(ManagedLedgerError):
    """The managed ledger (or cursor) was closed by its owner; open it again to use it."""


class ManagedLedgerNotFoundError(ManagedLedgerError):
    """No managed ledger of that name exists (e.g. on delete)."""


class ManagedLedgerMetadataError(ManagedLedgerError):
    """The managed ledger's metadata in the store is malformed; nothing was changed."""


class CorruptEntryError(ManagedLedgerError):
    """A stored entry does not carry a valid managed-ledger header."""


class InvalidNameError(ManagedLedgerError, ValueError):
    """A managed-ledger or cursor name is not acceptable (empty segment, '..', etc.)."""


class CursorNotFoundError(ManagedLedgerError):
    """No cursor of that name exists on this managed ledger."""
