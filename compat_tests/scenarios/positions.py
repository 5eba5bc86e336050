"""Seek scenario: beginning, end and timestamp positions, and the offsets API behind them."""

from __future__ import annotations

from compat_tests.clients.base import Client
from compat_tests.model import BEGINNING, END, ProducerOptions, Record, Start
from compat_tests.scenarios.checks import expect_contiguous_offsets, expect_equal
from compat_tests.scenarios.context import Context, now_ms

BATCHES = 3
PER_BATCH = 10
STEP_MS = 10


def seek(client: Client, ctx: Context) -> None:
    topic = ctx.topic(partitions=1)
    base = now_ms() - 60_000
    total = BATCHES * PER_BATCH
    records = [
        Record(
            key=f"k{i}".encode(), value=f"v{i}".encode(), timestamp=base + i * STEP_MS, partition=0
        )
        for i in range(total)
    ]
    # Several records per batch: the end offset must count records, not batches.
    client.produce(
        topic, [records[i : i + PER_BATCH] for i in range(0, total, PER_BATCH)], ProducerOptions()
    )

    expect_equal(client.offsets(topic, 0), (0, total), "(log start, end) offsets")

    from_start = client.read(topic, 0, BEGINNING, max_records=5)
    expect_contiguous_offsets(from_start.records, 0, "records after seek to beginning")
    expect_equal(from_start.position, 5, "position after reading 5 records from the beginning")

    at_end = client.read(topic, 0, END)
    expect_equal([r.offset for r in at_end.records], [], "records after seek to end")
    expect_equal(at_end.position, total, "position after seek to end")

    everything = client.read(topic, 0, BEGINNING)
    expect_contiguous_offsets(everything.records, 0, "all records")
    timestamps = [r.timestamp for r in everything.records]
    target_offset = 17
    target_time = timestamps[target_offset]
    # Clients that cannot choose timestamps may give several records the same one.
    first_at_or_after = next(
        i for i, ts in enumerate(timestamps) if ts is not None and ts >= target_time
    )
    expect_equal(
        client.offset_for_time(topic, 0, target_time),
        first_at_or_after,
        f"offset for time {target_time}",
    )
    expect_equal(
        client.offset_for_time(topic, 0, max(timestamps) + 1),
        None,
        "offset for a time after the last record",
    )

    from_time = client.read(topic, 0, Start("timestamp", target_time), max_records=3)
    expect_contiguous_offsets(
        from_time.records, first_at_or_after, "records after seek to timestamp"
    )

    late = Record(key=b"late", value=b"after seek to end", partition=0)
    expect_equal(
        client.produce(topic, [[late]], ProducerOptions()), [[(0, total)]], "ack after the end"
    )
    from_old_end = client.read(topic, 0, Start("offset", at_end.position))
    expect_equal(
        [(r.offset, r.value) for r in from_old_end.records],
        [(total, late.value)],
        "records from the old end",
    )
