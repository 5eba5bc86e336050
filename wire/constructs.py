"""Kafka's primitive wire types as ``construct`` classes, with every length checked.

These are the building blocks of ``wire.construct_codec``, the reference
(source-of-truth) codec. Each one reads from a seekable byte stream and,
before it reads or allocates anything, bounds every length and count by the
bytes left in the stream: a 2 GiB string length in a 100-byte frame fails at
once with a truncation error instead of allocating.

Errors are raised as ``KafkaConstructError`` (a ``construct.ConstructError``
carrying the DecodeError subclass to raise, the byte offset and construct's
field path); ``wire.construct_codec`` turns them into ``wire.errors`` types.

Types (Kafka name -> construct here):
    unsigned varint -> UVarInt        zigzag varint/varlong -> VarInt(32) / VarInt(64)
    string / compact_string (nullable) -> KafkaString
    bytes / compact_bytes / records (nullable) -> KafkaBytes
    array / compact_array (nullable) -> KafkaArray
    uuid -> KafkaUuid                  nullable struct (int8 marker) -> NullableStruct
    tagged fields -> TaggedFields      (the ints, float64 and bool are construct's own)
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Sequence
from typing import Any

from construct import Construct, ConstructError, Container, Int16sb, Int32sb, Subconstruct

from wire.errors import DecodeError, InvalidValueError, TruncatedError

MAX_UVARINT_BYTES = 5  # Kafka's limit: an unsigned varint carries at most 32 bits


class KafkaConstructError(ConstructError):
    """A construct error that knows which DecodeError it stands for, and where."""

    def __init__(
        self,
        reason: str,
        *,
        path: str | None,
        offset: int | None = None,
        kind: type[DecodeError] = InvalidValueError,
    ) -> None:
        super().__init__(reason, path=path)
        self.reason = reason
        self.offset = offset
        self.kind = kind


def remaining(stream: io.BufferedIOBase | io.BytesIO) -> int:
    """Bytes left between the stream position and its end."""
    here = stream.tell()
    end = stream.seek(0, io.SEEK_END)
    stream.seek(here)
    return end - here


def _read_exact(stream: Any, length: int, path: str, offset: int) -> bytes:
    """Read ``length`` bytes after checking they are there (no over-allocation)."""
    left = remaining(stream)
    if length > left:
        raise KafkaConstructError(
            f"length {length} exceeds the {left} bytes left", path=path, offset=offset,
            kind=TruncatedError,
        )
    return stream.read(length)


def _read_byte(stream: Any, path: str) -> int:
    data = stream.read(1)
    if not data:
        raise KafkaConstructError(
            "the bytes end inside a varint", path=path, offset=stream.tell(), kind=TruncatedError
        )
    return data[0]


def read_uvarint(stream: Any, path: str, max_bytes: int = MAX_UVARINT_BYTES) -> int:
    start = stream.tell()
    value = 0
    for index in range(max_bytes):
        byte = _read_byte(stream, path)
        value |= (byte & 0x7F) << (7 * index)
        if not byte & 0x80:
            return value
    raise KafkaConstructError(f"varint longer than {max_bytes} bytes", path=path, offset=start)


def uvarint_bytes(value: int) -> bytes:
    """The unsigned varint encoding of a non-negative int."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


class UVarInt(Construct):
    """Kafka's unsigned varint: little-endian base-128, at most 5 bytes, < 2**32."""

    def _parse(self, stream: Any, context: Any, path: str) -> int:
        start = stream.tell()
        value = read_uvarint(stream, path)
        if value >= 1 << 32:
            raise KafkaConstructError("unsigned varint above 2**32-1", path=path, offset=start)
        return value

    def _build(self, obj: int, stream: Any, context: Any, path: str) -> int:
        if not isinstance(obj, int) or not 0 <= obj < 1 << 32:
            raise ConstructError(f"unsigned varint out of range: {obj!r}", path=path)
        stream.write(uvarint_bytes(obj))
        return obj


class VarInt(Construct):
    """Kafka's zigzag varint (``bits=32``, 5 bytes at most) or varlong (``bits=64``, 10)."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits
        self.max_bytes = 5 if bits == 32 else 10

    def _parse(self, stream: Any, context: Any, path: str) -> int:
        start = stream.tell()
        raw = read_uvarint(stream, path, self.max_bytes)
        if raw >= 1 << self.bits:
            raise KafkaConstructError(f"varint wider than {self.bits} bits", path=path, offset=start)
        return (raw >> 1) ^ -(raw & 1)

    def _build(self, obj: int, stream: Any, context: Any, path: str) -> int:
        limit = 1 << (self.bits - 1)
        if not isinstance(obj, int) or not -limit <= obj < limit:
            raise ConstructError(f"varint out of range: {obj!r}", path=path)
        stream.write(uvarint_bytes((obj << 1) ^ (obj >> (self.bits - 1))))
        return obj


class _LengthPrefixed(Construct):
    """Shared length-prefix logic of strings, bytes and arrays.

    Classic encodings prefix a signed int (-1 is null); compact ones an unsigned
    varint holding length + 1 (0 is null).
    """

    def __init__(self, classic_prefix: Construct, compact: bool, nullable: bool) -> None:
        super().__init__()
        self.classic_prefix = classic_prefix
        self.compact = compact
        self.nullable = nullable

    def _parse_length(self, stream: Any, path: str) -> int | None:
        start = stream.tell()
        if self.compact:
            length = read_uvarint(stream, path) - 1
        else:
            length = self.classic_prefix._parsereport(stream, None, path)
        if length == -1:
            if not self.nullable:
                raise KafkaConstructError("null where null is not allowed", path=path, offset=start)
            return None
        if length < 0:
            raise KafkaConstructError(f"negative length {length}", path=path, offset=start)
        return length

    def _build_length(self, length: int | None, stream: Any, path: str) -> None:
        if length is None:
            if not self.nullable:
                raise ConstructError("null where null is not allowed", path=path)
            length = -1
        if self.compact:
            stream.write(uvarint_bytes(length + 1))
        else:
            self.classic_prefix._build(length, stream, None, path)


class KafkaString(_LengthPrefixed):
    """STRING / COMPACT_STRING (nullable or not): UTF-8 text, at most 32767 bytes."""

    def __init__(self, compact: bool, nullable: bool) -> None:
        super().__init__(Int16sb, compact, nullable)

    def _parse(self, stream: Any, context: Any, path: str) -> str | None:
        start = stream.tell()
        length = self._parse_length(stream, path)
        if length is None:
            return None
        if length > 0x7FFF:
            raise KafkaConstructError(f"string length {length} above 32767", path=path, offset=start)
        data = _read_exact(stream, length, path, start)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise KafkaConstructError(f"string is not UTF-8: {exc.reason}", path=path, offset=start) from None

    def _build(self, obj: str | None, stream: Any, context: Any, path: str) -> str | None:
        if obj is None:
            self._build_length(None, stream, path)
            return obj
        if not isinstance(obj, str):
            raise ConstructError(f"expected a str, got {type(obj).__name__}", path=path)
        data = obj.encode("utf-8")
        if len(data) > 0x7FFF:
            raise ConstructError(f"string of {len(data)} bytes is above 32767", path=path)
        self._build_length(len(data), stream, path)
        stream.write(data)
        return obj


class KafkaBytes(_LengthPrefixed):
    """BYTES / COMPACT_BYTES / RECORDS (nullable or not): opaque bytes."""

    def __init__(self, compact: bool, nullable: bool) -> None:
        super().__init__(Int32sb, compact, nullable)

    def _parse(self, stream: Any, context: Any, path: str) -> bytes | None:
        start = stream.tell()
        length = self._parse_length(stream, path)
        if length is None:
            return None
        return _read_exact(stream, length, path, start)

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        if obj is None:
            self._build_length(None, stream, path)
            return obj
        if not isinstance(obj, bytes | bytearray | memoryview):
            raise ConstructError(f"expected bytes, got {type(obj).__name__}", path=path)
        self._build_length(len(obj), stream, path)
        stream.write(obj)
        return obj


class KafkaArray(_LengthPrefixed):
    """ARRAY / COMPACT_ARRAY (nullable or not) of ``element``.

    ``min_element_size`` is the fewest bytes one element can take; a count that
    the bytes left cannot hold is refused before anything is parsed.
    """

    def __init__(self, element: Construct, compact: bool, nullable: bool, min_element_size: int) -> None:
        super().__init__(Int32sb, compact, nullable)
        self.element = element
        self.min_element_size = max(1, min_element_size)

    def _parse(self, stream: Any, context: Any, path: str) -> list[Any] | None:
        start = stream.tell()
        count = self._parse_length(stream, path)
        if count is None:
            return None
        left = remaining(stream)
        if count * self.min_element_size > left:
            raise KafkaConstructError(
                f"{count} elements cannot fit in the {left} bytes left",
                path=path, offset=start, kind=TruncatedError,
            )
        element = self.element
        return [element._parsereport(stream, context, f"{path}[{index}]") for index in range(count)]

    def _build(self, obj: Sequence[Any] | None, stream: Any, context: Any, path: str) -> Any:
        if obj is None:
            self._build_length(None, stream, path)
            return obj
        if not isinstance(obj, list | tuple):
            raise ConstructError(f"expected a list, got {type(obj).__name__}", path=path)
        self._build_length(len(obj), stream, path)
        for index, item in enumerate(obj):
            self.element._build(item, stream, context, f"{path}[{index}]")
        return obj


class KafkaUuid(Construct):
    """UUID: 16 bytes, big-endian; decoded to ``uuid.UUID``."""

    def _parse(self, stream: Any, context: Any, path: str) -> uuid.UUID:
        return uuid.UUID(bytes=_read_exact(stream, 16, path, stream.tell()))

    def _build(self, obj: uuid.UUID, stream: Any, context: Any, path: str) -> uuid.UUID:
        if not isinstance(obj, uuid.UUID):
            raise ConstructError(f"expected a uuid.UUID, got {type(obj).__name__}", path=path)
        stream.write(obj.bytes)
        return obj


class NullableStruct(Subconstruct):
    """A nullable struct field: an int8 marker (-1 null, 1 present), then the struct."""

    def _parse(self, stream: Any, context: Any, path: str) -> Any:
        start = stream.tell()
        marker = _read_exact(stream, 1, path, start)[0]
        if marker >= 0x80:  # negative int8
            return None
        return self.subcon._parsereport(stream, context, path)

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        if obj is None:
            stream.write(b"\xff")
            return obj
        stream.write(b"\x01")
        return self.subcon._build(obj, stream, context, path)


class Located(Subconstruct):
    """Stamps the field's start offset on errors that do not carry one yet."""

    def _parse(self, stream: Any, context: Any, path: str) -> Any:
        start = stream.tell()
        try:
            return self.subcon._parsereport(stream, context, path)
        except ConstructError as exc:
            if getattr(exc, "offset", None) is None:
                exc.offset = start  # type: ignore[attr-defined]
            raise

    def _build(self, obj: Any, stream: Any, context: Any, path: str) -> Any:
        return self.subcon._build(obj, stream, context, path)


class TaggedFields(Construct):
    """The tagged-field section that ends every struct of a flexible version.

    Parses to ``Container(known={attr: value}, unknown={tag: bytes} or None)``;
    tags must ascend strictly and each known value must fill its size exactly.
    Builds from the same shape; the caller leaves out default-valued fields.
    """

    def __init__(self, known: dict[int, tuple[str, Construct]]) -> None:
        super().__init__()
        self.known = known

    def _parse(self, stream: Any, context: Any, path: str) -> Container:
        start = stream.tell()
        count = read_uvarint(stream, path)
        left = remaining(stream)
        if count * 2 > left:  # a tag and a size take a byte each at least
            raise KafkaConstructError(
                f"{count} tagged fields cannot fit in the {left} bytes left",
                path=path, offset=start, kind=TruncatedError,
            )
        known: dict[str, Any] = {}
        unknown: dict[int, bytes] | None = None
        previous = -1
        for _ in range(count):
            tag_offset = stream.tell()
            tag = read_uvarint(stream, path)
            size = read_uvarint(stream, path)
            if tag <= previous:
                raise KafkaConstructError(
                    f"tag {tag} after tag {previous}: tags must ascend", path=path, offset=tag_offset
                )
            previous = tag
            value_offset = stream.tell()
            data = _read_exact(stream, size, path, tag_offset)
            if tag not in self.known:
                if unknown is None:
                    unknown = {}
                unknown[tag] = data
                continue
            attr, sub = self.known[tag]
            known[attr] = self._parse_value(sub, data, context, f"{path} -> {attr}", value_offset)
        return Container(known=known, unknown=unknown)

    @staticmethod
    def _parse_value(sub: Construct, data: bytes, context: Any, path: str, base: int) -> Any:
        substream = io.BytesIO(data)
        try:
            value = sub._parsereport(substream, context, path)
        except ConstructError as exc:
            offset = getattr(exc, "offset", None)
            exc.offset = base + (offset if offset is not None else substream.tell())  # type: ignore[attr-defined]
            raise
        if substream.tell() != len(data):
            raise KafkaConstructError(
                f"tagged value is {len(data)} bytes but its content is {substream.tell()}",
                path=path, offset=base,
            )
        return value

    def _build(self, obj: Container, stream: Any, context: Any, path: str) -> Container:
        entries: dict[int, bytes] = {}
        for tag, (attr, sub) in self.known.items():
            if attr in obj.known:
                part = io.BytesIO()
                sub._build(obj.known[attr], part, context, f"{path} -> {attr}")
                entries[tag] = part.getvalue()
        for tag, data in (obj.unknown or {}).items():
            if tag in entries or tag in self.known:
                raise ConstructError(f"unknown_tagged holds tag {tag}, which is a known field", path=path)
            if not isinstance(tag, int) or not 0 <= tag < 1 << 32:
                raise ConstructError(f"bad tag {tag!r} in unknown_tagged", path=path)
            if not isinstance(data, bytes | bytearray | memoryview):
                raise ConstructError(f"unknown_tagged[{tag}] is not bytes", path=path)
            entries[tag] = bytes(data)
        stream.write(uvarint_bytes(len(entries)))
        for tag in sorted(entries):
            data = entries[tag]
            stream.write(uvarint_bytes(tag))
            stream.write(uvarint_bytes(len(data)))
            stream.write(data)
        return obj
