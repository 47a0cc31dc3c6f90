"""Registry of kinds. Each kind is one pure module; see :mod:`kmsdeploy.kinds.base`."""
from __future__ import annotations

import functools
import importlib

from .base import Kind

#: kind name -> "module:Class"; modules are imported on first use
KINDS: dict[str, str] = {
    "dns_record": "kmsdeploy.kinds.dns_record:DnsRecord",
    "firewall_rule": "kmsdeploy.kinds.firewall_rule:FirewallRule",
    "kms_host": "kmsdeploy.kinds.kms_host:KmsHost",
    "dkm_container": "kmsdeploy.kinds.dkm_container:DkmContainer",
    "monitoring_agent": "kmsdeploy.kinds.monitoring_agent:MonitoringAgent",
}


def available() -> list[str]:
    """Kinds whose module exists in this build."""
    out = []
    for name in KINDS:
        try:
            get(name)
        except ImportError:
            continue
        out.append(name)
    return out


@functools.cache
def get(name: str) -> Kind:
    """The (stateless) kind object for a kind name; KeyError for unknown kinds."""
    module, cls = KINDS[name].split(":")
    return getattr(importlib.import_module(module), cls)()
