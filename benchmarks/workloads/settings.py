"""Client settings every workload shares, so both brokers see exactly the same clients.

Producers: acks=all and linger 5 ms (issue 7), idempotence off in every client (librdkafka
and aiokafka default to off, kafka-python 3 to on; one setting keeps the comparison about the
brokers). Consumers: partitions are assigned, not subscribed, so no group coordinator is
involved, and fetch.wait.max.ms is 10 ms rather than librdkafka's 500 ms: a broker whose
long-polling fetch is not woken by an append (Tansu's is not) would otherwise show up to
500 ms of latency that says more about that one setting than about the broker.
"""

from __future__ import annotations

LINGER_MS = 5
# Latency runs send each record as soon as it is due: lingering would add the same few
# milliseconds to both brokers and hide the difference being measured.
LATENCY_LINGER_MS = 0
FETCH_WAIT_MAX_MS = 10
# How long a producer may take to get its last records acknowledged after the timed loop.
FLUSH_TIMEOUT_SECONDS = 60.0
# How long a request to create or delete a topic may take.
ADMIN_TIMEOUT_SECONDS = 30.0


def confluent_producer_config(bootstrap: str, linger_ms: int = LINGER_MS) -> dict:
    return {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": linger_ms,
            "enable.idempotence": False, "client.id": "kop-bench"}


def confluent_consumer_config(bootstrap: str) -> dict:
    return {"bootstrap.servers": bootstrap, "group.id": "kop-bench", "enable.auto.commit": False,
            "fetch.wait.max.ms": FETCH_WAIT_MAX_MS, "client.id": "kop-bench"}
