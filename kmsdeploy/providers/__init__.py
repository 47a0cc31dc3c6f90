"""Registry of providers by connection type (the host's ``ansible_connection``)."""
from __future__ import annotations

import functools
import importlib

from .base import Provider

#: connection type -> "module:Class"
PROVIDERS: dict[str, str] = {
    "rfc2136": "kmsdeploy.providers.rfc2136:Rfc2136Provider",
    "ssh": "kmsdeploy.providers.nftables:NftablesProvider",
    "ldap": "kmsdeploy.providers.ldap:LdapProvider",
    "winrm": "kmsdeploy.providers.windows:WindowsProvider",
}

#: Ansible spellings that mean the same connection type
ALIASES = {"paramiko": "ssh", "paramiko_ssh": "ssh", "psrp": "winrm", "ldaps": "ldap"}


def connection_type(name: str) -> str:
    return ALIASES.get(name, name)


@functools.cache
def get(connection: str) -> Provider:
    """The provider for a connection type; KeyError when there is none."""
    module, cls = PROVIDERS[connection_type(connection)].split(":")
    return getattr(importlib.import_module(module), cls)()
