"""Cross-client scenario: what each client produces, every other client consumes unchanged.

It runs in two steps of cells: every client produces the same fixture into its own
topic ("produce"), then every client reads every other client's topic and compares
it byte for byte with the fixture ("consume"). The runner turns the results into a
producer x consumer table and one verdict per client.
"""

from __future__ import annotations

from typing import Any

from compat_tests.cell_errors import first_error
from compat_tests.clients.base import Client
from compat_tests.model import ProducerOptions, Record
from compat_tests.scenarios.checks import compare_records, expect_contiguous_offsets
from compat_tests.scenarios.context import Context

FIXED_BASE_TIMESTAMP = 1_700_000_000_000


def fixture_records() -> list[Record]:
    """Binary keys, values and headers across all byte values (no NUL in keys and
    headers: command-line tools take those as arguments), null keys and values."""
    shapes: list[tuple[bytes | None, bytes | None, tuple[tuple[str, bytes], ...]]] = [
        (bytes(range(1, 256)), bytes(range(256)) * 4, (("bin", bytes(range(1, 128))),)),
        (None, b"\x00" * 16 + b"\xff" * 16, ()),
        (b"tombstone", None, (("reason", b"deleted"),)),
        ("ключ ✓".encode(), b"", (("utf8-ü", "värde".encode()),)),
        (b"k4", bytes(reversed(range(256))), (("a", b"1"), ("a", b"2"))),
        (b"k5", b"plain text record", ()),
    ]
    return [
        Record(key, value, headers, FIXED_BASE_TIMESTAMP + index, partition=0)
        for index, (key, value, headers) in enumerate(shapes)
    ]


def check_consumed(records: list[Record], producer_sets_timestamps: bool) -> None:
    compare_records(fixture_records(), records, check_timestamps=producer_sets_timestamps)
    expect_contiguous_offsets(records, 0)


def run_step(client: Client, ctx: Context, request: dict[str, Any]) -> dict[str, Any]:
    if request["step"] == "produce":
        topic = ctx.topic(partitions=1)
        client.produce(topic, [fixture_records()], ProducerOptions())
        return {"topic": topic, "sets_timestamps": client.sets_timestamps}

    results: dict[str, dict[str, str]] = {}
    for source in request["sources"]:
        try:
            check_consumed(client.read_all(source["topic"]), source["sets_timestamps"])
            results[source["producer"]] = {"status": "pass", "detail": ""}
        except Exception as exc:  # one producer's records failing must not hide the others
            results[source["producer"]] = {"status": "fail", "detail": first_error(exc)}
    return {"consumed": results}
