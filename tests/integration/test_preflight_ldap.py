"""``kmsdeploy preflight`` on a DKM target: a real Samba AD DC over LDAPS (simple bind), via
the CLI. TLS chain, bind, parent container, nTSecurityDescriptor with the SD flags control
and the bind account's rights, each failing with its advice and passing after the fix.
Read-only: the DC's entries are checked with the samba fixture's own LDAP client before
and after (nothing created)."""
from __future__ import annotations

import json

import jsonschema
import pytest

from kmsdeploy.cli import main
from kmsdeploy.spec.schemas import load_schema
from tests.services.samba import unique  # samba_dc comes from the tests.services.samba plugin (conftest)

pytestmark = pytest.mark.integration


def write(dc, tmp_path, containers: list[str], **host_over) -> list[str]:
    host = {"ansible_connection": "ldap", "ansible_host": dc.ip, "ansible_user": dc.admin_user,
            "ansible_password": "{env: PF_DC_PW}", "kmsdeploy_ldap_ca_file": dc.ca_file,
            "kmsdeploy_ldap_server_name": dc.server_name, **host_over}
    lines = "".join(f"          {k}: {v}\n" for k, v in host.items() if v is not None)
    (tmp_path / "inv.yml").write_text("all:\n  children:\n    dcs:\n      hosts:\n        dc1:\n" + lines)
    res = "".join(f'    - kind: dkm_container\n      dn: "{dn}"\n      vmm_service_account: "CORP\\\\Administrator"\n'
                  for dn in containers)
    (tmp_path / "dkm.yml").write_text(f"- name: DKM\n  hosts: dcs\n  resources:\n{res}")
    return ["-i", str(tmp_path / "inv.yml"), str(tmp_path / "dkm.yml")]


def run(capsys, args) -> tuple[int, dict]:
    capsys.readouterr()
    rc = main(["preflight", *args, "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, load_schema("preflight.schema.json"))
    return rc, doc


def checks(doc) -> dict[str, dict]:
    return {c["check"]: c for c in doc["targets"][0]["checks"]}


@pytest.fixture(autouse=True)
def password(samba_dc, monkeypatch):
    monkeypatch.setenv("PF_DC_PW", samba_dc.admin_password)


def test_new_container_under_the_domain_head(samba_dc, tmp_path, capsys):
    dn = f"CN={unique('pfdkm')},{samba_dc.base_dn}"
    rc, doc = run(capsys, write(samba_dc, tmp_path, [dn]))
    got = checks(doc)
    assert rc == 0, [(c['check'], c['status'], c['summary']) for c in got.values()]
    assert got["tls"]["status"] == "ok" and got["bind"]["status"] == "ok"
    assert got[f"parent:{dn}"]["status"] == "ok" and got[f"sd:{dn}"]["status"] == "ok"
    assert got[f"rights:{dn}"]["status"] == "ok" and "CreateChild" in got[f"rights:{dn}"]["summary"]
    assert not samba_dc.exists(dn)  # read-only
    assert samba_dc.admin_password not in json.dumps(doc)


def test_missing_parent(samba_dc, tmp_path, capsys):
    dn = f"CN=x,CN={unique('nowhere')},{samba_dc.base_dn}"
    rc, doc = run(capsys, write(samba_dc, tmp_path, [dn]))
    c = checks(doc)[f"parent:{dn}"]
    assert rc == 2 and c["status"] == "critical" and "create the parent" in c["advice"]


def test_untrusted_certificate_then_the_lab_ca(samba_dc, tmp_path, capsys):
    dn = f"CN={unique('pfdkm')},{samba_dc.base_dn}"
    rc, doc = run(capsys, write(samba_dc, tmp_path, [dn], kmsdeploy_ldap_ca_file=None))
    c = checks(doc)["tls"]
    assert rc == 2 and c["status"] == "critical" and "kmsdeploy_ldap_ca_file" in c["advice"]
    rc, doc = run(capsys, write(samba_dc, tmp_path, [dn]))
    assert rc == 0 and checks(doc)["tls"]["status"] == "ok"


def test_wrong_password_is_the_bind_check(samba_dc, tmp_path, capsys, monkeypatch):
    dn = f"CN={unique('pfdkm')},{samba_dc.base_dn}"
    monkeypatch.setenv("PF_DC_PW", "not-the-password")
    rc, doc = run(capsys, write(samba_dc, tmp_path, [dn]))
    c = checks(doc)["bind"]
    assert rc == 2 and c["status"] == "critical" and "not-the-password" not in json.dumps(doc)


def test_denied_create_child_on_the_parent(samba_dc, tmp_path, capsys, monkeypatch):
    parent = f"CN={unique('pfparent')},{samba_dc.base_dn}"
    child = f"CN=dkm,{parent}"
    # the parent, made with kmsdeploy itself, carrying a deny CreateChild for the bind account
    args = write(samba_dc, tmp_path, [parent])
    pb = tmp_path / "dkm.yml"
    pb.write_text(pb.read_text() + f'      aces:\n        - {{principal: "CORP\\\\Administrator", type: deny, '
                                   'rights: [create_child], inheritance: this_object}\n')
    assert main(["apply", *args, "--auto-approve", "-q"]) == 0, capsys.readouterr()
    try:
        rc, doc = run(capsys, write(samba_dc, tmp_path, [child]))
        c = checks(doc)[f"rights:{child}"]
        assert rc == 2 and c["status"] == "critical" and "denied: CreateChild" in c["summary"]
        assert "dsacls" in c["advice"]
    finally:
        samba_dc.delete_tree(parent)
    # fixed: the same parent without the deny
    args = write(samba_dc, tmp_path, [parent])
    assert main(["apply", *args, "--auto-approve", "-q"]) == 0
    try:
        rc, doc = run(capsys, write(samba_dc, tmp_path, [child]))
        assert rc == 0 and checks(doc)[f"rights:{child}"]["status"] == "ok", checks(doc)
    finally:
        samba_dc.delete_tree(parent)
