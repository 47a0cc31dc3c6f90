"""``kmsdeploy health`` through the lab: real WinRM endpoint (NTLM with message encryption
over HTTP) backed by the Windows model, a real BIND for the ``_vlmcs._tcp`` lookups and
real TCP listeners on the KMS port.

Seeding (test-only): hosts are made licensed KMS hosts with the model's own handlers
(install_key/activate/restart, firewall.set) and ``LabModel.record_activations`` /
``log_event`` / ``record_failed_requests`` / ``log_renewal_timer_failure``; events at a
chosen time (a 12290 nine hours old, a 12291) are written with
``kmsdeploy.lab.model.eventlog.write`` through ``LabModel.edit`` (the host's state file
and its 'Key Management Service' log). This module runs the WinRM endpoint in-process
(not the lab daemon), so it opens a listener on ``address:port`` for every host
``LabModel.kms_endpoint`` says is listening (licensed, sppsvc running, firewall rule
enabled) — "port closed" is the absence of that listener. (The daemon's own listeners are
tested in tests/integration/test_lab_kms_port.py.)

Event 12292, the sppsvc service state (``service.read``) and the failed-request
counters are read through the lab and tested at the end of this module.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os

import jsonschema
import pytest
import yaml

from kmsdeploy.health import command
from kmsdeploy.lab.kms_listener import KmsListeners
from kmsdeploy.lab.model import LabModel
from kmsdeploy.lab.model import eventlog, firewall, licensing
from kmsdeploy.lab.winrm_server import LabHostConfig, WinrmLabServer
from kmsdeploy.spec.schemas import load_schema
from tests.services.bind import DnsZone, _counter

pytestmark = pytest.mark.integration

# an account of its own: NTLM_USER_FILE is per process and test_rollout_lab.py registers
# "Administrator" with another password (pyspnego takes the first line for a name)
USER, PASSWORD = "HealthLabAdmin", "Lab-Health-Passw0rd!"
WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").lstrip("gw") or 0)
NET = f"127.{180 + WORKER % 70}.61"
KEY_CHARS = "BCDFGHJKMNPQRTVWXY2346789"

# name -> (site, address last octet)
HOSTS = {"a-green": ("alpha", 1), "a-idle": ("alpha", 2), "a-low": ("alpha", 3), "a-pub": ("alpha", 4),
         "a-unlic": ("alpha", 5), "b-fw": ("beta", 6), "b-start": ("beta", 7), "g-ok": ("gamma", 8)}
DOWN = ("g-down", "gamma", 99)  # in the inventory, no WinRM endpoint at its address


def key_for(i: int) -> str:
    return "-".join("".join(KEY_CHARS[(i * 7 + j * 3 + k) % len(KEY_CHARS)] for k in range(5)) for j in range(5))


class Lab:
    def __init__(self, tmp, bind_server):
        self.tmp = tmp
        self.model = LabModel(tmp / "state")
        self.zones = {site: DnsZone(bind_server, f"t{next(_counter):02d}.kmsdeploy.test") for site in ("alpha", "beta", "gamma")}
        self.bind = bind_server
        self.server = WinrmLabServer([LabHostConfig(n, f"{NET}.{o}") for n, (_, o) in HOSTS.items()],
                                     self.model.handle, scheme="http", auth="ntlm", users={USER: PASSWORD}).start()
        # the lab daemon's own listeners, fed from the same model (kmsdeploy/lab/kms_listener.py)
        self.listeners = KmsListeners({n: f"{NET}.{o}" for n, (_, o) in HOSTS.items()}, self.model.kms_endpoint)
        self.now = dt.datetime.now(dt.timezone.utc)

    def address(self, name: str) -> str:
        return f"{NET}.{HOSTS[name][1]}" if name in HOSTS else f"{NET}.{DOWN[2]}"

    def edit(self, host: str):
        return self.model.edit(host)

    def make_kms_host(self, host: str, i: int, *, activate=True, clients=30, rule_enabled=True) -> None:
        with self.edit(host) as ctx:
            licensing.install_key(ctx, {"key": key_for(i)})
            if activate:
                licensing.activate(ctx, {})
            licensing.set_setting(ctx, {"setting": "dns_publishing", "value": True})
            licensing.restart(ctx, {})  # a licensed publishing host logs 12294 for its domain
            firewall.set_rule(ctx, {"name": "SPPSVC-In-TCP", "properties": {"enabled": rule_enabled}})
        if clients:
            self.model.record_activations(host, [f"pc{n}.corp.example" for n in range(clients)])

    def write_event(self, host: str, event_id: int, message: str, props: list, age: dt.timedelta) -> None:
        when = (dt.datetime.now(dt.timezone.utc) - age).isoformat().replace("+00:00", "Z")
        with self.edit(host) as ctx:
            eventlog.write(ctx, event_id, message, props, time=when)

    def sync_listeners(self) -> None:
        self.listeners.sync()
        conflicts = {n: v for n, v in self.listeners.status().items() if not v["listening"]}
        assert not conflicts, f"KMS port listeners could not start: {conflicts}"

    def srv(self, site: str, *records: str) -> None:
        def build(u):
            u.delete("_vlmcs._tcp", "SRV")
            for r in records:
                u.add("_vlmcs._tcp", 3600, "SRV", r)
        assert self.zones[site].update(build) == 0

    def a_record(self, site: str, name: str, address: str) -> None:
        assert self.zones[site].update(lambda u: u.replace(name, 300, "A", address)) == 0

    def write_inventory(self) -> str:
        pw = self.tmp / "password"
        pw.write_text(PASSWORD + "\n")
        pw.chmod(0o600)
        sites = {}
        for site in ("alpha", "beta", "gamma"):
            hosts = {n: {"ansible_host": self.address(n)} for n, (s, _) in HOSTS.items() if s == site}
            if site == DOWN[1]:
                hosts[DOWN[0]] = {"ansible_host": self.address(DOWN[0])}
            sites[site] = {"hosts": hosts, "vars": {
                "site_domain": self.zones[site].zone,
                "kmsdeploy_health": {"family": "client", "idle_hours": 8,
                                     "resolver": f"{self.bind.address}:{self.bind.port}"}}}
        inv = {"all": {"children": {
            "sites": {"children": sites},
            "kms_hosts": {"hosts": {n: None for n in [*HOSTS, DOWN[0]]}, "vars": {
                "ansible_connection": "winrm", "ansible_port": self.server.port, "ansible_user": USER,
                "ansible_password": {"file": str(pw)}, "ansible_winrm_scheme": "http",
                "kmsdeploy_winrm_allow_http": True, "ansible_winrm_connection_timeout": 3}},
        }}}
        path = self.tmp / "inventory.yml"
        path.write_text(yaml.safe_dump(inv, sort_keys=False))
        return str(path)

    def close(self) -> None:
        self.listeners.close()
        self.server.stop()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, bind_server):
    lab = Lab(tmp_path_factory.mktemp("health"), bind_server)
    try:
        lab.model.seed(list(HOSTS), domain="corp.example")
        for i, name in enumerate(HOSTS):
            with lab.edit(name) as ctx:  # publish in the site's zone (A.3: the host's own domain)
                ctx.state["domain"] = lab.zones[HOSTS[name][0]].zone
            if name == "a-unlic":
                lab.make_kms_host(name, i, activate=False, clients=0)
            elif name == "b-fw":
                lab.make_kms_host(name, i, rule_enabled=False)
            elif name == "a-low":
                lab.make_kms_host(name, i, clients=24)
            else:
                lab.make_kms_host(name, i)
        # a-idle: its only 12290s are nine hours old
        with lab.edit("a-idle") as ctx:
            ctx.kms().clear()
        lab.write_event("a-idle", 12290, eventlog.activation_message(["0x0", "25", "pc.corp.example"]), ["0x0"],
                        dt.timedelta(hours=9))
        # a-pub: DNS publishing failed after the last success
        lab.write_event("a-pub", 12293, eventlog.publish_failure_message(lab.zones["alpha"].zone, "0x8007232B"),
                        ["0x8007232B", lab.zones["alpha"].zone], dt.timedelta(seconds=-1))
        # b-start: KMS failed to start after its last sign of life
        lab.write_event("b-start", 12291, "Key Management Service (KMS) failed to start.", [], dt.timedelta(seconds=-1))
        lab.sync_listeners()
        # DNS: alpha's SRV set lists a-green by name and a-low through an A record only;
        # beta's points at a host that is not a KMS host; gamma's is right.
        lab.a_record("alpha", "a-green", lab.address("a-green"))
        lab.a_record("alpha", "kmslow", lab.address("a-low"))
        lab.srv("alpha", "0 100 1688 a-green", "10 50 1688 kmslow")
        lab.a_record("beta", "rogue", "10.255.255.1")
        lab.srv("beta", "0 100 1688 rogue")
        lab.a_record("gamma", "g-ok", lab.address("g-ok"))
        lab.srv("gamma", "0 100 1688 g-ok")
        lab.inventory = lab.write_inventory()
        yield lab
    finally:
        lab.close()


def cli(argv: list[str]) -> int:
    """``kmsdeploy health ...`` through the verb's own parser (cli.py wiring is the lead's)."""
    parser = argparse.ArgumentParser(prog="kmsdeploy")
    command.add_parser(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def full(lab):
    """One health run over every host, as JSON, plus the WinRM Commands each host received."""
    before = {n: lab.server.requests[n]["Command"] for n in HOSTS}
    out = lab.tmp / "health.json"
    code = cli(["health", "-i", lab.inventory, "--format", "json", "--out", str(out), "--timeout", "3"])
    doc = json.loads(out.read_text())
    commands = {n: lab.server.requests[n]["Command"] - before[n] for n in HOSTS}
    return code, doc, commands


def host_doc(doc, name):
    return next(h for s in doc["sites"] for h in s["hosts"] if h["host"] == name)


def check(doc, name, check_name):
    return next(c for c in host_doc(doc, name)["checks"] if c["check"] == check_name)


def site_check(doc, site):
    return next(s for s in doc["sites"] if s["site"] == site)["checks"][0]


def test_json_is_schema_valid_and_exit_code_is_the_worst(full):
    code, doc, _ = full
    jsonschema.validate(doc, load_schema("health.schema.json"))
    assert code == doc["exit_code"] == 2 and doc["status"] == "critical"
    print("\n" + json.dumps(doc["summary"]))


def test_one_winrm_command_per_host(full):
    _, doc, commands = full
    assert commands == {n: 1 for n in HOSTS}  # one round trip per host, whatever the number of checks
    assert check(doc, "a-green", "reachable")["status"] == "ok"


def test_healthy_host_is_green(full):
    _, doc, _ = full
    h = host_doc(doc, "a-green")
    assert h["status"] == "ok", [c for c in h["checks"] if c["status"] not in ("ok", "skipped")]
    assert check(doc, "a-green", "count")["evidence"]["current_count"] == 30
    assert check(doc, "a-green", "port")["evidence"]["open"] is True


def test_idle_host_is_yellow_with_event_time(full):
    _, doc, _ = full
    c = check(doc, "a-idle", "activity")
    assert c["status"] == "warning" and c["evidence"]["age_hours"] >= 9
    assert host_doc(doc, "a-idle")["status"] == "warning"


def test_low_count_is_yellow_and_srv_found_by_address(full):
    _, doc, _ = full
    c = check(doc, "a-low", "count")
    assert c["status"] == "warning" and c["evidence"]["current_count"] == 24 and c["evidence"]["threshold"] == 25
    srv = check(doc, "a-low", "srv")
    assert srv["status"] == "ok" and srv["evidence"]["records"][0]["target"].startswith("kmslow.")


def test_publishing_failure_after_success_is_red(full):
    _, doc, _ = full
    c = check(doc, "a-pub", "dns_publishing")
    assert c["status"] == "critical" and "12293" in c["reason"]
    assert host_doc(doc, "a-pub")["status"] == "critical"


def test_unactivated_host_key_is_red_and_port_closed(full):
    _, doc, _ = full
    assert check(doc, "a-unlic", "license")["status"] == "critical"
    assert check(doc, "a-unlic", "license")["evidence"]["license_status"] == 2
    assert check(doc, "a-unlic", "port")["status"] == "critical"
    assert check(doc, "a-unlic", "srv")["status"] == "warning"  # not in alpha's SRV set


def test_disabled_firewall_rule_and_closed_port_are_red(full):
    _, doc, _ = full
    assert check(doc, "b-fw", "firewall")["status"] == "critical"
    p = check(doc, "b-fw", "port")
    assert p["status"] == "critical" and p["evidence"]["error"] == "connection refused"


def test_kms_start_failure_is_red(full):
    _, doc, _ = full
    c = check(doc, "b-start", "service")
    assert c["status"] == "critical" and c["evidence"]["last_12291"]["id"] == 12291


def test_unreachable_host_is_unknown_not_green(full):
    _, doc, _ = full
    h = host_doc(doc, "g-down")
    assert h["status"] == "unknown"
    assert "g-down" in check(doc, "g-down", "reachable")["reason"]
    assert site_check(doc, "gamma")["status"] == "ok"  # its SRV set still points at a healthy host


def test_srv_pointing_at_the_wrong_host_is_red(full, lab):
    _, doc, _ = full
    c = site_check(doc, "beta")
    assert c["status"] == "critical" and "not a known KMS host" in c["reason"]
    assert c["evidence"]["records"][0]["target"] == f"rogue.{lab.zones['beta'].zone}"
    assert c["evidence"]["records"][0]["addresses"] == ["10.255.255.1"]
    # independent client: dig sees the same record
    assert any("rogue" in line for line in lab.zones["beta"].dig("_vlmcs._tcp", "SRV"))


def test_alpha_srv_points_at_healthy_hosts(full):
    _, doc, _ = full
    c = site_check(doc, "alpha")
    assert c["status"] == "ok", c


def test_green_site_exits_0_and_table_says_ok(lab, capsys):
    assert cli(["health", "-i", lab.inventory, "--limit", "g-ok"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().splitlines()[-1].startswith("KMS OK - 1 green")


def test_exit_codes_per_host(lab):
    assert cli(["health", "-i", lab.inventory, "--limit", "a-idle", "--format", "prometheus"]) == 1
    assert cli(["health", "-i", lab.inventory, "--limit", "g-down", "--timeout", "2"]) == 3
    assert cli(["health", "-i", lab.inventory, "--limit", "gamma", "--timeout", "2"]) == 3  # g-ok green, g-down unknown


def test_prometheus_output(lab, capsys):
    code = cli(["health", "-i", lab.inventory, "--limit", "alpha", "--format", "prometheus"])
    text = capsys.readouterr().out
    assert code == 2
    assert "# TYPE kmsdeploy_health_check_status gauge" in text
    assert 'kmsdeploy_health_check_status{site="alpha",host="a-pub",check="dns_publishing"} 2' in text
    assert 'kmsdeploy_kms_current_count{site="alpha",host="a-low"} 24' in text


def test_srv_moved_to_wrong_port_then_fixed(lab):
    """Change the real zone between runs: the health verdict follows BIND."""
    lab.srv("gamma", "0 100 1689 g-ok")
    try:
        doc = command.health(lab.inventory, limit="g-ok")
        assert site_check(doc, "gamma")["status"] == "critical"
        assert check(doc, "g-ok", "srv")["status"] == "critical"
    finally:
        lab.srv("gamma", "0 100 1688 g-ok")
    assert command.health(lab.inventory, limit="g-ok")["exit_code"] == 0


def test_sppsvc_stopped_closes_the_port(lab):
    with lab.edit("g-ok") as ctx:
        ctx.state["licensing"]["sppsvc_running"] = False
    lab.sync_listeners()
    try:
        doc = command.health(lab.inventory, limit="g-ok")
        assert check(doc, "g-ok", "port")["status"] == "critical"
        assert site_check(doc, "gamma")["status"] == "critical"  # its only SRV target is now red
    finally:
        with lab.edit("g-ok") as ctx:
            ctx.state["licensing"]["sppsvc_running"] = True
        lab.sync_listeners()


def test_bad_inventory_settings_are_unknown_with_a_message(lab, tmp_path, capsys):
    inv = yaml.safe_load(open(lab.inventory))
    inv["all"]["children"]["sites"]["children"]["gamma"]["vars"]["kmsdeploy_health"]["family"] = "desktop"
    path = tmp_path / "inv.yml"
    path.write_text(yaml.safe_dump(inv))
    assert cli(["health", "-i", str(path), "--limit", "gamma"]) == 3
    captured = capsys.readouterr()
    assert "family must be 'client' or 'server'" in captured.err
    assert captured.out.startswith("KMS UNKNOWN - ")


def test_previous_must_be_a_health_result(lab, tmp_path):
    bad = tmp_path / "prev.json"
    bad.write_text('{"kind": "kmsdeploy-facts"}')
    assert cli(["health", "-i", lab.inventory, "--limit", "gamma", "--previous", str(bad)]) == 3


# ---------------------------------------------------------------- 12292, service.read, request counters

def test_service_renewal_timer_and_counters_are_read(full):
    _, doc, _ = full
    assert check(doc, "a-green", "service")["evidence"]["sppsvc"] == {
        "name": "sppsvc", "status": "Running", "start_type": "Automatic"}
    assert check(doc, "a-green", "service")["status"] == "ok"
    assert check(doc, "a-green", "renewal_timer")["status"] == "ok"
    fr = check(doc, "a-green", "failed_requests")
    # without --previous it cannot tell "rising", but it has the counters now (not "this runner cannot")
    assert fr["status"] == "skipped" and "--previous" in fr["reason"]
    assert fr["evidence"]["now"]["total_requests"] == 30


def test_sppsvc_stopped_is_red_through_service_read(lab):
    with lab.edit("g-ok") as ctx:
        ctx.state["licensing"]["sppsvc_running"] = False
    try:
        doc = command.health(lab.inventory, limit="g-ok")
        c = check(doc, "g-ok", "service")
        assert c["status"] == "critical" and c["evidence"]["sppsvc"]["status"] == "Stopped"
        assert "sppsvc is Stopped" in c["reason"] and doc["exit_code"] == 2
    finally:
        with lab.edit("g-ok") as ctx:
            ctx.state["licensing"]["sppsvc_running"] = True


def test_renewal_timer_failure_12292_is_red(lab):
    lab.model.log_renewal_timer_failure("g-ok")
    try:
        doc = command.health(lab.inventory, limit="g-ok")
        c = check(doc, "g-ok", "renewal_timer")
        assert c["status"] == "critical" and c["evidence"]["last_12292"]["id"] == 12292
        assert doc["exit_code"] == 2
        # a later activation (a sign of life) clears it
        lab.model.record_activations("g-ok", ["late.corp.example"])
        assert check(command.health(lab.inventory, limit="g-ok"), "g-ok", "renewal_timer")["status"] == "ok"
    finally:
        with lab.edit("g-ok") as ctx:
            ctx.state["events"] = [e for e in ctx.state["events"] if e["id"] != 12292]


def test_failed_requests_rising_since_previous_is_yellow(lab, tmp_path):
    prev = tmp_path / "prev.json"
    assert cli(["health", "-i", lab.inventory, "--limit", "g-ok", "--format", "json", "--out", str(prev)]) == 0
    assert cli(["health", "-i", lab.inventory, "--limit", "g-ok", "--previous", str(prev)]) == 0  # nothing new
    lab.model.record_failed_requests("g-ok", 3)
    out = tmp_path / "now.json"
    assert cli(["health", "-i", lab.inventory, "--limit", "g-ok", "--previous", str(prev),
                "--format", "json", "--out", str(out)]) == 1
    c = check(json.loads(out.read_text()), "g-ok", "failed_requests")
    assert c["status"] == "warning" and c["reason"].startswith("3 failed activation request(s)")
