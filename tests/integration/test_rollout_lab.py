"""Staged rollouts end to end through `kmsdeploy.cli.main` against the lab WinRM endpoint.

24 simulated Windows hosts in 12 sites (2 hosts per site) behind ONE real WinRM endpoint
(NTLM with message encryption over HTTP, unmodified pywinrm) and the lab model of the
Windows services. Every host gets 4 resources: `kms_host` (key installed, not activated,
`dns_publishing: false`), the built-in `SPPSVC-In-TCP` rule, an owned rule for TCP 1688
and a SCOM `monitoring_agent`. Failures are injected per host:
- apply-time, permanent: the OperationsManager module missing (`set_om_module(host, False)`),
  so Set-SCOMParentManagementServer fails (E.3) and the host's later changes are skipped;
- transport faults from `kmsdeploy.lab.faults`: a dropped connection, an HTTP 500
  (transient: retried) and an authentication failure (permanent: not retried).

Results are checked with independent readers: the model's state files read directly
(not through the provider), and the endpoint's per-host request counters (what each
host actually received). Tests assert request counts, never wall time. Every test
re-plans afterwards and expects zero changes where the rollout converged.
"""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import pytest
import yaml

from kmsdeploy import cli
from kmsdeploy.lab.model import DEFAULT_MSI_PATH, LabModel
from kmsdeploy.lab.model.state import host_file
from kmsdeploy.lab.faults import FaultConfig
from kmsdeploy.lab.winrm_server import LabHostConfig, WinrmLabServer

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "RolloutAdmin", "Lab-Rollout-Passw0rd!"  # unique per module: pyspnego reads one NTLM user file per process
WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").lstrip("gw") or 0)
NET = f"127.{180 + WORKER % 70}.52"  # block 52: no other test uses it (see test_winrm_*.py, test_health.py)
KEY = "BCDFG-HJKMP-QRTVW-XY234-WX4NM"
OWNER = "rollout-lab"
SITES = [f"site{s:02d}" for s in range(1, 13)]
HOSTS = [f"{site}-kms{h}" for site in SITES for h in (1, 2)]  # inventory order = site order
ESTATE20 = HOSTS[:20]  # sites 01..10: the group `estate20`


def site_of(host: str) -> str:
    return host.split("-")[0]


class Lab:
    """The module's lab: endpoint + model + files; `fresh()` resets it for a test."""

    def __init__(self, root: Path, server: WinrmLabServer, model: LabModel):
        self.root, self.server, self.model = root, server, model
        self.inventory = str(root / "inventory.yml")

    def fresh(self) -> None:
        """Every host back to a freshly seeded server; no faults; counters at zero."""
        self.model.seed(HOSTS, domain="lab.example", overwrite=True)
        self.server.faults.clear()
        self.server.reset_counters()

    def playbook(self, name: str, rollout: dict | None) -> str:
        play = {"name": "KMS hosts: key, settings, firewall, SCOM", "hosts": "kms_hosts",
                "resources": [
                    {"kind": "kms_host", "product_key": {"env": "ROLLOUT_LAB_CSVLK"}, "activate": False,
                     "dns_publishing": False},
                    {"kind": "firewall_rule", "name": "SPPSVC-In-TCP", "builtin": True, "enabled": True,
                     "profiles": ["domain", "private"]},
                    {"kind": "firewall_rule", "name": "kms-1688", "display_name": "KMS (kmsdeploy)",
                     "protocol": "tcp", "local_ports": [1688], "remote_addresses": ["10.0.0.0/8"]},
                    {"kind": "monitoring_agent", "msi_path": DEFAULT_MSI_PATH, "management_groups": [
                        {"name": "MG1", "primary_server": "ms1.lab.example",
                         "failover_servers": ["ms2.lab.example"]}]},
                ]}
        if rollout is not None:
            play["rollout"] = rollout
        path = self.root / f"{name}.yml"
        path.write_text(yaml.safe_dump([play], sort_keys=False))
        return str(path)

    def requests(self, host: str) -> int:
        return self.server.request_total(host)

    def state(self, host: str) -> dict:
        """Independent reader: the model's state file, read directly."""
        return json.loads(host_file(self.model.store.dir, host).read_text())

    def converged_on_host(self, host: str) -> bool:
        st = self.state(host)
        lic = st["licensing"]
        rules = {r["name"]: r for r in st["firewall"]["rules"]}
        return (bool(lic["products"]) and lic["products"][0]["partial_key"] == KEY[-5:]
                and lic["configured"]["dns_publishing"] is False and not lic["restart_pending"]
                and rules["SPPSVC-In-TCP"]["enabled"] is True
                and rules.get("kms-1688", {}).get("group") == f"kmsdeploy:{OWNER}"
                and st["scom"]["installed"] is True
                and st["scom"]["parents"].get("MG1") == {"primary": "ms1.lab.example", "failover": ["ms2.lab.example"]})

    def pristine(self, host: str) -> bool:
        """Untouched since seeding: no key, publishing on, built-in rule off, no owned rule, no agent."""
        st = self.state(host)
        return (not st["licensing"]["products"] and st["licensing"]["configured"]["dns_publishing"] is True
                and [r["name"] for r in st["firewall"]["rules"]] == ["SPPSVC-In-TCP"]
                and st["firewall"]["rules"][0]["enabled"] is False and st["scom"]["installed"] is False)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("rollout-lab")
    model = LabModel(root / "model")
    model.seed(HOSTS, domain="lab.example")
    configs = [LabHostConfig(h, f"{NET}.{i}") for i, h in enumerate(HOSTS, 1)]
    server = WinrmLabServer(configs, handler=model.handle, users={USER: PASSWORD}, scheme="http",
                            auth="ntlm").start()
    (root / "password").write_text(PASSWORD + "\n")
    inventory = {"all": {
        "vars": {"ansible_connection": "winrm", "ansible_port": server.port, "ansible_user": USER,
                 "ansible_password": {"file": str(root / "password")}, "ansible_winrm_scheme": "http",
                 "ansible_winrm_transport": "ntlm", "kmsdeploy_winrm_allow_http": True,
                 # short timeouts keep a failing host from slowing the suite
                 "ansible_winrm_operation_timeout_sec": 5, "ansible_winrm_read_timeout_sec": 8},
        "children": {
            "sites": {"children": {site: {"hosts": {
                h: {"ansible_host": c.address, "fqdn": f"{h}.lab.example"}
                for h, c in zip(HOSTS, configs) if site_of(h) == site}} for site in SITES}},
            "kms_hosts": {"children": {site: None for site in SITES}},
            "estate20": {"children": {site: None for site in SITES[:10]}},
        }}}
    (root / "inventory.yml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    os.environ["ROLLOUT_LAB_CSVLK"] = KEY
    os.environ["KMSDEPLOY_OWNER_ID"] = OWNER
    try:
        yield Lab(root, server, model)
    finally:
        server.stop()
        os.environ.pop("ROLLOUT_LAB_CSVLK", None)
        os.environ.pop("KMSDEPLOY_OWNER_ID", None)


def kmsdeploy(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    print(out[-3000:], err[-3000:])  # visible with -s / on failure
    return rc, out, err


def plan_json(lab, capsys, playbook, *extra) -> dict:
    rc, out, err = kmsdeploy(capsys, "plan", "-i", lab.inventory, playbook, "--format", "json", *extra)
    assert rc in (0, 1), err
    return json.loads(out)


def pending_targets(doc: dict) -> set[str]:
    return {c["target"] for c in doc["changes"] if c["action"] != "noop"}


def schema(name: str) -> jsonschema.protocols.Validator:
    registry_docs = {}
    for p in (ROOT / "schemas").glob("*.json"):
        d = json.loads(p.read_text())
        if "$id" in d:
            registry_docs[d["$id"]] = d
    from referencing import Registry, Resource

    registry = Registry().with_resources((k, Resource.from_contents(v)) for k, v in registry_docs.items())
    doc = json.loads((ROOT / "schemas" / name).read_text())
    cls = jsonschema.validators.validator_for(doc)
    return cls(doc, registry=registry)


@pytest.fixture
def fresh(lab):
    lab.fresh()
    return lab


# ---------------------------------------------------------------------------- waves and budget

def test_canary_failure_stops_before_wave_two(fresh, capsys):
    lab = fresh
    pb = lab.playbook("canary", {"canary": 1, "waves": [5], "max_fail_percentage": 50})
    canary = HOSTS[:2]  # the first site is the canary unit
    lab.model.set_om_module(canary[0], False)
    rc, out, err = kmsdeploy(capsys, "apply", "-i", lab.inventory, pb, "--auto-approve", "--report-json",
                             str(lab.root / "canary.json"))
    assert rc == 3, err
    assert "canary: 1 of 2 target(s) failed" in err
    doc = json.loads((lab.root / "canary.json").read_text())
    status = {h["target"]: h["status"] for h in doc["hosts"]}
    assert status[canary[0]] == "failed" and status[canary[1]] == "converged"
    later = HOSTS[2:]
    assert {status[h] for h in later} == {"not_run"}
    assert [w["canary"] for w in doc["waves"]] == [True]
    # the hosts of later waves were read once by the plan and never changed
    read_cost = lab.requests(later[0])
    assert all(lab.requests(h) == read_cost for h in later)
    assert all(lab.pristine(h) for h in later)
    assert lab.converged_on_host(canary[1]) and not lab.converged_on_host(canary[0])


def test_one_of_twenty_failing_within_ten_percent_budget_continues_and_reports(fresh, capsys):
    lab = fresh
    pb = lab.playbook("budget", {"waves": [5], "max_fail_percentage": 10})  # 2 waves of 5 sites = 10 hosts
    bad = ESTATE20[3]
    lab.model.set_om_module(bad, False)
    paths = {k: str(lab.root / f"one-of-20.{k}") for k in ("json", "xml", "md")}
    rc, out, err = kmsdeploy(capsys, "apply", "-i", lab.inventory, pb, "--limit", "estate20", "--auto-approve",
                             "--report-json", paths["json"], "--report-junit", paths["xml"],
                             "--report-markdown", paths["md"])
    assert rc == 1, err
    assert "Rollout stopped" not in err
    # progress in non-TTY mode (captured stdout): plain lines, no escape codes
    assert "\x1b[" not in out
    assert "== wave 1/2: 10 target(s) in 5 unit(s)" in out and "== wave 2/2: 10 target(s) in 5 unit(s)" in out
    assert f"{bad}: failed" in out and "done: 9 ok, 1 failed" in out
    # JSON report: schema-valid, 19 converged
    doc = json.loads(Path(paths["json"]).read_text())
    schema("run-report.schema.json").validate(doc)
    assert doc["outcome"] == "failed" and doc["exit_code"] == 1 and doc["counts"] == {"converged": 19, "failed": 1}
    assert [(w["targets"], w["failed"]) for w in doc["waves"]] == [(10, 1), (10, 0)]
    host = {h["target"]: h for h in doc["hosts"]}
    assert "KMSDEPLOY_NO_MODULE" in " ".join(host[bad]["errors"])
    assert all(host[h]["requests"] > 0 and len(host[h]["applied"]) == 4 for h in ESTATE20 if h != bad)
    # JUnit: one suite per site, one case per host and resource; the failed host fails its 4 resources
    root = ET.parse(paths["xml"]).getroot()
    assert len(root.findall("testsuite")) == 10 and len(root.findall(".//testcase")) == 80
    failures = root.findall(".//failure")
    assert len(failures) == 4 and {c.get("classname") for c in root.findall(".//testcase[failure]")} == {bad}
    # Markdown: outcome line, waves table, the failed host
    md = Path(paths["md"]).read_text()
    assert md.startswith("### kmsdeploy apply: :x: failed") and "| 1 | 10 | 1 |" in md and f"`{bad}`" in md
    # the independent reader agrees
    assert all(lab.converged_on_host(h) for h in ESTATE20 if h != bad) and not lab.converged_on_host(bad)
    assert all(lab.pristine(h) for h in HOSTS[20:])  # outside --limit
    # idempotency: once the module is back, only the failed host still has work, and it converges
    lab.model.set_om_module(bad, True)
    assert pending_targets(plan_json(lab, capsys, pb, "--limit", "estate20")) == {bad}
    rc, _, err = kmsdeploy(capsys, "apply", "-i", lab.inventory, pb, "--limit", "estate20", "--auto-approve", "-q")
    assert rc == 0, err
    rc, out, _ = kmsdeploy(capsys, "plan", "-i", lab.inventory, pb, "--limit", "estate20", "--detailed-exitcode")
    assert rc == 0 and "No changes" in out


def test_three_of_twenty_failing_stops_the_rollout(fresh, capsys):
    lab = fresh
    pb = lab.playbook("budget", {"waves": [5], "max_fail_percentage": 10})
    bad = [ESTATE20[0], ESTATE20[5], ESTATE20[9]]  # all in wave 1 (sites 01..05)
    for h in bad:
        lab.model.set_om_module(h, False)
    rc, out, err = kmsdeploy(capsys, "apply", "-i", lab.inventory, pb, "--limit", "estate20", "--auto-approve",
                             "--report-json", str(lab.root / "three.json"))
    assert rc == 3, err
    assert "wave 1/2: 3 of 10 target(s) failed, over the budget of 10%" in err
    doc = json.loads((lab.root / "three.json").read_text())
    schema("run-report.schema.json").validate(doc)
    assert doc["outcome"] == "stopped" and doc["exit_code"] == 3
    assert doc["counts"] == {"converged": 7, "failed": 3, "not_run": 10}
    wave2 = ESTATE20[10:]
    read_cost = lab.requests(wave2[0])
    assert all(lab.requests(h) == read_cost for h in wave2) and all(lab.pristine(h) for h in wave2)


# ---------------------------------------------------------------------------- resume

def test_resume_after_a_stopped_and_interrupted_run_does_not_redo_finished_sites(fresh, capsys):
    lab = fresh
    pb = lab.playbook("resume", {"canary": 1, "waves": [3], "max_fail_percentage": 0})
    journal = lab.root / "run.jsonl"
    journal.unlink(missing_ok=True)
    # canary = site01; wave 1 = sites 02..04: one failure there stops the rollout
    bad = HOSTS[4]  # site03
    lab.model.set_om_module(bad, False)
    rc, _, err = kmsdeploy(capsys, "apply", "-i", lab.inventory, pb, "--limit", "estate20", "--auto-approve",
                           "--journal", str(journal), "-q")
    assert rc == 3, err
    finished = [h for h in HOSTS[:8] if h != bad]  # canary + wave 1, minus the failed host
    assert all(lab.converged_on_host(h) for h in finished)
    # the run is then killed mid-write: a torn last journal line
    with journal.open("a") as fh:
        fh.write('{"event": "target", "target": "site09-kms1", "sta')
    # the fault is repaired; resume
    lab.model.set_om_module(bad, True)
    before = {h: lab.state(h) for h in finished}
    lab.server.reset_counters()
    rc, out, err = kmsdeploy(capsys, "apply", "-i", lab.inventory, pb, "--limit", "estate20", "--auto-approve",
                             "--resume", str(journal), "--report-json", str(lab.root / "resume.json"))
    assert rc == 0, err
    doc = json.loads((lab.root / "resume.json").read_text())
    assert doc["counts"] == {"converged": 20}
    assert not any(w["canary"] for w in doc["waves"])  # the passed canary is not repeated
    assert "== canary" not in out
    # finished hosts: only the plan's read reached them (one round trip), and their state did not change
    read_cost = {lab.requests(h) for h in finished}
    assert len(read_cost) == 1 and read_cost.pop() <= 9
    assert all(lab.state(h) == before[h] for h in finished)
    # the failed and the never-run hosts were applied: more than a read each
    rest = [h for h in ESTATE20 if h not in finished]
    assert all(lab.requests(h) > lab.requests(finished[0]) for h in rest)
    assert all(lab.converged_on_host(h) for h in ESTATE20)
    rc, out, _ = kmsdeploy(capsys, "plan", "-i", lab.inventory, pb, "--limit", "estate20", "--detailed-exitcode")
    assert rc == 0 and "No changes" in out


def test_resume_still_applies_a_finished_host_that_drifted(fresh, capsys):
    lab = fresh
    pb = lab.playbook("drift", {"waves": [5]})
    journal = lab.root / "drift.jsonl"
    journal.unlink(missing_ok=True)
    rc, _, err = kmsdeploy(capsys, "apply", "-i", lab.inventory, pb, "--limit", "site01", "--auto-approve",
                           "--journal", str(journal), "-q")
    assert rc == 0, err
    drifted = HOSTS[0]
    with lab.model.store.edit(drifted) as st:  # someone disables the rule by hand
        next(r for r in st["firewall"]["rules"] if r["name"] == "SPPSVC-In-TCP")["enabled"] = False
    rc, _, err = kmsdeploy(capsys, "apply", "-i", lab.inventory, pb, "--limit", "site01", "--auto-approve",
                           "--resume", str(journal), "-q")
    assert rc == 0, err
    assert lab.converged_on_host(drifted)
    rc, out, _ = kmsdeploy(capsys, "plan", "-i", lab.inventory, pb, "--limit", "site01", "--detailed-exitcode")
    assert rc == 0 and "No changes" in out


# ---------------------------------------------------------------------------- shards

def test_shards_cover_every_site_exactly_once_and_reports_merge(fresh, capsys):
    lab = fresh
    pb = lab.playbook("shards", {"waves": ["50%"]})
    shard_targets = [pending_targets(plan_json(lab, capsys, pb, "--shard", f"{k}/3")) for k in (1, 2, 3)]
    assert set().union(*shard_targets) == set(HOSTS)
    assert sum(len(s) for s in shard_targets) == len(HOSTS)  # pairwise disjoint
    for s in shard_targets:  # whole sites per shard
        assert {h for h in HOSTS if site_of(h) in {site_of(t) for t in s}} == s
    assert all(shard_targets), "every shard has sites (12 sites over 3 shards)"
    lab.server.reset_counters()
    reports = []
    for k in (1, 2):
        path = str(lab.root / f"shard-{k}.json")
        rc, _, err = kmsdeploy(capsys, "apply", "-i", lab.inventory, pb, "--shard", f"{k}/3", "--auto-approve",
                               "-q", "--report-json", path)
        assert rc == 0, err
        reports.append(path)
        assert json.loads(Path(path).read_text())["shard"] == f"{k}/3"
    # a shard job never touched a host of another shard
    assert all(lab.requests(h) == 0 and lab.pristine(h) for h in shard_targets[2])
    junit = str(lab.root / "all.xml")
    rc, out, err = kmsdeploy(capsys, "report", "merge", *reports, "--report-junit", junit)
    assert rc == 0, err
    merged = json.loads(out)
    schema("run-report.schema.json").validate(merged)
    assert {h["target"] for h in merged["hosts"]} == shard_targets[0] | shard_targets[1]
    assert merged["merged_from"] == ["1/3", "2/3"] and merged["outcome"] == "converged"
    assert len(ET.parse(junit).getroot().findall(".//testcase")) == 4 * len(shard_targets[0] | shard_targets[1])
    # the same report twice is refused
    rc, _, err = kmsdeploy(capsys, "report", "merge", reports[0], reports[0])
    assert rc == 1 and "more than one report" in err
    assert all(lab.converged_on_host(h) for h in shard_targets[0] | shard_targets[1])
    assert pending_targets(plan_json(lab, capsys, pb)) == shard_targets[2]


def test_noop_shard_still_writes_its_report(fresh, capsys):
    """A CI job whose shard has nothing to do must still leave a report for `report merge`."""
    lab = fresh
    pb = lab.playbook("noop-shard", None)
    rc, _, err = kmsdeploy(capsys, "apply", "-i", lab.inventory, pb, "--limit", "site01", "--auto-approve", "-q")
    assert rc == 0, err
    path = lab.root / "noop.json"
    path.unlink(missing_ok=True)
    rc, _, err = kmsdeploy(capsys, "apply", "-i", lab.inventory, pb, "--limit", "site01", "--auto-approve", "-q",
                           "--report-json", str(path))
    assert rc == 0, err
    doc = json.loads(path.read_text())
    schema("run-report.schema.json").validate(doc)
    assert doc["outcome"] == "converged" and doc["counts"] == {"unchanged": 2} and doc["waves"] == []


# ---------------------------------------------------------------------------- transient and permanent faults

def test_transient_faults_are_retried_and_auth_failures_are_not(fresh, capsys):
    lab = fresh
    pb = lab.playbook("faults", None)
    dropped, busy, locked, clean = HOSTS[0], HOSTS[1], HOSTS[2], HOSTS[3]
    # the first Command of `dropped` (the plan's read: idempotent) loses its connection
    lab.server.faults.set(dropped, FaultConfig(drop_next=1, actions=("Command",)))
    # the first two Commands of `busy` get HTTP 500 / w:InternalError (WinRM busy)
    lab.server.faults.set(busy, FaultConfig(error_500_next=2, actions=("Command",)))
    # `locked`'s password changed: every request is refused after the handshake
    lab.server.faults.set(locked, FaultConfig(auth_failure=True))
    rc, out, err = kmsdeploy(capsys, "apply", "-i", lab.inventory, pb, "--limit", "site01:site02",
                             "--auto-approve", "--report-json", str(lab.root / "faults.json"))
    assert rc == 1, err
    doc = {h["target"]: h for h in json.loads((lab.root / "faults.json").read_text())["hosts"]}
    assert doc[dropped]["status"] == doc[busy]["status"] == doc[clean]["status"] == "converged"
    assert lab.server.faults.fired[dropped]["drop_before"] == 1
    assert lab.server.faults.fired[busy]["error_500"] == 2
    # a retried request is a request more than the clean host's run, and nothing else
    assert lab.requests(busy) == lab.requests(clean) + 2
    assert lab.requests(dropped) > lab.requests(clean)
    assert all(lab.converged_on_host(h) for h in (dropped, busy, clean))
    # permanent: one handshake attempt (no retry), reported per target, nothing applied
    assert doc[locked]["status"] == "failed" and "auth" in " ".join(doc[locked]["errors"]).lower()
    assert lab.requests(locked) == lab.server.faults.fired[locked]["auth_failure"] <= 3
    assert lab.pristine(locked)
    assert PASSWORD not in out + err
    lab.server.faults.clear()
    assert pending_targets(plan_json(lab, capsys, pb, "--limit", "site01:site02")) == {locked}


# ---------------------------------------------------------------------------- offline plans

def test_facts_collect_then_offline_plan_matches_the_online_plan(fresh, capsys):
    lab = fresh
    pb = lab.playbook("facts", None)
    # some hosts already converged, the rest not: the plan has both noops and changes
    rc, _, err = kmsdeploy(capsys, "apply", "-i", lab.inventory, pb, "--limit", "site01:site02", "--auto-approve", "-q")
    assert rc == 0, err
    facts = str(lab.root / "facts.json")
    rc, out, err = kmsdeploy(capsys, "facts", "collect", "-i", lab.inventory, pb, "--out", facts)
    assert rc == 0, err
    assert f"Collected facts of {len(HOSTS)} target(s)" in out
    assert KEY not in Path(facts).read_text() and PASSWORD not in Path(facts).read_text()
    online = plan_json(lab, capsys, pb)
    lab.server.reset_counters()
    offline = plan_json(lab, capsys, pb, "--facts", facts)
    assert all(lab.requests(h) == 0 for h in HOSTS)  # offline: no connection at all
    def comparable(doc):
        """Changes without the product key: an offline plan has no secrets (that is its point), so the
        desired partial key is unknown and kms_host's key is not compared offline (docs/rollout.md)."""
        out = []
        for c in sorted(doc["changes"], key=lambda c: c["address"]):
            c = {k: v for k, v in c.items() if k not in ("location", "notes")}
            c["properties"] = [p for p in c["properties"] if p != "partial_key"]
            for side in ("before", "after"):
                if isinstance(c[side], dict):
                    c[side] = {k: v for k, v in c[side].items() if k not in ("partial_key", "product_key")}
            c["action"] = c["action"] if c["properties"] or c["action"] != "update" else "noop"
            out.append(c)
        return out

    assert comparable(offline) == comparable(online)
    assert offline["summary"] == online["summary"] and online["summary"]["noop"] == 16
    assert {c["target"] for c in online["changes"] if "partial_key" in c["properties"]} == set(HOSTS[4:])
    assert offline["facts_age_seconds"] >= 0 and "facts_age_seconds" not in online
    rc, out, _ = kmsdeploy(capsys, "plan", "-i", lab.inventory, pb, "--facts", facts)
    assert "Planned offline from facts collected" in out
