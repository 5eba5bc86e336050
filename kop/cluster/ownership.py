"""ZooKeeperOwnership: which broker serves which partition, agreed through the metadata store.

Three things are kept in the store (layout in kop/cluster/records.py):

- Registration (kop/cluster/registration.py): each broker holds an ephemeral /brokers/<id>
  and watches the others, so all know the live set; a broker whose session ends drops out.
- Designation: the owner a partition *should* have is computed by every broker from the live
  set (rendezvous hashing, kop/cluster/placement.py) — no coordination needed, and a change
  of the live set moves only the partitions of the broker that came or went.
- Claims: the owner a partition *has* is whoever holds its ephemeral claim node. A broker
  claims a partition before opening it (`acquire`) and deletes the claim after closing it
  (`release`); ZooKeeper deletes it when the holder's session ends. Each claim carries a
  leader epoch taken from a persistent per-partition counter bumped with compare-and-set,
  so epochs grow with every change of owner.

What this broker answers:
- `owns`: true while it holds the claim — or while it is the designated owner and nobody
  holds a claim, so the first request for a partition can open it (the open claims it
  first; losing that race answers NOT_LEADER_OR_FOLLOWER). Partitions of topics named in
  `claim_before_serving` (opened by code that does not call `acquire`) are owned only while
  the claim is held. Nothing is owned while the session lease has lapsed (kop/cluster/lease.py),
  while a partition is being handed off, or once the broker is leaving.
- `leader_of`: the claim holder if it is live, else the designated owner.

Session loss (ZooKeeper reports LOST): every claim died with the session, so every held
partition is dropped at once — the lost listeners discard them without writing — and the
broker registers again with a new session, claiming only what is designated to it again.
A long stop is caught earlier by the lease, and storage fencing backs both up: a new owner
opens the managed ledger with recovery, after which a stale writer cannot append.

Everything runs on the reactor thread; the store's watches and session events arrive there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from twisted.internet import defer
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

from kop.cluster.placement import designated_owner
from kop.cluster.records import (
    BROKER_ID_COUNTER_PATH,
    ClaimRecord,
    ClusterPaths,
    ClusterRecordError,
    decode_epoch,
    encode_epoch,
)
from kop.cluster.registration import BrokerRegistration, ClusterError
from kop.cluster.store_helpers import delete_if_mine, gather
from kop.errors import KafkaError
from kop.naming import Namespace
from kop.ownership import BrokerAddress, Ownership
from storage.metadata import (
    BadVersionError,
    ConnectionLossError,
    MetadataError,
    MetadataStore,
    NodeExistsError,
)
from wire.generated.error_codes import ErrorCode

log = logging.getLogger(__name__)

__all__ = ["ClusterError", "PartitionKey", "ZooKeeperOwnership", "allocate_broker_id"]

PartitionKey = tuple[str, int]
ChangeListener = Callable[[], None]

# Compare-and-set attempts on a leader-epoch counter before giving up for now.
EPOCH_ATTEMPTS = 10


async def allocate_broker_id(store: MetadataStore, first_id: int = 1000) -> int:
    """A broker id no other broker got from this function (a compare-and-set counter).

    Kafka hands out automatic ids from 1001 up, above the ids people configure by hand.
    """
    while True:
        found = await store.get(BROKER_ID_COUNTER_PATH)
        try:
            if found is None:
                await store.create(BROKER_ID_COUNTER_PATH, str(first_id + 1).encode())
                return first_id + 1
            current = int(found.value.decode() or first_id)
            await store.set(BROKER_ID_COUNTER_PATH, str(current + 1).encode(),
                            expected_version=found.version)
            return current + 1
        except (NodeExistsError, BadVersionError):
            continue  # another broker took one meanwhile
        except (UnicodeDecodeError, ValueError):
            raise ClusterError(f"{BROKER_ID_COUNTER_PATH} holds {found.value!r}, not a number; "
                               "fix it or pass --broker-id") from None


class ZooKeeperOwnership(Ownership):
    """Partition ownership through ephemeral claims in a metadata store (see the module
    docstring). Works on any MetadataStore with ephemeral nodes; clusters use ZooKeeper."""

    def __init__(self, store: MetadataStore, address: Callable[[], BrokerAddress],
                 namespace: Namespace, *, session_timeout: float | Callable[[], float],
                 claim_before_serving: Iterable[str] = (),
                 reactor: IReactorTime | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 registration_wait: float | None = None) -> None:
        super().__init__()
        self._store = store
        self.registration = BrokerRegistration(
            store, address, session_timeout=session_timeout, reactor=reactor,
            monotonic=monotonic, registration_wait=registration_wait)
        self.registration.add_session_lost_listener(self._drop_all_claims)
        self.paths = ClusterPaths(namespace)
        self._claim_before_serving = frozenset(claim_before_serving)
        self._stopping = False
        self._lapse_reported = False

        self._claims: dict[str, dict[int, ClaimRecord | None]] = {}  # observed, per topic
        self._claims_refresh: dict[str, int] = {}
        self._followed: dict[str, Callable[[], None]] = {}
        self._epochs_seen: dict[PartitionKey, int] = {}

        self._held: dict[PartitionKey, ClaimRecord] = {}  # the claims this broker holds
        self._acquiring: dict[PartitionKey, list[defer.Deferred[int]]] = {}
        self._handing_off: set[PartitionKey] = set()
        self._change_listeners: list[ChangeListener] = []
        self.registration.add_change_listener(self._changed)

    # -- identity -------------------------------------------------------------------------------

    @property
    def broker_id(self) -> int:
        return self.registration.broker_id

    @property
    def leaving(self) -> bool:
        return self.registration.leaving

    def serving(self) -> bool:
        """True while this broker may serve partitions at all."""
        registration = self.registration
        return registration.registered and not registration.leaving and not self._stopping \
            and registration.lease.valid()

    def add_change_listener(self, listener: ChangeListener) -> None:
        """`listener()` runs after the live set or the known claims change, and after this
        broker (re-)registered: time to look at what should move."""
        self._change_listeners.append(listener)

    def _changed(self) -> None:
        for listener in list(self._change_listeners):
            try:
                listener()
            except Exception:
                log.exception("ownership change listener failed")

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.registration.start()

    async def leave(self) -> None:
        """Start a graceful exit: others stop designating partitions to this broker and this
        broker serves nothing more; its claims stay until each partition is closed."""
        await self.registration.leave()

    async def stop(self) -> None:
        """Release every claim still held, then withdraw the registration."""
        self._stopping = True
        for topic, partition in list(self._held):
            await self.release(topic, partition)
        for cancel in self._followed.values():
            cancel()
        self._followed.clear()
        await self.registration.stop()

    def _drop_all_claims(self) -> None:
        """The session that held our claims is gone: stop serving every claimed partition
        now, without writing anything (another broker may already own it)."""
        held, self._held = self._held, {}
        self._handing_off.clear()
        for topic, partition in held:
            claims = self._claims.get(topic)
            if claims is not None:
                claims.pop(partition, None)
        for topic, partition in sorted(held):
            self._lost(topic, partition)

    # -- the live set -------------------------------------------------------------------------------

    def live_brokers(self) -> list[BrokerAddress]:
        return self.registration.live_brokers()

    def designated_owner(self, topic: str, partition: int) -> int | None:
        return designated_owner(topic, partition, self.registration.candidates())

    # -- claims seen in the store ---------------------------------------------------------------------

    def follow_topic(self, topic: str) -> defer.Deferred[None]:
        """Keep the claims of a topic's partitions in view (Metadata answers their holders)."""
        if topic in self._followed:
            return defer.succeed(None)
        path = self.paths.claims_of(topic)
        self._followed[topic] = self._store.watch(path, lambda _: self._claims_path_changed(topic))
        return defer.ensureDeferred(self._refresh_claims(topic))

    def unfollow_topic(self, topic: str) -> None:
        cancel = self._followed.pop(topic, None)
        if cancel is not None:
            cancel()
        self._claims.pop(topic, None)

    def followed_topics(self) -> set[str]:
        return set(self._followed)

    def _claims_path_changed(self, topic: str) -> None:
        if topic in self._followed:
            defer.ensureDeferred(self._refresh_claims(topic)).addErrback(
                lambda failure: log.warning("refreshing the claims of %s failed: %s", topic,
                                            failure.getErrorMessage()))

    async def _refresh_claims(self, topic: str) -> None:
        # Claims are never changed in place, only deleted and created again, possibly between
        # two looks at the children; so every value is read again each time.
        refresh = self._claims_refresh[topic] = self._claims_refresh.get(topic, 0) + 1
        path = self.paths.claims_of(topic)
        names = [name for name in await self._store.children(path) if name.isdigit()]
        found = await gather([self._store.get(f"{path}/{name}") for name in names])
        if refresh != self._claims_refresh.get(topic) or topic not in self._followed:
            return
        claims: dict[int, ClaimRecord | None] = {}
        for name, node in zip(names, found, strict=True):
            if node is None:
                continue
            partition = int(name)
            try:
                claim = ClaimRecord.from_json(node.value, f"{path}/{name}")
            except ClusterRecordError as exc:
                log.warning("unreadable claim (the partition stays unavailable until its "
                            "holder's session ends): %s", exc)
                claims[partition] = None
                continue
            claims[partition] = claim
            self._note_epoch((topic, partition), claim.epoch)
        self._claims[topic] = claims
        self._changed()

    def claim_of(self, topic: str, partition: int) -> ClaimRecord | None:
        """The claim known to exist on a partition (None: none known, or unreadable)."""
        return self._claims.get(topic, {}).get(partition)

    def is_claimed(self, topic: str, partition: int) -> bool:
        """True if a claim node is known to exist, readable or not, ours or not."""
        return (topic, partition) in self._held or partition in self._claims.get(topic, {})

    def _note_epoch(self, key: PartitionKey, epoch: int) -> None:
        if epoch > self._epochs_seen.get(key, -1):
            self._epochs_seen[key] = epoch

    # -- the Ownership interface ------------------------------------------------------------------------

    def leader_of(self, topic: str, partition: int) -> int | None:
        if (topic, partition) in self._held:
            return self.broker_id
        claim = self.claim_of(topic, partition)
        if claim is not None and claim.broker_id in self.registration.brokers():
            return claim.broker_id
        return self.designated_owner(topic, partition)

    def leader_epoch_of(self, topic: str, partition: int) -> int:
        key = (topic, partition)
        claim = self._held.get(key) or self.claim_of(topic, partition)
        if claim is not None:
            return claim.epoch
        # Unclaimed for now: the last epoch seen, so clients never see epochs go back.
        return self._epochs_seen.get(key, 0)

    def owns(self, topic: str, partition: int) -> bool:
        key = (topic, partition)
        self._note_lapsed_lease()
        if not self.serving():
            return False
        if key in self._handing_off:
            return False
        if key in self._held:
            return True
        if topic in self._claim_before_serving or self.is_claimed(topic, partition):
            return False
        return self.designated_owner(topic, partition) == self.broker_id

    def _note_lapsed_lease(self) -> None:
        """Say once per lapse why partitions held here are refused."""
        lease = self.registration.lease
        if lease.valid():
            self._lapse_reported = False
        elif self.registration.registered and self._held and not self._lapse_reported:
            self._lapse_reported = True
            log.warning("broker %d: no proof for %.1f s that its metadata session lives (a "
                        "long pause?): its session lease lapsed, refusing its %d partitions "
                        "until the session is confirmed", self.broker_id, lease.duration,
                        len(self._held))

    def holds(self, topic: str, partition: int) -> bool:
        return (topic, partition) in self._held

    def held(self) -> list[PartitionKey]:
        return sorted(self._held)

    async def acquire(self, topic: str, partition: int) -> int:
        key = (topic, partition)
        if not self.serving():
            raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER,
                             f"broker {self.broker_id} is not serving partitions right now")
        held = self._held.get(key)
        if held is not None:
            return held.epoch
        waiter: defer.Deferred[int] = defer.Deferred()
        waiters = self._acquiring.get(key)
        if waiters is not None:  # a claim of this partition is under way: share its outcome
            waiters.append(waiter)
            return await waiter
        self._check_may_claim(topic, partition)
        self._acquiring[key] = [waiter]
        claiming = defer.ensureDeferred(self._claim(topic, partition))
        claiming.addBoth(self._claim_finished, key)
        return await waiter

    def _claim_finished(self, result: int | Failure, key: PartitionKey) -> None:
        for waiter in self._acquiring.pop(key, []):
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)

    def _check_may_claim(self, topic: str, partition: int) -> None:
        if self.is_claimed(topic, partition):
            claim = self.claim_of(topic, partition)
            holder = "another broker" if claim is None else f"broker {claim.broker_id}"
            raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER,
                             f"{topic}-{partition} is claimed by {holder}")
        designated = self.designated_owner(topic, partition)
        if designated != self.broker_id:
            raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER,
                             f"{topic}-{partition} belongs to broker {designated}")

    async def _claim(self, topic: str, partition: int) -> int:
        registration = self.registration
        generation, incarnation = registration.session_generation, registration.incarnation
        epoch = await self._next_epoch(topic, partition)
        claim = ClaimRecord(self.broker_id, epoch, incarnation)
        path = self.paths.claim(topic, partition)
        try:
            await self._store.create(path, claim.to_json(), ephemeral=True)
        except (NodeExistsError, ConnectionLossError):
            found = await self._store.get(path)
            if found is None or _claim_or_none(found.value, path) != claim:
                self._claims_path_changed(topic)
                raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER,
                                 f"{topic}-{partition} was claimed by another broker") from None
        if generation != registration.session_generation or not registration.registered:
            # The session ended while we claimed: the claim is gone with it, or (created
            # through the next session) is not ours to keep.
            await delete_if_mine(self._store, path,
                                 lambda data: _claim_or_none(data, path) == claim)
            raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER,
                             f"the metadata session ended while claiming {topic}-{partition}")
        self._held[(topic, partition)] = claim
        self._note_epoch((topic, partition), epoch)
        if topic in self._claims:
            self._claims[topic][partition] = claim
        log.info("broker %d claimed %s-%d at leader epoch %d", self.broker_id, topic,
                 partition, epoch)
        return epoch

    async def _next_epoch(self, topic: str, partition: int) -> int:
        """Bump the partition's persistent leader-epoch counter; the new value."""
        key = (topic, partition)
        path = self.paths.leader_epoch(topic, partition)
        for _ in range(EPOCH_ATTEMPTS):
            found = await self._store.get(path)
            try:
                if found is None:
                    epoch = self._epochs_seen.get(key, -1) + 1
                    await self._store.create(path, encode_epoch(epoch))
                    return epoch
                try:
                    epoch = decode_epoch(found.value, path) + 1
                except ClusterRecordError as exc:
                    # Repair rather than refuse: any epoch above every one seen will do.
                    epoch = self._epochs_seen.get(key, -1) + 1
                    log.error("%s; replacing it with leader epoch %d", exc, epoch)
                await self._store.set(path, encode_epoch(epoch), expected_version=found.version)
                return epoch
            except (NodeExistsError, BadVersionError, ConnectionLossError):
                continue  # another broker bumped it meanwhile (or we cannot tell): read again
        raise KafkaError(ErrorCode.NOT_LEADER_OR_FOLLOWER,
                         f"the leader epoch of {topic}-{partition} kept changing")

    def begin_handoff(self, topic: str, partition: int) -> None:
        """Stop serving a held partition that is about to be closed and released."""
        if (topic, partition) in self._held:
            self._handing_off.add((topic, partition))

    async def release(self, topic: str, partition: int) -> None:
        key = (topic, partition)
        self._handing_off.discard(key)
        claim = self._held.pop(key, None)
        if claim is None or self._store.closed:
            return  # not ours, or gone with the session already
        path = self.paths.claim(topic, partition)
        claims = self._claims.get(topic)
        if claims is not None and claims.get(partition) == claim:
            del claims[partition]
        try:
            await delete_if_mine(self._store, path,
                                 lambda data: _claim_or_none(data, path) == claim)
        except MetadataError as exc:
            log.warning("could not delete the claim on %s-%d (it ends with the session): %s",
                        topic, partition, exc)
            return
        log.info("broker %d released %s-%d", self.broker_id, topic, partition)



def _claim_or_none(data: bytes, where: str) -> ClaimRecord | None:
    try:
        return ClaimRecord.from_json(data, where)
    except ClusterRecordError:
        return None
