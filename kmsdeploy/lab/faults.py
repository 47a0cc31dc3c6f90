"""Fault injection for the lab WinRM endpoint, per simulated host, deterministic.

Tests and benchmarks set faults at run time (``server.faults.set(host, FaultConfig(...))``);
the lab daemon also reads them from ``STATE_DIR/faults.json`` whenever that file
changes, so ``kmsdeploy lab`` users can make a branch "flaky" without a restart::

    {"default": {"latency_ms": 20},
     "hosts": {"kms01": {"drop_next": 2, "actions": ["Command"]},
               "kms02": {"drop_probability": 0.1, "seed": 7},
               "kms03": {"error_500_next": 3}, "kms04": {"auth_failure": true}}}

Counted faults (``drop_next``, ``error_500_next``, ``slow_receive_next``) are consumed
as they fire; probabilistic drops use a ``random.Random(seed)`` per host, so a run is
reproducible. Faults fire on WinRM requests (after authentication and decryption, when
the action is known), except ``latency_ms`` (every HTTP request) and ``auth_failure``
(every request answered 401).
"""
from __future__ import annotations

import collections
import json
import random
import threading
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping

DROP_BEFORE = "before"  # close the socket before the request is processed (nothing happened)
DROP_AFTER = "after"  # process the request, then close without replying (it may have run)


@dataclass(frozen=True)
class FaultConfig:
    """Faults of one host. Every field defaults to "no fault"."""

    #: milliseconds added to every HTTP request of the host
    latency_ms: float = 0.0
    #: close the connection without a reply for the next N matching WinRM requests
    drop_next: int = 0
    #: besides ``drop_next``, drop each matching request with this probability (seeded)
    drop_probability: float = 0.0
    #: when to drop: "before" processing (nothing ran) or "after" (the request ran, reply lost)
    drop_phase: str = DROP_BEFORE
    #: answer the next N matching WinRM requests with HTTP 500 + a w:InternalError fault
    error_500_next: int = 0
    #: answer every request with 401, as if the password had been changed
    auth_failure: bool = False
    #: hold the next N Receives until OperationTimeout, then answer w:TimedOut (2150858793)
    slow_receive_next: int = 0
    #: seed of the per-host random generator used by ``drop_probability``
    seed: int = 0
    #: WinRM actions (Create, Command, Send, Receive, Signal, Delete) the drop/500 faults
    #: apply to; empty means all
    actions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.drop_phase not in (DROP_BEFORE, DROP_AFTER):
            raise ValueError(f"drop_phase must be {DROP_BEFORE!r} or {DROP_AFTER!r}")
        if not 0.0 <= self.drop_probability <= 1.0:
            raise ValueError("drop_probability must be between 0 and 1")
        object.__setattr__(self, "actions", tuple(self.actions))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "FaultConfig":
        """Build from JSON data; unknown keys are an error (typos must not pass silently)."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown fault setting(s): {', '.join(sorted(unknown))}")
        return cls(**dict(data))


@dataclass(frozen=True)
class Decision:
    """What the endpoint must do with one request."""

    latency_s: float = 0.0
    drop: str | None = None  # DROP_BEFORE / DROP_AFTER / None
    error_500: bool = False
    slow_receive: bool = False


@dataclass
class _HostState:
    config: FaultConfig
    rng: random.Random = field(default_factory=random.Random)
    explicit: bool = True  # False: follows the default setting


class FaultInjector:
    """Thread-safe per-host fault state; ``fired[host]`` counts the faults that fired."""

    def __init__(self, default: FaultConfig | None = None):
        self._lock = threading.Lock()
        self._default = default or FaultConfig()
        self._hosts: dict[str, _HostState] = {}
        self.fired: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

    def set(self, host: str, config: FaultConfig) -> None:
        """Replace the faults of ``host`` (resets its counters and random generator)."""
        with self._lock:
            self._hosts[host] = _HostState(config, random.Random(config.seed))

    def set_default(self, config: FaultConfig) -> None:
        """Faults for hosts without their own setting."""
        with self._lock:
            self._default = config
            for name in [h for h, s in self._hosts.items() if not s.explicit]:
                del self._hosts[name]

    def clear(self, host: str | None = None) -> None:
        """Remove the faults of one host, or of all hosts (and the default)."""
        with self._lock:
            if host is None:
                self._hosts.clear()
                self._default = FaultConfig()
            else:
                self._hosts.pop(host, None)

    def get(self, host: str) -> FaultConfig:
        """The current (remaining) faults of ``host``."""
        with self._lock:
            return self._state(host).config

    def _state(self, host: str) -> _HostState:
        state = self._hosts.get(host)
        if state is None:
            state = self._hosts[host] = _HostState(self._default, random.Random(self._default.seed), explicit=False)
        return state

    def latency(self, host: str) -> float:
        """Seconds to add to every HTTP request of ``host``."""
        with self._lock:
            return self._state(host).config.latency_ms / 1000.0

    def auth_failure(self, host: str) -> bool:
        with self._lock:
            failing = self._state(host).config.auth_failure
            if failing:
                self.fired[host]["auth_failure"] += 1
            return failing

    def decide(self, host: str, action: str) -> Decision:
        """Consume and return the faults for one WinRM request of ``host``."""
        with self._lock:
            state = self._state(host)
            cfg = state.config
            matches = not cfg.actions or action in cfg.actions
            drop = None
            error_500 = slow = False
            if matches and cfg.drop_next > 0:
                cfg = replace(cfg, drop_next=cfg.drop_next - 1)
                drop = cfg.drop_phase
            elif matches and cfg.drop_probability and state.rng.random() < cfg.drop_probability:
                drop = cfg.drop_phase
            elif matches and cfg.error_500_next > 0:
                cfg = replace(cfg, error_500_next=cfg.error_500_next - 1)
                error_500 = True
            elif action == "Receive" and cfg.slow_receive_next > 0:
                cfg = replace(cfg, slow_receive_next=cfg.slow_receive_next - 1)
                slow = True
            state.config = cfg
            if drop:
                self.fired[host][f"drop_{drop}"] += 1
            if error_500:
                self.fired[host]["error_500"] += 1
            if slow:
                self.fired[host]["slow_receive"] += 1
            return Decision(cfg.latency_ms / 1000.0, drop, error_500, slow)

    # ------------------------------------------------------------------ JSON files
    def load(self, data: Mapping[str, Any]) -> None:
        """Replace every setting from ``{"default": {...}, "hosts": {name: {...}}}``."""
        default = FaultConfig.from_dict(data.get("default", {}))
        hosts = {name: FaultConfig.from_dict(cfg) for name, cfg in (data.get("hosts") or {}).items()}
        with self._lock:
            self._default = default
            self._hosts = {name: _HostState(cfg, random.Random(cfg.seed)) for name, cfg in hosts.items()}

    def load_file(self, path: str) -> None:
        """Load settings from a JSON file (see the module docstring)."""
        with open(path, encoding="utf-8") as fh:
            self.load(json.load(fh))

    def dump(self) -> dict[str, Any]:
        """Current settings as JSON data (remaining counts)."""
        with self._lock:
            return {"default": _jsonable(self._default),
                    "hosts": {h: _jsonable(s.config) for h, s in self._hosts.items()}}


def _jsonable(cfg: FaultConfig) -> dict[str, Any]:
    data = asdict(cfg)
    data["actions"] = list(cfg.actions)
    return data
