"""Differential test: random operation sequences give the same answers from the embedded
store, the ZooKeeper store and a plain in-memory model of the contract.

Seeded, so a failure names the seed and the step that disagreed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest
import pytest_twisted

from storage.metadata import (
    BadVersionError,
    MetadataStore,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    Versioned,
    open_metadata_store,
)
from storage.metadata.paths import ROOT, children_prefix, parent_of

PATHS = ["/a", "/a/b", "/a/b/c", "/a/d", "/e", "/e/f"]
STEPS = 250


@dataclass
class _Node:
    value: bytes
    version: int
    ephemeral: bool


class Model:
    """The contract in a few lines: a dict of nodes (no sessions, no watches)."""

    def __init__(self) -> None:
        self.nodes: dict[str, _Node] = {ROOT: _Node(b"", 0, False)}

    def get(self, path: str) -> Versioned | None:
        node = self.nodes.get(path)
        return None if node is None else Versioned(node.value, node.version)

    def children(self, path: str) -> list[str]:
        prefix = children_prefix(path)
        return sorted(
            other[len(prefix) :]
            for other in self.nodes
            if other != ROOT and parent_of(other) == path
        )

    def create(self, path: str, value: bytes, ephemeral: bool) -> str:
        if path in self.nodes:
            raise NodeExistsError(path)
        ancestor = parent_of(path)
        missing = []
        while ancestor not in self.nodes:
            missing.append(ancestor)
            ancestor = parent_of(ancestor)
        if self.nodes[ancestor].ephemeral:
            raise NoChildrenForEphemeralsError(path)
        for parent in missing:
            self.nodes[parent] = _Node(b"", 0, False)
        self.nodes[path] = _Node(value, 0, ephemeral)
        return path

    def _checked(self, path: str, expected_version: int | None) -> _Node:
        node = self.nodes.get(path)
        if node is None:
            raise NoNodeError(path)
        if expected_version is not None and node.version != expected_version:
            raise BadVersionError(path)
        return node

    def set(self, path: str, value: bytes, expected_version: int | None) -> int:
        node = self._checked(path, expected_version)
        node.value, node.version = value, node.version + 1
        return node.version

    def delete(self, path: str, expected_version: int | None, recursive: bool) -> None:
        self._checked(path, expected_version)
        descendants = [other for other in self.nodes if other.startswith(path + "/")]
        if descendants and not recursive:
            raise NotEmptyError(path)
        for other in [*descendants, path]:
            del self.nodes[other]


def random_operation(rng: random.Random, model: Model) -> tuple[str, tuple]:
    path = rng.choice(PATHS)
    current = model.nodes.get(path)
    version = rng.choice([None, current.version if current else 0, rng.randrange(3)])
    kind = rng.choices(["get", "children", "create", "set", "delete"], [2, 2, 4, 3, 2])[0]
    if kind in ("get", "children"):
        return kind, (path,)
    if kind == "create":
        return kind, (path, rng.randbytes(rng.randrange(8)), rng.random() < 0.2)
    if kind == "set":
        return kind, (path, rng.randbytes(rng.randrange(8)), version)
    return kind, (path, version, rng.random() < 0.5)


async def run_on_store(store: MetadataStore, kind: str, arguments: tuple) -> object:
    if kind == "create":
        path, value, ephemeral = arguments
        return await store.create(path, value, ephemeral=ephemeral)
    if kind == "set":
        path, value, version = arguments
        return await store.set(path, value, expected_version=version)
    if kind == "delete":
        path, version, recursive = arguments
        return await store.delete(path, expected_version=version, recursive=recursive)
    return await getattr(store, kind)(*arguments)


def run_on_model(model: Model, kind: str, arguments: tuple) -> object:
    return getattr(model, kind)(*arguments)


def outcome_of(call) -> tuple[str, object]:
    try:
        return ("ok", call())
    except Exception as error:
        return ("error", type(error).__name__)


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest_twisted.ensureDeferred
async def test_both_stores_agree_with_the_model(seed, tmp_path, zookeeper_url):
    rng = random.Random(seed)
    model = Model()
    stores = {
        "embedded": open_metadata_store(tmp_path / "metadata"),
        "zookeeper": open_metadata_store(zookeeper_url),
    }
    try:
        for step in range(STEPS):
            kind, arguments = random_operation(rng, model)
            expected = outcome_of(lambda: run_on_model(model, kind, arguments))  # noqa: B023
            for name, store in stores.items():
                try:
                    actual = ("ok", await run_on_store(store, kind, arguments))
                except Exception as error:
                    actual = ("error", type(error).__name__)
                assert actual == expected, f"seed {seed} step {step}: {kind}{arguments} on {name}"
        for path in PATHS:
            for store in stores.values():
                assert await store.get(path) == model.get(path)
    finally:
        for store in stores.values():
            await store.close()
