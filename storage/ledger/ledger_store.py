"""Ledger metadata kept in the metadata store: ids, paths, reads and compare-and-set writes.

Layout (relative to the store's root):
    /ledger-id-counter      the next ledger id to hand out, ASCII decimal, advanced by CAS
    /ledgers/<id>           LedgerMetadata JSON, id zero-padded to 20 digits so names sort
"""

from __future__ import annotations

from storage.ledger.errors import LedgerError, LedgerMetadataError, NoSuchLedgerError
from storage.ledger.metadata import LedgerMetadata
from storage.metadata.api import MetadataStore
from storage.metadata.errors import (
    BadVersionError,
    ConnectionLossError,
    NodeExistsError,
    NoNodeError,
)

LEDGERS_PATH = "/ledgers"
ID_COUNTER_PATH = "/ledger-id-counter"


def ledger_path(ledger_id: int) -> str:
    return f"{LEDGERS_PATH}/{ledger_id:020d}"


class MetadataConflictError(LedgerError):
    """Someone else changed the ledger's metadata since we read it (compare-and-set lost)."""


class LedgerMetadataStore:
    """Typed access to ledger metadata over a MetadataStore."""

    # A lost connection leaves a write's outcome unknown; we look again this many times.
    CONNECTION_LOSS_RETRIES = 5

    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    async def allocate_id(self) -> int:
        """A ledger id never handed out before (CAS on the shared counter; retried on races).

        A connection lost mid-write may waste an id, never hand one out twice.
        """
        losses = 0
        while True:
            try:
                allocated = await self._try_allocate_id()
            except ConnectionLossError:
                losses += 1
                if losses > self.CONNECTION_LOSS_RETRIES:
                    raise
                continue
            if allocated is not None:
                return allocated

    async def _try_allocate_id(self) -> int | None:
        current = await self.store.get(ID_COUNTER_PATH)
        if current is None:
            try:
                await self.store.create(ID_COUNTER_PATH, b"1")
            except NodeExistsError:
                return None
            return 0
        try:
            next_id = int(current.value.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise LedgerMetadataError(
                f"{ID_COUNTER_PATH} holds {current.value!r}, not a decimal ledger id"
            ) from None
        try:
            await self.store.set(
                ID_COUNTER_PATH, str(next_id + 1).encode("ascii"),
                expected_version=current.version,
            )
        except BadVersionError:
            return None
        return next_id

    async def create(self, metadata: LedgerMetadata) -> int:
        """Store metadata for a new ledger; returns its version."""
        await self.store.create(ledger_path(metadata.ledger_id), metadata.to_json())
        return 0

    async def read(self, ledger_id: int) -> tuple[LedgerMetadata, int]:
        """(metadata, version); NoSuchLedgerError if the ledger does not exist."""
        found = await self.store.get(ledger_path(ledger_id))
        if found is None:
            raise NoSuchLedgerError(f"ledger {ledger_id} does not exist")
        metadata = LedgerMetadata.from_json(found.value)
        if metadata.ledger_id != ledger_id:
            raise LedgerMetadataError(
                f"{ledger_path(ledger_id)} describes ledger {metadata.ledger_id}"
            )
        return metadata, found.version

    async def write(self, metadata: LedgerMetadata, expected_version: int) -> int:
        """Compare-and-set; returns the new version or raises MetadataConflictError."""
        path = ledger_path(metadata.ledger_id)
        value = metadata.to_json()
        for _ in range(self.CONNECTION_LOSS_RETRIES):
            try:
                return await self.store.set(path, value, expected_version=expected_version)
            except BadVersionError:
                raise MetadataConflictError(
                    f"ledger {metadata.ledger_id}: metadata changed since version "
                    f"{expected_version}"
                ) from None
            except NoNodeError:
                raise NoSuchLedgerError(f"ledger {metadata.ledger_id} was deleted") from None
            except ConnectionLossError:
                # Did our write land before the connection dropped? Look, then decide.
                current = await self.store.get(path)
                if current is None:
                    raise NoSuchLedgerError(
                        f"ledger {metadata.ledger_id} was deleted"
                    ) from None
                if current.version == expected_version + 1 and current.value == value:
                    return current.version
                if current.version != expected_version:
                    raise MetadataConflictError(
                        f"ledger {metadata.ledger_id}: metadata changed since version "
                        f"{expected_version}"
                    ) from None
        raise ConnectionLossError(f"lost the connection writing {path} repeatedly", path)

    async def delete(self, ledger_id: int) -> None:
        try:
            await self.store.delete(ledger_path(ledger_id))
        except NoNodeError:
            raise NoSuchLedgerError(f"ledger {ledger_id} does not exist") from None
