"""Re-replication planning without I/O: fragments, targets, replacements, copy sources,
and the under-replication marker format."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.ledger.metadata import LedgerMetadata, LedgerState, Segment
from storage.ledger.quorum import write_set
from storage.ledger.replication_plan import (
    FragmentTarget,
    choose_targets,
    copy_sources,
    fragments,
    missing_entries,
    names_any,
    segment_ranges,
    stores_entry,
    with_replacements,
)
from storage.ledger.under_replication import Marker, MarkerFormatError


def closed_ledger(segments: list[tuple[int, list[str]]], last_entry_id: int, *,
                  ensemble_size: int = 3, write_quorum: int = 2) -> LedgerMetadata:
    return LedgerMetadata(
        ledger_id=7, ensemble_size=ensemble_size, write_quorum=write_quorum,
        ack_quorum=min(2, write_quorum),
        ensembles=tuple(Segment(first, tuple(nodes)) for first, nodes in segments),
        state=LedgerState.CLOSED, last_entry_id=last_entry_id)


def test_stores_entry_agrees_with_the_write_sets():
    for ensemble_size in range(1, 6):
        for write_quorum in range(1, ensemble_size + 1):
            for entry_id in range(25):
                members = set(write_set(entry_id, ensemble_size, write_quorum))
                for index in range(ensemble_size):
                    assert stores_entry(entry_id, index, ensemble_size, write_quorum) == (
                        index in members)


def test_segments_end_where_the_next_begins_and_the_last_at_the_last_entry():
    metadata = closed_ledger([(0, ["a", "b", "c"]), (10, ["a", "b", "d"]),
                              (15, ["a", "e", "d"])], last_entry_id=14)
    assert segment_ranges(metadata, 14) == [(0, 9), (10, 14), (15, 14)]
    by_key = {(f.segment_number, f.address): f for f in fragments(metadata)}
    assert list(by_key[(0, "c")].entry_ids()) == [1, 2, 4, 5, 7, 8]  # index 2: e % 3 in {1, 2}
    assert list(by_key[(1, "d")].entry_ids()) == [10, 11, 13, 14]
    assert by_key[(2, "e")].is_empty and list(by_key[(2, "e")].entry_ids()) == []


def test_a_lost_node_is_replaced_in_every_segment_by_a_node_outside_that_segment():
    metadata = closed_ledger([(0, ["a", "b", "c"]), (10, ["c", "b", "d"])], last_entry_id=20)
    plan = choose_targets(metadata, live={"a", "b", "d", "e"}, lost={"c"},
                          rng=random.Random(1))
    assert plan.blocked == []
    assert plan.replacements[(0, 2)] in {"d", "e"}
    assert plan.replacements[(1, 0)] in {"a", "e"}
    replaced = {(t.fragment.segment_number, t.fragment.ensemble_index): t.address
                for t in plan.targets if t.is_replacement}
    assert replaced == plan.replacements
    # Live nodes keep their own fragments.
    assert {(t.fragment.address, t.address) for t in plan.targets if not t.is_replacement} == {
        ("a", "a"), ("b", "b"), ("d", "d")}


def test_two_lost_nodes_of_one_segment_get_distinct_replacements():
    metadata = closed_ledger([(0, ["a", "b", "c"])], last_entry_id=5)
    for seed in range(20):
        plan = choose_targets(metadata, live={"a", "d", "e"}, lost={"b", "c"},
                              rng=random.Random(seed))
        assert sorted(plan.replacements.values()) == ["d", "e"]


def test_suspect_nodes_are_used_only_when_nothing_else_is_left():
    metadata = closed_ledger([(0, ["a", "b", "c"])], last_entry_id=5)
    for seed in range(20):
        plan = choose_targets(metadata, {"a", "b", "d", "e"}, {"c"}, random.Random(seed),
                              avoid={"d"})
        assert plan.replacements == {(0, 2): "e"}
    plan = choose_targets(metadata, {"a", "b", "d"}, {"c"}, random.Random(0), avoid={"d"})
    assert plan.replacements == {(0, 2): "d"}


def test_excluded_nodes_are_never_chosen():
    metadata = closed_ledger([(0, ["a", "b", "c"])], last_entry_id=5)
    for seed in range(20):
        plan = choose_targets(metadata, {"a", "b", "d", "e"}, {"c"}, random.Random(seed),
                              exclude={"d"})
        assert plan.replacements == {(0, 2): "e"}
    plan = choose_targets(metadata, {"a", "b", "d"}, {"c"}, random.Random(0), exclude={"d"})
    assert plan.replacements == {} and plan.blocked


def test_nodes_away_but_not_confirmed_lost_and_missing_replacements_block_the_ledger():
    metadata = closed_ledger([(0, ["a", "b", "c"])], last_entry_id=5)
    waiting = choose_targets(metadata, live={"a", "b", "d"}, lost=set(), rng=random.Random(0))
    assert waiting.replacements == {}
    assert [t.fragment.address for t in waiting.targets] == ["a", "b"]
    assert "c" in waiting.blocked[0] and "not confirmed lost" in waiting.blocked[0]
    stuck = choose_targets(metadata, live={"a", "b"}, lost={"c"}, rng=random.Random(0))
    assert stuck.replacements == {} and "no live node" in stuck.blocked[0]


def test_empty_fragments_of_lost_nodes_are_replaced_too():
    metadata = closed_ledger([(0, ["a", "b", "c"]), (6, ["a", "b", "d"])], last_entry_id=5)
    plan = choose_targets(metadata, live={"a", "b", "c", "e"}, lost={"d"},
                          rng=random.Random(0))
    assert plan.replacements == {(1, 2): "e"}
    updated = with_replacements(metadata, plan.replacements)
    assert not names_any(updated, {"d"})


def test_missing_entries_are_the_fragment_entries_not_held():
    metadata = closed_ledger([(0, ["a", "b", "c"])], last_entry_id=8)
    fragment = next(f for f in fragments(metadata) if f.address == "a")  # e % 3 in {0, 2}
    assert missing_entries(fragment, {0, 2, 3, 99}) == [5, 6, 8]
    assert missing_entries(fragment, range(9)) == []


def test_copy_sources_are_the_other_live_members_of_the_write_set():
    metadata = closed_ledger([(0, ["a", "b", "c"])], last_entry_id=8,
                             ensemble_size=3, write_quorum=3)
    fragment = next(f for f in fragments(metadata) if f.address == "c")
    replacing = FragmentTarget(fragment, "d")
    assert copy_sources(metadata, replacing, 4, live={"a", "b", "d"}) == ["b", "a"]
    assert copy_sources(metadata, replacing, 4, live={"a", "d"}) == ["a"]
    refilling = FragmentTarget(fragment, "c")
    assert copy_sources(metadata, refilling, 0, live={"a", "b", "c"}) == ["a", "b"]


def test_with_replacements_changes_only_the_named_segment_and_index():
    metadata = closed_ledger([(0, ["a", "b", "c"]), (10, ["a", "b", "c"])], last_entry_id=12)
    updated = with_replacements(metadata, {(0, 2): "d"})
    assert [s.nodes for s in updated.ensembles] == [("a", "b", "d"), ("a", "b", "c")]
    assert LedgerMetadata.from_json(updated.to_json()) == updated
    assert with_replacements(metadata, {}) is metadata


@st.composite
def damaged_ledgers(draw):
    """A closed ledger, which nodes are live or lost, and which entries each node holds:
    every entry keeps at least one copy on a live node of its write set."""
    ensemble_size = draw(st.integers(1, 4))
    write_quorum = draw(st.integers(1, ensemble_size))
    pool = [f"n{i}" for i in range(ensemble_size + draw(st.integers(0, 3)))]
    last_entry_id = draw(st.integers(-1, 30))
    starts = sorted(draw(st.sets(st.integers(1, 32), max_size=3)))
    segments = [(first, draw(st.permutations(pool))[:ensemble_size])
                for first in [0, *starts]]
    metadata = closed_ledger(segments, last_entry_id, ensemble_size=ensemble_size,
                             write_quorum=write_quorum)
    lost = set(draw(st.sets(st.sampled_from(pool), max_size=len(pool) - ensemble_size)))
    live = set(pool) - lost
    held: dict[str, set[int]] = {node: set() for node in pool}
    for entry_id in range(last_entry_id + 1):
        segment = metadata.segment_for(entry_id)
        members = [segment.nodes[i] for i in write_set(entry_id, ensemble_size, write_quorum)]
        survivors = [m for m in members if m in live]
        if not survivors:
            continue  # every copy gone: nothing can restore it; not this test's subject
        for member in members:
            if member == survivors[0] or draw(st.booleans()):
                held[member].add(entry_id)
    return metadata, live, lost, held


@settings(max_examples=300, deadline=None)
@given(damaged_ledgers(), st.randoms(use_true_random=False))
def test_carrying_out_a_plan_leaves_every_entry_on_its_whole_write_set(case, rng):
    """Copy as the repairer does: a fragment stops at an entry no source holds any more,
    and only complete fragments get their replacement recorded."""
    metadata, live, lost, held = case
    plan = choose_targets(metadata, live, lost, rng)
    assert plan.blocked == []  # lost nodes are fewer than the spare ones
    completed, failed = {}, set()
    for target in plan.targets:
        fragment = target.fragment
        where = (fragment.segment_number, fragment.ensemble_index)
        for entry_id in missing_entries(fragment, held[target.address]):
            sources = copy_sources(metadata, target, entry_id, live)
            if not any(entry_id in held[source] for source in sources):
                failed.add(where)
                break
            held[target.address].add(entry_id)
        else:
            if target.is_replacement:
                completed[where] = target.address
    repaired = with_replacements(metadata, completed)
    if not failed:
        assert not names_any(repaired, lost)
    for entry_id in range(metadata.last_entry_id + 1):
        indexes = write_set(entry_id, metadata.ensemble_size, metadata.write_quorum)
        number = metadata.ensembles.index(metadata.segment_for(entry_id))
        original = metadata.ensembles[number].nodes
        had_a_copy = any(entry_id in held[original[i]] and original[i] in live for i in indexes)
        if not had_a_copy or any((number, i) in failed for i in indexes):
            continue
        members = [repaired.ensembles[number].nodes[i] for i in indexes]
        assert len(set(members)) == metadata.write_quorum
        assert all(entry_id in held[m] and m in live for m in members), (entry_id, members)
    # A fragment fails only over an entry whose every copy is gone.
    for number, index in failed:
        fragment = next(f for f in fragments(metadata)
                        if (f.segment_number, f.ensemble_index) == (number, index))
        assert any(
            not any(entry_id in held[metadata.ensembles[number].nodes[i]]
                    and metadata.ensembles[number].nodes[i] in live
                    for i in write_set(entry_id, metadata.ensemble_size, metadata.write_quorum))
            for entry_id in fragment.entry_ids())


def test_markers_round_trip_and_merge():
    marker = Marker(frozenset({"b", "a"}), ("storage node a lost",))
    assert Marker.from_json(marker.to_json()) == marker
    merged = marker.merged(frozenset({"c"}), "storage node c lost")
    assert merged.lost == {"a", "b", "c"}
    assert merged.reasons == ("storage node a lost", "storage node c lost")
    assert merged.merged(frozenset({"a"}), "storage node a lost") == merged


@pytest.mark.parametrize("raw", [b"", b"\xff", b"[]", b'{"format": 2, "lost": [], "reasons": []}',
                                 b'{"format": 1, "lost": "a", "reasons": []}',
                                 b'{"format": 1, "lost": [1], "reasons": []}'])
def test_unreadable_markers_are_refused_clearly(raw):
    with pytest.raises(MarkerFormatError):
        Marker.from_json(raw)
