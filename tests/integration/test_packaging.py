"""kmsdeploy as users install it: a wheel built from the sources, installed in a fresh venv OUTSIDE
the checkout, and ``pipx install``.

The wheel is built from a copy of the sources (no build state in the checkout), installed with
its dependencies into a venv under pytest's temporary directory, and the installed
``kmsdeploy`` script is run from another temporary directory with copies of the example
playbooks, without PYTHONPATH, so nothing can be read from the checkout. It then runs the
README's main job against ``kmsdeploy lab up`` started from that install: the lab's daemon, the
PowerShell runner and the schemas all come out of the wheel.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import kmsdeploy

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").lstrip("gw") or 0)
#: this worker's own loopback block (block 78: no other test uses it)
NET = f"127.{180 + WORKER % 70}.78"
#: the interpreter scripts/setup builds venvs from (Debian's), else the one running the tests
BASE_PYTHON = os.environ.get("KMSDEPLOY_PYTHON") or ("/usr/bin/python3" if Path("/usr/bin/python3").exists()
                                                     else sys.executable)


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything that could point Python at the checkout."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME") and not k.startswith("KMSDEPLOY_")}
    env.update(extra)
    return env


def run(argv, *, cwd: Path, timeout: int = 600, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env or clean_env(), capture_output=True,
                          text=True, timeout=timeout)


def source_copy(dest: Path) -> Path:
    """The files git tracks (the schemas symlink kept as a symlink), as a fresh source tree."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        src, dst = ROOT / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        elif src.is_file():  # a file deleted in the worktree but not yet in git
            shutil.copy2(src, dst)
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = source_copy(tmp_path_factory.mktemp("src"))
    out = tmp_path_factory.mktemp("dist")
    built = run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", out, src], cwd=out)
    assert built.returncode == 0, built.stdout + built.stderr
    [whl] = out.glob("kmsdeploy-*.whl")
    return whl


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh venv (outside the checkout) with the wheel and its dependencies; returns its bin/."""
    venv = tmp_path_factory.mktemp("venv") / "venv"
    made = run([BASE_PYTHON, "-m", "venv", venv], cwd=venv.parent)
    assert made.returncode == 0, made.stderr
    pip = run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check", wheel],
              cwd=venv.parent)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    return venv / "bin"


def test_wheel_holds_every_file_read_at_run_time(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    # the oracle is the source tree itself: every schema and every non-Python file of the package
    schemas = {"kmsdeploy/schemas/" + p.relative_to(ROOT / "schemas").as_posix()
               for p in (ROOT / "schemas").rglob("*") if p.is_file()}
    data = {p.relative_to(ROOT).as_posix() for p in (ROOT / "kmsdeploy").rglob("*")
            if p.is_file() and p.suffix not in (".py", ".pyc") and "schemas" not in p.relative_to(ROOT).parts}
    assert "kmsdeploy/schemas/runner-payload.json" in schemas and "kmsdeploy/providers/windows/runner.ps1" in data
    assert schemas <= names, sorted(schemas - names)
    assert data <= names, sorted(data - names)
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "kmsdeploy").rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    # no test code and no checkout clutter in what users install
    assert not any(n.startswith(("tests/", "scripts/", "bench/")) for n in names)


# the example estate's group_vars/kms_hosts/vault.yml is Ansible Vault with a public test password
EXAMPLE_VAULT = ("--vault-password-file", "playbooks/inventory/.vault-pass-example")


def test_installed_wheel_validates_and_runs_the_main_job_on_the_lab(installed, tmp_path):
    work = tmp_path / "work"
    shutil.copytree(ROOT / "playbooks", work / "playbooks")
    kd = installed / "kmsdeploy"

    where = run([installed / "python", "-c", "import kmsdeploy; print(kmsdeploy.__file__)"], cwd=work)
    assert Path(where.stdout.strip()).is_relative_to(installed.parent), where.stdout + where.stderr

    # one version: kmsdeploy/__init__.py, the wheel's metadata and --version agree
    meta = run([installed / "python", "-c", "import importlib.metadata as m; print(m.version('kmsdeploy'))"], cwd=work)
    assert meta.stdout.strip() == kmsdeploy.__version__
    got = run([kd, "--version"], cwd=work)
    assert got.returncode == 0 and got.stdout.strip() == f"kmsdeploy {kmsdeploy.__version__}", got.stdout + got.stderr

    examples = sorted(str(p.relative_to(work)) for p in (work / "playbooks").glob("*.yml"))
    assert len(examples) >= 5
    for playbook in examples:  # one by one: they are separate examples (two of them both manage hq-kms01's SPPSVC-In-TCP rule)
        got = run([kd, "validate", "-i", "playbooks/inventory/hosts.yml", *EXAMPLE_VAULT, playbook], cwd=work)
        assert got.returncode == 0 and got.stdout.startswith("OK:"), playbook + got.stdout + got.stderr
    bad = work / "bad.yml"
    bad.write_text("- name: x\n  hosts: all\n  resources:\n    - kind: no_such_kind\n")
    got = run([kd, "validate", bad.name], cwd=work)
    assert got.returncode == 1 and got.stderr.startswith(f"{bad}:4:13: unknown kind") and "Traceback" not in got.stderr, got.stderr

    lab = work / "lab"
    try:
        got = run([kd, "lab", "up", "--state-dir", lab, "--net", NET, "--clients", "0"], cwd=work, timeout=180)
        assert got.returncode == 0, got.stdout + got.stderr
        state = json.loads((lab / "lab.json").read_text())
        # the lab's WinRM daemon runs from the installed package, not from the checkout
        cmdline = Path(f"/proc/{state['windows']['pid']}/cmdline").read_bytes().split(b"\0")
        assert cmdline[0].decode().startswith(str(installed)), cmdline
        inv, site = lab / "inventory.yml", "playbooks/lab/site.yml"
        got = run([kd, "validate", "-i", inv, site], cwd=work)
        assert got.returncode == 0, got.stdout + got.stderr
        got = run([kd, "plan", "-i", inv, site, "--out", "plan.json", "--detailed-exitcode"], cwd=work, timeout=300)
        assert got.returncode == 2, got.stdout + got.stderr  # changes pending: read through runner.ps1 over WinRM
        got = run([kd, "apply", "plan.json"], cwd=work, timeout=300)
        assert got.returncode == 0, got.stdout + got.stderr
        got = run([kd, "plan", "-i", inv, site, "--detailed-exitcode"], cwd=work, timeout=300)
        assert got.returncode == 0 and "No changes" in got.stdout, got.stdout + got.stderr
        # independent client: BIND answers the SRV set the apply wrote
        dig = subprocess.run(["dig", "+noall", "+answer", "-p", str(state["bind"]["port"]),
                              "@" + state["bind"]["address"], "_vlmcs._tcp.lab.example", "SRV"],
                             capture_output=True, text=True, timeout=20, check=True)
        assert len(dig.stdout.splitlines()) == 3, dig.stdout
    finally:
        down = run([kd, "lab", "down", "--state-dir", lab], cwd=work, timeout=120)
    assert down.returncode == 0, down.stdout + down.stderr
    got = run([kd, "lab", "status", "--state-dir", lab], cwd=work)
    assert got.returncode == 1 and json.loads(got.stdout)["running"] is False


@pytest.mark.skipif(shutil.which("pipx") is None, reason="pipx is not installed (scripts/setup installs it)")
def test_pipx_install_from_the_source_tree(tmp_path):
    src = source_copy(tmp_path / "src")
    env = clean_env(PIPX_HOME=str(tmp_path / "pipx"), PIPX_BIN_DIR=str(tmp_path / "bin"),
                    PIPX_DEFAULT_PYTHON=BASE_PYTHON)
    got = run(["pipx", "install", src], cwd=tmp_path, env=env)
    assert got.returncode == 0, got.stdout + got.stderr
    kd = tmp_path / "bin" / "kmsdeploy"
    got = run([kd, "--version"], cwd=tmp_path, env=env)
    assert got.stdout.strip() == f"kmsdeploy {kmsdeploy.__version__}", got.stdout + got.stderr
    shutil.copytree(ROOT / "playbooks", tmp_path / "playbooks")
    got = run([kd, "validate", "-i", "playbooks/inventory/hosts.yml", *EXAMPLE_VAULT, "playbooks/kms-srv-records.yml"], cwd=tmp_path,
              env=env)
    assert got.returncode == 0 and got.stdout.startswith("OK:"), got.stdout + got.stderr
    got = run(["pipx", "uninstall", "kmsdeploy"], cwd=tmp_path, env=env)
    assert got.returncode == 0 and not kd.exists(), got.stdout + got.stderr
