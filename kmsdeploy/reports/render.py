"""Render a report document (:mod:`.queries`) as text, JSON, CSV or one self-contained HTML file.

All four views render the SAME document, so they cannot disagree. HTML embeds
plotly.js (the plotly package ships it; no network, no CDN) once in the page and draws
each chart from the document's ``charts`` data; tables are escaped by Jinja2's
autoescape, and chart data is JSON with ``<``, ``>`` and ``&`` escaped, so a client
name such as ``</script><script>...`` stays data.
"""
from __future__ import annotations

import csv
import functools
import io
import json
from typing import Any

import jinja2

FORMATS = ("text", "json", "csv", "html")
#: rows per table in the HTML page (the JSON and CSV views always hold every row)
HTML_MAX_ROWS = 2000


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _clean(text: str) -> str:
    """One line per cell: control characters (newlines from hostile names) become spaces."""
    if text.isprintable():  # nearly every cell: no per-character work
        return text
    return "".join(ch if ch.isprintable() else " " for ch in text)


def text(doc: dict, *, max_rows: int | None = None) -> str:
    """Plain-text tables, aligned, with the summary on top."""
    out = [f"{doc['title']} (as of {doc['now']})"]
    summ = ", ".join(f"{k.replace('_', ' ')}: {_summary_value(v)}" for k, v in doc["summary"].items())
    out.append(summ)
    for t in doc["tables"]:
        out.append("")
        out.append(f"{t['title']} ({len(t['rows'])} row{'s' if len(t['rows']) != 1 else ''})")
        rows = t["rows"] if max_rows is None else t["rows"][:max_rows]
        if not rows:
            out.append("  (none)")
            continue
        # column by column (50k-row tables): strings pass as they are, and one
        # isprintable() over a whole column decides whether any cell needs cleaning
        titles = [c["title"] for c in t["columns"]]
        columns = []
        for c in t["columns"]:
            k = c["key"]
            cells = [v if type(v) is str else _cell(v) for v in (r.get(k) for r in rows)]
            if not "".join(cells).isprintable():
                cells = [_clean(x) for x in cells]
            columns.append(cells)
        widths = [max(len(title), max(map(len, cells))) for title, cells in zip(titles, columns)]
        line = "  ".join(f"{{:<{w}}}" for w in widths).format
        out.append(line(*titles).rstrip())
        out.append("  ".join("-" * w for w in widths))
        out.extend(line(*cells).rstrip() for cells in zip(*columns))
        if max_rows is not None and len(t["rows"]) > max_rows:
            out.append(f"  ... {len(t['rows']) - max_rows} more")
    return "\n".join(out) + "\n"


def _summary_value(v: Any) -> str:
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {x}" for k, x in v.items()) + "}"
    return _cell(v)


def json_text(doc: dict) -> str:
    """The document itself (schemas/activation-report.schema.json), indented by 2:
    byte-for-byte ``json.dumps(doc, indent=2, ensure_ascii=False)`` (tested), built faster
    (see :func:`_indented`)."""
    out: list[str] = []
    _indented(doc, "\n", out)
    return "".join(out) + "\n"


#: CPython's C encoder (compact; used for scalars and flat containers). With ``indent``,
#: ``json.dumps`` falls back to the pure-Python encoder, ~10x slower on a 50k-row table.
_COMPACT = json.JSONEncoder(ensure_ascii=False)
_SCALARS = (str, int, float, bool, type(None))


def _indented(value: Any, nl: str, out: list[str]) -> None:
    """Append ``value`` as ``json.dumps(value, indent=2, ensure_ascii=False)`` would write
    it at the indentation ``nl`` (newline + current indent). A container holding only
    scalars (a table row, a chart series) is one C-encoder call whose item separator
    carries the newline and indent; only nesting is walked here."""
    if isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        inner = nl + "  "
        if all(isinstance(k, str) for k in value):
            if all(isinstance(v, _SCALARS) for v in value.values()):
                out.extend(("{", inner, _flat(inner).encode(value)[1:-1], nl, "}"))
                return
            out.append("{")
            first = True
            for k, v in value.items():
                out.append(inner if first else "," + inner)
                first = False
                out.append(_COMPACT.encode(k))
                out.append(": ")
                _indented(v, inner, out)
            out.extend((nl, "}"))
            return
    elif isinstance(value, (list, tuple)):
        if not value:
            out.append("[]")
            return
        inner = nl + "  "
        if all(type(v) is dict and v and set(map(type, v.values())) <= _SCALAR_TYPES for v in value):
            _rows(value, nl, out)
            return
        if all(isinstance(v, _SCALARS) for v in value):
            out.extend(("[", inner, _flat(inner).encode(value)[1:-1], nl, "]"))
            return
        out.append("[")
        first = True
        for v in value:
            out.append(inner if first else "," + inner)
            first = False
            _indented(v, inner, out)
        out.extend((nl, "]"))
        return
    elif isinstance(value, _SCALARS):
        out.append(_COMPACT.encode(value))
        return
    # anything else (non-string keys, other types): the reference encoder, re-indented
    text = json.dumps(value, indent=2, ensure_ascii=False)
    out.append(text.replace("\n", nl))


_SCALAR_TYPES = frozenset(_SCALARS)
#: separators the C encoder escapes inside strings (control characters), so in its
#: output they can only be the separators themselves
_ITEM = "\x00"
_ROW_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(_ITEM, ": "))


def _rows(rows: list | tuple, nl: str, out: list[str]) -> None:
    """A list of non-empty flat dicts (a table's rows) in ONE C-encoder call, then
    re-indented: a separator between rows is the only ``}`` + sep + ``{`` (within a row
    a separator is always followed by a key's ``"``), every other one is within a row."""
    inner, inner2 = nl + "  ", nl + "    "
    body = _ROW_ENCODER.encode(rows)[2:-2]  # drop "[{" and "}]"
    body = body.replace("}" + _ITEM + "{", "\x01").replace(_ITEM, "," + inner2)
    body = body.replace("\x01", inner + "}," + inner + "{" + inner2)
    out.extend(("[", inner, "{", inner2, body, inner, "}", nl, "]"))


@functools.cache
def _flat(inner: str) -> json.JSONEncoder:
    """A C encoder whose item separator is ``,`` + newline + ``inner``'s indent."""
    return json.JSONEncoder(ensure_ascii=False, separators=("," + inner, ": "))


def csv_text(doc: dict, table: str | None = None) -> str:
    """One table as CSV (default: the report's first, main table), header row of keys."""
    tables = {t["name"]: t for t in doc["tables"]}
    if table is None:
        t = doc["tables"][0]
    elif table in tables:
        t = tables[table]
    else:
        raise ValueError(f"report {doc['report']} has no table {table!r}; tables: {', '.join(tables)}")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    keys = [c["key"] for c in t["columns"]]
    w.writerow(keys)
    for r in t["rows"]:
        w.writerow(["" if r.get(k) is None else ("true" if r.get(k) is True else "false" if r.get(k) is False
                                                 else r.get(k)) for k in keys])
    return buf.getvalue()


# ---------------------------------------------------------------- HTML
@functools.cache
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element."""
    return (json.dumps(value, ensure_ascii=False, separators=(",", ":"))
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _figure(chart: dict) -> dict:
    """A plotly figure (data + layout) for one chart of the document."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for s in chart["series"]:
        fig.add_trace(go.Bar(name=s["name"], x=chart["x"], y=s["y"]) if chart["type"] == "bar"
                      else go.Scatter(name=s["name"], x=chart["x"], y=s["y"], mode="lines+markers"))
    for y in chart.get("thresholds") or []:
        fig.add_hline(y=y, line_dash="dash", annotation_text=f"threshold {y}")
    fig.update_layout(title=chart["title"], barmode=chart.get("barmode") or "group", template="plotly_white",
                      height=380, margin={"l": 50, "r": 20, "t": 50, "b": 80}, legend={"orientation": "h"})
    return json.loads(fig.to_json())


_PAGE = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined).from_string("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="kmsdeploy report {{ doc.report }}">
<title>{{ doc.title }} - kmsdeploy</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:1.5rem;color:#1f2328}
h1{font-size:1.4rem;margin-bottom:.2rem} .meta{color:#59636e;margin-top:0}
table{border-collapse:collapse;margin:.5rem 0 1.5rem;font-size:.85rem}
th,td{border:1px solid #d1d9e0;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa} td.num{text-align:right;font-variant-numeric:tabular-nums}
.summary{display:flex;flex-wrap:wrap;gap:.5rem 1.5rem;padding:0;list-style:none}
.summary li{background:#f6f8fa;border-radius:6px;padding:.3rem .6rem}
.chart{width:100%;max-width:1100px;height:380px}
.more{color:#59636e}
</style>
<script>{{ plotly_js | safe }}</script>
</head><body>
<h1>{{ doc.title }}</h1>
<p class="meta">As of {{ doc.now }} (UTC, KMS hosts' clocks). Report <code>{{ doc.report }}</code>,
format version {{ doc.format_version }}. Filters: {{ filters }}.</p>
<ul class="summary">{% for k, v in summary %}<li><b>{{ k }}</b>: {{ v }}</li>{% endfor %}</ul>
{% for c in charts %}<div class="chart" id="chart-{{ loop.index }}"></div>
{% endfor %}
{% for t in tables %}<h2>{{ t.title }}</h2>
{% if t.rows %}<table data-table="{{ t.name }}"><thead><tr>{% for c in t.columns %}<th>{{ c.title }}</th>{% endfor %}</tr></thead>
<tbody>{% for r in t.rows %}<tr>{% for c in t.columns %}{% set v = r[c.key] %}<td{% if v is number and v is not boolean %} class="num"{% endif %}>{{ cell(v) }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>{% if t.more %}<p class="more">{{ t.more }} more rows: see the JSON or CSV output.</p>{% endif %}
{% else %}<p class="more">(none)</p>{% endif %}
{% endfor %}
<script>
(function(){
  var figures = {{ figures | safe }};
  for (var i = 0; i < figures.length; i++) {
    Plotly.newPlot("chart-" + (i + 1), figures[i].data, figures[i].layout,
                   {displaylogo: false, responsive: true});
  }
})();
</script>
</body></html>
""")


def html(doc: dict, *, max_rows: int = HTML_MAX_ROWS) -> str:
    """One self-contained HTML file: summary, charts (plotly, embedded) and tables."""
    tables = []
    for t in doc["tables"]:
        rows = t["rows"][:max_rows]
        tables.append({**t, "rows": [{c["key"]: r.get(c["key"]) for c in t["columns"]} for r in rows],
                       "more": max(0, len(t["rows"]) - max_rows)})
    f = doc["filters"]
    filters = ", ".join(f"{k}={v}" for k, v in f.items() if v not in (None, [], False)) or "none"
    return _PAGE.render(doc=doc, tables=tables, charts=doc["charts"], filters=filters,
                        summary=[(k.replace("_", " "), _summary_value(v)) for k, v in doc["summary"].items()],
                        figures=_script_json([_figure(c) for c in doc["charts"]]), plotly_js=_plotly_js(), cell=_cell)


def render(doc: dict, fmt: str, *, table: str | None = None) -> str:
    """Dispatch on ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "text":
        return text(doc)
    if fmt == "json":
        return json_text(doc)
    if fmt == "csv":
        return csv_text(doc, table)
    if fmt == "html":
        return html(doc)
    raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
