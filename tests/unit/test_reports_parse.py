"""The 12290 parser on captured shapes (tests/data/reports/12290_shapes.json) and the code names."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kmsdeploy.reports import codes
from kmsdeploy.reports.parse import ParseError, info_fields, parse_12290, parse_hresult

CASES = json.loads((Path(__file__).parents[1] / "data" / "reports" / "12290_shapes.json").read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_shapes(case):
    if "error" in case:
        with pytest.raises(ParseError, match=case["error"]):
            parse_12290(case["record"])
        return
    a = parse_12290(case["record"])
    for key, want in case["expect"].items():
        got = getattr(a, key)
        if key == "logged_at":
            got = got.isoformat()
        elif key == "extra":
            got = list(got)
        assert got == want, f"{key}: {got!r} != {want!r}"
    assert a.logged_at.tzinfo is not None


def test_lab_model_message_parses():
    """The lab model writes VA2-OPS order (kmsdeploy/lab/model/licensing.py): same parse."""
    from kmsdeploy.lab.model import eventlog

    info = ["0x0", "5", "c.lab.example", "11111111-2222-3333-4444-555555555555", "2025-01-01T00:00:00Z", "0", "1", "0",
            "55c92734-d682-4d71-983e-d6ec3f16059f"]
    for rec in ({"record_id": 1, "time": "2025-01-01T00:00:00Z", "properties": info},
                {"record_id": 1, "time": "2025-01-01T00:00:00Z", "properties": [],
                 "message": eventlog.activation_message(info)}):
        a = parse_12290(rec)
        assert (a.shape, a.min_count, a.client, a.client_time) == ("va2ops", 5, "c.lab.example", "2025-01-01T00:00:00Z")


def test_info_fields_uses_last_line_without_label():
    assert info_fields("header\r\n0x0, 5, x") == ["0x0", "5", "x"]
    assert info_fields("") == []


@pytest.mark.parametrize("text,value", [("0x0", 0), ("0", 0), ("0xC004F074", 0xC004F074), ("-1073418124", 0xC004F074),
                                        ("3221549172", 0xC004F074)])
def test_hresult_spellings(text, value):
    assert parse_hresult(text) == value


def test_hresult_out_of_range():
    with pytest.raises(ParseError):
        parse_hresult("99999999999")


def test_codes_from_reference():
    assert codes.license_status_name(1) == "Licensed"
    assert codes.license_status_name(6) == "ExtendedGrace"
    assert codes.license_status_name(9) == "Status 9"
    assert codes.hresult_name(0xC004F038) == "COUNT_INSUFFICIENT"
    assert "clock skew" in codes.hresult_meaning(0xC004F06C)
    assert codes.hresult_name(0x80041234) == "0x80041234"
    assert "not in the reference" in codes.hresult_meaning(0x80041234)
    assert codes.hresult_hex(0) == "0x0" and codes.hresult_hex(-1073418124) == "0xC004F074"
    assert codes.family_of(25) == "client" and codes.family_of(5) == "server" and codes.family_of(None) == "unknown"
