"""Committed offsets: commit checks, durability before the answer, fetch (incl. all partitions
and require_stable), OffsetDelete, DeleteGroups, ListGroups/DescribeGroups, retention."""

from __future__ import annotations

from test_group_fakes import (
    TEST_SETTINGS,
    FakeBroker,
    FakeGroupStorage,
    StorageDown,
    has_fired,
    join_request,
    result_of,
    start_coordinator,
)
from test_group_membership import form_group, two_step_join
from twisted.internet import defer, task

from kop.groups import (
    GroupCoordinator,
    GroupState,
    LeavingMember,
    OffsetToCommit,
    TopicPartition,
    coordinator_partition,
)
from kop.groups.coordinator import NO_OFFSET, FetchedOffset
from wire.generated.error_codes import ErrorCode
from wire.messages import ConsumerProtocolSubscription
from wire.protocol import encode_versioned

T0, T1 = TopicPartition("t", 0), TopicPartition("t", 1)
OTHER = TopicPartition("other", 0)


def commit(coordinator, offsets, group_id="g", member_id="", generation=-1, instance_id=None,
           **options):
    return coordinator.commit_offsets(
        group_id, member_id, instance_id, generation,
        {tp: value if isinstance(value, OffsetToCommit) else OffsetToCommit(value)
         for tp, value in offsets.items()}, **options)


def fetched(coordinator, group_id="g", partitions=None, require_stable=False):
    error, answers = coordinator.fetch_offsets(group_id, partitions, require_stable)
    assert error == ErrorCode.NONE
    return dict(answers)


# -- commit -------------------------------------------------------------------------------------


def test_members_commit_with_their_generation_and_metadata_round_trips() -> None:
    coordinator, clock, _ = start_coordinator()
    (member,), generation = form_group(coordinator, clock, 1)
    done = commit(coordinator, {T0: OffsetToCommit(5, 3, "m5"), T1: OffsetToCommit(7, -1, None)},
                  member_id=member, generation=generation)
    assert result_of(done) == {T0: ErrorCode.NONE, T1: ErrorCode.NONE}
    assert fetched(coordinator, partitions=[T0, T1, OTHER]) == {
        T0: FetchedOffset(5, 3, "m5"), T1: FetchedOffset(7, -1, ""), OTHER: NO_OFFSET}


def test_commit_checks_membership_and_generation() -> None:
    coordinator, clock, _ = start_coordinator()
    (member,), generation = form_group(coordinator, clock, 1)
    assert result_of(commit(coordinator, {T0: 1}, member_id=member, generation=generation + 1)
                     ) == {T0: ErrorCode.ILLEGAL_GENERATION}
    assert result_of(commit(coordinator, {T0: 1}, member_id="ghost", generation=generation)
                     ) == {T0: ErrorCode.UNKNOWN_MEMBER_ID}
    # A standalone committer may not commit for a group that has members.
    assert result_of(commit(coordinator, {T0: 1})) == {T0: ErrorCode.UNKNOWN_MEMBER_ID}
    # A member commit for a group that does not exist.
    assert result_of(commit(coordinator, {T0: 1}, group_id="none", member_id="m", generation=1)
                     ) == {T0: ErrorCode.ILLEGAL_GENERATION}
    assert result_of(commit(coordinator, {T0: 1}, group_id="none", member_id="m", generation=1,
                            missing_group_error=ErrorCode.GROUP_ID_NOT_FOUND)
                     ) == {T0: ErrorCode.GROUP_ID_NOT_FOUND}
    assert fetched(coordinator, partitions=[T0]) == {T0: NO_OFFSET}


def test_commit_while_completing_a_rebalance_is_refused_but_allowed_while_preparing() -> None:
    coordinator, clock, _ = start_coordinator()
    (member,), generation = form_group(coordinator, clock, 1)
    two_step_join(coordinator)  # a newcomer: PreparingRebalance
    assert result_of(commit(coordinator, {T0: 4}, member_id=member, generation=generation)
                     ) == {T0: ErrorCode.NONE}
    rejoined = result_of(coordinator.join_group(join_request(member)))
    assert coordinator.group("g").state is GroupState.COMPLETING_REBALANCE
    assert result_of(commit(coordinator, {T0: 5}, member_id=member,
                            generation=rejoined.generation_id)) == {T0: ErrorCode.REBALANCE_IN_PROGRESS}


def test_a_standalone_committer_creates_an_empty_group() -> None:
    coordinator, _, _ = start_coordinator()
    assert result_of(commit(coordinator, {T0: 10}, group_id="solo")) == {T0: ErrorCode.NONE}
    group = coordinator.group("solo")
    assert group.state is GroupState.EMPTY and group.protocol_type is None
    assert fetched(coordinator, "solo") == {T0: FetchedOffset(10, -1, "")}


def test_oversized_metadata_is_refused_per_partition() -> None:
    coordinator, _, _ = start_coordinator(**{"offset.metadata.max.bytes": "8"})
    result = result_of(commit(coordinator, {T0: OffsetToCommit(1, metadata="x" * 9),
                                            T1: OffsetToCommit(2, metadata="x" * 8)}))
    assert result == {T0: ErrorCode.OFFSET_METADATA_TOO_LARGE, T1: ErrorCode.NONE}
    assert fetched(coordinator, partitions=[T0]) == {T0: NO_OFFSET}


def test_a_commit_is_answered_only_once_durable_and_require_stable_sees_it_pending() -> None:
    coordinator, _, storage = start_coordinator()
    result_of(commit(coordinator, {T0: 1}))
    ledger = storage.ledger(coordinator.partition_for("g"))
    ledger.hold = True
    pending = commit(coordinator, {T0: 2})
    assert not has_fired(pending)
    assert fetched(coordinator, partitions=[T0]) == {T0: FetchedOffset(1, -1, "")}
    assert fetched(coordinator, partitions=[T0], require_stable=True) == {
        T0: FetchedOffset(-1, -1, "", ErrorCode.UNSTABLE_OFFSET_COMMIT)}
    ledger.release()
    assert result_of(pending) == {T0: ErrorCode.NONE}
    assert fetched(coordinator, partitions=[T0], require_stable=True) == {T0: FetchedOffset(2, -1, "")}


def test_a_failed_commit_write_is_reported_and_memory_follows_storage() -> None:
    coordinator, clock, storage = start_coordinator()
    result_of(commit(coordinator, {T0: 1}))
    storage.ledger(coordinator.partition_for("g")).fail_next_append = StorageDown("disk gone")
    assert result_of(commit(coordinator, {T0: 2})) == {T0: ErrorCode.COORDINATOR_NOT_AVAILABLE}
    clock.advance(0)  # the partition reloads
    assert fetched(coordinator, partitions=[T0]) == {T0: FetchedOffset(1, -1, "")}
    assert result_of(commit(coordinator, {T0: 3})) == {T0: ErrorCode.NONE}


# -- fetch ----------------------------------------------------------------------------------------


def test_fetch_of_all_partitions_and_of_unknown_groups() -> None:
    coordinator, _, _ = start_coordinator()
    result_of(commit(coordinator, {T1: 8, T0: 4, OTHER: 2}))
    error, answers = coordinator.fetch_offsets("g", None)
    assert error == ErrorCode.NONE
    assert [tp for tp, _ in answers] == [OTHER, T0, T1]
    assert coordinator.fetch_offsets("nobody", None) == (ErrorCode.NONE, [])
    assert coordinator.fetch_offsets("nobody", [T0]) == (ErrorCode.NONE, [(T0, NO_OFFSET)])


def test_groups_of_partitions_this_broker_does_not_own_or_still_loads() -> None:
    storage = FakeGroupStorage()
    partition = coordinator_partition("g", storage.partitions)
    storage.hold_open[partition] = defer.Deferred()
    coordinator = GroupCoordinator(FakeBroker(TEST_SETTINGS, owned={partition}), storage,
                                   reactor=task.Clock())
    started = defer.ensureDeferred(coordinator.start())
    assert coordinator.fetch_offsets("g", None)[0] == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
    assert coordinator.list_groups()[0] == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
    elsewhere = next(f"x{n}" for n in range(100)
                     if coordinator_partition(f"x{n}", storage.partitions) != partition)
    assert coordinator.fetch_offsets(elsewhere, None)[0] == ErrorCode.NOT_COORDINATOR
    assert result_of(commit(coordinator, {T0: 1}, group_id=elsewhere)) == {
        T0: ErrorCode.NOT_COORDINATOR}
    storage.hold_open.pop(partition).callback(None)
    result_of(started)
    assert coordinator.fetch_offsets("g", None) == (ErrorCode.NONE, [])


# -- OffsetDelete and DeleteGroups ----------------------------------------------------------------


def consumer_metadata(*topics: str) -> bytes:
    return encode_versioned(ConsumerProtocolSubscription(topics=list(topics)), 1)


def test_offset_delete_in_an_empty_group_and_for_unsubscribed_topics_only() -> None:
    coordinator, clock, _ = start_coordinator()
    joined = coordinator.join_group(join_request(instance_id="i",
                                                 protocols=[("range", consumer_metadata("t"))]))
    clock.advance(3)
    member = result_of(joined).member_id
    result_of(coordinator.sync_group("g", 1, member, "i", None, None, {member: b"a"}))
    result_of(commit(coordinator, {T0: 1, T1: 2, OTHER: 3}, member_id=member, generation=1,
                     instance_id="i"))
    error, results = result_of(coordinator.delete_offsets("g", [T0, OTHER]))
    assert error == ErrorCode.NONE
    assert results == {T0: ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC, OTHER: ErrorCode.NONE}
    assert fetched(coordinator, "g") == {T0: FetchedOffset(1, -1, ""), T1: FetchedOffset(2, -1, "")}

    coordinator.leave_group("g", [LeavingMember(member, "i")])
    error, results = result_of(coordinator.delete_offsets("g", [T0]))
    assert (error, results) == (ErrorCode.NONE, {T0: ErrorCode.NONE})
    assert fetched(coordinator, "g") == {T1: FetchedOffset(2, -1, "")}
    # Deleting the last offset of an empty group removes the group.
    result_of(coordinator.delete_offsets("g", [T1]))
    assert coordinator.group("g") is None
    assert result_of(coordinator.delete_offsets("g", [T1])) == (ErrorCode.GROUP_ID_NOT_FOUND, {})


def test_members_with_unreadable_subscriptions_count_as_subscribed_to_everything() -> None:
    coordinator, clock, _ = start_coordinator()
    joined = coordinator.join_group(join_request(instance_id="i",
                                                 protocols=[("range", b"\xff\xfe garbage")]))
    clock.advance(3)
    member = result_of(joined).member_id
    result_of(coordinator.sync_group("g", 1, member, "i", None, None, {member: b"a"}))
    assert coordinator.group("g").subscribed_topics is None
    result_of(commit(coordinator, {OTHER: 3}, member_id=member, generation=1, instance_id="i"))
    assert result_of(coordinator.delete_offsets("g", [OTHER])) == (
        ErrorCode.NONE, {OTHER: ErrorCode.GROUP_SUBSCRIBED_TO_TOPIC})


def test_offset_delete_refuses_non_consumer_groups_with_members() -> None:
    coordinator, clock, _ = start_coordinator()
    joined = coordinator.join_group(join_request(instance_id="w", protocol_type="connect"))
    clock.advance(3)
    assert result_of(joined).error == ErrorCode.NONE
    assert result_of(coordinator.delete_offsets("g", [T0])) == (ErrorCode.NON_EMPTY_GROUP, {})


def test_delete_groups_only_deletes_empty_groups_with_their_offsets() -> None:
    coordinator, clock, storage = start_coordinator()
    form_group(coordinator, clock, 1, group_id="busy")
    result_of(commit(coordinator, {T0: 1}, group_id="idle"))
    results = result_of(coordinator.delete_groups(["busy", "idle", "none", ""]))
    assert results == {"busy": ErrorCode.NON_EMPTY_GROUP, "idle": ErrorCode.NONE,
                       "none": ErrorCode.GROUP_ID_NOT_FOUND, "": ErrorCode.GROUP_ID_NOT_FOUND}
    assert coordinator.group("idle") is None
    # Gone for good: a restarted coordinator does not bring it back.
    result_of(defer.ensureDeferred(coordinator.stop()))
    restarted, _, _ = start_coordinator(storage)
    assert restarted.group("idle") is None and restarted.group("busy") is not None


# -- ListGroups / DescribeGroups --------------------------------------------------------------------


def test_list_groups_with_a_state_filter() -> None:
    coordinator, clock, _ = start_coordinator()
    form_group(coordinator, clock, 1, group_id="stable")
    result_of(commit(coordinator, {T0: 1}, group_id="solo"))
    error, listings = coordinator.list_groups()
    assert error == ErrorCode.NONE
    assert [(g.group_id, g.protocol_type, g.state) for g in listings] == [
        ("solo", "", "Empty"), ("stable", "consumer", "Stable")]
    assert [g.group_id for g in coordinator.list_groups(["STABLE"])[1]] == ["stable"]
    assert [g.group_id for g in coordinator.list_groups(["empty", "dead"])[1]] == ["solo"]


def test_describe_shows_metadata_and_assignments_only_while_stable() -> None:
    coordinator, clock, _ = start_coordinator()
    (member,), generation = form_group(coordinator, clock, 1)
    error, summary = coordinator.describe_group("g")
    assert (error, summary.state, summary.protocol_type, summary.protocol_data) == (
        ErrorCode.NONE, "Stable", "consumer", "range")
    (described,) = summary.members
    assert (described.member_id, described.client_id, described.client_host, described.metadata,
            described.assignment) == (member, "client", "/127.0.0.1", b"meta", b"0")
    two_step_join(coordinator)
    _, summary = coordinator.describe_group("g")
    assert summary.state == "PreparingRebalance" and summary.protocol_data == ""
    assert [(m.metadata, m.assignment) for m in summary.members] == [(b"", b"")] * 2
    assert coordinator.describe_group("nobody")[1].state == "Dead"


# -- retention ------------------------------------------------------------------------------------

DAY = 24 * 3600.0
# Retention is run by hand in these tests, except in the one about its timer.
MANUAL_RETENTION = {"offsets.retention.check.interval.ms": str(10**12)}


def test_offsets_of_an_empty_group_expire_retention_after_it_emptied() -> None:
    coordinator, clock, _ = start_coordinator(**{"offsets.retention.minutes": "1440"},
                                              **MANUAL_RETENTION)
    (member,), generation = form_group(coordinator, clock, 1)
    result_of(commit(coordinator, {T0: 1}, member_id=member, generation=generation))
    clock.advance(10)  # the member stops heartbeating: after its 10 s session the group empties
    assert coordinator.group("g").state is GroupState.EMPTY
    clock.advance(DAY - 1)
    assert result_of(coordinator.expire_offsets()) == 0
    clock.advance(1)
    assert result_of(coordinator.expire_offsets()) == 1
    assert coordinator.group("g") is None


def test_standalone_offsets_expire_retention_after_their_commit_and_explicit_expiry_wins() -> None:
    coordinator, clock, _ = start_coordinator(**{"offsets.retention.minutes": "60"},
                                              **MANUAL_RETENTION)
    result_of(commit(coordinator, {T0: 1}))
    clock.advance(1800)
    result_of(commit(coordinator, {T1: 1}))
    result_of(commit(coordinator, {OTHER: 1}, retention_ms=10_000))
    clock.advance(1800)
    assert result_of(coordinator.expire_offsets()) == 2  # T0 (an hour old) and OTHER
    assert fetched(coordinator) == {T1: FetchedOffset(1, -1, "")}
    clock.advance(1800)
    assert result_of(coordinator.expire_offsets()) == 1
    assert coordinator.group("g") is None


def test_a_stable_consumer_group_keeps_offsets_of_topics_it_subscribes_to() -> None:
    coordinator, clock, _ = start_coordinator(**{"offsets.retention.minutes": "1"},
                                              **MANUAL_RETENTION)
    joined = coordinator.join_group(join_request(instance_id="i", session_ms=60_000,
                                                 protocols=[("range", consumer_metadata("t"))]))
    clock.advance(3)
    member = result_of(joined).member_id
    result_of(coordinator.sync_group("g", 1, member, "i", None, None, {member: b"a"}))
    result_of(commit(coordinator, {T0: 1, OTHER: 2}, member_id=member, generation=1,
                     instance_id="i"))
    clock.advance(59)
    coordinator.heartbeat("g", member, "i", 1)
    clock.advance(1)
    assert result_of(coordinator.expire_offsets()) == 1
    assert fetched(coordinator) == {T0: FetchedOffset(1, -1, "")}


def test_retention_runs_on_its_own_timer() -> None:
    coordinator, clock, _ = start_coordinator(**{"offsets.retention.minutes": "1",
                                                 "offsets.retention.check.interval.ms": "30000"})
    result_of(commit(coordinator, {T0: 1}))
    clock.advance(59)  # the check due at 30 s runs now: the offset is 59 s old
    assert coordinator.group("g") is not None
    clock.advance(31)  # the next check runs at 90 s
    assert coordinator.group("g") is None
