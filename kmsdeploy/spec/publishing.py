"""The `_vlmcs._tcp` record set has two possible writers; only one may manage it.

A KMS host publishes its own SRV record by default and re-registers it every 24 hours
(reference A.1 `/sdns`, A.5). If kmsdeploy also manages `_vlmcs._tcp` in the same
domain, the two writers fight forever (the endless drift Ansible users hit). So a
play either lets hosts publish (kmsdeploy then only checks the result, e.g. with
`kmsdeploy health`) or sets `dns_publishing: false` on its KMS hosts and manages the
set itself. This check rejects the mix, pointing at both places.

A KMS host publishes into its own primary DNS suffix (taken from the host var
``kmsdeploy_dns_domain``, else from the inventory name or ``ansible_host`` when they
are fully qualified names) and into every domain of ``publish_domains`` (A.3).
"""
from __future__ import annotations

import ipaddress
from typing import Mapping, Sequence

from ..errors import Diagnostic
from ..model import Host, Resource

SRV_OWNER = "_vlmcs._tcp."


def host_domain(host: Host | None) -> str | None:
    if host is None:
        return None
    explicit = host.vars.get("kmsdeploy_dns_domain")
    if isinstance(explicit, str) and explicit:
        return explicit.rstrip(".").lower()
    for name in (host.name, host.address):
        try:
            ipaddress.ip_address(name)
            continue
        except ValueError:
            pass
        if "." in name.strip("."):
            return name.strip(".").split(".", 1)[1].lower()
    return None


def publishing_domains(resource: Resource, host: Host | None) -> set[str]:
    from ..kinds.kms_host import publish_domains_of, publishes_srv

    if resource.state == "absent" or not publishes_srv(resource.desired):
        return set()
    domains = {d.rstrip(".").lower() for d in publish_domains_of(resource.desired)}
    own = host_domain(host)
    if own:
        domains.add(own)
    return domains


def check_srv_writers(resources: Sequence[Resource], hosts: Mapping[str, Host]) -> list[Diagnostic]:
    publishers: dict[str, list[Resource]] = {}
    for r in resources:
        if r.ref.kind == "kms_host":
            for d in publishing_domains(r, hosts.get(r.ref.target)):
                publishers.setdefault(d, []).append(r)
    out = []
    for r in resources:
        if r.ref.kind != "dns_record" or r.state == "absent" or str(r.desired.get("type", "")).upper() != "SRV":
            continue
        name = str(r.desired.get("name", "")).lower()
        if not name.startswith(SRV_OWNER):
            continue
        domain = name[len(SRV_OWNER):].rstrip(".")
        for kms in publishers.get(domain, []):
            where = f" ({kms.location})" if kms.location else ""
            loc = r.location
            out.append(Diagnostic(
                f"_vlmcs._tcp.{domain} is managed here, but KMS host {kms.ref.target}{where} still publishes its own "
                f"SRV record into {domain} (dns_publishing is on; it is the Windows default) and re-registers it every 24 hours: "
                f"the two writers would fight forever. Set dns_publishing: false on that kms_host, or let the hosts "
                f"publish and stop managing this record set.",
                loc.file if loc else None, loc.line if loc else None, loc.col if loc else None))
    return out
