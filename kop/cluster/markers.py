"""Transaction markers for partitions owned by other brokers.

The transaction coordinator (kop/transactions.py) writes a commit or abort marker into every
partition of a transaction. It writes those it owns itself; the rest go to `RemoteMarkers`,
which sends each owner one WriteTxnMarkers request (kop/handlers/txn_markers.py answers it).
Ownership can move while that happens (a broker dies, another joins), so partitions answered
NOT_LEADER_OR_FOLLOWER — or whose owner cannot be reached — are looked up and sent again,
with growing pauses, until every marker is written or the deadline passes. Every marker
carries the coordinator epoch; a partition that has seen a newer one answers
TRANSACTION_COORDINATOR_FENCED, and sending stops there: this coordinator has been replaced.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import task

from kop.cluster.peers import PeerClient, PeerUnavailableError
from kop.errors import KafkaError
from kop.handlers.txn_markers import WRITE_TXN_MARKERS_KEY, write_local_marker
from wire.generated.error_codes import ErrorCode
from wire.messages import WriteTxnMarkersRequest, WriteTxnMarkersResponse

log = logging.getLogger(__name__)

DEADLINE_SECONDS = 30.0
FIRST_PAUSE_SECONDS = 0.05
MAX_PAUSE_SECONDS = 1.0
MARKERS_VERSION = 1

# Answers after which a partition needs no marker from us: written, gone, or superseded by a
# newer epoch of the producer (as Kafka's coordinator, which stops sending on those).
_FINISHED = frozenset({ErrorCode.NONE, ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
                       ErrorCode.INVALID_PRODUCER_EPOCH})

PartitionKey = tuple[str, int]


@dataclass(frozen=True)
class _Marker:
    producer_id: int
    producer_epoch: int
    commit: bool
    coordinator_epoch: int


class RemoteMarkers:
    def __init__(self, broker: Any, peers: PeerClient, *, reactor: Any = None,
                 deadline: float = DEADLINE_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self._reactor = reactor
        self._broker = broker
        self._peers = peers
        self._deadline = deadline
        self._monotonic = monotonic

    async def write(self, partitions: list[PartitionKey], producer_id: int,
                    producer_epoch: int, commit: bool, coordinator_epoch: int) -> None:
        """Write the marker into each partition wherever it is owned; raises
        KafkaError(COORDINATOR_NOT_AVAILABLE) if some could not be written in time, and
        KafkaError(TRANSACTION_COORDINATOR_FENCED) if a partition has seen a newer
        coordinator."""
        remaining = set(partitions)
        deadline = self._monotonic() + self._deadline
        pause = FIRST_PAUSE_SECONDS
        marker = _Marker(producer_id, producer_epoch, commit, coordinator_epoch)
        while True:
            remaining -= await self._write_round(remaining, marker)
            if not remaining:
                return
            if self._monotonic() + pause > deadline:
                raise KafkaError(
                    ErrorCode.COORDINATOR_NOT_AVAILABLE,
                    f"could not write transaction markers of producer {producer_id} to "
                    f"{sorted(remaining)} within {self._deadline:g} s")
            await task.deferLater(self._reactor, pause, lambda: None)
            pause = min(pause * 2, MAX_PAUSE_SECONDS)

    async def _write_round(self, partitions: set[PartitionKey],
                           marker: _Marker) -> set[PartitionKey]:
        """One attempt for every partition, grouped by owner; the partitions finished."""
        broker = self._broker
        addresses = {b.node_id: f"{b.host}:{b.port}" for b in broker.live_brokers()}
        by_owner: dict[int, list[PartitionKey]] = defaultdict(list)
        for key in sorted(partitions):
            owner = broker.leader_of(*key)
            if owner is not None:
                by_owner[owner].append(key)
        finished: set[PartitionKey] = set()
        for owner, keys in by_owner.items():
            if owner == broker.node_id:
                for topic, partition in keys:
                    code = await write_local_marker(
                        broker, topic, partition, marker.producer_id, marker.producer_epoch,
                        marker.commit, marker.coordinator_epoch)
                    if _judge(marker, topic, partition, code, "here"):
                        finished.add((topic, partition))
            elif owner in addresses:
                finished |= await self._send(addresses[owner], keys, marker)
        return finished

    async def _send(self, address: str, keys: list[PartitionKey],
                    marker: _Marker) -> set[PartitionKey]:
        by_topic: dict[str, list[int]] = defaultdict(list)
        for topic, partition in keys:
            by_topic[topic].append(partition)
        request = WriteTxnMarkersRequest(markers=[WriteTxnMarkersRequest.WritableTxnMarker(
            producer_id=marker.producer_id, producer_epoch=marker.producer_epoch,
            transaction_result=marker.commit,
            topics=[WriteTxnMarkersRequest.WritableTxnMarkerTopic(name=topic,
                                                                  partition_indexes=indexes)
                    for topic, indexes in by_topic.items()],
            coordinator_epoch=marker.coordinator_epoch)])
        try:
            response: WriteTxnMarkersResponse = await self._peers.call(
                address, WRITE_TXN_MARKERS_KEY, MARKERS_VERSION, request)
        except PeerUnavailableError as exc:
            log.info("transaction markers to %s: %s (will retry)", address, exc)
            return set()
        finished: set[PartitionKey] = set()
        for answer in response.markers:
            for topic in answer.topics:
                for result in topic.partitions:
                    if _judge(marker, topic.name, result.partition_index, result.error_code,
                              address):
                        finished.add((topic.name, result.partition_index))
        return finished & set(keys)


def _judge(marker: _Marker, topic: str, partition: int, code: int, where: str) -> bool:
    """True if the partition needs no more marker from us; raises if we have been replaced."""
    if code in _FINISHED:  # IntEnum: plain ints compare equal
        return True
    if code == ErrorCode.TRANSACTION_COORDINATOR_FENCED:
        raise KafkaError(ErrorCode.TRANSACTION_COORDINATOR_FENCED,
                         f"{topic}-{partition} has seen a coordinator newer than epoch "
                         f"{marker.coordinator_epoch} (producer {marker.producer_id})")
    log.info("transaction marker for %s-%d %s: error %d (will retry)", topic, partition,
             where, code)
    return False
