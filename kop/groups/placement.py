"""Where a group (or a transactional id) lives: its coordinator partition and that partition's
managed ledger.

Every group belongs to one partition of the system "offsets topic" (`__consumer_offsets`, as
in Kafka), chosen by a stable hash of the group id. The broker owning that partition is the
group's coordinator, and the partition's managed ledger holds the group's metadata and
committed offsets. Transactional ids are placed the same way over `__transaction_state`.
"""

from __future__ import annotations

import zlib

from kop.naming import Namespace

OFFSETS_TOPIC = "__consumer_offsets"
TRANSACTION_STATE_TOPIC = "__transaction_state"
# The namespace holding kop's own system topics, inside each tenant.
SYSTEM_NAMESPACE = "__kafka"
DEFAULT_OFFSETS_PARTITIONS = 8
DEFAULT_TRANSACTION_STATE_PARTITIONS = 8


def coordinator_partition(key: str, partition_count: int) -> int:
    """The partition of a group id / transactional id: CRC-32 of its UTF-8 bytes, so every
    broker and every restart agrees (Python's `hash()` is salted per process)."""
    if partition_count <= 0:
        raise ValueError(f"partition count must be positive, got {partition_count}")
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % partition_count


def offsets_ledger_name(namespace: Namespace, partition: int) -> str:
    """`<tenant>/__kafka/persistent/__consumer_offsets-partition-<n>`."""
    system = Namespace(namespace.tenant, SYSTEM_NAMESPACE)
    return system.managed_ledger_name(OFFSETS_TOPIC, partition)
