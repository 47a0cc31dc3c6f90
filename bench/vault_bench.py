"""Cost of Ansible Vault decryption (kmsdeploy/spec/vault.py): one value, and loading an
inventory whose N hosts each carry a ``!vault`` ansible_password (decrypted by plan).

    PYTHONPATH=$PWD python3 bench/vault_bench.py [N]
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from kmsdeploy.spec.load import load_specs
from kmsdeploy.spec.vault import VaultSecrets, decrypt, encrypt


def main(n: int) -> None:
    blob = encrypt("x" * 64, "pw")
    t = time.perf_counter()
    for _ in range(100):
        decrypt(blob, [("default", "pw")])
    print(f"decrypt one value: {(time.perf_counter() - t) * 10:.2f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        lines = ["all:", "  children:", "    kms_hosts:", "      vars: {ansible_connection: winrm}", "      hosts:"]
        for i in range(n):
            value = encrypt(f"password-{i}", "pw").replace("\n", "\n            ")
            lines.append(f"        k{i}:\n          ansible_password: !vault |\n            {value}")
        (root / "hosts.yml").write_text("\n".join(lines) + "\n")
        (root / "book.yml").write_text("- name: p\n  hosts: kms_hosts\n  resources: []\n")
        for resolve in (False, True):
            t = time.perf_counter()
            load_specs([str(root / "book.yml")], str(root / "hosts.yml"), resolve_secrets=resolve,
                       vault=VaultSecrets.from_passwords([(None, "pw")]))
            what = "plan (decrypts every value)" if resolve else "validate (no decryption)"
            print(f"{n} hosts with a !vault password, {what}: {time.perf_counter() - t:.2f} s")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1000)
