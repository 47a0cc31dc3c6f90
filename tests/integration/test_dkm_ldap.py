"""dkm_container against a real Samba AD DC (tests/services/samba.py).

Each case drives the provider and kind directly (transport -> read -> diff -> apply ->
read), checks the result with an INDEPENDENT reader (a second ldap3 connection decoding
the SDDL with winacl, or ldbsearch on sam.ldb), then re-plans and asserts zero changes.
The CLI cases at the end go through ``kmsdeploy.cli.main``.
"""
from __future__ import annotations

import json
import re

import pytest

from kmsdeploy import kinds
from kmsdeploy.errors import AuthenticationError, ProviderError, TransportError, UnreachableError
from kmsdeploy.model import Action, Host, Ref, Resource, Secret
from kmsdeploy.providers.base import RunContext
from kmsdeploy.providers.ldap import LdapProvider, marker_value
from kmsdeploy.transports.base import Timeouts
from tests.services.samba import unique  # samba_dc comes from the tests.services.samba plugin (conftest)

pytestmark = pytest.mark.integration

KIND = kinds.get("dkm_container")
PROVIDER = LdapProvider()


def host_for(dc, **over) -> Host:
    v = {"ansible_connection": "ldap", "ansible_host": dc.ip, "ansible_user": dc.admin_user,
         "ansible_password": Secret(dc.admin_password), "kmsdeploy_ldap_ca_file": dc.ca_file,
         "kmsdeploy_ldap_server_name": dc.server_name}
    v.update(over)
    return Host(name="dc1", vars={k: x for k, x in v.items() if x is not None})


def resource(spec: dict, state: str = "present") -> Resource:
    spec = dict(spec)
    assert KIND.check(dict(spec, state=state)) == []
    desired = KIND.normalize(spec)
    return Resource(ref=Ref("dkm_container", "dc1", KIND.identity(spec)), desired=desired, state=state)


#: LDAP searches one read may cost when no container is to be deleted, however many
#: containers it reads: principals, NetBIOS name (DOMAIN\name principals), containers, parents.
MAX_READ_SEARCHES = 4


def plan(dc, resources, ctx=None, host=None):
    """(changes, observed, reads): ``reads`` counts the LDAP requests of ``read`` alone
    (the transport's counter, without the RootDSE lookup at connect)."""
    ctx = ctx or RunContext(owner_id="itest", timeouts=Timeouts(connect=5, operation=30), retries=0)
    host = host or host_for(dc)
    with PROVIDER.transport(host, ctx) as t:
        before = t.requests
        observed = PROVIDER.read(t, host, resources, ctx)
        reads = t.requests - before
    if all(r.state != "absent" for r in resources):
        assert reads <= MAX_READ_SEARCHES, f"{reads} LDAP searches to read {len(resources)} container(s)"
    return [KIND.diff(r, observed[r.ref]) for r in resources], observed, reads


def apply(dc, resources, ctx=None):
    ctx = ctx or RunContext(owner_id="itest", timeouts=Timeouts(connect=5, operation=30), retries=0)
    host = host_for(dc)
    changes, _, _ = plan(dc, resources, ctx)
    assert not [c for c in changes if c.refusal], [c.refusal for c in changes]
    with PROVIDER.transport(host, ctx) as t:
        results = PROVIDER.apply(t, host, changes, {r.ref: r for r in resources}, ctx)
    assert all(r.ok for r in results), [r.message for r in results]
    return changes


def assert_converged(dc, resources, ctx=None):
    changes, _, _ = plan(dc, resources, ctx)
    assert [c.action for c in changes] == [Action.NOOP] * len(resources), [(c.action, c.notes) for c in changes]


def explicit(sddl: str) -> list[str]:
    """The explicit (not inherited: no ID flag) ACE strings of an SDDL."""
    return [a for a in re.findall(r"\([^)]*\)", sddl) if "ID" not in a.split(";")[1]]


@pytest.fixture
def dkm(samba_dc):
    """A fresh container DN under CN=System plus a cleanup."""
    dn = f"CN={unique('VMMDKM-')},CN=System,{samba_dc.base_dn}"
    yield dn
    samba_dc.delete_tree(dn)


def test_create_container_and_grant_then_idempotent(samba_dc, dkm, tmp_path):
    group_name, svc_name = unique("vmmadmins"), unique("svcvmm")
    _, sid = samba_dc.create_group(group_name)
    _, svc_sid = samba_dc.create_user(svc_name)
    r = resource({"dn": dkm, "vmm_service_account": f"CORP\\{svc_name}",
                  "aces": [{"principal": group_name, "rights": ["read", "create_child"], "inheritance": "this_object"}]})
    ctx = RunContext(owner_id="itest", backup_dir=str(tmp_path / "bk"), timeouts=Timeouts(5, 30), retries=0)
    changes = apply(samba_dc, [r], ctx)
    assert changes[0].action is Action.CREATE
    sddl = samba_dc.read_sddl(dkm)
    assert f"(A;CI;0xf01ff;;;{svc_sid})" in sddl
    assert f"(A;;0x20095;;;{sid})" in sddl
    assert "(D;;0x10040;;;S-1-1-0)" in sddl  # protected from accidental deletion
    assert samba_dc.attribute(dkm, "adminDescription") == [marker_value("itest")]
    # second independent reader: ldbsearch on sam.ldb
    assert svc_sid in samba_dc.ldbsearch_sddl(dkm)
    assert_converged(samba_dc, [r], ctx)


def test_read_is_one_batched_search_whatever_the_number_of_containers(samba_dc, dkm):
    """DESIGN.md: one batched read per target. Reading 1 or 3 containers costs the same
    number of LDAP searches, both while they are missing (principals + containers +
    parents) and once they exist (principals + containers); and the batched read sees
    exactly what a per-container base search sees."""
    g, _ = samba_dc.create_group(unique("batch-"))
    name = g.split(",")[0][3:]
    sibling = f"CN={unique('VMMDKM-')},CN=System,{samba_dc.base_dn}"
    try:
        rs = [resource({"dn": dn, "aces": [{"principal": name, "rights": ["read"]}]})
              for dn in (dkm, f"CN=Keys,{dkm}", sibling)]
        one = plan(samba_dc, rs[:1])
        three = plan(samba_dc, rs)
        assert [c.action for c in three[0]] == [Action.CREATE] * 3
        assert one[2] == three[2] == 3, (one[2], three[2])
        apply(samba_dc, rs)
        one = plan(samba_dc, rs[:1])
        three = plan(samba_dc, rs)
        assert [c.action for c in three[0]] == [Action.NOOP] * 3
        assert one[2] == three[2] == 2, (one[2], three[2])
        # the batched read equals the per-container read (the apply path)
        ctx = RunContext(owner_id="itest", timeouts=Timeouts(5, 30), retries=0)
        with PROVIDER.transport(host_for(samba_dc), ctx) as t:
            names = PROVIDER.resolve_principals(t, [name], "dc1")
            for r in rs:
                single = PROVIDER.read_container(t, r.desired["dn"], "itest", names=names)
                single["_principals"] = {name: names[name]}
                assert three[1][r.ref] == single
        # deleting costs one child count per existing container on top of the batched read
        gone = [resource({"dn": r.desired["dn"]}, state="absent") for r in rs]
        changes, observed, reads = plan(samba_dc, gone)
        assert reads == 1 + 3 and observed[gone[0].ref]["_children"] == 1, (reads, observed)
        assert changes[0].refusal and "1 child object" in changes[0].refusal
    finally:
        samba_dc.delete_tree(sibling)


def test_read_spans_naming_contexts(samba_dc, dkm):
    """A subtree search does not cross partitions: a DN in the Configuration NC is read
    by its own search (not silently reported missing by the domain-NC search)."""
    services = f"CN=Services,CN=Configuration,{samba_dc.base_dn}"
    rs = [resource({"dn": dkm, "aces": [{"principal": "Domain Admins"}]}),
          resource({"dn": services}, state="absent")]
    changes, observed, reads = plan(samba_dc, rs)
    assert observed[rs[0].ref] is None and changes[0].action is Action.CREATE
    assert observed[rs[1].ref]["dn"] == services and observed[rs[1].ref]["_children"] > 0
    assert changes[1].refusal and "no kmsdeploy ownership marker" in changes[1].refusal
    # principals + one search per naming context (2) + parents + one child count
    assert reads == 5, reads


def test_search_groups_are_per_naming_context():
    from kmsdeploy.providers.ldap import common_ancestor, dn_filter, naming_context_hint, search_groups

    b = "DC=corp,DC=example"
    assert naming_context_hint(f"CN=A,CN=System,{b}") == b
    assert naming_context_hint(f"CN=X,CN=Configuration,{b}") == f"CN=Configuration,{b}"
    assert naming_context_hint(f"CN=Y,CN=Schema,CN=Configuration,{b}") == f"CN=Schema,CN=Configuration,{b}"
    assert naming_context_hint(f"DC=z,DC=DomainDnsZones,{b}") == f"DC=z,DC=DomainDnsZones,{b}"
    assert naming_context_hint("CN=Q,O=x") is None
    assert common_ancestor([f"CN=K,CN=A,CN=System,{b}", f"cn=b, cn=SYSTEM,{b}"]) == f"CN=System,{b}"
    assert common_ancestor([f"CN=A,CN=System,{b}"]) == f"CN=A,CN=System,{b}"
    groups = search_groups([f"CN=A,CN=System,{b}", f"CN=K,CN=A,CN=System,{b}", f"cn=a,cn=system,{b}",
                            f"CN=X,CN=Configuration,{b}", "CN=Q,O=x", "CN=R,O=x"])
    assert groups == [(f"CN=A,CN=System,{b}", [f"CN=A,CN=System,{b}", f"CN=K,CN=A,CN=System,{b}"]),
                      (f"CN=X,CN=Configuration,{b}", [f"CN=X,CN=Configuration,{b}"]),
                      ("CN=Q,O=x", ["CN=Q,O=x"]), ("CN=R,O=x", ["CN=R,O=x"])]
    # DN and filter metacharacters arrive as data
    from kmsdeploy.kinds.ad_names import escape_dn_value
    nasty = f"CN={escape_dn_value('a,*)(|(cn=*' + chr(92))},DC=corp"
    assert dn_filter([nasty]) == r"(distinguishedName=CN=a\5c,\2a\29\28|\28cn\5c=\2a\5c\5c,DC=corp)"
    assert dn_filter(["CN=a,DC=x", "CN=b,DC=x"]) == "(|(distinguishedName=CN=a,DC=x)(distinguishedName=CN=b,DC=x))"


def test_add_second_principal_and_change_rights(samba_dc, dkm, tmp_path):
    g1, sid1 = samba_dc.create_group(unique("g1-"))
    g2, sid2 = samba_dc.create_group(unique("g2-"))
    n1, n2 = g1.split(",")[0][3:], g2.split(",")[0][3:]
    spec = {"dn": dkm, "aces": [{"principal": n1, "rights": ["full_control"]}]}
    apply(samba_dc, [resource(spec)])
    # add a second principal
    spec2 = {"dn": dkm, "aces": [{"principal": n1, "rights": ["full_control"]},
                                 {"principal": f"CORP\\{n2}", "rights": ["read"], "inheritance": "this_object"}]}
    ctx = RunContext(owner_id="itest", backup_dir=str(tmp_path), timeouts=Timeouts(5, 30), retries=0)
    changes = apply(samba_dc, [resource(spec2)], ctx)
    assert changes[0].action is Action.UPDATE and changes[0].properties == ("aces",)
    assert any(n.startswith("+ allow read this_object") for n in changes[0].notes), changes[0].notes
    sddl = samba_dc.read_sddl(dkm)
    assert f"(A;CI;0xf01ff;;;{sid1})" in sddl and f"(A;;0x20094;;;{sid2})" in sddl
    # a backup of the previous SDDL was written, and it lacks the new entry
    files = list(tmp_path.iterdir())
    assert len(files) == 1
    line = json.loads(files[0].read_text().splitlines()[-1])
    assert line["dn"] == dkm and sid1 in line["sddl"] and sid2 not in line["sddl"]
    assert_converged(samba_dc, [resource(spec2)])
    # the backup restores: the second principal is gone again, the plan shows it pending
    from kmsdeploy.providers.ldap import restore_dacl
    ctx0 = RunContext(owner_id="itest", timeouts=Timeouts(5, 30), retries=0)
    with PROVIDER.transport(host_for(samba_dc), ctx0) as t:
        restore_dacl(t, dkm, line["sddl"])
    assert sid2 not in samba_dc.read_sddl(dkm) and f"(A;CI;0xf01ff;;;{sid1})" in samba_dc.read_sddl(dkm)
    changes, _, _ = plan(samba_dc, [resource(spec2)])
    assert changes[0].action is Action.UPDATE
    apply(samba_dc, [resource(spec2)])
    # change the rights of one entry (narrowing must converge: the DSC subset flaw)
    spec3 = {"dn": dkm, "aces": [{"principal": n1, "rights": ["read", "write"]},
                                 {"principal": f"CORP\\{n2}", "rights": ["read"], "inheritance": "this_object"}]}
    changes = apply(samba_dc, [resource(spec3)])
    assert any(n.startswith("~ allow read,write") for n in changes[0].notes), changes[0].notes
    sddl = samba_dc.read_sddl(dkm)
    assert f"(A;CI;0x200bc;;;{sid1})" in sddl and "0xf01ff;;;" + sid1 not in sddl
    assert_converged(samba_dc, [resource(spec3)])


def test_exact_mode_removes_undeclared_and_authenticated_users(samba_dc, dkm):
    g1, sid1 = samba_dc.create_group(unique("g1-"))
    g2, sid2 = samba_dc.create_group(unique("g2-"))
    n1, n2 = g1.split(",")[0][3:], g2.split(",")[0][3:]
    apply(samba_dc, [resource({"dn": dkm, "aces": [{"principal": n1}, {"principal": n2, "rights": ["read"]}]})])
    assert "(A;;0x20094;;;S-1-5-11)" in samba_dc.read_sddl(dkm)  # the schema default AU read
    # entries mode + remove_authenticated_users_read: only AU goes
    spec = {"dn": dkm, "aces": [{"principal": n1}, {"principal": n2, "rights": ["read"]}],
            "remove_authenticated_users_read": True}
    changes = apply(samba_dc, [resource(spec)])
    assert changes[0].properties == ("authenticated_users_read",)
    sddl = samba_dc.read_sddl(dkm)
    assert "S-1-5-11)" not in " ".join(explicit(sddl)) and sid2 in sddl
    assert_converged(samba_dc, [resource(spec)])
    # exact mode: the undeclared n2 entry and the default DA/SYSTEM entries are removed, loudly
    da = samba_dc.sid_of("Domain Admins")
    spec = {"dn": dkm, "mode": "exact", "aces": [{"principal": n1}, {"principal": "Domain Admins"}]}
    changes, _, _ = plan(samba_dc, [resource(spec)])
    loud = [n for n in changes[0].notes if n.startswith("!! REMOVE")]
    assert any(sid2 in n for n in loud) and any("S-1-5-18" in n for n in loud), changes[0].notes
    apply(samba_dc, [resource(spec)])
    ex = explicit(samba_dc.read_sddl(dkm))
    assert sorted(ex) == sorted([f"(A;CI;0xf01ff;;;{sid1})", f"(A;CI;0xf01ff;;;{da})", "(D;;0x10040;;;S-1-1-0)"]), ex
    assert "ID;" in samba_dc.read_sddl(dkm)  # inherited entries untouched
    assert_converged(samba_dc, [resource(spec)])


def test_inherited_entries_do_not_cause_drift(samba_dc, dkm):
    """A parent grants an inheritable entry: the child container sees it as INHERITED and
    its plan stays empty (the microsoft.ad.object flaw)."""
    g, sid = samba_dc.create_group(unique("inh-"))
    name = g.split(",")[0][3:]
    child = f"CN=Keys,{dkm}"
    parent_r = resource({"dn": dkm, "aces": [{"principal": name, "rights": ["full_control"]}]})
    child_r = resource({"dn": child, "aces": [{"principal": name, "rights": ["read"], "inheritance": "this_object"}]})
    apply(samba_dc, [parent_r, child_r])
    sddl = samba_dc.read_sddl(child)
    assert f"(A;CIID;0xf01ff;;;{sid})" in sddl and f"(A;;0x20094;;;{sid})" in sddl
    assert_converged(samba_dc, [parent_r, child_r])
    # deleting the non-empty parent is refused without recursive, and works with it
    gone = resource({"dn": dkm}, state="absent")
    changes, _, _ = plan(samba_dc, [gone])
    assert changes[0].refusal and "child object" in changes[0].refusal
    gone = resource({"dn": dkm, "recursive": True}, state="absent")
    apply(samba_dc, [gone])
    assert not samba_dc.exists(dkm)
    assert_converged(samba_dc, [gone])


def test_absent_deletes_owned_empty_container_and_refuses_unowned(samba_dc, dkm):
    g, _ = samba_dc.create_group(unique("del-"))
    apply(samba_dc, [resource({"dn": dkm, "aces": [{"principal": g.split(",")[0][3:]}]})])
    # another owner id refuses to delete
    other = RunContext(owner_id="someone-else", timeouts=Timeouts(5, 30), retries=0)
    changes, _, _ = plan(samba_dc, [resource({"dn": dkm}, state="absent")], other)
    assert changes[0].refusal and "owned by 'itest'" in changes[0].refusal
    # ours: protection is removed first, then the container is deleted
    apply(samba_dc, [resource({"dn": dkm}, state="absent")])
    assert not samba_dc.exists(dkm)
    # a hand-made container without marker is never deleted
    with samba_dc.connect() as c:
        c.add(dkm, ["top", "container"])
    changes, _, _ = plan(samba_dc, [resource({"dn": dkm}, state="absent")])
    assert changes[0].refusal and "no kmsdeploy ownership marker" in changes[0].refusal
    assert samba_dc.exists(dkm)


def test_unknown_principal_is_a_clear_error_and_nothing_written(samba_dc, dkm):
    r = resource({"dn": dkm, "aces": [{"principal": "CORP\\no-such-account"}, {"principal": "ghost@corp.example"}]})
    with pytest.raises(ProviderError) as e:
        plan(samba_dc, [r])
    assert "'CORP\\\\no-such-account' not found" in str(e.value) and "ghost@corp.example" in str(e.value)
    assert not samba_dc.exists(dkm)


def test_parent_missing_is_a_clear_error(samba_dc):
    dn = f"CN=VMMDKM,CN={unique('NoParent')},{samba_dc.base_dn}"
    with pytest.raises(ProviderError) as e:
        plan(samba_dc, [resource({"dn": dn, "aces": [{"principal": "Domain Admins"}]})])
    assert "does not exist" in str(e.value) and "parent" in str(e.value)


def test_wrong_password_and_server_down_and_tls(samba_dc):
    r = resource({"dn": f"CN=X,{samba_dc.base_dn}", "aces": [{"principal": "Domain Admins"}]})
    with pytest.raises(AuthenticationError) as e:
        plan(samba_dc, [r], host=host_for(samba_dc, ansible_password=Secret("Wr0ng-Secret-42")))
    assert "Wr0ng-Secret-42" not in str(e.value) and "invalid credentials" in str(e.value)
    # nothing listens on this loopback address (the DC binds only its own)
    with pytest.raises(UnreachableError):
        plan(samba_dc, [r], host=host_for(samba_dc, ansible_host="127.0.0.254"))
    # TLS verification: system store does not trust the DC's CA; IP without server_name mismatches
    with pytest.raises(TransportError) as e:
        plan(samba_dc, [r], host=host_for(samba_dc, kmsdeploy_ldap_ca_file=None))
    assert not e.value.transient and "TLS" in str(e.value)
    with pytest.raises(TransportError) as e:
        plan(samba_dc, [r], host=host_for(samba_dc, kmsdeploy_ldap_server_name=None))
    assert not e.value.transient and "TLS" in str(e.value)
    # StartTLS on 389 works with the same verification
    changes, _, _ = plan(samba_dc, [r], host=host_for(samba_dc, kmsdeploy_ldap_tls="starttls"))
    assert changes[0].action is Action.CREATE
    # plain LDAP is refused unless opted in
    with pytest.raises(TransportError) as e:
        plan(samba_dc, [r], host=host_for(samba_dc, kmsdeploy_ldap_tls="none"))
    assert "plain LDAP" in str(e.value)


def test_metacharacters_are_data(samba_dc):
    """DN and filter metacharacters in names: escaped, never injected."""
    nasty_cn = 'DKM, "x" + <y>; =z\\ #'
    from kmsdeploy.kinds.ad_names import escape_dn_value
    dn = f"CN={escape_dn_value(nasty_cn)},CN=System,{samba_dc.base_dn}"
    # sAMAccountName cannot hold * (AD naming rules), so: parentheses and & in a group name,
    # and a star plus parentheses in a UPN -- each would change an unescaped filter.
    gname = f"grp (dkm) a&b {unique('')}"
    upn = f"svc*(vmm){unique('')}@corp.example"
    _, sid = samba_dc.create_group(gname)
    _, usid = samba_dc.create_user(unique("u"), upn=upn)
    try:
        r = resource({"dn": dn, "aces": [{"principal": gname}, {"principal": upn}]})
        apply(samba_dc, [r])
        sddl = samba_dc.read_sddl(dn)
        assert sid in sddl and usid in sddl
        assert samba_dc.attribute(dn, "cn") in (nasty_cn, [nasty_cn])
        assert_converged(samba_dc, [r])
        # a wildcard principal must not match anything
        with pytest.raises(ProviderError):
            plan(samba_dc, [resource({"dn": dn, "aces": [{"principal": "svc*@corp.example"}]})])
        # a filter-injection attempt in a name is rejected before any search
        assert KIND.check({"dn": dn, "aces": [{"principal": "x*)(|(objectClass=*"}]})
    finally:
        samba_dc.delete_tree(dn)


# --- CLI level ------------------------------------------------------------------------------

def _cli_files(dc, tmp_path, resources_yaml: str, password_env: str = "DKM_TEST_PW"):
    inv = tmp_path / "inventory.yml"
    inv.write_text(f"""all:
  children:
    domain_controllers:
      hosts:
        dc1:
          ansible_connection: ldap
          ansible_host: {dc.ip}
          ansible_user: {dc.admin_user}
          ansible_password: {{env: {password_env}}}
          kmsdeploy_ldap_ca_file: {dc.ca_file}
          kmsdeploy_ldap_server_name: {dc.server_name}
""")
    pb = tmp_path / "dkm.yml"
    pb.write_text(f"""- name: DKM
  hosts: domain_controllers
  resources:
{resources_yaml}""")
    return str(inv), str(pb)


def test_cli_apply_then_plan_is_clean(samba_dc, dkm, tmp_path, monkeypatch, capsys):
    from kmsdeploy.cli import main

    svc, admins = unique("svc"), unique("admins")
    _, svc_sid = samba_dc.create_user(svc, upn=f"{svc}@corp.example")
    _, adm_sid = samba_dc.create_group(admins)
    monkeypatch.setenv("DKM_TEST_PW", samba_dc.admin_password)
    inv, pb = _cli_files(samba_dc, tmp_path, f"""    - kind: dkm_container
      dn: "{dkm}"
      vmm_service_account: "{svc}@corp.example"
      aces:
        - {{principal: "CORP\\\\{admins}", rights: [read, create_child], inheritance: this_object}}
      remove_authenticated_users_read: true
""")
    backup = tmp_path / "backup"
    assert main(["plan", "-i", inv, pb, "--owner-id", "itest-cli", "--detailed-exitcode"]) == 2
    out = capsys.readouterr().out
    assert "full_control" in out and samba_dc.admin_password not in out
    assert main(["apply", "-i", inv, pb, "--auto-approve", "--owner-id", "itest-cli", "--backup-dir", str(backup)]) == 0
    sddl = samba_dc.read_sddl(dkm)
    assert f"(A;CI;0xf01ff;;;{svc_sid})" in sddl and f"(A;;0x20095;;;{adm_sid})" in sddl
    assert "(A;;0x20094;;;S-1-5-11)" not in sddl and "(D;;0x10040;;;S-1-1-0)" in sddl
    capsys.readouterr()
    assert main(["plan", "-i", inv, pb, "--owner-id", "itest-cli", "--detailed-exitcode"]) == 0
    assert samba_dc.admin_password not in capsys.readouterr().out


def test_cli_unknown_principal_and_wrong_password_exit_1(samba_dc, dkm, tmp_path, monkeypatch, capsys):
    from kmsdeploy.cli import main

    monkeypatch.setenv("DKM_TEST_PW", samba_dc.admin_password)
    inv, pb = _cli_files(samba_dc, tmp_path, f"""    - kind: dkm_container
      dn: "{dkm}"
      vmm_service_account: "CORP\\\\nobody-{unique('')}"
""")
    assert main(["apply", "-i", inv, pb, "--auto-approve"]) == 1
    captured = capsys.readouterr()
    assert "not found" in captured.out + captured.err and not samba_dc.exists(dkm)
    monkeypatch.setenv("DKM_TEST_PW", "Wr0ng-Secret-77")
    assert main(["plan", "-i", inv, pb]) == 1
    captured = capsys.readouterr()
    assert "invalid credentials" in captured.out + captured.err
    assert "Wr0ng-Secret-77" not in captured.out + captured.err
