"""The session lease: valid for a fraction of the session timeout after each proof of life."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from kop.cluster.lease import SessionLease


def test_lease_lifecycle():
    clock = Clock()
    lease = SessionLease(4.0, clock.seconds, fraction=0.75)
    assert not lease.valid()  # nothing proven yet
    lease.renew(clock.seconds())
    clock.advance(2.9)
    assert lease.valid() and lease.remaining() == pytest.approx(0.1)
    clock.advance(0.2)
    assert not lease.valid() and lease.remaining() == 0


def test_the_proof_counts_from_when_it_was_sent():
    clock = Clock()
    lease = SessionLease(4.0, clock.seconds, fraction=0.75)
    sent_at = clock.seconds()
    clock.advance(2.5)  # a slow answer
    lease.renew(sent_at)
    clock.advance(0.6)
    assert not lease.valid()


def test_an_older_proof_never_shortens_the_lease_and_revoke_ends_it():
    clock = Clock()
    lease = SessionLease(4.0, clock.seconds, fraction=0.5)
    lease.renew(10.0)
    lease.renew(5.0)
    clock.advance(11.0)
    assert lease.valid()
    lease.revoke()
    assert not lease.valid()


@pytest.mark.parametrize("timeout, fraction", [(0, 0.5), (4, 0), (4, 1)])
def test_bad_parameters(timeout, fraction):
    with pytest.raises(ValueError):
        SessionLease(timeout, lambda: 0.0, fraction=fraction)


def test_the_lease_follows_the_session_timeout_in_force():
    clock = Clock()
    granted = [4.0]
    lease = SessionLease(lambda: granted[0], clock.seconds, fraction=0.5)
    lease.renew(clock.seconds())
    clock.advance(1.5)
    assert lease.valid()
    granted[0] = 2.0  # a new session was granted less than the old one
    assert not lease.valid() and lease.duration == 1.0
