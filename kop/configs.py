"""Topic and broker configuration: the names kop honours, their types, defaults and checks.

Only configs kop actually honours may be set on a topic; anything else is refused with
INVALID_CONFIG and a message naming it, never silently accepted. Broker configs are
read-only through the Kafka API (they come from the command line / defaults).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum

from kop.errors import KafkaError
from wire.generated.error_codes import ErrorCode


class ConfigType(IntEnum):
    """DescribeConfigs v3+ config types."""

    BOOLEAN = 1
    STRING = 2
    INT = 3
    SHORT = 4
    LONG = 5
    DOUBLE = 6
    LIST = 7


class ConfigSource(IntEnum):
    """DescribeConfigs v1+ config sources."""

    DYNAMIC_TOPIC_CONFIG = 1
    STATIC_BROKER_CONFIG = 4
    DEFAULT_CONFIG = 5


INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


@dataclass(frozen=True)
class ConfigDef:
    name: str
    type: ConfigType
    broker_name: str  # the broker-level config supplying the default
    check: Callable[[str], str | None] = field(default=lambda value: None)
    doc: str = ""


def _integer(low: int, high: int) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        try:
            number = int(value)
        except ValueError:
            return f"'{value}' is not an integer"
        if not low <= number <= high:
            return f"{number} is outside {low}..{high}"
        return None

    return check


def _one_of(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if value in choices:
            return None
        return f"'{value}' is not one of {', '.join(choices)}"

    return check


TOPIC_CONFIGS: dict[str, ConfigDef] = {
    d.name: d
    for d in (
        ConfigDef("retention.ms", ConfigType.LONG, "log.retention.ms", _integer(-1, INT64_MAX),
                  "How long records are kept (whole ledgers are deleted); -1 keeps forever."),
        ConfigDef("retention.bytes", ConfigType.LONG, "log.retention.bytes", _integer(-1, INT64_MAX),
                  "Partition size above which the oldest ledgers are deleted; -1 for no limit."),
        ConfigDef("max.message.bytes", ConfigType.INT, "message.max.bytes", _integer(0, INT32_MAX),
                  "Largest record batch accepted."),
        ConfigDef("segment.bytes", ConfigType.INT, "log.segment.bytes", _integer(14, INT32_MAX),
                  "Ledger size at which the partition rolls over to a new ledger."),
        ConfigDef("segment.ms", ConfigType.LONG, "log.roll.ms", _integer(1, INT64_MAX),
                  "Ledger age at which the partition rolls over to a new ledger."),
        ConfigDef("message.timestamp.type", ConfigType.STRING, "log.message.timestamp.type",
                  _one_of("CreateTime", "LogAppendTime"),
                  "CreateTime keeps the producer's timestamps; LogAppendTime stamps on append."),
        ConfigDef("cleanup.policy", ConfigType.LIST, "log.cleanup.policy", _one_of("delete"),
                  "Only 'delete' is supported (no compaction)."),
    )
}

BROKER_DEFAULTS: dict[str, str] = {
    "log.retention.ms": str(7 * 24 * 3600 * 1000),
    "log.retention.bytes": "-1",
    "message.max.bytes": "1048588",
    "log.segment.bytes": str(1024**3),
    "log.roll.ms": str(7 * 24 * 3600 * 1000),
    "log.message.timestamp.type": "CreateTime",
    "log.cleanup.policy": "delete",
    "num.partitions": "1",
    "auto.create.topics.enable": "true",
    "default.replication.factor": "1",
    "offsets.retention.minutes": "10080",
    "offsets.retention.check.interval.ms": "600000",
    "offsets.topic.num.partitions": "8",
    "offset.metadata.max.bytes": "4096",
    "group.initial.rebalance.delay.ms": "3000",
    "group.min.session.timeout.ms": "6000",
    "group.max.session.timeout.ms": "1800000",
    "transaction.max.timeout.ms": "900000",
}

BROKER_CONFIG_TYPES: dict[str, ConfigType] = {
    "auto.create.topics.enable": ConfigType.BOOLEAN,
    "log.message.timestamp.type": ConfigType.STRING,
    "log.cleanup.policy": ConfigType.LIST,
    "message.max.bytes": ConfigType.INT,
    "log.segment.bytes": ConfigType.INT,
    "num.partitions": ConfigType.INT,
    "default.replication.factor": ConfigType.SHORT,
    "group.initial.rebalance.delay.ms": ConfigType.INT,
    "group.min.session.timeout.ms": ConfigType.INT,
    "group.max.session.timeout.ms": ConfigType.INT,
    "transaction.max.timeout.ms": ConfigType.INT,
    "offsets.topic.num.partitions": ConfigType.INT,
    "offset.metadata.max.bytes": ConfigType.INT,
}


def broker_config_type(name: str) -> ConfigType:
    return BROKER_CONFIG_TYPES.get(name, ConfigType.LONG)


def validate_topic_configs(configs: Mapping[str, str | None]) -> dict[str, str]:
    """Check topic config overrides; raise INVALID_CONFIG naming the first bad one.

    A value of None means "back to the default" and is dropped from the result.
    """
    result: dict[str, str] = {}
    for name, value in configs.items():
        definition = TOPIC_CONFIGS.get(name)
        if definition is None:
            raise KafkaError(
                ErrorCode.INVALID_CONFIG,
                f"Topic config '{name}' is not supported by kop "
                f"(supported: {', '.join(sorted(TOPIC_CONFIGS))})",
            )
        if value is None:
            continue
        problem = definition.check(value)
        if problem:
            raise KafkaError(ErrorCode.INVALID_CONFIG, f"Invalid value for '{name}': {problem}")
        result[name] = value
    return result


@dataclass(frozen=True)
class EffectiveTopicConfig:
    """A topic's configs resolved against the broker defaults, typed for the code that uses them."""

    retention_ms: int
    retention_bytes: int
    max_message_bytes: int
    segment_bytes: int
    segment_ms: int
    log_append_time: bool

    @classmethod
    def resolve(cls, overrides: Mapping[str, str], broker: Mapping[str, str]) -> EffectiveTopicConfig:
        def value(name: str) -> str:
            if name in overrides:
                return overrides[name]
            return broker[TOPIC_CONFIGS[name].broker_name]

        return cls(
            retention_ms=int(value("retention.ms")),
            retention_bytes=int(value("retention.bytes")),
            max_message_bytes=int(value("max.message.bytes")),
            segment_bytes=int(value("segment.bytes")),
            segment_ms=int(value("segment.ms")),
            log_append_time=value("message.timestamp.type") == "LogAppendTime",
        )
