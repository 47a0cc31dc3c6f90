"""Host ranges and INI value typing, checked against Ansible's own functions on generated input.

ansible-core (the test extra) is the oracle: ``ansible.plugins.inventory.expand_hostname_range``
and the INI plugin's ``_parse_value``. Hypothesis generates range patterns and INI values
nobody wrote by hand; kmsdeploy must agree wherever Ansible gives an answer. The one
deliberate difference: where Ansible silently expands a range to no host at all
(``[5:1]``), kmsdeploy refuses it with a located error (docs/specs.md).
"""
from __future__ import annotations

import json
import string

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from kmsdeploy.spec.hostrange import RangeError, expand
from kmsdeploy.spec.inventory_ini import typed_value

ansible_inventory = pytest.importorskip("ansible.plugins.inventory", reason="ansible-core is in the test extra")
ansible_ini = pytest.importorskip("ansible.plugins.inventory.ini")

SETTINGS = settings(max_examples=400, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def ansible_expand(pattern: str) -> list[str] | None:
    """Ansible's expansion, or None when Ansible refuses the pattern."""
    try:
        if not ansible_inventory.detect_range(pattern):
            return [pattern]
        return list(ansible_inventory.expand_hostname_range(pattern))
    except Exception:  # AnsibleError, ValueError (stride 0): a refusal either way
        return None


class _Origin:
    """Stands in for the source-position tagger Ansible's parser sets up per file."""

    def tag(self, value):
        return value


def ansible_typed(text: str):
    module = ansible_ini.InventoryModule()
    module._origin = _Origin()
    return module._parse_value(text)


number = st.integers(0, 40).map(str) | st.integers(0, 40).map(lambda n: str(n).zfill(3))
letter = st.sampled_from(string.ascii_letters)
bound = number | letter | st.just("")
stem = st.text(alphabet=string.ascii_lowercase + "-.", max_size=4)


@st.composite
def range_patterns(draw) -> str:
    parts = [draw(stem)]
    for _ in range(draw(st.integers(1, 2))):
        body = f"{draw(bound)}:{draw(bound)}"
        if draw(st.booleans()):
            body += f":{draw(st.integers(0, 4))}"
        parts += [f"[{body}]", draw(stem)]
    return "".join(parts)


@SETTINGS
@given(range_patterns())
def test_host_ranges_expand_as_ansible_expands_them(pattern):
    theirs = ansible_expand(pattern)
    try:
        ours = expand(pattern)
    except RangeError as e:
        # refused: Ansible refuses too, or yields no host (the deliberate difference)
        assert theirs in (None, []), f"{pattern!r}: kmsdeploy refused ({e.message}) but Ansible gives {theirs}"
        assert 0 <= e.offset < len(pattern) and pattern[e.offset] == "["
        return
    assert ours == theirs, pattern


@pytest.mark.parametrize("pattern, hosts", [
    ("branch[01:03]", ["branch01", "branch02", "branch03"]),
    ("kms-[a:c]", ["kms-a", "kms-b", "kms-c"]),
    ("scomgw[1:5:2]", ["scomgw1", "scomgw3", "scomgw5"]),
    ("gw[1:2].site[08:09].corp", ["gw1.site08.corp", "gw1.site09.corp", "gw2.site08.corp", "gw2.site09.corp"]),
])
def test_the_issue_examples(pattern, hosts):
    assert expand(pattern) == hosts == ansible_expand(pattern)


@pytest.mark.parametrize("pattern, message", [
    ("b[01:x]", "both be numbers or both single letters"),
    ("b[1:5:0]", "the step must not be 0"),
    ("b[1:5", "not closed"),
    ("b[5:1]", "begin must not be after end"),
    ("b[01:100]", "same length"),
])
def test_bad_ranges_are_refused_with_a_reason(pattern, message):
    with pytest.raises(RangeError) as err:
        expand(pattern)
    assert message in err.value.message and pattern[err.value.offset] == "["


literal_bits = st.sampled_from([
    "1688", "0x1F", "1e3", "010", "-3", "1_000", "True", "False", "None", "true", "yes", "1j",
    "'", '"', "(", ")", "[", "]", "{", "}", ",", ":", " ", "b", "u", "\\", "#", "=", "...", "é",
])
ini_texts = st.lists(literal_bits, max_size=8).map("".join) | st.text(max_size=12)


@SETTINGS
@given(ini_texts)
def test_ini_values_are_typed_as_ansible_types_them(text):
    try:
        theirs = ansible_typed(text)
    except Exception:  # Ansible fails the whole inventory on this value: nothing to compare
        return
    ours = typed_value(text)
    # compared as the JSON both tools print (1 != 1.0 != true; a tuple and a list are both lists)
    assert json.dumps(ours, sort_keys=True, default=repr) == json.dumps(theirs, sort_keys=True, default=repr), text


# values as they reach typing (after the shell-like split of a host line, which strips one
# level of quotes: the INI text port="1688" arrives here as 1688)
@pytest.mark.parametrize("text, value", [
    ("1688", 1688), ('"1688"', "1688"), ("'1688'", "1688"), ("True", True), ("None", None),
    ("0x1F", 31), ("1e3", 1000.0), ("(1,2)", [1, 2]), ("true", "true"), ("yes", "yes"), ("010", "010"),
    ("[1, {'a': (2,)}]", [1, {"a": [2]}]),
])
def test_the_issue_typing_examples(text, value):
    assert typed_value(text) == value
    assert type(typed_value(text)) is type(value)
