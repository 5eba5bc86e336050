"""Storage nodes as real processes, for integration tests and benchmarks.

    node = StorageNodeProcess(tmp_path / "node1")
    address = node.start()          # waits for the node's ready line; port 0 → a free port
    node.kill()                     # SIGKILL
    node.start()                    # same data directory, same port
    node.stop()                     # SIGTERM, waits for a clean exit

The node's log goes to `log_path` (next to the data directory), which
`StorageNodeProcess.log_text()` returns for assertions and failure messages.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from storage.node.main import READY_LINE_PREFIX


class StorageNodeProcessError(RuntimeError):
    """The node process did not start or stop as expected."""


class StorageNodeProcess:
    def __init__(self, data_dir: str | os.PathLike, *, listen: str = "127.0.0.1:0",
                 metadata_url: str | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.data_dir = Path(data_dir)
        self.listen = listen
        self.metadata_url = metadata_url
        self.extra_args = extra_args
        self.log_path = self.data_dir.with_name(self.data_dir.name + ".log")
        self.address: str | None = None
        self._process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 30.0) -> str:
        """Start the node and return its address once it serves. A restart reuses the
        port the node had before."""
        if self.running:
            raise StorageNodeProcessError("node is already running")
        listen = self.address or self.listen
        command = [sys.executable, "-m", "storage.node", "--data-dir", str(self.data_dir),
                   "--listen", listen, *self.extra_args]
        if self.metadata_url:
            command += ["--metadata", self.metadata_url]
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log,
                                             stdin=subprocess.DEVNULL)
        self.address = self._read_ready_line(timeout)
        return self.address

    def _read_ready_line(self, timeout: float) -> str:
        assert self._process is not None and self._process.stdout is not None
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise StorageNodeProcessError(f"node did not start within {timeout} s:\n"
                                              + self.log_text())
            readable, _, _ = select.select([self._process.stdout], [], [], remaining)
            if readable:
                chunk = os.read(self._process.stdout.fileno(), 1024)
                if not chunk:
                    self._process.wait()
                    raise StorageNodeProcessError(
                        f"node exited with {self._process.returncode}:\n" + self.log_text())
                line += chunk
        text = line.decode().strip()
        if not text.startswith(READY_LINE_PREFIX):
            raise StorageNodeProcessError(f"unexpected output {text!r}")
        return text[len(READY_LINE_PREFIX):]

    def kill(self) -> None:
        """SIGKILL: no chance to flush or checkpoint anything."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._close_pipe()

    def stop(self, stop_signal: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send SIGTERM (or `stop_signal`) and wait; returns the exit code."""
        if self._process is None:
            return 0
        self._process.send_signal(stop_signal)
        return self.wait(timeout)

    def send_signal(self, signal_number: int) -> None:
        assert self._process is not None
        self._process.send_signal(signal_number)

    def wait(self, timeout: float = 30.0) -> int:
        """Wait for the process to exit; returns the exit code."""
        assert self._process is not None
        try:
            code = self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise StorageNodeProcessError(f"node did not exit within {timeout} s:\n"
                                          + self.log_text()) from None
        self._close_pipe()
        return code

    def _close_pipe(self) -> None:
        if self._process is not None and self._process.stdout is not None:
            self._process.stdout.close()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
