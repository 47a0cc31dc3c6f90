"""Secret references: building, resolving, never leaking."""
from __future__ import annotations

import pytest

from kmsdeploy.errors import SecretError
from kmsdeploy.model import Secret, SecretRef
from kmsdeploy.spec.secrets import is_secret_mapping, resolve, to_ref


def test_is_secret_mapping():
    assert is_secret_mapping({"env": "X"})
    assert is_secret_mapping({"file": "k.txt"})
    assert not is_secret_mapping({"env": "X", "file": "y"})
    assert not is_secret_mapping({"env": 3})
    assert not is_secret_mapping("plain")


def test_file_paths_are_made_absolute(tmp_path):
    decl = tmp_path / "inv" / "group_vars" / "all.yml"
    ref = to_ref({"file": "../keys/tsig.key"}, str(decl))
    assert ref == SecretRef("file", str(tmp_path / "inv" / "keys" / "tsig.key"))
    assert to_ref({"file": "/abs/x"}, str(decl)).name == "/abs/x"
    assert to_ref({"env": "NAME"}, str(decl)) == SecretRef("env", "NAME")


def test_resolve_env(monkeypatch):
    monkeypatch.setenv("KMSDEPLOY_T_SECRET", "s3cr3t-value")
    s = resolve(SecretRef("env", "KMSDEPLOY_T_SECRET"))
    assert isinstance(s, Secret) and s.reveal() == "s3cr3t-value"
    assert "s3cr3t" not in repr(s) and "s3cr3t" not in str(s)
    assert s.origin == "env:KMSDEPLOY_T_SECRET"


def test_resolve_env_missing_and_empty(monkeypatch):
    monkeypatch.delenv("KMSDEPLOY_T_MISSING", raising=False)
    with pytest.raises(SecretError, match="env:KMSDEPLOY_T_MISSING: environment variable KMSDEPLOY_T_MISSING is not set"):
        resolve(SecretRef("env", "KMSDEPLOY_T_MISSING"))
    monkeypatch.setenv("KMSDEPLOY_T_EMPTY", "")
    with pytest.raises(SecretError, match="is empty"):
        resolve(SecretRef("env", "KMSDEPLOY_T_EMPTY"))


def test_resolve_file_strips_one_newline(tmp_path):
    p = tmp_path / "k"
    p.write_text("line1\n\n")
    assert resolve(SecretRef("file", str(p))).reveal() == "line1\n"
    p.write_bytes(b"key\r\n")
    assert resolve(SecretRef("file", str(p))).reveal() == "key"


def test_resolve_file_errors_name_the_ref_not_the_value(tmp_path):
    with pytest.raises(SecretError) as e:
        resolve(SecretRef("file", str(tmp_path / "nope")))
    assert str(tmp_path / "nope") in str(e.value) and "cannot read" in str(e.value)
    p = tmp_path / "empty"
    p.write_text("\n")
    with pytest.raises(SecretError, match="file is empty"):
        resolve(SecretRef("file", str(p)))
    with pytest.raises(SecretError, match="directory"):
        resolve(SecretRef("file", str(tmp_path)))
