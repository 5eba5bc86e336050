"""The Kafka listener: framing, dispatch, in-order responses, backpressure, idle timeout.

One `KafkaConnection` per client socket. Requests are pipelined: each decoded request takes
a slot in a queue, its handler may answer at once or later (a Deferred), and responses are
written strictly in request order. An acks=0 produce holds its slot and writes nothing.

Backpressure: while a connection has too many unanswered requests, or too many response
bytes the client has not read, kop stops reading from its socket until it drains.

Bad input closes only the offending connection, with one log line, as Kafka does: a malformed
frame, an unknown API key, or an unsupported version of anything but ApiVersions (which is
answered with UNSUPPORTED_VERSION and the supported ranges, in v0 form, so the client can
downgrade).
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IPushProducer
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from kop.handlers import REGISTRY
from kop.handlers.api_versions import API_VERSIONS_KEY, api_versions_response
from kop.handlers.registry import HandlerRegistry
from wire.errors import DecodeError, EncodeError, UnknownApiError, UnsupportedVersionError
from wire.framing import FrameSplitter
from wire.generated.error_codes import ErrorCode
from wire.protocol import RequestHeader, decode_request, encode_response

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ConnectionLimits:
    max_frame_bytes: int = 100 * 1024 * 1024  # Kafka's socket.request.max.bytes
    max_inflight_requests: int = 128
    idle_timeout_seconds: float = 600.0  # Kafka's connections.max.idle.ms


@dataclass
class RequestContext:
    """What a handler knows about the request besides its body."""

    header: RequestHeader
    broker: Any
    connection: KafkaConnection

    @property
    def api_version(self) -> int:
        return self.header.api_version


class _Slot:
    __slots__ = ("header", "done", "payload")

    def __init__(self, header: RequestHeader) -> None:
        self.header = header
        self.done = False
        self.payload: bytes | None = None


@implementer(IPushProducer)
class KafkaConnection(protocol.Protocol, TimeoutMixin):
    def __init__(self, broker: Any, limits: ConnectionLimits,
                 registry: HandlerRegistry = REGISTRY) -> None:
        self.broker = broker
        self.limits = limits
        self.registry = registry
        self._splitter = FrameSplitter(limits.max_frame_bytes)
        self._slots: deque[_Slot] = deque()
        self._reading_paused_for = set[str]()
        self._closed = False
        self.peer = "?"

    # -- connection lifecycle -------------------------------------------------------------

    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.peer = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        # Told when the client stops reading our responses (the write buffer fills).
        self.transport.registerProducer(self, True)
        self.setTimeout(self.limits.idle_timeout_seconds)

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self._closed = True
        self.setTimeout(None)
        self._slots.clear()

    def timeoutConnection(self) -> None:
        log.info("closing idle connection from %s", self.peer)
        self.transport.loseConnection()

    def close_for_bad_input(self, why: str) -> None:
        if self._closed:
            return
        log.warning("closing connection from %s: %s", self.peer, why)
        self._closed = True
        self.transport.abortConnection()

    # -- reading --------------------------------------------------------------------------

    def dataReceived(self, data: bytes) -> None:
        if self._closed:
            return
        self.resetTimeout()
        try:
            self._splitter.feed(data)
            for frame in self._splitter.frames():
                self._handle_frame(frame)
                if self._closed:
                    return
        except DecodeError as exc:
            self.close_for_bad_input(str(exc))

    def _handle_frame(self, frame: bytes | memoryview) -> None:
        try:
            header, request = decode_request(frame)
        except UnsupportedVersionError as exc:
            header = exc.header
            if header is not None and header.api_key == API_VERSIONS_KEY:
                self._answer_unsupported_api_versions(header)
                return
            self.close_for_bad_input(str(exc))
            return
        except UnknownApiError as exc:
            self.close_for_bad_input(str(exc))
            return
        except DecodeError as exc:
            self.close_for_bad_input(f"malformed request: {exc}")
            return

        handler = self.registry.get(header.api_key)
        if handler is None or not handler.supports(header.api_version):
            if header.api_key == API_VERSIONS_KEY:
                self._answer_unsupported_api_versions(header)
                return
            self.close_for_bad_input(
                f"unsupported request: api key {header.api_key} version {header.api_version}"
            )
            return

        slot = _Slot(header)
        self._slots.append(slot)
        context = RequestContext(header, self.broker, self)
        try:
            result = handler.func(context, request)
        except Exception:
            log.exception("handler for %s v%d failed", handler.name, header.api_version)
            self.close_for_bad_input(f"internal error in {handler.name}")
            return
        if isinstance(result, defer.Deferred):
            result.addCallbacks(
                lambda response: self._complete(slot, response),
                lambda failure: self._handler_failed(slot, handler.name, failure),
            )
        else:
            self._complete(slot, result)
        self._update_read_pause()

    def _answer_unsupported_api_versions(self, header: RequestHeader) -> None:
        # Kafka answers in v0 form so that any client can read the supported ranges.
        slot = _Slot(header)
        self._slots.append(slot)
        response = api_versions_response(self.registry, ErrorCode.UNSUPPORTED_VERSION)
        self._complete(slot, response, response_version=0)

    def _handler_failed(self, slot: _Slot, name: str, failure: Failure) -> None:
        log.error("handler for %s failed: %s", name, failure.getTraceback())
        self.close_for_bad_input(f"internal error in {name}")

    # -- writing, in order ------------------------------------------------------------------

    def _complete(self, slot: _Slot, response: Any, response_version: int | None = None) -> None:
        if self._closed:
            return
        if response is not None:
            header = slot.header
            version = header.api_version if response_version is None else response_version
            try:
                slot.payload = encode_response(header.correlation_id, header.api_key, version,
                                               response)
            except EncodeError:
                log.exception("cannot encode the response to api %d v%d", header.api_key, version)
                self.close_for_bad_input("internal error encoding a response")
                return
        slot.done = True
        slots = self._slots
        while slots and slots[0].done:
            payload = slots.popleft().payload
            if payload is not None:
                self.transport.write(payload)
        self._update_read_pause()

    # -- backpressure -----------------------------------------------------------------------

    def _update_read_pause(self) -> None:
        self._set_read_pause("inflight", len(self._slots) >= self.limits.max_inflight_requests)

    def _set_read_pause(self, reason: str, paused: bool) -> None:
        if self._closed:
            return
        was_paused = bool(self._reading_paused_for)
        if paused:
            self._reading_paused_for.add(reason)
        else:
            self._reading_paused_for.discard(reason)
        now_paused = bool(self._reading_paused_for)
        if now_paused and not was_paused:
            self.transport.pauseProducing()
        elif was_paused and not now_paused:
            self.transport.resumeProducing()

    # IPushProducer: the transport calls these when its write buffer fills and drains.
    def pauseProducing(self) -> None:
        self._set_read_pause("client-not-reading", True)

    def resumeProducing(self) -> None:
        self._set_read_pause("client-not-reading", False)

    def stopProducing(self) -> None:
        self._closed = True


class KafkaServerFactory(protocol.Factory):
    def __init__(self, broker: Any, limits: ConnectionLimits | None = None,
                 registry: HandlerRegistry = REGISTRY) -> None:
        self.broker = broker
        self.limits = limits or ConnectionLimits()
        self.registry = registry

    def buildProtocol(self, addr: Any) -> KafkaConnection:
        return KafkaConnection(self.broker, self.limits, self.registry)
