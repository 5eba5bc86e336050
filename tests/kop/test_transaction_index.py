"""Last stable offset and aborted transactions of one partition, without storage."""

from __future__ import annotations

from kop.transaction_index import TransactionIndex


def test_lso_is_the_first_offset_of_the_oldest_open_transaction() -> None:
    index = TransactionIndex()
    assert index.last_stable_offset(10) == 10
    index.on_data_batch(1, 5)
    index.on_data_batch(2, 7)
    index.on_data_batch(1, 8)  # more data of the same transaction
    assert index.last_stable_offset(10) == 5
    index.on_marker_assigned(1, 10, commit=True)
    assert index.last_stable_offset(11) == 5  # the marker is not durable yet
    index.on_marker_durable(10)
    assert index.last_stable_offset(11) == 7


def test_aborted_transactions_are_listed_for_overlapping_ranges() -> None:
    index = TransactionIndex()
    index.on_data_batch(1, 0)
    index.on_marker_assigned(1, 3, commit=False)
    index.on_marker_durable(3)
    index.on_data_batch(2, 4)
    index.on_marker_assigned(2, 6, commit=True)
    index.on_marker_durable(6)
    assert index.aborted_overlapping(0, 10) == [(1, 0)]
    assert index.aborted_overlapping(2, 2) == [(1, 0)]
    assert index.aborted_overlapping(4, 10) == []
    index.forget_before(4)
    assert index.aborted_overlapping(0, 10) == []


def test_a_failed_marker_reopens_its_transaction() -> None:
    index = TransactionIndex()
    index.on_data_batch(1, 2)
    index.on_marker_assigned(1, 4, commit=False)
    index.on_marker_failed(4)
    assert index.last_stable_offset(5) == 2


def test_snapshot_round_trip_keeps_only_durable_state() -> None:
    index = TransactionIndex()
    index.on_data_batch(1, 0)
    index.on_marker_assigned(1, 2, commit=False)
    index.on_marker_durable(2)
    index.on_data_batch(2, 3)
    index.on_data_batch(3, 9)  # in flight at snapshot time
    restored = TransactionIndex.restore(index.snapshot(durable_end=5))
    assert restored.aborted_overlapping(0, 5) == [(1, 0)]
    assert restored.open_transactions() == {2: 3}
