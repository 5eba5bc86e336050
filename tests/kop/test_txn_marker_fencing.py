"""Transaction markers carry the coordinator epoch, and a partition refuses a marker from a
coordinator older than one that has already written there (TRANSACTION_COORDINATOR_FENCED),
before and after the broker restarts — from its state snapshot or, after a crash, by reading
the markers back from the log. Real in-process storage stack in a temporary directory."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import pytest_twisted
from twisted.internet import defer

from kop.broker import Broker, BrokerConfig
from kop.configs import BROKER_DEFAULTS
from kop.handlers.common import owned_partition
from kop.handlers.txn_markers import _write_markers, write_local_marker
from kop.partition_log import PartitionLog
from storage.ledger import LedgerClient, NodePool
from storage.managed_ledger import ManagedLedgerFactory
from storage.metadata import open_metadata_store
from storage.node import LocalStorageNodeClient, StorageNode
from wire.generated.error_codes import ErrorCode
from wire.messages import WriteTxnMarkersRequest

TOPIC = "payments"
PRODUCER_ID, PRODUCER_EPOCH = 4242, 0


class Stack:
    """Broker + storage node + embedded metadata over one directory; stop and start again."""

    def __init__(self, directory) -> None:
        self.directory = directory
        self.broker: Broker | None = None

    async def start(self) -> Broker:
        self.store = open_metadata_store(str(self.directory / "metadata"))
        self.node = await StorageNode.open(self.directory / "storage")
        ledgers = ManagedLedgerFactory(self.store, LedgerClient(
            self.store, NodePool.for_local_node(LocalStorageNodeClient(self.node))))
        self.broker = Broker(BrokerConfig(port=9092, settings=dict(BROKER_DEFAULTS)),
                             self.store, ledgers)
        await self.broker.start()
        return self.broker

    async def stop(self) -> None:
        if self.broker is not None:
            await self.broker.stop()
            await self.node.close()
            await self.store.close()
            self.broker = None


@pytest.fixture
def stack(tmp_path):
    running = Stack(tmp_path)
    yield running
    pytest_twisted.blockon(defer.ensureDeferred(running.stop()))


async def marker(broker: Broker, coordinator_epoch: int, commit: bool = True) -> ErrorCode:
    return await write_local_marker(broker, TOPIC, 0, PRODUCER_ID, PRODUCER_EPOCH, commit,
                                    coordinator_epoch)


@pytest_twisted.ensureDeferred
async def test_a_marker_from_an_older_coordinator_is_refused(stack):
    broker = await stack.start()
    await broker.topics.create(TOPIC, 1)
    assert await marker(broker, 3) == ErrorCode.NONE
    assert await marker(broker, 3) == ErrorCode.NONE  # the same coordinator, a retry
    assert await marker(broker, 2) == ErrorCode.TRANSACTION_COORDINATOR_FENCED
    assert await marker(broker, 5, commit=False) == ErrorCode.NONE  # a successor
    assert await marker(broker, 4) == ErrorCode.TRANSACTION_COORDINATOR_FENCED
    log = await owned_partition(broker, TOPIC, 0)
    assert log.high_watermark == 3  # the refused markers were not written

    # Through the WriteTxnMarkers handler, answered per partition.
    request = WriteTxnMarkersRequest(markers=[WriteTxnMarkersRequest.WritableTxnMarker(
        producer_id=PRODUCER_ID, producer_epoch=PRODUCER_EPOCH, transaction_result=True,
        topics=[WriteTxnMarkersRequest.WritableTxnMarkerTopic(name=TOPIC, partition_indexes=[0])],
        coordinator_epoch=4)])
    response = await _write_markers(SimpleNamespace(broker=broker), request)
    [answer] = response.markers[0].topics[0].partitions
    assert answer.error_code == ErrorCode.TRANSACTION_COORDINATOR_FENCED


@pytest_twisted.ensureDeferred
async def test_the_fence_survives_a_restart_from_the_state_snapshot(stack):
    broker = await stack.start()
    await broker.topics.create(TOPIC, 1)
    assert await marker(broker, 6) == ErrorCode.NONE
    await stack.stop()  # a clean stop saves the producer state

    broker = await stack.start()
    assert await marker(broker, 5) == ErrorCode.TRANSACTION_COORDINATOR_FENCED
    assert await marker(broker, 6) == ErrorCode.NONE


@pytest_twisted.ensureDeferred
async def test_the_fence_survives_a_crash_by_reading_the_markers_back(stack, monkeypatch):
    broker = await stack.start()
    await broker.topics.create(TOPIC, 1)
    assert await marker(broker, 6) == ErrorCode.NONE
    # As if the process had died before its next state snapshot: only the log has the marker.
    async def no_snapshot(self) -> None:
        return None

    monkeypatch.setattr(PartitionLog, "save_state", no_snapshot)
    await stack.stop()
    monkeypatch.undo()

    broker = await stack.start()
    assert await marker(broker, 5) == ErrorCode.TRANSACTION_COORDINATOR_FENCED
    assert await marker(broker, 7) == ErrorCode.NONE
