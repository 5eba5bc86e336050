"""A deliberately broken TCP proxy for the suite's own tests: it drops every other record
batch, either from Produce requests on their way to a real broker (the broker never
stores them) or from Fetch responses on their way back (clients never see them).

Everything else passes through byte for byte. It proves the suite can fail: a broker
that loses records, on either path, must make the round-trip scenario report FAIL.
"""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable

PRODUCE_KEY, FETCH_KEY = 0, 1
FIRST_FLEXIBLE_PRODUCE_VERSION = 9
FIRST_TOPIC_ID_PRODUCE_VERSION = 13
FIRST_FLEXIBLE_FETCH_VERSION = 12
FIRST_TOPIC_ID_FETCH_VERSION = 13

PRODUCE, FETCH = "produce", "fetch"  # where the proxy drops batches


class Reader:
    """Reads Kafka primitives from a frame, remembering where it is."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise ValueError("truncated Kafka frame")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def unpack(self, fmt: str) -> int:
        (value,) = struct.unpack(fmt, self.take(struct.calcsize(fmt)))
        return value

    def uvarint(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())


def uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class BatchDropper:
    """Drops every other record batch it is shown; counts across every connection."""

    def __init__(self) -> None:
        self.seen = 0
        self.dropped = 0
        self.lock = threading.Lock()

    def keep_every_other(self, records: bytes) -> bytes:
        kept, pos = bytearray(), 0
        while pos + 12 <= len(records):
            (length,) = struct.unpack_from(">i", records, pos + 8)  # after the base offset
            batch = records[pos : pos + 12 + length]
            pos += 12 + length
            with self.lock:
                self.seen += 1
                if self.seen % 2 == 0:
                    self.dropped += 1
                    continue
            kept += batch
        return bytes(kept)


class FrameRewriter:
    """Copies a frame while walking it, so a records field can be replaced on the way."""

    def __init__(self, frame: bytes, flexible: bool) -> None:
        self.frame = frame
        self.flexible = flexible
        self.reader = Reader(frame)
        self.out = bytearray()

    def copy(self, step: Callable[[], object]) -> None:
        start = self.reader.pos
        step()
        self.out += self.frame[start : self.reader.pos]

    def copy_bytes(self, size: int) -> None:
        self.copy(lambda: self.reader.take(size))

    def array_length(self) -> int:
        """Copies an array's length and returns it (-1 for a null array)."""
        start = self.reader.pos
        if self.flexible:
            count = self.reader.uvarint() - 1
        else:
            count = self.reader.unpack(">i")
        self.out += self.frame[start : self.reader.pos]
        return count

    def string(self) -> None:
        def step() -> None:
            size = self.reader.uvarint() - 1 if self.flexible else self.reader.unpack(">h")
            self.reader.take(max(size, 0))

        self.copy(step)

    def tagged_fields(self) -> None:
        if self.flexible:
            self.copy(self.reader.skip_tagged_fields)

    def records(self, dropper: BatchDropper) -> None:
        """Replaces a (nullable) records field with every other batch of it."""
        size = self.reader.uvarint() - 1 if self.flexible else self.reader.unpack(">i")
        if size < 0:  # null records stay null
            self.out += uvarint(0) if self.flexible else struct.pack(">i", -1)
            return
        kept = dropper.keep_every_other(self.reader.take(size))
        self.out += uvarint(len(kept) + 1) if self.flexible else struct.pack(">i", len(kept))
        self.out += kept

    def rest(self) -> bytes:
        return bytes(self.out + self.frame[self.reader.pos :])


def rewrite_produce_request(frame: bytes, dropper: BatchDropper) -> bytes:
    """A Produce request (any version) with every other batch removed."""
    version = struct.unpack_from(">h", frame, 2)[0]
    w = FrameRewriter(frame, version >= FIRST_FLEXIBLE_PRODUCE_VERSION)
    w.copy_bytes(8)  # api key, version, correlation id
    w.copy(lambda: w.reader.take(max(w.reader.unpack(">h"), 0)))  # client id: never compact
    w.tagged_fields()  # request header
    w.string()  # transactional id
    w.copy_bytes(6)  # acks, timeout
    for _ in range(w.array_length()):
        if version >= FIRST_TOPIC_ID_PRODUCE_VERSION:
            w.copy_bytes(16)
        else:
            w.string()
        for _ in range(w.array_length()):
            w.copy_bytes(4)  # partition index
            w.records(dropper)
            w.tagged_fields()
        w.tagged_fields()
    return w.rest()  # body tagged fields


def rewrite_fetch_response(frame: bytes, version: int, dropper: BatchDropper) -> bytes:
    """A Fetch response of `version` with every other batch removed."""
    w = FrameRewriter(frame, version >= FIRST_FLEXIBLE_FETCH_VERSION)
    w.copy_bytes(4)  # correlation id
    w.tagged_fields()  # response header
    if version >= 1:
        w.copy_bytes(4)  # throttle time
    if version >= 7:
        w.copy_bytes(6)  # error code, session id
    for _ in range(w.array_length()):
        if version >= FIRST_TOPIC_ID_FETCH_VERSION:
            w.copy_bytes(16)
        else:
            w.string()
        for _ in range(w.array_length()):
            w.copy_bytes(4 + 2 + 8)  # partition index, error code, high watermark
            if version >= 4:
                w.copy_bytes(8)  # last stable offset
            if version >= 5:
                w.copy_bytes(8)  # log start offset
            if version >= 4:
                for _ in range(w.array_length()):  # aborted transactions (null: -1)
                    w.copy_bytes(16)
                    w.tagged_fields()
            if version >= 11:
                w.copy_bytes(4)  # preferred read replica
            w.records(dropper)
            w.tagged_fields()
        w.tagged_fields()
    return w.rest()  # body tagged fields


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _read_frame(sock: socket.socket) -> bytes | None:
    size = _read_exactly(sock, 4)
    return None if size is None else _read_exactly(sock, struct.unpack(">i", size)[0])


class FaultyProxy:
    """Listens on a port and forwards to `upstream_port`, dropping every other batch
    from Produce requests (fault PRODUCE) or from Fetch responses (fault FETCH)."""

    def __init__(self, upstream_port: int, fault: str, listen_port: int = 0) -> None:
        if fault not in (PRODUCE, FETCH):
            raise ValueError(f"unknown fault {fault!r}")
        self.upstream_port = upstream_port
        self.fault = fault
        self.dropper = BatchDropper()
        self.server = socket.create_server(("127.0.0.1", listen_port))
        self.port = self.server.getsockname()[1]
        self.sockets: list[socket.socket] = [self.server]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            self.sockets += [client, upstream]
            fetch_versions: dict[int, int] = {}  # correlation id -> Fetch version
            threading.Thread(
                target=self._requests, args=(client, upstream, fetch_versions), daemon=True
            ).start()
            threading.Thread(
                target=self._responses, args=(upstream, client, fetch_versions), daemon=True
            ).start()

    def _requests(
        self, client: socket.socket, upstream: socket.socket, fetch_versions: dict[int, int]
    ) -> None:
        try:
            while (frame := _read_frame(client)) is not None:
                api_key, version, correlation_id = struct.unpack_from(">hhi", frame, 0)
                if api_key == PRODUCE_KEY and self.fault == PRODUCE:
                    frame = rewrite_produce_request(frame, self.dropper)
                elif api_key == FETCH_KEY and self.fault == FETCH:
                    fetch_versions[correlation_id] = version
                upstream.sendall(struct.pack(">i", len(frame)) + frame)
        except OSError:
            pass
        finally:
            upstream.close()

    def _responses(
        self, upstream: socket.socket, client: socket.socket, fetch_versions: dict[int, int]
    ) -> None:
        try:
            while (frame := _read_frame(upstream)) is not None:
                (correlation_id,) = struct.unpack_from(">i", frame, 0)
                version = fetch_versions.pop(correlation_id, None)
                if version is not None:
                    frame = rewrite_fetch_response(frame, version, self.dropper)
                client.sendall(struct.pack(">i", len(frame)) + frame)
        except OSError:
            pass
        finally:
            client.close()

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
