"""Plain data shared by every stage of the pipeline.

Everything here is immutable and free of I/O. Desired and observed states are plain
JSON-like dicts (str/int/bool/None/list/dict) so that diffing, fingerprinting and
rendering need no per-kind code; the one exception is :class:`Secret`, which may sit
in a desired state and renders as ``(sensitive)`` everywhere.
"""
from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Mapping


class Secret:
    """A resolved secret value. Never printed: ``str``/``repr``/JSON show ``(sensitive)``.

    ``digest`` is a SHA-256 of the value, usable for comparisons that must not keep the
    value itself (plan fingerprints). ``origin`` names the reference (``env:NAME``) for
    error messages.
    """

    __slots__ = ("_value", "origin")

    def __init__(self, value: str, origin: str = "(inline)"):
        self._value = value
        self.origin = origin

    def reveal(self) -> str:
        return self._value

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self._value.encode()).hexdigest()

    def __repr__(self) -> str:
        return "Secret((sensitive))"

    __str__ = lambda self: "(sensitive)"  # noqa: E731

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


SENSITIVE = "(sensitive)"


@dataclass(frozen=True, order=True)
class Ref:
    """Identity of one managed object: its kind, the inventory host it lives on, its name."""

    kind: str
    target: str
    name: str

    @property
    def address(self) -> str:
        return f"{self.kind}[{self.name}]@{self.target}"

    def __str__(self) -> str:
        return self.address

    @classmethod
    def parse(cls, address: str) -> "Ref":
        kind, rest = address.split("[", 1)
        name, target = rest.rsplit("]@", 1)
        return cls(kind, target, name)


@dataclass(frozen=True)
class Location:
    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class Host:
    """An inventory host with its merged variables (group_vars, host_vars, inventory)."""

    name: str
    vars: Mapping[str, Any]
    groups: tuple[str, ...] = ()
    site: str | None = None

    @property
    def connection(self) -> str:
        return str(self.vars.get("ansible_connection", "ssh"))

    @property
    def address(self) -> str:
        return str(self.vars.get("ansible_host", self.name))

    @property
    def port(self) -> int | None:
        port = self.vars.get("ansible_port")
        return int(port) if port is not None else None

    @property
    def user(self) -> str | None:
        user = self.vars.get("ansible_user")
        return str(user) if user is not None else None


@dataclass(frozen=True)
class Resource:
    """One declared object, rendered for one target host.

    ``desired`` is the kind's normalised state (defaults filled in). ``state`` is
    ``present`` or ``absent``. ``depends_on`` lists refs that must be applied first.
    """

    ref: Ref
    desired: Mapping[str, Any]
    state: str = "present"
    depends_on: tuple[Ref, ...] = ()
    location: Location | None = None
    play: str = ""
    site: str | None = None
    adopt: bool = False  # ``adopt: true``: take ownership of an existing unowned object (docs/pruning.md)


class Action(str, enum.Enum):
    CREATE = "create"
    UPDATE = "update"
    DELETE = "delete"
    NOOP = "noop"


@dataclass(frozen=True)
class Change:
    """What must happen to one object: the pure output of a kind's ``diff``.

    ``before`` is the observed state (None when absent), ``after`` the desired one (None
    for deletes). ``properties`` names the differing properties (empty for noop).
    ``notes`` carries loud plan lines (adoption of an unowned object, exact-mode
    removals...). ``refusal`` is set instead of an action when the change must not be
    made (e.g. deleting an object kmsdeploy does not own); refusals are errors.
    """

    ref: Ref
    action: Action
    before: Mapping[str, Any] | None = None
    after: Mapping[str, Any] | None = None
    properties: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    refusal: str | None = None
    location: Location | None = None
    depends_on: tuple[Ref, ...] = ()
    site: str | None = None
    reason: str | None = None  # why the change exists when no resource asks for it ("no longer declared")

    @property
    def pending(self) -> bool:
        return self.refusal is None and self.action is not Action.NOOP


@dataclass(frozen=True)
class TargetError:
    """A target that could not be read or applied; its resources are left out of the plan."""

    target: str
    message: str
    transient: bool = False


@dataclass(frozen=True)
class Plan:
    """The planner's output: ordered changes plus what is needed to check staleness later."""

    changes: tuple[Change, ...]
    fingerprints: Mapping[str, str] = field(default_factory=dict)  # ref address -> digest
    errors: tuple[TargetError, ...] = ()
    warnings: tuple[str, ...] = ()
    created_at: str = ""
    source: Mapping[str, Any] = field(default_factory=dict)  # playbooks, inventory, spec digest
    facts_age_seconds: float | None = None

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action is action and c.refusal is None)

    @property
    def pending(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.pending)

    @property
    def refusals(self) -> tuple[Change, ...]:
        return tuple(c for c in self.changes if c.refusal is not None)


def to_jsonable(value: Any) -> Any:
    """Turn a desired/observed state into JSON data, masking secrets (resolved or not: offline
    plans keep secret references unresolved because CI holds no credentials)."""
    if isinstance(value, (Secret, SecretRef)):
        return SENSITIVE
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value


def fingerprint(observed: Mapping[str, Any] | None) -> str:
    """Stable digest of an observed state (None = absent). Secrets hash by digest only."""

    def enc(o: Any) -> Any:
        if isinstance(o, Secret):
            return o.digest
        raise TypeError(type(o).__name__)

    data = json.dumps(observed, sort_keys=True, default=enc, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(data.encode()).hexdigest()


@dataclass(frozen=True)
class SecretRef:
    """An unresolved secret reference from a spec: ``{env: NAME}``, ``{file: PATH}`` or a
    ``!vault`` value.

    ``validate`` keeps references unresolved (no credentials needed in CI);
    ``plan``/``apply`` resolve them to :class:`Secret` (see kmsdeploy.spec.secrets).
    ``path`` of a file reference is already made absolute against the declaring file.
    A ``!vault`` reference (``source="vault"``) carries the Ansible Vault envelope in
    ``ciphertext`` and its place (``file:line:col``) in ``name``.
    """

    source: str  # "env" | "file" | "vault"
    name: str
    location: Location | None = None
    ciphertext: str = field(default="", repr=False)

    def __str__(self) -> str:
        if self.source == "vault":
            return "!vault"
        return f"{self.source}:{self.name}"


@dataclass(frozen=True)
class Play:
    name: str
    hosts: str  # inventory pattern
    location: Location | None = None
    rollout: Mapping[str, Any] = field(default_factory=dict)
    file: str = ""
    #: ``prune:`` of the play: False, True (every kind) or the kinds it prunes (docs/pruning.md)
    prune: bool | tuple[str, ...] = False
    max_prune: int | None = None  # refuse a plan pruning more than this many objects


@dataclass(frozen=True)
class Specs:
    """Everything loaded and validated: the inventory hosts and the rendered resources.

    ``resources`` holds one Resource per (declared resource x matched host), in file
    order. ``digest`` covers the content of every file read, so a saved plan can tell
    whether the specs changed since it was made.
    """

    hosts: Mapping[str, Host]
    resources: tuple[Resource, ...]
    plays: tuple[Play, ...] = ()
    sources: tuple[str, ...] = ()
    digest: str = ""
    warnings: tuple[str, ...] = ()
    inventory: str | None = None
    playbooks: tuple[str, ...] = ()
