"""``scripts/setup`` for real: the project venv, a fast no-op re-run, and the machines it cannot set up.

The bad-input cases run the real script against the real system (dpkg, apt-get, setpriv, a
network namespace without network). ``KMSDEPLOY_SETUP_EXTRA_PACKAGES`` names a real, small Debian
package this machine does not have so that the script has something to install; apt-get runs with
its lists and cache in a temporary directory (``APT_CONFIG``) so that nothing of the machine's apt
state is touched, and never gets anything installed (it has no network).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / "scripts" / "setup"
POLICY = Path("/usr/sbin/policy-rc.d")
#: a small real Debian package this machine does not have (the precondition is checked)
ABSENT = "sl"
SYSTEM_SITE_DIRS = [Path("/usr/lib/python3/dist-packages"), Path(f"/usr/local/lib/python3.{sys.version_info[1]}/dist-packages")]


def installed(package: str) -> bool:
    got = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return "ok installed" in got.stdout


def path_without(tmp: Path, *names: str) -> str:
    """A PATH directory with every program of the machine except ``names``."""
    bindir = tmp / "bin"
    bindir.mkdir(exist_ok=True)
    for d in ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        for entry in Path(d).iterdir() if Path(d).is_dir() else ():
            link = bindir / entry.name
            if entry.name not in names and not link.exists() and os.access(entry, os.X_OK):
                link.symlink_to(entry)
    return str(bindir)


def snapshot(path: Path):
    return (path.stat().st_mtime_ns, path.read_bytes()) if path.exists() else None


def run_setup(tmp: Path, *, prefix=(), timeout=300, **env: str) -> subprocess.CompletedProcess:
    # the machine's pip configuration stays in force (PIP_*, ~/.config/pip), nothing else of the caller's
    base = {k: v for k, v in os.environ.items() if k.startswith("PIP_")}
    base.update({"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", str(tmp)), "LANG": "C.UTF-8",
                 "KMSDEPLOY_VENV": str(tmp / "venv")})
    base.update(env)
    return subprocess.run([*prefix, "/bin/bash", str(SETUP)], cwd=tmp, env=base, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def absent_package():
    assert not installed(ABSENT), f"precondition: Debian package {ABSENT} must not be installed on this machine"
    return ABSENT


@pytest.fixture
def machine_policy():
    """The machine's own policy-rc.d: scripts/setup must leave it exactly as it was."""
    before = snapshot(POLICY)
    yield
    assert snapshot(POLICY) == before


def assert_one_clear_sentence(got: subprocess.CompletedProcess, *phrases: str):
    assert got.returncode == 1, got.stdout + got.stderr
    lines = got.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("scripts/setup: ") and lines[0].endswith("."), got.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    assert "Traceback" not in got.stdout + got.stderr


def test_without_apt_get_setup_names_the_packages_to_install_by_hand(tmp_path, absent_package, machine_policy):
    got = run_setup(tmp_path, PATH=path_without(tmp_path, "apt-get"), KMSDEPLOY_SETUP_EXTRA_PACKAGES=absent_package)
    assert_one_clear_sentence(got, "apt-get is not available", f"apt-get install {absent_package})")
    assert not (tmp_path / "venv").exists()


def test_not_root_and_no_sudo_setup_says_what_to_install_as_root(absent_package, machine_policy):
    # pytest's tmp_path is private to root: the unprivileged user gets a directory it can enter
    with tempfile.TemporaryDirectory(prefix="kmsdeploy-setup-") as name:
        tmp = Path(name)
        tmp.chmod(0o755)
        got = run_setup(tmp, prefix=["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"],
                        PATH=path_without(tmp, "sudo"), HOME=str(tmp), KMSDEPLOY_SETUP_EXTRA_PACKAGES=absent_package)
        assert not (tmp / "venv").exists()
    assert_one_clear_sentence(got, "not root and has no sudo", f"(as root: apt-get install {absent_package})")
 

def test_no_network_to_the_mirror_one_sentence_and_the_guard_is_removed(tmp_path, absent_package, machine_policy):
    # apt's lists and cache in tmp: the machine's apt state is never written; no locking, because
    # nothing can be installed without network
    for d in ("lists/partial", "cache/archives/partial"):
        (tmp_path / "apt" / d).mkdir(parents=True)
    conf = tmp_path / "apt.conf"
    conf.write_text(f'Dir::State::Lists "{tmp_path}/apt/lists";\nDir::Cache "{tmp_path}/apt/cache";\n'
                    'Debug::NoLocking "true";\n')
    # apt-get, as the script calls it, records whether the daemon guard is in place (and what it answers)
    guard = tmp_path / "policy-rc.d"
    seen = tmp_path / "seen"
    bindir = Path(path_without(tmp_path, "apt-get"))
    (bindir / "apt-get").write_text(
        f'#!/bin/sh\nif [ -x "{guard}" ]; then "{guard}"; echo "$1 guard $?" >>"{seen}"; '
        f'else echo "$1 none" >>"{seen}"; fi\nexec /usr/bin/apt-get "$@"\n')
    (bindir / "apt-get").chmod(0o755)
    got = run_setup(tmp_path, prefix=["unshare", "--net", "--"], PATH=str(bindir), APT_CONFIG=str(conf),
                    KMSDEPLOY_SETUP_EXTRA_PACKAGES=absent_package, KMSDEPLOY_SETUP_POLICY_RC=str(guard))
    assert_one_clear_sentence(got, "the Debian package mirror cannot be reached",
                              f"apt-get install {absent_package})")
    # the guard answered 101 ("action forbidden") during apt-get and is gone after the failure
    assert seen.read_text().split("\n")[:2] == ["update guard 101", "install guard 101"]
    assert not guard.exists()
    assert not (tmp_path / "venv").exists()


def test_setup_builds_the_project_venv_and_a_rerun_is_a_fast_no_op(tmp_path, machine_policy):
    def system_site():
        return {d: sorted(p.name for p in d.iterdir()) for d in SYSTEM_SITE_DIRS if d.is_dir()}

    before = system_site()
    got = run_setup(tmp_path, timeout=900)
    assert got.returncode == 0, got.stdout + got.stderr
    assert "installing kmsdeploy and its test extras" in got.stdout
    py = tmp_path / "venv" / "bin" / "python"
    probe = subprocess.run([py, "-c", "import sys, kmsdeploy, pytest, xdist, tree_sitter_powershell; "
                            "print(kmsdeploy.__file__); print(sys.base_prefix)"],
                           cwd=tmp_path, env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    where, base = probe.stdout.split()
    assert Path(where) == ROOT / "kmsdeploy" / "__init__.py"  # editable: the checkout's code
    assert base == "/usr"                                        # built from Debian's python3
    assert system_site() == before                               # nothing pip-installed system-wide

    t0 = time.monotonic()
    again = run_setup(tmp_path)
    elapsed = time.monotonic() - t0
    assert again.returncode == 0 and again.stdout == "" and again.stderr == "", again.stdout + again.stderr
    assert elapsed < 3, f"a re-run with nothing to do took {elapsed:.1f} s"
