"""Which live broker should own a partition: rendezvous (highest-random-weight) hashing.

Every broker computes the same answer from the same live set, with no coordination: the
designated owner of (topic, partition) is the broker whose id gives the highest hash of
(topic, partition, broker id). This spreads partitions evenly in expectation, and when a
broker joins or leaves only the partitions it gains or loses move (about 1/N of them);
every other partition keeps its owner.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def placement_weight(topic: str, partition: int, broker_id: int) -> int:
    """A stable pseudo-random weight (same in every process; Python's hash() is salted)."""
    key = f"{topic}\x00{partition}\x00{broker_id}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big")


def designated_owner(topic: str, partition: int, broker_ids: Iterable[int]) -> int | None:
    """The broker that should own the partition, or None when there is no broker.

    Ties (astronomically unlikely) go to the lower id so every broker agrees.
    """
    best: tuple[int, int] | None = None
    for broker_id in broker_ids:
        candidate = (placement_weight(topic, partition, broker_id), -broker_id)
        if best is None or candidate > best:
            best = candidate
    return None if best is None else -best[1]
