"""Kafka error codes the scenarios check for, by Kafka's own names (errors.tsv).

Each client spells these differently (kafka-python says MESSAGE_SIZE_TOO_LARGE,
librdkafka MSG_SIZE_TOO_LARGE, kafkajs `type`); adapters translate a numeric code
into Kafka's name with `name_for_code` so scenarios compare one vocabulary.
"""

from __future__ import annotations

KAFKA_ERROR_NAMES: dict[int, str] = {
    -1: "UNKNOWN_SERVER_ERROR",
    3: "UNKNOWN_TOPIC_OR_PARTITION",
    10: "MESSAGE_TOO_LARGE",
    18: "RECORD_LIST_TOO_LARGE",
    35: "UNSUPPORTED_VERSION",
    36: "TOPIC_ALREADY_EXISTS",
    37: "INVALID_PARTITIONS",
    68: "NON_EMPTY_GROUP",
    69: "GROUP_ID_NOT_FOUND",
    87: "INVALID_RECORD",
}

MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
TOPIC_ALREADY_EXISTS = "TOPIC_ALREADY_EXISTS"


def name_for_code(code: int) -> str:
    return KAFKA_ERROR_NAMES.get(code, f"KAFKA_ERROR_{code}")
