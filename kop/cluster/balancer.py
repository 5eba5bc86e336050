"""PartitionBalancer: makes a broker hold the partitions designated to it, and only those.

Whenever the live set, the known claims or the topic catalogue change (and every
`RECONCILE_SECONDS` as a safety net), each partition gets one of these decisions (`plan`):

- CLAIM: designated here and nobody holds it — claim it and open it now (eager takeover:
  a dead broker's partitions, and the consumer-offsets partitions whose groups must load
  before their members come back, do not wait for a first request);
- KEEP: held and still designated here — make sure it is open;
- HAND_OFF: held but designated elsewhere (a broker joined) or gone (topic deleted) — stop
  serving it, close it cleanly (state saved, ledger sealed), then release the claim, so the
  new owner's open finds a sealed ledger instead of fencing one;
- nothing: another broker's business.

Ordinary partitions are opened through the broker's PartitionManager, which claims them
(`Ownership.acquire`) before opening. The partitions of the internal topics are loaded by
coordinators, which do not claim: `__consumer_offsets` by the group coordinator,
`__transaction_state` by the transaction coordinator. For those the balancer claims first,
then has the coordinator load the partition (and unload it before releasing the claim, or at
once when the claim is lost).
"""

from __future__ import annotations

import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime

from kop.cluster.ownership import PartitionKey, ZooKeeperOwnership
from kop.errors import KafkaError
from kop.groups import OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC
from wire.generated.error_codes import ErrorCode

log = logging.getLogger(__name__)

RECONCILE_SECONDS = 1.0
# Partitions opened, closed or claimed at once (each open recovers a ledger: a few round trips).
PARALLEL_MOVES = 8


class Action(enum.Enum):
    CLAIM = "claim"
    KEEP = "keep"
    HAND_OFF = "hand off"


def decide(me: int, designated: int | None, held: bool, claimed: bool) -> Action | None:
    """What broker `me` should do about one partition (None: nothing)."""
    if held:
        return Action.HAND_OFF if designated is not None and designated != me else Action.KEEP
    if designated == me and not claimed:
        return Action.CLAIM
    return None


def plan(me: int, wanted: Iterable[PartitionKey], held: Iterable[PartitionKey],
         designated: Callable[[str, int], int | None],
         claimed: Callable[[str, int], bool]) -> dict[PartitionKey, Action]:
    """Decisions for every partition that exists (`wanted`) or that this broker holds; held
    partitions that no longer exist are handed off (closed and released)."""
    held_set = set(held)
    decisions: dict[PartitionKey, Action] = {}
    for key in wanted:
        action = decide(me, designated(*key), key in held_set, claimed(*key))
        if action is not None:
            decisions[key] = action
    for key in held_set:
        decisions.setdefault(key, Action.HAND_OFF)
    return decisions


@dataclass(frozen=True)
class CoordinatorTopic:
    """An internal topic whose partitions a coordinator loads and unloads."""

    partition_count: Callable[[], int]
    load: Callable[[int], Awaitable[None]]
    unload: Callable[[int], Awaitable[None]]
    is_loaded: Callable[[int], bool]


def coordinator_topics(broker: Any) -> dict[str, CoordinatorTopic]:
    """The internal topics of a broker, by name."""
    groups, transactions = broker.groups, broker.transactions
    return {
        OFFSETS_TOPIC: CoordinatorTopic(
            lambda: groups.partition_count, groups.load_partition, groups.unload_partition,
            lambda index: groups.partition_status(index) is not None),
        TRANSACTION_STATE_TOPIC: CoordinatorTopic(
            lambda: transactions.partition_count, transactions.load_partition,
            transactions.unload_partition, transactions.is_loaded),
    }


class PartitionBalancer:
    def __init__(self, broker: Any, ownership: ZooKeeperOwnership, *,
                 reactor: IReactorTime | None = None,
                 interval: float = RECONCILE_SECONDS, parallel: int = PARALLEL_MOVES) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor  # type: ignore[assignment]
        self._reactor = reactor
        self._broker = broker
        self._coordinated = coordinator_topics(broker)
        self._ownership = ownership
        self._interval = interval
        self._moves = defer.DeferredSemaphore(parallel)
        self._busy: dict[PartitionKey, defer.Deferred[None]] = {}
        self._loop: task.LoopingCall | None = None
        self._running: defer.Deferred[None] | None = None
        self._again = False
        self._stopped = True
        ownership.add_change_listener(self.wake)
        ownership.add_lost_listener(self._ownership_lost)

    def start(self) -> None:
        self._stopped = False
        self._loop = task.LoopingCall(self.wake)
        self._loop.clock = self._reactor
        self._loop.start(self._interval, now=True)

    async def stop(self) -> None:
        """Stop moving partitions; waits for the moves in progress."""
        self._stopped = True
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        if self._running is not None:
            await self._running
        pending = list(self._busy.values())
        if pending:
            await defer.DeferredList(pending)

    def wake(self) -> None:
        """Look at every partition again soon (calls made while a look runs coalesce)."""
        if self._stopped:
            return
        if self._running is not None:
            self._again = True
            return
        self._running = defer.ensureDeferred(self._reconcile_until_quiet())

        def finished(result: object) -> None:
            self._running = None

        self._running.addErrback(lambda failure: log.error(
            "balancing partitions failed: %s", failure.getTraceback()))
        self._running.addBoth(finished)

    def busy(self) -> set[PartitionKey]:
        """Partitions being claimed, opened or handed off right now."""
        return set(self._busy)

    async def _reconcile_until_quiet(self) -> None:
        while True:
            self._again = False
            await self._reconcile()
            if not self._again or self._stopped:
                return

    def _wanted(self) -> list[PartitionKey]:
        topics = self._broker.topics.all()
        wanted = [(info.name, index) for info in topics for index in range(info.partitions)]
        for name, internal in self._coordinated.items():
            wanted += [(name, index) for index in range(internal.partition_count())]
        return wanted

    async def _reconcile(self) -> None:
        ownership = self._ownership
        if not ownership.serving():
            return
        wanted = self._wanted()
        topics = {topic for topic, _ in wanted}
        for topic in ownership.followed_topics() - topics:
            ownership.unfollow_topic(topic)
        following = [ownership.follow_topic(topic) for topic in topics]
        await defer.DeferredList(following, consumeErrors=True)
        if self._stopped or not ownership.serving():
            return
        decisions = plan(ownership.broker_id, wanted, ownership.held(),
                         ownership.designated_owner, ownership.is_claimed)
        for key, action in sorted(decisions.items()):
            if key not in self._busy:
                self._start_move(key, action)

    def _start_move(self, key: PartitionKey, action: Action) -> None:
        moves = {Action.CLAIM: self._open, Action.KEEP: self._open,
                 Action.HAND_OFF: self._hand_off}
        if action is Action.KEEP and self._is_open(key):
            return
        moving = self._moves.run(lambda: defer.ensureDeferred(moves[action](key)))
        self._busy[key] = moving

        def failed(failure: Any) -> None:
            # Losing a race for a claim is routine (views of the store lag a little).
            routine = failure.check(KafkaError) and \
                failure.value.code == ErrorCode.NOT_LEADER_OR_FOLLOWER
            log.log(logging.INFO if routine else logging.WARNING, "could not %s %s-%d: %s",
                    action.value, key[0], key[1], failure.getErrorMessage())

        def done(result: object) -> None:
            self._busy.pop(key, None)

        moving.addErrback(failed)
        moving.addBoth(done)

    def _is_open(self, key: PartitionKey) -> bool:
        topic, partition = key
        internal = self._coordinated.get(topic)
        if internal is not None:
            return internal.is_loaded(partition)
        return self._broker.partitions.cached(topic, partition) is not None

    async def _open(self, key: PartitionKey) -> None:
        topic, partition = key
        if self._stopped or not self._ownership.serving():
            return
        internal = self._coordinated.get(topic)
        if internal is not None:
            await self._ownership.acquire(topic, partition)
            await internal.load(partition)
        else:
            await self._broker.partitions.get(topic, partition)  # claims it first

    async def _hand_off(self, key: PartitionKey) -> None:
        topic, partition = key
        self._ownership.begin_handoff(topic, partition)
        internal = self._coordinated.get(topic)
        if internal is not None:
            await internal.unload(partition)
        else:
            partitions = self._broker.partitions
            if partitions.cached(topic, partition) is None:
                # Let an open in progress finish (if it fails, it released the claim itself).
                with contextlib.suppress(Exception):
                    await partitions.get(topic, partition)
            await partitions.close(topic, partition)  # saves state, seals, releases
        await self._ownership.release(topic, partition)
        log.info("handed %s-%d off to broker %s", topic, partition,
                 self._ownership.designated_owner(topic, partition))

    def _ownership_lost(self, topic: str, partition: int) -> None:
        # The PartitionManager discards ordinary partitions itself.
        internal = self._coordinated.get(topic)
        if internal is not None:
            defer.ensureDeferred(internal.unload(partition)).addErrback(
                lambda failure: log.warning("unloading %s-%d failed: %s", topic, partition,
                                            failure.getErrorMessage()))
