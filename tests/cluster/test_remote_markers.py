"""RemoteMarkers sends each owner one WriteTxnMarkers request carrying the coordinator epoch,
retries what is not finished, and stops at once when an owner says a newer coordinator has
written there. A scripted peer stands in for the other brokers (PeerClient itself is tested
over loopback in test_peers.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.task import Clock

from kop.cluster.markers import RemoteMarkers
from kop.errors import KafkaError
from wire.generated.error_codes import ErrorCode
from wire.messages import WriteTxnMarkersRequest, WriteTxnMarkersResponse

OWNER = SimpleNamespace(node_id=2, host="10.0.0.2", port=9092)
PARTITIONS = [("orders", 0), ("orders", 1)]


class ScriptedPeers:
    """Answers each request with the next list of error codes (one per partition asked)."""

    def __init__(self, *answers: list[ErrorCode]) -> None:
        self.answers = list(answers)
        self.requests: list[WriteTxnMarkersRequest] = []

    def call(self, address, api_key, api_version, request) -> defer.Deferred:
        self.requests.append(request)
        codes = iter(self.answers.pop(0))
        [marker] = request.markers
        return defer.succeed(WriteTxnMarkersResponse(markers=[
            WriteTxnMarkersResponse.WritableTxnMarkerResult(
                producer_id=marker.producer_id,
                topics=[WriteTxnMarkersResponse.WritableTxnMarkerTopicResult(
                    name=topic.name,
                    partitions=[WriteTxnMarkersResponse.WritableTxnMarkerPartitionResult(
                        partition_index=index, error_code=next(codes))
                        for index in topic.partition_indexes])
                    for topic in marker.topics])]))


def markers(peers: ScriptedPeers, clock: Clock) -> RemoteMarkers:
    broker = SimpleNamespace(node_id=1, live_brokers=lambda: [OWNER],
                             leader_of=lambda topic, partition: OWNER.node_id)
    return RemoteMarkers(broker, peers, reactor=clock, monotonic=clock.seconds)


@pytest_twisted.ensureDeferred
async def test_markers_carry_the_coordinator_epoch_and_unfinished_ones_are_sent_again():
    clock = Clock()
    peers = ScriptedPeers([ErrorCode.NONE, ErrorCode.NOT_LEADER_OR_FOLLOWER], [ErrorCode.NONE])
    writing = defer.ensureDeferred(markers(peers, clock).write(PARTITIONS, 77, 3, True, 9))
    clock.advance(1)  # the pause before the second round
    await writing
    assert [r.markers[0].coordinator_epoch for r in peers.requests] == [9, 9]
    assert [r.markers[0].topics[0].partition_indexes for r in peers.requests] == [[0, 1], [1]]


@pytest_twisted.ensureDeferred
async def test_an_owner_that_saw_a_newer_coordinator_stops_the_sending():
    clock = Clock()
    peers = ScriptedPeers([ErrorCode.NONE, ErrorCode.TRANSACTION_COORDINATOR_FENCED])
    with pytest.raises(KafkaError) as raised:
        await markers(peers, clock).write(PARTITIONS, 77, 3, True, 9)
    assert raised.value.code == ErrorCode.TRANSACTION_COORDINATOR_FENCED
    assert len(peers.requests) == 1  # no retry: the successor has this transaction
