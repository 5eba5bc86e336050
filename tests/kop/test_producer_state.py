"""Idempotent-producer rules of one partition, without storage."""

from __future__ import annotations

import pytest

from kop.errors import KafkaError
from kop.producer_state import MAX_SEQUENCE, ProducerStateTable, last_sequence_of
from wire.generated.error_codes import ErrorCode

PID = 42


def accepted(table: ProducerStateTable, epoch: int, first: int, count: int, offset: int) -> None:
    last = last_sequence_of(first, count)
    assert table.check(PID, epoch, first, last) is None
    table.record(PID, epoch, first, last, offset, offset + count - 1)


def error_of(table: ProducerStateTable, epoch: int, first: int, last: int) -> ErrorCode:
    with pytest.raises(KafkaError) as raised:
        table.check(PID, epoch, first, last)
    return raised.value.code


def test_in_sequence_batches_are_accepted_and_a_retry_is_a_duplicate() -> None:
    table = ProducerStateTable()
    accepted(table, 0, 0, 3, offset=10)
    accepted(table, 0, 3, 2, offset=13)
    duplicate = table.check(PID, 0, 0, 2)
    assert duplicate is not None and duplicate.first_offset == 10


def test_a_gap_is_out_of_order() -> None:
    table = ProducerStateTable()
    accepted(table, 0, 0, 3, offset=0)
    assert error_of(table, 0, 5, 6) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


def test_older_epochs_are_fenced_and_new_epochs_start_at_zero() -> None:
    table = ProducerStateTable()
    accepted(table, 3, 0, 1, offset=0)
    assert error_of(table, 2, 1, 1) == ErrorCode.INVALID_PRODUCER_EPOCH
    assert error_of(table, 4, 7, 7) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER
    accepted(table, 4, 0, 1, offset=1)


def test_unknown_producers_may_start_anywhere() -> None:
    table = ProducerStateTable()
    accepted(table, 0, 1234, 1, offset=0)


def test_sequences_wrap_at_int32_max() -> None:
    table = ProducerStateTable()
    accepted(table, 0, MAX_SEQUENCE - 1, 2, offset=0)
    accepted(table, 0, 0, 1, offset=2)


def test_only_the_last_five_batches_are_remembered_for_duplicates() -> None:
    table = ProducerStateTable()
    for i in range(6):
        accepted(table, 0, i, 1, offset=i)
    assert table.check(PID, 0, 5, 5) is not None
    assert error_of(table, 0, 0, 0) == ErrorCode.OUT_OF_ORDER_SEQUENCE_NUMBER


def test_snapshot_leaves_out_batches_not_yet_durable() -> None:
    table = ProducerStateTable()
    accepted(table, 0, 0, 1, offset=0)
    accepted(table, 0, 1, 1, offset=1)  # still in flight when the snapshot is taken
    restored = ProducerStateTable.restore(table.snapshot(durable_end=1))
    assert restored.check(PID, 0, 0, 0) is not None
    assert restored.check(PID, 0, 1, 1) is None  # the retry of the lost batch is accepted


def marker_error(table: ProducerStateTable, epoch: int, coordinator_epoch: int) -> ErrorCode:
    with pytest.raises(KafkaError) as raised:
        table.check_marker(PID, epoch, coordinator_epoch)
    return raised.value.code


def test_markers_from_an_older_coordinator_or_producer_epoch_are_refused() -> None:
    table = ProducerStateTable()
    table.check_marker(PID, 0, 3)  # an unknown producer: any coordinator may end it
    table.record_marker(PID, 0, 3)
    table.check_marker(PID, 0, 3)  # the same coordinator again (a retried marker)
    table.check_marker(PID, 0, 4)  # its successor
    assert marker_error(table, 0, 2) == ErrorCode.TRANSACTION_COORDINATOR_FENCED
    table.record_marker(PID, 1, 4)
    assert marker_error(table, 0, 4) == ErrorCode.INVALID_PRODUCER_EPOCH
    assert marker_error(table, 1, 3) == ErrorCode.TRANSACTION_COORDINATOR_FENCED


def test_a_marker_of_a_new_producer_epoch_forgets_the_old_epochs_batches() -> None:
    table = ProducerStateTable()
    accepted(table, 0, 0, 2, offset=0)
    table.record_marker(PID, 1, 0)
    assert table.epoch_of(PID) == 1
    assert error_of(table, 0, 0, 1) == ErrorCode.INVALID_PRODUCER_EPOCH
    assert table.check(PID, 1, 0, 1) is None  # not a retry: epoch 1 has stored nothing yet
    table.record_marker(PID, 1, 5)
    accepted(table, 1, 0, 1, offset=3)  # a marker of the same epoch keeps the producer going
    table.record_marker(PID, 1, 5)
    assert table.check(PID, 1, 0, 0) is not None


def test_snapshots_keep_the_coordinator_epoch_and_older_snapshots_still_load() -> None:
    table = ProducerStateTable()
    table.record_marker(PID, 2, 7)
    restored = ProducerStateTable.restore(table.snapshot(durable_end=0))
    assert marker_error(restored, 2, 6) == ErrorCode.TRANSACTION_COORDINATOR_FENCED
    # Written before coordinator epochs were kept: [epoch, batches].
    old = ProducerStateTable.restore({str(PID): [2, [[0, 0, 5, 5]]]})
    assert old.epoch_of(PID) == 2 and old.check(PID, 2, 0, 0) is not None
    old.check_marker(PID, 2, 0)
