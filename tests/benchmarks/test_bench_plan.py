"""benchmarks.plan: the scenario matrix issue 7 asks for, goals, and the time budgets."""

import pytest

from benchmarks.plan import (
    CONFLUENT,
    GOALS,
    PRODUCER_CLIENTS,
    Goal,
    Plan,
    Scenario,
    full_plan,
    quick_plan,
)


def test_full_plan_covers_clients_sizes_and_partitions():
    plan = full_plan()
    produced = {(s.client, s.value_bytes, s.partitions) for s in plan.scenarios
                if s.kind == "produce"}
    assert produced == {(client, size, partitions) for client in PRODUCER_CLIENTS
                        for size in (100, 1024) for partitions in (1, 6)}
    assert all(s.seconds >= 10 for s in plan.scenarios if s.kind == "produce")
    consumed = {(s.value_bytes, s.partitions) for s in plan.scenarios if s.kind == "consume"}
    assert consumed == {(size, partitions) for size in (100, 1024) for partitions in (1, 6)}
    assert {s.rate for s in plan.scenarios if s.kind == "latency"} == {1_000, 10_000}
    assert plan.rounds >= 3


def test_scenario_keys_are_unique_and_exclude_durations():
    plan = full_plan()
    keys = [s.key for s in plan.scenarios]
    assert len(keys) == len(set(keys))
    short = Scenario("produce", CONFLUENT, 1024, 1, seconds=1.0)
    assert short.key == Scenario("produce", CONFLUENT, 1024, 1, seconds=30.0).key
    assert short.key == "produce/confluent-kafka/1024B/1p"


def test_every_goal_names_a_scenario_of_both_plans():
    for plan in (full_plan(), quick_plan()):
        keys = {s.key for s in plan.scenarios}
        assert {goal.scenario_key for goal in GOALS} <= keys


def test_consume_reads_the_matching_producer():
    consume = Scenario("consume", CONFLUENT, 100, 6, seconds=5.0)
    assert consume.produced_by == "produce/confluent-kafka/100B/6p"
    with pytest.raises(ValueError):
        Scenario("produce", CONFLUENT, 100, 6, seconds=5.0).produced_by  # noqa: B018


def test_plan_refuses_a_consumer_before_its_producer():
    consume = Scenario("consume", CONFLUENT, 100, 1, seconds=1.0)
    produce = Scenario("produce", CONFLUENT, 100, 1, seconds=1.0)
    with pytest.raises(ValueError, match="runs before"):
        Plan("bad", 1, (consume, produce))
    Plan("good", 1, (produce, consume))


def test_goal_direction():
    at_least = Goal("k", "records_per_second", 1.0, at_least=True)
    at_most = Goal("k", "latency_p99_ms", 1.5, at_least=False)
    assert at_least.met_by(1.0) and not at_least.met_by(0.99)
    assert at_most.met_by(1.5) and not at_most.met_by(1.51)
    assert at_least.text == "≥ 1×" and at_most.text == "≤ 1.5×"


def test_time_budgets():
    # Issue 7: --quick under two minutes, the full run under twenty (estimates include
    # broker starts and topic housekeeping).
    assert quick_plan().estimated_seconds() < 110
    assert full_plan().estimated_seconds() < 19 * 60
