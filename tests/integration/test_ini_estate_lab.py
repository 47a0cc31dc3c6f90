"""An unchanged Ansible estate against the lab: INI hosts file, group_vars with a
vault-encrypted file, and a dynamic inventory script as a second ``-i`` source.

The lab's own YAML inventory is rewritten the way an Ansible shop keeps it: the hosts and
scalar variables in an INI ``hosts`` file (typed inline values, ``[g:vars]``, a dict
through literal evaluation), the WinRM password as ``"{{ vault_winrm_password }}"`` with
the vault variable in ``group_vars/kms_hosts/vault.yml`` (encrypted by the real
``ansible-vault``), and the DNS server from an executable inventory script. Then:

* real ``ansible-inventory`` reads the same sources and prints what ``kmsdeploy inventory``
  prints (vault values masked on our side only);
* the plan made from it is the plan made from the lab's YAML inventory, change for change;
* apply, independent checks (``dig`` for the SRV set, the Windows model's state files),
  and a re-plan with zero changes from both inventories.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kmsdeploy.cli import main
from kmsdeploy.lab import manager
from kmsdeploy.lab.model.state import host_file

from .test_ansible_oracle import masked_like, canonical
from .test_vault_lab import ansible_vault, kd

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_PW = ROOT / "playbooks" / "inventory" / ".vault-pass-example"
SITE = ROOT / "playbooks" / "lab" / "site.yml"
KEY = (ROOT / "playbooks" / "lab" / "lab-kms-host-key.txt").read_text().strip()
WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").lstrip("gw") or 0)
#: this worker's own loopback block (block 79: no other test uses it)
NET = f"127.{180 + WORKER % 70}.79"


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    state = tmp_path_factory.mktemp("inilab") / "lab"
    mp = pytest.MonkeyPatch()
    for var in ("KMSDEPLOY_OWNER_ID", "KMSDEPLOY_LAB_DIR", "ANSIBLE_VAULT_PASSWORD_FILE", "ANSIBLE_VAULT_IDENTITY_LIST"):
        mp.delenv(var, raising=False)
    try:
        assert main(["lab", "up", "--state-dir", str(state), "--net", NET, "--clients", "0"]) == 0
        yield state
    finally:
        manager.down(str(state))
        mp.undo()


def ini_value(value) -> str:
    """An INI inline value that Ansible's literal evaluation turns back into ``value``."""
    if isinstance(value, str):
        return value if value and " " not in value and value[0] not in "[{('\"" else repr(value)
    return repr(value)  # ints, bools and dicts as Python literals


def build_ini_estate(lab: Path, tmp: Path) -> tuple[Path, Path, str]:
    """(INI estate dir, DNS inventory script, WinRM password) for the lab's inventory."""
    inv = yaml.safe_load((lab / "inventory.yml").read_text())["all"]
    children = inv["children"]
    kms_vars = dict(children["kms_hosts"]["vars"])
    password = Path(kms_vars.pop("ansible_password")["file"]).read_text().strip()
    estate = tmp / "ini-estate"
    (estate / "group_vars" / "kms_hosts").mkdir(parents=True)
    lines = ["# the lab's estate as an Ansible shop keeps it", "[all:vars]"]
    lines += [f"{k}={ini_value(v)}" for k, v in inv["vars"].items()]
    lines += ["", "[sites:children]", *children["sites"]["children"]]
    for site, body in children["sites"]["children"].items():
        lines += ["", f"[{site}]"]
        for host, hvars in body["hosts"].items():
            lines.append(host + "".join(f" {k}={ini_value(v)}" for k, v in hvars.items()) + "  # KMS host")
        lines += [f"[{site}:vars]", *(f"{k}={ini_value(v)}" for k, v in body["vars"].items())]
    lines += ["", "[kms_hosts]", *children["kms_hosts"]["hosts"], "", "[kms_hosts:vars]"]
    lines += [f"{k}={ini_value(v)}" for k, v in kms_vars.items()]
    lines.append('ansible_password="{{ vault_winrm_password }}"')
    (estate / "hosts").write_text("\n".join(lines) + "\n")
    plain = tmp / "vault-plain.yml"
    plain.write_text(yaml.safe_dump({"vault_winrm_password": password}))
    ansible_vault(tmp, "encrypt", "--vault-password-file", str(EXAMPLE_PW), "--output",
                  str(estate / "group_vars" / "kms_hosts" / "vault.yml"), str(plain))
    plain.unlink()
    # the DNS server from a dynamic inventory (as a CMDB or IPAM script would give it)
    dns = children["dns_servers"]["hosts"]
    listing = {"dns_servers": {"hosts": sorted(dns)}, "_meta": {"hostvars": dns}}
    script = tmp / "dns-inventory.py"
    script.write_text(f"#!{sys.executable}\nimport json, sys\n"
                      f"print(json.dumps({listing!r} if sys.argv[1:] == ['--list'] else {{}}))\n")
    script.chmod(0o755)
    return estate, script, password


def oracle_list(tmp: Path, sources: list[Path]) -> str:
    cfg = tmp / "ansible.cfg"
    cfg.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(HOME=str(tmp), ANSIBLE_CONFIG=str(cfg), ANSIBLE_LOCAL_TEMP=str(tmp / "atmp"),
               ANSIBLE_INVENTORY_UNPARSED_FAILED="True", ANSIBLE_NOCOLOR="1")
    args = [a for s in sources for a in ("-i", str(s))]
    done = subprocess.run([sys.executable, "-m", "ansible.cli.inventory", *args, "--list",
                           "--vault-password-file", str(EXAMPLE_PW)],
                          capture_output=True, text=True, env=env, timeout=120, cwd=tmp)
    assert done.returncode == 0, done.stderr
    return done.stdout


def changes(plan_file: Path) -> list:
    doc = json.loads(plan_file.read_text())
    return [(c["address"], c["action"], c.get("properties")) for c in doc["changes"]]


def dig_srv(lab: Path) -> list[str]:
    state = json.loads((lab / "lab.json").read_text())
    bind = state["bind"]
    done = subprocess.run(["dig", "+short", "-p", str(bind["port"]), f"@{bind['address']}",
                           f"_vlmcs._tcp.{state['zone']}", "SRV"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return sorted(done.stdout.split("\n")[:-1])


def test_ini_estate_with_vault_and_script_plans_like_the_yaml_one(capsys, lab, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert shutil.which("dig"), "dig (bind9-dnsutils) is needed"
    estate, script, password = build_ini_estate(lab, tmp_path)
    ini = ["-i", estate, "-i", script, "--vault-password-file", EXAMPLE_PW]
    yml = ["-i", lab / "inventory.yml"]
    seen: list[str] = []

    def run(*argv):
        rc, out, err = kd(capsys, *argv)
        seen.extend([out, err])
        return rc, out, err

    # what kmsdeploy parsed is what Ansible parses (the vault password masked on our side)
    rc, ours, err = run("inventory", "--list", *ini)
    assert rc == 0, err
    theirs = oracle_list(tmp_path, [estate, script])
    assert canonical(ours) == canonical(json.dumps(masked_like(json.loads(theirs), json.loads(ours))))
    hostvars = json.loads(ours)["_meta"]["hostvars"]
    kms = next(iter(json.loads(ours)["kms_hosts"]["hosts"]))
    assert hostvars[kms]["ansible_port"] == yaml.safe_load((lab / "inventory.yml").read_text())[
        "all"]["children"]["kms_hosts"]["vars"]["ansible_port"]  # typed int from the INI text
    assert isinstance(hostvars[kms]["kmsdeploy_health"], dict)

    # the plan from the INI estate is the YAML inventory's plan, change for change
    ini_plan, yml_plan = tmp_path / "ini-plan.json", tmp_path / "yml-plan.json"
    rc, out, err = run("plan", *ini, SITE, "--out", ini_plan, "--detailed-exitcode")
    assert rc == 2, out + err
    rc, out, err = run("plan", *yml, SITE, "--out", yml_plan, "--detailed-exitcode")
    assert rc == 2, out + err
    assert changes(ini_plan) == changes(yml_plan) and changes(ini_plan)

    rc, out, err = run("apply", ini_plan, "--vault-password-file", EXAMPLE_PW)
    assert rc == 0, out + err

    # independent checks: DNS with dig, the Windows model's own state files
    srv = dig_srv(lab)
    assert len(srv) == len(json.loads(ours)["kms_hosts"]["hosts"]) and all(" 1688 " in r for r in srv), srv
    for host in json.loads(ours)["kms_hosts"]["hosts"]:
        st = json.loads(host_file(lab / "windows" / "windows", host).read_text())
        assert [p["partial_key"] for p in st["licensing"]["products"]] == [KEY[-5:]]

    for inventory in (ini, yml):
        rc, out, err = run("plan", *inventory, SITE, "--detailed-exitcode")
        assert rc == 0 and "No changes" in out, out + err

    for text in seen + [ini_plan.read_text()]:
        assert password not in text and KEY not in text
