"""kcat adapter: the scenarios' primitives as kcat command lines (Debian kcat 1.7.1,
librdkafka 2.0.2), exactly as a user types them.

What kcat can express, and how:
- produce: `kcat -P` reads records from stdin, split by a message delimiter (-D) into
  key and value at a key delimiter (-K); -Z turns an empty key or value into null.
  Headers (-H) and the partition (-p) apply to a whole invocation, so a batch becomes
  one invocation per run of records sharing partition, headers and null handling.
  Delimiters are random byte strings checked against the data, so any bytes pass.
  Produce offsets come from kcat's delivery reports (`-v -v`: "Message delivered to
  partition P (offset O)"). kcat cannot choose a record's timestamp, nor produce a
  record with a null key and an empty value (an empty line is skipped; -Z would make
  the value null too).
- consume: `kcat -C -J` (one JSON object per record: key, payload, headers, offset,
  timestamp) from `-o beginning|end|<offset>|s@<timestamp>`, ending at the end of the
  partition (-e); the end offset comes from kcat's "Reached end of topic" line. JSON
  rather than a -f format string: -f prints headers as "name=value,..." which cannot be
  split back when a header value holds ',' or '=', while -J keeps every byte.
- offsets: `kcat -Q -t topic:partition:<time>`, with Kafka's -2 (earliest) and -1
  (latest) for the log start and end offsets.
- groups: `kcat -G group topic` as a long-running process; its assignment comes from
  the "rebalanced ... assigned:/revoked:" lines it prints, and it commits what it
  consumed by itself (auto commit). It cannot commit chosen offsets or read them back.
- transactions: `-X transactional.id=...` runs one transaction per invocation,
  committed at end of input, aborted when kcat is interrupted (Ctrl-C) first.
- admin: only metadata (`kcat -L`): topic list and partition counts.
"""

from __future__ import annotations

import json
import queue
import re
import secrets
import signal
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from compat_tests.clients.base import DEFAULT_WAIT_SECONDS, Client, Member
from compat_tests.kafka_errors import KAFKA_ERROR_NAMES
from compat_tests.model import (
    BrokerError,
    NotExpressible,
    ProducerOptions,
    ReadResult,
    Record,
    Start,
)
from compat_tests.waiting import WaitTimeout, wait_until

KCAT = "kcat"
_DELIVERED = re.compile(rb"Message delivered to partition (-?\d+) \(offset (-?\d+)\)")
_DELIVERY_FAILED = re.compile(rb"Delivery failed for message: (.*)")
_REACHED_END = re.compile(rb"Reached end of topic .* \[(\d+)\] at offset (-?\d+)")
_QUERY_ANSWER = re.compile(rb"\[(\d+)\] offset (-?\d+)")
_REBALANCED = re.compile(rb"rebalanced \(memberid [^)]*\): (assigned|revoked): (.*)")
_PARTITION_IN_LIST = re.compile(rb"\[(\d+)\]")
_EARLIEST, _LATEST = -2, -1  # ListOffsets' special timestamps
# Odd, so that whole delimiters can pad any input to a multiple of kcat's read size.
_DELIMITER_BYTES = 9
# kcat reads its input in fixed-size chunks (1024 bytes in 1.7.1, measured; 128 in later
# sources) and waits for a full chunk; padding to a multiple of 4096 fits both.
_KCAT_READ_SIZE = 4096
_GROUP_COMMIT_INTERVAL_MS = 100


class KcatFailed(Exception):
    """kcat exited with an error that is not a Kafka error code from the broker."""


def _librdkafka_descriptions() -> dict[str, str]:
    """librdkafka's text for each Kafka error ("Broker: Message size too large") -> name.

    kcat prints errors only as text; confluent-kafka wraps the same librdkafka, whose
    err2str gives the text for a code."""
    from confluent_kafka import KafkaError

    return {KafkaError(code).str(): name for code, name in KAFKA_ERROR_NAMES.items() if code >= 0}


def _error_from_text(text: str) -> Exception:
    name = _librdkafka_descriptions().get(text.strip())
    return BrokerError(name, text) if name else KcatFailed(text)


# librdkafka's log prefix: "%3|1795776251.734|FAIL|rdkafka#producer-1| [thrd:main]: "
_LOG_PREFIX = re.compile(r"^%?\d+\|[\d.]+\|\w+\|[^|]*\|\s*(\[thrd:[^\]]*\]:\s*)?")


def _error_lines(stderr: bytes) -> list[str]:
    return [
        _LOG_PREFIX.sub("", line.decode(errors="replace")).lstrip("% ").strip()
        for line in stderr.splitlines()
        if b"ERROR" in line or b"failed" in line.lower()
    ]


def _first_error(stderr: bytes, returncode: int) -> Exception:
    """The most specific error kcat reported: a broker's Kafka error if there is one."""
    failed = _DELIVERY_FAILED.search(stderr)
    if failed:
        return _error_from_text(failed.group(1).decode(errors="replace"))
    lines = _error_lines(stderr) or [
        line.decode(errors="replace") for line in stderr.splitlines()[-3:]
    ]
    for line in lines:
        if "Broker: " in line:
            return _error_from_text("Broker: " + line.split("Broker: ", 1)[1])
    return KcatFailed(f"kcat exited {returncode}: {' | '.join(lines)[:300]}")


def _run(args: list[str | bytes], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    try:
        result = subprocess.run(
            [KCAT, *args], input=stdin, capture_output=True, timeout=DEFAULT_WAIT_SECONDS
        )
    except subprocess.TimeoutExpired as exc:
        raise WaitTimeout(
            f"kcat {' '.join(map(str, args[:3]))} ... still running after "
            f"{DEFAULT_WAIT_SECONDS:g} s"
        ) from exc
    if result.returncode != 0:
        raise _first_error(result.stderr, result.returncode)
    return result


def _escaped(delimiter: bytes) -> str:
    """kcat reads -D/-K as strings with \\xNN escapes; writing every byte so is exact."""
    return "".join(f"\\x{byte:02x}" for byte in delimiter)


# Bytes a delimiter may use: no NUL (kcat's delimiters are C strings) and no backslash
# (kcat decodes escapes repeatedly, so a decoded backslash could start a new one).
_DELIMITER_ALPHABET = bytes(b for b in range(1, 256) if b != ord("\\"))


def _random_delimiter() -> bytes:
    return bytes(secrets.choice(_DELIMITER_ALPHABET) for _ in range(_DELIMITER_BYTES))


# -- producing -------------------------------------------------------------------------

# How a record asks for kcat's -Z flag (empty key/value sent as null).
_NEEDS_NULL_FLAG, _FORBIDS_NULL_FLAG, _EITHER = "needs -Z", "forbids -Z", "either"


def _null_flag_need(record: Record) -> str:
    if record.value is None:
        return _NEEDS_NULL_FLAG
    if record.value == b"" or record.key == b"":
        return _FORBIDS_NULL_FLAG
    return _EITHER


def unproducible_reason(record: Record) -> str | None:
    """Why kcat cannot produce this record exactly, or None when it can."""
    if record.key is None and record.value == b"":
        return "kcat cannot produce a record with a null key and an empty value"
    if record.key == b"" and record.value is None:
        return "kcat cannot produce a record with an empty key and a null value"
    for name, value in record.headers:
        if "=" in name or "\0" in name or b"\0" in value:
            return "kcat takes headers as -H name=value arguments (no '=' in names, no NUL)"
    return None


@dataclass
class _Run:
    """Records kcat can send in one invocation: same partition, headers and -Z."""

    partition: int | None
    headers: tuple[tuple[str, bytes], ...]
    null_flag: str
    records: list[Record]

    def accepts(self, record: Record) -> bool:
        need = _null_flag_need(record)
        return (
            record.partition == self.partition
            and record.headers == self.headers
            and (need == _EITHER or self.null_flag in (_EITHER, need))
        )

    def add(self, record: Record) -> None:
        need = _null_flag_need(record)
        if need != _EITHER:
            self.null_flag = need
        self.records.append(record)


def _runs(batch: list[Record]) -> list[_Run]:
    """Splits a batch into invocations, keeping each partition's order (Kafka orders
    records within a partition only, so partitions may be sent one after another)."""
    by_partition: dict[int | None, list[Record]] = {}
    for record in batch:
        by_partition.setdefault(record.partition, []).append(record)
    runs: list[_Run] = []
    for records in by_partition.values():
        for record in records:
            if not runs or runs[-1].partition != record.partition or not runs[-1].accepts(record):
                runs.append(_Run(record.partition, record.headers, _EITHER, []))
            runs[-1].add(record)
    return runs


def _key_delimiter_at(record: Record) -> int:
    """Where the key delimiter sits in the record's input line; -1: nowhere."""
    if record.key is not None:
        return len(record.key)
    return 0 if record.value is None else -1  # null key and value: an empty key, with -Z


def _line(record: Record, key_delimiter: bytes) -> bytes:
    if _key_delimiter_at(record) < 0:
        return record.value or b""  # no key delimiter in the line: kcat sends a null key
    return (record.key or b"") + key_delimiter + (record.value or b"")


def _stdin_for(records: list[Record]) -> tuple[bytes, bytes, bytes]:
    """(input, message delimiter, key delimiter) such that kcat splits the input back
    into exactly these records."""
    for _attempt in range(100):
        message_delimiter, key_delimiter = _random_delimiter(), _random_delimiter()
        lines = [_line(record, key_delimiter) for record in records]
        data = message_delimiter.join(lines) + message_delimiter
        keys_split_right = all(
            line.find(key_delimiter) == _key_delimiter_at(record)
            for record, line in zip(records, lines, strict=True)
        )
        if keys_split_right and data.split(message_delimiter)[:-1] == lines:
            return data, message_delimiter, key_delimiter
    raise KcatFailed("no delimiter found that does not occur in the records")


def _padding_to_chunk(length: int, message_delimiter: bytes) -> bytes:
    """Empty lines (skipped by kcat) that bring `length` to a multiple of kcat's read
    size, so kcat has read and produced every record without waiting for more input."""
    count = (-length * pow(len(message_delimiter), -1, _KCAT_READ_SIZE)) % _KCAT_READ_SIZE
    return message_delimiter * count


def _producer_args(topic: str, run: _Run, options: ProducerOptions) -> list[str | bytes]:
    args: list[str | bytes] = ["-P", "-t", topic, "-v", "-v", "-X", "acks=all"]
    if run.partition is not None:
        args += ["-p", str(run.partition)]
    if run.null_flag == _NEEDS_NULL_FLAG:
        args.append("-Z")
    for name, value in run.headers:
        args += ["-H", name.encode() + b"=" + value]
    if options.compression != "none":
        args += ["-X", f"compression.codec={options.compression}"]
    if options.idempotent:
        args += ["-X", "enable.idempotence=true"]
    if options.max_request_bytes:
        args += ["-X", f"message.max.bytes={options.max_request_bytes}"]
    return args


def _deliveries(stderr: bytes) -> list[tuple[int, int]]:
    return [(int(p), int(o)) for p, o in _DELIVERED.findall(stderr)]


# -- consuming -------------------------------------------------------------------------


def _text_bytes(text: str | None) -> bytes | None:
    """kcat writes keys, values and headers into JSON strings as raw bytes (invalid UTF-8
    included) with control characters escaped; decoding stdout with surrogateescape and
    encoding back the same way recovers the exact bytes."""
    return None if text is None else text.encode("utf-8", "surrogateescape")


def _record_from_json(line: bytes) -> Record:
    data: dict[str, Any] = json.loads(line.decode("utf-8", "surrogateescape"))
    flat = data.get("headers") or []
    headers = tuple(
        (
            flat[i].encode("utf-8", "surrogateescape").decode("utf-8", "replace"),
            _text_bytes(flat[i + 1]) or b"",
        )
        for i in range(0, len(flat), 2)
    )
    return Record(
        key=_text_bytes(data.get("key")),
        value=_text_bytes(data.get("payload")),
        headers=headers,
        timestamp=data.get("ts"),
        partition=data.get("partition"),
        offset=data.get("offset"),
    )


def _records(stdout: bytes) -> list[Record]:
    return [_record_from_json(line) for line in stdout.splitlines() if line.strip()]


def _start_offset(start: Start) -> str:
    if start.kind in ("beginning", "end"):
        return start.kind
    if start.kind == "timestamp":
        return f"s@{start.value}"
    return str(start.value)


def _isolation_args(isolation: str) -> list[str | bytes]:
    # librdkafka defaults to read_committed; say which one every time.
    return ["-X", f"isolation.level={isolation}"]


class KcatMember(Member):
    """`kcat -G group topic` running in the background, printing records as JSON."""

    def __init__(self, bootstrap: str, group_id: str, topic: str) -> None:
        settings = {
            "auto.offset.reset": "earliest",
            "auto.commit.interval.ms": _GROUP_COMMIT_INTERVAL_MS,
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 500,
        }
        # -J: records as JSON; -u: unbuffered, so each record reaches the pipe at once.
        command = [KCAT, "-b", bootstrap, "-G", group_id, "-J", "-u"]
        for name, value in settings.items():
            command += ["-X", f"{name}={value}"]
        self.process = subprocess.Popen(
            [*command, topic],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        self._records: queue.SimpleQueue[Record] = queue.SimpleQueue()
        self._assigned: set[int] = set()
        self._stderr_tail: list[bytes] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read_records, daemon=True).start()
        threading.Thread(target=self._read_events, daemon=True).start()

    def _read_records(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip():
                self._records.put(_record_from_json(line))

    def _read_events(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._lock:
                self._stderr_tail = [*self._stderr_tail[-9:], line.rstrip()]
                rebalanced = _REBALANCED.search(line)
                if rebalanced:
                    kind, listed = rebalanced.groups()
                    partitions = {int(p) for p in _PARTITION_IN_LIST.findall(listed)}
                    self._assigned = partitions if kind == b"assigned" else set()

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            with self._lock:
                tail = b" | ".join(self._stderr_tail).decode(errors="replace")
            raise KcatFailed(f"kcat -G exited {self.process.returncode}: {tail[:300]}")

    def poll(self, timeout: float) -> list[Record]:
        records: list[Record] = []
        try:
            records.append(self._records.get(timeout=timeout))
            while True:
                records.append(self._records.get_nowait())
        except queue.Empty:
            pass
        if not records:
            self._check_alive()
        return records

    def assignment(self) -> set[int]:
        with self._lock:
            return set(self._assigned)

    def commit(self, offsets: dict[int, int] | None = None, metadata: str = "") -> None:
        if offsets is not None:
            raise NotExpressible("kcat cannot commit chosen offsets")
        # Consumed positions: kcat commits them itself (auto commit every 100 ms here,
        # and on rebalance and exit); there is no command to commit now.

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # kcat leaves the group and exits
            try:
                self.process.wait(timeout=DEFAULT_WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                raise KcatFailed("kcat -G did not exit on SIGTERM") from None


class KcatClient(Client):
    name = "kcat"
    sets_timestamps = False
    unsupported: ClassVar[dict[str, str]] = {
        "member.commit_offsets": "kcat -G cannot commit chosen offsets (it auto-commits)",
        "member.committed": "kcat cannot read a group's committed offsets",
    }

    def _kcat(self, args: list[str | bytes], stdin: bytes = b"") -> subprocess.CompletedProcess:
        return _run(["-b", self.bootstrap, *args], stdin)

    def cannot_produce(self, record: Record) -> str | None:
        return unproducible_reason(record)

    # -- producing -----------------------------------------------------------------

    def _send_run(self, topic: str, run: _Run, options: ProducerOptions) -> list[tuple[int, int]]:
        data, message_delimiter, key_delimiter = _stdin_for(run.records)
        args = _producer_args(topic, run, options)
        args += ["-D", _escaped(message_delimiter), "-K", _escaped(key_delimiter)]
        delivered = _deliveries(self._kcat(args, data).stderr)
        if len(delivered) != len(run.records):
            raise KcatFailed(
                f"kcat reported {len(delivered)} deliveries for {len(run.records)} records"
            )
        return delivered

    def _check_producible(self, records: Iterable[Record]) -> None:
        for record in records:
            reason = unproducible_reason(record)
            if reason:
                raise NotExpressible(reason)

    def produce(
        self, topic: str, batches: list[list[Record]], options: ProducerOptions
    ) -> list[list[tuple[int, int]]]:
        self._check_producible(r for batch in batches for r in batch)
        acks = []
        for batch in batches:
            ack_of: dict[int, tuple[int, int]] = {}
            for run in _runs(batch):
                for record, ack in zip(
                    run.records, self._send_run(topic, run, options), strict=True
                ):
                    ack_of[id(record)] = ack
            acks.append([ack_of[id(record)] for record in batch])
        return acks

    def produce_transactions(
        self, topic: str, transactional_id: str, transactions: list[tuple[list[Record], bool]]
    ) -> None:
        self._check_producible(r for records, _commit in transactions for r in records)
        for records, commit in transactions:
            runs = _runs(records)
            if len(runs) != 1:
                raise NotExpressible(
                    "kcat sends one transaction per invocation, and one invocation cannot "
                    "give records different partitions or headers"
                )
            self._transaction(topic, transactional_id, runs[0], commit)

    def _transaction(self, topic: str, transactional_id: str, run: _Run, commit: bool) -> None:
        data, message_delimiter, key_delimiter = _stdin_for(run.records)
        args = _producer_args(topic, run, ProducerOptions(idempotent=True))
        args += ["-D", _escaped(message_delimiter), "-K", _escaped(key_delimiter)]
        args += ["-X", f"transactional.id={transactional_id}"]
        if commit:
            self._kcat(args, data)  # end of input commits the transaction
        else:
            self._abort(topic, run, args, data)

    def _abort(self, topic: str, run: _Run, args: list[str | bytes], data: bytes) -> None:
        """kcat aborts its transaction when interrupted (Ctrl-C) before its input ends.

        The records must be in the log first, or the abort would only purge them from
        kcat's queue. kcat reads its input in whole chunks and prints delivery
        reports only while producing or at exit, so: the input is padded with empty
        lines (which kcat skips) to a whole number of chunks, the log is watched until
        the records are in it (its end offset, read_uncommitted), as a user would watch
        it with a second kcat, and then kcat is interrupted and its input closed."""
        if run.partition is None:
            raise NotExpressible("watching the log for an aborted kcat transaction needs -p")
        end_before = self._log_end(topic, run.partition)
        message_delimiter = data[-_DELIMITER_BYTES:]
        process = subprocess.Popen(
            [KCAT, "-b", self.bootstrap, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert process.stdin is not None
        try:
            process.stdin.write(data + _padding_to_chunk(len(data), message_delimiter))
            process.stdin.flush()
            wait_until(
                lambda: (
                    process.poll() is not None
                    or self._log_end(topic, run.partition) >= end_before + len(run.records)
                ),
                DEFAULT_WAIT_SECONDS,
                "the transaction's records to reach the log",
                interval=0.05,
            )
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        finally:
            try:  # closes kcat's input: it stops reading, then aborts if interrupted
                _stdout, stderr = process.communicate(timeout=DEFAULT_WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                _stdout, stderr = process.communicate()
        if process.returncode != 0 or b"Aborting transaction" not in stderr:
            raise _first_error(stderr, process.returncode)

    # -- consuming -----------------------------------------------------------------

    def read(
        self,
        topic: str,
        partition: int,
        start: Start,
        max_records: int | None = None,
        isolation: str = "read_uncommitted",
    ) -> ReadResult:
        args = ["-C", "-J", "-e", "-t", topic, "-p", str(partition), "-o", _start_offset(start)]
        if max_records is not None:
            args += ["-c", str(max_records)]
        result = self._kcat([*args, *_isolation_args(isolation)])
        records = _records(result.stdout)
        ends = {int(p): int(o) for p, o in _REACHED_END.findall(result.stderr)}
        if partition in ends:
            position = ends[partition]
        elif records:
            position = (records[-1].offset or 0) + 1  # stopped by -c before the end
        else:
            raise KcatFailed("kcat stopped without records and without reaching the end")
        return ReadResult(records, position)

    def read_all(self, topic: str, isolation: str = "read_uncommitted") -> list[Record]:
        args = ["-C", "-J", "-e", "-t", topic, "-o", "beginning", *_isolation_args(isolation)]
        return _records(self._kcat(args).stdout)

    def _query(self, topic: str, partition: int, timestamp: int) -> int:
        # read_uncommitted: the end offset is the high watermark, as other clients report.
        query = ["-Q", "-t", f"{topic}:{partition}:{timestamp}"]
        answer = self._kcat([*query, *_isolation_args("read_uncommitted")]).stdout
        found = _QUERY_ANSWER.search(answer)
        if not found or int(found.group(1)) != partition:
            raise KcatFailed(f"unexpected kcat -Q answer: {answer[:200]!r}")
        return int(found.group(2))

    def _log_end(self, topic: str, partition: int) -> int:
        return self._query(topic, partition, _LATEST)

    def offsets(self, topic: str, partition: int) -> tuple[int, int]:
        return self._query(topic, partition, _EARLIEST), self._log_end(topic, partition)

    def offset_for_time(self, topic: str, partition: int, timestamp: int) -> int | None:
        offset = self._query(topic, partition, timestamp)
        return None if offset < 0 else offset

    def group_member(self, group_id: str, topic: str) -> Member:
        return KcatMember(self.bootstrap, group_id, topic)

    # -- admin (metadata only) -------------------------------------------------------

    def _metadata(self, topic: str | None = None) -> dict[str, Any]:
        args = ["-L", "-J", *(["-t", topic] if topic else [])]
        return json.loads(self._kcat(args).stdout)

    def list_topics(self) -> set[str]:
        return {t["topic"] for t in self._metadata()["topics"]}

    def describe_topic(self, name: str) -> int:
        (topic,) = self._metadata(name)["topics"]
        if topic.get("error"):
            raise _error_from_text(str(topic["error"]))
        return len(topic["partitions"])
