"""The vocabulary of the generated message facts.

``wire/generated/*.py`` describe every Kafka message with the small, frozen
dataclasses below: names, types, version ranges, nullable ranges, defaults,
tags, flexible versions, api keys, listeners. They are plain facts; the codec
engine (``wire.model``, ``wire.construct_codec``, ``wire.fastpath``) turns them
into classes, construct definitions and fast codecs.

Types keep the spelling of Kafka's message specs: ``"int32"``, ``"string"``,
``"[]int32"`` (array of int32), ``"[]TopicData"`` (array of a struct),
``"LeaderIdAndEpoch"`` (a single struct). A struct's fields are either given
inline (``Field.fields``) or, for common structs, in ``MessageSpec.common_structs``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Versions:
    """An inclusive range of versions; ``high=None`` means "and every later one"."""

    low: int
    high: int | None = None

    def __contains__(self, version: int) -> bool:
        return self.low <= version and (self.high is None or version <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"{self.low}+"
        return str(self.low) if self.low == self.high else f"{self.low}-{self.high}"

    @classmethod
    def parse(cls, text: str) -> Versions | None:
        """Parse the spec notation: "3+", "0-6", "2" or "none" (None)."""
        text = text.strip()
        if text == "none":
            return None
        if text.endswith("+"):
            return cls(int(text[:-1]))
        if "-" in text:
            low, high = text.split("-", 1)
            return cls(int(low), int(high))
        return cls(int(text), int(text))


def snake_case(name: str) -> str:
    """Python's spelling of a spec name: ``TopicData`` -> ``topic_data``,
    ``ThrottleTimeMs`` -> ``throttle_time_ms``, ``KRaftVersion`` -> ``k_raft_version``."""
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name)
    return words.lower()


def within(versions: Versions | None, version: int) -> bool:
    """True when ``version`` is in ``versions`` (None is the empty range)."""
    return versions is not None and version in versions


# A marker for "the spec gives no explicit default": the type's default applies.
class _NoDefault:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_DEFAULT"


NO_DEFAULT: Any = _NoDefault()


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a struct, as the spec describes it."""

    name: str
    type: str
    versions: Versions
    nullable_versions: Versions | None = None
    default: Any = NO_DEFAULT  # already a Python value: int, bool, float, str or None
    tag: int | None = None
    tagged_versions: Versions | None = None
    ignorable: bool = False
    # Overrides the message's flexible versions for this field (only the request
    # header's ClientId does this, with "none": it stays a classic string).
    flexible_versions: Versions | None | _NoDefault = NO_DEFAULT
    fields: tuple[Field, ...] = ()


@dataclass(frozen=True, slots=True)
class CommonStruct:
    """A named struct shared by several fields of one message."""

    name: str
    versions: Versions
    fields: tuple[Field, ...]


@dataclass(frozen=True, slots=True)
class MessageSpec:
    """One message: a request, a response, a header or an embedded data structure."""

    name: str
    kind: str  # "request", "response", "header" or "data"
    valid_versions: Versions
    flexible_versions: Versions | None
    fields: tuple[Field, ...]
    api_key: int | None = None
    listeners: tuple[str, ...] = ()
    common_structs: tuple[CommonStruct, ...] = ()
    latest_version_unstable: bool = False
