"""PartitionBalancer with real ownership on embedded metadata sessions and a recording fake
broker: partitions (and the internal topics' partitions, loaded by coordinators) end up with
their designated owners, move cleanly when a broker joins (closed before the claim is
released), and come back after a session loss."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import pytest_twisted
from twisted.internet import defer

from kop.cluster.balancer import PartitionBalancer
from kop.cluster.ownership import ZooKeeperOwnership
from kop.groups import OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC
from kop.naming import Namespace
from kop.ownership import BrokerAddress
from tests.cluster.sessions import ExpirableStore, eventually

TOPIC, PARTITIONS, COORDINATOR_PARTITIONS = "orders", 12, 4
INTERNAL_TOPICS = (OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC)


@dataclass(frozen=True)
class FakeTopic:
    name: str
    partitions: int


class FakeTopics:
    def all(self) -> list[FakeTopic]:
        return [FakeTopic(TOPIC, PARTITIONS)]


class FakePartitions:
    """Records opens and closes; claims and releases like the real PartitionManager."""

    def __init__(self, ownership: ZooKeeperOwnership) -> None:
        self.ownership = ownership
        self.open: dict[tuple[str, int], int] = {}
        self.closed_while_held: list[tuple[str, int]] = []
        ownership.add_lost_listener(lambda t, p: self.open.pop((t, p), None))

    def cached(self, topic: str, partition: int):
        return self.open.get((topic, partition))

    def get(self, topic: str, partition: int) -> defer.Deferred:
        async def opening() -> int:
            epoch = await self.ownership.acquire(topic, partition)
            self.open[(topic, partition)] = epoch
            return epoch

        return defer.ensureDeferred(opening())

    async def close(self, topic: str, partition: int) -> None:
        if self.open.pop((topic, partition), None) is not None:
            if self.ownership.holds(topic, partition):
                self.closed_while_held.append((topic, partition))
            await self.ownership.release(topic, partition)


@dataclass
class FakeCoordinator:
    """The group or transaction coordinator as the balancer sees it: partitions it loads."""

    partition_count: int = COORDINATOR_PARTITIONS
    loaded: set[int] = field(default_factory=set)

    def load_partition(self, index: int) -> defer.Deferred[None]:
        self.loaded.add(index)
        return defer.succeed(None)

    async def unload_partition(self, index: int) -> None:
        self.loaded.discard(index)

    def partition_status(self, index: int):
        return "loaded" if index in self.loaded else None

    def is_loaded(self, index: int) -> bool:
        return index in self.loaded


class FakeBroker:
    def __init__(self, ownership: ZooKeeperOwnership) -> None:
        self.topics = FakeTopics()
        self.partitions = FakePartitions(ownership)
        self.groups = FakeCoordinator()
        self.transactions = FakeCoordinator()
        self.coordinators = {OFFSETS_TOPIC: self.groups, TRANSACTION_STATE_TOPIC: self.transactions}


@dataclass
class Member:
    ownership: ZooKeeperOwnership
    broker: FakeBroker
    balancer: PartitionBalancer
    store: ExpirableStore


@pytest.fixture
def members(tmp_path):
    made: list[Member] = []

    async def join(broker_id: int) -> Member:
        store = ExpirableStore(tmp_path)
        ownership = ZooKeeperOwnership(
            store, lambda: BrokerAddress(broker_id, "127.0.0.1", 9000 + broker_id),
            Namespace(), session_timeout=4.0, claim_before_serving=INTERNAL_TOPICS)
        broker = FakeBroker(ownership)
        balancer = PartitionBalancer(broker, ownership, interval=0.2)
        await ownership.start()
        balancer.start()
        member = Member(ownership, broker, balancer, store)
        made.append(member)
        return member

    yield join
    for member in made:
        pytest_twisted.blockon(defer.ensureDeferred(member.balancer.stop()))
        pytest_twisted.blockon(defer.ensureDeferred(member.ownership.stop()))
        pytest_twisted.blockon(member.store.close())


def everything() -> list[tuple[str, int]]:
    return ([(TOPIC, p) for p in range(PARTITIONS)]
            + [(topic, n) for topic in INTERNAL_TOPICS for n in range(COORDINATOR_PARTITIONS)])


def settled(group: list[Member]) -> bool:
    """Each partition open (or loaded) on exactly its designated owner, and nowhere else."""
    for topic, partition in everything():
        for member in group:
            designated = member.ownership.designated_owner(topic, partition)
            should = designated == member.ownership.broker_id
            if topic in INTERNAL_TOPICS:
                has = partition in member.broker.coordinators[topic].loaded
            else:
                has = (topic, partition) in member.broker.partitions.open
            if has != should or member.ownership.holds(topic, partition) != should:
                return False
    return True


@pytest_twisted.ensureDeferred
async def test_partitions_follow_the_live_set(members):
    one, two = await members(1), await members(2)
    await eventually(lambda: settled([one, two]), message="two brokers settle")
    assert one.broker.partitions.open and two.broker.partitions.open

    three = await members(3)
    await eventually(lambda: settled([one, two, three]), message="three brokers settle")
    moved = three.broker.partitions.open.keys()
    assert moved, "the new broker received a share"
    handed_off = one.broker.partitions.closed_while_held + two.broker.partitions.closed_while_held
    assert set(moved) <= set(handed_off)  # each was closed by its old owner before release
    assert all(epoch >= 1 for epoch in three.broker.partitions.open.values())


@pytest_twisted.ensureDeferred
async def test_a_broker_that_lost_its_session_takes_back_only_its_own(members):
    one, two = await members(1), await members(2)
    await eventually(lambda: settled([one, two]))
    mine = dict(one.broker.partitions.open)
    await one.store.expire()
    assert not one.broker.partitions.open  # dropped at once
    assert not one.broker.groups.loaded and not one.broker.transactions.loaded
    await eventually(lambda: settled([one, two]), message="settled again")
    assert one.broker.partitions.open.keys() == mine.keys()
    assert all(one.broker.partitions.open[key] > epoch for key, epoch in mine.items())
