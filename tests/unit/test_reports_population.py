"""The simulated population: deterministic, realistic timing (A.5), counts from its own events."""
from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone

from kmsdeploy.reports import codes
from kmsdeploy.reports.parse import parse_12290
from kmsdeploy.reports.population import LAB_PRODUCTS, Population, PopulationSpec

END = datetime(2025, 3, 1, tzinfo=timezone.utc)
SITES = {"hq": ["hq-kms01", "hq-kms02"], "branch": ["br-kms01"]}


def run(**kw):
    pop = Population(PopulationSpec(sites=SITES, end=END, **kw))
    recs = list(pop.records())
    return pop, recs


def test_deterministic_and_seeded():
    _, a = run(clients_per_site=60, days=20, seed=3)
    _, b = run(clients_per_site=60, days=20, seed=3)
    _, c = run(clients_per_site=60, days=20, seed=4)
    assert a == b and a != c


def test_record_ids_increase_per_host_in_time_order():
    _, recs = run(clients_per_site=80, days=30)
    last: dict[str, tuple[int, datetime]] = {}
    for r in recs:
        prev = last.get(r.host, (0, END - timedelta(days=31)))
        assert r.record_id == prev[0] + 1 and r.time >= prev[1]
        last[r.host] = (r.record_id, r.time)
        assert END - timedelta(days=30) <= r.time <= END


def test_population_shape():
    pop, recs = run(clients_per_site=400, days=60, seed=11)
    acts = [parse_12290(r.as_event()) for r in recs]
    assert all(a.shape == "va2ops" for a in acts)
    clients = {a.cmid for a in acts}
    assert 0.95 * 800 <= len(clients) <= 800  # a few joiners appear only after the end
    by_cmid = defaultdict(list)
    for a in acts:
        by_cmid[a.cmid].append(a)
    vms = sum(1 for evs in by_cmid.values() if evs[0].is_vm) / len(by_cmid)
    assert 0.25 < vms < 0.45
    families = {a.min_count for a in acts}
    assert families == {5, 25}
    assert {p.activation_id for p in LAB_PRODUCTS} >= {a.activation_id for a in acts}
    failures = [a for a in acts if a.hresult]
    assert failures and {a.hresult for a in failures} <= {0xC004F06C, 0xC004F042}
    # renewals every ~7 days, retries every ~2 hours
    gaps_ok, gaps_retry = [], []
    for evs in by_cmid.values():
        for x, y in zip(evs, evs[1:]):
            (gaps_retry if x.hresult else gaps_ok).append((y.logged_at - x.logged_at).total_seconds())
    assert all(7 * 86400 <= g <= 7 * 86400 + 1800 for g in gaps_ok)
    assert all(2 * 3600 <= g <= 2 * 3600 + 120 for g in gaps_retry)
    # roaming clients: some CMIDs seen by both hq hosts
    hosts_of = defaultdict(set)
    for r in recs:
        hosts_of[r.properties[3]].add(r.host)
    assert any(len(h) > 1 for h in hosts_of.values())
    # silent clients: some stopped renewing long before the end
    assert any(END - evs[-1].logged_at > timedelta(days=14) for evs in by_cmid.values())


def test_current_counts_match_events():
    pop, recs = run(clients_per_site=30, days=40, seed=5)
    counts = pop.current_counts()
    seen = defaultdict(set)
    for r in recs:
        if r.time >= END - codes.COUNT_WINDOW:
            seen[r.host].add(r.properties[3])
    assert counts == {h: min(50, len(seen[h])) for h in counts}
    big, _ = run(clients_per_site=200, days=10)
    assert set(big.current_counts().values()) == {50}


def test_bad_spec():
    import pytest

    with pytest.raises(ValueError):
        Population(PopulationSpec(sites={"x": []}, end=END))
