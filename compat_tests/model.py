"""The suite's vocabulary: records, read positions, outcomes and the errors scenarios raise.

Everything here is plain data that crosses process boundaries as JSON (the kafkajs
driver runs in Node.js, every cell runs in its own Python subprocess), so bytes are
carried as base64 and every type has a `to_json`/`from_json` pair.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any, Literal


def bytes_to_json(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def bytes_from_json(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)


@dataclass(frozen=True)
class Record:
    """One Kafka record as produced or as consumed (partition/offset known after consuming)."""

    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int | None = None
    partition: int | None = None
    offset: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "key": bytes_to_json(self.key),
            "value": bytes_to_json(self.value),
            "headers": [[name, bytes_to_json(value)] for name, value in self.headers],
            "timestamp": self.timestamp,
            "partition": self.partition,
            "offset": self.offset,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        return cls(
            key=bytes_from_json(data.get("key")),
            value=bytes_from_json(data.get("value")),
            headers=tuple(
                (name, bytes_from_json(value) or b"") for name, value in data.get("headers") or []
            ),
            timestamp=data.get("timestamp"),
            partition=data.get("partition"),
            offset=data.get("offset"),
        )

    def brief(self) -> str:
        """A short human description for error messages (values can be megabytes)."""

        def clip(data: bytes | None) -> str:
            if data is None:
                return "null"
            return repr(data[:24]) + (f"...({len(data)} bytes)" if len(data) > 24 else "")

        where = f"p{self.partition}@{self.offset} " if self.offset is not None else ""
        return f"{where}key={clip(self.key)} value={clip(self.value)} headers={len(self.headers)}"


StartKind = Literal["beginning", "end", "timestamp", "offset"]


@dataclass(frozen=True)
class Start:
    """Where a reader positions itself before reading, using the client's own seek API."""

    kind: StartKind
    value: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Start:
        return cls(kind=data["kind"], value=data.get("value"))


BEGINNING = Start("beginning")
END = Start("end")


@dataclass(frozen=True)
class ReadResult:
    """Records read from one partition and the reader's position when it stopped."""

    records: list[Record]
    position: int


@dataclass(frozen=True)
class ProducerOptions:
    compression: str = "none"  # none | gzip | snappy | lz4 | zstd
    idempotent: bool = False
    max_request_bytes: int | None = None  # raise the client's own size limit above the broker's

    def to_json(self) -> dict[str, Any]:
        return {
            "compression": self.compression,
            "idempotent": self.idempotent,
            "max_request_bytes": self.max_request_bytes,
        }


@dataclass(frozen=True)
class GroupDescription:
    state: str  # Kafka's names: Empty, Stable, PreparingRebalance, CompletingRebalance, Dead
    member_count: int


class NotExpressible(Exception):
    """The client has no way to express this step; the scenario is reported `n/a`."""


class BrokerError(Exception):
    """The broker answered with a Kafka error; `name` is Kafka's name for it (errors.tsv)."""

    def __init__(self, name: str, detail: str = "") -> None:
        super().__init__(f"{name}: {detail}" if detail else name)
        self.name = name


class CheckFailed(AssertionError):
    """An outcome differs from what Kafka's documented behaviour requires."""


Status = Literal["pass", "fail", "n/a"]


@dataclass
class Outcome:
    """The verdict for one client x scenario cell."""

    status: Status
    detail: str = ""  # first error for fail, reason for n/a, notes for pass
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)  # extra results (cross-client dumps)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "detail": self.detail,
            "seconds": round(self.seconds, 2),
        }
        if self.data:
            out["data"] = self.data
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        return cls(
            status=data["status"],
            detail=data.get("detail", ""),
            seconds=float(data.get("seconds", 0.0)),
            data=data.get("data") or {},
        )
