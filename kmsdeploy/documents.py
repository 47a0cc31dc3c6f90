"""kmsdeploy's own JSON documents (saved plans, facts, run reports): written atomically, read with clear errors.

Every document carries ``kind`` and a semver ``format_version``; a reader accepts the
major version it knows and names the file, line and column of broken JSON.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Sequence

from .errors import PlanError


def write_document(doc: dict[str, Any], path: str) -> None:
    """Write ``doc`` as indented JSON; a reader never sees a half-written file (temp file + rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".kmsdeploy-", dir=directory)
    except OSError as exc:
        raise PlanError(f"{path}: cannot write: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2, sort_keys=True)
            fh.write("\n")
        os.replace(tmp, path)
    except OSError as exc:
        os.unlink(tmp)
        raise PlanError(f"{path}: cannot write: {exc.strerror}") from None


def read_document(path: str, kind: str, what: str, format_version: str,
                  required: Sequence[str] = (), redo: str = "make it again") -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as exc:
        raise PlanError(f"{path}: cannot read {what}: {exc.strerror}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f"{exc.lineno}:{exc.colno}: " if isinstance(exc, json.JSONDecodeError) else ""
        raise PlanError(f"{path}:{where}not a valid {what} (invalid JSON: {getattr(exc, 'msg', exc)})") from None
    if not isinstance(doc, dict) or doc.get("kind") != kind:
        raise PlanError(f"{path}: not a kmsdeploy {what}")
    if str(doc.get("format_version", "")).split(".")[0] != format_version.split(".")[0]:
        raise PlanError(f"{path}: {what} format {doc.get('format_version')} is not supported by this kmsdeploy "
                        f"(format {format_version}); {redo}")
    for key in required:
        if key not in doc:
            raise PlanError(f"{path}: {what} is missing '{key}'")
    return doc
