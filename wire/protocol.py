"""Requests and responses on the wire: the API table, headers, whole frames.

The server's view of the codec::

    header, request = decode_request(frame)           # frame: one size-prefixed payload
    ... handle ...
    transport.write(encode_response(header.correlation_id, header.api_key,
                                    header.api_version, response))

Header versions follow Kafka: a request uses header v2 when its api version is
flexible, else v1 (the ClientId string stays a classic, non-compact string
in v2); a response uses header v1 when flexible, else v0 — except ApiVersions
responses, which always use v0 so a client can read them before it knows what
the broker speaks. ControlledShutdown v0's header v0 is not supported (that
api is not client-facing).

``API_BY_KEY`` lists every api whose request spec names the ``broker``
listener. Trailing bytes after a request body are ignored, as Kafka does.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from wire.codec import decode_message_at, encode_message, encode_message_parts
from wire.errors import (
    DecodeError,
    EncodeError,
    InvalidValueError,
    TruncatedError,
    UnknownApiError,
    UnsupportedVersionError,
)
from wire.fastpath import FAST_DECODE_ERRORS, fast_decoder
from wire.messages import MESSAGES, MODELS
from wire.model import Message

API_VERSIONS_KEY = 18
CLIENT_FACING_LISTENER = "broker"


@dataclass(frozen=True, slots=True)
class ApiSpec:
    """One Kafka api: its key, name, message classes and version facts."""

    key: int
    name: str  # "Produce", "Fetch", "ApiVersions", ...
    request_cls: type[Message]
    response_cls: type[Message]
    min_version: int
    max_version: int
    first_flexible_version: int | None  # None if no version is flexible
    listeners: tuple[str, ...]
    latest_version_unstable: bool = False

    def is_flexible(self, version: int) -> bool:
        return self.first_flexible_version is not None and version >= self.first_flexible_version

    def request_header_version(self, version: int) -> int:
        return 2 if self.is_flexible(version) else 1

    def response_header_version(self, version: int) -> int:
        if self.key == API_VERSIONS_KEY:
            return 0
        return 1 if self.is_flexible(version) else 0


def _build_api_table() -> dict[int, ApiSpec]:
    table = {}
    responses = {
        cls.SPEC.api_key: cls for cls in MESSAGES.values() if cls.SPEC.kind == "response"
    }
    for cls in MESSAGES.values():
        spec = cls.SPEC
        if spec.kind != "request" or CLIENT_FACING_LISTENER not in spec.listeners:
            continue
        assert spec.api_key is not None
        response = responses[spec.api_key]
        low = max(spec.valid_versions.low, response.SPEC.valid_versions.low)
        high = min(spec.valid_versions.high or 0, response.SPEC.valid_versions.high or 0)
        flexible = spec.flexible_versions
        table[spec.api_key] = ApiSpec(
            key=spec.api_key,
            name=spec.name.removesuffix("Request"),
            request_cls=cls,
            response_cls=response,
            min_version=low,
            max_version=high,
            first_flexible_version=flexible.low if flexible is not None else None,
            listeners=spec.listeners,
            latest_version_unstable=spec.latest_version_unstable,
        )
    return dict(sorted(table.items()))


API_BY_KEY: dict[int, ApiSpec] = _build_api_table()
API_BY_NAME: dict[str, ApiSpec] = {api.name: api for api in API_BY_KEY.values()}


@dataclass(slots=True)
class RequestHeader:
    """A request header (v1 or v2), as the server needs it."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    unknown_tagged: dict[int, bytes] | None = None


# -- requests --------------------------------------------------------------------------------

_FIXED_HEADER = struct.Struct(">hhih")  # api key, api version, correlation id, client id length
_FIXED_HEADER_SIZE = _FIXED_HEADER.size
_KEY_AND_VERSION = struct.Struct(">hh")
_SIZE_PREFIX = struct.Struct(">i")
_RequestHeaderData = MESSAGES["RequestHeader"]
_ResponseHeaderData = MESSAGES["ResponseHeader"]


def _as_bytes(frame: bytes | bytearray | memoryview) -> bytes:
    return frame if type(frame) is bytes else bytes(frame)


def decode_request_header(frame: bytes | bytearray | memoryview) -> tuple[RequestHeader, int]:
    """Parse a request header; returns it and the offset where the body starts.

    The header version (v1, or v2 for flexible versions) comes from the api key
    and version; an unknown api key is read as v1. Api and version are not
    validated here (``decode_request`` does that).
    """
    buf = _as_bytes(frame)
    if len(buf) < _FIXED_HEADER_SIZE:
        raise TruncatedError(
            f"a request header needs {_FIXED_HEADER_SIZE} bytes, the frame has {len(buf)}",
            api="RequestHeader", offset=0,
        )
    api_key, api_version, correlation_id, length = _FIXED_HEADER.unpack_from(buf, 0)
    pos = _FIXED_HEADER_SIZE
    if length == -1:
        client_id = None
    elif length < 0:
        raise InvalidValueError(
            f"negative client id length {length}", api="RequestHeader", field_path="client_id",
            offset=8,
        )
    elif length > len(buf) - pos:
        raise TruncatedError(
            f"client id length {length} exceeds the {len(buf) - pos} bytes left",
            api="RequestHeader", field_path="client_id", offset=8,
        )
    else:
        try:
            client_id = buf[pos:pos + length].decode()
        except UnicodeDecodeError:
            raise InvalidValueError(
                "client id is not UTF-8", api="RequestHeader", field_path="client_id", offset=8
            ) from None
        pos += length
    header = RequestHeader(api_key, api_version, correlation_id, client_id)
    api = API_BY_KEY.get(api_key)
    if api is not None and api.is_flexible(api_version):
        if pos < len(buf) and buf[pos] == 0:  # the usual case: no tagged fields
            pos += 1
        else:
            full, pos = decode_message_at(_RequestHeaderData, buf, 2)
            header.unknown_tagged = full.unknown_tagged
    return header, pos


def decode_request(frame: bytes | bytearray | memoryview) -> tuple[RequestHeader, Message]:
    """Decode one request frame (the payload after the 4-byte size).

    Raises ``UnknownApiError`` or ``UnsupportedVersionError`` (both carry the
    parsed header, so the server can still answer ApiVersions) or another
    ``DecodeError``.
    """
    buf = _as_bytes(frame)
    try:
        api_key, api_version = _KEY_AND_VERSION.unpack_from(buf, 0)
    except struct.error:
        raise TruncatedError(f"a request of {len(buf)} bytes has no header", offset=0) from None
    api = API_BY_KEY.get(api_key)
    if api is None or not api.min_version <= api_version <= api.max_version:
        _refuse(buf, api_key, api_version, api)
    header, pos = decode_request_header(buf)
    api = API_BY_KEY[header.api_key]
    version = header.api_version
    decoders = _REQUEST_DECODERS[api.key]
    decoder = decoders[version]
    if decoder is None:
        decoder = decoders[version] = fast_decoder(MODELS[api.request_cls.SPEC.name], version)
    try:
        return header, decoder(buf, pos, len(buf))[0]
    except FAST_DECODE_ERRORS:
        pass
    # The reference codec explains the failure (see wire.codec).
    return header, decode_message_at(api.request_cls, buf, version, pos)[0]


def _refuse(buf: bytes, api_key: int, api_version: int, api: ApiSpec | None) -> None:
    """Raise UnknownApiError / UnsupportedVersionError with as much header as parses."""
    header: RequestHeader | None
    try:
        header, _ = decode_request_header(buf)
    except DecodeError:
        header = None
        if len(buf) >= 8:
            # Still answerable: the correlation id sits at a fixed place.
            correlation_id = _SIZE_PREFIX.unpack_from(buf, 4)[0]
            header = RequestHeader(api_key, api_version, correlation_id, None)
    if api is None:
        raise UnknownApiError(api_key, header)
    raise UnsupportedVersionError(api_key, api_version, header, api=api.name)


# Fast decoders per api key, indexed by version, compiled on first use.
_REQUEST_DECODERS: dict[int, list[Any]] = {
    key: [None] * (api.max_version + 1) for key, api in API_BY_KEY.items()
}


def encode_request(header: RequestHeader, message: Message) -> bytes:
    """A whole request frame, WITH its 4-byte size prefix."""
    api = _api_for(header.api_key)
    if not isinstance(message, api.request_cls):
        raise EncodeError(
            f"expected a {api.request_cls.__name__}, got {type(message).__name__}",
            api=api.name, version=header.api_version,
        )
    header_data = _RequestHeaderData(
        request_api_key=header.api_key,
        request_api_version=header.api_version,
        correlation_id=header.correlation_id,
        client_id=header.client_id,
        unknown_tagged=header.unknown_tagged,
    )
    out: list[Any] = [b"", encode_message(header_data, api.request_header_version(header.api_version))]
    encode_message_parts(message, header.api_version, out)
    return _with_size_prefix(out)


# -- responses --------------------------------------------------------------------------------

_RESPONSE_HEADER_TAIL = {0: b"", 1: b"\x00"}  # v1 adds an (empty) tagged-field section


def encode_response(correlation_id: int, api_key: int, api_version: int, message: Message,
                    *, strict: bool = False) -> bytes:
    """A whole response frame, WITH its 4-byte size prefix.

    The parts (header, body pieces, record bytes) are joined once at the end,
    so large records are copied once. Fields the version cannot carry are left out
    (an older client never sees them) unless ``strict`` asks for Kafka's refusal.
    """
    api = _api_for(api_key)
    if not isinstance(message, api.response_cls):
        raise EncodeError(
            f"expected a {api.response_cls.__name__}, got {type(message).__name__}",
            api=api.name, version=api_version,
        )
    try:
        header = _SIZE_PREFIX.pack(correlation_id)
    except struct.error:
        raise EncodeError(f"bad correlation id {correlation_id!r}", api=api.name) from None
    out: list[Any] = [b"", header, _RESPONSE_HEADER_TAIL[api.response_header_version(api_version)]]
    encode_message_parts(message, api_version, out, strict)
    return _with_size_prefix(out)


def decode_response(
    frame: bytes | bytearray | memoryview, api_key: int, api_version: int
) -> tuple[int, Message]:
    """Decode a response frame (without its size prefix): (correlation id, message)."""
    api = API_BY_KEY.get(api_key)
    if api is None:
        raise UnknownApiError(api_key)
    if not api.min_version <= api_version <= api.max_version:
        raise UnsupportedVersionError(api_key, api_version, api=api.name)
    buf = _as_bytes(frame)
    header, pos = decode_message_at(_ResponseHeaderData, buf, api.response_header_version(api_version))
    return header.correlation_id, decode_message_at(api.response_cls, buf, api_version, pos)[0]


# -- embedded, version-prefixed structures ---------------------------------------------------


def decode_versioned(cls: type[Message], data: bytes | bytearray | memoryview) -> tuple[int, Message]:
    """Decode an int16-version-prefixed structure, such as the consumer protocol's
    subscription (JoinGroup metadata) and assignment (SyncGroup).

    Like Kafka's ConsumerProtocol, a version newer than the newest known one is
    read as the newest (newer versions only append fields); returns (the
    version on the wire, the message).
    """
    buf = _as_bytes(data)
    if len(buf) < 2:
        raise TruncatedError("no version prefix", api=cls.SPEC.name, offset=0)
    version = struct.unpack_from(">h", buf, 0)[0]
    valid = cls.SPEC.valid_versions
    if version < valid.low:
        raise UnsupportedVersionError(-1, version, api=cls.SPEC.name)
    readable = version if valid.high is None else min(version, valid.high)
    return version, decode_message_at(cls, buf, readable, 2)[0]


def encode_versioned(message: Message, version: int) -> bytes:
    """The int16 version prefix followed by ``message`` in that version."""
    return struct.pack(">h", version) + encode_message(message, version)


# -- helpers ----------------------------------------------------------------------------------


def _api_for(api_key: int) -> ApiSpec:
    api = API_BY_KEY.get(api_key)
    if api is None:
        raise EncodeError(f"unknown api key {api_key}")
    return api


def _with_size_prefix(out: list[Any]) -> bytes:
    size = sum(map(len, out))
    out[0] = _SIZE_PREFIX.pack(size)
    return b"".join(out)


__all__ = [
    "API_BY_KEY",
    "API_BY_NAME",
    "ApiSpec",
    "RequestHeader",
    "decode_request",
    "decode_request_header",
    "decode_response",
    "decode_versioned",
    "encode_request",
    "encode_response",
    "encode_versioned",
]
