"""How long this broker may still trust that its ZooKeeper session is alive.

ZooKeeper expires a session once it has heard nothing from the client for the session
timeout. So when a request sent at time T is answered in a way that proves the session was
alive (our own ephemeral registration is still there), the session cannot expire before
T + timeout: the server heard from us no earlier than T. The broker serves partitions only
while that bound (with a safety margin) lies in the future.

This matters after a long stop (SIGSTOP, a VM pause, a GC stall): on resuming, the process
may handle client requests before its ZooKeeper client has even noticed that the session
expired and that other brokers took its partitions over. The lease has lapsed by then, so
such requests are refused instead of written.

Times come from a monotonic clock: wall-clock jumps must not extend a lease.

The timeout is the one ZooKeeper granted the session (it clamps the one asked for to its own
bounds; ZooKeeperStore.session_timeout), read afresh whenever the lease is consulted: a
lease computed from the timeout asked for could outlive a session granted less.
"""

from __future__ import annotations

from collections.abc import Callable

# Serve for at most this fraction of the session timeout after the last proof of life:
# the rest absorbs clock-rate differences and the time a refusal takes to reach a client.
LEASE_FRACTION = 0.75


class SessionLease:
    def __init__(self, session_timeout: float | Callable[[], float],
                 clock: Callable[[], float], fraction: float = LEASE_FRACTION) -> None:
        """`session_timeout`: seconds, or a function giving the one in force now."""
        current = session_timeout if callable(session_timeout) else (lambda: session_timeout)
        if current() <= 0:
            raise ValueError(f"session timeout must be positive, got {current()}")
        if not 0 < fraction < 1:
            raise ValueError(f"lease fraction must be between 0 and 1, got {fraction}")
        self._session_timeout = current
        self._clock = clock
        self._fraction = fraction
        self._proved_at: float | None = None  # when the latest proof of life was sent

    @property
    def duration(self) -> float:
        """How long a proof of life keeps the lease valid."""
        return self._session_timeout() * self._fraction

    def renew(self, proof_sent_at: float) -> None:
        """A request sent at `proof_sent_at` (this lease's clock) proved the session alive."""
        if self._proved_at is None or proof_sent_at > self._proved_at:
            self._proved_at = proof_sent_at

    def revoke(self) -> None:
        """The session is gone (or not yet established): nothing may be served."""
        self._proved_at = None

    def valid(self) -> bool:
        return self.remaining() > 0

    def remaining(self) -> float:
        """Seconds of validity left (0 when lapsed or revoked)."""
        if self._proved_at is None:
            return 0.0
        return max(0.0, self._proved_at + self.duration - self._clock())
