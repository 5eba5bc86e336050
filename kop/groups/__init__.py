"""Consumer groups: the classic group protocol and committed offsets, kept in the native model.

    coordinator = GroupCoordinator(broker)      # broker.groups
    await coordinator.start()                   # loads the offsets-topic partitions it owns
    result = await coordinator.join_group(JoinRequest(...))

Modules: `placement` (group → offsets-topic partition → managed ledger), `records` (the stored
format), `compacted_log` (key/value log with snapshots over a managed ledger), `storage`
(opening partition logs), `group` (one group's state), `membership` (join/sync/heartbeat/
leave and rebalance timers), `coordinator` (partitions, offsets, admin operations).
"""

from kop.groups.coordinator import (
    FetchedOffset,
    GroupConfig,
    GroupCoordinator,
    GroupListing,
    OffsetToCommit,
    PartitionStatus,
)
from kop.groups.group import Group, GroupState, GroupSummary, MemberSummary
from kop.groups.membership import JoinRequest, JoinResult, LeavingMember, SyncResult
from kop.groups.placement import OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC, coordinator_partition
from kop.groups.records import TopicPartition

__all__ = [
    "OFFSETS_TOPIC",
    "TRANSACTION_STATE_TOPIC",
    "FetchedOffset",
    "Group",
    "GroupConfig",
    "GroupCoordinator",
    "GroupListing",
    "GroupState",
    "GroupSummary",
    "JoinRequest",
    "JoinResult",
    "LeavingMember",
    "MemberSummary",
    "OffsetToCommit",
    "PartitionStatus",
    "SyncResult",
    "TopicPartition",
    "coordinator_partition",
]
