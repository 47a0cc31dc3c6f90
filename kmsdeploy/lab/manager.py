"""``kmsdeploy lab up|down|status``: a local lab of simulated branch infrastructure.

The lab is real services on loopback, started in the background and remembered in
``STATE_DIR/lab.json`` so later CLI calls (plan, apply, health) reach them:
- a real BIND 9 serving the zone ``lab.example`` with a TSIG key (RFC 2136 target);
- when the Windows lab is available in this build, a real WinRM endpoint with one
  simulated Windows host per loopback address (see docs/lab.md).
It writes ``STATE_DIR/inventory.yml``, an Ansible-style inventory with a head office
and branch sites, that the playbooks under ``playbooks/lab/`` use.

With ``clients`` > 0 (``kmsdeploy lab up --clients N --days D``, default 200 clients per
site over 30 days) each site's KMS host also gets a simulated client population
(:class:`kmsdeploy.reports.population.Population`): its 12290 events written into the
host's 'Key Management Service' log and reflected in its request counters and current
count, so ``kmsdeploy report ...`` has data out of the box. The current count reads −1
until the host is a KMS host (a host key installed, A.2), as on Windows.

Addresses: the Windows hosts use ``<net>.10``, ``<net>.11``, ... (``net`` default
``127.0.1``, or ``$KMSDEPLOY_LAB_NET``); tests give each worker its own ``net`` so that
the KMS port listeners (port 1688 on each host's address) of parallel labs never meet.
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
DEFAULT_NET = "127.0.1"
#: simulated population per site by default (``lab up --clients/--days``)
DEFAULT_CLIENTS, DEFAULT_DAYS = 200, 30


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


def lab_net(net: str | None) -> str:
    """The first three octets of the lab hosts' loopback addresses (checked)."""
    import ipaddress

    net = (net or os.environ.get("KMSDEPLOY_LAB_NET") or DEFAULT_NET).strip().rstrip(".")
    try:
        ok = len(net.split(".")) == 3 and ipaddress.ip_address(net + ".10").is_loopback
    except ValueError:
        ok = False
    if not ok:
        raise LabError(f"lab network {net!r}: give the first three octets of a 127.0.0.0/8 address, e.g. 127.0.1")
    return net


def up(path: str | None = None, *, sites: int = 3, clients: int = DEFAULT_CLIENTS, days: int = DEFAULT_DAYS,
       seed: int = 1, net: str | None = None, windows_facts: list[str] | None = None) -> dict[str, Any]:
    """Start the lab (idempotent: an already running lab is reported, not restarted).

    ``clients`` per site over ``days`` (0 clients: none) are simulated into the KMS hosts'
    event logs (see the module docstring); ``seed`` makes that population reproducible.
    ``windows_facts``: ``[HOST:]KEY=VALUE`` settings of the facts ``kmsdeploy preflight``
    reads (kmsdeploy/lab/model/system.py), for every Windows host or the one named."""
    from .bind import BindServer, BindStartError, free_port

    if clients < 0 or days < 1:
        raise LabError("--clients must be >= 0 and --days >= 1")
    facts = parse_windows_facts(windows_facts or [])
    net = lab_net(net)
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
        "net": net,
        "population": None,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (root / "lab.json").write_text(json.dumps(state, indent=2) + "\n")
    try:
        state["windows"] = start_windows(root / "windows", names, net=net)
        apply_windows_facts(root / "windows", state["windows"]["hosts"], facts)
        if clients:
            state["population"] = populate(root / "windows", names, clients=clients, days=days, seed=seed)
            state["population"]["products"] = str(write_products(root))
    except Exception:
        down(str(root))
        raise
    (root / "lab.json").write_text(json.dumps(state, indent=2) + "\n")
    write_inventory(root, state)
    return state


def parse_windows_facts(items: list[str]) -> list[tuple[str | None, str, Any]]:
    """``[HOST:]KEY=VALUE`` -> (host or None, key, typed value); LabError on a bad one."""
    from .model.system import parse_fact

    out = []
    for item in items:
        head, sep, value = item.partition("=")
        if not sep:
            raise LabError(f"--windows-fact {item!r}: expected [HOST:]KEY=VALUE")
        host, _, key = head.rpartition(":")
        try:
            out.append((host or None, key, parse_fact(key, value)))
        except ValueError as exc:
            raise LabError(f"--windows-fact {item!r}: {exc}") from None
    return out


def apply_windows_facts(wdir: Path, hosts: dict[str, str], facts: list[tuple[str | None, str, Any]]) -> None:
    from .model import LabModel

    model = LabModel(wdir)
    for host, key, value in facts:
        if host is not None and host not in hosts:
            raise LabError(f"--windows-fact: no Windows host {host!r} in the lab (hosts: {', '.join(hosts)})")
        for name in ([host] if host else list(hosts)):
            model.set_system(name, **{key: value})


def kms_host_name(site: str) -> str:
    return f"kms-{site}"


def start_windows(wdir: Path, sites: list[str], *, net: str = DEFAULT_NET) -> dict[str, Any]:
    """The WinRM endpoint (HTTPS, NTLM) with one simulated Windows KMS host per site."""
    from . import daemon
    from .model import LabModel
    from .winrm_server import LabHostConfig

    hosts = [LabHostConfig(kms_host_name(site), f"{net}.{10 + i}", (f"{kms_host_name(site)}.{LAB_ZONE}",))
             for i, site in enumerate(sites)]
    # seeded before the endpoint serves them (the model would seed them on first contact anyway)
    LabModel(wdir).seed([h.name for h in hosts], domain=LAB_ZONE, overwrite=True)
    try:
        st = daemon.lab_up(wdir, hosts, scheme="https", auth="ntlm")
    except daemon.LabError as exc:
        raise LabError(str(exc)) from None
    return {"state_dir": str(wdir), "pid": st["pid"], "port": st["port"],
            "hosts": {h.name: h.address for h in hosts}}


def populate(wdir: Path, sites: list[str], *, clients: int, days: int, seed: int = 1,
             end=None) -> dict[str, Any]:
    """Simulate ``clients`` per site over ``days`` ending now into each site's KMS host
    (12290s in its log in one transaction per host, counters and current count)."""
    import datetime as dt

    from ..reports.population import Population, PopulationSpec
    from .model import LabModel

    model = LabModel(wdir)
    end = end or dt.datetime.now(dt.timezone.utc)
    pop = Population(PopulationSpec(sites={s: [kms_host_name(s)] for s in sites}, end=end,
                                    clients_per_site=clients, days=days, seed=seed))
    by_host: dict[str, list[dict[str, Any]]] = {kms_host_name(s): [] for s in sites}
    for rec in pop.records():
        by_host[rec.host].append(rec.as_event())
    counts = pop.current_counts()
    loaded = {h: model.load_activation_events(h, evs, counts[h]) for h, evs in by_host.items()}
    return {"clients_per_site": clients, "days": days, "seed": seed,
            "end": end.isoformat().replace("+00:00", "Z"),
            "events": {h: v["events"] for h, v in loaded.items()},
            "failed": {h: v["failed"] for h, v in loaded.items()},
            "current_count": counts}


def write_products(root: Path) -> Path:
    """The simulated population's product catalog (synthetic Activation IDs -> names and
    families), for ``kmsdeploy report ... --products``."""
    from ..reports.population import lab_catalog

    path = root / "products.json"
    path.write_text(json.dumps(lab_catalog(), indent=2, sort_keys=True) + "\n")
    return path


def write_inventory(root: Path, state: dict[str, Any]) -> Path:
    """An inventory for the lab: the DNS server plus one simulated KMS host name per site."""
    import yaml

    sites = {}
    win = state.get("windows")
    win_vars: dict[str, Any] = {}
    if win:
        from . import daemon

        win_vars = dict(daemon.lab_inventory(win["state_dir"])["all"]["children"]["lab_windows"]["vars"])
        # every lab KMS host lives in the lab zone, where playbooks/lab/site.yml manages the one
        # _vlmcs._tcp set clients of all sites discover: `kmsdeploy health` checks that set
        win_vars["kmsdeploy_health"] = {"domain": state["zone"]}
    for i, site in enumerate(state["sites"]):
        name = kms_host_name(site)
        host = {"ansible_host": win["hosts"][name] if win else f"{state.get('net', DEFAULT_NET)}.{10 + i}",
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
        out["kms_listeners"] = {h: (f"{v['address']}:{v['port']} listening" if v.get("listening")
                                    else f"{v['address']}:{v['port']} NOT listening ({v.get('error')})")
                                for h, v in sorted((win.get("kms_listeners") or {}).items())}
    if state.get("population"):
        pop = state["population"]
        out["population"] = (f"{pop['clients_per_site']} clients per site over {pop['days']} days: "
                             f"{sum(pop['events'].values())} activation events (12290)")
    return out
