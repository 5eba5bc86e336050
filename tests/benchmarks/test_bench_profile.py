"""benchmarks.profile: reading py-spy's collapsed stacks and naming the hot spots."""

import pytest

from benchmarks.profile import Stack, function_of, hot_spots, markdown_profile, parse_collapsed

COLLAPSED = """\
main (kop/cli.py:10);run (twisted/base.py:5);feed (wire/framing.py:50) 6
main (kop/cli.py:10);run (twisted/base.py:5);feed (wire/framing.py:52) 2
main (kop/cli.py:10);run (twisted/base.py:5);append (kop/log.py:7);copy (kop/log.py:9) 3
worker (threading.py:1);recurse (x.py:1);recurse (x.py:2) 1

"""


def test_collapsed_stacks_are_parsed_outermost_first():
    stacks = parse_collapsed(COLLAPSED)
    assert len(stacks) == 4
    assert stacks[0] == Stack(("main (kop/cli.py:10)", "run (twisted/base.py:5)",
                               "feed (wire/framing.py:50)"), 6)


def test_frames_are_counted_per_function_not_per_line():
    assert function_of("feed (wire/framing.py:52)") == "feed (wire/framing.py)"
    assert function_of("<module> (<frozen runpy>)") == "<module> (<frozen runpy>)"


def test_self_and_inclusive_samples():
    spots = hot_spots(parse_collapsed(COLLAPSED))
    assert spots.total_samples == 12
    assert spots.self_samples[0] == ("feed (wire/framing.py)", 8)
    assert dict(spots.self_samples)["copy (kop/log.py)"] == 3
    inclusive = dict(spots.inclusive_samples)
    assert inclusive["run (twisted/base.py)"] == 11
    assert inclusive["append (kop/log.py)"] == 3
    assert inclusive["recurse (x.py)"] == 1  # once per sample, however deep the recursion


def test_top_limits_the_rows():
    spots = hot_spots(parse_collapsed(COLLAPSED), top=1)
    assert len(spots.self_samples) == 1 and len(spots.inclusive_samples) == 1


@pytest.mark.parametrize("line", ["no count here", "frame;frame x", " 5"])
def test_a_line_that_is_not_a_collapsed_stack_is_refused(line):
    with pytest.raises(ValueError, match="line 1"):
        parse_collapsed(line)


def test_markdown_gives_shares_of_all_samples():
    text = markdown_profile("produce", "what ran", hot_spots(parse_collapsed(COLLAPSED)),
                            gil_only=True)
    assert "| 66.7% | 8 | `feed (wire/framing.py)` |" in text
    assert "12 samples at 100 Hz, of the thread holding the GIL" in text
