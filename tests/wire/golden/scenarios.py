"""What each real Kafka client does while ``capture.py`` records its bytes.

Run as ``python scenarios.py CLIENT BOOTSTRAP``; CLIENT is one of kafka-python, aiokafka,
confluent-kafka, kcat. Each scenario creates its topics, produces three records to one topic
per compression codec (plus an idempotent producer's topic and, for kafka-python, magic 0/1
topics), consumes everything in a consumer group, commits, reads the committed offsets and
the end offsets, and finally tries SASL/PLAIN (the broker refuses it; the SaslHandshake is
what is wanted). It prints one JSON document on stdout: the client's version and, for every
topic, its codec and the exact records produced — the expected values of the golden tests.

Values are long and repetitive so that every codec really compresses them (librdkafka sends
a batch uncompressed when compression does not make it smaller).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Callable

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
RECORDS_PER_TOPIC = 3
SESSION_TIMEOUT_MS = 6000
HEARTBEAT_INTERVAL_MS = 200
CONSUME_DEADLINE_S = 40.0
#: Keep consuming this long after the last record so the client sends Heartbeats.
HEARTBEAT_WINDOW_S = 1.0
SASL = {"username": "golden", "password": "golden"}


def topic_name(client: str, kind: str) -> str:
    return f"golden.{client}.{kind}"


def expected_records(client: str, kind: str) -> list[tuple[str, str]]:
    return [
        (f"key-{index}", f"{client} {kind} record {index}; " * 8)
        for index in range(RECORDS_PER_TOPIC)
    ]


class Plan:
    """The topics one client produces to, with their codecs and records."""

    def __init__(self, client: str, codecs: tuple[str, ...], extra: dict[str, str]) -> None:
        self.client = client
        self.notes: list[str] = []
        self.topics: dict[str, dict] = {}
        for kind, codec in [(codec, codec) for codec in codecs] + list(extra.items()):
            self.topics[topic_name(client, kind)] = {
                "codec": codec,
                "records": expected_records(client, kind),
            }

    def by_codec(self, codec: str) -> tuple[str, list[tuple[str, str]]]:
        topic = topic_name(self.client, codec)
        return topic, self.topics[topic]["records"]

    def drop(self, topic: str, reason: str) -> None:
        """Forget a topic whose records could not be produced, saying why."""
        del self.topics[topic]
        self.notes.append(f"{topic}: {reason}")

    def total_records(self) -> int:
        return sum(len(topic["records"]) for topic in self.topics.values())


def consume_until(poll: Callable[[], int], wanted: int) -> int:
    """Call ``poll`` (returns how many records it got) until ``wanted`` or the deadline."""
    got = 0
    deadline = time.monotonic() + CONSUME_DEADLINE_S
    while got < wanted and time.monotonic() < deadline:
        got += poll()
    heartbeat_until = time.monotonic() + HEARTBEAT_WINDOW_S
    while time.monotonic() < heartbeat_until:
        poll()
    return got


# --- kafka-python ----------------------------------------------------------------------------


def run_kafka_python(bootstrap: str) -> dict:
    import kafka
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.admin import NewTopic

    client = "kafka-python"
    client_id = f"golden-{client}"
    plan = Plan(client, CODECS, {"idempotent": "none", "legacy-v1": "gzip", "legacy-v0": "gzip"})
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
    admin.create_topics([NewTopic(topic, 1, 1) for topic in plan.topics])
    admin.close()

    def produce(kind: str, **options) -> None:
        topic = topic_name(client, kind)
        producer = KafkaProducer(
            bootstrap_servers=bootstrap, client_id=client_id, linger_ms=100, **options
        )
        for key, value in plan.topics[topic]["records"]:
            producer.send(topic, key=key.encode(), value=value.encode())
        producer.flush(timeout=20)
        producer.close(timeout=5)

    for codec in CODECS:
        produce(codec, compression_type=None if codec == "none" else codec)
    produce("idempotent", enable_idempotence=True)
    # Old API versions make kafka-python write legacy message sets: magic 1, then magic 0.
    produce("legacy-v1", compression_type="gzip", api_version=(0, 10, 1))
    produce("legacy-v0", compression_type="gzip", api_version=(0, 9))

    consumer = KafkaConsumer(
        *plan.topics,
        bootstrap_servers=bootstrap,
        client_id=client_id,
        group_id=f"{client_id}-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
    )
    consume_until(
        lambda: sum(len(batch) for batch in consumer.poll(timeout_ms=200).values()),
        plan.total_records(),
    )
    consumer.commit()
    partitions = [TopicPartition(topic, 0) for topic in plan.topics]
    consumer.committed(partitions[0])
    consumer.end_offsets(partitions)
    consumer.close()

    # The broker refuses PLAIN; the SaslHandshake bytes are captured all the same.
    with contextlib.suppress(Exception):
        KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id=client_id,
            security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="PLAIN",
            sasl_plain_username=SASL["username"],
            sasl_plain_password=SASL["password"],
            request_timeout_ms=3000,
        ).close()
    return {"client_version": kafka.__version__, "topics": plan.topics, "notes": plan.notes}


# --- aiokafka --------------------------------------------------------------------------------


def run_aiokafka(bootstrap: str) -> dict:
    return asyncio.run(_aiokafka(bootstrap))


async def _aiokafka(bootstrap: str) -> dict:
    import aiokafka
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    client = "aiokafka"
    client_id = f"golden-{client}"
    plan = Plan(client, CODECS, {"idempotent": "none"})
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=client_id)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 1, 1) for topic in plan.topics])
    await admin.close()

    async def produce(kind: str, **options) -> None:
        topic = topic_name(client, kind)
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, client_id=client_id, linger_ms=100, **options
        )
        try:
            await producer.start()
            sends = [
                await producer.send(topic, key=key.encode(), value=value.encode())
                for key, value in plan.topics[topic]["records"]
            ]
            await asyncio.gather(*sends)
        finally:
            await producer.stop()

    for codec in CODECS:
        await produce(codec, compression_type=None if codec == "none" else codec)
    try:
        await produce("idempotent", enable_idempotence=True)
    except Exception as exc:  # aiokafka sends InitProducerId v0, which Tansu fails
        plan.drop(topic_name(client, "idempotent"), f"idempotent producer failed: {exc!r}")

    consumer = AIOKafkaConsumer(
        *plan.topics,
        bootstrap_servers=bootstrap,
        client_id=client_id,
        group_id=f"{client_id}-group",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=HEARTBEAT_INTERVAL_MS,
    )
    await consumer.start()
    got = 0
    deadline = time.monotonic() + CONSUME_DEADLINE_S
    while got < plan.total_records() and time.monotonic() < deadline:
        batches = await consumer.getmany(timeout_ms=200)
        got += sum(len(batch) for batch in batches.values())
    await asyncio.sleep(HEARTBEAT_WINDOW_S)  # a tool, not a test: let heartbeats flow
    await consumer.commit()
    partitions = [TopicPartition(topic, 0) for topic in plan.topics]
    await consumer.committed(partitions[0])
    await consumer.end_offsets(partitions)
    await consumer.stop()

    sasl = AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="PLAIN",
        sasl_plain_username=SASL["username"],
        sasl_plain_password=SASL["password"],
        request_timeout_ms=3000,
    )
    try:
        await asyncio.wait_for(sasl.start(), 5)
    except Exception:
        pass
    finally:
        await sasl.stop()
    return {"client_version": aiokafka.__version__, "topics": plan.topics, "notes": plan.notes}


# --- confluent-kafka (librdkafka) --------------------------------------------------------------


def run_confluent_kafka(bootstrap: str) -> dict:
    import confluent_kafka
    from confluent_kafka import Consumer, Producer, TopicPartition
    from confluent_kafka.admin import AdminClient, NewTopic

    client = "confluent-kafka"
    client_id = f"golden-{client}"
    plan = Plan(client, CODECS, {"idempotent": "none"})
    common = {"bootstrap.servers": bootstrap, "client.id": client_id}
    admin = AdminClient(common)
    for future in admin.create_topics([NewTopic(topic, 1, 1) for topic in plan.topics]).values():
        future.result(20)

    def produce(kind: str, **options) -> None:
        topic = topic_name(client, kind)
        producer = Producer({**common, "linger.ms": 100, **options})
        for key, value in plan.topics[topic]["records"]:
            producer.produce(topic, key=key.encode(), value=value.encode())
        if producer.flush(20):
            raise RuntimeError(f"confluent-kafka could not deliver to {topic}")

    for codec in CODECS:
        produce(codec, **{"compression.type": codec})
    produce("idempotent", **{"enable.idempotence": True})

    consumer = Consumer(
        {
            **common,
            "group.id": f"{client_id}-group",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS,
        }
    )
    consumer.subscribe(list(plan.topics))

    def poll() -> int:
        message = consumer.poll(0.2)
        return int(message is not None and message.error() is None)

    consume_until(poll, plan.total_records())
    consumer.commit(asynchronous=False)
    partitions = [TopicPartition(topic, 0) for topic in plan.topics]
    consumer.committed(partitions[:1], timeout=10)
    consumer.get_watermark_offsets(partitions[0], timeout=10, cached=False)
    consumer.close()

    sasl = AdminClient(
        {
            **common,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN",
            "sasl.username": SASL["username"],
            "sasl.password": SASL["password"],
            "log_level": 0,
        }
    )
    with contextlib.suppress(Exception):
        sasl.list_topics(timeout=3)
    return {
        "client_version": f"{confluent_kafka.__version__} (librdkafka {confluent_kafka.libversion()[0]})",
        "topics": plan.topics,
        "notes": plan.notes,
    }


# --- kcat ------------------------------------------------------------------------------------


def run_kcat(bootstrap: str) -> dict:
    """kcat cannot create topics: capture.py creates them before recording starts."""
    client = "kcat"
    plan = Plan(client, CODECS, {"idempotent": "none"})
    base = ["kcat", "-b", bootstrap, "-X", f"client.id=golden-{client}", "-q"]

    def kcat(*arguments: str, stdin: str | None = None, check: bool = True) -> None:
        subprocess.run(
            [*base, *arguments], input=stdin, text=True, timeout=60, check=check,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    kcat("-L")

    def produce(kind: str, *options: str) -> None:
        topic = topic_name(client, kind)
        lines = "".join(f"{key}\t{value}\n" for key, value in plan.topics[topic]["records"])
        kcat("-P", "-t", topic, "-K", "\t", "-X", "linger.ms=100", *options, stdin=lines)

    for codec in CODECS:
        produce(codec, "-z", codec)
    produce("idempotent", "-X", "enable.idempotence=true")

    kcat("-C", "-t", topic_name(client, "none"), "-o", "beginning", "-e")
    kcat(
        "-G", f"golden-{client}-group", *plan.topics,
        "-c", str(plan.total_records()), "-e",
        "-X", "auto.offset.reset=earliest",
        "-X", f"session.timeout.ms={SESSION_TIMEOUT_MS}",
        "-X", f"heartbeat.interval.ms={HEARTBEAT_INTERVAL_MS}",
        "-X", "auto.commit.interval.ms=100",
    )  # fmt: skip
    kcat(
        "-L", "-m", "3",
        "-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=PLAIN",
        "-X", f"sasl.username={SASL['username']}", "-X", f"sasl.password={SASL['password']}",
        check=False,
    )  # fmt: skip
    return {"client_version": kcat_version(), "topics": plan.topics, "notes": plan.notes}


def kcat_version() -> str:
    """From "Version 1.7.1 (JSON, ..., librdkafka 2.0.2 builtin.features=...)"."""
    banner = subprocess.run(["kcat", "-V"], capture_output=True, text=True).stdout
    line = next(line for line in banner.splitlines() if line.startswith("Version "))
    librdkafka = line.split("librdkafka ")[1].split()[0]
    return f"{line.split()[1]} (librdkafka {librdkafka})"


SCENARIOS: dict[str, Callable[[str], dict]] = {
    "kafka-python": run_kafka_python,
    "aiokafka": run_aiokafka,
    "confluent-kafka": run_confluent_kafka,
    "kcat": run_kcat,
}


def main() -> None:
    client, bootstrap = sys.argv[1], sys.argv[2]
    json.dump(SCENARIOS[client](bootstrap), sys.stdout)


if __name__ == "__main__":
    main()
