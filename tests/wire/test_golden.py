"""Golden bytes: frames real clients sent (and Tansu answered), captured by golden/capture.py.

Each vector in ``golden/manifest.json`` is one request or response payload (no size prefix)
from kafka-python, aiokafka, confluent-kafka (librdkafka) or kcat. Checked here:

- records: every record set in a vector (Produce requests, Fetch responses) passes its CRC,
  carries the codec its topic was produced with, and decodes to exactly the records the
  capture scenario produced — expected values come from the scenario, not from decoding;
- messages: every request decodes (``wire.protocol.decode_request``) to the header and field
  values the scenario implies and re-encodes to the identical bytes; every response decodes
  and re-encodes to the identical bytes (one documented exception, see below);
- coverage: every API and codec the project needs has a vector from a real client.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from wire.protocol import decode_request, decode_response, encode_request, encode_response
from wire.records.batch import Compression, iter_batches, peek_magic, verify_crc
from wire.records.compression import XERIAL_MAGIC
from wire.records.legacy import iter_legacy_messages
from wire.records.record import decode_batch

GOLDEN = Path(__file__).parent / "golden"
MANIFEST = json.loads((GOLDEN / "manifest.json").read_text())
VECTORS: list[dict] = MANIFEST["vectors"]
TOPICS: dict[str, dict] = MANIFEST["topics"]
CLIENTS = {"kafka-python", "aiokafka", "confluent-kafka", "kcat"}
CODEC_IDS = {codec.name.lower(): int(codec) for codec in Compression}
REQUIRED_APIS = {
    "ApiVersions", "Metadata", "Produce", "Fetch", "ListOffsets", "FindCoordinator",
    "JoinGroup", "SyncGroup", "Heartbeat", "OffsetCommit", "OffsetFetch", "InitProducerId",
    "CreateTopics", "SaslHandshake",
}  # fmt: skip
#: Topic of each record value: values are unique across the whole capture.
TOPIC_OF_VALUE = {value: topic for topic, t in TOPICS.items() for _, value in t["records"]}


def vector_id(vector: dict) -> str:
    return vector["file"].removeprefix("vectors/")


def load(vector: dict) -> bytes:
    return (GOLDEN / vector["file"]).read_bytes()


def with_records(direction: str | None = None) -> list[dict]:
    return [v for v in VECTORS if v["records_at"] and direction in (None, v["direction"])]


# --- records -----------------------------------------------------------------------------------


def decoded_records(blob: bytes) -> Iterator[tuple[int, str, str]]:
    """(codec id, key, value) of every record in a record set, CRCs verified."""
    if peek_magic(blob) == 2:
        for position, header in iter_batches(blob):
            verify_crc(blob, position, header)
            for record in decode_batch(blob, position, header):
                yield header.compression, record.key.decode(), record.value.decode()
    else:
        for message in iter_legacy_messages(blob):
            yield message.compression, message.key.decode(), message.value.decode()


def records_by_topic(vector: dict) -> dict[str, list[tuple[int, str, str]]]:
    frame = load(vector)
    found: dict[str, list[tuple[int, str, str]]] = {}
    for start, end in vector["records_at"]:
        for codec, key, value in decoded_records(frame[start:end]):
            assert value in TOPIC_OF_VALUE, f"decoded a value no scenario produced: {value[:60]!r}"
            found.setdefault(TOPIC_OF_VALUE[value], []).append((codec, key, value))
    return found


@pytest.mark.parametrize("vector", with_records(), ids=vector_id)
def test_record_sets_decode_to_what_the_client_produced(vector: dict) -> None:
    found = records_by_topic(vector)

    assert found, "the vector has record sets but none decoded to records"
    for topic, records in found.items():
        expected = [tuple(record) for record in TOPICS[topic]["records"]]
        assert [(key, value) for _, key, value in records] == expected
        assert {codec for codec, _, _ in records} == {CODEC_IDS[TOPICS[topic]["codec"]]}
    if "topic" in vector:
        assert set(found) == {vector["topic"]}


def test_every_produced_topic_has_a_produce_vector() -> None:
    produced = {v["topic"] for v in VECTORS if "topic" in v}
    assert produced == set(TOPICS)


def test_every_client_produced_every_codec() -> None:
    for client in CLIENTS:
        codecs = {t["codec"] for t in TOPICS.values() if t["client"] == client}
        assert set(CODEC_IDS) <= codecs, client


def test_clients_wrote_legacy_message_sets_of_both_magics() -> None:
    magics = set()
    for vector in with_records("request"):
        frame = load(vector)
        magics |= {peek_magic(frame[start:end]) for start, end in vector["records_at"]}
    assert {0, 1, 2} <= magics


def test_snappy_arrives_both_raw_and_xerial_framed() -> None:
    framings = set()
    for vector in with_records("request"):
        frame = load(vector)
        for start, end in vector["records_at"]:
            blob = frame[start:end]
            if peek_magic(blob) != 2:
                continue
            for position, header in iter_batches(blob):
                if header.compression == Compression.SNAPPY:
                    payload = blob[position + 61 : position + header.size]
                    framings.add("xerial" if payload.startswith(XERIAL_MAGIC) else "raw")
    assert framings == {"xerial", "raw"}


# --- coverage ------------------------------------------------------------------------------------


def test_every_client_is_captured() -> None:
    assert {v["client"] for v in VECTORS} == CLIENTS


def test_every_required_api_has_a_client_request() -> None:
    captured = {v["api_name"] for v in VECTORS if v["direction"] == "request"}
    assert not REQUIRED_APIS - captured


def test_vector_files_exist_and_manifest_lists_them_all() -> None:
    on_disk = {str(path.relative_to(GOLDEN)) for path in (GOLDEN / "vectors").rglob("*.bin")}
    assert on_disk == {v["file"] for v in VECTORS}


# --- messages ------------------------------------------------------------------------------------


def group_of(vector: dict) -> str:
    return f"golden-{vector['client']}-group"


def topic_names(items: list[Any] | None, attribute: str = "name") -> set[str]:
    return {getattr(item, attribute) for item in items or []}


def own_topics(vector: dict) -> Callable[[set[str]], bool]:
    prefix = f"golden.{vector['client']}."
    return lambda names: all(name.startswith(prefix) for name in names)


def check_produce(message: Any, vector: dict, frame: bytes) -> None:
    records = [p.records for t in message.topic_data for p in t.partition_data]
    assert [bytes(r) for r in records if r] == [frame[s:e] for s, e in vector["records_at"]]
    if "topic" in vector:
        assert vector["topic"] in topic_names(message.topic_data)


def check_find_coordinator(message: Any, vector: dict, frame: bytes) -> None:
    assert group_of(vector) in [message.key, *(message.coordinator_keys or [])]


def check_offset_fetch(message: Any, vector: dict, frame: bytes) -> None:
    groups = [message.group_id] + [group.group_id for group in message.groups or []]
    assert group_of(vector) in groups


def check_group_id(message: Any, vector: dict, frame: bytes) -> None:
    assert message.group_id == group_of(vector)


def check_topics_are_the_clients(message: Any, vector: dict, frame: bytes) -> None:
    names = topic_names(message.topics)
    assert own_topics(vector)(names), names


def check_fetch(message: Any, vector: dict, frame: bytes) -> None:
    if message.topics and hasattr(message.topics[0], "topic") and message.topics[0].topic:
        assert own_topics(vector)(topic_names(message.topics, "topic"))


REQUEST_CHECKS: dict[str, Callable[[Any, dict, bytes], None]] = {
    "ApiVersions": lambda m, v, f: v["api_version"] < 3 or bool(m.client_software_name),
    "Produce": check_produce,
    "Fetch": check_fetch,
    "ListOffsets": check_topics_are_the_clients,
    "Metadata": check_topics_are_the_clients,
    "CreateTopics": check_topics_are_the_clients,
    "FindCoordinator": check_find_coordinator,
    "JoinGroup": check_group_id,
    "SyncGroup": check_group_id,
    "Heartbeat": check_group_id,
    "OffsetCommit": check_group_id,
    "LeaveGroup": check_group_id,
    "OffsetFetch": check_offset_fetch,
    "InitProducerId": lambda m, v, f: m.transactional_id is None,
    "SaslHandshake": lambda m, v, f: m.mechanism == "PLAIN",
}


@pytest.mark.parametrize(
    "vector", [v for v in VECTORS if v["direction"] == "request"], ids=vector_id
)
def test_request_decodes_to_expected_values_and_reencodes_identically(vector: dict) -> None:
    frame = load(vector)

    header, message = decode_request(frame)

    assert (header.api_key, header.api_version, header.correlation_id) == (
        vector["api_key"], vector["api_version"], vector["correlation_id"]
    )  # fmt: skip
    assert header.client_id == vector["client_id"]
    check = REQUEST_CHECKS.get(vector["api_name"])
    if check is not None:
        assert check(message, vector, frame) is not False
    assert encode_request(header, message)[4:] == frame


#: Tansu responses that write tagged fields at their default values (PITFALLS.md #1):
#: ApiVersions' SupportedFeatures..ZkMigrationReady, CreateTopics' TopicConfigErrorCode,
#: Fetch's NodeEndpoints. kop's encoder omits default-valued tagged fields, so these cannot
#: re-encode byte for byte; they must decode, and re-encode to a shorter frame holding the
#: same message. (kcat's ApiVersions copy was rewritten by the capture proxy.)
TANSU_DEFAULT_TAGGED_FIELDS = {
    ("ApiVersions", 3),
    ("ApiVersions", 4),
    ("CreateTopics", 7),
    ("Fetch", 16),
}


def writes_default_tagged_fields(vector: dict) -> bool:
    return (
        vector["source"] == "tansu"
        and (vector["api_name"], vector["api_version"]) in TANSU_DEFAULT_TAGGED_FIELDS
    )


@pytest.mark.parametrize(
    "vector", [v for v in VECTORS if v["direction"] == "response"], ids=vector_id
)
def test_response_decodes_and_reencodes_identically(vector: dict) -> None:
    frame = load(vector)
    key, version = vector["api_key"], vector["api_version"]

    correlation_id, message = decode_response(frame, key, version)

    assert correlation_id == vector["correlation_id"]
    reencoded = encode_response(correlation_id, key, version, message)[4:]
    if writes_default_tagged_fields(vector):
        assert decode_response(reencoded, key, version) == (correlation_id, message)
        assert len(reencoded) < len(frame)
    else:
        assert reencoded == frame
    if vector["api_name"] == "Fetch" and vector["records_at"]:
        records = [p.records for t in message.responses for p in t.partitions]
        assert [bytes(r) for r in records if r] == [frame[s:e] for s, e in vector["records_at"]]
