"""One consumer group in memory: its state, generation, members and committed offsets.

This module holds the group's data and the rules that only look at the group itself
(protocol selection, who has rejoined, state transitions); the coordinator drives it. States
and transitions are Kafka's classic group protocol:

    Empty ──join──▶ PreparingRebalance ──all joined / timeout──▶ CompletingRebalance
      ▲                 ▲        │                                   │ leader's SyncGroup
      └─ last member ───┘        └──────▶ Empty (nobody rejoined)    ▼
         leaves                   ◀──── member joins/leaves/fails ── Stable
    any state ──▶ Dead (deleted, expired or unloaded)
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall

from kop.groups.records import CommittedOffset, StoredGroup, StoredMember, TopicPartition
from wire.errors import DecodeError
from wire.messages import ConsumerProtocolSubscription
from wire.protocol import decode_versioned

CONSUMER_PROTOCOL_TYPE = "consumer"


class GroupState(enum.Enum):
    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


# The states each state may be entered from (Kafka's GroupState.validPreviousStates).
_VALID_PREVIOUS_STATES: dict[GroupState, frozenset[GroupState]] = {
    GroupState.EMPTY: frozenset({GroupState.PREPARING_REBALANCE}),
    GroupState.PREPARING_REBALANCE: frozenset(
        {GroupState.STABLE, GroupState.COMPLETING_REBALANCE, GroupState.EMPTY}),
    GroupState.COMPLETING_REBALANCE: frozenset({GroupState.PREPARING_REBALANCE}),
    GroupState.STABLE: frozenset({GroupState.COMPLETING_REBALANCE}),
    GroupState.DEAD: frozenset(GroupState),
}


class IllegalGroupStateError(RuntimeError):
    """A transition the protocol does not allow: a bug in the coordinator."""


@dataclass(eq=False)
class Member:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]  # (name, metadata), in the member's preference order
    assignment: bytes = b""
    # The JoinGroup / SyncGroup answer this member waits for, if it waits.
    join_waiter: defer.Deferred[Any] | None = None
    sync_waiter: defer.Deferred[Any] | None = None
    # Joined but has not yet been through a completed join: its heartbeat timer is the long
    # new-member timeout rather than its session timeout.
    is_new: bool = False
    expiry: IDelayedCall | None = None

    @property
    def awaiting_join(self) -> bool:
        return self.join_waiter is not None

    @property
    def awaiting_sync(self) -> bool:
        return self.sync_waiter is not None

    @property
    def protocol_names(self) -> list[str]:
        return [name for name, _ in self.protocols]

    def metadata_for(self, protocol: str) -> bytes:
        for name, metadata in self.protocols:
            if name == protocol:
                return metadata
        return b""

    def matches(self, protocols: list[tuple[str, bytes]]) -> bool:
        return self.protocols == protocols

    def vote(self, candidates: set[str]) -> str:
        """The member's most preferred protocol among those every member supports."""
        for name, _ in self.protocols:
            if name in candidates:
                return name
        raise IllegalGroupStateError(f"member {self.member_id} supports none of {candidates}")


@dataclass(frozen=True)
class JoinedMember:
    """A member as the leader sees it in the JoinGroup answer."""

    member_id: str
    group_instance_id: str | None
    metadata: bytes


class Group:
    def __init__(self, group_id: str, now_ms: int, state: GroupState = GroupState.EMPTY) -> None:
        self.group_id = group_id
        self.state = state
        self.state_timestamp_ms = now_ms
        self.generation_id = 0
        self.protocol_type: str | None = None
        self.protocol_name: str | None = None
        self.leader_id: str | None = None
        self.members: dict[str, Member] = {}
        self.static_members: dict[str, str] = {}  # group.instance.id → member id
        # Members told MEMBER_ID_REQUIRED that have not joined yet, with their expiry timers.
        self.pending_members: dict[str, IDelayedCall] = {}
        # Members of the current generation that have not sent SyncGroup yet.
        self.pending_sync: set[str] = set()
        # A member joined during the first rebalance's initial delay: wait a little longer.
        self.new_member_added = False
        self.in_initial_delay = False
        self.join_timer: IDelayedCall | None = None
        self.sync_timer: IDelayedCall | None = None
        self.subscribed_topics: set[str] | None = None
        self.offsets: dict[TopicPartition, CommittedOffset] = {}
        # Commits being written, per partition (OffsetFetch require_stable reports them).
        self.pending_commits: dict[TopicPartition, int] = {}
        # Offsets committed inside transactions that have not ended, per producer id.
        self.transactional_offsets: dict[int, dict[TopicPartition, CommittedOffset]] = {}

    def __repr__(self) -> str:
        return f"<Group {self.group_id!r} {self.state.value} generation {self.generation_id}>"

    # -- state -------------------------------------------------------------------------------

    def is_in(self, *states: GroupState) -> bool:
        return self.state in states

    def transition(self, state: GroupState, now_ms: int) -> None:
        if self.state not in _VALID_PREVIOUS_STATES[state]:
            raise IllegalGroupStateError(
                f"group {self.group_id}: {self.state.value} cannot become {state.value}")
        self.state = state
        self.state_timestamp_ms = now_ms

    @property
    def can_rebalance(self) -> bool:
        return self.state in (GroupState.STABLE, GroupState.COMPLETING_REBALANCE, GroupState.EMPTY)

    # -- members -------------------------------------------------------------------------------

    def add(self, member: Member) -> None:
        if not self.members:
            self.protocol_type = member.protocol_type
        if self.leader_id is None:
            self.leader_id = member.member_id
        self.members[member.member_id] = member
        if member.group_instance_id is not None:
            self.static_members[member.group_instance_id] = member.member_id

    def remove(self, member_id: str) -> Member | None:
        member = self.members.pop(member_id, None)
        instance_id = None if member is None else member.group_instance_id
        if instance_id is not None and self.static_members.get(instance_id) == member_id:
            del self.static_members[instance_id]
        if self.leader_id == member_id:
            self.leader_id = next(iter(self.members), None)
        self.pending_sync.discard(member_id)
        return member

    def replace_static_member(self, instance_id: str, old_member_id: str,
                              new_member_id: str) -> Member:
        """Give a static member a new member id (it restarted); it keeps its assignment."""
        member = self.members.pop(old_member_id)
        member.member_id = new_member_id
        self.members[new_member_id] = member
        if self.leader_id == old_member_id:
            self.leader_id = new_member_id
        self.static_members[instance_id] = new_member_id
        if old_member_id in self.pending_sync:
            self.pending_sync.discard(old_member_id)
            self.pending_sync.add(new_member_id)
        return member

    def static_member_id(self, instance_id: str | None) -> str | None:
        return None if instance_id is None else self.static_members.get(instance_id)

    def is_leader(self, member_id: str) -> bool:
        return self.leader_id == member_id

    @property
    def awaiting_join_count(self) -> int:
        return sum(1 for member in self.members.values() if member.awaiting_join)

    def has_all_members_joined(self) -> bool:
        return self.awaiting_join_count == len(self.members) and not self.pending_members

    def not_yet_rejoined(self) -> list[Member]:
        return [member for member in self.members.values() if not member.awaiting_join]

    def elect_joined_leader(self) -> bool:
        """Keep a leader that rejoined, or pick a member that did; False if none rejoined."""
        if self.leader_id is None:
            return False
        if self.members[self.leader_id].awaiting_join:
            return True
        for member in self.members.values():
            if member.awaiting_join:
                self.leader_id = member.member_id
                return True
        return False

    @property
    def rebalance_timeout_ms(self) -> int:
        return max((member.rebalance_timeout_ms for member in self.members.values()), default=0)

    # -- protocols -----------------------------------------------------------------------------

    def candidate_protocols(self) -> set[str]:
        """Protocols every member supports."""
        members = iter(self.members.values())
        first = next(members, None)
        if first is None:
            return set()
        candidates = set(first.protocol_names)
        for member in members:
            candidates &= set(member.protocol_names)
        return candidates

    def supports_protocols(self, protocol_type: str, protocols: Iterable[str]) -> bool:
        names = set(protocols)
        if self.state is GroupState.EMPTY:
            return bool(protocol_type) and bool(names)
        return self.protocol_type == protocol_type and bool(names & self.candidate_protocols())

    def select_protocol(self) -> str:
        """Each member votes for its preferred candidate; most votes wins, ties going to the
        protocol the earliest member preferred."""
        candidates = self.candidate_protocols()
        votes: dict[str, int] = {}
        for member in self.members.values():
            choice = member.vote(candidates)
            votes[choice] = votes.get(choice, 0) + 1
        return max(votes, key=lambda name: votes[name])

    def init_next_generation(self, now_ms: int) -> None:
        self.generation_id += 1
        if self.members:
            self.protocol_name = self.select_protocol()
            self.transition(GroupState.COMPLETING_REBALANCE, now_ms)
            self.pending_sync = set(self.members)
        else:
            self.protocol_name = None
            self.transition(GroupState.EMPTY, now_ms)
            self.pending_sync = set()
        self.subscribed_topics = self.compute_subscribed_topics()

    def compute_subscribed_topics(self) -> set[str] | None:
        """Topics the consumer-protocol members subscribe to; None when unknown (another
        protocol type, or metadata that does not parse)."""
        if self.protocol_type != CONSUMER_PROTOCOL_TYPE:
            return None
        if not self.members:
            return set()
        if self.protocol_name is None:
            return None
        topics: set[str] = set()
        for member in self.members.values():
            try:
                _, subscription = decode_versioned(ConsumerProtocolSubscription,
                                                   member.metadata_for(self.protocol_name))
            except DecodeError:
                return None
            topics.update(subscription.topics)
        return topics

    def is_subscribed_to(self, topic: str) -> bool:
        return self.subscribed_topics is None or topic in self.subscribed_topics

    def current_member_metadata(self) -> list[JoinedMember]:
        """What the leader needs to compute the assignment."""
        assert self.protocol_name is not None
        return [JoinedMember(member.member_id, member.group_instance_id,
                             member.metadata_for(self.protocol_name))
                for member in self.members.values()]

    # -- offsets -------------------------------------------------------------------------------

    def has_offsets(self) -> bool:
        return bool(self.offsets) or bool(self.pending_commits) or bool(self.transactional_offsets)

    def is_unstable(self, tp: TopicPartition) -> bool:
        """A commit of this partition is being written, or waits for its transaction."""
        return tp in self.pending_commits or any(
            tp in offsets for offsets in self.transactional_offsets.values())

    def add_pending_commits(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            self.pending_commits[tp] = self.pending_commits.get(tp, 0) + 1

    def remove_pending_commits(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in partitions:
            left = self.pending_commits.get(tp, 0) - 1
            if left > 0:
                self.pending_commits[tp] = left
            else:
                self.pending_commits.pop(tp, None)

    def expired_offsets(self, now_ms: int, retention_ms: int) -> list[TopicPartition]:
        """Offsets past retention, with Kafka's rules: an empty consumer group's offsets
        expire `retention` after the group became empty; a standalone committer's (no
        protocol type) `retention` after their commit; a stable consumer group's offsets of
        topics it no longer subscribes to, `retention` after their commit. Explicit expire
        timestamps (OffsetCommit v2-4) win."""
        if self.protocol_type is not None and self.state is GroupState.EMPTY:
            def base(committed: CommittedOffset) -> int:
                return self.state_timestamp_ms
            keep_topics: set[str] = set()
        elif (self.protocol_type == CONSUMER_PROTOCOL_TYPE and self.subscribed_topics is not None
              and self.state is GroupState.STABLE):
            def base(committed: CommittedOffset) -> int:
                return committed.commit_timestamp_ms
            keep_topics = self.subscribed_topics
        elif self.protocol_type is None:
            def base(committed: CommittedOffset) -> int:
                return committed.commit_timestamp_ms
            keep_topics = set()
        else:
            return []
        expired = []
        for tp, committed in self.offsets.items():
            if tp.topic in keep_topics or self.is_unstable(tp):
                continue
            if committed.expire_timestamp_ms >= 0:
                if now_ms >= committed.expire_timestamp_ms:
                    expired.append(tp)
            elif now_ms - base(committed) >= retention_ms:
                expired.append(tp)
        return expired

    # -- persistence ---------------------------------------------------------------------------

    def to_stored(self, assignments: dict[str, bytes] | None = None) -> StoredGroup:
        """The group's metadata record; `assignments` overrides the members' current ones."""
        protocol = self.protocol_name
        members = tuple(
            StoredMember(
                member_id=member.member_id,
                group_instance_id=member.group_instance_id,
                client_id=member.client_id,
                client_host=member.client_host,
                rebalance_timeout_ms=member.rebalance_timeout_ms,
                session_timeout_ms=member.session_timeout_ms,
                subscription=member.metadata_for(protocol) if protocol else b"",
                assignment=(assignments.get(member.member_id, b"") if assignments is not None
                            else member.assignment),
            )
            for member in self.members.values()
        )
        return StoredGroup(self.protocol_type, self.generation_id, protocol, self.leader_id,
                           self.state_timestamp_ms, members)

    @classmethod
    def from_stored(cls, group_id: str, stored: StoredGroup) -> Group:
        """A group as loaded: Stable with its members if it had any, else Empty."""
        state = GroupState.STABLE if stored.members else GroupState.EMPTY
        group = cls(group_id, stored.state_timestamp_ms, state)
        group.generation_id = stored.generation_id
        group.protocol_type = stored.protocol_type
        group.protocol_name = stored.protocol_name
        for stored_member in stored.members:
            member = Member(
                member_id=stored_member.member_id,
                group_instance_id=stored_member.group_instance_id,
                client_id=stored_member.client_id,
                client_host=stored_member.client_host,
                rebalance_timeout_ms=stored_member.rebalance_timeout_ms,
                session_timeout_ms=stored_member.session_timeout_ms,
                protocol_type=stored.protocol_type or "",
                protocols=[(stored.protocol_name or "", stored_member.subscription)],
                assignment=stored_member.assignment,
            )
            group.members[member.member_id] = member
            if member.group_instance_id is not None:
                group.static_members[member.group_instance_id] = member.member_id
        group.leader_id = stored.leader_id if stored.leader_id in group.members else (
            next(iter(group.members), None))
        group.subscribed_topics = group.compute_subscribed_topics()
        return group


@dataclass
class GroupSummary:
    """DescribeGroups' view of a group."""

    state: str
    protocol_type: str
    protocol_data: str
    members: list[MemberSummary] = field(default_factory=list)


@dataclass(frozen=True)
class MemberSummary:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    metadata: bytes
    assignment: bytes


def summarize(group: Group) -> GroupSummary:
    """Members with metadata and assignment only while Stable, as Kafka does."""
    if group.state is GroupState.STABLE:
        protocol = group.protocol_name or ""
        members = [MemberSummary(m.member_id, m.group_instance_id, m.client_id, m.client_host,
                                 m.metadata_for(protocol), m.assignment)
                   for m in group.members.values()]
        return GroupSummary(group.state.value, group.protocol_type or "", protocol, members)
    members = [MemberSummary(m.member_id, m.group_instance_id, m.client_id, m.client_host,
                             b"", b"")
               for m in group.members.values()]
    return GroupSummary(group.state.value, group.protocol_type or "", "", members)
