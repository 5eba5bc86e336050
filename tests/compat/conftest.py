"""Fixtures for the compatibility suite's own tests: real brokers (Tansu, the independent
reference, and kop standalone), plain and behind the faulty proxy."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from compat_tests.brokers import Broker, BrokerStartError, free_port
from tests.compat.faulty_proxy import FETCH, PRODUCE, FaultyProxy


def _start(kind: str, advertised_port: int | None = None) -> Broker:
    try:
        return Broker(kind, advertised_port=advertised_port).start()
    except BrokerStartError as exc:
        if kind == "tansu":  # an optional reference (the bench extra); kop must start
            pytest.skip(f"Tansu unavailable: {exc}")
        raise


@dataclass
class ProxiedBroker:
    broker: Broker
    proxy: FaultyProxy

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.proxy.port}"

    @property
    def dropped(self) -> int:
        return self.proxy.dropper.dropped


def _proxied(kind: str, fault: str) -> Iterator[ProxiedBroker]:
    proxy_port = free_port()
    broker = _start(kind, advertised_port=proxy_port)  # clients are sent to the proxy
    proxy = FaultyProxy(broker.port, fault, listen_port=proxy_port)
    yield ProxiedBroker(broker, proxy)
    proxy.close()
    broker.stop()


@pytest.fixture(scope="session")
def tansu() -> Iterator[Broker]:
    broker = _start("tansu")
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def kop() -> Iterator[Broker]:
    broker = _start("kop")
    yield broker
    broker.stop()


@pytest.fixture(scope="session")
def tansu_dropping_produced_batches() -> Iterator[ProxiedBroker]:
    yield from _proxied("tansu", PRODUCE)


@pytest.fixture(scope="session")
def kop_dropping_fetched_batches() -> Iterator[ProxiedBroker]:
    yield from _proxied("kop", FETCH)
