"""Kafka API handlers, one module per API family; importing this package registers them all."""

from kop.handlers import (  # noqa: F401  (each module registers its handlers on import)
    api_versions,
    configs,
    fetch,
    groups,
    metadata,
    offsets,
    produce,
    producer_ids,
    topics_admin,
    transactions,
)
from kop.handlers.registry import REGISTRY, handles

__all__ = ["REGISTRY", "handles"]
