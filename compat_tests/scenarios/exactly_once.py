"""Idempotent producer and transactions with a read_committed consumer."""

from __future__ import annotations

from compat_tests.clients.base import Client
from compat_tests.model import ProducerOptions, Record
from compat_tests.scenarios.checks import (
    compare_records,
    expect,
    expect_contiguous_offsets,
    expect_equal,
)
from compat_tests.scenarios.context import Context, now_ms


def idempotent_producer(client: Client, ctx: Context) -> None:
    topic = ctx.topic(partitions=1)
    base = now_ms()
    records = [
        Record(
            key=f"k{i}".encode(), value=f"idempotent-{i}".encode(), timestamp=base + i, partition=0
        )
        for i in range(100)
    ]
    acks = client.produce(topic, [records[:50], records[50:]], ProducerOptions(idempotent=True))
    expect_equal(
        [a for b in acks for a in b], [(0, i) for i in range(100)], "idempotent producer acks"
    )
    consumed = client.read_all(topic)
    compare_records(records, consumed, check_timestamps=client.sets_timestamps)
    expect_contiguous_offsets(consumed, 0)


def transactions(client: Client, ctx: Context) -> None:
    client.require("produce_transactions")
    topic = ctx.topic(partitions=1)

    def batch(label: str) -> list[Record]:
        return [
            Record(key=label.encode(), value=f"{label}-{i}".encode(), partition=0) for i in range(5)
        ]

    committed, aborted, committed_again = (
        batch("committed"),
        batch("aborted"),
        batch("committed-again"),
    )
    client.produce_transactions(
        topic, ctx.name("tx"), [(committed, True), (aborted, False), (committed_again, True)]
    )
    # Each transaction ends with one control record (a commit or abort marker).
    end = 3 * 5 + 3
    expect_equal(
        client.offsets(topic, 0), (0, end), "(log start, end) offsets after three transactions"
    )

    visible = client.read_all(topic, isolation="read_committed")
    compare_records(
        committed + committed_again, visible, check_timestamps=False, what="read_committed records"
    )
    expect_equal(
        [r.offset for r in visible], [0, 1, 2, 3, 4, 12, 13, 14, 15, 16], "read_committed offsets"
    )

    everything = client.read_all(topic, isolation="read_uncommitted")
    compare_records(
        committed + aborted + committed_again,
        everything,
        check_timestamps=False,
        what="read_uncommitted records",
    )
    expect(all(r.value for r in everything), "a control record was returned as a data record")
