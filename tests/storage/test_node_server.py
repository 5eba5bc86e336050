"""The storage node over TCP on loopback: RemoteStorageNodeClient against the Twisted
server (and LocalStorageNodeClient against the same node), pipelining, errors, bad frames,
timeouts and reconnection."""

from __future__ import annotations

import logging
import socket
import struct
import threading

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

from storage.node import (
    CorruptEntryError,
    InvalidRequestError,
    LacResult,
    LedgerFencedError,
    LocalStorageNodeClient,
    NodeUnavailableError,
    NoSuchEntryError,
    NoSuchLedgerError,
    RemoteStorageNodeClient,
    StorageNode,
    StorageNodeConfig,
    entry_reads,
)
from storage.node.protocol import (
    FrameReader,
    HandshakeRequest,
    Op,
    ReadLacRequest,
    Status,
    decode_response,
    encode_request,
)
from storage.node.server import listen


class Served:
    """A node served on a free loopback port."""

    def __init__(self, node: StorageNode, port) -> None:
        self.node = node
        self.port = port
        self.address = f"127.0.0.1:{port.getHost().port}"


@pytest.fixture
def served(tmp_path):
    node = pytest_twisted.blockon(StorageNode.open(
        tmp_path / "node", StorageNodeConfig(segment_bytes=1024 * 1024, gc_interval_seconds=None)))
    port = listen(node, "127.0.0.1", 0)
    yield Served(node, port)
    pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))
    pytest_twisted.blockon(node.close())


@pytest.fixture
def remote(served):
    client = RemoteStorageNodeClient(served.address, request_timeout=10)
    yield client
    pytest_twisted.blockon(client.close())


async def raises(error_type, deferred):
    with pytest.raises(error_type) as info:
        await deferred
    return info.value


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize("kind", ["remote", "local"])
async def test_both_clients_give_the_same_answers(served, kind):
    client = (RemoteStorageNodeClient(served.address) if kind == "remote"
              else LocalStorageNodeClient(served.node))
    try:
        assert client.address == (served.address if kind == "remote"
                                   else f"local:{served.node.data_dir}")
        for entry_id in range(5):
            await client.add_entry(1, entry_id, entry_id - 1, b"entry %d" % entry_id)
        assert await client.read_entry(1, 3) == b"entry 3"
        assert await client.read_entry(1, 4) == b"entry 4"
        lac = await client.read_last_add_confirmed(1)
        assert isinstance(lac, LacResult) and lac == (3, 4)
        await raises(NoSuchEntryError, client.read_entry(1, 5))
        await raises(NoSuchLedgerError, client.read_entry(2, 0))
        await raises(InvalidRequestError, client.add_entry(1, -5, -1, b""))
        assert await client.read_last_add_confirmed(1, fence=True) == (3, 4)
        error = await raises(LedgerFencedError, client.add_entry(1, 5, 4, b"late"))
        assert "fenced" in str(error)
        await client.add_entry(1, 5, 4, b"recovered", recovery=True)
        assert await client.read_entry(1, 5, fence=True) == b"recovered"
        await client.delete_ledger(1)
        await raises(NoSuchLedgerError, client.read_last_add_confirmed(1))
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_corrupt_entries_are_reported_as_corrupt_over_the_wire(served, remote):
    await remote.add_entry(1, 0, -1, b"x" * 500)
    location = served.node._state.location(1, 0)
    path = served.node.data_dir / "journal" / f"{location.segment:020d}.log"
    with open(path, "r+b") as file:
        file.seek(location.offset + location.length - 10)
        file.write(b"!")
    error = await raises(CorruptEntryError, remote.read_entry(1, 0))
    assert "entry 0 of ledger 1" in str(error)


@pytest_twisted.ensureDeferred
async def test_pipelined_requests_on_one_connection_complete_out_of_order(served, remote,
                                                                         monkeypatch):
    await remote.add_entry(1, 0, -1, b"slow to read")
    real_read = entry_reads._read_payloads
    release = threading.Event()

    def slow_read(*args):
        assert release.wait(10)
        return real_read(*args)

    monkeypatch.setattr(entry_reads, "_read_payloads", slow_read)
    slow = remote.read_entry(1, 0)
    adds = [remote.add_entry(2, e, e - 1, b"%d" % e) for e in range(200)]
    await defer.gatherResults(adds)
    assert not slow.called  # the adds were answered while the read was still in progress
    release.set()
    assert await slow == b"slow to read"


@pytest_twisted.ensureDeferred
async def test_many_pipelined_adds_use_one_connection_and_few_fsyncs(served, remote):
    connections = []
    factory = served.port.factory
    build = factory.buildProtocol
    factory.buildProtocol = lambda addr: connections.append(addr) or build(addr)
    fsyncs = served.node._journal.fsync_count
    await defer.gatherResults([remote.add_entry(1, e, e - 1, b"%d" % e) for e in range(2000)])
    assert len(connections) == 1
    assert served.node._journal.fsync_count - fsyncs < 100
    assert await remote.read_last_add_confirmed(1) == (1998, 1999)


@pytest_twisted.ensureDeferred
async def test_large_parts_pipelined_over_tcp_arrive_whole_and_in_order(served, remote):
    body = bytes(range(256)) * 4096  # 1 MiB, sent as a view after two small headers
    adds = [remote.add_entry(1, e, e - 1, [b"head %d|" % e, b"", memoryview(body)[e:]])
            for e in range(12)]
    await defer.gatherResults(adds)
    for entry_id in range(12):
        assert await remote.read_entry(1, entry_id) == b"head %d|" % entry_id + body[entry_id:]


@pytest_twisted.ensureDeferred
async def test_requests_wait_while_the_transport_is_full_then_go_out_in_order(served, remote):
    await remote.add_entry(1, 0, -1, b"connects")
    connection = remote._connection
    connection.pauseProducing()  # what the transport does when its buffer is full
    adds = [remote.add_entry(1, e, e - 1, b"entry %d" % e) for e in range(1, 4)]
    cancelled = remote.add_entry(1, 4, 3, b"given up before it was sent")
    cancelled.addErrback(lambda failure: failure.trap(defer.CancelledError))
    cancelled.cancel()
    assert len(connection._unsent) == 4 and not any(add.called for add in adds)
    connection.resumeProducing()
    await defer.gatherResults(adds)
    assert [await remote.read_entry(1, e) for e in range(1, 4)] == [b"entry 1", b"entry 2",
                                                                    b"entry 3"]
    await raises(NoSuchEntryError, remote.read_entry(1, 4))  # the cancelled one never went


@pytest_twisted.ensureDeferred
async def test_a_client_closed_while_the_transport_is_full_still_closes(served):
    client = RemoteStorageNodeClient(served.address)
    await client.add_entry(1, 0, -1, b"connects")
    in_flight = client.add_entry(1, 1, 0, b"x" * (4 * 1024 * 1024))  # fills Twisted's buffer
    in_flight.addErrback(lambda failure: failure.trap(NodeUnavailableError))
    closed = client.close()
    await closed.addTimeout(10, reactor)  # a paused producer must not keep it open


class RawConnection(protocol.Protocol):
    """A plain TCP client for sending hand-made bytes."""

    def __init__(self) -> None:
        self.received = b""
        self.closed = defer.Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason) -> None:
        self.closed.callback(None)


async def raw_connection(address: str) -> RawConnection:
    host, port = address.split(":")
    connection = RawConnection()
    await connectProtocol(TCP4ClientEndpoint(reactor, host, int(port)), connection)
    return connection


HANDSHAKE = encode_request(0, 0, HandshakeRequest(1, 1))


@pytest_twisted.ensureDeferred
@pytest.mark.parametrize(("data", "logged"), [
    (b"GET / HTTP/1.1\r\n\r\n", "frame length"),
    (b"\xff\xff\xff\xff" + bytes(6), "frame length"),
    (encode_request(1, 1, ReadLacRequest(1, False)), "expected a handshake"),
    (struct.pack(">IBBIIBB", 12, 0, 0, 0, 0xDEADBEEF, 1, 1), "magic"),
    (HANDSHAKE + struct.pack(">IBBI", 6, 1, 99, 1), "unknown op"),
    (HANDSHAKE + encode_request(2, 1, ReadLacRequest(1, False)), "negotiated 1"),
    (HANDSHAKE + HANDSHAKE, "second handshake"),
    (HANDSHAKE + struct.pack(">IBBI", 6 + 3, 1, Op.READ_LAC, 1) + b"abc", "does not fit"),
])
async def test_bad_frames_close_the_connection_with_a_log_line_and_the_node_carries_on(
        served, remote, caplog, data, logged):
    caplog.set_level(logging.WARNING, logger="storage.node.server")
    connection = await raw_connection(served.address)
    connection.transport.write(data)
    await connection.closed
    assert "bad frame" in caplog.text and logged in caplog.text
    await remote.add_entry(1, 0, -1, b"still serving")
    assert await remote.read_entry(1, 0) == b"still serving"


@pytest_twisted.ensureDeferred
async def test_a_client_speaking_only_unknown_versions_is_told_so(served):
    connection = await raw_connection(served.address)
    connection.transport.write(encode_request(0, 0, HandshakeRequest(5, 6)))
    await connection.closed
    (frame,) = FrameReader().feed(connection.received)
    response = decode_response(frame)
    assert response.op == Op.HANDSHAKE and response.status == Status.UNSUPPORTED_VERSION
    assert "5-6" in response.message


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest_twisted.ensureDeferred
async def test_a_refused_connection_is_node_unavailable():
    client = RemoteStorageNodeClient(f"127.0.0.1:{unused_port()}")
    try:
        error = await raises(NodeUnavailableError, client.add_entry(1, 0, -1, b"x"))
        assert "cannot connect" in str(error)
    finally:
        await client.close()


class Silent(protocol.Protocol):
    """Accepts connections and never answers."""


@pytest_twisted.ensureDeferred
async def test_a_node_that_does_not_answer_times_out_as_unavailable():
    port = reactor.listenTCP(0, protocol.Factory.forProtocol(Silent), interface="127.0.0.1")
    address = f"127.0.0.1:{port.getHost().port}"
    client = RemoteStorageNodeClient(address, connect_timeout=0.3, request_timeout=5)
    try:
        error = await raises(NodeUnavailableError, client.read_entry(1, 0))
        assert "cannot connect" in str(error)  # the handshake was never answered
    finally:
        await client.close()
        await port.stopListening()


@pytest_twisted.ensureDeferred
async def test_a_request_the_node_sits_on_times_out_and_a_late_answer_is_ignored(
        served, monkeypatch):
    release = threading.Event()
    real_read = entry_reads._read_payloads

    def stuck_read(*args):
        assert release.wait(10)
        return real_read(*args)

    client = RemoteStorageNodeClient(served.address, request_timeout=0.3)
    try:
        await client.add_entry(1, 0, -1, b"x")
        monkeypatch.setattr(entry_reads, "_read_payloads", stuck_read)
        error = await raises(NodeUnavailableError, client.read_entry(1, 0))
        assert "did not answer ReadEntryRequest within 0.3 s" in str(error)
        release.set()
        monkeypatch.undo()
        assert await client.read_entry(1, 0) == b"x"  # same connection, late answer dropped
    finally:
        release.set()
        await client.close()


@pytest_twisted.ensureDeferred
async def test_requests_in_flight_fail_when_the_connection_drops_and_the_next_one_reconnects(
        served, remote, monkeypatch):
    await remote.add_entry(1, 0, -1, b"x")
    release = threading.Event()
    real_read = entry_reads._read_payloads

    def stuck_read(*args):
        assert release.wait(10)
        return real_read(*args)

    monkeypatch.setattr(entry_reads, "_read_payloads", stuck_read)
    in_flight = remote.read_entry(1, 0)
    remote._connection.transport.loseConnection()  # as if the network dropped it
    error = await raises(NodeUnavailableError, in_flight)
    assert "lost" in str(error)
    release.set()
    monkeypatch.undo()
    assert await remote.read_entry(1, 0) == b"x"


@pytest_twisted.ensureDeferred
async def test_a_closed_client_refuses_requests(served):
    client = RemoteStorageNodeClient(served.address)
    await client.add_entry(1, 0, -1, b"x")
    await client.close()
    await raises(NodeUnavailableError, client.read_entry(1, 0))
