"""The records a coordinator partition stores: committed offsets and group metadata.

Each record is a key and a value (None = tombstone), kept in a `CompactedLog`: the latest
value of a key wins, as in Kafka's compacted `__consumer_offsets`. The format is kop's own,
binary and versioned:

    key    = kind (u8) + group id + (kind 1, a committed offset: topic + partition;
             kind 2, the group's metadata: nothing; kind 3, an offset committed inside a
             transaction that has not ended: producer id + topic + partition)
    value  = format version (u8) + fields

Strings and byte strings are an int32 length (-1 for null) followed by the bytes (UTF-8 for
strings). Decoding checks every length against the buffer and raises RecordFormatError with
what was wrong, never anything else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import NamedTuple

OFFSET_KEY_KIND = 1
GROUP_KEY_KIND = 2
TRANSACTIONAL_OFFSET_KEY_KIND = 3
OFFSET_VALUE_VERSION = 1
GROUP_VALUE_VERSION = 1

_I8 = struct.Struct(">B")
_I32 = struct.Struct(">i")
_I64 = struct.Struct(">q")


class RecordFormatError(ValueError):
    """A stored key or value that cannot be decoded (damaged or written by a newer kop)."""


class TopicPartition(NamedTuple):
    topic: str
    partition: int


@dataclass(frozen=True)
class CommittedOffset:
    """One committed offset, as OffsetCommit stored it."""

    offset: int
    leader_epoch: int = -1
    metadata: str = ""
    commit_timestamp_ms: int = 0
    # Set only by OffsetCommit v2-4 with an explicit retention time; -1 means "the broker's
    # offsets.retention.minutes applies".
    expire_timestamp_ms: int = -1


@dataclass(frozen=True)
class StoredMember:
    member_id: str
    group_instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    subscription: bytes  # the member's metadata for the group's selected protocol
    assignment: bytes


@dataclass(frozen=True)
class StoredGroup:
    """A group's metadata as of its last persisted generation."""

    protocol_type: str | None
    generation_id: int
    protocol_name: str | None
    leader_id: str | None
    state_timestamp_ms: int
    members: tuple[StoredMember, ...] = field(default_factory=tuple)


# -- keys --------------------------------------------------------------------------------------


def offset_key(group_id: str, topic_partition: TopicPartition) -> bytes:
    out = bytearray(_I8.pack(OFFSET_KEY_KIND))
    _put_string(out, group_id)
    _put_string(out, topic_partition.topic)
    out += _I32.pack(topic_partition.partition)
    return bytes(out)


def transactional_offset_key(group_id: str, producer_id: int,
                             topic_partition: TopicPartition) -> bytes:
    out = bytearray(_I8.pack(TRANSACTIONAL_OFFSET_KEY_KIND))
    _put_string(out, group_id)
    out += _I64.pack(producer_id)
    _put_string(out, topic_partition.topic)
    out += _I32.pack(topic_partition.partition)
    return bytes(out)


def group_key(group_id: str) -> bytes:
    out = bytearray(_I8.pack(GROUP_KEY_KIND))
    _put_string(out, group_id)
    return bytes(out)


@dataclass(frozen=True)
class DecodedKey:
    """A decoded key: `topic_partition` is None for a group-metadata key; `producer_id` is
    set for an offset of a transaction that has not ended."""

    group_id: str
    topic_partition: TopicPartition | None
    producer_id: int | None = None


def decode_key(data: bytes) -> DecodedKey:
    reader = _Reader(data, "record key")
    kind = reader.u8()
    group_id = reader.string()
    if kind == GROUP_KEY_KIND:
        reader.finish()
        return DecodedKey(group_id, None)
    if kind in (OFFSET_KEY_KIND, TRANSACTIONAL_OFFSET_KEY_KIND):
        producer_id = reader.i64() if kind == TRANSACTIONAL_OFFSET_KEY_KIND else None
        topic = reader.string()
        partition = reader.i32()
        reader.finish()
        return DecodedKey(group_id, TopicPartition(topic, partition), producer_id)
    raise RecordFormatError(f"record key of unknown kind {kind}")


# -- values ------------------------------------------------------------------------------------


def encode_offset(committed: CommittedOffset) -> bytes:
    out = bytearray(_I8.pack(OFFSET_VALUE_VERSION))
    out += _I64.pack(committed.offset)
    out += _I32.pack(committed.leader_epoch)
    _put_string(out, committed.metadata)
    out += _I64.pack(committed.commit_timestamp_ms)
    out += _I64.pack(committed.expire_timestamp_ms)
    return bytes(out)


def decode_offset(data: bytes) -> CommittedOffset:
    reader = _Reader(data, "committed offset")
    reader.version(OFFSET_VALUE_VERSION)
    committed = CommittedOffset(
        offset=reader.i64(),
        leader_epoch=reader.i32(),
        metadata=reader.string(),
        commit_timestamp_ms=reader.i64(),
        expire_timestamp_ms=reader.i64(),
    )
    reader.finish()
    return committed


def encode_group(group: StoredGroup) -> bytes:
    out = bytearray(_I8.pack(GROUP_VALUE_VERSION))
    _put_string(out, group.protocol_type)
    out += _I32.pack(group.generation_id)
    _put_string(out, group.protocol_name)
    _put_string(out, group.leader_id)
    out += _I64.pack(group.state_timestamp_ms)
    out += _I32.pack(len(group.members))
    for member in group.members:
        _put_string(out, member.member_id)
        _put_string(out, member.group_instance_id)
        _put_string(out, member.client_id)
        _put_string(out, member.client_host)
        out += _I32.pack(member.rebalance_timeout_ms)
        out += _I32.pack(member.session_timeout_ms)
        _put_bytes(out, member.subscription)
        _put_bytes(out, member.assignment)
    return bytes(out)


def decode_group(data: bytes) -> StoredGroup:
    reader = _Reader(data, "group metadata")
    reader.version(GROUP_VALUE_VERSION)
    protocol_type = reader.nullable_string()
    generation_id = reader.i32()
    protocol_name = reader.nullable_string()
    leader_id = reader.nullable_string()
    state_timestamp_ms = reader.i64()
    count = reader.count()
    members = []
    for _ in range(count):
        members.append(StoredMember(
            member_id=reader.string(),
            group_instance_id=reader.nullable_string(),
            client_id=reader.string(),
            client_host=reader.string(),
            rebalance_timeout_ms=reader.i32(),
            session_timeout_ms=reader.i32(),
            subscription=reader.bytes(),
            assignment=reader.bytes(),
        ))
    reader.finish()
    return StoredGroup(protocol_type, generation_id, protocol_name, leader_id,
                       state_timestamp_ms, tuple(members))


# -- primitives --------------------------------------------------------------------------------


def _put_string(out: bytearray, value: str | None) -> None:
    _put_bytes(out, None if value is None else value.encode("utf-8", "surrogatepass"))


def _put_bytes(out: bytearray, value: bytes | None) -> None:
    if value is None:
        out += _I32.pack(-1)
        return
    out += _I32.pack(len(value))
    out += value


class _Reader:
    """Bounds-checked reads from one buffer; every failure is a RecordFormatError."""

    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._offset = 0
        self._what = what

    def _take(self, size: int) -> bytes:
        end = self._offset + size
        if end > len(self._data):
            raise RecordFormatError(
                f"{self._what} is truncated: needs {end} bytes, has {len(self._data)}")
        chunk = self._data[self._offset:end]
        self._offset = end
        return chunk

    def u8(self) -> int:
        return _I8.unpack(self._take(1))[0]

    def i32(self) -> int:
        return _I32.unpack(self._take(4))[0]

    def i64(self) -> int:
        return _I64.unpack(self._take(8))[0]

    def version(self, expected: int) -> None:
        found = self.u8()
        if found != expected:
            raise RecordFormatError(f"{self._what} has format version {found}; this kop reads "
                                    f"version {expected}")

    def count(self) -> int:
        count = self.i32()
        if count < 0 or count > len(self._data):
            raise RecordFormatError(f"{self._what} has an impossible count {count}")
        return count

    def bytes(self) -> bytes:
        value = self.nullable_bytes()
        if value is None:
            raise RecordFormatError(f"{self._what} has a null where bytes are required")
        return value

    def nullable_bytes(self) -> bytes | None:
        length = self.i32()
        if length == -1:
            return None
        if length < 0:
            raise RecordFormatError(f"{self._what} has a negative length {length}")
        return self._take(length)

    def string(self) -> str:
        value = self.nullable_string()
        if value is None:
            raise RecordFormatError(f"{self._what} has a null where a string is required")
        return value

    def nullable_string(self) -> str | None:
        raw = self.nullable_bytes()
        if raw is None:
            return None
        try:
            return raw.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError as exc:
            raise RecordFormatError(f"{self._what} has a string that is not UTF-8: {exc}") from None

    def finish(self) -> None:
        if self._offset != len(self._data):
            raise RecordFormatError(
                f"{self._what} has {len(self._data) - self._offset} unexpected trailing bytes")
