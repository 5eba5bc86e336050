"""Consumer-group APIs: FindCoordinator (key 10) v0-6, JoinGroup (11) v0-9, Heartbeat (12) v0-4,
LeaveGroup (13) v0-5, SyncGroup (14) v0-5, DescribeGroups (15) v0-5, ListGroups (16) v0-5,
OffsetCommit (8) v0-9, OffsetFetch (9) v0-9, TxnOffsetCommit (28) v0-4, DeleteGroups (42) v0-2,
OffsetDelete (47) v0.

The protocol itself lives in `kop.groups` (`broker.groups`, a GroupCoordinator); this module
translates requests and answers per version:

FindCoordinator: key type 0 (group) names the owner of the group's offsets-topic partition,
key type 1 (transaction) the owner of the transactional id's `__transaction_state` partition
(so a transactional producer reaches InitProducerId, which says whether transactions are
enabled); share groups (key type 2, v6) are not supported (INVALID_REQUEST). v4+ batches keys.
COORDINATOR_NOT_AVAILABLE while no live broker owns the partition.

JoinGroup: v0 has no rebalance timeout (the session timeout serves); v4+ dynamic members join
in two steps (MEMBER_ID_REQUIRED); v5+ static members (`group.instance.id`); protocol name is
"" rather than null before v7; v9 tells a rejoining static leader of a stable group to skip
the assignment. SyncGroup v5 checks protocol type and name. LeaveGroup v0-2 leave one member
(its error is the top-level error); v3+ leave a batch, by member id and/or instance id.

OffsetCommit: v0 (and generation -1 with no member id) commits as a standalone consumer;
v1 may carry a commit timestamp, v2-4 a retention time; null metadata is stored as "";
unknown topics or partitions get UNKNOWN_TOPIC_OR_PARTITION; v9+ answers GROUP_ID_NOT_FOUND
(older versions ILLEGAL_GENERATION) to a member commit for a group that does not exist.
OffsetFetch: topics null (v2+) means every committed partition of the group; partitions
without a commit answer offset -1 and metadata ""; v7+ require_stable answers
UNSTABLE_OFFSET_COMMIT for partitions with a commit being written; v8+ fetches several groups;
group-level errors go in each partition before v2, at top level after.
TxnOffsetCommit: the transaction coordinator checks the producer (a fenced one gets
INVALID_PRODUCER_EPOCH, as Kafka's offsets log answers it); the offsets count once the
transaction commits (`GroupCoordinator.complete_transaction`); v3+ members are checked.

DescribeGroups: members' metadata and assignments only while Stable; an unknown group is
described as Dead; v3+ authorized operations (kop has no ACLs: all group operations).
ListGroups: v4+ filters by state (any case), v5+ by type (every kop group is "classic").
DeleteGroups: only empty groups (NON_EMPTY_GROUP otherwise). OffsetDelete: an empty group's
offsets, or a consumer group's offsets of topics it does not subscribe to.
"""

from __future__ import annotations

from twisted.internet import defer

from kop.errors import KafkaError
from kop.groups import (
    OFFSETS_TOPIC,
    TRANSACTION_STATE_TOPIC,
    JoinRequest,
    JoinResult,
    LeavingMember,
    OffsetToCommit,
    TopicPartition,
    coordinator_partition,
)
from kop.groups.placement import DEFAULT_TRANSACTION_STATE_PARTITIONS
from kop.handlers.registry import handles
from wire.generated.error_codes import ErrorCode
from wire.messages import (
    DeleteGroupsResponse,
    DescribeGroupsResponse,
    FindCoordinatorResponse,
    HeartbeatResponse,
    JoinGroupResponse,
    LeaveGroupResponse,
    ListGroupsResponse,
    OffsetCommitResponse,
    OffsetDeleteResponse,
    OffsetFetchResponse,
    SyncGroupResponse,
    TxnOffsetCommitResponse,
)

OFFSET_COMMIT_KEY = 8
OFFSET_FETCH_KEY = 9
FIND_COORDINATOR_KEY = 10
JOIN_GROUP_KEY = 11
HEARTBEAT_KEY = 12
LEAVE_GROUP_KEY = 13
SYNC_GROUP_KEY = 14
DESCRIBE_GROUPS_KEY = 15
LIST_GROUPS_KEY = 16
DELETE_GROUPS_KEY = 42
OFFSET_DELETE_KEY = 47
TXN_OFFSET_COMMIT_KEY = 28

GROUP_KEY_TYPE = 0
TRANSACTION_KEY_TYPE = 1
CLASSIC_GROUP_TYPE = "classic"
AUTHORIZED_OPERATIONS_OMITTED = -(2**31)
# READ, DELETE, DESCRIBE: the operations Kafka defines on groups (kop has no ACLs).
ALL_GROUP_OPERATIONS = (1 << 3) | (1 << 6) | (1 << 8)


def _client_host(ctx) -> str:
    host = ctx.connection.peer.rpartition(":")[0] or ctx.connection.peer
    return f"/{host}"


# -- FindCoordinator ---------------------------------------------------------------------------


def _coordinator_of(broker, key: str, key_type: int) -> tuple[ErrorCode, str | None, object]:
    """(error, message, the broker's address or None)."""
    if key_type == GROUP_KEY_TYPE:
        topic, partition = OFFSETS_TOPIC, broker.groups.partition_for(key)
    elif key_type == TRANSACTION_KEY_TYPE:
        topic = TRANSACTION_STATE_TOPIC
        partition = coordinator_partition(key, DEFAULT_TRANSACTION_STATE_PARTITIONS)
    else:
        return ErrorCode.INVALID_REQUEST, f"key type {key_type} is not supported", None
    leader = broker.leader_of(topic, partition)
    for address in broker.live_brokers():
        if address.node_id == leader:
            return ErrorCode.NONE, None, address
    return (ErrorCode.COORDINATOR_NOT_AVAILABLE,
            f"no live broker coordinates {topic} partition {partition}", None)


@handles(FIND_COORDINATOR_KEY, 0, 6)
def handle_find_coordinator(ctx, request) -> FindCoordinatorResponse:
    key_type = request.key_type if ctx.api_version >= 1 else GROUP_KEY_TYPE
    if ctx.api_version >= 4:
        coordinators = []
        for key in request.coordinator_keys:
            error, message, address = _coordinator_of(ctx.broker, key, key_type)
            coordinators.append(FindCoordinatorResponse.Coordinator(
                key=key, node_id=address.node_id if address else -1,
                host=address.host if address else "", port=address.port if address else -1,
                error_code=error, error_message=message))
        return FindCoordinatorResponse(throttle_time_ms=0, coordinators=coordinators)
    error, message, address = _coordinator_of(ctx.broker, request.key, key_type)
    return FindCoordinatorResponse(
        throttle_time_ms=0, error_code=error,
        error_message=message if ctx.api_version >= 1 else "",
        node_id=address.node_id if address else -1, host=address.host if address else "",
        port=address.port if address else -1)


# -- JoinGroup / SyncGroup / Heartbeat / LeaveGroup --------------------------------------------


def _join_response(version: int, result: JoinResult) -> JoinGroupResponse:
    protocol_name = result.protocol_name
    if version < 7 and protocol_name is None:
        protocol_name = ""  # not nullable before v7
    return JoinGroupResponse(
        throttle_time_ms=0, error_code=result.error, generation_id=result.generation_id,
        protocol_type=result.protocol_type, protocol_name=protocol_name,
        leader=result.leader_id, skip_assignment=result.skip_assignment and version >= 9,
        member_id=result.member_id,
        members=[JoinGroupResponse.JoinGroupResponseMember(
            member_id=member.member_id, group_instance_id=member.group_instance_id,
            metadata=member.metadata) for member in result.members])


@handles(JOIN_GROUP_KEY, 0, 9)
def handle_join_group(ctx, request) -> defer.Deferred[JoinGroupResponse]:
    version = ctx.api_version
    group_instance_id = request.group_instance_id if version >= 5 else None
    join = JoinRequest(
        group_id=request.group_id,
        member_id=request.member_id,
        group_instance_id=group_instance_id,
        client_id=ctx.header.client_id or "",
        client_host=_client_host(ctx),
        session_timeout_ms=request.session_timeout_ms,
        rebalance_timeout_ms=(request.rebalance_timeout_ms
                              if version >= 1 and request.rebalance_timeout_ms >= 0
                              else request.session_timeout_ms),
        protocol_type=request.protocol_type,
        protocols=[(protocol.name, protocol.metadata) for protocol in request.protocols],
        require_known_member_id=version >= 4 and group_instance_id is None,
        supports_skip_assignment=version >= 9,
        reason=request.reason if version >= 8 else None,
    )
    return ctx.broker.groups.join_group(join).addCallback(lambda result: _join_response(version, result))


@handles(SYNC_GROUP_KEY, 0, 5)
def handle_sync_group(ctx, request) -> defer.Deferred[SyncGroupResponse]:
    version = ctx.api_version
    assignments = {assignment.member_id: assignment.assignment
                   for assignment in request.assignments}
    synced = ctx.broker.groups.sync_group(
        request.group_id, request.generation_id, request.member_id,
        request.group_instance_id if version >= 3 else None,
        request.protocol_type if version >= 5 else None,
        request.protocol_name if version >= 5 else None,
        assignments)
    return synced.addCallback(lambda result: SyncGroupResponse(
        throttle_time_ms=0, error_code=result.error, protocol_type=result.protocol_type,
        protocol_name=result.protocol_name, assignment=result.assignment))


@handles(HEARTBEAT_KEY, 0, 4)
def handle_heartbeat(ctx, request) -> HeartbeatResponse:
    error = ctx.broker.groups.heartbeat(
        request.group_id, request.member_id,
        request.group_instance_id if ctx.api_version >= 3 else None, request.generation_id)
    return HeartbeatResponse(throttle_time_ms=0, error_code=error)


@handles(LEAVE_GROUP_KEY, 0, 5)
def handle_leave_group(ctx, request) -> LeaveGroupResponse:
    version = ctx.api_version
    if version < 3:
        leaving = [LeavingMember(request.member_id)]
    else:
        leaving = [LeavingMember(member.member_id, member.group_instance_id,
                                 member.reason if version >= 5 else None)
                   for member in request.members]
    error, member_errors = ctx.broker.groups.leave_group(request.group_id, leaving)
    if version < 3:
        # One member: its error is the answer.
        first_failure = next((e for e in member_errors if e != ErrorCode.NONE), ErrorCode.NONE)
        return LeaveGroupResponse(throttle_time_ms=0,
                                  error_code=error if error != ErrorCode.NONE else first_failure)
    members = [] if error != ErrorCode.NONE else [
        LeaveGroupResponse.MemberResponse(member_id=member.member_id,
                                          group_instance_id=member.group_instance_id,
                                          error_code=member_error)
        for member, member_error in zip(leaving, member_errors, strict=True)]
    return LeaveGroupResponse(throttle_time_ms=0, error_code=error, members=members)


# -- OffsetCommit / OffsetFetch / OffsetDelete -------------------------------------------------


async def _existing_partitions(broker, wanted: list[TopicPartition]) -> set[TopicPartition]:
    found: set[TopicPartition] = set()
    for topic in {tp.topic for tp in wanted}:
        info = await broker.topics.lookup(topic)
        if info is not None:
            found.update(tp for tp in wanted if tp.topic == topic and 0 <= tp.partition < info.partitions)
    return found


async def _split_by_existence(broker, topics, leader_epochs: bool, commit_timestamps: bool
                              ) -> tuple[dict[TopicPartition, ErrorCode],
                                         dict[TopicPartition, OffsetToCommit]]:
    """The requested offsets of partitions that exist, and UNKNOWN_TOPIC_OR_PARTITION for
    the others."""
    requested: list[tuple[TopicPartition, OffsetToCommit]] = []
    for topic in topics:
        for partition in topic.partitions:
            requested.append((TopicPartition(topic.name, partition.partition_index), OffsetToCommit(
                offset=partition.committed_offset,
                leader_epoch=partition.committed_leader_epoch if leader_epochs else -1,
                metadata=partition.committed_metadata,
                commit_timestamp_ms=partition.commit_timestamp if commit_timestamps else -1,
            )))
    existing = await _existing_partitions(broker, [tp for tp, _ in requested])
    unknown = {tp: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION for tp, _ in requested if tp not in existing}
    return unknown, {tp: wanted for tp, wanted in requested if tp in existing}


async def _offset_commit(ctx, request) -> OffsetCommitResponse:
    version = ctx.api_version
    broker = ctx.broker
    results, to_commit = await _split_by_existence(broker, request.topics, version >= 6,
                                                   version == 1)
    if to_commit:
        results.update(await broker.groups.commit_offsets(
            request.group_id,
            request.member_id if version >= 1 else "",
            request.group_instance_id if version >= 7 else None,
            request.generation_id_or_member_epoch if version >= 1 else -1,
            to_commit,
            retention_ms=request.retention_time_ms if 2 <= version <= 4 else -1,
            missing_group_error=(ErrorCode.GROUP_ID_NOT_FOUND if version >= 9
                                 else ErrorCode.ILLEGAL_GENERATION),
        ))
    return OffsetCommitResponse(throttle_time_ms=0, topics=[
        OffsetCommitResponse.OffsetCommitResponseTopic(name=topic.name, partitions=[
            OffsetCommitResponse.OffsetCommitResponsePartition(
                partition_index=partition.partition_index,
                error_code=results[TopicPartition(topic.name, partition.partition_index)])
            for partition in topic.partitions])
        for topic in request.topics])


@handles(OFFSET_COMMIT_KEY, 0, 9)
def handle_offset_commit(ctx, request) -> defer.Deferred[OffsetCommitResponse]:
    return defer.ensureDeferred(_offset_commit(ctx, request))


async def _txn_offset_commit(ctx, request) -> TxnOffsetCommitResponse:
    version = ctx.api_version
    broker = ctx.broker
    results, to_commit = await _split_by_existence(broker, request.topics, version >= 2, False)
    if to_commit:
        try:
            if broker.transactions is None:
                raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE, "transactions are disabled")
            broker.transactions.check_producer_for_offsets(
                request.transactional_id, request.producer_id, request.producer_epoch)
        except KafkaError as exc:
            code = (ErrorCode.INVALID_PRODUCER_EPOCH if exc.code == ErrorCode.PRODUCER_FENCED
                    else exc.code)
            results.update(dict.fromkeys(to_commit, code))
        else:
            results.update(await broker.groups.commit_transactional_offsets(
                request.group_id, request.producer_id,
                request.member_id if version >= 3 else "",
                request.group_instance_id if version >= 3 else None,
                request.generation_id if version >= 3 else -1,
                to_commit))
    return TxnOffsetCommitResponse(throttle_time_ms=0, topics=[
        TxnOffsetCommitResponse.TxnOffsetCommitResponseTopic(name=topic.name, partitions=[
            TxnOffsetCommitResponse.TxnOffsetCommitResponsePartition(
                partition_index=partition.partition_index,
                error_code=results[TopicPartition(topic.name, partition.partition_index)])
            for partition in topic.partitions])
        for topic in request.topics])


@handles(TXN_OFFSET_COMMIT_KEY, 0, 4)
def handle_txn_offset_commit(ctx, request) -> defer.Deferred[TxnOffsetCommitResponse]:
    return defer.ensureDeferred(_txn_offset_commit(ctx, request))


def _requested_partitions(topics) -> list[TopicPartition] | None:
    if topics is None:
        return None
    return [TopicPartition(topic.name, index) for topic in topics for index in topic.partition_indexes]


def _group_offsets(broker, group_id: str, topics, require_stable: bool):
    """(group error, {topic: [(partition, FetchedOffset)]}) in request order."""
    error, fetched = broker.groups.fetch_offsets(group_id, _requested_partitions(topics),
                                                 require_stable)
    by_topic: dict[str, list] = {}
    for tp, offset in fetched:
        by_topic.setdefault(tp.topic, []).append((tp.partition, offset))
    return error, by_topic


@handles(OFFSET_FETCH_KEY, 0, 9)
def handle_offset_fetch(ctx, request) -> OffsetFetchResponse:
    version = ctx.api_version
    broker = ctx.broker
    require_stable = request.require_stable if version >= 7 else False
    if version >= 8:
        groups = []
        for wanted in request.groups:
            error, by_topic = _group_offsets(broker, wanted.group_id, wanted.topics, require_stable)
            groups.append(OffsetFetchResponse.OffsetFetchResponseGroup(
                group_id=wanted.group_id, error_code=error, topics=[
                    OffsetFetchResponse.OffsetFetchResponseTopics(name=name, partitions=[
                        OffsetFetchResponse.OffsetFetchResponsePartitions(
                            partition_index=index, committed_offset=offset.offset,
                            committed_leader_epoch=offset.leader_epoch,
                            metadata=offset.metadata, error_code=offset.error)
                        for index, offset in partitions])
                    for name, partitions in by_topic.items()]))
        return OffsetFetchResponse(throttle_time_ms=0, groups=groups)

    error, by_topic = _group_offsets(broker, request.group_id, request.topics, require_stable)
    if error != ErrorCode.NONE and version < 2:
        # No top-level error before v2: every asked partition carries it.
        by_topic = {}
        for tp in _requested_partitions(request.topics) or []:
            by_topic.setdefault(tp.topic, []).append((tp.partition, None))
    topics = [
        OffsetFetchResponse.OffsetFetchResponseTopic(name=name, partitions=[
            OffsetFetchResponse.OffsetFetchResponsePartition(
                partition_index=index,
                committed_offset=offset.offset if offset else -1,
                committed_leader_epoch=(offset.leader_epoch if offset and version >= 5 else -1),
                metadata=offset.metadata if offset else "",
                error_code=offset.error if offset else error)
            for index, offset in partitions])
        for name, partitions in by_topic.items()]
    return OffsetFetchResponse(throttle_time_ms=0, topics=topics,
                               error_code=error if version >= 2 else ErrorCode.NONE)


async def _offset_delete(ctx, request) -> OffsetDeleteResponse:
    broker = ctx.broker
    wanted = [TopicPartition(topic.name, partition.partition_index)
              for topic in request.topics for partition in topic.partitions]
    existing = await _existing_partitions(broker, wanted)
    error, results = await broker.groups.delete_offsets(
        request.group_id, [tp for tp in wanted if tp in existing])
    if error != ErrorCode.NONE:
        return OffsetDeleteResponse(error_code=error, throttle_time_ms=0, topics=[])
    topics = [
        OffsetDeleteResponse.OffsetDeleteResponseTopic(name=topic.name, partitions=[
            OffsetDeleteResponse.OffsetDeleteResponsePartition(
                partition_index=partition.partition_index,
                error_code=results.get(TopicPartition(topic.name, partition.partition_index),
                                       ErrorCode.UNKNOWN_TOPIC_OR_PARTITION))
            for partition in topic.partitions])
        for topic in request.topics]
    return OffsetDeleteResponse(error_code=ErrorCode.NONE, throttle_time_ms=0, topics=topics)


@handles(OFFSET_DELETE_KEY, 0, 0)
def handle_offset_delete(ctx, request) -> defer.Deferred[OffsetDeleteResponse]:
    return defer.ensureDeferred(_offset_delete(ctx, request))


# -- DescribeGroups / ListGroups / DeleteGroups ------------------------------------------------


@handles(DESCRIBE_GROUPS_KEY, 0, 5)
def handle_describe_groups(ctx, request) -> DescribeGroupsResponse:
    version = ctx.api_version
    include_operations = version >= 3 and request.include_authorized_operations
    described = []
    for group_id in request.groups:
        error, summary = ctx.broker.groups.describe_group(group_id)
        described.append(DescribeGroupsResponse.DescribedGroup(
            error_code=error, group_id=group_id, group_state=summary.state,
            protocol_type=summary.protocol_type, protocol_data=summary.protocol_data,
            members=[DescribeGroupsResponse.DescribedGroupMember(
                member_id=member.member_id, group_instance_id=member.group_instance_id,
                client_id=member.client_id, client_host=member.client_host,
                member_metadata=member.metadata, member_assignment=member.assignment)
                for member in summary.members],
            authorized_operations=(ALL_GROUP_OPERATIONS if include_operations
                                   else AUTHORIZED_OPERATIONS_OMITTED)))
    return DescribeGroupsResponse(throttle_time_ms=0, groups=described)


@handles(LIST_GROUPS_KEY, 0, 5)
def handle_list_groups(ctx, request) -> ListGroupsResponse:
    version = ctx.api_version
    states = request.states_filter if version >= 4 else []
    types = {t.lower() for t in request.types_filter} if version >= 5 else set()
    error, listings = ctx.broker.groups.list_groups(states)
    if types and CLASSIC_GROUP_TYPE not in types:
        listings = []
    return ListGroupsResponse(throttle_time_ms=0, error_code=error, groups=[
        ListGroupsResponse.ListedGroup(group_id=listing.group_id,
                                       protocol_type=listing.protocol_type,
                                       group_state=listing.state, group_type=CLASSIC_GROUP_TYPE)
        for listing in listings])


@handles(DELETE_GROUPS_KEY, 0, 2)
def handle_delete_groups(ctx, request) -> defer.Deferred[DeleteGroupsResponse]:
    deleted = ctx.broker.groups.delete_groups(request.groups_names)
    return deleted.addCallback(lambda results: DeleteGroupsResponse(throttle_time_ms=0, results=[
        DeleteGroupsResponse.DeletableGroupResult(group_id=group_id, error_code=results[group_id])
        for group_id in dict.fromkeys(request.groups_names)]))
