"""Compatibility with Ansible, with real ``ansible-inventory`` (ansible-core) as the oracle.

For every case under tests/data/ansible_inventories/<case>/ the test runs
``ansible-inventory -i SRC... --list``, ``--graph`` and ``--host H`` for several hosts at
test time, and asserts that ``kmsdeploy inventory`` prints the same thing: hosts, groups
(with the children-derived membership), every variable's value *and type* (the JSON is
compared as text after canonical re-serialisation, so 1, 1.0 and true differ).

A case directory holds its inventory files and an optional ``case.yml``:

* ``sources``: inventory sources relative to the case (default: ``[inventory]``, or the
  case's only ``inventory*`` entry);
* ``hosts``: hosts to compare with ``--host`` (default: the first three);
* ``playbook_dir``: passed to both tools (``--playbook-dir``);
* ``oracle_script: true``: the sources are JSON in the ``--list`` shape, which Ansible only
  reads from a script: the oracle gets a script that prints each file;
* ``vault_password_file``: passed to both tools as ``--vault-password-file`` (Vault cases).

The deliberate differences: kmsdeploy shows secret references (``{env: X}``,
``{file: P}``) as ``(sensitive)``; Ansible's output gets the same substitution before the
comparison. In Vault cases (``vault_password_file``) Ansible prints decrypted values (and
``ansible_password``'s template) in clear where kmsdeploy prints ``(sensitive)``: there the
two are compared as equal at exactly the places kmsdeploy masks (the variable must exist on
both sides; every other variable is compared as usual).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kmsdeploy import cli
from kmsdeploy.spec.secrets import is_secret_mapping

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "data" / "ansible_inventories"
CASES = sorted(p for p in CORPUS.iterdir() if p.is_dir())


def ansible_available() -> bool:
    try:
        import ansible  # noqa: F401
    except ImportError:
        return False
    return True


def case_config(case: Path) -> dict:
    cfg = {}
    if (case / "case.yml").exists():
        cfg = yaml.safe_load((case / "case.yml").read_text()) or {}
    if "sources" not in cfg:
        found = sorted(p.name for p in case.iterdir() if p.name.startswith("inventory"))
        assert len(found) == 1, f"{case.name}: name the sources in case.yml"
        cfg["sources"] = found
    return cfg


@pytest.fixture(scope="module")
def oracle_env(tmp_path_factory):
    if not ansible_available():
        if os.environ.get("CI") == "true":
            pytest.fail("ansible-core is not installed (it is in the 'test' extra)")
        pytest.skip("ansible-core is not installed (pip install 'kmsdeploy[test]')")
    home = tmp_path_factory.mktemp("ansible-home")
    empty_cfg = home / "ansible.cfg"
    empty_cfg.write_text("")  # no user or system ansible.cfg may influence the oracle
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(HOME=str(home), ANSIBLE_CONFIG=str(empty_cfg), ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
               ANSIBLE_INVENTORY_ENABLED="host_list,script,auto,yaml,ini",
               ANSIBLE_INVENTORY_UNPARSED_FAILED="True",
               ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED="True", ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="False")
    return env, home


def run_ansible(env_home, args: list[str]) -> str:
    env, home = env_home
    done = subprocess.run([sys.executable, "-m", "ansible.cli.inventory", *args], cwd=home, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"ansible-inventory {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


def run_kmsdeploy(capsys, args: list[str]) -> str:
    capsys.readouterr()
    code = cli.main(["inventory", *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def masked(value):
    if is_secret_mapping(value):
        return "(sensitive)"
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


def canonical(text: str) -> str:
    return json.dumps(masked(json.loads(text)), sort_keys=True, indent=1, ensure_ascii=False)


def masked_like(theirs, ours):
    """Ansible's document with ``(sensitive)`` wherever kmsdeploy's has it (Vault cases)."""
    if ours == "(sensitive)":
        return "(sensitive)"
    if isinstance(theirs, dict) and isinstance(ours, dict):
        return {k: masked_like(v, ours[k]) if k in ours else v for k, v in theirs.items()}
    if isinstance(theirs, list) and isinstance(ours, list) and len(theirs) == len(ours):
        return [masked_like(t, o) for t, o in zip(theirs, ours)]
    return theirs


def same(ours: str, theirs: str, vault: bool) -> tuple[str, str]:
    """Both documents canonical, Ansible's masked like ours in a Vault case."""
    if vault:
        theirs = json.dumps(masked_like(json.loads(theirs), json.loads(ours)))
    return canonical(ours), canonical(theirs)


def oracle_sources(case: Path, cfg: dict, tmp_path: Path) -> list[str]:
    sources = [str((case / s).resolve()) for s in cfg["sources"]]
    if not cfg.get("oracle_script"):
        return sources
    wrapped = []
    for i, src in enumerate(sources):
        script = tmp_path / f"print-{i}.sh"
        script.write_text(f"#!/bin/sh\n[ \"$1\" = --list ] && exec cat '{src}'\necho '{{}}'\n")
        script.chmod(0o755)
        wrapped.append(str(script))
    return wrapped


def common_args(case: Path, cfg: dict) -> list[str]:
    args = []
    if cfg.get("playbook_dir"):
        args += ["--playbook-dir", str((case / cfg["playbook_dir"]).resolve())]
    if cfg.get("vault_password_file"):
        args += ["--vault-password-file", str((case / cfg["vault_password_file"]).resolve())]
    return args


def test_corpus_is_big_enough():
    assert len(CASES) >= 25


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_same_as_ansible_inventory(case: Path, oracle_env, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # neither tool may pick up group_vars/ from the working directory
    cfg = case_config(case)
    ours_i = [a for s in cfg["sources"] for a in ("-i", str((case / s).resolve()))]
    theirs_i = [a for s in oracle_sources(case, cfg, tmp_path) for a in ("-i", s)]
    extra = common_args(case, cfg)
    vault = bool(cfg.get("vault_password_file"))

    theirs = run_ansible(oracle_env, theirs_i + extra + ["--list"])
    ours = run_kmsdeploy(capsys, ours_i + extra + ["--list"])
    mine, oracle = same(ours, theirs, vault)
    assert mine == oracle
    if vault:
        assert "(sensitive)" in mine, "a Vault case must have a masked value"
    listed = json.loads(theirs)

    hosts = cfg.get("hosts") or sorted(listed["_meta"]["hostvars"])[:3]
    assert hosts, f"{case.name}: no host to check"
    for host in hosts:
        theirs_h = run_ansible(oracle_env, theirs_i + extra + ["--host", host])
        ours_h = run_kmsdeploy(capsys, ours_i + extra + ["--host", host])
        mine, oracle = same(ours_h, theirs_h, vault)
        assert mine == oracle, f"--host {host}"

    theirs_g = run_ansible(oracle_env, theirs_i + extra + ["--graph"])
    ours_g = run_kmsdeploy(capsys, ours_i + extra + ["--graph"])
    assert ours_g.strip() == theirs_g.strip()


def test_ini_estate_is_the_yaml_estate(capsys):
    """playbooks/inventory-ini is the same estate as playbooks/inventory, to the variable."""
    vault = ["--vault-password-file", str(REPO / "playbooks" / "inventory" / ".vault-pass-example")]
    yaml_list = run_kmsdeploy(capsys, ["-i", str(REPO / "playbooks" / "inventory"), "--list", *vault])
    ini_list = run_kmsdeploy(capsys, ["-i", str(REPO / "playbooks" / "inventory-ini"), "--list", *vault])
    assert json.loads(yaml_list)["_meta"]["hostvars"]["ber-kms01"]["site_domain"]
    assert ini_list == yaml_list


def test_ansible_is_really_consulted(oracle_env, tmp_path):
    """Guard against a vacuous oracle: Ansible sees an INI-typed value as kmsdeploy does,
    and a difference between the two tools would be visible."""
    src = tmp_path / "hosts"
    src.write_text("h port=1688 word=yes\n")
    out = json.loads(run_ansible(oracle_env, ["-i", str(src), "--host", "h"]))
    assert out == {"port": 1688, "word": "yes"} and type(out["port"]) is int
