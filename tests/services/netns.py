"""Real Linux branch gateways for tests: network namespaces with sshd and nftables.

Recipe: /work/shared/reference/test-services.md §5 and §7. One bridge per test session
(``kdb<N>``, 198.18.<N>.1/24 and fd42:1688:0:<N>::1/64), gateways ``kd<N>-g<i>`` at
198.18.<N>.<10+i> with sshd on port 22 (own host key, root login with a generated
client key, StrictModes no, files in a per-session temp dir), a TCP listener on 1688
(``python3 -m http.server``, dual stack), and one client namespace ``kd<N>-cl`` with
two source addresses per family for "allowed" and "denied" probes.

<N> is claimed at run time: the bridge is created with ``ip link add`` (atomic, so two
sessions can never share one), starting from a per-xdist-worker offset, skipping any
subnet already routed in the root namespace. Teardown kills every pid in each
namespace, deletes the namespaces and the bridge.

Use: ``from tests.services.netns import *`` in a test module (or list
``tests.services.netns`` in the root conftest's ``pytest_plugins``).
"""
from __future__ import annotations

import os
import secrets
import shutil
import shlex
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

__all__ = ["BECOME_USER", "NOPASSWD_USER", "Gateway", "NetnsLab", "netns_lab", "probe_tcp", "nft_json", "sh"]

SSHD = "/usr/sbin/sshd"
SUDO = "/usr/bin/sudo"
GATEWAYS = int(os.environ.get("KMSDEPLOY_TEST_GATEWAYS", "5"))
#: throwaway users that exist only in the gateways' private /etc view
BECOME_USER = "kmsbecome"      # sudo asks for its password
NOPASSWD_USER = "kmsnopw"      # sudo NOPASSWD: ALL
#: files of /etc the gateways' sshd sees as per-gateway copies (sudoers.d: an empty directory)
PRIVATE_ETC = ("passwd", "group", "shadow", "sudoers")
# Debian 12's default sudoers Defaults, so sudo behaves as on a stock gateway; the lecture and
# timestamp state go to the gateway dir instead of the machine's /var/lib/sudo and /run/sudo
SUDOERS = """Defaults\tenv_reset
Defaults\tmail_badpass
Defaults\tsecure_path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
Defaults\tuse_pty
Defaults\tlecture_status_dir={state}/lectured
Defaults\ttimestampdir={state}/ts
root\tALL=(ALL:ALL) ALL
{become}\tALL=(ALL:ALL) ALL
{nopasswd}\tALL=(ALL:ALL) NOPASSWD: ALL
@includedir /etc/sudoers.d
"""


def sh(*argv: str, check: bool = True, input: bytes | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run a command (no shell); on failure raise with its stderr."""
    p = subprocess.run(argv, input=input, capture_output=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.decode(errors='replace')}")
    return p


def worker_index() -> int:
    w = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    digits = "".join(c for c in w if c.isdigit())
    return int(digits) if digits else 0


@dataclass
class Gateway:
    """One namespace with sshd; ``vars`` are the inventory host vars to reach it."""

    name: str
    netns: str
    ip: str
    ip6: str
    dir: Path
    sshd_pid: int = 0
    vars: dict = field(default_factory=dict)

    def nft(self, *args: str, input: bytes | None = None, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", self.netns, "nft", *args, input=input, check=check)

    def sshd_log(self) -> str:
        p = self.dir / "sshd.log"
        return p.read_text(errors="replace") if p.exists() else "(no sshd log)"

    def stop_sshd(self) -> None:
        if self.sshd_pid:
            try:
                os.kill(self.sshd_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            _wait_gone(self.sshd_pid)
            self.sshd_pid = 0

    def start_sshd(self) -> None:
        pidfile = self.dir / "sshd.pid"
        pidfile.unlink(missing_ok=True)
        # sshd gets a private mount namespace in which root's ~/.bashrc and ~/.profile are empty: on this
        # machine they run `pyenv init` (a rehash under a global lock) for every SSH command, which a real
        # gateway does not do and which serialises the gateways' commands
        # The same namespace gives sshd, and everything it spawns, the gateway's private /etc view
        # (passwd, group, shadow, sudoers + an empty sudoers.d) with the throwaway users.
        etc = self.dir / "etc"
        mounts = "".join(f"mount --bind {shlex.quote(str(etc / f))} /etc/{f}; " for f in PRIVATE_ETC)
        mounts += f"mount --bind {shlex.quote(str(etc / 'sudoers.d'))} /etc/sudoers.d; "
        sh("ip", "netns", "exec", self.netns, "unshare", "--mount", "--propagation", "private", "sh", "-c",
           'set -e; for f in "$HOME/.bashrc" "$HOME/.profile"; do if [ -e "$f" ]; then mount --bind /dev/null "$f"; '
           'fi; done; ' + mounts + 'exec "$0" "$@"',
           SSHD, "-f", str(self.dir / "sshd_config"), "-E", str(self.dir / "sshd.log"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if pidfile.exists() and pidfile.read_text().strip() and _port_open(self.ip, 22):
                self.sshd_pid = int(pidfile.read_text().strip())
                return
            time.sleep(0.05)
        raise RuntimeError(f"sshd in {self.netns} did not start; log:\n{self.sshd_log()}")


def _port_open(addr: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((addr, port), timeout=timeout):
            return True
    except OSError:
        return False


def _wait_gone(pid: int, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)  # reap our own children (listeners), or they stay zombies
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:  # a zombie (dead, not yet reaped by init) holds nothing: count it as gone
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return
        except (OSError, IndexError):
            return
        time.sleep(0.02)


@dataclass
class NetnsLab:
    index: int
    bridge: str
    prefix: str
    subnet: str
    dir: Path
    gateways: list[Gateway] = field(default_factory=list)
    client_ns: str = ""
    known_hosts: Path | None = None
    client_key: Path | None = None
    namespaces: list[str] = field(default_factory=list)
    veths: list[str] = field(default_factory=list)
    #: the password of BECOME_USER on every gateway (random per lab, with shell metacharacters)
    become_password: str = field(default="", repr=False)
    #: uid of BECOME_USER and NOPASSWD_USER (free in the machine's /etc/passwd)
    uids: dict[str, int] = field(default_factory=dict)

    # addresses in the client namespace: .200/.201 (IPv4), ::200/::201 (IPv6)
    @property
    def allowed_src(self) -> str:
        return f"198.18.{self.index}.200"

    @property
    def denied_src(self) -> str:
        return f"198.18.{self.index}.201"

    @property
    def allowed_src6(self) -> str:
        return f"fd42:1688:0:{self.index}::200"

    @property
    def denied_src6(self) -> str:
        return f"fd42:1688:0:{self.index}::201"

    def probe(self, dest: str, src: str, port: int = 1688, timeout: float = 1.0) -> bool:
        return probe_tcp(self.client_ns, src, dest, port, timeout)


PROBE = r"""
import socket, sys
src, dst, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
fam = socket.AF_INET6 if ":" in dst else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.settimeout(timeout)
s.bind((src, 0))
try:
    s.connect((dst, port))
except OSError as e:
    print("FAIL", type(e).__name__); sys.exit(1)
print("OK")
"""


def probe_tcp(netns: str, src: str, dst: str, port: int = 1688, timeout: float = 1.5) -> bool:
    """True when a TCP connection from ``src`` (inside ``netns``) to ``dst:port`` is accepted."""
    p = sh("ip", "netns", "exec", netns, "python3", "-c", PROBE, src, dst, str(port), str(timeout),
           check=False, timeout=timeout + 10)
    return p.returncode == 0


def nft_json(gw: Gateway, stateless: bool = False) -> dict:
    """The gateway's whole ruleset, read independently of kmsdeploy (``nft -j list ruleset``)."""
    import json

    return json.loads(gw.nft(*(["-s"] if stateless else []), "-j", "list", "ruleset").stdout)


def _claim_bridge(start: int) -> int:
    routed = sh("ip", "-4", "route", "show").stdout.decode()
    for k in range(64):
        n = (start + k) % 250
        if f"198.18.{n}.0/24" in routed:
            continue
        p = sh("ip", "link", "add", f"kdb{n}", "type", "bridge", check=False)
        if p.returncode == 0:
            return n
    raise RuntimeError("no free kdb<N> bridge / 198.18.<N>.0/24 subnet found for the netns lab")


def _write_sshd_config(gw: Gateway, key_pub: Path) -> None:
    (gw.dir / "authorized_keys").write_text(key_pub.read_text())
    (gw.dir / "sshd_config").write_text(
        "\n".join([
            f"ListenAddress {gw.ip}:22",
            f"HostKey {gw.dir / 'ssh_host_ed25519_key'}",
            f"PidFile {gw.dir / 'sshd.pid'}",
            f"AuthorizedKeysFile {gw.dir / 'authorized_keys'}",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "UseDNS no",
            "StrictModes no",
            "MaxStartups 100:30:200",
            "MaxSessions 50",
            "LogLevel VERBOSE",
            # the throwaway users keep their keys where a real gateway does: ~/.ssh/authorized_keys
            f"Match User {BECOME_USER},{NOPASSWD_USER}",
            "    AuthorizedKeysFile .ssh/authorized_keys",
            "",
        ]))


def _free_ids(count: int, start: int = 41688) -> list[int]:
    """``count`` numbers free as both uid and gid in the machine's /etc/passwd and /etc/group."""
    used = set()
    for name in ("/etc/passwd", "/etc/group"):
        for line in Path(name).read_text().splitlines():
            parts = line.split(":")
            if len(parts) > 2 and parts[2].isdigit():
                used.add(int(parts[2]))
    out = []
    n = start
    while len(out) < count:
        if n not in used:
            out.append(n)
        n += 1
    return out


def _prepare_users(lab: NetnsLab) -> str:
    """Pick the throwaway users' ids and password; returns the password's SHA-512 crypt hash."""
    if not os.access(SUDO, os.X_OK):
        raise RuntimeError(f"{SUDO} is missing: install the sudo package (scripts/setup does)")
    for name in (BECOME_USER, NOPASSWD_USER):
        if any(line.split(":")[0] == name for line in Path("/etc/passwd").read_text().splitlines()):
            raise RuntimeError(f"user {name} exists on this machine; the netns lab needs the name for itself")
    lab.uids = dict(zip((BECOME_USER, NOPASSWD_USER), _free_ids(2)))
    # shell and sudoers metacharacters, a space and non-ASCII: the password must travel as data
    lab.become_password = f"kms {secrets.token_urlsafe(12)} $(id);'\"`x`\\ é"
    # on stdin, never on a command line
    return sh("openssl", "passwd", "-6", "-stdin", input=lab.become_password.encode()).stdout.decode().strip()


def _write_private_etc(gw: Gateway, lab: NetnsLab, hash_: str, key_pub: Path) -> None:
    """The gateway's /etc view: the machine's files plus the throwaway users, homes with keys."""
    etc = gw.dir / "etc"
    etc.mkdir()
    (etc / "sudoers.d").mkdir(mode=0o755)
    homes = gw.dir / "home"
    homes.mkdir(mode=0o755)
    passwd = Path("/etc/passwd").read_text().rstrip("\n").split("\n")
    group = Path("/etc/group").read_text().rstrip("\n").split("\n")
    shadow = Path("/etc/shadow").read_text().rstrip("\n").split("\n")
    for name, uid in lab.uids.items():
        home = homes / name
        passwd.append(f"{name}:x:{uid}:{uid}:kmsdeploy test user:{home}:/bin/bash")
        group.append(f"{name}:x:{uid}:")
        # '*': no password at all (sshd with UsePAM no still accepts a key; '!' would lock it)
        shadow.append(f"{name}:{hash_ if name == BECOME_USER else '*'}:20000:0:99999:7:::")
        (home / ".ssh").mkdir(parents=True)
        (home / ".ssh" / "authorized_keys").write_text(key_pub.read_text())
        for path, mode in ((home, 0o700), (home / ".ssh", 0o700), (home / ".ssh" / "authorized_keys", 0o600)):
            os.chown(path, uid, uid)
            os.chmod(path, mode)
    for name, lines in (("passwd", passwd), ("group", group), ("shadow", shadow)):
        (etc / name).write_text("\n".join(lines) + "\n")
        st = os.stat(f"/etc/{name}")
        os.chown(etc / name, st.st_uid, st.st_gid)
        os.chmod(etc / name, st.st_mode & 0o7777)
    state = gw.dir / "sudo-state"
    state.mkdir(mode=0o700)
    (etc / "sudoers").write_text(SUDOERS.format(state=state, become=BECOME_USER, nopasswd=NOPASSWD_USER))
    os.chmod(etc / "sudoers", 0o440)
    # the throwaway users must be able to reach their homes (traverse only: no listing, no reading)
    os.chmod(gw.dir, 0o711)


def setup_lab(count: int = GATEWAYS) -> NetnsLab:
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    n = _claim_bridge(worker_index() * 8 + 100)
    lab = NetnsLab(index=n, bridge=f"kdb{n}", prefix=f"kd{n}-", subnet=f"198.18.{n}.0/24",
                   dir=Path(tempfile.mkdtemp(prefix=f"kmsdeploy-netns{n}-")))
    try:
        sh("ip", "addr", "add", f"198.18.{n}.1/24", "dev", lab.bridge)
        sh("ip", "addr", "add", f"fd42:1688:0:{n}::1/64", "dev", lab.bridge, "nodad")
        sh("ip", "link", "set", lab.bridge, "up")
        lab.client_key = lab.dir / "client_key"
        sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kmsdeploy-test", "-f", str(lab.client_key))
        lab.known_hosts = lab.dir / "known_hosts"
        os.chmod(lab.dir, 0o711)  # traverse only, for the throwaway users' homes below it
        hash_ = _prepare_users(lab)
        known = []
        # namespaces: gateways kd<N>-g<i>, one client kd<N>-cl
        names = [(f"g{i}", 10 + i) for i in range(count)] + [("cl", 200)]
        for short, host in names:
            ns = f"{lab.prefix}{short}"
            veth = f"kd{n}v{short}"
            sh("ip", "netns", "add", ns)
            lab.namespaces.append(ns)
            # a veth of this name is a leftover of an earlier session that held bridge <N> (we own
            # <N> now): the kernel removes a deleted namespace's veth pairs asynchronously, so a
            # session that starts right after another one's teardown can still meet it
            sh("ip", "link", "del", veth, check=False)
            sh("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            lab.veths.append(veth)
            sh("ip", "link", "set", veth, "master", lab.bridge, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            addrs4 = [f"198.18.{n}.{host}"] + ([f"198.18.{n}.{host + 1}"] if short == "cl" else [])
            addrs6 = [f"fd42:1688:0:{n}::{host}"] + ([f"fd42:1688:0:{n}::{host + 1}"] if short == "cl" else [])
            for a in addrs4:
                sh("ip", "-n", ns, "addr", "add", f"{a}/24", "dev", "eth0")
            for a in addrs6:
                sh("ip", "-n", ns, "addr", "add", f"{a}/64", "dev", "eth0", "nodad")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            if short == "cl":
                lab.client_ns = ns
                continue
            gw = Gateway(name=f"gw{len(lab.gateways) + 1:02d}", netns=ns, ip=addrs4[0], ip6=addrs6[0],
                         dir=lab.dir / short)
            gw.dir.mkdir()
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(gw.dir / "ssh_host_ed25519_key"))
            _write_sshd_config(gw, Path(str(lab.client_key) + ".pub"))
            _write_private_etc(gw, lab, hash_, Path(str(lab.client_key) + ".pub"))
            gw.start_sshd()
            pub = (gw.dir / "ssh_host_ed25519_key.pub").read_text().split()
            known.append(f"{gw.ip} {pub[0]} {pub[1]}")
            # the listener the probes connect to (dual stack on ::)
            subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-m", "http.server", "1688", "--bind", "::"],
                             stdout=subprocess.DEVNULL, stderr=open(gw.dir / "listener.log", "wb"),
                             cwd=str(gw.dir), start_new_session=True)
            gw.vars = {
                "ansible_connection": "ssh",
                "ansible_host": gw.ip,
                "ansible_user": "root",
                "ansible_ssh_private_key_file": str(lab.client_key),
                "kmsdeploy_known_hosts": str(lab.known_hosts),
                "kmsdeploy_ssh_agent": False,
                "ansible_ssh_timeout": 5,
                "kmsdeploy_command_timeout": 20,
                "kmsdeploy_nft_persist": str(gw.dir / "persist" / "kmsdeploy.nft"),
            }
            (gw.dir / "persist").mkdir()
            lab.gateways.append(gw)
        lab.known_hosts.write_text("\n".join(known) + "\n")
        for gw in lab.gateways:
            deadline = time.monotonic() + 10
            while not _port_open(gw.ip, 1688):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"listener on {gw.ip}:1688 did not start: "
                                       f"{(gw.dir / 'listener.log').read_text(errors='replace')}")
                time.sleep(0.05)
        return lab
    except BaseException:
        teardown_lab(lab)
        raise


def teardown_lab(lab: NetnsLab) -> None:
    for ns in lab.namespaces:
        pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        for pid in pids:
            _wait_gone(int(pid))
        sh("ip", "netns", "del", ns, check=False)
    for veth in lab.veths:  # synchronously (namespace deletion frees them later, in the background)
        sh("ip", "link", "del", veth, check=False)
    sh("ip", "link", "del", lab.bridge, check=False)
    shutil.rmtree(lab.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def netns_lab():
    """Session-wide lab of GATEWAYS gateways (default 5) plus a client namespace."""
    if os.geteuid() != 0:
        raise RuntimeError("the netns lab needs root (ip netns, sshd, nft)")
    lab = setup_lab()
    yield lab
    teardown_lab(lab)
