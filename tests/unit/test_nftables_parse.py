"""Parsing captured ``nft -s -j list table`` output (nft 1.0.6) into firewall_rule states."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kmsdeploy.providers.nftables_parse import ParseError, parse_table

DATA = Path(__file__).resolve().parents[1] / "data" / "nftables"


@pytest.mark.parametrize("sample", ["table_basic", "table_foreign"])
def test_parse_captured_samples(sample):
    state = parse_table((DATA / f"{sample}.json").read_bytes())
    expected = json.loads((DATA / f"{sample}.expected.json").read_text())
    got = json.loads(json.dumps({"exists": state.exists, "rules": state.rules, "foreign": state.foreign,
                                 "problems": state.problems}))
    assert got == expected


def test_missing_table_reads_empty():
    state = parse_table(b"")
    assert not state.exists and state.rules == {} and state.foreign == []


def test_hostile_foreign_comment_is_reported_quoted_not_interpreted():
    state = parse_table((DATA / "table_foreign.json").read_bytes())
    hostile = [f for f in state.foreign if "reboot" in f]
    assert hostile and hostile[0].count("\n") == 0
    assert "bad name;rm" not in state.rules  # not a valid marker name -> foreign, never owned


def test_garbage_is_a_parse_error():
    with pytest.raises(ParseError):
        parse_table(b"Error: something")


def test_named_set_and_counter_in_our_table_are_foreign():
    # captured from nft 1.0.6: a person added a named set and a named counter to our table;
    # replacing the table would drop them, so they must stop the run like a foreign rule
    raw = json.dumps({"nftables": [
        {"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}},
        {"table": {"family": "inet", "name": "kmsdeploy", "handle": 1}},
        {"counter": {"family": "inet", "name": "c1", "table": "kmsdeploy", "handle": 2, "packets": 0, "bytes": 0}},
        {"set": {"family": "inet", "name": "blocked", "table": "kmsdeploy", "type": "ipv4_addr", "handle": 3,
                 "elem": ["10.0.0.1"]}},
        {"chain": {"family": "inet", "table": "kmsdeploy", "name": "input", "handle": 1, "type": "filter",
                   "hook": "input", "prio": 0, "policy": "accept"}},
        {"rule": {"family": "inet", "table": "kmsdeploy", "chain": "input", "handle": 4, "comment": "kmsdeploy:kms-allow",
                  "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}},
                                      "right": 1688}}, {"counter": None}, {"accept": None}]}}]})
    state = parse_table(raw)
    assert state.foreign == ["counter 'c1'", "set 'blocked'"]
    assert list(state.rules) == ["kms-allow"]
