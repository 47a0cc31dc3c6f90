"""DESIGN "Lab contract": the lab listens on 1688 for a host whose KMS service is running
and its firewall rule enabled.

``kmsdeploy lab up`` (the background daemon: HTTPS + NTLM endpoint, the Windows model) on
this worker's own loopback block; the KMS port of each simulated host is probed with a
plain TCP connect from here (an independent client) before and after ``kmsdeploy apply``
makes the host a licensed KMS host and enables / disables ``SPPSVC-In-TCP``.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest
import yaml

from kmsdeploy.cli import main
from kmsdeploy.lab import manager

pytestmark = pytest.mark.integration

WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").lstrip("gw") or 0)
NET = f"127.{180 + WORKER % 70}.76"  # block 76: no other test uses it
KEY = "BCDFG-HJKMP-QRTVW-XY234-7HQ9K"  # a made-up, well-formed lab key


def probe(address: str, port: int = 1688) -> bool:
    try:
        with socket.create_connection((address, port), timeout=2):
            return True
    except OSError:
        return False


def wait_probe(address: str, want: bool, seconds: float = 3.0) -> bool:
    """The listener follows the model right after each command; allow a moment anyway."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if probe(address) == want:
            return want
        time.sleep(0.1)
    return probe(address)


def playbook(path: Path, key_file: Path, *, enabled: bool) -> Path:
    path.write_text(yaml.safe_dump([{
        "name": "KMS host and its built-in rule", "hosts": "kms-hq",
        "resources": [
            {"kind": "kms_host", "product_key": {"file": str(key_file)}, "dns_publishing": False},
            {"kind": "firewall_rule", "name": "SPPSVC-In-TCP", "builtin": True, "enabled": enabled,
             "profiles": ["domain", "private"]},
        ]}], sort_keys=False))
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    root = tmp_path_factory.mktemp("labport")
    mp = pytest.MonkeyPatch()
    mp.delenv("KMSDEPLOY_OWNER_ID", raising=False)
    try:
        assert main(["lab", "up", "--state-dir", str(root / "lab"), "--sites", "2", "--clients", "0",
                     "--net", NET]) == 0
        yield root
    finally:
        manager.down(str(root / "lab"))
        mp.undo()


def test_kms_port_follows_service_and_firewall_rule(lab, capsys):
    inv = lab / "lab" / "inventory.yml"
    hq, branch = f"{NET}.10", f"{NET}.11"
    key_file = lab / "key.txt"
    key_file.write_text(KEY + "\n")
    # a fresh lab host: no KMS host key, rule disabled -> nothing listens
    assert probe(hq) is False and probe(branch) is False

    # licensed KMS host with sppsvc running, but SPPSVC-In-TCP still disabled: closed
    assert main(["apply", "-i", str(inv), str(playbook(lab / "off.yml", key_file, enabled=False)),
                 "--auto-approve"]) == 0
    assert wait_probe(hq, False) is False

    # enabling the rule through kmsdeploy apply opens 1688 on that host's address only
    assert main(["apply", "-i", str(inv), str(playbook(lab / "on.yml", key_file, enabled=True)),
                 "--auto-approve"]) == 0
    assert probe(hq) is True  # open when apply returns (the daemon syncs after every command)
    assert probe(branch) is False
    for _ in range(30):  # `lab status` shows it (listeners.json, refreshed twice a second)
        capsys.readouterr()
        assert main(["lab", "status", "--state-dir", str(lab / "lab")]) == 0
        listeners = json.loads(capsys.readouterr().out)["kms_listeners"]
        if listeners:
            break
        time.sleep(0.1)
    assert listeners == {"kms-hq": f"{hq}:1688 listening"}

    # and disabling it closes the port again
    assert main(["apply", "-i", str(inv), str(playbook(lab / "off.yml", key_file, enabled=False)),
                 "--auto-approve"]) == 0
    assert wait_probe(hq, False) is False


def test_lab_down_closes_the_kms_port(tmp_path):
    state = tmp_path / "lab"
    net = f"127.{180 + WORKER % 70}.77"
    assert main(["lab", "up", "--state-dir", str(state), "--sites", "1", "--clients", "0", "--net", net]) == 0
    try:
        from kmsdeploy.lab.model import LabModel

        model = LabModel(state / "windows")
        with model.edit("kms-hq") as ctx:  # behind the endpoint's back: the daemon notices the state file
            from kmsdeploy.lab.model import firewall, licensing

            licensing.install_key(ctx, {"key": KEY})
            licensing.activate(ctx, {})
            licensing.restart(ctx, {})
            firewall.set_rule(ctx, {"name": "SPPSVC-In-TCP", "properties": {"enabled": True}})
        assert wait_probe(f"{net}.10", True) is True
    finally:
        manager.down(str(state))
    assert probe(f"{net}.10") is False
