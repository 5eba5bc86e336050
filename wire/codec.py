"""Encode and decode message bodies: the fast path, checked by the reference codec.

``decode_message(cls, data, version)`` and ``encode_message(message, version)``
run the generated fast codecs of ``wire.fastpath``. When those refuse the
input, the reference codec of ``wire.construct_codec`` runs on the same input
and raises the precise ``DecodeError`` / ``EncodeError`` (field path, byte
offset, reason). Only those two error types leave this module.

Trailing bytes after a message body are ignored, as Kafka ignores them in
requests (newer clients may append data an older reader does not know).
``decode_message_at`` returns where the body ended for callers that care.
"""

from __future__ import annotations

from typing import Any

from wire.construct_codec import construct_decode, construct_encode
from wire.errors import DecodeError, EncodeError, UnsupportedVersionError
from wire.fastpath import FAST_DECODE_ERRORS, FAST_ENCODE_ERRORS, fast_decoder, fast_encoder
from wire.model import Struct


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    return data if type(data) is bytes else bytes(data)


def decode_message_at(
    cls: type[Struct], data: bytes | bytearray | memoryview, version: int, offset: int = 0
) -> tuple[Any, int]:
    """Decode a ``cls`` body of ``version`` starting at ``offset``; returns it and its end."""
    message_model = cls._model.message
    if message_model.root is not cls._model:
        raise TypeError(f"{cls.__qualname__} is not a message class")
    spec = message_model.spec
    if version not in spec.valid_versions:
        raise UnsupportedVersionError(
            spec.api_key if spec.api_key is not None else -1, version, api=spec.name
        )
    buf = _as_bytes(data)
    try:
        return fast_decoder(message_model, version)(buf, offset, len(buf))
    except FAST_DECODE_ERRORS:
        pass
    try:
        # The reference codec explains the failure. Should it accept the bytes
        # (the fast path would then be wrong, which tests guard against), its
        # answer is the right one to return.
        return construct_decode(cls, buf, version, offset)
    except DecodeError as exc:
        raise exc.with_context(api=spec.name, version=version) from None


def decode_message(cls: type[Struct], data: bytes | bytearray | memoryview, version: int) -> Any:
    """Decode a whole ``cls`` body of ``version`` (trailing bytes are ignored)."""
    return decode_message_at(cls, data, version)[0]


def encode_message_parts(message: Struct, version: int, out: list[Any],
                         strict: bool = True) -> None:
    """Append the body's encoding to ``out`` as parts (records stay uncopied).

    ``strict`` (Kafka's rule) refuses a non-ignorable field set to a non-default value in a
    version that cannot carry it; otherwise such fields are left out, as a broker must when
    it answers a client of an older version.
    """
    message_model = type(message)._model.message
    spec = message_model.spec
    if version not in spec.valid_versions:
        raise EncodeError(f"{spec.name} has no version {version}", api=spec.name, version=version)
    mark = len(out)
    try:
        fast_encoder(message_model, version, strict)(message, out)
        return
    except FAST_ENCODE_ERRORS:
        del out[mark:]
    try:
        out.append(construct_encode(message, version))
    except EncodeError as exc:
        exc.api, exc.version = spec.name, version
        raise


def encode_message(message: Struct, version: int) -> bytes:
    """The body of ``message`` in ``version``."""
    out: list[Any] = []
    encode_message_parts(message, version, out)
    return b"".join(out)
