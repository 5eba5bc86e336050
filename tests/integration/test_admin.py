"""Topic administration through unmodified admin clients."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)
from kafka.admin import KafkaAdminClient
from kafka.admin import NewTopic as KafkaPythonNewTopic

from tests.integration.clients import confluent_consume, confluent_produce
from wire.generated.error_codes import ErrorCode


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def _error_name(future) -> str:
    """The Kafka error code name (as in errors.tsv) the future failed with."""
    with pytest.raises(KafkaException) as raised:
        future.result(30)
    return ErrorCode(raised.value.args[0].code()).name


def test_create_list_describe_and_delete_topics(bootstrap: str) -> None:
    admin = _admin(bootstrap)
    admin.create_topics([NewTopic("alpha", 3, 1), NewTopic("beta", 1, 1)])["alpha"].result(30)
    listed = admin.list_topics(timeout=30).topics
    assert {"alpha", "beta"} <= set(listed)
    assert sorted(listed["alpha"].partitions) == [0, 1, 2]

    assert _error_name(admin.create_topics([NewTopic("alpha", 1, 1)])["alpha"]) == "TOPIC_ALREADY_EXISTS"
    assert _error_name(admin.create_topics([NewTopic("bad name!", 1, 1)])["bad name!"]) == "INVALID_TOPIC_EXCEPTION"
    assert _error_name(admin.create_topics([NewTopic("zero", 0, 1)])["zero"]) == "INVALID_PARTITIONS"

    validated = admin.create_topics([NewTopic("dry-run", 2, 1)], validate_only=True)
    validated["dry-run"].result(30)
    assert "dry-run" not in admin.list_topics(timeout=30).topics

    admin.delete_topics(["beta"])["beta"].result(30)
    assert "beta" not in admin.list_topics(timeout=30).topics
    assert _error_name(admin.delete_topics(["beta"])["beta"]) == "UNKNOWN_TOPIC_OR_PARTITION"


def test_a_deleted_topic_comes_back_empty(bootstrap: str) -> None:
    admin = _admin(bootstrap)
    confluent_produce(bootstrap, "reborn", [{"value": b"old"}])
    admin.delete_topics(["reborn"])["reborn"].result(30)
    confluent_produce(bootstrap, "reborn", [{"value": b"new"}])
    [record] = confluent_consume(bootstrap, "reborn", [0], 1)
    assert (record.offset, record.value) == (0, b"new")


def test_create_partitions_grows_a_topic(bootstrap: str) -> None:
    admin = _admin(bootstrap)
    admin.create_topics([NewTopic("growing", 1, 1)])["growing"].result(30)
    admin.create_partitions([NewPartitions("growing", 4)])["growing"].result(30)
    assert sorted(admin.list_topics("growing", timeout=30).topics["growing"].partitions) == [0, 1, 2, 3]
    assert _error_name(admin.create_partitions([NewPartitions("growing", 2)])["growing"]) == "INVALID_PARTITIONS"
    confluent_produce(bootstrap, "growing", [{"value": b"p3", "partition": 3}])
    [record] = confluent_consume(bootstrap, "growing", [3], 1)
    assert record.value == b"p3"


def test_describe_and_alter_topic_configs(bootstrap: str) -> None:
    admin = _admin(bootstrap)
    admin.create_topics([NewTopic("configured", 1, 1, config={"retention.ms": "60000"})])[
        "configured"].result(30)
    resource = ConfigResource("topic", "configured")
    described = admin.describe_configs([resource])[resource].result(30)
    assert described["retention.ms"].value == "60000"
    assert not described["retention.ms"].is_default
    assert described["max.message.bytes"].value == "1048588"
    assert described["max.message.bytes"].is_default
    assert described["cleanup.policy"].value == "delete"

    change = ConfigResource("topic", "configured", incremental_configs=[
        ConfigEntry("retention.ms", "120000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("max.message.bytes", "2000000", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([change])[change].result(30)
    described = admin.describe_configs([resource])[resource].result(30)
    assert described["retention.ms"].value == "120000"
    assert described["max.message.bytes"].value == "2000000"

    unhonoured = ConfigResource("topic", "configured", incremental_configs=[
        ConfigEntry("min.compaction.lag.ms", "5", incremental_operation=AlterConfigOpType.SET)])
    assert _error_name(admin.incremental_alter_configs([unhonoured])[unhonoured]) == "INVALID_CONFIG"
    compact = ConfigResource("topic", "configured", incremental_configs=[
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET)])
    assert _error_name(admin.incremental_alter_configs([compact])[compact]) == "INVALID_CONFIG"
    described = admin.describe_configs([resource])[resource].result(30)
    assert described["retention.ms"].value == "120000"  # nothing changed by the refusals

    replaced = ConfigResource("topic", "configured", set_config={"segment.ms": "3600000"})
    admin.alter_configs([replaced])[replaced].result(30)
    described = admin.describe_configs([resource])[resource].result(30)
    assert described["segment.ms"].value == "3600000"
    assert described["retention.ms"].is_default  # AlterConfigs replaces the whole set


def test_broker_configs_are_described_read_only(bootstrap: str) -> None:
    admin = _admin(bootstrap)
    resource = ConfigResource("broker", "0")
    described = admin.describe_configs([resource])[resource].result(30)
    assert described["num.partitions"].value == "1"
    assert described["num.partitions"].is_read_only
    change = ConfigResource("broker", "0", set_config={"num.partitions": "3"})
    with pytest.raises(KafkaException):
        admin.alter_configs([change])[change].result(30)


def test_auto_created_topics_get_num_partitions(bootstrap: str) -> None:
    confluent_produce(bootstrap, "auto-created", [{"value": b"x"}])
    topics = _admin(bootstrap).list_topics("auto-created", timeout=30).topics
    assert list(topics["auto-created"].partitions) == [0]


def test_kafka_python_admin_client(bootstrap: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([KafkaPythonNewTopic("kp-admin", 2, 1)])
        assert "kp-admin" in admin.list_topics()
        [description] = admin.describe_topics(["kp-admin"])
        assert len(description["partitions"]) == 2
        admin.delete_topics(["kp-admin"])
        assert "kp-admin" not in admin.list_topics()
    finally:
        admin.close()
