"""pytest plugin: the lab WinRM endpoint (real HTTP, NTLM with message encryption) in front
of the Windows model, for tests that drive ``kmsdeploy.cli.main`` against simulated hosts.

Use ``start_winlab(tmp_dir, names, block=...)`` from a MODULE-scoped fixture (one lab per
module keeps the suite fast). It gives a :class:`WinLab` with:

- ``inventory(path, ...)``: an Ansible-style inventory (NTLM, message encryption over HTTP;
  the password in a 0600 file) for some of the lab hosts, optionally with an address where
  nothing listens (the "unreachable host");
- ``state(host)``: the model's state file of a host, read directly (an INDEPENDENT check:
  neither the provider nor the runner payload is involved);
- ``requests(host)``: HTTP requests the endpoint counted for a host (the client's count);
- ``payloads``: every runner payload the endpoint received, per host (what reached the
  "Windows" side, verbatim), for tests about ordering and hostile strings;
- ``arm(host, FaultConfig, after="write"|"read")``: inject a fault (kmsdeploy.lab.faults)
  for a host right after the model has executed its next write (or read) payload, i.e. at
  a known point in the middle of an apply.

Addresses: ``127.<180 + worker>.<block>.<n>`` per pytest-xdist worker (test-services.md §7).
Never skips: a lab that cannot start fails the test with the reason.
"""
from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import yaml

from kmsdeploy.lab.faults import FaultConfig
from kmsdeploy.lab.model import LabModel
from kmsdeploy.lab.model.state import host_file
from kmsdeploy.lab.winrm_server import LabHostConfig, WinrmLabServer
from kmsdeploy.providers.windows import bootstrap

#: a lab account of its own: NTLM_USER_FILE is per process, and other modules register
#: "Administrator" with other passwords (pyspnego would take the first line for a name)
USER = "WinLabAdmin"
WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").lstrip("gw") or 0)
#: the security mode every WinLab uses (printed by the tests with the request counts)
MODE = "NTLM with message encryption (MS-WSMV) over HTTP"


def lab_address(block: int, n: int) -> str:
    """This worker's loopback address ``n`` of ``block``."""
    return f"127.{180 + WORKER % 70}.{block}.{n}"


#: the account of the protocol-level labs (:func:`echo_lab`)
ECHO_USER, ECHO_PASSWORD = "Administrator", "Lab-Passw0rd!"


@contextlib.contextmanager
def echo_lab(block: int, n: int = 1, *, prefix: str = "win", **kw):
    """A bare endpoint (EchoHandler unless ``handler=`` is given) for ``n`` hosts
    ``<prefix><block><i>`` on this worker's ``block``; ``kw`` goes to WinrmLabServer."""
    hosts = [LabHostConfig(f"{prefix}{block:02d}{i:03d}", lab_address(block, i)) for i in range(1, n + 1)]
    server = WinrmLabServer(hosts, users={ECHO_USER: ECHO_PASSWORD}, **kw).start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class WinLab:
    """One lab endpoint + model; see the module docstring."""

    server: WinrmLabServer
    model: LabModel
    root: Path
    block: int
    password: str
    user: str = USER
    domain: str = "lab.example"
    payloads: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    _armed: dict[str, tuple[FaultConfig, bool]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- the handler behind the endpoint --------------------------------------------
    def handle(self, host: str, command_line: str, stdin: bytes):
        payload = None
        split = bootstrap.split_stdin(stdin) if stdin else None
        if split is not None:
            try:
                payload = json.loads(split[1])
            except ValueError:
                payload = None
        result = self.model.handle(host, command_line, stdin)
        with self._lock:
            if payload is not None:
                self.payloads.setdefault(host, []).append(payload)
            armed = self._armed.get(host)
            if payload is not None and armed and bool(payload.get("stop_on_error", True)) == armed[1]:
                # that payload has run on the "host"; every request after it meets the fault
                self.server.faults.set(host, self._armed.pop(host)[0])
        return result

    def arm(self, host: str, config: FaultConfig, *, after: str = "write") -> None:
        """Set ``config`` as the faults of ``host`` once its next ``write`` (or ``read``)
        payload has run: a fault in the middle of an apply, at a known point."""
        with self._lock:
            self._armed[host] = (config, after == "write")

    def clear_faults(self, host: str) -> None:
        with self._lock:
            self._armed.pop(host, None)
        self.server.faults.clear(host)

    # -- observation -----------------------------------------------------------------
    def state(self, host: str) -> dict[str, Any]:
        """The host's state file, read directly (not through the provider)."""
        return json.loads(host_file(self.model.store.dir, host).read_text(encoding="utf-8"))

    def edit_state(self, host: str):
        """Change a host's state behind kmsdeploy's back (another admin, another tool)."""
        return self.model.store.edit(host)

    def requests(self, host: str) -> int:
        return self.server.request_total(host)

    def ops(self, host: str, *, writes: bool | None = None) -> list[dict[str, Any]]:
        """Every op the host received, in order (``writes``: only write / only read payloads)."""
        out = []
        for p in self.payloads.get(host, []):
            if writes is None or bool(p.get("stop_on_error", True)) == writes:
                out.extend(p["ops"])
        return out

    # -- inventory --------------------------------------------------------------------
    def address(self, host: str) -> str:
        return next(h.address for h in self.server.hosts if h.name == host)

    def inventory(self, path: Path, hosts: Iterable[str], *, unreachable: Iterable[str] = (),
                  host_vars: dict[str, dict[str, Any]] | None = None,
                  group_vars: dict[str, Any] | None = None) -> Path:
        """Write an inventory with ``hosts`` (lab hosts) in group ``windows``; ``unreachable``
        names get an address of this worker's block where nothing listens."""
        pw_file = self.root / "password"
        if not pw_file.exists():
            fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(self.password + "\n")
        entries: dict[str, Any] = {}
        for h in hosts:
            entries[h] = {"ansible_host": self.address(h), "fqdn": f"{h}.{self.domain}"}
        for i, h in enumerate(unreachable, 1):
            entries[h] = {"ansible_host": lab_address(self.block + 1, i), "fqdn": f"{h}.{self.domain}"}
        for h, extra in (host_vars or {}).items():
            entries[h].update(extra)
        common = {
            "ansible_connection": "winrm", "ansible_port": self.server.port, "ansible_user": self.user,
            "ansible_password": {"file": str(pw_file)}, "ansible_winrm_scheme": "http",
            "ansible_winrm_transport": "ntlm", "kmsdeploy_winrm_allow_http": True,
            "lab_zone": self.domain, **(group_vars or {}),
        }
        inv = {"all": {"children": {"windows": {"vars": common, "hosts": entries}}}}
        path.write_text(yaml.safe_dump(inv, sort_keys=False), encoding="utf-8")
        return path

    def stop(self) -> None:
        self.server.stop()


def start_winlab(root: Path, names: list[str], *, block: int, dns_servers: Iterable[str] = (),
                 zones: Iterable[str] | None = None, domain: str = "lab.example") -> WinLab:
    """Seed ``names`` in a fresh model under ``root`` and serve them (NTLM, sealed, HTTP)."""
    model = LabModel(root / "model")
    model.seed(names, domain=domain)
    dns = list(dns_servers)
    if dns:
        model.seed(dns, domain=domain, dns_server=True, zones=zones, overwrite=True)
    password = "Lab-" + os.urandom(9).hex()
    hosts = [LabHostConfig(n, lab_address(block, i)) for i, n in enumerate(names, 1)]
    user = f"{USER}{block}"  # one account per lab: several labs can share a process
    lab = WinLab(server=None, model=model, root=root, block=block, password=password,  # type: ignore[arg-type]
                 user=user, domain=domain)
    lab.server = WinrmLabServer(hosts, handler=lab.handle, users={user: password}, scheme="http",
                                auth="ntlm", encryption=True)
    lab.server.start()
    return lab


__all__ = ["WinLab", "start_winlab", "lab_address", "echo_lab", "ECHO_USER", "ECHO_PASSWORD", "MODE", "USER"]
