"""A minimal Kafka ApiVersions (v0) exchange: proves a port speaks Kafka, not just TCP.

Used to wait for a broker the suite started: ready means it answered ApiVersions
with error code 0, not merely that the port accepted a connection.
"""

from __future__ import annotations

import socket
import struct

from compat_tests.waiting import WaitTimeout, wait_until

API_VERSIONS_KEY = 18
_CORRELATION_ID = 0x4B4F50  # "KOP"
_CLIENT_ID = b"compat-probe"


class ProbeError(Exception):
    """The peer answered, but not with a well-formed successful ApiVersions response."""


def api_versions_request() -> bytes:
    header = (
        struct.pack(">hhih", API_VERSIONS_KEY, 0, _CORRELATION_ID, len(_CLIENT_ID)) + _CLIENT_ID
    )
    return struct.pack(">i", len(header)) + header


def parse_api_versions_response(frame: bytes) -> dict[int, tuple[int, int]]:
    """{api_key: (min_version, max_version)} from a v0 response body (after the size)."""
    if len(frame) < 10:
        raise ProbeError(f"ApiVersions response too short ({len(frame)} bytes)")
    correlation_id, error_code, count = struct.unpack_from(">ihi", frame, 0)
    if correlation_id != _CORRELATION_ID:
        raise ProbeError(f"ApiVersions response has correlation id {correlation_id}")
    if error_code != 0:
        raise ProbeError(f"ApiVersions answered error code {error_code}")
    if count < 0 or 10 + 6 * count > len(frame):
        raise ProbeError(f"ApiVersions response claims {count} APIs in {len(frame)} bytes")
    return {
        key: (low, high)
        for key, low, high in (struct.unpack_from(">hhh", frame, 10 + 6 * i) for i in range(count))
    }


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ProbeError("connection closed before a full ApiVersions response")
        data += chunk
    return bytes(data)


def api_versions(host: str, port: int, timeout: float = 2.0) -> dict[int, tuple[int, int]]:
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(api_versions_request())
        (size,) = struct.unpack(">i", _read_exactly(sock, 4))
        if not 0 < size <= 1 << 20:
            raise ProbeError(f"ApiVersions response frame size {size} is implausible")
        return parse_api_versions_response(_read_exactly(sock, size))


def answers_kafka(host: str, port: int) -> bool:
    try:
        return API_VERSIONS_KEY in api_versions(host, port)
    except (OSError, ProbeError):
        return False


def wait_for_kafka(host: str, port: int, seconds: float, is_alive=lambda: True) -> None:
    """Until host:port answers ApiVersions; raises WaitTimeout (or early if not alive)."""

    def ready() -> bool:
        if not is_alive():
            raise WaitTimeout(f"the broker process exited before {host}:{port} answered Kafka")
        return answers_kafka(host, port)

    wait_until(ready, seconds, f"{host}:{port} to answer a Kafka ApiVersions request", 0.1)
