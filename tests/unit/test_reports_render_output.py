"""The fast text and JSON renderers write exactly what the straightforward versions write."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from kmsdeploy.reports import queries, render
from kmsdeploy.reports.parse import parse_12290
from kmsdeploy.reports.population import Population, PopulationSpec, lab_catalog
from kmsdeploy.reports.store import Store

NOW = datetime(2025, 3, 1, tzinfo=timezone.utc)


def reference_text(doc: dict, max_rows: int | None = None) -> str:
    """The original cell-by-cell text renderer (kept here as the oracle)."""
    out = [f"{doc['title']} (as of {doc['now']})"]
    out.append(", ".join(f"{k.replace('_', ' ')}: {render._summary_value(v)}" for k, v in doc["summary"].items()))
    for t in doc["tables"]:
        out.append("")
        out.append(f"{t['title']} ({len(t['rows'])} row{'s' if len(t['rows']) != 1 else ''})")
        rows = t["rows"] if max_rows is None else t["rows"][:max_rows]
        if not rows:
            out.append("  (none)")
            continue
        cols = t["columns"]
        grid = [[c["title"] for c in cols]] + [
            ["".join(ch if ch.isprintable() else " " for ch in render._cell(r.get(c["key"]))) for c in cols]
            for r in rows]
        widths = [max(len(row[i]) for row in grid) for i in range(len(cols))]
        for n, row in enumerate(grid):
            out.append("  ".join(v.ljust(widths[i]) for i, v in enumerate(row)).rstrip())
            if n == 0:
                out.append("  ".join("-" * w for w in widths))
        if max_rows is not None and len(t["rows"]) > max_rows:
            out.append(f"  ... {len(t['rows']) - max_rows} more")
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def docs(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("r") / "s.sqlite")
    pop = Population(PopulationSpec(sites={"hq": ["hq-kms01"], "br": ["br-kms01"]}, end=NOW,
                                    clients_per_site=60, days=30))
    per: dict[str, list] = {}
    for r in pop.records():
        per.setdefault(r.host, []).append(parse_12290(r.as_event()))
    with Store(path) as s:
        s.set_products(lab_catalog())
        for h, evs in per.items():
            s.ingest(h, h[:2], evs, at=NOW, current_count=pop.current_counts()[h])
        return [queries.build(name, s, NOW, f) for name in queries.REPORTS
                for f in (queries.Filters(), queries.Filters(within=timedelta(days=180), include_expired=True,
                                                             interval="hour", by="site"))]


HOSTILE = {"format_version": 1, "kind": queries.KIND, "report": "vm", "title": "t", "now": "n",
           "filters": {"a": [], "b": None}, "summary": {"x": {"y": 1}, "z": None},
           "tables": [{"name": "t", "title": "T", "columns": [{"key": "a", "title": "A"}, {"key": "b", "title": "Bee"},
                                                              {"key": "c", "title": "C"}],
                       "rows": [{"a": "x\ny\tz\u2028", "b": True, "c": 1.5}, {"a": "  ", "b": None, "c": "trail  "},
                                {"a": "é{0}{}", "b": 10 ** 20, "c": "}\x00{\x01\""}, {"a": "</script>", "b": -0.0}]},
                      {"name": "e", "title": "E", "columns": [{"key": "a", "title": "A"}], "rows": []}],
           "charts": [{"name": "c", "x": [], "series": [{"name": "s", "y": [1, None, 2.5]}], "thresholds": [25, 5]}]}


def test_json_is_byte_identical_to_json_dumps(docs):
    for doc in docs + [HOSTILE]:
        assert render.json_text(doc) == json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


@pytest.mark.parametrize("value", [
    {}, [], "s", 3, None, [1, "a", None], {"t": (1, 2)}, {1: "int key", "n": {2: 3}},
    {"a": {}, "b": [], "c": [{}], "d": [[1, [2]], {"x": None}], "f": float("nan"), "g": float("inf")},
    [{"a": "}\x00{", "b": "\x01"}, {"c": 1}], [{"a": 1}, {}], [{"a": {"b": 1}}], [{"}": "{", "x": ["}{"]}],
    {"rows": [{"a\x00": "x\x00y", 2: None}, {"q": "}, {"}]}, [[{"a": 1}, {"b": 2}]],
])
def test_json_edge_structures(value):
    out: list[str] = []
    render._indented(value, "\n", out)
    assert "".join(out) == json.dumps(value, indent=2, ensure_ascii=False)


def test_text_equals_the_cell_by_cell_renderer(docs):
    for doc in docs + [HOSTILE]:
        assert render.text(doc) == reference_text(doc)
        for n in (0, 2):
            assert render.text(doc, max_rows=n) == reference_text(doc, max_rows=n)
