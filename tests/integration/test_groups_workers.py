"""Consumer-group members as child processes, for the group integration tests.

Run as a program (`python test_groups_workers.py worker --client confluent ...`) this file is
one member of a consumer group using an unmodified client library (kafka-python, aiokafka or
confluent-kafka): it subscribes, prints one JSON line per event (partitions assigned or
revoked, each record consumed, each commit), commits after every batch it processed, and on
"stop" (a line on stdin) closes cleanly — leaving the group. A test can also SIGKILL it.

Imported, it gives the tests `ConsumerWorker` (the process and what it reported), a
`group_kop` fixture (kop with short group timers), and helpers to produce, create topics and
look at a group through the admin API. Its own test: each client library alone forms a group
of three over six partitions and consumes every record.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CLIENTS = ("kafka-python", "aiokafka", "confluent")
# kop settings for group tests: a short first-rebalance delay, sessions down to 1 s.
GROUP_SETTINGS = {"group.initial.rebalance.delay.ms": "300", "group.min.session.timeout.ms": "1000"}
SESSION_MS = 3000
HEARTBEAT_MS = 300
# Every library speaks "roundrobin", so members of different libraries can share a group.
ASSIGNOR = "roundrobin"


# ======================================================================== the worker program


def _emit(event: str, **fields) -> None:
    print(json.dumps({"event": event, **fields}), flush=True)


def _watch_stdin(stop: threading.Event) -> None:
    for line in sys.stdin:
        if line.strip() == "stop":
            break
    stop.set()


def _run_kafka_python(options: argparse.Namespace, stop: threading.Event) -> None:
    from kafka import ConsumerRebalanceListener, KafkaConsumer
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from kafka.errors import KafkaError

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            _emit("revoked", partitions=sorted(tp.partition for tp in revoked))

        def on_partitions_assigned(self, assigned):
            _emit("assigned", partitions=sorted(tp.partition for tp in assigned))

    consumer = KafkaConsumer(
        bootstrap_servers=options.bootstrap, group_id=options.group,
        group_instance_id=options.instance_id, client_id=options.name,
        enable_auto_commit=False, auto_offset_reset="earliest",
        session_timeout_ms=options.session_ms, heartbeat_interval_ms=HEARTBEAT_MS,
        partition_assignment_strategy=[RoundRobinPartitionAssignor])
    consumer.subscribe([options.topic], listener=Listener())
    _emit("started")
    while not stop.is_set():
        batches = consumer.poll(timeout_ms=200)
        records = [record for batch in batches.values() for record in batch]
        for record in records:
            _emit("record", partition=record.partition, offset=record.offset,
                  value=record.value.decode())
        if records:
            try:
                consumer.commit()
                _emit("committed")
            except KafkaError as exc:  # a rebalance got in the way: the records come again
                _emit("commit-failed", error=repr(exc))
    consumer.close()


def _run_aiokafka(options: argparse.Namespace, stop: threading.Event) -> None:
    import asyncio

    from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
    from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from aiokafka.errors import KafkaError

    class Listener(ConsumerRebalanceListener):
        async def on_partitions_revoked(self, revoked):
            _emit("revoked", partitions=sorted(tp.partition for tp in revoked))

        async def on_partitions_assigned(self, assigned):
            _emit("assigned", partitions=sorted(tp.partition for tp in assigned))

    async def consume() -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=options.bootstrap, group_id=options.group,
            group_instance_id=options.instance_id, client_id=options.name,
            enable_auto_commit=False, auto_offset_reset="earliest",
            session_timeout_ms=options.session_ms, heartbeat_interval_ms=HEARTBEAT_MS,
            partition_assignment_strategy=(RoundRobinPartitionAssignor,))
        consumer.subscribe([options.topic], listener=Listener())
        await consumer.start()
        _emit("started")
        try:
            while not stop.is_set():
                batches = await consumer.getmany(timeout_ms=200)
                records = [record for batch in batches.values() for record in batch]
                for record in records:
                    _emit("record", partition=record.partition, offset=record.offset,
                          value=record.value.decode())
                if records:
                    try:
                        await consumer.commit()
                        _emit("committed")
                    except KafkaError as exc:
                        _emit("commit-failed", error=repr(exc))
        finally:
            await consumer.stop()

    asyncio.run(consume())


def _run_confluent(options: argparse.Namespace, stop: threading.Event) -> None:
    from confluent_kafka import Consumer, KafkaException

    config = {
        "bootstrap.servers": options.bootstrap, "group.id": options.group,
        "client.id": options.name, "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "session.timeout.ms": options.session_ms,
        "heartbeat.interval.ms": HEARTBEAT_MS, "partition.assignment.strategy": ASSIGNOR,
    }
    if options.instance_id:
        config["group.instance.id"] = options.instance_id
    consumer = Consumer(config)
    consumer.subscribe(
        [options.topic],
        on_assign=lambda c, parts: _emit("assigned", partitions=sorted(p.partition for p in parts)),
        on_revoke=lambda c, parts: _emit("revoked", partitions=sorted(p.partition for p in parts)))
    _emit("started")
    while not stop.is_set():
        records = [m for m in consumer.consume(num_messages=500, timeout=0.2) if not m.error()]
        for record in records:
            _emit("record", partition=record.partition(), offset=record.offset(),
                  value=record.value().decode())
        if records:
            try:
                consumer.commit(asynchronous=False)
                _emit("committed")
            except KafkaException as exc:
                _emit("commit-failed", error=repr(exc))
    consumer.close()


RUNNERS: dict[str, Callable[[argparse.Namespace, threading.Event], None]] = {
    "kafka-python": _run_kafka_python, "aiokafka": _run_aiokafka, "confluent": _run_confluent}


def worker_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="test_groups_workers.py worker")
    parser.add_argument("--client", choices=CLIENTS, required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--session-ms", type=int, default=SESSION_MS)
    parser.add_argument("--instance-id", default=None)
    options = parser.parse_args(argv)
    stop = threading.Event()
    threading.Thread(target=_watch_stdin, args=(stop,), daemon=True).start()
    RUNNERS[options.client](options, stop)
    _emit("closed")
    return 0


# ======================================================================== the test side


@dataclass(frozen=True)
class Consumed:
    worker: str
    partition: int
    offset: int
    value: str


@dataclass
class ConsumerWorker:
    """One member process and everything it reported so far."""

    client: str
    name: str
    process: subprocess.Popen
    events: list[dict] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def start(cls, client: str, bootstrap: str, topic: str, group: str, name: str,
              log_dir: Path, session_ms: int = SESSION_MS,
              instance_id: str | None = None) -> ConsumerWorker:
        command = [sys.executable, __file__, "worker", "--client", client,
                   "--bootstrap", bootstrap, "--topic", topic, "--group", group,
                   "--name", name, "--session-ms", str(session_ms)]
        if instance_id:
            command += ["--instance-id", instance_id]
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / f"{name}.log", "ab") as log:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=log, text=True, bufsize=1)
        worker = cls(client, name, process)
        threading.Thread(target=worker._read, daemon=True).start()
        return worker

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self.lock:
                self.events.append(event)

    def snapshot(self) -> list[dict]:
        with self.lock:
            return list(self.events)

    @property
    def assignment(self) -> set[int] | None:
        """The partitions the client itself says it holds (None before its first assignment,
        or while revoked)."""
        current: set[int] | None = None
        for event in self.snapshot():
            if event["event"] == "assigned":
                current = set(event["partitions"])
            elif event["event"] == "revoked":
                current = None
        return current

    def rebalances_seen(self) -> int:
        """How many assignment changes the client reported (partitions assigned or revoked)."""
        return sum(1 for event in self.snapshot() if event["event"] in ("assigned", "revoked"))

    def consumed(self) -> list[Consumed]:
        return [Consumed(self.name, e["partition"], e["offset"], e["value"])
                for e in self.snapshot() if e["event"] == "record"]

    def stop(self, timeout: float = 60.0) -> None:
        """Close the consumer cleanly (it leaves the group) and wait for the process."""
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.write("stop\n")
            self.process.stdin.flush()
        self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


def wait_for(condition: Callable[[], object], timeout: float, what: str,
             interval: float = 0.1) -> object:
    """Poll `condition` until it returns something true; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result(30)


def produce(bootstrap: str, topic: str, values: list[str], partitions: int) -> None:
    """Values spread round-robin over the partitions; returns once all are acknowledged."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    failures: list = []
    for index, value in enumerate(values):
        producer.produce(topic, value.encode(), partition=index % partitions,
                         on_delivery=lambda error, _: failures.append(error) if error else None)
    assert producer.flush(30) == 0 and not failures, failures


def described_group(bootstrap: str, group: str) -> tuple[str, dict[str, set[int]]]:
    """(state, {member id: partitions}) as the coordinator describes the group."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    description = admin.describe_consumer_groups([group])[group].result(30)
    members = {member.member_id: {tp.partition for tp in member.assignment.topic_partitions}
               for member in description.members}
    return description.state.name, members


def partitions_split_exactly(assignments: list[set[int] | None], partitions: int) -> bool:
    """Every partition held by exactly one of the assignments."""
    if any(a is None for a in assignments):
        return False
    held = [p for a in assignments for p in a]  # type: ignore[union-attr]
    return sorted(held) == list(range(partitions))


def wait_for_balanced_group(bootstrap: str, group: str, workers: list[ConsumerWorker],
                            partitions: int, timeout: float = 60.0) -> None:
    """Until the coordinator's view and every live member's own view agree that the group
    has exactly these members and each partition is owned by exactly one of them."""
    def balanced() -> bool:
        state, members = described_group(bootstrap, group)
        return (state == "STABLE" and len(members) == len(workers)
                and partitions_split_exactly(list(members.values()), partitions)
                and partitions_split_exactly([w.assignment for w in workers], partitions))

    wait_for(balanced, timeout, f"{group} to balance {partitions} partitions over "
                                f"{[w.name for w in workers]}", interval=0.25)


def wait_until_consumed(workers: list[ConsumerWorker], values: list[str],
                        timeout: float = 60.0) -> None:
    wanted = set(values)

    def all_seen() -> bool:
        return wanted <= {c.value for w in workers for c in w.consumed()}

    wait_for(all_seen, timeout, f"{len(wanted)} records to be consumed")


@pytest.fixture(name="group_kop")
def group_kop_fixture(tmp_path):
    """kop standalone with group timers short enough for tests."""
    from kop.process import StandaloneProcess

    process = StandaloneProcess(tmp_path / "kop", settings=GROUP_SETTINGS)
    process.start()
    yield process
    if process.running:
        process.kill()


@pytest.fixture(name="workers")
def workers_fixture(tmp_path):
    """Start workers with `workers(client, name, ...)`; all are stopped after the test."""
    started: list[ConsumerWorker] = []

    def start(client: str, bootstrap: str, topic: str, group: str, name: str,
              **options) -> ConsumerWorker:
        worker = ConsumerWorker.start(client, bootstrap, topic, group, name,
                                      tmp_path / "workers", **options)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


# ======================================================================== its own test


@pytest.mark.parametrize("client", CLIENTS)
def test_each_client_library_shares_six_partitions_among_three_members(
        client: str, group_kop, workers) -> None:
    bootstrap = group_kop.address
    create_topic(bootstrap, "orders", 6)
    members = [workers(client, bootstrap, "orders", "team", f"{client}-{n}") for n in range(3)]
    wait_for_balanced_group(bootstrap, "team", members, 6)
    values = [f"record-{n}" for n in range(60)]
    produce(bootstrap, "orders", values, 6)
    wait_until_consumed(members, values)
    for member in members:
        mine = {c.partition for c in member.consumed()}
        assert mine <= member.assignment, "a member consumed a partition it was not assigned"
    for member in members:
        member.stop()
    state, remaining = described_group(bootstrap, "team")
    assert (state, remaining) == ("EMPTY", {})


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "worker":
    sys.exit(worker_main(sys.argv[2:]))
