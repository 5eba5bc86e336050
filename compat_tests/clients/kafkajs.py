"""kafkajs adapter: the scenarios' primitives run by kafkajs 2.2.4 in Node.js.

The work happens in compat_tests/node/driver.js, one Node.js process per adapter,
which takes JSON requests on stdin and answers on stdout (see its header). This side
only translates: records to and from JSON, kafkajs errors to Kafka's error names.
Requests may come from several threads at once (group members poll on their own
threads); answers are matched to requests by id.

What kafkajs cannot express exactly:
- it keeps a record's headers in an object, so a header name that comes back after a
  different name (a, b, a) cannot keep its order, and integer-like names ("1") are
  put first by JavaScript;
- it has no consumer outside a group: every read joins a group of its own.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import subprocess
import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from compat_tests.clients import NODE_DIR
from compat_tests.clients.base import DEFAULT_WAIT_SECONDS, Client, Member
from compat_tests.kafka_errors import name_for_code
from compat_tests.model import (
    BrokerError,
    GroupDescription,
    NotExpressible,
    ProducerOptions,
    ReadResult,
    Record,
    Start,
)
from compat_tests.waiting import WaitTimeout

DRIVER = NODE_DIR / "driver.js"
# A driver request may itself wait DEFAULT_WAIT_SECONDS inside kafkajs; allow for that.
_ANSWER_SECONDS = DEFAULT_WAIT_SECONDS + 10


class KafkajsFailed(Exception):
    """kafkajs raised an error that carries no Kafka error code, or the driver died."""


def _error_from(answer: dict[str, Any]) -> Exception:
    code = answer.get("code")
    text = f"{answer.get('name', 'Error')}: {answer.get('message', '')}"
    if isinstance(code, int) and code != 0:  # a Kafka error code from the broker
        return BrokerError(name_for_code(code), text)
    return KafkajsFailed(text)


class Driver:
    """The Node.js driver process, shared by every thread of one adapter."""

    def __init__(self, bootstrap: str) -> None:
        self.process = subprocess.Popen(
            ["node", str(DRIVER), bootstrap],
            cwd=NODE_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # kafkajs logs go to the cell's log
        )
        self._ids = itertools.count(1)
        self._pending: dict[int, Future[Any]] = {}
        self._exited = False  # set, under the lock, once the driver's stdout has ended
        self._lock = threading.Lock()
        threading.Thread(target=self._read_answers, name="kafkajs-answers", daemon=True).start()

    def _read_answers(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                answer = json.loads(line)
            except json.JSONDecodeError:
                continue  # not an answer; the driver writes nothing else to stdout
            with self._lock:
                future = self._pending.pop(answer.get("id"), None)
            if future is None:
                continue
            if "error" in answer:
                future.set_exception(_error_from(answer["error"]))
            else:
                future.set_result(answer.get("result"))
        with self._lock:
            pending, self._pending = self._pending, {}
            self._exited = True
        for future in pending.values():
            future.set_exception(KafkajsFailed("the kafkajs driver exited"))

    def call(self, op: str, seconds: float = _ANSWER_SECONDS, **args: Any) -> Any:
        future: Future[Any] = Future()
        with self._lock:
            if self._exited:
                raise KafkajsFailed(f"the kafkajs driver has exited ({self.process.poll()})")
            request_id = next(self._ids)
            self._pending[request_id] = future
            line = json.dumps({"id": request_id, "op": op, "args": args}) + "\n"
            assert self.process.stdin is not None
            try:
                self.process.stdin.write(line.encode())
                self.process.stdin.flush()
            except (BrokenPipeError, ValueError) as exc:
                self._pending.pop(request_id, None)
                raise KafkajsFailed("the kafkajs driver is not running") from exc
        try:
            return future.result(timeout=seconds)
        except FutureTimeout:
            with self._lock:
                self._pending.pop(request_id, None)
            raise WaitTimeout(f"kafkajs did not answer {op} within {seconds:g} s") from None

    def close(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(KafkajsFailed, WaitTimeout):  # then it is killed
                self.call("shutdown", seconds=DEFAULT_WAIT_SECONDS)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _record_to_json(record: Record) -> dict[str, Any]:
    return record.to_json()


def _records(answer: list[dict[str, Any]]) -> list[Record]:
    return [Record.from_json(data) for data in answer]


class KafkajsMember(Member):
    def __init__(self, driver: Driver, group_id: str, topic: str) -> None:
        self.driver = driver
        self.id = driver.call("memberJoin", groupId=group_id, topic=topic)

    def poll(self, timeout: float) -> list[Record]:
        return _records(
            self.driver.call(
                "memberPoll",
                seconds=timeout + _ANSWER_SECONDS,
                member=self.id,
                timeoutMs=int(timeout * 1000),
            )
        )

    def assignment(self) -> set[int]:
        return set(self.driver.call("memberAssignment", member=self.id))

    def commit(self, offsets: dict[int, int] | None = None, metadata: str = "") -> None:
        chosen = None if offsets is None else {str(p): o for p, o in offsets.items()}
        self.driver.call("memberCommit", member=self.id, offsets=chosen, metadata=metadata)

    def committed(self, partitions: list[int]) -> dict[int, tuple[int | None, str]]:
        found = self.driver.call("memberCommitted", member=self.id, partitions=partitions)
        return {int(p): (offset, metadata) for p, (offset, metadata) in found.items()}

    def close(self) -> None:
        self.driver.call("memberClose", member=self.id)


def _headers_reason(headers: tuple[tuple[str, bytes], ...]) -> str | None:
    names = [name for name, _value in headers]
    for index, name in enumerate(names):
        if name in names[:index] and names[index - 1] != name:
            return "kafkajs keeps headers in an object: a name cannot return after another"
        if name.isdigit():
            return "kafkajs keeps headers in an object: JavaScript puts integer-like names first"
    return None


class KafkajsClient(Client):
    name = "kafkajs"

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap)
        self._driver: Driver | None = None
        self._driver_lock = threading.Lock()

    @property
    def driver(self) -> Driver:
        with self._driver_lock:
            if self._driver is None:
                self._driver = Driver(self.bootstrap)
            return self._driver

    def close(self) -> None:
        if self._driver is not None:
            self._driver.close()

    def cannot_produce(self, record: Record) -> str | None:
        return _headers_reason(record.headers)

    # -- producing -----------------------------------------------------------------

    def produce(
        self, topic: str, batches: list[list[Record]], options: ProducerOptions
    ) -> list[list[tuple[int, int]]]:
        for record in (r for batch in batches for r in batch):
            reason = self.cannot_produce(record)
            if reason:
                raise NotExpressible(reason)
        acks = self.driver.call(
            "produce",
            topic=topic,
            batches=[[_record_to_json(r) for r in batch] for batch in batches],
            options=options.to_json(),
        )
        return [[(partition, offset) for partition, offset in batch] for batch in acks]

    def produce_transactions(
        self, topic: str, transactional_id: str, transactions: list[tuple[list[Record], bool]]
    ) -> None:
        self.driver.call(
            "produceTransactions",
            topic=topic,
            transactionalId=transactional_id,
            transactions=[
                {"records": [_record_to_json(r) for r in records], "commit": commit}
                for records, commit in transactions
            ],
        )

    # -- consuming -----------------------------------------------------------------

    def read(
        self,
        topic: str,
        partition: int,
        start: Start,
        max_records: int | None = None,
        isolation: str = "read_uncommitted",
    ) -> ReadResult:
        answer = self.driver.call(
            "read",
            topic=topic,
            partition=partition,
            start=start.to_json(),
            maxRecords=max_records,
            isolation=isolation,
        )
        return ReadResult(_records(answer["records"]), answer["position"])

    def read_all(self, topic: str, isolation: str = "read_uncommitted") -> list[Record]:
        return _records(self.driver.call("readAll", topic=topic, isolation=isolation))

    def offsets(self, topic: str, partition: int) -> tuple[int, int]:
        low, high = self.driver.call("offsets", topic=topic, partition=partition)
        return low, high

    def offset_for_time(self, topic: str, partition: int, timestamp: int) -> int | None:
        return self.driver.call(
            "offsetForTime", topic=topic, partition=partition, timestamp=timestamp
        )

    def group_member(self, group_id: str, topic: str) -> Member:
        return KafkajsMember(self.driver, group_id, topic)

    # -- admin ---------------------------------------------------------------------

    def create_topic(self, name: str, partitions: int, configs: dict[str, str]) -> None:
        self.driver.call("createTopic", name=name, partitions=partitions, configs=configs)

    def list_topics(self) -> set[str]:
        return set(self.driver.call("listTopics"))

    def describe_topic(self, name: str) -> int:
        return self.driver.call("describeTopic", name=name)

    def delete_topic(self, name: str) -> None:
        self.driver.call("deleteTopic", name=name)

    def create_partitions(self, name: str, total: int) -> None:
        self.driver.call("createPartitions", name=name, total=total)

    def describe_configs(self, topic: str) -> dict[str, str]:
        return self.driver.call("describeConfigs", topic=topic)

    def alter_configs(self, topic: str, configs: dict[str, str]) -> None:
        self.driver.call("alterConfigs", topic=topic, configs=configs)

    def list_groups(self) -> set[str]:
        return set(self.driver.call("listGroups"))

    def describe_group(self, group_id: str) -> GroupDescription:
        described = self.driver.call("describeGroup", groupId=group_id)
        return GroupDescription(state=described["state"], member_count=described["members"])

    def delete_group(self, group_id: str) -> None:
        self.driver.call("deleteGroup", groupId=group_id)
