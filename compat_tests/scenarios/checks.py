"""Outcome checks shared by every scenario; each raises CheckFailed with the first difference."""

from __future__ import annotations

from collections.abc import Sequence

from compat_tests.model import CheckFailed, Record


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def expect_equal(actual: object, expected: object, what: str) -> None:
    if actual != expected:
        raise CheckFailed(f"{what}: expected {expected!r}, got {actual!r}")


def compare_records(
    expected: Sequence[Record],
    consumed: Sequence[Record],
    *,
    check_timestamps: bool = True,
    what: str = "consumed records",
) -> None:
    """Consumed records must equal the produced ones, in order, field by field."""
    for index, (want, got) in enumerate(zip(expected, consumed, strict=False)):
        for field in ("key", "value", "headers") + (("timestamp",) if check_timestamps else ()):
            if getattr(want, field) != getattr(got, field):
                raise CheckFailed(
                    f"{what}[{index}] ({got.brief()}): {field} differs: "
                    f"expected {_clip(getattr(want, field))}, got {_clip(getattr(got, field))}"
                )
    if len(consumed) != len(expected):
        missing = len(expected) - len(consumed)
        raise CheckFailed(
            f"{what}: expected {len(expected)} records, got {len(consumed)}"
            + (f" ({missing} missing)" if missing > 0 else f" ({-missing} extra)")
        )


def expect_contiguous_offsets(
    records: Sequence[Record], first: int = 0, what: str = "offsets"
) -> None:
    """Offsets of one partition's records must run first, first+1, ... without gaps."""
    offsets = [record.offset for record in records]
    wanted = list(range(first, first + len(records)))
    if offsets != wanted:
        raise CheckFailed(f"{what}: expected {_span(wanted)}, got {_clip(offsets)}")


def expect_timestamps_within(records: Sequence[Record], earliest: int, latest: int) -> None:
    """For clients that cannot choose timestamps: CreateTime must be the producer's clock."""
    for record in records:
        if record.timestamp is None or not earliest <= record.timestamp <= latest:
            raise CheckFailed(
                f"{record.brief()}: timestamp {record.timestamp} outside the produce window "
                f"[{earliest}, {latest}]"
            )


def _span(offsets: Sequence[int]) -> str:
    return f"[{offsets[0]}..{offsets[-1]}]" if offsets else "[]"


def _clip(value: object, limit: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
