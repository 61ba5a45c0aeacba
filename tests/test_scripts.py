"""Smoke tests of the scripts users run first: ``make demo`` and ``make bench``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def run_script(name: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPTS / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )


def test_demo_runs_and_prints_a_summary():
    proc = run_script("demo.py", "--seconds", "1", timeout=10)
    assert proc.returncode == 0, proc.stderr
    assert "Summary: " in proc.stdout
    assert "BTC-USD" in proc.stdout
    assert "Connection closed cleanly" in proc.stdout


@pytest.mark.skipif(os.environ.get("ZW_RUN_BENCH_SMOKE") != "1", reason="set ZW_RUN_BENCH_SMOKE=1 (CI time budget)")
@pytest.mark.timeout(150)
def test_bench_quick_runs_and_prints_the_table():
    proc = run_script("bench.py", "--quick", timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "zen_websocket benchmark" in proc.stdout
    assert "msg/s" in proc.stdout and "CPU s/100k" in proc.stdout
    assert "Targets" in proc.stdout
