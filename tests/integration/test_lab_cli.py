"""``kmsdeploy lab up|status|down`` and the README's main job (``playbooks/lab/site.yml``).

The lab is started through ``kmsdeploy.cli.main`` with ``--state-dir`` in a temporary
directory: a real BIND with TSIG and the real WinRM endpoint (HTTPS with the lab CA, NTLM)
in front of the Windows model, as background processes. The test then runs what
``bash scripts/demo`` runs — validate, plan --out, apply PLAN, plan again (zero changes) —
checks the result with independent clients (``dig`` against BIND, the model's state files
read directly) and prints the WinRM requests per host per plan and per apply (``-s``).
"""
from __future__ import annotations

import json
import os
import stat
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
SITE = ROOT / "playbooks" / "lab" / "site.yml"
KMS_HOSTS = ["kms-hq", "kms-branch-01", "kms-branch-02"]
WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").lstrip("gw") or 0)
#: this worker's own loopback block (block 75): the lab's KMS port listeners never meet another lab's
NET = f"127.{180 + WORKER % 70}.75"


@pytest.fixture(scope="module")
def lab_dir(tmp_path_factory):
    state = tmp_path_factory.mktemp("labcli") / "lab"
    mp = pytest.MonkeyPatch()
    mp.delenv("KMSDEPLOY_OWNER_ID", raising=False)
    mp.delenv("KMSDEPLOY_LAB_DIR", raising=False)
    try:
        yield state
    finally:
        manager.down(str(state))  # whatever the test did: no processes left behind
        mp.undo()


def kd(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    got = capsys.readouterr()
    return rc, got.out, got.err


def winrm_counts(state: Path) -> dict[str, int]:
    """Requests per host as the lab daemon counts them (counters.json, refreshed twice a second)."""
    time.sleep(1.1)
    data = json.loads((state / "windows" / "counters.json").read_text())
    return {h: sum(c.values()) for h, c in data.items()}


def model_state(state: Path, host: str) -> dict:
    """A simulated host's state file, read directly (not through kmsdeploy)."""
    return json.loads(host_file(state / "windows" / "windows", host).read_text())


def test_lab_up_inventory_main_job_and_down(capsys, lab_dir):
    rc, out, err = kd(capsys, "lab", "up", "--state-dir", lab_dir, "--net", NET)
    assert rc == 0, out + err
    assert "clients: 200 clients per site over 30 days" in out  # report data out of the box
    assert "inventory:" in out
    rc, out, err = kd(capsys, "lab", "status", "--state-dir", lab_dir)
    status = json.loads(out)
    assert rc == 0 and status["running"] is True
    assert "https/ntlm" in status["windows"] and "LabModel" in status["windows"]

    # the inventory it writes: the DNS server, sites, and the Windows hosts over HTTPS + NTLM
    inv_path = lab_dir / "inventory.yml"
    text = inv_path.read_text()
    inv = yaml.safe_load(text)["all"]["children"]
    assert inv["dns_servers"]["hosts"]["lab-dns"]["ansible_connection"] == "rfc2136"
    assert sorted(inv["sites"]["children"]) == ["branch-01", "branch-02", "hq"]
    win = inv["kms_hosts"]["vars"]
    assert sorted(inv["kms_hosts"]["hosts"]) == sorted(KMS_HOSTS)
    assert (win["ansible_connection"], win["ansible_winrm_scheme"], win["ansible_winrm_transport"]) == (
        "winrm", "https", "ntlm")
    assert Path(win["ansible_winrm_ca_trust_path"]).is_file() and "kmsdeploy_winrm_allow_http" not in win
    pw_file = Path(win["ansible_password"]["file"])
    assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600
    password = pw_file.read_text().strip()
    assert password not in text

    # the main job, as scripts/demo runs it
    rc, out, err = kd(capsys, "validate", "-i", inv_path, SITE)
    assert rc == 0, err
    c0 = winrm_counts(lab_dir)
    plan_file = lab_dir / "plan.json"
    rc, out, err = kd(capsys, "plan", "-i", inv_path, SITE, "--out", plan_file, "--detailed-exitcode")
    assert rc == 2, out + err
    assert "BCDFG-HJKMP-QRTVW-XY234" not in plan_file.read_text()  # only the partial key is shown
    c1 = winrm_counts(lab_dir)
    rc, out, err = kd(capsys, "apply", plan_file)
    assert rc == 0, out + err
    c2 = winrm_counts(lab_dir)
    rc, out, err = kd(capsys, "plan", "-i", inv_path, SITE, "--detailed-exitcode")
    assert rc == 0 and "No changes" in out, out + err
    c3 = winrm_counts(lab_dir)
    with capsys.disabled():
        print("\nlab (HTTPS + NTLM, lab CA), WinRM requests per host: "
              + "; ".join(f"{h}: plan {c1.get(h, 0) - c0.get(h, 0)}, apply PLAN {c2[h] - c1.get(h, 0)}, "
                          f"re-plan {c3[h] - c2[h]}" for h in KMS_HOSTS))
    for h in KMS_HOSTS:
        assert c1.get(h, 0) - c0.get(h, 0) == 8  # one shell, one read (HTTPS: no encryption priming POST)
        assert c3[h] - c2[h] == 8

    # independent checks: BIND answers the SRV set; every simulated host is configured
    lab = json.loads((lab_dir / "lab.json").read_text())
    dig = subprocess.run(["dig", "+noall", "+answer", "-p", str(lab["bind"]["port"]), "@" + lab["bind"]["address"],
                          "_vlmcs._tcp.lab.example", "SRV"], capture_output=True, text=True, timeout=20, check=True)
    assert sorted(line.split(None, 4)[4] for line in dig.stdout.splitlines()) == [
        "0 100 1688 kms-hq.lab.example.", "10 50 1688 kms-branch-01.lab.example.",
        "10 50 1688 kms-branch-02.lab.example."]
    for h in KMS_HOSTS:
        st = model_state(lab_dir, h)
        assert [p["partial_key"] for p in st["licensing"]["products"]] == ["7HQ9K"]
        assert st["licensing"]["effective"]["dns_publishing"] is False
        fw = st["firewall"]["rules"]
        [builtin] = [r for r in fw if r["name"] == "SPPSVC-In-TCP"]
        assert builtin["enabled"] and builtin["profiles"] == ["Domain", "Private"] and builtin["group"].startswith("@")
        [owned] = [r for r in fw if r["name"] == "kms-1688-monitoring"]
        assert owned["group"] == "kmsdeploy:default" and owned["remote_addresses"] == ["192.168.100.0/255.255.255.0"]

    # down: every lab process is gone
    pids = [lab["bind"]["pid"], lab["windows"]["pid"]]
    rc, out, err = kd(capsys, "lab", "down", "--state-dir", lab_dir)
    assert rc == 0 and "Lab stopped" in out
    assert not any(manager.alive(p) for p in pids)
    rc, out, err = kd(capsys, "lab", "status", "--state-dir", lab_dir)
    assert rc == 1 and json.loads(out)["running"] is False
    rc, out, err = kd(capsys, "lab", "down", "--state-dir", lab_dir)
    assert rc == 0 and "No lab was running" in out


def test_lab_status_without_a_lab(capsys, tmp_path):
    rc, out, err = kd(capsys, "lab", "status", "--state-dir", tmp_path / "nothing")
    assert rc == 1 and json.loads(out)["running"] is False
    assert not os.path.exists(tmp_path / "nothing" / "lab.json")


def test_lab_up_windows_facts_make_preflight_fail(capsys, tmp_path):
    """``lab up --windows-fact`` makes preflight's facts wrong on the running lab (daemon, HTTPS, NTLM)."""
    state = tmp_path / "lab"
    rc, out, err = kd(capsys, "lab", "up", "--state-dir", state, "--windows-fact", "no_such_fact=1")
    assert rc == 1 and "unknown Windows fact 'no_such_fact'" in err and not (state / "lab.json").exists()
    try:
        rc, out, err = kd(capsys, "lab", "up", "--state-dir", state, "--net", f"127.{180 + WORKER % 70}.76",
                          "--clients", "0", "--windows-fact", "kms-branch-01:language_mode=ConstrainedLanguage",
                          "--windows-fact", "clock_offset_s=120")
        assert rc == 0, out + err
        rc, out, err = kd(capsys, "preflight", "-i", state / "inventory.yml", SITE, "--format", "json")
        doc = json.loads(out)
        by = {t["target"]: {c["check"]: c for c in t["checks"]} for t in doc["targets"]}
        assert rc == 2, out + err
        assert by["kms-branch-01"]["language_mode"]["status"] == "critical"
        assert by["kms-hq"]["clock"]["status"] == "warning" and by["kms-hq"]["powershell"]["status"] == "ok"
        assert by["lab-dns"]["tsig:lab.example"]["status"] == "ok"  # the lab's BIND, same run
    finally:
        manager.down(str(state))
