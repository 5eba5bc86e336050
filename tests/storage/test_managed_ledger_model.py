"""Property test: random appends, reopens, truncations, reads and finds on a managed ledger
(over fakes whose Deferreds fire at once) always agree with a plain list of entries."""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st
from test_managed_ledger import NAME, World
from twisted.internet import defer
from twisted.python.failure import Failure

from storage.managed_ledger import ManagedLedgerConfig, Position


def run(coroutine_or_deferred):
    """The result of something the synchronous fakes finish at once."""
    d = defer.ensureDeferred(coroutine_or_deferred)
    results = []
    d.addBoth(results.append)
    assert results, "did not complete synchronously"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.integers(0, 300), st.integers(0, 3)),
        st.tuples(st.just("reopen"), st.integers(0, 1_000), st.booleans()),
        st.tuples(st.just("truncate"), st.integers(0, 10_000), st.none()),
        st.tuples(st.just("read"), st.integers(-2, 10_000), st.integers(0, 1_500)),
        st.tuples(st.just("find"), st.integers(-5, 2_000), st.none()),
        st.tuples(st.just("retain"), st.integers(0, 3_000), st.none()),
    ),
    max_size=60,
)


@settings(max_examples=120, deadline=None)
@given(
    operations,
    st.integers(1, 5),  # entries per ledger
    st.sampled_from([0, 600, 1 << 20]),  # cache bytes
)
def test_managed_ledger_agrees_with_a_list(ops, entries_per_ledger, cache_bytes):
    world = World()
    config = ManagedLedgerConfig(max_entries_per_ledger=entries_per_ledger,
                                 cache_bytes=cache_bytes, maintenance_interval_seconds=1e9)
    ledger = run(world.factory().open(NAME, config))
    model: list[tuple[Position, int, bytes]] = []  # entries still in the log
    next_index = 0
    for op, a, b in ops:
        if op == "append":
            data = bytes([len(model) % 251]) * a
            position = run(ledger.append(data, next_index))
            assert not model or position > model[-1][0]
            model.append((position, next_index, data))
            next_index += b
        elif op == "reopen":
            if b:
                run(ledger.close())
            ledger = run(world.factory().open(NAME, config))
        elif op == "truncate" and model:
            cut = a % (len(model) + 1)
            target = model[cut][0] if cut < len(model) else Position(
                model[-1][0].ledger_id, model[-1][0].entry_id + 1)
            run(ledger.truncate_before(target))
            del model[:cut]
        elif op == "read":
            start = a % (len(model) + 1) if a >= 0 else 0
            position = model[start][0] if start < len(model) else Position(10**9, 0)
            entries = run(ledger.read(position if a >= 0 else Position(0, 0), 7, b or None))
            expected = _expected_read(model[start if a >= 0 else 0:], 7, b or None)
            assert [(e.position, e.index, e.data) for e in entries] == expected
        elif op == "retain":
            ledger.update_config(replace(config, retention_bytes=a))
            run(ledger.trim())
            ledger.update_config(config)
            kept = run(ledger.read(Position(0, 0), 10**6))
            dropped = len(model) - len(kept)
            assert [(e.position, e.index, e.data) for e in kept] == model[dropped:]
            if dropped and kept:  # whole ledgers only
                assert model[dropped - 1][0].ledger_id != kept[0].position.ledger_id
            if dropped:  # and what stays still holds at least the limit
                assert ledger.total_bytes >= a
            del model[:dropped]
        elif op == "find":
            found = run(ledger.find(a))
            indexes = [index for _, index, _ in model]
            at = bisect_right(indexes, a)
            assert found == (model[at - 1][0] if at else None)
        assert ledger.entry_count == len(model)
        if model:
            assert ledger.first_position == model[0][0]
            assert ledger.last_confirmed_position == model[-1][0]
        else:
            assert ledger.first_position > ledger.last_confirmed_position
    everything = run(ledger.read(Position(0, 0), 10**6))
    assert [(e.position, e.index, e.data) for e in everything] == model


def _expected_read(tail, max_entries, max_bytes):
    result = []
    budget = max_bytes
    for position, index, data in tail[:max_entries]:
        if budget is not None:
            if result and len(data) > budget:
                break
            budget -= len(data)
        result.append((position, index, data))
        if budget is not None and budget <= 0:
            break
    return result
