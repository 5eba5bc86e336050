"""Fixtures for the compatibility suite's own tests: real Tansu brokers, one plain and
one behind the batch-dropping proxy."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from compat_tests.brokers import Broker, BrokerStartError, free_port
from tests.compat.batch_dropping_proxy import BatchDroppingProxy


def _tansu(advertised_port: int | None = None) -> Broker:
    try:
        return Broker("tansu", advertised_port=advertised_port).start()
    except BrokerStartError as exc:
        pytest.skip(f"Tansu unavailable: {exc}")


@pytest.fixture(scope="session")
def tansu() -> Iterator[Broker]:
    broker = _tansu()
    yield broker
    broker.stop()


@dataclass
class ProxiedBroker:
    broker: Broker
    proxy: BatchDroppingProxy

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.proxy.port}"


@pytest.fixture(scope="session")
def tansu_behind_dropping_proxy() -> Iterator[ProxiedBroker]:
    proxy_port = free_port()
    broker = _tansu(advertised_port=proxy_port)  # clients are sent to the proxy
    proxy = BatchDroppingProxy(broker.port, listen_port=proxy_port)
    yield ProxiedBroker(broker, proxy)
    proxy.close()
    broker.stop()
