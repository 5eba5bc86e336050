"""The operations every client adapter offers, so each scenario is written once.

A scenario drives a `Client` through these primitives; each adapter implements them
with its library's own public API, exactly as an application would. A primitive the
library cannot express raises `NotExpressible` (the cell becomes `n/a`); a Kafka
error from the broker is raised as `BrokerError` carrying Kafka's error name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from compat_tests.model import (
    GroupDescription,
    NotExpressible,
    ProducerOptions,
    ReadResult,
    Record,
    Start,
)

# How long a single read or group operation may wait for the broker before giving up.
DEFAULT_WAIT_SECONDS = 20.0


class Member(ABC):
    """One consumer in a consumer group, subscribed to one topic."""

    @abstractmethod
    def poll(self, timeout: float) -> list[Record]:
        """Returns the records that arrived within `timeout` seconds (maybe none)."""

    @abstractmethod
    def assignment(self) -> set[int]:
        """The partitions currently assigned to this member."""

    def commit(self, offsets: dict[int, int] | None = None, metadata: str = "") -> None:
        """Commits `offsets` (partition -> next offset), or the consumed positions."""
        raise NotExpressible(f"{type(self).__name__} cannot commit chosen offsets")

    def committed(self, partitions: list[int]) -> dict[int, tuple[int | None, str]]:
        """The group's committed (offset, metadata) per partition."""
        raise NotExpressible(f"{type(self).__name__} cannot read committed offsets")

    @abstractmethod
    def close(self) -> None:
        """Leaves the group (LeaveGroup) and releases the connection."""


class Client(ABC):
    """One Kafka client library (or tool), connected to one bootstrap address."""

    name: str = ""
    # False for tools that cannot choose a record's CreateTime (the broker check then
    # accepts the producer's clock instead of the exact timestamps produced).
    sets_timestamps: bool = True

    # Operations a scenario can ask for up front (`require`) that this adapter cannot
    # express, with the reason. Admin methods left as Client's defaults count as missing
    # without being listed; member operations are named "member.<method>".
    unsupported: ClassVar[dict[str, str]] = {}

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def require(self, *operations: str) -> None:
        """Raises NotExpressible (the cell becomes n/a) before a scenario starts work it
        could not finish with this client."""
        for operation in operations:
            reason = self.unsupported.get(operation)
            inherited = getattr(type(self), operation, None) is getattr(Client, operation, 0)
            if reason is None and inherited:
                reason = f"{self.name} has no API for {operation}"
            if reason is not None:
                raise NotExpressible(reason)

    def cannot_produce(self, record: Record) -> str | None:
        """Why this client cannot produce `record` exactly, or None when it can. Scenarios
        leave such records out and say so in a note; produce() refuses them."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook, most adapters hold nothing open
        """Releases anything the adapter keeps open between calls."""

    # -- producing -----------------------------------------------------------------

    @abstractmethod
    def produce(
        self, topic: str, batches: list[list[Record]], options: ProducerOptions
    ) -> list[list[tuple[int, int]]]:
        """Sends each batch and flushes before the next; returns (partition, offset) acks.

        A record's `partition` (if set) chooses its partition, its `timestamp` (if set)
        its CreateTime. Raises `BrokerError` when the broker refuses a record.
        """

    def produce_transactions(
        self, topic: str, transactional_id: str, transactions: list[tuple[list[Record], bool]]
    ) -> None:
        """Runs one transaction per (records, commit?) pair: commit when True, else abort."""
        raise NotExpressible(f"{self.name} has no transactional producer")

    # -- consuming -----------------------------------------------------------------

    @abstractmethod
    def read(
        self,
        topic: str,
        partition: int,
        start: Start,
        max_records: int | None = None,
        isolation: str = "read_uncommitted",
    ) -> ReadResult:
        """Positions a reader with the client's seek API, then reads until `max_records`
        records or until the partition's end (as of the start of the read)."""

    @abstractmethod
    def read_all(self, topic: str, isolation: str = "read_uncommitted") -> list[Record]:
        """Reads every partition of `topic` from the beginning to its current end."""

    @abstractmethod
    def offsets(self, topic: str, partition: int) -> tuple[int, int]:
        """(log start offset, end offset) through the client's offsets API."""

    @abstractmethod
    def offset_for_time(self, topic: str, partition: int, timestamp: int) -> int | None:
        """The first offset whose timestamp is >= `timestamp`, or None past the end."""

    # -- groups --------------------------------------------------------------------

    @abstractmethod
    def group_member(self, group_id: str, topic: str) -> Member:
        """Joins `group_id` subscribed to `topic`, starting from the earliest offset."""

    # -- admin ---------------------------------------------------------------------

    def _no_admin(self) -> NotExpressible:
        return NotExpressible(f"{self.name} has no admin API for this")

    def create_topic(self, name: str, partitions: int, configs: dict[str, str]) -> None:
        raise self._no_admin()

    def list_topics(self) -> set[str]:
        raise self._no_admin()

    def describe_topic(self, name: str) -> int:
        """The topic's partition count, as the client's admin/metadata API reports it."""
        raise self._no_admin()

    def delete_topic(self, name: str) -> None:
        raise self._no_admin()

    def create_partitions(self, name: str, total: int) -> None:
        raise self._no_admin()

    def describe_configs(self, topic: str) -> dict[str, str]:
        raise self._no_admin()

    def alter_configs(self, topic: str, configs: dict[str, str]) -> None:
        raise self._no_admin()

    def list_groups(self) -> set[str]:
        raise self._no_admin()

    def describe_group(self, group_id: str) -> GroupDescription:
        raise self._no_admin()

    def delete_group(self, group_id: str) -> None:
        raise self._no_admin()


def record_from_python_client(message: Any) -> Record:
    """A consumed message of kafka-python or aiokafka (same shape) as a Record."""
    return Record(
        key=message.key,
        value=message.value,
        headers=tuple((name, value or b"") for name, value in message.headers or ()),
        timestamp=message.timestamp,
        partition=message.partition,
        offset=message.offset,
    )
