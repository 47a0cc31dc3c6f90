"""rfc2136 provider, pure parts: answer parsing on captured BIND wire messages, update
building (prerequisites), TSIG settings and key files. No network."""
from __future__ import annotations

import json
from pathlib import Path

import dns.message
import dns.rdataclass
import dns.rcode
import dns.rdatatype
import pytest

from kmsdeploy.errors import ProviderError, SecretError
from kmsdeploy.kinds.dns_record import DnsRecord
from kmsdeploy.model import Action, Ref, Resource, Secret
from kmsdeploy.providers import rfc2136 as p
from kmsdeploy.transports.dns import parse_key_file

DATA = Path(__file__).resolve().parents[1] / "data" / "dns_record"
WIRE = json.loads((DATA / "wire_answers.json").read_text())
KIND = DnsRecord()


def answer(key: str) -> dns.message.Message:
    return dns.message.from_wire(bytes.fromhex(WIRE[key]["hex"]), keyring=False)


def desired(**spec):
    return KIND.normalize({"zone": "lab.example", **spec})


def test_observed_srv_with_marker():
    d = desired(name="_vlmcs._tcp", type="SRV", records=[{"target": "kms1"}])
    obs = p.observed_state(d, answer("srv_two_targets"), answer("srv_marker"), "default")
    assert obs == {
        "zone": "lab.example.", "name": "_vlmcs._tcp.lab.example.", "type": "SRV", "ttl": 600,
        "records": [{"target": "kms1.lab.example.", "port": 1688, "priority": 0, "weight": 0},
                    {"target": "kms2.lab.example.", "port": 1688, "priority": 10, "weight": 50}],
        "_owned": True, "_marker": ["heritage=kmsdeploy,owner=default,type=SRV"],
    }
    other = p.observed_state(d, answer("srv_two_targets"), answer("srv_marker"), "site-b")
    assert other["_owned"] == "other:default"
    # no marker -> unowned
    unowned = p.observed_state(d, answer("srv_two_targets"), answer("nxdomain"), "default")
    assert unowned["_owned"] is False and unowned["_marker"] == []


def test_absent_answers():
    d = desired(name="nothere", type="SRV", records=[{"target": "kms1"}])
    assert p.observed_state(d, answer("nxdomain"), answer("nxdomain"), "default") is None
    d = desired(name="kms1", type="SRV", records=[{"target": "kms1"}])
    assert p.observed_state(d, answer("nodata"), answer("nxdomain"), "default") is None


def test_aaaa_cname_txt():
    assert p.parse_set_answer(answer("aaaa"), "v6.lab.example.", "AAAA") == (300, {"addresses": ["2001:db8::1", "2001:db8::2"]})
    assert p.parse_set_answer(answer("cname"), "kms.lab.example.", "CNAME") == (300, {"target": "kms1.lab.example."})
    # an A query on a CNAME name answers the CNAME chain, not an A set at that name
    assert p.parse_set_answer(answer("a_via_cname"), "kms.lab.example.", "A") is None
    ttl, vals = p.parse_set_answer(answer("txt_long"), "info.lab.example.", "TXT")
    assert vals["texts"] == sorted(['a "quoted" text; $(id)' + "x" * 200 + "y" * 100, "short"])


def test_zone_checks():
    p.check_zone_answer("lab.example.", answer("soa"), "srv")
    with pytest.raises(ProviderError, match="not a zone"):
        p.check_zone_answer("kms1.lab.example.", answer("soa_not_apex"), "srv")
    with pytest.raises(ProviderError, match="refused queries for zone other.example."):
        p.check_zone_answer("other.example.", answer("refused_other_zone"), "srv")
    with pytest.raises(ProviderError, match="REFUSED"):
        p.parse_set_answer(answer("refused_other_zone"), "other.example.", "SOA")


def test_update_rcodes_captured():
    assert answer("update_yxrrset").rcode() == dns.rcode.YXRRSET
    assert answer("update_yxrrset").rcode() in p.PREREQ_RCODES
    assert answer("update_refused_unsigned").rcode() == dns.rcode.REFUSED
    assert "changed since they were read" in p.conflict_message("lab.example.", dns.rcode.YXRRSET)
    assert "nothing in this zone was applied" in p.conflict_message("lab.example.", dns.rcode.NXRRSET)
    assert "update-policy" in p.refused_message("lab.example.", dns.rcode.REFUSED, "x:53", "k")


def test_queries_are_batched_and_unique():
    rs = []
    for i in range(30):
        spec = {"zone": "lab.example", "name": f"n{i}", "type": "A", "addresses": ["10.0.0.1"]}
        rs.append(Resource(Ref("dns_record", "dns1", KIND.identity(spec)), KIND.normalize(spec)))
    msgs, index = p.make_queries(rs)
    assert len(msgs) == 1 + 2 * 30  # one SOA per zone, set + marker per resource
    assert len({m.id for m in msgs}) == len(msgs)
    assert all(not (m.flags & 0x0100) for m in msgs)  # RD cleared


def _sections(msg):
    return {
        "prereq": sorted(f"{r.name} {dns.rdataclass.to_text(r.rdclass)} {dns.rdatatype.to_text(r.rdtype)} "
                         + " ".join(sorted(x.to_text() for x in r)) for r in msg.prerequisite),
        "update": sorted(f"{r.name} {r.ttl} {dns.rdataclass.to_text(r.deleting or r.rdclass)} "
                         f"{dns.rdatatype.to_text(r.rdtype)} "
                         + " ".join(sorted(x.to_text() for x in r)) for r in msg.update),
    }



def test_build_updates_prerequisites():
    spec = {"zone": "lab.example", "name": "_vlmcs._tcp", "type": "SRV", "ttl": 300, "records": [{"target": "kms1"}]}
    r = Resource(Ref("dns_record", "dns1", KIND.identity(spec)), KIND.normalize(spec))
    create = KIND.diff(r, None)
    observed = {"zone": "lab.example.", "name": "_vlmcs._tcp.lab.example.", "type": "SRV", "ttl": 600, "_owned": True,
                "_marker": ["heritage=kmsdeploy,owner=o1,type=SRV"],
                "records": [{"target": "kms2.lab.example.", "port": 1688, "priority": 0, "weight": 0}]}
    update = KIND.diff(r, observed)
    assert update.action is Action.UPDATE
    s = _sections(p.build_updates([create], "o1")["lab.example."][0])
    assert s["prereq"] == ["_vlmcs._tcp.lab.example. NONE SRV "]
    assert "_vlmcs._tcp.lab.example. 300 IN SRV 0 0 1688 kms1.lab.example." in s["update"]
    assert '_kmsdeploy-srv._vlmcs._tcp.lab.example. 300 IN TXT "heritage=kmsdeploy,owner=o1,type=SRV"' in s["update"]
    s = _sections(p.build_updates([update], "o1")["lab.example."][0])
    assert s["prereq"] == ['_kmsdeploy-srv._vlmcs._tcp.lab.example. IN TXT "heritage=kmsdeploy,owner=o1,type=SRV"',
                           "_vlmcs._tcp.lab.example. IN SRV 0 0 1688 kms2.lab.example."]
    assert "_vlmcs._tcp.lab.example. 0 ANY SRV " in s["update"]  # delete the set, then add
    delete = KIND.diff(Resource(r.ref, r.desired, state="absent"), observed)
    s = _sections(p.build_updates([delete], "o1")["lab.example."][0])
    assert s["update"] == ["_kmsdeploy-srv._vlmcs._tcp.lab.example. 0 ANY TXT ", "_vlmcs._tcp.lab.example. 0 ANY SRV "]
    # refused changes are never sent
    refused = KIND.diff(Resource(r.ref, r.desired, state="absent"), dict(observed, _owned=False, _marker=[]))
    assert refused.refusal and p.build_updates([refused], "o1") == {}


def test_adoption_requires_marker_absent():
    spec = {"zone": "lab.example", "name": "kms1", "type": "A", "ttl": 300, "addresses": ["127.0.0.11"]}
    r = Resource(Ref("dns_record", "dns1", KIND.identity(spec)), KIND.normalize(spec), adopt=True)
    obs = {"zone": "lab.example.", "name": "kms1.lab.example.", "type": "A", "ttl": 300,
           "addresses": ["127.0.0.11"], "_owned": False, "_marker": []}
    s = _sections(p.build_updates([KIND.diff(r, obs)], "o1")["lab.example."][0])
    assert "_kmsdeploy-a.kms1.lab.example. NONE TXT " in s["prereq"]


def test_hostile_txt_is_data():
    rd = p.txt_rdata('x" ; $(id) `id`')
    assert rd.strings == (b'x" ; $(id) `id`',)
    rd = p.txt_rdata("z" * 600)
    assert [len(c) for c in rd.strings] == [255, 255, 90]
    assert p.txt_text(rd) == "z" * 600


KEY_FILE = 'key "kmsdeploy-key" {\n\talgorithm hmac-sha256;\n\tsecret "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0MTI=";\n};\n'


def test_parse_key_file():
    k = parse_key_file(KEY_FILE)
    assert (k.name, k.algorithm) == ("kmsdeploy-key", "hmac-sha256")
    assert k.secret.reveal().startswith("c2Vj")
    assert "c2Vj" not in repr(k)
    with pytest.raises(ValueError, match="exactly one"):
        parse_key_file("nonsense")
    with pytest.raises(ValueError, match="not supported"):
        parse_key_file(KEY_FILE.replace("hmac-sha256", "hmac-md5"))


def test_tsig_from_vars(tmp_path, monkeypatch):
    (tmp_path / "k.key").write_text(KEY_FILE)
    assert p.tsig_from_vars({"file": "k.key"}, str(tmp_path), "dns1").name == "kmsdeploy-key"
    assert p.tsig_from_vars("none", ".", "dns1") is None
    k = p.tsig_from_vars({"name": "k", "secret": Secret("c2VjcmV0", "env:X")}, ".", "dns1")
    assert k.algorithm == "hmac-sha256"
    monkeypatch.setenv("TSIG_SECRET", "c2VjcmV0")
    assert p.tsig_from_vars({"name": "k", "secret": {"env": "TSIG_SECRET"}}, ".", "dns1").secret.reveal() == "c2VjcmV0"
    # the inventory loader may have resolved `{file: key}` itself into a Secret holding the file text
    assert p.tsig_from_vars(Secret(KEY_FILE, "file:k.key"), ".", "dns1").name == "kmsdeploy-key"
    with pytest.raises(ProviderError, match="kmsdeploy_tsig is not set"):
        p.tsig_from_vars(None, ".", "dns1")
    with pytest.raises(ProviderError, match="never an inline value"):
        p.tsig_from_vars({"name": "k", "secret": "c2VjcmV0"}, ".", "dns1")
    with pytest.raises(SecretError, match="cannot read"):
        p.tsig_from_vars({"file": "missing.key"}, str(tmp_path), "dns1")
    with pytest.raises(SecretError, match="NOPE_UNSET"):
        p.tsig_from_vars({"name": "k", "secret": {"env": "NOPE_UNSET"}}, ".", "dns1")
    with pytest.raises(ProviderError, match="not supported"):
        p.tsig_from_vars({"name": "k", "algorithm": "hmac-md5", "secret": Secret("x")}, ".", "dns1")


def test_tsig_unresolved_refs_follow_the_loaders_rules(tmp_path, monkeypatch):
    """Raw {env:}/{file:} mappings go through kmsdeploy.spec.secrets.resolve (one set of rules):
    an empty variable or file is an error naming the host, never an empty TSIG secret."""
    monkeypatch.setenv("TSIG_EMPTY", "")
    with pytest.raises(SecretError, match=r"host 'dns1': TSIG secret: .*TSIG_EMPTY is empty"):
        p.tsig_from_vars({"name": "k", "secret": {"env": "TSIG_EMPTY"}}, ".", "dns1")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(SecretError, match=r"host 'dns1': TSIG secret: .*file is empty"):
        p.tsig_from_vars({"name": "k", "secret": {"file": "empty"}}, str(tmp_path), "dns1")
    (tmp_path / "s").write_text("c2VjcmV0\n")
    assert p.tsig_from_vars({"name": "k", "secret": {"file": "s"}}, str(tmp_path), "dns1").secret.reveal() == "c2VjcmV0"
    with pytest.raises(SecretError, match=r"host 'dns1': TSIG key file: .*cannot read"):
        p.tsig_from_vars({"file": "missing.key"}, str(tmp_path), "dns1")


# --------------------------------------------------------------------------- prune listing
ZONE_TEXT = """$ORIGIN lab.example.
@ 300 IN SOA ns hostmaster 1 3600 600 86400 60
@ 300 IN NS ns
ns 300 IN A 127.0.0.1
_vlmcs._tcp.s1 300 IN SRV 0 10 1688 kms1
_kmsdeploy-srv._vlmcs._tcp.s1 300 IN TXT "heritage=kmsdeploy,owner=o1,type=SRV"
_vlmcs._tcp.S2 120 IN SRV 0 0 1688 KMS2
_vlmcs._tcp.s2 120 IN SRV 10 5 1688 kms1
_kmsdeploy-srv._vlmcs._tcp.s2 120 IN TXT "heritage=kmsdeploy,owner=o1,type=SRV"
_vlmcs._tcp.other 300 IN SRV 0 0 1688 kms1
_kmsdeploy-srv._vlmcs._tcp.other 300 IN TXT "heritage=kmsdeploy,owner=o2,type=SRV"
_vlmcs._tcp.manual 300 IN SRV 0 0 1688 kms1
kms1 300 IN A 127.0.0.11
_kmsdeploy-a.kms1 300 IN TXT "heritage=kmsdeploy,owner=o1,type=A"
_kmsdeploy-aaaa.kms1 300 IN TXT "heritage=kmsdeploy,owner=o1,type=AAAA"
kms2 300 IN A 127.0.0.12
_kmsdeploy-a.kms2 300 IN TXT "heritage=kmsdeploy,owner=o1,type=SRV"
info 300 IN TXT "hello"
_kmsdeploy-txt.info 300 IN TXT "heritage=kmsdeploy,owner=o1,type=TXT"
"""


def _zone(text=ZONE_TEXT):
    """The zone as the transfer builds it (absolute names)."""
    import dns.zone

    return dns.zone.from_text(text, "lab.example.", relativize=False)


def test_owned_sets_lists_only_this_owners_sets_under_the_kinds_identity():
    found = p.owned_sets(_zone(), "lab.example.", "o1")
    # other owner (o2), unowned (manual), a marker without its set (AAAA) and a marker naming
    # another type (kms2's A marker says SRV) are left out; markers are never objects themselves
    assert sorted(found) == ["_vlmcs._tcp.s1.lab.example./SRV", "_vlmcs._tcp.s2.lab.example./SRV",
                             "info.lab.example./TXT", "kms1.lab.example./A"]
    assert found["_vlmcs._tcp.s2.lab.example./SRV"] == {
        "zone": "lab.example.", "name": "_vlmcs._tcp.s2.lab.example.", "type": "SRV", "ttl": 120,
        "records": [{"target": "kms2.lab.example.", "port": 1688, "priority": 0, "weight": 0},
                    {"target": "kms1.lab.example.", "port": 1688, "priority": 10, "weight": 5}],
        "_owned": True, "_marker": ["heritage=kmsdeploy,owner=o1,type=SRV"]}
    # the identity is the one the loader gives the declared resource, so declared sets match
    spec = {"zone": "LAB.example", "name": "_vlmcs._tcp.S1", "type": "srv", "records": [{"target": "kms1"}]}
    assert KIND.identity(spec) in found
    assert p.owned_sets(_zone(), "lab.example.", "o2").keys() == {"_vlmcs._tcp.other.lab.example./SRV"}
    assert p.owned_sets(_zone(), "lab.example.", "nobody") == {}


def test_listed_state_deletes_set_and_marker_like_a_declared_absent_set():
    state = p.owned_sets(_zone(), "lab.example.", "o1")["_vlmcs._tcp.s1.lab.example./SRV"]
    desired = {k: v for k, v in state.items() if not k.startswith("_")}  # what planner.prune keeps
    r = Resource(Ref("dns_record", "dns1", KIND.identity(desired)), desired, state="absent")
    change = KIND.diff(r, state)
    assert change.action is Action.DELETE and change.pending
    s = _sections(p.build_updates([change], "o1")["lab.example."][0])
    assert s["update"] == ["_kmsdeploy-srv._vlmcs._tcp.s1.lab.example. 0 ANY TXT ",
                           "_vlmcs._tcp.s1.lab.example. 0 ANY SRV "]


def test_transfer_refused_message_names_the_named_conf_line():
    from kmsdeploy.transports.dns import TransferRefused

    err = TransferRefused("DNS server 127.0.0.1:53 answered REFUSED to a zone transfer (AXFR) of lab.example.")
    msg = p.transfer_refused_message(err, "lab.example.", "kmsdeploy-key")
    assert "REFUSED" in msg and 'zone "lab.example"' in msg and 'allow-transfer { key "kmsdeploy-key"; }' in msg
    assert "<this machine>" in p.transfer_refused_message(err, "lab.example.", None)
