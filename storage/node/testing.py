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
import sys
from pathlib import Path

from storage.node.main import READY_LINE_PREFIX
from storage.process import ServiceProcess, ServiceProcessError

StorageNodeProcessError = ServiceProcessError


class StorageNodeProcess(ServiceProcess):
    def __init__(self, data_dir: str | os.PathLike, *, listen: str = "127.0.0.1:0",
                 metadata_url: str | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.data_dir = Path(data_dir)
        self.metadata_url = metadata_url
        self.extra_args = extra_args

        def command(address: str) -> list[str]:
            line = [sys.executable, "-m", "storage.node", "--data-dir", str(self.data_dir),
                    "--listen", address, *self.extra_args]
            if self.metadata_url:
                line += ["--metadata", self.metadata_url]
            return line

        super().__init__("storage node", command, READY_LINE_PREFIX,
                         self.data_dir.with_name(self.data_dir.name + ".log"), listen)

    def start(self, timeout: float = 30.0) -> str:
        """Start the node and return its address once it serves (a restart keeps the port)."""
        return super().start(timeout)
