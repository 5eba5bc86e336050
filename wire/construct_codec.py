"""The reference codec: one ``construct`` definition per (message, version).

This is the source of truth of the wire format. ``construct_for(cls, version)``
builds (once, then cached) a construct tree from the resolved schema in
``wire.model``, out of construct's own integer types and the checked Kafka
types of ``wire.constructs``. Decoding with it checks every length against the
bytes left; errors come out as ``wire.errors`` types carrying the field path
("topic_data[0].partition_data[2].records") and byte offset.

It is not on the hot path: ``wire.fastpath`` generates fast codecs that tests
prove equal to this one, and ``wire.codec`` falls back to this codec to explain
precisely why some bytes failed to decode or some message failed to encode.
"""

from __future__ import annotations

import io
from functools import cache
from typing import Any

from construct import (
    Adapter,
    Construct,
    ConstructError,
    Flag,
    Float64b,
    Int8sb,
    Int16sb,
    Int16ub,
    Int32sb,
    Int32ub,
    Int64sb,
    StreamError,
    Struct,
)

from wire.constructs import (
    KafkaArray,
    KafkaBytes,
    KafkaConstructError,
    KafkaString,
    KafkaUuid,
    Located,
    NullableStruct,
    TaggedFields,
)
from wire.errors import EncodeError, InvalidValueError, TruncatedError
from wire.model import FieldModel, StructModel, TypeRef, min_encoded_size
from wire.model import Struct as StructBase

_FIXED_CONSTRUCTS: dict[str, Construct] = {
    "bool": Flag,
    "int8": Int8sb,
    "int16": Int16sb,
    "uint16": Int16ub,
    "int32": Int32sb,
    "uint32": Int32ub,
    "int64": Int64sb,
    "float64": Float64b,
}
_TAGGED_SECTION = "_tagged"


class StructAdapter(Adapter):
    """Maps a construct ``Struct`` of one version to and from a message class.

    Decoding fills the fields the version lacks with their defaults; encoding
    refuses a field the version lacks if it is not ignorable and not default
    (Kafka's rule: such information must not be silently lost) and leaves out
    tagged fields that hold their default.
    """

    def __init__(self, subcon: Construct, struct: StructModel, version: int) -> None:
        super().__init__(subcon)
        self.struct = struct
        self.version = version
        self.present = [fm.attr for fm in struct.fields_in(version)]
        self.tagged = struct.tagged_fields_in(version)
        self.absent = struct.absent_fields_in(version)
        self.flexible = struct.flexible(version)

    def _decode(self, obj: Any, context: Any, path: str) -> StructBase:
        cls = self.struct.cls
        instance = cls.__new__(cls)
        for attr in self.present:
            setattr(instance, attr, obj[attr])
        for fm in self.absent:
            setattr(instance, fm.attr, fm.default_value())
        unknown = None
        if self.flexible:
            section = obj[_TAGGED_SECTION]
            for fm in self.tagged:
                value = section.known[fm.attr] if fm.attr in section.known else fm.default_value()
                setattr(instance, fm.attr, value)
            unknown = section.unknown
        instance.unknown_tagged = unknown
        return instance

    def _encode(self, obj: Any, context: Any, path: str) -> dict[str, Any]:
        try:
            values = {attr: getattr(obj, attr) for attr in self.present}
            for fm in self.absent:
                if not fm.ignorable and getattr(obj, fm.attr) != fm.default_value():
                    raise ConstructError(
                        f"{fm.attr} is set but version {self.version} cannot carry it",
                        path=f"{path} -> {fm.attr}",
                    )
            if self.flexible:
                known = {}
                for fm in self.tagged:
                    value = getattr(obj, fm.attr)
                    if value != fm.default_value():
                        known[fm.attr] = value
                unknown = getattr(obj, "unknown_tagged", None)
                if unknown is not None and not isinstance(unknown, dict):
                    raise ConstructError("unknown_tagged must be a dict or None", path=path)
                values[_TAGGED_SECTION] = _Section(known, unknown)
        except AttributeError as exc:
            raise ConstructError(
                f"expected a {self.struct.qualified_name}, got {type(obj).__name__} ({exc})",
                path=path,
            ) from None
        return values


class _Section:
    """What TaggedFields builds from: known values by attribute, unknown raw tags."""

    __slots__ = ("known", "unknown")

    def __init__(self, known: dict[str, Any], unknown: dict[int, bytes] | None) -> None:
        self.known = known
        self.unknown = unknown


def _type_construct(type_ref: TypeRef, version: int, flexible: bool, nullable: bool) -> Construct:
    kind = type_ref.kind
    if kind in _FIXED_CONSTRUCTS:
        return _FIXED_CONSTRUCTS[kind]
    if kind == "string":
        return KafkaString(compact=flexible, nullable=nullable)
    if kind in ("bytes", "records"):
        return KafkaBytes(compact=flexible, nullable=nullable)
    if kind == "uuid":
        return KafkaUuid()
    if kind == "array":
        assert type_ref.element is not None
        element = _type_construct(type_ref.element, version, flexible, nullable=False)
        min_size = min_encoded_size(type_ref.element, version, flexible)
        return KafkaArray(element, compact=flexible, nullable=nullable, min_element_size=min_size)
    assert type_ref.struct is not None
    struct = struct_construct(type_ref.struct, version)
    return NullableStruct(struct) if nullable else struct


def _field_construct(fm: FieldModel, version: int, in_tag: bool) -> Construct:
    # A tagged value is always written in a flexible version, and a null tagged
    # struct is simply not written, so tagged structs carry no null marker.
    nullable = fm.nullable(version) and not (in_tag and fm.type.kind == "struct")
    return _type_construct(fm.type, version, fm.flexible(version), nullable)


@cache
def struct_construct(struct: StructModel, version: int) -> Construct:
    """The construct of one struct (or message) in one version."""
    fields = [
        fm.attr / Located(_field_construct(fm, version, in_tag=False))
        for fm in struct.fields_in(version)
    ]
    if struct.flexible(version):
        known = {
            fm.spec.tag: (fm.attr, _field_construct(fm, version, in_tag=True))
            for fm in struct.tagged_fields_in(version)
        }
        fields.append(_TAGGED_SECTION / Located(TaggedFields(known)))
    return StructAdapter(Struct(*fields), struct, version)


def construct_for(cls: type[StructBase], version: int) -> Construct:
    """The construct definition of a message class in ``version``."""
    return struct_construct(cls._model, version)


# -- entry points ----------------------------------------------------------------------------


def construct_decode(
    cls: type[StructBase], data: bytes, version: int, offset: int = 0
) -> tuple[StructBase, int]:
    """Decode ``cls`` in ``version`` from ``data[offset:]``; returns it and the end offset."""
    stream = io.BytesIO(data)
    stream.seek(offset)
    try:
        message = construct_for(cls, version).parse_stream(stream)
    except KafkaConstructError as exc:
        raise exc.kind(exc.reason, field_path=_field_path(exc.path), offset=exc.offset) from None
    except StreamError as exc:
        raise TruncatedError(
            "the bytes end inside a field", field_path=_field_path(exc.path),
            offset=getattr(exc, "offset", stream.tell()),
        ) from None
    except ConstructError as exc:
        raise InvalidValueError(
            _reason(exc), field_path=_field_path(exc.path), offset=getattr(exc, "offset", None)
        ) from None
    return message, stream.tell()


def construct_encode(message: StructBase, version: int, cls: type[StructBase] | None = None) -> bytes:
    """Encode ``message`` in ``version`` (as its own class, or as ``cls``)."""
    stream = io.BytesIO()
    try:
        construct_for(cls or type(message), version).build_stream(message, stream)
    except ConstructError as exc:
        raise EncodeError(_reason(exc), field_path=_field_path(exc.path)) from None
    return stream.getvalue()


def _field_path(construct_path: str | None) -> str | None:
    """ "(parsing) -> topic_data[0] -> records" -> "topic_data[0].records"."""
    if not construct_path:
        return None
    parts = construct_path.split(" -> ")[1:]
    return ".".join(part for part in parts if part != _TAGGED_SECTION) or None


def _reason(exc: ConstructError) -> str:
    text = str(exc)
    if text.startswith("Error in path "):
        text = text.split("\n", 1)[-1]
    return text
