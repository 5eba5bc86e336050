"""`kop standalone` as a child process (tests, benchmarks, the compatibility suite)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kop.standalone import READY_LINE_PREFIX
from storage.process import ServiceProcess


class StandaloneProcess(ServiceProcess):
    """    kop = StandaloneProcess(tmp_path / "kop")
    bootstrap = kop.start()       # "127.0.0.1:<free port>"
    kop.kill(); kop.start()       # SIGKILL, then restart on the same port and data
    """

    def __init__(self, data_dir: str | os.PathLike, *, listen: str = "127.0.0.1:0",
                 settings: dict[str, str] | None = None, log_level: str = "INFO") -> None:
        self.data_dir = Path(data_dir)
        extra: list[str] = []
        for name, value in (settings or {}).items():
            extra += ["--set", f"{name}={value}"]

        def command(address: str) -> list[str]:
            return [sys.executable, "-m", "kop", "--log-level", log_level, "standalone",
                    "--data-dir", str(self.data_dir), "--listen", address, *extra]

        super().__init__("kop standalone", command, READY_LINE_PREFIX,
                         self.data_dir.with_name(self.data_dir.name + ".log"), listen)
