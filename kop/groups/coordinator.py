"""GroupCoordinator: the consumer groups whose offsets-topic partitions this broker owns.

Each group lives in one partition of the offsets topic (`placement.coordinator_partition`);
this broker coordinates a group only while it owns that partition (`broker.owns`). Owning a
partition means having loaded it: its CompactedLog is replayed into groups (with their
members, generation, assignments and committed offsets). While a partition loads, its groups
are answered COORDINATOR_LOAD_IN_PROGRESS; groups of partitions owned elsewhere get
NOT_COORDINATOR (clients then ask FindCoordinator again).

Everything the group protocol promises durably goes through the partition's log before the
client hears back: committed offsets, the assignment of each generation, the group becoming
empty, deletions (tombstones). A write that fails makes the partition reload from storage, so
memory never holds what the log does not.

Offsets retention runs every `offsets.retention.check.interval.ms` (Kafka's rules, see
`Group.expired_offsets`); an empty group left with no offsets is removed.

All timers use the injected reactor, so tests drive time with `twisted.internet.task.Clock`.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from kop.errors import KafkaError
from kop.groups.compacted_log import CompactedLog
from kop.groups.group import CONSUMER_PROTOCOL_TYPE, Group, GroupState, GroupSummary, summarize
from kop.groups.membership import (
    JoinRequest,
    JoinResult,
    LeavingMember,
    Membership,
    SyncResult,
    cancel_timer,
    validate_current_member,
)
from kop.groups.placement import DEFAULT_OFFSETS_PARTITIONS, OFFSETS_TOPIC, coordinator_partition
from kop.groups.records import (
    CommittedOffset,
    StoredGroup,
    TopicPartition,
    decode_group,
    decode_key,
    decode_offset,
    encode_group,
    encode_offset,
    group_key,
    offset_key,
    transactional_offset_key,
)
from kop.groups.storage import GroupStorage, ManagedLedgerGroupStorage
from wire.generated.error_codes import ErrorCode

log = logging.getLogger(__name__)

FIRST_LOAD_RETRY_SECONDS = 1.0
MAX_LOAD_RETRY_SECONDS = 300.0


@dataclass(frozen=True)
class GroupConfig:
    initial_rebalance_delay_ms: int = 3000
    min_session_timeout_ms: int = 6000
    max_session_timeout_ms: int = 1_800_000
    offsets_retention_ms: int = 7 * 24 * 3600 * 1000
    offsets_retention_check_interval_ms: int = 600_000
    offset_metadata_max_bytes: int = 4096

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> GroupConfig:
        defaults = cls()

        def number(name: str, default: int) -> int:
            return int(settings.get(name, default))

        retention_minutes = settings.get("offsets.retention.minutes")
        return cls(
            initial_rebalance_delay_ms=number("group.initial.rebalance.delay.ms",
                                              defaults.initial_rebalance_delay_ms),
            min_session_timeout_ms=number("group.min.session.timeout.ms",
                                          defaults.min_session_timeout_ms),
            max_session_timeout_ms=number("group.max.session.timeout.ms",
                                          defaults.max_session_timeout_ms),
            offsets_retention_ms=(int(retention_minutes) * 60_000 if retention_minutes is not None
                                  else defaults.offsets_retention_ms),
            offsets_retention_check_interval_ms=number(
                "offsets.retention.check.interval.ms",
                defaults.offsets_retention_check_interval_ms),
            offset_metadata_max_bytes=number("offset.metadata.max.bytes",
                                             defaults.offset_metadata_max_bytes),
        )


class PartitionStatus(enum.Enum):
    LOADING = "loading"
    LOADED = "loaded"
    FAILED = "failed"  # could not be loaded (storage down, damaged entry); retried later


@dataclass(eq=False)
class CoordinatorPartition:
    index: int
    status: PartitionStatus = PartitionStatus.LOADING
    log: CompactedLog | None = None
    retry: IDelayedCall | None = None
    retry_seconds: float = FIRST_LOAD_RETRY_SECONDS


@dataclass(frozen=True)
class OffsetToCommit:
    offset: int
    leader_epoch: int = -1
    metadata: str | None = None
    commit_timestamp_ms: int = -1  # OffsetCommit v1 may set it; otherwise "now"


@dataclass(frozen=True)
class FetchedOffset:
    offset: int
    leader_epoch: int
    metadata: str
    error: ErrorCode = ErrorCode.NONE


NO_OFFSET = FetchedOffset(-1, -1, "")


@dataclass(frozen=True)
class GroupListing:
    group_id: str
    protocol_type: str
    state: str


class GroupCoordinator:
    def __init__(self, broker: Any, storage: GroupStorage | None = None,
                 reactor: IReactorTime | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor  # type: ignore[assignment]
        self.reactor: IReactorTime = reactor  # type: ignore[assignment]
        self._broker = broker
        self._storage: GroupStorage = storage or ManagedLedgerGroupStorage(broker)
        self.config = GroupConfig.from_settings(broker.config.settings)
        self.partition_count = DEFAULT_OFFSETS_PARTITIONS
        self.membership = Membership(self)
        self._partitions: dict[int, CoordinatorPartition] = {}
        self._groups: dict[str, Group] = {}
        self._active = False
        self._retention_timer: IDelayedCall | None = None

    # -- what the membership protocol needs (MembershipHost) ---------------------------------

    @property
    def initial_rebalance_delay_ms(self) -> int:
        return self.config.initial_rebalance_delay_ms

    def now_ms(self) -> int:
        return int(self.reactor.seconds() * 1000)

    def is_current(self, group: Group) -> bool:
        return self._groups.get(group.group_id) is group

    def store_group(self, group: Group, assignments: dict[str, bytes]) -> defer.Deferred[ErrorCode]:
        stored = encode_group(group.to_stored(assignments))
        written = self._write(group.group_id, [(group_key(group.group_id), stored)])

        def report(error: ErrorCode) -> ErrorCode:
            if error != ErrorCode.NONE:
                log.warning("group %s: could not store generation %d: %s", group.group_id,
                            group.generation_id, error.name)
            return error

        return written.addCallback(report)

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every offsets-topic partition this broker owns (failures are retried in the
        background, never raised) and start the retention timer."""
        self.partition_count = await self._storage.partition_count()
        self._active = True
        owned = [n for n in range(self.partition_count) if self._broker.owns(OFFSETS_TOPIC, n)]
        await defer.DeferredList([self.load_partition(n) for n in owned])
        self._schedule_retention()

    async def stop(self) -> None:
        self._active = False
        self._retention_timer = cancel_timer(self._retention_timer)
        for index in list(self._partitions):
            await self.unload_partition(index)

    def partition_for(self, group_id: str) -> int:
        return coordinator_partition(group_id, self.partition_count)

    def partition_status(self, index: int) -> PartitionStatus | None:
        partition = self._partitions.get(index)
        return None if partition is None else partition.status

    def load_partition(self, index: int) -> defer.Deferred[None]:
        """Take over a partition (this broker now owns it). Never fails: a partition that
        cannot be loaded is marked FAILED and retried with backoff."""
        existing = self._partitions.get(index)
        if existing is not None and existing.status is not PartitionStatus.FAILED:
            return defer.succeed(None)
        partition = CoordinatorPartition(index)
        if existing is not None:
            existing.retry = cancel_timer(existing.retry)
            partition.retry_seconds = existing.retry_seconds
        self._partitions[index] = partition
        return defer.ensureDeferred(self._load(partition))

    async def _load(self, partition: CoordinatorPartition) -> None:
        compacted: CompactedLog | None = None
        try:
            compacted = await self._storage.open(partition.index)
            if self._partitions.get(partition.index) is not partition:
                await compacted.close()  # unloaded while we were loading
                return
            groups = self._groups_from_records(compacted.live)
        except Exception as exc:
            if compacted is not None:
                await _close_quietly(compacted)
            self._load_failed(partition, exc)
            return
        partition.log = compacted
        for group in groups:
            self._groups[group.group_id] = group
            if group.is_in(GroupState.STABLE):
                self.membership.start_loaded_group(group)
        partition.status = PartitionStatus.LOADED
        log.info("coordinator partition %d loaded: %d groups", partition.index, len(groups))

    def _groups_from_records(self, records: Mapping[bytes, bytes]) -> list[Group]:
        stored: dict[str, StoredGroup] = {}
        offsets: dict[str, dict[TopicPartition, CommittedOffset]] = {}
        transactional: dict[str, dict[int, dict[TopicPartition, CommittedOffset]]] = {}
        for key, value in records.items():
            decoded = decode_key(key)
            if decoded.topic_partition is None:
                stored[decoded.group_id] = decode_group(value)
            elif decoded.producer_id is None:
                offsets.setdefault(decoded.group_id, {})[decoded.topic_partition] = decode_offset(value)
            else:
                by_producer = transactional.setdefault(decoded.group_id, {})
                by_producer.setdefault(decoded.producer_id, {})[decoded.topic_partition] = (
                    decode_offset(value))
        groups = []
        for group_id in sorted(stored.keys() | offsets.keys() | transactional.keys()):
            if group_id in stored:
                group = Group.from_stored(group_id, stored[group_id])
            else:  # offsets only: a standalone committer's group
                group = Group(group_id, self.now_ms())
            group.offsets = offsets.get(group_id, {})
            group.transactional_offsets = transactional.get(group_id, {})
            groups.append(group)
        return groups

    def _load_failed(self, partition: CoordinatorPartition, exc: Exception) -> None:
        if self._partitions.get(partition.index) is not partition:
            return
        partition.status = PartitionStatus.FAILED
        log.error("coordinator partition %d could not be loaded (its groups answer "
                  "COORDINATOR_NOT_AVAILABLE; retrying in %.0f s): %s", partition.index,
                  partition.retry_seconds, exc)
        if self._active:
            partition.retry = self.reactor.callLater(partition.retry_seconds,
                                                     self._retry_load, partition)
            partition.retry_seconds = min(partition.retry_seconds * 2, MAX_LOAD_RETRY_SECONDS)

    def _retry_load(self, partition: CoordinatorPartition) -> None:
        partition.retry = None
        if (self._active and self._partitions.get(partition.index) is partition
                and self._broker.owns(OFFSETS_TOPIC, partition.index)):
            self.load_partition(partition.index)

    async def unload_partition(self, index: int) -> None:
        """Give a partition up (ownership moved, or shutting down): its groups leave memory
        and whoever waits on them is told NOT_COORDINATOR."""
        partition = self._partitions.pop(index, None)
        if partition is None:
            return
        partition.retry = cancel_timer(partition.retry)
        for group in [g for g in self._groups.values() if self.partition_for(g.group_id) == index]:
            self._forget_group(group, ErrorCode.NOT_COORDINATOR)
        if partition.log is not None:
            await _close_quietly(partition.log)

    def _forget_group(self, group: Group, error: ErrorCode) -> None:
        group.transition(GroupState.DEAD, self.now_ms())
        del self._groups[group.group_id]
        self.membership.shut_down(group, error)

    # -- persistence -------------------------------------------------------------------------

    def _write(self, group_id: str, changes: list[tuple[bytes, bytes | None]]) -> defer.Deferred[ErrorCode]:
        """Append changes to the group's partition; fires with NONE once durable, or with
        the error to give the client (never errbacks)."""
        partition = self._partitions.get(self.partition_for(group_id))
        if partition is None or partition.status is not PartitionStatus.LOADED:
            return defer.succeed(ErrorCode.NOT_COORDINATOR)
        if not self._broker.owns(OFFSETS_TOPIC, partition.index):
            # A timer may fire after ownership was lost but before it was reported (a broker
            # frozen past its session): never write then; storage fencing is only the backstop.
            return defer.succeed(ErrorCode.NOT_COORDINATOR)
        assert partition.log is not None
        written = partition.log.write(changes)

        def failed(failure: Any) -> ErrorCode:
            self._write_failed(partition)
            return ErrorCode.COORDINATOR_NOT_AVAILABLE

        return written.addCallbacks(lambda _: ErrorCode.NONE, failed)

    def _write_failed(self, partition: CoordinatorPartition) -> None:
        if self._partitions.get(partition.index) is not partition:
            return  # already reloading
        log.warning("coordinator partition %d: a write failed; reloading it from storage",
                    partition.index)
        # Next turn: the callers of the failed write first answer their clients with its error.
        self.reactor.callLater(0, lambda: defer.ensureDeferred(self._reload(partition.index)))

    async def _reload(self, index: int) -> None:
        await self.unload_partition(index)
        if self._active and self._broker.owns(OFFSETS_TOPIC, index):
            await self.load_partition(index)

    # -- checks --------------------------------------------------------------------------------

    def check_group(self, group_id: str | None, require_non_empty: bool = True) -> ErrorCode | None:
        """The error to answer for this group id before looking at the group, if any."""
        if group_id is None or (require_non_empty and group_id == ""):
            return ErrorCode.INVALID_GROUP_ID
        return self.check_partition(self.partition_for(group_id))

    def check_partition(self, index: int) -> ErrorCode | None:
        """The error to answer for the groups of offsets-topic partition `index`, if any."""
        if not self._active:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        partition = self._partitions.get(index)
        if not self._broker.owns(OFFSETS_TOPIC, index):
            if partition is not None:  # ownership moved away: let the partition go
                defer.ensureDeferred(self.unload_partition(index))
            return ErrorCode.NOT_COORDINATOR
        if partition is None:  # newly owned: take it over
            self.load_partition(index)
            partition = self._partitions[index]
        if partition.status is PartitionStatus.LOADING:
            return ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
        if partition.status is PartitionStatus.FAILED:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        return None

    def group(self, group_id: str) -> Group | None:
        return self._groups.get(group_id)

    def _create_group(self, group_id: str) -> Group:
        group = Group(group_id, self.now_ms())
        self._groups[group_id] = group
        return group

    # -- membership APIs -----------------------------------------------------------------------

    def join_group(self, request: JoinRequest) -> defer.Deferred[JoinResult]:
        error = self.check_group(request.group_id)
        if error is None and not (self.config.min_session_timeout_ms <= request.session_timeout_ms
                                  <= self.config.max_session_timeout_ms):
            error = ErrorCode.INVALID_SESSION_TIMEOUT
        group = self._groups.get(request.group_id)
        if error is None and group is None:
            if request.member_id != "":
                error = ErrorCode.UNKNOWN_MEMBER_ID
            else:
                group = self._create_group(request.group_id)
        if error is not None:
            return defer.succeed(JoinResult(error, request.member_id))
        assert group is not None
        return self.membership.join(group, request)

    def sync_group(self, group_id: str, generation_id: int, member_id: str,
                   group_instance_id: str | None, protocol_type: str | None,
                   protocol_name: str | None,
                   assignments: dict[str, bytes]) -> defer.Deferred[SyncResult]:
        error = self.check_group(group_id)
        if error is ErrorCode.COORDINATOR_LOAD_IN_PROGRESS:
            # The rebalance in progress was lost with the old coordinator: rejoining is the
            # way on (and old clients do not expect a load error here).
            error = ErrorCode.REBALANCE_IN_PROGRESS
        group = self._groups.get(group_id)
        if error is None and group is None:
            error = ErrorCode.UNKNOWN_MEMBER_ID
        if error is not None:
            return defer.succeed(SyncResult(error))
        assert group is not None
        return self.membership.sync(group, generation_id, member_id, group_instance_id,
                                    protocol_type, protocol_name, assignments)

    def heartbeat(self, group_id: str, member_id: str, group_instance_id: str | None,
                  generation_id: int) -> ErrorCode:
        error = self.check_group(group_id)
        if error is ErrorCode.COORDINATOR_LOAD_IN_PROGRESS:
            return ErrorCode.NONE  # as Kafka: the member learns of trouble at its next join
        if error is not None:
            return error
        group = self._groups.get(group_id)
        if group is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        return self.membership.heartbeat(group, member_id, group_instance_id, generation_id)

    def leave_group(self, group_id: str,
                    leaving: list[LeavingMember]) -> tuple[ErrorCode, list[ErrorCode]]:
        error = self.check_group(group_id)
        if error is not None:
            return error, []
        group = self._groups.get(group_id)
        if group is None:
            return ErrorCode.NONE, [ErrorCode.UNKNOWN_MEMBER_ID] * len(leaving)
        return self.membership.leave(group, leaving)

    # -- offsets -------------------------------------------------------------------------------

    def commit_offsets(self, group_id: str, member_id: str, group_instance_id: str | None,
                       generation_id: int, offsets: Mapping[TopicPartition, OffsetToCommit],
                       retention_ms: int = -1,
                       missing_group_error: ErrorCode = ErrorCode.ILLEGAL_GENERATION,
                       ) -> defer.Deferred[dict[TopicPartition, ErrorCode]]:
        """Store offsets once durable. Members must name their generation; generation -1
        with no member id is a standalone committer, allowed while the group has no members.
        A member commit for a group that does not exist gets `missing_group_error`."""
        def everywhere(code: ErrorCode) -> defer.Deferred[dict[TopicPartition, ErrorCode]]:
            return defer.succeed({tp: code for tp in offsets})

        error = self.check_group(group_id, require_non_empty=False)
        if error is not None:
            return everywhere(error)
        group = self._groups.get(group_id)
        if group is None:
            if generation_id >= 0:
                return everywhere(missing_group_error)
            group = self._create_group(group_id)
        error = self._commit_error(group, generation_id, member_id, group_instance_id)
        if error is not None:
            return everywhere(error)
        self.membership.keep_alive(group, member_id)

        results, accepted = self._offsets_to_store(offsets, retention_ms)
        if not accepted:
            return defer.succeed(results)
        group.add_pending_commits(accepted)
        written = self._write(group_id, [(offset_key(group_id, tp), encode_offset(committed))
                                         for tp, committed in accepted.items()])

        def done(error: ErrorCode) -> dict[TopicPartition, ErrorCode]:
            group.remove_pending_commits(accepted)
            if error == ErrorCode.NONE and self.is_current(group):
                group.offsets.update(accepted)
            for tp in accepted:
                results[tp] = error
            return results

        return written.addCallback(done)

    def _offsets_to_store(self, offsets: Mapping[TopicPartition, OffsetToCommit],
                          retention_ms: int = -1
                          ) -> tuple[dict[TopicPartition, ErrorCode], dict[TopicPartition, CommittedOffset]]:
        """(errors of refused partitions, the offsets to store for the others)."""
        now = self.now_ms()
        refused: dict[TopicPartition, ErrorCode] = {}
        accepted: dict[TopicPartition, CommittedOffset] = {}
        for tp, wanted in offsets.items():
            metadata = wanted.metadata or ""
            if len(metadata) > self.config.offset_metadata_max_bytes:
                refused[tp] = ErrorCode.OFFSET_METADATA_TOO_LARGE
                continue
            accepted[tp] = CommittedOffset(
                offset=wanted.offset,
                leader_epoch=wanted.leader_epoch,
                metadata=metadata,
                commit_timestamp_ms=(wanted.commit_timestamp_ms if wanted.commit_timestamp_ms >= 0
                                     else now),
                expire_timestamp_ms=now + retention_ms if retention_ms >= 0 else -1,
            )
        return refused, accepted

    @staticmethod
    def _commit_error(group: Group, generation_id: int, member_id: str,
                      group_instance_id: str | None, transactional: bool = False) -> ErrorCode | None:
        if group.is_in(GroupState.DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        if generation_id >= 0 or member_id != "" or group_instance_id is not None:
            error = validate_current_member(group, member_id, group_instance_id)
            if error is not None:
                return error
            if generation_id != group.generation_id:
                return ErrorCode.ILLEGAL_GENERATION
            if group.is_in(GroupState.COMPLETING_REBALANCE) and not transactional:
                # A member that knows the new generation but has not synced yet.
                return ErrorCode.REBALANCE_IN_PROGRESS
            return None
        if not group.is_in(GroupState.EMPTY) and not transactional:
            return ErrorCode.UNKNOWN_MEMBER_ID  # only members commit for a group with members
        return None

    # -- offsets committed inside transactions -------------------------------------------------

    def commit_transactional_offsets(self, group_id: str, producer_id: int, member_id: str,
                                     group_instance_id: str | None, generation_id: int,
                                     offsets: Mapping[TopicPartition, OffsetToCommit]
                                     ) -> defer.Deferred[dict[TopicPartition, ErrorCode]]:
        """TxnOffsetCommit: store offsets that take effect when the producer's transaction
        commits (`complete_transaction`). The producer was checked by the transaction
        coordinator; members are checked here when they say who they are (v3+)."""
        def everywhere(code: ErrorCode) -> defer.Deferred[dict[TopicPartition, ErrorCode]]:
            return defer.succeed({tp: code for tp in offsets})

        error = self.check_group(group_id, require_non_empty=False)
        if error is not None:
            return everywhere(error)
        group = self._groups.get(group_id) or self._create_group(group_id)
        error = self._commit_error(group, generation_id, member_id, group_instance_id,
                                   transactional=True)
        if error is not None:
            return everywhere(error)
        results, accepted = self._offsets_to_store(offsets)
        if not accepted:
            return defer.succeed(results)
        group.add_pending_commits(accepted)
        written = self._write(group_id, [
            (transactional_offset_key(group_id, producer_id, tp), encode_offset(committed))
            for tp, committed in accepted.items()])

        def done(error: ErrorCode) -> dict[TopicPartition, ErrorCode]:
            group.remove_pending_commits(accepted)
            if error == ErrorCode.NONE and self.is_current(group):
                group.transactional_offsets.setdefault(producer_id, {}).update(accepted)
            for tp in accepted:
                results[tp] = error
            return results

        return written.addCallback(done)

    async def complete_transaction(self, group_id: str, producer_id: int, commit: bool) -> None:
        """The producer's transaction ended: its offsets for this group become committed
        offsets (commit) or are dropped (abort). Raises KafkaError when the group's partition
        is not available here (the transaction coordinator tries again later)."""
        error = self.check_group(group_id, require_non_empty=False)
        if error is not None:
            raise KafkaError(error, f"cannot complete the offsets of group {group_id}")
        group = self._groups.get(group_id)
        pending = group.transactional_offsets.pop(producer_id, None) if group else None
        if group is None or not pending:
            return
        changes: list[tuple[bytes, bytes | None]] = [
            (transactional_offset_key(group_id, producer_id, tp), None) for tp in pending]
        if commit:
            changes += [(offset_key(group_id, tp), encode_offset(committed))
                        for tp, committed in pending.items()]
        group.add_pending_commits(pending)  # unstable until the outcome is durable
        error = await self._write(group_id, changes)
        group.remove_pending_commits(pending)
        if error != ErrorCode.NONE:
            raise KafkaError(error, f"could not store the transaction's offsets of {group_id}")
        if commit and self.is_current(group):
            group.offsets.update(pending)

    async def complete_transactions_in_partition(self, index: int, producer_id: int,
                                                 commit: bool) -> None:
        """A transaction marker for offsets-topic partition `index` (cluster mode: the
        transaction's coordinator may be another broker): the producer's pending offsets in
        every group of the partition are committed or dropped, as `complete_transaction`.
        Raises KafkaError when the partition is not available here."""
        error = self.check_partition(index)
        if error is not None:
            raise KafkaError(error, f"offsets partition {index} is not available here")
        for group_id in sorted(group.group_id for group in self._groups.values()
                               if self.partition_for(group.group_id) == index
                               and producer_id in group.transactional_offsets):
            await self.complete_transaction(group_id, producer_id, commit)

    def fetch_offsets(self, group_id: str, partitions: Iterable[TopicPartition] | None,
                      require_stable: bool = False
                      ) -> tuple[ErrorCode, list[tuple[TopicPartition, FetchedOffset]]]:
        """(group error, offsets): every asked partition (-1 when none is committed), or all
        committed partitions when `partitions` is None."""
        error = self.check_group(group_id, require_non_empty=False)
        if error is not None:
            return error, []
        group = self._groups.get(group_id)
        if group is None:
            return ErrorCode.NONE, [(tp, NO_OFFSET) for tp in partitions or []]
        wanted = list(partitions) if partitions is not None else sorted(group.offsets)
        answers = []
        for tp in wanted:
            if require_stable and group.is_unstable(tp):
                answers.append((tp, FetchedOffset(-1, -1, "", ErrorCode.UNSTABLE_OFFSET_COMMIT)))
                continue
            committed = group.offsets.get(tp)
            if committed is None:
                answers.append((tp, NO_OFFSET))
            else:
                answers.append((tp, FetchedOffset(committed.offset, committed.leader_epoch,
                                                  committed.metadata)))
        return ErrorCode.NONE, answers

    def delete_offsets(self, group_id: str, partitions: list[TopicPartition]
                       ) -> defer.Deferred[tuple[ErrorCode, dict[TopicPartition, ErrorCode]]]:
        """OffsetDelete: allowed for an empty group, or for topics a consumer group does not
        subscribe to (GROUP_SUBSCRIBED_TO_TOPIC otherwise)."""
        error = self.check_group(group_id, require_non_empty=False)
        group = self._groups.get(group_id)
        if error is None and group is None:
            error = ErrorCode.GROUP_ID_NOT_FOUND
        if error is not None:
            return defer.succeed((error, {}))
        assert group is not None
        results: dict[TopicPartition, ErrorCode] = {}
        if group.is_in(GroupState.EMPTY):
            eligible = list(partitions)
        elif group.protocol_type == CONSUMER_PROTOCOL_TYPE:
            eligible = []
            for tp in partitions:
                if group.is_subscribed_to(tp.topic):
                    results[tp] = ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC
                else:
                    eligible.append(tp)
        else:
            return defer.succeed((ErrorCode.NON_EMPTY_GROUP, {}))
        changes: list[tuple[bytes, bytes | None]] = []
        for tp in eligible:
            if group.offsets.pop(tp, None) is not None:
                changes.append((offset_key(group_id, tp), None))
        changes += self._remove_if_dead(group)
        written = self._write(group_id, changes) if changes else defer.succeed(ErrorCode.NONE)

        def done(error: ErrorCode) -> tuple[ErrorCode, dict[TopicPartition, ErrorCode]]:
            for tp in eligible:
                results[tp] = error
            return ErrorCode.NONE, results

        return written.addCallback(done)

    def _remove_if_dead(self, group: Group) -> list[tuple[bytes, bytes | None]]:
        """An empty group without offsets (nor members on their way in) is removed; returns
        the tombstone to write for it."""
        if group.is_in(GroupState.EMPTY) and not group.has_offsets() and not group.pending_members:
            log.info("group %s is empty and has no offsets left: removing it", group.group_id)
            self._forget_group(group, ErrorCode.COORDINATOR_NOT_AVAILABLE)
            return [(group_key(group.group_id), None)]
        return []

    # -- retention -----------------------------------------------------------------------------

    def _schedule_retention(self) -> None:
        if self._active:
            self._retention_timer = self.reactor.callLater(
                self.config.offsets_retention_check_interval_ms / 1000, self._run_retention)

    def _run_retention(self) -> None:
        self._retention_timer = None
        self.expire_offsets()
        self._schedule_retention()

    def expire_offsets(self) -> defer.Deferred[int]:
        """Remove offsets past retention (and groups left empty); fires with how many offsets
        were removed, once the tombstones are durable."""
        now = self.now_ms()
        removed = 0
        writes = []
        for group in list(self._groups.values()):
            partition = self._partitions.get(self.partition_for(group.group_id))
            if partition is None or partition.status is not PartitionStatus.LOADED:
                continue
            expired = group.expired_offsets(now, self.config.offsets_retention_ms)
            changes: list[tuple[bytes, bytes | None]] = []
            for tp in expired:
                del group.offsets[tp]
                changes.append((offset_key(group.group_id, tp), None))
            removed += len(expired)
            changes += self._remove_if_dead(group)
            if changes:
                writes.append(self._write(group.group_id, changes))
        if removed:
            log.info("removed %d expired offsets", removed)
        return defer.gatherResults(writes).addCallback(lambda _: removed)

    # -- describing, listing, deleting groups ------------------------------------------------

    def describe_group(self, group_id: str) -> tuple[ErrorCode, GroupSummary]:
        error = self.check_group(group_id, require_non_empty=False)
        if error is not None:
            return error, GroupSummary("", "", "")
        group = self._groups.get(group_id)
        if group is None:
            return ErrorCode.NONE, GroupSummary(GroupState.DEAD.value, "", "")
        return ErrorCode.NONE, summarize(group)

    def list_groups(self, states: Iterable[str] = ()) -> tuple[ErrorCode, list[GroupListing]]:
        """Groups of loaded partitions, optionally only those in `states` (any case)."""
        if not self._active:
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, []
        loading = any(p.status is PartitionStatus.LOADING for p in self._partitions.values())
        wanted = {state.lower() for state in states}
        listings = [
            GroupListing(group.group_id, group.protocol_type or "", group.state.value)
            for group in self._groups.values()
            if not wanted or group.state.value.lower() in wanted
        ]
        error = ErrorCode.COORDINATOR_LOAD_IN_PROGRESS if loading else ErrorCode.NONE
        return error, sorted(listings, key=lambda listing: listing.group_id)

    def delete_groups(self, group_ids: Iterable[str]) -> defer.Deferred[dict[str, ErrorCode]]:
        """Delete empty groups and their offsets (NON_EMPTY_GROUP while members remain)."""
        results: dict[str, ErrorCode] = {}
        writes = []
        for group_id in group_ids:
            error = self.check_group(group_id, require_non_empty=False)
            group = self._groups.get(group_id)
            if error is None and group is None:
                error = ErrorCode.GROUP_ID_NOT_FOUND
            if error is None and group is not None and not group.is_in(GroupState.EMPTY):
                error = ErrorCode.NON_EMPTY_GROUP
            if error is not None:
                results[group_id] = error
                continue
            assert group is not None
            changes: list[tuple[bytes, bytes | None]] = [
                (offset_key(group_id, tp), None) for tp in group.offsets]
            changes += [(transactional_offset_key(group_id, producer_id, tp), None)
                        for producer_id, pending in group.transactional_offsets.items()
                        for tp in pending]
            changes.append((group_key(group_id), None))
            self._forget_group(group, ErrorCode.COORDINATOR_NOT_AVAILABLE)
            log.info("group %s deleted", group_id)

            def record(error: ErrorCode, group_id: str = group_id) -> None:
                results[group_id] = error

            writes.append(self._write(group_id, changes).addCallback(record))
        return defer.gatherResults(writes).addCallback(lambda _: results)


async def _close_quietly(compacted: CompactedLog) -> None:
    try:
        await compacted.close()
    except Exception as exc:
        log.warning("%r: close failed: %s", compacted, exc)
