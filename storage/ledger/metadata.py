"""Ledger metadata: the value kept at /ledgers/<id> in the metadata store, and its JSON codec.

A ledger's metadata says who stores which entries (its ensembles: from a first entry id on,
entries are striped over this list of storage node addresses), its quorum sizes, whether it is
still being written (OPEN), being recovered by a new owner (IN_RECOVERY) or sealed (CLOSED),
and once sealed, its last entry id and length in bytes. Every change is a compare-and-set on
the store's version, which is how writers and recoverers detect each other.
"""

from __future__ import annotations

import bisect
import enum
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from storage.ledger.errors import LedgerMetadataError

FORMAT_VERSION = 1


class LedgerState(enum.Enum):
    OPEN = "OPEN"
    IN_RECOVERY = "IN_RECOVERY"
    CLOSED = "CLOSED"


@dataclass(frozen=True)
class Segment:
    """Entries from `first_entry_id` on (until the next segment) live on `nodes`."""

    first_entry_id: int
    nodes: tuple[str, ...]


@dataclass(frozen=True)
class LedgerMetadata:
    ledger_id: int
    ensemble_size: int
    write_quorum: int
    ack_quorum: int
    ensembles: tuple[Segment, ...]
    state: LedgerState = LedgerState.OPEN
    last_entry_id: int = -1  # meaningful once CLOSED; -1 = no entries
    length: int = 0  # bytes of payload, meaningful once CLOSED
    ctime: float = 0.0  # creation time, seconds since the epoch
    custom: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_quorum_sizes(self.ensemble_size, self.write_quorum, self.ack_quorum)
        if not self.ensembles:
            raise LedgerMetadataError(f"ledger {self.ledger_id}: no ensemble")
        previous_first = -1
        for segment in self.ensembles:
            if len(segment.nodes) != self.ensemble_size:
                raise LedgerMetadataError(
                    f"ledger {self.ledger_id}: ensemble {list(segment.nodes)} does not have "
                    f"{self.ensemble_size} nodes"
                )
            if segment.first_entry_id <= previous_first:
                raise LedgerMetadataError(
                    f"ledger {self.ledger_id}: ensembles not in increasing entry order"
                )
            previous_first = segment.first_entry_id
        if self.ensembles[0].first_entry_id != 0:
            raise LedgerMetadataError(f"ledger {self.ledger_id}: first ensemble must start at 0")
        # Looked up on every read; computed once (the dataclass is frozen, hence setattr).
        object.__setattr__(
            self, "_segment_starts", [segment.first_entry_id for segment in self.ensembles]
        )

    @property
    def is_closed(self) -> bool:
        return self.state is LedgerState.CLOSED

    @property
    def current_ensemble(self) -> Segment:
        """The last segment: where a writer sends new entries."""
        return self.ensembles[-1]

    def segment_for(self, entry_id: int) -> Segment:
        """The segment whose node list holds `entry_id`."""
        if len(self.ensembles) == 1:
            return self.ensembles[0]
        return self.ensembles[bisect.bisect_right(self._segment_starts, entry_id) - 1]

    def all_nodes(self) -> set[str]:
        return {node for segment in self.ensembles for node in segment.nodes}

    def with_ensemble_change(
        self, first_entry_id: int, replacements: Mapping[int, str]
    ) -> LedgerMetadata:
        """A copy where entries from `first_entry_id` on use the current ensemble with the
        node at each index in `replacements` swapped for its new address.

        When the change starts where the current segment starts, that segment is replaced
        in place instead of leaving an empty one behind.
        """
        current = self.current_ensemble
        if first_entry_id < current.first_entry_id:
            raise ValueError(
                f"ensemble change at entry {first_entry_id} precedes the current ensemble "
                f"starting at {current.first_entry_id}"
            )
        nodes = list(current.nodes)
        for index, address in replacements.items():
            nodes[index] = address
        new_segment = Segment(first_entry_id, tuple(nodes))
        kept = self.ensembles[:-1] if first_entry_id == current.first_entry_id else self.ensembles
        return replace(self, ensembles=(*kept, new_segment))

    def to_json(self) -> bytes:
        document = {
            "format": FORMAT_VERSION,
            "ledger_id": self.ledger_id,
            "ensemble_size": self.ensemble_size,
            "write_quorum": self.write_quorum,
            "ack_quorum": self.ack_quorum,
            "ensembles": [[s.first_entry_id, list(s.nodes)] for s in self.ensembles],
            "state": self.state.value,
            "last_entry_id": self.last_entry_id,
            "length": self.length,
            "ctime": self.ctime,
            "custom": dict(self.custom),
        }
        return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> LedgerMetadata:
        try:
            document = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as error:
            raise LedgerMetadataError(f"ledger metadata is not valid JSON: {error}") from None
        if not isinstance(document, dict):
            raise LedgerMetadataError("ledger metadata is not a JSON object")
        if document.get("format") != FORMAT_VERSION:
            raise LedgerMetadataError(
                f"unsupported ledger metadata format {document.get('format')!r} "
                f"(this client reads format {FORMAT_VERSION})"
            )
        try:
            return cls(
                ledger_id=_int(document["ledger_id"]),
                ensemble_size=_int(document["ensemble_size"]),
                write_quorum=_int(document["write_quorum"]),
                ack_quorum=_int(document["ack_quorum"]),
                ensembles=tuple(_segment(item) for item in document["ensembles"]),
                state=LedgerState(document["state"]),
                last_entry_id=_int(document["last_entry_id"]),
                length=_int(document["length"]),
                ctime=float(document["ctime"]),
                custom=_string_map(document["custom"]),
            )
        except LedgerMetadataError:
            raise
        except (KeyError, TypeError, ValueError) as error:
            raise LedgerMetadataError(f"malformed ledger metadata: {error!r}") from None


def check_quorum_sizes(ensemble_size: int, write_quorum: int, ack_quorum: int) -> None:
    """Reject sizes that cannot work: 1 <= ack quorum <= write quorum <= ensemble size."""
    if not 1 <= ack_quorum <= write_quorum <= ensemble_size:
        raise ValueError(
            "need 1 <= ack_quorum <= write_quorum <= ensemble_size, got "
            f"E={ensemble_size} Qw={write_quorum} Qa={ack_quorum}"
        )


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _segment(item: object) -> Segment:
    if not isinstance(item, Sequence) or len(item) != 2:
        raise TypeError(f"expected [first entry id, [nodes]], got {item!r}")
    first_entry_id, nodes = item
    if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
        raise TypeError(f"expected a list of node addresses, got {nodes!r}")
    return Segment(_int(first_entry_id), tuple(nodes))


def _string_map(value: object) -> dict[str, str]:
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TypeError(f"expected an object of strings, got {value!r}")
    return dict(value)
