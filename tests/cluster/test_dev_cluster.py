"""`kop dev-cluster`: starts ZooKeeper, storage nodes and brokers, prints a bootstrap list that
real clients use, stops everything on Ctrl-C (SIGINT), and a second run on the same base
directory finds the records of the first."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time

from tests.integration.clients import confluent_consume, confluent_produce

BOOTSTRAP_PREFIX = "bootstrap servers: "


class DevCluster:
    def __init__(self, base_dir) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kop", "dev-cluster", "--brokers", "2", "--storage-nodes",
             "2", "--base-dir", str(base_dir), "--session-timeout", "4"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.output = ""

    def wait_for_line(self, prefix: str, timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while True:
            for line in self.output.splitlines():
                if line.startswith(prefix):
                    return line[len(prefix):]
            remaining = deadline - time.monotonic()
            assert remaining > 0 and self.process.poll() is None, self.output
            readable, _, _ = select.select([self.process.stdout], [], [], remaining)
            if readable:
                self.output += os.read(self.process.stdout.fileno(), 4096).decode()

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        code = self.process.wait(90)
        self.output += self.process.stdout.read().decode()
        self.process.stdout.close()
        return code


def listening(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=1).close()
        return True
    except OSError:
        return False


def test_dev_cluster_runs_stops_and_restarts(tmp_path):
    first = DevCluster(tmp_path)
    try:
        bootstrap = first.wait_for_line(BOOTSTRAP_PREFIX)
        assert len(bootstrap.split(",")) == 2
        confluent_produce(bootstrap, "tryout", [{"value": f"v{i}".encode()} for i in range(10)],
                          **{"enable.idempotence": True, "acks": "all"})
    finally:
        code = first.interrupt()
    assert code == 0 and "stopped" in first.output, first.output
    assert not any(listening(address) for address in bootstrap.split(","))

    second = DevCluster(tmp_path)
    try:
        assert second.wait_for_line(BOOTSTRAP_PREFIX) == bootstrap  # same ports, same data
        consumed = confluent_consume(bootstrap, "tryout", [0], 10)
        assert [c.value for c in consumed] == [f"v{i}".encode() for i in range(10)]
    finally:
        assert second.interrupt() == 0, second.output
