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
"""

from __future__ import annotations

from collections.abc import Callable

# Serve for at most this fraction of the session timeout after the last proof of life:
# the rest absorbs clock-rate differences and the time a refusal takes to reach a client.
LEASE_FRACTION = 0.75


class SessionLease:
    def __init__(self, session_timeout: float, clock: Callable[[], float],
                 fraction: float = LEASE_FRACTION) -> None:
        if session_timeout <= 0:
            raise ValueError(f"session timeout must be positive, got {session_timeout}")
        if not 0 < fraction < 1:
            raise ValueError(f"lease fraction must be between 0 and 1, got {fraction}")
        self._clock = clock
        self.duration = session_timeout * fraction
        self._expires_at: float | None = None

    def renew(self, proof_sent_at: float) -> None:
        """A request sent at `proof_sent_at` (this lease's clock) proved the session alive."""
        expires_at = proof_sent_at + self.duration
        if self._expires_at is None or expires_at > self._expires_at:
            self._expires_at = expires_at

    def revoke(self) -> None:
        """The session is gone (or not yet established): nothing may be served."""
        self._expires_at = None

    def valid(self) -> bool:
        return self._expires_at is not None and self._clock() < self._expires_at

    def remaining(self) -> float:
        """Seconds of validity left (0 when lapsed or revoked)."""
        if self._expires_at is None:
            return 0.0
        return max(0.0, self._expires_at - self._clock())
