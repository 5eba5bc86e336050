"""Incremental fetch sessions (KIP-227), without any I/O.

A consumer that fetches many partitions sends the full list once (session epoch 0) and is
given a session id; later fetches (epoch 1, 2, ...) name only the partitions whose fetch
position changed plus those to forget, and the response carries only the partitions with
something new (records, a moved high watermark / last stable offset / log start, or an
error). Epoch -1 closes the session and asks for a full, sessionless fetch.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from kop.errors import KafkaError
from wire.generated.error_codes import ErrorCode

INITIAL_EPOCH = 0
FINAL_EPOCH = -1
MAX_EPOCH = 2**31 - 1


def next_epoch(epoch: int) -> int:
    return 1 if epoch >= MAX_EPOCH else epoch + 1


@dataclass
class FetchTarget:
    """One partition to fetch, and what the client was last told about it."""

    topic: str
    topic_id: uuid.UUID
    partition: int
    fetch_offset: int
    max_bytes: int
    current_leader_epoch: int = -1
    sent_high_watermark: int = -2
    sent_last_stable_offset: int = -2
    sent_log_start_offset: int = -2

    def remember_sent(self, high_watermark: int, last_stable: int, log_start: int) -> bool:
        """Record what a response says; True if it differs from what was last sent."""
        changed = (high_watermark, last_stable, log_start) != (
            self.sent_high_watermark, self.sent_last_stable_offset, self.sent_log_start_offset)
        self.sent_high_watermark = high_watermark
        self.sent_last_stable_offset = last_stable
        self.sent_log_start_offset = log_start
        return changed


@dataclass
class FetchSession:
    session_id: int
    epoch: int  # the epoch the next request must carry
    targets: OrderedDict[tuple[str, int], FetchTarget]
    last_used: float


class FetchSessionCache:
    def __init__(self, max_sessions: int = 1000, idle_seconds: float = 120.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._sessions: OrderedDict[int, FetchSession] = OrderedDict()
        self._max_sessions = max_sessions
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, targets: list[FetchTarget]) -> FetchSession | None:
        """A new session over `targets`, or None when the cache is full of busy sessions."""
        self._evict_idle()
        if len(self._sessions) >= self._max_sessions:
            return None
        session_id = next(self._ids)
        if session_id >= 2**31 - 1:
            self._ids = itertools.count(1)
            session_id = next(self._ids)
        session = FetchSession(
            session_id, next_epoch(INITIAL_EPOCH),
            OrderedDict(((t.topic, t.partition), t) for t in targets), self._clock())
        self._sessions[session_id] = session
        return session

    def remove(self, session_id: int) -> None:
        self._sessions.pop(session_id, None)

    def resume(self, session_id: int, epoch: int) -> FetchSession:
        """The session an incremental fetch continues, checking its epoch."""
        session = self._sessions.get(session_id)
        if session is None:
            raise KafkaError(ErrorCode.FETCH_SESSION_ID_NOT_FOUND,
                             f"fetch session {session_id} not found")
        if epoch != session.epoch:
            raise KafkaError(ErrorCode.INVALID_FETCH_SESSION_EPOCH,
                             f"fetch session {session_id} expected epoch {session.epoch}, got {epoch}")
        session.epoch = next_epoch(epoch)
        session.last_used = self._clock()
        self._sessions.move_to_end(session_id)
        return session

    def _evict_idle(self) -> None:
        deadline = self._clock() - self._idle_seconds
        while self._sessions:
            oldest = next(iter(self._sessions.values()))
            if oldest.last_used > deadline:
                break
            self._sessions.popitem(last=False)


def update_session(session: FetchSession, changed: list[FetchTarget],
                   forgotten: list[tuple[str, int]]) -> None:
    """Apply an incremental request: changed/added partitions, then forgotten ones."""
    for target in changed:
        key = (target.topic, target.partition)
        known = session.targets.get(key)
        if known is None:
            session.targets[key] = target
        else:
            known.fetch_offset = target.fetch_offset
            known.max_bytes = target.max_bytes
            known.current_leader_epoch = target.current_leader_epoch
    for key in forgotten:
        session.targets.pop(key, None)
