"""Rendering the nft transaction from rule states (golden files) and refusing unsafe values."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kmsdeploy.kinds.firewall_rule import FirewallRule
from kmsdeploy.providers.nftables_parse import parse_table
from kmsdeploy.providers.nftables_render import RenderError, render_rule, render_table

DATA = Path(__file__).resolve().parents[1] / "data" / "nftables"


def test_golden_basic():
    rules = json.loads((DATA / "render_basic.rules.json").read_text())
    assert render_table(rules) == (DATA / "render_basic.nft").read_text()


def test_golden_empty_removes_the_table():
    assert render_table([]) == (DATA / "render_empty.nft").read_text()
    assert render_table([]) == "table inet kmsdeploy\ndelete table inet kmsdeploy\n"


def test_parse_of_capture_renders_back_to_the_same_rules():
    # The capture was loaded from hand-written nft text; its parse must render to the golden file.
    state = parse_table((DATA / "table_basic.json").read_bytes())
    assert render_table(state.rules.values()) == (DATA / "render_basic.nft").read_text()


def test_accept_rules_come_before_drop_rules():
    k = FirewallRule()
    text = render_table([k.normalize({"name": "a-deny", "action": "block"}),
                         k.normalize({"name": "z-allow", "remote_addresses": ["198.18.0.0/24"]})])
    assert text.index("z-allow") < text.index("a-deny")


def test_mixed_families_make_two_rules_with_one_marker():
    k = FirewallRule()
    lines = render_rule(k.normalize({"name": "both", "remote_addresses": ["fd00::/8", "198.18.0.0/24"]}))
    assert lines == ['ip saddr 198.18.0.0/24 tcp dport 1688 counter accept comment "kmsdeploy:both"',
                     'ip6 saddr fd00::/8 tcp dport 1688 counter accept comment "kmsdeploy:both"']


HOSTILE = ['x"; flush ruleset; "', "a\nb", "$(reboot)", "`id`", "a b", "", "x" * 65, "kms;drop"]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_never_reach_nft_text(name):
    rule = {"name": name, "direction": "inbound", "protocol": "tcp", "local_ports": [1688],
            "remote_addresses": [], "enabled": True, "action": "allow", "counters": True}
    with pytest.raises(RenderError):
        render_table([rule])


@pytest.mark.parametrize("field, value", [
    ("remote_addresses", ["198.18.0.0/24 } accept; flush ruleset; {"]),
    ("remote_addresses", ["10.0.0.5/24"]),
    ("local_ports", ["1688; flush ruleset"]),
    ("local_ports", [True]),
    ("protocol", "tcp; flush ruleset"),
    ("action", "accept"),
    ("direction", "prerouting"),
    ("enabled", "yes"),
])
def test_hostile_values_are_refused(field, value):
    rule = {"name": "ok", "direction": "inbound", "protocol": "tcp", "local_ports": [1688],
            "remote_addresses": [], "enabled": True, "action": "allow", "counters": True, field: value}
    with pytest.raises(RenderError):
        render_table([rule])


@pytest.mark.parametrize("family, table", [("inet", "bad name"), ("bridge", "kmsdeploy"), ("inet", "a;b")])
def test_table_name_and_family_are_checked(family, table):
    with pytest.raises(RenderError):
        render_table([], family, table)


def test_ipv6_in_an_ip_table_is_refused():
    k = FirewallRule()
    with pytest.raises(RenderError, match="family inet"):
        render_table([k.normalize({"name": "v6", "remote_addresses": ["fd00::/8"]})], "ip", "kmsdeploy")
