"""Pruning and adoption of dkm_container on a real Samba AD DC, through the CLI.

Under one parent container: declare 3 DKM containers with ``prune: true``, apply, remove 1
from the YAML; the plan shows exactly that one as a delete "no longer declared" (found by
one one-level search for our marker under the declared parent), the limit guards refuse
it, apply deletes it (protection entry first). A container of another owner id and an
unowned one (made with ldap3 directly, no marker) under the same parent survive; a pruned
container that has a child is refused, not deleted recursively. Adoption: an unowned
container blocks the plan until ``adopt: true``. ``ldapsearch`` over LDAPS (an independent
client) checks every apply; each test ends with a re-plan of zero changes.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from kmsdeploy.cli import main
from tests.services.samba import unique

pytestmark = pytest.mark.integration


def files(dc, tmp_path, names, parent, *, prune="true", extra="", adopt=False, book="dkm.yml"):
    inv = tmp_path / "inventory.yml"
    inv.write_text(f"""all:
  children:
    domain_controllers:
      hosts:
        dc1:
          ansible_connection: ldap
          ansible_host: {dc.ip}
          ansible_user: {dc.admin_user}
          ansible_password: {{env: DKM_PRUNE_PW}}
          kmsdeploy_ldap_ca_file: {dc.ca_file}
          kmsdeploy_ldap_server_name: {dc.server_name}
""")
    body = "".join(f"""    - kind: dkm_container
      dn: "CN={n},{parent}"
      aces:
        - {{principal: "Domain Admins", rights: [full_control], inheritance: this_object}}
""" + ("      adopt: true\n" if adopt else "") for n in names)
    pb = tmp_path / book
    pb.write_text(f"- name: DKM containers\n  hosts: domain_controllers\n  prune: {prune}\n{extra}  resources:\n{body}")
    return str(inv), str(pb)


def kd(capsys, *argv):
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    got = capsys.readouterr()
    return rc, got.out, got.err


def plan_json(capsys, inv, pb, *extra):
    rc, out, err = kd(capsys, "plan", "-i", inv, pb, "--format", "json", "--detailed-exitcode", *extra)
    assert out.strip(), err
    return rc, json.loads(out)


def pending(doc):
    return [c for c in doc["changes"] if c["action"] != "noop" or c.get("refusal")]


def ldapsearch(dc, base: str) -> dict[str, str | None]:
    """cn -> adminDescription of the containers directly under ``base`` (ldapsearch over LDAPS)."""
    # to the DC's loopback address over TLS; its certificate names the DC, a name that does not
    # resolve here, so this reader does not insist on verifying it (LDAPTLS_REQCERT=allow)
    env = dict(os.environ, LDAPTLS_CACERT=dc.ca_file, LDAPTLS_REQCERT="allow")
    done = subprocess.run(["ldapsearch", "-LLL", "-o", "ldif-wrap=no", "-x", "-H", f"ldaps://{dc.ip}",
                           "-D", dc.admin_user, "-w", dc.admin_password, "-b", base, "-s", "one",
                           "(objectClass=container)", "cn", "adminDescription"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    out: dict[str, str | None] = {}
    cn = None
    for line in done.stdout.splitlines():
        if line.startswith("cn: "):
            cn = line[4:]
            out[cn] = None
        elif line.startswith("adminDescription: ") and cn is not None:
            out[cn] = line[len("adminDescription: "):]
    return out


@pytest.fixture
def parent(samba_dc):
    """A fresh parent container under CN=System (the DKM containers' parent), cleaned up after."""
    dn = f"CN={unique('DKMROOT-')},CN=System,{samba_dc.base_dn}"
    with samba_dc.connect() as c:
        assert c.add(dn, ["top", "container"]), c.result
    yield dn
    samba_dc.delete_tree(dn)


def test_prune_deletes_exactly_the_container_removed_from_the_yaml(samba_dc, parent, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DKM_PRUNE_PW", samba_dc.admin_password)
    inv, pb = files(samba_dc, tmp_path, ["DKM-A", "DKM-B", "DKM-C"], parent)
    assert kd(capsys, "apply", "-i", inv, pb, "--auto-approve")[0] == 0
    marker = "managed-by=kmsdeploy;owner=default"
    assert ldapsearch(samba_dc, parent) == {"DKM-A": marker, "DKM-B": marker, "DKM-C": marker}
    # another owner's container and an unowned one under the same parent
    _, other = files(samba_dc, tmp_path, ["DKM-OTHER"], parent, book="other.yml")
    assert kd(capsys, "apply", "-i", inv, other, "--auto-approve", "--owner-id", "other-team")[0] == 0
    with samba_dc.connect() as c:
        assert c.add(f"CN=DKM-BYHAND,{parent}", ["top", "container"]), c.result
    assert plan_json(capsys, inv, pb)[0] == 0  # neither is ours

    _, pb = files(samba_dc, tmp_path, ["DKM-A", "DKM-C"], parent)
    rc, doc = plan_json(capsys, inv, pb)
    assert rc == 2
    (gone,) = pending(doc)
    assert gone["address"] == f"dkm_container[CN=DKM-B,{parent}]@dc1"
    assert gone["action"] == "delete" and gone["reason"] == "no longer declared" and not gone.get("refusal")
    rc, text, _ = kd(capsys, "plan", "-i", inv, pb)
    assert f"- dkm_container[CN=DKM-B,{parent}] on dc1  (no longer declared)" in text

    rc, out, err = kd(capsys, "apply", "-i", inv, pb, "--auto-approve", "--prune-limit", "0")
    assert rc == 1 and "would prune 1 object(s)" in err
    _, guarded = files(samba_dc, tmp_path, ["DKM-A", "DKM-C"], parent, extra="  max_prune: 0\n", book="guarded.yml")
    assert kd(capsys, "plan", "-i", inv, guarded)[0] == 1
    assert "DKM-B" in ldapsearch(samba_dc, parent)

    assert kd(capsys, "apply", "-i", inv, pb, "--auto-approve")[0] == 0
    assert ldapsearch(samba_dc, parent) == {"DKM-A": marker, "DKM-C": marker,
                                            "DKM-OTHER": "managed-by=kmsdeploy;owner=other-team", "DKM-BYHAND": None}
    assert plan_json(capsys, inv, pb)[0] == 0
    assert plan_json(capsys, inv, other, "--owner-id", "other-team")[0] == 0  # their prune spares ours


def test_a_pruned_container_with_a_child_is_refused_not_deleted_recursively(samba_dc, parent, tmp_path, capsys,
                                                                            monkeypatch):
    monkeypatch.setenv("DKM_PRUNE_PW", samba_dc.admin_password)
    inv, pb = files(samba_dc, tmp_path, ["DKM-KEEP", "DKM-FULL"], parent)
    assert kd(capsys, "apply", "-i", inv, pb, "--auto-approve")[0] == 0
    with samba_dc.connect() as c:  # VMM would store keys under it
        assert c.add(f"CN=key1,CN=DKM-FULL,{parent}", ["top", "container"]), c.result
    _, pb = files(samba_dc, tmp_path, ["DKM-KEEP"], parent)
    rc, doc = plan_json(capsys, inv, pb)
    assert rc == 1
    (refused,) = pending(doc)
    assert refused["reason"] == "no longer declared" and "child object" in refused["refusal"]
    assert kd(capsys, "apply", "-i", inv, pb, "--auto-approve")[0] == 1
    assert samba_dc.exists(f"CN=key1,CN=DKM-FULL,{parent}")
    assert set(ldapsearch(samba_dc, parent)) == {"DKM-KEEP", "DKM-FULL"}


def test_adopt_an_unowned_container(samba_dc, parent, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DKM_PRUNE_PW", samba_dc.admin_password)
    with samba_dc.connect() as c:
        assert c.add(f"CN=DKM-OLD,{parent}", ["top", "container"]), c.result
    inv, pb = files(samba_dc, tmp_path, ["DKM-OLD"], parent, prune="false")
    rc, out, err = kd(capsys, "plan", "-i", inv, pb)
    assert rc == 1 and "adopt: true" in out + err
    assert ldapsearch(samba_dc, parent) == {"DKM-OLD": None}
    _, pb = files(samba_dc, tmp_path, ["DKM-OLD"], parent, prune="false", adopt=True)
    rc, text, _ = kd(capsys, "plan", "-i", inv, pb, "--detailed-exitcode")
    assert rc == 2 and f"~ adopt dkm_container[CN=DKM-OLD,{parent}] on dc1" in text
    assert kd(capsys, "apply", "-i", inv, pb, "--auto-approve")[0] == 0
    assert ldapsearch(samba_dc, parent) == {"DKM-OLD": "managed-by=kmsdeploy;owner=default"}
    assert plan_json(capsys, inv, pb)[0] == 0
