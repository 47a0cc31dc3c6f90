"""Load playbooks (and an inventory) into validated :class:`~kmsdeploy.model.Specs`.

:func:`load_specs` is the whole front of the pipeline: read every file (YAML with
positions), validate the play structure, match plays to inventory hosts, render every
resource per host (sandboxed Jinja2), validate it against its kind's schema, run the
kind's semantic checks, normalise, name it, then check duplicates, ``depends_on`` and
cycles across everything. Every problem is collected; one :class:`SpecError` carries
them all, each as ``file:line:col: message``.
"""
from __future__ import annotations

import dataclasses
import difflib
import gc
import hashlib
import os
from typing import Any, Iterator, Mapping, Sequence

from .. import kinds as kind_registry
from ..errors import Diagnostic, SecretError, SpecError
from .publishing import check_srv_writers
from ..kinds.base import Kind
from ..model import Host, Location, Play, Ref, Resource, Secret, SecretRef, Specs
from .inventory import Inventory, read_inventory
from .loops import LoopError, duplicate_identities, iterations
from .patterns import PatternError, match_hosts
from .schemas import SchemaSet, uri_for, value_key
from .secrets import is_secret_mapping, refs_in, replace_refs, resolve, to_ref
from .vault import VaultSecrets
from .template import LazyMap, Renderer, Scope, TemplateError, contains_template, is_template
from .validate import (
    cycle_diagnostics,
    dependency_index,
    duplicate_diagnostics,
    identity_problem,
    resolve_dependency,
    schema_diagnostics,
    show,
)
from .yamlpos import YDict, YList, load_yaml, locate

#: keys every resource accepts; they are removed before the kind sees the spec
COMMON_KEYS = ("kind", "id", "state", "depends_on", "description", "adopt")
#: host variables whose rendering problems are errors (the providers read them)
CONNECTION_VAR_PREFIXES = ("ansible_", "kmsdeploy_")


def plain(value: Any) -> Any:
    """Drop the location metadata: YDict/YList -> dict/list (recursively)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


class _Collector:
    """Diagnostics deduplicated by (location, message); per-host repeats are folded into
    one diagnostic that names the hosts."""

    def __init__(self) -> None:
        self.items: dict[tuple[Any, ...], tuple[Diagnostic, list[str]]] = {}

    def add(self, diag: Diagnostic, host: str | None = None) -> None:
        key = (diag.file, diag.line, diag.col, diag.message, diag.severity)
        entry = self.items.get(key)
        if entry is None:
            entry = self.items[key] = (diag, [])
        if host and host != "*" and host not in entry[1]:
            entry[1].append(host)

    def extend(self, diags: Sequence[Diagnostic], host: str | None = None) -> None:
        for d in diags:
            self.add(d, host)

    def result(self, file_order: Sequence[str]) -> list[Diagnostic]:
        rank = {f: i for i, f in enumerate(file_order)}
        out = []
        for diag, hosts in self.items.values():
            if hosts:
                if len(hosts) == 1:
                    suffix = f" (host {hosts[0]})"
                elif len(hosts) <= 3:
                    suffix = f" (hosts {', '.join(hosts)})"
                else:
                    suffix = f" (hosts {', '.join(hosts[:3])} and {len(hosts) - 3} more)"
                diag = dataclasses.replace(diag, message=diag.message + suffix)
            out.append(diag)
        out.sort(key=lambda d: (rank.get(d.file or "", len(rank)), d.file or "", d.line or 0, d.col or 0))
        return out


def _diag(message: str, loc: Location | None, *, severity: str = "error") -> Diagnostic:
    if loc is None:
        return Diagnostic(message, severity=severity)
    return Diagnostic(message, loc.file, loc.line, loc.col, severity=severity)


class KindLookup:
    """Which kinds exist and how to get them. The default reads :mod:`kmsdeploy.kinds`;
    tests pass ``{name: Kind}`` to use fake kinds."""

    def __init__(self, kinds: Mapping[str, Kind] | None = None):
        self._given = dict(kinds) if kinds is not None else None

    def names(self) -> list[str]:
        return sorted(self._given) if self._given is not None else sorted(kind_registry.KINDS)

    def get(self, name: str) -> Kind | None:
        """The kind object, or None when its module is not in this build."""
        if self._given is not None:
            return self._given.get(name)
        try:
            return kind_registry.get(name)
        except (ImportError, AttributeError, KeyError):
            return None


class _Recorder:
    """Stands in for the collector while one build runs, to replay its diagnostics."""

    def __init__(self) -> None:
        self.calls: list[tuple[Diagnostic, str | None]] = []

    def add(self, diag: Diagnostic, host: str | None = None) -> None:
        self.calls.append((diag, host))

    def extend(self, diags: Sequence[Diagnostic], host: str | None = None) -> None:
        for d in diags:
            self.add(d, host)


@dataclasses.dataclass
class _Pending:
    """A resource built for one target, before dependencies are resolved."""

    resource: Resource
    rid: str | None
    deps: list[tuple[str, str, Location | None]]
    implicit: list[tuple[str, str]]
    #: built without an inventory from unrendered templates: its identity may be a template
    templated: bool = False


class _Loader:
    def __init__(self, playbooks: Sequence[str], inventory: str | Sequence[str] | None, *, resolve_secrets: bool,
                 limit: str | None, kinds: Mapping[str, Kind] | None, schemas: SchemaSet | None, vault: VaultSecrets | None = None):
        self.playbooks = list(playbooks)
        #: the inventory sources (``-i`` may be repeated), or None
        self.inventory_path = [inventory] if isinstance(inventory, str) else (list(inventory) if inventory else None)
        self.vault = vault
        self.resolve_secrets = resolve_secrets
        self.limit = limit
        self.kinds = KindLookup(kinds)
        self.schemas = schemas or SchemaSet()
        self.diags = _Collector()
        self.files: list[tuple[str, bytes]] = []
        self.renderer = Renderer()
        self.inv: Inventory | None = None
        self.plays: list[Play] = []
        self.pending: list[_Pending] = []
        self.secret_cache: dict[tuple[str, str, str], Secret | SecretError] = {}
        self.kind_status: dict[str, tuple[Kind | None, str | None]] = {}
        self.targeted: list[str] = []
        self._targeted_set: set[str] = set()
        self.hostvars: LazyMap | None = None
        #: the ``groups`` magic variable, shared by every scope (see _magic)
        self._groups_magic: dict[str, list[str]] | None = None
        #: (targets of the play being rendered, the ``play_hosts`` copy shared by its scopes)
        self._play_hosts: tuple[list[str] | None, list[str]] = (None, [])
        self.inv_ok = False

    # ------------------------------------------------------------------ entry
    def run(self) -> Specs:
        limit_set: set[str] | None = None
        if self.inventory_path is not None:
            # group_vars/host_vars next to the playbooks apply too (above the inventory's), as in Ansible
            playbook_dirs = list(dict.fromkeys(os.path.dirname(os.path.abspath(p)) for p in self.playbooks))
            self.inv = read_inventory(self.inventory_path, self.schemas, playbook_dirs=playbook_dirs, vault=self.vault)
            self.files.extend(self.inv.files)
            self.diags.extend(self.inv.diagnostics)
            if any(d.severity == "error" for d in self.inv.diagnostics):
                self.inv_ok = False
            else:
                self.inv_ok = True
                self.hostvars = LazyMap(list(self.inv.hosts), self._host_scope)
        else:
            self.inv_ok = False
        if self.limit is not None:
            if self.inventory_path is None:
                self.diags.add(Diagnostic("--limit needs an inventory (-i)"))
            elif self.inv_ok and self.inv is not None:
                try:
                    limit_set = set(match_hosts(self.limit, self.inv.hosts))
                    if not limit_set:
                        self.diags.add(Diagnostic(f"--limit {self.limit!r} matches no host in the inventory"))
                except PatternError as e:
                    self.diags.add(Diagnostic(f"--limit: {e}"))
        for path in self.playbooks:
            self._playbook(path, limit_set)
        resources = self._link()
        hosts = dict(self.inv.hosts) if self.inv is not None else {}
        if self.inv_ok:
            hosts = self._final_hosts(hosts)
        if "kms_host" in self.kinds.names() and "dns_record" in self.kinds.names():
            # two writers of _vlmcs._tcp (DESIGN, reference A.1/A.5): reject the mix
            self.diags.extend(check_srv_writers([r for r, p in zip(resources, self.pending) if not p.templated],
                                                hosts))
        all_diags = self.diags.result([p for p, _ in self.files] + self.playbooks)
        errors = [d for d in all_diags if d.severity == "error"]
        if errors:
            raise SpecError(errors)
        digest = hashlib.sha256()
        for _, raw in self.files:
            digest.update(len(raw).to_bytes(8, "big"))
            digest.update(raw)
        return Specs(
            hosts=hosts,
            resources=tuple(resources),
            plays=tuple(self.plays),
            sources=tuple(p for p, _ in self.files),
            digest="sha256:" + digest.hexdigest(),
            warnings=tuple(str(d) for d in all_diags if d.severity == "warning"),
            inventory=os.pathsep.join(self.inv.sources) if self.inv is not None else None,
            playbooks=tuple(self.playbooks),
        )

    # ------------------------------------------------------------------ playbooks
    def _playbook(self, path: str, limit_set: set[str] | None) -> None:
        data, raw, diags = load_yaml(path, expect=list)
        if raw is not None:
            self.files.append((path, raw))
        self.diags.extend(diags)
        if data is None:
            return
        errors, _ = self.schemas.validate("playbook.schema.json", data)
        resolver = self.schemas.registry.resolver(base_uri=uri_for("playbook.schema.json"))
        self.diags.extend(schema_diagnostics(errors, data, what="playbook", resolver=resolver,
                                             is_secret_schema=self.schemas.is_secret_schema, skip_templates=True,
                                             fallback=data.loc))
        for index, play in enumerate(data):
            if isinstance(play, YDict):
                self._play(path, index, play, data.item_loc(index), limit_set)

    def _play(self, path: str, index: int, play: YDict, loc: Location | None, limit_set: set[str] | None) -> None:
        name = play.get("name") if isinstance(play.get("name"), str) else f"play #{index + 1}"
        pattern = play.get("hosts")
        rollout = play.get("rollout")
        prune = play.get("prune")
        prune = tuple(prune) if isinstance(prune, list) else prune is True
        max_prune = play.get("max_prune") if type(play.get("max_prune")) is int else None
        self.plays.append(Play(name=name, hosts=pattern if isinstance(pattern, str) else "", location=loc,
                               rollout=plain(rollout) if isinstance(rollout, dict) else {}, file=path,
                               prune=prune, max_prune=max_prune))
        resources = play.get("resources")
        play_vars = play.get("vars") if isinstance(play.get("vars"), dict) else {}
        if not isinstance(pattern, str) or not pattern.strip() or not isinstance(resources, list):
            return  # the schema already said why
        vars_ok = True
        for vpath, err in self.renderer.check_syntax(play_vars):
            vars_ok = False
            self.diags.add(_diag(_template_message(err), locate(play_vars, vpath)))
        targets = ["*"]
        if self.inv_ok and self.inv is not None:
            try:
                targets = match_hosts(pattern, self.inv.hosts)
            except PatternError as e:
                self.diags.add(_diag(f"play {name!r}: {e}", play.value_loc("hosts")))
                return
            if not targets:
                self.diags.add(_diag(f"play {name!r}: hosts pattern {pattern!r} matches no host in the inventory",
                                     play.value_loc("hosts")))
                return
            if limit_set is not None:
                targets = [t for t in targets if t in limit_set]
            for t in targets:
                if t not in self._targeted_set:
                    self._targeted_set.add(t)
                    self.targeted.append(t)
        if not vars_ok:
            return
        for i, res in enumerate(resources):
            if isinstance(res, YDict):
                self._resource(path, name, res, resources.item_loc(i) if isinstance(resources, YList) else loc,
                               play_vars, targets)

    # ------------------------------------------------------------------ resources
    def _kind(self, name: str) -> tuple[Kind | None, str | None]:
        hit = self.kind_status.get(name)
        if hit is not None:
            return hit
        known = self.kinds.names()
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            status: tuple[Kind | None, str | None] = (None, f"unknown kind {show(name)} ({hint}known kinds: {', '.join(known)})")
        else:
            kind = self.kinds.get(name)
            if kind is None or not self.schemas.has(f"kinds/{name}.schema.json"):
                status = (None, f"kind {name} is not available in this build")
            else:
                status = (kind, None)
        self.kind_status[name] = status
        return status

    def _resource(self, path: str, play_name: str, res: YDict, loc: Location | None, play_vars: Mapping[str, Any],
                  targets: list[str]) -> None:
        kind_name = res.get("kind")
        if not isinstance(kind_name, str):
            return  # reported by the playbook schema
        if is_template(kind_name):
            self.diags.add(_diag("kind must be a literal kind name, not a template", res.value_loc("kind")))
            return
        kind, problem = self._kind(kind_name)
        if kind is None:
            self.diags.add(_diag(problem or "unknown kind", res.value_loc("kind")))
            return
        body = YDict({k: v for k, v in res.items() if k != "kind"}).copy_meta(res)
        for ansible_word in ("loop", "with_items", "with_dict"):
            if ansible_word in body and "for_each" not in body:
                # Ansible's spelling; without this hint the user sees "undefined variable 'item'"
                self.diags.add(_diag(f"{ansible_word}: is Ansible's loop keyword; kmsdeploy loops with for_each: "
                                     "(item, each.key and each.value are available)", res.key_loc(ansible_word)))
                return
        syntax_ok = True
        for vpath, err in self.renderer.check_syntax(body):
            syntax_ok = False
            self.diags.add(_diag(_template_message(err), locate(body, vpath)))
        if not syntax_ok:
            return
        loop: _Loop | None = None
        if "for_each" in body:
            loop = _Loop(body["for_each"], res.value_loc("for_each") or loc)
            del body["for_each"]
            res = YDict({k: v for k, v in res.items() if k != "for_each"}).copy_meta(res)
        templated = contains_template(body)
        if not self.inv_ok:
            # no inventory (or a broken one, whose errors are reported): check the playbook alone
            if loop is not None and not contains_template(loop.value):
                try:
                    iterations(plain(loop.value))
                except LoopError as e:
                    self.diags.add(_diag(e.message, loop.loc))
                    return
            self._build(kind, kind_name, res, loc, play_name, "*", None, path,
                        templated=templated or loop is not None)
            return
        if loop is not None:
            self._expand(kind, kind_name, res, body, loop, loc, play_name, play_vars, targets, path)
            return
        if not templated:
            # identical for every host: validate and normalise once, then stamp per target
            built = self._build(kind, kind_name, res, loc, play_name, None, None, path, templated=False)
            if built is None:
                return
            for host in targets:
                h = self.inv.hosts[host] if self.inv else None
                self.pending.append(_stamp(built, host, h))
            return
        outcomes: _Outcomes = {}
        for host in targets:
            scope = self._play_scope(host, play_vars, targets)
            self._render_and_build(kind, kind_name, res, body, scope, loc, play_name, host, path, outcomes, "")

    def _expand(self, kind: Kind, kind_name: str, res: YDict, body: YDict, loop: "_Loop", loc: Location | None,
                play_name: str, play_vars: Mapping[str, Any], targets: list[str], path: str) -> None:
        """A resource with ``for_each``: per target host, render the loop value in the host's
        scope, then the resource once per iteration with ``each``/``item`` in scope."""
        outcomes: _Outcomes = {}
        where = f" (loop at {loop.loc})" if loop.loc else ""
        for host in targets:
            scope = self._play_scope(host, play_vars, targets)
            try:
                value = self.renderer.render_value(loop.value, scope) if contains_template(loop.value) \
                    else loop.value
                steps = iterations(plain(value))
            except TemplateError as e:
                self.diags.add(_diag(f"for_each: {_template_message(e)}", loop.loc), host)
                continue
            except LoopError as e:
                self.diags.add(_diag(e.message, loop.loc), host)
                continue
            produced: list[tuple[str, str]] = []
            first_index: dict[str, int] = {}
            for step in steps:
                iscope = self._play_scope(host, play_vars, targets, extra=step.magic())
                before = len(self.pending)
                self._render_and_build(kind, kind_name, res, body, iscope, loc, play_name, host, path, outcomes,
                                       f"for_each[{step.key}]: ", where)
                if len(self.pending) > before:
                    identity = self.pending[-1].resource.ref.name
                    produced.append((step.key, identity))
                    first_index.setdefault(identity, len(self.pending) - 1)
            for identity, first, later in duplicate_identities(produced):
                self.diags.add(_diag(f"for_each[{later}] produces {kind_name}[{identity}] again (as for_each[{first}] "
                                     "does): every iteration must produce its own resource; use each.key in the "
                                     "fields that name it", loop.loc), host)
            if len(first_index) < len(produced):
                # keep the first of each identity: the loop error above says it all (no second
                # "duplicate resource" message for the same mistake)
                keep = set(first_index.values())
                start = len(self.pending) - len(produced)
                self.pending[start:] = [p for i, p in enumerate(self.pending[start:], start) if i in keep]

    def _render_and_build(self, kind: Kind, kind_name: str, res: YDict, body: YDict, scope: Scope,
                          loc: Location | None, play_name: str, host: str, path: str, outcomes: "_Outcomes",
                          prefix: str, suffix: str = "") -> None:
        """Render ``body`` in ``scope`` and build it for ``host``.

        Renderings that come out the same (every host of a site, typically) share one
        validation/check/normalisation: the outcome is a pure function of the rendered value
        (kinds are pure, locations come from this one declaration). The diagnostics of the
        first build are replayed for each such host, so they name every host.
        """
        errors: list[tuple[list[Any], TemplateError]] = []
        rendered = self.renderer.render_value(body, scope, on_error=lambda p, e: errors.append((p, e)))
        if errors:
            for p, e in errors:
                self.diags.add(_diag(prefix + _template_message(e) + suffix, locate(body, p)), host)
            return
        full = YDict(rendered).copy_meta(body)
        full["kind"] = kind_name
        full.key_locs["kind"] = res.key_loc("kind")
        full.value_locs["kind"] = res.value_loc("kind")
        h = self.inv.hosts[host] if self.inv else None
        try:
            key = value_key(full)
        except (ValueError, RecursionError):  # not plain data (e.g. a secret from a host variable): alone
            self._build(kind, kind_name, full, loc, play_name, host, h, path, templated=False)
            return
        outcome = outcomes.get(key)
        if outcome is None:
            real, recorder = self.diags, _Recorder()
            self.diags = recorder  # type: ignore[assignment]
            try:
                built = self._build(kind, kind_name, full, loc, play_name, host, h, path, templated=False)
            finally:
                self.diags = real
            outcome = outcomes[key] = (built, [(d, who == host) for d, who in recorder.calls])
        elif outcome[0] is not None:
            self.pending.append(_stamp(outcome[0], host, h))
        for d, per_host in outcome[1]:
            if prefix:  # name the iteration: for_each[site07]: ...
                d = dataclasses.replace(d, message=prefix + d.message)
            self.diags.add(d, host if per_host else None)

    def _build(self, kind: Kind, kind_name: str, spec: YDict, loc: Location | None, play_name: str,
               target: str | None, host: Host | None, path: str, *, templated: bool) -> _Pending | None:
        """Validate one (rendered) resource and turn it into a pending Resource.

        ``target=None`` builds a host-independent template that the caller stamps per host.
        """
        schema_name = f"kinds/{kind_name}.schema.json"
        errors, secret_ids = self.schemas.validate(schema_name, spec)
        resolver = self.schemas.registry.resolver(base_uri=uri_for(schema_name))
        diags = schema_diagnostics(errors, spec, what=kind_name, resolver=resolver,
                                   is_secret_schema=self.schemas.is_secret_schema, skip_templates=templated, fallback=loc)
        self.diags.extend(diags, target)
        if diags:
            return None
        spec = _mark_secrets(spec, secret_ids, path)
        ok = True
        if self.resolve_secrets and not templated:
            spec, ok = self._resolve_in(spec, target)
        if not ok:
            return None
        common = {k: spec.get(k) for k in COMMON_KEYS if k in spec}
        body = plain({k: v for k, v in spec.items() if k not in COMMON_KEYS})
        rid = common.get("id") if isinstance(common.get("id"), str) else None
        state = common.get("state") if common.get("state") in ("present", "absent") else "present"
        deps: list[tuple[str, str, Location | None]] = []
        raw_deps = common.get("depends_on")
        if isinstance(raw_deps, list):
            for i, d in enumerate(raw_deps):
                if isinstance(d, str) and "/" in d and not is_template(d):
                    k, n = d.split("/", 1)
                    deps.append((k, n, raw_deps.item_loc(i) if isinstance(raw_deps, YList) else loc))
        if templated:
            # no inventory and unrendered templates: only the schema (minus template values) is checked
            try:
                identity = kind.identity(body)
            except Exception:  # noqa: BLE001 - templates in identity fields
                identity = rid or "?"
            identity = identity if isinstance(identity, str) else str(identity)
            p = self._pend(Resource(Ref(kind_name, target or "*", identity), body, state, (), loc, play_name,
                                    host.site if host else None, common.get("adopt") is True), rid, deps, [], target)
            p.templated = True
            return p
        try:
            problems = list(kind.check(body) or [])
        except Exception as e:  # noqa: BLE001 - a bug in a kind must not become a traceback
            problems = [Diagnostic(f"internal error in kind {kind_name} check(): {type(e).__name__}: {e}")]
        for p in problems:
            if p.file:
                self.diags.add(p, target)
            else:
                self.diags.add(_diag(f"{kind_name}: {p.message}", loc, severity=p.severity), target)
        if any(p.severity == "error" for p in problems):
            return None
        try:
            desired = kind.normalize(body)
            identity = kind.identity(body)
            implicit = list(kind.depends_on(body) or [])
        except Exception as e:  # noqa: BLE001
            self.diags.add(_diag(f"{kind_name}: cannot normalise this resource: {type(e).__name__}: {e}", loc), target)
            return None
        problem = identity_problem(identity)
        if problem:
            self.diags.add(_diag(f"{kind_name}: {problem}", loc), target)
            return None
        resource = Resource(Ref(kind_name, target or "*", identity), desired, state, (), loc, play_name,
                            host.site if host else None, common.get("adopt") is True)
        return self._pend(resource, rid, deps, implicit, target)

    def _pend(self, resource: Resource, rid: str | None, deps: list[tuple[str, str, Location | None]],
              implicit: list[tuple[str, str]], target: str | None) -> _Pending:
        p = _Pending(resource, rid, deps, implicit)
        if target is not None:
            self.pending.append(p)
        return p

    # ------------------------------------------------------------------ secrets
    def _secret(self, ref: SecretRef) -> Secret | SecretError:
        key = (ref.source, ref.name, ref.ciphertext)
        hit = self.secret_cache.get(key)
        if hit is None:
            try:
                hit = resolve(ref, self.vault)
            except SecretError as e:
                hit = e
            self.secret_cache[key] = hit
        return hit

    def _resolve_in(self, value: Any, target: str | None, *, severity: str = "error") -> tuple[Any, bool]:
        refs = refs_in(value)
        if not refs:
            return value, True
        resolved: dict[SecretRef, Secret] = {}
        ok = True
        for ref in refs:
            got = self._secret(ref)
            if isinstance(got, SecretError):
                ok = False
                self.diags.add(_diag(str(got), ref.location, severity=severity))
            else:
                resolved[ref] = got
        return replace_refs(value, resolved), ok

    # ------------------------------------------------------------------ scopes
    def _magic(self, host: Host, play_targets: list[str] | None) -> dict[str, Any]:
        assert self.inv is not None
        # ``groups`` and the play's host list are built once and shared by every host's
        # scope (copying them per host made rendering O(hosts^2)). Sharing is safe: the
        # sandbox is immutable and rendered values are copied by ``plain`` before use.
        if self._groups_magic is None:
            self._groups_magic = {g: list(m) for g, m in self.inv.groups.items()}
        if play_targets is None:
            play_hosts: list[str] = []
        elif self._play_hosts[0] is play_targets:
            play_hosts = self._play_hosts[1]
        else:
            play_hosts = list(play_targets)
            self._play_hosts = (play_targets, play_hosts)
        return {
            "inventory_hostname": host.name,
            "inventory_hostname_short": host.name.split(".", 1)[0],
            "site": host.site,
            "group_names": list(host.groups),
            "groups": self._groups_magic,
            "hostvars": self.hostvars,
            "play_hosts": play_hosts,
            "ansible_play_hosts": play_hosts,
        }

    def _host_scope(self, name: str) -> Scope:
        assert self.inv is not None
        host = self.inv.hosts[name]
        return Scope(self.renderer, [host.vars], self._magic(host, None), name=name)

    def _play_scope(self, name: str, play_vars: Mapping[str, Any], targets: list[str],
                    extra: Mapping[str, Any] | None = None) -> Scope:
        """The scope a resource renders in; ``extra`` adds magic variables (a loop's ``each``/``item``)."""
        assert self.inv is not None
        host = self.inv.hosts[name]
        magic = self._magic(host, targets)
        if extra:
            magic.update(extra)
        return Scope(self.renderer, [host.vars, play_vars], magic, name=name)

    def _final_hosts(self, hosts: dict[str, Host]) -> dict[str, Host]:
        """Targeted hosts get variables that are rendered when read (``_HostVars``).

        Connection variables (``ansible_*``, ``kmsdeploy_*``) are rendered now: a problem in
        one is an error when the run will connect (``resolve_secrets``), a warning in
        ``validate``. Every other variable is rendered only if a provider reads it, as in
        Ansible (an unused variable naming an undefined one is no error; an unused hostile
        template never runs). Resources render variables through their own scopes.
        """
        out = dict(hosts)
        for name in self.targeted:
            host = hosts[name]
            scope = self._host_scope(name)
            loc = self.inv.host_locations.get(name) if self.inv else None
            done: dict[str, Any] = {}
            for key, value in host.vars.items():
                if not key.startswith(CONNECTION_VAR_PREFIXES):
                    continue
                try:
                    done[key] = scope[key]
                except TemplateError as e:
                    done[key] = value
                    self.diags.add(_diag(f"host {name}: variable {key!r}: {e.message}", loc,
                                         severity="error" if self.resolve_secrets else "warning"))
            if self.resolve_secrets:
                done, _ = self._resolve_in(done, name)
            out[name] = dataclasses.replace(host, vars=_HostVars(name, host.vars, plain(done), scope, loc,
                                                                 self._secret if self.resolve_secrets else None))
        return out

    # ------------------------------------------------------------------ links
    def _link(self) -> list[Resource]:
        resources = [p.resource for p in self.pending]
        # unrendered identities ("{{ site }}-x") may look alike without being alike
        for d in duplicate_diagnostics([p.resource for p in self.pending if not p.templated]):
            self.diags.add(d)
        index = dependency_index(resources, [p.rid for p in self.pending])
        linked: list[Resource] = []
        for p in self.pending:
            refs: list[Ref] = []
            for kind, name, loc in p.deps:
                found = resolve_dependency(p.resource.ref.target, kind, name, index)
                if not found:
                    self.diags.add(_diag(f"depends_on {kind}/{name}: no {kind} resource with id or name {name!r} "
                                         "in the loaded playbooks", loc))
                refs.extend(r for r in found if r not in refs)
            for kind, name in p.implicit:
                for r in index.get((kind, name), []):
                    if r.ref.target == p.resource.ref.target and r.ref not in refs and r.ref != p.resource.ref:
                        refs.append(r.ref)
            linked.append(dataclasses.replace(p.resource, depends_on=tuple(refs)))
        for d in cycle_diagnostics([r for r, p in zip(linked, self.pending) if not p.templated]):
            self.diags.add(d)
        return linked


class _HostVars(Mapping):
    """A host's variables, each rendered (and its secrets resolved) the first time it is read.

    Reading a variable whose template fails raises :class:`SpecError` naming the host and
    the variable (located at the host's inventory line): the error appears only when
    something uses the variable.
    """

    def __init__(self, host: str, raw: Mapping[str, Any], done: dict[str, Any], scope: Scope,
                 loc: Location | None, secret: Any):
        self._host, self._raw, self._done, self._scope, self._loc, self._secret = host, raw, done, scope, loc, secret

    def __getitem__(self, key: str) -> Any:
        if key in self._done:
            return self._done[key]
        self._raw[key]  # KeyError for an unknown variable, before any rendering
        try:
            value = self._scope[key]
        except TemplateError as e:
            raise SpecError([_diag(f"host {self._host}: variable {key!r}: {e.message}", self._loc)]) from None
        if self._secret is not None:
            resolved: dict[SecretRef, Secret] = {}
            for ref in refs_in(value):
                got = self._secret(ref)
                if isinstance(got, SecretError):
                    raise SpecError([_diag(str(got), ref.location)])
                resolved[ref] = got
            value = replace_refs(value, resolved)
        value = self._done[key] = plain(value)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self.items()) == dict(other.items())

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<variables of host {self._host}: {', '.join(self._raw)}>"
@dataclasses.dataclass(frozen=True)
class _Loop:
    """A resource's ``for_each`` value (unrendered) and where it is written."""

    value: Any
    loc: Location | None


#: rendered value key -> (the pending built from it or None, its diagnostics with "per host" flags)
_Outcomes = dict[Any, tuple["_Pending | None", list[tuple[Diagnostic, bool]]]]


def _stamp(built: _Pending, host: str, h: Host | None) -> _Pending:
    """A copy of a host-independent build for one target host."""
    r = built.resource
    return _Pending(dataclasses.replace(r, ref=Ref(r.ref.kind, host, r.ref.name), site=h.site if h else None),
                    built.rid, built.deps, built.implicit)


def _template_message(err: TemplateError) -> str:
    if err.lineno and err.lineno > 1:
        return f"{err.message} (line {err.lineno} of the template)"
    return err.message


def _mark_secrets(value: Any, secret_ids: set[int], declared_in: str) -> Any:
    """Turn the mappings validated as secrets into SecretRefs (file paths made absolute
    against the file that declares them)."""
    if not secret_ids:
        return value
    if isinstance(value, dict):
        if id(value) in secret_ids and is_secret_mapping(value):
            loc = getattr(value, "loc", None)
            return to_ref(value, loc.file if loc else declared_in, loc)
        out = {k: _mark_secrets(v, secret_ids, declared_in) for k, v in value.items()}
        return YDict(out).copy_meta(value) if isinstance(value, YDict) else out
    if isinstance(value, list):
        out_l = [_mark_secrets(v, secret_ids, declared_in) for v in value]
        return YList(out_l).copy_meta(value) if isinstance(value, YList) else out_l
    return value


def load_specs(playbooks: list[str], inventory: str | Sequence[str] | None = None, *, resolve_secrets: bool = True,
               limit: str | None = None, kinds: Mapping[str, Kind] | None = None,
               schemas: SchemaSet | None = None, vault: VaultSecrets | None = None) -> Specs:
    """Load, render and validate playbooks against an (optional) inventory.

    * ``inventory=None``: the playbooks are checked alone; resources get target ``"*"``
      and values that are still templates are not type-checked.
    * ``resolve_secrets``: resolve ``{env:}``/``{file:}`` references to
      :class:`~kmsdeploy.model.Secret` (in resources and in the variables of targeted hosts).
    * ``limit``: an inventory pattern restricting the targets (``--limit``).
    * ``kinds``/``schemas``: replace the kind registry and schema set (tests).
    * ``inventory``: one source or a list of them (``-i`` repeated; files, directories, scripts).
    * ``vault``: Ansible Vault passwords. Whole encrypted vars files are always decrypted
      (their variables are needed); ``!vault`` values only when secrets are resolved.

    Raises :class:`SpecError` with every diagnostic when anything is wrong.
    """
    loader = _Loader(playbooks, inventory, resolve_secrets=resolve_secrets, limit=limit, kinds=kinds, schemas=schemas,
                     vault=vault)
    # Loading allocates hundreds of thousands of small, acyclic objects (YAML nodes, rendered
    # specs); the cyclic collector kept re-scanning them (~25 % of a 10,000-host load).
    # Reference counting still frees everything; cycles are collected once we re-enable.
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        return loader.run()
    finally:
        if paused:
            gc.enable()
