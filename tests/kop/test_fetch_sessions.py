"""Fetch-session bookkeeping (KIP-227), without I/O."""

from __future__ import annotations

import uuid

import pytest

from kop.errors import KafkaError
from kop.fetch_sessions import FetchSessionCache, FetchTarget, next_epoch, update_session
from wire.generated.error_codes import ErrorCode

TOPIC_ID = uuid.uuid4()


def target(partition: int, offset: int = 0) -> FetchTarget:
    return FetchTarget("t", TOPIC_ID, partition, offset, 1024)


def test_sessions_advance_their_epoch_and_refuse_stale_ones() -> None:
    cache = FetchSessionCache()
    session = cache.create([target(0)])
    assert session is not None and session.epoch == 1
    assert cache.resume(session.session_id, 1) is session
    with pytest.raises(KafkaError) as raised:
        cache.resume(session.session_id, 1)
    assert raised.value.code == ErrorCode.INVALID_FETCH_SESSION_EPOCH
    with pytest.raises(KafkaError) as raised:
        cache.resume(12345, 1)
    assert raised.value.code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND


def test_incremental_requests_update_add_and_forget_partitions() -> None:
    cache = FetchSessionCache()
    session = cache.create([target(0), target(1)])
    update_session(session, [target(1, offset=7), target(2)], forgotten=[("t", 0)])
    assert {key: t.fetch_offset for key, t in session.targets.items()} == {
        ("t", 1): 7, ("t", 2): 0}


def test_the_cache_is_bounded_and_evicts_idle_sessions() -> None:
    now = [0.0]
    cache = FetchSessionCache(max_sessions=1, idle_seconds=10, clock=lambda: now[0])
    assert cache.create([target(0)]) is not None
    assert cache.create([target(0)]) is None  # full of a busy session
    now[0] = 11
    assert cache.create([target(0)]) is not None


def test_remember_sent_reports_changes_only() -> None:
    partition = target(0)
    assert partition.remember_sent(5, 5, 0)
    assert not partition.remember_sent(5, 5, 0)
    assert partition.remember_sent(6, 5, 0)


def test_epochs_wrap_to_one() -> None:
    assert next_epoch(2**31 - 1) == 1
