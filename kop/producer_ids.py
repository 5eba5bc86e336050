"""Producer ids, handed out in blocks reserved with compare-and-set in the metadata store.

Every broker reserves a block of ids at a time, so ids are unique across brokers and
restarts without one metadata write per producer.
"""

from __future__ import annotations

import json

from storage.metadata import BadVersionError, MetadataStore, NodeExistsError

BLOCK_SIZE = 1000
COUNTER_PATH = "/producer-id-block"


class ProducerIdAllocator:
    def __init__(self, store: MetadataStore, block_size: int = BLOCK_SIZE) -> None:
        self._store = store
        self._block_size = block_size
        self._next = 0
        self._end = 0

    async def allocate(self) -> int:
        if self._next >= self._end:
            self._next = await self._reserve_block()
            self._end = self._next + self._block_size
        producer_id = self._next
        self._next += 1
        return producer_id

    async def _reserve_block(self) -> int:
        while True:
            found = await self._store.get(COUNTER_PATH)
            if found is None:
                try:
                    await self._store.create(COUNTER_PATH,
                                             json.dumps({"next": self._block_size}).encode())
                    return 0
                except NodeExistsError:
                    continue
            start = json.loads(found.value)["next"]
            try:
                await self._store.set(COUNTER_PATH,
                                      json.dumps({"next": start + self._block_size}).encode(),
                                      expected_version=found.version)
                return start
            except BadVersionError:
                continue
