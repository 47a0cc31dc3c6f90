"""The HTML report in a real headless browser (Debian's chromium).

The browser is driven over the DevTools protocol through ``--remote-debugging-pipe``
(NUL-separated JSON on file descriptors 3 and 4, as Playwright and Puppeteer do): no
websocket library, no port to collide with other test workers. We collect every
``Runtime.exceptionThrown``, every ``console.error``/``console.assert`` and every
``Log.entryAdded`` at level error, check that each chart was drawn by plotly, and take
a screenshot. Network is disabled (``--host-resolver-rules``): the page must be
self-contained. A deliberately broken page proves the check catches a JS error.
"""
from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from kmsdeploy.reports import queries, render
from kmsdeploy.reports.parse import parse_12290
from kmsdeploy.reports.population import Population, PopulationSpec, lab_catalog
from kmsdeploy.reports.store import Store

NOW = datetime(2025, 3, 1, tzinfo=timezone.utc)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(os.environ.get("KMSDEPLOY_TEST_ARTIFACTS", tempfile.gettempdir())) / "kmsdeploy-report-screens"


class Browser:
    """A headless chromium spoken to over the DevTools pipe."""

    def __init__(self, timeout: float = 60.0):
        if not CHROMIUM:
            raise RuntimeError("chromium is not installed: apt-get install -y chromium")
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="kmsdeploy-chromium-")
        to_child_r, self._to_child_w = os.pipe()
        self._from_child_r, from_child_w = os.pipe()
        # fds 3 and 4 in the child, whatever numbers they have here
        hi_r, hi_w = os.dup(to_child_r) + 100, os.dup(from_child_w) + 100
        os.dup2(to_child_r, hi_r)
        os.dup2(from_child_w, hi_w)

        def wire():
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
             "--disable-dev-shm-usage", "--host-resolver-rules=MAP * ~NOTFOUND", "--window-size=1280,2000",
             f"--user-data-dir={self.profile}", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            pass_fds=(3, 4), preexec_fn=wire)
        for fd in (to_child_r, from_child_w, hi_r, hi_w):
            os.close(fd)
        self._buf = b""
        self._id = 0
        self.events: list[dict] = []

    def _send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child_w, json.dumps(msg).encode() + b"\0")
        return self._id

    def _read_one(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self._from_child_r], [], [], left)
            if ready:
                chunk = os.read(self._from_child_r, 1 << 20)
                if not chunk:
                    err = self.proc.stderr.read().decode(errors="replace") if self.proc.poll() is not None else ""
                    raise RuntimeError(f"chromium closed the DevTools pipe: {err[-2000:]}")
                self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        want = self._send(method, params, session)
        deadline = time.monotonic() + self.timeout
        while True:
            msg = self._read_one(deadline)
            if msg.get("id") == want:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, method: str, session: str, timeout: float | None = None) -> dict:
        for e in self.events:
            if e["method"] == method and e.get("sessionId") == session:
                return e
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            msg = self._read_one(deadline)
            if "method" in msg:
                self.events.append(msg)
                if msg["method"] == method and msg.get("sessionId") == session:
                    return msg

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        try:
            while True:
                msg = self._read_one(deadline)
                if "method" in msg:
                    self.events.append(msg)
        except TimeoutError:
            pass

    def load(self, path: Path, screenshot: Path) -> dict:
        """Open ``path``; return errors, chart count and the screenshot's size."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for m in ("Runtime.enable", "Log.enable", "Page.enable"):
            self.call(m, session=session)
        self.call("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
        self.wait_event("Page.loadEventFired", session)
        self.drain(0.5)
        charts = self.call("Runtime.evaluate", {"expression": "Array.from(document.querySelectorAll('.js-plotly-plot')).filter(d => d.querySelector('.main-svg')).length",
                                                "returnByValue": True}, session=session)["result"]["value"]
        shot = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": False}, session=session)
        png = base64.b64decode(shot["data"])
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(png)
        errors = []
        for e in self.events:
            if e.get("sessionId") != session:
                continue
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                errors.append("exception: " + (d.get("exception", {}).get("description") or d.get("text", "")))
            elif e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                errors.append("console.error: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p["args"]))
            elif e["method"] == "Log.entryAdded" and p["entry"]["level"] == "error":
                errors.append(f"log: {p['entry'].get('text')} {p['entry'].get('url', '')}")
        self.call("Target.closeTarget", {"targetId": target})
        return {"errors": errors, "charts": charts, "png": png}

    def close(self) -> None:
        try:
            self._send("Browser.close")
            self.proc.wait(timeout=10)
        except Exception:  # noqa: BLE001 - make sure it is gone
            self.proc.kill()
            self.proc.wait()
        finally:
            for fd in (self._to_child_w, self._from_child_r):
                try:
                    os.close(fd)
                except OSError:
                    pass
            if self.proc.stderr:
                self.proc.stderr.close()
            shutil.rmtree(self.profile, ignore_errors=True)


@pytest.fixture(scope="module")
def browser():
    b = Browser()
    yield b
    b.close()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("reports") / "store.sqlite"
    sites = {"hq": ["hq-kms01", "hq-kms02"], "branch-berlin": ["ber-kms01"], "branch-lyon": ["lyo-kms01"]}
    site_of = {h: s for s, hs in sites.items() for h in hs}
    pop = Population(PopulationSpec(sites=sites, end=NOW, clients_per_site=150, days=60, seed=7))
    per_host: dict[str, list] = {}
    for rec in pop.records():
        per_host.setdefault(rec.host, []).append(parse_12290(rec.as_event()))
    with Store(str(path)) as s:
        s.set_products(lab_catalog())
        for host, events in per_host.items():
            s.ingest(host, site_of[host], events, at=NOW, current_count=pop.current_counts()[host])
    s = Store(str(path), readonly=True)
    yield s
    s.close()


def _png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "screenshot is not a PNG"
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


@pytest.mark.parametrize("report", queries.REPORTS)
def test_report_html_loads_without_errors(report, store, browser, tmp_path):
    f = queries.Filters(within=timedelta(days=180) if report == "expiring" else None)
    doc = queries.build(report, store, NOW, f)
    page = tmp_path / f"{report}.html"
    page.write_text(render.html(doc), encoding="utf-8")
    got = browser.load(page, ARTIFACTS / f"{report}.png")
    assert got["errors"] == [], got["errors"]
    assert got["charts"] == len(doc["charts"]) >= 1, f"plotly drew {got['charts']} of {len(doc['charts'])} charts"
    w, h = _png_size(got["png"])
    assert w > 600 and h > 400 and len(got["png"]) > 10_000, "screenshot looks empty"
    print(f"{report}: screenshot {ARTIFACTS / (report + '.png')} {w}x{h}, {len(got['png'])} bytes")


def test_hostile_names_stay_data(store, browser, tmp_path):
    doc = queries.build("vm", store, NOW)
    hostile = '</script><script>console.error("injected")</script><img src=x onerror=alert(1)>'
    doc["tables"][0]["rows"].insert(0, {"site": hostile, "product": hostile, "virtual": 1, "physical": 0,
                                        "clients": 1, "virtual_share": 1.0})
    doc["charts"][0]["x"].append(hostile)
    for s in doc["charts"][0]["series"]:
        s["y"].append(1)
    page = tmp_path / "hostile.html"
    page.write_text(render.html(doc), encoding="utf-8")
    got = browser.load(page, ARTIFACTS / "hostile.png")
    assert got["errors"] == []
    assert got["charts"] == 1


def test_a_js_error_is_caught(browser, tmp_path):
    """The check is real: a page that throws, logs an error or fails to load a resource fails it."""
    page = tmp_path / "broken.html"
    page.write_text("<!DOCTYPE html><html><body><p>broken</p>"
                    "<script>console.error('deliberate console error');</script>"
                    "<script>undefinedFunctionCall();</script></body></html>", encoding="utf-8")
    got = browser.load(page, ARTIFACTS / "broken.png")
    assert any("undefinedFunctionCall" in e for e in got["errors"]), got["errors"]
    assert any("deliberate console error" in e for e in got["errors"]), got["errors"]
    _png_size(got["png"])


def test_network_is_not_needed(browser, tmp_path):
    """A page that needs the network (a CDN script) fails here: ours never does."""
    page = tmp_path / "cdn.html"
    page.write_text('<!DOCTYPE html><html><head><script src="https://cdn.plot.ly/plotly-2.35.2.min.js"></script>'
                    "</head><body><script>Plotly.newPlot('x', [])</script></body></html>", encoding="utf-8")
    got = browser.load(page, ARTIFACTS / "cdn.png")
    assert got["errors"], "a page loading a CDN script should fail without network"
