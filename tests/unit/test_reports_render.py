"""Renderers (text, JSON, CSV, HTML) from the same document, and the CLI glue."""
from __future__ import annotations

import argparse
import csv
import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jsonschema
import pytest

from kmsdeploy.reports import command, queries, render
from kmsdeploy.reports.parse import parse_12290
from kmsdeploy.reports.population import Population, PopulationSpec, lab_catalog
from kmsdeploy.reports.store import Store

NOW = datetime(2025, 3, 1, tzinfo=timezone.utc)
SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "activation-report.schema.json").read_text())


@pytest.fixture(scope="module")
def store_path(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("r") / "s.sqlite")
    sites = {"hq": ["hq-kms01"], "br": ["br-kms01"]}
    pop = Population(PopulationSpec(sites=sites, end=NOW, clients_per_site=80, days=30))
    per: dict[str, list] = {}
    for r in pop.records():
        per.setdefault(r.host, []).append(parse_12290(r.as_event()))
    with Store(path) as s:
        s.set_products(lab_catalog())
        for h, evs in per.items():
            s.ingest(h, h[:2], evs, at=NOW, current_count=pop.current_counts()[h])
    return path


@pytest.mark.parametrize("report", queries.REPORTS)
def test_all_formats_from_one_document(report, store_path):
    with Store(store_path, readonly=True) as s:
        doc = queries.build(report, s, NOW, queries.Filters(within=timedelta(days=180)))
    jsonschema.validate(json.loads(render.render(doc, "json")), SCHEMA)
    txt = render.render(doc, "text")
    assert doc["title"] in txt and doc["tables"][0]["title"] in txt
    rows = list(csv.reader(io.StringIO(render.render(doc, "csv"))))
    assert rows[0] == [c["key"] for c in doc["tables"][0]["columns"]]
    assert len(rows) == len(doc["tables"][0]["rows"]) + 1
    page = render.render(doc, "html")
    assert page.startswith("<!DOCTYPE html>") and "cdn." not in page.split("<script>", 2)[1][:200]
    assert "src=\"http" not in page and "Plotly.newPlot" in page


def test_csv_other_table_and_unknown_table(store_path):
    with Store(store_path, readonly=True) as s:
        doc = queries.build("history", s, NOW)
    assert render.csv_text(doc, "failures").startswith("hresult,name,meaning")
    with pytest.raises(ValueError, match="no table"):
        render.csv_text(doc, "nope")


def test_hostile_values_are_escaped():
    doc = {"format_version": 1, "kind": queries.KIND, "report": "vm", "title": "t<b>", "now": "2025-03-01T00:00:00Z",
           "filters": queries.Filters().as_dict(), "summary": {"x": "<i>"},
           "tables": [{"name": "t", "title": "T", "columns": [{"key": "a", "title": "A"}],
                       "rows": [{"a": "</script><script>alert(1)</script>\nnext"}]}],
           "charts": [{"name": "c", "title": "c", "type": "bar", "barmode": "stack", "x": ["</script><b>"],
                       "series": [{"name": "s", "y": [1]}]}]}
    page = render.html(doc)
    assert "<script>alert(1)" not in page and "</script><b>" not in page
    assert "&lt;/script&gt;" in page
    assert "\nnext" not in render.text(doc)  # one line per cell


def parser():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="verb")
    command.add_parsers(sub.add_parser("report").add_subparsers(dest="report_verb"))
    return p


def test_cli_report_json_and_out(store_path, tmp_path, capsys):
    args = parser().parse_args(["report", "expiring", "--store", store_path, "--now", "2025-03-01",
                                "--within", "180d", "--format", "json", "--site", "hq"])
    assert command.run(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["filters"]["sites"] == ["hq"] and doc["filters"]["within_days"] == 180
    assert all(r["site"] == "hq" for r in doc["tables"][0]["rows"])
    out = tmp_path / "r.html"
    args = parser().parse_args(["report", "history", "--store", store_path, "--now", "2025-03-01T00:00Z",
                                "--since", "3d", "--interval", "hour", "--format", "html", "--out", str(out)])
    assert command.run(args) == 0 and out.read_text().startswith("<!DOCTYPE html>")


def test_cli_bad_input(tmp_path, capsys):
    with pytest.raises(SystemExit):
        parser().parse_args(["report", "expiring", "--within", "soon"])
    assert "not a duration" in capsys.readouterr().err
    args = parser().parse_args(["report", "vm", "--store", str(tmp_path / "none.sqlite")])
    from kmsdeploy.errors import KmsdeployError
    with pytest.raises(KmsdeployError, match="report collect"):
        command.run(args)


@pytest.mark.parametrize("text,want", [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("2w", timedelta(days=14)),
                                       ("7", timedelta(days=7)), ("90m", timedelta(minutes=90))])
def test_durations(text, want):
    assert command.duration(text) == want
    assert command.since_arg(text) == want


def test_since_instant():
    assert command.since_arg("2025-02-01") == datetime(2025, 2, 1, tzinfo=timezone.utc)


def test_collect_host_selection(tmp_path):
    inv = tmp_path / "hosts.yml"
    inv.write_text("all:\n  children:\n    sites:\n      children:\n        hq:\n          hosts:\n"
                   "            kms1: {ansible_connection: winrm}\n            gw1: {ansible_connection: ssh}\n"
                   "    kms_hosts:\n      hosts:\n        kms1:\n")
    hosts, warnings = command.select_hosts(str(inv), None)
    assert [h.name for h in hosts] == ["kms1"] and hosts[0].site == "hq" and warnings == []
    hosts, warnings = command.select_hosts(str(inv), "all")
    assert [h.name for h in hosts] == ["kms1"] and "gw1" in warnings[0]
