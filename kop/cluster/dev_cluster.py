"""`kop dev-cluster`: ZooKeeper, storage nodes and brokers on loopback, for trying cluster mode.

Everything lives under one base directory (a new temporary one unless given):

    zookeeper/            ZooKeeper's data, configuration and log
    storage-<n>/          storage node n's data (its log: storage-<n>.log)
    broker-<n>.log        broker n's log
    ports.json            the ports chosen on the first run

Ledgers name storage nodes by address, so a base directory keeps its ports: a second run on
the same directory reuses them and finds every topic and record where it was. Every broker
runs auto-recovery, so ledgers of a storage node that stays away longer than the grace period
get their copies back on the others. The command prints the bootstrap list and runs until Ctrl-C (or SIGTERM), then stops the brokers (they
hand their partitions off and close them cleanly), the storage nodes, and ZooKeeper.
"""

from __future__ import annotations

import json
import signal
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kop.broker import ReplicationSettings
from kop.cluster.process import BrokerProcess, StorageNodeService, detach
from storage.ledger.auto_recovery import AutoRecoverySettings
from storage.metadata.zookeeper_server import (
    ZooKeeperServer,
    ZooKeeperUnavailable,
    free_loopback_port,
)
from storage.process import ServiceProcess

PORTS_FILE = "ports.json"
DEFAULT_SESSION_TIMEOUT = 6.0


@dataclass
class DevClusterPorts:
    zookeeper: int
    storage_nodes: list[int] = field(default_factory=list)
    brokers: list[int] = field(default_factory=list)

    @classmethod
    def load_or_choose(cls, base_dir: Path, brokers: int, storage_nodes: int) -> DevClusterPorts:
        """The ports recorded for this directory, with new ones for any additional process."""
        path = base_dir / PORTS_FILE
        try:
            recorded = json.loads(path.read_text())
            ports = cls(int(recorded["zookeeper"]), [int(p) for p in recorded["storage_nodes"]],
                        [int(p) for p in recorded["brokers"]])
        except FileNotFoundError:
            ports = cls(free_loopback_port())
        except (ValueError, KeyError, TypeError) as exc:
            raise SystemExit(f"{path} is damaged ({exc!r}); fix or delete it") from None
        ports.storage_nodes += [free_loopback_port() for _ in range(storage_nodes - len(ports.storage_nodes))]
        ports.brokers += [free_loopback_port() for _ in range(brokers - len(ports.brokers))]
        path.write_text(json.dumps({"zookeeper": ports.zookeeper,
                                    "storage_nodes": ports.storage_nodes,
                                    "brokers": ports.brokers}, indent=2))
        return ports


def default_replication(storage_nodes: int) -> ReplicationSettings:
    """E=3 Qw=2 Qa=2, shrunk to fit fewer storage nodes."""
    ensemble = min(3, storage_nodes)
    write_quorum = min(2, ensemble)
    return ReplicationSettings(ensemble, write_quorum, min(2, write_quorum))


def run_dev_cluster(brokers: int, storage_nodes: int, base_dir: str | None = None, *,
                    session_timeout: float = DEFAULT_SESSION_TIMEOUT,
                    replication: ReplicationSettings | None = None,
                    settings: dict[str, str] | None = None, log_level: str = "INFO",
                    recovery_grace_period: float = AutoRecoverySettings().grace_period) -> int:
    if brokers < 1 or storage_nodes < 1:
        raise SystemExit("a dev cluster needs at least one broker and one storage node")
    root = Path(base_dir) if base_dir else Path(tempfile.mkdtemp(prefix="kop-dev-cluster-"))
    root.mkdir(parents=True, exist_ok=True)
    ports = DevClusterPorts.load_or_choose(root, brokers, storage_nodes)
    replication = replication or default_replication(storage_nodes)
    auto_recovery = AutoRecoverySettings(grace_period=recovery_grace_period)
    # Ticks of 500 ms: session timeouts from 1 s; the server dies with this supervisor.
    try:
        zookeeper = ZooKeeperServer(root / "zookeeper", port=ports.zookeeper,
                                    tick_time_ms=500, wrap_command=detach)
    except ZooKeeperUnavailable as exc:
        raise SystemExit(f"kop dev-cluster: {exc}") from None
    url = zookeeper.url("/kop", session_timeout)
    services: list[ServiceProcess] = [
        StorageNodeService(root / f"storage-{n}", url, listen=f"127.0.0.1:{port}",
                           detached=True)
        for n, port in enumerate(ports.storage_nodes[:storage_nodes], start=1)]
    services += [
        BrokerProcess(root / f"broker-{n}.log", url, broker_id=n, listen=f"127.0.0.1:{port}",
                      replication=replication, settings=settings, log_level=log_level,
                      auto_recovery=auto_recovery, detached=True)
        for n, port in enumerate(ports.brokers[:brokers], start=1)]

    stop_requested = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stop_requested.set())
    started: list[ServiceProcess] = []
    try:
        print(f"starting ZooKeeper on 127.0.0.1:{ports.zookeeper} (data in {root})", flush=True)
        try:
            zookeeper.start()
        except ZooKeeperUnavailable as exc:
            raise SystemExit(f"kop dev-cluster: {exc}") from None
        for service in services:
            if stop_requested.is_set():
                return 130
            print(f"starting {service.name} ...", flush=True)
            service.start()
            started.append(service)
        bootstrap = ",".join(s.address or "" for s in services if isinstance(s, BrokerProcess))
        print(f"kop dev cluster ready: {brokers} broker(s), {storage_nodes} storage node(s), "
              f"E={replication.ensemble_size} Qw={replication.write_quorum} "
              f"Qa={replication.ack_quorum}", flush=True)
        print(f"auto-recovery: in every broker, re-replicating a storage node's ledgers "
              f"{recovery_grace_period:g} s after it goes away", flush=True)
        if storage_nodes <= replication.ensemble_size:
            print(f"note: no spare storage node for ensemble changes: while one is down, "
                  f"writes wait for it (--storage-nodes {replication.ensemble_size + 1} "
                  "keeps them going)", flush=True)
        print(f"metadata: {url}", flush=True)
        print(f"logs: {root}", flush=True)
        print(f"bootstrap servers: {bootstrap}", flush=True)
        print("Ctrl-C stops everything", flush=True)
        stop_requested.wait()
        return 0
    finally:
        print("stopping ...", flush=True)
        _stop_all([s for s in started if isinstance(s, BrokerProcess)])
        _stop_all([s for s in started if not isinstance(s, BrokerProcess)])
        zookeeper.stop()
        print("stopped", flush=True)


def _stop_all(services: Sequence[ServiceProcess]) -> None:
    """Stop them in parallel (each stop sends SIGTERM and waits for a clean exit)."""
    threads = [threading.Thread(target=_stop_quietly, args=(service,)) for service in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def _stop_quietly(service: ServiceProcess) -> None:
    try:
        service.stop()
    except Exception as exc:
        print(f"{service.name}: {exc}", flush=True)
