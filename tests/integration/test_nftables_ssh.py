"""firewall_rule on real Linux gateways: sshd + nftables in network namespaces.

Every case checks the result with an independent client (``ip netns exec NS nft -j
list ruleset``), proves the rules work with TCP probes from an allowed and a denied
source address, and plans again to show zero changes. The pipeline is driven through
the provider and the kind directly (transport -> read -> diff -> apply -> read), the
same calls the planner and executor make.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import paramiko
import pytest
import yaml

from kmsdeploy import cli
from kmsdeploy.errors import AuthenticationError, HostKeyError, ProviderError, TransportError, UnreachableError
from kmsdeploy.kinds.firewall_rule import FirewallRule
from kmsdeploy.model import Action, Host, Ref, Resource, Secret
from kmsdeploy.providers.base import RunContext
from kmsdeploy.providers.nftables import NftablesProvider
from kmsdeploy.transports.base import Timeouts
from tests.services.netns import BECOME_USER, NOPASSWD_USER, nft_json, sh

pytestmark = pytest.mark.integration

KIND = FirewallRule()
PROVIDER = NftablesProvider()
CTX = RunContext(timeouts=Timeouts(connect=5, operation=20), retries=1)


def host_of(gw, **overrides) -> Host:
    return Host(gw.name, {**gw.vars, **overrides})


def resources(gw, specs) -> list[Resource]:
    out = []
    for spec in specs:
        spec = dict(spec)
        state = spec.pop("state", "present")
        assert not [d for d in KIND.check(spec) if d.severity == "error"]
        out.append(Resource(Ref("firewall_rule", gw.name, spec["name"]), KIND.normalize(spec), state=state))
    return out


def plan(gw, specs, **overrides):
    """(changes, requests) for one gateway: one read over one connection."""
    host = host_of(gw, **overrides)
    res = resources(gw, specs)
    with PROVIDER.transport(host, CTX) as tr:
        observed = PROVIDER.read(tr, host, res, CTX)
        return [KIND.diff(r, observed[r.ref]) for r in res], tr.requests


def apply(gw, specs, **overrides):
    """Plan + apply + verify over ONE connection; returns (changes, results, verify changes, requests)."""
    host = host_of(gw, **overrides)
    res = resources(gw, specs)
    with PROVIDER.transport(host, CTX) as tr:
        observed = PROVIDER.read(tr, host, res, CTX)
        changes = [KIND.diff(r, observed[r.ref]) for r in res]
        results = PROVIDER.apply(tr, host, changes, {r.ref: r for r in res}, CTX)
        again = PROVIDER.read(tr, host, res, CTX)
        verify = [KIND.diff(r, again[r.ref]) for r in res]
        return changes, results, verify, tr.requests


def converge(gw, specs, **overrides):
    changes, results, verify, requests = apply(gw, specs, **overrides)
    assert all(r.ok for r in results), [r.message for r in results]
    assert [c.action for c in verify if c.action is not Action.NOOP] == []
    # idempotency, on a fresh connection: planning again finds nothing to do
    again, _ = plan(gw, specs, **overrides)
    assert [c.action for c in again] == [Action.NOOP] * len(specs)
    return changes, requests


def owned(gw) -> dict[str, list[dict]]:
    """Independent check: kmsdeploy's rules by marker comment, from ``nft -j list ruleset``."""
    out: dict[str, list[dict]] = {}
    for item in nft_json(gw)["nftables"]:
        rule = item.get("rule")
        if rule and rule["table"] == "kmsdeploy":
            out.setdefault(rule.get("comment", ""), []).append(rule)
    return out


def tables(gw) -> list[tuple[str, str]]:
    return [(i["table"]["family"], i["table"]["name"]) for i in nft_json(gw)["nftables"] if "table" in i]


def reset(gw):
    gw.nft("delete", "table", "inet", "kmsdeploy", check=False)
    gw.nft("delete", "table", "inet", "foreign", check=False)
    gw.nft("delete", "table", "ip", "filter", check=False)
    Path(gw.vars["kmsdeploy_nft_persist"]).unlink(missing_ok=True)


def base_specs(lab):
    return [{"name": "kms-allow", "remote_addresses": [lab.allowed_src]},
            {"name": "kms-deny", "action": "block"}]


def test_five_gateways_planned_and_applied_in_parallel(netns_lab):
    lab = netns_lab
    assert len(lab.gateways) >= 5
    for gw in lab.gateways:
        reset(gw)
    with ThreadPoolExecutor(len(lab.gateways)) as pool:  # open before kmsdeploy runs
        assert all(pool.map(lambda gw: lab.probe(gw.ip, lab.denied_src), lab.gateways))
    specs = base_specs(lab)
    start = time.monotonic()
    with ThreadPoolExecutor(len(lab.gateways)) as pool:
        planned = list(pool.map(lambda gw: plan(gw, specs), lab.gateways))
        applied = list(pool.map(lambda gw: converge(gw, specs), lab.gateways))
    elapsed = time.monotonic() - start
    for (changes, requests) in planned:
        assert [c.action for c in changes] == [Action.CREATE, Action.CREATE]
        assert requests == 1  # one command per gateway for the whole read
    for (changes, requests) in applied:
        assert [c.action for c in changes] == [Action.CREATE, Action.CREATE]
        assert requests == 3  # read, apply (one nft transaction), verify read
    print(f"\n{len(lab.gateways)} gateways planned+applied+re-planned in {elapsed:.2f}s")
    for gw in lab.gateways:
        rules = owned(gw)
        assert set(rules) == {"kmsdeploy:kms-allow", "kmsdeploy:kms-deny"}
        assert ("inet", "kmsdeploy") in tables(gw)
        persisted = Path(gw.vars["kmsdeploy_nft_persist"]).read_text()
        assert 'comment "kmsdeploy:kms-allow"' in persisted and persisted.startswith("table inet kmsdeploy\n")
    with ThreadPoolExecutor(2 * len(lab.gateways)) as pool:
        allowed = list(pool.map(lambda gw: lab.probe(gw.ip, lab.allowed_src), lab.gateways))
        denied = list(pool.map(lambda gw: lab.probe(gw.ip, lab.denied_src), lab.gateways))
    assert allowed == [True] * len(lab.gateways)
    assert denied == [False] * len(lab.gateways)


def test_change_source_subnet(netns_lab):
    lab, gw = netns_lab, netns_lab.gateways[0]
    reset(gw)
    nobody = f"198.18.{lab.index}.192/29"  # neither client address
    converge(gw, [{"name": "kms-allow", "remote_addresses": [nobody]}, {"name": "kms-deny", "action": "block"}])
    assert not lab.probe(gw.ip, lab.allowed_src) and not lab.probe(gw.ip, lab.denied_src)
    changes, _ = converge(gw, [{"name": "kms-allow", "remote_addresses": [f"198.18.{lab.index}.200/30"]},
                               {"name": "kms-deny", "action": "block"}])
    assert changes[0].action is Action.UPDATE and changes[0].properties == ("remote_addresses",)
    assert changes[0].before["remote_addresses"] == [nobody]
    assert changes[1].action is Action.NOOP
    # .200/30 holds .200 and .201: both allowed now; narrow to the allowed one only
    assert lab.probe(gw.ip, lab.allowed_src) and lab.probe(gw.ip, lab.denied_src)
    converge(gw, base_specs(lab))
    assert lab.probe(gw.ip, lab.allowed_src) and not lab.probe(gw.ip, lab.denied_src)
    rule = owned(gw)["kmsdeploy:kms-allow"][0]
    assert rule["expr"][0]["match"]["right"] == lab.allowed_src


def test_add_ipv6(netns_lab):
    lab, gw = netns_lab, netns_lab.gateways[1]
    reset(gw)
    converge(gw, base_specs(lab))
    assert not lab.probe(gw.ip6, lab.allowed_src6)  # the deny rule covers IPv6 too (inet table)
    specs = [{"name": "kms-allow", "remote_addresses": [lab.allowed_src, lab.allowed_src6]},
             {"name": "kms-deny", "action": "block"}]
    changes, _ = converge(gw, specs)
    assert changes[0].properties == ("remote_addresses",)
    rules = owned(gw)["kmsdeploy:kms-allow"]
    assert sorted(r["expr"][0]["match"]["left"]["payload"]["protocol"] for r in rules) == ["ip", "ip6"]
    assert lab.probe(gw.ip6, lab.allowed_src6) is True
    assert lab.probe(gw.ip6, lab.denied_src6) is False
    assert lab.probe(gw.ip, lab.allowed_src) is True
    assert lab.probe(gw.ip, lab.denied_src) is False


def test_remove_owned_rule_and_keep_undeclared_owned_rules(netns_lab):
    lab, gw = netns_lab, netns_lab.gateways[2]
    reset(gw)
    converge(gw, base_specs(lab) + [{"name": "legacy-5000", "local_ports": ["5000-5010"], "counters": False}])
    assert "kmsdeploy:legacy-5000" in owned(gw)
    # a play that declares only kms-allow keeps the other owned rules untouched
    converge(gw, [{"name": "kms-allow", "remote_addresses": [lab.allowed_src]}])
    assert set(owned(gw)) == {"kmsdeploy:kms-allow", "kmsdeploy:kms-deny", "kmsdeploy:legacy-5000"}
    changes, _ = converge(gw, [{"name": "legacy-5000", "state": "absent"}])
    assert changes[0].action is Action.DELETE
    assert set(owned(gw)) == {"kmsdeploy:kms-allow", "kmsdeploy:kms-deny"}
    assert "legacy-5000" not in Path(gw.vars["kmsdeploy_nft_persist"]).read_text()
    # removing the last rules removes the table
    converge(gw, [{"name": "kms-allow", "state": "absent"}, {"name": "kms-deny", "state": "absent"}])
    assert ("inet", "kmsdeploy") not in tables(gw)
    assert lab.probe(gw.ip, lab.denied_src)


def test_disabled_rule_is_kept_but_not_evaluated(netns_lab):
    lab, gw = netns_lab, netns_lab.gateways[2]
    reset(gw)
    converge(gw, [{"name": "kms-deny", "action": "block", "enabled": False}])
    assert owned(gw)["kmsdeploy:kms-deny"][0]["chain"] == "input_disabled"
    assert lab.probe(gw.ip, lab.denied_src)
    changes, _ = converge(gw, [{"name": "kms-deny", "action": "block"}])
    assert changes[0].properties == ("enabled",)
    assert not lab.probe(gw.ip, lab.denied_src)


FOREIGN = b"""
table ip filter {
    chain INPUT { type filter hook input priority filter; policy accept; tcp dport 22 counter accept; }
}
table inet foreign {
    chain input { type filter hook input priority 10; policy accept; tcp dport 9999 accept comment "kmsdeploy:kms-allow"; }
}
"""


def _others(doc):
    out = []
    for item in doc["nftables"]:
        if "metainfo" in item:
            continue
        rule = item.get("rule")
        if rule and rule["table"] == "kmsdeploy":
            continue
        if ("table" in item and item["table"]["name"] == "kmsdeploy") or \
                ("chain" in item and item["chain"]["table"] == "kmsdeploy"):
            continue
        out.append(item)
    return out


def test_foreign_tables_untouched(netns_lab):
    lab, gw = netns_lab, netns_lab.gateways[3]
    reset(gw)
    gw.nft("-f", "-", input=FOREIGN)
    before = _others(nft_json(gw, stateless=True))
    converge(gw, base_specs(lab))
    converge(gw, [{"name": "kms-allow", "remote_addresses": [f"198.18.{lab.index}.0/24"]}])
    converge(gw, [{"name": "kms-allow", "state": "absent"}, {"name": "kms-deny", "state": "absent"}])
    after = _others(nft_json(gw, stateless=True))
    assert after == before  # other tables, including a look-alike marker, exactly as they were
    reset(gw)


def test_foreign_rule_in_our_table_with_hostile_comment(netns_lab):
    lab, gw = netns_lab, netns_lab.gateways[3]
    reset(gw)
    converge(gw, base_specs(lab))
    canary = gw.dir / "pwned"
    hostile = f"x'; flush ruleset; $(touch {canary}) `id` | rm -rf /"
    gw.nft("add", "rule", "inet", "kmsdeploy", "input", "tcp", "dport", "22", "accept", "comment", f'"{hostile}"')
    with pytest.raises(ProviderError) as err:
        plan(gw, base_specs(lab))
    message = str(err.value)
    assert "without a kmsdeploy ownership marker" in message and "flush ruleset" in message
    assert "kmsdeploy_nft_prune_foreign" in message
    # opt-in removal: the foreign rule goes with the next apply that has changes
    specs = [{"name": "kms-allow", "remote_addresses": [lab.allowed_src, lab.allowed_src6]},
             {"name": "kms-deny", "action": "block"}]
    converge(gw, specs, kmsdeploy_nft_prune_foreign=True)
    assert set(owned(gw)) == {"kmsdeploy:kms-allow", "kmsdeploy:kms-deny"}
    assert not canary.exists()
    assert len(tables(gw)) == 1


def test_hostile_persist_path_is_data(netns_lab):
    lab, gw = netns_lab, netns_lab.gateways[4]
    reset(gw)
    persist_dir = Path(gw.vars["kmsdeploy_nft_persist"]).parent
    weird = persist_dir / "k$(touch pwned)`id`;x'.nft"
    converge(gw, base_specs(lab), kmsdeploy_nft_persist=str(weird))
    assert weird.exists() and "kmsdeploy:kms-allow" in weird.read_text()
    assert not (persist_dir / "pwned").exists() and not Path("pwned").exists()
    weird.unlink()


def test_hand_edited_rule_is_rewritten(netns_lab):
    lab, gw = netns_lab, netns_lab.gateways[4]
    reset(gw)
    converge(gw, base_specs(lab))
    gw.nft("insert", "rule", "inet", "kmsdeploy", "input", "ct", "state", "new", "tcp", "dport", "1688", "accept",
           "comment", '"kmsdeploy:kms-deny"')
    changes, _ = plan(gw, base_specs(lab))
    assert changes[1].action is Action.UPDATE and changes[1].notes
    converge(gw, base_specs(lab))
    assert len(owned(gw)["kmsdeploy:kms-deny"]) == 1
    assert not lab.probe(gw.ip, lab.denied_src)


# -- transport failures -------------------------------------------------------------------

def test_unknown_host_key_refused_then_accept_new_records_it(netns_lab, tmp_path):
    gw = netns_lab.gateways[0]
    known = tmp_path / "known_hosts"
    known.write_text("")
    with pytest.raises(HostKeyError) as err:
        plan(gw, [], kmsdeploy_known_hosts=str(known))
    assert "unknown" in str(err.value) and "accept-new" in str(err.value) and "SHA256:" in str(err.value)
    with pytest.raises(HostKeyError):
        plan(gw, [], kmsdeploy_known_hosts=str(tmp_path / "missing"))
    # trust on first use records the key; the second connection verifies against it
    plan(gw, [], kmsdeploy_known_hosts=str(known), kmsdeploy_ssh_host_key_policy="accept-new")
    line = known.read_text().split()
    assert line[0] == gw.ip and line[1] == "ssh-ed25519"
    assert line[2] == (gw.dir / "ssh_host_ed25519_key.pub").read_text().split()[1]
    plan(gw, [], kmsdeploy_known_hosts=str(known))


def test_changed_host_key_refused_even_with_accept_new(netns_lab, tmp_path):
    gw, other = netns_lab.gateways[0], netns_lab.gateways[1]
    known = tmp_path / "known_hosts"
    key = (other.dir / "ssh_host_ed25519_key.pub").read_text().split()
    known.write_text(f"{gw.ip} {key[0]} {key[1]}\n")
    for policy in ("reject", "accept-new"):
        with pytest.raises(HostKeyError) as err:
            plan(gw, [], kmsdeploy_known_hosts=str(known), kmsdeploy_ssh_host_key_policy=policy)
        assert "CHANGED" in str(err.value) and "ssh-keygen -R" in str(err.value)
    assert known.read_text() == f"{gw.ip} {key[0]} {key[1]}\n"


def test_wrong_client_key_is_an_authentication_error(netns_lab, tmp_path):
    gw = netns_lab.gateways[0]
    sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other"))
    with pytest.raises(AuthenticationError) as err:
        plan(gw, [], ansible_ssh_private_key_file=str(tmp_path / "other"))
    assert "authentication" in str(err.value) and err.value.transient is False


def test_key_from_secret_text(netns_lab):
    from kmsdeploy.model import Secret

    gw, lab = netns_lab.gateways[0], netns_lab
    text = Path(lab.client_key).read_text().rstrip("\n")  # as a {file:} secret arrives
    vars = {k: v for k, v in gw.vars.items() if k != "ansible_ssh_private_key_file"}
    host = Host(gw.name, {**vars, "kmsdeploy_ssh_key": Secret(text, "file:client_key")})
    with PROVIDER.transport(host, CTX) as tr:
        assert tr.run(["id", "-u"]) == (0, b"0\n", b"")


def test_become_as_root_needs_no_sudo_and_commands_are_quoted(netns_lab):
    gw = netns_lab.gateways[0]
    host = host_of(gw, ansible_become=True)
    with PROVIDER.transport(host, CTX) as tr:
        rc, out, _ = tr.run(["printf", "%s|", "a b", "$(id)", "`id`", "'q'", "x;y"], b"")
        assert (rc, out) == (0, b"a b|$(id)|`id`|'q'|x;y|")
        rc, out, _ = tr.run(["cat"], b"data on stdin\n")
        assert out == b"data on stdin\n"
        assert tr.requests == 2


def test_sshd_stopped_is_a_clear_error(netns_lab):
    gw = netns_lab.gateways[4]
    gw.stop_sshd()
    try:
        start = time.monotonic()
        with pytest.raises(UnreachableError) as err:
            plan(gw, base_specs(netns_lab))
        assert "connection refused" in str(err.value) and gw.ip in str(err.value)
        assert time.monotonic() - start < 10
    finally:
        gw.start_sshd()
    plan(gw, base_specs(netns_lab))


def test_command_timeout(netns_lab):
    gw = netns_lab.gateways[4]
    from kmsdeploy.errors import TimeoutError_

    with PROVIDER.transport(host_of(gw, kmsdeploy_command_timeout=0.5), CTX) as tr:
        with pytest.raises(TimeoutError_):
            tr.run(["sleep", "5"], idempotent=False)


def _drop_during_apply(mocker, cut: bytes | None) -> list[str]:
    """Fault at the network boundary, in the apply command only (the one command that sends
    stdin): with ``cut``, deliver the payload up to and including ``cut`` and then close the
    TCP socket; with ``None``, deliver all of it and its EOF, then close the socket before
    the result can arrive. Returns the list the injected faults are recorded in."""
    real_send = paramiko.Channel.send
    real_shutdown = paramiko.Channel.shutdown_write
    fired: list[str] = []
    senders: list = []

    def drop(chan, what):
        fired.append(what)
        sock = chan.get_transport().sock
        sock.shutdown(socket.SHUT_RDWR)  # the TCP connection ends here (FIN), as a dropped link would
        sock.close()

    def send(self, data):
        if fired:
            return real_send(self, data)
        senders.append(self)
        data = bytes(data)
        if cut is None:
            return real_send(self, data)
        n = data.index(cut) + len(cut)
        done = 0
        while done < n:
            done += real_send(self, data[done:n])
        time.sleep(0.2)  # let it reach the gateway
        drop(self, "mid-send")
        return n

    def shutdown_write(self):
        real_shutdown(self)
        if self in senders and not fired:
            drop(self, "after-send")

    mocker.patch.object(paramiko.Channel, "send", send)
    mocker.patch.object(paramiko.Channel, "shutdown_write", shutdown_write)
    return fired


def _apply_leftovers(gw) -> list[Path]:
    """The apply script's temp files (``PERSIST.kmsdeploy.XXXXXX``): gone once it has ended."""
    persist = Path(gw.vars["kmsdeploy_nft_persist"])
    return sorted(persist.parent.glob(persist.name + ".kmsdeploy.*"))


# The cut ends right after "delete table": nft would accept that prefix as a complete
# transaction and delete the table, so only the SHA-256 check keeps it unchanged.
@pytest.mark.parametrize("cut", [b"\ndelete table inet kmsdeploy\n", None], ids=["mid-send", "after-send"])
def test_connection_dropped_mid_apply(netns_lab, mocker, cut):
    lab, gw = netns_lab, netns_lab.gateways[3]
    reset(gw)
    old = base_specs(lab)
    converge(gw, old)
    old_rules = owned(gw)
    old_persist = Path(gw.vars["kmsdeploy_nft_persist"]).read_text()
    new = [{"name": "kms-allow", "remote_addresses": [lab.allowed_src, lab.allowed_src6, "192.0.2.0/24"]},
           {"name": "kms-deny", "action": "block", "local_ports": [1688, "5000-5010"]}]
    fired = _drop_during_apply(mocker, cut)
    with pytest.raises(TransportError) as err:
        apply(gw, new)
    assert err.value.transient
    assert fired == ["mid-send" if cut else "after-send"]  # the fault hit the apply, not a read
    mocker.stopall()
    deadline = time.monotonic() + 10  # let the remote script end (its trap removes its temp file)
    time.sleep(0.5)
    while _apply_leftovers(gw) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _apply_leftovers(gw) == []
    now = owned(gw)
    persisted = Path(gw.vars["kmsdeploy_nft_persist"]).read_text()
    if now == old_rules:
        state = "unchanged"
        assert persisted == old_persist  # the boot-time file is the old table too
    else:
        state = "fully changed"
        again, _ = plan(gw, new)
        assert [c.action for c in again] == [Action.NOOP, Action.NOOP], "table half changed"
        assert "192.0.2.0/24" in persisted and "5000-5010" in persisted
    if cut is not None:
        assert state == "unchanged"  # truncated input never reaches nft
    print(f"\nafter a drop ({fired[0]}) the table is {state}")
    converge(gw, new)
    assert lab.probe(gw.ip, lab.allowed_src) and not lab.probe(gw.ip, lab.denied_src)


def test_parallel_requests_count_and_isolation(netns_lab):
    """Each gateway's read is one command however many rules it declares."""
    lab = netns_lab
    specs = [{"name": f"r{i}", "local_ports": [2000 + i]} for i in range(20)]
    gw = lab.gateways[2]
    reset(gw)
    changes, _ = plan(gw, specs)
    assert all(c.action is Action.CREATE for c in changes)
    _, requests = converge(gw, specs)
    assert requests == 3
    assert len(owned(gw)) == 20
    reset(gw)
    assert os.path.exists(gw.vars["kmsdeploy_nft_persist"]) is False


def test_cli_rollout_over_five_gateways_in_parallel(netns_lab, tmp_path, capsys):
    """The whole pipeline: validate, plan, apply (parallel targets, one wave), re-plan clean — via the CLI."""
    import json

    import yaml

    from kmsdeploy import cli

    lab = netns_lab
    for gw in lab.gateways:
        reset(gw)
    inv = {"all": {"children": {"sites": {"children": {
        f"branch-{i}": {"hosts": {gw.name: dict(gw.vars)}} for i, gw in enumerate(lab.gateways)}}}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inv))
    (tmp_path / "gw.yml").write_text(yaml.safe_dump([{
        "name": "Open 1688 on the branch gateways", "hosts": "sites",
        "rollout": {"canary": 1, "waves": [2], "max_fail_percentage": 0},
        "resources": [{"kind": "firewall_rule", **spec} for spec in base_specs(lab)]}]))
    args = ["-i", str(tmp_path / "hosts.yml"), str(tmp_path / "gw.yml")]
    assert cli.main(["validate", *args]) == 0
    assert cli.main(["plan", *args, "--detailed-exitcode"]) == 2
    report = tmp_path / "run.json"
    assert cli.main(["apply", *args, "--auto-approve", "--report-json", str(report)]) == 0
    doc = json.loads(report.read_text())
    assert doc["outcome"] == "converged" and len(doc["hosts"]) == len(lab.gateways)
    assert [w["canary"] for w in doc["waves"]][:1] == [True] and len(doc["waves"]) == 1 + -(-(len(lab.gateways) - 1) // 2)
    capsys.readouterr()
    assert cli.main(["plan", *args, "--detailed-exitcode"]) == 0
    assert "No changes" in capsys.readouterr().out
    for gw in lab.gateways:
        assert set(owned(gw)) == {"kmsdeploy:kms-allow", "kmsdeploy:kms-deny"}
        assert lab.probe(gw.ip, lab.allowed_src) and not lab.probe(gw.ip, lab.denied_src)


# -- become through sudo: a non-root user on a real sshd -----------------------------------
# The gateways' sshd sees a private /etc (tests/services/netns.py) with two throwaway users:
# BECOME_USER (sudo asks for lab.become_password) and NOPASSWD_USER (sudo NOPASSWD: ALL).

def become(user, **extra):
    """Host var overrides: log in as ``user`` and become root through sudo."""
    return {"ansible_user": user, "ansible_become": True, "ansible_become_method": "sudo", **extra}


def write_run(tmp_path, hosts: dict, specs) -> list[str]:
    """Inventory + playbook files; returns the CLI arguments ``-i INV PLAYBOOK``."""
    inv = {"all": {"children": {"gateways": {"hosts": hosts}}}}
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump(inv))
    (tmp_path / "gw.yml").write_text(yaml.safe_dump([{
        "name": "Open 1688 through sudo", "hosts": "gateways",
        "resources": [{"kind": "firewall_rule", **spec} for spec in specs]}]))
    return ["-i", str(tmp_path / "hosts.yml"), str(tmp_path / "gw.yml")]


def accepted_logins(gw) -> set[str]:
    return {line.split(" for ", 1)[1].split()[0] for line in gw.sshd_log().splitlines()
            if line.startswith("Accepted publickey for ")}


def test_non_root_login_is_root_only_through_sudo(netns_lab):
    """The privilege really comes from sudo: without become the user cannot touch nftables."""
    lab, gw = netns_lab, netns_lab.gateways[1]
    with PROVIDER.transport(host_of(gw, ansible_user=BECOME_USER), CTX) as tr:
        assert tr.run(["id", "-u"]) == (0, f"{lab.uids[BECOME_USER]}\n".encode(), b"")
        rc, _, err = tr.run(["/usr/sbin/nft", "list", "ruleset"])  # not on a user PATH
        assert rc != 0 and b"Operation not permitted" in err
    host = host_of(gw, **become(BECOME_USER, ansible_become_password=Secret(lab.become_password, "env:X")))
    with PROVIDER.transport(host, CTX) as tr:
        assert tr.run(["id", "-u"]) == (0, b"0\n", b"")
        # argv stays data through ssh + sudo + sh -c; stdin reaches the command byte for byte,
        # nothing of the password in it
        rc, out, _ = tr.run(["printf", "%s|", "a b", "$(id)", "`id`", "'q'", "x;y"])
        assert (rc, out) == (0, b"a b|$(id)|`id`|'q'|x;y|")
        payload = b"first line of the payload\n" + bytes(range(256)) * 64
        assert tr.run(["cat"], payload) == (0, payload, b"")
        assert tr.requests == 3
    assert BECOME_USER in accepted_logins(gw)


def test_become_sudo_with_password_from_env_and_file_via_cli(netns_lab, tmp_path, capsys, caplog, monkeypatch):
    """plan/apply/plan through the CLI: one gateway's become password from {env:}, one from {file:}."""
    caplog.set_level(logging.DEBUG)
    lab = netns_lab
    gws = [lab.gateways[1], lab.gateways[2]]
    for gw in gws:
        reset(gw)
    monkeypatch.setenv("KMS_TEST_BECOME_PASSWORD", lab.become_password)
    secret_file = tmp_path / "become.pw"
    secret_file.write_text(lab.become_password + "\n")
    secret_file.chmod(0o600)
    hosts = {
        gws[0].name: {**gws[0].vars, **become(BECOME_USER,
                                              ansible_become_password={"env": "KMS_TEST_BECOME_PASSWORD"})},
        gws[1].name: {**gws[1].vars, **become(BECOME_USER, ansible_become_password={"file": str(secret_file)})},
    }
    args = write_run(tmp_path, hosts, base_specs(lab))
    plan_file = tmp_path / "run.plan"
    assert cli.main(["validate", *args]) == 0
    assert cli.main(["plan", *args, "--detailed-exitcode", "--out", str(plan_file)]) == 2
    assert cli.main(["apply", str(plan_file)]) == 0
    assert cli.main(["plan", *args, "--detailed-exitcode"]) == 0
    out, err = capsys.readouterr()
    assert "No changes" in out
    for gw in gws:  # independent checks: nft as root in the namespace, TCP probes, who logged in
        assert set(owned(gw)) == {"kmsdeploy:kms-allow", "kmsdeploy:kms-deny"}
        assert lab.probe(gw.ip, lab.allowed_src) and not lab.probe(gw.ip, lab.denied_src)
        assert "kmsdeploy:kms-allow" in Path(gw.vars["kmsdeploy_nft_persist"]).read_text()
        assert BECOME_USER in accepted_logins(gw)
    for text in (out, err, caplog.text, plan_file.read_text(errors="replace")):
        assert lab.become_password not in text
    for gw in gws:
        reset(gw)


def test_wrong_become_password_is_a_clear_per_target_error(netns_lab, tmp_path, capsys, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    lab, gw = netns_lab, netns_lab.gateways[1]
    reset(gw)
    wrong = "wrong-" + lab.become_password[::-1]
    # the transport: an AuthenticationError that names the target and never holds the password
    host = host_of(gw, **become(BECOME_USER, ansible_become_password=Secret(wrong, "env:X")))
    with PROVIDER.transport(host, CTX) as tr:
        with pytest.raises(AuthenticationError) as exc:
            tr.run(["id", "-u"])
    e = exc.value
    assert "refused the become password" in str(e) and BECOME_USER in str(e)
    assert e.target == gw.name and e.transient is False
    for text in (str(e), repr(e), repr(e.args)):
        assert wrong not in text and lab.become_password not in text
    # a password-protected sudo and no password configured: says which variable to set
    with PROVIDER.transport(host_of(gw, **become(BECOME_USER)), CTX) as tr:
        with pytest.raises(AuthenticationError, match="ansible_become_password"):
            tr.run(["id", "-u"])
    # the CLI: exit 1, a per-target message, nothing applied, the password nowhere
    monkeypatch.setenv("KMS_TEST_BECOME_PASSWORD", wrong)
    args = write_run(tmp_path, {gw.name: {**gw.vars, **become(
        BECOME_USER, ansible_become_password={"env": "KMS_TEST_BECOME_PASSWORD"})}}, base_specs(lab))
    report = tmp_path / "run.json"
    capsys.readouterr()
    assert cli.main(["apply", *args, "--auto-approve", "--report-json", str(report)]) == 1
    out, err = capsys.readouterr()
    both = out + err
    assert gw.name in both and "refused the become password" in both, both
    assert "Traceback" not in both
    for text in (out, err, caplog.text, report.read_text() if report.exists() else ""):
        assert wrong not in text and lab.become_password not in text
    assert ("inet", "kmsdeploy") not in tables(gw)
    print("\n" + both.strip())


def test_nopasswd_sudo_needs_no_password(netns_lab):
    lab, gw = netns_lab, netns_lab.gateways[2]
    reset(gw)
    changes, requests = converge(gw, base_specs(lab), **become(NOPASSWD_USER))
    assert [c.action for c in changes] == [Action.CREATE, Action.CREATE] and requests == 3
    assert set(owned(gw)) == {"kmsdeploy:kms-allow", "kmsdeploy:kms-deny"}
    assert lab.probe(gw.ip, lab.allowed_src) and not lab.probe(gw.ip, lab.denied_src)
    assert NOPASSWD_USER in accepted_logins(gw)
    # a configured password is never sent when sudo does not ask for one: nft's input stays
    # intact (the change applies and verifies) and the command sees only its own stdin
    specs = [{"name": "kms-allow", "remote_addresses": [lab.allowed_src, lab.allowed_src6]},
             {"name": "kms-deny", "action": "block"}]
    extra = become(NOPASSWD_USER, ansible_become_password=Secret("never-sent", "env:X"))
    changes, _ = converge(gw, specs, **extra)
    assert changes[0].properties == ("remote_addresses",)
    with PROVIDER.transport(host_of(gw, **extra), CTX) as tr:
        assert tr.run(["cat"], b"only this\n") == (0, b"only this\n", b"")
        assert tr.run(["id", "-u"]) == (0, b"0\n", b"")
    reset(gw)
