"""The lab WinRM endpoint, driven by UNMODIFIED pywinrm (Session.run_ps/run_cmd and Protocol).

Every server here is real HTTP(S) on per-worker loopback addresses and a free port.
Request counts per pywinrm call are printed (run with -s) and quoted in docs/lab-winrm.md.
"""
from __future__ import annotations

import time

import pytest
import requests
import winrm
from winrm.exceptions import InvalidCredentialsError, WinRMOperationTimeoutError, WSManFaultError
from winrm.protocol import Protocol

from kmsdeploy.lab.tls import LabCA
from kmsdeploy.lab.winrm_server import CMD_LINE_LIMIT
from tests.services.winlab import ECHO_PASSWORD as PASSWORD
from tests.services.winlab import ECHO_USER as USER
from tests.services.winlab import echo_lab as lab  # per-worker addresses 127.<180+worker>.<block>.<i>
from tests.services.winlab import lab_address

pytestmark = pytest.mark.integration


def session(server, auth, **kw):
    return winrm.Session(server.endpoint(server.hosts[0].name), auth=(USER, kw.pop("password", PASSWORD)),
                         transport=auth, **kw)


def test_basic_over_http_only_when_the_server_allows_unencrypted():
    with lab(1, scheme="http", auth="basic", encryption=False) as server:
        r = session(server, "basic").run_cmd("echo", ["hello"])
        assert (r.status_code, r.std_out) == (0, b"hello\r\n")
        name = server.hosts[0].name
        print("basic/http run_cmd requests:", dict(server.requests[name]))
        assert server.request_total(name) == 5 and server.protection[name] == {"plaintext": 5}
    with lab(2, scheme="http", auth="basic") as server:  # AllowUnencrypted=false (default)
        with pytest.raises(InvalidCredentialsError):
            session(server, "basic").run_cmd("echo", ["x"])


def test_ntlm_over_http_is_sealed_end_to_end():
    with lab(3, scheme="http", auth="ntlm") as server:
        script = "Write-Output 'grüße €'"
        r = session(server, "ntlm").run_ps(script)
        assert r.status_code == 0 and r.std_out == script.encode()  # EchoHandler returns the decoded script
        name = server.hosts[0].name
        print("ntlm/http encrypted run_ps requests:", dict(server.requests[name]))
        assert server.request_total(name) == 8  # 3 priming (handshake) + Create, Command, Receive, Signal, Delete
        assert server.protection[name] == {"sealed": 5}  # asserted server-side: no plaintext WinRM message
        # a client that does not encrypt is refused over HTTP (AllowUnencrypted=false)
        with pytest.raises(InvalidCredentialsError):
            session(server, "ntlm", message_encryption="never").run_cmd("echo", ["x"])
        with pytest.raises(InvalidCredentialsError):
            session(server, "ntlm", password="wrong").run_cmd("echo", ["x"])


def test_ntlm_over_https_with_the_lab_ca_and_an_unknown_ca(tmp_path):
    with lab(4, scheme="https", auth="ntlm") as server:
        r = session(server, "ntlm", ca_trust_path=server.ca.ca_path).run_cmd("echo", ["tls"])
        assert r.std_out == b"tls\r\n"
        name = server.hosts[0].name
        print("ntlm/https run_cmd requests:", dict(server.requests[name]))
        assert server.request_total(name) == 7 and server.protection[name] == {"tls": 5}
        other = LabCA(tmp_path / "other")
        with pytest.raises(requests.exceptions.SSLError):
            session(server, "ntlm", ca_trust_path=other.ca_path).run_cmd("echo", ["x"])
        with pytest.raises(requests.exceptions.SSLError):
            session(server, "ntlm", ca_trust_path=None).run_cmd("echo", ["x"])  # system store only


def test_command_line_limit_of_cmd_exe():
    with lab(5, scheme="https", auth="basic") as server:
        s = session(server, "basic", ca_trust_path=server.ca.ca_path)
        fits = "x" * (CMD_LINE_LIMIT - len("echo "))
        assert s.run_cmd("echo " + fits).std_out == fits.encode() + b"\r\n"
        r = s.run_cmd("echo " + fits + "y")
        assert (r.status_code, r.std_out, r.std_err) == (1, b"", b"The command line is too long.\r\n")
        # run_ps puts base64(UTF-16LE) on the command line: ~3,000 characters of script already fail
        r = s.run_ps("Write-Output '" + "a" * 3100 + "'")
        assert r.status_code == 1 and b"too long" in r.std_err


def test_shell_semantics_with_protocol_directly():
    with lab(6, scheme="https", auth="basic") as server:
        p = Protocol(server.endpoint(server.hosts[0].name), transport="basic", username=USER, password=PASSWORD,
                     ca_trust_path=server.ca.ca_path, operation_timeout_sec=1, read_timeout_sec=3)
        shell = p.open_shell(codepage=65001)
        cid = p.run_command(shell, "cat")
        p.send_command_input(shell, cid, b"part one ", end=False)
        started = time.monotonic()
        with pytest.raises(WinRMOperationTimeoutError):  # stdin incomplete: long poll, then w:TimedOut
            p.get_command_output_raw(shell, cid)
        assert 0.9 < time.monotonic() - started < 3
        p.send_command_input(shell, cid, "ünd two".encode(), end=True)
        assert p.get_command_output(shell, cid) == (b"part one " + "ünd two".encode(), b"", 0)
        p.cleanup_command(shell, cid)
        p.close_shell(shell)
        with pytest.raises(WSManFaultError) as e:
            p.run_command(shell, "echo gone")
        assert e.value.wsman_fault_code == 2150858843
        assert server.open_shells(server.hosts[0].name) == 0


def test_large_output_is_chunked():
    with lab(7, scheme="https", auth="basic") as server:
        s = session(server, "basic", ca_trust_path=server.ca.ca_path)
        r = s.run_cmd("repeat", [str(3 * 1024 * 1024 + 5)])
        assert len(r.std_out) == 3 * 1024 * 1024 + 5
        assert server.requests[server.hosts[0].name]["Receive"] == 49  # ceil(size / 64 KiB)


def test_unknown_action_and_garbage_are_refused():
    with lab(8, scheme="https", auth="basic") as server:
        url = server.endpoint(server.hosts[0].name)
        auth = (USER, PASSWORD)
        r = requests.post(url, data=b"<nope/>", auth=auth, verify=server.ca.ca_path)
        assert r.status_code == 400
        r = requests.post(url.replace("/wsman", "/other"), data=b"x", auth=auth, verify=server.ca.ca_path)
        assert r.status_code == 404
        r = requests.post(url, data=b"x", auth=(USER, "bad"), verify=server.ca.ca_path)
        assert r.status_code == 401  # Basic refused


def test_lab_daemon_up_status_faults_down(tmp_path):
    from kmsdeploy.errors import AuthenticationError
    from kmsdeploy.lab.daemon import lab_down, lab_inventory, lab_status, lab_up
    from kmsdeploy.model import Host, Secret
    from kmsdeploy.transports.winrm import WinrmTransport

    state = tmp_path / "lab"
    up = lab_up(state, [{"name": f"br{i}", "address": lab_address(30, i)} for i in (1, 2)],
                scheme="https")
    try:
        password = (state / "password").read_text().strip()
        assert oct((state / "password").stat().st_mode & 0o777) == "0o600"
        assert password not in (state / "lab.json").read_text() and password not in (state / "lab.log").read_text()
        print("lab handler:", up["handler"])
        group = lab_inventory(state)["all"]["children"]["lab_windows"]
        common = {**group["vars"], "ansible_password": Secret(password)}
        counts = {}
        for name, hv in group["hosts"].items():
            with WinrmTransport(Host(name, {**common, **hv})) as t:
                result = t.run("powershell.exe -NoProfile -Command -", b"{}")
                assert isinstance(result.exit_code, int)
            counts[name] = t.requests
        (state / "faults.json").write_text('{"hosts": {"br1": {"auth_failure": true}}}')
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with WinrmTransport(Host("br1", {**common, **group["hosts"]["br1"]})):
                    pass
                time.sleep(0.2)
            except AuthenticationError:
                break
        else:
            pytest.fail("faults.json was not picked up")
        time.sleep(1.2)  # counters.json refreshes every second
        status = lab_status(state)
        assert status["running"] and sum(status["counters"]["br2"].values()) == counts["br2"]
    finally:
        down = lab_down(state)
    assert down["status"] == "stopped" and not lab_status(state)["running"]
