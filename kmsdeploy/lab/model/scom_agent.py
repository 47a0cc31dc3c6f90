"""The SCOM / Operations Manager agent of a simulated host (reference E).

- ``scom.install`` behaves like ``msiexec /i MOMAgent.msi /qn`` with the E.1 properties:
  the MSI must exist at the given path (else msiexec's 1619), the management group
  name must be 1-50 alphanumerics (E.2; else 1603), and an installed agent is not
  installed twice (1638).
- Management groups are edited through AgentConfigManager.MgmtSvcCfg (E.2): an added
  group is inactive until ``scom.reload``; removing a missing group is S_FALSE (no error).
- Primary and failover servers live on the management-group side (E.3). They need the
  OperationsManager module on the host running the runner (``om_module`` in the state;
  seeded true). One change per call (E.3): the model refuses a primary that is still
  a failover server, and a failover list that holds the primary — the documented
  example clears failover first, then sets the primary, then failover.
- kmsdeploy's ownership marker of a management group is a REG_SZ value named after the
  group under ``HKLM\\SOFTWARE\\kmsdeploy\\ScomManagementGroups`` holding the owner id
  (docs/windows.md); the model keeps those values in ``markers`` (name -> owner; names
  compared without case, as registry value names are). ``scom.read`` reports each group's
  ``owner`` (None without a marker); install/add_group write it when given an owner,
  remove_group and uninstall clear it, ``scom.mark_group`` writes it (adoption).
- The agent is assumed approved in its management group (E.1 says manual installs
  must be approved or auto-approved; the model auto-approves).
"""
from __future__ import annotations

import re
from typing import Any

from .ops import ModelError, OpContext

MG_NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,50}$")
LOCAL_SYSTEM = "LocalSystem"


def initial_state(msi_path: str | None) -> dict[str, Any]:
    return {"installed": False, "groups": [], "parents": {}, "om_module": True, "markers": {},
            "files": [msi_path] if msi_path else []}


def _scom(ctx: OpContext) -> dict[str, Any]:
    return ctx.state["scom"]


def _need_installed(ctx: OpContext) -> dict[str, Any]:
    s = _scom(ctx)
    if not s["installed"]:
        raise ModelError("KMSDEPLOY_NOT_FOUND", "the SCOM agent is not installed")
    return s


def _owner(s: dict[str, Any], name: str) -> str | None:
    for k, v in (s.get("markers") or {}).items():
        if k.lower() == name.lower():
            return v
    return None


def _mark(s: dict[str, Any], name: str, owner: str | None) -> None:
    markers = {k: v for k, v in (s.get("markers") or {}).items() if k.lower() != name.lower()}
    if owner:
        markers[name] = owner
    s["markers"] = markers


def read(ctx: OpContext, args: dict) -> dict[str, Any]:
    s = _scom(ctx)
    if not s["installed"]:
        return {"installed": False, "management_groups": []}
    return {"installed": True, "management_groups": [
        {**{k: g[k] for k in ("name", "server", "port", "from_ad", "action_account")}, "owner": _owner(s, g["name"])}
        for g in s["groups"]]}


def _group_for_server(ctx: OpContext, server: str, agent: str) -> str:
    s = _scom(ctx)
    if not s.get("om_module"):
        raise ModelError("KMSDEPLOY_NO_MODULE", "the OperationsManager module is not installed")
    if agent.lower() != str(ctx.state.get("fqdn", ctx.host)).lower() or not s["installed"]:
        raise ModelError("KMSDEPLOY_NOT_FOUND", "the agent is not known to the management group (not approved yet?)")
    for name, p in s["parents"].items():
        if server.lower() == p["primary"].lower() or server.lower() in (f.lower() for f in p["failover"]):
            return name
    raise ModelError("0x800706BA", f"cannot connect to management server {server}: it serves none of the agent's groups")


def read_parents(ctx: OpContext, args: dict) -> dict[str, Any]:
    if not _scom(ctx).get("om_module"):
        return {"available": False, "primary": None, "failover": []}
    name = _group_for_server(ctx, args["management_server"], args["agent"])
    p = _scom(ctx)["parents"][name]
    return {"available": True, "primary": p["primary"], "failover": list(p["failover"])}


def install(ctx: OpContext, args: dict) -> None:
    s = _scom(ctx)
    if args["msi_path"] not in s.get("files", []):
        raise ModelError("KMSDEPLOY_MSI", "msiexec exited with 1619")
    if s["installed"]:
        raise ModelError("KMSDEPLOY_MSI", "msiexec exited with 1638")
    if not MG_NAME_RE.match(args["management_group"]):
        raise ModelError("KMSDEPLOY_MSI", "msiexec exited with 1603")
    user = args.get("action_user")
    account = f"{args.get('action_domain') or ''}\\{user}".lstrip("\\") if user else LOCAL_SYSTEM
    s["installed"] = True
    s["groups"] = [{"name": args["management_group"], "server": args["management_server"], "port": int(args["port"]),
                    "from_ad": False, "action_account": account, "active": True}]
    s["parents"] = {args["management_group"]: {"primary": args["management_server"], "failover": []}}
    if args.get("owner"):
        _mark(s, args["management_group"], args["owner"])


def uninstall(ctx: OpContext, args: dict) -> None:
    s = _scom(ctx)
    if not s["installed"]:
        raise ModelError("KMSDEPLOY_MSI", "msiexec exited with 1605")  # product not installed
    for g in s["groups"]:
        _mark(s, g["name"], None)
    s.update(installed=False, groups=[], parents={})


def add_group(ctx: OpContext, args: dict) -> None:
    s = _need_installed(ctx)
    if any(g["name"].lower() == args["name"].lower() for g in s["groups"]):
        raise ModelError("KMSDEPLOY_EXISTS", "a management group with this name is already configured")
    account = s["groups"][0]["action_account"] if s["groups"] else LOCAL_SYSTEM
    s["groups"].append({"name": args["name"], "server": args["server"], "port": int(args["port"]),
                        "from_ad": False, "action_account": account, "active": False})
    s["parents"][args["name"]] = {"primary": args["server"], "failover": []}
    if args.get("owner"):
        _mark(s, args["name"], args["owner"])


def remove_group(ctx: OpContext, args: dict) -> None:
    s = _need_installed(ctx)
    s["groups"] = [g for g in s["groups"] if g["name"].lower() != args["name"].lower()]  # S_FALSE if absent
    s["parents"] = {k: v for k, v in s["parents"].items() if k.lower() != args["name"].lower()}
    _mark(s, args["name"], None)


def mark_group(ctx: OpContext, args: dict) -> None:
    """``scom.mark_group``: New-ItemProperty of the group's marker (adoption)."""
    _mark(_need_installed(ctx), args["name"], args["owner"])


def reload(ctx: OpContext, args: dict) -> None:
    for g in _need_installed(ctx)["groups"]:
        g["active"] = True


def set_primary(ctx: OpContext, args: dict) -> None:
    name = _group_for_server(ctx, args["management_server"], args["agent"])
    s = _scom(ctx)
    p = s["parents"][name]
    if args["primary"].lower() in (f.lower() for f in p["failover"]):
        raise ModelError("KMSDEPLOY_ERROR", "the new primary management server is a failover server of this agent; "
                                            "clear failover first (E.3)")
    p["primary"] = args["primary"]
    for g in s["groups"]:
        if g["name"] == name:
            g["server"] = args["primary"]


def set_failover(ctx: OpContext, args: dict) -> None:
    name = _group_for_server(ctx, args["management_server"], args["agent"])
    p = _scom(ctx)["parents"][name]
    failover = list(args.get("failover") or [])
    if p["primary"].lower() in (f.lower() for f in failover):
        raise ModelError("KMSDEPLOY_ERROR", "the primary management server cannot also be a failover server (E.3)")
    p["failover"] = failover


HANDLERS = {
    "scom.read": read,
    "scom.read_parents": read_parents,
    "scom.install": install,
    "scom.uninstall": uninstall,
    "scom.add_group": add_group,
    "scom.remove_group": remove_group,
    "scom.reload": reload,
    "scom.mark_group": mark_group,
    "scom.set_primary": set_primary,
    "scom.set_failover": set_failover,
}
