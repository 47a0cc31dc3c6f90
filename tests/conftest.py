"""Suite-wide rules.

In CI (CI=true) a skipped test counts as a failure: integration tests must start
their real services there, and a service that cannot start must fail loudly.
"""
from __future__ import annotations

import os

import importlib.util

import pytest

#: service fixtures (real BIND, Samba AD DC, sshd in network namespaces, the lab WinRM endpoint)
SERVICE_PLUGINS = ["tests.services.bind", "tests.services.netns", "tests.services.samba", "tests.services.winlab"]
pytest_plugins = [name for name in SERVICE_PLUGINS if importlib.util.find_spec(name) is not None]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") == "true" and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI (CI=true), which counts as a failure: {report.longrepr}"
