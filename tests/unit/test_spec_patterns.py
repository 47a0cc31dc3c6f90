"""Ansible host patterns."""
from __future__ import annotations

import pytest

from kmsdeploy.model import Host
from kmsdeploy.spec.patterns import PatternError, match_hosts

HOSTS = {
    "hq-dns01": Host("hq-dns01", {}, ("dns_servers", "hq", "sites")),
    "ber-dns01": Host("ber-dns01", {}, ("branch-berlin", "branches", "dns_servers", "sites")),
    "ber-kms01": Host("ber-kms01", {}, ("branch-berlin", "branches", "kms_hosts", "sites")),
    "lyo-kms01": Host("lyo-kms01", {}, ("branch-lyon", "branches", "kms_hosts", "sites")),
    "lone": Host("lone", {}, ("ungrouped",)),
}


@pytest.mark.parametrize("pattern,expected", [
    ("all", list(HOSTS)),
    ("*", list(HOSTS)),
    ("lone", ["lone"]),
    ("kms_hosts", ["ber-kms01", "lyo-kms01"]),
    ("branch-*", ["ber-dns01", "ber-kms01", "lyo-kms01"]),
    ("*-dns01", ["hq-dns01", "ber-dns01"]),
    ("dns_servers:kms_hosts", ["hq-dns01", "ber-dns01", "ber-kms01", "lyo-kms01"]),
    ("dns_servers,kms_hosts", ["hq-dns01", "ber-dns01", "ber-kms01", "lyo-kms01"]),
    ("kms_hosts,dns_servers", ["hq-dns01", "ber-dns01", "ber-kms01", "lyo-kms01"]),  # inventory order
    ("branches:&kms_hosts", ["ber-kms01", "lyo-kms01"]),
    ("branches:!kms_hosts", ["ber-dns01"]),
    ("!kms_hosts:branches", ["ber-dns01"]),  # order of terms does not matter
    ("all:!branch-berlin:!lone", ["hq-dns01", "lyo-kms01"]),
    ("!ungrouped", ["hq-dns01", "ber-dns01", "ber-kms01", "lyo-kms01"]),
    ("~^(hq|lyo)-", ["hq-dns01", "lyo-kms01"]),
    ("nothing", []),
    ("kms_hosts:&hq", []),
])
def test_patterns(pattern, expected):
    assert match_hosts(pattern, HOSTS) == expected


@pytest.mark.parametrize("pattern", ["", "  ", "a::b", "a:&", "~(unclosed"])
def test_bad_patterns(pattern):
    with pytest.raises(PatternError):
        match_hosts(pattern, HOSTS)
