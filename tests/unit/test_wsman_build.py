"""Replies built by kmsdeploy.lab.wsman, read back the way pywinrm reads them."""
from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from kmsdeploy.lab import wsman

DATA = Path(__file__).resolve().parents[1] / "data" / "wsman"
PYWINRM_NS = {"soapenv": "http://www.w3.org/2003/05/soap-envelope",
              "wsmanfault": "http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"}


def req(name: str) -> wsman.WsmanRequest:
    return wsman.parse_request((DATA / f"{name}_request.xml").read_bytes())


def test_create_response_names_the_shell_first():
    root = ET.fromstring(wsman.create_response(req("create"), "ABC-1", "http://127.0.0.1:5985/wsman", "u", "1.2.3.4"))
    # pywinrm: the first element carrying Name="ShellId"
    assert next(n for n in root.iter() if n.get("Name") == "ShellId").text == "ABC-1"


def test_command_response_has_command_id():
    root = ET.fromstring(wsman.command_response(req("command"), "CID-9"))
    assert next(n for n in root.iter() if n.tag.endswith("CommandId")).text == "CID-9"


@pytest.mark.parametrize("maker", [wsman.signal_response, wsman.delete_response])
def test_signal_and_delete_echo_message_id(maker):
    r = req("signal") if maker is wsman.signal_response else req("delete")
    root = ET.fromstring(maker(r))
    relates = next(n for n in root.iter() if n.tag.endswith("RelatesTo")).text
    assert uuid.UUID(relates.replace("uuid:", "")) == uuid.UUID(r.message_id.replace("uuid:", ""))


def test_receive_running_then_done():
    r = req("receive")
    running = ET.fromstring(wsman.receive_response(r, "C", b"abc", b"", False, None))
    assert not [n for n in running.iter() if n.get("State", "").endswith("CommandState/Done")]
    done = ET.fromstring(wsman.receive_response(r, "C", b"", b"err", True, 3))
    assert len([n for n in done.iter() if n.get("State", "").endswith("CommandState/Done")]) == 1
    assert next(n for n in done.iter() if n.tag.endswith("ExitCode")).text == "3"
    # every Stream with text has a Name
    assert all(n.get("Name") for n in done.iter() if n.tag.endswith("Stream") and n.text)


def test_chunking_respects_budget_and_order():
    out, err, out_rest, err_rest = wsman.chunk_output(b"a" * 10, b"b" * 10, budget=15)
    assert (out, err, out_rest, err_rest) == (b"a" * 10, b"b" * 5, b"", b"b" * 5)
    big = wsman.receive_response(req("receive"), "C", b"x" * wsman.RECEIVE_CHUNK, b"", False, None)
    assert len(big) < 153600


def test_fault_is_what_pywinrm_parses():
    root = ET.fromstring(wsman.fault_response(wsman.timed_out_fault(), "uuid:1", "h"))
    fault = root.find("soapenv:Body/soapenv:Fault", PYWINRM_NS)
    assert fault.find("soapenv:Detail/wsmanfault:WSManFault[@Code]", PYWINRM_NS).get("Code") == "2150858793"
    assert fault.find("soapenv:Code/soapenv:Subcode/soapenv:Value", PYWINRM_NS).text == "w:TimedOut"
    shell = ET.fromstring(wsman.fault_response(wsman.shell_not_found_fault("S"), "uuid:1"))
    assert "2150858843" in ET.tostring(shell).decode()


def test_encrypted_framing_round_trip():
    body = wsman.frame_encrypted(42, b"S" * 16, b"sealed-bytes")
    assert body.startswith(b"--Encrypted Boundary\r\n\tContent-Type: application/HTTP-SPNEGO-session-encrypted\r\n")
    assert body.endswith(b"--Encrypted Boundary--\r\n")
    assert wsman.split_encrypted(body) == [(42, b"S" * 16, b"sealed-bytes")]
    assert wsman.is_encrypted(wsman.ENCRYPTED_CONTENT_TYPE)
    assert not wsman.is_encrypted("application/soap+xml;charset=UTF-8")


@pytest.mark.parametrize("body", [b"", b"--Encrypted Boundary\r\nnope", wsman.frame_encrypted(1, b"S" * 8, b"x")])
def test_encrypted_framing_errors(body):
    with pytest.raises(wsman.WsmanParseError):
        wsman.split_encrypted(body)
