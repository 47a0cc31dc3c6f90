"""Ansible-compatible inventories: YAML, INI, dynamic (script / JSON), group_vars/ and host_vars/.

What ``ansible-inventory -i SRC... --list`` shows is what this module builds (the
compatibility suite in tests/integration/test_ansible_oracle.py runs real Ansible to
prove it). See docs/specs.md "Inventory".

Sources (``-i``, repeatable, read in the order given into one inventory):

* a **file**, format by content: an executable file is a dynamic inventory script
  (run with ``--list``, :mod:`.inventory_script`); ``.yml``/``.yaml`` is YAML; ``.ini`` is
  INI (:mod:`.inventory_ini`); ``.json`` and anything starting with ``{`` is JSON (the
  ``ansible-inventory --list`` shape, or the YAML shape); otherwise a file whose first
  meaningful line is a ``[section]`` or a host line is INI, else YAML;
* a **directory**: every file in it, in name order (subdirectories too), skipping hidden
  files, ``group_vars``, ``host_vars`` and Ansible's ignored extensions
  (:data:`IGNORED_EXTENSIONS`).

Variables, lowest precedence first (Ansible's default ``VARIABLE_PRECEDENCE``; a later
source replaces a whole top-level variable, ``hash_behaviour=replace``)::

    all's inventory vars < every other group's inventory vars (sorted)
    < group_vars/all next to each inventory source < group_vars/all next to the playbook
    < group_vars/<group> next to each source (sorted) < group_vars/<group> next to the playbook
    < the host's inventory vars < host_vars/<host> next to each source < ... next to the playbook

"sorted" is Ansible's group order: depth (longest path from ``all``), then
``ansible_group_priority`` (set in the inventory; default 1), then name. Vars files are
``NAME``, ``NAME.yml``, ``NAME.yaml`` or ``NAME.json`` (the first that exists) or a
directory ``NAME/`` whose files (no extension or one of those) are read in name order,
subdirectories in place. Any ``{env: NAME}`` / ``{file: PATH}`` mapping in variables
becomes a :class:`~kmsdeploy.model.SecretRef`.

Sites: the children of a group named ``sites`` are the sites; a host's site is the site
group that contains it directly or through nested groups; a host in two sites is an error
unless its variables set ``site``.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from ..errors import Diagnostic, SpecError
from ..model import Host, Location
from .hostrange import RangeError, expand
from .inventory_data import Estate, InventoryProblem
from .inventory_ini import looks_like_ini, parse_ini, split_host_port
from .inventory_script import ScriptError, apply_list, decode_json, is_list_shape, run_script, timeout_seconds
from .schemas import SchemaSet
from .secrets import is_secret_mapping, sensitive, to_ref
from .validate import schema_diagnostics
from .vault import VaultError, VaultSecrets, decrypt, is_vault
from .yamlpos import YDict, YList, load_yaml, parse_yaml

#: a vars file is NAME or NAME + one of these (Ansible's YAML_FILENAME_EXTENSIONS)
VARS_EXTENSIONS = ("", ".yml", ".yaml", ".json")
#: files skipped in an inventory directory (Ansible's INVENTORY_IGNORE_EXTS default)
IGNORED_EXTENSIONS = (".pyc", ".pyo", ".swp", ".bak", "~", ".rpm", ".md", ".txt", ".rst", ".orig", ".cfg", ".retry")
#: entries always skipped in an inventory directory (Ansible's IGNORED_ALWAYS)
IGNORED_NAMES = ("group_vars", "host_vars", "vars_plugins")
SITES_GROUP = "sites"
_HOST_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,252}$")
_SCHEMA_URI = "https://kmsdeploy.example/schemas/inventory.schema.json"


@dataclass
class Inventory:
    """A loaded inventory (possibly with problems in ``diagnostics``)."""

    #: the first inventory file read (the given path when nothing could be read)
    path: str
    hosts: dict[str, Host] = field(default_factory=dict)
    #: group -> member host names (transitive, inventory order); includes "all" and "ungrouped"
    groups: dict[str, list[str]] = field(default_factory=dict)
    host_locations: dict[str, Location] = field(default_factory=dict)
    sites: list[str] = field(default_factory=list)
    #: (path, bytes) of every file read, in reading order (for the specs digest)
    files: list[tuple[str, bytes]] = field(default_factory=list)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    #: the sources as given (files, directories, scripts)
    sources: list[str] = field(default_factory=list)
    #: direct structure (hosts and child groups in Ansible's order), for ``kmsdeploy inventory``
    estate: Estate | None = None


def secret_refs(value: Any, declared_in: str, loc: Location | None = None) -> Any:
    """Copy of ``value`` with every ``{env: X}``/``{file: P}`` mapping made a SecretRef."""
    if is_secret_mapping(value):
        return to_ref(value, declared_in, loc)
    if isinstance(value, YDict):
        out = YDict({k: secret_refs(v, declared_in, value.value_loc(k)) for k, v in value.items()}).copy_meta(value)
        return out
    if isinstance(value, dict):
        return {k: secret_refs(v, declared_in, loc) for k, v in value.items()}
    if isinstance(value, YList):
        return YList([secret_refs(v, declared_in, value.item_loc(i)) for i, v in enumerate(value)]).copy_meta(value)
    if isinstance(value, list):
        return [secret_refs(v, declared_in, loc) for v in value]
    return value


def inventory_file(path: str) -> str | None:
    """Kept for callers of the single-file API: ``path`` itself (a directory is a source too)."""
    return path if os.path.exists(path) else None


def ignored_entry(name: str) -> bool:
    """True for directory entries Ansible does not read as inventory sources."""
    return name.startswith(".") or name in IGNORED_NAMES or name.endswith(IGNORED_EXTENSIONS)


def detect_format(path: str, raw: bytes) -> str:
    """``yaml``, ``ini`` or ``json`` for an inventory file (scripts are detected before)."""
    ext = os.path.splitext(path)[1].lower()
    if ext in (".yml", ".yaml"):
        return "yaml"
    if ext == ".ini":
        return "ini"
    text = raw.decode("utf-8", "replace").lstrip("\ufeff")
    if ext == ".json" or text.lstrip().startswith("{"):
        return "json"
    return "ini" if looks_like_ini(text) else "yaml"


class _Reader:
    def __init__(self, sources: Sequence[str], schemas: SchemaSet, playbook_dirs: Sequence[str], vault: VaultSecrets | None):
        self.sources = list(sources)
        self.inv = Inventory(path=self.sources[0] if self.sources else "", sources=list(self.sources))
        self.schemas = schemas
        self.playbook_dirs = list(playbook_dirs)
        #: Ansible Vault passwords for whole encrypted vars files (spec/vault.py)
        self.vault = vault
        self.estate = Estate()
        self.first_file: str | None = None

    # -- helpers -----------------------------------------------------------------------
    def error(self, message: str, loc: Location | None, file: str | None = None) -> None:
        if loc is not None:
            self.inv.diagnostics.append(Diagnostic(message, loc.file, loc.line, loc.col))
        else:
            self.inv.diagnostics.append(Diagnostic(message, file or self.inv.path, 1, 1))

    def warn(self, message: str, file: str) -> None:
        self.inv.diagnostics.append(Diagnostic(message, file, 1, 1, severity="warning"))

    # -- sources -------------------------------------------------------------------------
    def read(self) -> Inventory:
        if not self.sources:
            self.error("no inventory source given", None, "<inventory>")
            return self.inv
        for src in self.sources:
            if not os.path.exists(src):
                self.error(f"inventory source {src} does not exist", None, src)
                continue
            self.source(src, top=True)
        if any(d.severity == "error" for d in self.inv.diagnostics):
            return self.inv
        self.estate.reconcile()
        if self.first_file:
            self.inv.path = self.first_file
        self.inv.estate = self.estate
        self.inv.host_locations = dict(self.estate.host_locations)
        dirs = []
        for src in self.sources:
            d = src if os.path.isdir(src) else os.path.dirname(src)
            dirs.append(d)
        inventory_vars = [self.read_vars_dirs(d) for d in dirs]
        playbook_vars = [self.read_vars_dirs(d) for d in self.playbook_dirs]
        self.build(inventory_vars, playbook_vars)
        return self.inv

    def source(self, path: str, *, top: bool) -> None:
        if os.path.isdir(path):
            try:
                entries = sorted(os.listdir(path))
            except OSError as e:
                self.error(f"cannot read inventory directory: {e.strerror or e}", None, path)
                return
            before = len(self.inv.files)
            for entry in entries:
                if not ignored_entry(entry):
                    self.source(os.path.join(path, entry), top=False)
            if top and len(self.inv.files) == before and not self.estate.hosts:
                self.error(f"inventory directory {path} holds no inventory file", None, path)
            return
        if self.first_file is None:
            self.first_file = path
        if os.access(path, os.X_OK):
            self.script(path)
            return
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError as e:
            self.error(f"cannot read file: {e.strerror or e}", None, path)
            return
        self.inv.files.append((path, raw))
        fmt = detect_format(path, raw)
        self.estate.touched_hosts, self.estate.touched_groups = set(), set()
        if fmt == "ini":
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError as e:
                self.error(f"file is not valid UTF-8 (byte offset {e.start})", None, path)
                return
            self.inv.diagnostics.extend(parse_ini(text, path, self.estate))
            self.check_loose_vars(path)
            return
        data, diags = parse_yaml(raw, path, expect=dict, json_file=fmt == "json")
        self.inv.diagnostics.extend(diags)
        if data is None:
            return
        if fmt == "json" and is_list_shape(data):
            try:
                apply_list(data, Location(path, 1, 1), self.estate)
            except InventoryProblem as e:
                self.error(e.message, e.loc)
            self.check_loose_vars(path)
            return
        self.yaml(data, path)

    def script(self, path: str) -> None:
        timeout = timeout_seconds()
        self.estate.touched_hosts, self.estate.touched_groups = set(), set()
        try:
            raw = run_script(path, ["--list"], timeout)
            self.inv.files.append((path, raw))
            data = decode_json(raw, f"the output of inventory script {path} --list")

            def host_vars(name: str) -> Any:
                out = run_script(path, ["--host", name], timeout)
                return decode_json(out, f"the output of inventory script {path} --host {name}") if out.strip() else {}

            apply_list(data, Location(path, 1, 1), self.estate, host_vars)
        except ScriptError as e:
            self.error(str(e), None, path)
            return
        except InventoryProblem as e:
            self.error(f"inventory script {path}: {e.message}", None, path)
            return
        self.check_loose_vars(path)

    def check_loose_vars(self, path: str) -> None:
        """INI and JSON values were not validated by the YAML schema: check them here, and
        turn secret mappings into references (paths relative to ``path``)."""
        fallback = Location(path, 1, 1)
        for name in sorted(self.estate.touched_groups):
            self.check_vars(self.estate.groups[name].vars, self.estate.groups[name].loc or fallback, path)
        for host in self.estate.touched_hosts:
            self.check_vars(self.estate.hosts[host], self.estate.host_locations.get(host, fallback), path)
            self.check_host_name(host, self.estate.host_locations.get(host, fallback))

    def check_vars(self, values: dict[str, Any], loc: Location, path: str) -> None:
        if not values:
            return
        doc = YDict(values, loc=loc)
        errors, _ = self.schemas.validate("inventory.schema.json", doc, pointer="/$defs/vars")
        if errors:
            reg = self.schemas.registry.resolver(base_uri=_SCHEMA_URI)
            self.inv.diagnostics.extend(schema_diagnostics(errors, doc, what="variables", resolver=reg,
                                                           is_secret_schema=self.schemas.is_secret_schema, fallback=loc))
        for k, v in values.items():
            if isinstance(v, (dict, list)):
                values[k] = secret_refs(v, path, loc)

    def check_host_name(self, name: str, loc: Location | None) -> None:
        if not _HOST_NAME.match(name):
            self.error(f"invalid host name {name!r} (letters, digits, '_', '.', ':' and '-')", loc)

    # -- YAML inventories ------------------------------------------------------------------
    def yaml(self, data: YDict, path: str) -> None:
        errors, _ = self.schemas.validate("inventory.schema.json", data, cache=False)
        reg = self.schemas.registry.resolver(base_uri=_SCHEMA_URI)
        self.inv.diagnostics.extend(
            schema_diagnostics(errors, data, what="inventory", resolver=reg, is_secret_schema=self.schemas.is_secret_schema,
                               fallback=data.loc)
        )
        if errors:
            return  # shapes are wrong: do not guess further
        for name, body in data.items():
            self.estate.add_group(str(name), data.key_loc(name))
            self.walk(str(name), body, path)

    def walk(self, name: str, body: Any, file: str) -> None:
        if not isinstance(body, YDict):
            return
        est = self.estate
        # Ansible's yaml plugin reads vars, then children, then hosts; only the creation
        # order of hosts depends on that, and we keep document order for it (Inventory.hosts)
        for key, value in body.items():
            if key == "vars" and isinstance(value, dict):
                for k, v in value.items():
                    try:
                        est.set_group_var(name, k, secret_refs(v, file, value.value_loc(k)), value.value_loc(k))
                    except InventoryProblem as e:
                        self.error(e.message, e.loc)
            elif key == "hosts" and isinstance(value, YDict):
                for pattern, hvars in value.items():
                    loc = value.key_loc(pattern)
                    host_part, port = split_host_port(str(pattern))
                    try:
                        names = expand(host_part)
                    except RangeError as e:
                        self.error(e.message, Location(loc.file, loc.line, loc.col + e.offset) if loc else None)
                        continue
                    converted = self.vars_of(hvars, file)
                    for host in names:
                        self.check_host_name(host, loc)
                        est.add_host(host, name, loc, port)
                        for k, v in converted.items():
                            est.set_host_var(host, k, v)
            elif key == "children" and isinstance(value, YDict):
                for child, cbody in value.items():
                    child = str(child)
                    try:
                        est.add_child(name, child, value.key_loc(child))
                    except InventoryProblem as e:
                        self.error(e.message, e.loc)
                        continue
                    self.walk(child, cbody, file)

    def vars_of(self, data: Any, file: str) -> dict[str, Any]:
        if not isinstance(data, dict):
            return {}
        return secret_refs(data, file)

    # -- group_vars/ and host_vars/ ------------------------------------------------------
    def read_vars_dirs(self, base: str) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """(group -> vars, host -> vars) from ``base``/group_vars and ``base``/host_vars."""
        return (self.read_vars_dir(os.path.join(base, "group_vars"), self.estate.groups, "group"),
                self.read_vars_dir(os.path.join(base, "host_vars"), self.estate.hosts, "host"))

    def read_vars_dir(self, directory: str, known: Mapping[str, Any], what: str) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if not os.path.isdir(directory):
            return out
        try:
            entries = sorted(os.listdir(directory))
        except OSError as e:
            self.error(f"cannot read directory: {e.strerror or e}", None, directory)
            return out
        # entities are looked up by name, as Ansible's host_group_vars plugin does: a file for a
        # name that is not in the inventory is never read (a warning guards against typos)
        claimed: set[str] = set()
        for name in known:
            files = self.vars_files(directory, name)
            if files:
                claimed.update(os.path.relpath(f, directory).split(os.sep, 1)[0] for f in files)
                merged: dict[str, Any] = {}
                for f in files:
                    merged.update(self.read_vars_file(f))
                out[name] = merged
        for entry in entries:
            if entry in claimed or entry.startswith(".") or entry.endswith("~"):
                continue
            stem, ext = os.path.splitext(entry)
            if os.path.isfile(os.path.join(directory, entry)) and ext not in VARS_EXTENSIONS:
                continue  # not a vars file (README.md, notes.txt)
            name = stem if ext in VARS_EXTENSIONS and ext else entry
            if name in known:
                self.warn(f"{os.path.basename(directory)}/{entry}: ignored: only the first of {name}/, {name}.yml, "
                          f"{name}.yaml, {name}.json is read (as in Ansible)", os.path.join(directory, entry))
                continue
            self.warn(f"{os.path.basename(directory)}/{entry}: no {what} named {name!r} in the "
                      "inventory; ignored", os.path.join(directory, entry))
        return out

    def vars_files(self, directory: str, name: str) -> list[str]:
        """Ansible's ``find_vars_files``: the first of NAME, NAME.yml, NAME.yaml, NAME.json."""
        if os.sep in name or name in (".", ".."):
            return []
        base = os.path.join(directory, name)
        for ext in VARS_EXTENSIONS:
            full = base + ext
            if os.path.isdir(full):
                return self.vars_dir_files(full)
            if os.path.isfile(full):
                return [full]
        return []

    def vars_dir_files(self, path: str) -> list[str]:
        found: list[str] = []
        for entry in sorted(os.listdir(path)):
            if entry.startswith(".") or entry.endswith("~"):
                continue
            full = os.path.join(path, entry)
            ext = os.path.splitext(entry)[1]
            if os.path.isdir(full) and not ext:
                found.extend(self.vars_dir_files(full))
            elif os.path.isfile(full) and ext in VARS_EXTENSIONS:
                found.append(full)
        return found

    def read_vars_file(self, path: str) -> dict[str, Any]:
        """One vars file's bytes -> its variables (the single place a vars file is parsed; a
        whole vault-encrypted file is decrypted here with ``self.vault``)."""
        try:
            with open(path, "rb") as fh:
                raw = fh.read()
        except OSError as e:
            self.error(f"cannot read file: {e.strerror or e}", None, path)
            return {}
        self.inv.files.append((path, raw))
        raw, sealed = self.unseal(raw, path)
        if raw is None:
            return {}
        text = raw.decode("utf-8", "replace")
        if not any(line.strip() and not line.lstrip().startswith("#") for line in text.splitlines()) and not path.endswith(".json"):
            return {}  # an empty vars file is allowed (as in Ansible)
        data, diags = parse_yaml(raw, path, expect=dict, json_file=path.endswith(".json"))
        self.inv.diagnostics.extend(diags)
        if data is None:
            return {}
        errors, _ = self.schemas.validate("inventory.schema.json", data, pointer="/$defs/vars")
        reg = self.schemas.registry.resolver(base_uri=_SCHEMA_URI)
        self.inv.diagnostics.extend(
            schema_diagnostics(errors, data, what="variables", resolver=reg, is_secret_schema=self.schemas.is_secret_schema,
                               fallback=data.loc)
        )
        if errors:
            return {}
        found = self.vars_of(data, path)
        return sensitive(found, f"vault-encrypted file {path}", self.plain_settings()) if sealed else found

    def plain_settings(self) -> set[str]:
        """Connection settings the inventory schema checks that hold no secret (ansible_host,
        ansible_user, ...): kept as text even in an encrypted file, because they are read as text."""
        props = self.schemas.schemas["inventory.schema.json"]["$defs"]["vars"]["properties"]
        return {k for k, v in props.items() if "secret" not in json.dumps(v)}

    def unseal(self, raw: bytes, path: str) -> tuple[bytes | None, bool]:
        """A whole vault-encrypted vars file (detected by content) -> ``(plaintext, True)``;
        any other file -> ``(raw, False)``; ``(None, True)`` once the reason it cannot be
        decrypted is reported. Its variables are then all secrets (``sensitive``)."""
        if not is_vault(raw):
            return raw, False
        try:
            return decrypt(raw, self.vault), True
        except VaultError as e:
            self.error(f"vault-encrypted file: {e}", None, path)
            return None, True

    # -- merging -------------------------------------------------------------------------
    def build(self, inventory_vars: list[tuple[dict, dict]], playbook_vars: list[tuple[dict, dict]]) -> None:
        est = self.estate
        groups = est.groups
        depth = est.depths()
        members = est.members()
        members["all"] = set(est.hosts)
        host_order = list(est.hosts)
        position = {h: i for i, h in enumerate(host_order)}
        self.inv.groups = {g: sorted(members[g], key=position.__getitem__) for g in groups}
        sites = list(groups[SITES_GROUP].children) if SITES_GROUP in groups else []
        self.inv.sites = sites
        site_rank = {s: i for i, s in enumerate(sites)}
        # Ansible's sort_groups: (depth, priority, name)
        order = sorted((g for g in groups if g != "all"), key=lambda g: (depth.get(g, 0), groups[g].priority, g))
        groups_of_host: dict[str, list[str]] = {h: [] for h in host_order}
        for g in order:
            for h in members[g]:
                groups_of_host[h].append(g)
        all_vars = groups["all"].vars
        all_files = [gv.get("all", {}) for gv, _ in inventory_vars] + [gv.get("all", {}) for gv, _ in playbook_vars]
        for host in host_order:
            host_groups = groups_of_host[host]
            merged: dict[str, Any] = dict(all_vars)
            for g in host_groups:
                merged.update(groups[g].vars)
            for layer in all_files:
                merged.update(layer)
            for gv, _ in inventory_vars + playbook_vars:
                for g in host_groups:
                    hit = gv.get(g)
                    if hit:
                        merged.update(hit)
            merged.update(est.hosts[host])
            for _, hv in inventory_vars + playbook_vars:
                hit = hv.get(host)
                if hit:
                    merged.update(hit)
            in_sites = sorted((g for g in host_groups if g in site_rank), key=site_rank.__getitem__)
            site_var = merged.get("site")
            if isinstance(site_var, str) and site_var:
                site: str | None = site_var
            elif len(in_sites) > 1:
                self.error(
                    f"host {host!r} is in more than one site: {', '.join(in_sites)} "
                    "(a host belongs to one site; set the host variable 'site' to choose)",
                    self.inv.host_locations.get(host),
                )
                site = in_sites[0]
            else:
                site = in_sites[0] if in_sites else None
            if host in groups:
                self.warn(f"host {host!r} has the same name as a group; patterns will match the group", self.inv.path)
            self.inv.hosts[host] = Host(
                name=host,
                vars=merged,
                groups=tuple(sorted(host_groups)),
                site=site,
            )


def read_inventory(sources: str | Sequence[str], schemas: SchemaSet | None = None, *,
                   playbook_dirs: Sequence[str] = (), vault: VaultSecrets | None = None) -> Inventory:
    """Load an inventory from one source or several (``-i`` repeated), collecting every
    problem in ``Inventory.diagnostics`` (no raise).

    ``playbook_dirs``: directories whose group_vars/ and host_vars/ also apply (next to
    the playbook, above the inventory's). ``vault`` decrypts whole vault-encrypted
    vars files (without it they are errors).
    """
    given = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    return _Reader([os.fspath(s) for s in given], schemas or SchemaSet(), playbook_dirs, vault).read()


def load_inventory(sources: str | Sequence[str], *, playbook_dirs: Sequence[str] = (), vault: VaultSecrets | None = None) -> dict[str, Host]:
    """Load an inventory into ``{host name: Host}`` in inventory order.

    Host variables are merged by precedence (module docstring); secret references stay
    unresolved :class:`~kmsdeploy.model.SecretRef`. Raises :class:`SpecError` with every
    problem found.
    """
    inv = read_inventory(sources, playbook_dirs=playbook_dirs, vault=vault)
    errors = [d for d in inv.diagnostics if d.severity == "error"]
    if errors:
        raise SpecError(errors)
    return inv.hosts


def groups_of(hosts: Mapping[str, Host]) -> dict[str, list[str]]:
    """group -> host names (inventory order), derived from ``Host.groups``; includes ``all``."""
    out: dict[str, list[str]] = {"all": list(hosts)}
    for name, h in hosts.items():
        for g in h.groups:
            out.setdefault(g, []).append(name)
    return out
