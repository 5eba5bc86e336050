"""ManagedCursor: a named, durable read position on a managed ledger.

Its mark-delete position means "everything up to and including this entry is consumed";
retention never deletes a ledger a cursor has not consumed entirely. The position lives in the
managed ledger's metadata, so it survives restarts and moves with ownership.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet import defer

from storage.managed_ledger.errors import CursorNotFoundError
from storage.managed_ledger.position import Position

if TYPE_CHECKING:
    from storage.managed_ledger.managed_ledger import ManagedLedger


class ManagedCursor:
    """Obtain through ManagedLedger.open_cursor(name)."""

    def __init__(self, ledger: ManagedLedger, name: str) -> None:
        self.name = name
        self._ledger = ledger
        self.deleted = False  # set by ManagedLedger.delete_cursor

    @property
    def mark_delete_position(self) -> Position:
        """The last durably recorded position."""
        self._check_exists()
        return self._ledger._cursor_position(self.name)

    def mark_delete(self, position: Position) -> defer.Deferred[None]:
        """Record position durably (it may move backwards, but never past the last confirmed
        entry: ValueError). Concurrent calls are written in call order."""
        try:
            self._check_exists()
        except CursorNotFoundError as exc:
            return defer.fail(exc)
        return defer.ensureDeferred(self._ledger._mark_delete(self.name, position))

    def _check_exists(self) -> None:
        if self.deleted:
            raise CursorNotFoundError(f"cursor {self.name!r} of {self._ledger.name} was deleted")

    def __repr__(self) -> str:
        return f"ManagedCursor({self._ledger.name!r}, {self.name!r})"
