"""The clients under test, each pinned, each behind the same adapter interface.

Adapters are imported lazily: a cell imports only the library it tests, and a
missing optional tool (kcat, Node.js) makes only that client unavailable.
"""

from __future__ import annotations

import importlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from compat_tests.clients.base import Client

NODE_DIR = Path(__file__).resolve().parent.parent / "node"


@dataclass(frozen=True)
class ClientInfo:
    name: str
    adapter: str  # "module:Class"
    pinned: str  # what the suite was written against

    def load(self, bootstrap: str) -> Client:
        module_name, class_name = self.adapter.split(":")
        adapter_class = getattr(importlib.import_module(module_name), class_name)
        return adapter_class(bootstrap)


CLIENTS: dict[str, ClientInfo] = {
    info.name: info
    for info in [
        ClientInfo("kafka-python", "compat_tests.clients.kafka_python:KafkaPythonClient", "3.0.12"),
        ClientInfo("aiokafka", "compat_tests.clients.aiokafka_client:AIOKafkaClient", "0.14.0"),
        ClientInfo(
            "confluent-kafka",
            "compat_tests.clients.confluent:ConfluentClient",
            "2.16.1 (librdkafka 2.16)",
        ),
        ClientInfo("kcat", "compat_tests.clients.kcat:KcatClient", "1.7.1 (librdkafka 2.0.2)"),
        ClientInfo("kafkajs", "compat_tests.clients.kafkajs:KafkajsClient", "2.2.4 (Node.js)"),
    ]
}


def unavailable_reason(name: str) -> str | None:
    """Why a client cannot run on this machine, or None when it can."""
    if name == "kcat" and shutil.which("kcat") is None:
        return "kcat is not installed (Debian package kcat)"
    if name == "kafkajs":
        if shutil.which("node") is None:
            return "Node.js is not installed"
        if not (NODE_DIR / "node_modules" / "kafkajs").is_dir():
            return f"kafkajs is not installed: run `npm install` in {NODE_DIR}"
    return None
