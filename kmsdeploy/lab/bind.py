"""A real BIND 9 (``named``) for tests and for ``kmsdeploy lab up``.

``BindServer`` writes a self-contained configuration under ``workdir`` (recipe:
reference/test-services.md §4): a TSIG key made by ``tsig-keygen``, one primary zone
per entry of ``zones`` with ``update-policy { grant KEY zonesub ANY; }``, listening only
on ``address:port`` (TCP and UDP), ``recursion no`` and ``reuseport no`` (so a port
clash is at least logged, §4/§7). ``start()`` runs ``named -g -c`` in its own session
(``setsid``) and waits until every zone answers its SOA; ``stop()`` sends SIGTERM.

    with BindServer("/tmp/b", zones={"lab.example": ["kms1 300 IN A 127.0.0.11"]}) as srv:
        srv.port, srv.key_file, srv.keyring

Failing to start raises :class:`BindStartError` with the tail of named's log.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterable, Mapping, Sequence

LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


class BindStartError(RuntimeError):
    """named could not be started; the message ends with the tail of its log."""


def port_is_free(address: str, port: int) -> bool:
    """True when both TCP and UDP ``address:port`` can be bound right now (no SO_REUSEPORT)."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        s = socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET, kind)
        try:
            s.bind((address, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_port(address: str = "127.0.0.1", start: int = 53530, span: int = 200,
              avoid: Iterable[int] = ()) -> int:
    """First port from ``start`` free on TCP and UDP at ``address`` (BIND port clashes are silent)."""
    avoid = set(avoid)
    for port in range(start, start + span):
        if port not in avoid and port_is_free(address, port):
            return port
    raise BindStartError(f"no free TCP+UDP port on {address} in {start}..{start + span - 1}")


def worker_base_port(worker: str | None = None, base: int = 53530, stride: int = 200) -> int:
    """Per pytest-xdist worker port range start (gw0 -> base, gw1 -> base+stride, ...)."""
    worker = worker or os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    m = re.search(r"(\d+)$", worker)
    return base + stride * (int(m.group(1)) if m else 0)


def _zone_ok(zone: str) -> str:
    z = zone.rstrip(".").lower()
    if not z or not all(LABEL.fullmatch(x) for x in z.split(".")):
        raise ValueError(f"invalid zone name {zone!r}")
    return z


class BindServer:
    """One ``named`` process with TSIG-protected primary zones under ``workdir``."""

    def __init__(self, workdir: str | os.PathLike, address: str = "127.0.0.1", port: int | None = None,
                 zones: Mapping[str, Sequence[str]] | None = None, key_name: str = "kmsdeploy-key",
                 algorithm: str = "hmac-sha256", named: str | None = None, ttl: int = 300,
                 open_zones: Sequence[str] = (), no_transfer_zones: Sequence[str] = ()):
        self.workdir = Path(workdir).absolute()
        self.address = address
        self._requested_port = port
        self.port = port or 0
        self.zones = {_zone_ok(z): list(recs) for z, recs in (zones or {"lab.example": []}).items()}
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,63}", key_name):
            raise ValueError(f"invalid key name {key_name!r}")
        self.key_name = key_name
        self.algorithm = algorithm
        self.named = named or shutil.which("named") or "/usr/sbin/named"
        self.ttl = ttl
        #: zones that ALSO take unsigned updates from 127.0.0.0/8 (``allow-update`` instead of
        #: ``update-policy``): what a zone open to KMS hosts' own publishing looks like
        self.open_zones = {_zone_ok(z) for z in open_zones}
        #: zones that refuse zone transfers; every other zone allows AXFR signed with the key
        #: (``allow-transfer { key ...; }``), which pruning needs (docs/dns.md "Pruning")
        self.no_transfer_zones = {_zone_ok(z) for z in no_transfer_zones}
        self.proc: subprocess.Popen | None = None

    # -- paths ----------------------------------------------------------
    @property
    def key_file(self) -> Path:
        return self.workdir / "tsig.key"

    @property
    def conf_file(self) -> Path:
        return self.workdir / "named.conf"

    @property
    def log_file(self) -> Path:
        return self.workdir / "named.log"

    @property
    def zone_dir(self) -> Path:
        return self.workdir / "work"

    @property
    def keyring(self):
        """dnspython keyring for the server's key (tests use it for direct updates)."""
        import dns.tsigkeyring

        name, alg, secret = self.key()
        return dns.tsigkeyring.from_text({name: (alg, secret)})

    def key(self) -> tuple[str, str, str]:
        """(name, algorithm, secret) read back from the key file."""
        text = self.key_file.read_text()
        m = re.search(r'key\s+"([^"]+)"\s*{\s*algorithm\s+([\w-]+);\s*secret\s+"([^"]+)";', text)
        if not m:
            raise BindStartError(f"cannot parse {self.key_file}")
        return m.group(1), m.group(2), m.group(3)

    # -- configuration --------------------------------------------------
    def write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.zone_dir.mkdir(exist_ok=True)
        if not self.key_file.exists():
            keygen = shutil.which("tsig-keygen") or "/usr/sbin/tsig-keygen"
            try:
                out = subprocess.run([keygen, "-a", self.algorithm, self.key_name], check=True,
                                     capture_output=True, text=True, timeout=30).stdout
            except (OSError, subprocess.SubprocessError) as exc:
                raise BindStartError(f"tsig-keygen failed: {exc} (is bind9 installed? apt-get install bind9)") from exc
            self.key_file.write_text(out)
            self.key_file.chmod(0o600)
        for zone, records in self.zones.items():
            self.write_zone(zone, records)
        zones = "".join(
            f'zone "{z}" {{ type primary; file "db.{z}"; '
            + ('allow-transfer { none; }; ' if z in self.no_transfer_zones else
               f'allow-transfer {{ key {self.key_name}; }}; ')
            + (f'allow-update {{ key {self.key_name}; 127.0.0.0/8; }}; }};\n' if z in self.open_zones else
               f'update-policy {{ grant {self.key_name} zonesub ANY; }}; }};\n') for z in self.zones)
        self.conf_file.write_text(
            f'options {{ directory "{self.zone_dir}"; pid-file "{self.workdir}/named.pid"; '
            f'session-keyfile "{self.workdir}/session.key"; managed-keys-directory "{self.zone_dir}";\n'
            f'  listen-on port {self.port} {{ {self.address}; }}; listen-on-v6 {{ none; }}; reuseport no;\n'
            f'  recursion no; allow-query {{ 127.0.0.0/8; }}; notify no; dnssec-validation no; }};\n'
            f'controls {{ }};\n'
            f'include "{self.key_file}";\n' + zones)

    def write_zone(self, zone: str, records: Sequence[str]) -> None:
        """(Re)write a zone file and drop its journal (SIGTERM does not fold the .jnl back, §4)."""
        body = [f"$TTL {self.ttl}", f"$ORIGIN {zone}.",
                f"@ IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 60",
                f"@ IN NS ns.{zone}.", f"ns IN A {self.address}"]
        body += list(records)
        (self.zone_dir / f"db.{zone}").write_text("\n".join(body) + "\n")
        jnl = self.zone_dir / f"db.{zone}.jnl"
        if jnl.exists():
            jnl.unlink()

    # -- process ----------------------------------------------------------
    def start(self, timeout: float = 30.0) -> "BindServer":
        """Start named and wait for every zone's SOA. Picks a free port (per xdist worker) if none was given;
        retries on another port when named logs that the port is in use."""
        if not os.path.exists(self.named):
            raise BindStartError(f"named not found at {self.named} (apt-get install bind9)")
        tried: list[int] = []
        for _ in range(5):
            if not self._requested_port:
                self.port = free_port(self.address, worker_base_port(), avoid=tried)
            tried.append(self.port)
            self.write_config()
            self._spawn()
            try:
                self._wait_ready(timeout)
            except _PortClash:
                self.stop()
                if self._requested_port:
                    raise BindStartError(f"port {self.address}:{self.port} is in use\n{self.log_tail()}") from None
                continue
            return self
        raise BindStartError(f"could not find a usable port after trying {tried}\n{self.log_tail()}")

    def _spawn(self) -> None:
        log = open(self.log_file, "ab")
        try:
            self.proc = subprocess.Popen([self.named, "-g", "-c", str(self.conf_file)], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)  # setsid: its own process group
        except OSError as exc:
            raise BindStartError(f"cannot run {self.named}: {exc}") from exc
        finally:
            log.close()

    def _wait_ready(self, timeout: float) -> None:
        import dns.exception
        import dns.message
        import dns.query
        import dns.rcode

        deadline = time.monotonic() + timeout
        pending = set(self.zones)
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise BindStartError(f"named exited with status {self.proc.returncode} while starting\n"
                                     f"{self.log_tail()}")
            log = self.log_text()
            if "address in use" in log or "Address already in use" in log:
                raise _PortClash()
            for zone in sorted(pending):
                try:
                    r = dns.query.tcp(dns.message.make_query(zone + ".", "SOA"), self.address,
                                      port=self.port, timeout=1.0)
                    if r.rcode() == dns.rcode.NOERROR and r.answer:
                        pending.discard(zone)
                except (OSError, dns.exception.DNSException):
                    pass
            if not pending:
                # a second named on the same port could answer too; our own log must say "running"
                if "running" in self.log_text():
                    return
            if time.monotonic() > deadline:
                self.stop()
                raise BindStartError(f"named did not serve {sorted(pending) or 'its zones'} on "
                                     f"{self.address}:{self.port} within {timeout:g} s\n{self.log_tail()}")
            time.sleep(0.1)

    def log_text(self) -> str:
        try:
            return self.log_file.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_text().splitlines()[-lines:]
        return f"--- last {len(text)} lines of {self.log_file} ---\n" + "\n".join(text)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM named (its whole session) and wait; SIGKILL if it does not exit."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> "BindServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- helpers for callers ------------------------------------------------
    def dig(self, name: str, rtype: str, *, timeout: float = 10.0) -> list[str]:
        """Answer lines of ``dig +noall +answer`` (an independent client), for tests and ``lab status``."""
        out = subprocess.run(["dig", "+noall", "+answer", "+tcp", "+norecurse", "-p", str(self.port),
                              f"@{self.address}", name, rtype], capture_output=True, text=True, timeout=timeout)
        return [line for line in out.stdout.splitlines() if line.strip() and not line.startswith(";")]


class _PortClash(Exception):
    pass
