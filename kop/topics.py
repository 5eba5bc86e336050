"""The Kafka topic catalogue, kept in the metadata store.

Each topic is one JSON record at /topics/<tenant>/<namespace>/<name> holding its stable
topic id, partition count and config overrides. Partitions themselves live as managed
ledgers named by `kop.naming`. The in-memory view is refreshed by watches, so several
brokers (cluster mode) see the same catalogue.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field

from twisted.internet import defer

from kop.configs import validate_topic_configs
from kop.errors import KafkaError
from kop.naming import Namespace, validate_topic_name
from storage.metadata import BadVersionError, MetadataStore, NodeExistsError
from wire.generated.error_codes import ErrorCode

log = logging.getLogger(__name__)

MAX_PARTITIONS = 100_000


@dataclass(frozen=True)
class TopicInfo:
    name: str
    topic_id: uuid.UUID
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)
    version: int = 0

    def to_json(self) -> bytes:
        return json.dumps(
            {"id": str(self.topic_id), "partitions": self.partitions, "configs": self.configs},
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, name: str, data: bytes, version: int) -> TopicInfo:
        record = json.loads(data)
        return cls(
            name=name,
            topic_id=uuid.UUID(record["id"]),
            partitions=int(record["partitions"]),
            configs=dict(record.get("configs", {})),
            version=version,
        )


class TopicRegistry:
    def __init__(self, store: MetadataStore, namespace: Namespace) -> None:
        self._store = store
        self.namespace = namespace
        self._root = f"/topics/{namespace.tenant}/{namespace.namespace}"
        self._topics: dict[str, TopicInfo] = {}
        self._watching = False
        self._watched: set[str] = set()

    def _path(self, name: str) -> str:
        return f"{self._root}/{name}"

    async def load(self) -> None:
        """Read the whole catalogue and follow later changes made by other brokers."""
        if not self._watching:
            self._watching = True
            self._store.watch(self._root, self._changed)
        names = await self._store.children(self._root)
        for gone in set(self._topics) - set(names):
            self._topics.pop(gone, None)
        for name in names:
            await self._refresh(name)

    def _changed(self, path: str) -> None:
        if path == self._root:
            update = self.load()
        else:
            update = self._refresh(path.rsplit("/", 1)[-1])
        defer.ensureDeferred(update).addErrback(
            lambda failure: log.warning("topic catalogue refresh failed: %s", failure.value))

    async def _refresh(self, name: str) -> TopicInfo | None:
        found = await self._store.get(self._path(name))
        if found is None:
            self._topics.pop(name, None)
            return None
        info = TopicInfo.from_json(name, found.value, found.version)
        if name not in self._watched:
            self._watched.add(name)
            self._store.watch(self._path(name), self._changed)
        self._topics[name] = info
        return info

    def get(self, name: str) -> TopicInfo | None:
        return self._topics.get(name)

    async def lookup(self, name: str) -> TopicInfo | None:
        """The topic as the store knows it now (another broker may have created it)."""
        if name in self._topics:
            return self._topics[name]
        return await self._refresh(name)

    def all(self) -> list[TopicInfo]:
        return sorted(self._topics.values(), key=lambda t: t.name)

    def by_id(self, topic_id: uuid.UUID) -> TopicInfo | None:
        for info in self._topics.values():
            if info.topic_id == topic_id:
                return info
        return None

    @staticmethod
    def check_new_topic(name: str, partitions: int, configs: dict[str, str | None]) -> dict[str, str]:
        validate_topic_name(name)
        if partitions < 1 or partitions > MAX_PARTITIONS:
            raise KafkaError(
                ErrorCode.INVALID_PARTITIONS,
                f"Number of partitions must be between 1 and {MAX_PARTITIONS}",
            )
        return validate_topic_configs(configs)

    async def create(
        self, name: str, partitions: int, configs: dict[str, str | None] | None = None
    ) -> TopicInfo:
        checked = self.check_new_topic(name, partitions, configs or {})
        info = TopicInfo(name, uuid.uuid4(), partitions, checked)
        try:
            await self._store.create(self._path(name), info.to_json())
        except NodeExistsError:
            await self._refresh(name)
            raise KafkaError(
                ErrorCode.TOPIC_ALREADY_EXISTS, f"Topic '{name}' already exists."
            ) from None
        self._topics[name] = info
        log.info("created topic %s with %d partition(s)", name, partitions)
        return info

    async def delete(self, name: str) -> TopicInfo:
        info = await self.lookup(name)
        if info is None:
            raise KafkaError(ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic '{name}' does not exist")
        await self._store.delete(self._path(name))
        self._topics.pop(name, None)
        log.info("deleted topic %s", name)
        return info

    async def _update(self, name: str, change) -> TopicInfo:
        """Apply `change(info) -> info` with compare-and-set, retrying on a concurrent update."""
        while True:
            info = await self._refresh(name)
            if info is None:
                raise KafkaError(
                    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION, f"Topic '{name}' does not exist"
                )
            updated = change(info)
            try:
                version = await self._store.set(
                    self._path(name), updated.to_json(), expected_version=info.version
                )
            except BadVersionError:
                continue
            updated = TopicInfo(updated.name, updated.topic_id, updated.partitions,
                                updated.configs, version)
            self._topics[name] = updated
            return updated

    async def set_partition_count(self, name: str, count: int) -> TopicInfo:
        def grow(info: TopicInfo) -> TopicInfo:
            if count <= info.partitions:
                raise KafkaError(
                    ErrorCode.INVALID_PARTITIONS,
                    f"Topic currently has {info.partitions} partitions, "
                    f"which is higher than or equal to the requested {count}.",
                )
            if count > MAX_PARTITIONS:
                raise KafkaError(ErrorCode.INVALID_PARTITIONS, f"At most {MAX_PARTITIONS} partitions")
            return TopicInfo(info.name, info.topic_id, count, info.configs, info.version)

        return await self._update(name, grow)

    async def set_configs(self, name: str, configs: dict[str, str]) -> TopicInfo:
        checked = validate_topic_configs(configs)

        def replace(info: TopicInfo) -> TopicInfo:
            return TopicInfo(info.name, info.topic_id, info.partitions, checked, info.version)

        return await self._update(name, replace)
