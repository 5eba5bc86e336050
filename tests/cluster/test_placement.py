"""Rendezvous designation: deterministic, balanced, and moving only what must move."""

from __future__ import annotations

from collections import Counter

from kop.cluster.placement import designated_owner

PARTITIONS = [(f"topic-{t}", p) for t in range(30) for p in range(100)]


def owners(brokers: list[int]) -> dict[tuple[str, int], int | None]:
    return {key: designated_owner(*key, brokers) for key in PARTITIONS}


def test_no_broker_no_owner():
    assert designated_owner("orders", 0, []) is None


def test_same_answer_whatever_the_order_of_the_live_set():
    assert owners([1, 2, 3]) == owners([3, 1, 2])


def test_partitions_spread_evenly():
    counts = Counter(owners([1, 2, 3]).values())
    share = len(PARTITIONS) / 3
    assert set(counts) == {1, 2, 3}
    assert all(abs(count - share) < 0.1 * share for count in counts.values()), counts


def test_a_new_broker_takes_only_its_share_from_the_others():
    before, after = owners([1, 2, 3]), owners([1, 2, 3, 4])
    moved = [key for key in PARTITIONS if before[key] != after[key]]
    assert all(after[key] == 4 for key in moved)  # nothing moves between old brokers
    assert abs(len(moved) - len(PARTITIONS) / 4) < 0.1 * len(PARTITIONS) / 4


def test_a_lost_broker_gives_up_only_its_own_partitions():
    before, after = owners([1, 2, 3]), owners([1, 3])
    for key in PARTITIONS:
        if before[key] != 2:
            assert after[key] == before[key]
        else:
            assert after[key] in (1, 3)
