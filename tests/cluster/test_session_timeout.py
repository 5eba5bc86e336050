"""The session timeout ZooKeeper grants — not the one asked for — times a broker's lease.

ZooKeeper clamps the timeout a client asks for to [minSessionTimeout, maxSessionTimeout]. A
broker asking for 10 s from a server that grants at most 3 s loses its session after 3 s; a
lease computed from the 10 s would let it serve partitions others already took over.
"""

from __future__ import annotations

import pytest
import pytest_twisted

from kop.broker import BrokerConfig
from kop.cluster.lease import LEASE_FRACTION
from kop.cluster.runner import start_cluster_broker
from storage.metadata.zookeeper import ZooKeeperStore


@pytest.mark.parametrize("asked, granted", [(10.0, 3.0), (0.5, 1.5), (2.0, 2.0)])
@pytest_twisted.ensureDeferred
async def test_the_store_reports_the_timeout_granted(make_zookeeper_server, asked, granted):
    server = make_zookeeper_server(min_session_timeout_ms=1500, max_session_timeout_ms=3000)
    store = ZooKeeperStore(server.host_port, "/granted", session_timeout=asked)
    try:
        assert store.session_timeout == asked  # no session yet
        await store.ready(10)
        assert store.session_timeout == granted
    finally:
        await store.close()


@pytest_twisted.ensureDeferred
async def test_a_broker_leases_its_ownership_on_the_granted_timeout(make_zookeeper_server):
    server = make_zookeeper_server(max_session_timeout_ms=3000)
    running = await start_cluster_broker(
        server.url("/lease") + "?session_timeout=10", "127.0.0.1", 0,
        BrokerConfig(node_id=1, port=0), auto_recovery=None)
    try:
        registration = running.ownership.registration
        assert registration.session_timeout == 3.0
        assert registration.lease.duration == pytest.approx(3.0 * LEASE_FRACTION)
        assert 0 < registration.lease.remaining() <= 3.0 * LEASE_FRACTION
    finally:
        await running.stop()
