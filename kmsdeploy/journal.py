"""The run journal: one JSON line per finished target, so a stopped rollout can resume.

``apply --resume JOURNAL`` reads it back: targets whose last entry is ``converged``
are not scheduled again (the plan's read re-verifies them: one round trip each), and
a canary that already passed is not repeated. Lines are appended and flushed as
targets finish, so a killed run loses at most the targets in flight.
"""
from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from .errors import PlanError


@dataclass
class JournalState:
    converged: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    canary_passed: bool = False


class Journal:
    def __init__(self, path: str):
        self.path = path
        self._lock = threading.Lock()

    def _write(self, entry: dict[str, Any]) -> None:
        from .planner import now_iso

        entry = {"at": now_iso(), **entry}
        with self._lock, open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def record(self, outcome) -> None:
        self._write({"event": "target", "target": outcome.target, "site": outcome.site, "status": outcome.status,
                     "applied": outcome.applied, "errors": outcome.errors, "wave": outcome.wave})

    def canary_passed(self) -> None:
        self._write({"event": "canary_passed"})


def read_journal(path: str) -> JournalState:
    state = JournalState()
    try:
        fh = open(path, encoding="utf-8")
    except FileNotFoundError:
        return state
    except OSError as exc:
        raise PlanError(f"{path}: cannot read journal: {exc.strerror}") from None
    with fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                if fh.read(1) == "":  # a torn last line from a killed run is expected
                    break
                raise PlanError(f"{path}:{n}:1: journal line is not JSON") from None
            if entry.get("event") == "canary_passed":
                state.canary_passed = True
            elif entry.get("event") == "target":
                t = entry["target"]
                if entry.get("status") == "converged":
                    state.converged.add(t)
                    state.failed.discard(t)
                else:
                    state.failed.add(t)
                    state.converged.discard(t)
    return state
