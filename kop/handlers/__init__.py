"""Kafka API handlers, one module per API family; importing this package registers them all."""

from kop.handlers import api_versions  # noqa: F401  (registers on import)
from kop.handlers.registry import REGISTRY, handles

__all__ = ["REGISTRY", "handles"]
