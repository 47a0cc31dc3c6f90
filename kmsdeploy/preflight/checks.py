"""Preflight checks: PURE functions of collected facts -> :class:`Check` (status, summary,
advice, reference). Collection lives in :mod:`.windows`, :mod:`.dns`; nothing here does I/O.

Statuses and exit codes are health's (monitoring-plugin convention, ``kmsdeploy.health.rules``):
``ok`` 0, ``warning`` 1, ``critical`` 2 ("this target cannot run the plan"), ``unknown`` 3
("not reached"); ``skipped`` means the check does not apply to this plan. The worst status
wins by monitoring-plugins' max_state_alt (OK < UNKNOWN < WARNING < CRITICAL).

Every failed check carries ``advice`` (what to do) and ``reference`` (the section of
windows-kms-dns-dkm-scom.md, or the documentation, the fact comes from). Thresholds used:

* PowerShell: edition ``Desktop`` and version >= 5.1 (DESIGN "Windows execution"; B.2 remoting caveat).
* language mode ``FullLanguage`` (about_Language_Modes: ConstrainedLanguage blocks method
  calls on non-core types, which the bootstrap and runner make).
* execution policy: only a Group Policy scope (MachinePolicy/UserPolicy) can override the
  bootstrap's ``-ExecutionPolicy Bypass``; the runner is not a script file, so it still runs,
  but a restrictive GPO policy is reported as a warning (unsigned modules would not load).
* WinRM: MaxEnvelopeSizekb >= the largest SOAP envelope kmsdeploy sends; MaxTimeoutms >= the
  WS-Man OperationTimeout the transport asks for; Shell\\MaxMemoryPerShellMB >= an estimate of
  powershell.exe's need for the largest payload (:func:`memory_needed_mb`).
* clock: |skew| > 300 s critical (Kerberos' default 5-minute tolerance; KMS 0xC004F06C, A.6),
  > 60 s warning (reports bucket events by day).
"""
from __future__ import annotations

import datetime as _dt
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from ..health.rules import CRITICAL, EXIT_CODES, OK, SKIPPED, UNKNOWN, WARNING, parse_time, worst

__all__ = ["Check", "OK", "WARNING", "CRITICAL", "UNKNOWN", "SKIPPED", "EXIT_CODES", "worst", "windows_checks",
           "unreachable", "Needs", "envelope_needed_kb", "memory_needed_mb"]

SKEW_WARNING_S = 60.0
SKEW_CRITICAL_S = 300.0
#: SOAP envelope around one rsp:Send (headers, selectors, encryption framing): measured
#: from pywinrm 0.5's messages with room to spare
ENVELOPE_OVERHEAD = 8 * 1024
#: powershell.exe + runner baseline, MB (inference: a 5.1 process with CimCmdlets and
#: NetSecurity loaded is ~100 MB); plus about 16x the payload for the UTF-16 copies of the
#: stdin text and ConvertFrom-Json's object graph
MEMORY_BASE_MB = 150
MEMORY_PER_PAYLOAD_BYTE = 16


@dataclass(frozen=True)
class Check:
    """One judged check."""

    name: str
    status: str
    summary: str
    advice: str | None = None
    reference: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"check": self.name, "status": self.status, "summary": self.summary, "advice": self.advice,
                "reference": self.reference, "evidence": dict(self.evidence)}


@dataclass(frozen=True)
class Needs:
    """What the plan needs from one Windows target (computed from its resources)."""

    kinds: frozenset[str]
    #: modules the kinds need: NetSecurity (firewall_rule, C.2), DnsServer (dns_record, B.2)
    modules: tuple[str, ...]
    #: largest stdin of one runner call (runner + marker + payload chunk), bytes
    largest_stdin: int
    #: largest payload text of one call, characters
    largest_payload: int
    #: WS-Man OperationTimeout the transport asks for, seconds
    operation_timeout_s: float
    #: largest raw stdin piece per rsp:Send (the transport's STDIN_CHUNK)
    stdin_chunk: int


def envelope_needed_kb(needs: Needs) -> int:
    """KiB of the largest SOAP envelope: one base64'd stdin piece plus the envelope."""
    piece = min(needs.stdin_chunk, max(needs.largest_stdin, 1))
    return math.ceil((4 * math.ceil(piece / 3) + ENVELOPE_OVERHEAD) / 1024)


def memory_needed_mb(needs: Needs) -> int:
    return MEMORY_BASE_MB + math.ceil(needs.largest_payload * MEMORY_PER_PAYLOAD_BYTE / (1024 * 1024))


def unreachable(error: str) -> Check:
    return Check("reachable", UNKNOWN, f"not reached: {error}",
                 "check the address, port, credentials and that the service listens (nothing else was checked)")


# ---------------------------------------------------------------------------- Windows

CONSTRAINED_RE = re.compile(r"(?i)language mode|ConstrainedLanguage")
MODULE_ADVICE = {
    "dnsserver": ("the DnsServer module is missing: dns_record resources on a Windows target run on the DNS "
                  "server itself; install the role with its tools (`Install-WindowsFeature DNS -IncludeManagementTools`) "
                  "or, for the tools only, `Install-WindowsFeature RSAT-DNS-Server`", "B.2"),
    "netsecurity": ("the NetSecurity module (New/Get/Set-NetFirewallRule) ships with Windows Server 2012 and later; "
                    "this host is older or the module was removed", "C.2"),
    "operationsmanager": ("the OperationsManager module is missing: primary/failover management servers cannot be "
                          "read or set from this host (install the Operations console or set the parents elsewhere)",
                          "E.3"),
}


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text or "")[:2]) or (0,)


def runner_start_failure(stderr: str) -> list[Check]:
    """The runner did not start: a ConstrainedLanguage refusal is named; anything else is critical too."""
    if CONSTRAINED_RE.search(stderr):
        return [Check("language_mode", CRITICAL, "ConstrainedLanguage: the bootstrap cannot run (method calls on "
                                                  "non-core types are blocked)",
                      "the runner needs FullLanguage: exempt the account or kmsdeploy's powershell.exe from the "
                      "WDAC/AppLocker policy that forces ConstrainedLanguage, or use an account it does not apply to",
                      "about_Language_Modes", {"stderr": stderr.strip()[:300]})]
    return [Check("runner", CRITICAL, f"the runner did not start: {stderr.strip()[:200] or 'no output'}",
                  "run `powershell.exe -NoProfile -Command $PSVersionTable` over WinRM as this account to see why",
                  "DESIGN.md Windows execution")]


def windows_checks(facts: Mapping[str, Any], needs: Needs, *, controller_utc: _dt.datetime) -> list[Check]:
    """Every Windows check from the ``system.preflight`` data (see schemas/runner-payload.json)."""
    out: list[Check] = []
    ps = facts.get("powershell") or {}
    edition, version = str(ps.get("edition") or ""), str(ps.get("version") or "")
    if edition == "Core":
        out.append(Check("powershell", CRITICAL, f"PowerShell {version} (Core edition) answered; kmsdeploy needs "
                                                 "Windows PowerShell 5.1",
                         "point the connection at Windows PowerShell 5.1 (powershell.exe, session configuration "
                         "Microsoft.PowerShell), not PowerShell 7 (pwsh): the DnsServer cmdlets return empty RecordData "
                         "under 7", "B.2 (remoting caveat), DESIGN.md Windows execution",
                         {"edition": edition, "version": version}))
    elif _version_tuple(version) < (5, 1):
        out.append(Check("powershell", CRITICAL, f"Windows PowerShell {version or '(unknown)'}; 5.1 is required",
                         "install Windows Management Framework 5.1 (WMF 5.1) on this host",
                         "DESIGN.md Windows execution", {"edition": edition, "version": version}))
    else:
        out.append(Check("powershell", OK, f"Windows PowerShell {version} ({edition})",
                         evidence={"edition": edition, "version": version}))
    mode = str(facts.get("language_mode") or "")
    out.append(Check("language_mode", OK, mode) if mode == "FullLanguage" else
               Check("language_mode", CRITICAL, f"{mode}: the runner needs FullLanguage",
                     "exempt the account or powershell.exe from the WDAC/AppLocker policy, or use a FullLanguage "
                     "endpoint", "about_Language_Modes", {"language_mode": mode}))
    pol = facts.get("execution_policy") or {}
    gpo = {s: pol.get(s) for s in ("MachinePolicy", "UserPolicy") if pol.get(s) not in (None, "", "Undefined")}
    strict = {s: v for s, v in gpo.items() if v in ("AllSigned", "Restricted")}
    if strict:
        out.append(Check("execution_policy", WARNING,
                         "Group Policy sets " + ", ".join(f"{s}={v}" for s, v in strict.items())
                         + "; it overrides -ExecutionPolicy Bypass",
                         "the runner is not a script file, so it still runs; modules that are not signed will not "
                         "load. If a read fails with 'is not digitally signed', ask for a policy exception",
                         "about_Execution_Policies (precedence)", dict(pol)))
    else:
        out.append(Check("execution_policy", OK, f"effective {pol.get('effective', '?')} (the bootstrap passes "
                                                 "-ExecutionPolicy Bypass)", evidence=dict(pol)))
    mods = facts.get("modules") or {}
    for m in needs.modules:
        present = bool(mods.get(m))
        advice, ref = MODULE_ADVICE.get(m.lower(), (f"install the {m} module", None))
        status = WARNING if m.lower() == "operationsmanager" else CRITICAL
        out.append(Check(f"module:{m}", OK, "installed") if present else
                   Check(f"module:{m}", status, "not installed", advice, ref))
    lic = facts.get("licensing")
    if "kms_host" in needs.kinds:
        if lic and lic.get("ok"):
            out.append(Check("licensing", OK, "Get-CimInstance SoftwareLicensingService answers"))
        else:
            err = (lic or {}).get("error") or "not read"
            out.append(Check("licensing", CRITICAL, f"SoftwareLicensingService cannot be read: {err}",
                             "check the Software Protection service (sppsvc) and the WMI repository "
                             "(`winmgmt /verifyrepository`)", "A.2"))
    else:
        out.append(Check("licensing", SKIPPED, "no kms_host resource on this host"))
    scom = facts.get("scom")
    if "monitoring_agent" in needs.kinds:
        if not scom or not scom.get("installed"):
            out.append(Check("scom_agent", OK, "agent not installed yet: the plan installs it (the COM object is "
                                               "checked once it is there)", reference="E.1"))
        elif scom.get("com_object"):
            out.append(Check("scom_agent", OK, "AgentConfigManager.MgmtSvcCfg can be created"))
        else:
            out.append(Check("scom_agent", CRITICAL, f"AgentConfigManager.MgmtSvcCfg cannot be created: "
                                                     f"{scom.get('error') or 'unknown error'}",
                             "repair or reinstall the agent (MOMAgent.msi); the object needs a 64-bit "
                             "powershell.exe", "E.2"))
    else:
        out.append(Check("scom_agent", SKIPPED, "no monitoring_agent resource on this host"))
    out.extend(winrm_checks(facts.get("winrm") or {}, needs))
    out.append(rights_check(facts.get("identity") or {}, needs))
    out.append(clock_check(facts.get("clock_utc"), controller_utc))
    return out


def winrm_checks(w: Mapping[str, Any], needs: Needs) -> list[Check]:
    if w.get("error") or w.get("max_envelope_kb") is None:
        return [Check("winrm_limits", WARNING, f"WSMan:\\localhost could not be read: {w.get('error') or 'no data'}",
                      "reading WinRM's limits needs an administrator; run preflight with the account the plan uses "
                      "(the limits were not compared)", "winrm get winrm/config")]
    out = []
    env_need = envelope_needed_kb(needs)
    env = int(w["max_envelope_kb"])
    ev = {"max_envelope_kb": env, "needed_kb": env_need, "largest_stdin": needs.largest_stdin}
    out.append(Check("winrm:MaxEnvelopeSizekb", OK, f"{env} KB >= {env_need} KB this plan sends per message",
                     evidence=ev) if env >= env_need else
               Check("winrm:MaxEnvelopeSizekb", CRITICAL, f"{env} KB < {env_need} KB this plan sends per message",
                     "raise it (Windows' default is 500): `Set-Item WSMan:\\localhost\\MaxEnvelopeSizekb 500`",
                     "winrm-protocol.md (MaxEnvelopeSize)", ev))
    t_need = int(needs.operation_timeout_s * 1000)
    tmo = int(w["max_timeout_ms"])
    ev = {"max_timeout_ms": tmo, "operation_timeout_ms": t_need}
    out.append(Check("winrm:MaxTimeoutms", OK, f"{tmo} ms >= the {t_need} ms OperationTimeout kmsdeploy asks for",
                     evidence=ev) if tmo >= t_need else
               Check("winrm:MaxTimeoutms", CRITICAL, f"{tmo} ms < the {t_need} ms OperationTimeout kmsdeploy asks for",
                     f"raise it (`Set-Item WSMan:\\localhost\\MaxTimeoutms 60000`) or lower "
                     f"ansible_winrm_operation_timeout_sec below {tmo // 1000} s", "winrm get winrm/config", ev))
    m_need = memory_needed_mb(needs)
    mem = int(w["max_memory_per_shell_mb"])
    ev = {"max_memory_per_shell_mb": mem, "estimated_mb": m_need, "largest_payload": needs.largest_payload}
    if mem == 0 or mem >= m_need:  # 0 = unlimited
        out.append(Check("winrm:MaxMemoryPerShellMB", OK, f"{mem or 'unlimited'} MB >= ~{m_need} MB estimated",
                         evidence=ev))
    else:
        out.append(Check("winrm:MaxMemoryPerShellMB", CRITICAL, f"{mem} MB < ~{m_need} MB estimated for this plan's "
                                                                "largest call",
                         "raise it (default 1024 since Windows Server 2012): "
                         "`Set-Item WSMan:\\localhost\\Shell\\MaxMemoryPerShellMB 1024`", "winrm get winrm/config/winrs",
                         ev))
    return out


ADMIN_KINDS = ("kms_host", "firewall_rule", "monitoring_agent")


def rights_check(ident: Mapping[str, Any], needs: Needs) -> Check:
    groups = [str(g) for g in ident.get("groups") or []]
    dns_admin = any(g.lower().endswith("\\dnsadmins") for g in groups)
    ev = {"account": ident.get("name"), "admin": ident.get("admin"), "dns_admins": dns_admin}
    if ident.get("error") or ident.get("admin") is None:
        return Check("rights", WARNING, f"the account's rights could not be read: {ident.get('error') or 'no data'}",
                     "check the account is a local administrator of this host", None, ev)
    need_admin = sorted(k for k in needs.kinds if k in ADMIN_KINDS)
    if need_admin and not ident["admin"]:
        return Check("rights", CRITICAL, f"{ident.get('name')} is not a local administrator (needed for "
                                         f"{', '.join(need_admin)})",
                     "add the account to BUILTIN\\Administrators (remote UAC: a domain account in that group gets a "
                     "full token over WinRM)", "A.1 (elevation), A.6 0x80070005", ev)
    if "dns_record" in needs.kinds and not (ident["admin"] or dns_admin):
        return Check("rights", CRITICAL, f"{ident.get('name')} is neither an administrator nor in DnsAdmins",
                     "add the account to the domain's DnsAdmins group", "B.2", ev)
    return Check("rights", OK, f"{ident.get('name')}: " + ("administrator" if ident["admin"] else "DnsAdmins"),
                 evidence=ev)


def clock_check(host_utc: Any, controller_utc: _dt.datetime) -> Check:
    t = parse_time(host_utc)
    if t is None:
        return Check("clock", WARNING, f"the host's clock could not be read ({host_utc!r})")
    skew = (t - controller_utc).total_seconds()
    ev = {"host_utc": str(host_utc), "controller_utc": controller_utc.isoformat(), "skew_s": round(skew, 3)}
    what = f"{abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} this controller"
    if abs(skew) > SKEW_CRITICAL_S:
        return Check("clock", CRITICAL, what, "fix time sync (`w32tm /resync`; domain members follow the PDC "
                                              "emulator): Kerberos refuses skews over 5 minutes, KMS clients fail "
                                              "with 0xC004F06C", "A.6 0xC004F06C", ev)
    if abs(skew) > SKEW_WARNING_S:
        return Check("clock", WARNING, what, "fix time sync (`w32tm /resync`): activation reports bucket events by "
                                             "day", "A.6 0xC004F06C", ev)
    return Check("clock", OK, what if abs(skew) >= 1 else "in step with this controller", evidence=ev)


def status_of(checks: Iterable[Check]) -> str:
    return worst(c.status for c in checks)
