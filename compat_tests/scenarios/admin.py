"""Admin scenarios through each client's own admin API: topics, partitions, configs, groups."""

from __future__ import annotations

from compat_tests.clients.base import Client
from compat_tests.kafka_errors import TOPIC_ALREADY_EXISTS
from compat_tests.model import BrokerError, ProducerOptions, Record
from compat_tests.scenarios.checks import CheckFailed, expect_equal
from compat_tests.scenarios.context import Context
from compat_tests.scenarios.group_watch import GroupWatch
from compat_tests.waiting import WaitTimeout, wait_until

SETTLE_SECONDS = 15.0


def _eventually(condition, what: str) -> None:
    """Admin effects may take a metadata refresh to show; wait for them, then fail."""
    try:
        wait_until(condition, SETTLE_SECONDS, what, interval=0.2)
    except WaitTimeout as timeout:
        raise CheckFailed(str(timeout)) from None


def admin_topics(client: Client, ctx: Context) -> None:
    client.require("create_topic", "list_topics", "describe_topic", "delete_topic")
    name = ctx.name("admin-topic")
    client.create_topic(name, 3, {})
    _eventually(lambda: name in client.list_topics(), f"{name} in the topic list")
    expect_equal(client.describe_topic(name), 3, "partitions of the created topic")
    try:
        client.create_topic(name, 3, {})
    except BrokerError as error:
        expect_equal(error.name, TOPIC_ALREADY_EXISTS, "error creating an existing topic")
    else:
        raise CheckFailed("creating an existing topic succeeded")
    client.delete_topic(name)
    _eventually(lambda: name not in client.list_topics(), f"{name} gone from the topic list")


def admin_partitions(client: Client, ctx: Context) -> None:
    client.require("create_partitions", "describe_topic")
    name = ctx.topic(partitions=2)
    client.create_partitions(name, 5)
    _eventually(lambda: client.describe_topic(name) == 5, f"{name} to have 5 partitions")
    acks = client.produce(
        name, [[Record(key=b"k", value=b"to a new partition", partition=4)]], ProducerOptions()
    )
    expect_equal(acks, [[(4, 0)]], "ack from a partition added by create_partitions")


RETENTION_AT_CREATE = "123456789"
RETENTION_ALTERED = "987654321"


def admin_configs(client: Client, ctx: Context) -> None:
    client.require("create_topic", "list_topics", "describe_configs", "alter_configs")
    name = ctx.name("admin-configs")
    client.create_topic(name, 1, {"retention.ms": RETENTION_AT_CREATE})
    _eventually(lambda: name in client.list_topics(), f"{name} in the topic list")
    configs = client.describe_configs(name)
    expect_equal(configs.get("retention.ms"), RETENTION_AT_CREATE, "retention.ms set at creation")
    expect_equal(configs.get("cleanup.policy"), "delete", "default cleanup.policy")
    client.alter_configs(name, {"retention.ms": RETENTION_ALTERED})
    _eventually(
        lambda: client.describe_configs(name).get("retention.ms") == RETENTION_ALTERED,
        f"retention.ms of {name} to become {RETENTION_ALTERED}",
    )


def admin_groups(client: Client, ctx: Context) -> None:
    # delete_group is not required up front: a client without it (aiokafka) still
    # shows whether listing and describing work before its cell turns n/a.
    client.require("list_groups", "describe_group")
    topic = ctx.topic(partitions=1)
    group = ctx.name("g")
    client.produce(topic, [[Record(key=None, value=b"make the group commit")]], ProducerOptions())
    watch = GroupWatch()
    try:
        watch.add("only", client.group_member(group, topic))
        watch.wait_for_total(1, "the group's only member reading")  # commits after the poll
        _eventually(lambda: group in client.list_groups(), f"{group} in the group list")
        live = client.describe_group(group)
        expect_equal(
            (live.state, live.member_count), ("Stable", 1), "(state, members) of a live group"
        )
    finally:
        watch.close_all()
    _eventually(lambda: client.describe_group(group).state == "Empty", f"{group} to become Empty")
    client.delete_group(group)
    _eventually(lambda: group not in client.list_groups(), f"{group} gone from the group list")
