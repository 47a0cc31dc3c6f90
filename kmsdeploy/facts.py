"""Facts files: the observed state of every target, saved for offline planning.

``kmsdeploy facts collect --out FACTS.json`` gathers as ``plan`` does and saves what it
saw (never secrets: providers observe no secret values, and the document is masked
again on the way out). ``plan --facts FACTS.json`` plans against the file without
connecting anywhere — for pull-request checks in CI systems that hold no production
credentials — and the plan says how old the facts are.
"""
from __future__ import annotations

import datetime as _dt
from typing import Any

from . import __version__
from .documents import read_document
from .model import Ref, Specs, TargetError, to_jsonable
from .planner.gather import Observations

FORMAT_VERSION = "1.0"
DOCUMENT_KIND = "kmsdeploy-facts"


def facts_document(specs: Specs, obs: Observations, collected_at: str) -> dict[str, Any]:
    targets: dict[str, Any] = {}
    for target in sorted({r.ref.target for r in specs.resources}):
        if target in obs.errors:
            targets[target] = {"error": obs.errors[target].message, "observed": {}}
        else:
            targets[target] = {"error": None, "observed": {}}
    for ref, state in obs.observed.items():
        targets.setdefault(ref.target, {"error": None, "observed": {}})["observed"][ref.address] = to_jsonable(state)
    return {"format_version": FORMAT_VERSION, "kind": DOCUMENT_KIND, "kmsdeploy_version": __version__,
            "collected_at": collected_at, "spec_digest": specs.digest, "targets": targets}


def load(path: str) -> dict[str, Any]:
    return read_document(path, DOCUMENT_KIND, "facts file", FORMAT_VERSION, required=("targets", "collected_at"),
                         redo="collect the facts again")


def observations_from_facts(doc: dict[str, Any], specs: Specs, now: _dt.datetime) -> tuple[Observations, float, list[str]]:
    """Observations for ``specs`` from a facts document, the facts' age in seconds, and warnings."""
    obs = Observations()
    uncovered = []
    for r in specs.resources:
        t = doc["targets"].get(r.ref.target)
        if t is None:
            obs.errors[r.ref.target] = TargetError(r.ref.target, "no facts for this target in the facts file; collect again")
            continue
        if t.get("error"):
            obs.errors[r.ref.target] = TargetError(r.ref.target, f"unreachable when facts were collected: {t['error']}")
            continue
        if r.ref.address in t["observed"]:
            obs.observed[r.ref] = t["observed"][r.ref.address]
        else:
            obs.observed[r.ref] = None
            uncovered.append(r.ref.address)
    collected = _dt.datetime.fromisoformat(doc["collected_at"])
    age = max(0.0, (now - collected).total_seconds())
    warnings = []
    if uncovered:
        warnings.append(f"{len(uncovered)} resource(s) are not in the facts file (declared after it was collected) and "
                        f"were planned as absent: {', '.join(uncovered[:5])}{' …' if len(uncovered) > 5 else ''}")
    return obs, age, warnings


def refs_of(doc: dict[str, Any]) -> list[Ref]:
    return [Ref.parse(a) for t in doc["targets"].values() for a in t["observed"]]
