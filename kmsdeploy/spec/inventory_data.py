"""The inventory being built: groups, hosts and their inventory variables (pure).

Every source format (YAML, INI, a dynamic inventory's JSON) is read into one
:class:`Estate` through the same few operations Ansible's ``InventoryData`` offers
(``add_group``, ``add_child``, ``add_host``, ``set_group_var``, ``set_host_var``), so the
formats cannot drift apart in how they merge. The rules follow Ansible 2.16-2.19:

* ``all`` and ``ungrouped`` always exist and ``ungrouped`` is the first child of ``all``;
* a group's direct hosts and child groups keep the order in which they were added;
* adding a child that is already an ancestor is an error (a cycle);
* ``ansible_group_priority`` set on a group in the inventory is the group's priority
  (an int, default 1), not a variable;
* setting a variable again replaces it whole (``hash_behaviour=replace``);
* :meth:`Estate.reconcile` (after the last source) makes every parentless group a child
  of ``all`` and puts hosts that are in no group but ``all`` into ``ungrouped``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..model import Location

PRIORITY_VAR = "ansible_group_priority"


class InventoryProblem(ValueError):
    """A structural error, with the location of the entry that caused it."""

    def __init__(self, message: str, loc: Location | None):
        super().__init__(message)
        self.message = message
        self.loc = loc


@dataclass
class Group:
    name: str
    loc: Location | None = None
    hosts: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    priority: int = 1
    #: the names in ``hosts``, for O(1) membership tests
    host_set: set[str] = field(default_factory=set)


@dataclass
class Estate:
    """Groups and hosts in creation order; host vars as set by the inventory sources."""

    groups: dict[str, Group] = field(default_factory=dict)
    #: host -> its inventory variables (creation order of the hosts)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)
    host_locations: dict[str, Location] = field(default_factory=dict)
    #: hosts and groups given variables or hosts since the reader last reset these (the
    #: reader checks the values of formats that no schema validated: INI, JSON)
    touched_hosts: set[str] = field(default_factory=set)
    touched_groups: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.groups:
            self.add_group("all")
            self.add_group("ungrouped")
            self.add_child("all", "ungrouped", None)

    def add_group(self, name: str, loc: Location | None = None) -> Group:
        g = self.groups.get(name)
        if g is None:
            g = self.groups[name] = Group(name, loc)
        elif g.loc is None:
            g.loc = loc
        return g

    def ancestors(self, name: str) -> set[str]:
        seen: set[str] = set()
        todo = list(self.groups[name].parents)
        while todo:
            p = todo.pop()
            if p not in seen:
                seen.add(p)
                todo.extend(self.groups[p].parents)
        return seen

    def add_child(self, parent: str, child: str, loc: Location | None) -> None:
        if parent == child:
            raise InventoryProblem(f"group {child!r} cannot be a child of itself", loc)
        if child == "all":
            raise InventoryProblem("group 'all' cannot be a child group", loc)
        p, c = self.groups[parent], self.add_group(child, loc)
        if child in p.children:
            return
        if child in self.ancestors(parent):
            path = self._path(child, parent)
            raise InventoryProblem(
                f"adding group {child!r} as a child of {parent!r} makes a cycle ({' -> '.join(path + [child])})", loc)
        p.children.append(child)
        c.parents.append(parent)

    def _path(self, top: str, bottom: str) -> list[str]:
        """A parent->child path from ``top`` down to ``bottom`` (for the cycle message)."""
        todo: list[list[str]] = [[top]]
        while todo:
            path = todo.pop(0)
            if path[-1] == bottom:
                return path
            todo.extend(path + [c] for c in self.groups[path[-1]].children if c not in path)
        return [top, bottom]

    def add_host(self, host: str, group: str | None, loc: Location | None, port: int | None = None) -> None:
        if not host:
            raise InventoryProblem("empty host name", loc)
        if host not in self.hosts:
            self.hosts[host] = {}
            if loc is not None:
                self.host_locations[host] = loc
            if port is not None:
                self.hosts[host]["ansible_port"] = port
        elif port is not None:
            self.hosts[host]["ansible_port"] = port
        self.touched_hosts.add(host)
        if group is not None:
            g = self.groups[group]
            if host not in g.host_set:
                g.host_set.add(host)
                g.hosts.append(host)

    def set_group_var(self, group: str, key: str, value: Any, loc: Location | None) -> None:
        g = self.groups[group]
        if key == PRIORITY_VAR:
            try:
                g.priority = int(value)
            except (TypeError, ValueError):
                raise InventoryProblem(f"{PRIORITY_VAR} must be an integer, not {value!r}", loc) from None
            return
        g.vars[key] = value
        self.touched_groups.add(group)

    def set_host_var(self, host: str, key: str, value: Any) -> None:
        self.hosts[host][key] = value
        self.touched_hosts.add(host)

    def reconcile(self) -> None:
        """Ansible's ``reconcile_inventory``: parentless groups under ``all``; ``ungrouped``."""
        for name in list(self.groups):
            if name != "all" and not self.groups[name].parents:
                self.add_child("all", name, None)
        ungrouped = self.groups["ungrouped"]
        # a host listed in ungrouped and elsewhere is not ungrouped (Ansible clears it)
        members = self.members()
        ungrouped.hosts = [h for h in ungrouped.hosts if not self._grouped(h, members)]
        ungrouped.host_set = set(ungrouped.hosts)
        for h in self.hosts:
            if h not in ungrouped.host_set and not self._grouped(h, members):
                ungrouped.hosts.append(h)
                ungrouped.host_set.add(h)

    def _grouped(self, host: str, members: dict[str, set[str]]) -> bool:
        return any(host in m for g, m in members.items() if g not in ("all", "ungrouped"))

    def members(self) -> dict[str, set[str]]:
        """group -> every host in it or in its descendants."""
        out: dict[str, set[str]] = {}

        def of(name: str) -> set[str]:
            hit = out.get(name)
            if hit is None:
                out[name] = set()  # cycles are refused by add_child; this only guards recursion
                hit = set(self.groups[name].hosts)
                for c in self.groups[name].children:
                    hit |= of(c)
                out[name] = hit
            return hit

        for name in self.groups:
            of(name)
        return out

    def depths(self) -> dict[str, int]:
        """group -> its depth (longest path from ``all``), Ansible's sort key for vars."""
        depth: dict[str, int] = {"all": 0}
        order: list[str] = []
        seen: set[str] = set()

        def visit(name: str) -> None:  # topological order, parents first
            if name in seen:
                return
            seen.add(name)
            for p in self.groups[name].parents:
                visit(p)
            order.append(name)

        for name in self.groups:
            visit(name)
        for name in order:
            if name != "all":
                depth[name] = 1 + max((depth.get(p, 0) for p in self.groups[name].parents), default=0)
        return depth
