"""Lab model: the command envelope (bootstrap, limits) and the licensing service (A.1-A.6)."""
from __future__ import annotations

import json

import pytest

from kmsdeploy.lab.model import CONVERTFROM_JSON_LIMIT, LabModel
from kmsdeploy.providers.windows import bootstrap, payload

KEY = "BCDFG-HJKMP-QRTVW-XY234-WX4NM"


@pytest.fixture()
def model(tmp_path):
    m = LabModel(tmp_path)
    m.seed(["kms01", "kms02"], domain="lab.example")
    return m


def run(model, host, *ops, stop=True):
    text = payload.encode([payload.op(f"o{i}", name, args) for i, (name, args) in enumerate(ops)], stop_on_error=stop)
    res = model.handle(host, bootstrap.command_line(), bootstrap.frame_stdin(text))
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)


def read(model, host="kms01"):
    return run(model, host, ("licensing.read", None))["results"][0]["data"]


def test_seeded_host_is_unlicensed_keyless_with_defaults(model):
    d = read(model)
    assert d["products"] == [] and d["restart_pending"] is False
    assert d["service"]["is_kms_machine"] is False and d["service"]["current_count"] == -1
    assert d["service"]["listening_port"] == 0  # not set: slmgr shows 1688 (A.2)
    assert (d["service"]["activation_interval"], d["service"]["renewal_interval"]) == (120, 10080)
    assert d["service"]["dns_publishing"] is True and d["service"]["host_caching"] is True


def test_settings_need_a_kms_machine(model):
    doc = run(model, "kms01", ("licensing.set", {"setting": "renewal_interval", "value": 600}))
    assert doc["ok"] is False and doc["results"][0]["error"]["code"] == "KMSDEPLOY_NOT_KMS_HOST"


@pytest.mark.parametrize("setting", ["activation_interval", "renewal_interval"])
@pytest.mark.parametrize("value,ok", [(14, False), (15, True), (43200, True), (43201, False)])
def test_interval_ranges(model, setting, value, ok):
    run(model, "kms01", ("licensing.install_key", {"key": KEY}))
    doc = run(model, "kms01", ("licensing.set", {"setting": setting, "value": value}))
    assert doc["ok"] is ok
    if not ok:
        assert doc["results"][0]["error"]["code"] == "0x80070057"


def test_invalid_key_and_no_key_echo(model):
    bad = "BCDFG-HJKMP-QRTVW-XY234-AAAAA"  # vowels are not in the key alphabet
    doc = run(model, "kms01", ("licensing.install_key", {"key": bad}))
    assert doc["results"][0]["error"]["code"] == "0xC004F050"
    assert bad not in json.dumps(doc)
    for p in model.store.dir.iterdir():
        assert KEY not in p.read_text() and bad not in p.read_text()


def test_install_activate_restart_pending_and_events(model):
    doc = run(model, "kms01", ("licensing.install_key", {"key": KEY}), ("licensing.activate", {"partial_key": "WX4NM"}),
              ("licensing.set", {"setting": "listening_port", "value": 1700}))
    assert doc["ok"], doc
    d = read(model)
    assert d["products"][0]["partial_key"] == "WX4NM" and d["products"][0]["license_status"] == 1
    assert d["service"]["listening_port"] == 1700 and d["restart_pending"] is True
    # not effective until sppsvc restarts (A.1): the lab still serves the old port
    st = model.state("kms01")["licensing"]
    assert st["effective"]["listening_port"] == 0
    for p in model.store.dir.iterdir():
        assert KEY not in p.read_text()
    run(model, "kms01", ("service.restart", {"name": "sppsvc"}))
    d = read(model)
    assert d["restart_pending"] is False
    events = run(model, "kms01", ("eventlog.read", {"ids": [12294]}))["results"][0]["data"]["events"]
    assert [e["properties"] for e in events] == [["lab.example"]]
    assert "is successful" in events[0]["message"]
    assert model.kms_endpoint("kms01") is None  # SPPSVC-In-TCP is disabled on a seeded host (C.1)


def test_key_over_activation_limit(model, tmp_path):
    model.mark_key_over_limit(KEY)
    doc = run(model, "kms01", ("licensing.install_key", {"key": KEY}), ("licensing.activate", None))
    assert doc["results"][1]["error"]["code"] == "0xC004C008"


def test_csvlk_activates_at_most_six_hosts(tmp_path):
    m = LabModel(tmp_path)
    names = m.seed(7)
    codes = [run(m, h, ("licensing.install_key", {"key": KEY}), ("licensing.activate", None))["ok"] for h in names]
    assert codes == [True] * 6 + [False]
    assert run(m, names[0], ("licensing.activate", None))["ok"]  # reactivating a counted host is fine


def test_activation_count_and_12290(model):
    run(model, "kms01", ("licensing.install_key", {"key": KEY}), ("licensing.activate", None))
    model.record_activations("kms01", [f"client{i}.lab.example" for i in range(3)])
    model.log_event("kms01", 12293, "corp.example")
    d = read(model)
    assert d["service"]["current_count"] == 3
    evs = run(model, "kms01", ("eventlog.read", {"ids": [12290, 12293], "max": 2}))["results"][0]["data"]["events"]
    assert [e["id"] for e in evs] == [12290, 12290, 12293]
    assert evs[0]["log"] == "Key Management Service" and evs[2]["log"] == "Application"


def test_stop_on_error_skips_the_rest(model):
    doc = run(model, "kms01", ("licensing.activate", None), ("service.restart", {"name": "sppsvc"}))
    assert [r["status"] for r in doc["results"]] == ["failed", "skipped"]
    doc = run(model, "kms01", ("licensing.activate", None), ("licensing.read", None), stop=False)
    assert [r["status"] for r in doc["results"]] == ["failed", "ok"]


def test_state_persists_between_model_instances(model, tmp_path):
    run(model, "kms01", ("licensing.install_key", {"key": KEY}))
    again = LabModel(tmp_path)
    assert read(again)["products"][0]["partial_key"] == "WX4NM"
    assert sorted(again.hosts()) == ["kms01", "kms02"]


# ------------------------------------------------------------------ the envelope

def test_command_line_limit(model):
    res = model.handle("kms01", "powershell.exe -EncodedCommand " + "A" * 9000, b"")
    assert res.exit_code == 1 and b"too long" in res.stderr


def test_only_the_bootstrap_is_understood(model):
    res = model.handle("kms01", "powershell -encodedcommand SQBFAFgA", b"")
    assert res.exit_code == 1 and b"only the kmsdeploy runner bootstrap" in res.stderr


def test_runner_hash_is_checked(model):
    stdin = bootstrap.frame_stdin(payload.encode([]), source=bootstrap.runner_source() + "\n# tampered")
    res = model.handle("kms01", bootstrap.command_line(), stdin)
    assert res.exit_code == 3 and b"hash mismatch" in res.stderr
    assert model.handle("kms01", bootstrap.command_line(), b"no marker").exit_code == 2


def test_convertfrom_json_limit(model):
    big = payload.encode([payload.op("x", "firewall.read", {"names": ["n" * 1000] * 2200})])
    assert len(big) > CONVERTFROM_JSON_LIMIT
    res = model.handle("kms01", bootstrap.command_line(), bootstrap.frame_stdin(big))
    doc = json.loads(res.stdout)
    assert doc["ok"] is False and "maxJsonLength" in doc["error"]["message"]


def test_schema_drift_is_caught(model):
    text = json.dumps({"version": 1, "ops": [{"id": "a", "op": "licensing.set", "args": {"setting": "bogus", "value": 1}}]})
    doc = json.loads(model.handle("kms01", bootstrap.command_line(), bootstrap.frame_stdin(text)).stdout)
    assert doc["error"]["code"] == "KMSDEPLOY_PAYLOAD"


def test_unknown_host_is_seeded_on_first_contact(model):
    assert read(model, "newhost")["products"] == []
    assert "newhost" in model.hosts()
