"""The transaction coordinator: transactional ids, producer epochs, commit and abort.

A transactional producer calls InitProducerId with its transactional id (fencing any older
incarnation: its epoch is bumped and an open transaction of the old one is aborted), adds
partitions (AddPartitionsToTxn) and consumer-group offsets (AddOffsetsToTxn) to its
transaction, produces, and ends it (EndTxn). Ending writes a marker (commit or abort control
batch) into every partition of the transaction and completes the group offsets, then the
transaction is complete. Transactions open longer than their timeout are aborted.

State lives in the metadata store, one record per transactional id under
/transactions/<tenant>/<encoded id>, changed with compare-and-set, so a restarted broker (or
another broker taking over) continues — a transaction found half-ended on load is finished.

Which broker coordinates an id: the owner of the id's `__transaction_state` partition, as in
Kafka. The coordinator serves a partition's ids only while it has *loaded* the partition
(`load_partition`: read its ids, finish what was left half-ended), which it does once it owns
the partition — at start in standalone mode, after claiming it in cluster mode (the balancer
claims these partitions like the offsets partitions, kop/cluster/balancer.py). When the
partition moves away or its claim is lost, `unload_partition` refuses new requests for its
ids, waits for the ones in progress, and forgets what it cached: two brokers never
coordinate one id at once, and a coordinator that gets a partition back reads it afresh.

Ending a transaction writes a marker into each of its partitions (those owned elsewhere
through `remote_markers`, cluster mode) and completes its consumer-group offsets: in
standalone mode directly in the group coordinator; in cluster mode as Kafka does, with a
marker for the group's `__consumer_offsets` partition sent to that partition's owner (the
group's coordinator, maybe another broker; kop/handlers/txn_markers.py).
"""

from __future__ import annotations

import json
import logging
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from twisted.internet import defer, task

from kop.errors import KafkaError
from kop.groups.placement import (
    DEFAULT_TRANSACTION_STATE_PARTITIONS,
    OFFSETS_TOPIC,
    TRANSACTION_STATE_TOPIC,
    coordinator_partition,
)
from kop.handlers.common import owned_partition
from storage.metadata import BadVersionError, MetadataStore, NodeExistsError
from wire.generated.error_codes import ErrorCode

log = logging.getLogger(__name__)

MAX_EPOCH = 32767
EXPIRY_CHECK_SECONDS = 1.0
RETRY_EVERY_TICKS = 10  # every 10 expiry checks, try again to finish half-ended transactions

EMPTY, ONGOING = "Empty", "Ongoing"
PREPARE_COMMIT, PREPARE_ABORT = "PrepareCommit", "PrepareAbort"
COMPLETE_COMMIT, COMPLETE_ABORT = "CompleteCommit", "CompleteAbort"
ENDING = (PREPARE_COMMIT, PREPARE_ABORT)


@dataclass(frozen=True)
class Transaction:
    transactional_id: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: str = EMPTY
    partitions: frozenset[tuple[str, int]] = frozenset()
    groups: frozenset[str] = frozenset()
    started_ms: int = -1
    version: int = -1  # metadata-store version; -1 = not stored yet

    def to_json(self) -> bytes:
        return json.dumps({
            "producer_id": self.producer_id, "producer_epoch": self.producer_epoch,
            "timeout_ms": self.timeout_ms, "state": self.state,
            "partitions": sorted([t, p] for t, p in self.partitions),
            "groups": sorted(self.groups), "started_ms": self.started_ms,
        }).encode()

    @classmethod
    def from_json(cls, transactional_id: str, data: bytes, version: int) -> Transaction:
        record = json.loads(data)
        return cls(transactional_id, record["producer_id"], record["producer_epoch"],
                   record["timeout_ms"], record["state"],
                   frozenset((t, p) for t, p in record["partitions"]),
                   frozenset(record["groups"]), record["started_ms"], version)


@dataclass
class _Keyed:
    locks: dict[str, defer.DeferredLock] = field(default_factory=dict)

    def lock(self, key: str) -> defer.DeferredLock:
        return self.locks.setdefault(key, defer.DeferredLock())


class TransactionCoordinator:
    def __init__(self, broker, store: MetadataStore, max_timeout_ms: int,
                 clock: Callable[[], float] = time.time) -> None:
        self._broker = broker
        self._store = store
        self._max_timeout_ms = max_timeout_ms
        self._clock = clock
        self._root = f"/transactions/{broker.config.namespace.tenant}"
        self.partition_count = DEFAULT_TRANSACTION_STATE_PARTITIONS
        self._cache: dict[str, Transaction] = {}
        self._locks = _Keyed()
        self._loaded: set[int] = set()  # partitions whose ids this broker coordinates now
        # Kafka's coordinator epoch, per partition being loaded or loaded: the leader epoch of
        # this broker's claim on it when the load began (see _finish).
        self._epochs: dict[int, int] = {}
        self._loading: dict[int, object] = {}  # partition -> token of the load under way
        self._expiry: task.LoopingCall | None = None
        self._ticks = 0
        # Writes markers into partitions other brokers own (cluster mode: kop/cluster/markers.py);
        # without it, every partition of a transaction must be owned here.
        self.remote_markers = None

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        for partition in range(self.partition_count):
            if self._broker.owns(TRANSACTION_STATE_TOPIC, partition):
                await self.load_partition(partition)
        self._expiry = task.LoopingCall(self._abort_expired)
        self._expiry.start(EXPIRY_CHECK_SECONDS, now=False)

    async def stop(self) -> None:
        """Stop expiring transactions and let every partition go, after the requests in
        progress (before the broker gives up its claims)."""
        if self._expiry is not None and self._expiry.running:
            self._expiry.stop()
        for partition in sorted(self._loaded | set(self._loading)):
            await self.unload_partition(partition)

    # -- the partitions coordinated here ----------------------------------------------------------

    def partition_of(self, transactional_id: str) -> int:
        """The `__transaction_state` partition whose owner coordinates the id."""
        return coordinator_partition(transactional_id, self.partition_count)

    def is_loaded(self, partition: int) -> bool:
        return partition in self._loaded

    async def load_partition(self, partition: int) -> None:
        """Coordinate the ids of a partition this broker now owns: read them from the store,
        then serve them; transactions a previous coordinator left half-ended are finished
        in the background (their ids wait for that). Raises if the store cannot be read."""
        if partition in self._loaded or partition in self._loading:
            return
        token = self._loading[partition] = object()
        self._epochs[partition] = self._broker.leader_epoch_of(TRANSACTION_STATE_TOPIC, partition)
        try:
            half_ended = []
            for name in await self._store.children(self._root):
                transactional_id = urllib.parse.unquote(name)
                if self.partition_of(transactional_id) != partition:
                    continue
                try:
                    found = await self._load(transactional_id)
                except KafkaError as exc:
                    log.error("%s", exc)  # the other ids are served all the same
                    continue
                if found is not None and found.state in ENDING:
                    half_ended.append(transactional_id)
        finally:
            if self._loading.get(partition) is token:
                del self._loading[partition]
            else:
                token = None  # unloaded meanwhile: serve nothing
        if token is None:
            self._forget_partition(partition)
            return
        self._loaded.add(partition)
        log.info("coordinating the transactional ids of %s-%d", TRANSACTION_STATE_TOPIC,
                 partition)
        for transactional_id in half_ended:
            self._finish_in_background(transactional_id)

    async def unload_partition(self, partition: int) -> None:
        """Stop coordinating the ids of a partition (it moves away, or its claim was lost):
        new requests for them are refused at once, those in progress are waited for, and
        what was cached is forgotten (the next coordinator may change it)."""
        self._loading.pop(partition, None)
        was_loaded = partition in self._loaded
        self._loaded.discard(partition)
        for transactional_id, lock in list(self._locks.locks.items()):
            if self.partition_of(transactional_id) == partition:
                await lock.acquire()  # after the operations queued before us
                lock.release()
        self._forget_partition(partition)
        if was_loaded:
            log.info("no longer coordinating the transactional ids of %s-%d",
                     TRANSACTION_STATE_TOPIC, partition)

    def _forget_partition(self, partition: int) -> None:
        if partition not in self._loaded and partition not in self._loading:
            self._epochs.pop(partition, None)  # unless a newer load has begun meanwhile
        for transactional_id in list(self._cache):
            if self.partition_of(transactional_id) == partition:
                del self._cache[transactional_id]
        for transactional_id, lock in list(self._locks.locks.items()):
            if self.partition_of(transactional_id) == partition and not lock.locked:
                del self._locks.locks[transactional_id]

    def _finish_in_background(self, transactional_id: str) -> None:
        async def finish() -> None:
            current = await self._current(transactional_id)
            if current is not None and current.state in ENDING:
                await self._finish(current)

        defer.ensureDeferred(self._with_lock(transactional_id, finish)).addErrback(
            lambda failure: log.warning(
                "could not finish the half-ended transaction of %s (will retry): %s",
                transactional_id, failure.getErrorMessage()))

    # -- storage ------------------------------------------------------------------------------

    def _path(self, transactional_id: str) -> str:
        return f"{self._root}/{urllib.parse.quote(transactional_id, safe='')}"

    async def _load(self, transactional_id: str) -> Transaction | None:
        found = await self._store.get(self._path(transactional_id))
        if found is None:
            self._cache.pop(transactional_id, None)
            return None
        try:
            loaded = Transaction.from_json(transactional_id, found.value, found.version)
        except (ValueError, KeyError, TypeError) as exc:  # JSON errors are ValueErrors
            # Left as found (nothing is lost); only this id is unavailable until repaired.
            raise KafkaError(ErrorCode.COORDINATOR_NOT_AVAILABLE,
                             f"the stored state of transactional id {transactional_id!r} "
                             f"is unreadable ({exc!r}); repair or delete "
                             f"{self._path(transactional_id)}") from None
        self._cache[transactional_id] = loaded
        return loaded

    async def _save(self, transaction: Transaction) -> Transaction:
        path = self._path(transaction.transactional_id)
        try:
            if transaction.version < 0:
                await self._store.create(path, transaction.to_json())
                version = 0
            else:
                version = await self._store.set(path, transaction.to_json(),
                                                expected_version=transaction.version)
        except (BadVersionError, NodeExistsError):
            await self._load(transaction.transactional_id)
            raise KafkaError(ErrorCode.CONCURRENT_TRANSACTIONS,
                             "the transaction changed concurrently; retry") from None
        saved = replace(transaction, version=version)
        self._cache[transaction.transactional_id] = saved
        return saved

    def _check_coordinator(self, transactional_id: str) -> None:
        """Only the owner of the id's __transaction_state partition coordinates it, once it
        has loaded the partition."""
        partition = self.partition_of(transactional_id)
        if not self._broker.owns(TRANSACTION_STATE_TOPIC, partition):
            raise KafkaError(ErrorCode.NOT_COORDINATOR,
                             f"this broker does not coordinate transactional id {transactional_id}")
        if partition not in self._loaded:
            raise KafkaError(ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
                             f"{TRANSACTION_STATE_TOPIC}-{partition} is being loaded")

    async def _with_lock(self, transactional_id: str, action, *args):
        self._check_coordinator(transactional_id)
        lock = self._locks.lock(transactional_id)
        await lock.acquire()
        try:
            # Checked again: the partition may have moved while this waited for the lock.
            self._check_coordinator(transactional_id)
            return await action(*args)
        finally:
            lock.release()

    async def _current(self, transactional_id: str) -> Transaction | None:
        cached = self._cache.get(transactional_id)
        return cached if cached is not None else await self._load(transactional_id)

    # -- the API ------------------------------------------------------------------------------

    async def init_producer(self, transactional_id: str, timeout_ms: int, producer_id: int,
                            producer_epoch: int) -> tuple[int, int]:
        if not transactional_id:
            raise KafkaError(ErrorCode.INVALID_REQUEST, "empty transactional id")
        if timeout_ms <= 0 or timeout_ms > self._max_timeout_ms:
            raise KafkaError(
                ErrorCode.INVALID_TRANSACTION_TIMEOUT,
                f"transaction timeout {timeout_ms} ms is outside 1..{self._max_timeout_ms} ms")
        return await self._with_lock(transactional_id, self._init, transactional_id, timeout_ms,
                                     producer_id, producer_epoch)

    async def _init(self, transactional_id: str, timeout_ms: int, producer_id: int,
                    producer_epoch: int) -> tuple[int, int]:
        current = await self._current(transactional_id)
        if current is None:
            fresh = Transaction(transactional_id, await self._broker.producer_ids.allocate(), 0,
                                timeout_ms)
            saved = await self._save(fresh)
            return saved.producer_id, saved.producer_epoch
        if producer_id >= 0 and (producer_id, producer_epoch) != (
                current.producer_id, current.producer_epoch):
            raise KafkaError(ErrorCode.PRODUCER_FENCED,
                             f"producer {producer_id} epoch {producer_epoch} is not current")
        if current.state in ENDING:
            await self._finish(current)
            current = self._cache[transactional_id]
        if current.state == ONGOING:
            # A new incarnation fences the old one: its open transaction is aborted with the
            # bumped epoch, so the old producer can no longer write to those partitions.
            current = await self._end(current, commit=False, bump_epoch=True)
        producer_id, epoch = current.producer_id, current.producer_epoch + 1
        if epoch > MAX_EPOCH:
            producer_id, epoch = await self._broker.producer_ids.allocate(), 0
        saved = await self._save(replace(current, producer_id=producer_id, producer_epoch=epoch,
                                         timeout_ms=timeout_ms, state=EMPTY,
                                         partitions=frozenset(), groups=frozenset()))
        return saved.producer_id, saved.producer_epoch

    def _check_producer(self, current: Transaction | None, producer_id: int,
                        producer_epoch: int) -> Transaction:
        if current is None or current.producer_id != producer_id:
            raise KafkaError(ErrorCode.INVALID_PRODUCER_ID_MAPPING,
                             "the producer id does not belong to this transactional id")
        if producer_epoch != current.producer_epoch:
            raise KafkaError(ErrorCode.PRODUCER_FENCED,
                             f"epoch {producer_epoch} is fenced by {current.producer_epoch}")
        if current.state in ENDING:
            raise KafkaError(ErrorCode.CONCURRENT_TRANSACTIONS,
                             "the previous transaction is still being completed")
        return current

    async def add_partitions(self, transactional_id: str, producer_id: int, producer_epoch: int,
                             partitions: list[tuple[str, int]]) -> None:
        async def add() -> None:
            current = self._check_producer(await self._current(transactional_id),
                                           producer_id, producer_epoch)
            merged = current.partitions | frozenset(partitions)
            if merged == current.partitions and current.state == ONGOING:
                return
            await self._save(self._ongoing(current, partitions=merged))

        await self._with_lock(transactional_id, add)

    async def add_group(self, transactional_id: str, producer_id: int, producer_epoch: int,
                        group_id: str) -> None:
        async def add() -> None:
            current = self._check_producer(await self._current(transactional_id),
                                           producer_id, producer_epoch)
            if group_id in current.groups and current.state == ONGOING:
                return
            await self._save(self._ongoing(current, groups=current.groups | {group_id}))

        await self._with_lock(transactional_id, add)

    def _ongoing(self, current: Transaction, **changes) -> Transaction:
        started = current.started_ms if current.state == ONGOING else int(self._clock() * 1000)
        return replace(current, state=ONGOING, started_ms=started, **changes)

    def check_producer_for_offsets(self, transactional_id: str, producer_id: int,
                                   producer_epoch: int) -> None:
        """TxnOffsetCommit: a producer this broker knows to be fenced is refused. (The group
        coordinator may be another broker than the transaction's coordinator; then, as in
        Kafka, only the group's own checks apply.)"""
        known = self._cache.get(transactional_id)
        if known is not None and known.producer_id == producer_id:
            self._check_producer(known, producer_id, producer_epoch)

    async def end_transaction(self, transactional_id: str, producer_id: int,
                              producer_epoch: int, commit: bool) -> None:
        async def end() -> None:
            current = await self._current(transactional_id)
            if current is not None and current.producer_id == producer_id \
                    and current.producer_epoch == producer_epoch:
                done = COMPLETE_COMMIT if commit else COMPLETE_ABORT
                if current.state == done:
                    return  # a retried EndTxn
                if current.state in (COMPLETE_COMMIT, COMPLETE_ABORT) or (
                        current.state == EMPTY and commit):
                    raise KafkaError(ErrorCode.INVALID_TXN_STATE,
                                     f"cannot {'commit' if commit else 'abort'} in state "
                                     f"{current.state}")
                if current.state == EMPTY:
                    return  # aborting nothing
            current = self._check_producer(current, producer_id, producer_epoch)
            await self._end(current, commit=commit, bump_epoch=False)

        await self._with_lock(transactional_id, end)

    async def _end(self, current: Transaction, commit: bool, bump_epoch: bool) -> Transaction:
        epoch = current.producer_epoch + 1 if bump_epoch else current.producer_epoch
        preparing = await self._save(replace(
            current, state=PREPARE_COMMIT if commit else PREPARE_ABORT, producer_epoch=epoch))
        return await self._finish(preparing)

    async def _finish(self, preparing: Transaction) -> Transaction:
        """Write the markers and complete group offsets of a prepared transaction."""
        commit = preparing.state == PREPARE_COMMIT
        # Markers carry the coordinator epoch; a partition refuses markers from an epoch older
        # than one it has seen, so if this broker lost the id's partition without noticing
        # yet, its successor's decisions stand. (Callers hold the id's lock, taken only while
        # the partition is loaded, and unloading waits for it: the epoch is there.)
        coordinator_epoch = self._epochs[self.partition_of(preparing.transactional_id)]
        try:
            await self._write_markers(preparing, commit, coordinator_epoch)
        except KafkaError as exc:
            if exc.code != ErrorCode.TRANSACTION_COORDINATOR_FENCED:
                raise
            # The client asks the current coordinator again (NOT_COORDINATOR is retriable).
            raise KafkaError(ErrorCode.NOT_COORDINATOR,
                             f"{preparing.transactional_id}: a newer coordinator has taken over "
                             f"({exc})") from None
        log.info("%s transaction of %s (producer %d epoch %d): %d partitions, %d groups",
                 "committed" if commit else "aborted", preparing.transactional_id,
                 preparing.producer_id, preparing.producer_epoch, len(preparing.partitions),
                 len(preparing.groups))
        return await self._save(replace(
            preparing, state=COMPLETE_COMMIT if commit else COMPLETE_ABORT,
            partitions=frozenset(), groups=frozenset(), started_ms=-1))

    async def _write_markers(self, preparing: Transaction, commit: bool,
                             coordinator_epoch: int) -> None:
        broker = self._broker
        elsewhere: list[tuple[str, int]] = []
        for topic, partition in sorted(preparing.partitions):
            try:
                partition_log = await owned_partition(broker, topic, partition)
            except KafkaError as exc:
                if exc.code == ErrorCode.UNKNOWN_TOPIC_OR_PARTITION:
                    continue  # deleted meanwhile: nothing to mark
                if exc.code == ErrorCode.NOT_LEADER_OR_FOLLOWER and self.remote_markers:
                    elsewhere.append((topic, partition))
                    continue
                raise
            await partition_log.append_marker(preparing.producer_id, preparing.producer_epoch,
                                              commit, coordinator_epoch)
        if self.remote_markers is None:
            for group_id in sorted(preparing.groups):
                await broker.groups.complete_transaction(group_id, preparing.producer_id, commit)
        else:
            # As Kafka: a marker for each group's offsets partition, written by its owner (the
            # group's coordinator, here or elsewhere), completes the group's offsets.
            elsewhere += sorted({(OFFSETS_TOPIC, broker.groups.partition_for(group_id))
                                 for group_id in preparing.groups})
        if elsewhere:
            await self.remote_markers.write(elsewhere, preparing.producer_id,
                                            preparing.producer_epoch, commit, coordinator_epoch)

    # -- expiry -------------------------------------------------------------------------------

    def _abort_expired(self) -> defer.Deferred[None]:
        return defer.ensureDeferred(self._abort_expired_now())

    async def _abort_expired_now(self) -> None:
        self._ticks += 1
        if self._ticks % RETRY_EVERY_TICKS == 0:
            for transaction in list(self._cache.values()):
                lock = self._locks.locks.get(transaction.transactional_id)
                if transaction.state in ENDING and (lock is None or not lock.locked):
                    self._finish_in_background(transaction.transactional_id)
        now_ms = int(self._clock() * 1000)
        for transaction in list(self._cache.values()):
            if transaction.state != ONGOING or now_ms - transaction.started_ms <= transaction.timeout_ms:
                continue

            async def expire(transactional_id: str = transaction.transactional_id) -> None:
                current = await self._current(transactional_id)
                if current is not None and current.state == ONGOING \
                        and now_ms - current.started_ms > current.timeout_ms:
                    log.info("aborting transaction of %s: open longer than %d ms",
                             transactional_id, current.timeout_ms)
                    await self._end(current, commit=False, bump_epoch=True)

            try:
                await self._with_lock(transaction.transactional_id, expire)
            except Exception as exc:
                log.warning("could not abort expired transaction %s: %s",
                            transaction.transactional_id, exc)
