"""Consumer-group scenarios: a group of three rebalancing on join and leave; commit and resume."""

from __future__ import annotations

from compat_tests.clients.base import Client
from compat_tests.model import ProducerOptions, Record
from compat_tests.scenarios.checks import expect, expect_equal
from compat_tests.scenarios.context import Context
from compat_tests.scenarios.group_watch import GroupWatch

GROUP_PARTITIONS = 6


def _records(phase: str, per_partition: int) -> list[Record]:
    return [
        Record(key=f"{phase}-p{p}".encode(), value=f"{phase}-p{p}-{i}".encode(), partition=p)
        for i in range(per_partition)
        for p in range(GROUP_PARTITIONS)
    ]


def _check_phase(
    consumed: dict[str, list[Record]],
    owners: dict[str, set[int]],
    produced: list[Record],
    phase: str,
) -> None:
    """Each record of `phase` was consumed once, by the member that owned its partition."""
    seen: dict[bytes, str] = {}
    for name, records in consumed.items():
        for record in records:
            if record.value is None or not record.value.startswith(phase.encode()):
                continue
            expect(
                record.value not in seen,
                f"{phase}: {record.brief()} consumed twice ({seen.get(record.value)} and {name})",
            )
            seen[record.value] = name
            expect(
                record.partition in owners[name],
                f"{phase}: member {name} consumed {record.brief()} but owns {sorted(owners[name])}",
            )
    missing = [r.value for r in produced if r.value not in seen]
    expect(not missing, f"{phase}: records never consumed: {missing[:5]}")


def consumer_group(client: Client, ctx: Context) -> None:
    topic = ctx.topic(partitions=GROUP_PARTITIONS)
    group = ctx.name("g")
    watch = GroupWatch()
    try:
        watch.add("A", client.group_member(group, topic))
        alone = watch.wait_for_balanced(GROUP_PARTITIONS, "first member")
        expect_equal(alone["A"], set(range(GROUP_PARTITIONS)), "the only member's partitions")

        watch.add("B", client.group_member(group, topic))
        watch.add("C", client.group_member(group, topic))
        three = watch.wait_for_balanced(GROUP_PARTITIONS, "rebalance on join of B and C")

        joined = _records("joined", 5)
        client.produce(topic, [joined], ProducerOptions())
        consumed = watch.wait_for_total(len(joined), "records after join")
        _check_phase(consumed, three, joined, "joined")

        watch.remove("C")
        two = watch.wait_for_balanced(GROUP_PARTITIONS, "rebalance on leave of C")
        left = _records("left", 5)
        client.produce(topic, [left], ProducerOptions())
        consumed = watch.wait_for_total(len(joined) + len(left), "records after leave")
        _check_phase(consumed, two, left, "left")
    finally:
        watch.close_all()


COMMIT_PARTITIONS = 2
COMMIT_RECORDS_PER_PARTITION = 10
COMMIT_AT = 4
COMMIT_METADATA = "compat-suite checkpoint"


def commit_resume(client: Client, ctx: Context) -> None:
    """Commit chosen offsets with metadata, leave, and resume from them in a new member."""
    client.require("member.commit_offsets", "member.committed")
    topic = ctx.topic(partitions=COMMIT_PARTITIONS)
    group = ctx.name("g")
    records = [
        Record(key=None, value=f"p{p}-{i}".encode(), partition=p)
        for i in range(COMMIT_RECORDS_PER_PARTITION)
        for p in range(COMMIT_PARTITIONS)
    ]
    client.produce(topic, [records], ProducerOptions())

    watch = GroupWatch()
    try:
        watch.add("first", client.group_member(group, topic))
        watch.wait_for_total(len(records), "first member reading everything")
        positions = {p: COMMIT_AT for p in range(COMMIT_PARTITIONS)}
        watch.call("first", lambda member: member.commit(positions, COMMIT_METADATA))
        expect_equal(
            watch.call("first", lambda member: member.committed(list(range(COMMIT_PARTITIONS)))),
            {p: (COMMIT_AT, COMMIT_METADATA) for p in range(COMMIT_PARTITIONS)},
            "committed (offset, metadata)",
        )
        watch.remove("first")

        watch.add("second", client.group_member(group, topic))
        resumed_count = COMMIT_PARTITIONS * (COMMIT_RECORDS_PER_PARTITION - COMMIT_AT)
        resumed = watch.wait_for_total(resumed_count, "second member resuming", ["second"])[
            "second"
        ]
        for p in range(COMMIT_PARTITIONS):
            offsets = [r.offset for r in resumed if r.partition == p]
            expect_equal(
                offsets,
                list(range(COMMIT_AT, COMMIT_RECORDS_PER_PARTITION)),
                f"partition {p} resumed offsets",
            )
    finally:
        watch.close_all()
