"""Which partitions a broker claims, keeps or hands off (decisions only, no I/O)."""

from __future__ import annotations

import pytest

from kop.cluster.balancer import Action, decide, plan

ME, OTHER = 1, 2


@pytest.mark.parametrize("designated, held, claimed, expected", [
    (ME, False, False, Action.CLAIM),  # ours and free: take it
    (ME, False, True, None),  # ours, but someone still holds it: wait for the release
    (OTHER, False, False, None),  # another broker's
    (OTHER, False, True, None),
    (ME, True, True, Action.KEEP),
    (OTHER, True, True, Action.HAND_OFF),  # a broker joined and this one is now its
    (None, True, True, Action.KEEP),  # nobody to give it to
    (None, False, False, None),
])
def test_decide(designated, held, claimed, expected):
    assert decide(ME, designated, held, claimed) is expected


def test_plan_hands_off_what_no_longer_exists():
    designated = {("a", 0): ME, ("a", 1): OTHER, ("a", 2): ME}
    claimed = {("a", 1), ("gone", 0), ("a", 2)}
    decisions = plan(ME, designated, held=[("gone", 0), ("a", 2)],
                     designated=lambda t, p: designated[(t, p)],
                     claimed=lambda t, p: (t, p) in claimed)
    assert decisions == {("a", 0): Action.CLAIM, ("a", 2): Action.KEEP,
                         ("gone", 0): Action.HAND_OFF}
