"""The handler registry: which Kafka APIs kop answers, in which versions.

Every handler module registers its functions here with `@handles(...)`. ApiVersions is
built from this registry, so kop advertises exactly what it implements (KoP advertised every
API of its client library and broke clients that negotiated what it did not handle).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from wire.protocol import API_BY_KEY

HandlerFunc = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class Handler:
    api_key: int
    name: str
    min_version: int
    max_version: int
    func: HandlerFunc

    def supports(self, version: int) -> bool:
        return self.min_version <= version <= self.max_version


class HandlerRegistry:
    def __init__(self) -> None:
        self._handlers: dict[int, Handler] = {}

    def register(self, api_key: int, min_version: int, max_version: int, func: HandlerFunc) -> None:
        spec = API_BY_KEY[api_key]
        if api_key in self._handlers:
            raise ValueError(f"a handler for {spec.name} is already registered")
        # Never claim a version the codec cannot speak, nor one Kafka marks unstable.
        newest = spec.max_version - 1 if spec.latest_version_unstable else spec.max_version
        low = max(min_version, spec.min_version)
        high = min(max_version, newest)
        if low > high:
            raise ValueError(f"{spec.name}: no version in {min_version}..{max_version} is codable")
        self._handlers[api_key] = Handler(api_key, spec.name, low, high, func)

    def get(self, api_key: int) -> Handler | None:
        return self._handlers.get(api_key)

    def all(self) -> list[Handler]:
        return [self._handlers[key] for key in sorted(self._handlers)]


REGISTRY = HandlerRegistry()


def handles(api_key: int, min_version: int, max_version: int) -> Callable[[HandlerFunc], HandlerFunc]:
    """Register the decorated function as the handler of one API for a version range."""

    def decorate(func: HandlerFunc) -> HandlerFunc:
        REGISTRY.register(api_key, min_version, max_version, func)
        return func

    return decorate
