"""What re-replication must do for one ledger, decided from its metadata alone (no I/O).

A ledger's entries are striped: entry e of a segment lives on the Qw nodes of its write set
(quorum.write_set). Seen from one node, a segment is a *fragment*: the entries of the
segment's range that the node's ensemble index stores. Auto-recovery works fragment by
fragment:

- a fragment on a live node must hold all its entries; missing ones (a node that missed
  writes while briefly away, or came back with a wiped disk) are copied back to it;
- a fragment on a node confirmed lost gets a replacement node, chosen among live nodes not
  already in that segment's ensemble; every entry of the fragment is copied to it, then the
  metadata names the replacement at that index of that segment (a compare-and-set);
- a fragment on a node that is away but not (yet) confirmed lost cannot be handled now.

Entries are copied from the other nodes of their write set in the same segment.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace

from storage.ledger.metadata import LedgerMetadata, Segment
from storage.ledger.quorum import write_set


def stores_entry(entry_id: int, ensemble_index: int, ensemble_size: int,
                 write_quorum: int) -> bool:
    """Whether ensemble index `ensemble_index` is in the write set of `entry_id`."""
    return (ensemble_index - entry_id) % ensemble_size < write_quorum


@dataclass(frozen=True)
class Fragment:
    """The entries first_entry_id..last_entry_id of segment `segment_number` that the node
    at `ensemble_index` stores (empty when last_entry_id < first_entry_id)."""

    segment_number: int  # position of the segment in LedgerMetadata.ensembles
    ensemble_index: int
    address: str
    first_entry_id: int
    last_entry_id: int
    ensemble_size: int
    write_quorum: int

    @property
    def is_empty(self) -> bool:
        return self.last_entry_id < self.first_entry_id

    def entry_ids(self) -> Iterator[int]:
        """The entries this fragment's node stores, in increasing order."""
        for entry_id in range(self.first_entry_id, self.last_entry_id + 1):
            if stores_entry(entry_id, self.ensemble_index, self.ensemble_size,
                            self.write_quorum):
                yield entry_id


def segment_ranges(metadata: LedgerMetadata, last_entry_id: int) -> list[tuple[int, int]]:
    """(first, last) entry id of each segment, the last one ending at `last_entry_id`.

    A segment that starts after `last_entry_id` (an ensemble change after which nothing was
    acknowledged) gets an empty range.
    """
    ranges = []
    segments = metadata.ensembles
    for number, segment in enumerate(segments):
        following = segments[number + 1].first_entry_id if number + 1 < len(segments) else None
        last = last_entry_id if following is None else min(following - 1, last_entry_id)
        ranges.append((segment.first_entry_id, last))
    return ranges


def fragments(metadata: LedgerMetadata, last_entry_id: int | None = None) -> list[Fragment]:
    """Every fragment of the ledger, by segment then ensemble index.

    `last_entry_id` defaults to the metadata's (meaningful once the ledger is closed).
    """
    if last_entry_id is None:
        last_entry_id = metadata.last_entry_id
    found = []
    for number, (first, last) in enumerate(segment_ranges(metadata, last_entry_id)):
        for index, address in enumerate(metadata.ensembles[number].nodes):
            found.append(Fragment(number, index, address, first, last,
                                  metadata.ensemble_size, metadata.write_quorum))
    return found


@dataclass(frozen=True)
class FragmentTarget:
    """Where a fragment's entries must be: its own node, or the replacement of a lost one."""

    fragment: Fragment
    address: str

    @property
    def is_replacement(self) -> bool:
        return self.address != self.fragment.address


@dataclass
class RepairTargets:
    """The outcome of `choose_targets` for one ledger."""

    targets: list[FragmentTarget] = field(default_factory=list)
    # (segment number, ensemble index) → replacement address, to record in the metadata.
    replacements: dict[tuple[int, int], str] = field(default_factory=dict)
    # Why some fragments cannot be handled now (node away but not confirmed lost, or no
    # node available to replace a lost one); the ledger must be looked at again later.
    blocked: list[str] = field(default_factory=list)


def choose_targets(
    metadata: LedgerMetadata,
    live: Iterable[str],
    lost: Iterable[str],
    rng: random.Random,
    *,
    avoid: Iterable[str] = (),
    exclude: Iterable[str] = (),
    last_entry_id: int | None = None,
) -> RepairTargets:
    """Decide, for every fragment, which node must hold it.

    Live nodes keep their fragments. A node in `lost` that is not live is replaced in each
    segment naming it by a live node outside that segment's ensemble (nodes in `avoid`,
    e.g. recently failing ones, only when nothing else is left; nodes in `exclude`, e.g.
    ones refusing the ledger, never). Empty fragments of lost nodes are replaced too, so
    that no metadata names a lost node afterwards.
    """
    live_set, lost_set = frozenset(live), frozenset(lost)
    candidates = live_set - frozenset(exclude)
    avoided = frozenset(avoid)
    result = RepairTargets()
    for fragment in fragments(metadata, last_entry_id):
        address = fragment.address
        if address in live_set:
            result.targets.append(FragmentTarget(fragment, address))
            continue
        if address not in lost_set:
            result.blocked.append(
                f"{address} (segment {fragment.segment_number}) is away but not confirmed lost")
            continue
        segment = metadata.ensembles[fragment.segment_number]
        taken = set(segment.nodes) | {
            chosen for (number, _), chosen in result.replacements.items()
            if number == fragment.segment_number}
        replacement = (_pick(candidates - avoided - taken, rng)
                       or _pick(candidates - taken, rng))
        if replacement is None:
            result.blocked.append(
                f"no live node outside {list(segment.nodes)} to replace {address} "
                f"(segment {fragment.segment_number})")
            continue
        result.replacements[(fragment.segment_number, fragment.ensemble_index)] = replacement
        result.targets.append(FragmentTarget(fragment, replacement))
    return result


def _pick(candidates: Iterable[str], rng: random.Random) -> str | None:
    ordered = sorted(candidates)
    return rng.choice(ordered) if ordered else None


def missing_entries(fragment: Fragment, held: Iterable[int]) -> list[int]:
    """The fragment's entries that are not among `held`, in increasing order."""
    held_set = held if isinstance(held, set | frozenset) else set(held)
    return [entry_id for entry_id in fragment.entry_ids() if entry_id not in held_set]


def copy_sources(metadata: LedgerMetadata, target: FragmentTarget, entry_id: int,
                 live: Iterable[str]) -> list[str]:
    """Live nodes that should hold `entry_id` besides the target, in write-set order."""
    live_set = frozenset(live)
    segment = metadata.ensembles[target.fragment.segment_number]
    return [
        segment.nodes[index]
        for index in write_set(entry_id, metadata.ensemble_size, metadata.write_quorum)
        if index != target.fragment.ensemble_index and segment.nodes[index] in live_set
        and segment.nodes[index] != target.address
    ]


def with_replacements(metadata: LedgerMetadata,
                      replacements: Mapping[tuple[int, int], str]) -> LedgerMetadata:
    """A copy of `metadata` naming each replacement at its (segment number, index)."""
    if not replacements:
        return metadata
    segments = []
    for number, segment in enumerate(metadata.ensembles):
        nodes = list(segment.nodes)
        for (replaced_number, index), address in replacements.items():
            if replaced_number == number:
                nodes[index] = address
        segments.append(Segment(segment.first_entry_id, tuple(nodes)))
    return replace(metadata, ensembles=tuple(segments))


def names_any(metadata: LedgerMetadata, addresses: Iterable[str]) -> set[str]:
    """Which of `addresses` some segment of the ledger names."""
    return metadata.all_nodes() & set(addresses)
