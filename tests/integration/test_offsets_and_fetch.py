"""Offsets, log start, timestamps, leader epochs and fetch behaviour seen by real clients."""

from __future__ import annotations

import threading
import uuid

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.integration.clients import confluent_consume, confluent_produce
from tests.integration.raw import RawConnection
from wire.generated.error_codes import ErrorCode
from wire.messages import (
    FetchRequest,
    ListOffsetsRequest,
    MetadataRequest,
    OffsetForLeaderEpochRequest,
)

FETCH, LIST_OFFSETS, METADATA, OFFSET_FOR_LEADER_EPOCH = 1, 2, 3, 23


def _fetch_request(topic: str, offset: int, max_wait_ms: int, session_id: int = 0,
                   session_epoch: int = -1, partitions=(0,), forgotten=()) -> FetchRequest:
    return FetchRequest(
        replica_id=-1, max_wait_ms=max_wait_ms, min_bytes=1, max_bytes=1024 * 1024,
        isolation_level=0, session_id=session_id, session_epoch=session_epoch,
        topics=[FetchRequest.FetchTopic(topic=topic, partitions=[
            FetchRequest.FetchPartition(partition=p, fetch_offset=offset,
                                        partition_max_bytes=1024 * 1024) for p in partitions])]
        if partitions else [],
        forgotten_topics_data=[FetchRequest.ForgottenTopic(topic=topic, partitions=list(forgotten))]
        if forgotten else [],
        rack_id="")


def test_log_append_time_replaces_the_producer_timestamp(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("stamped", 1, 1, config={
        "message.timestamp.type": "LogAppendTime"})])["stamped"].result(30)
    confluent_produce(bootstrap, "stamped", [{"value": b"x", "timestamp": 1000}])
    [record] = confluent_consume(bootstrap, "stamped", [0], 1)
    assert record.timestamp > 1_600_000_000_000  # the broker's clock, not the 1000 sent


def test_max_timestamp_earliest_and_latest(bootstrap: str) -> None:
    times = [5000, 9000, 7000, 9000, 1000]
    confluent_produce(bootstrap, "stamps", [{"value": b"%d" % i, "timestamp": t}
                                            for i, t in enumerate(times)])
    connection = RawConnection(bootstrap)
    try:
        request = ListOffsetsRequest(replica_id=-1, isolation_level=0, topics=[
            ListOffsetsRequest.ListOffsetsTopic(name="stamps", partitions=[
                ListOffsetsRequest.ListOffsetsPartition(partition_index=0, timestamp=t)
                for t in (-3, -2, -1, 8000)])])
        answers = connection.call(LIST_OFFSETS, 7, request).topics[0].partitions
    finally:
        connection.close()
    assert [(a.offset, a.timestamp) for a in answers] == [(1, 9000), (0, -1), (5, -1), (1, 9000)]


def test_delete_records_moves_the_log_start(bootstrap: str) -> None:
    confluent_produce(bootstrap, "trimmed", [{"value": b"%d" % i} for i in range(10)])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    [result] = admin.delete_records([TopicPartition("trimmed", 0, 4)]).values()
    assert result.result(30).low_watermark == 4
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "trim"})
    try:
        assert consumer.get_watermark_offsets(TopicPartition("trimmed", 0), timeout=30) == (4, 10)
    finally:
        consumer.close()
    consumed = confluent_consume(bootstrap, "trimmed", [0], 6)
    assert [c.offset for c in consumed] == [4, 5, 6, 7, 8, 9]

    connection = RawConnection(bootstrap)
    try:
        answer = connection.call(FETCH, 11, _fetch_request("trimmed", 2, 0))
    finally:
        connection.close()
    assert answer.responses[0].partitions[0].error_code == ErrorCode.OFFSET_OUT_OF_RANGE


def test_topic_ids_are_stable_across_restarts(kop) -> None:
    confluent_produce(kop.address, "identified", [{"value": b"x"}])

    def topic_id() -> uuid.UUID:
        connection = RawConnection(kop.address)
        try:
            response = connection.call(METADATA, 12, MetadataRequest(
                topics=[MetadataRequest.MetadataRequestTopic(name="identified")],
                allow_auto_topic_creation=False, include_topic_authorized_operations=False))
        finally:
            connection.close()
        return response.topics[0].topic_id

    before = topic_id()
    assert before != uuid.UUID(int=0)
    kop.kill()
    kop.start()
    assert topic_id() == before


def test_offset_for_leader_epoch_answers_the_log_end(bootstrap: str) -> None:
    confluent_produce(bootstrap, "epochs", [{"value": b"x"}] * 3)
    connection = RawConnection(bootstrap)
    try:
        response = connection.call(OFFSET_FOR_LEADER_EPOCH, 4, OffsetForLeaderEpochRequest(
            replica_id=-1, topics=[OffsetForLeaderEpochRequest.OffsetForLeaderTopic(
                topic="epochs", partitions=[OffsetForLeaderEpochRequest.OffsetForLeaderPartition(
                    partition=0, current_leader_epoch=-1, leader_epoch=0)])]))
    finally:
        connection.close()
    answer = response.topics[0].partitions[0]
    assert (answer.error_code, answer.leader_epoch, answer.end_offset) == (0, 0, 3)


def test_a_waiting_fetch_is_answered_by_the_append_not_the_timeout(bootstrap: str) -> None:
    confluent_produce(bootstrap, "tail", [{"value": b"first"}])
    connection = RawConnection(bootstrap, timeout=40)
    answer: list = []

    def fetch() -> None:
        # max_wait far beyond the socket timeout: only an append can answer in time.
        answer.append(connection.call(FETCH, 11, _fetch_request("tail", 1, 120_000)))

    waiter = threading.Thread(target=fetch)
    waiter.start()
    confluent_produce(bootstrap, "tail", [{"value": b"second"}])
    waiter.join(60)
    connection.close()
    assert answer, "the fetch was not answered"
    partition = answer[0].responses[0].partitions[0]
    assert partition.high_watermark == 2 and partition.records


def test_incremental_fetch_sessions(bootstrap: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("sessions", 2, 1)])["sessions"].result(30)
    confluent_produce(bootstrap, "sessions", [{"value": b"a", "partition": 0},
                                              {"value": b"b", "partition": 1}])
    connection = RawConnection(bootstrap)
    try:
        full = connection.call(FETCH, 11, _fetch_request("sessions", 0, 0, 0, 0, (0, 1)))
        session = full.session_id
        assert session != 0
        assert sorted(p.partition_index for p in full.responses[0].partitions) == [0, 1]

        # The client moves both positions past what it got; nothing newer exists yet,
        # so the incremental answer names no partition.
        caught_up = connection.call(FETCH, 11, _fetch_request("sessions", 1, 0, session, 1, (0, 1)))
        assert caught_up.error_code == 0 and caught_up.responses == []
        quiet = connection.call(FETCH, 11, _fetch_request("sessions", 0, 0, session, 2, ()))
        assert quiet.error_code == 0 and quiet.responses == []

        confluent_produce(bootstrap, "sessions", [{"value": b"c", "partition": 1}])
        moved = connection.call(FETCH, 11, _fetch_request("sessions", 0, 0, session, 3, ()))
        [moved_partition] = moved.responses[0].partitions
        assert (moved_partition.partition_index, moved_partition.high_watermark) == (1, 2)
        assert moved_partition.records

        forgot = connection.call(FETCH, 11, _fetch_request(
            "sessions", 0, 0, session, 4, (), forgotten=(0, 1)))
        assert forgot.responses == []

        stale = connection.call(FETCH, 11, _fetch_request("sessions", 0, 0, session, 1, ()))
        assert stale.error_code == ErrorCode.INVALID_FETCH_SESSION_EPOCH
        unknown = connection.call(FETCH, 11, _fetch_request("sessions", 0, 0, 999_999, 1, ()))
        assert unknown.error_code == ErrorCode.FETCH_SESSION_ID_NOT_FOUND
    finally:
        connection.close()
