"""Transaction coordination follows `__transaction_state` partitions from broker to broker.

Two TransactionCoordinators over one embedded metadata store stand for two brokers; a fake
broker says which partitions each owns (as claims would). Checked here: ids are served only
from loaded partitions; unloading refuses new requests, waits for the one in progress and
forgets the cache, so a coordinator that gets a partition back never answers from stale
state; loading finishes what a previous coordinator left half-ended; in cluster mode a
transaction's group offsets are completed by a marker to the offsets partition's owner; and
WriteTxnMarkers for an offsets partition completes offsets in the group coordinator.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task

from kop.errors import KafkaError
from kop.groups import OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC, coordinator_partition
from kop.groups.placement import DEFAULT_OFFSETS_PARTITIONS
from kop.handlers.txn_markers import write_local_marker
from kop.naming import Namespace
from kop.transactions import (
    COMPLETE_COMMIT,
    ONGOING,
    PREPARE_COMMIT,
    Transaction,
    TransactionCoordinator,
)
from storage.metadata import EmbeddedStore
from wire.generated.error_codes import ErrorCode

TIMEOUT_MS = 60_000
TRANSACTIONAL_ID = "payments-1"


class ProducerIds:
    """Hands out ids in order; with `hold` set, an allocation waits until `release()`."""

    def __init__(self) -> None:
        self.next_id = 1000
        self.hold = False
        self.waiting: list[defer.Deferred[None]] = []

    async def allocate(self) -> int:
        if self.hold:
            waiter: defer.Deferred[None] = defer.Deferred()
            self.waiting.append(waiter)
            await waiter
        self.next_id += 1
        return self.next_id

    def release(self) -> None:
        waiting, self.waiting = self.waiting, []
        for waiter in waiting:
            waiter.callback(None)


@dataclass
class Groups:
    """The group coordinator as transactions and markers use it."""

    partition_count: int = DEFAULT_OFFSETS_PARTITIONS
    completed: list[tuple[object, int, bool]] = field(default_factory=list)
    refuse_with: ErrorCode | None = None

    def partition_for(self, group_id: str) -> int:
        return coordinator_partition(group_id, self.partition_count)

    async def complete_transaction(self, group_id: str, producer_id: int, commit: bool) -> None:
        self.completed.append((group_id, producer_id, commit))

    async def complete_transactions_in_partition(self, index: int, producer_id: int,
                                                 commit: bool) -> None:
        if self.refuse_with is not None:
            raise KafkaError(self.refuse_with, "not here")
        self.completed.append((index, producer_id, commit))


class RemoteMarkers:
    def __init__(self) -> None:
        self.written: list[tuple[list[tuple[str, int]], int, int, bool, int]] = []

    async def write(self, partitions, producer_id, producer_epoch, commit,
                    coordinator_epoch) -> None:
        self.written.append((list(partitions), producer_id, producer_epoch, commit,
                             coordinator_epoch))


class Broker:
    """Owns the `__transaction_state` partitions in `owned`, and no data partition."""

    def __init__(self) -> None:
        self.config = SimpleNamespace(namespace=Namespace())
        self.owned: set[int] = set()
        self.claim_epochs: dict[int, int] = {}  # leader epoch of each owned partition's claim
        self.producer_ids = ProducerIds()
        self.groups = Groups()
        self.partitions = SimpleNamespace(cached=lambda topic, partition: None)
        self.topics = SimpleNamespace(lookup=self._lookup)

    async def _lookup(self, topic: str):
        return SimpleNamespace(partitions=3)

    def owns(self, topic: str, partition: int) -> bool:
        return topic == TRANSACTION_STATE_TOPIC and partition in self.owned

    def leader_epoch_of(self, topic: str, partition: int) -> int:
        assert topic == TRANSACTION_STATE_TOPIC
        return self.claim_epochs.get(partition, 0)


@pytest.fixture
def brokers(tmp_path):
    """make() -> (broker, coordinator); every coordinator shares one metadata store."""
    store = EmbeddedStore(tmp_path / "metadata")

    def make() -> tuple[Broker, TransactionCoordinator]:
        broker = Broker()
        return broker, TransactionCoordinator(broker, store, max_timeout_ms=TIMEOUT_MS)

    yield store, make
    pytest_twisted.blockon(store.close())


async def refused_with(call) -> ErrorCode:
    with pytest.raises(KafkaError) as refused:
        await call
    return refused.value.code


@pytest_twisted.ensureDeferred
async def test_ids_are_served_only_once_their_partition_is_owned_and_loaded(brokers):
    _, make = brokers
    broker, coordinator = make()
    partition = coordinator.partition_of(TRANSACTIONAL_ID)
    assert await refused_with(coordinator.init_producer(TRANSACTIONAL_ID, TIMEOUT_MS, -1, -1)
                              ) == ErrorCode.NOT_COORDINATOR
    broker.owned.add(partition)  # claimed, not loaded yet
    assert await refused_with(coordinator.init_producer(TRANSACTIONAL_ID, TIMEOUT_MS, -1, -1)
                              ) == ErrorCode.COORDINATOR_LOAD_IN_PROGRESS
    await coordinator.load_partition(partition)
    assert coordinator.is_loaded(partition)
    assert await coordinator.init_producer(TRANSACTIONAL_ID, TIMEOUT_MS, -1, -1) == (1001, 0)


@pytest_twisted.ensureDeferred
async def test_a_partition_moves_without_two_coordinators_or_stale_state(brokers):
    _, make = brokers
    old_broker, old = make()
    new_broker, new = make()
    partition = old.partition_of(TRANSACTIONAL_ID)
    other_id = next(f"other-{n}" for n in range(1000)
                    if old.partition_of(f"other-{n}") == partition)
    old_broker.owned.add(partition)
    await old.load_partition(partition)
    producer_id, epoch = await old.init_producer(TRANSACTIONAL_ID, TIMEOUT_MS, -1, -1)

    # A request under way when the partition starts moving (waiting for a producer id).
    old_broker.producer_ids.hold = True
    in_progress = defer.ensureDeferred(old.init_producer(other_id, TIMEOUT_MS, -1, -1))
    old_broker.owned.discard(partition)  # the balancer stops serving it first
    unloading = defer.ensureDeferred(old.unload_partition(partition))
    assert not unloading.called, "unloading must wait for the request in progress"
    assert await refused_with(old.add_group(TRANSACTIONAL_ID, producer_id, epoch, "g")
                              ) == ErrorCode.NOT_COORDINATOR
    old_broker.producer_ids.release()
    assert (await in_progress)[1] == 0  # it finished, before the partition was let go
    await unloading
    assert not old.is_loaded(partition)

    # The new coordinator bumps the epoch (a new incarnation of the producer).
    new_broker.owned.add(partition)
    await new.load_partition(partition)
    assert await new.init_producer(TRANSACTIONAL_ID, TIMEOUT_MS, producer_id, epoch) == (
        producer_id, epoch + 1)
    new_broker.owned.discard(partition)
    await new.unload_partition(partition)

    # Back on the old broker: it reads the id afresh, so the old epoch is fenced.
    old_broker.owned.add(partition)
    await old.load_partition(partition)
    assert await refused_with(old.add_group(TRANSACTIONAL_ID, producer_id, epoch, "g")
                              ) == ErrorCode.PRODUCER_FENCED
    await old.add_group(TRANSACTIONAL_ID, producer_id, epoch + 1, "g")


@pytest_twisted.ensureDeferred
async def test_stopping_lets_every_partition_go_after_the_requests_in_progress(brokers):
    _, make = brokers
    broker, coordinator = make()
    broker.owned = set(range(coordinator.partition_count))
    await coordinator.start()  # loads what the broker owns
    assert all(coordinator.is_loaded(p) for p in broker.owned)
    broker.producer_ids.hold = True
    in_progress = defer.ensureDeferred(
        coordinator.init_producer(TRANSACTIONAL_ID, TIMEOUT_MS, -1, -1))
    stopping = defer.ensureDeferred(coordinator.stop())
    assert not stopping.called
    broker.producer_ids.release()
    assert await in_progress == (1001, 0)
    await stopping
    assert not any(coordinator.is_loaded(p) for p in broker.owned)


@pytest_twisted.ensureDeferred
async def test_loading_finishes_a_half_ended_transaction_with_markers_for_its_groups(brokers):
    store, make = brokers
    broker, coordinator = make()
    markers = coordinator.remote_markers = RemoteMarkers()
    partition = coordinator.partition_of(TRANSACTIONAL_ID)
    # A coordinator died between preparing the commit and writing its markers.
    prepared = Transaction(TRANSACTIONAL_ID, 77, 3, TIMEOUT_MS, PREPARE_COMMIT,
                           frozenset({("orders", 1)}), frozenset({"billing", "audit"}), 5)
    await store.create(coordinator._path(TRANSACTIONAL_ID), prepared.to_json())

    broker.owned.add(partition)
    broker.claim_epochs[partition] = 4
    await coordinator.load_partition(partition)
    broker.claim_epochs[partition] = 5  # a later claim; this load's epoch is what counts

    async def stored_state() -> str:
        found = await store.get(coordinator._path(TRANSACTIONAL_ID))
        return Transaction.from_json(TRANSACTIONAL_ID, found.value, found.version).state

    deadline = time.monotonic() + 10
    while await stored_state() != COMPLETE_COMMIT:  # finished in the background
        assert time.monotonic() < deadline, "the half-ended transaction was not finished"
        await task.deferLater(reactor, 0.01, lambda: None)
    offsets_partitions = sorted({(OFFSETS_TOPIC, broker.groups.partition_for(g))
                                 for g in ("billing", "audit")})
    # Sent with the coordinator epoch: the leader epoch of the claim the load began with.
    assert markers.written == [([("orders", 1), *offsets_partitions], 77, 3, True, 4)]
    assert broker.groups.completed == []  # not directly: the owner completes them


@pytest_twisted.ensureDeferred
async def test_standalone_completes_group_offsets_directly(brokers):
    _, make = brokers
    broker, coordinator = make()
    partition = coordinator.partition_of(TRANSACTIONAL_ID)
    broker.owned.add(partition)
    await coordinator.load_partition(partition)
    producer_id, epoch = await coordinator.init_producer(TRANSACTIONAL_ID, TIMEOUT_MS, -1, -1)
    await coordinator.add_group(TRANSACTIONAL_ID, producer_id, epoch, "billing")
    assert coordinator._cache[TRANSACTIONAL_ID].state == ONGOING
    await coordinator.end_transaction(TRANSACTIONAL_ID, producer_id, epoch, commit=False)
    assert broker.groups.completed == [("billing", producer_id, False)]


@pytest_twisted.ensureDeferred
async def test_a_marker_for_an_offsets_partition_completes_its_groups_offsets():
    broker = Broker()
    code = await write_local_marker(broker, OFFSETS_TOPIC, 3, 77, 1, commit=True)
    assert code == ErrorCode.NONE and broker.groups.completed == [(3, 77, True)]

    assert await write_local_marker(broker, OFFSETS_TOPIC, DEFAULT_OFFSETS_PARTITIONS, 77, 1,
                                    commit=True) == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
    broker.groups.refuse_with = ErrorCode.NOT_COORDINATOR
    assert await write_local_marker(broker, OFFSETS_TOPIC, 3, 77, 1, commit=False) == (
        ErrorCode.NOT_COORDINATOR)
    assert broker.groups.completed == [(3, 77, True)]


@pytest_twisted.ensureDeferred
async def test_an_unreadable_record_makes_only_its_own_id_unavailable(brokers):
    store, make = brokers
    broker, coordinator = make()
    partition = coordinator.partition_of(TRANSACTIONAL_ID)
    damaged = next(f"damaged-{n}" for n in range(1000)
                   if coordinator.partition_of(f"damaged-{n}") == partition)
    garbage = b'{"producer_id": 5'
    await store.create(coordinator._path(damaged), garbage)
    broker.owned.add(partition)
    await coordinator.load_partition(partition)
    assert coordinator.is_loaded(partition)
    assert await coordinator.init_producer(TRANSACTIONAL_ID, TIMEOUT_MS, -1, -1) == (1001, 0)
    assert await refused_with(coordinator.init_producer(damaged, TIMEOUT_MS, -1, -1)
                              ) == ErrorCode.COORDINATOR_NOT_AVAILABLE
    assert (await store.get(coordinator._path(damaged))).value == garbage  # left as found


class FencedMarkers:
    """Every owner answers that it has seen a newer coordinator."""

    async def write(self, partitions, producer_id, producer_epoch, commit,
                    coordinator_epoch) -> None:
        raise KafkaError(ErrorCode.TRANSACTION_COORDINATOR_FENCED, "a newer coordinator wrote")


@pytest_twisted.ensureDeferred
async def test_a_replaced_coordinator_leaves_the_transaction_to_its_successor(brokers):
    store, make = brokers
    broker, coordinator = make()
    coordinator.remote_markers = FencedMarkers()
    partition = coordinator.partition_of(TRANSACTIONAL_ID)
    broker.owned.add(partition)
    await coordinator.load_partition(partition)
    producer_id, epoch = await coordinator.init_producer(TRANSACTIONAL_ID, TIMEOUT_MS, -1, -1)
    await coordinator.add_partitions(TRANSACTIONAL_ID, producer_id, epoch, [("orders", 1)])

    # The client is told to find the coordinator again (retriable), not that it failed...
    assert await refused_with(coordinator.end_transaction(
        TRANSACTIONAL_ID, producer_id, epoch, commit=True)) == ErrorCode.NOT_COORDINATOR
    # ...and this coordinator does not record the end: its successor's record stands.
    found = await store.get(coordinator._path(TRANSACTIONAL_ID))
    assert Transaction.from_json(TRANSACTIONAL_ID, found.value, found.version).state == (
        PREPARE_COMMIT)
