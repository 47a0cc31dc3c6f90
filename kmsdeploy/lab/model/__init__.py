"""The lab's model of the Windows services a kmsdeploy runner talks to.

``LabModel(state_dir).handle(host, command_line, stdin)`` answers exactly what a Windows
host would answer to the runner: it checks the command line is the kmsdeploy bootstrap
(and shorter than Windows' 8,191-character limit), splits stdin into runner and payload,
checks the runner hash, refuses payloads over Windows PowerShell 5.1's ConvertFrom-Json
limit (~2 MB), validates the payload against ``schemas/runner-payload.json`` and runs
every operation through the service modules (``licensing``, ``firewall``,
``dns_server``, ``scom_agent``, ``eventlog``) — the same operations the runner's
``switch`` dispatches. State is one JSON file per host under ``state_dir``
(:mod:`.state`) plus, per host, a SQLite 'Key Management Service' log of 12290 events
(:mod:`.kmslog`); both survive between CLI calls.

Nothing here runs PowerShell: the runner itself is only linted (tests/unit/test_runner_ps1.py).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import jsonschema

from ...providers.windows import bootstrap
from . import dns_server, eventlog, firewall, licensing, scom_agent, system
from .kmslog import MAX_EVENTS as KMS_LOG_MAX_EVENTS
from .kmslog import KmsLog
from .ops import Handler, ModelError, OpContext
from .state import StateStore, UnknownHost, host_file, key_digest

try:  # the endpoint's type (defined in kmsdeploy.transports.winrm, re-exported by winrm_server)
    from ..winrm_server import CommandResult  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on build order
    @dataclass(frozen=True)
    class CommandResult:  # type: ignore[no-redef]
        """What one command returns to the WinRM client."""

        stdout: bytes
        stderr: bytes
        exit_code: int

MODEL_NAME = "kmsdeploy-lab-model/1"
#: Windows PowerShell 5.1's ConvertFrom-Json (JavaScriptSerializer) MaxJsonLength, in characters
CONVERTFROM_JSON_LIMIT = 2_097_152
CONVERTFROM_JSON_ERROR = ("Error during serialization or deserialization using the JSON JavaScriptSerializer. "
                          "The length of the string exceeds the value set on the maxJsonLength property.")
#: where seeded hosts keep MOMAgent.msi (a spec's msi_path must point here in the lab)
DEFAULT_MSI_PATH = "C:\\Install\\SCOM\\MOMAgent.msi"

#: payload operation -> model handler; the test pairs this with the schema and runner.ps1
HANDLERS: dict[str, Handler] = {
    **licensing.HANDLERS, **eventlog.HANDLERS, **firewall.HANDLERS, **dns_server.HANDLERS, **scom_agent.HANDLERS,
    **system.HANDLERS,
}

__all__ = ["LabModel", "CommandResult", "HANDLERS", "ModelError", "DEFAULT_MSI_PATH"]


@functools.cache
def payload_schema() -> dict[str, Any]:
    text = resources.files("kmsdeploy").joinpath("schemas/runner-payload.json").read_text(encoding="utf-8")
    return json.loads(text)


@functools.cache
def payload_validator() -> jsonschema.protocols.Validator:
    """Compiled once: jsonschema.validate() re-checks the schema itself on every call (~20 ms a command)."""
    schema = payload_schema()
    return jsonschema.validators.validator_for(schema)(schema)


def _doc(ok: bool, results: list, error: dict | None = None) -> bytes:
    d: dict[str, Any] = {"version": 1, "runner": MODEL_NAME, "ok": ok, "results": results}
    if error:
        d["error"] = error
    return json.dumps(d, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


class LabModel:
    """Simulated Windows hosts backed by JSON files in ``state_dir``."""

    def __init__(self, state_dir, *, now: Callable[[], _dt.datetime] | None = None,
                 default_domain: str = "lab.example", kms_log_max_events: int = KMS_LOG_MAX_EVENTS):
        self.store = StateStore(state_dir)
        #: domain of hosts seeded implicitly on their first command
        self.default_domain = default_domain
        #: cap of each host's 'Key Management Service' log (oldest dropped, ids never renumbered)
        self.kms_log_max_events = kms_log_max_events
        self._now = now or (lambda: _dt.datetime.now(_dt.timezone.utc))

    def kms_log_path(self, host: str) -> Path:
        """Where ``host``'s 'Key Management Service' log (12290s) is kept."""
        return self.store.dir / "events" / (host_file(self.store.dir, host).stem + ".sqlite")

    def kms_log(self, host: str) -> KmsLog:
        """``host``'s 'Key Management Service' log (close it, or use it as a context manager)."""
        return KmsLog(self.kms_log_path(host), max_events=self.kms_log_max_events)

    @contextlib.contextmanager
    def edit(self, host: str) -> Iterator[OpContext]:
        """An :class:`OpContext` for ``host`` with its state (saved when the block succeeds),
        the model-wide state and its KMS log: what handlers get, for hooks and tests."""
        with self.store.edit_global() as gstate, self.store.edit(host) as state, self.kms_log(host) as log:
            yield OpContext(host=host, state=state, global_state=gstate, now=self._now, kms_log=log)

    # ------------------------------------------------------------ the endpoint's entry point
    def handle(self, host: str, command_line: str, stdin: bytes) -> CommandResult:
        """Run one command as the Windows host ``host`` would; see the module docstring."""
        if len(command_line) > bootstrap.COMMAND_LINE_LIMIT:
            return CommandResult(b"", b"The command line is too long.\r\n", 1)
        parsed = bootstrap.parse_command_line(command_line)
        if parsed is None:
            return CommandResult(b"", b"lab model: only the kmsdeploy runner bootstrap is understood here\r\n", 1)
        _, expected_hash = parsed
        try:
            split = bootstrap.split_stdin(stdin)
        except UnicodeDecodeError:
            split = None
        if split is None:
            return CommandResult(b"", b"kmsdeploy: no payload marker on stdin", 2)
        runner, payload_text = split
        if bootstrap.runner_sha256(runner) != expected_hash:
            return CommandResult(b"", b"kmsdeploy: runner hash mismatch", 3)
        if not self.store.exists(host):
            # `kmsdeploy lab up` hosts start as freshly seeded servers on first contact
            self.seed([host], domain=self.default_domain)
        if system.facts(self.store.load(host))["language_mode"] != "FullLanguage":
            # the bootstrap's first method call on a non-core type fails before the runner starts
            return CommandResult(b"", system.CONSTRAINED_ERROR.encode("utf-8"), 1)
        if len(payload_text) > CONVERTFROM_JSON_LIMIT:
            return CommandResult(_doc(False, [], {"code": "KMSDEPLOY_PAYLOAD", "message": CONVERTFROM_JSON_ERROR}), b"", 0)
        try:
            payload = json.loads(payload_text)
            error = jsonschema.exceptions.best_match(payload_validator().iter_errors(payload))
            if error is not None:
                raise error
        except (ValueError, jsonschema.ValidationError) as exc:
            msg = exc.message if isinstance(exc, jsonschema.ValidationError) else str(exc)
            return CommandResult(_doc(False, [], {"code": "KMSDEPLOY_PAYLOAD", "message": msg}), b"", 0)
        return CommandResult(self._run(host, payload), b"", 0)

    def _run(self, host: str, payload: Mapping[str, Any]) -> bytes:
        stop = payload.get("stop_on_error", True)
        results: list[dict[str, Any]] = []
        failed = False
        secrets = [str(o.get("args", {}).get(k)) for o in payload["ops"] for k in ("key", "action_password")
                   if o.get("args", {}).get(k)]
        with self.edit(host) as ctx:
            for op in payload["ops"]:
                entry: dict[str, Any] = {"id": op["id"], "op": op["op"], "status": "ok", "data": None}
                if failed and stop:
                    entry.update(status="skipped", error={"code": "KMSDEPLOY_SKIPPED",
                                                          "message": "not run: an earlier operation failed"})
                else:
                    try:
                        entry["data"] = HANDLERS[op["op"]](ctx, dict(op.get("args") or {}))
                    except ModelError as exc:
                        failed = True
                        message = exc.message
                        for s in secrets:
                            message = message.replace(s, "(sensitive)")
                        entry.update(status="failed", error={"code": exc.code, "message": message})
                results.append(entry)
        return _doc(not failed, results)

    # ------------------------------------------------------------ seeding and inspection
    def seed(self, hosts: int | Iterable[str], *, domain: str = "lab.example", prefix: str = "kms",
             dns_server: bool | Iterable[str] = False, zones: Iterable[str] | None = None,
             msi_path: str | None = DEFAULT_MSI_PATH, overwrite: bool = False) -> list[str]:
        """Create simulated hosts and return their names.

        ``hosts`` is a count (names ``<prefix>01..``) or names. Each host is an unlicensed,
        key-less, KMS-capable Windows Server with default licensing settings, the built-in
        SPPSVC-In-TCP rule disabled (C.1), no SCOM agent (MOMAgent.msi present at
        ``msi_path``). ``dns_server`` (True = every host, or a list of names) makes hosts
        DNS servers holding empty ``zones`` (default: ``domain``). Existing hosts are kept
        unless ``overwrite``.
        """
        names = [f"{prefix}{i:02d}" for i in range(1, hosts + 1)] if isinstance(hosts, int) else list(hosts)
        dns_hosts = set(names) if dns_server is True else set(dns_server or ())
        zone_names = [z.rstrip(".").lower() for z in (zones or [domain])]
        for name in names:
            if self.store.exists(name) and not overwrite:
                continue
            for suffix in ("", "-wal", "-shm"):  # a fresh host has an empty KMS log
                Path(str(self.kms_log_path(name)) + suffix).unlink(missing_ok=True)
            short = name.split(".")[0]
            fqdn = name if "." in name else f"{name}.{domain}"
            self.store.save(name, {
                "host": name,
                "fqdn": fqdn.lower(),
                "domain": domain.rstrip(".").lower(),
                "os": "Windows Server 2022 Datacenter",
                "computer_name": short.upper()[:15],
                "licensing": licensing.initial_state(),
                "events": [],
                "firewall": {"rules": [dict(firewall.BUILTIN_KMS_RULE)]},
                "dns": {"is_server": name in dns_hosts,
                        "zones": {z: {"records": []} for z in zone_names} if name in dns_hosts else {}},
                "scom": scom_agent.initial_state(msi_path),
                "system": system.initial_state(),
            })
        return names

    def hosts(self) -> list[str]:
        return self.store.hosts()

    def state(self, host: str) -> dict[str, Any]:
        """A copy of a host's whole state (for tests and ``kmsdeploy lab status``)."""
        return self.store.load(host)

    def kms_endpoint(self, host: str) -> int | None:
        """The TCP port the lab should listen on for ``host``'s KMS service, or None:
        a licensed KMS host with sppsvc running and an enabled inbound rule for its port."""
        state = self.store.load(host)
        port = licensing.kms_endpoint(state["licensing"])
        if port is None or not firewall.allows_tcp(state, port):
            return None
        return port

    # ------------------------------------------------------------ fault hooks
    def mark_key_over_limit(self, key: str) -> None:
        """Fault hook: activating this key anywhere fails with 0xC004C008 (A.6)."""
        with self.store.edit_global() as g:
            g["keys"].setdefault(key_digest(key), {"hosts": [], "over_limit": False})["over_limit"] = True

    def set_system(self, host: str, **changes: Any) -> None:
        """Fault hook: change the facts ``kmsdeploy preflight`` reads (:data:`.system.FACTS`:
        ``language_mode``, ``max_envelope_kb``, ``admin``, ``clock_offset_s`` ...)."""
        unknown = set(changes) - set(system.FACTS)
        if unknown:
            raise ValueError(f"unknown Windows fact(s): {', '.join(sorted(unknown))}")
        with self.store.edit(host) as state:
            state["system"] = {**system.facts(state), **changes}

    def set_om_module(self, host: str, available: bool) -> None:
        """Fault hook: the OperationsManager module present or missing on ``host`` (E.3)."""
        with self.store.edit(host) as state:
            state["scom"]["om_module"] = bool(available)

    def record_activations(self, host: str, clients: Iterable[str]) -> None:
        """Simulate KMS clients activating against ``host`` (12290 events, CurrentCount)."""
        with self.edit(host) as ctx:
            for c in clients:
                licensing.record_activation(ctx, c)

    def load_activation_events(self, host: str, records: Iterable[Mapping[str, Any]],
                               current_count: int | None = None) -> dict[str, int]:
        """Bulk hook for simulated populations: append ``{"time", "properties"}`` 12290
        records (time order; e.g. ``SimRecord.as_event()`` of
        :class:`kmsdeploy.reports.population.Population`) to ``host``'s KMS log in ONE
        transaction, and set its counters (total/failed requests, the clients behind
        CurrentCount = ``current_count``, A.2/A.5). Record ids are the log's own, increasing.
        Returns ``{"events": n, "failed": n}``."""
        if not self.store.exists(host):
            self.seed([host], domain=self.default_domain)
        with self.edit(host) as ctx:
            return licensing.load_activations(ctx, records, current_count)

    def record_failed_requests(self, host: str, n: int = 1) -> None:
        """Simulate ``n`` failed client requests (KeyManagementServiceFailedRequests, A.2)."""
        with self.store.edit(host) as state:
            lic = state["licensing"]
            lic["failed_requests"] = int(lic.get("failed_requests", 0)) + n
            lic["total_requests"] = int(lic.get("total_requests", 0)) + n

    def log_renewal_timer_failure(self, host: str, time: str | None = None) -> None:
        """Seed event 12292 (A.4: "unable to initialize the KMS renewal timer") in the Application log."""
        with self.edit(host) as ctx:
            eventlog.write(ctx, 12292, "Unable to initialize the Key Management Service (KMS) renewal timer.", [],
                           time=time)

    def log_event(self, host: str, event_id: int, domain: str, hresult: str = "0x8007232B") -> None:
        """Seed a 12293 (publish failure) or 12294 (success) event for ``domain`` (A.4)."""
        with self.edit(host) as ctx:
            if event_id == 12293:
                eventlog.write(ctx, 12293, eventlog.publish_failure_message(domain, hresult), [hresult, domain])
            elif event_id == 12294:
                eventlog.write(ctx, 12294, eventlog.publish_success_message(domain), [domain])
            else:
                raise ValueError("log_event seeds 12293 or 12294; use record_activations for 12290")
