"""A standalone ZooKeeper server on loopback, from Debian's ``zookeeper`` package.

For trying cluster mode (``kop dev-cluster``) and for tests; production runs its own
ensemble. The server is ``org.apache.zookeeper.server.ZooKeeperServerMain`` from
/usr/share/java/zookeeper.jar, configured through a zoo.cfg written into its data directory
with a short tick, so that short session timeouts are allowed.

    server = ZooKeeperServer("/tmp/zk")       # a free loopback port unless one is given
    server.start()                            # returns once it serves requests
    store = open_metadata_store(server.url("/kop", session_timeout=4))
    server.stop(); server.start()             # a restart: same port, same data
    server.kill()                             # SIGKILL, as a crash

Readiness is the server answering ZooKeeper's ``srvr`` four-letter command, polled — never
a fixed wait. The JVM dies with the process that started it (``setpriv --pdeathsig``), or
as ``wrap_command`` arranges.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")  # its manifest lists its dependencies
SLF4J_SIMPLE_JAR = Path("/usr/share/java/slf4j-simple.jar")  # so the server's log says something
SERVER_MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"
SETPRIV = shutil.which("setpriv")

# Between two readiness probes; polling, not synchronisation.
POLL_SECONDS = 0.02

CommandWrapper = Callable[[list[str]], list[str]]


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


def killed_with_parent(command: list[str]) -> list[str]:
    """`command`, SIGKILLed if the process that started it dies (so nothing is left over)."""
    return [SETPRIV, "--pdeathsig", "KILL", *command] if SETPRIV is not None else command


class ZooKeeperServer:
    """One standalone ZooKeeper server process on 127.0.0.1.

    ``data_dir`` (default: a new temporary directory, removed by ``close()``) holds the
    configuration, the snapshots and transaction logs, and ``zookeeper.log``.
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
        wrap_command: CommandWrapper = killed_with_parent,
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
        self._wrap_command = wrap_command
        self._process: subprocess.Popen[bytes] | None = None

    # -- addresses ----------------------------------------------------------------------------

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, chroot: str = "/kop", session_timeout: float | None = None) -> str:
        """The metadata-store URL of this server with ``chroot`` (and a session timeout)."""
        query = "" if session_timeout is None else f"?session_timeout={session_timeout:g}"
        return f"zk://{self.host_port}{chroot}{query}"

    def unique_url(self, prefix: str = "/test") -> str:
        """A URL with a chroot no other caller gets, for isolating users of one server."""
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
        java = shutil.which("java")
        if java is None:
            raise ZooKeeperUnavailable("ZooKeeper needs java: install Debian's zookeeper package")
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            self._launch(java)
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

    def close(self) -> None:
        """Stop, and remove the data directory if it was a temporary one."""
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
        config.write_text("\n".join([
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
        ]))
        return config

    def _launch(self, java: str) -> None:
        config = self._write_config()
        classpath = str(ZOOKEEPER_JAR)
        if SLF4J_SIMPLE_JAR.exists():
            classpath += f":{SLF4J_SIMPLE_JAR}"
        command = [
            java,
            "-Xms32m",
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",  # faster JVM start; plenty for a small server
            f"-Dzookeeper.forceSync={'yes' if self.fsync else 'no'}",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
            "-cp",
            classpath,
            SERVER_MAIN,
            str(config),
        ]
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self._wrap_command(command), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT,
            )

    def _wait_until_serving(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                return False
            answer = four_letter_word(self.port, "srvr")
            if answer is not None and answer.startswith("Zookeeper version"):
                return True
            time.sleep(POLL_SECONDS)
        return False

    def _port_was_taken(self) -> bool:
        return "Address already in use" in self.log_tail(200)
