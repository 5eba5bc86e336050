"""The quorum rules (storage/ledger/quorum.py): write sets, ack counting, in-order completion,
fencing coverage, recovery-read decisions and node choice — no I/O involved."""

from __future__ import annotations

import itertools
import random

from hypothesis import given
from hypothesis import strategies as st

from storage.ledger.quorum import (
    AckQueue,
    LastAddConfirmedQuorum,
    ReadOutcome,
    RecoveryReadQuorum,
    choose_ensemble,
    choose_replacements,
    every_write_set_covered,
    write_set,
)


def test_write_set_stripes_entries_round_the_ensemble():
    assert write_set(0, 3, 2) == (0, 1)
    assert write_set(1, 3, 2) == (1, 2)
    assert write_set(2, 3, 2) == (2, 0)
    assert write_set(3, 3, 2) == (0, 1)
    assert write_set(7, 5, 3) == (2, 3, 4)
    assert write_set(9, 1, 1) == (0,)


def test_entries_complete_in_order_even_when_acked_out_of_order():
    queue: AckQueue[str] = AckQueue(3, 2, 2)
    first, second = queue.push("a"), queue.push("b")
    assert (first.entry_id, second.entry_id) == (0, 1)
    assert queue.record_ack(1, 1) is False
    assert queue.record_ack(1, 2) is True  # entry 1 reached Qa ...
    assert queue.pop_completed() == []  # ... but entry 0 has not
    assert queue.last_add_confirmed == -1
    queue.record_ack(0, 0)
    queue.record_ack(0, 1)
    assert [p.item for p in queue.pop_completed()] == ["a", "b"]
    assert queue.last_add_confirmed == 1
    assert len(queue) == 0


def test_acks_outside_the_write_set_duplicates_and_unknown_entries_do_not_count():
    queue: AckQueue[str] = AckQueue(3, 2, 2)
    queue.push("a")  # write set (0, 1)
    assert queue.record_ack(0, 2) is False  # index 2 does not store entry 0
    assert queue.record_ack(0, 0) is False
    assert queue.record_ack(0, 0) is False  # the same node twice is still one ack
    assert queue.pop_completed() == []
    assert queue.record_ack(5, 0) is False  # no such pending entry
    assert queue.record_ack(0, 1) is True
    assert [p.entry_id for p in queue.pop_completed()] == [0]


def test_queue_starting_after_existing_entries_numbers_from_last_add_confirmed():
    queue: AckQueue[str] = AckQueue(2, 2, 1, last_add_confirmed=41)
    assert queue.push("x").entry_id == 42
    assert queue.push("y").write_set == (1, 0)


def test_forgetting_a_replaced_index_drops_its_acks_and_lists_what_it_must_receive():
    queue: AckQueue[int] = AckQueue(3, 2, 2)
    for item in range(4):  # write sets (0,1) (1,2) (2,0) (0,1)
        queue.push(item)
    queue.record_ack(0, 1)
    queue.record_ack(1, 1)
    affected = queue.forget_index(1)
    assert [p.entry_id for p in affected] == [0, 1, 3]
    assert all(1 not in p.acked for p in affected)
    queue.record_ack(0, 0)
    assert queue.pop_completed() == []  # entry 0 now needs the replacement's ack again


def test_missing_at_lists_pending_entries_an_index_has_not_acknowledged():
    queue: AckQueue[int] = AckQueue(3, 2, 2)
    for item in range(3):
        queue.push(item)
    queue.record_ack(0, 0)
    assert [p.entry_id for p in queue.missing_at(0)] == [2]
    assert [p.entry_id for p in queue.missing_at(2)] == [1, 2]


def test_drain_returns_every_pending_entry_in_order():
    queue: AckQueue[int] = AckQueue(1, 1, 1)
    for item in range(3):
        queue.push(item)
    assert [p.entry_id for p in queue.drain()] == [0, 1, 2]
    assert len(queue) == 0


@given(
    st.integers(1, 5).flatmap(lambda e: st.tuples(
        st.just(e), st.integers(1, e)).flatmap(lambda eq: st.tuples(
            st.just(eq[0]), st.just(eq[1]), st.integers(1, eq[1])))),
    st.integers(1, 12),
    st.randoms(use_true_random=False),
)
def test_any_ack_order_completes_a_contiguous_prefix_of_fully_acked_entries(
    sizes, entry_count, rng
):
    ensemble, write_quorum, ack_quorum = sizes
    queue: AckQueue[int] = AckQueue(ensemble, write_quorum, ack_quorum)
    for item in range(entry_count):
        queue.push(item)
    acks = [(e, i) for e in range(entry_count) for i in write_set(e, ensemble, write_quorum)]
    rng.shuffle(acks)
    received: dict[int, set[int]] = {}
    completed: list[int] = []
    for entry_id, index in acks:
        queue.record_ack(entry_id, index)
        received.setdefault(entry_id, set()).add(index)
        for done in queue.pop_completed():
            completed.append(done.entry_id)
        # completed entries form the prefix 0..LAC, each with at least Qa acks
        assert completed == list(range(queue.last_add_confirmed + 1))
        assert all(len(received.get(e, ())) >= ack_quorum for e in completed)
        # and nothing that could complete is left waiting
        next_entry = queue.last_add_confirmed + 1
        assert next_entry == entry_count or len(received.get(next_entry, ())) < ack_quorum
    assert completed == list(range(entry_count))


def test_fencing_coverage_examples():
    # E=3 Qw=2 Qa=2: any two nodes fence; one does not.
    assert every_write_set_covered({0, 1}, 3, 2, 2)
    assert not every_write_set_covered({0}, 3, 2, 2)
    # E=3 Qw=3 Qa=2: two needed as well.
    assert every_write_set_covered({1, 2}, 3, 3, 2)
    assert not every_write_set_covered({2}, 3, 3, 2)
    # Qa=1: every node must be fenced, since any single node could ack alone.
    assert not every_write_set_covered({0, 1}, 3, 2, 1)
    assert every_write_set_covered({0, 1, 2}, 3, 2, 1)


@given(st.integers(1, 6).flatmap(lambda e: st.tuples(
    st.just(e), st.integers(1, e)).flatmap(lambda eq: st.tuples(
        st.just(eq[0]), st.just(eq[1]), st.integers(1, eq[1]),
        st.sets(st.integers(0, eq[0] - 1))))))
def test_coverage_means_no_ack_quorum_can_form_without_a_fenced_node(case):
    ensemble, write_quorum, ack_quorum, fenced = case
    # Oracle: some entry's write set contains Qa nodes that are all unfenced.
    quorum_possible = any(
        not set(acks) & fenced
        for entry in range(ensemble)
        for acks in itertools.combinations(write_set(entry, ensemble, write_quorum), ack_quorum)
    )
    assert every_write_set_covered(fenced, ensemble, write_quorum, ack_quorum) == (
        not quorum_possible
    )


def test_last_add_confirmed_quorum_tracks_highest_answer_and_sufficiency():
    quorum = LastAddConfirmedQuorum(3, 2, 2)
    quorum.record_answer(0, 7)
    assert not quorum.sufficient and not quorum.hopeless
    quorum.record_failure(1)
    assert not quorum.complete
    quorum.record_answer(2, 9)
    assert quorum.sufficient and quorum.complete and quorum.max_last_add_confirmed == 9


def test_last_add_confirmed_quorum_is_hopeless_when_too_many_nodes_fail():
    quorum = LastAddConfirmedQuorum(3, 2, 2)
    quorum.record_answer(0, 3)
    quorum.record_failure(1)
    quorum.record_failure(2)
    assert quorum.hopeless and not quorum.sufficient


def test_recovery_read_found_on_any_replica_is_kept():
    quorum: RecoveryReadQuorum[bytes] = RecoveryReadQuorum(3, 2)
    assert quorum.record_missing(0) is ReadOutcome.PENDING
    assert quorum.record_found(2, b"x") is ReadOutcome.FOUND
    assert quorum.value == b"x"
    assert quorum.record_missing(1) is ReadOutcome.FOUND  # a decision sticks


def test_recovery_read_is_absent_only_after_qw_minus_qa_plus_one_misses():
    quorum: RecoveryReadQuorum[bytes] = RecoveryReadQuorum(3, 2)  # needs 2 misses
    assert quorum.record_missing(0) is ReadOutcome.PENDING
    assert quorum.record_missing(1) is ReadOutcome.ABSENT
    narrow: RecoveryReadQuorum[bytes] = RecoveryReadQuorum(2, 2)  # needs 1 miss
    assert narrow.record_missing(1) is ReadOutcome.ABSENT
    strict: RecoveryReadQuorum[bytes] = RecoveryReadQuorum(3, 1)  # needs all 3 misses
    strict.record_missing(0)
    strict.record_missing(1)
    assert strict.outcome is ReadOutcome.PENDING
    assert strict.record_missing(2) is ReadOutcome.ABSENT


def test_recovery_read_with_too_many_errors_is_undecidable():
    quorum: RecoveryReadQuorum[bytes] = RecoveryReadQuorum(3, 2)
    quorum.record_missing(0)
    assert quorum.record_error(1) is ReadOutcome.PENDING
    assert quorum.record_error(2) is ReadOutcome.UNDECIDABLE


def test_choose_ensemble_picks_distinct_live_nodes_or_none():
    rng = random.Random(1)
    chosen = choose_ensemble(["a", "b", "c", "d"], 3, rng)
    assert chosen is not None and len(set(chosen)) == 3 and set(chosen) <= {"a", "b", "c", "d"}
    assert choose_ensemble(["a", "b"], 3, rng) is None


def test_replacements_are_distinct_outside_the_ensemble_and_may_be_partial():
    rng = random.Random(2)
    ensemble = ["a", "b", "c"]
    assert choose_replacements(ensemble, [1], ["a", "b", "c"], rng) == {}
    assert choose_replacements(ensemble, [1], ["a", "d"], rng) == {1: "d"}
    both = choose_replacements(ensemble, [0, 2], ["d", "e", "b"], rng)
    assert set(both) == {0, 2} and set(both.values()) == {"d", "e"}
    partial = choose_replacements(ensemble, [0, 2], ["d"], rng)
    assert len(partial) == 1 and list(partial.values()) == ["d"]
