"""Small Deferred helpers shared by the gateway."""

from __future__ import annotations

from typing import TypeVar

from twisted.internet import defer
from twisted.python.failure import Failure

T = TypeVar("T")


def follow(source: defer.Deferred[T]) -> defer.Deferred[T]:
    """A new Deferred that fires with `source`'s result, leaving `source`'s chain untouched.

    Lets several waiters share one operation (an open in progress, an append in flight)
    without one waiter's callbacks changing what the others see.
    """
    follower: defer.Deferred[T] = defer.Deferred()

    def relay(result: T | Failure) -> T | Failure:
        if isinstance(result, Failure):
            follower.errback(result)
        else:
            follower.callback(result)
        return result

    source.addBoth(relay)
    return follower
