"""The scenario catalogue: every scenario runs against one client in its own topic(s).

A scenario is a function `(client, ctx) -> None` that raises `CheckFailed` (or any
error) at the first outcome that differs from Kafka's behaviour, and
`NotExpressible` when the client cannot do one of its steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from compat_tests.clients.base import Client
from compat_tests.scenarios import admin, exactly_once, groups, positions, records
from compat_tests.scenarios.context import Context


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    run: Callable[[Client, Context], None]
    deadline_seconds: float = 60.0  # the whole cell, including process start


CODECS = ("gzip", "snappy", "lz4", "zstd")

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in [
        Scenario(
            "round_trip",
            "keys, null keys/values, headers, timestamps, binary data",
            records.round_trip,
        ),
        *[
            Scenario(
                f"compression_{codec}",
                f"{codec}-compressed batches round trip",
                records.compression_scenario(codec),
            )
            for codec in CODECS
        ],
        Scenario(
            "large_message", "a 1 MiB record (topic max.message.bytes 2 MiB)", records.large_message
        ),
        Scenario(
            "max_message_bytes",
            "batch of exactly max.message.bytes accepted, +1 byte refused",
            records.max_message_bytes,
        ),
        Scenario(
            "many_partitions",
            "32 partitions, per-partition order and offsets",
            records.many_partitions,
        ),
        Scenario(
            "consumer_group",
            "3 members: rebalance on join and on leave, no loss or duplicate",
            groups.consumer_group,
            deadline_seconds=120.0,
        ),
        Scenario(
            "commit_resume",
            "commit offsets with metadata, resume in a new member",
            groups.commit_resume,
            deadline_seconds=90.0,
        ),
        Scenario(
            "seek",
            "seek to beginning/end/timestamp, offsets for times, end offset",
            positions.seek,
            deadline_seconds=90.0,  # six reads; a kafkajs read joins a new group each time
        ),
        Scenario(
            "admin_topics",
            "create, list, describe, delete topics; duplicate create refused",
            admin.admin_topics,
        ),
        Scenario(
            "admin_partitions", "create partitions, produce to a new one", admin.admin_partitions
        ),
        Scenario("admin_configs", "describe and alter topic configs", admin.admin_configs),
        Scenario(
            "admin_groups",
            "list, describe and delete consumer groups",
            admin.admin_groups,
            deadline_seconds=90.0,
        ),
        Scenario(
            "idempotent_producer",
            "idempotent producer, exactly once and in order",
            exactly_once.idempotent_producer,
        ),
        Scenario(
            "transactions",
            "commit and abort; read_committed hides aborted records",
            exactly_once.transactions,
        ),
    ]
}

# Not a per-client function: the runner orchestrates it across every pair of clients.
CROSS_CLIENT = "cross_client"
CROSS_CLIENT_SUMMARY = "records produced by each client consumed by every other, byte-identical"

ALL_SCENARIO_NAMES: list[str] = [*SCENARIOS, CROSS_CLIENT]
