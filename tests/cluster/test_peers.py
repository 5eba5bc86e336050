"""PeerClient against small loopback servers: answers matched in order, and every way a peer
can fail (refused, silent, garbage, hang-up) becomes PeerUnavailableError."""

from __future__ import annotations

import pytest
import pytest_twisted
from twisted.internet import defer, protocol, reactor

from kop.cluster.peers import PeerClient, PeerUnavailableError
from wire.framing import FrameSplitter
from wire.messages import WriteTxnMarkersRequest, WriteTxnMarkersResponse
from wire.protocol import decode_request, encode_response

REQUEST = WriteTxnMarkersRequest(markers=[])


class _Peer(protocol.Protocol):
    def __init__(self, behaviour: str) -> None:
        self.behaviour = behaviour
        self.splitter = FrameSplitter()

    def dataReceived(self, data: bytes) -> None:
        self.splitter.feed(data)
        for frame in self.splitter.frames():
            header, _ = decode_request(frame)
            if self.behaviour == "answer":
                self.transport.write(encode_response(
                    header.correlation_id, header.api_key, header.api_version,
                    WriteTxnMarkersResponse(markers=[WriteTxnMarkersResponse.WritableTxnMarkerResult(
                        producer_id=header.correlation_id, topics=[])])))
            elif self.behaviour == "garbage":
                self.transport.write(b"\x00\x00\x00\x03abc")
            elif self.behaviour == "hang up":
                self.transport.loseConnection()
            # "silent": never answers


@pytest.fixture
def peer():
    ports = []

    def listen(behaviour: str) -> str:
        factory = protocol.Factory.forProtocol(lambda: _Peer(behaviour))
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        ports.append(port)
        return f"127.0.0.1:{port.getHost().port}"

    yield listen
    for port in ports:
        pytest_twisted.blockon(defer.maybeDeferred(port.stopListening))


@pytest_twisted.ensureDeferred
async def test_pipelined_answers_reach_their_callers(peer):
    client = PeerClient()
    address = peer("answer")
    try:
        answers = await defer.gatherResults(
            [client.call(address, 27, 1, REQUEST) for _ in range(5)])
        assert [a.markers[0].producer_id for a in answers] == [1, 2, 3, 4, 5]
        again = await client.call(address, 27, 0, REQUEST)  # the connection is reused
        assert again.markers[0].producer_id == 6
    finally:
        await client.close()


@pytest.mark.parametrize("behaviour", ["silent", "garbage", "hang up"])
@pytest_twisted.ensureDeferred
async def test_misbehaving_peers(peer, behaviour):
    client = PeerClient(timeout=0.5)
    address = peer(behaviour)
    try:
        with pytest.raises(PeerUnavailableError):
            await client.call(address, 27, 1, REQUEST)
        with pytest.raises(PeerUnavailableError):  # and a fresh connection fares the same
            await client.call(address, 27, 1, REQUEST)
    finally:
        await client.close()


@pytest_twisted.ensureDeferred
async def test_unreachable_and_malformed_addresses():
    client = PeerClient(timeout=2)
    port = reactor.listenTCP(0, protocol.Factory(), interface="127.0.0.1")
    closed = f"127.0.0.1:{port.getHost().port}"
    await port.stopListening()
    for address in (closed, "no-port", "127.0.0.1:x"):
        with pytest.raises(PeerUnavailableError):
            await client.call(address, 27, 1, REQUEST)
    await client.close()
