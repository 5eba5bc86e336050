"""The group API handlers, version by version: requests go through the wire codec, the
handler answers from a real coordinator (in-memory storage), and every answer must encode
strictly (no field the version cannot carry) and decode back."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from test_group_fakes import result_of, start_coordinator
from twisted.internet import defer

from kop.errors import KafkaError
from kop.handlers import REGISTRY
from kop.ownership import BrokerAddress
from wire.generated.error_codes import ErrorCode
from wire.messages import (
    DeleteGroupsRequest,
    DescribeGroupsRequest,
    FindCoordinatorRequest,
    HeartbeatRequest,
    JoinGroupRequest,
    LeaveGroupRequest,
    ListGroupsRequest,
    OffsetCommitRequest,
    OffsetDeleteRequest,
    OffsetFetchRequest,
    SyncGroupRequest,
    TxnOffsetCommitRequest,
)
from wire.protocol import (
    RequestHeader,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)

OFFSET_COMMIT, OFFSET_FETCH, FIND_COORDINATOR, JOIN_GROUP, HEARTBEAT = 8, 9, 10, 11, 12
TXN_OFFSET_COMMIT = 28
LEAVE_GROUP, SYNC_GROUP, DESCRIBE_GROUPS, LIST_GROUPS, DELETE_GROUPS, OFFSET_DELETE = (
    13, 14, 15, 16, 42, 47)


class Gateway:
    """A broker with one topic "t" (2 partitions), answering through the real handlers."""

    def __init__(self, **settings: str) -> None:
        self.groups, self.clock, self.storage = start_coordinator(
            **{"group.initial.rebalance.delay.ms": "0", **settings})
        self.broker = SimpleNamespace(
            groups=self.groups,
            topics=SimpleNamespace(lookup=self._lookup),
            leader_of=lambda topic, partition: 5,
            live_brokers=lambda: [BrokerAddress(5, "kop.example", 9093)],
            transactions=SimpleNamespace(check_producer_for_offsets=self._check_producer),
        )

    @staticmethod
    def _check_producer(transactional_id: str, producer_id: int, producer_epoch: int) -> None:
        """The transaction coordinator's verdict: "tx" is producer 40 at epoch 2."""
        if (transactional_id, producer_id) != ("tx", 40):
            raise KafkaError(ErrorCode.INVALID_PRODUCER_ID_MAPPING)
        if producer_epoch != 2:
            raise KafkaError(ErrorCode.PRODUCER_FENCED)

    @staticmethod
    async def _lookup(name: str):
        return SimpleNamespace(partitions=2) if name == "t" else None

    def start(self, api_key: int, version: int, request) -> defer.Deferred:
        """Send a request; the Deferred fires with the decoded answer."""
        frame = encode_request(RequestHeader(api_key, version, 1, "handler-test"), request)
        header, decoded = decode_request(frame[4:])
        ctx = SimpleNamespace(header=header, api_version=version, broker=self.broker,
                              connection=SimpleNamespace(peer="10.1.2.3:5555"))
        answered = defer.maybeDeferred(REGISTRY.get(api_key).func, ctx, decoded)

        def encoded(response):
            payload = encode_response(1, api_key, version, response, strict=True)
            return decode_response(payload[4:], api_key, version)[1]

        return answered.addCallback(encoded)

    def call(self, api_key: int, version: int, request):
        return result_of(self.start(api_key, version, request))


def join(version: int, member_id: str = "", instance: str | None = None, **fields):
    return JoinGroupRequest(group_id="g", session_timeout_ms=10_000, rebalance_timeout_ms=20_000,
                            member_id=member_id, group_instance_id=instance,
                            protocol_type="consumer",
                            protocols=[JoinGroupRequest.JoinGroupRequestProtocol(
                                name="range", metadata=b"sub")], **fields)


def joined_member(gateway: Gateway, version: int = 5) -> tuple[str, int]:
    first = gateway.call(JOIN_GROUP, version, join(version))
    if first.error_code == ErrorCode.MEMBER_ID_REQUIRED:
        first = gateway.call(JOIN_GROUP, version, join(version, first.member_id))
    assert first.error_code == ErrorCode.NONE
    synced = gateway.call(SYNC_GROUP, 3, SyncGroupRequest(
        group_id="g", generation_id=first.generation_id, member_id=first.member_id,
        assignments=[SyncGroupRequest.SyncGroupRequestAssignment(member_id=first.member_id,
                                                                 assignment=b"mine")]))
    assert synced.assignment == b"mine"
    return first.member_id, first.generation_id


# -- FindCoordinator --------------------------------------------------------------------------------


@pytest.mark.parametrize("version", range(0, 4))
def test_find_coordinator_single_key(version: int) -> None:
    answer = Gateway().call(FIND_COORDINATOR, version, FindCoordinatorRequest(key="g"))
    assert (answer.error_code, answer.node_id, answer.host, answer.port) == (
        ErrorCode.NONE, 5, "kop.example", 9093)


@pytest.mark.parametrize("version", [4, 5, 6])
def test_find_coordinator_batched_keys_and_key_types(version: int) -> None:
    gateway = Gateway()
    answer = gateway.call(FIND_COORDINATOR, version,
                          FindCoordinatorRequest(key_type=0, coordinator_keys=["a", "b"]))
    assert [(c.key, c.node_id, c.port, c.error_code) for c in answer.coordinators] == [
        ("a", 5, 9093, ErrorCode.NONE), ("b", 5, 9093, ErrorCode.NONE)]
    transactional = gateway.call(FIND_COORDINATOR, version,
                                 FindCoordinatorRequest(key_type=1, coordinator_keys=["tx"]))
    assert transactional.coordinators[0].node_id == 5
    if version == 6:
        share = gateway.call(FIND_COORDINATOR, version,
                             FindCoordinatorRequest(key_type=2, coordinator_keys=["s"]))
        assert share.coordinators[0].error_code == ErrorCode.INVALID_REQUEST


def test_find_coordinator_without_a_live_owner() -> None:
    gateway = Gateway()
    gateway.broker.leader_of = lambda topic, partition: None
    answer = gateway.call(FIND_COORDINATOR, 1, FindCoordinatorRequest(key="g"))
    assert (answer.error_code, answer.node_id) == (ErrorCode.COORDINATOR_NOT_AVAILABLE, -1)
    assert answer.error_message


# -- JoinGroup / SyncGroup / Heartbeat / LeaveGroup ------------------------------------------------


@pytest.mark.parametrize("version", range(0, 10))
def test_join_group_every_version(version: int) -> None:
    gateway = Gateway()
    first = gateway.call(JOIN_GROUP, version, join(version))
    if version >= 4:
        assert first.error_code == ErrorCode.MEMBER_ID_REQUIRED and first.member_id
        assert first.protocol_name == ("" if version < 7 else None)
        first = gateway.call(JOIN_GROUP, version, join(version, first.member_id))
    assert first.error_code == ErrorCode.NONE
    assert first.member_id.startswith("handler-test-")
    assert (first.generation_id, first.leader, first.protocol_name) == (1, first.member_id, "range")
    assert [(m.member_id, m.metadata) for m in first.members] == [(first.member_id, b"sub")]
    if version >= 7:
        assert first.protocol_type == "consumer"
    (member,) = gateway.groups.describe_group("g")[1].members
    assert (member.client_id, member.client_host) == ("handler-test", "/10.1.2.3")


def test_join_group_v0_uses_the_session_timeout_as_rebalance_timeout() -> None:
    gateway = Gateway()
    gateway.call(JOIN_GROUP, 0, join(0))
    group = gateway.groups.group("g")
    assert next(iter(group.members.values())).rebalance_timeout_ms == 10_000


def test_static_join_and_skip_assignment_by_version() -> None:
    gateway = Gateway()
    first = gateway.call(JOIN_GROUP, 9, join(9, instance="i"))
    gateway.call(SYNC_GROUP, 5, SyncGroupRequest(
        group_id="g", generation_id=1, member_id=first.member_id, group_instance_id="i",
        protocol_type="consumer", protocol_name="range", assignments=[]))
    again_v9 = gateway.call(JOIN_GROUP, 9, join(9, instance="i"))
    assert again_v9.skip_assignment and again_v9.leader == again_v9.member_id
    again_v5 = gateway.call(JOIN_GROUP, 5, join(5, instance="i"))
    assert again_v5.leader == again_v9.member_id != again_v5.member_id
    assert again_v5.members == [] and again_v5.generation_id == 1


@pytest.mark.parametrize("version", range(0, 6))
def test_sync_and_heartbeat_every_version(version: int) -> None:
    gateway = Gateway()
    member, generation = joined_member(gateway)
    synced = gateway.call(SYNC_GROUP, version, SyncGroupRequest(
        group_id="g", generation_id=generation, member_id=member,
        protocol_type="consumer" if version >= 5 else None,
        protocol_name="range" if version >= 5 else None, assignments=[]))
    assert (synced.error_code, synced.assignment) == (ErrorCode.NONE, b"mine")
    if version >= 5:
        assert (synced.protocol_type, synced.protocol_name) == ("consumer", "range")
    heartbeat_version = min(version, 4)
    beat = gateway.call(HEARTBEAT, heartbeat_version, HeartbeatRequest(
        group_id="g", generation_id=generation, member_id=member))
    assert beat.error_code == ErrorCode.NONE
    stale = gateway.call(HEARTBEAT, heartbeat_version, HeartbeatRequest(
        group_id="g", generation_id=generation + 1, member_id=member))
    assert stale.error_code == ErrorCode.ILLEGAL_GENERATION


@pytest.mark.parametrize("version", range(0, 3))
def test_leave_group_before_v3_answers_the_members_error_at_top_level(version: int) -> None:
    gateway = Gateway()
    member, _ = joined_member(gateway)
    unknown = gateway.call(LEAVE_GROUP, version, LeaveGroupRequest(group_id="g", member_id="x"))
    assert unknown.error_code == ErrorCode.UNKNOWN_MEMBER_ID
    left = gateway.call(LEAVE_GROUP, version, LeaveGroupRequest(group_id="g", member_id=member))
    assert left.error_code == ErrorCode.NONE
    assert gateway.groups.group("g").members == {}


@pytest.mark.parametrize("version", range(3, 6))
def test_leave_group_batches_from_v3(version: int) -> None:
    gateway = Gateway()
    member, _ = joined_member(gateway)
    left = gateway.call(LEAVE_GROUP, version, LeaveGroupRequest(group_id="g", members=[
        LeaveGroupRequest.MemberIdentity(member_id=member, reason="bye" if version >= 5 else None),
        LeaveGroupRequest.MemberIdentity(member_id="", group_instance_id="nobody")]))
    assert left.error_code == ErrorCode.NONE
    assert [(m.member_id, m.group_instance_id, m.error_code) for m in left.members] == [
        (member, None, ErrorCode.NONE), ("", "nobody", ErrorCode.UNKNOWN_MEMBER_ID)]
    invalid = gateway.call(LEAVE_GROUP, version, LeaveGroupRequest(group_id="", members=[]))
    assert (invalid.error_code, invalid.members) == (ErrorCode.INVALID_GROUP_ID, [])


# -- OffsetCommit / OffsetFetch / OffsetDelete ------------------------------------------------------


def commit_request(version: int, offsets: dict[tuple[str, int], int], member: str = "",
                   generation: int = -1, metadata: str | None = "md",
                   group_id: str = "g") -> OffsetCommitRequest:
    topics: dict[str, list] = {}
    for (topic, partition), offset in offsets.items():
        topics.setdefault(topic, []).append(OffsetCommitRequest.OffsetCommitRequestPartition(
            partition_index=partition, committed_offset=offset, committed_metadata=metadata,
            committed_leader_epoch=3 if version >= 6 else -1))
    return OffsetCommitRequest(group_id=group_id, generation_id_or_member_epoch=generation,
                               member_id=member, topics=[
                                   OffsetCommitRequest.OffsetCommitRequestTopic(name=name,
                                                                                partitions=parts)
                                   for name, parts in topics.items()])


def commit_errors(answer) -> dict[tuple[str, int], ErrorCode]:
    return {(t.name, p.partition_index): p.error_code for t in answer.topics for p in t.partitions}


@pytest.mark.parametrize("version", range(0, 10))
def test_offset_commit_and_fetch_every_version(version: int) -> None:
    gateway = Gateway()
    answer = gateway.call(OFFSET_COMMIT, version,
                          commit_request(version, {("t", 0): 5, ("t", 9): 1, ("nope", 0): 1}))
    assert commit_errors(answer) == {("t", 0): ErrorCode.NONE,
                                     ("t", 9): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                                     ("nope", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION}
    fetch_version = min(version, 7)
    fetched = gateway.call(OFFSET_FETCH, fetch_version, OffsetFetchRequest(
        group_id="g", topics=[OffsetFetchRequest.OffsetFetchRequestTopic(
            name="t", partition_indexes=[0, 1])]))
    partitions = {p.partition_index: p for p in fetched.topics[0].partitions}
    assert (partitions[0].committed_offset, partitions[0].metadata) == (5, "md")
    assert (partitions[1].committed_offset, partitions[1].metadata) == (-1, "")
    if fetch_version >= 5:
        assert partitions[0].committed_leader_epoch == (3 if version >= 6 else -1)


def test_offset_commit_stores_null_metadata_as_empty() -> None:
    gateway = Gateway()
    gateway.call(OFFSET_COMMIT, 2, commit_request(2, {("t", 0): 1}, metadata=None))
    fetched = gateway.call(OFFSET_FETCH, 2, OffsetFetchRequest(group_id="g", topics=None))
    assert fetched.topics[0].partitions[0].metadata == ""


def test_offset_commit_to_a_missing_group_by_version() -> None:
    gateway = Gateway()
    old = gateway.call(OFFSET_COMMIT, 8, commit_request(8, {("t", 0): 1}, "m", 3))
    new = gateway.call(OFFSET_COMMIT, 9, commit_request(9, {("t", 0): 1}, "m", 3))
    assert commit_errors(old) == {("t", 0): ErrorCode.ILLEGAL_GENERATION}
    assert commit_errors(new) == {("t", 0): ErrorCode.GROUP_ID_NOT_FOUND}


def test_offset_commit_v2_to_v4_retention_time() -> None:
    gateway = Gateway(**{"offsets.retention.check.interval.ms": str(10**12)})
    request = commit_request(3, {("t", 0): 1})
    request.retention_time_ms = 5_000
    gateway.call(OFFSET_COMMIT, 3, request)
    gateway.clock.advance(5)
    assert result_of(gateway.groups.expire_offsets()) == 1


def test_offset_fetch_null_topics_means_every_committed_partition() -> None:
    gateway = Gateway()
    gateway.call(OFFSET_COMMIT, 8, commit_request(8, {("t", 1): 7, ("t", 0): 6}))
    for version in range(2, 8):
        fetched = gateway.call(OFFSET_FETCH, version, OffsetFetchRequest(group_id="g", topics=None))
        assert fetched.error_code == ErrorCode.NONE
        assert [(t.name, [(p.partition_index, p.committed_offset) for p in t.partitions])
                for t in fetched.topics] == [("t", [(0, 6), (1, 7)])]


def test_offset_fetch_group_errors_by_version() -> None:
    gateway = Gateway()
    wanted = [OffsetFetchRequest.OffsetFetchRequestTopic(name="t", partition_indexes=[0])]
    gateway.groups._active = False  # a coordinator shutting down
    v1 = gateway.call(OFFSET_FETCH, 1, OffsetFetchRequest(group_id="g", topics=wanted))
    assert [(p.partition_index, p.committed_offset, p.error_code)
            for p in v1.topics[0].partitions] == [(0, -1, ErrorCode.COORDINATOR_NOT_AVAILABLE)]
    v2 = gateway.call(OFFSET_FETCH, 2, OffsetFetchRequest(group_id="g", topics=wanted))
    assert (v2.error_code, v2.topics) == (ErrorCode.COORDINATOR_NOT_AVAILABLE, [])


@pytest.mark.parametrize("version", [8, 9])
def test_offset_fetch_several_groups_at_once(version: int) -> None:
    gateway = Gateway()
    gateway.call(OFFSET_COMMIT, 8, commit_request(8, {("t", 0): 4}))
    fetched = gateway.call(OFFSET_FETCH, version, OffsetFetchRequest(groups=[
        OffsetFetchRequest.OffsetFetchRequestGroup(group_id="g", topics=None),
        OffsetFetchRequest.OffsetFetchRequestGroup(group_id="other", topics=[
            OffsetFetchRequest.OffsetFetchRequestTopics(name="t", partition_indexes=[1])]),
    ], require_stable=True))
    groups = {g.group_id: g for g in fetched.groups}
    assert [(p.partition_index, p.committed_offset) for p in groups["g"].topics[0].partitions] == [(0, 4)]
    assert [(p.partition_index, p.committed_offset) for p in groups["other"].topics[0].partitions] == [(1, -1)]


def test_offset_fetch_require_stable_reports_commits_in_flight() -> None:
    gateway = Gateway()
    gateway.storage.ledger(gateway.groups.partition_for("g")).hold = True
    commit = gateway.start(OFFSET_COMMIT, 7, commit_request(7, {("t", 0): 4}))
    wanted = [OffsetFetchRequest.OffsetFetchRequestTopic(name="t", partition_indexes=[0])]
    fetched = gateway.call(OFFSET_FETCH, 7, OffsetFetchRequest(group_id="g", topics=wanted,
                                                               require_stable=True))
    assert fetched.topics[0].partitions[0].error_code == ErrorCode.UNSTABLE_OFFSET_COMMIT
    gateway.storage.ledger(gateway.groups.partition_for("g")).release()
    assert commit_errors(result_of(commit)) == {("t", 0): ErrorCode.NONE}


def test_offset_delete() -> None:
    gateway = Gateway()
    gateway.call(OFFSET_COMMIT, 8, commit_request(8, {("t", 0): 4, ("t", 1): 5}))
    answer = gateway.call(OFFSET_DELETE, 0, OffsetDeleteRequest(group_id="g", topics=[
        OffsetDeleteRequest.OffsetDeleteRequestTopic(name="t", partitions=[
            OffsetDeleteRequest.OffsetDeleteRequestPartition(partition_index=0),
            OffsetDeleteRequest.OffsetDeleteRequestPartition(partition_index=7)])]))
    assert answer.error_code == ErrorCode.NONE
    assert [(p.partition_index, p.error_code) for p in answer.topics[0].partitions] == [
        (0, ErrorCode.NONE), (7, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION)]
    missing = gateway.call(OFFSET_DELETE, 0, OffsetDeleteRequest(group_id="none", topics=[]))
    assert missing.error_code == ErrorCode.GROUP_ID_NOT_FOUND


def txn_commit_request(version: int, epoch: int = 2, producer_id: int = 40, **member
                       ) -> TxnOffsetCommitRequest:
    return TxnOffsetCommitRequest(
        transactional_id="tx", group_id="g", producer_id=producer_id, producer_epoch=epoch,
        topics=[TxnOffsetCommitRequest.TxnOffsetCommitRequestTopic(name=name, partitions=[
            TxnOffsetCommitRequest.TxnOffsetCommitRequestPartition(
                partition_index=0, committed_offset=8, committed_metadata="in txn",
                committed_leader_epoch=1 if version >= 2 else -1)]) for name in ("t", "nope")],
        **member)


@pytest.mark.parametrize("version", range(0, 5))
def test_txn_offset_commit_every_version(version: int) -> None:
    gateway = Gateway()
    answer = gateway.call(TXN_OFFSET_COMMIT, version, txn_commit_request(version))
    assert commit_errors(answer) == {("t", 0): ErrorCode.NONE,
                                     ("nope", 0): ErrorCode.UNKNOWN_TOPIC_OR_PARTITION}
    fenced = gateway.call(TXN_OFFSET_COMMIT, version, txn_commit_request(version, epoch=1))
    assert commit_errors(fenced)[("t", 0)] == ErrorCode.INVALID_PRODUCER_EPOCH
    stranger = gateway.call(TXN_OFFSET_COMMIT, version, txn_commit_request(version, producer_id=7))
    assert commit_errors(stranger)[("t", 0)] == ErrorCode.INVALID_PRODUCER_ID_MAPPING
    if version >= 3:
        ghost = gateway.call(TXN_OFFSET_COMMIT, version, txn_commit_request(
            version, member_id="ghost", generation_id=1))
        assert commit_errors(ghost)[("t", 0)] == ErrorCode.UNKNOWN_MEMBER_ID

    wanted = [OffsetFetchRequest.OffsetFetchRequestTopic(name="t", partition_indexes=[0])]
    fetched = gateway.call(OFFSET_FETCH, 7, OffsetFetchRequest(group_id="g", topics=wanted))
    assert fetched.topics[0].partitions[0].committed_offset == -1
    result_of(defer.ensureDeferred(gateway.groups.complete_transaction("g", 40, commit=True)))
    fetched = gateway.call(OFFSET_FETCH, 7, OffsetFetchRequest(group_id="g", topics=wanted,
                                                               require_stable=True))
    partition = fetched.topics[0].partitions[0]
    assert (partition.committed_offset, partition.metadata, partition.error_code) == (
        8, "in txn", ErrorCode.NONE)


# -- DescribeGroups / ListGroups / DeleteGroups -----------------------------------------------------


@pytest.mark.parametrize("version", range(0, 6))
def test_describe_groups_every_version(version: int) -> None:
    gateway = Gateway()
    member, _ = joined_member(gateway)
    answer = gateway.call(DESCRIBE_GROUPS, version, DescribeGroupsRequest(
        groups=["g", "none"], include_authorized_operations=version >= 3))
    described, unknown = answer.groups
    assert (described.group_state, described.protocol_type, described.protocol_data) == (
        "Stable", "consumer", "range")
    assert [(m.member_id, m.member_metadata, m.member_assignment) for m in described.members] == [
        (member, b"sub", b"mine")]
    assert (unknown.error_code, unknown.group_state) == (ErrorCode.NONE, "Dead")
    if version >= 3:
        assert described.authorized_operations == (1 << 3) | (1 << 6) | (1 << 8)


@pytest.mark.parametrize("version", range(0, 6))
def test_list_groups_every_version(version: int) -> None:
    gateway = Gateway()
    joined_member(gateway)
    gateway.call(OFFSET_COMMIT, 8, commit_request(8, {("t", 0): 1}, group_id="solo"))
    answer = gateway.call(LIST_GROUPS, version, ListGroupsRequest())
    assert sorted((g.group_id, g.protocol_type) for g in answer.groups) == [
        ("g", "consumer"), ("solo", "")]
    if version >= 4:
        filtered = gateway.call(LIST_GROUPS, version, ListGroupsRequest(states_filter=["stable"]))
        assert [(g.group_id, g.group_state) for g in filtered.groups] == [("g", "Stable")]
    if version >= 5:
        classic = gateway.call(LIST_GROUPS, version, ListGroupsRequest(types_filter=["Classic"]))
        assert len(classic.groups) == 2 and {g.group_type for g in classic.groups} == {"classic"}
        other = gateway.call(LIST_GROUPS, version, ListGroupsRequest(types_filter=["consumer"]))
        assert other.groups == []


@pytest.mark.parametrize("version", range(0, 3))
def test_delete_groups_every_version(version: int) -> None:
    gateway = Gateway()
    joined_member(gateway)
    answer = gateway.call(DELETE_GROUPS, version, DeleteGroupsRequest(
        groups_names=["g", "none", "g"]))
    assert [(r.group_id, r.error_code) for r in answer.results] == [
        ("g", ErrorCode.NON_EMPTY_GROUP), ("none", ErrorCode.GROUP_ID_NOT_FOUND)]


def test_every_group_api_is_advertised_in_every_version_it_handles() -> None:
    expected = {OFFSET_COMMIT: (0, 9), OFFSET_FETCH: (0, 9), FIND_COORDINATOR: (0, 6),
                JOIN_GROUP: (0, 9), HEARTBEAT: (0, 4), LEAVE_GROUP: (0, 5), SYNC_GROUP: (0, 5),
                DESCRIBE_GROUPS: (0, 5), LIST_GROUPS: (0, 5), DELETE_GROUPS: (0, 2),
                OFFSET_DELETE: (0, 0), TXN_OFFSET_COMMIT: (0, 4)}
    for api_key, versions in expected.items():
        handler = REGISTRY.get(api_key)
        assert (handler.min_version, handler.max_version) == versions
