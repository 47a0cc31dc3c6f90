"""Run the lab WinRM endpoint as a background process (``kmsdeploy lab up|down|status``).

``lab_up`` writes ``STATE_DIR/lab.json``, starts ``python -m kmsdeploy.lab.daemon serve
STATE_DIR`` in its own session and waits until it serves. State directory layout::

    lab.json        pid, status, scheme, auth, port, hosts, CA path, credential file paths
    password        the lab account's password (0600; never printed)
    ntlm-users      NTLM_USER_FILE for the daemon (0600)
    ca/             the lab CA (ca.pem public; keys 0600) for HTTPS
    faults.json     optional; re-read when it changes (see kmsdeploy.lab.faults)
    counters.json   WinRM requests per host and action, refreshed every second
    listeners.json  the KMS port listeners (host -> address, port, listening), see below
    lab.log         the daemon's log

The handler behind the endpoint is the Windows model ``kmsdeploy.lab.model:LabModel``
(``LabModel(state_dir).handle(host, command_line, stdin)``); while that module does not
exist the daemon serves :class:`~kmsdeploy.lab.winrm_server.EchoHandler` and says so in
``lab.json`` (``handler``).

With the model behind it, the daemon also keeps the DESIGN's lab contract "the lab
listens on 1688 for a host whose KMS service is running and its firewall rule enabled":
a TCP listener on each host's loopback address at the model's KMS listening port, opened
and closed as the model's state changes (:mod:`kmsdeploy.lab.kms_listener`) — right after
every command the host runs (so it is open when ``apply`` returns), and when a host's
state file changes behind the endpoint's back (hooks, tests; checked every 0.5 s).
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

from .faults import FaultInjector
from .tls import LabCA
from .winrm_server import EchoHandler, LabHostConfig, WinrmLabServer

LAB_FILE = "lab.json"
DEFAULT_USER = "Administrator"


class LabError(Exception):
    """The lab could not be started, stopped or read (message says why)."""


def default_hosts(count: int, prefix: str = "branch") -> list[LabHostConfig]:
    """``count`` hosts named ``<prefix>001``... on 127.0.1.10 upwards (200 per /24)."""
    return [LabHostConfig(f"{prefix}{i + 1:03d}", f"127.0.{1 + i // 200}.{10 + i % 200}") for i in range(count)]


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _read_state(state_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((state_dir / LAB_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LabError(f"no lab in {state_dir} (run `kmsdeploy lab up` first)") from None
    except json.JSONDecodeError as e:
        raise LabError(f"{state_dir / LAB_FILE}: corrupt: {e}") from None


def process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child (not yet reaped) counts as gone
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def lab_up(state_dir: str | os.PathLike, hosts: Iterable[LabHostConfig | Mapping[str, Any]], *,
           scheme: str = "https", port: int = 0, auth: str = "ntlm", user: str = DEFAULT_USER,
           wait: float = 30.0) -> dict[str, Any]:
    """Start the lab endpoint for ``hosts`` in the background; return the lab state.

    ``port`` 0 picks a free port (written to ``lab.json``). Raises :class:`LabError` with
    the daemon's log when it does not come up within ``wait`` seconds.
    """
    state = Path(state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    old = _read_state(state) if (state / LAB_FILE).exists() else {}
    if process_alive(old.get("pid")) and old.get("status") == "running":
        raise LabError(f"a lab is already running in {state} (pid {old['pid']}); run `kmsdeploy lab down` first")
    host_list = [h if isinstance(h, LabHostConfig) else LabHostConfig(str(h["name"]), str(h["address"]),
                                                                      tuple(h.get("dns_names", ())))
                 for h in hosts]
    if not host_list:
        raise LabError("the lab needs at least one host")
    password_file = state / "password"
    if not password_file.exists():
        _write_private(password_file, secrets.token_urlsafe(18) + "\n")
    password = password_file.read_text(encoding="utf-8").strip()
    ntlm_file = state / "ntlm-users"
    domain, _, name = user.rpartition("\\")
    _write_private(ntlm_file, f"{domain}:{name}:{password}\n")
    config = {
        "version": 1, "status": "starting", "pid": None, "scheme": scheme, "auth": auth, "port": port,
        "user": user, "password_file": str(password_file), "ntlm_user_file": str(ntlm_file),
        "ca_path": str(state / "ca" / "ca.pem") if scheme == "https" else None,
        "hosts": [{"name": h.name, "address": h.address, "dns_names": list(h.dns_names)} for h in host_list],
        "log": str(state / "lab.log"), "handler": None,
    }
    _write_json(state / LAB_FILE, config)
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])  # the package may not be installed
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["NTLM_USER_FILE"] = str(ntlm_file)
    with open(state / "lab.log", "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "kmsdeploy.lab.daemon", "serve", str(state)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                start_new_session=True, cwd=str(state))
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        current = _read_state(state)
        if current.get("status") == "running" and current.get("pid") == proc.pid:
            return current
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
    tail = (state / "lab.log").read_text(encoding="utf-8", errors="replace")[-3000:]
    raise LabError(f"the lab did not start (log {state / 'lab.log'}):\n{tail}")


def lab_down(state_dir: str | os.PathLike, wait: float = 10.0) -> dict[str, Any]:
    """Stop the lab daemon of ``state_dir`` (SIGTERM, then SIGKILL); return the final state."""
    state = Path(state_dir).resolve()
    current = _read_state(state)
    pid = current.get("pid")
    if process_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)
    current = _read_state(state)
    current.update(status="stopped", pid=None)
    _write_json(state / LAB_FILE, current)
    return current


def lab_status(state_dir: str | os.PathLike) -> dict[str, Any]:
    """The lab state plus ``running`` (pid alive) and per-host request ``counters``."""
    state = Path(state_dir).resolve()
    current = _read_state(state)
    current["running"] = current.get("status") == "running" and process_alive(current.get("pid"))
    if current.get("status") == "running" and not current["running"]:
        current["status"] = "dead"
    try:
        current["counters"] = json.loads((state / "counters.json").read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        current["counters"] = {}
    try:
        current["kms_listeners"] = json.loads((state / "listeners.json").read_text(encoding="utf-8")) \
            if current["running"] else {}
    except (FileNotFoundError, json.JSONDecodeError):
        current["kms_listeners"] = {}
    return current


def lab_inventory(state_dir: str | os.PathLike) -> dict[str, Any]:
    """An Ansible-style inventory (as data) for the lab's hosts; the password stays in its file."""
    current = _read_state(Path(state_dir).resolve())
    common: dict[str, Any] = {
        "ansible_connection": "winrm", "ansible_port": current["port"], "ansible_user": current["user"],
        "ansible_password": {"file": current["password_file"]}, "ansible_winrm_scheme": current["scheme"],
        "ansible_winrm_transport": current["auth"],
    }
    if current["scheme"] == "https":
        common["ansible_winrm_ca_trust_path"] = current["ca_path"]
    else:
        common["kmsdeploy_winrm_allow_http"] = True
    return {"all": {"children": {"lab_windows": {
        "vars": common,
        "hosts": {h["name"]: {"ansible_host": h["address"]} for h in current["hosts"]},
    }}}}


def _load_handler(state: Path):
    """(handler, description, model or None): the Windows model when it exists, else the echo handler."""
    try:
        import importlib
        module = importlib.import_module("kmsdeploy.lab.model")
        model_cls = getattr(module, "LabModel")
    except ModuleNotFoundError as e:
        if e.name not in ("kmsdeploy.lab.model",):
            raise
        return EchoHandler(), "echo (kmsdeploy.lab.model is not available yet)", None
    except AttributeError:
        return EchoHandler(), "echo (kmsdeploy.lab.model has no LabModel yet)", None
    model = model_cls(str(state))
    return model.handle, "kmsdeploy.lab.model:LabModel", model


def _state_mtimes(model, names) -> dict[str, int | None]:
    from .model.state import host_file

    out: dict[str, int | None] = {}
    for n in names:
        try:
            out[n] = host_file(model.store.dir, n).stat().st_mtime_ns
        except FileNotFoundError:
            out[n] = None
    return out


def serve(state_dir: str) -> int:
    """The daemon's main loop (``python -m kmsdeploy.lab.daemon serve STATE_DIR``)."""
    state = Path(state_dir).resolve()
    config = _read_state(state)
    os.environ["NTLM_USER_FILE"] = config["ntlm_user_file"]
    password = Path(config["password_file"]).read_text(encoding="utf-8").strip()
    handler, description, model = _load_handler(state)
    listeners = None
    if model is not None:
        from .kms_listener import KmsListeners

        listeners = KmsListeners({h["name"]: h["address"] for h in config["hosts"]}, model.kms_endpoint)
        model_handle = handler

        def handler(host, command_line, stdin):  # noqa: F811 - the model, then its KMS port
            try:
                return model_handle(host, command_line, stdin)
            finally:
                listeners.sync([host])
    faults = FaultInjector()
    faults_file = state / "faults.json"
    hosts = [LabHostConfig(h["name"], h["address"], tuple(h.get("dns_names", ()))) for h in config["hosts"]]
    server = WinrmLabServer(
        hosts, handler, scheme=config["scheme"], auth=config["auth"], port=int(config["port"] or 0),
        users={config["user"]: password}, ca=LabCA(state / "ca") if config["scheme"] == "https" else None,
        faults=faults, encryption=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    config.update(status="running", pid=os.getpid(), port=server.port, handler=description,
                  started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    _write_json(state / LAB_FILE, config)
    print(f"lab serving {len(hosts)} host(s) on port {server.port} ({config['scheme']}, {config['auth']}); "
          f"handler: {description}", flush=True)
    faults_mtime = None
    mtimes: dict[str, int | None] = {}
    listen_doc = None

    def sync_listeners() -> None:
        nonlocal mtimes, listen_doc
        if listeners is None:
            return
        now = _state_mtimes(model, listeners.hosts)
        changed = [n for n in now if now[n] != mtimes.get(n, -1)]
        mtimes = now
        if changed:
            listeners.sync(changed)
        doc = listeners.status()
        if doc != listen_doc:
            listen_doc = doc
            _write_json(state / "listeners.json", doc)

    sync_listeners()
    try:
        while not stop.wait(0.5):
            sync_listeners()
            try:
                mtime = faults_file.stat().st_mtime_ns
            except FileNotFoundError:
                mtime = None
            if mtime != faults_mtime:
                faults_mtime = mtime
                try:
                    faults.load_file(str(faults_file)) if mtime else faults.clear()
                    print(f"faults {'loaded from ' + str(faults_file) if mtime else 'cleared'}", flush=True)
                except (OSError, ValueError) as e:
                    print(f"faults.json ignored: {e}", flush=True)
            _write_json(state / "counters.json", {h: dict(server.requests[h]) for h in server.requests})
    finally:
        server.stop()
        if listeners is not None:
            listeners.close()
            _write_json(state / "listeners.json", {})
        _write_json(state / "counters.json", {h: dict(server.requests[h]) for h in server.requests})
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] != "serve":
        print("usage: python -m kmsdeploy.lab.daemon serve STATE_DIR", file=sys.stderr)
        return 2
    return serve(args[1])


if __name__ == "__main__":
    sys.exit(main())
