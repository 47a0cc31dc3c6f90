"""Fault injection state (kmsdeploy.lab.faults): counted, seeded, per host, from JSON."""
from __future__ import annotations

import json

import pytest

from kmsdeploy.lab.faults import DROP_AFTER, FaultConfig, FaultInjector


def test_counted_faults_are_consumed_in_order():
    f = FaultInjector()
    f.set("h", FaultConfig(drop_next=1, error_500_next=2, slow_receive_next=1))
    decisions = [f.decide("h", "Command") for _ in range(4)]
    assert [d.drop for d in decisions] == ["before", None, None, None]
    assert [d.error_500 for d in decisions] == [False, True, True, False]
    assert f.decide("h", "Receive").slow_receive and not f.decide("h", "Receive").slow_receive
    assert f.fired["h"] == {"drop_before": 1, "error_500": 2, "slow_receive": 1}
    assert f.decide("other", "Command").drop is None


def test_probability_is_reproducible_with_a_seed():
    def run():
        f = FaultInjector()
        f.set("h", FaultConfig(drop_probability=0.3, seed=11))
        return [f.decide("h", "Receive").drop for _ in range(50)]
    first = run()
    assert first == run() and 5 < first.count("before") < 30


def test_action_filter_and_phase():
    f = FaultInjector()
    f.set("h", FaultConfig(drop_next=1, drop_phase=DROP_AFTER, actions=("Send",)))
    assert f.decide("h", "Command").drop is None
    assert f.decide("h", "Send").drop == DROP_AFTER


def test_json_load_and_default(tmp_path):
    path = tmp_path / "faults.json"
    path.write_text(json.dumps({"default": {"latency_ms": 5}, "hosts": {"a": {"auth_failure": True}}}))
    f = FaultInjector()
    f.load_file(str(path))
    assert f.latency("b") == 0.005 and f.auth_failure("a") and not f.auth_failure("b")
    assert f.dump()["hosts"]["a"]["auth_failure"] is True


@pytest.mark.parametrize("data", [{"hosts": {"a": {"drop_nxt": 1}}}, {"default": {"drop_phase": "later"}},
                                  {"default": {"drop_probability": 2}}])
def test_bad_settings_are_rejected(data):
    with pytest.raises(ValueError):
        FaultInjector().load(data)
