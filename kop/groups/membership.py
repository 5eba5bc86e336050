"""The classic group membership protocol: JoinGroup, SyncGroup, Heartbeat, LeaveGroup and the
timers that drive rebalances, following Kafka's GroupCoordinator.

A rebalance: some change (a member joining, leaving, failing, or the leader rejoining) moves
the group to PreparingRebalance; every member must then rejoin (JoinGroup) within the
rebalance timeout. The join completes as soon as all known members have rejoined — or when
the timeout passes, dropping the dynamic members that did not. The first rebalance of an
empty group instead waits `group.initial.rebalance.delay.ms` (longer while members keep
arriving, up to the rebalance timeout), so a group that starts together is assigned once.
The coordinator then picks the protocol most members prefer, bumps the generation, and
answers every JoinGroup; the leader's answer lists the members. In CompletingRebalance the
leader sends the assignment in SyncGroup; it is persisted, then every member's SyncGroup is
answered with its part and the group is Stable.

Liveness: each member has a session timer, reset by heartbeats (and commits, syncs); when it
fires the member is removed and the group rebalances. Members waiting in a JoinGroup or
SyncGroup are kept alive by their request (the rebalance timeout bounds those waits), except
new members, which must finish their first join within five minutes. v4+ clients join in two
steps: the first JoinGroup is answered MEMBER_ID_REQUIRED with an id the client must come back
with (it is "pending" meanwhile, for a session timeout).

Static members (`group.instance.id`) keep their place across restarts: a static member that
rejoins with an unknown member id takes over its old identity (fencing the old member id with
FENCED_INSTANCE_ID) and, while the group is Stable and its protocols still fit, gets its old
assignment back without a rebalance.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Protocol

from twisted.internet import defer
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from kop.groups.group import Group, GroupState, IllegalGroupStateError, JoinedMember, Member
from wire.generated.error_codes import ErrorCode

log = logging.getLogger(__name__)

NEW_MEMBER_JOIN_TIMEOUT_MS = 5 * 60 * 1000
UNKNOWN_MEMBER_ID = ""
NO_GENERATION = -1

EMPTY = GroupState.EMPTY
PREPARING_REBALANCE = GroupState.PREPARING_REBALANCE
COMPLETING_REBALANCE = GroupState.COMPLETING_REBALANCE
STABLE = GroupState.STABLE
DEAD = GroupState.DEAD


@dataclass(frozen=True)
class JoinRequest:
    group_id: str
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    # v4+ dynamic members must come back with the member id they are given.
    require_known_member_id: bool = True
    # v9+: a rejoining static leader of a stable group is told to skip the assignment.
    supports_skip_assignment: bool = True
    reason: str | None = None


@dataclass
class JoinResult:
    error: ErrorCode
    member_id: str
    generation_id: int = NO_GENERATION
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader_id: str = ""
    skip_assignment: bool = False
    members: list[JoinedMember] = field(default_factory=list)


@dataclass
class SyncResult:
    error: ErrorCode
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""


@dataclass(frozen=True)
class LeavingMember:
    member_id: str
    group_instance_id: str | None = None
    reason: str | None = None


class MembershipHost(Protocol):
    """What the membership protocol needs from the coordinator."""

    reactor: IReactorTime
    initial_rebalance_delay_ms: int

    def now_ms(self) -> int: ...

    def is_current(self, group: Group) -> bool:
        """False once the group was deleted or unloaded (stale timers and callbacks stop)."""
        ...

    def store_group(self, group: Group, assignments: dict[str, bytes]) -> defer.Deferred[ErrorCode]:
        """Persist the group's metadata; fires with NONE or the error for the client."""
        ...


def validate_current_member(group: Group, member_id: str,
                            group_instance_id: str | None) -> ErrorCode | None:
    """UNKNOWN_MEMBER_ID / FENCED_INSTANCE_ID unless `member_id` is a current member (and, for
    a static member, still the one holding its instance id)."""
    if group_instance_id is not None:
        current = group.static_member_id(group_instance_id)
        if current is None:
            return ErrorCode.UNKNOWN_MEMBER_ID
        if current != member_id:
            return ErrorCode.FENCED_INSTANCE_ID
        return None
    if member_id not in group.members:
        return ErrorCode.UNKNOWN_MEMBER_ID
    return None


def _answered(result: JoinResult | SyncResult) -> defer.Deferred:
    return defer.succeed(result)


class Membership:
    def __init__(self, host: MembershipHost) -> None:
        self._host = host

    # -- JoinGroup ---------------------------------------------------------------------------

    def join(self, group: Group, request: JoinRequest) -> defer.Deferred[JoinResult]:
        if group.is_in(DEAD):
            # Deleted or unloaded meanwhile: the client looks up the coordinator again.
            return _answered(JoinResult(ErrorCode.COORDINATOR_NOT_AVAILABLE, request.member_id))
        names = [name for name, _ in request.protocols]
        if not group.supports_protocols(request.protocol_type, names):
            return _answered(JoinResult(ErrorCode.INCONSISTENT_GROUP_PROTOCOL, request.member_id))
        answer: defer.Deferred[JoinResult] = defer.Deferred()
        if request.member_id == UNKNOWN_MEMBER_ID:
            self._join_new_member(group, request, answer)
        else:
            self._join_known_member(group, request, answer)
        if group.is_in(PREPARING_REBALANCE):
            self._try_complete_join(group)
        return answer

    def _join_new_member(self, group: Group, request: JoinRequest,
                         answer: defer.Deferred[JoinResult]) -> None:
        prefix = request.group_instance_id if request.group_instance_id is not None else request.client_id
        member_id = f"{prefix}-{uuid.uuid4()}"
        if request.group_instance_id is not None:
            old_member_id = group.static_member_id(request.group_instance_id)
            if old_member_id is not None:
                log.info("group %s: static member %s rejoins as %s (was %s)", group.group_id,
                         request.group_instance_id, member_id, old_member_id)
                self._replace_static_member(group, old_member_id, member_id, request, answer)
            else:
                self._add_member_and_rebalance(group, member_id, request, answer)
        elif request.require_known_member_id:
            self._add_pending_member(group, member_id, request.session_timeout_ms)
            answer.callback(JoinResult(ErrorCode.MEMBER_ID_REQUIRED, member_id))
        else:
            self._add_member_and_rebalance(group, member_id, request, answer)

    def _join_known_member(self, group: Group, request: JoinRequest,
                           answer: defer.Deferred[JoinResult]) -> None:
        member_id = request.member_id
        if member_id in group.pending_members:
            if request.group_instance_id is not None:
                # Pending ids are only handed to dynamic members.
                answer.callback(JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id))
                return
            self._forget_pending_member(group, member_id)
            self._add_member_and_rebalance(group, member_id, request, answer)
            return
        error = validate_current_member(group, member_id, request.group_instance_id)
        if error is not None:
            answer.callback(JoinResult(error, member_id))
            return
        member = group.members[member_id]
        if group.is_in(PREPARING_REBALANCE):
            self._update_member_and_rebalance(group, member, request, answer, "member rejoins")
        elif group.is_in(COMPLETING_REBALANCE):
            if member.matches(request.protocols):
                # Most likely it lost our JoinGroup answer: send the same one again.
                answer.callback(self._current_generation(group, member_id,
                                                         with_members=group.is_leader(member_id)))
            else:
                self._update_member_and_rebalance(group, member, request, answer,
                                                  "member changed its protocols")
        elif group.is_in(STABLE):
            if group.is_leader(member_id):
                # The leader rejoins to have its changes (e.g. new partitions) reassigned.
                self._update_member_and_rebalance(group, member, request, answer, "leader rejoins")
            elif not member.matches(request.protocols):
                self._update_member_and_rebalance(group, member, request, answer,
                                                  "member changed its protocols")
            else:
                answer.callback(self._current_generation(group, member_id, with_members=False))
        else:
            answer.callback(JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, member_id))

    def _current_generation(self, group: Group, member_id: str, with_members: bool) -> JoinResult:
        return JoinResult(
            ErrorCode.NONE, member_id, group.generation_id, group.protocol_type,
            group.protocol_name, group.leader_id or "",
            members=group.current_member_metadata() if with_members else [])

    def _add_member_and_rebalance(self, group: Group, member_id: str, request: JoinRequest,
                                  answer: defer.Deferred[JoinResult]) -> None:
        member = Member(
            member_id=member_id,
            group_instance_id=request.group_instance_id,
            client_id=request.client_id,
            client_host=request.client_host,
            rebalance_timeout_ms=request.rebalance_timeout_ms,
            session_timeout_ms=request.session_timeout_ms,
            protocol_type=request.protocol_type,
            protocols=list(request.protocols),
            join_waiter=answer,
            is_new=True,
        )
        if group.is_in(PREPARING_REBALANCE) and group.generation_id == 0:
            group.new_member_added = True
        group.add(member)
        # A new member cannot heartbeat before its first join completes; a member that has
        # gone away meanwhile is dropped after this long.
        self._schedule_expiry(group, member, NEW_MEMBER_JOIN_TIMEOUT_MS)
        self._maybe_prepare_rebalance(group, f"new member {member_id} joins")

    def _update_member_and_rebalance(self, group: Group, member: Member, request: JoinRequest,
                                     answer: defer.Deferred[JoinResult], reason: str) -> None:
        member.protocols = list(request.protocols)
        member.rebalance_timeout_ms = request.rebalance_timeout_ms
        member.session_timeout_ms = request.session_timeout_ms
        self._set_join_waiter(member, answer)
        self._maybe_prepare_rebalance(group, f"{reason}: {member.member_id}")

    def _replace_static_member(self, group: Group, old_member_id: str, new_member_id: str,
                               request: JoinRequest, answer: defer.Deferred[JoinResult]) -> None:
        assert request.group_instance_id is not None
        instance_id = request.group_instance_id
        leader_before = group.leader_id or ""
        member = group.members[old_member_id]
        # Whoever still waits under the old member id is a stale duplicate: fence it.
        self._answer_join(member, JoinResult(ErrorCode.FENCED_INSTANCE_ID, old_member_id))
        self._answer_sync(member, SyncResult(ErrorCode.FENCED_INSTANCE_ID))
        previous = (member.protocols, member.rebalance_timeout_ms, member.session_timeout_ms)
        group.replace_static_member(instance_id, old_member_id, new_member_id)
        member.protocols = list(request.protocols)
        member.rebalance_timeout_ms = request.rebalance_timeout_ms
        member.session_timeout_ms = request.session_timeout_ms
        self._schedule_expiry(group, member, member.session_timeout_ms)
        member.join_waiter = answer

        if group.is_in(STABLE):
            if group.protocol_name != group.select_protocol():
                self._maybe_prepare_rebalance(group, f"static member {instance_id} changed the "
                                                     "group's protocol")
                return
            # Same protocol: persist the new member id and hand back the old assignment.
            assignments = {m.member_id: m.assignment for m in group.members.values()}
            stored = self._host.store_group(group, assignments)

            def persisted(error: ErrorCode) -> None:
                if member.join_waiter is not answer:
                    return  # a rebalance started meanwhile and will answer it
                if error != ErrorCode.NONE:
                    if self._host.is_current(group) and group.members.get(new_member_id) is member:
                        member.protocols, member.rebalance_timeout_ms, member.session_timeout_ms = previous
                        group.replace_static_member(instance_id, new_member_id, old_member_id)
                    self._answer_join(member, JoinResult(
                        error, UNKNOWN_MEMBER_ID, group.generation_id, group.protocol_type,
                        group.protocol_name, leader_before))
                elif request.supports_skip_assignment:
                    # v9+: the leader learns it leads but must not reassign a stable group.
                    is_leader = group.is_leader(new_member_id)
                    self._answer_join(member, JoinResult(
                        ErrorCode.NONE, new_member_id, group.generation_id, group.protocol_type,
                        group.protocol_name, group.leader_id or "", skip_assignment=is_leader,
                        members=group.current_member_metadata() if is_leader else []))
                else:
                    # Older clients: name the old leader id, so a restarted static leader does
                    # not think it leads and run an assignment a stable group would ignore.
                    self._answer_join(member, JoinResult(
                        ErrorCode.NONE, new_member_id, group.generation_id, group.protocol_type,
                        group.protocol_name, leader_before))

            stored.addCallback(persisted)
        elif group.is_in(COMPLETING_REBALANCE):
            # The leader may be assigning to the old member id: start over.
            self._prepare_rebalance(group, f"static member {instance_id} rejoins during "
                                           "CompletingRebalance")
        elif not group.is_in(PREPARING_REBALANCE):
            raise IllegalGroupStateError(f"group {group.group_id} has a static member while "
                                         f"{group.state.value}")

    def _set_join_waiter(self, member: Member, answer: defer.Deferred[JoinResult]) -> None:
        # An older JoinGroup of the same member was abandoned by its client (it timed out and
        # retried); free it.
        self._answer_join(member, JoinResult(ErrorCode.REBALANCE_IN_PROGRESS, member.member_id))
        member.join_waiter = answer

    # -- pending (two-step join) members -------------------------------------------------------

    def _add_pending_member(self, group: Group, member_id: str, session_timeout_ms: int) -> None:
        group.pending_members[member_id] = self._host.reactor.callLater(
            session_timeout_ms / 1000, self._pending_member_expired, group, member_id)

    def _forget_pending_member(self, group: Group, member_id: str) -> None:
        timer = group.pending_members.pop(member_id, None)
        cancel_timer(timer)

    def _pending_member_expired(self, group: Group, member_id: str) -> None:
        if not self._host.is_current(group) or member_id not in group.pending_members:
            return
        del group.pending_members[member_id]
        log.info("group %s: pending member %s did not come back to join", group.group_id,
                 member_id)
        if group.is_in(PREPARING_REBALANCE):
            self._try_complete_join(group)

    # -- rebalancing ---------------------------------------------------------------------------

    def _maybe_prepare_rebalance(self, group: Group, reason: str) -> None:
        if group.can_rebalance:
            self._prepare_rebalance(group, reason)

    def _prepare_rebalance(self, group: Group, reason: str) -> None:
        if group.is_in(COMPLETING_REBALANCE):
            self._reset_and_propagate_assignment_error(group, ErrorCode.REBALANCE_IN_PROGRESS)
        group.sync_timer = cancel_timer(group.sync_timer)
        group.join_timer = cancel_timer(group.join_timer)
        was_empty = group.is_in(EMPTY)
        group.transition(PREPARING_REBALANCE, self._host.now_ms())
        group.pending_sync.clear()
        reactor = self._host.reactor
        delay_ms = self._host.initial_rebalance_delay_ms
        if was_empty and delay_ms > 0:
            group.in_initial_delay = True
            group.new_member_added = False
            remaining_ms = max(group.rebalance_timeout_ms - delay_ms, 0)
            group.join_timer = reactor.callLater(delay_ms / 1000, self._initial_delay_expired,
                                                 group, delay_ms, remaining_ms)
        else:
            group.join_timer = reactor.callLater(group.rebalance_timeout_ms / 1000,
                                                 self._complete_join, group)
        log.info("group %s: preparing to rebalance (old generation %d): %s", group.group_id,
                 group.generation_id, reason)
        self._try_complete_join(group)

    def _try_complete_join(self, group: Group) -> None:
        if (group.is_in(PREPARING_REBALANCE) and not group.in_initial_delay
                and group.has_all_members_joined()):
            self._complete_join(group)

    def _initial_delay_expired(self, group: Group, delay_ms: int, remaining_ms: int) -> None:
        group.join_timer = None
        if not self._host.is_current(group) or not group.is_in(PREPARING_REBALANCE):
            return
        if group.new_member_added and remaining_ms > 0:
            # Members are still arriving: wait a little more, within the rebalance timeout.
            group.new_member_added = False
            next_delay_ms = min(self._host.initial_rebalance_delay_ms, remaining_ms)
            group.join_timer = self._host.reactor.callLater(
                next_delay_ms / 1000, self._initial_delay_expired, group, next_delay_ms,
                max(remaining_ms - delay_ms, 0))
            return
        group.in_initial_delay = False
        self._complete_join(group)

    def _complete_join(self, group: Group) -> None:
        group.join_timer = cancel_timer(group.join_timer)
        group.in_initial_delay = False
        if not self._host.is_current(group) or not group.is_in(PREPARING_REBALANCE):
            return
        for member in group.not_yet_rejoined():
            if member.group_instance_id is None:
                log.info("group %s: removing member %s, which did not rejoin in time",
                         group.group_id, member.member_id)
                self._remove_member(group, member)
        if not group.elect_joined_leader() and group.members:
            # Only static members that have not rejoined are left: give them another round.
            group.join_timer = self._host.reactor.callLater(
                group.rebalance_timeout_ms / 1000, self._complete_join, group)
            return
        group.init_next_generation(self._host.now_ms())
        if group.is_in(EMPTY):
            log.info("group %s is empty (generation %d)", group.group_id, group.generation_id)
            self._host.store_group(group, {})
            return
        log.info("group %s: generation %d with %d members, protocol %s, leader %s",
                 group.group_id, group.generation_id, len(group.members), group.protocol_name,
                 group.leader_id)
        for member in list(group.members.values()):
            if member.awaiting_join:
                self._answer_join(member, self._current_generation(
                    group, member.member_id, with_members=group.is_leader(member.member_id)))
            self._schedule_expiry(group, member, member.session_timeout_ms)
            member.is_new = False
        group.sync_timer = self._host.reactor.callLater(
            group.rebalance_timeout_ms / 1000, self._sync_expired, group, group.generation_id)

    def _sync_expired(self, group: Group, generation_id: int) -> None:
        group.sync_timer = None
        if (not self._host.is_current(group) or group.generation_id != generation_id
                or not group.is_in(COMPLETING_REBALANCE, STABLE) or not group.pending_sync):
            return
        late = sorted(group.pending_sync)
        log.info("group %s: removing members %s, which did not send SyncGroup in time",
                 group.group_id, late)
        for member_id in late:
            member = group.members.get(member_id)
            if member is not None:
                self._remove_member(group, member)
        self._prepare_rebalance(group, "members did not sync in time")

    # -- SyncGroup -------------------------------------------------------------------------------

    def sync(self, group: Group, generation_id: int, member_id: str,
             group_instance_id: str | None, protocol_type: str | None,
             protocol_name: str | None,
             assignments: dict[str, bytes]) -> defer.Deferred[SyncResult]:
        if group.is_in(DEAD):
            return _answered(SyncResult(ErrorCode.COORDINATOR_NOT_AVAILABLE))
        error = validate_current_member(group, member_id, group_instance_id)
        if error is None and generation_id != group.generation_id:
            error = ErrorCode.ILLEGAL_GENERATION
        if error is None and protocol_type is not None and protocol_type != group.protocol_type:
            error = ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        if error is None and protocol_name is not None and protocol_name != group.protocol_name:
            error = ErrorCode.INCONSISTENT_GROUP_PROTOCOL
        if error is None and group.is_in(EMPTY):
            error = ErrorCode.UNKNOWN_MEMBER_ID
        if error is None and group.is_in(PREPARING_REBALANCE):
            error = ErrorCode.REBALANCE_IN_PROGRESS
        if error is not None:
            return _answered(SyncResult(error))

        member = group.members[member_id]
        self._sync_received(group, member_id)
        if group.is_in(STABLE):
            self._schedule_expiry(group, member, member.session_timeout_ms)
            return _answered(SyncResult(ErrorCode.NONE, group.protocol_type, group.protocol_name,
                                        member.assignment))

        answer: defer.Deferred[SyncResult] = defer.Deferred()
        self._answer_sync(member, SyncResult(ErrorCode.REBALANCE_IN_PROGRESS))
        member.sync_waiter = answer
        if group.is_leader(member_id):
            self._store_assignment(group, assignments)
        return answer

    def _sync_received(self, group: Group, member_id: str) -> None:
        group.pending_sync.discard(member_id)
        if not group.pending_sync:
            group.sync_timer = cancel_timer(group.sync_timer)

    def _store_assignment(self, group: Group, assignments: dict[str, bytes]) -> None:
        # Members the leader left out get an empty assignment; unknown ids are dropped.
        complete = {member_id: assignments.get(member_id, b"") for member_id in group.members}
        generation_id = group.generation_id
        stored = self._host.store_group(group, complete)

        def persisted(error: ErrorCode) -> None:
            if (not self._host.is_current(group) or not group.is_in(COMPLETING_REBALANCE)
                    or group.generation_id != generation_id):
                return  # the group moved on while the write was in flight
            if error != ErrorCode.NONE:
                self._reset_and_propagate_assignment_error(group, error)
                self._maybe_prepare_rebalance(group, "the assignment could not be stored")
                return
            for member in group.members.values():
                member.assignment = complete[member.member_id]
            group.transition(STABLE, self._host.now_ms())
            log.info("group %s is stable (generation %d)", group.group_id, generation_id)
            for member in list(group.members.values()):
                if member.awaiting_sync:
                    self._answer_sync(member, SyncResult(ErrorCode.NONE, group.protocol_type,
                                                         group.protocol_name, member.assignment))
                    self._schedule_expiry(group, member, member.session_timeout_ms)

        stored.addCallback(persisted)

    def _reset_and_propagate_assignment_error(self, group: Group, error: ErrorCode) -> None:
        for member in group.members.values():
            member.assignment = b""
            self._answer_sync(member, SyncResult(error))

    # -- Heartbeat -------------------------------------------------------------------------------

    def heartbeat(self, group: Group, member_id: str, group_instance_id: str | None,
                  generation_id: int) -> ErrorCode:
        if group.is_in(DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE
        error = validate_current_member(group, member_id, group_instance_id)
        if error is not None:
            return error
        if generation_id != group.generation_id:
            return ErrorCode.ILLEGAL_GENERATION
        if group.is_in(EMPTY):
            return ErrorCode.UNKNOWN_MEMBER_ID
        member = group.members[member_id]
        self._schedule_expiry(group, member, member.session_timeout_ms)
        if group.is_in(PREPARING_REBALANCE):
            return ErrorCode.REBALANCE_IN_PROGRESS
        return ErrorCode.NONE

    def keep_alive(self, group: Group, member_id: str) -> None:
        """A sign of life other than a heartbeat (an offset commit)."""
        member = group.members.get(member_id)
        if member is not None and group.is_in(STABLE, PREPARING_REBALANCE):
            self._schedule_expiry(group, member, member.session_timeout_ms)

    # -- LeaveGroup ------------------------------------------------------------------------------

    def leave(self, group: Group,
              leaving: list[LeavingMember]) -> tuple[ErrorCode, list[ErrorCode]]:
        """(group-level error, one error per leaving member)."""
        if group.is_in(DEAD):
            return ErrorCode.COORDINATOR_NOT_AVAILABLE, []
        errors = []
        for departing in leaving:
            member_id = departing.member_id
            if member_id == UNKNOWN_MEMBER_ID:
                # Administrative removal by group.instance.id alone.
                current = group.static_member_id(departing.group_instance_id)
                if current is None:
                    errors.append(ErrorCode.UNKNOWN_MEMBER_ID)
                    continue
                member_id = current
            elif member_id in group.pending_members:
                self._forget_pending_member(group, member_id)
                if group.is_in(PREPARING_REBALANCE):
                    self._try_complete_join(group)
                errors.append(ErrorCode.NONE)
                continue
            else:
                error = validate_current_member(group, member_id, departing.group_instance_id)
                if error is not None:
                    errors.append(error)
                    continue
            log.info("group %s: member %s leaves (%s)", group.group_id, member_id,
                     departing.reason or "no reason given")
            self.remove_member_and_update_group(group, group.members[member_id])
            errors.append(ErrorCode.NONE)
        return ErrorCode.NONE, errors

    # -- removing members ------------------------------------------------------------------------

    def remove_member_and_update_group(self, group: Group, member: Member) -> None:
        self._remove_member(group, member)
        if group.is_in(STABLE, COMPLETING_REBALANCE):
            self._maybe_prepare_rebalance(group, f"member {member.member_id} left")
        elif group.is_in(PREPARING_REBALANCE):
            self._try_complete_join(group)

    def _remove_member(self, group: Group, member: Member) -> None:
        # Answer what it waits for so that a client still there rejoins from scratch.
        self._answer_join(member, JoinResult(ErrorCode.UNKNOWN_MEMBER_ID, UNKNOWN_MEMBER_ID))
        self._answer_sync(member, SyncResult(ErrorCode.UNKNOWN_MEMBER_ID))
        member.expiry = cancel_timer(member.expiry)
        group.remove(member.member_id)

    # -- session timers --------------------------------------------------------------------------

    def _schedule_expiry(self, group: Group, member: Member, timeout_ms: int) -> None:
        cancel_timer(member.expiry)
        member.expiry = self._host.reactor.callLater(timeout_ms / 1000, self._member_expired,
                                                     group, member)

    def _member_expired(self, group: Group, member: Member) -> None:
        member.expiry = None
        if not self._host.is_current(group) or group.members.get(member.member_id) is not member:
            return
        if not member.is_new and (member.awaiting_join or member.awaiting_sync):
            return  # its pending request keeps it alive; the rebalance timeout bounds that
        log.info("group %s: member %s timed out", group.group_id, member.member_id)
        self.remove_member_and_update_group(group, member)

    def start_loaded_group(self, group: Group) -> None:
        """Members of a group just loaded from storage must heartbeat within their session."""
        for member in group.members.values():
            self._schedule_expiry(group, member, member.session_timeout_ms)

    def shut_down(self, group: Group, error: ErrorCode) -> None:
        """The group leaves this coordinator (deleted or unloaded): stop its timers and answer
        every waiting request with `error`."""
        group.join_timer = cancel_timer(group.join_timer)
        group.sync_timer = cancel_timer(group.sync_timer)
        for timer in group.pending_members.values():
            cancel_timer(timer)
        group.pending_members.clear()
        for member in group.members.values():
            member.expiry = cancel_timer(member.expiry)
            self._answer_join(member, JoinResult(error, member.member_id))
            self._answer_sync(member, SyncResult(error))

    # -- answering waiters -----------------------------------------------------------------------

    @staticmethod
    def _answer_join(member: Member, result: JoinResult) -> None:
        waiter, member.join_waiter = member.join_waiter, None
        if waiter is not None:
            waiter.callback(result)

    @staticmethod
    def _answer_sync(member: Member, result: SyncResult) -> None:
        waiter, member.sync_waiter = member.sync_waiter, None
        if waiter is not None:
            waiter.callback(result)


def cancel_timer(timer: IDelayedCall | None) -> None:
    """Cancel a timer if it is still pending; returns None to clear the caller's field."""
    if timer is not None and timer.active():
        timer.cancel()
    return None
