"""Kafka names ↔ native (Pulsar-style) names, and Kafka's topic-name rules.

Kafka topic `orders` partition n is `persistent://<tenant>/<namespace>/orders-partition-n`;
its managed ledger is named `<tenant>/<namespace>/persistent/orders-partition-n`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from kop.errors import KafkaError
from wire.generated.error_codes import ErrorCode

MAX_TOPIC_NAME_LENGTH = 249
_LEGAL_TOPIC = re.compile(r"^[a-zA-Z0-9._-]+$")


@dataclass(frozen=True)
class Namespace:
    tenant: str = "public"
    namespace: str = "default"

    def partition_topic(self, topic: str, partition: int) -> str:
        return f"persistent://{self.tenant}/{self.namespace}/{topic}-partition-{partition}"

    def managed_ledger_name(self, topic: str, partition: int) -> str:
        return f"{self.tenant}/{self.namespace}/persistent/{topic}-partition-{partition}"


def validate_topic_name(name: str | None) -> None:
    """Raise INVALID_TOPIC_EXCEPTION for names Kafka refuses."""
    if not name:
        raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION, "Topic name is empty")
    if name in (".", ".."):
        raise KafkaError(ErrorCode.INVALID_TOPIC_EXCEPTION, f"Topic name cannot be '{name}'")
    if len(name) > MAX_TOPIC_NAME_LENGTH:
        raise KafkaError(
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            f"Topic name is longer than {MAX_TOPIC_NAME_LENGTH} characters",
        )
    if not _LEGAL_TOPIC.match(name):
        raise KafkaError(
            ErrorCode.INVALID_TOPIC_EXCEPTION,
            f"Topic name '{name}' has characters other than ASCII alphanumerics, '.', '_' and '-'",
        )
