"""YAML loading that remembers where every value came from.

:func:`load_yaml` parses one file into plain Python data in which every mapping is a
:class:`YDict` and every sequence a :class:`YList`. Both are ordinary ``dict``/``list``
subclasses (so jsonschema, Jinja2 and kinds see normal data) that additionally carry
the 1-based :class:`~kmsdeploy.model.Location` of themselves, of each key and of each
value / item. Scalars stay plain ``str``/``int``/``float``/``bool``/``None``.

What is rejected, each as a located :class:`~kmsdeploy.errors.Diagnostic`:

* malformed YAML (the parser's own mark), more than one document, an empty file;
* tabs in indentation (YAML forbids them; PyYAML's message for them is obscure);
* duplicate mapping keys (PyYAML silently keeps the last one);
* tags other than the plain data ones (``!!str !!int !!float !!bool !!null !!map !!seq``
  and the ``<<`` merge key): no ``!!python/...``, ``!!binary``, ``!!timestamp`` or custom
  ``!tags``. Dates stay strings (the timestamp resolver is removed). The one exception is
  Ansible's ``!vault`` (a string holding a vault envelope): it becomes a
  :class:`~kmsdeploy.model.SecretRef` with ``source="vault"``, never decrypted here;
* anchors/aliases are fine, but their expansion is capped (:data:`MAX_NODES`) so a
  "billion laughs" file fails fast instead of eating memory; recursive aliases fail;
* a root of the wrong type (the caller says which type it expects).
"""
from __future__ import annotations

import re
from typing import Any, Iterable

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import Diagnostic
from ..model import Location, SecretRef
from . import vault

#: cap on the number of values one file may expand to (aliases included)
MAX_NODES = 200_000
#: cap on file size; specs are small, anything larger is a mistake or an attack
MAX_BYTES = 16 * 1024 * 1024

_ALLOWED_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}
_STR_TAG = "tag:yaml.org,2002:str"
_MAP_TAG = "tag:yaml.org,2002:map"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MERGE_TAG = "tag:yaml.org,2002:merge"
#: Ansible Vault values (``key: !vault |`` + an envelope), see kmsdeploy.spec.vault
VAULT_TAG = "!vault"


class YDict(dict):
    """A mapping that knows its own location and those of its keys and values."""

    __slots__ = ("loc", "key_locs", "value_locs")

    def __init__(self, *args: Any, loc: Location | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.loc = loc
        self.key_locs: dict[Any, Location] = {}
        self.value_locs: dict[Any, Location] = {}

    def key_loc(self, key: Any) -> Location | None:
        return self.key_locs.get(key, self.loc)

    def value_loc(self, key: Any) -> Location | None:
        return self.value_locs.get(key, self.key_locs.get(key, self.loc))

    def copy_meta(self, other: "YDict") -> "YDict":
        self.loc, self.key_locs, self.value_locs = other.loc, dict(other.key_locs), dict(other.value_locs)
        return self


class YList(list):
    """A sequence that knows its own location and those of its items."""

    __slots__ = ("loc", "item_locs")

    def __init__(self, *args: Any, loc: Location | None = None):
        super().__init__(*args)
        self.loc = loc
        self.item_locs: list[Location] = []

    def item_loc(self, index: int) -> Location | None:
        if 0 <= index < len(self.item_locs):
            return self.item_locs[index]
        return self.loc

    def copy_meta(self, other: "YList") -> "YList":
        self.loc, self.item_locs = other.loc, list(other.item_locs)
        return self


def child_loc(container: Any, key: Any) -> Location | None:
    """Location of ``container[key]`` (value of a mapping, item of a list), if known."""
    if isinstance(container, YDict):
        return container.value_loc(key)
    if isinstance(container, YList) and isinstance(key, int):
        return container.item_loc(key)
    return getattr(container, "loc", None)


def locate(root: Any, path: Iterable[Any], *, key: bool = False) -> Location | None:
    """Best location for the value at ``path`` under ``root`` (deepest known one).

    With ``key=True`` and a mapping as the last step, the location of the key itself.
    """
    path = list(path)
    node = root
    best = getattr(root, "loc", None)
    for i, step in enumerate(path):
        last = i == len(path) - 1
        if isinstance(node, YDict) and step in node:
            loc = node.key_loc(step) if (last and key) else node.value_loc(step)
        elif isinstance(node, YList) and isinstance(step, int) and 0 <= step < len(node):
            loc = node.item_loc(step)
        else:
            break
        best = loc or best
        try:
            node = node[step]
        except (KeyError, IndexError, TypeError):
            break
    return best


class _Loader(yaml.SafeLoader):
    """SafeLoader without the timestamp resolver: dates stay strings, nothing else is built."""


# Drop implicit timestamp resolution (a copy of the resolver table, not a global change).
_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


#: The same loader on libyaml's C parser (when PyYAML was built with it). Its nodes carry
#: the same start marks (line, column), so locations, duplicate keys, tags and the alias
#: cap are all handled by the same :class:`_Builder`. It is only used for documents it
#: composes without complaint; anything it rejects is parsed again with the pure-Python
#: loader so error messages stay PyYAML's.
_CLoader: Any = None
if getattr(yaml, "__with_libyaml__", False):  # pragma: no branch
    class _CLoader(yaml.CSafeLoader):  # type: ignore[no-redef]
        """CSafeLoader with :class:`_Loader`'s resolvers (no timestamps)."""

    _CLoader.yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers


# libyaml is more lenient than PyYAML's pure-Python parser in a few corners ('?' and tabs
# inside plain scalars, some tags, block scalar headers, a BOM inside the text) and marks
# an empty value in a flow mapping ("{a: }", "{a: # c\n}") elsewhere. Texts that could
# meet any of those go to the pure-Python parser, so both paths accept the same documents
# and report the same locations (tests/unit/test_spec_scaling.py compares them; a
# differential fuzz over mutated corpus files found no difference, docs/performance.md).
_C_RISKY_CHARS = re.compile(r"[^\x20-\x7e\n\r]|[?!|>]|:(?:[ \r\n]|#[^\n]*)*[,}\]]")


def _c_parser_agrees(text: str) -> bool:
    """True when ``text`` avoids every construct where libyaml and PyYAML differ."""
    return _C_RISKY_CHARS.search(text) is None


class _Fail(Exception):
    def __init__(self, message: str, node: Node | None = None, mark: Any = None):
        super().__init__(message)
        self.message = message
        self.mark = mark if mark is not None else (node.start_mark if node is not None else None)


_TAB_INDENT = re.compile(r"^[ ]*\t")


def _tab_diagnostics(text: str, file: str) -> list[Diagnostic]:
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        m = _TAB_INDENT.match(line)
        if m and line.strip():
            out.append(Diagnostic("tab character used for indentation (YAML allows only spaces)", file, n, m.end()))
    return out


class _Builder:
    def __init__(self, loader: _Loader, file: str):
        self.loader = loader
        self.file = file
        self.count = 0
        self.active: set[int] = set()

    def loc(self, node: Node) -> Location:
        m = node.start_mark
        return Location(self.file, m.line + 1, m.column + 1)

    def build(self, node: Node) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise _Fail(
                f"document expands to more than {MAX_NODES} values (alias expansion limit; "
                "is this a 'billion laughs' file?)",
                node,
            )
        if isinstance(node, ScalarNode):
            if node.tag == _STR_TAG:
                return node.value  # what SafeConstructor.construct_yaml_str returns, without the dispatch
            if node.tag == VAULT_TAG:
                return self.vault_ref(node)
            if node.tag not in _ALLOWED_SCALAR_TAGS:
                raise _Fail(f"unsupported YAML tag {node.tag!r} (only plain data is allowed)", node)
            try:
                return self.loader.construct_object(node, deep=True)
            except (yaml.YAMLError, ValueError, TypeError):  # e.g. '!!int abc'
                raise _Fail(f"value {node.value!r} is not valid for tag {node.tag}", node) from None
        if node.tag == VAULT_TAG:
            raise _Fail("a !vault value must be a string (the output of ansible-vault encrypt_string)", node)
        if id(node) in self.active:
            raise _Fail("recursive alias (an anchor that contains itself)", node)
        self.active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                if node.tag != _SEQ_TAG:
                    raise _Fail(f"unsupported YAML tag {node.tag!r} (only plain data is allowed)", node)
                out = YList(loc=self.loc(node))
                for item in node.value:
                    out.append(self.build(item))
                    out.item_locs.append(self.loc(item))
                return out
            if isinstance(node, MappingNode):
                if node.tag != _MAP_TAG:
                    raise _Fail(f"unsupported YAML tag {node.tag!r} (only plain data is allowed)", node)
                return self.build_mapping(node)
        finally:
            self.active.discard(id(node))
        raise _Fail("unsupported YAML node", node)  # pragma: no cover

    def vault_ref(self, node: ScalarNode) -> SecretRef:
        """A ``!vault`` value: a secret reference holding the envelope, decrypted only when
        resolved (plan/apply). The envelope's shape is checked here, so a corrupted blob is
        reported with its location even without a password."""
        loc = self.loc(node)
        try:
            vault.parse(node.value)
        except vault.VaultError as e:
            raise _Fail(f"!vault value: {e}", node) from None
        return SecretRef("vault", str(loc), loc, ciphertext=node.value)

    def build_mapping(self, node: MappingNode) -> YDict:
        out = YDict(loc=self.loc(node))
        merged: list[YDict] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merged.extend(self.merge_sources(value_node))
                continue
            if not isinstance(key_node, ScalarNode):
                raise _Fail("mapping keys must be plain scalars", key_node)
            key = self.build(key_node)
            try:
                hash(key)
            except TypeError:  # pragma: no cover - scalars are hashable
                raise _Fail("unhashable mapping key", key_node) from None
            if key in out:
                first = out.key_locs[key]
                raise _Fail(f"duplicate key {key!r} (first defined at line {first.line}, column {first.col})", key_node)
            out.key_locs[key] = self.loc(key_node)
            out[key] = self.build(value_node)
            out.value_locs[key] = self.loc(value_node)
        # '<<' merge keys: explicit keys win, earlier merge sources win over later ones
        for source in merged:
            for k, v in source.items():
                if k not in out:
                    out[k] = v
                    out.key_locs[k] = source.key_locs.get(k, source.loc)
                    out.value_locs[k] = source.value_locs.get(k, source.loc)
        return out

    def merge_sources(self, node: Node) -> list[YDict]:
        value = self.build(node)
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(i, YDict) for i in items):
            raise _Fail("merge key '<<' needs a mapping or a list of mappings", node)
        return list(items)


def _diag_from_mark(file: str, message: str, mark: Any) -> Diagnostic:
    if mark is None:
        return Diagnostic(message, file, 1, 1)
    return Diagnostic(message, file, mark.line + 1, mark.column + 1)


_TYPE_WORDS = {YDict: "a mapping", YList: "a list", dict: "a mapping", list: "a list"}


def type_word(value: Any) -> str:
    """Human name of a YAML value's type (for messages)."""
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def parse_yaml(data: bytes | str, file: str, *, expect: type | None = None, json_file: bool = False) -> tuple[Any, list[Diagnostic]]:
    """Parse one YAML (or JSON) document. Returns ``(data, diagnostics)``; data is None on error.

    ``expect`` is ``dict`` or ``list`` to require that root type. ``file`` is the name used
    in locations (as the user gave it).
    """
    if isinstance(data, bytes):
        if len(data) > MAX_BYTES:
            return None, [Diagnostic(f"file is larger than {MAX_BYTES // (1024 * 1024)} MiB", file, 1, 1)]
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            return None, [Diagnostic(f"file is not valid UTF-8 (byte offset {e.start})", file, 1, 1)]
    else:
        text = data
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        return None, [Diagnostic("file contains a NUL character", file, line, 1)]
    if json_file:
        # JSON strings cannot hold raw tabs, so every tab is whitespace: make it a space
        # (same column) because PyYAML refuses tabs in some places JSON allows them.
        text = text.replace("\t", " ")
    else:
        tabs = _tab_diagnostics(text, file)
        if tabs:
            return None, tabs
    node = None
    loader: Any = None
    if _CLoader is not None and _c_parser_agrees(text):
        loader = _CLoader(text)
        try:
            node = loader.get_single_node()
        except Exception:  # noqa: BLE001 - the pure-Python loader below reports it in its words
            loader.dispose()
            loader, node = None, None
    if loader is None:
        try:
            loader = _Loader(text)
        except yaml.reader.ReaderError as e:  # a character YAML does not allow (the reader checks up front)
            pos = e.position if isinstance(e.position, int) else 0
            line = text.count("\n", 0, pos) + 1
            col = pos - (text.rfind("\n", 0, pos) + 1) + 1
            return None, [Diagnostic(f"malformed YAML: unacceptable character #x{e.character:04x} "
                                     "(control and special characters are not allowed)", file, line, col)]
    try:
        try:
            if node is None and isinstance(loader, _Loader):
                node = loader.get_single_node()
        except yaml.MarkedYAMLError as e:
            if "expected a single document" in str(e.context or ""):
                return None, [_diag_from_mark(file, "expected a single YAML document, found more than one ('---')", e.problem_mark)]
            msg = str(e.problem or e.context or "malformed YAML")
            if e.context and e.problem:
                msg = f"{e.context}: {e.problem}"
            if "found character '\\t'" in msg:
                msg = "tab character where YAML does not allow one"
            return None, [_diag_from_mark(file, f"malformed YAML: {msg}", e.problem_mark or e.context_mark)]
        except yaml.YAMLError as e:
            return None, [Diagnostic(f"malformed YAML: {e}", file, 1, 1)]
        if node is None:
            return None, [Diagnostic("file is empty (no YAML document)", file, 1, 1)]
        builder = _Builder(loader, file)
        try:
            value = builder.build(node)
        except _Fail as f:
            return None, [_diag_from_mark(file, f.message, f.mark)]
        except RecursionError:
            return None, [_diag_from_mark(file, "document is nested too deeply", node.start_mark)]
    finally:
        loader.dispose()
    if expect is not None and not isinstance(value, expect):
        want = _TYPE_WORDS.get(expect, expect.__name__)
        return None, [_diag_from_mark(file, f"the document must be {want}, not {type_word(value)}", node.start_mark)]
    return value, []


def load_yaml(path: str, *, expect: type | None = None) -> tuple[Any, bytes | None, list[Diagnostic]]:
    """Read and parse a file. Returns ``(data, raw_bytes, diagnostics)``."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as e:
        return None, None, [Diagnostic(f"cannot read file: {e.strerror or e}", path, 1, 1)]
    data, diags = parse_yaml(raw, path, expect=expect, json_file=path.endswith(".json"))
    return data, raw, diags
