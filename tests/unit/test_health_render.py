"""Health renderers: table, JSON (validated against schemas/health.schema.json), Prometheus."""
from __future__ import annotations

import datetime as dt
import json
import re

import jsonschema

from kmsdeploy.health import render, rules
from kmsdeploy.health.rules import Thresholds
from kmsdeploy.spec.schemas import load_schema

from .test_health_rules import NOW, facts, lic, srv


def document(fs, srv_result=None):
    ths = {f["host"]: Thresholds(domain="corp.example") for f in fs}
    doc = rules.evaluate(fs, ths, {("hq", "corp.example"): srv_result or srv(("kms1.corp.example", 1688, []))}, NOW)
    return {"format_version": render.FORMAT_VERSION, "kind": render.DOCUMENT_KIND, "kmsdeploy_version": "0",
            "checked_at": rules.iso(NOW), "inventory": "inv.yml", "playbooks": [], **doc}


def test_json_matches_the_schema():
    unreachable = {"host": "kms2", "site": "hq", "address": "127.0.0.6", "names": [], "error": "refused",
                   "licensing": None, "probe": {"address": "127.0.0.6", "port": 1688, "open": False, "error": "refused"}}
    doc = document([facts(), facts(licensing=lic(count=3), host="kms3"), unreachable])
    jsonschema.validate(json.loads(render.to_json(doc)), load_schema("health.schema.json"))
    from kmsdeploy.health.command import error_document
    jsonschema.validate(error_document("bad inventory"), load_schema("health.schema.json"))


def test_table_shows_reasons_and_the_plugin_line():
    text = render.table(document([facts(licensing=lic(count=24))]))
    assert "count" in text and "below the client activation threshold 25" in text and "yellow" in text
    assert text.rstrip().splitlines()[-1].startswith("KMS WARNING - 0 green, 1 yellow")
    assert "reachable" not in text  # green checks only with verbose
    assert "reachable" in render.table(document([facts()]), verbose=True)


SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*",?)*\})? -?[0-9.e+]+$')


def test_prometheus_exposition_format():
    text = render.prometheus(document([facts(licensing=lic(count=24))]))
    seen_families = []
    for line in text.splitlines():
        if line.startswith("# HELP "):
            seen_families.append(line.split()[2])
        elif line.startswith("# TYPE "):
            assert line.split()[2] == seen_families[-1] and line.split()[3] == "gauge"
        else:
            assert SAMPLE.match(line), line
            assert line.split("{")[0].split(" ")[0] == seen_families[-1]  # samples follow their family
    assert len(seen_families) == len(set(seen_families))  # HELP/TYPE once per family
    assert 'kmsdeploy_health_check_status{site="hq",host="kms1",check="count"} 1' in text
    assert "kmsdeploy_health_status 1" in text
    assert 'kmsdeploy_kms_current_count{site="hq",host="kms1"} 24' in text
    assert 'check="failed_requests"' not in text  # skipped checks have no sample


def test_prometheus_label_escaping():
    assert render.escape_label('a\\b"c\nd') == 'a\\\\b\\"c\\nd'
    f = facts(host='we"ird\\host\nx')
    text = render.prometheus(document([f]))
    assert 'host="we\\"ird\\\\host\\nx"' in text
    assert all(SAMPLE.match(l) for l in text.splitlines() if not l.startswith("#"))


def test_last_activation_timestamp_gauge():
    text = render.prometheus(document([facts()]))
    t = (NOW - dt.timedelta(minutes=5)).timestamp()
    assert f'kmsdeploy_kms_last_activation_timestamp_seconds{{site="hq",host="kms1"}} {t!r}' in text
