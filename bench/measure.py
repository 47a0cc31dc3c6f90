"""Shared by the benchmarks: run kmsdeploy as a child process and measure that child alone."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_cli(args: list[str], env: dict, log: Path) -> dict:
    """Run ``python -m kmsdeploy ARGS``; wall time, CPU and peak RSS (``os.wait4``) of that child alone."""
    start = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kmsdeploy", *args], stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=str(ROOT))
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    return {"rc": os.waitstatus_to_exitcode(status), "wall_s": round(wall, 2),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}
