"""A real Samba AD DC for integration tests (reference test-services.md §2, §3, §7).

``samba_dc`` (session scope) provisions a domain ONCE per test process into a temp
dir, writes the replacement smb.conf of §2 (plus ``allow dns updates = nonsecure`` for
the unsigned RFC 2136 test, §3b), starts ``samba -i`` on a per-worker loopback address
with ``--maximum-runtime`` (orphans die on their own), relaxes the password policy,
waits until LDAP and DNS answer, and stops the process group with SIGTERM at the end.
If anything fails, the test fails loudly with samba's log: never a skip.

Address: ``127.0.0.<base + worker index>``; base is ``KMSDEPLOY_SAMBA_IP_BASE``
(default 2, i.e. 127.0.0.2 for gw0/no xdist). Use a different base (e.g. 20) when
someone else runs a DC on this machine.

Use it from a test module with ``from tests.services.samba import samba_dc  # noqa: F401``
(or list ``tests.services.samba`` in conftest ``pytest_plugins``).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field

import pytest

REALM = "CORP.EXAMPLE"
DOMAIN = "CORP"
DNS_DOMAIN = "corp.example"
BASE_DN = "DC=corp,DC=example"
ADMIN_PASSWORD = "Passw0rd!Test"
HOST_NAME = "dc1"
SERVER_NAME = "dc1.corp.example"  # the certificate's CN (no SAN); verify this name when connecting by IP


def worker_index() -> int:
    w = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = "".join(ch for ch in w if ch.isdigit())
    return int(digits or 0)


def worker_ip() -> str:
    base = int(os.environ.get("KMSDEPLOY_SAMBA_IP_BASE", "2"))
    last = base + worker_index()
    if not 1 < last < 255:
        raise RuntimeError(f"no loopback address for worker {worker_index()} with base {base}")
    return f"127.0.0.{last}"


SMB_CONF = """[global]
netbios name = DC1
workgroup = {domain}
realm = {realm}
server role = active directory domain controller
interfaces = {ip}/8
bind interfaces only = yes
dns forwarder =
server services = ldap, dns, kdc, rpc, winbindd
prefork children = 1
allow dns updates = nonsecure
private dir = {t}/private
lock directory = {t}
state directory = {t}/state
cache directory = {t}/cache
binddns dir = {t}/bind-dns
pid directory = {t}/run
ncalrpc dir = {t}/run/ncalrpc
winbindd socket directory = {t}/run/winbindd
ntp signd socket directory = {t}/run/ntp_signd
"""


@dataclass
class SambaDC:
    """A running DC: addresses, credentials and small helpers that use an INDEPENDENT ldap3 connection."""

    ip: str
    tmpdir: str
    proc: subprocess.Popen | None = None
    realm: str = REALM
    domain: str = DOMAIN
    base_dn: str = BASE_DN
    admin_user: str = f"Administrator@{REALM}"
    admin_password: str = ADMIN_PASSWORD
    server_name: str = SERVER_NAME
    dns_domain: str = DNS_DOMAIN
    _created: list = field(default_factory=list)

    @property
    def ca_file(self) -> str:
        return os.path.join(self.tmpdir, "private", "tls", "ca.pem")

    @property
    def log_path(self) -> str:
        return os.path.join(self.tmpdir, "samba.log")

    def log_tail(self, n: int = 60) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as fh:
                return "".join(fh.readlines()[-n:])
        except OSError:
            return "(no log)"

    # --- independent client -------------------------------------------------------------
    def connect(self):
        """A fresh ldap3 connection (LDAPS, verified), independent of kmsdeploy's code."""
        import ldap3

        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=self.ca_file, valid_names=[self.server_name])
        server = ldap3.Server(self.ip, port=636, use_ssl=True, tls=tls, get_info=ldap3.NONE, connect_timeout=5)
        return ldap3.Connection(server, user=self.admin_user, password=self.admin_password, auto_bind=True,
                                raise_exceptions=True, receive_timeout=20)

    def read_sddl(self, dn: str) -> str | None:
        """The DACL of ``dn`` as SDDL (``D:...``), decoded with winacl; None when absent."""
        import ldap3
        from ldap3.core.exceptions import LDAPNoSuchObjectResult
        from ldap3.protocol.microsoft import security_descriptor_control
        from winacl.dtyp.security_descriptor import SECURITY_DESCRIPTOR

        with self.connect() as c:
            try:
                c.search(dn, "(objectClass=*)", ldap3.BASE, attributes=["nTSecurityDescriptor"],
                         controls=security_descriptor_control(sdflags=0x04))
            except LDAPNoSuchObjectResult:
                return None
            raw = c.response[0]["raw_attributes"]["nTSecurityDescriptor"][0]
        return SECURITY_DESCRIPTOR.from_bytes(raw).to_sddl()

    def attribute(self, dn: str, attr: str):
        import ldap3
        from ldap3.core.exceptions import LDAPNoSuchObjectResult

        with self.connect() as c:
            try:
                c.search(dn, "(objectClass=*)", ldap3.BASE, attributes=[attr])
            except LDAPNoSuchObjectResult:
                return None
            return c.response[0]["attributes"].get(attr)

    def exists(self, dn: str) -> bool:
        return self.attribute(dn, "objectClass") is not None

    def ldbsearch_sddl(self, dn: str) -> str:
        """Second independent reader: ``ldbsearch`` on sam.ldb (works while samba runs)."""
        out = subprocess.run(["ldbsearch", "-H", os.path.join(self.tmpdir, "private", "sam.ldb"), "-b", dn,
                              "-s", "base", "nTSecurityDescriptor"], capture_output=True, text=True, timeout=60)
        return out.stdout.replace("\n ", "")

    def sid_of(self, sam: str) -> str:
        import ldap3
        from ldap3.utils.conv import escape_filter_chars

        with self.connect() as c:
            c.search(self.base_dn, f"(sAMAccountName={escape_filter_chars(sam)})", ldap3.SUBTREE,
                     attributes=["objectSid"])
            from ldap3.protocol.formatters.formatters import format_sid
            value = c.response[0]["attributes"]["objectSid"]
            value = value[0] if isinstance(value, list) else value
            return format_sid(value) if isinstance(value, bytes) else str(value)

    def create_group(self, name: str, parent: str | None = None) -> tuple[str, str]:
        """A global security group with sAMAccountName ``name``; returns (dn, sid)."""
        from ldap3.utils.dn import escape_rdn

        dn = f"CN={escape_rdn(name)},{parent or 'CN=Users,' + self.base_dn}"
        with self.connect() as c:
            c.add(dn, ["top", "group"], {"sAMAccountName": name, "groupType": -2147483646})
        self._created.append(dn)
        return dn, self.sid_of(name)

    def create_user(self, name: str, upn: str | None = None) -> tuple[str, str]:
        """A (disabled, passwordless) user with sAMAccountName ``name`` and optional UPN."""
        from ldap3.utils.dn import escape_rdn

        dn = f"CN={escape_rdn(name)},CN=Users,{self.base_dn}"
        attrs = {"sAMAccountName": name, "userAccountControl": 514}
        if upn:
            attrs["userPrincipalName"] = upn
        with self.connect() as c:
            c.add(dn, ["top", "person", "organizationalPerson", "user"], attrs)
        self._created.append(dn)
        return dn, self.sid_of(name)

    def delete_tree(self, dn: str) -> None:
        """Best-effort cleanup of a test's container (removes any protection ACE first)."""
        import ldap3
        from ldap3.core.exceptions import LDAPException
        from ldap3.protocol.microsoft import security_descriptor_control
        from winacl.dtyp.security_descriptor import SECURITY_DESCRIPTOR

        ctl = security_descriptor_control(sdflags=0x04)
        with self.connect() as c:
            try:
                c.search(dn, "(objectClass=*)", ldap3.SUBTREE, attributes=["nTSecurityDescriptor"], controls=ctl)
                for e in c.response:
                    if e.get("type") != "searchResEntry":
                        continue
                    sd = SECURITY_DESCRIPTOR.from_bytes(e["raw_attributes"]["nTSecurityDescriptor"][0])
                    before = len(sd.Dacl.aces)
                    sd.Dacl.aces = [a for a in sd.Dacl.aces if not (str(a.Sid) == "S-1-1-0" and a.AceType.value == 1)]
                    if len(sd.Dacl.aces) != before:
                        c.modify(e["dn"], {"nTSecurityDescriptor": [("MODIFY_REPLACE", [sd.to_bytes()])]}, controls=ctl)
                c.delete(dn, controls=[("1.2.840.113556.1.4.805", True, None)])
            except LDAPException:
                pass


def _port_busy(ip: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex((ip, port)) == 0


def _run(cmd: list[str], timeout: float, what: str, log: str = "") -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}\n{log}")
    return out


def start_dc(ip: str | None = None) -> SambaDC:
    """Provision and start a DC; raise RuntimeError with the log when it cannot start."""
    ip = ip or worker_ip()
    for tool in ("samba", "samba-tool", "ldapsearch"):
        if not shutil.which(tool):
            raise RuntimeError(f"{tool} is not installed: apt-get install samba-ad-dc samba-ad-provision ldap-utils")
    if _port_busy(ip, 389) or _port_busy(ip, 636):
        raise RuntimeError(f"{ip}: LDAP port already in use (another DC?); set KMSDEPLOY_SAMBA_IP_BASE to a free range")
    t = tempfile.mkdtemp(prefix=f"kmsdeploy-samba-{ip.rsplit('.', 1)[1]}-")
    dc = SambaDC(ip=ip, tmpdir=t)
    _run(["samba-tool", "domain", "provision", f"--targetdir={t}", f"--realm={REALM}", f"--domain={DOMAIN}",
          "--server-role=dc", "--dns-backend=SAMBA_INTERNAL", f"--adminpass={ADMIN_PASSWORD}",
          f"--host-name={HOST_NAME}", f"--host-ip={ip}", f"--option=interfaces={ip}/8",
          "--option=bind interfaces only=yes"], 240, "samba-tool domain provision")
    os.makedirs(os.path.join(t, "run"), exist_ok=True)
    with open(os.path.join(t, "etc", "smb.conf"), "w") as fh:
        fh.write(SMB_CONF.format(domain=DOMAIN, realm=REALM, ip=ip, t=t))
    logf = open(dc.log_path, "w")
    dc.proc = subprocess.Popen(["samba", "-i", "-s", os.path.join(t, "etc", "smb.conf"), "--maximum-runtime=7200"],
                               stdin=subprocess.DEVNULL,  # samba -i exits when a stdin pipe closes
                               stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    logf.close()
    deadline = time.monotonic() + 90
    ready = False
    while time.monotonic() < deadline:
        if dc.proc.poll() is not None:
            break
        r = subprocess.run(["ldapsearch", "-x", "-H", f"ldap://{ip}", "-s", "base", "-b", "", "dsServiceName"],
                           capture_output=True, timeout=10)
        if r.returncode == 0 and _port_busy(ip, 636) and _port_busy(ip, 53) \
                and os.path.exists(dc.ca_file):
            ready = True
            break
        time.sleep(0.3)
    if not ready:
        log = dc.log_tail(80)
        stop_dc(dc)
        raise RuntimeError(f"samba on {ip} did not become ready (exit={dc.proc.poll()}); log:\n{log}")
    # §2: relax the password policy (not strictly needed by the DKM tests, kept as the recipe says)
    try:
        _run(["samba-tool", "domain", "passwordsettings", "set", "--complexity=off", "--min-pwd-length=1",
              "-H", f"ldap://{ip}", "-U", f"Administrator%{ADMIN_PASSWORD}"], 120, "passwordsettings", dc.log_tail())
    except (RuntimeError, subprocess.TimeoutExpired):
        stop_dc(dc)
        raise
    return dc


def stop_dc(dc: SambaDC) -> None:
    """SIGTERM to samba's process group, then SIGKILL if it lingers; remove the temp dir."""
    if dc.proc is not None and dc.proc.poll() is None:
        try:
            os.killpg(dc.proc.pid, signal.SIGTERM)
            dc.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(dc.proc.pid, signal.SIGKILL)
            dc.proc.wait(timeout=10)
        except ProcessLookupError:
            pass
    if dc.proc is not None:
        try:  # samba's children may outlive the root a moment and recreate sockets in the temp dir
            os.killpg(dc.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for _ in range(20):
        shutil.rmtree(dc.tmpdir, ignore_errors=True)
        if not os.path.exists(dc.tmpdir):
            break
        time.sleep(0.1)


@pytest.fixture(scope="session")
def samba_dc():
    """The running Samba AD DC for this test process (see the module docstring)."""
    try:
        dc = start_dc()
    except RuntimeError as exc:
        pytest.fail(f"Samba AD DC could not start: {exc}", pytrace=False)
    try:
        yield dc
    finally:
        stop_dc(dc)


def unique(prefix: str) -> str:
    """A short unique name for per-test objects."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"
