"""The one exception hierarchy of the wire layer.

Every decoder in ``wire`` raises only ``DecodeError`` (or a subclass) on bad
bytes, whatever the bytes are; every encoder raises ``EncodeError`` for a
message that cannot be written in the requested version. Both derive from
``WireError`` so a caller can catch "anything the codec complained about".

A ``DecodeError`` says what failed: the message (``api``) and ``version`` being
decoded, the ``field_path`` inside it (``"topic_data[0].partition_data[2].records"``),
the byte ``offset`` in the buffer that was being decoded, and a ``reason``.
Layers that know more (the request decoder knows the api and version) fill the
blanks in with ``with_context`` as the error travels up.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # only for type hints; protocol imports errors, not the other way
    from wire.protocol import RequestHeader


class WireError(Exception):
    """Root of every error the wire layer raises on purpose."""


class DecodeError(WireError):
    """Bytes that cannot be decoded; says where and why."""

    def __init__(
        self,
        reason: str,
        *,
        api: str | None = None,
        version: int | None = None,
        field_path: str | None = None,
        offset: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.api = api
        self.version = version
        self.field_path = field_path
        self.offset = offset

    def with_context(
        self, *, api: str | None = None, version: int | None = None
    ) -> DecodeError:
        """Fill in the api name and version if nobody did yet; returns self."""
        if self.api is None:
            self.api = api
        if self.version is None:
            self.version = version
        return self

    def __str__(self) -> str:
        where = []
        if self.api is not None:
            where.append(self.api if self.version is None else f"{self.api} v{self.version}")
        if self.field_path:
            where.append(f"field {self.field_path}")
        if self.offset is not None:
            where.append(f"byte {self.offset}")
        if not where:
            return self.reason
        return f"{self.reason} ({', '.join(where)})"


class TruncatedError(DecodeError):
    """The bytes end before the thing being read does (a length or count too big)."""


class InvalidValueError(DecodeError):
    """A value that the protocol does not allow: bad UTF-8, null where null is
    not allowed, an over-long varint, tagged fields out of order, ..."""


class FrameTooLargeError(DecodeError):
    """A frame's size prefix is negative or above the configured maximum."""


class UnknownApiError(DecodeError):
    """A request names an api key this codec does not know.

    ``header`` holds what could be parsed of the request header (api key,
    version, correlation id) so the caller can still log or answer.
    """

    def __init__(self, api_key: int, header: RequestHeader | None = None, **context: Any) -> None:
        super().__init__(f"unknown api key {api_key}", **context)
        self.api_key = api_key
        self.header = header


class UnsupportedVersionError(DecodeError):
    """A request's version is outside the api's valid versions.

    ``header`` is the parsed request header, so the caller can answer (for
    ApiVersions, with UNSUPPORTED_VERSION in a v0 response).
    """

    def __init__(
        self, api_key: int, api_version: int, header: RequestHeader | None = None, **context: Any
    ) -> None:
        super().__init__(f"api key {api_key} has no version {api_version}", **context)
        self.api_key = api_key
        self.api_version = api_version
        self.header = header


class EncodeError(WireError):
    """A message that cannot be encoded in the requested version: a value out of
    range or of the wrong type, null where null is not allowed, or a field the
    version cannot carry set to something other than its default."""

    def __init__(
        self,
        reason: str,
        *,
        api: str | None = None,
        version: int | None = None,
        field_path: str | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.api = api
        self.version = version
        self.field_path = field_path

    def __str__(self) -> str:
        where = []
        if self.api is not None:
            where.append(self.api if self.version is None else f"{self.api} v{self.version}")
        if self.field_path:
            where.append(f"field {self.field_path}")
        return f"{self.reason} ({', '.join(where)})" if where else self.reason
