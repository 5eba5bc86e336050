"""Deadlines: every wait in the suite polls a condition until a deadline, never sleeps blind."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expires_at = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self.expires_at - time.monotonic())

    def expired(self) -> bool:
        return time.monotonic() >= self.expires_at


class WaitTimeout(TimeoutError):
    """A condition did not become true before its deadline."""


def wait_until(
    condition: Callable[[], T | None],
    seconds: float,
    what: str,
    interval: float = 0.05,
) -> T:
    """Calls `condition` until it returns something truthy; returns that, or raises WaitTimeout."""
    deadline = Deadline(seconds)
    while True:
        result = condition()
        if result:
            return result
        if deadline.expired():
            raise WaitTimeout(f"timed out after {seconds:g} s waiting for {what}")
        time.sleep(min(interval, deadline.remaining()))
