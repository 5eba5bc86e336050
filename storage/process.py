"""kop services as child processes: for tests, benchmarks, the compatibility suite and
`kop dev-cluster`.

A service announces readiness by printing one line that starts with a known prefix and
ends with the address it serves ("... listening on 127.0.0.1:40123"). `ServiceProcess`
starts the command, waits for that line (never a fixed sleep), and can stop it with SIGTERM,
kill it with SIGKILL, freeze it with SIGSTOP / SIGCONT, and restart it on the same address.
The service's stderr goes to a log file whose text failure messages include.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path


class ServiceProcessError(RuntimeError):
    """The process did not start or stop as expected."""


class ServiceProcess:
    def __init__(self, name: str, command: Callable[[str], Sequence[str]], ready_prefix: str,
                 log_path: str | os.PathLike, listen: str = "127.0.0.1:0",
                 env: dict[str, str] | None = None) -> None:
        """`command(listen)` builds the command line for a listen address; a restart passes
        the address the first run reported, so the service keeps its port."""
        self.name = name
        self._command = command
        self._ready_prefix = ready_prefix
        self.log_path = Path(log_path)
        self.listen = listen
        self.address: str | None = None
        self._env = env
        self._process: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout: float = 60.0) -> str:
        """Start the service and return its address once it serves."""
        if self.running:
            raise ServiceProcessError(f"{self.name} is already running")
        command = list(self._command(self.address or self.listen))
        env = None if self._env is None else {**os.environ, **self._env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log,
                                             stdin=subprocess.DEVNULL, env=env)
        self.address = self._read_ready_line(timeout)
        return self.address

    def _read_ready_line(self, timeout: float) -> str:
        assert self._process is not None and self._process.stdout is not None
        deadline = time.monotonic() + timeout
        buffered = b""
        while True:
            newline = buffered.find(b"\n")
            if newline >= 0:
                line, buffered = buffered[:newline].decode(errors="replace").strip(), buffered[newline + 1:]
                if line.startswith(self._ready_prefix):
                    return line[len(self._ready_prefix):]
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise ServiceProcessError(
                    f"{self.name} did not start within {timeout} s:\n{self.log_text()}")
            readable, _, _ = select.select([self._process.stdout], [], [], remaining)
            if readable:
                chunk = os.read(self._process.stdout.fileno(), 4096)
                if not chunk:
                    self._process.wait()
                    raise ServiceProcessError(
                        f"{self.name} exited with {self._process.returncode}:\n{self.log_text()}")
                buffered += chunk

    def kill(self) -> None:
        """SIGKILL: no chance to flush or save anything."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
        self._reap()

    def stop(self, stop_signal: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """SIGTERM (or `stop_signal`) and wait for the exit; returns the exit code."""
        if self._process is None:
            return 0
        if self._process.poll() is None:
            self._process.send_signal(stop_signal)
        return self.wait(timeout)

    def send_signal(self, signal_number: int) -> None:
        assert self._process is not None, f"{self.name} was never started"
        self._process.send_signal(signal_number)

    def wait(self, timeout: float = 60.0) -> int:
        """Wait for the process to exit; returns the exit code (kills it after `timeout`)."""
        assert self._process is not None, f"{self.name} was never started"
        try:
            code = self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise ServiceProcessError(
                f"{self.name} did not exit within {timeout} s:\n{self.log_text()}") from None
        self._reap()
        return code

    def freeze(self) -> None:
        """SIGSTOP: the process keeps its sockets but does nothing (a long GC pause)."""
        if self._process is not None:
            self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGCONT)

    def _reap(self) -> None:
        if self._process is not None:
            self._process.wait()
            if self._process.stdout is not None:
                self._process.stdout.close()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def __enter__(self) -> ServiceProcess:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.running:
            with contextlib.suppress(ServiceProcessError):
                self.stop()
