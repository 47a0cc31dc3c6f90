"""DNS (RFC 2136) preflight: ONE exchange on one TCP connection per DNS server target.

Per zone the plan has records in, three messages are pipelined:

1. ``SOA`` query: the zone exists on the server (authoritative answer at the apex, as
   the provider requires) and its serial is readable;
2. a TSIG-signed UPDATE with the prerequisite "the zone's SOA RRset exists" (RFC 2136
   §2.4.1) that adds and deletes the same TXT record at ``_kmsdeploy-preflight.<zone>``:
   the server verifies the key AND its update permission, and the net change is empty.
   (A prerequisite-only update proves less: BIND accepts an empty update over TCP for
   any valid key, or none, under ``update-policy``, because permissions are checked per
   record.) BIND minimises the diff of one update, so the add+delete leaves no new
   serial and no journal entry; the test checks the SOA serial with dig before and after;
3. the same add+delete, unsigned, of one SRV record in ``_vlmcs._tcp.<zone>`` (a target
   under ``.invalid``): does the zone take unsigned updates of that set (from this
   controller's address)? If so and the plan manages ``_vlmcs._tcp`` there, KMS hosts can
   publish into the same set: the two-writers rule (DESIGN.md, reference A.1, B.1).

Limits (docs/preflight.md): the probes stand on the server minimising one update's diff,
which BIND does; a server that does not would bump the serial once (never leave a
record). (3) speaks for this controller's address only: a zone that refuses it may still
accept KMS hosts (other addresses, or GSS-TSIG "secure only" updates on Windows DNS, which
kmsdeploy cannot imitate); that case is reported as not visible from here.
"""
from __future__ import annotations

from typing import Any, Sequence

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.update

from ..errors import AuthenticationError
from ..model import Host, Resource
from ..providers.base import RunContext
from .checks import CRITICAL, OK, SKIPPED, UNKNOWN, WARNING, Check

SRV_NAME = "_vlmcs._tcp"
#: (relative owner, type, rdata) of the add-then-delete probes: the signed one on a name of its
#: own, the unsigned one inside the very set a KMS host would publish (B.1)
PROBE_SIGNED = ("_kmsdeploy-preflight", "TXT", '"kmsdeploy preflight probe"')
PROBE_UNSIGNED = (SRV_NAME, "SRV", "0 0 1688 kmsdeploy-preflight.invalid.")


def zones_of(resources: Sequence[Resource]) -> list[str]:
    return sorted({str(r.desired["zone"]).rstrip(".").lower() for r in resources if r.ref.kind == "dns_record"})


def manages_vlmcs(resources: Sequence[Resource], zone: str) -> bool:
    for r in resources:
        d = r.desired
        if r.ref.kind == "dns_record" and str(d["zone"]).rstrip(".").lower() == zone and d.get("type") == "SRV":
            name = str(d["name"]).rstrip(".").lower()
            if name in (SRV_NAME, f"{SRV_NAME}.{zone}"):
                return True
    return False


def messages(zones: Sequence[str]) -> tuple[list[dns.message.Message], set[int]]:
    """(messages in order: per zone SOA query, signed probe, unsigned probe; ids of the unsigned)."""
    out, unsigned = [], set()
    for i, zone in enumerate(zones):
        origin = dns.name.from_text(zone)
        q = dns.message.make_query(origin, dns.rdatatype.SOA)
        q.id = 3 * i + 1
        out.append(q)
        for j, sign in ((2, True), (3, False)):
            u = dns.update.UpdateMessage(origin)
            u.present(origin, dns.rdatatype.SOA)
            # add and delete the same record in ONE update: the server checks the permission for
            # both, and its minimal diff is empty, so nothing changes (no new serial, no journal)
            name, rtype, text = PROBE_SIGNED if sign else PROBE_UNSIGNED
            owner = dns.name.from_text(name, origin)
            rd = dns.rdata.from_text(dns.rdataclass.IN, rtype, text)
            u.add(owner, 0, rd)
            u.delete(owner, rd)
            u.id = 3 * i + j
            out.append(u)
            if not sign:
                unsigned.add(u.id)
    return out, unsigned


def zone_checks(zone: str, soa: dns.message.Message, signed: dns.message.Message, open_: dns.message.Message, *,
                keyed: bool, key_name: str | None, vlmcs: bool, where: str) -> list[Check]:
    """Checks of one zone from its three answers. Pure."""
    out: list[Check] = []
    rc = soa.rcode()
    rrset = soa.get_rrset(soa.answer, dns.name.from_text(zone), dns.rdataclass.IN, dns.rdatatype.SOA)
    if rc == dns.rcode.REFUSED:
        return [Check(f"zone:{zone}", CRITICAL, f"{where} refused queries for {zone}: it is not authoritative for "
                                                "it, or allow-query excludes this machine",
                      "set the resources' zone to the apex of a zone this server is primary for, or allow queries "
                      "from this machine (allow-query)", "docs/dns.md")]
    if rrset is None or not soa.flags & dns.flags.AA:
        return [Check(f"zone:{zone}", CRITICAL, f"{zone} is not a zone on {where} (answer {dns.rcode.to_text(rc)}, "
                                                "no authoritative SOA)",
                      "set the resources' zone to the apex of a zone this server is primary for", "docs/dns.md")]
    serial = rrset[0].serial
    out.append(Check(f"zone:{zone}", OK, f"authoritative, SOA serial {serial}", evidence={"serial": serial}))
    src = dns.rcode.to_text(signed.rcode())
    if not keyed:
        out.append(Check(f"tsig:{zone}", SKIPPED, "no TSIG key configured (kmsdeploy_tsig: none): updates go unsigned"))
        if open_.rcode() != dns.rcode.NOERROR:
            out.append(Check(f"update:{zone}", CRITICAL, f"unsigned updates refused ({dns.rcode.to_text(open_.rcode())})",
                             "configure kmsdeploy_tsig with a key the zone grants (update-policy/allow-update)",
                             "B.1 (BIND needs allow-update)"))
    elif signed.rcode() == dns.rcode.NOERROR:
        out.append(Check(f"tsig:{zone}", OK, f"key {key_name!r} accepted and may update the zone (net-empty probe update)",
                         evidence={"rcode": src}))
    else:
        out.append(Check(f"tsig:{zone}", CRITICAL, f"the signed update was answered {src}",
                         f"grant key {key_name!r} updates in the zone (BIND: update-policy {{ grant {key_name} "
                         "zonesub ANY; }) or fix the key", "B.1 (BIND needs allow-update)", {"rcode": src}))
    if open_.rcode() == dns.rcode.NOERROR:
        if vlmcs:
            out.append(Check(f"two_writers:{zone}", WARNING,
                             f"{zone} takes unsigned dynamic updates and this plan manages {SRV_NAME}: KMS hosts can "
                             "publish into the same record set",
                             "set dns_publishing: false on the KMS hosts of this zone, or restrict its updates to the "
                             "key", "A.1 /sdns, B.1, DESIGN.md two writers", {"unsigned_update": "NOERROR"}))
        else:
            out.append(Check(f"two_writers:{zone}", OK, "takes unsigned updates, but this plan does not manage "
                                                        f"{SRV_NAME} here", evidence={"unsigned_update": "NOERROR"}))
    else:
        out.append(Check(f"two_writers:{zone}", OK,
                         f"unsigned updates refused from this controller ({dns.rcode.to_text(open_.rcode())}); whether "
                         "KMS hosts may update (their addresses, GSS-TSIG) is not visible from here",
                         evidence={"unsigned_update": dns.rcode.to_text(open_.rcode())}))
    return out


def check_target(host: Host, resources: Sequence[Resource], ctx: RunContext, transport_for) -> tuple[list[Check], int]:
    """(checks, exchanges) of one rfc2136 target."""
    zones = zones_of(resources)
    if not zones:
        return [Check("zones", SKIPPED, "no dns_record resource targets this server")], 0
    msgs, unsigned = messages(zones)
    transport = transport_for(host, ctx)
    keyed = transport.tsig is not None
    key_name = transport.tsig.name if keyed else None
    with transport as t:
        try:
            answers = t.exchange(msgs, unsigned=unsigned)
        except AuthenticationError as exc:
            return [Check("tsig", CRITICAL, str(exc),
                          "fix kmsdeploy_tsig (key name, algorithm, secret) to match the server's key; on a "
                          "'clock skew' message fix time sync", "docs/dns.md"),
                    Check("zones", UNKNOWN, "not checked: the server's answers were lost with the TSIG failure")], \
                t.requests
        out: list[Check] = []
        for i, zone in enumerate(zones):
            out.extend(zone_checks(zone, *answers[3 * i:3 * i + 3], keyed=keyed, key_name=key_name,
                                   vlmcs=manages_vlmcs(resources, zone), where=t.where))
        return out, t.requests


__all__: list[Any] = ["check_target", "zone_checks", "messages", "zones_of"]
