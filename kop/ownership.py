"""Which broker serves which partition.

Every partition (and every internal partition, such as a consumer-offsets partition) is
served by exactly one broker at a time: its owner, which alone writes its managed ledger.
`Ownership` is the broker's view of that: who the live brokers are, who owns a partition
(Metadata answers name it as leader, with its leader epoch), and the claim a broker takes
before opening a partition and gives up after closing it.

Standalone mode has one broker that owns everything (`SoleOwnership`). Cluster mode keeps
claims as ephemeral entries in ZooKeeper (kop/cluster/).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class BrokerAddress:
    node_id: int
    host: str
    port: int
    rack: str | None = None


LostListener = Callable[[str, int], None]


class Ownership(ABC):
    def __init__(self) -> None:
        self._lost_listeners: list[LostListener] = []

    def add_lost_listener(self, listener: LostListener) -> None:
        """`listener(topic, partition)` runs when this broker stops owning a partition it had
        claimed (its session expired, or the partition moves to another broker)."""
        self._lost_listeners.append(listener)

    def _lost(self, topic: str, partition: int) -> None:
        for listener in list(self._lost_listeners):
            listener(topic, partition)

    async def start(self) -> None:  # noqa: B027 - joining is a no-op unless overridden
        """Join: register this broker and begin following the others."""

    async def stop(self) -> None:  # noqa: B027 - leaving is a no-op unless overridden
        """Leave: withdraw this broker (claims must already be released)."""

    @abstractmethod
    def live_brokers(self) -> list[BrokerAddress]: ...

    @abstractmethod
    def leader_of(self, topic: str, partition: int) -> int | None:
        """The broker serving the partition, or None while no live broker can."""

    @abstractmethod
    def leader_epoch_of(self, topic: str, partition: int) -> int: ...

    @abstractmethod
    def owns(self, topic: str, partition: int) -> bool:
        """True if this broker serves the partition (or is the one that should claim it)."""

    @abstractmethod
    async def acquire(self, topic: str, partition: int) -> int:
        """Claim the partition before opening it; returns its leader epoch. Raises
        KafkaError(NOT_LEADER_OR_FOLLOWER) when it belongs to another broker."""

    @abstractmethod
    async def release(self, topic: str, partition: int) -> None:
        """Give the claim up after the partition was closed."""


class SoleOwnership(Ownership):
    """Standalone: the only broker owns every partition, forever, at epoch 0."""

    def __init__(self, address: Callable[[], BrokerAddress]) -> None:
        super().__init__()
        self._address = address

    def live_brokers(self) -> list[BrokerAddress]:
        return [self._address()]

    def leader_of(self, topic: str, partition: int) -> int | None:
        return self._address().node_id

    def leader_epoch_of(self, topic: str, partition: int) -> int:
        return 0

    def owns(self, topic: str, partition: int) -> bool:
        return True

    async def acquire(self, topic: str, partition: int) -> int:
        return 0

    async def release(self, topic: str, partition: int) -> None:
        return None
