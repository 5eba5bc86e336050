"""Cluster services as child processes: `kop broker` and `kop storage-node` (tests, benchmarks,
`kop dev-cluster`).

    broker = BrokerProcess(tmp_path / "broker-1.log", "zk://127.0.0.1:2181/kop", broker_id=1)
    bootstrap = broker.start()       # "127.0.0.1:<free port>", once it prints its ready line
    broker.freeze(); broker.thaw()   # SIGSTOP / SIGCONT
    broker.kill(); broker.start()    # SIGKILL, then the same id on the same port

With `detached=True` a service gets its own process group (a terminal's Ctrl-C reaches only
the supervisor, which then stops the services in order) and dies with its supervisor.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from kop.broker import ReplicationSettings
from kop.standalone import READY_LINE_PREFIX
from storage.ledger.auto_recovery import AutoRecoverySettings
from storage.node.main import READY_LINE_PREFIX as STORAGE_READY_LINE_PREFIX
from storage.process import ServiceProcess

DEFAULT_AUTO_RECOVERY = AutoRecoverySettings()
SETSID = shutil.which("setsid")
SETPRIV = shutil.which("setpriv")


def detach(command: Sequence[str]) -> list[str]:
    """`command` in a process group of its own, killed (SIGTERM) if its parent dies."""
    prefix: list[str] = []
    if SETPRIV is not None:
        prefix += [SETPRIV, "--pdeathsig", "TERM"]
    if SETSID is not None:
        prefix += [SETSID]
    return [*prefix, *command]


def auto_recovery_options(settings: AutoRecoverySettings | None) -> list[str]:
    """The `kop broker` options that give it these auto-recovery settings (None: none)."""
    if settings is None:
        return ["--no-auto-recovery"]
    return ["--recovery-grace-period", str(settings.grace_period),
            "--recovery-audit-interval", str(settings.audit_interval),
            "--recovery-retry-interval", str(settings.retry_interval)]


class BrokerProcess(ServiceProcess):
    def __init__(self, log_path: str | os.PathLike, metadata_url: str, *,
                 broker_id: int | None = None, listen: str = "127.0.0.1:0",
                 replication: ReplicationSettings | None = None,
                 settings: dict[str, str] | None = None, log_level: str = "INFO",
                 auto_recovery: AutoRecoverySettings | None = DEFAULT_AUTO_RECOVERY,
                 detached: bool = False) -> None:
        """`auto_recovery` None: the broker runs no auto-recovery."""
        self.metadata_url = metadata_url
        self.broker_id = broker_id
        options = ["--metadata", metadata_url]
        if broker_id is not None:
            options += ["--broker-id", str(broker_id)]
        if replication is not None:
            options += ["--ensemble-size", str(replication.ensemble_size),
                        "--write-quorum", str(replication.write_quorum),
                        "--ack-quorum", str(replication.ack_quorum)]
        options += auto_recovery_options(auto_recovery)
        for name, value in (settings or {}).items():
            options += ["--set", f"{name}={value}"]

        def command(address: str) -> list[str]:
            line = [sys.executable, "-m", "kop", "--log-level", log_level, "broker",
                    "--listen", address, *options]
            return detach(line) if detached else line

        name = "kop broker" if broker_id is None else f"kop broker {broker_id}"
        super().__init__(name, command, READY_LINE_PREFIX, log_path, listen)


class StorageNodeService(ServiceProcess):
    def __init__(self, data_dir: str | os.PathLike, metadata_url: str, *,
                 listen: str = "127.0.0.1:0", detached: bool = False) -> None:
        self.data_dir = Path(data_dir)

        def command(address: str) -> list[str]:
            line = [sys.executable, "-m", "kop", "storage-node", "--data-dir",
                    str(self.data_dir), "--listen", address, "--metadata", metadata_url]
            return detach(line) if detached else line

        super().__init__(f"storage node {self.data_dir.name}", command,
                         STORAGE_READY_LINE_PREFIX,
                         self.data_dir.with_name(self.data_dir.name + ".log"), listen)
