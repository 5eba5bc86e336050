"""The classic group protocol on a fake clock: joins, syncs, heartbeats, leaves, expiries,
generation checks and static members (no sockets; storage is in memory)."""

from __future__ import annotations

import pytest
from test_group_fakes import (
    StorageDown,
    has_fired,
    join_request,
    result_of,
    start_coordinator,
)
from twisted.internet import defer, task

from kop.groups import GroupCoordinator, GroupState, JoinResult, LeavingMember
from wire.generated.error_codes import ErrorCode

INITIAL_DELAY = 3.0  # seconds, TEST_SETTINGS


def advance_until(clock: task.Clock, *deferreds: defer.Deferred, step: float = 0.25,
                  limit: float = 120.0) -> None:
    waited = 0.0
    while not all(has_fired(d) for d in deferreds):
        assert waited < limit, "still waiting after the time limit"
        clock.advance(step)
        waited += step


def two_step_join(coordinator: GroupCoordinator, **options) -> tuple[str, defer.Deferred[JoinResult]]:
    first = result_of(coordinator.join_group(join_request(**options)))
    assert first.error == ErrorCode.MEMBER_ID_REQUIRED and first.member_id
    return first.member_id, coordinator.join_group(join_request(first.member_id, **options))


def form_group(coordinator: GroupCoordinator, clock: task.Clock, size: int, group_id: str = "g"
               ) -> tuple[list[str], int]:
    """A Stable group of `size` dynamic members, each assigned its own index; returns the
    member ids (leader first) and the generation."""
    joins = [two_step_join(coordinator, group_id=group_id) for _ in range(size)]
    advance_until(clock, *(joined for _, joined in joins))
    results = [result_of(joined) for _, joined in joins]
    generation = results[0].generation_id
    leader = results[0].leader_id
    assert all(r.error == ErrorCode.NONE and r.generation_id == generation for r in results)
    members = [leader] + [r.member_id for r in results if r.member_id != leader]
    syncs = [coordinator.sync_group(group_id, generation, m, None, "consumer", "range",
                                    {} if m != leader else {mid: str(i).encode()
                                                            for i, mid in enumerate(members)})
             for m in members]
    for index, synced in enumerate(syncs):
        assert result_of(synced).assignment == str(index).encode()
    assert coordinator.group(group_id).state is GroupState.STABLE
    return members, generation


def sync_all(coordinator: GroupCoordinator, generation: int, members: list[str], leader: str,
             group_id: str = "g") -> dict[str, bytes]:
    syncs = {m: coordinator.sync_group(group_id, generation, m, None, None, None,
                                       {mid: mid.encode() for mid in members} if m == leader else {})
             for m in members}
    return {m: result_of(s).assignment for m, s in syncs.items()}


# -- joining ------------------------------------------------------------------------------------


def test_first_join_waits_the_initial_delay_then_makes_generation_one() -> None:
    coordinator, clock, _ = start_coordinator()
    member_id, joined = two_step_join(coordinator)
    assert coordinator.group("g").state is GroupState.PREPARING_REBALANCE
    clock.advance(INITIAL_DELAY - 0.01)
    assert not has_fired(joined)
    clock.advance(0.01)
    result = result_of(joined)
    assert (result.error, result.generation_id, result.leader_id, result.member_id) == (
        ErrorCode.NONE, 1, member_id, member_id)
    assert [(m.member_id, m.metadata) for m in result.members] == [(member_id, b"meta")]
    assert result.protocol_type == "consumer" and result.protocol_name == "range"
    assert coordinator.group("g").state is GroupState.COMPLETING_REBALANCE


def test_members_arriving_during_the_initial_delay_extend_it_and_share_one_generation() -> None:
    coordinator, clock, _ = start_coordinator()
    _, first = two_step_join(coordinator)
    clock.advance(2)
    _, second = two_step_join(coordinator)
    clock.advance(1)  # the first delay ends, but a member arrived meanwhile: wait once more
    assert not has_fired(first) and not has_fired(second)
    clock.advance(INITIAL_DELAY)
    assert result_of(first).generation_id == result_of(second).generation_id == 1
    leader_view = [r for r in (result_of(first), result_of(second)) if r.members]
    assert len(leader_view) == 1 and len(leader_view[0].members) == 2


def test_a_later_rebalance_completes_as_soon_as_every_known_member_rejoined() -> None:
    coordinator, clock, _ = start_coordinator()
    members, generation = form_group(coordinator, clock, 2)
    newcomer, newcomer_joined = two_step_join(coordinator)
    assert coordinator.group("g").state is GroupState.PREPARING_REBALANCE
    for member in members:
        assert coordinator.heartbeat("g", member, None, generation) == ErrorCode.REBALANCE_IN_PROGRESS
    rejoins = [coordinator.join_group(join_request(m)) for m in members]
    # No clock advance: the join completes the moment the last known member is back.
    results = [result_of(d) for d in (*rejoins, newcomer_joined)]
    assert {r.generation_id for r in results} == {generation + 1}
    assert {r.member_id for r in results} == {*members, newcomer}


def test_members_that_do_not_rejoin_within_the_rebalance_timeout_are_dropped() -> None:
    coordinator, clock, _ = start_coordinator()
    members, generation = form_group(coordinator, clock, 2)
    stays, lingers = members
    # The group's rebalance timeout is its members' largest: 30 s (join_request's default).
    rejoined = coordinator.join_group(join_request(stays, rebalance_ms=20_000))
    for _ in range(29):  # the lingering member still heartbeats, but never rejoins
        clock.advance(1)
        assert coordinator.heartbeat("g", lingers, None, generation) == ErrorCode.REBALANCE_IN_PROGRESS
    clock.advance(0.9)
    assert not has_fired(rejoined)
    clock.advance(0.1)
    result = result_of(rejoined)
    assert result.generation_id == generation + 1 and [m.member_id for m in result.members] == [stays]
    assert coordinator.heartbeat("g", lingers, None, generation) == ErrorCode.UNKNOWN_MEMBER_ID


def test_join_rules_inconsistent_protocols_session_bounds_and_group_ids() -> None:
    coordinator, clock, _ = start_coordinator()
    form_group(coordinator, clock, 1)
    other_type = result_of(coordinator.join_group(join_request(protocol_type="connect")))
    assert other_type.error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    disjoint = result_of(coordinator.join_group(join_request(protocols=[("sticky", b"")])))
    assert disjoint.error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    no_protocols = result_of(coordinator.join_group(join_request(group_id="h", protocols=[])))
    assert no_protocols.error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    too_short = result_of(coordinator.join_group(join_request(group_id="h", session_ms=999)))
    assert too_short.error == ErrorCode.INVALID_SESSION_TIMEOUT
    too_long = result_of(coordinator.join_group(join_request(group_id="h", session_ms=60_001)))
    assert too_long.error == ErrorCode.INVALID_SESSION_TIMEOUT
    assert result_of(coordinator.join_group(join_request(group_id=""))).error == ErrorCode.INVALID_GROUP_ID
    unknown = result_of(coordinator.join_group(join_request("ghost", group_id="nobody")))
    assert unknown.error == ErrorCode.UNKNOWN_MEMBER_ID


def test_the_protocol_most_members_prefer_is_selected() -> None:
    coordinator, clock, _ = start_coordinator()
    preferences = [[("range", b"r1"), ("roundrobin", b"rr1")],
                   [("roundrobin", b"rr2"), ("range", b"r2")],
                   [("roundrobin", b"rr3"), ("range", b"r3"), ("sticky", b"")]]
    joins = [two_step_join(coordinator, protocols=p)[1] for p in preferences]
    advance_until(clock, *joins)
    results = [result_of(j) for j in joins]
    assert {r.protocol_name for r in results} == {"roundrobin"}
    leader = next(r for r in results if r.members)
    assert sorted(m.metadata for m in leader.members) == [b"rr1", b"rr2", b"rr3"]


def test_old_clients_join_in_one_step() -> None:
    coordinator, clock, _ = start_coordinator()
    joined = coordinator.join_group(join_request(two_step=False))
    clock.advance(INITIAL_DELAY)
    result = result_of(joined)
    assert result.error == ErrorCode.NONE and result.member_id.startswith("client-")


def test_a_member_rejoining_with_the_same_metadata_while_completing_gets_the_same_answer() -> None:
    coordinator, clock, _ = start_coordinator()
    member, joined = two_step_join(coordinator)
    clock.advance(INITIAL_DELAY)
    first = result_of(joined)
    again = result_of(coordinator.join_group(join_request(member)))
    assert (again.generation_id, again.leader_id, again.members) == (
        first.generation_id, first.leader_id, first.members)


def test_pending_members_that_never_come_back_expire_and_do_not_block_rebalances() -> None:
    coordinator, clock, _ = start_coordinator()
    members, generation = form_group(coordinator, clock, 1)
    pending = result_of(coordinator.join_group(join_request(session_ms=5_000)))
    assert pending.error == ErrorCode.MEMBER_ID_REQUIRED
    # The leader rejoins (a rebalance); the pending member holds it until it expires.
    rejoined = coordinator.join_group(join_request(members[0]))
    clock.advance(4.9)
    assert not has_fired(rejoined)
    clock.advance(0.1)
    assert result_of(rejoined).generation_id == generation + 1
    late = result_of(coordinator.join_group(join_request(pending.member_id)))
    assert late.error == ErrorCode.UNKNOWN_MEMBER_ID


# -- syncing ------------------------------------------------------------------------------------


def test_followers_wait_for_the_leaders_assignment_and_left_out_members_get_nothing() -> None:
    coordinator, clock, _ = start_coordinator()
    joins = [two_step_join(coordinator) for _ in range(3)]
    advance_until(clock, *(j for _, j in joins))
    results = [result_of(j) for _, j in joins]
    leader = results[0].leader_id
    followers = [r.member_id for r in results if r.member_id != leader]
    follower_syncs = [coordinator.sync_group("g", 1, f, None, None, None, {}) for f in followers]
    assert not any(has_fired(s) for s in follower_syncs)
    leader_sync = coordinator.sync_group("g", 1, leader, None, "consumer", "range",
                                         {leader: b"L", followers[0]: b"F0", "stranger": b"?"})
    assert result_of(leader_sync).assignment == b"L"
    assert [result_of(s).assignment for s in follower_syncs] == [b"F0", b""]
    assert coordinator.group("g").state is GroupState.STABLE


def test_sync_errors() -> None:
    coordinator, clock, _ = start_coordinator()
    members, generation = form_group(coordinator, clock, 1)
    member = members[0]
    assert result_of(coordinator.sync_group("g", generation + 1, member, None, None, None, {})
                     ).error == ErrorCode.ILLEGAL_GENERATION
    assert result_of(coordinator.sync_group("g", generation, "ghost", None, None, None, {})
                     ).error == ErrorCode.UNKNOWN_MEMBER_ID
    assert result_of(coordinator.sync_group("g", generation, member, None, "connect", None, {})
                     ).error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    assert result_of(coordinator.sync_group("g", generation, member, None, None, "sticky", {})
                     ).error == ErrorCode.INCONSISTENT_GROUP_PROTOCOL
    assert result_of(coordinator.sync_group("nobody", 1, member, None, None, None, {})
                     ).error == ErrorCode.UNKNOWN_MEMBER_ID
    # Stable: a repeated sync returns the current assignment.
    assert result_of(coordinator.sync_group("g", generation, member, None, None, None, {})
                     ).assignment == b"0"
    two_step_join(coordinator)  # a newcomer: PreparingRebalance
    assert result_of(coordinator.sync_group("g", generation, member, None, None, None, {})
                     ).error == ErrorCode.REBALANCE_IN_PROGRESS


def test_members_that_do_not_sync_in_time_are_removed() -> None:
    coordinator, clock, _ = start_coordinator()
    joins = [two_step_join(coordinator, rebalance_ms=10_000) for _ in range(2)]
    advance_until(clock, *(j for _, j in joins))
    results = [result_of(j) for _, j in joins]
    leader = results[0].leader_id
    follower = next(r.member_id for r in results if r.member_id != leader)
    synced = coordinator.sync_group("g", 1, leader, None, None, None, {leader: b"L"})
    assert result_of(synced).assignment == b"L"
    # Both keep heartbeating, but the follower never syncs.
    for _ in range(4):
        clock.advance(2)
        for member in (leader, follower):
            assert coordinator.heartbeat("g", member, None, 1) == ErrorCode.NONE
    clock.advance(2)
    assert coordinator.heartbeat("g", follower, None, 1) == ErrorCode.UNKNOWN_MEMBER_ID
    assert coordinator.heartbeat("g", leader, None, 1) == ErrorCode.REBALANCE_IN_PROGRESS


def test_a_failed_assignment_write_fails_the_syncs_and_the_group_rebalances() -> None:
    coordinator, clock, storage = start_coordinator()
    joins = [two_step_join(coordinator) for _ in range(2)]
    advance_until(clock, *(j for _, j in joins))
    results = [result_of(j) for _, j in joins]
    leader = results[0].leader_id
    follower = next(r.member_id for r in results if r.member_id != leader)
    follower_sync = coordinator.sync_group("g", 1, follower, None, None, None, {})
    storage.ledger(coordinator.partition_for("g")).fail_next_append = StorageDown("node lost")
    leader_sync = coordinator.sync_group("g", 1, leader, None, None, None, {leader: b"L"})
    assert result_of(leader_sync).error == ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert result_of(follower_sync).error == ErrorCode.COORDINATOR_NOT_AVAILABLE
    # The partition is reloaded from what is durable: the group starts from scratch.
    clock.advance(0)
    assert coordinator.heartbeat("g", leader, None, 1) == ErrorCode.UNKNOWN_MEMBER_ID


# -- heartbeats and session timeouts --------------------------------------------------------


def test_heartbeat_errors() -> None:
    coordinator, clock, _ = start_coordinator()
    members, generation = form_group(coordinator, clock, 1)
    assert coordinator.heartbeat("g", members[0], None, generation) == ErrorCode.NONE
    assert coordinator.heartbeat("g", members[0], None, generation - 1) == ErrorCode.ILLEGAL_GENERATION
    assert coordinator.heartbeat("g", "ghost", None, generation) == ErrorCode.UNKNOWN_MEMBER_ID
    assert coordinator.heartbeat("nobody", members[0], None, 1) == ErrorCode.UNKNOWN_MEMBER_ID
    assert coordinator.heartbeat("", members[0], None, 1) == ErrorCode.INVALID_GROUP_ID


def test_a_member_that_stops_heartbeating_is_removed_after_its_session_timeout() -> None:
    coordinator, clock, _ = start_coordinator()
    (alive, silent), generation = form_group(coordinator, clock, 2)
    for _ in range(9):  # 9 s: within the silent member's 10 s session
        clock.advance(1)
        assert coordinator.heartbeat("g", alive, None, generation) == ErrorCode.NONE
    clock.advance(1)
    assert coordinator.heartbeat("g", alive, None, generation) == ErrorCode.REBALANCE_IN_PROGRESS
    rejoined = result_of(coordinator.join_group(join_request(alive)))
    assert rejoined.generation_id == generation + 1
    assert [m.member_id for m in rejoined.members] == [alive]


def test_heartbeats_keep_a_member_alive_beyond_its_session_timeout() -> None:
    coordinator, clock, _ = start_coordinator()
    members, generation = form_group(coordinator, clock, 1)
    for _ in range(30):
        clock.advance(5)
        assert coordinator.heartbeat("g", members[0], None, generation) == ErrorCode.NONE


def test_a_new_member_that_vanishes_during_a_long_rebalance_is_dropped_after_five_minutes() -> None:
    coordinator, clock, _ = start_coordinator()
    members, generation = form_group(coordinator, clock, 1)
    _, vanished = two_step_join(coordinator, rebalance_ms=600_000)
    # The old member heartbeats but never rejoins; after 5 minutes the new member's join expires.
    for _ in range(59):
        clock.advance(5)
        coordinator.heartbeat("g", members[0], None, generation)
    clock.advance(4.9)
    assert not has_fired(vanished)
    clock.advance(0.1)
    assert result_of(vanished).error == ErrorCode.UNKNOWN_MEMBER_ID


# -- leaving ------------------------------------------------------------------------------------


def test_a_clean_leave_rebalances_the_rest_at_once() -> None:
    coordinator, clock, _ = start_coordinator()
    (stays, leaves), generation = form_group(coordinator, clock, 2)
    error, member_errors = coordinator.leave_group("g", [LeavingMember(leaves)])
    assert (error, member_errors) == (ErrorCode.NONE, [ErrorCode.NONE])
    assert coordinator.heartbeat("g", stays, None, generation) == ErrorCode.REBALANCE_IN_PROGRESS
    assert result_of(coordinator.join_group(join_request(stays))).generation_id == generation + 1


def test_the_last_member_leaving_empties_the_group() -> None:
    coordinator, clock, _ = start_coordinator()
    members, generation = form_group(coordinator, clock, 1)
    coordinator.leave_group("g", [LeavingMember(members[0])])
    group = coordinator.group("g")
    assert group.state is GroupState.EMPTY and group.generation_id == generation + 1
    assert group.protocol_type == "consumer"


def test_batched_leave_by_member_id_and_instance_id() -> None:
    coordinator, clock, _ = start_coordinator()
    static = [coordinator.join_group(join_request(instance_id=f"i{n}")) for n in range(2)]
    advance_until(clock, *static)
    ids = [result_of(s).member_id for s in static]
    error, member_errors = coordinator.leave_group("g", [
        LeavingMember("", "i0"),               # administrative removal by instance id
        LeavingMember(ids[1], "i1"),
        LeavingMember("ghost"),
        LeavingMember("", "nobody"),
    ])
    assert error == ErrorCode.NONE
    assert member_errors == [ErrorCode.NONE, ErrorCode.NONE, ErrorCode.UNKNOWN_MEMBER_ID,
                             ErrorCode.UNKNOWN_MEMBER_ID]
    assert coordinator.group("g").state is GroupState.EMPTY
    assert coordinator.leave_group("nobody", [LeavingMember("m")]) == (
        ErrorCode.NONE, [ErrorCode.UNKNOWN_MEMBER_ID])


# -- static membership --------------------------------------------------------------------------


def form_static_group(coordinator: GroupCoordinator, clock: task.Clock
                      ) -> tuple[dict[str, str], str, int]:
    """Instances a, b, c; returns {instance: member id}, the leader's instance, generation."""
    joins = {i: coordinator.join_group(join_request(instance_id=i)) for i in "abc"}
    advance_until(clock, *joins.values())
    results = {i: result_of(j) for i, j in joins.items()}
    ids = {i: r.member_id for i, r in results.items()}
    leader = next(i for i, r in results.items() if r.member_id == r.leader_id)
    generation = results["a"].generation_id
    assignment = {ids[i]: i.encode() for i in "abc"}
    syncs = [coordinator.sync_group("g", generation, ids[i], i, None, None,
                                    assignment if i == leader else {}) for i in "abc"]
    assert [result_of(s).assignment for s in syncs] == [b"a", b"b", b"c"]
    return ids, leader, generation


def test_a_restarted_static_follower_gets_its_assignment_back_without_a_rebalance() -> None:
    coordinator, clock, _ = start_coordinator()
    ids, leader, generation = form_static_group(coordinator, clock)
    follower = next(i for i in "abc" if i != leader)
    rejoined = result_of(coordinator.join_group(join_request(instance_id=follower)))
    assert rejoined.error == ErrorCode.NONE and rejoined.generation_id == generation
    assert rejoined.member_id != ids[follower] and rejoined.members == []
    assert coordinator.group("g").state is GroupState.STABLE
    synced = coordinator.sync_group("g", generation, rejoined.member_id, follower, None, None, {})
    assert result_of(synced).assignment == follower.encode()
    # The old incarnation is fenced; the others carry on undisturbed.
    assert coordinator.heartbeat("g", ids[follower], follower, generation) == ErrorCode.FENCED_INSTANCE_ID
    for other in set("abc") - {follower}:
        assert coordinator.heartbeat("g", ids[other], other, generation) == ErrorCode.NONE


def test_a_restarted_static_leader_is_told_to_skip_the_assignment_from_v9() -> None:
    coordinator, clock, _ = start_coordinator()
    ids, leader, generation = form_static_group(coordinator, clock)
    rejoined = result_of(coordinator.join_group(join_request(instance_id=leader)))
    assert rejoined.leader_id == rejoined.member_id and rejoined.skip_assignment
    assert len(rejoined.members) == 3
    assert coordinator.group("g").state is GroupState.STABLE


def test_before_v9_a_restarted_static_leader_is_not_told_it_leads() -> None:
    coordinator, clock, _ = start_coordinator()
    ids, leader, generation = form_static_group(coordinator, clock)
    rejoined = result_of(coordinator.join_group(join_request(instance_id=leader,
                                                             skip_assignment=False)))
    assert rejoined.leader_id == ids[leader] != rejoined.member_id
    assert not rejoined.skip_assignment and rejoined.members == []


def test_a_conflicting_static_member_is_fenced() -> None:
    coordinator, clock, _ = start_coordinator()
    ids, leader, generation = form_static_group(coordinator, clock)
    wrong = result_of(coordinator.join_group(join_request(ids["a"], instance_id="b")))
    assert wrong.error == ErrorCode.FENCED_INSTANCE_ID
    assert coordinator.heartbeat("g", ids["a"], "b", generation) == ErrorCode.FENCED_INSTANCE_ID
    assert coordinator.heartbeat("g", ids["a"], "z", generation) == ErrorCode.UNKNOWN_MEMBER_ID


def test_a_static_member_that_stays_away_is_kept_until_its_session_times_out() -> None:
    coordinator, clock, _ = start_coordinator()
    ids, leader, generation = form_static_group(coordinator, clock)
    # A dynamic newcomer causes a rebalance; instance c is down and does not rejoin.
    _, newcomer = two_step_join(coordinator, rebalance_ms=60_000)
    rejoins = [coordinator.join_group(join_request(ids[i], instance_id=i)) for i in "ab"]
    clock.advance(9.9)
    assert not has_fired(newcomer)
    clock.advance(0.1)  # c's 10 s session ends: removed, and the join completes without it
    results = [result_of(d) for d in (*rejoins, newcomer)]
    assert {r.generation_id for r in results} == {generation + 1}
    assert "c" not in coordinator.group("g").static_members


@pytest.mark.parametrize("state", ["preparing", "completing"])
def test_a_static_member_restarting_mid_rebalance_takes_part_in_it(state: str) -> None:
    coordinator, clock, _ = start_coordinator()
    ids, leader, generation = form_static_group(coordinator, clock)
    restarting, other = sorted(set("abc") - {leader})

    def rejoin(*instances: str) -> list[defer.Deferred[JoinResult]]:
        return [coordinator.join_group(join_request(ids[i], instance_id=i)) for i in instances]

    pending = rejoin(leader)  # the leader rejoins: a rebalance starts
    expected_generation = generation + 1
    if state == "completing":
        pending += rejoin(restarting, other)
        assert {result_of(d).generation_id for d in pending} == {generation + 1}
        assert coordinator.group("g").state is GroupState.COMPLETING_REBALANCE
        expected_generation = generation + 2
    restarted = coordinator.join_group(join_request(instance_id=restarting))
    if state == "completing":  # the old member id may be in the leader's plan: start over
        pending = rejoin(leader, other)
    else:
        pending += rejoin(other)
    results = [result_of(d) for d in (restarted, *pending)]
    assert {r.generation_id for r in results} == {expected_generation}
    assert results[0].member_id != ids[restarting]
    assert coordinator.group("g").static_members[restarting] == results[0].member_id
