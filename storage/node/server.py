"""The storage node's TCP server: the wire protocol in front of a StorageNode.

Requests on a connection are handled concurrently and answered as each one
completes, so a slow read never holds up the acknowledgement of an add. A
malformed frame closes its connection with a log line; the node carries on.
"""

from __future__ import annotations

import logging
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from storage.node.core import StorageNode
from storage.node.errors import ProtocolError, StorageNodeError
from storage.node.protocol import (
    HANDSHAKE_VERSION,
    SUPPORTED_VERSIONS,
    AddEntryRequest,
    DeleteLedgerRequest,
    Frame,
    FrameReader,
    HandshakeRequest,
    ListEntriesRequest,
    Op,
    ReadEntryRequest,
    ReadLacRequest,
    Status,
    choose_version,
    decode_request,
    encode_error_response,
    encode_ok_response,
    status_of_error,
)

log = logging.getLogger(__name__)

MAX_IN_FLIGHT = 4096
"""Requests in progress per connection before the server stops reading from it."""


class StorageNodeServerProtocol(Protocol):
    def __init__(self, node: StorageNode) -> None:
        self._node = node
        self._reader = FrameReader()
        self._version: int | None = None
        self._in_flight = 0
        self._paused = False
        self._closing = False
        self._draining = False  # the node is shutting down: answer what was read, read no more

    def _peer(self) -> str:
        peer = self.transport.getPeer()
        return f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"

    def dataReceived(self, data: bytes) -> None:
        if self._closing or self._draining:
            return
        try:
            for frame in self._reader.feed(data):
                self._handle(frame)
                if self._closing:
                    return
        except ProtocolError as error:
            log.warning("closing storage connection from %s: bad frame: %s", self._peer(), error)
            self._close()

    def connectionLost(self, reason: Failure) -> None:
        self._closing = True
        self.factory.connections.discard(self)

    def stop_reading(self) -> None:
        self._draining = True
        self.transport.pauseProducing()

    def _close(self) -> None:
        self._closing = True
        self.transport.loseConnection()

    def _handle(self, frame: Frame) -> None:
        if self._version is None:
            self._handshake(frame)
            return
        if frame.op == Op.HANDSHAKE:
            raise ProtocolError("a second handshake on one connection")
        if frame.version != self._version:
            raise ProtocolError(f"frame version {frame.version}, negotiated {self._version}")
        request = decode_request(frame)
        try:
            result = self._dispatch(request)
        except Exception as error:  # a bug in a handler must not take down the connection loop
            result = defer.fail(error)
        self._in_flight += 1
        if self._in_flight >= MAX_IN_FLIGHT and not self._paused:
            self._paused = True
            self.transport.pauseProducing()
        result.addCallbacks(self._answer, self._answer_error, callbackArgs=(frame,),
                            errbackArgs=(frame,))

    def _handshake(self, frame: Frame) -> None:
        if frame.op != Op.HANDSHAKE or frame.version != HANDSHAKE_VERSION:
            raise ProtocolError(f"expected a handshake, got op {frame.op} version {frame.version}")
        request = decode_request(frame)
        assert isinstance(request, HandshakeRequest)
        version = choose_version(request)
        if version is None:
            log.warning("closing storage connection from %s: it speaks protocol versions %d-%d",
                        self._peer(), request.min_version, request.max_version)
            self.transport.write(encode_error_response(
                HANDSHAKE_VERSION, Op.HANDSHAKE, frame.request_id, Status.UNSUPPORTED_VERSION,
                f"no common protocol version: client speaks {request.min_version}-"
                f"{request.max_version}, node speaks {list(SUPPORTED_VERSIONS)}"))
            self._close()
            return
        self._version = version
        self.transport.write(encode_ok_response(HANDSHAKE_VERSION, Op.HANDSHAKE, frame.request_id,
                                                version))

    def _dispatch(self, request: Any) -> defer.Deferred:
        node = self._node
        match request:
            case AddEntryRequest():
                return node.add_entry(request.ledger_id, request.entry_id,
                                      request.last_add_confirmed, request.payload,
                                      recovery=request.recovery)
            case ReadEntryRequest():
                return node.read_entry(request.ledger_id, request.entry_id, fence=request.fence)
            case ReadLacRequest():
                return node.read_last_add_confirmed(request.ledger_id, fence=request.fence)
            case DeleteLedgerRequest():
                return node.delete_ledger(request.ledger_id)
            case ListEntriesRequest():
                return node.list_entries(request.ledger_id, request.first_entry_id,
                                         request.count)
        raise ProtocolError(f"unexpected request {request!r}")

    def _request_done(self) -> None:
        self._in_flight -= 1
        if self._paused and not self._draining and self._in_flight <= MAX_IN_FLIGHT // 2:
            self._paused = False
            self.transport.resumeProducing()

    def _answer(self, value: Any, frame: Frame) -> None:
        self._request_done()
        if not self._closing:
            self.transport.write(encode_ok_response(self._version, frame.op, frame.request_id,
                                                    value))

    def _answer_error(self, failure: Failure, frame: Frame) -> None:
        self._request_done()
        error = failure.value
        if not isinstance(error, StorageNodeError):
            log.error("storage request op %d failed unexpectedly", frame.op,
                      exc_info=(failure.type, failure.value, failure.getTracebackObject()))
        if not self._closing:
            message = str(error) or type(error).__name__
            self.transport.write(encode_error_response(self._version, frame.op,
                                                       frame.request_id,
                                                       status_of_error(error), message))


class StorageNodeServerFactory(Factory):
    def __init__(self, node: StorageNode) -> None:
        self.node = node
        self.connections: set[StorageNodeServerProtocol] = set()

    def buildProtocol(self, addr: Any) -> StorageNodeServerProtocol:
        protocol = StorageNodeServerProtocol(self.node)
        protocol.factory = self
        self.connections.add(protocol)
        return protocol

    def stop_reading(self) -> None:
        """Shutting down: stop taking requests; those already read still get answers.
        Clients see unanswered requests fail as NodeUnavailableError when we disconnect."""
        for connection in self.connections:
            connection.stop_reading()

    def disconnect_all(self) -> None:
        for connection in list(self.connections):
            connection.transport.loseConnection()


def listen(node: StorageNode, host: str, port: int, reactor=None) -> IListeningPort:
    """Serve `node` on host:port (port 0 picks a free one; see getHost() of the result)."""
    if reactor is None:
        from twisted.internet import reactor
    return reactor.listenTCP(port, StorageNodeServerFactory(node), interface=host)
