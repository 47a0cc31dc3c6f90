"""Inventories: structure, group_vars/host_vars, precedence, sites, secrets, errors."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kmsdeploy.errors import SpecError
from kmsdeploy.model import SecretRef
from kmsdeploy.spec.inventory import load_inventory, read_inventory

REPO = Path(__file__).resolve().parents[2]


def write(base: Path, rel: str, text: str) -> Path:
    p = base / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(textwrap.dedent(text))
    return p


@pytest.fixture
def inv(tmp_path):
    write(tmp_path, "hosts.yml", """\
        all:
          vars: {level: all, from_all: 1}
          hosts:
            lonely: {ansible_host: 198.18.9.9}
          children:
            sites:
              children:
                hq:
                  hosts:
                    hq-a: {ansible_host: 198.18.0.1, level: host-inv}
                  vars: {level: hq}
                region-eu:
                  children:
                    branch-berlin:
                      hosts:
                        ber-a: {ansible_host: 198.18.1.1}
            dns_servers:
              vars: {level: dns, ansible_connection: rfc2136}
              hosts:
                hq-a:
                ber-a:
        """)
    write(tmp_path, "group_vars/all.yml", "level: gv-all\nfrom_gv_all: 2\n")
    write(tmp_path, "group_vars/dns_servers/main.yml", "ansible_port: 53\n")
    write(tmp_path, "group_vars/dns_servers/tsig.yaml", "kmsdeploy_tsig: {name: k, algorithm: hmac-sha256, secret: {env: TSIG}}\n")
    write(tmp_path, "group_vars/branch-berlin.json", '{"level": "gv-berlin"}')
    write(tmp_path, "host_vars/hq-a.yml", "level: host-vars\nansible_password: {file: ../keys/hq-a.pw}\n")
    return tmp_path


def test_hosts_groups_and_order(inv):
    hosts = load_inventory(str(inv / "hosts.yml"))
    assert list(hosts) == ["lonely", "hq-a", "ber-a"]
    assert hosts["ber-a"].groups == ("branch-berlin", "dns_servers", "region-eu", "sites")
    assert hosts["lonely"].groups == ("ungrouped",)
    assert hosts["hq-a"].connection == "rfc2136" and hosts["hq-a"].port == 53
    assert hosts["lonely"].connection == "ssh" and hosts["lonely"].address == "198.18.9.9"


def test_directory_means_hosts_yml(inv):
    assert list(load_inventory(str(inv))) == ["lonely", "hq-a", "ber-a"]


def test_precedence(inv):
    hosts = load_inventory(str(inv))
    # host_vars file beats host inventory vars beats groups
    assert hosts["hq-a"].vars["level"] == "host-vars"
    # branch-berlin (depth 3, group_vars) beats region-eu/sites/dns_servers and all
    assert hosts["ber-a"].vars["level"] == "gv-berlin"
    # group_vars/all.yml beats the inventory's all vars; both are below everything else
    assert hosts["lonely"].vars["level"] == "gv-all"
    assert hosts["lonely"].vars["from_all"] == 1 and hosts["lonely"].vars["from_gv_all"] == 2


def test_precedence_same_depth_is_alphabetical(tmp_path):
    write(tmp_path, "hosts.yml", """\
        all:
          children:
            zeta: {hosts: {h: }, vars: {x: zeta}}
            alpha: {hosts: {h: }, vars: {x: alpha}}
            parent:
              vars: {x: parent}
              children:
                child: {hosts: {h: }, vars: {x: child}}
        """)
    assert load_inventory(str(tmp_path / "hosts.yml"))["h"].vars["x"] == "child"
    write(tmp_path, "hosts.yml", """\
        all:
          children:
            zeta: {hosts: {h: }, vars: {x: zeta}}
            alpha: {hosts: {h: }, vars: {x: alpha}}
        """)
    assert load_inventory(str(tmp_path / "hosts.yml"))["h"].vars["x"] == "zeta"


def test_sites(inv):
    hosts = load_inventory(str(inv))
    assert hosts["hq-a"].site == "hq"
    assert hosts["ber-a"].site == "region-eu"  # the child of 'sites' that contains it
    assert hosts["lonely"].site is None


def test_host_in_two_sites_is_an_error_unless_site_var(tmp_path):
    write(tmp_path, "hosts.yml", """\
        all:
          children:
            sites:
              children:
                hq: {hosts: {shared: }}
                branch-lyon:
                  hosts:
                    shared:
        """)
    with pytest.raises(SpecError) as e:
        load_inventory(str(tmp_path / "hosts.yml"))
    d = e.value.diagnostics[0]
    assert "host 'shared' is in more than one site: hq, branch-lyon" in d.message
    assert (d.line, d.col) == (5, 22)
    write(tmp_path, "host_vars/shared.yml", "site: branch-lyon\n")
    assert load_inventory(str(tmp_path / "hosts.yml"))["shared"].site == "branch-lyon"


def test_secret_refs_in_vars(inv):
    hosts = load_inventory(str(inv))
    tsig = hosts["ber-a"].vars["kmsdeploy_tsig"]
    assert tsig["secret"].source == "env" and tsig["secret"].name == "TSIG"
    pw = hosts["hq-a"].vars["ansible_password"]
    assert isinstance(pw, SecretRef) and pw.name == str(inv / "keys" / "hq-a.pw")
    assert pw.location.file.endswith("host_vars/hq-a.yml") and pw.location.line == 2


def test_files_read_in_stable_order(inv):
    names = [Path(p).relative_to(inv).as_posix() for p, _ in read_inventory(str(inv)).files]
    assert names == ["hosts.yml", "group_vars/all.yml", "group_vars/branch-berlin.json",
                     "group_vars/dns_servers/main.yml", "group_vars/dns_servers/tsig.yaml", "host_vars/hq-a.yml"]


def test_unknown_group_vars_is_a_warning(inv):
    write(inv, "group_vars/dns_sevrers.yml", "a: 1\n")
    result = read_inventory(str(inv))
    warnings = [d for d in result.diagnostics if d.severity == "warning"]
    assert any("no group named 'dns_sevrers'" in d.message for d in warnings)


@pytest.mark.parametrize("text,needle,line,col", [
    ("all:\n  hosts: [a, b]\n", "'all.hosts' in inventory must be a mapping or empty (null), not a list", 2, 10),
    ("all:\n  host:\n    a:\n", "unknown field 'host' in inventory all (did you mean 'hosts'?)", 2, 3),
    ("all:\n  hosts:\n    'bad host': {}\n", "invalid name 'bad host' in inventory all.hosts", 3, 5),
    ("all:\n  hosts:\n    a: {ansible_port: 70000}\n", "out of range: 70000", 3, 23),
    ("all:\n  hosts:\n    a: {ansible_password: hunter2}\n", "inline secret; use {env: NAME} or {file: PATH}", 3, 27),
    ("all:\n  hosts:\n    a: {ansible_host: 'x; reboot'}\n", "has an invalid value", 3, 23),
    ("all:\n  vars: {1bad: x}\n", "invalid name '1bad'", 2, 10),
    ("- all\n", "the document must be a mapping, not a list", 1, 1),
    ("all:\n  children:\n    g:\n      children:\n        all:\n", "group 'all' cannot be a child group", 5, 9),
])
def test_bad_inventories(tmp_path, text, needle, line, col):
    (tmp_path / "hosts.yml").write_text(text)
    with pytest.raises(SpecError) as e:
        load_inventory(str(tmp_path / "hosts.yml"))
    msgs = [str(d) for d in e.value.diagnostics]
    hit = [d for d in e.value.diagnostics if needle in d.message]
    assert hit, msgs
    assert (hit[0].line, hit[0].col) == (line, col), msgs
    assert "hunter2" not in "\n".join(msgs)


def test_bad_vars_file(tmp_path):
    write(tmp_path, "hosts.yml", "all:\n  hosts:\n    a:\n")
    write(tmp_path, "group_vars/all.yml", "- not\n- a mapping\n")
    with pytest.raises(SpecError, match="group_vars/all.yml:1:1: the document must be a mapping"):
        load_inventory(str(tmp_path / "hosts.yml"))


def test_empty_vars_file_is_allowed(tmp_path):
    write(tmp_path, "hosts.yml", "all:\n  hosts:\n    a:\n")
    write(tmp_path, "group_vars/all.yml", "# nothing yet\n")
    assert load_inventory(str(tmp_path / "hosts.yml"))["a"].vars == {}


def test_directory_without_hosts_file(tmp_path):
    with pytest.raises(SpecError, match="holds no inventory file"):
        load_inventory(str(tmp_path))


def test_example_estate_inventory():
    from kmsdeploy.spec.vault import VaultSecrets

    example_pw = str(REPO / "playbooks" / "inventory" / ".vault-pass-example")
    hosts = load_inventory(str(REPO / "playbooks" / "inventory"), vault=VaultSecrets.from_options([example_pw], environ={}))
    sites = {h.site for h in hosts.values()}
    assert sites == {"hq", "branch-berlin", "branch-lyon", "branch-osaka", "branch-austin"}
    by_group = lambda g: [n for n, h in hosts.items() if g in h.groups]  # noqa: E731
    assert all(hosts[n].connection == "rfc2136" for n in by_group("dns_servers"))
    assert all(hosts[n].connection == "ssh" for n in by_group("gateways"))
    assert all(hosts[n].connection == "ldap" for n in by_group("domain_controllers"))
    assert all(hosts[n].connection == "winrm" for n in by_group("kms_hosts") + by_group("scom_agents"))
    assert all(isinstance(hosts[n].vars["kmsdeploy_tsig"]["secret"], SecretRef) for n in by_group("dns_servers"))
    import ipaddress

    net = ipaddress.ip_network("198.18.0.0/15")
    assert all(ipaddress.ip_address(h.address) in net for h in hosts.values())
    assert hosts["ber-kms01"].vars["site_domain"] == "berlin.corp.example"
