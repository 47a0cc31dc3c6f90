"""WinrmTransport against the lab endpoint: one shell per run, counts, retries, error mapping.

Modes exercised: NTLM with message encryption over HTTP, NTLM over HTTPS with the lab CA
(Basic appears only in endpoint tests). Kerberos, CredSSP and certificate auth are NOT
exercised here. Run with -s to see the request counts quoted in docs/lab-winrm.md.
"""
from __future__ import annotations

import concurrent.futures
import functools
import os
import time

import pytest

from kmsdeploy.errors import AuthenticationError, TimeoutError_, TransportError, UnreachableError
from kmsdeploy.lab.faults import DROP_AFTER, FaultConfig
from kmsdeploy.lab.tls import LabCA
from kmsdeploy.lab.winrm_server import WinrmLabServer
from kmsdeploy.model import Host, Secret
from kmsdeploy.transports.base import Timeouts
from kmsdeploy.transports.winrm import STDIN_CHUNK, WinrmTransport
from tests.services.winlab import ECHO_PASSWORD as PASSWORD
from tests.services.winlab import ECHO_USER as USER
from tests.services.winlab import echo_lab, lab_address

pytestmark = pytest.mark.integration

lab = functools.partial(echo_lab, prefix="kms")


def target(server: WinrmLabServer, index: int = 0, **extra) -> Host:
    h = server.hosts[index]
    v = {"ansible_connection": "winrm", "ansible_host": h.address, "ansible_port": server.port,
         "ansible_user": USER, "ansible_password": Secret(PASSWORD, "env:LAB_PW"),
         "ansible_winrm_scheme": server.scheme}
    if server.scheme == "http":
        v["kmsdeploy_winrm_allow_http"] = True
    else:
        v["ansible_winrm_ca_trust_path"] = server.ca.ca_path
    v.update(extra)
    return Host(h.name, v)


def transport(host: Host, **kw) -> WinrmTransport:
    kw.setdefault("sleep", lambda s: None)  # no real backoff sleeps in tests
    return WinrmTransport(host, **kw)


@pytest.fixture(scope="module")
def ntlm_http():
    """20 hosts, NTLM with message encryption over HTTP (AllowUnencrypted=false)."""
    with lab(20, 20, scheme="http", auth="ntlm") as server:
        yield server


@pytest.fixture(autouse=True)
def _reset_faults(request):
    yield
    if "ntlm_http" in request.fixturenames:
        request.getfixturevalue("ntlm_http").faults.clear()


def test_one_shell_per_run_and_request_counts(ntlm_http):
    host = target(ntlm_http, 0)
    ntlm_http.reset_counters()
    with transport(host) as t:
        opened = t.requests
        r1 = t.run("powershell.exe -NoProfile -Command -", '{"ops": ["read"], "name": "ü€"}'.encode())
        per_run = t.requests - opened
        t.run("powershell.exe -NoProfile -Command -", b"second", idempotent=True)
    assert r1.stdout == '{"ops": ["read"], "name": "ü€"}'.encode() and r1.exit_code == 0
    server = ntlm_http.requests[host.name]
    print(f"\nntlm/http sealed: open={opened} run={per_run} total={t.requests} server={dict(server)}")
    assert (opened, per_run) == (4, 4)  # priming x3 + Create; Command, Send, Receive, Signal
    assert t.requests == ntlm_http.request_total(host.name) == 4 + 4 + 4 + 1
    assert server["Create"] == 1 and server["Delete"] == 1  # one shell for the whole run
    assert ntlm_http.protection[host.name]["plaintext"] == 0


def test_https_with_the_lab_ca_and_unknown_ca(tmp_path):
    with lab(21, scheme="https", auth="ntlm") as server:
        host = target(server)
        with transport(host) as t:
            assert t.run("echo ok").stdout == b"ok\r\n"
        print(f"\nntlm/https: total={t.requests} server={dict(server.requests[host.name])}")
        assert t.requests == server.request_total(host.name) == 3 + 3 + 1
        bad = target(server, ansible_winrm_ca_trust_path=LabCA(tmp_path / "other").ca_path)
        with pytest.raises(TransportError) as e:
            transport(bad).open()
        assert "TLS certificate verification failed" in str(e.value) and not e.value.transient


def test_bad_password_is_authentication_error_without_the_password(ntlm_http):
    host = target(ntlm_http, 1, ansible_password=Secret("Wrong-Secret-123"))
    with pytest.raises(AuthenticationError) as e:
        transport(host).open()
    assert host.name in str(e.value) and "rejected" in str(e.value)
    assert "Wrong-Secret-123" not in str(e.value) and PASSWORD not in repr(e.value)


def test_auth_failure_fault(ntlm_http):
    host = target(ntlm_http, 2)
    ntlm_http.faults.set(host.name, FaultConfig(auth_failure=True))
    with pytest.raises(AuthenticationError):
        transport(host).open()


def test_plain_http_without_opt_in_fails_before_connecting(ntlm_http):
    host = target(ntlm_http, 3, kmsdeploy_winrm_allow_http=False)
    before = ntlm_http.request_total(host.name)
    t = transport(host)
    with pytest.raises(TransportError, match="kmsdeploy_winrm_allow_http"):
        t.open()
    assert t.requests == 0 and ntlm_http.request_total(host.name) == before


def test_large_stdin_and_output(ntlm_http):
    host = target(ntlm_http, 4)
    payload = os.urandom(3 * 1024 * 1024 + 17)
    with transport(host) as t:
        before = ntlm_http.requests[host.name].copy()
        r = t.run("powershell.exe -Command -", payload)
        sends = ntlm_http.requests[host.name]["Send"] - before["Send"]
    assert r.stdout == payload
    assert sends == -(-len(payload) // STDIN_CHUNK)  # chunked under MaxEnvelopeSize
    assert t.requests == ntlm_http.request_total(host.name)


def test_slow_receive_long_poll_is_waited_out(ntlm_http):
    host = target(ntlm_http, 5, ansible_winrm_operation_timeout_sec=1, ansible_winrm_read_timeout_sec=3)
    with transport(host) as t:
        ntlm_http.faults.set(host.name, FaultConfig(slow_receive_next=2))
        started = time.monotonic()
        assert t.run("echo late").stdout == b"late\r\n"
        assert time.monotonic() - started >= 2
        with pytest.raises(TimeoutError_, match="did not finish"):
            ntlm_http.faults.set(host.name, FaultConfig(slow_receive_next=5))
            t.run("echo never", timeout=1.5)
    assert t.requests == ntlm_http.request_total(host.name)


def test_latency(ntlm_http):
    host = target(ntlm_http, 6)
    with transport(host) as t:
        ntlm_http.faults.set(host.name, FaultConfig(latency_ms=60))
        started = time.monotonic()
        t.run("echo slow")
        assert time.monotonic() - started >= 3 * 0.06  # Command, Receive, Signal


@pytest.mark.parametrize("action", ["Command", "Send", "Receive"])
def test_dropped_before_processing_is_retried(ntlm_http, action):
    host = target(ntlm_http, 7)
    base = ntlm_http.request_total(host.name)
    with transport(host) as t:
        ntlm_http.faults.set(host.name, FaultConfig(drop_next=1, actions=(action,)))
        if action == "Receive":  # reads are safe to repeat
            assert t.run("echo x").stdout == b"x\r\n"
        elif action == "Command":
            # a lost Command may have run: not re-sent unless idempotent
            with pytest.raises(TransportError, match="may have run") as e:
                t.run("echo x", b"")
            assert not e.value.transient
            ntlm_http.faults.set(host.name, FaultConfig(drop_next=1, actions=(action,)))
            assert t.run("echo x", idempotent=True).stdout == b"x\r\n"
        else:
            ntlm_http.faults.set(host.name, FaultConfig(drop_next=1, actions=(action,)))
            assert t.run("cat", b"payload", idempotent=True).stdout == b"payload"
        assert ntlm_http.faults.fired[host.name]["drop_before"] >= 1
    assert t.requests == ntlm_http.request_total(host.name) - base


def test_reply_lost_after_the_command_ran_is_not_resent(ntlm_http):
    host = target(ntlm_http, 8)
    calls = []
    original = ntlm_http.handler
    ntlm_http.handler = lambda h, line, stdin: (calls.append(h), original(h, line, stdin))[1]
    try:
        with transport(host) as t:
            ntlm_http.faults.set(host.name, FaultConfig(drop_next=1, drop_phase=DROP_AFTER, actions=("Send",)))
            with pytest.raises(TransportError, match="may have run"):
                t.run("cat", b"apply-payload")
            assert calls.count(host.name) == 1  # ran once, never twice
            assert t.run("cat", b"still usable").stdout == b"still usable"
    finally:
        ntlm_http.handler = original


def test_wsman_500_is_retried_then_gives_up(ntlm_http):
    host = target(ntlm_http, 9)
    with transport(host, retries=2) as t:
        ntlm_http.faults.set(host.name, FaultConfig(error_500_next=2, actions=("Command",)))
        assert t.run("echo ok").stdout == b"ok\r\n"  # a fault reply proves the command did not run
        ntlm_http.faults.set(host.name, FaultConfig(error_500_next=3, actions=("Command",)))
        with pytest.raises(TransportError, match="InternalError") as e:
            t.run("echo no")
        assert e.value.transient
    assert t.requests == ntlm_http.request_total(host.name)


def test_lost_shell_is_reopened(ntlm_http):
    host = target(ntlm_http, 10)
    with transport(host) as t:
        ntlm_http._shells[host.name].clear()  # as after a WinRM service restart
        assert t.run("echo back").stdout == b"back\r\n"
        assert ntlm_http.requests[host.name]["Create"] == 2


def test_unreachable_host():
    # an address of this worker's range with nothing listening
    host = Host("ghost", {"ansible_host": lab_address(99, 1), "ansible_port": 9,
                          "ansible_winrm_scheme": "http", "kmsdeploy_winrm_allow_http": True,
                          "ansible_user": USER, "ansible_password": Secret(PASSWORD)})
    t = transport(host, retries=1, timeouts=Timeouts(connect=2))
    with pytest.raises(UnreachableError) as e:
        t.open()
    assert e.value.transient and "refused" in str(e.value) and t.requests == 2


def test_concurrency_20_hosts_at_once(ntlm_http):
    ntlm_http.reset_counters()

    def work(i: int) -> tuple[str, int, bool]:
        host = target(ntlm_http, i)
        with transport(host) as t:
            ok = all(t.run("cat", f"{host.name}:{n}".encode()).stdout == f"{host.name}:{n}".encode()
                     for n in range(3))
        return host.name, t.requests, ok

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(work, range(20)))
    elapsed = time.monotonic() - started
    print(f"\n20 hosts x (open + 3 runs + close), NTLM sealed: {elapsed:.2f}s; requests per host "
          f"{sorted({r[1] for r in results})}")
    for name, count, ok in results:
        assert ok and count == ntlm_http.request_total(name) == 4 + 3 * 4 + 1
