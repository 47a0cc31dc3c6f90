"""The bad-input corpus: every case must fail with a SpecError (never another exception),
every diagnostic located (file, line, col), and the expected message present.

A case is a directory under tests/data/bad/ with ``playbook.yml`` (or none: then
tests/data/spec/ok_playbook.yml is used), an optional inventory (``inventory.yml``,
``inventory.ini``, an executable ``inventory.sh`` or an ``inventory/`` directory), an
optional ``vault-pass`` (given as the Vault password file), ``expect.txt`` (substrings, one per line, that must all
appear in the error) and an optional ``forbid.txt`` (strings that must NOT appear,
e.g. a secret value).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from kmsdeploy.errors import SpecError
from kmsdeploy.spec.load import load_specs
from kmsdeploy.spec.vault import VaultSecrets

DATA = Path(__file__).resolve().parents[1] / "data"
CASES = sorted(p for p in (DATA / "bad").iterdir() if p.is_dir())
INVENTORY_NAMES = ("inventory", "inventory.yml", "inventory.ini", "inventory.sh")
#: a hanging inventory script is given this long (seconds) before it is an error
SCRIPT_TIMEOUT = "2"


def inventory_of(case: Path) -> Path | None:
    return next((case / n for n in INVENTORY_NAMES if (case / n).exists()), None)


def test_corpus_is_big_enough():
    assert len(CASES) >= 35


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case: Path, monkeypatch):
    monkeypatch.delenv("KMSDEPLOY_CORPUS_UNSET_SECRET", raising=False)
    monkeypatch.setenv("KMSDEPLOY_INVENTORY_TIMEOUT", SCRIPT_TIMEOUT)
    playbook = case / "playbook.yml"
    if not playbook.exists():
        playbook = DATA / "spec" / "ok_playbook.yml"
    inventory = inventory_of(case)
    vault = VaultSecrets.from_options([str(case / "vault-pass")]) if (case / "vault-pass").exists() else None
    with pytest.raises(SpecError) as excinfo:
        load_specs([str(playbook)], str(inventory) if inventory else None, resolve_secrets=True, vault=vault)
    err = excinfo.value
    text = str(err)
    assert err.diagnostics, "a SpecError without diagnostics"
    for d in err.diagnostics:
        assert d.file and d.line and d.col, f"unlocated diagnostic: {d!s}"
        assert d.line >= 1 and d.col >= 1
    for needle in (case / "expect.txt").read_text().splitlines():
        if needle.strip():
            assert needle in text, f"expected {needle!r} in:\n{text}"
    forbid = case / "forbid.txt"
    if forbid.exists():
        for secret in forbid.read_text().splitlines():
            if secret.strip():
                assert secret not in text


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_through_the_cli(case: Path, monkeypatch, capsys):
    """The user's view: exit 1, every line located (file:line:col: message), no traceback, nothing run."""
    import re

    from kmsdeploy import cli

    monkeypatch.delenv("KMSDEPLOY_CORPUS_UNSET_SECRET", raising=False)
    monkeypatch.setenv("KMSDEPLOY_INVENTORY_TIMEOUT", SCRIPT_TIMEOUT)
    monkeypatch.setattr("kmsdeploy.planner.gather", lambda *a, **k: pytest.fail("connected on bad input"))
    playbook = case / "playbook.yml"
    if not playbook.exists():
        playbook = DATA / "spec" / "ok_playbook.yml"
    inventory = inventory_of(case)
    argv = ["plan", "-i", str(inventory), str(playbook)] if inventory else ["validate", str(playbook)]
    if (case / "vault-pass").exists():
        argv[1:1] = ["--vault-password-file", str(case / "vault-pass")]
    assert cli.main(argv) == 1
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out and "internal error" not in out.err
    lines = out.err.strip().splitlines()
    assert lines[-1].endswith("nothing was changed.")
    for line in lines[:-1]:
        assert re.match(r"^/.+:\d+:\d+: ", line), f"unlocated: {line}"
