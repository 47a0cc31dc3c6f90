"""Ansible Vault end to end against the lab (real BIND + TSIG, the lab's WinRM endpoint).

The lab's own inventory is turned into an Ansible-style estate with its WinRM password in
``group_vars/kms_hosts/vault.yml``, encrypted by the real ``ansible-vault`` with the example
estate's test password (playbooks/inventory/.vault-pass-example), and the lab playbook's
product key becomes a ``!vault`` value (vault id ``lab``, another password). Then: validate,
plan in every format with --out, apply the plan with -v, plan again (zero changes), facts
collect and an offline plan — and neither the WinRM password nor the product key appears
in any output or file. A wrong password is one located error and nothing is read.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from kmsdeploy.cli import main
from kmsdeploy.lab import manager
from kmsdeploy.lab.model.state import host_file

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_PW = ROOT / "playbooks" / "inventory" / ".vault-pass-example"
KMS_HOSTS = ["kms-hq", "kms-branch-01", "kms-branch-02"]
KEY = (ROOT / "playbooks" / "lab" / "lab-kms-host-key.txt").read_text().strip()
WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").lstrip("gw") or 0)
#: this worker's own loopback block (block 76; test_lab_cli uses 75)
NET = f"127.{180 + WORKER % 70}.76"


def ansible_vault(tmp: Path, *args: str) -> str:
    exe = shutil.which("ansible-vault")
    assert exe, "ansible-vault not found: install the test extra (ansible-core)"
    (tmp / "ansible.cfg").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(tmp / "ansible.cfg"), HOME=str(tmp), ANSIBLE_LOCAL_TEMP=str(tmp / "atmp"))
    done = subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=120, cwd=tmp)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    state = tmp_path_factory.mktemp("vaultlab") / "lab"
    mp = pytest.MonkeyPatch()
    for var in ("KMSDEPLOY_OWNER_ID", "KMSDEPLOY_LAB_DIR", "ANSIBLE_VAULT_PASSWORD_FILE", "ANSIBLE_VAULT_IDENTITY_LIST"):
        mp.delenv(var, raising=False)
    try:
        assert main(["lab", "up", "--state-dir", str(state), "--net", NET, "--clients", "0"]) == 0
        yield state
    finally:
        manager.down(str(state))
        mp.undo()


def kd(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    got = capsys.readouterr()
    return rc, got.out, got.err


def winrm_total(state: Path) -> int:
    time.sleep(1.1)  # counters.json is refreshed twice a second
    data = json.loads((state / "windows" / "counters.json").read_text())
    return sum(sum(c.values()) for c in data.values())


def build_estate(lab: Path, tmp: Path) -> tuple[Path, Path, Path, str]:
    """(inventory dir, playbook, lab-id password file, WinRM password) of the vaulted estate."""
    inv = yaml.safe_load((lab / "inventory.yml").read_text())
    kms_vars = inv["all"]["children"]["kms_hosts"]["vars"]
    password = Path(kms_vars["ansible_password"]["file"]).read_text().strip()
    kms_vars["ansible_password"] = "{{ vault_winrm_password }}"
    estate = tmp / "estate"
    (estate / "group_vars" / "kms_hosts").mkdir(parents=True)
    (estate / "hosts.yml").write_text(yaml.safe_dump(inv, sort_keys=False))
    plain = tmp / "vault-plain.yml"
    plain.write_text(yaml.safe_dump({"vault_winrm_password": password}))
    ansible_vault(tmp, "encrypt", "--vault-password-file", str(EXAMPLE_PW), "--output",
                  str(estate / "group_vars" / "kms_hosts" / "vault.yml"), str(plain))
    plain.unlink()
    lab_pw = tmp / "lab-id.pw"
    lab_pw.write_text("another test password for the lab vault id\n")
    blob = ansible_vault(tmp, "encrypt_string", "--vault-id", f"lab@{lab_pw}", KEY)
    blob = "\n".join("        " + line.strip() for line in blob.split("|", 1)[1].strip().splitlines())
    site = (ROOT / "playbooks" / "lab" / "site.yml").read_text()
    assert "product_key: {file: lab-kms-host-key.txt}" in site
    site = site.replace("product_key: {file: lab-kms-host-key.txt}", "product_key: !vault |\n" + blob)
    book = tmp / "site.yml"
    book.write_text(site)
    return estate, book, lab_pw, password


def test_vaulted_estate_plans_applies_and_never_leaks(capsys, lab, tmp_path):
    estate, book, lab_pw, password = build_estate(lab, tmp_path)
    secrets = [password, KEY]
    vault = ["--vault-password-file", EXAMPLE_PW, "--vault-id", f"lab@{lab_pw}"]
    seen: list[str] = []

    def run(*argv):
        rc, out, err = kd(capsys, *argv)
        seen.extend([out, err])
        return rc, out, err

    # validate needs the file's password (its variables), not the !vault value's
    rc, out, err = run("validate", "-i", estate, book, "--vault-password-file", EXAMPLE_PW)
    assert rc == 0, err

    # a wrong password: one located error, nothing read from any target
    before = winrm_total(lab)
    wrong = tmp_path / "wrong.pw"
    wrong.write_text("not the password\n")
    rc, out, err = run("plan", "-i", estate, book, "--vault-password-file", wrong)
    assert rc == 1 and "Traceback" not in err
    vault_file = estate / "group_vars" / "kms_hosts" / "vault.yml"
    assert f"{vault_file}:1:1: vault-encrypted file: wrong vault password or corrupted data" in err
    # the file opens, the !vault product key (vault id lab) does not: located at the value
    rc, out, err = run("plan", "-i", estate, book, "--vault-password-file", EXAMPLE_PW)
    assert rc == 1
    line = next(n for n, text in enumerate(book.read_text().splitlines(), 1) if "product_key: !vault" in text)
    assert re.search(rf"{re.escape(str(book))}:{line}:\d+: !vault value: wrong vault password or corrupted data", err), err
    assert "nothing was changed" in err
    assert winrm_total(lab) == before, "a target was contacted although the specs were refused"

    # plan in every format, saved; apply the saved plan with -v; plan again: zero changes
    plan_file = tmp_path / "plan.json"
    for fmt in ("text", "json", "markdown"):
        rc, out, err = run("plan", "-i", estate, book, *vault, "--format", fmt, "--detailed-exitcode",
                           "--out", plan_file, "-v")
        assert rc == 2, out + err
    assert "(sensitive)" in json.dumps(json.loads(plan_file.read_text()))
    rc, out, err = run("apply", plan_file, *vault, "-v", "--report-json", tmp_path / "run.json")
    assert rc == 0, out + err
    rc, out, err = run("plan", "-i", estate, book, *vault, "--detailed-exitcode")
    assert rc == 0 and "No changes" in out, out + err

    # independent check: the model's own state files (not through kmsdeploy)
    for h in KMS_HOSTS:
        st = json.loads(host_file(lab / "windows" / "windows", h).read_text())
        assert [p["partial_key"] for p in st["licensing"]["products"]] == [KEY[-5:]]

    # facts for an offline plan, and the offline plan itself
    facts = tmp_path / "facts.json"
    rc, out, err = run("facts", "collect", "-i", estate, book, *vault, "--out", facts)
    assert rc == 0, out + err
    rc, out, err = run("plan", "-i", estate, book, "--vault-password-file", EXAMPLE_PW, "--facts", facts,
                       "--detailed-exitcode")
    assert rc == 0, out + err

    files = [plan_file, facts, tmp_path / "run.json"]
    for text in seen + [f.read_text() for f in files]:
        for secret in secrets:
            assert secret not in text
