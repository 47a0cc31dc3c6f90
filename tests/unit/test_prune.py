"""Pure prune selection (kmsdeploy.planner.prune): what may be deleted as 'no longer declared'."""
from kmsdeploy.model import Action, Change, Location, Play, Ref, Resource
from kmsdeploy.planner.prune import (PRUNE_REASON, over_limit, prune_limit, prune_resources,
                                     prune_resources_from_plan, prune_scopes)


def ref(name, kind="dns_record", target="dns1"):
    return Ref(kind, target, name)


def declared(name, play="p", kind="dns_record"):
    return Resource(ref(name, kind), {"name": name}, location=Location("pb.yml", 1, 1), play=play)


def test_scopes_follow_pruning_plays_and_kinds():
    plays = [Play("p", "all", file="pb.yml", prune=True), Play("q", "all", file="pb.yml"),
             Play("k", "all", file="pb.yml", prune=("firewall_rule",))]
    res = [declared("a"), declared("b", play="q"), declared("c", play="k"), declared("r", play="k", kind="firewall_rule")]
    assert prune_scopes(res, plays) == {"dns1": frozenset({"dns_record", "firewall_rule"})}
    assert prune_scopes(res[1:3], plays) == {}


def test_only_our_undeclared_objects_are_pruned():
    found = {ref("a"): {"name": "a", "_owned": True}, ref("gone"): {"name": "gone", "_owned": True, "_marker": ["x"]},
             ref("theirs"): {"name": "theirs", "_owned": "other:bob"}, ref("unowned"): {"name": "u", "_owned": False},
             ref("nft", "firewall_rule"): {"name": "nft", "_owned": True}}
    out = prune_resources([declared("a")], found, {"dns1": frozenset({"dns_record"})})
    assert [(r.ref.name, r.state, dict(r.desired)) for r in out] == [("gone", "absent", {"name": "gone"})]
    assert prune_resources([declared("a")], found, {}) == []


def test_limit_is_the_smallest_and_counts_prunes_only():
    assert prune_limit([Play("p", "all", max_prune=5), Play("q", "all")], 2) == 2
    assert prune_limit([Play("p", "all", max_prune=1)], None) == 1
    assert prune_limit([Play("p", "all")], None) is None
    prunes = [Change(ref(str(i)), Action.DELETE, before={"name": str(i)}, reason=PRUNE_REASON) for i in range(3)]
    other = [Change(ref("x"), Action.DELETE, before={"name": "x"})]
    assert over_limit(prunes + other, 3) is None
    assert "prune 3 object(s)" in over_limit(prunes + other, 2)
    assert over_limit(prunes, None) is None
    assert [r.ref.name for r in prune_resources_from_plan(prunes + other)] == ["0", "1", "2"]


def test_a_pruning_play_prunes_only_in_its_own_zones():
    """Play p prunes zone a.example; play q (upsert only) manages b.example on the same server."""
    from kmsdeploy.planner.prune import prune_areas

    plays = [Play("p", "all", file="pb.yml", prune=True), Play("q", "all", file="pb.yml")]

    def rec(name, zone, play):
        return Resource(Ref("dns_record", "dns1", f"{name}.{zone}./SRV"), {"zone": f"{zone}.", "name": name},
                        location=Location("pb.yml", 1, 1), play=play)
    declared = [rec("x", "a.example", "p"), rec("y", "b.example", "q")]
    found = {Ref("dns_record", "dns1", "old.a.example./SRV"): {"zone": "a.example.", "_owned": True},
             Ref("dns_record", "dns1", "old.b.example./SRV"): {"zone": "b.example.", "_owned": True}}
    areas = prune_areas(declared, plays)
    assert areas == {("dns1", "dns_record"): frozenset({"a.example."})}
    out = prune_resources(declared, found, prune_scopes(declared, plays), areas)
    assert [r.ref.name for r in out] == ["old.a.example./SRV"]
