"""Secret references: ``{env: NAME}`` and ``{file: PATH}``.

Specs never hold secret values. A reference is turned into a
:class:`~kmsdeploy.model.SecretRef` while loading (file paths made absolute against the
file that declares them) and, for ``plan``/``apply``, resolved into a
:class:`~kmsdeploy.model.Secret` by :func:`resolve`. Errors name the reference
(``env:NAME``, ``file:/path``), never a value.

``!vault`` values (Ansible Vault, see :mod:`kmsdeploy.spec.vault`) are references too:
the YAML loader makes them SecretRefs carrying the envelope; :func:`resolve` decrypts them
with the run's :class:`~kmsdeploy.spec.vault.VaultSecrets`. :func:`sensitive` marks the
values of a whole vault-encrypted vars file as secrets.

Rules:

* ``env``: the variable must be set and non-empty.
* ``file``: read as UTF-8; exactly one trailing newline (``\\n`` or ``\\r\\n``) is
  stripped; an empty result is an error (an empty password is always a mistake).
"""
from __future__ import annotations

import os
from typing import Any, Mapping

from ..errors import SecretError
from ..model import Location, Secret, SecretRef
from .vault import VaultError, VaultSecrets, decrypt

SECRET_SOURCES = ("env", "file")
INLINE_SECRET_MESSAGE = "inline secret; use {env: NAME} or {file: PATH}"


def is_secret_mapping(value: Any) -> bool:
    """True for a mapping that is exactly ``{env: str}`` or ``{file: str}``."""
    return (
        isinstance(value, Mapping)
        and len(value) == 1
        and next(iter(value)) in SECRET_SOURCES
        and isinstance(next(iter(value.values())), str)
    )


def to_ref(value: Mapping[str, str], declared_in: str | None, location: Location | None = None) -> SecretRef:
    """Build a :class:`SecretRef` from a secret mapping; file paths become absolute
    relative to the directory of ``declared_in``."""
    (source, name), = value.items()
    if source == "file":
        name = os.path.expanduser(name)
        if not os.path.isabs(name):
            base = os.path.dirname(os.path.abspath(declared_in)) if declared_in else os.getcwd()
            name = os.path.join(base, name)
        name = os.path.normpath(name)
    return SecretRef(source, name, location)


def resolve(ref: SecretRef, vault: VaultSecrets | None = None) -> Secret:
    """Resolve a reference to its value. Raises :class:`SecretError` naming the reference.

    ``vault`` holds the passwords that decrypt ``!vault`` references."""
    if isinstance(ref, Secret):
        return ref
    if ref.source == "vault":
        try:
            plain = decrypt(ref.ciphertext, vault)
            text = plain.decode("utf-8")
        except VaultError as e:
            raise SecretError(f"!vault value: {e}") from None
        except UnicodeDecodeError:
            raise SecretError("!vault value: the decrypted value is not valid UTF-8") from None
        return Secret(text, origin=f"!vault at {ref.name}")
    if ref.source == "env":
        value = os.environ.get(ref.name)
        if value is None:
            raise SecretError(f"secret {ref}: environment variable {ref.name} is not set")
        if value == "":
            raise SecretError(f"secret {ref}: environment variable {ref.name} is empty")
        return Secret(value, origin=str(ref))
    if ref.source == "file":
        try:
            with open(ref.name, "rb") as fh:
                raw = fh.read(1024 * 1024 + 1)
        except IsADirectoryError:
            raise SecretError(f"secret {ref}: is a directory, not a file") from None
        except OSError as e:
            raise SecretError(f"secret {ref}: cannot read file ({e.strerror or type(e).__name__})") from None
        if len(raw) > 1024 * 1024:
            raise SecretError(f"secret {ref}: file is larger than 1 MiB")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise SecretError(f"secret {ref}: file is not valid UTF-8") from None
        if text.endswith("\r\n"):
            text = text[:-2]
        elif text.endswith("\n"):
            text = text[:-1]
        if text == "":
            raise SecretError(f"secret {ref}: file is empty")
        return Secret(text, origin=str(ref))
    raise SecretError(f"secret {ref}: unknown source {ref.source!r} (use env or file)")


def refs_in(value: Any) -> list[SecretRef]:
    """Every unresolved SecretRef inside a (nested) value."""
    out: list[SecretRef] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, SecretRef):
            out.append(v)
        elif isinstance(v, Mapping):
            stack.extend(v.values())
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
    return out


def replace_refs(value: Any, resolved: Mapping[SecretRef, Secret]) -> Any:
    """Copy of ``value`` with every SecretRef found in ``resolved`` replaced by its Secret."""
    if isinstance(value, SecretRef):
        return resolved.get(value, value)
    if isinstance(value, Mapping):
        out = {k: replace_refs(v, resolved) for k, v in value.items()}
        return _keep_meta(value, out)
    if isinstance(value, list):
        return _keep_meta(value, [replace_refs(v, resolved) for v in value])
    return value


def sensitive(value: Any, origin: str, keep: frozenset[str] | set[str] = frozenset()) -> Any:
    """Copy of ``value`` (the variables of a decrypted vars file) with every string made a
    :class:`Secret`, so nothing that was encrypted is ever shown. Numbers, booleans and
    null keep their type (a Secret is text). Top-level variables named in ``keep`` (plain
    connection settings such as ``ansible_host``, which are needed as text) are left as
    they are."""
    if keep and isinstance(value, Mapping):
        return _keep_meta(value, {k: v if k in keep else sensitive(v, origin) for k, v in value.items()})
    if isinstance(value, str):
        return Secret(value, origin=origin)
    if isinstance(value, Mapping) and not isinstance(value, (Secret, SecretRef)):
        return _keep_meta(value, {k: sensitive(v, origin) for k, v in value.items()})
    if isinstance(value, list):
        return _keep_meta(value, [sensitive(v, origin) for v in value])
    return value


def _keep_meta(original: Any, new: Any) -> Any:
    from .yamlpos import YDict, YList

    if isinstance(original, YDict):
        return YDict(new).copy_meta(original)
    if isinstance(original, YList):
        return YList(new).copy_meta(original)
    return new
