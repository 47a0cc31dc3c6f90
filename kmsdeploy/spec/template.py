"""Jinja2 templating of specs, per target host, in a sandbox.

Rules (see docs/specs.md "Templating"):

* Any string holding ``{{``, ``{%`` or ``{#`` is a template; it is rendered with an
  :class:`jinja2.sandbox.ImmutableSandboxedEnvironment` (no ``__class__`` tricks, no
  mutation of data) and :class:`jinja2.StrictUndefined` (an undefined name is an error).
* A string that is exactly one ``{{ expr }}`` keeps the native type of ``expr``
  (``port: "{{ kms_port }}"`` gives an int; a list stays a list; a secret stays a secret).
  Anything else renders to a string; a secret may not be interpolated into a string.
* Variables are looked up lazily in a :class:`Scope`: a variable whose value holds
  templates is rendered (once, in the same host's scope) when first used; a chain of
  such variables may be at most :data:`MAX_DEPTH` deep and may not refer to itself.
* Rendered values are data: the output of a template is never rendered again.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Callable, Iterator

import jinja2
from jinja2 import nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from ..model import Secret, SecretRef
from .yamlpos import YDict, YList

MAX_DEPTH = 20
_MARKERS = ("{{", "{%", "{#")
_UNDEFINED = re.compile(r"^'([^']+)' is undefined$")
#: Jinja2 names the Python class of a host's variables (hostvars[h]); users know them as host variables
_SCOPE_ATTR = re.compile(r"^'kmsdeploy\.spec\.template\.Scope object' has no attribute '([^']+)'$")
_HOSTVARS_KEY = re.compile(r"^'kmsdeploy\.spec\.template\.LazyMap object' has no attribute '([^']+)'$")


def is_template(value: Any) -> bool:
    """True if ``value`` is a string with Jinja2 markup."""
    return isinstance(value, str) and any(m in value for m in _MARKERS)


def contains_template(value: Any) -> bool:
    """True if any string inside ``value`` (nested) is a template."""
    if isinstance(value, str):
        return is_template(value)
    if isinstance(value, Mapping):
        return any(contains_template(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(contains_template(v) for v in value)
    return False


class TemplateError(Exception):
    """A template could not be rendered. ``message`` is for humans; ``lineno`` is the
    line inside the template (1-based) when known."""

    def __init__(self, message: str, lineno: int | None = None):
        super().__init__(message)
        self.message = message
        self.lineno = lineno


class _SecretInString(Exception):
    pass


def _finalize(value: Any) -> Any:
    if isinstance(value, (Secret, SecretRef)):
        raise _SecretInString()
    return value


class Renderer:
    """Compiles and renders templates. One per load (compiled templates are cached)."""

    def __init__(self) -> None:
        self.env = ImmutableSandboxedEnvironment(
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            finalize=_finalize,
        )
        # Ansible's filters that loops need (docs/specs.md "Loops (for_each)")
        self.env.filters.update(dict2items=dict2items, items2dict=items2dict, extract=extract)
        self._cache: dict[str, tuple[jinja2.Template, bool]] = {}

    # -- compilation -------------------------------------------------------------
    def compile(self, source: str) -> tuple[jinja2.Template, bool]:
        """``(template, native)``; native means "exactly one {{ expr }}": the template then
        stores the expression's value in ``result`` instead of printing it."""
        hit = self._cache.get(source)
        if hit is not None:
            return hit
        try:
            ast = self.env.parse(source)
            native = (
                len(ast.body) == 1
                and isinstance(ast.body[0], nodes.Output)
                and len(ast.body[0].nodes) == 1
                and not isinstance(ast.body[0].nodes[0], nodes.TemplateData)
                and source.startswith("{{")
                and source.endswith("}}")
            )
            if native:
                expr = ast.body[0].nodes[0]
                body = nodes.Template([nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)], lineno=1)
                body.set_environment(self.env)
                template = self.env.from_string(body)
            else:
                template = self.env.from_string(source)
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(f"template syntax error: {e.message}", e.lineno) from None
        except SecurityError as e:  # pragma: no cover - raised at render time in practice
            raise TemplateError(f"unsafe template: {e}") from None
        self._cache[source] = (template, native)
        return template, native

    def check_syntax(self, value: Any) -> Iterator[tuple[list[Any], TemplateError]]:
        """Yield ``(path, error)`` for every template with a syntax error inside ``value``."""
        for path, s in _strings(value, []):
            if is_template(s):
                try:
                    self.compile(s)
                except TemplateError as e:
                    yield path, e

    # -- rendering -----------------------------------------------------------------
    def render_string(self, source: str, scope: "Scope") -> Any:
        """Render one string in ``scope``; templates with no markup are returned as is."""
        if not is_template(source):
            return source
        template, native = self.compile(source)
        ctx = template.new_context(scope, shared=True)
        try:
            if native:
                for _ in template.root_render_func(ctx):
                    pass
                result = ctx.vars.get("result")
                if isinstance(result, jinja2.Undefined):
                    result._fail_with_undefined_error()
                return _plain(result)
            return "".join(template.root_render_func(ctx))
        except TemplateError:
            raise
        except _SecretInString:
            raise TemplateError(
                "a secret cannot be interpolated into a string; use the variable alone, as \"{{ name }}\""
            ) from None
        except jinja2.UndefinedError as e:
            m = _UNDEFINED.match(e.message or "")
            if m:
                raise TemplateError(f"undefined variable '{m.group(1)}'") from None
            m = _SCOPE_ATTR.match(e.message or "")
            if m:
                raise TemplateError(f"undefined host variable '{m.group(1)}' (in hostvars)") from None
            m = _HOSTVARS_KEY.match(e.message or "")
            if m:
                raise TemplateError(f"no host '{m.group(1)}' in the inventory (hostvars)") from None
            raise TemplateError(f"undefined value: {e.message}") from None
        except SecurityError as e:
            raise TemplateError(f"unsafe template (blocked by the sandbox): {e}") from None
        except jinja2.TemplateError as e:
            raise TemplateError(f"template error: {e.message or e}") from None
        except RecursionError:
            raise TemplateError("template recursion too deep") from None
        except Exception as e:  # noqa: BLE001 - filters raise anything (ZeroDivisionError, TypeError...)
            raise TemplateError(f"template error: {type(e).__name__}: {e}") from None

    def render_value(self, value: Any, scope: "Scope", on_error: Callable[[list[Any], TemplateError], None] | None = None,
                     path: list[Any] | None = None) -> Any:
        """Render every template string inside ``value`` (keys are not rendered).

        Mappings/lists keep their location metadata. With ``on_error`` errors are reported
        per string (the string is left as is) instead of raised.
        """
        path = [] if path is None else path
        if isinstance(value, str):
            if not is_template(value):
                return value
            try:
                return self.render_string(value, scope)
            except TemplateError as e:
                if on_error is None:
                    raise
                on_error(path, e)
                return value
        if isinstance(value, Mapping) and not isinstance(value, (Scope,)):
            out = {k: self.render_value(v, scope, on_error, path + [k]) for k, v in value.items()}
            return YDict(out).copy_meta(value) if isinstance(value, YDict) else out
        if isinstance(value, list):
            out_l = [self.render_value(v, scope, on_error, path + [i]) for i, v in enumerate(value)]
            return YList(out_l).copy_meta(value) if isinstance(value, YList) else out_l
        return value


def _plain(value: Any) -> Any:
    """Results of native expressions: turn tuples/lazy mappings (a host's variables from
    ``hostvars``, also inside a list built with ``map('extract', hostvars)``) into plain data."""
    if isinstance(value, (Scope, LazyMap)):
        return {k: _plain(value[k]) for k in value}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


# -- filters (as Ansible's, so playbooks read the same) ----------------------------
def dict2items(value: Any, key_name: str = "key", value_name: str = "value") -> list[dict[str, Any]]:
    """``{a: 1}`` -> ``[{key: a, value: 1}]`` (Ansible's ``dict2items``)."""
    if not isinstance(value, Mapping):
        raise TypeError(f"dict2items expects a mapping, got {type(value).__name__}")
    return [{key_name: k, value_name: v} for k, v in value.items()]


def items2dict(value: Any, key_name: str = "key", value_name: str = "value") -> dict[Any, Any]:
    """``[{key: a, value: 1}]`` -> ``{a: 1}`` (Ansible's ``items2dict``)."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"items2dict expects a list of mappings, got {type(value).__name__}")
    out: dict[Any, Any] = {}
    for entry in value:
        if not isinstance(entry, Mapping) or key_name not in entry or value_name not in entry:
            raise TypeError(f"items2dict: every item needs {key_name!r} and {value_name!r}")
        out[entry[key_name]] = entry[value_name]
    return out


def extract(item: Any, container: Any, morekeys: Any = None) -> Any:
    """``container[item]`` then, optionally, ``[morekeys...]`` (Ansible's ``extract``):
    ``groups['kms_hosts'] | map('extract', hostvars, 'kms_srv_record')``."""
    try:
        value = container[item]
        keys = [] if morekeys is None else (list(morekeys) if isinstance(morekeys, (list, tuple)) else [morekeys])
        for key in keys:
            value = value[key]
    except (KeyError, IndexError, TypeError) as e:
        raise TemplateError(f"extract: no {e.args[0] if e.args else item!r} in the container") from None
    return value


def _strings(value: Any, path: list[Any]) -> Iterator[tuple[list[Any], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(v, path + [k])
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _strings(v, path + [i])


class Scope(Mapping):
    """The variables of one host (and play) with lazy rendering of templated values.

    ``layers`` are merged left to right (later wins); ``magic`` always wins. Values of
    ``magic`` are not rendered. A variable is rendered at most once per scope.
    """

    def __init__(self, renderer: Renderer, layers: list[Mapping[str, Any]], magic: Mapping[str, Any],
                 *, name: str = "") -> None:
        self._renderer = renderer
        self._raw: dict[str, Any] = {}
        for layer in layers:
            self._raw.update(layer)
        self._magic = dict(magic)
        self._done: dict[str, Any] = {}
        self._active: list[str] = []
        self.name = name

    def __contains__(self, key: object) -> bool:
        return key in self._magic or key in self._raw or key in self._renderer.env.globals

    def __iter__(self) -> Iterator[str]:
        seen = set()
        for k in list(self._raw) + list(self._magic):
            if k not in seen:
                seen.add(k)
                yield k

    def __len__(self) -> int:
        return len(set(self._raw) | set(self._magic))

    def __getitem__(self, key: str) -> Any:
        if key in self._magic:
            return self._magic[key]
        if key in self._done:
            return self._done[key]
        if key not in self._raw:
            if key in self._renderer.env.globals:
                return self._renderer.env.globals[key]
            raise KeyError(key)
        raw = self._raw[key]
        if not contains_template(raw):
            self._done[key] = raw
            return raw
        if key in self._active:
            chain = " -> ".join(self._active[self._active.index(key):] + [key])
            raise TemplateError(f"variable '{key}' refers to itself ({chain})")
        if len(self._active) >= MAX_DEPTH:
            raise TemplateError(f"variables nest more than {MAX_DEPTH} levels deep (at '{key}')")
        self._active.append(key)
        try:
            try:
                value = self._renderer.render_value(raw, self)
            except TemplateError as e:
                if e.message.startswith(("variable '", "variables nest", "in variable '")):
                    raise
                raise TemplateError(f"in variable '{key}': {e.message}") from None
        finally:
            self._active.pop()
        self._done[key] = value
        return value

    def raw(self) -> Mapping[str, Any]:
        return self._raw


class LazyMap(Mapping):
    """A mapping whose values are built on first access (``hostvars``)."""

    def __init__(self, keys: list[str], build: Callable[[str], Any]):
        self._keys = list(keys)
        self._set = set(keys)
        self._build = build
        self._done: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key not in self._set:
            raise KeyError(key)
        if key not in self._done:
            self._done[key] = self._build(key)
        return self._done[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._set
