"""Fixtures shared by every test area."""

from tests.zookeeper import make_zookeeper_server, zookeeper_server, zookeeper_url

__all__ = ["make_zookeeper_server", "zookeeper_server", "zookeeper_url"]
