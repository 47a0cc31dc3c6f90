"""Health rules at their edges, with an injected clock (pure; no I/O)."""
from __future__ import annotations

import datetime as dt

import pytest

from kmsdeploy.health import rules
from kmsdeploy.health.rules import CRITICAL, OK, SKIPPED, UNKNOWN, WARNING, Thresholds

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
KMS_DESC = "Windows(R) Operating System, VOLUME_KMS_WS22 channel"


def at(**delta) -> str:
    return (NOW - dt.timedelta(**delta)).isoformat().replace("+00:00", "Z")


def lic(count=30, status=1, publishing=True, port=0, desc=KMS_DESC, **svc):
    return {"service": {"is_kms_machine": True, "current_count": count, "dns_publishing": publishing,
                        "listening_port": port, **svc},
            "products": [{"description": desc, "license_status": status, "partial_key": "WX4NM", "name": "W"}]}


def ev(eid, when, domain="corp.example"):
    props = {12293: ["0x8007232B", domain], 12294: [domain]}.get(eid, [])
    return {"id": eid, "time": when, "message": "m", "properties": props}


SPPSVC = {"name": "SPPSVC-In-TCP", "enabled": True, "direction": "Inbound", "action": "Allow", "protocol": "TCP",
          "local_ports": ["1688"]}


def facts(licensing=None, events=(), firewall=(SPPSVC,), probe_open=True, **extra):
    f = {"host": "kms1", "site": "hq", "address": "127.0.0.5", "names": ["kms1.corp.example", "kms1"],
         "licensing": lic() if licensing is None else licensing,
         "events": list(events) if events else [ev(12290, at(minutes=5))],
         "firewall": list(firewall),
         "probe": {"address": "127.0.0.5", "port": 1688, "open": probe_open, "error": None if probe_open else "connection refused"}}
    f.update(extra)
    return f


def check(doc, name):
    return next(c for c in doc["checks"] if c["check"] == name)


def host(f, th=Thresholds(), srv=None, previous=None):
    return rules.evaluate_host(f, th, NOW, srv, previous)


# ------------------------------------------------------------------ all green

def test_all_green():
    d = host(facts())
    assert d["status"] == OK, [c for c in d["checks"] if c["status"] != OK]
    assert check(d, "srv")["status"] == SKIPPED  # no domain configured


# ------------------------------------------------------------------ count: 24/25 and 4/5

@pytest.mark.parametrize("family,count,status", [
    ("client", 24, WARNING), ("client", 25, OK), ("server", 4, WARNING), ("server", 5, OK), ("client", -1, WARNING),
    ("client", 4294967295, WARNING),  # uint32 -1 as WMI may report it (A.2)
])
def test_count_threshold_edges(family, count, status):
    th = rules.thresholds_from_vars({"kmsdeploy_health": {"family": family}})
    c = check(host(facts(licensing=lic(count=count)), th), "count")
    assert c["status"] == status
    assert c["evidence"]["threshold"] == (25 if family == "client" else 5)


def test_count_explicit_min_count_overrides_family():
    th = rules.thresholds_from_vars({"kmsdeploy_health": {"family": "server", "min_count": 10}})
    assert check(host(facts(licensing=lic(count=9)), th), "count")["status"] == WARNING
    assert check(host(facts(licensing=lic(count=10)), th), "count")["status"] == OK


# ------------------------------------------------------------------ activity: exactly 8 h

@pytest.mark.parametrize("age,status", [
    (dict(hours=8), OK), (dict(hours=8, seconds=1), WARNING), (dict(hours=7, minutes=59), OK),
])
def test_activity_idle_edge(age, status):
    c = check(host(facts(events=[ev(12290, at(**age))])), "activity")
    assert c["status"] == status
    assert c["evidence"]["last_12290"]["time"] == at(**age)


def test_activity_without_any_12290_warns():
    c = check(host(facts(events=[ev(12294, at(hours=1))])), "activity")
    assert c["status"] == WARNING and c["evidence"]["last_12290"] is None


def test_idle_hours_configurable():
    th = rules.thresholds_from_vars({"kmsdeploy_health": {"idle_hours": 2}})
    assert check(host(facts(events=[ev(12290, at(hours=3))]), th), "activity")["status"] == WARNING


# ------------------------------------------------------------------ DNS publishing: 12293 vs 12294

def test_12293_after_12294_is_red():
    d = host(facts(events=[ev(12290, at(minutes=1)), ev(12294, at(hours=5)), ev(12293, at(hours=1))]))
    c = check(d, "dns_publishing")
    assert c["status"] == CRITICAL and d["status"] == CRITICAL
    assert "corp.example" in c["reason"] and c["evidence"]["domains"]["corp.example"]["last_12293"]["time"] == at(hours=1)


def test_12293_before_12294_is_green():
    c = check(host(facts(events=[ev(12290, at(minutes=1)), ev(12293, at(hours=5)), ev(12294, at(hours=1))])),
              "dns_publishing")
    assert c["status"] == OK


def test_12293_same_time_as_12294_is_not_since():
    c = check(host(facts(events=[ev(12290, at(minutes=1)), ev(12293, at(hours=1)), ev(12294, at(hours=1))])),
              "dns_publishing")
    assert c["status"] == OK


def test_12293_without_any_success_is_red():
    assert check(host(facts(events=[ev(12290, at(minutes=1)), ev(12293, at(days=40))])), "dns_publishing")["status"] == CRITICAL


def test_12293_is_judged_per_domain():
    events = [ev(12290, at(minutes=1)), ev(12294, at(minutes=30), "a.example"), ev(12293, at(hours=2), "a.example"),
              ev(12293, at(hours=1), "b.example"), ev(12294, at(hours=3), "b.example")]
    c = check(host(facts(events=events)), "dns_publishing")
    assert c["status"] == CRITICAL and "b.example" in c["reason"]


def test_12293_ignored_when_publishing_disabled():
    f = facts(licensing=lic(publishing=False), events=[ev(12290, at(minutes=1)), ev(12293, at(hours=1))])
    assert check(host(f), "dns_publishing")["status"] == OK


def test_domain_from_message_when_properties_are_missing():
    e = {"id": 12293, "time": at(hours=1), "properties": [],
         "message": "Publishing the Key Management Service (KMS) to DNS in the 'x.example' domain failed.\r\nInfo:\r\n0x1"}
    assert rules.event_domain(e) == "x.example"


# ------------------------------------------------------------------ service / renewal timer / license

def test_12291_after_last_sign_of_life_is_red():
    c = check(host(facts(events=[ev(12290, at(hours=2)), ev(12291, at(hours=1))])), "service")
    assert c["status"] == CRITICAL and c["evidence"]["last_12291"]["time"] == at(hours=1)


def test_12291_followed_by_activity_is_green():
    assert check(host(facts(events=[ev(12291, at(hours=2)), ev(12290, at(hours=1))])), "service")["status"] == OK


def test_service_state_when_the_runner_reports_it():
    assert check(host(facts(service={"name": "sppsvc", "status": "Stopped"})), "service")["status"] == CRITICAL
    assert check(host(facts(service={"name": "sppsvc", "status": "Running"})), "service")["status"] == OK


def test_renewal_timer_12292():
    assert check(host(facts(events=[ev(12290, at(hours=2)), ev(12292, at(hours=1))])), "renewal_timer")["status"] == CRITICAL
    assert check(host(facts(events=[ev(12292, at(hours=2)), ev(12290, at(hours=1))])), "renewal_timer")["status"] == OK


@pytest.mark.parametrize("status,expected", [(1, OK), (0, CRITICAL), (2, CRITICAL), (5, CRITICAL)])
def test_license_status(status, expected):
    c = check(host(facts(licensing=lic(status=status))), "license")
    assert c["status"] == expected and c["evidence"]["license_status"] == status


def test_no_kms_host_key_is_red():
    f = facts(licensing=lic(desc="Windows(R) Operating System, VOLUME_KMSCLIENT channel"))
    assert check(host(f), "license")["status"] == CRITICAL


# ------------------------------------------------------------------ failed requests and --previous

def counters_lic(failed):
    return lic(failed_requests=failed, total_requests=100 + failed)


@pytest.mark.parametrize("prev,now,status", [(3, 4, WARNING), (3, 3, OK), (3, 0, OK)])
def test_failed_requests_against_previous(prev, now, status):
    previous = {"counters": {"failed_requests": prev, "total_requests": 100}, "checked_at": at(hours=1)}
    c = check(host(facts(licensing=counters_lic(now)), previous=previous), "failed_requests")
    assert c["status"] == status
    assert c["evidence"]["previous"]["failed_requests"] == prev


def test_failed_requests_skipped_without_previous_or_counters():
    assert check(host(facts(licensing=counters_lic(3))), "failed_requests")["status"] == SKIPPED
    assert check(host(facts()), "failed_requests")["status"] == SKIPPED  # runner without counters


@pytest.mark.parametrize("counters", [{"failed_requests": "many"}, {"failed_requests": None}, ["x"], "x",
                                      {"failed_requests": True}])
def test_hand_edited_previous_counters_are_skipped_not_a_traceback(counters):
    previous = {"counters": counters, "checked_at": at(hours=1)}
    c = check(host(facts(licensing=counters_lic(3)), previous=previous), "failed_requests")
    assert c["status"] == SKIPPED and "no counters" in c["reason"]


def test_previous_document_is_matched_by_host():
    prev_doc = {"checked_at": at(hours=1), "sites": [{"hosts": [{"host": "kms1", "counters": {"failed_requests": 1, "total_requests": 5}}]}]}
    doc = rules.evaluate([facts(licensing=counters_lic(2))], {"kms1": Thresholds()}, {}, NOW, prev_doc)
    c = check(doc["sites"][0]["hosts"][0], "failed_requests")
    assert c["status"] == WARNING and c["evidence"]["previous_checked_at"] == at(hours=1)


# ------------------------------------------------------------------ firewall and port

def test_firewall_rule_disabled_is_red():
    c = check(host(facts(firewall=[{**SPPSVC, "enabled": False}])), "firewall")
    assert c["status"] == CRITICAL and "disabled" in c["reason"]


def test_owned_rule_covers_custom_port():
    rule = {"name": "kms-alt", "enabled": True, "direction": "Inbound", "action": "Allow", "protocol": "TCP",
            "local_ports": ["1680-1700"]}
    f = facts(licensing=lic(port=1690), firewall=[{**SPPSVC, "enabled": False}, rule])
    d = host(f)
    assert check(d, "firewall")["status"] == OK and d["port"] == 1690


def test_port_closed_is_red():
    c = check(host(facts(probe_open=False)), "port")
    assert c["status"] == CRITICAL and c["evidence"]["error"] == "connection refused"


# ------------------------------------------------------------------ unreachable

def test_unreachable_host_is_unknown_never_green():
    f = {"host": "kms1", "site": "hq", "address": "127.0.0.5", "names": [], "error": "kms1: connection refused",
         "licensing": None, "probe": {"address": "127.0.0.5", "port": 1688, "open": False, "error": "refused"}}
    d = host(f)
    assert d["status"] == UNKNOWN  # even with the port closed: not reached is unknown
    assert check(d, "port")["status"] == CRITICAL
    assert check(d, "reachable")["reason"].endswith("connection refused")
    doc = rules.evaluate([f], {"kms1": Thresholds()}, {}, NOW)
    assert (doc["status"], doc["exit_code"]) == (UNKNOWN, 3)


def test_worst_order_is_max_state_alt():
    assert rules.worst([OK, UNKNOWN]) == UNKNOWN
    assert rules.worst([UNKNOWN, WARNING]) == WARNING
    assert rules.worst([WARNING, CRITICAL, UNKNOWN]) == CRITICAL
    assert rules.worst([SKIPPED]) == OK


# ------------------------------------------------------------------ SRV

def srv(*records, error=None, domain="corp.example"):
    return {"domain": domain, "resolver": "127.0.0.1:53", "rcode": "NOERROR", "error": error,
            "records": [{"priority": 0, "weight": 0, "port": p, "target": t, "addresses": a} for t, p, a in records]}


def test_srv_host_listed_by_name_or_address():
    th = Thresholds(domain="corp.example")
    assert check(host(facts(), th, srv(("kms1.corp.example", 1688, []))), "srv")["status"] == OK
    assert check(host(facts(), th, srv(("other.corp.example", 1688, ["127.0.0.5"]))), "srv")["status"] == OK
    assert check(host(facts(), th, srv(("kms1.corp.example", 1689, []))), "srv")["status"] == CRITICAL
    assert check(host(facts(), th, srv(("kms9.corp.example", 1688, ["10.0.0.9"]))), "srv")["status"] == WARNING
    assert check(host(facts(), th, srv()), "srv")["status"] == CRITICAL
    assert check(host(facts(), th, srv(error="DNS server 127.0.0.1:53 refused")), "srv")["status"] == UNKNOWN


def evaluate_site(s, *fs):
    ths = {f["host"]: Thresholds(domain="corp.example") for f in fs}
    doc = rules.evaluate(list(fs), ths, {("hq", "corp.example"): s}, NOW)
    return doc, doc["sites"][0]["checks"][0]


def test_site_srv_pointing_at_the_wrong_host_is_red():
    doc, c = evaluate_site(srv(("rogue.corp.example", 1688, ["10.9.9.9"])), facts())
    assert c["status"] == CRITICAL and "not a known KMS host" in c["reason"]
    assert c["evidence"]["records"][0]["target"] == "rogue.corp.example"
    assert doc["exit_code"] == 2


def test_site_srv_one_good_one_wrong_is_yellow():
    _, c = evaluate_site(srv(("kms1.corp.example", 1688, []), ("rogue.corp.example", 1688, [])), facts())
    assert c["status"] == WARNING


def test_site_srv_pointing_only_at_a_red_host_is_red():
    _, c = evaluate_site(srv(("kms1.corp.example", 1688, [])), facts(licensing=lic(status=0)))
    assert c["status"] == CRITICAL and "critical" in c["reason"]


# ------------------------------------------------------------------ settings and time parsing

@pytest.mark.parametrize("raw,msg", [
    ({"family": "desktop"}, "family"), ({"min_count": 51}, "min_count"), ({"idle_hours": 0}, "idle_hours"),
    ({"colour": 1}, "unknown key"), ({"port": 70000}, "port"), ("x", "mapping"),
    # a bad resolver used to reach the DNS worker thread as a ValueError / OverflowError
    ({"resolver": "10.0.0.1:dns"}, "resolver"), ({"resolver": "10.0.0.1:99999"}, "resolver"),
    ({"resolver": "[fd00::1]:x"}, "resolver"), ({"resolver": ":53"}, "resolver"),
])
def test_bad_settings_are_clear_errors(raw, msg):
    with pytest.raises(rules.ConfigError, match=msg):
        rules.thresholds_from_vars({"kmsdeploy_health": raw})


def test_settings_take_site_domain_and_resolver_var():
    th = rules.thresholds_from_vars({"site_domain": "Hq.Corp.Example.", "kmsdeploy_health_resolver": "10.0.0.1:5353"})
    assert (th.domain, th.resolver, th.min_count, th.idle_hours) == ("hq.corp.example", "10.0.0.1:5353", 25, 8.0)


@pytest.mark.parametrize("text,expected", [
    ("2024-05-01T09:30:00.1234567Z", dt.datetime(2024, 5, 1, 9, 30, 0, 123456, tzinfo=dt.timezone.utc)),
    ("2024-05-01T09:30:00Z", dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.timezone.utc)),
    ("2024-05-01T11:30:00+02:00", dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.timezone.utc)),
    ("\\/Date(1714555800000)\\/", dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.timezone.utc)),
    ("/Date(1714555800000)/", dt.datetime(2024, 5, 1, 9, 30, tzinfo=dt.timezone.utc)),
    ("yesterday", None),
])
def test_parse_time(text, expected):
    assert rules.parse_time(text) == expected


def test_site_srv_pointing_at_hosts_outside_limit_is_not_judged():
    ths = {"kms1": Thresholds(domain="corp.example")}
    s = srv(("kms1.corp.example", 1688, []), ("kms2.corp.example", 1688, []))
    outside = [{"host": "kms2", "address": "127.0.0.6", "names": ["kms2.corp.example"]}]
    doc = rules.evaluate([facts()], ths, {("hq", "corp.example"): s}, NOW, unchecked=outside)
    assert doc["sites"][0]["checks"][0]["status"] == OK
    only_outside = srv(("kms2.corp.example", 1688, []))
    doc = rules.evaluate([facts()], ths, {("hq", "corp.example"): only_outside}, NOW, unchecked=outside)
    assert doc["sites"][0]["checks"][0]["status"] == SKIPPED
