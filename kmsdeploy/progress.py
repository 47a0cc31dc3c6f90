"""Rollout progress: a live table on a terminal (rich), plain lines otherwise (CI, pipes)."""
from __future__ import annotations

import sys
import threading
from typing import TextIO

from .executor import Progress, TargetOutcome
from .rollout import Wave


class PlainProgress(Progress):
    """One line per event; ``quiet`` keeps only wave summaries and failures."""

    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False, verbose: bool = False):
        self.stream, self.quiet, self.verbose = stream or sys.stdout, quiet, verbose
        self._lock = threading.Lock()

    def _line(self, text: str) -> None:
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    def wave_started(self, wave: Wave, total_waves: int) -> None:
        if not self.quiet:
            name = "canary" if wave.canary else f"wave {wave.index + 1}/{total_waves}"
            self._line(f"== {name}: {len(wave.targets)} target(s) in {len(wave.units)} unit(s)")

    def target_started(self, target: str) -> None:
        if self.verbose:
            self._line(f"   started {target}")

    def target_done(self, outcome: TargetOutcome) -> None:
        if outcome.status == "converged" and self.quiet:
            return
        extra = f", {outcome.retries} retries" if outcome.retries else ""
        self._line(f"   {outcome.target}: {outcome.status} ({len(outcome.applied)} applied, {outcome.seconds:.2f}s{extra})")
        for e in outcome.errors:
            self._line(f"      {e}")

    def wave_finished(self, wave: Wave, failed: int, stopped: str | None) -> None:
        self._line(f"   done: {len(wave.targets) - failed} ok, {failed} failed" + (f" — STOPPED: {stopped}" if stopped else ""))


class LiveProgress(Progress):
    """A rich live display: per wave done/failed/remaining and the hosts in flight."""

    def __init__(self):
        from rich.console import Console
        from rich.live import Live

        self.console = Console(stderr=False)
        self.live = Live(console=self.console, refresh_per_second=8, transient=False)
        self.live.start()
        self._lock = threading.Lock()
        self.wave_name, self.total, self.done, self.failed = "", 0, 0, 0
        self.in_flight: set[str] = set()

    def _render(self):
        from rich.table import Table

        t = Table(show_header=True, header_style="bold")
        for col in ("wave", "done", "failed", "remaining", "in flight"):
            t.add_column(col)
        remaining = self.total - self.done - self.failed
        flight = ", ".join(sorted(self.in_flight)[:6]) + (" …" if len(self.in_flight) > 6 else "")
        t.add_row(self.wave_name, str(self.done), str(self.failed), str(remaining), flight)
        return t

    def wave_started(self, wave: Wave, total_waves: int) -> None:
        with self._lock:
            self.wave_name = "canary" if wave.canary else f"{wave.index + 1}/{total_waves}"
            self.total, self.done, self.failed = len(wave.targets), 0, 0
            self.live.update(self._render())

    def target_started(self, target: str) -> None:
        with self._lock:
            self.in_flight.add(target)
            self.live.update(self._render())

    def target_done(self, outcome: TargetOutcome) -> None:
        with self._lock:
            self.in_flight.discard(outcome.target)
            if outcome.status == "converged":
                self.done += 1
            else:
                self.failed += 1
                self.console.print(f"[red]{outcome.target}: {outcome.status}[/red] " + "; ".join(outcome.errors))
            self.live.update(self._render())

    def wave_finished(self, wave: Wave, failed: int, stopped: str | None) -> None:
        if stopped:
            self.console.print(f"[bold red]Rollout stopped:[/bold red] {stopped}")

    def close(self) -> None:
        self.live.stop()


def choose(*, quiet: bool, verbose: bool, stream: TextIO | None = None) -> Progress:
    import os

    stream = stream or sys.stdout
    if stream.isatty() and os.environ.get("CI") != "true" and not quiet:
        return LiveProgress()
    return PlainProgress(stream, quiet=quiet, verbose=verbose)
