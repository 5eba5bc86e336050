"""Hypothesis strategies for any message in any version, derived from the schema.

``message_strategy(cls, version)`` draws messages that ``version`` can carry:
fields present in that version get random values of their type (null where
the version allows it), fields it lacks keep their defaults, tagged fields
are sometimes set, and flexible structs sometimes carry unknown tagged fields.
"""

from __future__ import annotations

import uuid
from functools import cache
from typing import Any

from hypothesis import strategies as st

from wire.model import FieldModel, StructModel, TypeRef

_INT_RANGES = {
    "int8": (-(1 << 7), (1 << 7) - 1),
    "int16": (-(1 << 15), (1 << 15) - 1),
    "uint16": (0, (1 << 16) - 1),
    "int32": (-(1 << 31), (1 << 31) - 1),
    "uint32": (0, (1 << 32) - 1),
    "int64": (-(1 << 63), (1 << 63) - 1),
}
MAX_LIST = 3


def _value(type_ref: TypeRef, version: int, nullable: bool) -> st.SearchStrategy[Any]:
    kind = type_ref.kind
    if kind in _INT_RANGES:
        low, high = _INT_RANGES[kind]
        strategy: st.SearchStrategy[Any] = st.integers(low, high)
    elif kind == "bool":
        strategy = st.booleans()
    elif kind == "float64":
        strategy = st.floats(allow_nan=False)
    elif kind == "uuid":
        strategy = st.integers(0, (1 << 128) - 1).map(lambda value: uuid.UUID(int=value))
    elif kind == "string":
        strategy = st.text(max_size=6)
    elif kind in ("bytes", "records"):
        strategy = st.binary(max_size=12)
    elif kind == "array":
        assert type_ref.element is not None
        strategy = st.lists(_value(type_ref.element, version, False), max_size=MAX_LIST)
    else:
        assert type_ref.struct is not None
        strategy = struct_strategy(type_ref.struct, version)
    return st.none() | strategy if nullable else strategy


def _field(fm: FieldModel, version: int) -> st.SearchStrategy[Any]:
    if fm.tagged(version):
        # Tagged structs carry no null marker; a null tagged value is just absent.
        nullable = fm.nullable(version) and fm.type.kind != "struct"
        return st.one_of(st.builds(fm.default_value), _value(fm.type, version, nullable))
    if fm.present(version):
        return _value(fm.type, version, fm.nullable(version))
    return st.builds(fm.default_value)


@cache
def struct_strategy(struct: StructModel, version: int) -> st.SearchStrategy[Any]:
    """Instances of ``struct``'s class that ``version`` can carry."""
    fields = {}
    for fm in struct.fields:
        if fm.present(version) and fm.spec.tag is not None and not fm.tagged(version):
            fields[fm.attr] = st.builds(fm.default_value)  # tag not in use in this version
        else:
            fields[fm.attr] = _field(fm, version)
    if struct.flexible(version):
        known_tags = {fm.spec.tag for fm in struct.fields if fm.spec.tag is not None}
        unknown_tags = st.integers(0, 300).filter(lambda tag: tag not in known_tags)
        fields["unknown_tagged"] = st.none() | st.dictionaries(
            unknown_tags, st.binary(max_size=5), min_size=1, max_size=2
        )
    return st.builds(struct.cls, **fields)


def message_strategy(cls: type, version: int) -> st.SearchStrategy[Any]:
    return struct_strategy(cls._model, version)
