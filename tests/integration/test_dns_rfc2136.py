"""dns_record + rfc2136 against a real BIND 9 (tests/services/bind.py).

Every case: apply, check with an independent client (``dig``), plan again and assert
zero changes. Driven at provider level (transport -> read -> kind.diff -> apply ->
read); CLI-level cases are at the end. Mocks only inject faults at the socket boundary.
"""
from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from kmsdeploy import providers
from kmsdeploy.errors import AuthenticationError, ConflictError, ProviderError, TimeoutError_, UnreachableError
from kmsdeploy.kinds.dns_record import DnsRecord
from kmsdeploy.lab.bind import free_port
from kmsdeploy.model import Action, Host, Ref, Resource
from kmsdeploy.providers.base import RunContext
from kmsdeploy.transports.base import Timeouts

pytestmark = pytest.mark.integration
KIND = DnsRecord()
CTX = RunContext(timeouts=Timeouts(connect=5, operation=10), owner_id="test-owner")


def host_for(server, **extra) -> Host:
    vars_ = {"ansible_connection": "rfc2136", "ansible_host": server.address, "ansible_port": server.port,
             "kmsdeploy_tsig": {"file": str(server.key_file)}}
    vars_.update(extra)
    return Host("dns1", vars_)


def res(zone, state="present", adopt=False, **spec) -> Resource:
    spec = {"zone": zone.zone, **spec}
    return Resource(Ref("dns_record", "dns1", KIND.identity(spec)), KIND.normalize(spec), state=state, adopt=adopt)


class Run:
    """Drives the provider like the planner and executor do, counting round trips."""

    def __init__(self, host: Host, ctx: RunContext = CTX):
        self.host, self.ctx = host, ctx
        self.provider = providers.get("rfc2136")

    def plan(self, resources):
        with self.provider.transport(self.host, self.ctx) as t:
            observed = self.provider.read(t, self.host, resources, self.ctx)
            assert t.requests == 1, "one batched read per target"
        return [KIND.diff(r, observed[r.ref]) for r in resources]

    def apply(self, resources, changes=None):
        changes = self.plan(resources) if changes is None else changes
        with self.provider.transport(self.host, self.ctx) as t:
            results = self.provider.apply(t, self.host, [c for c in changes if c.pending],
                                          {r.ref: r for r in resources}, self.ctx)
            assert t.requests <= 1, "one batched apply per target"
        return changes, results

    def converge(self, resources):
        changes, results = self.apply(resources)
        assert all(r.ok for r in results), results
        after = self.plan(resources)
        assert [c for c in after if c.action is not Action.NOOP] == [], "plan after apply must be empty"
        return changes


def srv(zone, *targets, ttl=300, state="present", **kw):
    return res(zone, state=state, name="_vlmcs._tcp", type="SRV", ttl=ttl, records=list(targets), **kw)


def test_create_srv_two_targets(dns_zone):
    run = Run(host_for(dns_zone.server))
    r = srv(dns_zone, {"target": "kms1", "priority": 0, "weight": 100}, {"target": "kms2", "priority": 10})
    changes = run.converge([r])
    assert changes[0].action is Action.CREATE
    assert dns_zone.dig_values("_vlmcs._tcp", "SRV") == [
        f"300 0 100 1688 kms1.{dns_zone.fqdn}", f"300 10 0 1688 kms2.{dns_zone.fqdn}"]
    # the ownership marker was written in the same update
    assert dns_zone.dig_values("_kmsdeploy-srv._vlmcs._tcp", "TXT") == [
        '300 "heritage=kmsdeploy,owner=test-owner,type=SRV"']


def test_ttl_change_only(dns_zone):
    run = Run(host_for(dns_zone.server))
    run.converge([srv(dns_zone, {"target": "kms1"})])
    changes = run.converge([srv(dns_zone, {"target": "kms1"}, ttl=900)])
    assert changes[0].action is Action.UPDATE and changes[0].properties == ("ttl",)
    assert (changes[0].before["ttl"], changes[0].after["ttl"]) == (300, 900)
    assert dns_zone.dig_values("_vlmcs._tcp", "SRV") == [f"900 0 0 1688 kms1.{dns_zone.fqdn}"]


def test_priority_weight_port_change(dns_zone):
    run = Run(host_for(dns_zone.server))
    run.converge([srv(dns_zone, {"target": "kms1"}, {"target": "kms2"})])
    changes = run.converge([srv(dns_zone, {"target": "kms1", "priority": 5, "weight": 60},
                                {"target": "kms2", "port": 11688})])
    c = changes[0]
    assert c.action is Action.UPDATE and c.properties == ("records",)
    assert {"target": f"kms1.{dns_zone.fqdn}", "port": 1688, "priority": 5, "weight": 60} in c.after["records"]
    assert {"target": f"kms1.{dns_zone.fqdn}", "port": 1688, "priority": 0, "weight": 0} in c.before["records"]
    assert dns_zone.dig_values("_vlmcs._tcp", "SRV") == [
        f"300 0 0 11688 kms2.{dns_zone.fqdn}", f"300 5 60 1688 kms1.{dns_zone.fqdn}"]


def test_add_second_target(dns_zone):
    run = Run(host_for(dns_zone.server))
    run.converge([srv(dns_zone, {"target": "kms1"})])
    changes = run.converge([srv(dns_zone, {"target": "kms1"}, {"target": "kms2.kmsdeploy.example."})])
    assert changes[0].properties == ("records",)
    assert dns_zone.dig_values("_vlmcs._tcp", "SRV") == [
        f"300 0 0 1688 kms1.{dns_zone.fqdn}", "300 0 0 1688 kms2.kmsdeploy.example."]


def test_remove_owned(dns_zone):
    run = Run(host_for(dns_zone.server))
    run.converge([srv(dns_zone, {"target": "kms1"})])
    changes = run.converge([srv(dns_zone, state="absent")])
    assert changes[0].action is Action.DELETE and changes[0].refusal is None
    assert dns_zone.dig("_vlmcs._tcp", "SRV") == []
    assert dns_zone.dig("_kmsdeploy-srv._vlmcs._tcp", "TXT") == []  # marker removed with the set


def test_refuse_delete_unowned(dns_zone):
    assert dns_zone.update(lambda u: u.replace("_vlmcs._tcp", 300, "SRV", "0 0 1688 manual.example.")) == 0
    run = Run(host_for(dns_zone.server))
    [c] = run.plan([srv(dns_zone, state="absent")])
    assert c.refusal and "not owned by kmsdeploy" in c.refusal and "force: true" in c.refusal
    assert not c.pending
    _, results = run.apply([srv(dns_zone, state="absent")], [c])
    assert results == []  # nothing sent
    assert dns_zone.dig_values("_vlmcs._tcp", "SRV") == ["300 0 0 1688 manual.example."]
    # force: true deletes it
    run.converge([srv(dns_zone, state="absent", force=True)])
    assert dns_zone.dig("_vlmcs._tcp", "SRV") == []


def test_adopt_unowned_on_update(dns_zone):
    assert dns_zone.update(lambda u: u.replace("_vlmcs._tcp", 300, "SRV", f"0 0 1688 kms1.{dns_zone.fqdn}")) == 0
    run = Run(host_for(dns_zone.server))
    # without adopt: true the unowned set blocks the plan and nothing is sent
    (blocked,) = run.plan([srv(dns_zone, {"target": "kms1"}, {"target": "kms2"})])
    assert blocked.refusal and "adopt: true" in blocked.refusal
    assert dns_zone.dig_values("_kmsdeploy-srv._vlmcs._tcp", "TXT") == []
    changes = run.converge([srv(dns_zone, {"target": "kms1"}, {"target": "kms2"}, adopt=True)])
    c = changes[0]
    assert c.action is Action.UPDATE and c.properties == ("ownership", "records") and c.reason == "adopt"
    assert any(n.startswith("ADOPTING") for n in c.notes), c.notes
    assert dns_zone.dig_values("_kmsdeploy-srv._vlmcs._tcp", "TXT") == [
        '300 "heritage=kmsdeploy,owner=test-owner,type=SRV"']
    # now owned: deleting is allowed
    run.converge([srv(dns_zone, state="absent")])
    assert dns_zone.dig("_vlmcs._tcp", "SRV") == []


def test_other_record_types_and_hostile_txt(dns_zone):
    run = Run(host_for(dns_zone.server))
    hostile = "x\"; rm -rf / $(reboot) `id` \\ end"
    rs = [res(dns_zone, name="kms3", type="A", ttl=120, addresses=["127.0.0.13", "127.0.0.14"]),
          res(dns_zone, name="kms3", type="AAAA", ttl=120, addresses=["2001:DB8::0001"]),
          res(dns_zone, name="kms", type="CNAME", ttl=120, target="kms3"),
          res(dns_zone, name="info", type="TXT", ttl=120, texts=[hostile, "z" * 300])]
    run.converge(rs)
    assert dns_zone.dig_values("kms3", "A") == ["120 127.0.0.13", "120 127.0.0.14"]
    assert dns_zone.dig_values("kms3", "AAAA") == ["120 2001:db8::1"]
    assert dns_zone.dig_values("kms", "CNAME") == [f"120 kms3.{dns_zone.fqdn}"]
    txt = dns_zone.dig_values("info", "TXT")
    assert any("rm -rf" in line for line in txt) and len(txt) == 2


def test_wrong_tsig_secret(dns_zone, tmp_path):
    name, alg, _ = dns_zone.server.key()
    bad = tmp_path / "bad.key"
    bad.write_text(f'key "{name}" {{ algorithm {alg}; secret "{"QUJD" * 11}"; }};\n')
    run = Run(host_for(dns_zone.server, kmsdeploy_tsig={"file": str(bad)}))
    r = srv(dns_zone, {"target": "kms1"})
    with pytest.raises(AuthenticationError) as ei:
        run.plan([r])
    msg = str(ei.value)
    assert f"TSIG key '{name}' rejected by the server" in msg and "QUJD" not in msg
    # an apply with a change built elsewhere is rejected as well, and nothing changes
    with pytest.raises(AuthenticationError):
        run.apply([r], [KIND.diff(r, None)])
    assert dns_zone.dig("_vlmcs._tcp", "SRV") == []


def test_unknown_tsig_key_name(dns_zone, tmp_path):
    _, alg, secret = dns_zone.server.key()
    other = tmp_path / "other.key"
    other.write_text(f'key "nobody-key" {{ algorithm {alg}; secret "{secret}"; }};\n')
    run = Run(host_for(dns_zone.server, kmsdeploy_tsig={"file": str(other)}))
    with pytest.raises(AuthenticationError, match="'nobody-key' rejected by the server"):
        run.plan([srv(dns_zone, {"target": "kms1"})])


def test_unsigned_opt_in_is_refused_by_policy(dns_zone):
    run = Run(host_for(dns_zone.server, kmsdeploy_tsig="none"))
    r = srv(dns_zone, {"target": "kms1"})
    [c] = run.plan([r])  # reads work unsigned (allow-query)
    _, results = run.apply([r], [c])
    assert not results[0].ok and "REFUSED" in results[0].message and "update-policy" in results[0].message
    assert dns_zone.dig("_vlmcs._tcp", "SRV") == []


def test_server_down(dns_zone):
    port = free_port("127.0.0.1", 54900)
    run = Run(host_for(dns_zone.server, ansible_port=port))
    with pytest.raises(UnreachableError, match=f"DNS server 127.0.0.1:{port} refused the connection") as ei:
        run.plan([srv(dns_zone, {"target": "kms1"})])
    assert ei.value.transient


def test_timeout(dns_zone):
    # a listener that accepts and never answers
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        host = host_for(dns_zone.server, ansible_port=s.getsockname()[1], kmsdeploy_dns_timeout=0.5)
        with pytest.raises(TimeoutError_, match="did not answer within 0.5 s"):
            Run(host).plan([srv(dns_zone, {"target": "kms1"})])


def test_zone_not_served(dns_zone):
    run = Run(host_for(dns_zone.server))
    r = Resource(Ref("dns_record", "dns1", "x"), KIND.normalize(
        {"zone": "nothere.example", "name": "x", "type": "A", "addresses": ["10.0.0.1"]}))
    with pytest.raises(ProviderError, match="refused queries for zone nothere.example."):
        run.plan([r])


def test_concurrent_change_between_read_and_apply(dns_zone):
    run = Run(host_for(dns_zone.server))
    run.converge([srv(dns_zone, {"target": "kms1"})])
    a = res(dns_zone, name="kms5", type="A", ttl=300, addresses=["127.0.0.15"])
    wanted = [srv(dns_zone, {"target": "kms1"}, {"target": "kms2"}), a]
    changes = run.plan(wanted)
    assert [c.action for c in changes] == [Action.UPDATE, Action.CREATE]
    # another writer changes the SRV set after our read
    assert dns_zone.update(lambda u: u.add("_vlmcs._tcp", 300, "SRV", "0 0 1688 intruder.example.")) == 0
    with pytest.raises(ConflictError) as ei:
        run.apply(wanted, changes)
    msg = str(ei.value)
    assert f"record sets in zone {dns_zone.zone} changed since they were read" in msg
    assert "nothing in this zone was applied" in msg and "run plan again" in msg
    assert all(not r.ok for r in ei.value.results)
    # the other writer's data is intact and our A record (same zone, same message) was not applied
    assert dns_zone.dig_values("_vlmcs._tcp", "SRV") == [
        "300 0 0 1688 intruder.example.", f"300 0 0 1688 kms1.{dns_zone.fqdn}"]
    assert dns_zone.dig("kms5", "A") == []
    # a fresh plan converges (and keeps ownership: the set is still ours)
    run.converge(wanted)
    assert dns_zone.dig_values("_vlmcs._tcp", "SRV") == [
        f"300 0 0 1688 kms1.{dns_zone.fqdn}", f"300 0 0 1688 kms2.{dns_zone.fqdn}"]


def test_concurrent_create(dns_zone):
    run = Run(host_for(dns_zone.server))
    r = srv(dns_zone, {"target": "kms1"})
    changes = run.plan([r])
    assert dns_zone.update(lambda u: u.add("_vlmcs._tcp", 300, "SRV", "0 0 1688 first.example.")) == 0
    with pytest.raises(ConflictError, match="changed since they were read"):
        run.apply([r], changes)
    assert dns_zone.dig_values("_vlmcs._tcp", "SRV") == ["300 0 0 1688 first.example."]


def test_reconnect_when_server_closed_idle_connection(dns_zone):
    host = host_for(dns_zone.server)
    provider = providers.get("rfc2136")
    r = srv(dns_zone, {"target": "kms1"})
    with provider.transport(host, CTX) as t:
        provider.read(t, host, [r], CTX)
        t._sock.close()
        t._sock = _closed_socket()  # fault injection: the server dropped the idle connection
        observed = provider.read(t, host, [r], CTX)
        assert observed[r.ref] is None and t.reconnects == 1 and t.requests == 2


def _closed_socket():
    """A connected socket whose peer has already closed (server-side idle close)."""
    srv_ = socket.socket()
    srv_.bind(("127.0.0.1", 0))
    srv_.listen(1)
    c = socket.create_connection(srv_.getsockname(), timeout=2)
    a, _ = srv_.accept()
    a.close()
    srv_.close()
    return c


def test_many_records_one_round_trip(dns_zone):
    run = Run(host_for(dns_zone.server))
    rs = [res(dns_zone, name=f"h{i:03d}", type="A", ttl=60, addresses=[f"127.1.0.{i}"]) for i in range(1, 101)]
    run.converge(rs)  # Run asserts one request for each read and apply
    assert dns_zone.dig_values("h100", "A") == ["60 127.1.0.100"]


# --------------------------------------------------------------------------- CLI level
def _cli():
    try:
        from kmsdeploy.cli import main
    except ImportError as exc:  # pragma: no cover - the CLI is part of the product
        pytest.fail(f"kmsdeploy.cli not importable: {exc}")
    return main


def _write_case(tmp_path, dns_zone, records, *, key_file=None, port=None, state="present"):
    # The inventory schema accepts {name, algorithm, secret: {file: ...}} today; the key-file
    # form {file: <tsig-keygen file>} is covered at provider level (see docs/dns.md).
    from kmsdeploy.transports.dns import parse_key_file
    key = parse_key_file(Path(key_file or dns_zone.server.key_file).read_text())
    secret_file = tmp_path / "tsig.secret"
    secret_file.write_text(key.secret.reveal() + "\n")
    inv = tmp_path / "inventory.yml"
    inv.write_text(json.dumps({"all": {"hosts": {"dns1": None}}}))
    (tmp_path / "host_vars").mkdir(exist_ok=True)
    (tmp_path / "host_vars" / "dns1.yml").write_text(json.dumps({
        "ansible_connection": "rfc2136", "ansible_host": dns_zone.server.address,
        "ansible_port": port or dns_zone.server.port, "kmsdeploy_dns_timeout": 5,
        "kmsdeploy_tsig": {"name": key.name, "algorithm": key.algorithm, "secret": {"file": str(secret_file)}}}))
    pb = tmp_path / "srv.yml"
    spec = {"kind": "dns_record", "zone": dns_zone.zone, "name": "_vlmcs._tcp", "type": "SRV", "ttl": 300,
            "state": state}
    if state == "present":
        spec["records"] = records
    pb.write_text(json.dumps([{"name": "kms srv", "hosts": "dns1", "resources": [spec]}]))
    return str(inv), str(pb)


def test_cli_apply_then_plan_is_clean(dns_zone, tmp_path, capsys):
    main = _cli()
    inv, pb = _write_case(tmp_path, dns_zone, [{"target": "kms1"}, {"target": "kms2", "priority": 10}])
    assert main(["plan", "-i", inv, pb, "--detailed-exitcode"]) == 2
    out = capsys.readouterr().out
    assert "_vlmcs._tcp" in out and "1688" in out
    rc = main(["apply", "-i", inv, pb, "--auto-approve"])
    cap = capsys.readouterr()
    assert rc == 0, cap
    assert dns_zone.dig_values("_vlmcs._tcp", "SRV") == [
        f"300 0 0 1688 kms1.{dns_zone.fqdn}", f"300 10 0 1688 kms2.{dns_zone.fqdn}"]
    assert main(["plan", "-i", inv, pb, "--detailed-exitcode"]) == 0
    assert "No changes" in capsys.readouterr().out
    # a weight change shows as an update with the record details
    inv, pb = _write_case(tmp_path, dns_zone, [{"target": "kms1", "weight": 70}, {"target": "kms2", "priority": 10}])
    assert main(["plan", "-i", inv, pb, "--format", "json", "--detailed-exitcode"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["summary"]["update"] == 1
    [change] = [c for c in doc["changes"] if c["action"] == "update"]
    assert "records" in change["properties"]
    assert "secret" not in json.dumps(doc).lower() or "(sensitive)" in json.dumps(doc)


def test_cli_wrong_key(dns_zone, tmp_path, capsys):
    main = _cli()
    name, alg, _ = dns_zone.server.key()
    bad = tmp_path / "bad.key"
    bad.write_text(f'key "{name}" {{ algorithm {alg}; secret "{"QUJD" * 11}"; }};\n')
    inv, pb = _write_case(tmp_path, dns_zone, [{"target": "kms1"}], key_file=bad)
    assert main(["apply", "-i", inv, pb, "--auto-approve"]) == 1
    cap = capsys.readouterr()
    text = cap.out + cap.err
    assert f"TSIG key '{name}' rejected by the server" in text and "QUJD" not in text
    assert "Traceback" not in text
    assert dns_zone.dig("_vlmcs._tcp", "SRV") == []


def test_cli_server_down(dns_zone, tmp_path, capsys):
    main = _cli()
    port = free_port("127.0.0.1", 54950)
    inv, pb = _write_case(tmp_path, dns_zone, [{"target": "kms1"}], port=port)
    assert main(["plan", "-i", inv, pb, "--detailed-exitcode"]) == 1
    cap = capsys.readouterr()
    assert f"DNS server 127.0.0.1:{port} refused the connection" in cap.out + cap.err
    assert "Traceback" not in cap.out + cap.err


def test_cli_hostile_name_rejected_at_validation(dns_zone, tmp_path, capsys):
    main = _cli()
    inv, pb = _write_case(tmp_path, dns_zone, [{"target": "kms1"}])
    data = json.loads(Path(pb).read_text())
    data[0]["resources"][0]["name"] = "x; $(reboot)\n"
    Path(pb).write_text(json.dumps(data))
    assert main(["validate", "-i", inv, pb]) == 1
    cap = capsys.readouterr()
    assert pb in cap.out + cap.err and "Traceback" not in cap.out + cap.err
