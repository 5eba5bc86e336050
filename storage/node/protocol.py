"""The storage-node wire protocol: frames and messages, without sockets (sans-io).

Every message travels in one frame (integers big-endian):

    length      u32   number of bytes after this field
    version     u8    protocol version: 0 on the handshake, the negotiated version after
    op          u8    which operation (`Op`)
    request_id  u32   chosen by the client, echoed in the response
    body        ...   the request or response body of that op

A connection starts with a handshake: the client offers a version range, the
server answers with the version it picked (or UNSUPPORTED_VERSION and closes).
After that, requests are pipelined and responses may come back in any order;
the request id pairs them up.

Response bodies start with a status byte (`Status`). On success the rest is
the op's result; on failure it is a UTF-8 message for the log.

The message layouts are written once, as `construct` structs (the readable
specification). `MessageLayout` turns each into a precompiled `struct.Struct`
for the hot path — construct's own parser costs 15-60 µs a message, `struct`
about 1 µs — and the tests check both agree on every message.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple

import construct as c

from storage.node.buffers import Buffer, Payload, join_payload, payload_length
from storage.node.errors import (
    CorruptEntryError,
    InvalidRequestError,
    LedgerFencedError,
    NoSuchEntryError,
    NoSuchLedgerError,
    ProtocolError,
    StorageNodeError,
)

HANDSHAKE_VERSION = 0
"""Version byte carried by the handshake frames, before a version is agreed."""
SUPPORTED_VERSIONS = (1, 2)
"""Protocol versions this code speaks, oldest first. Version 2 adds LIST_ENTRIES."""
HANDSHAKE_MAGIC = 0x4B4F504E  # "KOPN": tells a kop storage node apart from anything else on the port
MAX_FRAME_BYTES = 64 * 1024 * 1024
"""Largest frame accepted; a bigger length prefix is treated as garbage, not allocated."""

FLAG_RECOVERY = 0x01
"""Add-entry flag: a recovery add, allowed on a fenced ledger."""
FLAG_FENCE = 0x01
"""Read flag: fence the ledger on this node before answering."""


class Op(IntEnum):
    HANDSHAKE = 0
    ADD_ENTRY = 1
    READ_ENTRY = 2
    READ_LAC = 3
    DELETE_LEDGER = 4
    LIST_ENTRIES = 5  # since version 2


OP_MIN_VERSION = {Op.LIST_ENTRIES: 2}
"""Ops newer than version 1, and the protocol version that introduced each."""


class Status(IntEnum):
    OK = 0
    LEDGER_FENCED = 1
    NO_SUCH_LEDGER = 2
    NO_SUCH_ENTRY = 3
    CORRUPT_ENTRY = 4
    UNSUPPORTED_VERSION = 5
    INVALID_REQUEST = 6
    NODE_ERROR = 7  # the node failed (journal error, bug); the message says why


_ERROR_STATUSES: list[tuple[type[StorageNodeError], Status]] = [
    (LedgerFencedError, Status.LEDGER_FENCED),
    (NoSuchLedgerError, Status.NO_SUCH_LEDGER),
    (NoSuchEntryError, Status.NO_SUCH_ENTRY),
    (CorruptEntryError, Status.CORRUPT_ENTRY),
    (InvalidRequestError, Status.INVALID_REQUEST),
]


def status_of_error(error: BaseException) -> Status:
    """The status a server answers with for `error`."""
    for error_class, status in _ERROR_STATUSES:
        if isinstance(error, error_class):
            return status
    return Status.NODE_ERROR


def error_of_status(status: Status, message: str) -> StorageNodeError:
    """The exception a client raises for an error status."""
    for error_class, known in _ERROR_STATUSES:
        if known == status:
            return error_class(message)
    return StorageNodeError(message)


# --- layouts (the specification) ------------------------------------------------------------

FRAME_HEADER = c.Struct(
    "length" / c.Int32ub,
    "version" / c.Int8ub,
    "op" / c.Int8ub,
    "request_id" / c.Int32ub,
)

HANDSHAKE_REQUEST = c.Struct(
    "magic" / c.Int32ub,
    "min_version" / c.Int8ub,
    "max_version" / c.Int8ub,
)
ADD_ENTRY_REQUEST = c.Struct(
    "ledger_id" / c.Int64ub,
    "entry_id" / c.Int64sb,
    "last_add_confirmed" / c.Int64sb,
    "flags" / c.Int8ub,
    "payload" / c.GreedyBytes,
)
READ_ENTRY_REQUEST = c.Struct(
    "ledger_id" / c.Int64ub,
    "entry_id" / c.Int64sb,
    "flags" / c.Int8ub,
)
READ_LAC_REQUEST = c.Struct(
    "ledger_id" / c.Int64ub,
    "flags" / c.Int8ub,
)
DELETE_LEDGER_REQUEST = c.Struct(
    "ledger_id" / c.Int64ub,
)
LIST_ENTRIES_REQUEST = c.Struct(
    "ledger_id" / c.Int64ub,
    "first_entry_id" / c.Int64sb,
    "count" / c.Int32ub,
)

HANDSHAKE_RESPONSE = c.Struct("status" / c.Int8ub, "version" / c.Int8ub)
EMPTY_RESPONSE = c.Struct("status" / c.Int8ub)  # add entry, delete ledger
READ_ENTRY_RESPONSE = c.Struct("status" / c.Int8ub, "payload" / c.GreedyBytes)
# Bit k (least significant bit first within each byte) says whether the node holds entry
# first_entry_id + k; see storage.node.api.decode_entry_bitmap.
LIST_ENTRIES_RESPONSE = c.Struct("status" / c.Int8ub, "bitmap" / c.GreedyBytes)
READ_LAC_RESPONSE = c.Struct(
    "status" / c.Int8ub,
    "last_add_confirmed" / c.Int64sb,
    "last_entry_id" / c.Int64sb,
)
ERROR_RESPONSE = c.Struct("status" / c.Int8ub, "message" / c.GreedyBytes)


class MessageLayout:
    """A construct struct of fixed-size fields plus an optional trailing byte string,
    compiled to `struct` for speed. Also knows the frame header, so a whole frame is
    one `pack` plus the trailing bytes."""

    def __init__(self, definition: c.Struct) -> None:
        self.definition = definition
        formats = []
        self.field_names: list[str] = []
        self.tail_name: str | None = None
        for field in definition.subcons:
            if self.tail_name is not None:
                raise TypeError("GreedyBytes must be the last field of a layout")
            inner = field.subcon
            if inner is c.GreedyBytes:
                self.tail_name = field.name
            elif isinstance(inner, c.FormatField) and inner.fmtstr[0] == ">":
                formats.append(inner.fmtstr[1:])
                self.field_names.append(field.name)
            else:
                raise TypeError(f"unsupported field {field.name!r} in a message layout")
        self.fixed = struct.Struct(">" + "".join(formats))
        self.framed = struct.Struct(">IBBI" + "".join(formats))

    def encode_frame(self, version: int, op: int, request_id: int, *fields: Any,
                     tail: Payload = b"") -> bytes:
        """A complete frame: header, the fixed fields, then `tail` (bytes or parts). The
        frame is joined here, once: Twisted's transports take bytes only, and would join
        parts handed to `writeSequence` themselves (memoryview parts would need a copy each
        first)."""
        length = self.framed.size - 4 + payload_length(tail)
        head = self.framed.pack(length, version, op, request_id, *fields)
        if isinstance(tail, (bytes, bytearray, memoryview)):
            return head + tail
        return b"".join((head, *tail))

    def decode(self, body: Buffer) -> tuple[Any, ...]:
        """The fixed fields, followed by the trailing bytes if the layout has them (a view
        when `body` is one: a payload is not copied out of its frame)."""
        if len(body) < self.fixed.size or (self.tail_name is None and len(body) != self.fixed.size):
            raise ProtocolError(
                f"body of {len(body)} bytes does not fit layout "
                f"({'at least ' if self.tail_name else ''}{self.fixed.size} bytes)")
        fields = self.fixed.unpack_from(body)
        if self.tail_name is None:
            return fields
        return (*fields, body[self.fixed.size:])


HANDSHAKE_REQUEST_LAYOUT = MessageLayout(HANDSHAKE_REQUEST)
ADD_ENTRY_REQUEST_LAYOUT = MessageLayout(ADD_ENTRY_REQUEST)
READ_ENTRY_REQUEST_LAYOUT = MessageLayout(READ_ENTRY_REQUEST)
READ_LAC_REQUEST_LAYOUT = MessageLayout(READ_LAC_REQUEST)
DELETE_LEDGER_REQUEST_LAYOUT = MessageLayout(DELETE_LEDGER_REQUEST)
LIST_ENTRIES_REQUEST_LAYOUT = MessageLayout(LIST_ENTRIES_REQUEST)
HANDSHAKE_RESPONSE_LAYOUT = MessageLayout(HANDSHAKE_RESPONSE)
EMPTY_RESPONSE_LAYOUT = MessageLayout(EMPTY_RESPONSE)
READ_ENTRY_RESPONSE_LAYOUT = MessageLayout(READ_ENTRY_RESPONSE)
LIST_ENTRIES_RESPONSE_LAYOUT = MessageLayout(LIST_ENTRIES_RESPONSE)
READ_LAC_RESPONSE_LAYOUT = MessageLayout(READ_LAC_RESPONSE)
ERROR_RESPONSE_LAYOUT = MessageLayout(ERROR_RESPONSE)

_HEADER = MessageLayout(FRAME_HEADER).fixed
HEADER_BYTES = _HEADER.size
_MIN_LENGTH = HEADER_BYTES - 4  # version + op + request id


# --- frames -------------------------------------------------------------------------------------

class Frame(NamedTuple):
    version: int
    op: int
    request_id: int
    body: bytes | memoryview  # a view into the received bytes when read by FrameReader


class FrameReader:
    """Splits a byte stream into frames.

    Received chunks are kept as they arrive and joined once, when the frame they complete is
    whole; each frame's body is a view into the joined bytes, not a copy. So a 1 MiB entry
    arriving in 64 KiB reads is copied once (not appended to a growing buffer, sliced out
    and copied again), and a large frame costs linear time, not quadratic."""

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._chunks: list[Buffer] = []
        self._buffered = 0
        self._wanted = HEADER_BYTES  # bytes that must be buffered before a frame can be whole
        self._max_frame_bytes = max_frame_bytes

    def feed(self, data: bytes) -> list[Frame]:
        """Add bytes; return every frame now complete. Raises ProtocolError on a bad length."""
        if data:
            self._chunks.append(data)
            self._buffered += len(data)
        if self._buffered < self._wanted:
            return []  # a frame still arriving: nothing to copy or parse yet
        received = join_payload(self._chunks)
        view = memoryview(received)
        frames = []
        offset, available = 0, len(received)
        self._wanted = HEADER_BYTES
        while available - offset >= HEADER_BYTES:
            length, version, op, request_id = _HEADER.unpack_from(received, offset)
            if length < _MIN_LENGTH or length > self._max_frame_bytes:
                raise ProtocolError(f"frame length {length} outside [{_MIN_LENGTH}, "
                                    f"{self._max_frame_bytes}]")
            end = offset + 4 + length
            if end > available:
                self._wanted = 4 + length
                break
            frames.append(Frame(version, op, request_id, view[offset + HEADER_BYTES:end]))
            offset = end
        self._buffered = available - offset
        self._chunks = [view[offset:]] if self._buffered else []
        return frames

    @property
    def buffered_bytes(self) -> int:
        return self._buffered


# --- requests ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HandshakeRequest:
    min_version: int
    max_version: int


@dataclass(frozen=True, slots=True)
class AddEntryRequest:
    ledger_id: int
    entry_id: int
    last_add_confirmed: int
    recovery: bool
    payload: Payload  # bytes or parts


@dataclass(frozen=True, slots=True)
class ReadEntryRequest:
    ledger_id: int
    entry_id: int
    fence: bool


@dataclass(frozen=True, slots=True)
class ReadLacRequest:
    ledger_id: int
    fence: bool


@dataclass(frozen=True, slots=True)
class DeleteLedgerRequest:
    ledger_id: int


@dataclass(frozen=True, slots=True)
class ListEntriesRequest:
    ledger_id: int
    first_entry_id: int
    count: int


Request = (HandshakeRequest | AddEntryRequest | ReadEntryRequest | ReadLacRequest
           | DeleteLedgerRequest | ListEntriesRequest)


def minimum_version(request: Request) -> int:
    """The oldest protocol version that carries `request`."""
    if isinstance(request, ListEntriesRequest):
        return OP_MIN_VERSION[Op.LIST_ENTRIES]
    return 1


def _check_flags(flags: int, known: int) -> bool:
    if flags & ~known:
        raise ProtocolError(f"unknown flag bits 0x{flags & ~known:02x}")
    return bool(flags & known)


def encode_request(version: int, request_id: int, request: Request) -> bytes:
    """One request frame."""
    match request:
        case AddEntryRequest():
            return ADD_ENTRY_REQUEST_LAYOUT.encode_frame(
                version, Op.ADD_ENTRY, request_id, request.ledger_id, request.entry_id,
                request.last_add_confirmed, FLAG_RECOVERY if request.recovery else 0,
                tail=request.payload)
        case ReadEntryRequest():
            return READ_ENTRY_REQUEST_LAYOUT.encode_frame(
                version, Op.READ_ENTRY, request_id, request.ledger_id, request.entry_id,
                FLAG_FENCE if request.fence else 0)
        case ReadLacRequest():
            return READ_LAC_REQUEST_LAYOUT.encode_frame(
                version, Op.READ_LAC, request_id, request.ledger_id,
                FLAG_FENCE if request.fence else 0)
        case DeleteLedgerRequest():
            return DELETE_LEDGER_REQUEST_LAYOUT.encode_frame(
                version, Op.DELETE_LEDGER, request_id, request.ledger_id)
        case ListEntriesRequest():
            return LIST_ENTRIES_REQUEST_LAYOUT.encode_frame(
                version, Op.LIST_ENTRIES, request_id, request.ledger_id, request.first_entry_id,
                request.count)
        case HandshakeRequest():
            return HANDSHAKE_REQUEST_LAYOUT.encode_frame(
                HANDSHAKE_VERSION, Op.HANDSHAKE, request_id, HANDSHAKE_MAGIC,
                request.min_version, request.max_version)
    raise TypeError(f"not a request: {request!r}")


def decode_request(frame: Frame) -> Request:
    """The request carried by `frame`. Raises ProtocolError for anything malformed."""
    op, body = frame.op, frame.body
    if op == Op.ADD_ENTRY:
        ledger_id, entry_id, lac, flags, payload = ADD_ENTRY_REQUEST_LAYOUT.decode(body)
        return AddEntryRequest(ledger_id, entry_id, lac, _check_flags(flags, FLAG_RECOVERY),
                               payload)
    if op == Op.READ_ENTRY:
        ledger_id, entry_id, flags = READ_ENTRY_REQUEST_LAYOUT.decode(body)
        return ReadEntryRequest(ledger_id, entry_id, _check_flags(flags, FLAG_FENCE))
    if op == Op.READ_LAC:
        ledger_id, flags = READ_LAC_REQUEST_LAYOUT.decode(body)
        return ReadLacRequest(ledger_id, _check_flags(flags, FLAG_FENCE))
    if op == Op.DELETE_LEDGER:
        (ledger_id,) = DELETE_LEDGER_REQUEST_LAYOUT.decode(body)
        return DeleteLedgerRequest(ledger_id)
    if op == Op.LIST_ENTRIES:
        if frame.version < OP_MIN_VERSION[Op.LIST_ENTRIES]:
            raise ProtocolError(f"op LIST_ENTRIES needs protocol version "
                                f"{OP_MIN_VERSION[Op.LIST_ENTRIES]}, the frame has {frame.version}")
        return ListEntriesRequest(*LIST_ENTRIES_REQUEST_LAYOUT.decode(body))
    if op == Op.HANDSHAKE:
        magic, min_version, max_version = HANDSHAKE_REQUEST_LAYOUT.decode(body)
        if magic != HANDSHAKE_MAGIC:
            raise ProtocolError(f"handshake magic 0x{magic:08x} is not 0x{HANDSHAKE_MAGIC:08x}: "
                                "the peer does not speak the kop storage protocol")
        if min_version > max_version:
            raise ProtocolError(f"handshake offers an empty version range "
                                f"[{min_version}, {max_version}]")
        return HandshakeRequest(min_version, max_version)
    raise ProtocolError(f"unknown op {op}")


def choose_version(request: HandshakeRequest) -> int | None:
    """The newest version both sides speak, or None."""
    common = [v for v in SUPPORTED_VERSIONS if request.min_version <= v <= request.max_version]
    return max(common) if common else None


# --- responses -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Response:
    """A decoded response. `value` depends on the op: None (add, delete), the payload
    (read entry), (last_add_confirmed, last_entry_id) (read LAC), the entry bitmap (list
    entries), the version (handshake)."""
    request_id: int
    op: int
    status: Status
    value: Any = None
    message: str = ""


def encode_ok_response(version: int, op: int, request_id: int, value: Any = None) -> bytes:
    """A success response for `op` carrying `value` (see `Response`)."""
    if op in (Op.ADD_ENTRY, Op.DELETE_LEDGER):
        return EMPTY_RESPONSE_LAYOUT.encode_frame(version, op, request_id, Status.OK)
    if op == Op.READ_ENTRY:
        return READ_ENTRY_RESPONSE_LAYOUT.encode_frame(version, op, request_id, Status.OK,
                                                       tail=value)
    if op == Op.LIST_ENTRIES:
        return LIST_ENTRIES_RESPONSE_LAYOUT.encode_frame(version, op, request_id, Status.OK,
                                                         tail=value)
    if op == Op.READ_LAC:
        return READ_LAC_RESPONSE_LAYOUT.encode_frame(version, op, request_id, Status.OK, *value)
    if op == Op.HANDSHAKE:
        return HANDSHAKE_RESPONSE_LAYOUT.encode_frame(HANDSHAKE_VERSION, op, request_id,
                                                      Status.OK, value)
    raise ValueError(f"unknown op {op}")


def encode_error_response(version: int, op: int, request_id: int, status: Status,
                          message: str) -> bytes:
    return ERROR_RESPONSE_LAYOUT.encode_frame(version, op, request_id, status,
                                              tail=message.encode("utf-8", "replace"))


def decode_response(frame: Frame) -> Response:
    """The response carried by `frame`. Raises ProtocolError for anything malformed."""
    body = frame.body
    if not body:
        raise ProtocolError("empty response body")
    try:
        status = Status(body[0])
    except ValueError:
        raise ProtocolError(f"unknown status {body[0]}") from None
    op = frame.op
    if status != Status.OK:
        _, message = ERROR_RESPONSE_LAYOUT.decode(body)
        return Response(frame.request_id, op, status, None,
                        bytes(message).decode("utf-8", "replace"))
    if op in (Op.ADD_ENTRY, Op.DELETE_LEDGER):
        EMPTY_RESPONSE_LAYOUT.decode(body)
        value: Any = None
    elif op == Op.READ_ENTRY:
        _, value = READ_ENTRY_RESPONSE_LAYOUT.decode(body)
    elif op == Op.LIST_ENTRIES:
        _, bitmap = LIST_ENTRIES_RESPONSE_LAYOUT.decode(body)
        value = bytes(bitmap)
    elif op == Op.READ_LAC:
        _, lac, last_entry_id = READ_LAC_RESPONSE_LAYOUT.decode(body)
        value = (lac, last_entry_id)
    elif op == Op.HANDSHAKE:
        _, value = HANDSHAKE_RESPONSE_LAYOUT.decode(body)
    else:
        raise ProtocolError(f"unknown op {op} in a response")
    return Response(frame.request_id, op, status, value)
