"""A FAILED primary/failover read of a SCOM agent is never reported as converged.

Bug fixed with these tests: the provider turned a failed ``scom.read_parents`` (agent
unknown to the management group, server unreachable) into the same "cannot be read here"
as a host without the OperationsManager module, and the diff then compared only the rest:
after an apply whose ``set_failover`` failed, the next plan said "No changes".
Now the failure is kept (``_parents_errors``), the diff plans an update naming the error,
and the apply sets failover again (converging, or failing with the reason). Without the
module (``available: false``) the old tolerance stays.
"""
from __future__ import annotations

import json
from pathlib import Path

from kmsdeploy.kinds import get
from kmsdeploy.model import Action, Host, Ref, Resource
from kmsdeploy.providers.base import RunContext
from kmsdeploy.providers.windows import WindowsProvider, payload, results
from kmsdeploy.transports.winrm import CommandResult

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "windows" / "scom_read_parents_failed.json"
HOST = Host("scom01", {"ansible_connection": "winrm", "ansible_host": "127.0.0.1", "fqdn": "scom01.lab.example"})
KIND = get("monitoring_agent")


def resource(groups):
    spec = {"msi_path": "C:\\Install\\SCOM\\MOMAgent.msi", "management_groups": groups}
    return Resource(Ref("monitoring_agent", HOST.name, KIND.identity(spec)), KIND.normalize(spec))


GROUPS = [{"name": "MG1", "primary_server": "ms1.lab.example", "failover_servers": ["ms2.lab.example"]},
          {"name": "MG2", "primary_server": "ms7.lab.example", "failover_servers": ["ms8.lab.example"]}]


class CannedTransport:
    """Answers every runner call with the captured-style sample document."""

    requests = 0

    def run(self, command_line, stdin=b"", *, idempotent=False, timeout=None):
        return CommandResult(SAMPLE.read_bytes(), b"", 0)


def test_failed_parents_read_is_kept_apart_from_no_module():
    got = results.by_id(json.loads(SAMPLE.read_text()))
    obs = results.agent_observed(got["scom"]["data"], {
        "mg1": {"error": results.error_text(got["parents0.0"]["error"])}, "mg2": got["parents0.1"]["data"]})
    mg1, mg2 = obs["management_groups"]
    assert mg1["failover_servers"] is None and mg2["failover_servers"] is None
    assert list(obs["_parents_errors"]) == ["mg1"] and "not known to the management group" in obs["_parents_errors"]["mg1"]


def test_provider_read_then_diff_plans_an_update_naming_the_error():
    r = resource(GROUPS)
    observed = WindowsProvider().read(CannedTransport(), HOST, [r], RunContext(owner_id="t"))[r.ref]
    change = KIND.diff(r, observed)
    assert change.action is Action.UPDATE and change.properties == ("management_groups",)
    assert any("MG1 could not be read" in n and "not known" in n for n in change.notes)
    assert any("MG2" in n and "OperationsManager" in n for n in change.notes)  # tolerance kept


def test_no_module_alone_still_compares_only_the_rest():
    got = results.by_id(json.loads(SAMPLE.read_text()))
    scom = dict(got["scom"]["data"], management_groups=got["scom"]["data"]["management_groups"][1:])
    observed = results.agent_observed(scom, {"mg2": got["parents0.1"]["data"]})
    assert "_parents_errors" not in observed
    change = KIND.diff(resource(GROUPS[1:]), observed)
    assert change.action is Action.NOOP and "OperationsManager" in change.notes[0]


def test_apply_sets_failover_of_the_unreadable_group_only():
    r = resource(GROUPS)
    observed = WindowsProvider().read(CannedTransport(), HOST, [r], RunContext(owner_id="t"))[r.ref]
    change = KIND.diff(r, observed)
    ops, _ = payload.apply_ops([change], {r.ref: r}, owner_id="t", host_name=HOST.name,
                               host_address="scom01.lab.example")
    assert [(o["op"], o["args"]) for o in ops] == [
        ("scom.set_failover", {"management_server": "ms1.lab.example", "agent": "scom01.lab.example",
                               "failover": ["ms2.lab.example"]})]
