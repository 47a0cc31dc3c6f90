"""``kmsdeploy preflight`` on Linux gateways: real sshd + nftables in a network namespace
(tests/services/netns.py), through the CLI. Each check is made wrong on the gateway, seen
failing with its advice, fixed, seen passing. Independent oracle: ``ip netns exec NS nft -j
list ruleset`` is identical before and after every run (preflight is read-only), and the
transport counts ONE command per gateway.

firewalld and ufw cannot run in these namespaces (no systemd here): the boot-time
``flush ruleset`` of a persistent nftables.conf is simulated with a per-gateway file
(``kmsdeploy_nft_boot_config``), never the machine's /etc/nftables.conf.
"""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from kmsdeploy.cli import main
from kmsdeploy.spec.schemas import load_schema
from tests.services.netns import NOPASSWD_USER, sh

pytestmark = pytest.mark.integration


@pytest.fixture
def gw(netns_lab):
    g = netns_lab.gateways[4]
    g.nft("delete", "table", "inet", "kmsdeploy", check=False)
    yield g
    g.nft("delete", "table", "inet", "kmsdeploy", check=False)


def ruleset(gw) -> str:
    return sh("ip", "netns", "exec", gw.netns, "nft", "-j", "list", "ruleset").stdout.decode()


def run(gw, tmp_path, capsys, **overrides) -> tuple[int, dict]:
    boot = tmp_path / "nftables.conf"
    vars_ = {**gw.vars, "kmsdeploy_nft_boot_config": str(boot), **overrides}
    (tmp_path / "inv.yml").write_text(yaml.safe_dump({"all": {"hosts": {gw.name: vars_}}}))
    (tmp_path / "gw.yml").write_text(yaml.safe_dump([{"name": "gw", "hosts": gw.name, "resources": [
        {"kind": "firewall_rule", "name": "kms-allow", "remote_addresses": ["198.18.0.0/16"]}]}]))
    before = ruleset(gw)
    capsys.readouterr()
    rc = main(["preflight", "-i", str(tmp_path / "inv.yml"), str(tmp_path / "gw.yml"), "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, load_schema("preflight.schema.json"))
    assert ruleset(gw) == before  # read-only
    assert doc["targets"][0]["requests"] == 1, doc  # one command over one connection
    return rc, doc


def checks(doc) -> dict[str, dict]:
    return {c["check"]: c for c in doc["targets"][0]["checks"]}


def test_fresh_gateway_passes(gw, tmp_path, capsys):
    rc, doc = run(gw, tmp_path, capsys)
    got = checks(doc)
    assert rc == 0, got
    for name in ("become", "nft", "nft_json", "table", "boot_config"):
        assert got[name]["status"] == "ok", got[name]
    assert got["nft"]["summary"].startswith("nftables v")
    assert "does not exist yet" in got["table"]["summary"]
    assert got["firewall_manager"]["status"] == "skipped"  # no systemd in the namespace: not visible


def test_boot_config_that_flushes_the_ruleset(gw, tmp_path, capsys):
    boot = tmp_path / "nftables.conf"
    boot.write_text("#!/usr/sbin/nft -f\nflush ruleset\ntable inet filter {\n}\n")
    rc, doc = run(gw, tmp_path, capsys)
    c = checks(doc)["boot_config"]
    assert rc == 1 and c["status"] == "warning" and "include" in c["advice"]
    persist = gw.vars["kmsdeploy_nft_persist"]
    boot.write_text(f'#!/usr/sbin/nft -f\nflush ruleset\ninclude "{persist}"\n')
    rc, doc = run(gw, tmp_path, capsys)
    assert rc == 0 and "includes kmsdeploy's table" in checks(doc)["boot_config"]["summary"]


def test_foreign_rule_in_our_table(gw, tmp_path, capsys):
    gw.nft("-f", "-", input=b"table inet kmsdeploy {\n chain input {\n type filter hook input priority 0;\n"
                             b" tcp dport 22 accept comment \"hand-made\"\n }\n}\n")
    rc, doc = run(gw, tmp_path, capsys)
    c = checks(doc)["table"]
    assert rc == 2 and c["status"] == "critical" and "prune_foreign" in c["advice"]
    rc, doc = run(gw, tmp_path, capsys, kmsdeploy_nft_prune_foreign=True)
    assert rc == 0 and checks(doc)["table"]["status"] == "ok"


def test_without_become_a_plain_user_cannot_run_nft(gw, tmp_path, capsys):
    rc, doc = run(gw, tmp_path, capsys, ansible_user=NOPASSWD_USER)
    c = checks(doc)["become"]
    assert rc == 2 and c["status"] == "critical" and "ansible_become" in c["advice"]
    rc, doc = run(gw, tmp_path, capsys, ansible_user=NOPASSWD_USER, ansible_become=True)
    assert rc == 0 and checks(doc)["become"]["summary"] == "commands run as uid 0"
