"""``kmsdeploy preflight`` on RFC 2136 targets against a real BIND (its own ``named`` here, so
one zone can take unsigned updates the way a zone open to KMS hosts' own publishing does).

Independent oracle: ``dig`` reads each zone's SOA serial before and after preflight — the
prerequisite-only updates must change nothing. One exchange (one TCP round trip) per target,
counted by the transport and reported in the document.
"""
from __future__ import annotations

import json

import jsonschema
import pytest
import yaml

from kmsdeploy.cli import main
from kmsdeploy.spec.schemas import load_schema
from kmsdeploy.lab.bind import BindServer, free_port
from tests.services.winlab import WORKER

pytestmark = pytest.mark.integration

CLOSED, OPEN, OTHER = "pf-closed.test", "pf-open.test", "pf-other.test"


@pytest.fixture(scope="module")
def named(tmp_path_factory):
    work = tmp_path_factory.mktemp("pf-bind")
    server = BindServer(work, port=free_port("127.0.0.1", 56000 + 40 * (WORKER % 50)),
                        zones={CLOSED: ["kms1 300 IN A 127.0.0.11"], OPEN: ["kms1 300 IN A 127.0.0.11"],
                               OTHER: []}, open_zones=[OPEN])
    server.start()
    try:
        yield server
    finally:
        server.stop()


def serial(server: BindServer, zone: str) -> int:
    [line] = [ln for ln in server.dig(zone + ".", "SOA") if "SOA" in ln.split()]
    return int(line.split()[6])


def srv(zone: str) -> dict:
    return {"kind": "dns_record", "id": f"vlmcs-{zone}", "zone": zone, "name": "_vlmcs._tcp", "type": "SRV",
            "ttl": 900, "records": [{"target": f"kms1.{zone}.", "priority": 0, "weight": 100}]}


def a_record(zone: str) -> dict:
    return {"kind": "dns_record", "id": f"a-{zone}", "zone": zone, "name": "kms9", "type": "A", "ttl": 300,
            "addresses": ["127.0.0.19"]}


def run(tmp_path, capsys, server: BindServer, resources: list[dict], **host_vars) -> tuple[int, dict]:
    inv = tmp_path / "inv.yml"
    vars_ = {"ansible_connection": "rfc2136", "ansible_host": server.address, "ansible_port": server.port,
             "kmsdeploy_tsig": {"file": str(server.key_file)}, **host_vars}
    inv.write_text(yaml.safe_dump({"all": {"hosts": {"dns1": vars_}}}))
    pb = tmp_path / "play.yml"
    pb.write_text(yaml.safe_dump([{"name": "dns", "hosts": "dns1", "resources": resources}], sort_keys=False))
    capsys.readouterr()
    rc = main(["preflight", "-i", str(inv), str(pb), "--format", "json"])
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, load_schema("preflight.schema.json"))
    return rc, doc


def checks(doc: dict) -> dict[str, dict]:
    return {c["check"]: c for c in doc["targets"][0]["checks"]}


def test_closed_zone_key_accepted_nothing_changed(named, tmp_path, capsys):
    before = serial(named, CLOSED)
    rc, doc = run(tmp_path, capsys, named, [srv(CLOSED)])
    assert rc == 0, doc
    got = checks(doc)
    assert got[f"zone:{CLOSED}"]["status"] == "ok" and got[f"zone:{CLOSED}"]["evidence"]["serial"] == before
    assert got[f"tsig:{CLOSED}"]["status"] == "ok" and "kmsdeploy-key" in got[f"tsig:{CLOSED}"]["summary"]
    assert got[f"two_writers:{CLOSED}"]["status"] == "ok" and "REFUSED" in got[f"two_writers:{CLOSED}"]["summary"]
    assert doc["targets"][0]["requests"] == 1  # one pipelined exchange
    assert serial(named, CLOSED) == before  # dig: the prerequisite-only updates changed nothing
    assert named.dig(f"_vlmcs._tcp.{CLOSED}.", "SRV") == []


def test_open_zone_with_managed_vlmcs_is_the_two_writers_warning(named, tmp_path, capsys):
    before = serial(named, OPEN)
    rc, doc = run(tmp_path, capsys, named, [srv(OPEN)])
    c = checks(doc)[f"two_writers:{OPEN}"]
    assert rc == 1 and c["status"] == "warning" and "dns_publishing: false" in c["advice"]
    # fixed: the plan no longer manages _vlmcs._tcp there (the hosts publish it themselves)
    rc, doc = run(tmp_path, capsys, named, [a_record(OPEN)])
    assert rc == 0 and checks(doc)[f"two_writers:{OPEN}"]["status"] == "ok"
    assert serial(named, OPEN) == before


def test_missing_zone_then_the_right_one(named, tmp_path, capsys):
    rc, doc = run(tmp_path, capsys, named, [srv("pf-nowhere.test")])
    c = checks(doc)["zone:pf-nowhere.test"]
    assert rc == 2 and c["status"] == "critical" and "primary" in c["advice"]
    rc, doc = run(tmp_path, capsys, named, [srv(OTHER)])
    assert rc == 0 and checks(doc)[f"zone:{OTHER}"]["status"] == "ok"


def test_wrong_tsig_secret_then_the_right_key(named, tmp_path, capsys):
    name, alg, secret = named.key()
    bad = tmp_path / "bad.key"
    bad.write_text(f'key "{name}" {{ algorithm {alg}; secret "{"QUJD" * 11}"; }};\n')
    rc, doc = run(tmp_path, capsys, named, [srv(CLOSED)], kmsdeploy_tsig={"file": str(bad)})
    c = checks(doc)["tsig"]
    assert rc == 2 and c["status"] == "critical" and "rejected" in c["summary"]
    text = json.dumps(doc)
    assert "QUJD" not in text and secret not in text
    rc, doc = run(tmp_path, capsys, named, [srv(CLOSED)])
    assert rc == 0 and checks(doc)[f"tsig:{CLOSED}"]["status"] == "ok"


def test_without_a_key_updates_must_be_open(named, tmp_path, capsys):
    rc, doc = run(tmp_path, capsys, named, [a_record(CLOSED)], kmsdeploy_tsig="none")
    assert rc == 2 and checks(doc)[f"update:{CLOSED}"]["status"] == "critical"
    rc, doc = run(tmp_path, capsys, named, [a_record(OPEN)], kmsdeploy_tsig="none")
    assert rc == 0 and checks(doc)[f"tsig:{OPEN}"]["status"] == "skipped"


def test_unreachable_dns_server_is_exit_3(named, tmp_path, capsys):
    rc, doc = run(tmp_path, capsys, named, [srv(CLOSED)], ansible_port=free_port("127.0.0.1", 57900))
    assert rc == 3 and checks(doc)["reachable"]["status"] == "unknown"
