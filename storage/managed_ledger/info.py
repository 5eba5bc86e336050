"""What the metadata store keeps about one managed ledger, and its JSON form.

Stored at /managed-ledgers/<name> and always updated with compare-and-set, so a single writer
can tell when someone else (a new owner, a delete) changed it underneath.

JSON (format 1):
  {"format": 1,
   "ledgers": [{"id": 7, "entries": 100, "size": 123456, "first_index": 0,
                "created": 1700000000.0, "closed": 1700000100.0}, ...],   # chain, oldest first
   "cursors": {"name": [ledger id, entry id]},                            # mark-delete positions
   "properties": {"key": "value"},
   "log_start": [ledger id, entry id] | null}                             # truncate_before
The last ledger of the chain may be open: its entries/size/closed are null until it is
closed (its writer knows them; a recovering opener learns them from the ledger itself).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from storage.managed_ledger.errors import ManagedLedgerMetadataError
from storage.managed_ledger.position import Position

INFO_FORMAT = 1


@dataclass(frozen=True)
class LedgerInfo:
    """One ledger of the chain. entries/size/closed are None while the ledger is open."""

    ledger_id: int
    created: float
    entries: int | None = None
    size: int | None = None
    first_index: int | None = None
    closed: float | None = None

    @property
    def is_closed(self) -> bool:
        return self.closed is not None

    @property
    def last_entry_id(self) -> int:
        """Id of the last entry of a closed ledger (-1 when it holds none)."""
        if self.entries is None:
            raise ValueError(f"ledger {self.ledger_id} is still open")
        return self.entries - 1


@dataclass(frozen=True)
class ManagedLedgerInfo:
    """Immutable snapshot; updates build a new one (see dataclasses.replace)."""

    ledgers: tuple[LedgerInfo, ...] = ()
    cursors: Mapping[str, Position] = field(default_factory=dict)
    properties: Mapping[str, str] = field(default_factory=dict)
    log_start: Position | None = None

    def to_json(self) -> bytes:
        document = {
            "format": INFO_FORMAT,
            "ledgers": [
                {
                    "id": ledger.ledger_id,
                    "entries": ledger.entries,
                    "size": ledger.size,
                    "first_index": ledger.first_index,
                    "created": ledger.created,
                    "closed": ledger.closed,
                }
                for ledger in self.ledgers
            ],
            "cursors": {
                name: [pos.ledger_id, pos.entry_id] for name, pos in sorted(self.cursors.items())
            },
            "properties": dict(sorted(self.properties.items())),
            "log_start": (
                None
                if self.log_start is None
                else [self.log_start.ledger_id, self.log_start.entry_id]
            ),
        }
        return json.dumps(document, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes, where: str) -> ManagedLedgerInfo:
        """Parse and validate; ManagedLedgerMetadataError (naming `where`) on anything odd."""
        try:
            document = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            raise ManagedLedgerMetadataError(f"{where}: not valid JSON ({exc})") from None
        try:
            return _parse(document)
        except (KeyError, TypeError, ValueError) as exc:
            raise ManagedLedgerMetadataError(f"{where}: malformed metadata ({exc})") from None


def _parse(document: Any) -> ManagedLedgerInfo:
    if not isinstance(document, dict):
        raise TypeError("top level is not an object")
    if document.get("format") != INFO_FORMAT:
        raise ValueError(f"unsupported format {document.get('format')!r}")
    ledgers = tuple(_parse_ledger(item) for item in _typed(document["ledgers"], list, "ledgers"))
    ids = [ledger.ledger_id for ledger in ledgers]
    if ids != sorted(set(ids)):
        raise ValueError(f"ledger ids are not strictly increasing: {ids}")
    if any(not ledger.is_closed for ledger in ledgers[:-1]):
        raise ValueError("only the last ledger of the chain may be open")
    cursors = {
        _typed(name, str, "cursor name"): _parse_position(pos, f"cursor {name!r}")
        for name, pos in _typed(document["cursors"], dict, "cursors").items()
    }
    properties = {
        _typed(key, str, "property key"): _typed(value, str, f"property {key!r}")
        for key, value in _typed(document["properties"], dict, "properties").items()
    }
    log_start = document["log_start"]
    return ManagedLedgerInfo(
        ledgers=ledgers,
        cursors=cursors,
        properties=properties,
        log_start=None if log_start is None else _parse_position(log_start, "log_start"),
    )


def _parse_ledger(item: Any) -> LedgerInfo:
    _typed(item, dict, "ledger")
    ledger = LedgerInfo(
        ledger_id=_integer(item["id"], "ledger id"),
        created=_number(item["created"], "created"),
        entries=_optional(item["entries"], _integer, "entries"),
        size=_optional(item["size"], _integer, "size"),
        first_index=_optional(item["first_index"], _integer, "first_index"),
        closed=_optional(item["closed"], _number, "closed"),
    )
    if ledger.ledger_id < 0:
        raise ValueError(f"negative ledger id {ledger.ledger_id}")
    if ledger.is_closed and (ledger.entries is None or ledger.size is None):
        raise ValueError(f"closed ledger {ledger.ledger_id} lacks entries or size")
    if (ledger.entries or 0) < 0 or (ledger.size or 0) < 0:
        raise ValueError(f"ledger {ledger.ledger_id} has a negative count")
    return ledger


def _parse_position(value: Any, what: str) -> Position:
    _typed(value, list, what)
    if len(value) != 2:
        raise ValueError(f"{what} is not [ledger id, entry id]")
    return Position(_integer(value[0], what), _integer(value[1], what))


def _typed(value: Any, kind: type, what: str) -> Any:
    if not isinstance(value, kind):
        raise TypeError(f"{what} should be {kind.__name__}, got {type(value).__name__}")
    return value


def _integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} should be an integer, got {value!r}")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} should be a number, got {value!r}")
    return float(value)


def _optional(value: Any, parse: Any, what: str) -> Any:
    return None if value is None else parse(value, what)
