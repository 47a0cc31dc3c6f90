"""Pure security-descriptor logic (winacl) on security descriptors captured from Samba."""
from __future__ import annotations

import base64
import json
import pathlib

import pytest

from kmsdeploy.kinds.ad_acl import (
    explicit_aces, inheritance_flags, inheritance_name, is_protected_from_deletion, mask_to_rights,
    normalize_guid, normalize_mask, parse_sd, rebuild_dacl, rights_to_mask, to_sddl, without_protection,
)

DATA = json.loads((pathlib.Path(__file__).parent.parent / "data" / "dkm" / "samba_sd_samples.json").read_text())
SD = base64.b64decode(DATA["container_default"])
DOM = DATA["domain_sid"]
SVC = DOM + "-1105"


def test_rights_masks():
    assert rights_to_mask(["full_control"]) == 0xF01FF
    assert rights_to_mask(["read", "create_child"]) == 0x20095
    assert rights_to_mask(["0x10", 0x20]) == 0x30
    assert rights_to_mask([0x10000000]) == 0xF01FF  # GENERIC_ALL as AD maps it
    assert normalize_mask(0x80000000) == 0x20094
    with pytest.raises(ValueError, match="unknown right"):
        rights_to_mask(["fullcontrol"])
    with pytest.raises(ValueError):
        rights_to_mask(["0xZZ"])


@pytest.mark.parametrize("mask,names", [
    (0xF01FF, ["full_control"]),
    (0x20094, ["read"]),
    (0x200BC, ["read", "write"]),
    (0x20095, ["read", "create_child"]),
    (0x10040, ["delete_tree", "delete"]),
    (0x30, ["read_property", "write_property"]),
    (0x1000000, ["0x1000000"]),
])
def test_mask_to_rights(mask, names):
    assert mask_to_rights(mask) == names
    assert rights_to_mask(names) == mask


def test_inheritance_round_trip():
    for name in ["this_object", "this_and_descendants", "descendants", "this_and_children", "children"]:
        assert inheritance_name(inheritance_flags(name)) == name
    assert inheritance_name(0x12) == "this_and_descendants"  # CI|ID: inherited bit ignored
    assert inheritance_flags("descendants") == 0x0A
    with pytest.raises(ValueError):
        inheritance_flags("all")


def test_guid_normalisation():
    assert normalize_guid("{BF967A8B-0DE6-11D0-A285-00AA003049E2}") == "bf967a8b-0de6-11d0-a285-00aa003049e2"
    assert normalize_guid("00000000-0000-0000-0000-000000000000") is None
    with pytest.raises(ValueError):
        normalize_guid("not-a-guid")


def test_explicit_aces_of_a_samba_container_skip_inherited():
    sd = parse_sd(SD)
    aces = explicit_aces(sd)
    assert [(a["sid"], a["rights"], a["inheritance"]) for a in aces] == [
        (DOM + "-512", ["full_control"], "this_object"),
        ("S-1-5-18", ["full_control"], "this_object"),
        ("S-1-5-11", ["read"], "this_object"),
    ]
    assert aces[1]["principal"] == "NT AUTHORITY\\SYSTEM"
    assert "ID;" in to_sddl(sd) and not is_protected_from_deletion(aces)


def _ace(sid, rights, inheritance="this_and_descendants", typ="allow", ot=None, iot=None):
    m = rights_to_mask(rights)
    return {"principal": sid, "sid": sid, "type": typ, "rights": mask_to_rights(m), "mask": m,
            "inheritance": inheritance, "object_type": ot, "inherited_object_type": iot}


def test_rebuild_adds_entry_protection_and_keeps_inherited():
    data, log = rebuild_dacl(SD, [_ace(SVC, ["full_control"])], exact=False, remove_authenticated_users=False, protect=True)
    sd = parse_sd(data)
    assert sd.Owner is None and sd.Group is None and sd.Sacl is None  # DACL only (SD flags 0x4)
    sddl = to_sddl(sd)
    assert sddl.startswith("D:AI(D;;0x10040;;;S-1-1-0)")  # explicit deny first
    assert f"(A;CI;0xf01ff;;;{SVC})" in sddl
    inherited_before = [a for a in to_sddl(parse_sd(SD)).split(")") if "ID;" in a]
    assert [a for a in sddl.split(")") if "ID;" in a] == inherited_before
    assert is_protected_from_deletion(explicit_aces(sd)) and log == []


def test_rebuild_replaces_mask_of_same_key_and_exact_removes_others():
    first, _ = rebuild_dacl(SD, [_ace(SVC, ["full_control"])], exact=False, remove_authenticated_users=False, protect=None)
    second, log = rebuild_dacl(first, [_ace(SVC, ["read"])], exact=False, remove_authenticated_users=True, protect=None)
    aces = explicit_aces(parse_sd(second))
    assert [a for a in aces if a["sid"] == SVC][0]["rights"] == ["read"]
    assert not [a for a in aces if a["sid"] == "S-1-5-11"] and len(log) == 1
    third, log = rebuild_dacl(second, [_ace(SVC, ["read"])], exact=True, remove_authenticated_users=False, protect=True)
    aces = explicit_aces(parse_sd(third))
    assert sorted(a["sid"] for a in aces) == sorted([SVC, "S-1-1-0"])
    assert len(log) == 2 and all(line.startswith("remove ") for line in log)
    assert not is_protected_from_deletion(explicit_aces(parse_sd(without_protection(third))))


def test_object_ace_round_trip_sets_ds_revision():
    ot = "bf967a86-0de6-11d0-a285-00aa003049e2"
    data, _ = rebuild_dacl(SD, [_ace(SVC, ["create_child"], ot=ot)], exact=False, remove_authenticated_users=False,
                           protect=None)
    sd = parse_sd(data)
    assert sd.Dacl.AclRevision == 4
    got = [a for a in explicit_aces(sd) if a["sid"] == SVC][0]
    assert got["object_type"] == ot and got["rights"] == ["create_child"]


def test_garbage_sd_is_a_value_error():
    with pytest.raises(ValueError):
        parse_sd(b"\x01\x00")
