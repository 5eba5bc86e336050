"""A real ZooKeeper server for tests: storage/metadata/zookeeper_server.py plus what only tests
need.

    from tests.zookeeper import ZooKeeperServer

    with ZooKeeperServer() as server:          # free loopback port, temporary data dir
        store = open_metadata_store(server.url("/my-test"))
        server.stop(); server.start()            # same port and data: a restart
        server.kill()                            # SIGKILL
        server.expire_session(store)             # the store's session expires (blocking)

Pytest fixtures (registered for every test in tests/conftest.py):
- ``zookeeper_server``: one server shared by the whole test session (do not stop it);
- ``zookeeper_url``: a ``zk://`` URL with a fresh chroot on that server, per test;
- ``make_zookeeper_server``: a factory for private servers a test may stop, restart or
  kill; they are stopped when the test ends.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from storage.metadata import zookeeper_server as launcher
from storage.metadata.zookeeper_server import ZooKeeperUnavailable, free_loopback_port

__all__ = ["ZooKeeperServer", "ZooKeeperUnavailable", "free_loopback_port"]


class ZooKeeperServer(launcher.ZooKeeperServer):
    """The shared launcher, able to expire a client's session as well."""

    def expire_session(self, store: Any, timeout: float = 15.0) -> None:
        """Expire a ZooKeeperStore's session as a long partition would. Blocking: from
        reactor code use ``threads.deferToThread(server.expire_session, store)``.

        Another client takes the session over (the server drops the store's connection)
        and closes it, so the store's reconnection finds it expired: the store reports
        LOST, its ephemerals are gone, and it goes on with a new session (CONNECTED).
        If the store wins the race and reconnects to the session before it is closed,
        the take-over is repeated; returns once the store has a new session.
        """
        from kazoo.client import KazooClient

        kazoo_client = store._client  # test-only peek at the store's kazoo session
        session_id, password = kazoo_client.client_id
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            intruder = KazooClient(hosts=self.host_port, client_id=(session_id, password))
            connected = intruder.start_async()
            # Close the session the moment the take-over succeeds, before the store
            # reconnects and takes it back (then the loop tries again).
            connected.wait(max(0.1, deadline - time.monotonic()))
            intruder.stop()
            intruder.close()
            settle = time.monotonic() + 2.0
            while time.monotonic() < min(settle, deadline):
                current = kazoo_client.client_id
                if current is not None and current[0] != session_id:
                    return
                time.sleep(launcher.POLL_SECONDS)
        raise TimeoutError(f"could not expire ZooKeeper session {session_id:#x}")


# -- pytest fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def zookeeper_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ZooKeeperServer]:
    """One ZooKeeper server for the whole test session. Share it; never stop it."""
    with ZooKeeperServer(tmp_path_factory.mktemp("zookeeper")) as server:
        yield server


@pytest.fixture
def zookeeper_url(zookeeper_server: ZooKeeperServer) -> str:
    """A zk:// URL on the shared server with a chroot of this test's own."""
    return zookeeper_server.unique_url()


@pytest.fixture
def make_zookeeper_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., ZooKeeperServer]]:
    """Factory for private, started servers (keyword arguments as ZooKeeperServer's);
    each is stopped when the test ends."""
    servers: list[ZooKeeperServer] = []

    def make(**options: Any) -> ZooKeeperServer:
        server = ZooKeeperServer(tmp_path_factory.mktemp("zookeeper"), **options)
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        with contextlib.suppress(Exception):
            server.close()
