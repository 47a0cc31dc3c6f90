"""``kmsdeploy lab up|down|status``: a local lab of simulated branch infrastructure.

The lab is real services on loopback, started in the background and remembered in
``STATE_DIR/lab.json`` so later CLI calls (plan, apply, health) reach them:
- a real BIND 9 serving the zone ``lab.example`` with a TSIG key (RFC 2136 target);
- when the Windows lab is available in this build, a real WinRM endpoint with one
  simulated Windows host per loopback address (see docs/lab.md).
It writes ``STATE_DIR/inventory.yml``, an Ansible-style inventory with a head office
and branch sites, that the playbooks under ``playbooks/lab/`` use.
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from ..errors import KmsdeployError
from .daemon import process_alive as alive

LAB_ZONE = "lab.example"
DEFAULT_DIR = ".kmsdeploy-lab"


class LabError(KmsdeployError):
    """The lab could not be started, stopped or found."""


def state_dir(path: str | None) -> Path:
    return Path(path or os.environ.get("KMSDEPLOY_LAB_DIR") or DEFAULT_DIR).absolute()


def read_state(root: Path) -> dict[str, Any] | None:
    try:
        return json.loads((root / "lab.json").read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        raise LabError(f"{root / 'lab.json'}: unreadable lab state ({exc})") from None


def site_names(sites: int) -> list[str]:
    return ["hq"] + [f"branch-{i:02d}" for i in range(1, sites)]


def up(path: str | None = None, *, sites: int = 3) -> dict[str, Any]:
    """Start the lab (idempotent: an already running lab is reported, not restarted)."""
    from .bind import BindServer, BindStartError, free_port

    root = state_dir(path)
    current = read_state(root)
    if current and alive(current.get("bind", {}).get("pid")):
        return current
    root.mkdir(parents=True, exist_ok=True)
    names = site_names(max(1, sites))
    bind = BindServer(root / "bind", address="127.0.0.1", port=free_port("127.0.0.1", 55300), zones={LAB_ZONE: []})
    try:
        bind.start()
    except BindStartError as exc:
        raise LabError(f"the lab's BIND did not start: {exc}") from None
    state: dict[str, Any] = {
        "zone": LAB_ZONE,
        "sites": names,
        "bind": {"pid": bind.proc.pid, "address": bind.address, "port": bind.port, "key_file": str(bind.key_file)},
        "windows": None,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (root / "lab.json").write_text(json.dumps(state, indent=2) + "\n")
    try:
        state["windows"] = start_windows(root / "windows", names)
    except Exception:
        down(str(root))
        raise
    (root / "lab.json").write_text(json.dumps(state, indent=2) + "\n")
    write_inventory(root, state)
    return state


def kms_host_name(site: str) -> str:
    return f"kms-{site}"


def start_windows(wdir: Path, sites: list[str]) -> dict[str, Any]:
    """The WinRM endpoint (HTTPS, NTLM) with one simulated Windows KMS host per site."""
    from . import daemon
    from .winrm_server import LabHostConfig

    hosts = [LabHostConfig(kms_host_name(site), f"127.0.1.{10 + i}", (f"{kms_host_name(site)}.{LAB_ZONE}",))
             for i, site in enumerate(sites)]
    try:
        st = daemon.lab_up(wdir, hosts, scheme="https", auth="ntlm")
    except daemon.LabError as exc:
        raise LabError(str(exc)) from None
    return {"state_dir": str(wdir), "pid": st["pid"], "port": st["port"],
            "hosts": {h.name: h.address for h in hosts}}


def write_inventory(root: Path, state: dict[str, Any]) -> Path:
    """An inventory for the lab: the DNS server plus one simulated KMS host name per site."""
    import yaml

    sites = {}
    win = state.get("windows")
    win_vars: dict[str, Any] = {}
    if win:
        from . import daemon

        win_vars = dict(daemon.lab_inventory(win["state_dir"])["all"]["children"]["lab_windows"]["vars"])
    for i, site in enumerate(state["sites"]):
        name = kms_host_name(site)
        host = {"ansible_host": win["hosts"][name] if win else f"127.0.1.{10 + i}",
                "fqdn": f"{name}.{state['zone']}", "kmsdeploy_dns_domain": state["zone"]}
        sites[site] = {"hosts": {name: host}, "vars": {"site_domain": f"{site}.{state['zone']}"}}
    children: dict[str, Any] = {
        "dns_servers": {"hosts": {"lab-dns": {
            "ansible_connection": "rfc2136", "ansible_host": state["bind"]["address"],
            "ansible_port": state["bind"]["port"], "kmsdeploy_tsig": {"file": state["bind"]["key_file"]}}}},
        "sites": {"children": sites},
    }
    if win:
        children["kms_hosts"] = {"hosts": {kms_host_name(s): None for s in state["sites"]}, "vars": win_vars}
    inv = {"all": {"vars": {"lab_zone": state["zone"]}, "children": children}}
    path = root / "inventory.yml"
    path.write_text("# Written by 'kmsdeploy lab up'. The lab's services listen on loopback only.\n"
                    + yaml.safe_dump(inv, sort_keys=False))
    return path


def down(path: str | None = None) -> bool:
    """Stop every lab process; True when something was running."""
    root = state_dir(path)
    state = read_state(root)
    if not state:
        return False
    was = False
    if state.get("windows"):
        from . import daemon

        try:
            was = daemon.lab_down(state["windows"]["state_dir"]).get("status") == "stopped"
        except daemon.LabError:
            pass
    for pid in [state.get("bind", {}).get("pid")]:
        if alive(pid):
            was = True
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                if not alive(pid):
                    break
                time.sleep(0.1)
            else:
                os.killpg(pid, signal.SIGKILL)
    (root / "lab.json").unlink(missing_ok=True)
    return was


def status(path: str | None = None) -> dict[str, Any]:
    root = state_dir(path)
    state = read_state(root)
    if not state:
        return {"running": False, "state_dir": str(root)}
    bind = state["bind"]
    out = {"running": alive(bind.get("pid")), "state_dir": str(root), "inventory": str(root / "inventory.yml"),
           "dns": f"{bind['address']}:{bind['port']} zone {state['zone']} ({'up' if alive(bind.get('pid')) else 'DOWN'})",
           "sites": state["sites"]}
    if state.get("windows"):
        from . import daemon

        win = daemon.lab_status(state["windows"]["state_dir"])
        out["running"] = out["running"] and win["running"]
        out["windows"] = (f"WinRM {win['scheme']}/{win['auth']} on port {win['port']}, {len(win['hosts'])} host(s), "
                          f"model: {win.get('handler')} ({'up' if win['running'] else 'DOWN'})")
        out["winrm_requests"] = {h: sum(c.values()) if isinstance(c, dict) else c
                                 for h, c in (win.get("counters") or {}).items()}
    return out
