"""Windows provider end to end: pywinrm -> lab WinRM endpoint (real HTTP, NTLM with message
encryption) -> the lab model interpreting the runner payload.

Each test applies, checks the result with an independent reader (the model's state files,
read directly, not through the provider), plans again and expects zero changes. Mode:
NTLM + MS-WSMV encryption over HTTP; Kerberos, CredSSP and certificate auth are not
exercised. The PowerShell runner itself never runs here (no Windows host): the model
stands in for it; see docs/windows.md.
"""
from __future__ import annotations

import json

import pytest

from kmsdeploy.kinds import get
from kmsdeploy.lab.model import DEFAULT_MSI_PATH
from kmsdeploy.lab.model.state import host_file
from kmsdeploy.model import Action, Host, Ref, Resource, Secret
from kmsdeploy.providers.base import RunContext
from kmsdeploy.providers.windows import WindowsProvider
from tests.services.winlab import start_winlab

pytestmark = pytest.mark.integration

KEY = "BCDFG-HJKMP-QRTVW-XY234-WX4NM"
HOSTILE = "x'; Remove-Item C:\\ -Recurse; '$(Stop-Computer) `\"\u2018q\u2019\u201cq\u201d"
CTX = RunContext(owner_id="lab")


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    names = [f"kms{i:02d}.lab.example" for i in range(1, 4)]
    winlab = start_winlab(tmp_path_factory.mktemp("winlab"), names, block=41, dns_servers=[names[0]])
    try:
        yield winlab.server, winlab.model
    finally:
        winlab.stop()


def target(server, index):
    h = server.hosts[index]
    [(user, password)] = server.users.items()
    return Host(h.name, {"ansible_connection": "winrm", "ansible_host": h.address, "ansible_port": server.port,
                         "ansible_user": user, "ansible_password": Secret(password, "env:LAB_PW"),
                         "ansible_winrm_scheme": "http", "kmsdeploy_winrm_allow_http": True,
                         "fqdn": h.name})


def res(host, kind, spec, state="present"):
    k = get(kind)
    return Resource(Ref(kind, host.name, k.identity(spec)), k.normalize(spec), state=state)


def cycle(server, host, rs, *, apply=True):
    """read -> diff -> apply -> (read -> diff) with ONE transport (one shell) per run."""
    p = WindowsProvider()
    before = server.request_total(host.name)
    with p.transport(host, CTX) as t:
        observed = p.read(t, host, rs, CTX)
        changes = [get(r.ref.kind).diff(r, observed[r.ref]) for r in rs]
        after_read = server.request_total(host.name)
        results = p.apply(t, host, changes, {r.ref: r for r in rs}, CTX) if apply else []
    print(f"\n{host.name}: ntlm+encryption over http; read {after_read - before} WinRM requests "
          f"(incl. shell open), whole run {server.request_total(host.name) - before}")
    return changes, results, after_read - before


def independent_state(model, host):
    """Read the model's state file directly (not through the provider or the runner payload)."""
    return json.loads(host_file(model.store.dir, host).read_text())


def specs(host, **over):
    return [
        res(host, "kms_host", {"product_key": Secret(KEY, "env:KMS_KEY"), "dns_publishing": False,
                               "renewal_interval": over.get("renewal", 10080)}),
        res(host, "firewall_rule", {"name": "SPPSVC-In-TCP", "builtin": True, "profiles": ["domain", "private"]}),
        res(host, "firewall_rule", {"name": "kms-mgmt", "display_name": over.get("display_name", "KMS management"),
                                    "remote_addresses": ["10.0.0.0/8"]}),
        res(host, "dns_record", {"zone": "lab.example", "name": "_vlmcs._tcp", "type": "SRV", "ttl": 900,
                                 "records": [{"target": "kms01"}, {"target": "kms02", "priority": 10}]}),
        res(host, "monitoring_agent", {"msi_path": DEFAULT_MSI_PATH, "management_groups": [
            {"name": "MG1", "primary_server": "ms1.lab.example", "failover_servers": ["ms2.lab.example"]}]}),
    ]


def test_create_verify_and_replan_is_empty(lab):
    server, model = lab
    host = target(server, 0)
    rs = specs(host)
    changes, results, _ = cycle(server, host, rs)
    assert all(r.ok for r in results), results
    assert sum(c.pending for c in changes) == 5
    st = independent_state(model, host.name)
    assert st["licensing"]["products"][0]["partial_key"] == "WX4NM"
    assert st["licensing"]["products"][0]["license_status"] == 1
    assert st["licensing"]["effective"]["dns_publishing"] is False and not st["licensing"]["restart_pending"]
    rules = {r["name"]: r for r in st["firewall"]["rules"]}
    assert rules["SPPSVC-In-TCP"]["enabled"] is True and len([r for r in st["firewall"]["rules"] if r["name"] == "SPPSVC-In-TCP"]) == 1
    assert rules["kms-mgmt"]["group"] == "kmsdeploy:lab" and rules["kms-mgmt"]["remote_addresses"] == ["10.0.0.0/255.0.0.0"]
    srv = sorted((r["data"]["target"], r["data"]["priority"], r["ttl"])
                 for r in st["dns"]["zones"]["lab.example"]["records"] if r["type"] == "SRV")
    assert srv == [("kms01.lab.example.", 0, 900), ("kms02.lab.example.", 10, 900)]
    assert st["scom"]["parents"]["MG1"] == {"primary": "ms1.lab.example", "failover": ["ms2.lab.example"]}
    assert model.kms_endpoint(host.name) == 1688
    assert KEY not in host_file(model.store.dir, host.name).read_text()
    again, _, _ = cycle(server, host, rs, apply=False)
    assert [c.action for c in again] == [Action.NOOP] * 5, [(c.ref, c.properties) for c in again]


def test_change_one_property(lab):
    server, model = lab
    host = target(server, 1)
    cycle(server, host, specs(host)[:3])
    rs = specs(host, renewal=43200)[:3]
    changes, results, _ = cycle(server, host, rs)
    assert [(c.ref.kind, c.properties) for c in changes if c.pending] == [("kms_host", ("renewal_interval",))]
    assert all(r.ok for r in results)
    st = independent_state(model, host.name)["licensing"]
    assert st["effective"]["renewal_interval"] == 43200 and st["restart_pending"] is False
    again, _, _ = cycle(server, host, rs, apply=False)
    assert all(c.action is Action.NOOP for c in again)


def test_hostile_strings_and_read_cost_independent_of_resource_count(lab):
    server, model = lab
    host = target(server, 2)
    one = [res(host, "firewall_rule", {"name": "hostile", "display_name": HOSTILE})]
    _, results, read_one = cycle(server, host, one)
    assert all(r.ok for r in results), results
    rule = next(r for r in independent_state(model, host.name)["firewall"]["rules"] if r["name"] == "hostile")
    assert rule["display_name"] == HOSTILE
    many = one + [res(host, "firewall_rule", {"name": f"r{i}", "local_ports": [3000 + i]}) for i in range(20)]
    _, results, _ = cycle(server, host, many)
    assert all(r.ok for r in results)
    again, _, read_many = cycle(server, host, many, apply=False)
    assert all(c.action is Action.NOOP for c in again)
    assert read_many == read_one  # one runner call per read, whatever the resource count


def test_windows_error_reaches_the_user_with_meaning(lab):
    server, model = lab
    host = target(server, 2)
    rs = [res(host, "kms_host", {"product_key": Secret("BCDFG-HJKMP-QRTVW-XY234-AAAAA", "env:BAD"), "activate": False})]
    _, results, _ = cycle(server, host, rs)
    assert not results[0].ok and "0xC004F050: Invalid product key" in results[0].message
    assert "AAAAA" not in results[0].message
