"""The host facts ``kmsdeploy preflight`` reads (op ``system.preflight``), and how to make
each one wrong.

A seeded host is what kmsdeploy expects of a Windows Server 2022 branch server reached as
a local administrator: Windows PowerShell 5.1 Desktop edition, FullLanguage, a
RemoteSigned machine policy (the bootstrap's ``-ExecutionPolicy Bypass`` wins), the
NetSecurity module (DnsServer only on DNS servers, OperationsManager as ``scom.om_module``
says), WinRM's default limits (MaxEnvelopeSizekb 500, MaxTimeoutms 60000,
Shell\\MaxMemoryPerShellMB 1024) and a clock in step with the controller.

The ``system`` section of the host state holds the facts; :data:`FACTS` lists the keys
that ``LabModel.set_system`` (and ``kmsdeploy lab up --windows-fact KEY=VALUE``) may
change. ``clock_offset_s`` shifts the clock this op reports (only this op: the rest of
the model keeps the controller's clock). ``language_mode: ConstrainedLanguage`` is not
only reported: the model refuses to run the bootstrap at all, as Windows does
(``[Console]::In.ReadToEnd()`` is a method call on a non-core type), see
``LabModel.handle``. Behaviours here exist only in the model (docs/preflight.md).
"""
from __future__ import annotations

import datetime as _dt
from typing import Any

from .ops import ModelError, OpContext

#: what the bootstrap's first method call answers under ConstrainedLanguage (about_Language_Modes)
CONSTRAINED_ERROR = ("Cannot invoke method. Method invocation is supported only on core types in this "
                     "language mode.\r\nAt line:1 char:1\r\n"
                     "    + CategoryInfo          : InvalidOperation: (:) [], RuntimeException\r\n"
                     "    + FullyQualifiedErrorId : MethodInvocationNotSupportedInConstrainedLanguage\r\n")

#: settable facts -> type
FACTS: dict[str, type] = {
    "ps_edition": str, "ps_version": str, "language_mode": str, "machine_policy": str,
    "max_envelope_kb": int, "max_timeout_ms": int, "max_memory_per_shell_mb": int,
    "winrm_readable": bool, "admin": bool, "dns_admin": bool, "clock_offset_s": float,
    "missing_modules": list, "licensing_broken": bool, "scom_com_broken": bool,
}


def initial_state() -> dict[str, Any]:
    return {"ps_edition": "Desktop", "ps_version": "5.1.20348.2849", "language_mode": "FullLanguage",
            "machine_policy": "Undefined", "max_envelope_kb": 500, "max_timeout_ms": 60000,
            "max_memory_per_shell_mb": 1024, "winrm_readable": True, "admin": True, "dns_admin": False,
            "clock_offset_s": 0.0, "missing_modules": [], "licensing_broken": False, "scom_com_broken": False}


def facts(state: dict[str, Any]) -> dict[str, Any]:
    """The host's system facts (defaults for state files written before this section existed)."""
    return {**initial_state(), **(state.get("system") or {})}


def parse_fact(key: str, text: str) -> Any:
    """``KEY=VALUE`` text (CLI, fault files) to a typed fact; ValueError with a clear message."""
    if key not in FACTS:
        raise ValueError(f"unknown Windows fact {key!r} (known: {', '.join(sorted(FACTS))})")
    kind = FACTS[key]
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ValueError(f"{key} must be true or false")
        return text.lower() in ("true", "1", "yes")
    if kind is list:
        return [m for m in text.split(",") if m]
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{key} must be a {kind.__name__}") from None


def _module_present(state: dict[str, Any], sysf: dict[str, Any], name: str) -> bool:
    if name.lower() in {m.lower() for m in sysf["missing_modules"]}:
        return False
    low = name.lower()
    if low == "dnsserver":
        return bool(state.get("dns", {}).get("is_server"))
    if low == "operationsmanager":
        return bool(state.get("scom", {}).get("om_module", True))
    return low in ("netsecurity", "cimcmdlets", "microsoft.powershell.management")


def preflight(ctx: OpContext, args: dict) -> dict[str, Any]:
    """``system.preflight``: what the runner's Read-Preflight returns (read-only)."""
    state = ctx.state
    sysf = facts(state)
    machine = sysf["machine_policy"]
    policies = {"MachinePolicy": machine, "UserPolicy": "Undefined", "Process": "Bypass",
                "CurrentUser": "Undefined", "LocalMachine": "RemoteSigned"}
    # precedence (about_Execution_Policies): Group Policy scopes beat -ExecutionPolicy (Process)
    effective = machine if machine != "Undefined" else "Bypass"
    lic = None
    if args.get("licensing"):
        lic = ({"ok": False, "error": "Invalid class \"SoftwareLicensingService\""} if sysf["licensing_broken"]
               else {"ok": True, "error": None})
    scom = None
    if args.get("scom"):
        installed = bool(state.get("scom", {}).get("installed"))
        broken = installed and sysf["scom_com_broken"]
        scom = {"installed": installed, "com_object": installed and not broken,
                "error": ("Retrieving the COM class factory for component with CLSID failed due to the following "
                          "error: 80040154 Class not registered" if broken else None)}
    winrm = ({"max_envelope_kb": sysf["max_envelope_kb"], "max_timeout_ms": sysf["max_timeout_ms"],
              "max_memory_per_shell_mb": sysf["max_memory_per_shell_mb"], "error": None} if sysf["winrm_readable"]
             else {"max_envelope_kb": None, "max_timeout_ms": None, "max_memory_per_shell_mb": None,
                   "error": "Access is denied."})
    domain = str(state.get("domain", "lab.example")).split(".")[0].upper()
    groups = ["Everyone", "BUILTIN\\Users", "NT AUTHORITY\\NETWORK", "NT AUTHORITY\\Authenticated Users"]
    if sysf["admin"]:
        groups.append("BUILTIN\\Administrators")
    if sysf["dns_admin"]:
        groups.append(f"{domain}\\DnsAdmins")
    clock = ctx.now().astimezone(_dt.timezone.utc) + _dt.timedelta(seconds=float(sysf["clock_offset_s"]))
    if sysf["ps_edition"] not in ("Desktop", "Core"):
        raise ModelError("KMSDEPLOY_ERROR", "lab model: ps_edition must be Desktop or Core")
    return {
        "powershell": {"edition": sysf["ps_edition"], "version": sysf["ps_version"], "clr": "4.0.30319.42000"},
        "language_mode": sysf["language_mode"],
        "execution_policy": {"effective": effective, **policies},
        "modules": {m: _module_present(state, sysf, m) for m in args.get("modules") or []},
        "licensing": lic,
        "scom": scom,
        "winrm": winrm,
        "identity": {"name": f"{domain}\\admin", "admin": bool(sysf["admin"]), "groups": groups, "error": None},
        "clock_utc": clock.isoformat(timespec="microseconds").replace("+00:00", "Z"),
    }


HANDLERS = {"system.preflight": preflight}
