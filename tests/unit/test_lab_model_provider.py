"""WindowsProvider driven through the lab model with a tiny in-process fake transport.

UNIT test only (the integration test uses the real WinRM endpoint and pywinrm): it
checks one runner call per read, one per apply, idempotency, a one-property change,
hostile strings arriving as data, and Windows error codes reported with their meaning.
"""
from __future__ import annotations

import json

import pytest

from kmsdeploy.kinds import get
from kmsdeploy.lab.model import DEFAULT_MSI_PATH, LabModel
from kmsdeploy.model import Action, Host, Ref, Resource, Secret
from kmsdeploy.providers import get as get_provider
from kmsdeploy.providers.base import RunContext
from kmsdeploy.providers.windows import WindowsProvider

KEY = "BCDFG-HJKMP-QRTVW-XY234-WX4NM"
HOSTILE = "x'; Remove-Item C:\\ -Recurse; '$(Stop-Computer)`n\u2018q\u2019\"\nline2"


class FakeTransport:
    """Calls the model like the WinRM endpoint would (unit tests only)."""

    def __init__(self, model: LabModel, host: str):
        self.model, self.host, self.requests, self.calls = model, host, 0, []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def run(self, command_line: str, stdin: bytes = b"", *, idempotent: bool = False, timeout=None):
        self.requests += 1
        self.calls.append((command_line, stdin))
        return self.model.handle(self.host, command_line, stdin)


@pytest.fixture()
def lab(tmp_path):
    m = LabModel(tmp_path)
    m.seed(["kms01.lab.example"], domain="lab.example", dns_server=True)
    return m


HOST = Host("kms01.lab.example", {"ansible_connection": "winrm", "ansible_host": "127.0.0.1"})
CTX = RunContext(owner_id="site1")


def res(kind, spec, state="present"):
    k = get(kind)
    return Resource(Ref(kind, HOST.name, k.identity(spec)), k.normalize(spec), state=state)


def specs(**over):
    return [
        res("kms_host", {"product_key": Secret(KEY, "env:KMS_KEY"), "dns_publishing": False, **over.get("kms", {})}),
        res("firewall_rule", {"name": "SPPSVC-In-TCP", "builtin": True, "profiles": ["domain", "private"]}),
        res("firewall_rule", {"name": "kms-branch", "display_name": over.get("display_name", "KMS from branches"),
                              "remote_addresses": ["10.20.0.0/16", "192.0.2.7"]}),
        res("dns_record", {"zone": "lab.example", "name": "_vlmcs._tcp", "type": "SRV", "ttl": 900,
                           "records": [{"target": "kms01"}]}),
        res("dns_record", {"zone": "lab.example", "name": "notes", "type": "TXT", "texts": over.get("texts", ["plain"])}),
        res("monitoring_agent", {"msi_path": DEFAULT_MSI_PATH, "management_groups": [
            {"name": "MG1", "primary_server": "ms1.lab.example", "failover_servers": ["ms2.lab.example"]}]}),
    ]


def plan(provider, t, rs):
    observed = provider.read(t, HOST, rs, CTX)
    return [get(r.ref.kind).diff(r, observed[r.ref]) for r in rs], observed


def converge(lab, rs):
    p = WindowsProvider()
    t = FakeTransport(lab, HOST.name)
    changes, _ = plan(p, t, rs)
    results = p.apply(t, HOST, changes, {r.ref: r for r in rs}, CTX)
    return changes, results, t


def test_registry_and_kinds():
    assert isinstance(get_provider("winrm"), WindowsProvider)
    assert WindowsProvider.kinds == {"kms_host", "monitoring_agent", "firewall_rule", "dns_record"}


def test_create_then_noop_with_one_call_each(lab):
    rs = specs()
    changes, results, t = converge(lab, rs)
    assert all(r.ok for r in results), results
    assert t.requests == 2  # one read + one apply for six resources
    assert [c.action for c in changes] == [Action.UPDATE, Action.UPDATE, Action.CREATE, Action.CREATE, Action.CREATE, Action.CREATE]
    p, t2 = WindowsProvider(), FakeTransport(lab, HOST.name)
    again, observed = plan(p, t2, rs)
    assert [c.action for c in again] == [Action.NOOP] * 6, [(c.ref, c.properties) for c in again]
    assert t2.requests == 1
    # the key never reaches the command line, the state files or the observed state
    for cmd, _ in t.calls:
        assert KEY not in cmd and len(cmd) < 8191
    for f in lab.store.dir.iterdir():
        assert KEY not in f.read_text()
    assert KEY not in json.dumps({str(k): v for k, v in observed.items()}, default=str)
    kms = observed[rs[0].ref]
    assert kms["partial_key"] == "WX4NM" and kms["activated"] and not kms["restart_pending"]
    # independent look at the model state: rule enabled, owner group, SRV TTL honoured
    st = lab.state(HOST.name)
    rules = {r["name"]: r for r in st["firewall"]["rules"]}
    assert rules["SPPSVC-In-TCP"]["enabled"] is True and rules["SPPSVC-In-TCP"]["profiles"] == ["Domain", "Private"]
    assert rules["kms-branch"]["group"] == "kmsdeploy:site1"
    assert rules["kms-branch"]["remote_addresses"] == ["10.20.0.0/255.255.0.0", "192.0.2.7"]
    srv = [r for r in st["dns"]["zones"]["lab.example"]["records"] if r["type"] == "SRV"]
    assert srv == [{"name": "_vlmcs._tcp", "type": "SRV", "ttl": 900,
                    "data": {"priority": 0, "weight": 0, "port": 1688, "target": "kms01.lab.example."}}]
    assert st["licensing"]["effective"]["dns_publishing"] is False
    assert lab.kms_endpoint(HOST.name) == 1688


def test_change_one_property(lab):
    converge(lab, specs())
    rs = specs(kms={"renewal_interval": 43200})
    changes, results, _ = converge(lab, rs)
    pending = [c for c in changes if c.pending]
    assert [(c.ref.kind, c.properties) for c in pending] == [("kms_host", ("renewal_interval",))]
    assert all(r.ok for r in results)
    st = lab.state(HOST.name)["licensing"]
    assert st["effective"]["renewal_interval"] == 43200 and st["restart_pending"] is False
    again, _ = plan(WindowsProvider(), FakeTransport(lab, HOST.name), rs)
    assert all(c.action is Action.NOOP for c in again)


def test_hostile_strings_are_data(lab):
    rs = specs(display_name=HOSTILE.replace("\n", " "), texts=[HOSTILE.replace("\n", " ").replace("`n", "")])
    changes, results, _ = converge(lab, rs)
    assert all(r.ok for r in results), results
    st = lab.state(HOST.name)
    rule = next(r for r in st["firewall"]["rules"] if r["name"] == "kms-branch")
    assert rule["display_name"] == HOSTILE.replace("\n", " ")
    again, _ = plan(WindowsProvider(), FakeTransport(lab, HOST.name), rs)
    assert all(c.action is Action.NOOP for c in again)


def test_invalid_key_reports_code_and_meaning_and_stops(lab):
    bad = "BCDFG-HJKMP-QRTVW-XY234-AAAAA"
    rs = [res("kms_host", {"product_key": Secret(bad, "env:K")}),
          res("firewall_rule", {"name": "SPPSVC-In-TCP", "builtin": True})]
    changes, results, _ = converge(lab, rs)
    assert results[0].ok is False and "0xC004F050: Invalid product key" in results[0].message
    assert bad not in results[0].message
    assert results[1].ok is False and "earlier change" in results[1].message
    assert lab.state(HOST.name)["firewall"]["rules"][0]["enabled"] is False  # nothing after the failure


def test_key_over_limit(lab):
    lab.mark_key_over_limit(KEY)
    _, results, _ = converge(lab, [res("kms_host", {"product_key": Secret(KEY, "env:K")})])
    assert "0xC004C008" in results[0].message and "activation limit" in results[0].message


def test_settings_without_key_on_fresh_host_are_refused_clearly(lab):
    rs = [res("kms_host", {"port": 1700, "activate": False})]
    changes, results, _ = converge(lab, rs)
    assert "not a KMS machine yet" in changes[0].notes[0]
    assert "KMSDEPLOY_NOT_KMS_HOST" in results[0].message


def test_large_batches_are_split_under_the_json_limit(lab, monkeypatch):
    from kmsdeploy.providers.windows import payload
    monkeypatch.setattr(payload, "PAYLOAD_LIMIT", 600)
    rs = [res("firewall_rule", {"name": f"r{i}", "local_ports": [2000 + i]}) for i in range(6)]
    changes, results, t = converge(lab, rs)
    assert all(r.ok for r in results) and t.requests > 2
    again, _ = plan(WindowsProvider(), FakeTransport(lab, HOST.name), rs)
    assert all(c.action is Action.NOOP for c in again)


def test_agent_primary_change_goes_through_failover_clear(lab):
    converge(lab, specs())
    rs = [res("monitoring_agent", {"msi_path": DEFAULT_MSI_PATH, "management_groups": [
        {"name": "MG1", "primary_server": "ms2.lab.example", "failover_servers": ["ms1.lab.example"]}]})]
    changes, results, _ = converge(lab, rs)
    assert changes[0].properties == ("management_groups",) and results[0].ok, results
    assert lab.state(HOST.name)["scom"]["parents"]["MG1"] == {"primary": "ms2.lab.example", "failover": ["ms1.lab.example"]}
    again, _ = plan(WindowsProvider(), FakeTransport(lab, HOST.name), rs)
    assert again[0].action is Action.NOOP


def test_agent_removal(lab):
    converge(lab, specs())
    r = res("monitoring_agent", {"msi_path": DEFAULT_MSI_PATH}, state="absent")
    changes, results, _ = converge(lab, [r])
    assert changes[0].action is Action.DELETE and results[0].ok
    assert lab.state(HOST.name)["scom"]["installed"] is False
