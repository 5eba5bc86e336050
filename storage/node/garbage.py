"""Which segments garbage collection reclaims, and what must outlive them.

A sealed segment whose entries are all dead (their ledgers deleted) is removed.
A sealed segment that is mostly dead is compacted first: its live entries are
copied to the head of the journal, then it is removed. Before a segment goes,
any FENCE or DELETE record in it that still matters is written again at the
head, so removing a file never unfences or undeletes a ledger.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from storage.node.records import RecordKind
from storage.node.state import NodeState


@dataclass
class GarbagePlan:
    remove: list[int] = field(default_factory=list)  # sealed segments with nothing live
    compact: list[int] = field(default_factory=list)  # sealed, mostly dead: relocate, then remove


@dataclass
class GarbageReport:
    segments_removed: list[int] = field(default_factory=list)
    entries_relocated: int = 0
    bytes_reclaimed: int = 0


def plan_collection(state: NodeState, active_segment: int, compaction_threshold: float,
                    max_relocated_bytes: int) -> GarbagePlan:
    """Segments to remove and to compact now. Compaction takes the emptiest segments
    first and stops once `max_relocated_bytes` of live data would be copied."""
    plan = GarbagePlan()
    candidates = []
    for number, usage in sorted(state.segments.items()):
        if number == active_segment or not usage.indexed:
            continue  # still being written, or its index file is not written yet
        if usage.live_bytes == 0:
            plan.remove.append(number)
        elif usage.live_bytes < compaction_threshold * usage.entry_bytes:
            candidates.append((usage.live_bytes / usage.entry_bytes, number))
    budget = max_relocated_bytes
    for _, number in sorted(candidates):
        live = state.segments[number].live_bytes
        if live > budget:
            break
        budget -= live
        plan.compact.append(number)
    return plan


def records_to_carry_over(state: NodeState, segment: int) -> list[tuple[RecordKind, int]]:
    """FENCE and DELETE records that must be journaled again before `segment` is removed:
    fences of ledgers still present whose newest fence is in it, and deletes whose ledger
    still has records in other segments."""
    carried = [(RecordKind.FENCE, ledger_id) for ledger_id, ledger in state.ledgers.items()
               if ledger.fenced and ledger.fence_segment == segment]
    carried += [(RecordKind.DELETE, ledger_id)
                for ledger_id, delete_segment in state.tombstones.items()
                if delete_segment == segment and state.tombstone_needed(ledger_id, segment)]
    return carried
