"""Message classes and the resolved schema model, built from the generated facts.

For every ``MessageSpec`` in ``wire.generated`` this module builds:

* a ``MessageModel`` / ``StructModel`` / ``FieldModel`` tree where each field
  knows its Python attribute name, its resolved type (``TypeRef``), in which
  versions it is present, nullable, tagged or flexible, and its default;
* one Python class per message and per nested or common struct, with
  ``__slots__``, a keyword-only constructor whose omitted arguments take the
  spec default, ``__eq__`` and ``__repr__``. Nested struct classes are
  attributes of the message class (``FetchResponse.PartitionData``), as in
  Kafka's generated Java.

Value conventions (the same for every decoder and encoder):

* integers are ``int`` (error codes may be given as ``ErrorCode`` members);
* ``bool`` is ``bool``; ``float64`` is ``float``;
* ``uuid`` is ``uuid.UUID`` (the all-zero UUID is the default);
* ``string`` is ``str`` (UTF-8 on the wire), ``bytes`` and ``records`` are
  ``bytes`` (encoders accept any bytes-like object); nullable ones may be None;
* arrays are ``list`` (None when nullable and null);
* every struct keeps the tagged fields it did not recognise in
  ``unknown_tagged`` (``{tag: raw bytes}`` or None) and writes them back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from wire.schema import NO_DEFAULT, Field, MessageSpec, Versions, snake_case, within

ZERO_UUID = uuid.UUID(int=0)

# Fixed-size primitive types: struct-module format letter and size in bytes.
FIXED_FORMATS: dict[str, tuple[str, int]] = {
    "bool": ("?", 1),
    "int8": ("b", 1),
    "int16": ("h", 2),
    "uint16": ("H", 2),
    "int32": ("i", 4),
    "uint32": ("I", 4),
    "int64": ("q", 8),
    "float64": ("d", 8),
}
VARIABLE_PRIMITIVES = frozenset({"string", "bytes", "records", "uuid"})
# Kafka refuses strings longer than this (it is the int16 length limit, kept for compact strings too).
MAX_STRING_BYTES = 0x7FFF


@dataclass(eq=False)
class TypeRef:
    """A resolved field type: a primitive, an array of something, or a struct."""

    kind: str  # a FIXED_FORMATS key, "string", "bytes", "records", "uuid", "array" or "struct"
    element: TypeRef | None = None
    struct: StructModel | None = None

    @property
    def is_fixed(self) -> bool:
        return self.kind in FIXED_FORMATS

    def describe(self) -> str:
        if self.kind == "array":
            assert self.element is not None
            return f"[]{self.element.describe()}"
        if self.kind == "struct":
            assert self.struct is not None
            return self.struct.name
        return self.kind


@dataclass(eq=False)
class FieldModel:
    """One field with everything the codecs need to know about it."""

    spec: Field
    attr: str
    type: TypeRef
    # The message's flexible versions, or the field's own override (request header ClientId).
    flexible_versions: Versions | None

    @property
    def name(self) -> str:
        return self.spec.name

    def present(self, version: int) -> bool:
        return version in self.spec.versions

    def nullable(self, version: int) -> bool:
        return within(self.spec.nullable_versions, version)

    def tagged(self, version: int) -> bool:
        return self.spec.tag is not None and within(self.spec.tagged_versions, version)

    def flexible(self, version: int) -> bool:
        return within(self.flexible_versions, version)

    @property
    def ignorable(self) -> bool:
        return self.spec.ignorable

    def default_value(self) -> Any:
        """A fresh default (new list or struct each call, so nothing is shared)."""
        spec_default = self.spec.default
        kind = self.type.kind
        if spec_default is not NO_DEFAULT:
            if kind == "float64" and spec_default is not None:
                return float(spec_default)
            return spec_default
        if kind == "array":
            return []
        if kind == "struct":
            assert self.type.struct is not None
            return self.type.struct.cls()
        return _TYPE_DEFAULTS[kind]

    def default_is_shared(self) -> bool:
        """True when the default is immutable and one object can serve every instance."""
        return self.type.kind not in ("array", "struct") or self.spec.default is None


_TYPE_DEFAULTS: dict[str, Any] = {
    "bool": False,
    "int8": 0,
    "int16": 0,
    "uint16": 0,
    "int32": 0,
    "uint32": 0,
    "int64": 0,
    "float64": 0.0,
    "string": "",
    "bytes": b"",
    "records": None,
    "uuid": ZERO_UUID,
}


@dataclass(eq=False)
class StructModel:
    """A struct (or a whole message): its class and its fields in wire order."""

    name: str
    qualified_name: str
    message: MessageModel
    fields: list[FieldModel] = field(default_factory=list)
    cls: type[Struct] = None  # type: ignore[assignment]  # set right after the fields resolve

    def flexible(self, version: int) -> bool:
        return self.message.flexible(version)

    def fields_in(self, version: int) -> list[FieldModel]:
        """Present, untagged fields of ``version`` in wire order."""
        return [f for f in self.fields if f.present(version) and not f.tagged(version)]

    def tagged_fields_in(self, version: int) -> list[FieldModel]:
        """Present tagged fields of ``version``, by ascending tag."""
        if not self.flexible(version):
            return []
        tagged = [f for f in self.fields if f.present(version) and f.tagged(version)]
        return sorted(tagged, key=lambda f: f.spec.tag)

    def absent_fields_in(self, version: int) -> list[FieldModel]:
        """Fields that ``version`` cannot carry (they decode to their default)."""
        return [
            f for f in self.fields
            if not f.present(version) or (f.spec.tag is not None and not f.tagged(version))
        ]


@dataclass(eq=False)
class MessageModel:
    """A whole message spec, resolved."""

    spec: MessageSpec
    root: StructModel = None  # type: ignore[assignment]
    structs: dict[str, StructModel] = field(default_factory=dict)
    init_namespace: dict[str, Any] = field(default_factory=dict)  # globals of the __init__s

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def cls(self) -> type[Message]:
        return self.root.cls  # type: ignore[return-value]

    def flexible(self, version: int) -> bool:
        return within(self.spec.flexible_versions, version)

    def versions(self) -> range:
        valid = self.spec.valid_versions
        assert valid.high is not None, f"{self.name}: validVersions must be closed"
        return range(valid.low, valid.high + 1)

    def walk_structs(self) -> Iterator[StructModel]:
        yield self.root
        yield from self.structs.values()


def min_encoded_size(type_ref: TypeRef, version: int, flexible: bool) -> int:
    """The fewest bytes a value of this type takes in ``version``.

    Used to refuse array counts the remaining bytes cannot hold before parsing
    any element (a null nullable struct would take 1 byte; a present one at
    least 1 too, so the marker never lowers the bound below 1).
    """
    kind = type_ref.kind
    if kind in FIXED_FORMATS:
        return FIXED_FORMATS[kind][1]
    if kind == "uuid":
        return 16
    if kind == "string":
        return 1 if flexible else 2
    if kind in ("bytes", "records", "array"):
        return 1 if flexible else 4
    assert type_ref.struct is not None
    struct = type_ref.struct
    size = 1 if struct.flexible(version) else 0  # the tagged-field count
    for fm in struct.fields_in(version):
        if fm.type.kind == "struct" and fm.nullable(version):
            size += 1  # just the null marker
        else:
            size += min_encoded_size(fm.type, version, fm.flexible(version))
    return size


# -- the classes ----------------------------------------------------------------------------


class Struct:
    """Base of every generated struct class; a message is a ``Message``."""

    __slots__ = ("unknown_tagged",)
    _model: StructModel
    _attrs: tuple[str, ...] = ()
    _values: Any  # attrgetter of every field, for __eq__

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        values = self._values
        return values(self) == values(other) and (
            (self.unknown_tagged or None) == (other.unknown_tagged or None)  # type: ignore[attr-defined]
        )

    def __repr__(self) -> str:
        parts = [f"{attr}={_short_repr(getattr(self, attr))}" for attr in self._attrs]
        if self.unknown_tagged:
            parts.append(f"unknown_tagged={self.unknown_tagged!r}")
        return f"{type(self).__qualname__}({', '.join(parts)})"

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value


class Message(Struct):
    """Base of every top-level message class (requests, responses, headers, data)."""

    __slots__ = ()
    SPEC: MessageSpec
    API_KEY: int | None = None

    def encode(self, version: int) -> bytes:
        """The message body in ``version`` (no size prefix, no header)."""
        from wire.codec import encode_message  # the codec is built on this module

        return encode_message(self, version)

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview, version: int) -> Message:
        """Decode a message body of ``version``; trailing bytes are ignored."""
        from wire.codec import decode_message

        return decode_message(cls, data, version)


def _short_repr(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview) and len(value) > 32:
        return f"<{len(value)} bytes>"
    return repr(value)


def _init_source(struct: StructModel, name: str, namespace: dict[str, Any]) -> str:
    """Source of a keyword-only ``__init__`` (called ``name``) that fills omitted
    fields with their defaults; the constants it needs go into ``namespace``."""
    params = []
    body = []
    for index, fm in enumerate(struct.fields):
        annotation = repr(_annotation(fm))
        constant = f"{name}_{index}"
        if fm.default_is_shared():
            namespace[constant] = fm.default_value()
            params.append(f"{fm.attr}: {annotation} = {constant}")
            body.append(f"    self.{fm.attr} = {fm.attr}")
        else:
            # A new list or struct per instance: a shared one would leak mutations.
            if fm.type.kind == "array":
                fresh = "[]"
            else:
                # The struct's class is bound in the namespace once it exists.
                assert fm.type.struct is not None
                fresh = f"{constant}()"
                namespace[constant] = fm.type.struct
            params.append(f"{fm.attr}: {annotation} = _FRESH")
            body.append(f"    self.{fm.attr} = {fresh} if {fm.attr} is _FRESH else {fm.attr}")
    params.append("unknown_tagged: 'dict[int, bytes] | None' = None")
    body.append("    self.unknown_tagged = unknown_tagged")
    return f"def {name}(self, *, {', '.join(params)}) -> None:\n" + "\n".join(body) + "\n"


def _compile_inits(message: MessageModel) -> dict[StructModel, Any]:
    """Every struct's ``__init__``, compiled in one go (compiling is the slow part)."""
    structs = list(message.walk_structs())
    namespace: dict[str, Any] = {"_FRESH": _FRESH}
    names = {struct: f"_init_{index}" for index, struct in enumerate(structs)}
    source = "\n".join(_init_source(struct, names[struct], namespace) for struct in structs)
    code = compile(source, f"<wire.model {message.name}>", "exec", dont_inherit=True)
    exec(code, namespace)
    # Struct-typed defaults were placeholders (their StructModel); bind the classes
    # lazily: the functions look these names up when called, after the classes exist.
    inits = {}
    for struct, name in names.items():
        init = namespace[name]
        init.__name__ = "__init__"
        init.__qualname__ = f"{struct.qualified_name}.__init__"
        inits[struct] = init
    message.init_namespace = namespace
    return inits


def _annotation(fm: FieldModel) -> str:
    def python_type(t: TypeRef) -> str:
        if t.kind == "array":
            assert t.element is not None
            return f"list[{python_type(t.element)}]"
        if t.kind == "struct":
            assert t.struct is not None
            return t.struct.qualified_name
        return {"string": "str", "bytes": "bytes", "records": "bytes", "uuid": "uuid.UUID",
                "bool": "bool", "float64": "float"}.get(t.kind, "int")

    text = python_type(fm.type)
    return f"{text} | None" if fm.spec.nullable_versions is not None else text


class _Fresh:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<default>"


_FRESH = _Fresh()


def _make_class(struct: StructModel, base: type[Struct], init: Any) -> type[Struct]:
    attrs = tuple(fm.attr for fm in struct.fields)
    namespace: dict[str, Any] = {
        "__slots__": attrs,
        "__qualname__": struct.qualified_name,
        "__module__": "wire.messages",
        "__doc__": f"Kafka {struct.qualified_name} (fields: {', '.join(attrs) or 'none'}).",
        "__init__": init,
        "_attrs": attrs,
        "_values": attrgetter(*attrs) if attrs else staticmethod(_no_values),
        "_model": struct,
    }
    return type(struct.name, (base,), namespace)


def _no_values(_: Any) -> tuple[()]:
    return ()


# -- resolving a spec -------------------------------------------------------------------------


class SchemaError(Exception):
    """The generated facts describe something the engine does not support."""


def build_message(spec: MessageSpec) -> MessageModel:
    """Resolve a spec into models and classes (nested classes become attributes)."""
    message = MessageModel(spec)
    common = {cs.name: cs for cs in spec.common_structs}
    pending: list[tuple[StructModel, tuple[Field, ...]]] = []

    def struct_for(name: str, fields: tuple[Field, ...], where: str) -> StructModel:
        if name in message.structs:
            if fields:
                raise SchemaError(f"{where}: struct {name} defined twice")
            return message.structs[name]
        if not fields:
            if name not in common:
                raise SchemaError(f"{where}: unknown struct type {name}")
            fields = common[name].fields
        if name == spec.name:
            raise SchemaError(f"{where}: struct {name} has the message's name")
        model = StructModel(name, f"{spec.name}.{name}", message)
        message.structs[name] = model
        pending.append((model, fields))
        return model

    def resolve_type(type_name: str, fm_spec: Field, where: str) -> TypeRef:
        if type_name.startswith("[]"):
            element_name = type_name[2:]
            element = resolve_type(element_name, fm_spec, where)
            if element.kind == "records" or element.kind == "array":
                raise SchemaError(f"{where}: arrays of {element_name} are not supported")
            return TypeRef("array", element=element)
        if type_name in FIXED_FORMATS or type_name in VARIABLE_PRIMITIVES:
            return TypeRef(type_name)
        return TypeRef("struct", struct=struct_for(type_name, fm_spec.fields, where))

    def resolve_fields(struct: StructModel, fields: tuple[Field, ...]) -> None:
        seen: set[str] = set()
        for fspec in fields:
            where = f"{struct.qualified_name}.{fspec.name}"
            attr = snake_case(fspec.name)
            if attr in seen or hasattr(Message, attr):
                raise SchemaError(f"{where}: attribute name {attr} is taken")
            seen.add(attr)
            flexible = (
                spec.flexible_versions
                if fspec.flexible_versions is NO_DEFAULT
                else fspec.flexible_versions
            )
            fm = FieldModel(fspec, attr, resolve_type(fspec.type, fspec, where), flexible)
            _check_field(fm, where)
            struct.fields.append(fm)

    root = StructModel(spec.name, spec.name, message)
    message.root = root
    resolve_fields(root, spec.fields)
    while pending:
        struct, fields = pending.pop(0)
        resolve_fields(struct, fields)

    inits = _compile_inits(message)
    for struct in message.walk_structs():
        struct.cls = _make_class(struct, Message if struct is root else Struct, inits[struct])
    namespace = message.init_namespace
    for name, value in namespace.items():
        if isinstance(value, StructModel):
            namespace[name] = value.cls
    root.cls.SPEC = spec  # type: ignore[attr-defined]
    root.cls.API_KEY = spec.api_key  # type: ignore[attr-defined]
    for name, struct in message.structs.items():
        setattr(root.cls, name, struct.cls)
    return message


def _check_field(fm: FieldModel, where: str) -> None:
    spec = fm.spec
    if spec.nullable_versions is not None and fm.type.is_fixed:
        raise SchemaError(f"{where}: {fm.type.kind} cannot be nullable")
    if spec.tag is not None and fm.type.kind == "struct" and spec.nullable_versions is not None:
        raise SchemaError(f"{where}: nullable tagged structs are not supported")
    if spec.tag is not None and spec.tagged_versions != spec.versions:
        # Kafka's specs keep the two equal; a field tagged in only some of its
        # versions would need a second, untagged layout that nothing uses.
        raise SchemaError(f"{where}: tagged versions must equal the field's versions")
