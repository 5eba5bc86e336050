"""Measure what losing a storage node costs, at the default E=3 Qw=2 Qa=2 on four nodes:

- write unavailability: from the SIGKILL to the first acknowledgement on every partition, as
  an idempotent acks=all producer sees it (the writers' ensemble changes);
- re-replication: with every ledger closed (the brokers restarted gracefully after loading
  data), from the SIGKILL until no ledger names the lost node and none is marked — the
  grace period, then the brokers' auto-recovery copying the lost copies.

    python -m tests.cluster.measure_recovery [--megabytes 64] [--grace-period 5]

Runs a real cluster (ZooKeeper, 4 storage nodes, 3 brokers) like tests/cluster.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import Producer

from kop.cluster.placement import designated_owner
from storage.ledger.auto_recovery import AutoRecoverySettings
from tests.cluster.harness import ClusterUnderTest, Workload, wait_for
from tests.cluster.replicas import StorageInspector
from tests.zookeeper import ZooKeeperServer

TOPIC, PARTITIONS, BROKERS = "measured", 6, (1, 2, 3)
RECORD_BYTES = 16 * 1024
COPIED = re.compile(r"fully replicated \((\d+) entries copied\)")


def designated() -> dict[int, int]:
    return {p: designated_owner(TOPIC, p, BROKERS) for p in range(PARTITIONS)}


def load(bootstrap: str, megabytes: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                         "acks": "all", "linger.ms": 20})
    value = b"x" * RECORD_BYTES
    for n in range(megabytes * 1024 * 1024 // RECORD_BYTES):
        while True:
            try:
                producer.produce(TOPIC, value=value, partition=n % PARTITIONS)
                break
            except BufferError:
                producer.poll(0.1)
    assert producer.flush(300) == 0, "the load was not acknowledged"


def write_unavailability(cluster: ClusterUnderTest, victim: int) -> float:
    workload = Workload(cluster.bootstrap(), TOPIC, PARTITIONS, "measure").start()
    try:
        workload.wait_for_acks(time.monotonic(), set(range(PARTITIONS)), 60)
        killed_at = time.monotonic()
        cluster.storage_nodes[victim].kill()
        first = workload.wait_for_acks(killed_at, set(range(PARTITIONS)), 120)
        return max(first.values()) - killed_at
    finally:
        workload.stop()


def re_replication(cluster: ClusterUnderTest, inspector: StorageInspector,
                   victim: int) -> tuple[float, int, int, int]:
    """(seconds, ledgers repaired, entries copied, payload bytes of those ledgers)."""
    lost = cluster.storage_nodes[victim].address
    # Closed ledgers (the loaded data); the brokers' new, open ledgers wait for their close.
    named = {i: m for i, m in inspector.ledgers().items()
             if m.is_closed and lost in m.all_nodes()}
    assert named, f"no closed ledger is on {lost}"
    copied_before = entries_copied(cluster)
    killed_at = time.monotonic()
    cluster.storage_nodes[victim].kill()

    def repaired() -> bool:
        ledgers = inspector.ledgers()
        return not any(lost in ledgers[i].all_nodes() for i in named if i in ledgers)

    wait_for(repaired, 1800, "re-replication")
    took = time.monotonic() - killed_at
    return (took, len(named), entries_copied(cluster) - copied_before,
            sum(m.length for m in named.values()))


def entries_copied(cluster: ClusterUnderTest) -> int:
    return sum(int(n) for broker in cluster.brokers.values()
               for n in COPIED.findall(broker.log_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=64)
    parser.add_argument("--grace-period", type=float, default=5.0)
    args = parser.parse_args()
    auto_recovery = AutoRecoverySettings(grace_period=args.grace_period, audit_interval=60.0,
                                         retry_interval=1.0)

    from twisted.internet import reactor

    threading.Thread(target=reactor.run, kwargs={"installSignalHandlers": False},
                     daemon=True).start()
    base = Path(tempfile.mkdtemp(prefix="kop-recovery-"))
    with ZooKeeperServer(base / "zookeeper") as zookeeper:
        cluster = ClusterUnderTest(base, zookeeper.unique_url("/measure"), replication=None,
                                   auto_recovery=auto_recovery)
        try:
            cluster.start(storage_nodes=5)  # one to lose while writing, one afterwards
            cluster.create_topic(TOPIC, PARTITIONS)
            wait_for(lambda: cluster.leaders(TOPIC) == designated(), 60, "partitions settled")
            unavailable = write_unavailability(cluster, victim=4)

            loaded_at = time.monotonic()
            load(cluster.bootstrap(), args.megabytes)
            print(f"loaded {args.megabytes} MiB in {time.monotonic() - loaded_at:.1f} s")
            cluster.restart_brokers()  # every ledger closed, so every one can be repaired
            inspector = StorageInspector.open(cluster.metadata_url)
            try:
                first_lost = cluster.storage_nodes[4].address
                wait_for(lambda: not any(first_lost in m.all_nodes()
                                         for m in inspector.ledgers().values() if m.is_closed),
                         1800, "the first lost node's ledgers repaired")
                took, ledgers, entries, payload = re_replication(cluster, inspector, victim=0)
            finally:
                inspector.close()
            print(f"write unavailability after a storage node's SIGKILL: {unavailable:.2f} s")
            print(f"re-replication: {ledgers} ledgers, {entries} entries copied "
                  f"({payload / 2**20:.1f} MiB of payload in those ledgers) in {took:.1f} s "
                  f"after the SIGKILL, grace period {args.grace_period:g} s included")
        finally:
            cluster.close()
            reactor.callFromThread(reactor.stop)


if __name__ == "__main__":
    main()
