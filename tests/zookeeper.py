"""A real ZooKeeper server for tests, run from Debian's ``zookeeper`` package.

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

Readiness is detected by polling the ``srvr`` four-letter command until the server
says it is serving, never by sleeping a fixed time. The JVM gets ``--pdeathsig KILL``
(setpriv) so a crashed test run leaves no server behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")  # its manifest lists its dependencies
SLF4J_SIMPLE_JAR = Path("/usr/share/java/slf4j-simple.jar")  # so the server's log says something
SERVER_MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"
JAVA = shutil.which("java") or "/usr/bin/java"
SETPRIV = shutil.which("setpriv")

# Between two readiness probes; polling, not synchronisation.
_POLL_INTERVAL = 0.02


class ZooKeeperUnavailable(RuntimeError):
    """ZooKeeper is not installed, or the server did not come up."""


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def four_letter_word(port: int, word: str, timeout: float = 1.0) -> str | None:
    """Send a ZooKeeper four-letter command; the answer, or None if nothing listens."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
            connection.sendall(word.encode("ascii"))
            chunks = []
            while chunk := connection.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).decode("utf-8", "replace")
    except OSError:
        return None


class ZooKeeperServer:
    """One standalone ZooKeeper server process on 127.0.0.1.

    ``data_dir`` (default: a new temporary directory, removed on exit) holds the
    configuration, the snapshots and transaction logs, and ``zookeeper.log``.
    ``tick_time_ms`` is small so that short session timeouts (from 1 s) are allowed.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        tick_time_ms: int = 200,
        min_session_timeout_ms: int = 1000,
        max_session_timeout_ms: int = 60000,
        fsync: bool = True,
    ) -> None:
        if not ZOOKEEPER_JAR.exists():
            raise ZooKeeperUnavailable(
                f"{ZOOKEEPER_JAR} not found: install Debian's zookeeper package "
                "(scripts/install-deps does)"
            )
        self._owns_data_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="kop-zookeeper-"))
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._fixed_port = port is not None
        self.port = port if port is not None else free_loopback_port()
        self.tick_time_ms = tick_time_ms
        self.min_session_timeout_ms = min_session_timeout_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self.fsync = fsync
        self._process: subprocess.Popen[bytes] | None = None

    # -- addresses ----------------------------------------------------------------------------

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, chroot: str = "/kop") -> str:
        """The metadata-store URL of this server with ``chroot``."""
        return f"zk://{self.host_port}{chroot}"

    def unique_url(self, prefix: str = "/test") -> str:
        """A URL with a chroot no other caller gets, for isolating tests on a shared server."""
        return self.url(f"{prefix}-{uuid.uuid4().hex[:12]}")

    @property
    def log_path(self) -> Path:
        return self.data_dir / "zookeeper.log"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- lifecycle ----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        """Start the server and return once it serves requests."""
        if self.running:
            return
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            self._launch()
            if self._wait_until_serving(timeout):
                return
            self.kill()
            if attempt + 1 < attempts and self._port_was_taken():
                self.port = free_loopback_port()  # lost a race for the port: pick another
                continue
            break
        raise ZooKeeperUnavailable(
            f"ZooKeeper did not start on {self.host_port} within {timeout:g} s; log:\n"
            + self.log_tail()
        )

    def stop(self, timeout: float = 15.0) -> None:
        """Stop gracefully (SIGTERM), killing after ``timeout``; data stays for a restart."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL the server, as a crash would."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()

    def restart(self, timeout: float = 30.0) -> None:
        self.stop()
        self.start(timeout)

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
                time.sleep(_POLL_INTERVAL)
        raise TimeoutError(f"could not expire ZooKeeper session {session_id:#x}")

    def close(self) -> None:
        self.stop()
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> ZooKeeperServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------------

    def _write_config(self) -> Path:
        config = self.data_dir / "zoo.cfg"
        config.write_text(
            "\n".join(
                [
                    f"tickTime={self.tick_time_ms}",
                    f"dataDir={self.data_dir / 'data'}",
                    f"clientPort={self.port}",
                    "clientPortAddress=127.0.0.1",
                    "maxClientCnxns=0",
                    f"minSessionTimeout={self.min_session_timeout_ms}",
                    f"maxSessionTimeout={self.max_session_timeout_ms}",
                    "admin.enableServer=false",
                    "4lw.commands.whitelist=ruok,srvr,mntr,cons",
                    "",
                ]
            )
        )
        return config

    def _launch(self) -> None:
        config = self._write_config()
        command = [
            JAVA,
            "-Xms32m",
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",  # faster JVM start; plenty for a test server
            f"-Dzookeeper.forceSync={'yes' if self.fsync else 'no'}",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp",
            f"{ZOOKEEPER_JAR}:{SLF4J_SIMPLE_JAR}",
            SERVER_MAIN,
            str(config),
        ]
        if SETPRIV is not None:
            command = [SETPRIV, "--pdeathsig", "KILL", *command]
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )

    def _wait_until_serving(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                return False
            answer = four_letter_word(self.port, "srvr")
            if answer is not None and answer.startswith("Zookeeper version"):
                return True
            time.sleep(_POLL_INTERVAL)
        return False

    def _port_was_taken(self) -> bool:
        return "Address already in use" in self.log_tail(200)


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
