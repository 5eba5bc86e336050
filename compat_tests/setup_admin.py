"""Creates the topics a scenario needs, with one fixed client (librdkafka's admin API).

Scenarios test the client under test; their topics are prepared by this neutral
helper so that a client without an admin API (kcat) can still be tested, and so
that every client's scenario starts from the same broker state.
"""

from __future__ import annotations

from confluent_kafka.admin import AdminClient, NewTopic

from compat_tests.waiting import wait_until

SETUP_TIMEOUT_SECONDS = 20.0


class SetupError(Exception):
    """The broker could not prepare a scenario's topic; the cell fails with this."""


class SetupAdmin:
    def __init__(self, bootstrap: str) -> None:
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    def create_topic(
        self, name: str, partitions: int, configs: dict[str, str] | None = None
    ) -> None:
        futures = self.admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1, config=configs or {})],
            operation_timeout=SETUP_TIMEOUT_SECONDS,
        )
        try:
            futures[name].result(timeout=SETUP_TIMEOUT_SECONDS)
        except Exception as exc:  # the cell reports it as a setup failure
            raise SetupError(f"setup: creating topic {name} failed: {exc}") from exc
        wait_until(
            lambda: self._has_leaders(name, partitions),
            SETUP_TIMEOUT_SECONDS,
            f"topic {name} to have leaders for {partitions} partitions",
        )

    def _has_leaders(self, name: str, partitions: int) -> bool:
        metadata = self.admin.list_topics(topic=name, timeout=5)
        topic = metadata.topics.get(name)
        if topic is None or topic.error is not None or len(topic.partitions) != partitions:
            return False
        return all(p.leader >= 0 for p in topic.partitions.values())
