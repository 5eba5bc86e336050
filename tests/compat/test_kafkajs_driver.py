"""The kafkajs driver protocol: bad requests get clear errors and lose nothing, a dead
driver fails its callers at once, and what kafkajs cannot express is named.

These need Node.js and kafkajs (scripts/install-deps) but no broker: the requests
used here are answered without connecting.
"""

from __future__ import annotations

import json

import pytest

from compat_tests.clients import unavailable_reason
from compat_tests.clients.kafkajs import Driver, KafkajsClient, KafkajsFailed
from compat_tests.model import Record
from compat_tests.waiting import Deadline

pytestmark = pytest.mark.skipif(
    unavailable_reason("kafkajs") is not None, reason=str(unavailable_reason("kafkajs"))
)

NOBODY = "127.0.0.1:1"  # never connected to by these requests


@pytest.fixture
def driver():
    started = Driver(NOBODY)
    yield started
    started.close()


def test_unknown_operation_is_an_error_and_the_driver_keeps_serving(driver):
    with pytest.raises(KafkajsFailed, match="unknown op teleport"):
        driver.call("teleport")
    with pytest.raises(KafkajsFailed, match="no member nobody"):
        driver.call("memberAssignment", member="nobody")


def test_a_line_that_is_not_json_does_not_stop_the_driver(driver):
    assert driver.process.stdin is not None
    driver.process.stdin.write(b"{this is not json\n")
    driver.process.stdin.flush()
    with pytest.raises(KafkajsFailed, match="no member x"):
        driver.call("memberAssignment", member="x")
    assert driver.process.poll() is None


def test_a_dead_driver_fails_waiting_and_later_calls_at_once(driver):
    driver.process.kill()
    deadline = Deadline(10)
    with pytest.raises(KafkajsFailed):
        driver.call("memberAssignment", member="x")
    with pytest.raises(KafkajsFailed):
        driver.call("memberAssignment", member="x")
    assert not deadline.expired()


def test_shutdown_ends_the_driver(driver):
    driver.close()
    assert driver.process.returncode == 0


def test_an_answer_nobody_waits_for_is_dropped(driver):
    assert driver.process.stdin is not None
    driver.process.stdin.write(json.dumps({"id": 41, "op": "teleport"}).encode() + b"\n")
    driver.process.stdin.flush()
    with pytest.raises(KafkajsFailed, match="unknown op again"):
        driver.call("again")


@pytest.mark.parametrize(
    "headers, expressible",
    [
        ((("a", b"1"), ("a", b"2"), ("b", b"3")), True),
        ((("a", b"1"), ("b", b"2"), ("a", b"3")), False),  # a name comes back
        ((("7", b"1"),), False),  # JavaScript orders integer-like keys first
        ((), True),
    ],
)
def test_header_orders_kafkajs_cannot_keep_are_named(headers, expressible):
    reason = KafkajsClient(NOBODY).cannot_produce(Record(b"k", b"v", headers))
    assert (reason is None) == expressible
