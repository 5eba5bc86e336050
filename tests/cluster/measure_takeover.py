"""Measure how long partitions are unavailable when a broker dies (SIGKILL) or stops (SIGTERM),
as an idempotent acks=all producer sees it: from the signal to the first acknowledgement on
every partition the broker owned.

    python -m tests.cluster.measure_takeover [--rounds 5] [--session-timeout 4]

Runs a real cluster (ZooKeeper, 3 storage nodes, 3 brokers) like tests/cluster; each round
takes one broker down, measures, brings it back and waits for the cluster to settle.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from kop.cluster.placement import designated_owner
from tests.cluster.harness import ClusterUnderTest, Workload, wait_for
from tests.zookeeper import ZooKeeperServer

TOPIC, PARTITIONS, BROKERS = "measured", 12, (1, 2, 3)


def designated() -> dict[int, int]:
    return {p: designated_owner(TOPIC, p, BROKERS) for p in range(PARTITIONS)}


def one_round(cluster: ClusterUnderTest, workload: Workload, victim: int, kill: bool) -> float:
    orphaned = {p for p, leader in cluster.leaders(TOPIC).items() if leader == victim}
    started = time.monotonic()
    if kill:
        cluster.brokers[victim].kill()
    else:
        cluster.brokers[victim].stop()
    first = workload.wait_for_acks(started, orphaned, 120)
    took = max(first.values()) - started
    cluster.brokers[victim].start()
    wait_for(lambda: cluster.leaders(TOPIC) == designated(), 120, "the cluster to settle")
    workload.wait_for_acks(time.monotonic(), set(range(PARTITIONS)), 120)
    return took


def summary(name: str, values: list[float]) -> str:
    return (f"{name}: median {statistics.median(values):.2f} s, min {min(values):.2f} s, "
            f"max {max(values):.2f} s over {len(values)} rounds")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--session-timeout", type=float, default=4.0)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="kop-takeover-"))
    with ZooKeeperServer(base / "zookeeper") as zookeeper:
        cluster = ClusterUnderTest(base, zookeeper.unique_url("/measure"), args.session_timeout)
        try:
            cluster.start()
            cluster.create_topic(TOPIC, PARTITIONS)
            wait_for(lambda: cluster.leaders(TOPIC) == designated(), 60, "partitions settled")
            workload = Workload(cluster.bootstrap(), TOPIC, PARTITIONS, "measure").start()
            workload.wait_for_acks(time.monotonic(), set(range(PARTITIONS)), 60)
            kills, stops = [], []
            for round_number in range(args.rounds):
                victim = BROKERS[round_number % len(BROKERS)]
                kills.append(one_round(cluster, workload, victim, kill=True))
                stops.append(one_round(cluster, workload, victim, kill=False))
                print(f"round {round_number + 1}: broker {victim}: SIGKILL {kills[-1]:.2f} s, "
                      f"SIGTERM {stops[-1]:.2f} s", flush=True)
            workload.stop()
            print(f"session timeout {args.session_timeout:g} s, {PARTITIONS} partitions, "
                  f"{len(BROKERS)} brokers")
            print(summary("takeover after SIGKILL", kills))
            print(summary("hand-off after SIGTERM", stops))
        finally:
            cluster.close()


if __name__ == "__main__":
    main()
