"""Pure DN (RFC 4514), filter (RFC 4515) and principal handling for the LDAP provider."""
from __future__ import annotations

import pytest

from kmsdeploy.kinds.ad_names import (
    DnError, dn_key, escape_dn_value, escape_filter_bytes, escape_filter_value, normalize_dn, parent_dn,
    parse_dn, parse_principal, principal_filter,
)


@pytest.mark.parametrize("value", [
    "VMMDKM", 'a,b', 'a+b', 'say "hi"', "<tag>", "x;y", "k=v", "back\\slash", "#hash", " lead", "trail ",
    "nul\x00byte", "new\nline", "ü-unicode", "$(rm -rf /)`x`", "*)(|(objectClass=*)",
])
def test_escape_dn_value_round_trips(value):
    dn = f"CN={escape_dn_value(value)},CN=System,DC=corp,DC=example"
    rdns = parse_dn(dn)
    assert rdns[0] == [("CN", value)]
    assert [r[0][1] for r in rdns[1:]] == ["System", "corp", "example"]


def test_escape_dn_value_specials():
    assert escape_dn_value('a,b+c"d\\e<f>g;h=i') == 'a\\,b\\+c\\"d\\\\e\\<f\\>g\\;h\\=i'
    assert escape_dn_value("#x ") == "\\#x\\ "
    assert escape_dn_value(" x") == "\\ x"
    assert escape_dn_value("a\x00b") == "a\\00b"


@pytest.mark.parametrize("given,canonical", [
    ("CN=VMMDKM,DC=corp,DC=contoso,DC=com", "CN=VMMDKM,DC=corp,DC=contoso,DC=com"),
    ("cn = VMMDKM , cn=System,  dc=corp,dc=example", "CN=VMMDKM,CN=System,DC=corp,DC=example"),
    ("CN=a\\2Cb,DC=x", "CN=a\\,b,DC=x"),
    ("CN=a\\,b,DC=x", "CN=a\\,b,DC=x"),
    ("CN=x\\ ,DC=y", "CN=x\\ ,DC=y"),
    ("CN=a+OU=b,DC=c", "CN=a+OU=b,DC=c"),
    ("CN=caf\\C3\\A9,DC=x", "CN=café,DC=x"),
])
def test_normalize_dn(given, canonical):
    assert normalize_dn(given) == canonical


def test_dn_key_is_case_insensitive():
    assert dn_key("cn=VMMDKM,dc=Corp,dc=Example") == dn_key("CN=vmmdkm,DC=corp,DC=example")


@pytest.mark.parametrize("bad", ["", "   ", "VMMDKM", "CN=", "CN=a,", "CN=a,,DC=b", "=x", "CN=a;b,DC=c",
                                 "CN=a\\", "CN=a\\zz,DC=b", "CN=#04,DC=b", "1x=a", "CN=a=b"])
def test_bad_dns_are_clear_errors(bad):
    with pytest.raises(DnError) as e:
        parse_dn(bad)
    assert "DN" in str(e.value)


def test_parent_dn():
    assert parent_dn("CN=VMMDKM,CN=System,DC=corp,DC=example") == "CN=System,DC=corp,DC=example"
    assert parent_dn("CN=a\\,b,DC=x") == "DC=x"
    assert parent_dn("DC=x") is None


def test_escape_filter_value_rfc4515():
    assert escape_filter_value("a*b(c)d\\e\x00") == "a\\2ab\\28c\\29d\\5ce\\00"
    assert escape_filter_value("*)(|(objectClass=*)") == "\\2a\\29\\28|\\28objectClass=\\2a\\29"
    assert escape_filter_value("plain ü") == "plain ü"
    assert escape_filter_bytes(b"\x01\xff") == "\\01\\ff"


@pytest.mark.parametrize("text,form,value,domain", [
    ("S-1-5-21-1-2-3-1105", "sid", "S-1-5-21-1-2-3-1105", None),
    ("s-1-5-32-544", "sid", "S-1-5-32-544", None),
    ("Everyone", "well_known", "S-1-1-0", None),
    ("NT AUTHORITY\\Authenticated Users", "well_known", "S-1-5-11", None),
    ("BUILTIN\\Administrators", "well_known", "S-1-5-32-544", None),
    ("svc-vmm@corp.example", "upn", "svc-vmm@corp.example", None),
    ("CORP\\svc-vmm", "sam", "svc-vmm", "CORP"),
    ("Domain Admins", "sam", "Domain Admins", None),
])
def test_parse_principal(text, form, value, domain):
    p = parse_principal(text)
    assert (p.form, p.value, p.domain) == (form, value, domain)


@pytest.mark.parametrize("bad", ["", "S-1-x", "CORP\\", "\\name", "a\\b\\c", "x*)(|(objectClass=*", "na;me", "@corp"])
def test_parse_principal_rejects(bad):
    with pytest.raises(ValueError):
        parse_principal(bad)


def test_principal_filter_is_one_escaped_or():
    ps = [parse_principal(x) for x in ["CORP\\svc (vmm)", "a*b@corp.example", "S-1-5-11", "Everyone"]]
    flt = principal_filter(ps)
    assert flt == "(&(objectSid=*)(|(sAMAccountName=svc \\28vmm\\29)(userPrincipalName=a\\2ab@corp.example)))"
    assert principal_filter([parse_principal("S-1-1-0")]) is None
