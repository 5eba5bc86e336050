"""The outcome checks name the first difference and never let a difference through."""

from __future__ import annotations

import pytest

from compat_tests.model import CheckFailed, Record
from compat_tests.scenarios.checks import compare_records, expect_contiguous_offsets

PRODUCED = [
    Record(b"k0", b"v0", (("h", b"1"),), 1000, 0, 0),
    Record(None, None, (), 1001, 0, 1),
]


def test_identical_records_pass():
    compare_records(PRODUCED, list(PRODUCED))


@pytest.mark.parametrize(
    "consumed, message",
    [
        ([PRODUCED[0]], "expected 2 records, got 1 (1 missing)"),
        ([*PRODUCED, PRODUCED[0]], "1 extra"),
        ([Record(b"k0", b"v0", (("h", b"2"),), 1000, 0, 0), PRODUCED[1]], "headers differs"),
        ([PRODUCED[0], Record(None, b"", (), 1001, 0, 1)], "value differs"),
        ([Record(b"k0", b"v0", (("h", b"1"),), 999, 0, 0), PRODUCED[1]], "timestamp differs"),
    ],
)
def test_any_difference_fails_with_its_description(consumed, message):
    with pytest.raises(CheckFailed, match=message.replace("(", r"\(").replace(")", r"\)")):
        compare_records(PRODUCED, consumed)


def test_offset_gaps_fail():
    gap = [Record(None, b"x", partition=0, offset=o) for o in (0, 2)]
    with pytest.raises(CheckFailed, match="offsets"):
        expect_contiguous_offsets(gap)
