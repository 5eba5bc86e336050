"""Managed ledger factory unit tests on fakes: names, list, delete, properties."""

from __future__ import annotations

import pytest
import pytest_twisted
from test_managed_ledger import NAME, World, append_all, payloads

from storage.managed_ledger import (
    InvalidNameError,
    ManagedLedgerFencedError,
    ManagedLedgerNotFoundError,
    State,
)


@pytest.fixture
def world() -> World:
    return World()


@pytest_twisted.ensureDeferred
async def test_invalid_names_are_refused_before_touching_anything(world):
    factory = world.factory()
    for bad in ("", "/leading", "trailing/", "a//b", "a/../b", "a/./b", "tab\there", 7):
        with pytest.raises(InvalidNameError):
            await factory.open(bad)
    assert world.store.nodes == {}


@pytest_twisted.ensureDeferred
async def test_list_finds_nested_names_by_prefix(world):
    factory = world.factory()
    names = ["public/default/orders-partition-0", "public/default/orders-partition-1",
             "public/default/payments-partition-0", "public/other/orders-partition-0",
             "public", "tenant2/ns/t"]
    for name in names:
        await factory.open(name)
    assert await factory.list("") == sorted(names)
    assert await factory.list("public/default/orders") == names[:2]
    assert await factory.list("public/default/") == names[:3]
    assert await factory.list("public/") == sorted(names[:4])
    assert await factory.list("pub") == sorted(names[:5])
    assert await factory.list("nothing") == []


@pytest_twisted.ensureDeferred
async def test_delete_removes_metadata_and_ledgers(world):
    factory = world.factory()
    ledger = await factory.open(NAME, None)
    await ledger.open_cursor("c")
    await append_all(ledger, payloads(3))
    ledger_ids = ledger.ledger_ids
    await factory.delete(NAME)
    assert ledger.state is State.CLOSED
    assert await factory.list("") == []
    assert not any(path.startswith("/managed-ledgers/") for path in world.store.nodes)
    assert set(ledger_ids) <= set(world.ledgers.deleted)
    with pytest.raises(ManagedLedgerNotFoundError):
        await factory.delete(NAME)
    fresh = await factory.open(NAME)
    assert fresh.entry_count == 0 and fresh.cursor_names == []


@pytest_twisted.ensureDeferred
async def test_delete_of_a_name_others_nest_under_keeps_them(world):
    factory = world.factory()
    await factory.open("a")
    inner = await factory.open("a/b")
    await inner.append(b"kept", 0)
    await factory.delete("a")
    assert await factory.list("") == ["a/b"]
    assert [e.data for e in await inner.read(inner.first_position, 1)] == [b"kept"]
    await factory.delete("a/b")
    assert await factory.list("") == []


@pytest_twisted.ensureDeferred
async def test_delete_fences_a_writer_in_another_process(world):
    owner = await world.factory().open(NAME)
    await world.factory().delete(NAME)
    with pytest.raises(ManagedLedgerFencedError):
        await owner.set_properties({"k": "v"})


@pytest_twisted.ensureDeferred
async def test_properties_are_durable_and_mergeable(world):
    ledger = await world.factory().open(NAME)
    await ledger.set_properties({"retention.ms": "1000", "owner": "x"})
    await ledger.set_properties({"owner": None, "cleanup": "delete"})
    assert dict(ledger.properties) == {"retention.ms": "1000", "cleanup": "delete"}
    with pytest.raises(TypeError):
        ledger.properties["x"] = "y"
    with pytest.raises(TypeError):
        await ledger.set_properties({"n": 5})
    reopened = await world.factory().open(NAME)
    assert dict(reopened.properties) == {"retention.ms": "1000", "cleanup": "delete"}


@pytest_twisted.ensureDeferred
async def test_factory_close_closes_every_open_ledger(world):
    factory = world.factory()
    first, second = await factory.open("x"), await factory.open("y")
    await factory.close()
    assert first.state is State.CLOSED and second.state is State.CLOSED
