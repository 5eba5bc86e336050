"""Groups and offsets survive a coordinator restart (a new coordinator over the same storage):
what was acknowledged is there, what was not is not; damaged storage fails loudly and is not
written to; snapshots keep replay bounded."""

from __future__ import annotations

from test_group_fakes import (
    TEST_SETTINGS,
    FakeBroker,
    FakeGroupStorage,
    has_fired,
    join_request,
    result_of,
    start_coordinator,
)
from test_group_membership import form_group, two_step_join
from test_group_offsets import T0, T1, commit, fetched
from twisted.internet import defer, task

from kop.groups import GroupCoordinator, GroupState, LeavingMember, PartitionStatus
from kop.groups.coordinator import FetchedOffset
from wire.generated.error_codes import ErrorCode


def restart(coordinator: GroupCoordinator, storage: FakeGroupStorage, **settings: str):
    result_of(defer.ensureDeferred(coordinator.stop()))
    return start_coordinator(storage, **settings)


def test_a_stable_group_comes_back_stable_with_its_generation_and_assignments() -> None:
    coordinator, clock, storage = start_coordinator()
    members, generation = form_group(coordinator, clock, 2)
    result_of(commit(coordinator, {T0: 11}, member_id=members[0], generation=generation))
    coordinator, clock, _ = restart(coordinator, storage)
    group = coordinator.group("g")
    assert group.state is GroupState.STABLE and group.generation_id == generation
    assert group.leader_id == members[0]
    assert {m: group.members[m].assignment for m in members} == {members[0]: b"0", members[1]: b"1"}
    # The members carry on as if nothing happened.
    for member in members:
        assert coordinator.heartbeat("g", member, None, generation) == ErrorCode.NONE
        synced = coordinator.sync_group("g", generation, member, None, None, None, {})
        assert result_of(synced).assignment == group.members[member].assignment
    assert fetched(coordinator, partitions=[T0]) == {T0: FetchedOffset(11, -1, "")}


def test_loaded_members_that_never_come_back_time_out() -> None:
    coordinator, clock, storage = start_coordinator()
    members, generation = form_group(coordinator, clock, 2)
    coordinator, clock, _ = restart(coordinator, storage)
    for _ in range(15):
        clock.advance(1)
        coordinator.heartbeat("g", members[0], None, generation)
    assert coordinator.heartbeat("g", members[0], None, generation) == ErrorCode.REBALANCE_IN_PROGRESS
    rejoined = result_of(coordinator.join_group(join_request(members[0])))
    assert [m.member_id for m in rejoined.members] == [members[0]]


def test_an_emptied_group_comes_back_empty_and_the_next_generation_continues() -> None:
    coordinator, clock, storage = start_coordinator()
    (member,), generation = form_group(coordinator, clock, 1)
    result_of(commit(coordinator, {T0: 3, T1: 4}, member_id=member, generation=generation))
    coordinator.leave_group("g", [LeavingMember(member)])
    coordinator, clock, _ = restart(coordinator, storage)
    group = coordinator.group("g")
    assert (group.state, group.generation_id, group.protocol_type) == (
        GroupState.EMPTY, generation + 1, "consumer")
    assert fetched(coordinator) == {T0: FetchedOffset(3, -1, ""), T1: FetchedOffset(4, -1, "")}
    _, joined = two_step_join(coordinator)
    clock.advance(3)
    assert result_of(joined).generation_id == generation + 2


def test_an_unacknowledged_commit_is_not_there_after_a_crash() -> None:
    coordinator, clock, storage = start_coordinator()
    result_of(commit(coordinator, {T0: 1}))
    ledger = storage.ledger(coordinator.partition_for("g"))
    ledger.hold = True
    lost = commit(coordinator, {T0: 2})
    ledger.held.clear()  # the process dies before the entry is durable
    ledger.hold = False
    assert not has_fired(lost)
    restarted, _, _ = start_coordinator(storage)
    assert fetched(restarted, partitions=[T0]) == {T0: FetchedOffset(1, -1, "")}


def test_a_restarted_static_member_keeps_its_place_across_a_coordinator_restart() -> None:
    coordinator, clock, storage = start_coordinator()
    joined = coordinator.join_group(join_request(instance_id="inst"))
    clock.advance(3)
    old = result_of(joined).member_id
    result_of(coordinator.sync_group("g", 1, old, "inst", None, None, {old: b"mine"}))
    coordinator, clock, _ = restart(coordinator, storage)
    rejoined = result_of(coordinator.join_group(join_request(instance_id="inst")))
    assert rejoined.error == ErrorCode.NONE and rejoined.generation_id == 1
    synced = coordinator.sync_group("g", 1, rejoined.member_id, "inst", None, None, {})
    assert result_of(synced).assignment == b"mine"
    coordinator, clock, _ = restart(coordinator, storage)  # the new member id was persisted
    assert coordinator.group("g").static_members["inst"] == rejoined.member_id


def test_a_damaged_partition_fails_loudly_is_not_written_and_spares_the_others() -> None:
    storage = FakeGroupStorage()
    coordinator, clock, _ = start_coordinator(storage)
    result_of(commit(coordinator, {T0: 1}, group_id="g"))
    other = next(f"o{n}" for n in range(100)
                 if coordinator.partition_for(f"o{n}") != coordinator.partition_for("g"))
    result_of(commit(coordinator, {T0: 2}, group_id=other))
    result_of(defer.ensureDeferred(coordinator.stop()))
    ledger = storage.ledger(coordinator.partition_for("g"))
    damaged = ledger.entries[-1]
    damaged.data = damaged.data[:-1] + bytes([damaged.data[-1] ^ 0xFF])
    before = [(e.position, e.data) for e in ledger.entries]

    coordinator, clock, _ = start_coordinator(storage)
    partition = coordinator.partition_for("g")
    assert coordinator.partition_status(partition) is PartitionStatus.FAILED
    assert coordinator.fetch_offsets("g", None)[0] == ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert result_of(commit(coordinator, {T0: 9})) == {T0: ErrorCode.COORDINATOR_NOT_AVAILABLE}
    assert fetched(coordinator, other) == {T0: FetchedOffset(2, -1, "")}
    opens = storage.opens
    clock.advance(1)  # retried, with backoff
    assert storage.opens == opens + 1
    clock.advance(1.9)
    assert storage.opens == opens + 1
    clock.advance(0.1)
    assert storage.opens == opens + 2
    assert [(e.position, e.data) for e in ledger.entries] == before


def test_snapshots_keep_replay_bounded_and_lose_nothing() -> None:
    storage = FakeGroupStorage(snapshot_min_changes=20)
    coordinator, clock, _ = start_coordinator(storage)
    partitions = [T0, T1]
    for offset in range(200):
        result_of(commit(coordinator, {tp: offset for tp in partitions}))
    ledger = storage.ledger(coordinator.partition_for("g"))
    assert len(ledger.live_entries) <= 12  # a snapshot and the commits since
    assert len(ledger.entries) > 100
    restarted, _, _ = start_coordinator(storage)
    assert fetched(restarted) == {T0: FetchedOffset(199, -1, ""), T1: FetchedOffset(199, -1, "")}


def test_load_waits_for_partitions_and_unload_answers_waiters() -> None:
    storage = FakeGroupStorage()
    clock = task.Clock()
    coordinator = GroupCoordinator(FakeBroker(TEST_SETTINGS), storage, reactor=clock)
    result_of(defer.ensureDeferred(coordinator.start()))
    _, joined = two_step_join(coordinator)
    result_of(defer.ensureDeferred(coordinator.unload_partition(coordinator.partition_for("g"))))
    assert result_of(joined).error == ErrorCode.NOT_COORDINATOR
    assert coordinator.group("g") is None
    # Still owned: the next request takes the partition over again.
    assert coordinator.fetch_offsets("g", None) == (ErrorCode.NONE, [])
