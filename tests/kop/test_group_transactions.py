"""Offsets committed inside transactions: pending until the transaction ends, committed or
dropped with it, persisted meanwhile, and reported by OffsetFetch require_stable."""

from __future__ import annotations

import pytest
from test_group_fakes import has_fired, result_of, start_coordinator
from test_group_membership import form_group
from test_group_offsets import T0, T1, fetched
from twisted.internet import defer

from kop.errors import KafkaError
from kop.groups import OffsetToCommit
from kop.groups.coordinator import NO_OFFSET, FetchedOffset
from wire.generated.error_codes import ErrorCode

PRODUCER = 4000


def txn_commit(coordinator, offsets, producer_id=PRODUCER, group_id="g", member_id="",
               generation=-1, instance_id=None):
    return coordinator.commit_transactional_offsets(
        group_id, producer_id, member_id, instance_id, generation,
        {tp: OffsetToCommit(offset, metadata="txn") for tp, offset in offsets.items()})


def complete(coordinator, commit: bool, producer_id=PRODUCER, group_id="g"):
    return defer.ensureDeferred(coordinator.complete_transaction(group_id, producer_id, commit))


def test_transactional_offsets_count_only_once_their_transaction_commits() -> None:
    coordinator, _, _ = start_coordinator()
    assert result_of(txn_commit(coordinator, {T0: 5, T1: 6})) == {T0: ErrorCode.NONE, T1: ErrorCode.NONE}
    assert fetched(coordinator, partitions=[T0]) == {T0: NO_OFFSET}
    assert fetched(coordinator, partitions=[T0], require_stable=True) == {
        T0: FetchedOffset(-1, -1, "", ErrorCode.UNSTABLE_OFFSET_COMMIT)}
    result_of(complete(coordinator, commit=True))
    assert fetched(coordinator, require_stable=True) == {
        T0: FetchedOffset(5, -1, "txn"), T1: FetchedOffset(6, -1, "txn")}


def test_an_aborted_transaction_leaves_the_committed_offsets_alone() -> None:
    coordinator, _, _ = start_coordinator()
    result_of(coordinator.commit_offsets("g", "", None, -1, {T0: OffsetToCommit(1)}))
    result_of(txn_commit(coordinator, {T0: 9}))
    result_of(complete(coordinator, commit=False))
    assert fetched(coordinator, require_stable=True) == {T0: FetchedOffset(1, -1, "")}
    result_of(complete(coordinator, commit=True))  # nothing pending any more: no change
    assert fetched(coordinator) == {T0: FetchedOffset(1, -1, "")}


def test_pending_transactional_offsets_survive_a_restart_and_complete_after_it() -> None:
    coordinator, _, storage = start_coordinator()
    result_of(txn_commit(coordinator, {T0: 5}))
    result_of(txn_commit(coordinator, {T1: 7}, producer_id=PRODUCER + 1))
    result_of(defer.ensureDeferred(coordinator.stop()))
    coordinator, _, _ = start_coordinator(storage)
    assert fetched(coordinator, partitions=[T0], require_stable=True)[T0].error == (
        ErrorCode.UNSTABLE_OFFSET_COMMIT)
    result_of(complete(coordinator, commit=True))
    result_of(complete(coordinator, commit=False, producer_id=PRODUCER + 1))
    result_of(defer.ensureDeferred(coordinator.stop()))
    coordinator, _, _ = start_coordinator(storage)
    assert fetched(coordinator, require_stable=True) == {T0: FetchedOffset(5, -1, "txn")}


def test_transactional_commits_check_members_that_name_themselves() -> None:
    coordinator, clock, _ = start_coordinator()
    (member,), generation = form_group(coordinator, clock, 1)
    # Older clients do not say who they are: allowed even while the group has members.
    assert result_of(txn_commit(coordinator, {T0: 1})) == {T0: ErrorCode.NONE}
    assert result_of(txn_commit(coordinator, {T0: 1}, member_id=member, generation=generation)
                     ) == {T0: ErrorCode.NONE}
    assert result_of(txn_commit(coordinator, {T0: 1}, member_id=member, generation=generation + 1)
                     ) == {T0: ErrorCode.ILLEGAL_GENERATION}
    assert result_of(txn_commit(coordinator, {T0: 1}, member_id="ghost", generation=generation)
                     ) == {T0: ErrorCode.UNKNOWN_MEMBER_ID}


def test_completing_needs_the_groups_partition_and_a_durable_write() -> None:
    coordinator, clock, storage = start_coordinator()
    result_of(txn_commit(coordinator, {T0: 5}))
    ledger = storage.ledger(coordinator.partition_for("g"))
    ledger.hold = True
    completing = complete(coordinator, commit=True)
    assert not has_fired(completing)
    assert fetched(coordinator, partitions=[T0], require_stable=True)[T0].error == (
        ErrorCode.UNSTABLE_OFFSET_COMMIT)
    ledger.release()
    result_of(completing)
    result_of(defer.ensureDeferred(coordinator.unload_partition(coordinator.partition_for("g"))))
    coordinator._active = False  # shutting down: nothing can be completed here
    with pytest.raises(KafkaError) as raised:
        result_of(complete(coordinator, commit=True))
    assert raised.value.code == ErrorCode.COORDINATOR_NOT_AVAILABLE


def test_deleting_a_group_drops_its_pending_transactional_offsets() -> None:
    coordinator, _, storage = start_coordinator()
    result_of(txn_commit(coordinator, {T0: 5}))
    assert result_of(coordinator.delete_groups(["g"])) == {"g": ErrorCode.NONE}
    result_of(defer.ensureDeferred(coordinator.stop()))
    coordinator, _, _ = start_coordinator(storage)
    assert coordinator.group("g") is None
