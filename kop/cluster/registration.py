"""BrokerRegistration: this broker's place in the cluster's live set, kept across session loss.

The broker holds an ephemeral /brokers/<id> (a BrokerRecord: address and an incarnation token
chosen at each registration) for as long as its metadata session lives, and watches /brokers
and every broker's node, so it always knows the live set — including which brokers announced
that they are leaving.

Session loss (LOST): the registration died with the session. Session-lost listeners run at
once (ownership drops its claims there), then the broker registers again, with a new
incarnation, as soon as the store has a new session. An earlier life of the same broker id
whose session has not expired yet (a quick restart after SIGKILL) is waited out.

The session lease (kop/cluster/lease.py) is renewed by reading our own registration every
session timeout / RENEWALS_PER_TIMEOUT: finding it, of this incarnation, proves the session
was alive when the read was sent.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime

from kop.cluster.lease import SessionLease
from kop.cluster.records import (
    BROKERS_PATH,
    BrokerRecord,
    ClusterRecordError,
    broker_path,
    parse_broker_id,
)
from kop.cluster.store_helpers import delete_if_mine, gather
from kop.deferreds import follow
from kop.ownership import BrokerAddress
from storage.metadata import (
    ConnectionLossError,
    MetadataError,
    MetadataStore,
    NodeExistsError,
    SessionLostError,
    SessionState,
)

log = logging.getLogger(__name__)

Listener = Callable[[], None]

# Lease renewals per session timeout (each is one small read of our registration).
RENEWALS_PER_TIMEOUT = 5
# While an earlier registration of our id lingers, look again at least this often.
REGISTRATION_RETRY_SECONDS = 1.0


class ClusterError(RuntimeError):
    """The broker cannot take its place in the cluster (e.g. its id is in use)."""


class BrokerRegistration:
    def __init__(self, store: MetadataStore, address: Callable[[], BrokerAddress], *,
                 session_timeout: float | Callable[[], float],
                 reactor: IReactorTime | None = None,
                 monotonic: Callable[[], float] = time.monotonic,
                 registration_wait: float | None = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor  # type: ignore[assignment]
        self._reactor: Any = reactor
        self._store = store
        self._address = address
        # Seconds, or a function giving the timeout the store's current session was granted.
        self._session_timeout = (session_timeout if callable(session_timeout)
                                 else (lambda: session_timeout))
        self._monotonic = monotonic
        self.lease = SessionLease(self._session_timeout, monotonic)
        # An earlier life of this broker id may hold the registration until its session
        # expires; wait that long (and some) before concluding the id is taken.
        self._registration_wait = (registration_wait if registration_wait is not None
                                   else 2 * self.session_timeout + 5.0)
        self.incarnation = ""
        self.registered = False
        self.session_generation = 0  # +1 on every session loss
        self.leaving = False
        self._started = False
        self._stopping = False
        self._registering: defer.Deferred[None] | None = None
        self._renewing = False
        self._lease_loop: task.LoopingCall | None = None

        self._brokers: dict[int, BrokerRecord] = {}
        self._refresh_count = 0
        self._refresh_waiters: list[defer.Deferred[None]] = []
        self._cancel_watches: dict[int | None, Callable[[], None]] = {}  # None: /brokers
        self._change_listeners: list[Listener] = []
        self._lost_listeners: list[Listener] = []

    @property
    def broker_id(self) -> int:
        return self._address().node_id

    @property
    def session_timeout(self) -> float:
        """Seconds: the metadata session's timeout in force now."""
        return self._session_timeout()

    @property
    def renewing(self) -> bool:
        """A lease renewal is waiting for its answer."""
        return self._renewing

    def add_change_listener(self, listener: Listener) -> None:
        """`listener()` runs after the live set changed and after (re-)registering."""
        self._change_listeners.append(listener)

    def add_session_lost_listener(self, listener: Listener) -> None:
        """`listener()` runs as soon as the session is known lost, before anything else."""
        self._lost_listeners.append(listener)

    def _notify(self, listeners: list[Listener]) -> None:
        for listener in list(listeners):
            try:
                listener()
            except Exception:
                log.exception("registration listener failed")

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._store.add_session_listener(self._session_changed)
        # Watch first, then read: no change can fall between the two.
        self._cancel_watches[None] = self._store.watch(BROKERS_PATH, self._brokers_changed)
        self._registering = defer.ensureDeferred(
            self._register(deadline=self._monotonic() + self._registration_wait))
        try:
            await follow(self._registering)
        finally:
            self._registering = None
        await self._refresh_brokers()
        interval = max(0.05, self.session_timeout / RENEWALS_PER_TIMEOUT)
        self._lease_loop = task.LoopingCall(self.renew_lease)
        self._lease_loop.clock = self._reactor
        self._lease_loop.start(interval, now=False)

    async def leave(self) -> None:
        """Announce a graceful exit: other brokers stop designating partitions to this one."""
        if self.leaving:
            return
        self.leaving = True
        if not self.registered:
            return
        try:
            await self._store.set(broker_path(self.broker_id), self._record().to_json())
        except MetadataError as exc:
            log.warning("could not announce that broker %d is leaving: %s", self.broker_id, exc)

    async def stop(self) -> None:
        """Withdraw the registration and stop following the live set."""
        self._stopping = True
        if self._lease_loop is not None and self._lease_loop.running:
            self._lease_loop.stop()
        for cancel in self._cancel_watches.values():
            cancel()
        self._cancel_watches.clear()
        if self.registered:
            self.registered = False
            try:
                await delete_if_mine(self._store, broker_path(self.broker_id),
                                     self._is_incarnation(self.incarnation))
            except MetadataError as exc:
                log.info("could not withdraw broker %d (its session ends anyway): %s",
                         self.broker_id, exc)
        self.lease.revoke()

    # -- registering ------------------------------------------------------------------------------

    def _record(self) -> BrokerRecord:
        address = self._address()
        return BrokerRecord(broker_id=address.node_id, host=address.host, port=address.port,
                            incarnation=self.incarnation, rack=address.rack,
                            leaving=self.leaving)

    def _incarnation_of(self, data: bytes) -> str | None:
        try:
            return BrokerRecord.from_json(self.broker_id, data).incarnation
        except ClusterRecordError:
            return None

    def _is_incarnation(self, incarnation: str) -> Callable[[bytes], bool]:
        return lambda data: self._incarnation_of(data) == incarnation

    async def _register(self, deadline: float | None) -> None:
        """Create /brokers/<id> for a new incarnation of this broker, in the current session.

        An earlier life's registration (same id, a session not yet expired) is waited out,
        until `deadline` (None: forever). A registration made through a session that ended
        meanwhile is withdrawn and made again.
        """
        path = broker_path(self.broker_id)
        waited_since: float | None = None
        while True:
            generation = self.session_generation
            incarnation = secrets.token_hex(8)
            record = replace(self._record(), incarnation=incarnation)
            sent_at = self._monotonic()
            try:
                await self._store.create(path, record.to_json(), ephemeral=True)
                created = True
            except (NodeExistsError, ConnectionLossError):
                found = await self._store.get(path)
                if found is None:
                    continue  # gone meanwhile (or our create failed): try again
                created = self._incarnation_of(found.value) == incarnation
            except SessionLostError:
                if self._store.closed:
                    raise
                await self._next_refresh_or(REGISTRATION_RETRY_SECONDS)
                continue  # the session expired under us: the store opens a new one
            if created and generation == self.session_generation:
                self.incarnation = incarnation
                self.registered = True
                self.lease.renew(sent_at)
                log.info("broker %d registered at %s:%d", self.broker_id, record.host,
                         record.port)
                self._notify(self._change_listeners)
                return
            if created:
                with contextlib.suppress(MetadataError):
                    await delete_if_mine(self._store, path, self._is_incarnation(incarnation))
                continue
            now = self._monotonic()
            if waited_since is None:
                waited_since = now
                log.warning("broker id %d is registered by another session (an earlier life "
                            "of this broker, or another broker with the same id); waiting "
                            "for it to go", self.broker_id)
            if deadline is not None and now >= deadline:
                raise ClusterError(
                    f"broker id {self.broker_id} stayed registered by another live broker for "
                    f"{now - waited_since:.0f} s: is another broker using this id?")
            await self._next_refresh_or(REGISTRATION_RETRY_SECONDS)

    def _next_refresh_or(self, timeout: float) -> defer.Deferred[None]:
        """Fires after the next look at the live set, or after `timeout` seconds."""
        waiter: defer.Deferred[None] = defer.Deferred()
        self._refresh_waiters.append(waiter)

        def give_up() -> None:
            if waiter in self._refresh_waiters:
                self._refresh_waiters.remove(waiter)
                waiter.callback(None)

        self._reactor.callLater(timeout, give_up)
        return waiter

    def _register_again(self) -> None:
        if self._registering is not None or self._stopping:
            return

        def failed(failure: Any) -> None:
            log.error("broker %d could not register again: %s", self.broker_id,
                      failure.getErrorMessage())

        def done(result: object) -> None:
            self._registering = None
            if not self.registered and not self._stopping and not self._store.closed:
                # Try again later: a broker that is not registered serves nothing.
                self._reactor.callLater(REGISTRATION_RETRY_SECONDS, self._register_again)

        self._registering = defer.ensureDeferred(self._register(deadline=None))
        self._registering.addErrback(failed)
        self._registering.addBoth(done)

    # -- the session and its lease ----------------------------------------------------------------

    def _session_changed(self, state: SessionState) -> None:
        if self._stopping:
            return
        if state is SessionState.LOST:
            self.session_generation += 1
            was_registered, self.registered = self.registered, False
            self.lease.revoke()
            if was_registered:
                log.warning("broker %d: metadata session lost; every claim went with it. "
                            "Registering again.", self.broker_id)
            self._notify(self._lost_listeners)
        elif state is SessionState.CONNECTED:
            if self.registered:
                self.renew_lease()
            elif self._started and self._registering is None:
                self._register_again()

    def renew_lease(self) -> None:
        """Prove the session alive: our registration, of this incarnation, still exists."""
        if not self.registered or self._renewing:
            return
        self._renewing = True
        sent_at = self._monotonic()
        generation, incarnation = self.session_generation, self.incarnation

        def answered(found: Any) -> None:
            self._renewing = False
            if generation != self.session_generation:
                return
            if found is not None and self._incarnation_of(found.value) == incarnation:
                self.lease.renew(sent_at)
            elif found is None and self.registered:
                # Deleted by hand, or our session expired and ZooKeeper has yet to say so:
                # serve nothing until registered again (or until LOST).
                log.warning("broker %d: its registration is gone; registering again",
                            self.broker_id)
                self.registered = False
                self.lease.revoke()
                self._register_again()

        def failed(failure: Any) -> None:
            self._renewing = False
            log.info("broker %d: lease renewal failed: %s", self.broker_id,
                     failure.getErrorMessage())

        self._store.get(broker_path(self.broker_id)).addCallbacks(answered, failed)

    # -- the live set -------------------------------------------------------------------------------

    def _brokers_changed(self, path: str) -> None:
        defer.ensureDeferred(self._refresh_brokers()).addErrback(
            lambda failure: log.warning("refreshing the live brokers failed: %s",
                                        failure.getErrorMessage()))

    async def _refresh_brokers(self) -> None:
        self._refresh_count += 1
        refresh = self._refresh_count
        names = await self._store.children(BROKERS_PATH)
        ids = [broker_id for broker_id in map(parse_broker_id, names) if broker_id is not None]
        found = await gather([self._store.get(broker_path(broker_id)) for broker_id in ids])
        if refresh != self._refresh_count:
            return  # a later refresh started meanwhile: its answer wins
        brokers: dict[int, BrokerRecord] = {}
        for broker_id, node in zip(ids, found, strict=True):
            if node is None:
                continue
            try:
                brokers[broker_id] = BrokerRecord.from_json(broker_id, node.value)
            except ClusterRecordError as exc:
                log.warning("ignoring an unreadable broker registration: %s", exc)
        self._brokers = brokers
        self._watch_broker_nodes(ids)
        waiters, self._refresh_waiters = self._refresh_waiters, []
        for waiter in waiters:
            waiter.callback(None)
        self._notify(self._change_listeners)

    def _watch_broker_nodes(self, ids: list[int]) -> None:
        """The watch on /brokers sees brokers come and go; one on each broker's node also
        sees its record change (a broker announcing that it is leaving)."""
        if self._stopping:
            return
        for broker_id in {key for key in self._cancel_watches if key is not None} - set(ids):
            self._cancel_watches.pop(broker_id)()
        for broker_id in set(ids) - set(self._cancel_watches):
            self._cancel_watches[broker_id] = self._store.watch(
                broker_path(broker_id), self._brokers_changed)

    def brokers(self) -> dict[int, BrokerRecord]:
        """The live brokers by id, as last read."""
        return self._brokers

    def live_brokers(self) -> list[BrokerAddress]:
        return [BrokerAddress(record.broker_id, record.host, record.port, record.rack)
                for _, record in sorted(self._brokers.items())]

    def candidates(self) -> list[int]:
        """Brokers partitions may be designated to: live and not leaving (all live ones if
        every broker is leaving, so that partitions still have somewhere to go)."""
        staying = [b for b, record in self._brokers.items() if not record.leaving]
        return staying or list(self._brokers)
