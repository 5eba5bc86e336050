"""Cluster records in the metadata store: round trips, and clear errors for damaged ones."""

from __future__ import annotations

import json

import pytest

from kop.cluster.records import (
    BrokerRecord,
    ClaimRecord,
    ClusterPaths,
    ClusterRecordError,
    decode_epoch,
    encode_epoch,
    parse_broker_id,
)
from kop.naming import Namespace


def test_round_trips():
    broker = BrokerRecord(7, "10.0.0.7", 9092, "abc", rack="r1", leaving=True)
    assert BrokerRecord.from_json(7, broker.to_json()) == broker
    claim = ClaimRecord(7, 12, "abc")
    assert ClaimRecord.from_json(claim.to_json(), "/x") == claim
    assert decode_epoch(encode_epoch(5), "/e") == 5


def test_paths_keep_namespaces_apart():
    paths = ClusterPaths(Namespace("acme", "prod"))
    assert paths.claim("orders", 3) == "/ownership/acme/prod/orders/3"
    assert paths.leader_epoch("orders", 3) == "/leader-epochs/acme/prod/orders/3"


@pytest.mark.parametrize("data, complaint", [
    (b"\xff\xfe", "not a JSON record"),
    (b"{", "not a JSON record"),
    (b"[1, 2]", "expected a JSON object"),
    (b'{"host": "h", "incarnation": "x"}', "'port'"),
    (b'{"host": "h", "port": "9092", "incarnation": "x"}', "'port'"),
    (b'{"host": "h", "port": true, "incarnation": "x"}', "'port'"),
    (b'{"host": "h", "port": 70000, "incarnation": "x"}', "out of range"),
    (b'{"host": 1, "port": 9092, "incarnation": "x"}', "'host'"),
    (b'{"host": "h", "port": 9092, "incarnation": "x", "leaving": "yes"}', "'leaving'"),
])
def test_damaged_broker_records_are_refused_with_the_path(data, complaint):
    with pytest.raises(ClusterRecordError, match=complaint) as caught:
        BrokerRecord.from_json(3, data)
    assert "/brokers/3" in str(caught.value)


@pytest.mark.parametrize("record", [
    {"broker": 1, "incarnation": "x"},
    {"broker": 1, "epoch": -1, "incarnation": "x"},
    {"broker": "1", "epoch": 0, "incarnation": "x"},
    {"broker": 1, "epoch": 0},
])
def test_damaged_claims_are_refused(record):
    with pytest.raises(ClusterRecordError, match="/ownership/t/n/x/0"):
        ClaimRecord.from_json(json.dumps(record).encode(), "/ownership/t/n/x/0")


@pytest.mark.parametrize("data", [b"", b"7", b'{"epoch": -2}', b'{"epoch": 1.5}'])
def test_damaged_epochs_are_refused(data):
    with pytest.raises(ClusterRecordError):
        decode_epoch(data, "/leader-epochs/x")


def test_broker_ids_from_node_names():
    assert parse_broker_id("12") == 12
    assert parse_broker_id("lock") is None
    assert parse_broker_id("-1") is None
    assert parse_broker_id("99999999999") is None
