"""Rollout planning (pure) and the executor's waves/budget/journal on the in-memory provider."""
from __future__ import annotations

import json
import pathlib
import xml.etree.ElementTree as ET

import jsonschema
import pytest

from kmsdeploy import planner
from kmsdeploy.journal import read_journal
from kmsdeploy.model import Host, Play, Ref, Resource, Specs
from kmsdeploy.providers.base import RunContext
from kmsdeploy.render import report
from kmsdeploy.rollout import (RolloutSettings, in_shard, over_budget, parse_shard, plan_waves, wave_sizes, Wave)
from kmsdeploy import workflow

from .memory_provider import MemoryProvider, NoteKind

ROOT = pathlib.Path(__file__).parent.parent.parent


def schema(name):
    return jsonschema.Draft202012Validator(json.loads((ROOT / "schemas" / name).read_text()))


@pytest.mark.parametrize("sizes,total,expected", [
    ([], 7, [7]),
    ([1, 5, "20%"], 20, [1, 5, 4, 4, 4, 2]),
    ([2], 5, [2, 2, 1]),
    (["50%"], 3, [1, 1, 1]),
    ([10], 3, [3]),
])
def test_wave_sizes_follow_ansible_serial(sizes, total, expected):
    assert wave_sizes(sizes, total) == expected


def test_waves_take_whole_sites_and_canary_goes_first():
    targets = ["a1", "a2", "b1", "c1", "c2", "c3", "lone"]
    sites = {"a1": "A", "a2": "A", "b1": "B", "c1": "C", "c2": "C", "c3": "C", "lone": None}
    waves = plan_waves(targets, sites, RolloutSettings(canary=1, waves=(2,)))
    assert [w.targets for w in waves] == [("a1", "a2"), ("b1", "c1", "c2", "c3"), ("lone",)]
    assert waves[0].canary and not waves[1].canary
    by_host = plan_waves(targets, sites, RolloutSettings(waves=(3,), by_site=False))
    assert [len(w.targets) for w in by_host] == [3, 3, 1]


def test_budget():
    w = Wave(1, tuple(f"h{i}" for i in range(20)))
    s = RolloutSettings(max_fail_percentage=10)
    assert not over_budget(w, 1, s) and not over_budget(w, 2, s) and over_budget(w, 3, s)
    assert over_budget(Wave(0, ("c",), canary=True), 1, RolloutSettings(max_fail_percentage=100))


def test_shards_cover_every_site_exactly_once():
    sites = {f"h{i}": f"site{i // 3}" for i in range(300)}
    seen: dict[str, int] = {}
    for k in range(1, 5):
        for h, s in sites.items():
            if in_shard(h, s, (k, 4)):
                assert seen.setdefault(h, k) == k
    assert len(seen) == 300
    # a site is never split between shards
    per_site = {}
    for h, k in seen.items():
        per_site.setdefault(sites[h], set()).add(k)
    assert all(len(v) == 1 for v in per_site.values())
    assert len({k for k in seen.values()}) == 4


@pytest.mark.parametrize("bad", ["0/3", "4/3", "x", "1/0", "1-3"])
def test_parse_shard_rejects(bad):
    with pytest.raises(ValueError):
        parse_shard(bad)


# ------------------------------------------------------------------ executor with waves


@pytest.fixture
def estate(monkeypatch):
    provider = MemoryProvider()
    kind = NoteKind()
    monkeypatch.setattr("kmsdeploy.providers.get", lambda conn: provider)
    monkeypatch.setattr("kmsdeploy.kinds.get", lambda name: kind)

    def build(n_hosts=20, rollout=None):
        hosts = {f"h{i:02d}": Host(f"h{i:02d}", {"ansible_connection": "memory"}, site=f"s{i:02d}") for i in range(n_hosts)}
        res = tuple(Resource(Ref("note", h, "a"), {"title": "a", "text": "x"}, play="p", site=hosts[h].site)
                    for h in hosts)
        return Specs(hosts=hosts, resources=res, plays=(Play("p", "all", rollout=rollout or {}),))

    return provider, build


def run(specs, provider, journal=None, resume=False):
    plan, _ = planner.make_plan(specs, RunContext(retries=0))
    return workflow.rollout(specs, plan, RunContext(retries=0), journal_path=journal, resume=resume), plan


def test_canary_failure_stops_before_wave_two(estate):
    provider, build = estate
    specs = build(rollout={"canary": 1, "waves": [5], "max_fail_percentage": 50})
    provider.stores["h00"] = {"_refuse": "a"}
    result, _ = run(specs, provider)
    assert result.stopped and "canary" in result.stopped
    assert result.outcomes["h00"].status == "failed"
    assert all(result.outcomes[f"h{i:02d}"].status == "not_run" for i in range(1, 20))
    assert all("a" not in provider.stores.get(f"h{i:02d}", {}) for i in range(1, 20))


def test_one_of_twenty_failing_with_ten_percent_budget_continues(estate):
    provider, build = estate
    specs = build(rollout={"waves": [20], "max_fail_percentage": 10})
    provider.stores["h07"] = {"_refuse": "a"}
    result, plan = run(specs, provider)
    assert result.stopped is None
    assert [o.target for o in result.failed] == ["h07"]
    doc = report.run_document(result, plan)
    assert doc["outcome"] == "failed" and doc["exit_code"] == 1


def test_three_of_twenty_stops_the_rollout_exit_3(estate):
    provider, build = estate
    specs = build(n_hosts=30, rollout={"waves": [20], "max_fail_percentage": 10})
    for h in ("h01", "h02", "h03"):
        provider.stores[h] = {"_refuse": "a"}
    result, plan = run(specs, provider)
    assert result.stopped and "3 of 20" in result.stopped
    assert {o.status for t, o in result.outcomes.items() if int(t[1:]) >= 20} == {"not_run"}
    doc = report.run_document(result, plan)
    assert doc["exit_code"] == 3
    schema("run-report.schema.json").validate(doc)


def test_resume_skips_converged_hosts_and_passed_canary(estate, tmp_path):
    provider, build = estate
    journal = str(tmp_path / "run.jsonl")
    specs = build(n_hosts=6, rollout={"canary": 1, "waves": [2], "max_fail_percentage": 0})
    provider.stores["h02"] = {"_refuse": "a"}
    result, _ = run(specs, provider, journal=journal)
    assert result.stopped  # wave 1 (h01, h02) failed
    state = read_journal(journal)
    assert state.canary_passed and state.converged == {"h00", "h01"} and state.failed == {"h02"}
    provider.stores["h02"].pop("_refuse")
    calls = provider.apply_calls
    result2, _ = run(specs, provider, journal=journal, resume=True)
    assert result2.ok and result2.stopped is None
    assert provider.apply_calls - calls == 4  # h02..h05 only; h00 and h01 not redone
    assert not result2.waves[0]["canary"]


def test_journal_tolerates_torn_last_line(tmp_path):
    path = tmp_path / "j.jsonl"
    path.write_text('{"event": "target", "target": "h1", "status": "converged"}\n{"event": "tar')
    assert read_journal(str(path)).converged == {"h1"}


def test_reports_junit_markdown_and_merge(estate):
    provider, build = estate
    specs = build(n_hosts=4)
    provider.stores["h03"] = {"_refuse": "a"}
    result, plan = run(specs, provider)
    doc = report.run_document(result, plan, shard="1/2")
    schema("run-report.schema.json").validate(doc)
    root = ET.fromstring(report.junit(doc).split("?>", 1)[1])
    cases = root.findall(".//testcase")
    assert len(cases) == 4 and len(root.findall(".//failure")) == 1
    assert "h03" in report.markdown(doc)
    other = dict(doc, hosts=[dict(h, target=h["target"] + "-b") for h in doc["hosts"]], shard="2/2")
    merged = report.merge_documents([doc, other])
    schema("run-report.schema.json").validate(merged)
    assert len(merged["hosts"]) == 8 and merged["outcome"] == "failed"
    with pytest.raises(ValueError):
        report.merge_documents([doc, doc])


def test_plain_progress_is_plain_text(estate, capsys):
    from kmsdeploy.progress import PlainProgress, choose

    provider, build = estate
    specs = build(n_hosts=3, rollout={"waves": [2]})
    plan, _ = planner.make_plan(specs, RunContext())
    assert isinstance(choose(quiet=False, verbose=False), PlainProgress)  # captured stdout is not a TTY
    workflow.rollout(specs, plan, RunContext(), progress=PlainProgress())
    out = capsys.readouterr().out
    assert "\x1b[" not in out
    assert "== wave 1/2: 2 target(s)" in out and "h02: converged" in out
