"""Saved plans: write, read, and check that a saved plan still holds.

A saved plan is the plan document (``schemas/plan.schema.json``): no secrets, only
the fingerprints of what was observed. ``apply PLANFILE`` reloads the same specs
(their digest must match), re-reads the targets, and refuses the plan when any
fingerprint differs — the targets changed since the plan was made.
"""
from __future__ import annotations

import json
from typing import Any

from .documents import read_document
from .render.document import DOCUMENT_KIND, FORMAT_VERSION


def is_plan_file(path: str) -> bool:
    """True for a saved plan (JSON with our document kind), False for a playbook or anything else."""
    try:
        with open(path, "rb") as fh:
            if not fh.read(4096).lstrip().startswith(b"{"):
                return False
            fh.seek(0)
            doc = json.load(fh)
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("kind") == DOCUMENT_KIND


def load(path: str) -> dict[str, Any]:
    return read_document(path, DOCUMENT_KIND, "saved plan", FORMAT_VERSION,
                         required=("changes", "fingerprints", "source", "summary"), redo="make the plan again")
