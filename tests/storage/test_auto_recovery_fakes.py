"""Auto-recovery against in-memory fakes (synchronous nodes and store, a fake clock): the
repairer, the auditor and its grace period, restart detection, the election, workers."""

from __future__ import annotations

import json
import random

import pytest
from test_ledger_fakes import Cluster, FakeNode, result_of
from twisted.internet import defer

from storage.ledger.auditor import AUDITOR_PATH, INCARNATIONS_PATH, Auditor
from storage.ledger.auto_recovery import AutoRecovery, AutoRecoverySettings
from storage.ledger.entry_format import unframe_entry
from storage.ledger.ledger_store import LedgerMetadataStore, ledger_path
from storage.ledger.metadata import LedgerMetadata
from storage.ledger.reader import replica_addresses
from storage.ledger.replication import LedgerRepairer, RepairOutcome, RepairReport
from storage.ledger.under_replication import (
    LOCKS_PATH,
    Marker,
    UnderReplication,
    lock_path,
    marker_path,
)
from storage.ledger.writer import WriteHandle
from storage.node import errors as node_errors
from storage.node.api import encode_entry_bitmap


class ListingNode(FakeNode):
    """FakeNode plus LIST_ENTRIES, and ledgers it deleted earlier and now refuses."""

    def __init__(self, address: str) -> None:
        super().__init__(address)
        self.refused: set[int] = set()
        self.refusals = 0

    def add_entry(self, ledger_id: int, entry_id: int, last_add_confirmed: int,
                  payload: bytes, *, recovery: bool = False) -> defer.Deferred[None]:
        if ledger_id in self.refused and not self.down:
            self.refusals += 1
            return defer.fail(node_errors.NoSuchLedgerError(f"ledger {ledger_id} was deleted"))
        return super().add_entry(ledger_id, entry_id, last_add_confirmed, payload,
                                 recovery=recovery)

    def list_entries(self, ledger_id: int, first_entry_id: int,
                     count: int) -> defer.Deferred[bytes]:
        if self.down:
            return self._unavailable()
        if not self.knows(ledger_id) and not self.stored_ids(ledger_id):
            return defer.fail(node_errors.NoSuchLedgerError(f"ledger {ledger_id}"))
        return defer.succeed(encode_entry_bitmap(self.stored_ids(ledger_id), first_entry_id,
                                                 count))


def listing_cluster(node_count: int) -> Cluster:
    cluster = Cluster(node_count)
    for address in cluster.nodes:
        cluster.nodes[address] = ListingNode(address)  # the pool looks clients up here
    return cluster


def payload(ledger_id: int, entry_id: int) -> bytes:
    return b"ledger %d entry %d " % (ledger_id, entry_id) + bytes([entry_id % 251]) * 40


def open_ledger(cluster: Cluster, entries: int, *, ensemble: tuple[int, int, int] = (3, 2, 2),
                seed: int = 0) -> WriteHandle:
    writer = result_of(cluster.client(seed).create_ledger(*ensemble))
    for entry_id in range(entries):
        assert result_of(writer.append(payload(writer.ledger_id, entry_id))) == entry_id
    return writer


def closed_ledger(cluster: Cluster, entries: int, **options) -> LedgerMetadata:
    writer = open_ledger(cluster, entries, **options)
    result_of(writer.close())
    return writer.metadata


def stored_metadata(cluster: Cluster, ledger_id: int) -> tuple[LedgerMetadata, int]:
    found = cluster.store.nodes[ledger_path(ledger_id)]
    return LedgerMetadata.from_json(found.value), found.version


def lose(cluster: Cluster, address: str) -> None:
    """The node goes down and its registration vanishes (its session expired)."""
    cluster.node(address).down = True
    result_of(cluster.store.delete(f"/storage-nodes/{address}"))


def register(cluster: Cluster, address: str, incarnation: str) -> None:
    path = f"/storage-nodes/{address}"
    if path in cluster.store.nodes:
        result_of(cluster.store.delete(path))
    result_of(cluster.store.create(path, json.dumps({"incarnation": incarnation}).encode(),
                                   ephemeral=True))


def assert_fully_replicated(cluster: Cluster, ledger_id: int) -> None:
    """Every entry is on every node of its write set, intact, and nothing names a node down."""
    metadata, _ = stored_metadata(cluster, ledger_id)
    assert metadata.is_closed
    for entry_id in range(metadata.last_entry_id + 1):
        for address in replica_addresses(metadata, entry_id):
            node = cluster.node(address)
            assert not node.down, f"entry {entry_id} is on {address}, which is down"
            stored = node.entries.get((ledger_id, entry_id))
            assert stored is not None, f"entry {entry_id} missing on {address}"
            assert unframe_entry(ledger_id, entry_id, stored)[1] == payload(ledger_id, entry_id)


def repairer(cluster: Cluster) -> LedgerRepairer:
    return LedgerRepairer(LedgerMetadataStore(cluster.store), cluster.pool,
                          rng=random.Random(0))


def repair(cluster: Cluster, ledger_id: int, lost: set[str]) -> RepairReport:
    return result_of(defer.ensureDeferred(repairer(cluster).repair(ledger_id, lost)))


def total_adds(cluster: Cluster) -> int:
    return sum(len(node.adds) for node in cluster.nodes.values())


# -- the repairer ------------------------------------------------------------------------------


def test_a_lost_node_is_replaced_and_repairing_again_changes_nothing():
    cluster = listing_cluster(4)
    metadata = closed_ledger(cluster, 30)
    (spare,) = set(cluster.nodes) - set(metadata.ensembles[0].nodes)
    gone = metadata.ensembles[0].nodes[1]
    lose(cluster, gone)
    report = repair(cluster, metadata.ledger_id, {gone})
    assert report.outcome is RepairOutcome.REPAIRED
    assert report.replacements == {(0, 1): spare}
    assert report.entries_copied == 20  # index 1 holds entries e with e % 3 in {0, 1}
    assert_fully_replicated(cluster, metadata.ledger_id)
    repaired, version = stored_metadata(cluster, metadata.ledger_id)
    assert repaired.ensembles[0].nodes == tuple(
        spare if a == gone else a for a in metadata.ensembles[0].nodes)
    adds = total_adds(cluster)
    again = repair(cluster, metadata.ledger_id, {gone})
    assert (again.outcome, again.entries_copied, again.replacements) == (
        RepairOutcome.REPAIRED, 0, {})
    assert stored_metadata(cluster, metadata.ledger_id)[1] == version
    assert total_adds(cluster) == adds


def test_entries_written_before_an_ensemble_change_are_copied_once_the_ledger_closes():
    cluster = listing_cluster(5)
    writer = open_ledger(cluster, 10)
    gone = writer.metadata.current_ensemble.nodes[2]
    lose(cluster, gone)
    for entry_id in range(10, 25):
        assert result_of(writer.append(payload(writer.ledger_id, entry_id))) == entry_id
    assert len(writer.metadata.ensembles) == 2  # the writer replaced the node for new entries
    before, version = stored_metadata(cluster, writer.ledger_id)
    adds = total_adds(cluster)
    waiting = repair(cluster, writer.ledger_id, {gone})
    assert waiting.outcome is RepairOutcome.WAITING and "OPEN" in waiting.problems[0]
    assert stored_metadata(cluster, writer.ledger_id) == (before, version)
    assert total_adds(cluster) == adds  # the open ledger was not touched
    result_of(writer.close())
    assert repair(cluster, writer.ledger_id, {gone}).outcome is RepairOutcome.REPAIRED
    assert_fully_replicated(cluster, writer.ledger_id)
    repaired, _ = stored_metadata(cluster, writer.ledger_id)
    assert gone not in repaired.all_nodes()
    assert repaired.ensembles[1] == writer.metadata.ensembles[1]  # the writer's own change


def test_a_live_node_missing_entries_gets_them_back_without_a_metadata_change():
    cluster = listing_cluster(3)
    metadata = closed_ledger(cluster, 12, ensemble=(3, 3, 2))
    holey = cluster.node(metadata.ensembles[0].nodes[0])
    for entry_id in (0, 5, 11):
        del holey.entries[(metadata.ledger_id, entry_id)]
    version = stored_metadata(cluster, metadata.ledger_id)[1]
    report = repair(cluster, metadata.ledger_id, set())
    assert (report.outcome, report.entries_copied) == (RepairOutcome.REPAIRED, 3)
    assert [a.recovery for a in holey.adds[-3:]] == [True, True, True]
    assert stored_metadata(cluster, metadata.ledger_id)[1] == version
    assert_fully_replicated(cluster, metadata.ledger_id)


def test_a_damaged_source_copy_is_skipped_for_an_intact_one():
    cluster = listing_cluster(4)
    metadata = closed_ledger(cluster, 6, ensemble=(3, 3, 2))
    first, second, gone = metadata.ensembles[0].nodes
    stored = bytearray(cluster.node(first).entries[(metadata.ledger_id, 0)])
    stored[-1] ^= 0xFF
    cluster.node(first).entries[(metadata.ledger_id, 0)] = bytes(stored)
    cluster.node(second).corrupt.add((metadata.ledger_id, 1))  # the node itself says so
    lose(cluster, gone)
    assert repair(cluster, metadata.ledger_id, {gone}).outcome is RepairOutcome.REPAIRED
    repaired, _ = stored_metadata(cluster, metadata.ledger_id)
    replacement = repaired.ensembles[0].nodes[2]
    for entry_id in range(6):
        copy = cluster.node(replacement).entries[(metadata.ledger_id, entry_id)]
        assert unframe_entry(metadata.ledger_id, entry_id, copy)[1] == payload(
            metadata.ledger_id, entry_id)


def test_entries_with_no_copy_left_keep_the_ledger_waiting_and_its_lost_node_named():
    cluster = listing_cluster(5)
    metadata = closed_ledger(cluster, 9)
    a, b, c = metadata.ensembles[0].nodes
    lose(cluster, a)
    lose(cluster, b)  # entries with write set (a, b), e % 3 == 0, have no copy left
    report = repair(cluster, metadata.ledger_id, {a, b})
    assert report.outcome is RepairOutcome.WAITING
    assert any("entry 0 has no intact copy" in problem for problem in report.problems)
    repaired, _ = stored_metadata(cluster, metadata.ledger_id)
    # Index 0 (a) holds e % 3 in {0, 2}: entry 0 cannot be restored, so a stays named;
    # index 1 (b) lost entry 0 too. Only complete fragments get recorded.
    assert repaired.ensembles[0].nodes[0] == a and repaired.ensembles[0].nodes[1] == b


def test_a_replacement_refusing_the_ledger_is_traded_for_another_node():
    refusals = 0
    for seed in range(6):
        cluster = listing_cluster(5)
        metadata = closed_ledger(cluster, 9)
        refusing, willing = sorted(set(cluster.nodes) - set(metadata.ensembles[0].nodes))
        cluster.node(refusing).refused.add(metadata.ledger_id)
        gone = metadata.ensembles[0].nodes[0]
        lose(cluster, gone)
        report = LedgerRepairer(LedgerMetadataStore(cluster.store), cluster.pool,
                                rng=random.Random(seed)).repair(metadata.ledger_id, {gone})
        report = result_of(defer.ensureDeferred(report))
        assert report.outcome is RepairOutcome.REPAIRED, report.problems
        assert report.replacements == {(0, 0): willing}
        assert_fully_replicated(cluster, metadata.ledger_id)
        refusals += cluster.node(refusing).refusals
    assert refusals > 0  # some seeds picked the refusing node first


def test_a_deleted_ledger_is_reported_as_such():
    cluster = listing_cluster(3)
    metadata = closed_ledger(cluster, 3)
    result_of(cluster.client().delete_ledger(metadata.ledger_id))
    assert repair(cluster, metadata.ledger_id, set()).outcome is RepairOutcome.DELETED


# -- the auditor -------------------------------------------------------------------------------


def markers(cluster: Cluster) -> dict[int, Marker]:
    marks = UnderReplication(cluster.store)
    return {ledger_id: result_of(defer.ensureDeferred(marks.read(ledger_id)))[0]
            for ledger_id in result_of(defer.ensureDeferred(marks.marked_ledgers()))}


def started_auditor(cluster: Cluster, grace_period: float = 5.0) -> Auditor:
    auditor = Auditor(cluster.store, grace_period=grace_period, audit_interval=100.0,
                      clock=cluster.clock)
    auditor.start()
    return auditor


def test_ledgers_naming_a_node_away_longer_than_the_grace_period_are_marked():
    cluster = listing_cluster(5)
    naming = closed_ledger(cluster, 5, seed=1)
    gone = naming.ensembles[0].nodes[0]
    others = [closed_ledger(cluster, 5, seed=seed) for seed in range(2, 12)]
    auditor = started_auditor(cluster)
    lose(cluster, gone)
    cluster.clock.advance(4.9)
    assert markers(cluster) == {}
    assert auditor.last_report is not None and auditor.last_report.away == {gone}
    cluster.clock.advance(0.2)  # the grace period ran out: the auditor looks again by itself
    expected = {m.ledger_id for m in [naming, *others] if gone in m.all_nodes()}
    assert set(markers(cluster)) == expected
    assert all(marker.lost == {gone} for marker in markers(cluster).values())
    result_of(defer.ensureDeferred(auditor.stop()))


def test_a_node_back_within_the_grace_period_is_not_re_replicated():
    cluster = listing_cluster(4)
    for address in cluster.nodes:
        register(cluster, address, "first life")
    auditor = started_auditor(cluster)
    metadata = closed_ledger(cluster, 5)
    gone = metadata.ensembles[0].nodes[0]
    lose(cluster, gone)
    cluster.clock.advance(3)
    cluster.node(gone).down = False
    register(cluster, gone, "first life")  # same incarnation: a connection blip
    cluster.clock.advance(10)
    assert markers(cluster) == {}
    result_of(defer.ensureDeferred(auditor.stop()))


def test_a_restarted_node_gets_its_ledgers_checked_even_across_auditor_failover():
    cluster = listing_cluster(4)
    for address in cluster.nodes:
        register(cluster, address, "first life")
    ledgers = [closed_ledger(cluster, 5, seed=seed) for seed in range(6)]
    first_auditor = started_auditor(cluster)
    result_of(defer.ensureDeferred(first_auditor.stop()))
    register(cluster, "n1", "second life")  # restarted while no auditor ran
    second_auditor = started_auditor(cluster)
    expected = {m.ledger_id for m in ledgers if "n1" in m.all_nodes()}
    assert expected and set(markers(cluster)) == expected
    assert all(marker.lost == frozenset() and "n1 restarted" in marker.reasons[0]
               for marker in markers(cluster).values())
    for ledger_id in expected:
        result_of(cluster.store.delete(marker_path(ledger_id)))
    second_auditor.request_audit()  # the new incarnation is known now: nothing to mark
    assert markers(cluster) == {}
    result_of(defer.ensureDeferred(second_auditor.stop()))


# -- election and workers ----------------------------------------------------------------------


def recovery(cluster: Cluster, **settings) -> AutoRecovery:
    options = {"grace_period": 5.0, "audit_interval": 100.0, "retry_interval": 1.0, **settings}
    return AutoRecovery(cluster.store, cluster.pool, settings=AutoRecoverySettings(**options),
                        clock=cluster.clock, rng=random.Random(0))


def test_exactly_one_auditor_and_another_takes_over_when_it_stops():
    cluster = listing_cluster(3)
    first, second = recovery(cluster), recovery(cluster)
    result_of(first.start())
    result_of(second.start())
    assert (first.is_auditor, second.is_auditor) == (True, False)
    assert cluster.store.nodes[AUDITOR_PATH].value == first.identity.encode()
    result_of(first.stop())
    assert (first.is_auditor, second.is_auditor) == (False, True)
    assert cluster.store.nodes[AUDITOR_PATH].value == second.identity.encode()
    result_of(second.stop())
    assert AUDITOR_PATH not in cluster.store.nodes


def test_auto_recovery_repairs_closed_ledgers_and_open_ones_once_closed():
    cluster = listing_cluster(5)
    closed = closed_ledger(cluster, 20, seed=3)
    writer = open_ledger(cluster, 20, seed=3)  # same seed: the same ensemble
    gone = closed.ensembles[0].nodes[0]
    service = recovery(cluster)
    result_of(service.start())
    lose(cluster, gone)
    cluster.clock.advance(5.1)
    assert set(markers(cluster)) == {writer.ledger_id}  # the closed one is done already
    assert_fully_replicated(cluster, closed.ledger_id)
    cluster.clock.advance(3)  # retries leave the open ledger alone
    assert stored_metadata(cluster, writer.ledger_id)[0] == writer.metadata
    result_of(writer.close())
    cluster.clock.advance(1.0)
    assert markers(cluster) == {}
    assert_fully_replicated(cluster, writer.ledger_id)
    assert not [path for path in cluster.store.nodes if path.startswith(LOCKS_PATH + "/")]
    result_of(service.stop())


def test_a_ledger_locked_by_another_worker_is_left_to_it():
    cluster = listing_cluster(4)
    metadata = closed_ledger(cluster, 10)
    gone = metadata.ensembles[0].nodes[0]
    lose(cluster, gone)
    marks = UnderReplication(cluster.store)
    result_of(defer.ensureDeferred(marks.mark(metadata.ledger_id, {gone}, "test")))
    result_of(cluster.store.create(lock_path(metadata.ledger_id), b"someone else",
                                   ephemeral=True))
    service = recovery(cluster, audit=False)
    result_of(service.start())
    adds = total_adds(cluster)
    cluster.clock.advance(2)
    assert set(markers(cluster)) == {metadata.ledger_id} and total_adds(cluster) == adds
    result_of(cluster.store.delete(lock_path(metadata.ledger_id)))  # its holder died
    cluster.clock.advance(1)
    assert markers(cluster) == {}
    assert_fully_replicated(cluster, metadata.ledger_id)
    result_of(service.stop())


def test_an_unreadable_marker_still_gets_its_ledger_checked_and_cleared():
    cluster = listing_cluster(3)
    metadata = closed_ledger(cluster, 9, ensemble=(3, 3, 2))
    holey = cluster.node(metadata.ensembles[0].nodes[1])
    del holey.entries[(metadata.ledger_id, 4)]
    result_of(cluster.store.create(marker_path(metadata.ledger_id), b"\x00garbage"))
    service = recovery(cluster, audit=False)
    result_of(service.start())
    assert markers(cluster) == {}
    assert_fully_replicated(cluster, metadata.ledger_id)
    result_of(service.stop())


def test_entries_acknowledged_while_a_node_blinked_get_their_missing_copy():
    """Qa < Qw: entries acknowledged by two of three nodes while the third failed for a
    moment; it answers again and stays in the ensemble, without those entries."""
    cluster = listing_cluster(3)
    writer = open_ledger(cluster, 5, ensemble=(3, 3, 2))
    blinking = cluster.node(writer.metadata.current_ensemble.nodes[2])
    blinking.down = True
    for entry_id in range(5, 10):
        assert result_of(writer.append(payload(writer.ledger_id, entry_id))) == entry_id
    blinking.down = False
    cluster.clock.advance(5)  # the writer finds it answering again
    for entry_id in range(10, 12):
        assert result_of(writer.append(payload(writer.ledger_id, entry_id))) == entry_id
    result_of(writer.close())
    assert blinking.stored_ids(writer.ledger_id) == [0, 1, 2, 3, 4, 10, 11]
    assert "storage node n" in markers(cluster)[writer.ledger_id].reasons[0]
    service = recovery(cluster, audit=False)
    result_of(service.start())
    assert markers(cluster) == {}
    assert blinking.stored_ids(writer.ledger_id) == list(range(12))
    assert_fully_replicated(cluster, writer.ledger_id)
    result_of(service.stop())


def test_with_equal_quorums_a_failing_node_leaves_no_marker():
    cluster = listing_cluster(4)
    writer = open_ledger(cluster, 5)
    cluster.node(writer.metadata.current_ensemble.nodes[0]).down = True
    for entry_id in range(5, 10):
        assert result_of(writer.append(payload(writer.ledger_id, entry_id))) == entry_id
    assert markers(cluster) == {}


def test_damaged_metadata_is_reported_and_skipped_while_the_rest_is_audited(caplog):
    cluster = listing_cluster(4)
    good = closed_ledger(cluster, 5, seed=1)
    gone = good.ensembles[0].nodes[0]
    result_of(cluster.store.create(ledger_path(999), b"{not json"))
    result_of(cluster.store.create(INCARNATIONS_PATH, b"\xff\xfe"))
    auditor = started_auditor(cluster, grace_period=0.0)
    lose(cluster, gone)
    assert set(markers(cluster)) == {good.ledger_id}
    assert "ledger 999: unreadable metadata" in caplog.text
    assert "node-incarnations is unreadable" in caplog.text
    incarnations = json.loads(cluster.store.nodes[INCARNATIONS_PATH].value)
    # Rewritten whole: the live nodes, and the lost one that a ledger still names.
    assert set(incarnations) == set(cluster.nodes)
    result_of(defer.ensureDeferred(auditor.stop()))


def test_settings_and_command_line_refuse_nonsense():
    from storage.ledger.auto_recovery import main

    for bad in ({"grace_period": -1}, {"audit_interval": 0}, {"retry_interval": -2},
                {"copy_window": 0}):
        with pytest.raises(ValueError):
            AutoRecoverySettings(**bad)
    assert main(["--metadata", "zk://127.0.0.1:1/x", "--grace-period", "-1"]) == 2
