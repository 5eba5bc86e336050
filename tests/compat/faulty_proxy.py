"""A deliberately broken TCP proxy for the suite's own tests: it drops every other
record batch from Produce requests on their way to a real broker.

Everything else passes through byte for byte. It proves the suite can fail: a
broker that loses records must make the round-trip scenario report FAIL.
"""

from __future__ import annotations

import socket
import struct
import threading

PRODUCE_KEY = 0
FIRST_FLEXIBLE_PRODUCE_VERSION = 9
FIRST_TOPIC_ID_PRODUCE_VERSION = 13


class Reader:
    """Reads Kafka primitives from a request body, remembering where it is."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int) -> bytes:
        if size < 0 or self.pos + size > len(self.data):
            raise ValueError("truncated Produce request")
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
    """Rewrites Produce requests; counts batches across every connection."""

    def __init__(self) -> None:
        self.seen = 0
        self.dropped = 0
        self.lock = threading.Lock()

    def keep_every_other(self, records: bytes) -> bytes:
        kept, pos = bytearray(), 0
        while pos + 12 <= len(records):
            (length,) = struct.unpack_from(">i", records, pos + 8)
            batch = records[pos : pos + 12 + length]
            pos += 12 + length
            with self.lock:
                self.seen += 1
                if self.seen % 2 == 0:
                    self.dropped += 1
                    continue
            kept += batch
        return bytes(kept)

    def rewrite(self, frame: bytes) -> bytes:
        api_key, version = struct.unpack_from(">hh", frame, 0)
        if api_key != PRODUCE_KEY:
            return frame
        flexible = version >= FIRST_FLEXIBLE_PRODUCE_VERSION
        r = Reader(frame)
        r.take(8)  # api key, version, correlation id
        client_id_length = r.unpack(">h")
        r.take(max(client_id_length, 0))
        if flexible:
            r.skip_tagged_fields()
        out = bytearray(frame[: r.pos])

        def copy(step) -> None:
            start = r.pos
            step()
            out.extend(frame[start : r.pos])

        def array_length() -> int:
            start = r.pos
            count = r.uvarint() - 1 if flexible else r.unpack(">i")
            out.extend(frame[start : r.pos])
            return count

        def string() -> None:
            size = r.uvarint() - 1 if flexible else r.unpack(">h")
            r.take(max(size, 0))

        copy(string)  # transactional id
        copy(lambda: r.take(6))  # acks, timeout
        for _ in range(array_length()):
            copy(lambda: r.take(16) if version >= FIRST_TOPIC_ID_PRODUCE_VERSION else string())
            for _ in range(array_length()):
                copy(lambda: r.take(4))  # partition index
                size = r.uvarint() - 1 if flexible else r.unpack(">i")
                records = r.take(size) if size >= 0 else b""
                rewritten = self.keep_every_other(records)
                out += (
                    uvarint(len(rewritten) + 1) if flexible else struct.pack(">i", len(rewritten))
                )
                out += rewritten
                if flexible:
                    copy(r.skip_tagged_fields)
            if flexible:
                copy(r.skip_tagged_fields)
        out += frame[r.pos :]  # body tagged fields
        return bytes(out)


class BatchDroppingProxy:
    """Listens on a free port and forwards to `upstream_port`, breaking Produce."""

    def __init__(self, upstream_port: int, listen_port: int = 0) -> None:
        self.upstream_port = upstream_port
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
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._responses, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
        data = bytearray()
        while len(data) < size:
            chunk = sock.recv(size - len(data))
            if not chunk:
                return None
            data += chunk
        return bytes(data)

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while (size_bytes := self._read_exactly(client, 4)) is not None:
                frame = self._read_exactly(client, struct.unpack(">i", size_bytes)[0])
                if frame is None:
                    break
                frame = self.dropper.rewrite(frame)
                upstream.sendall(struct.pack(">i", len(frame)) + frame)
        except OSError:
            pass
        finally:
            upstream.close()

    @staticmethod
    def _responses(upstream: socket.socket, client: socket.socket) -> None:
        try:
            while chunk := upstream.recv(65536):
                client.sendall(chunk)
        except OSError:
            pass
        finally:
            client.close()

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
