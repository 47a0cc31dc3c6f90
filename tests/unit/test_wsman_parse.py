"""Parsing captured pywinrm 0.5 requests (tests/data/wsman/) and building replies pywinrm reads."""
from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kmsdeploy.lab import wsman

DATA = Path(__file__).resolve().parents[1] / "data" / "wsman"


def load(name: str) -> wsman.WsmanRequest:
    return wsman.parse_request((DATA / name).read_bytes())


def test_create_carries_codepage_and_streams():
    req = load("create_request.xml")
    assert req.name == "Create"
    assert req.resource_uri == wsman.SHELL_URI
    assert req.codepage == 65001
    assert req.options["WINRS_NOPROFILE"] == "FALSE"
    assert (req.input_streams, req.output_streams) == ("stdin", "stdout stderr")
    assert req.operation_timeout == 20.0
    assert req.max_envelope_size == 153600
    assert req.message_id.startswith("uuid:")


def test_command_line_and_shell_selector():
    req = load("command_request.xml")
    assert req.name == "Command"
    assert req.shell_id and req.shell_id == req.shell_id.upper()
    assert req.command_line == "powershell.exe -NoProfile -NonInteractive -Command -"
    assert req.options["WINRS_SKIP_CMD_SHELL"] == "FALSE"


def test_send_decodes_stdin_bytes_and_end_flag():
    req = load("send_request.xml")
    assert req.name == "Send"
    assert req.stream_name == "stdin" and req.end is True
    assert req.data == "héllo\r\n".encode()
    assert req.command_id


def test_receive_signal_delete():
    assert load("receive_request.xml").desired_streams == "stdout stderr"
    sig = load("signal_request.xml")
    assert sig.signal_code.endswith("/signal/terminate") and sig.command_id
    assert load("delete_request.xml").name == "Delete"


def test_default_codepage_is_437():
    xml = (DATA / "create_request.xml").read_bytes().replace(b">65001<", b">437<")
    assert wsman.parse_request(xml).codepage == 437
    no_option = (DATA / "create_request.xml").read_bytes().replace(b'Name="WINRS_CODEPAGE"', b'Name="X"')
    assert wsman.parse_request(no_option).codepage == 437


@pytest.mark.parametrize("text,seconds", [("PT20S", 20), ("PT0.5S", 0.5), ("PT1M30S", 90), ("P1DT1H", 90000)])
def test_durations(text, seconds):
    assert wsman.parse_duration(text) == seconds


@pytest.mark.parametrize("body", [b"", b"<x/>", b"not xml", b'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope"/>'])
def test_garbage_is_a_parse_error(body):
    with pytest.raises(wsman.WsmanParseError):
        wsman.parse_request(body)


def test_bad_base64_stdin_is_a_parse_error():
    xml = (DATA / "send_request.xml").read_bytes()
    req = load("send_request.xml")
    bad = xml.replace(base64.b64encode(req.data), b"@@@")
    with pytest.raises(wsman.WsmanParseError):
        wsman.parse_request(bad)


def test_captured_receive_response_shape():
    root = ET.fromstring((DATA / "receive_response.xml").read_bytes())
    streams = [n for n in root.iter() if n.tag.endswith("Stream")]
    assert all(s.get("Name") in ("stdout", "stderr") for s in streams)
    states = [n for n in root.iter() if n.get("State", "").endswith("CommandState/Done")]
    assert len(states) == 1
