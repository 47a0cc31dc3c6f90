"""Ansible Vault (kmsdeploy/spec/vault.py) against the real thing: ``ansible-vault`` from
ansible-core (the test extra) encrypts and we decrypt, we encrypt and it decrypts.

ansible-vault runs with ANSIBLE_CONFIG pointing at an empty file and HOME/ANSIBLE_LOCAL_TEMP
in the test's tmp dir, so no user or machine configuration leaks in.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kmsdeploy.errors import SpecError
from kmsdeploy.model import Secret, SecretRef
from kmsdeploy.spec import vault
from kmsdeploy.spec.inventory import load_inventory
from kmsdeploy.spec.secrets import resolve
from kmsdeploy.spec.vault import VaultError, VaultSecrets, decrypt, encrypt, is_vault, parse
from kmsdeploy.spec.yamlpos import parse_yaml

PASSWORD = "correct horse battery staple"


@pytest.fixture
def ansible(tmp_path):
    """Run an ansible-vault command in a clean environment; returns stdout."""
    exe = shutil.which("ansible-vault")
    assert exe, "ansible-vault not found: install the test extra (ansible-core)"
    (tmp_path / "ansible.cfg").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_CONFIG=str(tmp_path / "ansible.cfg"), HOME=str(tmp_path),
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"), ANSIBLE_NOCOLOR="1")

    def run(*args: str, input: str | None = None) -> str:
        done = subprocess.run([exe, *args], capture_output=True, text=True, env=env, input=input, timeout=120,
                              cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return done.stdout

    return run


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


def envelope_of(encrypt_string_output: str) -> str:
    """The envelope inside ``name: !vault |`` output, indentation removed."""
    body = encrypt_string_output.split("|", 1)[1]
    return "\n".join(line.strip() for line in body.strip().splitlines()) + "\n"


# ---------------------------------------------------------------------------- Ansible -> us

def test_encrypt_string_1_1_with_a_password_file(ansible, tmp_path):
    pw = write(tmp_path / "pw", PASSWORD + "\n")
    blob = envelope_of(ansible("encrypt_string", "--vault-password-file", str(pw), "s3cr3t value ü", "--name", "x"))
    assert blob.startswith("$ANSIBLE_VAULT;1.1;AES256\n")
    assert decrypt(blob, VaultSecrets.from_options([str(pw)], environ={})) == "s3cr3t value ü".encode()


def test_vault_ids_1_2_several_ids_and_a_script(ansible, tmp_path):
    prod = write(tmp_path / "prod.pw", "prod-password\n")
    dev_script = write(tmp_path / "dev.sh", "#!/bin/sh\necho dev-password\n", 0o700)
    blob_prod = envelope_of(ansible("encrypt_string", "--vault-id", f"prod@{prod}", "for prod"))
    blob_dev = envelope_of(ansible("encrypt_string", "--vault-id", f"dev@{dev_script}", "--encrypt-vault-id", "dev",
                                   "for dev"))
    assert blob_prod.startswith("$ANSIBLE_VAULT;1.2;AES256;prod\n")
    assert blob_dev.startswith("$ANSIBLE_VAULT;1.2;AES256;dev\n")
    secrets = VaultSecrets.from_options(vault_ids=[f"dev@{dev_script}", f"prod@{prod}"], environ={})
    assert decrypt(blob_prod, secrets) == b"for prod"
    assert decrypt(blob_dev, secrets) == b"for dev"
    # a label that does not match is still tried (Ansible's default), unless ANSIBLE_VAULT_ID_MATCH is set
    wrong_label = VaultSecrets.from_options(vault_ids=[f"other@{prod}"], environ={})
    assert decrypt(blob_prod, wrong_label) == b"for prod"
    strict = VaultSecrets.from_options(vault_ids=[f"other@{prod}"], environ={"ANSIBLE_VAULT_ID_MATCH": "true"})
    with pytest.raises(VaultError, match="no vault password has the vault id 'prod'"):
        decrypt(blob_prod, strict)


def test_client_script_gets_its_vault_id(ansible, tmp_path):
    client = write(tmp_path / "pass-client.py",
                   "#!/usr/bin/env python3\nimport sys\nassert sys.argv[1] == '--vault-id'\n"
                   "print({'prod': 'p-pass', 'dev': 'd-pass'}[sys.argv[2]])\n", 0o700)
    blob = envelope_of(ansible("encrypt_string", "--vault-id", f"prod@{client}", "client secret"))
    secrets = VaultSecrets.from_options(vault_ids=[f"dev@{client}", f"prod@{client}"], environ={})
    assert decrypt(blob, secrets) == b"client secret"


def test_whole_file_from_ansible_vault_encrypt(ansible, tmp_path):
    pw = write(tmp_path / "pw", PASSWORD)
    src = tmp_path / "vars.yml"
    src.write_text("vault_winrm_password: w1nrm-pass\nkms_port: 1688\n")
    ansible("encrypt", "--vault-password-file", str(pw), str(src))
    raw = src.read_bytes()
    assert is_vault(raw) and not is_vault(b"# $ANSIBLE_VAULT\n")
    assert decrypt(raw, VaultSecrets.from_options([str(pw)], environ={})) == b"vault_winrm_password: w1nrm-pass\nkms_port: 1688\n"


# ---------------------------------------------------------------------------- us -> Ansible

@pytest.mark.parametrize("vault_id", [None, "default", "lab"])
def test_ansible_reads_what_we_write(ansible, tmp_path, vault_id):
    pw = write(tmp_path / "pw", PASSWORD + "\n")
    blob = encrypt("line 1\nline 2 é\n", PASSWORD, vault_id=vault_id)
    assert all(len(line) <= 80 for line in blob.splitlines())
    expect_header = f"$ANSIBLE_VAULT;1.2;AES256;{vault_id}" if vault_id == "lab" else "$ANSIBLE_VAULT;1.1;AES256"
    assert blob.splitlines()[0] == expect_header
    f = write(tmp_path / "enc.yml", blob)
    source = f"{vault_id}@{pw}" if vault_id else str(pw)
    flag = "--vault-id" if vault_id else "--vault-password-file"
    assert ansible("view", flag, source, str(f)) == "line 1\nline 2 é\n"
    ansible("decrypt", flag, source, str(f))
    assert f.read_text() == "line 1\nline 2 é\n"


# ---------------------------------------------------------------------------- properties

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plain=st.binary(max_size=300), password=st.text(min_size=1, max_size=40).filter(lambda p: p.strip()),
       vault_id=st.one_of(st.none(), st.from_regex(r"[a-z][a-z0-9_-]{0,15}", fullmatch=True)))
def test_round_trip(plain, password, vault_id):
    blob = encrypt(plain, password, vault_id=vault_id)
    assert decrypt(blob, [(vault_id or "default", password)]) == plain


BLOB = encrypt(b"the original plaintext", PASSWORD, salt=b"\x01" * 32)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_random_corruption_never_gives_a_traceback_or_a_wrong_plaintext(data):
    raw = bytearray(BLOB.encode())
    how = data.draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
    i = data.draw(st.integers(0, len(raw) - 1))
    if how == "flip":
        raw[i] = data.draw(st.integers(0, 255).filter(lambda b: b != raw[i]))
    elif how == "truncate":
        del raw[i:]
    elif how == "insert":
        raw.insert(i, data.draw(st.integers(0, 255)))
    else:
        del raw[i]
    try:
        got = decrypt(bytes(raw), [("default", PASSWORD)])
    except VaultError as e:
        assert PASSWORD not in str(e) and "original" not in str(e)
        return
    # hex is case-insensitive and whitespace at line ends is ignored: same data, same answer
    assert got == b"the original plaintext"


# ---------------------------------------------------------------------------- errors

def test_wrong_password_is_one_clear_error_without_the_password():
    with pytest.raises(VaultError) as e:
        decrypt(BLOB, [("default", "not-the-password"), ("prod", "another-one")])
    assert str(e.value) == ("wrong vault password or corrupted data: none of the 2 vault password(s) given "
                            "(vault ids: default, prod) decrypts it")
    assert "not-the-password" not in str(e.value)


@pytest.mark.parametrize("text, message", [
    ("hello", "not an Ansible Vault envelope"),
    ("$ANSIBLE_VAULT;1.1\n00\n", "malformed vault header"),
    ("$ANSIBLE_VAULT;2.0;AES256\n00\n", "unsupported vault format version '2.0'"),
    ("$ANSIBLE_VAULT;1.1;AES128\n00\n", "unsupported vault cipher 'AES128'"),
    ("$ANSIBLE_VAULT;1.1;AES256\n", "nothing after the header"),
    ("$ANSIBLE_VAULT;1.1;AES256\nzz\n", "payload is not valid hexadecimal"),
    ("$ANSIBLE_VAULT;1.1;AES256\n616263\n", "payload is truncated"),
    (BLOB[:200], "corrupted vault data"),
])
def test_corrupted_blobs(text, message):
    with pytest.raises(VaultError, match=message):
        decrypt(text, [("default", PASSWORD)])


def test_password_sources_errors(tmp_path):
    def first_error(**kw):
        with pytest.raises(VaultError) as e:
            VaultSecrets.from_options(environ={}, **kw).secrets()
        return str(e.value)

    assert first_error(password_files=[str(tmp_path / "missing")]) == f"vault password file {tmp_path / 'missing'}: not found"
    write(tmp_path / "empty", "\n \n")
    assert "is empty" in first_error(password_files=[str(tmp_path / "empty")])
    write(tmp_path / "fails.sh", "#!/bin/sh\necho leaked-password\nexit 1\n", 0o700)
    msg = first_error(password_files=[str(tmp_path / "fails.sh")])
    assert msg == f"vault password script {tmp_path / 'fails.sh'}: exited with status 1"
    assert "prompting for a password is not supported" in first_error(vault_ids=["prod@prompt"])
    hang = write(tmp_path / "hang.sh", "#!/bin/sh\nsleep 30\n", 0o700)
    with pytest.raises(VaultError, match=r"no answer within 0.5 s \(killed\)"):
        VaultSecrets([("default", str(hang))], timeout=0.5).secrets()


def test_environment_sources_in_ansibles_order(tmp_path):
    a, b, c = (write(tmp_path / n, n + "-pw") for n in ("a", "b", "c"))
    s = VaultSecrets.from_options([str(c)], [f"cli@{b}"], environ={
        "ANSIBLE_VAULT_IDENTITY_LIST": f"envlist@{a}", "ANSIBLE_VAULT_PASSWORD_FILE": str(a)})
    assert s.secrets() == [("envlist", b"a-pw"), ("cli", b"b-pw"), ("default", b"c-pw"), ("default", b"a-pw")]
    assert "a-pw" not in repr(s)
    assert not VaultSecrets.from_options(environ={})


# ---------------------------------------------------------------------------- YAML and inventory

def test_vault_tag_is_a_secret_ref_resolved_with_the_password():
    data, diags = parse_yaml("pw: !vault |\n  " + BLOB.replace("\n", "\n  "), "f.yml")
    assert not diags
    ref = data["pw"]
    assert isinstance(ref, SecretRef) and ref.source == "vault" and str(ref) == "!vault" and ref.name == "f.yml:1:5"
    assert PASSWORD not in repr(ref) and "ANSIBLE_VAULT" not in repr(ref)
    got = resolve(ref, VaultSecrets.from_passwords([(None, PASSWORD)]))
    assert isinstance(got, Secret) and got.reveal() == "the original plaintext" and str(got) == "(sensitive)"


def test_encrypted_group_vars_file(tmp_path):
    (tmp_path / "hosts.yml").write_text("all:\n  children:\n    kms_hosts:\n      hosts:\n        k1: {}\n")
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "kms_hosts.yml").write_text(encrypt(
        "ansible_user: svc\nansible_port: 5986\nvault_pw: hunter2-but-longer\nkeys: [a, b]\n", PASSWORD))
    hosts = load_inventory(str(tmp_path), vault=VaultSecrets.from_passwords([(None, PASSWORD)]))
    v = hosts["k1"].vars
    assert v["ansible_user"] == "svc" and v["ansible_port"] == 5986  # plain settings stay text
    assert isinstance(v["vault_pw"], Secret) and v["vault_pw"].reveal() == "hunter2-but-longer"
    assert all(isinstance(k, Secret) for k in v["keys"])
    with pytest.raises(SpecError) as e:
        load_inventory(str(tmp_path), vault=VaultSecrets.from_passwords([(None, "wrong")]))
    assert str(e.value).startswith(f"{tmp_path / 'group_vars' / 'kms_hosts.yml'}:1:1: vault-encrypted file: "
                                   "wrong vault password or corrupted data")
    with pytest.raises(SpecError, match="no vault password was given"):
        load_inventory(str(tmp_path))


def test_parse_reports_the_vault_id():
    assert parse(encrypt("x", "p", vault_id="prod")).vault_id == "prod"
    assert parse(encrypt("x", "p")).vault_id is None
    assert vault.split_vault_id("a@b@c") == ("a", "b@c") and vault.split_vault_id("file") == ("default", "file")


# ---------------------------------------------------------------------------- command line

def vaulted_inventory(tmp_path: Path) -> Path:
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text("all:\n  children:\n    kms_hosts:\n      hosts:\n        k1: {}\n")
    (inv / "group_vars" / "kms_hosts.yml").write_text(encrypt(
        "ansible_connection: winrm\nansible_user: svc\nvault_pw: the-winrm-password-1\n", PASSWORD))
    return inv


@pytest.mark.parametrize("how", ["flag", "vault-id", "env-file", "env-list"])
def test_every_way_to_give_the_password(tmp_path, capsys, monkeypatch, how):
    from kmsdeploy.cli import main

    inv = vaulted_inventory(tmp_path)
    pw = write(tmp_path / "pw", PASSWORD + "\n")
    book = tmp_path / "book.yml"
    book.write_text("- name: p\n  hosts: kms_hosts\n  resources: []\n")
    for var in ("ANSIBLE_VAULT_PASSWORD_FILE", "ANSIBLE_VAULT_IDENTITY_LIST", "ANSIBLE_VAULT_ID_MATCH"):
        monkeypatch.delenv(var, raising=False)
    extra = {"flag": ["--vault-password-file", str(pw)], "vault-id": ["--vault-id", f"x@{pw}"]}.get(how, [])
    if how == "env-file":
        monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(pw))
    if how == "env-list":
        monkeypatch.setenv("ANSIBLE_VAULT_IDENTITY_LIST", f"x@{pw}")
    assert main(["validate", "-i", str(inv), str(book), *extra]) == 0
    out = capsys.readouterr()
    assert "the-winrm-password-1" not in out.out + out.err


def test_health_and_report_collect_take_the_flags(tmp_path, capsys, monkeypatch):
    from kmsdeploy.cli import main

    monkeypatch.delenv("ANSIBLE_VAULT_PASSWORD_FILE", raising=False)
    monkeypatch.delenv("ANSIBLE_VAULT_IDENTITY_LIST", raising=False)
    inv = vaulted_inventory(tmp_path)
    missing = tmp_path / "no-such-file"
    assert main(["health", "-i", str(inv), "--vault-password-file", str(missing)]) == 3
    assert f"vault password file {missing}: not found" in capsys.readouterr().err
    assert main(["report", "collect", "-i", str(inv), "--store", str(tmp_path / "s.db"),
                 "--vault-password-file", str(missing)]) == 1
    err = capsys.readouterr().err
    assert f"vault password file {missing}: not found" in err and "Traceback" not in err
