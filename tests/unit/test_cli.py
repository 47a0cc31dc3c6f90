"""CLI plumbing on the in-memory provider: exit codes, saved plans, staleness, formats, no tracebacks."""
from __future__ import annotations

import json

import pytest

from kmsdeploy import cli
from kmsdeploy.errors import Diagnostic, SpecError
from kmsdeploy.model import Host, Ref, Resource, Secret, Specs

from .memory_provider import MemoryProvider, NoteKind


@pytest.fixture
def world(monkeypatch):
    provider = MemoryProvider()
    kind = NoteKind()
    state = {"specs": None}
    monkeypatch.setattr("kmsdeploy.providers.get", lambda conn: provider)
    monkeypatch.setattr("kmsdeploy.kinds.get", lambda name: kind)

    def fake_load(playbooks, inventory, *, resolve_secrets, limit=None, vault=None):
        if isinstance(state["specs"], Exception):
            raise state["specs"]
        return state["specs"]

    monkeypatch.setattr(cli, "load", fake_load)

    def set_specs(*titles, digest="sha256:a"):
        hosts = {"h1": Host("h1", {"ansible_connection": "memory"})}
        res = tuple(Resource(Ref("note", "h1", t), {"title": t, "text": "x"}) for t in titles)
        state["specs"] = Specs(hosts=hosts, resources=res, digest=digest, playbooks=("/p.yml",), inventory="/inv.yml")

    state["set"] = set_specs
    state["provider"] = provider
    return state


def test_plan_detailed_exitcode_and_apply_then_clean(world, capsys):
    world["set"]("a", "b")
    assert cli.main(["plan", "-i", "inv.yml", "p.yml", "--detailed-exitcode"]) == 2
    assert capsys.readouterr().out.startswith("Plan: 2 to create, 0 to update, 0 to delete, 0 unchanged.")
    assert cli.main(["apply", "-i", "inv.yml", "p.yml", "--auto-approve"]) == 0
    assert cli.main(["plan", "-i", "inv.yml", "p.yml", "--detailed-exitcode"]) == 0
    assert "No changes" in capsys.readouterr().out


def test_apply_without_tty_and_without_auto_approve_refuses(world, capsys, monkeypatch):
    world["set"]("a")
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert cli.main(["apply", "-i", "inv.yml", "p.yml"]) == 1
    assert "pass --auto-approve" in capsys.readouterr().err
    assert world["provider"].apply_calls == 0


def test_saved_plan_applies_and_stale_plan_is_refused(world, tmp_path, capsys):
    world["set"]("a")
    plan = tmp_path / "plan.json"
    assert cli.main(["plan", "-i", "inv.yml", "p.yml", "--out", str(plan)]) == 0
    assert cli.main(["show", str(plan)]) == 0
    assert "+ note[a] on h1" in capsys.readouterr().out
    # someone changes the target after the plan was made
    world["provider"].stores["h1"] = {"a": {"title": "a", "text": "manual"}}
    assert cli.main(["apply", str(plan)]) == 1
    assert "saved plan is stale" in capsys.readouterr().err
    assert world["provider"].stores["h1"]["a"]["text"] == "manual"
    # a fresh plan applies
    assert cli.main(["plan", "-i", "inv.yml", "p.yml", "--out", str(plan)]) == 0
    assert cli.main(["apply", str(plan)]) == 0
    assert world["provider"].stores["h1"]["a"]["text"] == "x"


def test_saved_plan_refused_when_specs_changed(world, tmp_path, capsys):
    world["set"]("a", digest="sha256:one")
    plan = tmp_path / "plan.json"
    cli.main(["plan", "-i", "inv.yml", "p.yml", "--out", str(plan)])
    world["set"]("a", digest="sha256:two")
    assert cli.main(["apply", str(plan)]) == 1
    assert "changed since this plan was made" in capsys.readouterr().err


def test_json_format_and_markdown(world, capsys):
    world["set"]("a")
    assert cli.main(["plan", "-i", "inv.yml", "p.yml", "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["format_version"] == "1.1" and doc["summary"]["create"] == 1
    assert cli.main(["plan", "-i", "inv.yml", "p.yml", "--format", "markdown"]) == 0
    assert capsys.readouterr().out.startswith("### kmsdeploy plan")


def test_spec_errors_are_listed_with_locations_and_exit_1(world, capsys):
    world["specs"] = SpecError([Diagnostic("bad port", "p.yml", 3, 9), Diagnostic("unknown kind 'x'", "p.yml", 7, 5)])
    assert cli.main(["validate", "p.yml"]) == 1
    err = capsys.readouterr().err
    assert "p.yml:3:9: bad port" in err and "p.yml:7:5: unknown kind 'x'" in err and "2 error(s)" in err


def test_unreachable_target_exit_1(world, capsys):
    world["set"]("a")
    world["provider"].stores["h1"] = {"_down": True}
    assert cli.main(["plan", "-i", "inv.yml", "p.yml", "--retries", "0"]) == 1
    assert "memory target is down" in capsys.readouterr().out


def test_unexpected_exception_is_not_a_traceback(world, capsys, monkeypatch):
    world["specs"] = RuntimeError("boom")
    assert cli.main(["validate", "p.yml"]) == 1
    assert "internal error: RuntimeError: boom" in capsys.readouterr().err


def test_bad_arguments_exit_1(capsys):
    assert cli.main(["plan"]) == 1


def test_corrupt_plan_file(tmp_path, capsys):
    bad = tmp_path / "plan.json"
    bad.write_text('{"kind": "kmsdeploy-plan", "format_version": "1.0",')
    assert cli.main(["show", str(bad)]) == 1
    assert "invalid JSON" in capsys.readouterr().err


def test_secret_never_printed(world, capsys, tmp_path):
    world["set"]("a")
    specs = world["specs"]
    r = specs.resources[0]
    world["specs"] = Specs(hosts=specs.hosts, resources=(Resource(r.ref, {"title": "a", "text": Secret("hunter2")}),),
                           digest="d", playbooks=("/p.yml",), inventory="/inv.yml")
    plan = tmp_path / "p.json"
    for fmt in ("text", "json", "markdown"):
        cli.main(["plan", "-i", "inv.yml", "p.yml", "--format", fmt, "--out", str(plan)])
        captured = capsys.readouterr()
        assert "hunter2" not in captured.out + captured.err
        assert "hunter2" not in plan.read_text()


def test_unwritable_outputs_are_clear_errors(world, tmp_path, capsys):
    world["set"]("a")
    missing = tmp_path / "no-such-dir"
    assert cli.main(["plan", "-i", "inv.yml", "p.yml", "--out", str(missing / "plan.json")]) == 1
    assert f"{missing / 'plan.json'}: cannot write" in capsys.readouterr().err
    assert cli.main(["apply", "-i", "inv.yml", "p.yml", "--auto-approve",
                     "--report-json", str(missing / "r.json")]) == 1
    assert "cannot write report" in capsys.readouterr().err


def test_report_merge_rejects_a_plan_file(world, tmp_path, capsys):
    world["set"]("a")
    plan = tmp_path / "plan.json"
    cli.main(["plan", "-i", "inv.yml", "p.yml", "--out", str(plan)])
    capsys.readouterr()
    assert cli.main(["report", "merge", str(plan)]) == 1
    assert "not a kmsdeploy run report" in capsys.readouterr().err


def test_negative_retries_is_a_usage_error(capsys):
    assert cli.main(["plan", "-i", "inv.yml", "p.yml", "--retries", "-1"]) == 1
    assert "must be at least 0" in capsys.readouterr().err


@pytest.mark.parametrize("verb", [["validate", "site.yml"], ["plan", "site.yml"], ["facts", "collect", "site.yml", "--out", "f.json"],
                                  ["preflight"], ["health"],
                                  ["report", "collect"], ["inventory", "--list"]])
def test_every_verb_that_reads_an_inventory_takes_several_sources(verb):
    from kmsdeploy.cli import build_parser

    args = build_parser().parse_args([*verb, "-i", "hosts.ini", "-i", "cmdb.py", "-i", "inventory/"])
    assert args.inventory == ["hosts.ini", "cmdb.py", "inventory/"]


def test_report_collect_and_health_select_hosts_from_several_sources(tmp_path):
    """Two sources (INI + YAML) give report collect and health the union of their hosts."""
    from kmsdeploy.health.command import load_targets
    from kmsdeploy.reports.command import select_hosts

    ini = tmp_path / "hosts"
    ini.write_text("[kms_hosts]\nkms1 ansible_host=198.18.0.30\n[kms_hosts:vars]\nansible_connection=winrm\n")
    more = tmp_path / "more.yml"
    more.write_text("all:\n  children:\n    kms_hosts:\n      hosts:\n        kms2: {ansible_host: 198.18.1.30}\n")
    chosen, _ = select_hosts([str(ini), str(more)], None)
    assert [h.name for h in chosen] == ["kms1", "kms2"]
    _, names = load_targets([str(ini), str(more)], [], None)
    assert names == ["kms1", "kms2"]
