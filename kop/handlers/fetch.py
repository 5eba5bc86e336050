"""Fetch (key 1) v4-17.

Returns whole record batches from the batch holding each partition's fetch offset, within
`partition_max_bytes` per partition and `max_bytes` for the response — except that the
first batch found is always returned whole, however large (KIP-74), so a consumer can never
get stuck. Batches are the stored bytes, untouched.

Long poll: when fewer than `min_bytes` are available the fetch waits up to `max_wait_ms`,
and is answered as soon as an append makes enough data available (it is woken by the
append, not by a timer). Incremental fetch sessions (KIP-227, v7+) are kept per broker.
Per partition: HIGH watermark (last durable offset + 1), LAST_STABLE_OFFSET (the end of
decided transactions for read_committed), LOG_START_OFFSET, OFFSET_OUT_OF_RANGE,
NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION / UNKNOWN_TOPIC_ID (v13+, topics by id),
FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH against the partition's leader epoch. For
read_committed, aborted transactions overlapping the returned range are listed so the client
drops their records. v0-3 (message-set down-conversion) are not served.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from twisted.internet import defer, reactor

from kop.errors import KafkaError, error_code_of
from kop.fetch_sessions import FINAL_EPOCH, INITIAL_EPOCH, FetchTarget, update_session
from kop.handlers.common import owned_partition
from kop.handlers.registry import handles
from kop.partition_log import PartitionLog
from wire.generated.error_codes import ErrorCode
from wire.messages import FetchResponse
from wire.records.batch import iter_batches

log = logging.getLogger(__name__)

FETCH_KEY = 1
READ_COMMITTED = 1
ZERO_UUID = uuid.UUID(int=0)


@dataclass
class _PartitionResult:
    target: FetchTarget
    error: ErrorCode = ErrorCode.NONE
    records: bytes = b""
    high_watermark: int = -1
    last_stable_offset: int = -1
    log_start_offset: int = -1
    aborted: list | None = None


class FetchOperation:
    """One fetch request: read, maybe wait for appends, read again, answer."""

    def __init__(self, ctx, request, targets: list[FetchTarget], session_id: int,
                 incremental: bool) -> None:
        self.ctx = ctx
        self.broker = ctx.broker
        self.version = ctx.api_version
        self.request = request
        self.targets = targets
        self.session_id = session_id
        self.incremental = incremental
        self.read_committed = ctx.api_version >= 4 and request.isolation_level == READ_COMMITTED
        self.max_bytes = request.max_bytes if ctx.api_version >= 3 else 2**31 - 1
        self._logs: list[PartitionLog] = []
        self._wake: defer.Deferred[None] | None = None

    async def run(self) -> FetchResponse:
        results = await self._gather()
        if self._must_wait(results):
            await self._wait_for_append(self.request.max_wait_ms / 1000)
            results = await self._gather()
        return self._response(results)

    def _must_wait(self, results: list[_PartitionResult]) -> bool:
        if self.request.max_wait_ms <= 0 or not results:
            return False
        if any(r.error != ErrorCode.NONE for r in results):
            return False
        return sum(len(r.records) for r in results) < max(self.request.min_bytes, 1)

    async def _wait_for_append(self, seconds: float) -> None:
        self._wake = woken = defer.Deferred()
        timer = reactor.callLater(seconds, self._wake_up)
        for partition_log in self._logs:
            partition_log.add_listener(self._wake_up)
        try:
            await woken
        finally:
            if timer.active():
                timer.cancel()
            for partition_log in self._logs:
                partition_log.remove_listener(self._wake_up)

    def _wake_up(self) -> None:
        woken, self._wake = self._wake, None
        if woken is not None:
            woken.callback(None)

    async def _gather(self) -> list[_PartitionResult]:
        self._logs = []
        budget = self.max_bytes
        results = []
        for target in self.targets:
            result = _PartitionResult(target)
            results.append(result)
            try:
                partition_log = await self._partition(target)
            except KafkaError as exc:
                result.error = exc.code
                continue
            self._logs.append(partition_log)
            result.high_watermark = partition_log.high_watermark
            result.log_start_offset = partition_log.log_start_offset
            result.last_stable_offset = self._last_stable_offset(partition_log)
            if budget <= 0:
                continue
            limit = min(target.max_bytes, budget)
            upper = result.last_stable_offset if self.read_committed else None
            try:
                result.records = await partition_log.read(target.fetch_offset, limit, upper)
            except KafkaError as exc:
                result.error = exc.code
                continue
            except Exception:
                log.exception("fetch of %s-%d failed", target.topic, target.partition)
                result.error = ErrorCode.UNKNOWN_SERVER_ERROR
                continue
            if self.read_committed:
                result.aborted = self._aborted(partition_log, target.fetch_offset, result.records)
            budget -= len(result.records)
        return results

    async def _partition(self, target: FetchTarget) -> PartitionLog:
        if not target.topic:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_ID)
        partition_log = await owned_partition(self.broker, target.topic, target.partition)
        epoch = self.broker.leader_epoch_of(target.topic, target.partition)
        requested = target.current_leader_epoch
        if requested >= 0 and requested != epoch:
            raise KafkaError(ErrorCode.FENCED_LEADER_EPOCH if requested < epoch
                             else ErrorCode.UNKNOWN_LEADER_EPOCH)
        return partition_log

    def _last_stable_offset(self, partition_log: PartitionLog) -> int:
        return partition_log.last_stable_offset

    def _aborted(self, partition_log: PartitionLog, offset: int, records: bytes) -> list:
        if not records:
            return []
        last_offset = offset
        for _, header in iter_batches(records):
            last_offset = header.last_offset
        return [
            FetchResponse.AbortedTransaction(producer_id=pid, first_offset=first)
            for pid, first in partition_log.aborted_transactions(offset, last_offset)
        ]

    def _response(self, results: list[_PartitionResult]) -> FetchResponse:
        by_topic: dict[tuple[str, uuid.UUID], list] = {}
        for result in results:
            target = result.target
            changed = target.remember_sent(
                result.high_watermark, result.last_stable_offset, result.log_start_offset)
            if self.incremental and not (result.records or result.error or changed):
                continue
            entry = FetchResponse.PartitionData(
                partition_index=target.partition, error_code=result.error,
                high_watermark=result.high_watermark,
                last_stable_offset=result.last_stable_offset,
                log_start_offset=result.log_start_offset,
                aborted_transactions=result.aborted if self.read_committed else None,
                preferred_read_replica=-1, records=result.records)
            by_topic.setdefault((target.topic, target.topic_id), []).append(entry)
        responses = [
            FetchResponse.FetchableTopicResponse(topic=topic, topic_id=topic_id, partitions=parts)
            for (topic, topic_id), parts in by_topic.items()
        ]
        return FetchResponse(throttle_time_ms=0, error_code=ErrorCode.NONE,
                             session_id=self.session_id, responses=responses)


def _targets(ctx, request) -> tuple[list[FetchTarget], list[tuple[str, int]]]:
    """The partitions a request names, and those it asks the session to forget."""
    topics = ctx.broker.topics
    by_id = ctx.api_version >= 13

    def name_of(topic) -> tuple[str, uuid.UUID]:
        if not by_id:
            info = topics.get(topic.topic)
            return topic.topic, info.topic_id if info else ZERO_UUID
        info = topics.by_id(topic.topic_id)
        return (info.name if info else ""), topic.topic_id

    targets = []
    for topic in request.topics:
        name, topic_id = name_of(topic)
        for partition in topic.partitions:
            targets.append(FetchTarget(
                name, topic_id, partition.partition, partition.fetch_offset,
                partition.partition_max_bytes,
                partition.current_leader_epoch if ctx.api_version >= 9 else -1))
    forgotten = []
    for topic in request.forgotten_topics_data if ctx.api_version >= 7 else []:
        name, _ = name_of(topic)
        forgotten.extend((name, p) for p in topic.partitions)
    return targets, forgotten


def _session_error(code: ErrorCode) -> FetchResponse:
    return FetchResponse(throttle_time_ms=0, error_code=code, session_id=0, responses=[])


async def _fetch(ctx, request) -> FetchResponse:
    sessions = ctx.broker.fetch_sessions
    targets, forgotten = _targets(ctx, request)
    session_id = request.session_id if ctx.api_version >= 7 else 0
    epoch = request.session_epoch if ctx.api_version >= 7 else FINAL_EPOCH

    if epoch == FINAL_EPOCH:
        if session_id:
            sessions.remove(session_id)
        operation = FetchOperation(ctx, request, targets, 0, incremental=False)
    elif epoch == INITIAL_EPOCH:
        if session_id:
            sessions.remove(session_id)
        session = sessions.create(targets)
        new_id = session.session_id if session is not None else 0
        operation = FetchOperation(ctx, request, targets, new_id, incremental=False)
    else:
        try:
            session = sessions.resume(session_id, epoch)
        except KafkaError as exc:
            return _session_error(exc.code)
        update_session(session, targets, forgotten)
        operation = FetchOperation(ctx, request, list(session.targets.values()), session_id,
                                   incremental=True)
    return await operation.run()


@handles(FETCH_KEY, 4, 17)
def handle_fetch(ctx, request) -> defer.Deferred[FetchResponse]:
    return defer.ensureDeferred(_fetch(ctx, request)).addErrback(_unexpected)


def _unexpected(failure) -> FetchResponse:
    log.error("fetch failed: %s", failure.getTraceback())
    return _session_error(error_code_of(failure.value) or ErrorCode.UNKNOWN_SERVER_ERROR)
