"""Saved plans: write, read, and check that a saved plan still holds.

A saved plan is the plan document (``schemas/plan.schema.json``): no secrets, only
the fingerprints of what was observed. ``apply PLANFILE`` reloads the same specs
(their digest must match), re-reads the targets, and refuses the plan when any
fingerprint differs — the targets changed since the plan was made.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from .errors import PlanError
from .render.document import DOCUMENT_KIND, FORMAT_VERSION


def save(doc: dict[str, Any], path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".plan-", dir=directory)
    with os.fdopen(fd, "w") as fh:
        json.dump(doc, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)


def is_plan_file(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096).lstrip()
    except OSError:
        return False
    return head.startswith(b"{") and DOCUMENT_KIND.encode() in head


def load(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except OSError as exc:
        raise PlanError(f"{path}: cannot read saved plan: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise PlanError(f"{path}:{exc.lineno}:{exc.colno}: not a saved plan (invalid JSON: {exc.msg})") from None
    if not isinstance(doc, dict) or doc.get("kind") != DOCUMENT_KIND:
        raise PlanError(f"{path}: not a kmsdeploy plan file")
    major = str(doc.get("format_version", "0")).split(".")[0]
    if major != FORMAT_VERSION.split(".")[0]:
        raise PlanError(f"{path}: plan format {doc.get('format_version')} is not supported by this kmsdeploy "
                        f"(format {FORMAT_VERSION}); make the plan again")
    for key in ("changes", "fingerprints", "source", "summary"):
        if key not in doc:
            raise PlanError(f"{path}: saved plan is missing '{key}'")
    return doc
