"""YAML loading with positions: locations, and every kind of rejected input."""
from __future__ import annotations

import pytest

from kmsdeploy.model import Location
from kmsdeploy.spec.yamlpos import YDict, YList, load_yaml, locate, parse_yaml


def test_locations_of_keys_values_and_items():
    text = "a: 1\nb:\n  - x\n  - {c: 2}\n"
    data, diags = parse_yaml(text, "f.yml")
    assert diags == []
    assert isinstance(data, YDict) and isinstance(data["b"], YList)
    assert data.key_locs["a"] == Location("f.yml", 1, 1)
    assert data.value_locs["a"] == Location("f.yml", 1, 4)
    assert data["b"].item_locs == [Location("f.yml", 3, 5), Location("f.yml", 4, 5)]
    assert data["b"][1].value_locs["c"] == Location("f.yml", 4, 9)
    assert locate(data, ["b", 1, "c"]) == Location("f.yml", 4, 9)
    assert locate(data, ["b", 1, "c"], key=True) == Location("f.yml", 4, 6)
    # a path that goes beyond the data gives the deepest known location
    assert locate(data, ["b", 1, "zzz"]) == Location("f.yml", 4, 5)


def test_dates_stay_strings_and_plain_types():
    data, _ = parse_yaml("d: 2024-01-01\ni: 7\nf: 1.5\nb: true\nn: null\n", "f.yml")
    assert data == {"d": "2024-01-01", "i": 7, "f": 1.5, "b": True, "n": None}


def test_merge_keys_and_aliases():
    data, diags = parse_yaml("base: &b {x: 1, y: 2}\nc:\n  <<: *b\n  y: 3\nd: *b\n", "f.yml")
    assert diags == []
    assert data["c"] == {"x": 1, "y": 3}
    assert data["d"] == {"x": 1, "y": 2}


@pytest.mark.parametrize("text,line,col,needle", [
    ("a: 1\nb: 2\na: 3\n", 3, 1, "duplicate key 'a' (first defined at line 1"),
    ("a:\n\tb: 1\n", 2, 1, "tab character used for indentation"),
    ("a: [1, 2\n", 2, 1, "malformed YAML"),
    ("a: !!python/object/apply:os.system ['ls']\n", 1, 4, "unsupported YAML tag"),
    ("a: !secret |\n  abc\n", 1, 4, "unsupported YAML tag '!secret'"),
    ("a: !vault |\n  abc\n", 1, 4, "!vault value: not an Ansible Vault envelope"),
    ("a: !vault {x: 1}\n", 1, 4, "a !vault value must be a string"),
    ("a: !!binary aGVsbG8=\n", 1, 4, "unsupported YAML tag"),
    ("a: &a [1, *a]\n", 1, 4, "recursive alias"),
    ("", 1, 1, "file is empty"),
    ("# only a comment\n", 1, 1, "file is empty"),
    ("a: 1\n---\nb: 2\n", 2, 1, "more than one"),
    ("a: !!int abc\n", 1, 4, "is not valid for tag"),
    ("? [a]\n: 1\n", 1, 3, "mapping keys must be plain scalars"),
])
def test_rejected_with_location(text, line, col, needle):
    data, diags = parse_yaml(text, "f.yml")
    assert data is None
    assert len(diags) >= 1
    d = diags[0]
    assert (d.file, d.line, d.col) == ("f.yml", line, col), str(d)
    assert needle in d.message


def test_billion_laughs_is_capped():
    lines = ["a: &a [x,x,x,x,x,x,x,x,x,x]"]
    prev = "a"
    for name in "bcdefghi":
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 10) + "]")
        prev = name
    data, diags = parse_yaml("\n".join(lines) + "\n", "lol.yml")
    assert data is None
    assert "alias expansion limit" in diags[0].message


def test_root_type_is_checked():
    data, diags = parse_yaml("a: 1\n", "p.yml", expect=list)
    assert data is None
    assert diags[0].message == "the document must be a list, not a mapping"
    assert (diags[0].line, diags[0].col) == (1, 1)


def test_json_with_tabs_is_fine():
    data, diags = parse_yaml('{\n\t"a": 1\n}\n', "v.json", json_file=True)
    assert diags == [] and data == {"a": 1}


def test_unreadable_file(tmp_path):
    data, raw, diags = load_yaml(str(tmp_path / "missing.yml"))
    assert data is None and raw is None
    assert "cannot read file" in diags[0].message and diags[0].line == 1


def test_invalid_utf8_and_nul(tmp_path):
    p = tmp_path / "x.yml"
    p.write_bytes(b"a: \xff\n")
    assert "not valid UTF-8" in load_yaml(str(p))[2][0].message
    p.write_bytes(b"a: 1\nb: \x00\n")
    d = load_yaml(str(p))[2][0]
    assert "NUL" in d.message and d.line == 2
