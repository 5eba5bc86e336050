"""Where coordinator partitions are kept: one CompactedLog per offsets-topic partition, over
the broker's managed ledgers.

The number of offsets-topic partitions is fixed when a tenant's first broker starts (from the
`offsets.topic.num.partitions` setting, default 8) and recorded in the metadata store, because
changing it later would move groups to partitions that do not hold their data.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Protocol

from kop.groups.compacted_log import CompactedLog
from kop.groups.placement import DEFAULT_OFFSETS_PARTITIONS, offsets_ledger_name
from storage.managed_ledger import ManagedLedgerConfig
from storage.metadata import NodeExistsError

log = logging.getLogger(__name__)

PARTITIONS_SETTING = "offsets.topic.num.partitions"
# Small ledgers, so truncation after a snapshot soon frees whole ledgers.
LEDGER_MAX_ENTRIES = 10_000
LEDGER_MAX_BYTES = 16 * 1024 * 1024
LEDGER_CACHE_BYTES = 1024 * 1024


class GroupStorage(Protocol):
    """What the coordinator needs from storage (the tests provide an in-memory one)."""

    async def partition_count(self) -> int: ...

    async def open(self, partition: int) -> CompactedLog:
        """The partition's log, opened as its single writer and replayed."""
        ...


class ManagedLedgerGroupStorage:
    def __init__(self, broker: Any) -> None:
        self._broker = broker

    def _settings_path(self) -> str:
        return f"/groups/{self._broker.config.namespace.tenant}/offsets-topic"

    async def partition_count(self) -> int:
        store = self._broker.store
        path = self._settings_path()
        found = await store.get(path)
        if found is None:
            wanted = int(self._broker.config.settings.get(PARTITIONS_SETTING,
                                                          DEFAULT_OFFSETS_PARTITIONS))
            try:
                await store.create(path, json.dumps({"partitions": wanted}).encode())
                return wanted
            except NodeExistsError:  # another broker recorded it first
                found = await store.get(path)
                assert found is not None
        return int(json.loads(found.value)["partitions"])

    async def open(self, partition: int) -> CompactedLog:
        broker = self._broker
        replication = broker.config.replication
        config = ManagedLedgerConfig(
            ensemble_size=replication.ensemble_size,
            write_quorum=replication.write_quorum,
            ack_quorum=replication.ack_quorum,
            max_entries_per_ledger=LEDGER_MAX_ENTRIES,
            max_ledger_bytes=LEDGER_MAX_BYTES,
            cache_bytes=LEDGER_CACHE_BYTES,
        )
        name = offsets_ledger_name(broker.config.namespace, partition)
        ledger = await broker.ledgers.open(name, config)
        compacted = CompactedLog(ledger)
        try:
            await compacted.load()
        except BaseException:
            await ledger.close()
            raise
        return compacted
