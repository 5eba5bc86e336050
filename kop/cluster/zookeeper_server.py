"""A standalone ZooKeeper server from Debian's `zookeeper` package, for `kop dev-cluster`.

The server runs `org.apache.zookeeper.server.ZooKeeperServerMain` from
/usr/share/java/zookeeper.jar with a configuration written into its data directory (a short
tick, so short session timeouts are allowed). Readiness is the server answering ZooKeeper's
`srvr` four-letter command, polled — never a fixed wait.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from kop.cluster.process import detach

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
SLF4J_SIMPLE_JAR = Path("/usr/share/java/slf4j-simple.jar")
SERVER_MAIN = "org.apache.zookeeper.server.ZooKeeperServerMain"
POLL_SECONDS = 0.05


class ZooKeeperError(RuntimeError):
    """ZooKeeper is not installed, or did not start."""


def answer_to(port: int, word: str, timeout: float = 1.0) -> str | None:
    """The server's answer to a four-letter command, or None if nothing answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as connection:
            connection.sendall(word.encode("ascii"))
            chunks = []
            while chunk := connection.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).decode("utf-8", "replace")
    except OSError:
        return None


class ZooKeeperServerProcess:
    def __init__(self, data_dir: str | os.PathLike, port: int, *, tick_time_ms: int = 500,
                 max_session_timeout_ms: int = 60_000) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.tick_time_ms = tick_time_ms
        self.max_session_timeout_ms = max_session_timeout_ms
        self.log_path = self.data_dir / "zookeeper.log"
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, chroot: str = "/kop", session_timeout: float | None = None) -> str:
        query = "" if session_timeout is None else f"?session_timeout={session_timeout:g}"
        return f"zk://127.0.0.1:{self.port}{chroot}{query}"

    def start(self, timeout: float = 60.0) -> None:
        java = shutil.which("java")
        if java is None or not ZOOKEEPER_JAR.exists():
            raise ZooKeeperError(f"ZooKeeper needs java and {ZOOKEEPER_JAR}: install Debian's "
                                 "zookeeper package")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "zoo.cfg"
        config.write_text("\n".join([
            f"tickTime={self.tick_time_ms}",
            f"dataDir={self.data_dir / 'data'}",
            f"clientPort={self.port}",
            "clientPortAddress=127.0.0.1",
            "maxClientCnxns=0",
            f"minSessionTimeout={2 * self.tick_time_ms}",
            f"maxSessionTimeout={self.max_session_timeout_ms}",
            "admin.enableServer=false",
            "4lw.commands.whitelist=srvr,ruok,mntr",
            "",
        ]))
        classpath = str(ZOOKEEPER_JAR)
        if SLF4J_SIMPLE_JAR.exists():
            classpath += f":{SLF4J_SIMPLE_JAR}"
        command = [java, "-Xms32m", "-Xmx256m", "-XX:+UseSerialGC",
                   "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", classpath,
                   SERVER_MAIN, str(config)]
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(detach(command), stdin=subprocess.DEVNULL,
                                             stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            answer = answer_to(self.port, "srvr")
            if answer is not None and answer.startswith("Zookeeper version"):
                return
            time.sleep(POLL_SECONDS)
        self.stop()
        raise ZooKeeperError(f"ZooKeeper did not start on port {self.port}; see {self.log_path}")

    def stop(self, timeout: float = 15.0) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
