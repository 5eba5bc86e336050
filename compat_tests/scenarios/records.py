"""Scenarios about records themselves: round trip, codecs, sizes, many partitions."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from compat_tests.clients.base import Client
from compat_tests.kafka_errors import MESSAGE_TOO_LARGE
from compat_tests.model import BrokerError, CheckFailed, ProducerOptions, Record
from compat_tests.scenarios.checks import (
    compare_records,
    expect_contiguous_offsets,
    expect_equal,
    expect_timestamps_within,
)
from compat_tests.scenarios.context import Context, now_ms

HOUR_MS = 3_600_000


def round_trip_records(base_timestamp: int | None) -> list[Record]:
    """Twelve records covering what applications put in records: keys, null keys, null
    values (tombstones), empty values, repeated and non-ASCII header names, binary data."""

    def ts(index: int) -> int | None:
        return None if base_timestamp is None else base_timestamp + index * 1000

    shapes: list[tuple[bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]] = [
        (b"key-0", b"value-0", (("trace-id", b"abc123"),)),
        (None, b"value without a key", ()),
        (b"tombstone", None, ()),
        (b"empty-value", b"", (("kind", b"empty"),)),
        ("ключ".encode(), "значение ✓".encode(), (("h", b"1"), ("h", b"2"), ("ünï", b""))),
        (b"\xfe\xffbinary", bytes(range(256)), (("bin", bytes(range(1, 32))),)),
        (b"key-6", b"x" * 1000, ()),
        (None, b"", (("only", b"headers"),)),
        (b"key-8", b"value-8", tuple((f"n{i}", str(i).encode()) for i in range(8))),
        (b"key-9", b"value-9", ()),
        (b"key-10", b'{"json": true}', (("content-type", b"application/json"),)),
        (b"key-11", b"last", ()),
    ]
    return [
        Record(key=key, value=value, headers=headers, timestamp=ts(index), partition=0)
        for index, (key, value, headers) in enumerate(shapes)
    ]


def produce_and_read_back(
    client: Client,
    ctx: Context,
    topic: str,
    batches: Sequence[Sequence[Record]],
    options: ProducerOptions,
) -> None:
    """Produces `batches` to partition 0, reads the topic back and checks everything:
    acks, offsets, keys, values, headers and timestamps (end offsets are `seek`'s job)."""
    producible = [[r for r in batch if not client.cannot_produce(r)] for batch in batches]
    producible = [batch for batch in producible if batch]
    expected = [record for batch in producible for record in batch]
    left_out = sum(map(len, batches)) - len(expected)
    if left_out:
        reasons = sorted({client.cannot_produce(r) for b in batches for r in b} - {None})
        ctx.note(f"{left_out} record(s) left out: {'; '.join(map(str, reasons))}")
    produce_started = now_ms()
    acks = [ack for batch_acks in client.produce(topic, producible, options) for ack in batch_acks]
    produce_finished = now_ms()
    expect_equal(
        acks, [(0, offset) for offset in range(len(expected))], "producer acks (partition, offset)"
    )

    consumed = client.read_all(topic)
    compare_records(expected, consumed, check_timestamps=client.sets_timestamps)
    expect_contiguous_offsets(consumed, 0, "consumed offsets")
    if not client.sets_timestamps:
        expect_timestamps_within(consumed, produce_started - 1000, produce_finished + 1000)
        ctx.note(f"{client.name} cannot set timestamps; checked producer-assigned CreateTime")


def round_trip(client: Client, ctx: Context) -> None:
    topic = ctx.topic(partitions=1)
    records = round_trip_records(now_ms() - HOUR_MS)
    # Three flushes make at least three record batches, so per-batch faults are seen.
    produce_and_read_back(
        client, ctx, topic, [records[0:4], records[4:8], records[8:12]], ProducerOptions()
    )


def compressible_records(count: int) -> list[Record]:
    base = now_ms() - HOUR_MS
    return [
        Record(
            key=f"key-{i % 10}".encode(),
            value=(f"record {i} " + "compressible text " * 20).encode(),
            headers=(("seq", str(i).encode()),),
            timestamp=base + i,
            partition=0,
        )
        for i in range(count)
    ]


def compression_scenario(codec: str):
    def run(client: Client, ctx: Context) -> None:
        topic = ctx.topic(partitions=1)
        records = compressible_records(200)
        produce_and_read_back(
            client, ctx, topic, [records[:100], records[100:]], ProducerOptions(compression=codec)
        )

    run.__doc__ = f"Produce and consume {codec}-compressed batches."
    return run


ONE_MIB = 1024 * 1024
LARGE_TOPIC_MAX_BYTES = 2 * ONE_MIB


def large_message(client: Client, ctx: Context) -> None:
    topic = ctx.topic(partitions=1, configs={"max.message.bytes": str(LARGE_TOPIC_MAX_BYTES)})
    value = hashlib.shake_256(ctx.prefix.encode()).digest(ONE_MIB)  # incompressible, 1 MiB
    records = [
        Record(
            key=b"large", value=value, headers=(("size", b"1MiB"),), timestamp=now_ms(), partition=0
        ),
        Record(
            key=b"after", value=b"small record after the large one", timestamp=now_ms(), partition=0
        ),
    ]
    produce_and_read_back(
        client,
        ctx,
        topic,
        [records],
        ProducerOptions(max_request_bytes=LARGE_TOPIC_MAX_BYTES + ONE_MIB),
    )


# A batch of one record with a null key and no headers is 61 bytes of batch header
# plus the record: length (3-byte varint here), attributes, timestamp delta, offset
# delta, key length (-1), value length (3-byte varint), value, header count: 72 + V.
BOUNDARY_LIMIT = 100_000
SINGLE_RECORD_BATCH_OVERHEAD = 72


def max_message_bytes(client: Client, ctx: Context) -> None:
    topic = ctx.topic(partitions=1, configs={"max.message.bytes": str(BOUNDARY_LIMIT)})
    options = ProducerOptions(max_request_bytes=4 * BOUNDARY_LIMIT)  # let the broker decide
    fits = Record(
        key=None, value=b"f" * (BOUNDARY_LIMIT - SINGLE_RECORD_BATCH_OVERHEAD), partition=0
    )
    too_big = Record(
        key=None, value=b"b" * (BOUNDARY_LIMIT - SINGLE_RECORD_BATCH_OVERHEAD + 1), partition=0
    )

    acks = client.produce(topic, [[fits]], options)
    expect_equal(
        acks, [[(0, 0)]], f"ack for a batch of exactly max.message.bytes ({BOUNDARY_LIMIT})"
    )
    try:
        client.produce(topic, [[too_big]], options)
    except BrokerError as error:
        expect_equal(
            error.name, MESSAGE_TOO_LARGE, "error for a batch one byte over max.message.bytes"
        )
    else:
        raise CheckFailed("a batch one byte over max.message.bytes was accepted")
    consumed = client.read_all(topic)
    expect_equal(
        [(r.offset, len(r.value or b"")) for r in consumed],
        [(0, len(fits.value or b""))],
        "records stored (offset, value size)",
    )


MANY_PARTITIONS = 32
RECORDS_PER_PARTITION = 10


def many_partitions(client: Client, ctx: Context) -> None:
    topic = ctx.topic(partitions=MANY_PARTITIONS)
    base = now_ms() - HOUR_MS
    records = [
        Record(
            key=f"p{partition}".encode(),
            value=f"p{partition}-seq{seq}".encode(),
            timestamp=base + seq,
            partition=partition,
        )
        for seq in range(RECORDS_PER_PARTITION)
        for partition in range(MANY_PARTITIONS)
    ]
    acks = [ack for batch in client.produce(topic, [records], ProducerOptions()) for ack in batch]
    for record, (partition, offset) in zip(records, acks, strict=True):
        expect_equal(
            (partition, offset),
            (record.partition, int(record.value.split(b"seq")[1])),  # type: ignore[union-attr]
            f"ack for {record.value!r}",
        )
    consumed = client.read_all(topic)
    expect_equal(len(consumed), len(records), "records consumed across all partitions")
    for partition in range(MANY_PARTITIONS):
        mine = [r for r in consumed if r.partition == partition]
        expected = [r for r in records if r.partition == partition]
        compare_records(
            expected, mine, check_timestamps=client.sets_timestamps, what=f"partition {partition}"
        )
        expect_contiguous_offsets(mine, 0, f"partition {partition} offsets")
