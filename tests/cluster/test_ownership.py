"""ZooKeeperOwnership on embedded metadata sessions (no ZooKeeper, no sockets): registration,
designation, claims and leader epochs, hand-off, session loss, the lease, damaged records."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer, task

from kop.cluster.ownership import ZooKeeperOwnership, allocate_broker_id
from kop.cluster.records import BROKERS_PATH, BrokerRecord, ClaimRecord
from kop.cluster.registration import ClusterError
from kop.errors import KafkaError
from kop.naming import Namespace
from kop.ownership import BrokerAddress
from storage.metadata import EmbeddedStore
from tests.cluster.sessions import ExpirableStore, eventually
from wire.generated.error_codes import ErrorCode

SESSION_TIMEOUT = 4.0


@pytest.fixture
def cluster(tmp_path):
    """make(broker_id, **options) -> a started ZooKeeperOwnership with its own session."""
    made: list[tuple[ZooKeeperOwnership, EmbeddedStore]] = []

    async def make(broker_id: int, **options) -> ZooKeeperOwnership:
        store = ExpirableStore(tmp_path)
        ownership = ZooKeeperOwnership(
            store, lambda: BrokerAddress(broker_id, "127.0.0.1", 9000 + broker_id),
            Namespace(), session_timeout=options.pop("session_timeout", SESSION_TIMEOUT),
            **options)
        made.append((ownership, store))
        await ownership.start()
        return ownership

    yield make
    for ownership, store in made:
        if not store.closed:
            pytest_twisted.blockon(defer.ensureDeferred(ownership.stop()))
            pytest_twisted.blockon(store.close())


def store_of(ownership: ZooKeeperOwnership) -> ExpirableStore:
    return ownership._store  # the session this broker uses (tests only)


def partition_designated_to(ownership: ZooKeeperOwnership, broker_id: int,
                            topic: str = "orders") -> int:
    return next(p for p in range(1000) if ownership.designated_owner(topic, p) == broker_id)


async def everyone_sees(brokers: list[ZooKeeperOwnership], count: int) -> None:
    await eventually(lambda: all(len(b.live_brokers()) == count for b in brokers),
                     message=f"{count} live brokers")


@pytest_twisted.ensureDeferred
async def test_live_brokers_and_one_designated_owner(cluster):
    one, two = await cluster(1), await cluster(2)
    await everyone_sees([one, two], 2)
    assert [(b.node_id, b.port) for b in one.live_brokers()] == [(1, 9001), (2, 9002)]
    for partition in range(20):
        assert one.leader_of("orders", partition) == two.leader_of("orders", partition)
        assert one.owns("orders", partition) != two.owns("orders", partition)
        assert one.owns("orders", partition) == (one.leader_of("orders", partition) == 1)


@pytest_twisted.ensureDeferred
async def test_claims_epochs_and_hand_off(cluster):
    one, two = await cluster(1), await cluster(2)
    await everyone_sees([one, two], 2)
    partition = partition_designated_to(one, 1)
    await two.follow_topic("orders")

    with pytest.raises(KafkaError) as refused:
        await two.acquire("orders", partition)  # not designated to broker 2
    assert refused.value.code == ErrorCode.NOT_LEADER_OR_FOLLOWER

    assert await one.acquire("orders", partition) == 0
    assert await one.acquire("orders", partition) == 0  # held already: same claim
    await eventually(lambda: two.claim_of("orders", partition) == ClaimRecord(
        1, 0, one.registration.incarnation), message="the claim seen by broker 2")
    assert two.leader_of("orders", partition) == 1
    assert two.leader_epoch_of("orders", partition) == 0
    assert not two.owns("orders", partition)

    # Hand-off: stop serving, release; a later claim gets a higher epoch.
    one.begin_handoff("orders", partition)
    assert not one.owns("orders", partition)
    await one.release("orders", partition)
    await eventually(lambda: not two.is_claimed("orders", partition))
    assert two.leader_epoch_of("orders", partition) == 0  # never goes back meanwhile
    assert await one.acquire("orders", partition) == 1

    # The holder's session ends: the other broker becomes the designated owner and takes over.
    await one.stop()
    await store_of(one).close()
    await everyone_sees([two], 1)
    await eventually(lambda: not two.is_claimed("orders", partition))
    assert two.owns("orders", partition)
    assert await two.acquire("orders", partition) == 2


@pytest_twisted.ensureDeferred
async def test_a_claim_race_has_one_winner(cluster):
    one = await cluster(1)
    partition = partition_designated_to(one, 1)
    # Two openers at once share one claim.
    first, second = one.acquire("orders", partition), one.acquire("orders", partition)
    assert await first == await second == 0
    # A claim already present (made by a session this broker cannot see yet) is respected.
    other = ExpirableStore(store_of(one).directory)
    try:
        taken = partition_designated_to(one, 1, topic="payments")
        await other.create(one.paths.claim("payments", taken),
                           ClaimRecord(7, 3, "x").to_json(), ephemeral=True)
        with pytest.raises(KafkaError):
            await one.acquire("payments", taken)
        assert not one.holds("payments", taken)
    finally:
        await other.close()


@pytest_twisted.ensureDeferred
async def test_session_loss_drops_every_claim_then_registers_again(cluster):
    one, two = await cluster(1), await cluster(2)
    await everyone_sees([one, two], 2)
    mine = [p for p in range(40) if one.designated_owner("orders", p) == 1][:3]
    for partition in mine:
        await one.acquire("orders", partition)
    lost: list[tuple[str, int]] = []
    one.add_lost_listener(lambda topic, partition: lost.append((topic, partition)))
    old_incarnation = one.registration.incarnation

    await store_of(one).expire()
    assert sorted(lost) == [("orders", p) for p in mine]  # at once, before anything else
    assert one.held() == []
    assert not any(one.owns("orders", p) for p in mine)
    await eventually(lambda: one.registration.registered, message="registered again")
    assert one.registration.incarnation != old_incarnation
    await everyone_sees([one, two], 2)
    # It claims again only through a fresh claim, with a higher epoch.
    assert await one.acquire("orders", mine[0]) == 1


@pytest_twisted.ensureDeferred
async def test_nothing_is_served_once_the_lease_lapses(cluster):
    timers, now = task.Clock(), task.Clock()
    one = await cluster(1, reactor=timers, monotonic=now.seconds)
    partition = partition_designated_to(one, 1)
    await one.acquire("orders", partition)
    assert one.owns("orders", partition)
    # A long stop (SIGSTOP): time passes, and on waking requests may be handled before any
    # timer runs or ZooKeeper says anything.
    now.advance(SESSION_TIMEOUT * 0.8)
    assert not one.owns("orders", partition)
    for topic, index in [("orders", partition), ("payments", 0)]:  # held or not
        with pytest.raises(KafkaError) as refused:
            await one.acquire(topic, index)
        assert refused.value.code == ErrorCode.NOT_LEADER_OR_FOLLOWER
    # The renewal timer runs: the registration is still there, so the session lives on.
    timers.advance(SESSION_TIMEOUT / 5)
    await eventually(lambda: one.owns("orders", partition))


@pytest_twisted.ensureDeferred
async def test_a_leaving_broker_gets_nothing_new(cluster):
    one, two = await cluster(1), await cluster(2)
    await everyone_sees([one, two], 2)
    await one.leave()
    await eventually(lambda: all(two.designated_owner("orders", p) == 2 for p in range(50)))
    assert not one.owns("orders", partition_designated_to(two, 2))
    assert [b.node_id for b in two.live_brokers()] == [1, 2]  # still live until it stops


@pytest_twisted.ensureDeferred
async def test_stop_releases_claims_and_deregisters(cluster):
    one = await cluster(1)
    partition = partition_designated_to(one, 1)
    await one.acquire("orders", partition)
    store = store_of(one)
    await one.stop()
    assert await store.children(one.paths.claims_of("orders")) == []
    assert await store.children(BROKERS_PATH) == []


@pytest_twisted.ensureDeferred
async def test_a_broker_id_in_use_is_waited_for_then_refused(cluster):
    await cluster(1)
    with pytest.raises(ClusterError, match="broker id 1"):
        await cluster(1, registration_wait=0.3)


@pytest_twisted.ensureDeferred
async def test_a_restarted_broker_waits_for_its_earlier_life_to_go(cluster):
    first = await cluster(1)
    restarting = defer.ensureDeferred(cluster(1, registration_wait=20))
    await first.stop()  # the earlier life's registration goes
    restarted = await restarting
    assert restarted.registration.registered
    assert [b.node_id for b in restarted.live_brokers()] == [1]


@pytest_twisted.ensureDeferred
async def test_damaged_claim_and_epoch_records(cluster):
    one = await cluster(1)
    store = store_of(one)
    partition = partition_designated_to(one, 1)
    other = ExpirableStore(store.directory)
    try:
        # An unreadable claim: the partition is held by someone, but nobody to route to.
        await other.create(one.paths.claim("orders", partition), b"garbage", ephemeral=True)
        await one.follow_topic("orders")
        assert one.is_claimed("orders", partition) and one.claim_of("orders", partition) is None
        assert not one.owns("orders", partition)
        assert one.leader_of("orders", partition) == 1  # the designated owner, for now
    finally:
        await other.close()  # its session ends: the damaged claim goes with it
    await eventually(lambda: not one.is_claimed("orders", partition))
    # A damaged leader-epoch counter is replaced by an epoch above every one seen.
    await store.create(one.paths.leader_epoch("orders", partition), b"{not json")
    assert await one.acquire("orders", partition) == 0
    assert (await store.get(one.paths.leader_epoch("orders", partition))).value == b'{"epoch": 0}'


@pytest_twisted.ensureDeferred
async def test_allocated_broker_ids_are_unique(tmp_path):
    store = EmbeddedStore(tmp_path)
    try:
        ids = [await allocate_broker_id(store) for _ in range(3)]
        assert ids == [1001, 1002, 1003]
        await store.set("/broker-id-counter", b"oops")
        with pytest.raises(ClusterError, match="--broker-id"):
            await allocate_broker_id(store)
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_unreadable_registrations_are_left_out_of_the_live_set(cluster):
    one = await cluster(1)
    other = ExpirableStore(store_of(one).directory)
    try:
        await other.create(f"{BROKERS_PATH}/77", b"not json", ephemeral=True)
        await other.create(f"{BROKERS_PATH}/lock", b"", ephemeral=True)
        await other.create(f"{BROKERS_PATH}/2", BrokerRecord(2, "h", 9, "x").to_json(),
                           ephemeral=True)
        await eventually(lambda: [b.node_id for b in one.live_brokers()] == [1, 2])
        assert 77 not in [one.designated_owner("orders", p) for p in range(100)]
    finally:
        await other.close()
