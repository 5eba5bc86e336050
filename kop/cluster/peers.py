"""PeerClient: a small Kafka-protocol client for one broker to call another (Twisted).

Built on `wire/`: requests are encoded with `encode_request`, responses split with
`FrameSplitter` and decoded with `decode_response`. One connection per peer address is kept
and reused; requests on it are pipelined and matched to responses by correlation id (Kafka
answers in order). A request that gets no answer within its timeout fails with
PeerUnavailableError and the connection is dropped, since a late answer could no longer be
matched safely; the next call connects again.
"""

from __future__ import annotations

import logging
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IReactorTCP, IReactorTime
from twisted.python.failure import Failure

from wire.errors import DecodeError
from wire.framing import FrameSplitter
from wire.model import Message
from wire.protocol import RequestHeader, decode_response, encode_request

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_SECONDS = 10.0
CLIENT_ID = "kop-broker"


class PeerUnavailableError(ConnectionError):
    """The peer could not be reached, closed the connection, or did not answer in time."""


class _PeerProtocol(protocol.Protocol):
    def __init__(self, address: str) -> None:
        self.address = address
        self._splitter = FrameSplitter()
        # correlation id → (api key, api version, waiting Deferred), in request order
        self._pending: dict[int, tuple[int, int, defer.Deferred[Message]]] = {}
        self._next_correlation = 0
        self.closed = False

    def send(self, api_key: int, api_version: int, message: Message) -> defer.Deferred[Message]:
        if self.closed:
            return defer.fail(PeerUnavailableError(f"connection to {self.address} is closed"))
        self._next_correlation = (self._next_correlation + 1) & 0x7FFFFFFF
        correlation = self._next_correlation
        answer: defer.Deferred[Message] = defer.Deferred()
        self._pending[correlation] = (api_key, api_version, answer)
        self.transport.write(encode_request(
            RequestHeader(api_key, api_version, correlation, CLIENT_ID), message))
        return answer

    def dataReceived(self, data: bytes) -> None:
        try:
            self._splitter.feed(data)
            for frame in self._splitter.frames():
                self._answer(frame)
        except (DecodeError, PeerUnavailableError) as exc:
            self.abort(PeerUnavailableError(f"bad response from {self.address}: {exc}"))

    def _answer(self, frame: bytes) -> None:
        if not self._pending:
            raise PeerUnavailableError("a response nobody asked for")
        correlation, (api_key, api_version, answer) = next(iter(self._pending.items()))
        # Decode before letting go of the request: a bad answer fails it with the rest.
        answered_correlation, response = decode_response(frame, api_key, api_version)
        if answered_correlation != correlation:
            raise PeerUnavailableError(
                f"response to request {answered_correlation}, expected {correlation}")
        del self._pending[correlation]
        answer.callback(response)

    def abort(self, error: PeerUnavailableError) -> None:
        if not self.closed:
            self.closed = True
            self.transport.abortConnection()
        self._fail_pending(error)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self.closed = True
        self._fail_pending(PeerUnavailableError(
            f"connection to {self.address} lost: {reason.getErrorMessage()}"))

    def _fail_pending(self, error: PeerUnavailableError) -> None:
        pending, self._pending = self._pending, {}
        for _, _, answer in pending.values():
            answer.errback(error)


class PeerClient:
    """    peers = PeerClient()
    response = await peers.call("10.0.0.2:9092", 27, 0, WriteTxnMarkersRequest(...))
    await peers.close()
    """

    def __init__(self, reactor: Any = None,
                 timeout: float = DEFAULT_TIMEOUT_SECONDS) -> None:
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self._reactor: IReactorTCP | IReactorTime = reactor
        self.timeout = timeout
        self._connections: dict[str, _PeerProtocol] = {}
        self._connecting: dict[str, list[defer.Deferred[_PeerProtocol]]] = {}

    def call(self, address: str, api_key: int, api_version: int,
             message: Message) -> defer.Deferred[Message]:
        """Send one request to the broker at "host:port"; fires with its response, or fails
        with PeerUnavailableError."""
        return defer.ensureDeferred(self._call(address, api_key, api_version, message))

    async def _call(self, address: str, api_key: int, api_version: int,
                    message: Message) -> Message:
        connection = await self._connection(address)
        answer = connection.send(api_key, api_version, message)
        timer = self._reactor.callLater(  # type: ignore[union-attr]
            self.timeout, connection.abort,
            PeerUnavailableError(f"{address} did not answer within {self.timeout:g} s"))
        try:
            return await answer
        finally:
            if timer.active():
                timer.cancel()

    async def _connection(self, address: str) -> _PeerProtocol:
        connection = self._connections.get(address)
        if connection is not None and not connection.closed:
            return connection
        waiter: defer.Deferred[_PeerProtocol] = defer.Deferred()
        waiters = self._connecting.get(address)
        if waiters is not None:  # a connection is being made: share it
            waiters.append(waiter)
            return await waiter
        self._connecting[address] = [waiter]
        defer.ensureDeferred(self._connect(address)).addBoth(self._connected, address)
        return await waiter

    def _connected(self, result: _PeerProtocol | Failure, address: str) -> None:
        waiters = self._connecting.pop(address, [])
        if not isinstance(result, Failure):
            self._connections[address] = result
        for waiter in waiters:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)

    async def _connect(self, address: str) -> _PeerProtocol:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise PeerUnavailableError(f"bad peer address {address!r}")
        endpoint = TCP4ClientEndpoint(self._reactor, host, int(port), timeout=self.timeout)
        try:
            return await connectProtocol(endpoint, _PeerProtocol(address))
        except Exception as exc:
            raise PeerUnavailableError(f"cannot connect to {address}: {exc}") from exc

    async def close(self) -> None:
        connections, self._connections = list(self._connections.values()), {}
        for connection in connections:
            connection.abort(PeerUnavailableError("the peer client is closed"))
