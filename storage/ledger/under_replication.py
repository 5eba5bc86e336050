"""Under-replication markers and per-ledger locks in the metadata store.

Layout (relative to the store's root):
    /under-replicated/<id>        a ledger that may lack copies: persistent, so the work
                                  survives restarts; JSON {"format": 1, "lost": [addresses
                                  confirmed gone], "reasons": [why it was marked]}
    /under-replicated-locks/<id>  ephemeral: the process re-replicating that ledger now

Anyone may mark a ledger (the auditor when a node is lost or restarted, a writer whose node
came back after missing acknowledged entries). A marker says "look at this ledger"; the
replication worker always checks every fragment, so a marker that says too little, or an
unreadable one, still leads to a full check. Ledger ids are zero-padded to 20 digits, as in
/ledgers, so names sort numerically.
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass

from storage.metadata.api import MetadataStore
from storage.metadata.errors import BadVersionError, NodeExistsError, NoNodeError

log = logging.getLogger(__name__)

MARKERS_PATH = "/under-replicated"
LOCKS_PATH = "/under-replicated-locks"
MARKER_FORMAT = 1
_MAX_REASONS = 8  # the first few reasons are enough to explain a marker in a log


def marker_path(ledger_id: int) -> str:
    return f"{MARKERS_PATH}/{ledger_id:020d}"


def lock_path(ledger_id: int) -> str:
    return f"{LOCKS_PATH}/{ledger_id:020d}"


class MarkerFormatError(ValueError):
    """A marker's bytes are not a marker this code understands."""


@dataclass(frozen=True)
class Marker:
    lost: frozenset[str]  # nodes confirmed gone that the ledger's metadata names
    reasons: tuple[str, ...]

    def to_json(self) -> bytes:
        return json.dumps({"format": MARKER_FORMAT, "lost": sorted(self.lost),
                           "reasons": list(self.reasons)}, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Marker:
        try:
            document = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as error:
            raise MarkerFormatError(f"not JSON: {error}") from None
        if not isinstance(document, dict) or document.get("format") != MARKER_FORMAT:
            raise MarkerFormatError(f"not a format-{MARKER_FORMAT} marker: {raw[:100]!r}")
        lost, reasons = document.get("lost"), document.get("reasons")
        if not (isinstance(lost, list) and all(isinstance(a, str) for a in lost)
                and isinstance(reasons, list) and all(isinstance(r, str) for r in reasons)):
            raise MarkerFormatError(f"malformed marker: {raw[:100]!r}")
        return cls(frozenset(lost), tuple(reasons))

    def merged(self, lost: frozenset[str], reason: str) -> Marker:
        reasons = self.reasons
        if reason not in reasons and len(reasons) < _MAX_REASONS:
            reasons = (*reasons, reason)
        return Marker(self.lost | lost, reasons)


def parse_ledger_ids(names: list[str], where: str) -> list[int]:
    """Ledger ids from child names; names that are not ids are logged and skipped."""
    ids = []
    for name in names:
        if name.isdigit():
            ids.append(int(name))
        else:
            log.warning("ignoring %s/%s: not a ledger id", where, name)
    return ids


class UnderReplication:
    """Markers and locks over a MetadataStore."""

    def __init__(self, store: MetadataStore) -> None:
        self.store = store

    async def mark(self, ledger_id: int, lost: frozenset[str] | set[str], reason: str) -> None:
        """Record that the ledger may lack copies (merging into an existing marker)."""
        lost = frozenset(lost)
        while True:
            found = await self.store.get(marker_path(ledger_id))
            if found is None:
                try:
                    await self.store.create(marker_path(ledger_id),
                                            Marker(lost, (reason,)).to_json())
                    log.info("ledger %d marked under-replicated: %s", ledger_id, reason)
                    return
                except NodeExistsError:
                    continue
            try:
                current = Marker.from_json(found.value)
            except MarkerFormatError as error:
                log.warning("ledger %d: replacing an unreadable marker (%s)", ledger_id, error)
                current = Marker(frozenset(), ())
            merged = current.merged(lost, reason)
            if merged == current:
                return
            try:
                await self.store.set(marker_path(ledger_id), merged.to_json(),
                                     expected_version=found.version)
                return
            except BadVersionError:
                continue
            except NoNodeError:
                continue

    async def marked_ledgers(self) -> list[int]:
        return parse_ledger_ids(await self.store.children(MARKERS_PATH), MARKERS_PATH)

    async def read(self, ledger_id: int) -> tuple[Marker, int] | None:
        """(marker, version), or None when the ledger is not marked. An unreadable marker
        reads as one naming no lost node: the ledger still gets a full check."""
        found = await self.store.get(marker_path(ledger_id))
        if found is None:
            return None
        try:
            return Marker.from_json(found.value), found.version
        except MarkerFormatError as error:
            log.warning("ledger %d: unreadable under-replication marker (%s); checking the "
                        "ledger anyway", ledger_id, error)
            return Marker(frozenset(), (f"unreadable marker: {error}",)), found.version

    async def clear(self, ledger_id: int, version: int) -> bool:
        """Remove the marker if nobody changed it since `version`; False if someone did
        (it must be looked at again)."""
        try:
            await self.store.delete(marker_path(ledger_id), expected_version=version)
        except BadVersionError:
            return False
        except NoNodeError:
            pass
        return True

    async def try_lock(self, ledger_id: int, owner: str) -> bool:
        """Take the ledger's lock (an ephemeral node); False if someone else holds it."""
        try:
            await self.store.create(lock_path(ledger_id), owner.encode(), ephemeral=True)
        except NodeExistsError:
            found = await self.store.get(lock_path(ledger_id))
            # A create whose answer was lost with the connection may have been ours.
            return found is not None and found.value == owner.encode()
        return True

    async def unlock(self, ledger_id: int, owner: str) -> None:
        """Release the lock if `owner` still holds it (a lost session may have passed it on)."""
        found = await self.store.get(lock_path(ledger_id))
        if found is None or found.value != owner.encode():
            return
        with contextlib.suppress(NoNodeError, BadVersionError):
            await self.store.delete(lock_path(ledger_id), expected_version=found.version)
