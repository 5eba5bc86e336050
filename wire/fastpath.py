"""Fast codecs: Python source generated per (message, version), compiled lazily.

``wire.construct_codec`` is the reference, but walking a construct tree costs
tens of microseconds per message. Here the same schema is turned into plain
Python functions, one decoder and one encoder per struct, that read with
``struct.unpack_from`` on the frame's bytes and write by appending to a list
of parts (joined once by the caller). Each (message, version) is compiled the
first time it is used and cached.

Safety on untrusted bytes is the same as the reference codec's: every length
and count is compared with the bytes left before anything is sliced or looped
over, varints stop at 5 bytes, tags must ascend. What the fast code does not
do is explain: on any failure it raises ``FastPathError`` (or lets
``struct.error``/``IndexError``/``UnicodeError`` through, see
``FAST_DECODE_ERRORS``) and ``wire.codec`` re-runs the reference codec, which
says precisely which field at which byte is wrong. Tests check that both
codecs decode the same bytes to the same messages and encode the same
messages to the same bytes.

Use ``wire.codec`` rather than this module directly.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from typing import Any

from wire.model import (
    FIXED_FORMATS,
    MAX_STRING_BYTES,
    FieldModel,
    MessageModel,
    StructModel,
    TypeRef,
    min_encoded_size,
)
from wire.model import Struct as StructBase

Decoder = Callable[[bytes, int, int], tuple[StructBase, int]]
Encoder = Callable[[StructBase, list[Any]], None]


class FastPathError(Exception):
    """The fast codec refused its input; the reference codec will say why."""


# Exceptions that mean "these bytes / this message are bad" when raised by generated code.
FAST_DECODE_ERRORS = (FastPathError, struct.error, IndexError, UnicodeDecodeError, ValueError)
FAST_ENCODE_ERRORS = (
    FastPathError, struct.error, AttributeError, TypeError, ValueError, OverflowError,
    UnicodeEncodeError,
)

# Classic length prefixes: strings have an int16, bytes and arrays an int32.
_FMT_KIND = {"h": "int16", "i": "int32"}

# -- helpers the generated code calls --------------------------------------------------------

_SMALL_UVARINTS = tuple(bytes([value]) for value in range(128))


def _uvarint_tail(buf: bytes, pos: int, first: int) -> tuple[int, int]:
    """Finish an unsigned varint whose first byte (``first``, >= 0x80) was read."""
    value = first & 0x7F
    shift = 7
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 28:
            raise FastPathError("varint too long")
    if value >> 32:
        raise FastPathError("varint above 32 bits")
    return value, pos


def _uvarint_bytes(value: int) -> bytes:
    if 0 <= value < 128:
        return _SMALL_UVARINTS[value]
    if value >> 32 or value < 0:
        raise FastPathError("varint out of range")
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _write_tags(tags: list[tuple[int, bytes]], unknown: Any, known_tags: frozenset[int],
                append: Callable[[bytes], None]) -> None:
    """Write a tagged-field section: known non-default fields plus unknown ones, by tag."""
    if unknown:
        for tag, data in unknown.items():
            if tag in known_tags or not isinstance(tag, int) or not isinstance(
                data, bytes | bytearray | memoryview
            ):
                raise FastPathError("bad unknown_tagged entry")
            tags.append((tag, bytes(data)))
        tags.sort()
    append(_uvarint_bytes(len(tags)))
    for tag, data in tags:
        append(_uvarint_bytes(tag))
        append(_uvarint_bytes(len(data)))
        append(data)


_RUNTIME: dict[str, Any] = {
    "_new": object.__new__,
    "_uvarint_tail": _uvarint_tail,
    "_uv": _uvarint_bytes,
    "_UV": _SMALL_UVARINTS,
    "_write_tags": _write_tags,
    "_Reject": FastPathError,
    "_UUID": uuid.UUID,
    "_memoryview": memoryview,
    "_unpack_from": struct.unpack_from,
    "_pack": struct.pack,
}


# -- source generation ----------------------------------------------------------------------


class _Source:
    """Lines of generated Python plus the constants they refer to."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.namespace: dict[str, Any] = dict(_RUNTIME)
        self._constants: dict[int, str] = {}

    def emit(self, indent: int, line: str) -> None:
        self.lines.append("    " * indent + line)

    def constant(self, value: Any, hint: str) -> str:
        """A name in the generated module's namespace bound to ``value``."""
        key = id(value)
        if key in self._constants:
            return self._constants[key]
        name = f"_{hint}_{len(self.namespace)}"
        self.namespace[name] = value
        self._constants[key] = name
        return name

    def unpacker(self, fmt: str) -> str:
        return self._struct_function("unpack", fmt, lambda s: s.unpack_from)

    def packer(self, fmt: str) -> str:
        return self._struct_function("pack", fmt, lambda s: s.pack)

    def _struct_function(self, kind: str, fmt: str, pick: Callable[[struct.Struct], Any]) -> str:
        # "?" (bool) is not allowed in a name; spell formats with letters only.
        name = f"_{kind}_{fmt.replace('?', 'Z')}"
        if name not in self.namespace:
            self.namespace[name] = pick(struct.Struct(">" + fmt))
        return name


def _func_name(prefix: str, struct_model: StructModel) -> str:
    return f"{prefix}_{struct_model.name}"


def _reachable_structs(root: StructModel, version: int) -> list[StructModel]:
    """Every struct a message of ``version`` can contain, root first."""
    found: list[StructModel] = []

    def visit(sm: StructModel) -> None:
        if sm in found:
            return
        found.append(sm)
        fields = sm.fields_in(version) + sm.tagged_fields_in(version)
        for fm in fields:
            element = fm.type.element if fm.type.kind == "array" else fm.type
            if element is not None and element.kind == "struct":
                assert element.struct is not None
                visit(element.struct)

    visit(root)
    return found


# ---- decoders ----


class _DecoderWriter:
    def __init__(self, src: _Source, version: int) -> None:
        self.src = src
        self.version = version

    def struct(self, sm: StructModel) -> None:
        src, version = self.src, self.version
        cls_name = src.constant(sm.cls, "cls")
        src.emit(0, f"def {_func_name('decode', sm)}(buf, pos, end):")
        src.emit(1, f"o = _new({cls_name})")
        fields = sm.fields_in(version)
        index = 0
        while index < len(fields):
            group = _fixed_run(fields, index)
            if group:
                self._fixed_group(group)
                index += len(group)
                continue
            fm = fields[index]
            self.value(1, fm.type, f"o.{fm.attr}", "end", fm.flexible(version),
                       fm.nullable(version), in_tag=False)
            index += 1
        for fm in sm.absent_fields_in(version) + sm.tagged_fields_in(version):
            self._default(1, fm)
        if sm.flexible(version):
            self._varint(1, "n")
            src.emit(1, "if n:")
            src.emit(2, f"o.unknown_tagged, pos = {_func_name('decode_tags', sm)}(o, buf, pos, end, n)")
            src.emit(1, "else:")
            src.emit(2, "o.unknown_tagged = None")
        else:
            src.emit(1, "o.unknown_tagged = None")
        src.emit(1, "return o, pos")
        src.emit(0, "")
        if sm.flexible(version):
            self._tag_section(sm)

    def _fixed_group(self, group: list[FieldModel]) -> None:
        fmt = "".join(FIXED_FORMATS[fm.type.kind][0] for fm in group)
        size = sum(FIXED_FORMATS[fm.type.kind][1] for fm in group)
        targets = "".join(f"o.{fm.attr}, " for fm in group)
        self.src.emit(1, f"{targets}= {self.src.unpacker(fmt)}(buf, pos)")
        self.src.emit(1, f"pos += {size}")

    def _default(self, indent: int, fm: FieldModel) -> None:
        if fm.default_is_shared():
            value = self.src.constant(fm.default_value(), "default")
            self.src.emit(indent, f"o.{fm.attr} = {value}")
        elif fm.type.kind == "array":
            self.src.emit(indent, f"o.{fm.attr} = []")
        else:
            assert fm.type.struct is not None
            self.src.emit(indent, f"o.{fm.attr} = {self.src.constant(fm.type.struct.cls, 'cls')}()")

    def _varint(self, indent: int, var: str) -> None:
        emit = self.src.emit
        emit(indent, f"{var} = buf[pos]")
        emit(indent, "pos += 1")
        emit(indent, f"if {var} > 127:")
        emit(indent + 1, f"{var}, pos = _uvarint_tail(buf, pos, {var})")

    def _length(self, indent: int, var: str, flexible: bool, classic_fmt: str) -> None:
        """Read a length or count into ``var``: -1 means null."""
        if flexible:
            self._varint(indent, var)
            self.src.emit(indent, f"{var} -= 1")
        else:
            self.src.emit(indent, f"{var}, = {self.src.unpacker(classic_fmt)}(buf, pos)")
            self.src.emit(indent, f"pos += {FIXED_FORMATS[_FMT_KIND[classic_fmt]][1]}")

    def _null_or_reject(self, indent: int, var: str, target: str, nullable: bool) -> None:
        emit = self.src.emit
        emit(indent, f"if {var} < 0:")
        if nullable:
            emit(indent + 1, f"if {var} != -1:")
            emit(indent + 2, "raise _Reject('negative length')")
            emit(indent + 1, f"{target} = None")
        else:
            emit(indent + 1, "raise _Reject('null or negative length')")

    def value(self, indent: int, type_ref: TypeRef, target: str, limit: str, flexible: bool,
              nullable: bool, in_tag: bool) -> None:
        """Code that reads one value of ``type_ref`` at ``pos`` into ``target``."""
        emit = self.src.emit
        kind = type_ref.kind
        if kind in FIXED_FORMATS:
            fmt, size = FIXED_FORMATS[kind]
            emit(indent, f"{target}, = {self.src.unpacker(fmt)}(buf, pos)")
            emit(indent, f"pos += {size}")
        elif kind == "uuid":
            emit(indent, f"if pos + 16 > {limit}:")
            emit(indent + 1, "raise _Reject('truncated uuid')")
            emit(indent, f"{target} = _UUID(bytes=buf[pos:pos + 16])")
            emit(indent, "pos += 16")
        elif kind in ("string", "bytes", "records"):
            self._length(indent, "n", flexible, "h" if kind == "string" else "i")
            self._null_or_reject(indent, "n", target, nullable)
            emit(indent, "else:")
            bound = f"n > {limit} - pos"
            if kind == "string" and flexible:
                bound += f" or n > {MAX_STRING_BYTES}"
            emit(indent + 1, f"if {bound}:")
            emit(indent + 2, "raise _Reject('length beyond the bytes left')")
            slice_ = "buf[pos:pos + n]"
            if kind == "records":
                # A view, not a copy: a produce request's batch is most of its frame (up to
                # megabytes), and the broker stores it as it came.
                slice_ = "_memoryview(buf)[pos:pos + n]"
            emit(indent + 1, f"{target} = {slice_}.decode()" if kind == "string" else f"{target} = {slice_}")
            emit(indent + 1, "pos += n")
        elif kind == "array":
            self._array(indent, type_ref, target, limit, flexible, nullable)
        else:
            assert type_ref.struct is not None
            call = f"{_func_name('decode', type_ref.struct)}(buf, pos, {limit})"
            if nullable and not in_tag:
                emit(indent, "pos += 1")
                emit(indent, "if buf[pos - 1] > 127:")
                emit(indent + 1, f"{target} = None")
                emit(indent, "else:")
                emit(indent + 1, f"{target}, pos = {call}")
            else:
                emit(indent, f"{target}, pos = {call}")

    def _array(self, indent: int, type_ref: TypeRef, target: str, limit: str, flexible: bool,
               nullable: bool) -> None:
        emit = self.src.emit
        element = type_ref.element
        assert element is not None
        self._length(indent, "count", flexible, "i")
        self._null_or_reject(indent, "count", target, nullable)
        emit(indent, "else:")
        min_size = max(1, min_encoded_size(element, self.version, flexible))
        emit(indent + 1, f"if count * {min_size} > {limit} - pos:")
        emit(indent + 2, "raise _Reject('count beyond the bytes left')")
        if element.kind in FIXED_FORMATS:
            fmt, size = FIXED_FORMATS[element.kind]
            emit(indent + 1, f"{target} = list(_unpack_from('>%d{fmt}' % count, buf, pos))")
            emit(indent + 1, f"pos += count * {size}")
            return
        emit(indent + 1, "items = []")
        emit(indent + 1, "for _ in range(count):")
        if element.kind == "struct":
            assert element.struct is not None
            emit(indent + 2, f"item, pos = {_func_name('decode', element.struct)}(buf, pos, {limit})")
        else:
            self.value(indent + 2, element, "item", limit, flexible, nullable=False, in_tag=False)
        emit(indent + 2, "items.append(item)")
        emit(indent + 1, f"{target} = items")

    def _tag_section(self, sm: StructModel) -> None:
        src, version = self.src, self.version
        emit = src.emit
        emit(0, f"def {_func_name('decode_tags', sm)}(o, buf, pos, end, tag_count):")
        emit(1, "if tag_count * 2 > end - pos:")
        emit(2, "raise _Reject('tag count beyond the bytes left')")
        emit(1, "unknown = None")
        emit(1, "last = -1")
        emit(1, "for _ in range(tag_count):")
        self._varint(2, "tag")
        self._varint(2, "size")
        emit(2, "if tag <= last or size > end - pos:")
        emit(3, "raise _Reject('tags out of order or size beyond the bytes left')")
        emit(2, "last = tag")
        emit(2, "stop = pos + size")
        keyword = "if"
        for fm in sm.tagged_fields_in(version):
            emit(2, f"{keyword} tag == {fm.spec.tag}:")
            self.value(3, fm.type, f"o.{fm.attr}", "stop", True, fm.nullable(version), in_tag=True)
            emit(3, "if pos != stop:")
            emit(4, "raise _Reject('tagged value does not fill its size')")
            keyword = "elif"
        if keyword == "elif":
            emit(2, "else:")
            indent = 3
        else:
            indent = 2
        emit(indent, "if unknown is None:")
        emit(indent + 1, "unknown = {}")
        emit(indent, "unknown[tag] = buf[pos:stop]")
        emit(indent, "pos = stop")
        emit(1, "return unknown, pos")
        emit(0, "")



def _fixed_run(fields: list[FieldModel], start: int) -> list[FieldModel]:
    run = []
    for fm in fields[start:]:
        if not fm.type.is_fixed:
            break
        run.append(fm)
    return run


# ---- encoders ----


class _EncoderWriter:
    def __init__(self, src: _Source, version: int, strict: bool) -> None:
        self.src = src
        self.version = version
        self.strict = strict

    def struct(self, sm: StructModel) -> None:
        src, version = self.src, self.version
        emit = src.emit
        emit(0, f"def {_func_name('encode', sm)}(o, out):")
        emit(1, "ap = out.append")
        fields = sm.fields_in(version)
        index = 0
        while index < len(fields):
            group = _fixed_run(fields, index)
            if group:
                fmt = "".join(FIXED_FORMATS[fm.type.kind][0] for fm in group)
                values = ", ".join(f"o.{fm.attr}" for fm in group)
                emit(1, f"ap({src.packer(fmt)}({values}))")
                index += len(group)
                continue
            fm = fields[index]
            emit(1, f"v = o.{fm.attr}")
            self.value(1, fm.type, "v", "ap", "out", fm.flexible(version), fm.nullable(version),
                       in_tag=False)
            index += 1
        for fm in sm.absent_fields_in(version) if self.strict else ():
            if not fm.ignorable:
                # Kafka refuses to drop a non-ignorable field that holds information.
                default = src.constant(fm.default_value(), "default")
                emit(1, f"if o.{fm.attr} != {default}:")
                emit(2, f"raise _Reject('{fm.attr} cannot be carried by this version')")
        if sm.flexible(version):
            self._tag_section(sm)
        emit(1, "return None")
        emit(0, "")

    def value(self, indent: int, type_ref: TypeRef, var: str, append: str, out: str,
              flexible: bool, nullable: bool, in_tag: bool) -> None:
        """Code that appends the encoding of the value held in ``var``."""
        src = self.src
        emit = src.emit
        kind = type_ref.kind
        if kind in FIXED_FORMATS:
            emit(indent, f"{append}({src.packer(FIXED_FORMATS[kind][0])}({var}))")
            return
        if kind == "uuid":
            emit(indent, f"if not isinstance({var}, _UUID):")
            emit(indent + 1, "raise _Reject('not a uuid.UUID')")
            emit(indent, f"{append}({var}.bytes)")
            return
        if kind == "struct":
            assert type_ref.struct is not None
            call = f"{_func_name('encode', type_ref.struct)}({var}, {out})"
            if nullable and not in_tag:
                emit(indent, f"if {var} is None:")
                emit(indent + 1, f"{append}(b'\\xff')")
                emit(indent, "else:")
                emit(indent + 1, f"{append}(b'\\x01')")
                emit(indent + 1, call)
            else:
                emit(indent, call)
            return
        null = "b'\\x00'" if flexible else ("b'\\xff\\xff'" if kind == "string" else "b'\\xff\\xff\\xff\\xff'")
        emit(indent, f"if {var} is None:")
        emit(indent + 1, f"{append}({null})" if nullable else "raise _Reject('null where null is not allowed')")
        emit(indent, "else:")
        body = indent + 1
        if kind == "string":
            emit(body, f"{var} = {var}.encode()")
            emit(body, f"if len({var}) > {MAX_STRING_BYTES}:")
            emit(body + 1, "raise _Reject('string too long')")
        elif kind in ("bytes", "records"):
            emit(body, f"if not isinstance({var}, (bytes, bytearray, memoryview)):")
            emit(body + 1, "raise _Reject('not bytes')")
        self._length(body, f"len({var})", append, flexible, "h" if kind == "string" else "i")
        if kind == "array":
            element = type_ref.element
            assert element is not None
            if element.kind in FIXED_FORMATS:
                fmt = FIXED_FORMATS[element.kind][0]
                emit(body, f"{append}(_pack('>%d{fmt}' % len({var}), *{var}))")
            else:
                item = "item" if var != "item" else "item2"
                emit(body, f"for {item} in {var}:")
                self.value(body + 1, element, item, append, out, flexible, nullable=False, in_tag=False)
        else:
            emit(body, f"{append}({var})")

    def _differs_from_default(self, fm: FieldModel, var: str) -> str:
        """An expression true when ``var`` is not ``fm``'s default value.

        For a struct whose fields all have immutable defaults the comparison is
        written out field by field (much cheaper than calling ``__eq__``).
        """
        struct_model = fm.type.struct
        if fm.type.kind == "struct" and struct_model is not None and fm.spec.default is not None and all(
            child.default_is_shared() for child in struct_model.fields
        ):
            cls_name = self.src.constant(struct_model.cls, "cls")
            terms = [f"{var}.__class__ is not {cls_name}"]
            for child in struct_model.fields:
                default = self.src.constant(child.default_value(), "default")
                terms.append(f"{var}.{child.attr} != {default}")
            terms.append(f"{var}.unknown_tagged")
            return " or ".join(terms)
        return f"{var} != {self.src.constant(fm.default_value(), 'default')}"

    def _length(self, indent: int, length: str, append: str, flexible: bool, classic_fmt: str) -> None:
        if flexible:
            emit = self.src.emit
            emit(indent, f"n = {length} + 1")
            emit(indent, f"{append}(_UV[n] if n < 128 else _uv(n))")
        else:
            self.src.emit(indent, f"{append}({self.src.packer(classic_fmt)}({length}))")

    def _tag_section(self, sm: StructModel) -> None:
        src, version = self.src, self.version
        emit = src.emit
        tagged = sm.tagged_fields_in(version)
        known_tags = src.constant(frozenset(fm.spec.tag for fm in tagged), "tags")
        if not tagged:
            emit(1, "if o.unknown_tagged:")
            emit(2, f"_write_tags([], o.unknown_tagged, {known_tags}, ap)")
            emit(1, "else:")
            emit(2, "ap(b'\\x00')")
            return
        emit(1, "tags = []")
        for fm in tagged:
            emit(1, f"v = o.{fm.attr}")
            # Only non-default tagged values are written (old librdkafka chokes on the others).
            emit(1, f"if {self._differs_from_default(fm, 'v')}:")
            emit(2, "part = []")
            self.value(2, fm.type, "v", "part.append", "part", True, fm.nullable(version), in_tag=True)
            emit(2, f"tags.append(({fm.spec.tag}, b''.join(part)))")
        emit(1, "if tags or o.unknown_tagged:")
        emit(2, f"_write_tags(tags, o.unknown_tagged, {known_tags}, ap)")
        emit(1, "else:")
        emit(2, "ap(b'\\x00')")


# -- compiling and caching ---------------------------------------------------------------------


def decoder_source(message: MessageModel, version: int) -> tuple[str, dict[str, Any]]:
    """The generated decoder module of one (message, version), for reading and debugging."""
    src = _Source()
    writer = _DecoderWriter(src, version)
    for sm in _reachable_structs(message.root, version):
        writer.struct(sm)
    return "\n".join(src.lines) + "\n", src.namespace


def encoder_source(message: MessageModel, version: int,
                   strict: bool = True) -> tuple[str, dict[str, Any]]:
    """The generated encoder module of one (message, version). A strict encoder refuses a
    non-ignorable field the version cannot carry; a lenient one leaves it out."""
    src = _Source()
    writer = _EncoderWriter(src, version, strict)
    for sm in _reachable_structs(message.root, version):
        writer.struct(sm)
    return "\n".join(src.lines) + "\n", src.namespace


def _compile(source: str, namespace: dict[str, Any], label: str) -> dict[str, Any]:
    code = compile(source, f"<wire.fastpath {label}>", "exec", dont_inherit=True)
    exec(code, namespace)
    return namespace


_decoders: dict[tuple[MessageModel, int], Decoder] = {}
_encoders: dict[tuple[MessageModel, int, bool], Encoder] = {}


def fast_decoder(message: MessageModel, version: int) -> Decoder:
    """``decode(buf: bytes, pos, end) -> (message, end_pos)`` for one version (cached)."""
    key = (message, version)
    decoder = _decoders.get(key)
    if decoder is None:
        source, namespace = decoder_source(message, version)
        namespace = _compile(source, namespace, f"decode {message.name} v{version}")
        decoder = _decoders[key] = namespace[_func_name("decode", message.root)]
    return decoder


def fast_encoder(message: MessageModel, version: int, strict: bool = True) -> Encoder:
    """``encode(message, out: list)`` appending the parts of one version (cached)."""
    key = (message, version, strict)
    encoder = _encoders.get(key)
    if encoder is None:
        source, namespace = encoder_source(message, version, strict)
        namespace = _compile(source, namespace, f"encode {message.name} v{version}")
        encoder = _encoders[key] = namespace[_func_name("encode", message.root)]
    return encoder
