"""``for_each`` on a resource: turn the loop's (rendered) value into ordered iterations.

Pure: no templating, no I/O. The loader renders the ``for_each`` value in the host's scope,
calls :func:`iterations`, then renders the resource once per iteration with ``each`` and
``item`` in scope (see docs/specs.md "Loops (for_each)").

Keys (``each.key``), chosen as Terraform and Ansible users expect and stable across runs:

* a mapping: the mapping's key (``{berlin: {...}}`` -> ``berlin``), in the mapping's order;
* a list of strings: the string itself (Terraform's ``for_each = toset([...])``);
  a string listed twice is an error (both iterations would be the same resource);
* a list of ``{key, value}`` mappings (what ``dict2items`` yields) with scalar keys: as for
  the mapping itself, so ``"{{ sites | dict2items }}"`` and ``"{{ sites }}"`` loop alike
  (``for_each[berlin]``, ``each.value`` the site's value, ``item`` the ``{key, value}`` pair);
* any other list: the position, ``"0"``, ``"1"``, ... (reordering such a list renumbers the
  iterations but does not change what is declared: identities come from the resource's fields).

``each.value`` is the element (for a mapping, the mapping's value); ``item`` is the element as
Ansible's ``loop`` would give it (for a mapping: ``{key, value}``, as ``dict2items`` does, so
``item.key``/``item.value`` work as in Ansible).
Anything else (a string, a number, a boolean, null) is a :class:`LoopError`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Iterable


class LoopError(ValueError):
    """The for_each value cannot be iterated; ``message`` is for humans."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Iteration:
    """One pass of a loop: ``key`` names it in messages (``for_each[key]``)."""

    key: str
    value: Any
    #: what ``item`` is in the resource's templates (Ansible's loop variable)
    item: Any

    def magic(self) -> dict[str, Any]:
        """The variables this iteration adds to the resource's scope."""
        return {"each": {"key": self.key, "value": self.value}, "item": self.item}


def _scalar_key(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def _describe(value: Any) -> str:
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"a string ({shown!r})"
    if isinstance(value, bool):
        return f"a boolean ({value})"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    return f"a {type(value).__name__}"


def iterations(value: Any) -> list[Iteration]:
    """The iterations of a rendered ``for_each`` value, in order (see the module docstring)."""
    if isinstance(value, Mapping):
        out = []
        for k, v in value.items():
            key = _scalar_key(k)
            if key is None:
                raise LoopError(f"for_each mapping keys must be strings or numbers, got {_describe(k)}")
            out.append(Iteration(key, v, {"key": k, "value": v}))
        return out
    if isinstance(value, (list, tuple)):
        items = list(value)
        values = items
        if items and all(isinstance(v, str) for v in items):
            keys = items
        elif items and all(isinstance(v, Mapping) and set(v) == {"key", "value"} and _scalar_key(v["key"]) is not None
                           for v in items):
            keys = [str(_scalar_key(v["key"])) for v in items]
            values = [v["value"] for v in items]
        else:
            keys = [str(i) for i in range(len(items))]
        seen: dict[str, int] = {}
        for i, k in enumerate(keys):
            if k in seen:
                raise LoopError(f"for_each lists the key {k!r} twice (items {seen[k] + 1} and {i + 1}); "
                                "each iteration must have its own key")
            seen[k] = i
        return [Iteration(k, v, it) for k, v, it in zip(keys, values, items)]
    raise LoopError(f"for_each must be a list or a mapping (or a template that yields one), got {_describe(value)}")


def duplicate_identities(produced: Iterable[tuple[str, str]]) -> list[tuple[str, str, str]]:
    """``(key, identity)`` pairs -> ``(identity, first key, later key)`` for every identity
    that a later iteration produces again."""
    first: dict[str, str] = {}
    out = []
    for key, identity in produced:
        if identity in first:
            out.append((identity, first[identity], key))
        else:
            first[identity] = key
    return out
