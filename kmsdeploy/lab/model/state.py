"""Persistent JSON state of simulated Windows hosts, one file per host under ``STATE_DIR/windows/``.

The state survives between CLI calls (``kmsdeploy lab up`` then several ``plan``/``apply``
runs). Each file is rewritten atomically (temp file + rename) under an exclusive
``fcntl`` lock on a sidecar lock file, so several endpoint threads or processes can
serve the same host safely. Values here are what the model needs to answer reads the
way Windows would; product keys are never stored, only their SHA-256 (and the 5
characters Windows itself shows as PartialProductKey).
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

#: file holding model-wide facts (activation counts per key digest, fault hooks)
GLOBAL_FILE = "_global.json"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class UnknownHost(KeyError):
    """No state file for this host (seed it first)."""


def host_file(state_dir: Path, host: str) -> Path:
    """The state file of ``host`` (the name is made file-safe; a digest keeps it unique)."""
    safe = _SAFE.sub("_", host.lower())[:80]
    digest = hashlib.sha256(host.lower().encode()).hexdigest()[:8]
    return state_dir / f"{safe}-{digest}.json"


def key_digest(key: str) -> str:
    """What the model stores instead of a product key."""
    return "sha256:" + hashlib.sha256(key.strip().upper().encode()).hexdigest()


def _write_atomic(path: Path, data: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    lock = path.with_suffix(path.suffix + ".lock")
    with open(lock, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


class StateStore:
    """Load/modify/save host states and the global state in ``state_dir``."""

    def __init__(self, state_dir: str | os.PathLike):
        # a subdirectory: the lab daemon keeps its own files (lab.json...) in state_dir
        self.dir = Path(state_dir) / "windows"
        self.dir.mkdir(parents=True, exist_ok=True)

    def exists(self, host: str) -> bool:
        return host_file(self.dir, host).exists()

    def load(self, host: str) -> dict[str, Any]:
        path = host_file(self.dir, host)
        if not path.exists():
            raise UnknownHost(host)
        return json.loads(path.read_text(encoding="utf-8"))

    def save(self, host: str, state: dict[str, Any]) -> None:
        path = host_file(self.dir, host)
        with _locked(path):
            _write_atomic(path, state)

    @contextlib.contextmanager
    def edit(self, host: str) -> Iterator[dict[str, Any]]:
        """Lock, load, yield for modification, save (only when the block succeeds)."""
        path = host_file(self.dir, host)
        if not path.exists():
            raise UnknownHost(host)
        with _locked(path):
            state = json.loads(path.read_text(encoding="utf-8"))
            yield state
            _write_atomic(path, state)

    @contextlib.contextmanager
    def edit_global(self) -> Iterator[dict[str, Any]]:
        path = self.dir / GLOBAL_FILE
        with _locked(path):
            state = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
            state.setdefault("keys", {})
            yield state
            _write_atomic(path, state)

    def hosts(self) -> list[str]:
        out = []
        for p in sorted(self.dir.glob("*.json")):
            if p.name == GLOBAL_FILE or p.name.startswith(".tmp-"):
                continue
            try:
                out.append(json.loads(p.read_text(encoding="utf-8"))["host"])
            except (ValueError, KeyError):
                continue
        return out
