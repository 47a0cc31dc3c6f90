"""Linux gateway (SSH + nftables) preflight: ONE command over the SSH connection, with the
same become (sudo) the provider uses, running a fixed read-only script whose values arrive
as positional arguments (never pasted in), like the provider's apply script.

It reports: the effective uid (become works when it is the ``ansible_become_user``'s, root
by default: nft needs CAP_NET_ADMIN), whether ``nft`` is there and its version, whether it
speaks JSON (``nft -j list tables``: kmsdeploy reads with ``-j``), our table as
``nft -s -j list table`` prints it (parsed by the provider's own parser: foreign rules
there make ``plan`` refuse the target), which other firewall managers systemd runs
(firewalld, ufw, and whether nftables.service is enabled), and the boot-time nftables
configuration (host var ``kmsdeploy_nft_boot_config``, default ``/etc/nftables.conf``):
one that starts with ``flush ruleset`` and does not include kmsdeploy's persisted table
(``kmsdeploy_nft_persist``) wipes our table at every boot.

Without systemd (containers, some appliances) the unit states read ``unknown`` and are
reported as not visible, never as green.
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

from ..model import Host, Resource
from ..providers.base import RunContext
from ..providers.nftables import NftSettings
from ..providers.nftables_parse import ParseError, parse_table
from .checks import CRITICAL, OK, SKIPPED, WARNING, Check

BOOT_CONFIG = "/etc/nftables.conf"
TABLE_MARK = "---kmsdeploy-table---"
MIN_NFT = (0, 9, 0)  # JSON output arrived in nftables 0.8/0.9; kmsdeploy's parser expects 0.9's shape

PREFLIGHT_SCRIPT = r"""set -u
family=$1; table=$2; boot=$3
echo "uid=$(id -u)"
if command -v nft >/dev/null 2>&1; then
  echo "nft=$(command -v nft)"
  echo "nft_version=$(nft --version 2>&1 | head -n 1)"
  if nft -j list tables >/dev/null 2>&1; then echo "json=yes"; else echo "json=no"; fi
else
  echo "nft=missing"
fi
for unit in firewalld ufw nftables; do
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    echo "unit_$unit=$(systemctl is-active "$unit" 2>/dev/null | head -n 1)/$(systemctl is-enabled "$unit" 2>/dev/null | head -n 1)"
  else
    echo "unit_$unit=unknown/unknown"
  fi
done
if [ -r "$boot" ]; then
  echo "boot=present"
  if grep -Eq '^[[:space:]]*flush[[:space:]]+ruleset' "$boot"; then echo "boot_flush=yes"; else echo "boot_flush=no"; fi
  grep -Eo '^[[:space:]]*include[[:space:]]+"[^"]*"' "$boot" | sed -e 's/^[[:space:]]*include[[:space:]]*"/boot_include=/' -e 's/"$//'
else
  echo "boot=absent"
fi
if command -v nft >/dev/null 2>&1; then
  echo "---kmsdeploy-table---"
  nft -s -j list table "$family" "$table" 2>&1 || true
fi
"""


def parse_output(text: str) -> dict[str, Any]:
    """The script's ``key=value`` lines and the table text after :data:`TABLE_MARK`. Pure."""
    head, _, table = text.partition(TABLE_MARK + "\n")
    facts: dict[str, Any] = {"boot_include": []}
    for line in head.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key == "boot_include":
            facts["boot_include"].append(value.strip())
        else:
            facts[key] = value.strip()
    facts["table"] = table.strip() if TABLE_MARK in text else None
    return facts


def nft_version(text: str) -> tuple[int, ...] | None:
    m = re.search(r"v(\d+)\.(\d+)(?:\.(\d+))?", text or "")
    return tuple(int(x or 0) for x in m.groups()) if m else None


def gateway_checks(f: Mapping[str, Any], settings: NftSettings, *, become_user: str, boot_config: str,
                   uid_wanted: int | None) -> list[Check]:
    """Every gateway check from the parsed facts. Pure."""
    out: list[Check] = []
    uid = f.get("uid")
    if uid_wanted is not None and uid != str(uid_wanted):
        out.append(Check("become", CRITICAL, f"commands run as uid {uid}, not {become_user} (uid {uid_wanted}): nft "
                                             "needs CAP_NET_ADMIN",
                         "set ansible_become: true (sudo) for this gateway, or connect as root", "docs/linux-gateways.md",
                         {"uid": uid}))
    else:
        out.append(Check("become", OK, f"commands run as uid {uid}", evidence={"uid": uid}))
    if f.get("nft") in (None, "missing"):
        out.append(Check("nft", CRITICAL, "nft is not installed", "install nftables (`apt-get install nftables`)",
                         "docs/linux-gateways.md"))
        return out
    version = nft_version(f.get("nft_version", ""))
    ev = {"path": f.get("nft"), "version": f.get("nft_version")}
    if version is None or version < MIN_NFT:
        out.append(Check("nft", CRITICAL, f"{f.get('nft_version') or 'unknown version'}: kmsdeploy needs nftables "
                                          "0.9 or later", "upgrade nftables", "docs/linux-gateways.md", ev))
    else:
        out.append(Check("nft", OK, f.get("nft_version", ""), evidence=ev))
    if f.get("json") != "yes":
        out.append(Check("nft_json", CRITICAL, "`nft -j` does not work: this nft was built without JSON support",
                         "install a distribution nftables built with libjansson (Debian/RHEL packages are)",
                         "docs/linux-gateways.md"))
    else:
        out.append(Check("nft_json", OK, "nft -j works"))
    out.append(table_check(f.get("table"), settings))
    managers = []
    for unit in ("firewalld", "ufw"):
        state = str(f.get(f"unit_{unit}", "unknown/unknown")).split("/")[0]
        if state == "active":
            managers.append(unit)
    units_known = not str(f.get("unit_firewalld", "unknown")).startswith("unknown")
    if managers:
        out.append(Check("firewall_manager", WARNING, f"{', '.join(managers)} is active: its own base chains see "
                                                      "TCP 1688 too, and a drop there wins over our accept",
                         "allow TCP 1688 in it as well, or disable it on this gateway (kmsdeploy never edits its "
                         "rules)", "docs/linux-gateways.md", {"units": managers}))
    elif units_known:
        out.append(Check("firewall_manager", OK, "no firewalld or ufw running"))
    else:
        out.append(Check("firewall_manager", SKIPPED, "no systemd here: firewalld/ufw state not visible"))
    out.append(boot_check(f, settings, boot_config))
    return out


def table_check(table_text: str | None, settings: NftSettings) -> Check:
    where = f"table {settings.family} {settings.table}"
    if table_text is None:
        return Check("table", SKIPPED, "not read")
    if "No such file or directory" in table_text or not table_text:
        return Check("table", OK, f"{where} does not exist yet: the first apply creates it")
    try:
        state = parse_table(table_text.encode("utf-8"))
    except ParseError as exc:
        return Check("table", CRITICAL, f"{where} cannot be read: {exc}", "report it with `nft -j list table` output")
    ev = {"owned_rules": sorted(state.rules), "foreign": state.foreign[:10]}
    if state.foreign and not settings.prune_foreign:
        return Check("table", CRITICAL, f"{where} holds {len(state.foreign)} rule(s) kmsdeploy does not own: plan "
                                        "refuses this target",
                     "move them to a table of your own, or set kmsdeploy_nft_prune_foreign: true to let the next "
                     "apply drop them", "docs/linux-gateways.md", ev)
    return Check("table", OK, f"{where}: {len(state.rules)} kmsdeploy rule(s)", evidence=ev)


def boot_check(f: Mapping[str, Any], settings: NftSettings, boot_config: str) -> Check:
    nft_unit = str(f.get("unit_nftables", "unknown/unknown"))
    ev = {"boot_config": boot_config, "nftables_unit": nft_unit, "includes": list(f.get("boot_include") or []),
          "persist": settings.persist}
    if f.get("boot") != "present":
        return Check("boot_config", OK, f"no {boot_config}: nothing flushes the ruleset at boot from there"
                     + ("" if settings.persist else " (and kmsdeploy_nft_persist is not set: the table is not "
                        "restored after a reboot)"), evidence=ev)
    if settings.persist and settings.persist == boot_config:
        return Check("boot_config", OK, f"{boot_config} is kmsdeploy's persisted table", evidence=ev)
    included = bool(settings.persist) and settings.persist in (f.get("boot_include") or [])
    if f.get("boot_flush") == "yes" and not included:
        return Check("boot_config", WARNING, f"{boot_config} starts with `flush ruleset` and does not include "
                                             "kmsdeploy's table: a reboot (nftables.service) removes the KMS rules",
                     (f'add `include "{settings.persist}"` after its flush' if settings.persist else
                      "set kmsdeploy_nft_persist to a file and include it there after the flush"),
                     "docs/linux-gateways.md", ev)
    return Check("boot_config", OK, f"{boot_config} " + ("includes kmsdeploy's table" if included else
                                                         "does not flush the ruleset"), evidence=ev)


def check_target(host: Host, resources: Sequence[Resource], ctx: RunContext, transport_for) -> tuple[list[Check], int]:
    settings = NftSettings.from_host(host)
    boot = str(host.vars.get("kmsdeploy_nft_boot_config", BOOT_CONFIG))
    transport = transport_for(host, ctx)
    with transport as t:
        rc, out, err = t.run(["/bin/sh", "-c", PREFLIGHT_SCRIPT, "kmsdeploy-preflight", settings.family,
                              settings.table, boot])
        facts = parse_output(out.decode("utf-8", "replace"))
        if rc != 0 or "uid" not in facts:
            return [Check("command", CRITICAL, f"the preflight command failed (exit {rc}): "
                                               f"{err.decode('utf-8', 'replace').strip()[:200]}",
                          "check that /bin/sh and sudo work for this account")], t.requests
        # nft needs root, unless become goes to another account on purpose (then it is not judged)
        wanted = None if (t.become and t.become_user != "root") else 0
        return gateway_checks(facts, settings, become_user=t.become_user if t.become else t.user,
                              boot_config=boot, uid_wanted=wanted), t.requests
