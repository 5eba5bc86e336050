"""Fixtures for tests that drive a real `kop standalone` process with real Kafka clients."""

from __future__ import annotations

import pytest

from kop.process import StandaloneProcess


@pytest.fixture
def kop(tmp_path):
    """A fresh `kop standalone` on a free loopback port; stopped after the test."""
    process = StandaloneProcess(tmp_path / "kop")
    process.start()
    yield process
    if process.running:
        process.kill()


@pytest.fixture
def bootstrap(kop) -> str:
    assert kop.address is not None
    return kop.address
