"""Runs consumer-group members the way applications do: each on its own thread, polling
continuously, so a scenario can wait for assignments and records from the outside.

Why threads: a rebalance completes only when every member takes part, and clients
apply a finished join inside their poll call. Polling the members in turn from one
thread leaves each member idle most of the time; kafka-python 3.0.12, for one,
discards a JoinGroup/SyncGroup that completed while its poll was not running and
sends a new JoinGroup, which restarts the rebalance for everyone (the group then
never settles). One thread per member removes that artefact of the test harness.

A member object is only ever used by one thread at a time: its own thread polls it,
and anything else a scenario wants from it (commit chosen offsets, read committed
offsets) is handed to that thread with `GroupWatch.call` and run between two polls.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from compat_tests.clients.base import DEFAULT_WAIT_SECONDS, Member
from compat_tests.model import CheckFailed, Record
from compat_tests.waiting import WaitTimeout, wait_until

T = TypeVar("T")

REBALANCE_SECONDS = 30.0
POLL_SECONDS = 0.1
_WATCH_INTERVAL_SECONDS = 0.05


class MemberFailed(Exception):
    """A member's poll loop raised; the scenario fails with the member's own error."""


class MemberThread:
    """One member polling on its own thread; keeps what it consumed and its assignment."""

    def __init__(self, name: str, member: Member) -> None:
        self.name = name
        self.member = member
        self._lock = threading.Lock()
        self._records: list[Record] = []
        self._assignment: set[int] = set()
        self._error: BaseException | None = None
        self._calls: queue.SimpleQueue[tuple[Callable[[Member], Any], Future[Any]]] = (
            queue.SimpleQueue()
        )
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"member-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stopping.is_set():
                self._serve_calls()
                records = self.member.poll(POLL_SECONDS)
                if records:
                    # Commit what was consumed before anyone can see it counted, so a
                    # scenario that waits for N records also knows they are committed.
                    self.member.commit()
                assignment = self.member.assignment()
                with self._lock:
                    self._records.extend(records)
                    self._assignment = assignment
        except BaseException as exc:  # reported to the scenario through snapshot()
            with self._lock:
                self._error = exc
        finally:
            self._fail_pending_calls()

    def _serve_calls(self) -> None:
        while True:
            try:
                function, future = self._calls.get_nowait()
            except queue.Empty:
                return
            try:
                future.set_result(function(self.member))
            except BaseException as exc:  # the caller re-raises it
                future.set_exception(exc)

    def _fail_pending_calls(self) -> None:
        while True:
            try:
                _function, future = self._calls.get_nowait()
            except queue.Empty:
                return
            future.set_exception(MemberFailed(f"member {self.name} stopped before the call ran"))

    def call(self, function: Callable[[Member], T]) -> T:
        """Runs `function(member)` on the member's thread between two polls."""
        future: Future[T] = Future()
        self._calls.put((function, future))
        if not self._thread.is_alive():
            self._fail_pending_calls()
        return future.result(timeout=DEFAULT_WAIT_SECONDS)

    def snapshot(self) -> tuple[list[Record], set[int]]:
        """(records consumed so far, current assignment); raises the member's error."""
        with self._lock:
            if self._error is not None:
                raise MemberFailed(
                    f"member {self.name}: {type(self._error).__name__}: {self._error}"
                ) from self._error
            return list(self._records), set(self._assignment)

    def stop(self) -> None:
        """Stops polling, then closes the member (LeaveGroup) from the calling thread."""
        self._stopping.set()
        self._thread.join(timeout=DEFAULT_WAIT_SECONDS)
        if self._thread.is_alive():
            raise MemberFailed(f"member {self.name} did not stop polling")
        self.member.close()


class GroupWatch:
    """The members of one group, each on its own thread, watched from the scenario."""

    def __init__(self) -> None:
        self.threads: dict[str, MemberThread] = {}
        self._left: dict[str, list[Record]] = {}  # what members that left had consumed

    def add(self, name: str, member: Member) -> None:
        self.threads[name] = MemberThread(name, member)

    def remove(self, name: str) -> None:
        thread = self.threads.pop(name)
        try:
            self._left[name] = thread.snapshot()[0]
        finally:
            thread.stop()

    def close_all(self) -> None:
        first_error: BaseException | None = None
        for name in list(self.threads):
            try:
                self.remove(name)
            except Exception as exc:  # close every member even if one fails
                first_error = first_error or exc
        if first_error is not None:
            raise first_error

    def call(self, name: str, function: Callable[[Member], T]) -> T:
        return self.threads[name].call(function)

    def consumed(self) -> dict[str, list[Record]]:
        """Records consumed by each member, including members that have left."""
        current = {name: thread.snapshot()[0] for name, thread in self.threads.items()}
        return {**self._left, **current}

    def assignments(self) -> dict[str, set[int]]:
        return {name: thread.snapshot()[1] for name, thread in self.threads.items()}

    def wait_for_balanced(self, partitions: int, what: str) -> dict[str, set[int]]:
        """Until every member owns at least one partition and together they own each
        partition exactly once."""

        def balanced() -> dict[str, set[int]] | None:
            assignments = self.assignments()
            owned = sorted(p for parts in assignments.values() for p in parts)
            if owned == list(range(partitions)) and all(assignments.values()):
                return assignments
            return None

        try:
            return wait_until(balanced, REBALANCE_SECONDS, what, _WATCH_INTERVAL_SECONDS)
        except WaitTimeout:
            raise CheckFailed(
                f"{what}: no balanced assignment after {REBALANCE_SECONDS:g} s: "
                f"{self.assignments()}"
            ) from None

    def wait_for_total(
        self, count: int, what: str, members: list[str] | None = None
    ) -> dict[str, list[Record]]:
        """Until the members (all, or those named) together consumed at least `count`
        records; returns what every member consumed."""

        def enough() -> dict[str, list[Record]] | None:
            consumed = self.consumed()
            counted = [len(consumed[n]) for n in consumed if members is None or n in members]
            return consumed if sum(counted) >= count else None

        try:
            return wait_until(enough, REBALANCE_SECONDS, what, _WATCH_INTERVAL_SECONDS)
        except WaitTimeout:
            got = {name: len(records) for name, records in self.consumed().items()}
            raise CheckFailed(f"{what}: expected {count} records, consumed {got}") from None
