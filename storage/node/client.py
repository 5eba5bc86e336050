"""Storage-node clients: `RemoteStorageNodeClient` (TCP) and `LocalStorageNodeClient`
(a node in the same process). Both implement `storage.node.api.StorageNodeClient`.

The TCP client keeps one connection per node, opened on first use and reopened
on the next request after it is lost. Requests are pipelined; each has its own
timeout. Anything that means "the node did not answer" — refused, lost, timed
out — fails with NodeUnavailableError.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

from twisted.internet import defer
from twisted.internet.endpoints import HostnameEndpoint, connectProtocol
from twisted.internet.interfaces import IDelayedCall, IPushProducer
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from storage.node.api import LacResult
from storage.node.buffers import Payload
from storage.node.core import StorageNode
from storage.node.errors import InvalidRequestError, NodeUnavailableError, ProtocolError
from storage.node.protocol import (
    SUPPORTED_VERSIONS,
    AddEntryRequest,
    DeleteLedgerRequest,
    FrameReader,
    HandshakeRequest,
    ListEntriesRequest,
    Op,
    ReadEntryRequest,
    ReadLacRequest,
    Request,
    Status,
    decode_response,
    encode_request,
    error_of_status,
    minimum_version,
)

log = logging.getLogger(__name__)

_HANDSHAKE_REQUEST_ID = 0
_MAX_REQUEST_ID = 2**32 - 1


def split_address(address: str) -> tuple[str, int]:
    """("host", port) from "host:port" or "[v6 host]:port"."""
    host, separator, port = address.rpartition(":")
    if not separator or not host or not port.isdigit():
        raise ValueError(f"storage node address {address!r} is not host:port")
    return host.strip("[]"), int(port)


class LocalStorageNodeClient:
    """The client interface over a StorageNode in this process (standalone mode).
    Closing the client leaves the node open: whoever opened the node closes it."""

    def __init__(self, node: StorageNode) -> None:
        self.node = node
        self.address = f"local:{node.data_dir}"

    def add_entry(self, ledger_id: int, entry_id: int, last_add_confirmed: int,
                  payload: Payload, *, recovery: bool = False) -> defer.Deferred[None]:
        return self.node.add_entry(ledger_id, entry_id, last_add_confirmed, payload,
                                   recovery=recovery)

    def read_entry(self, ledger_id: int, entry_id: int, *,
                   fence: bool = False) -> defer.Deferred[bytes]:
        return self.node.read_entry(ledger_id, entry_id, fence=fence)

    def read_last_add_confirmed(self, ledger_id: int, *,
                                fence: bool = False) -> defer.Deferred[LacResult]:
        return self.node.read_last_add_confirmed(ledger_id, fence=fence)

    def delete_ledger(self, ledger_id: int) -> defer.Deferred[None]:
        return self.node.delete_ledger(ledger_id)

    def list_entries(self, ledger_id: int, first_entry_id: int,
                     count: int) -> defer.Deferred[bytes]:
        return self.node.list_entries(ledger_id, first_entry_id, count)

    def close(self) -> defer.Deferred[None]:
        return defer.succeed(None)


class _PendingRequest:
    __slots__ = ("request", "result", "deadline", "sent")

    def __init__(self, request: Request, result: defer.Deferred, deadline: float) -> None:
        self.request = request
        self.result = result
        self.deadline = deadline
        self.sent = False


@implementer(IPushProducer)
class _ClientConnection(Protocol):
    """One TCP connection: handshake, then frames in and out for the client.

    The connection is its transport's producer: requests are written while the transport's
    buffer has room and otherwise wait here, not yet encoded (an entry's parts not yet
    joined). Handed several large frames at once, Twisted concatenates them (with whatever
    is still unsent) into one new buffer before sending, copying megabytes again and again;
    written one at a time as the buffer empties, each frame is joined once, by us.
    """

    def __init__(self, client: RemoteStorageNodeClient) -> None:
        self._client = client
        self._reader = FrameReader()
        self._unsent: deque[tuple[int, Request]] = deque()
        self._paused = False
        self.version: int | None = None
        self.ready: defer.Deferred[_ClientConnection] = defer.Deferred()
        self.lost: defer.Deferred[None] = defer.Deferred()

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        self.transport.registerProducer(self, True)
        self.transport.write(encode_request(
            0, _HANDSHAKE_REQUEST_ID, HandshakeRequest(min(SUPPORTED_VERSIONS),
                                                       max(SUPPORTED_VERSIONS))))

    def dataReceived(self, data: bytes) -> None:
        try:
            for frame in self._reader.feed(data):
                response = decode_response(frame)
                if self.version is None:
                    self._handshake_answered(response)
                else:
                    self._client._response(response)
        except ProtocolError as error:
            self._client._protocol_failed(self, error)

    def _handshake_answered(self, response: Any) -> None:
        if response.op != Op.HANDSHAKE or response.request_id != _HANDSHAKE_REQUEST_ID:
            raise ProtocolError(f"expected the handshake answer, got op {response.op}")
        if response.status != Status.OK:
            raise ProtocolError(f"handshake refused: {response.message}")
        if response.value not in SUPPORTED_VERSIONS:
            raise ProtocolError(f"node chose protocol version {response.value}, "
                                f"which this client does not speak")
        self.version = response.value
        self.ready.callback(self)

    def send(self, request_id: int, request: Request) -> None:
        if self._paused or self._unsent:
            self._unsent.append((request_id, request))
        else:
            self.transport.write(encode_request(self.version, request_id, request))

    # IPushProducer: the transport pauses us when its buffer is full, resumes us once empty.

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        while self._unsent and not self._paused:
            request_id, request = self._unsent.popleft()
            if self._client._is_pending(request_id):  # not timed out or cancelled meanwhile
                self.transport.write(encode_request(self.version, request_id, request))

    def stopProducing(self) -> None:
        self._unsent.clear()  # the connection is going: connectionLost fails the requests

    def close(self) -> None:
        """Close once what was written is sent. (A registered producer must go first: with
        it paused, Twisted would resume it when the buffer empties instead of closing.)"""
        self._unsent.clear()
        self.transport.unregisterProducer()
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure) -> None:
        self._unsent.clear()
        if not self.ready.called:
            self.ready.errback(reason)
        self._client._connection_lost(self, reason)
        self.lost.callback(None)


class RemoteStorageNodeClient:
    """A storage node reached over TCP at `address` ("host:port")."""

    def __init__(self, address: str, *, connect_timeout: float = 5.0,
                 request_timeout: float = 30.0, reactor=None) -> None:
        if reactor is None:
            from twisted.internet import reactor
        self.address = address
        self._host, self._port = split_address(address)
        self._reactor = reactor
        self._connect_timeout = connect_timeout
        self._request_timeout = request_timeout
        self._connection: _ClientConnection | None = None  # set once the handshake is done
        self._connecting: defer.Deferred | None = None
        self._pending: dict[int, _PendingRequest] = {}
        self._next_request_id = 1
        self._expiry_check: IDelayedCall | None = None
        self._closed = False

    # --- the StorageNodeClient interface ------------------------------------------------------

    def add_entry(self, ledger_id: int, entry_id: int, last_add_confirmed: int,
                  payload: Payload, *, recovery: bool = False) -> defer.Deferred[None]:
        return self._call(AddEntryRequest(ledger_id, entry_id, last_add_confirmed, recovery,
                                          payload))

    def read_entry(self, ledger_id: int, entry_id: int, *,
                   fence: bool = False) -> defer.Deferred[bytes]:
        return self._call(ReadEntryRequest(ledger_id, entry_id, fence))

    def read_last_add_confirmed(self, ledger_id: int, *,
                                fence: bool = False) -> defer.Deferred[LacResult]:
        return self._call(ReadLacRequest(ledger_id, fence)).addCallback(
            lambda value: LacResult(*value))

    def delete_ledger(self, ledger_id: int) -> defer.Deferred[None]:
        return self._call(DeleteLedgerRequest(ledger_id))

    def list_entries(self, ledger_id: int, first_entry_id: int,
                     count: int) -> defer.Deferred[bytes]:
        return self._call(ListEntriesRequest(ledger_id, first_entry_id, count))

    def close(self) -> defer.Deferred[None]:
        """Fail whatever is pending and drop the connection."""
        self._closed = True
        self._fail_all(NodeUnavailableError(f"client of {self.address} closed"))
        if self._expiry_check is not None:
            self._expiry_check.cancel()
            self._expiry_check = None
        if self._connecting is not None:
            self._connecting.cancel()
        connection = self._connection
        if connection is None:
            return defer.succeed(None)
        connection.close()
        return connection.lost

    # --- requests -------------------------------------------------------------------------------

    def _call(self, request: Request) -> defer.Deferred:
        if self._closed:
            return defer.fail(NodeUnavailableError(f"client of {self.address} is closed"))
        request_id = self._take_request_id()
        result: defer.Deferred = defer.Deferred(lambda _: self._forget(request_id))
        deadline = self._reactor.seconds() + self._request_timeout
        pending = self._pending[request_id] = _PendingRequest(request, result, deadline)
        if self._expiry_check is None:
            self._schedule_expiry_check()
        if self._connection is not None:
            self._send(self._connection, request_id, pending)
        elif self._connecting is None:
            self._connect()
        return result

    def _send(self, connection: _ClientConnection, request_id: int,
              pending: _PendingRequest) -> None:
        pending.sent = True
        needed = minimum_version(pending.request)
        if connection.version is not None and connection.version < needed:
            # An older node would take the unknown op as garbage and drop the connection.
            self._forget(request_id)
            pending.result.errback(InvalidRequestError(
                f"storage node {self.address} speaks protocol version {connection.version}; "
                f"{type(pending.request).__name__} needs version {needed}"))
            return
        connection.send(request_id, pending.request)

    def _take_request_id(self) -> int:
        request_id = self._next_request_id
        self._next_request_id = request_id + 1 if request_id < _MAX_REQUEST_ID else 1
        return request_id

    def _forget(self, request_id: int) -> _PendingRequest | None:
        return self._pending.pop(request_id, None)

    def _is_pending(self, request_id: int) -> bool:
        return request_id in self._pending

    # One timer per client rather than per request: arming and cancelling a timer for each
    # of thousands of requests a second costs more than the request itself.

    def _schedule_expiry_check(self) -> None:
        oldest = next(iter(self._pending.values()))  # requests expire in the order they started
        delay = max(0.0, oldest.deadline - self._reactor.seconds())
        self._expiry_check = self._reactor.callLater(delay, self._expire_requests)

    def _expire_requests(self) -> None:
        self._expiry_check = None
        now = self._reactor.seconds()
        while self._pending:
            request_id, pending = next(iter(self._pending.items()))
            if pending.deadline > now:
                break
            del self._pending[request_id]
            pending.result.errback(NodeUnavailableError(
                f"storage node {self.address} did not answer "
                f"{type(pending.request).__name__} within {self._request_timeout} s"))
        if self._pending:
            self._schedule_expiry_check()

    def _response(self, response: Any) -> None:
        pending = self._forget(response.request_id)
        if pending is None:
            return  # answered after it timed out or was cancelled
        if response.status == Status.OK:
            pending.result.callback(response.value)
        else:
            pending.result.errback(error_of_status(response.status, response.message))

    def _fail_all(self, error: Exception) -> None:
        for request_id in list(self._pending):
            self._forget(request_id).result.errback(error)

    # --- the connection -------------------------------------------------------------------------

    def _connect(self) -> None:
        endpoint = HostnameEndpoint(self._reactor, self._host, self._port,
                                    timeout=self._connect_timeout)
        connection = _ClientConnection(self)
        attempt = connectProtocol(endpoint, connection)
        attempt.addCallback(lambda _: connection.ready)
        handshake_timer = self._reactor.callLater(self._connect_timeout, attempt.cancel)
        self._connecting = attempt

        def connected(_: object) -> None:
            handshake_timer.cancel()
            self._connecting = None
            self._connection = connection
            for request_id, pending in list(self._pending.items()):
                if not pending.sent:
                    self._send(connection, request_id, pending)

        def failed(failure: Failure) -> None:
            if handshake_timer.active():
                handshake_timer.cancel()
            self._connecting = None
            if connection.transport is not None:
                connection.transport.abortConnection()
            self._fail_all(NodeUnavailableError(
                f"cannot connect to storage node {self.address}: {failure.getErrorMessage()}"))

        attempt.addCallbacks(connected, failed)

    def _connection_lost(self, connection: _ClientConnection, reason: Failure) -> None:
        if self._connection is connection:
            self._connection = None
            # While connected every request is sent at once, so this fails them all; the
            # next request opens a new connection.
            self._fail_all(NodeUnavailableError(
                f"connection to storage node {self.address} lost: {reason.getErrorMessage()}"))

    def _protocol_failed(self, connection: _ClientConnection, error: ProtocolError) -> None:
        log.warning("dropping connection to storage node %s: %s", self.address, error)
        connection.transport.abortConnection()
