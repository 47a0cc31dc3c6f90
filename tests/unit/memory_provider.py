"""An in-memory kind + provider for PURE unit tests of the planner, executor and CLI plumbing.

It stands in for no real service: integration tests use BIND, Samba, sshd and the lab.
"""
from __future__ import annotations

from typing import Any, Mapping

from kmsdeploy.kinds.base import Kind
from kmsdeploy.model import Host, Resource
from kmsdeploy.providers.base import ApplyResult, Provider
from kmsdeploy.transports.base import Transport


class NoteKind(Kind):
    name = "note"

    def identity(self, spec):
        return spec["title"]

    def normalize(self, spec):
        return {"title": spec["title"], "text": spec.get("text", "")}


class MemoryTransport(Transport):
    kind = "memory"

    def __init__(self, store):
        self.store = store
        self.requests = 0

    def open(self):
        if self.store.get("_down"):
            from kmsdeploy.errors import UnreachableError
            raise UnreachableError("memory target is down", transient=False)

    def close(self):
        pass


class MemoryProvider(Provider):
    connection = "memory"
    kinds = frozenset({"note"})

    def __init__(self):
        self.stores: dict[str, dict] = {}
        self.apply_calls = 0

    def transport(self, host: Host, ctx):
        return MemoryTransport(self.stores.setdefault(host.name, {}))

    def read(self, transport, host, resources, ctx):
        transport.requests += 1
        return {r.ref: transport.store.get(r.ref.name) for r in resources}

    def apply(self, transport, host, changes, resources: Mapping[Any, Resource], ctx):
        transport.requests += 1
        self.apply_calls += 1
        out = []
        for c in changes:
            if c.action.value == "delete":
                transport.store.pop(c.ref.name, None)
            elif transport.store.get("_refuse") == c.ref.name:
                out.append(ApplyResult(c.ref, False, "refused by target"))
                continue
            else:
                transport.store[c.ref.name] = dict(c.after)
            out.append(ApplyResult(c.ref, True))
        return out
