"""Every script in examples/ runs: offline, quickly, exit 0, something printed, no thread left behind.

Each example starts the emulator it needs itself (loopback only). They run in
a fresh interpreter with the proxy variables pointing at a dead port, as on a
machine behind a corporate proxy: loopback connections must go direct.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
SCALE = float(os.environ.get("ZW_TEST_TIME_SCALE", "1.0"))
# Seconds one example may take, interpreter start included.
BUDGET = 10.0 * SCALE

# Runs the example as __main__, then checks that its clients and servers are
# gone without the atexit hook's help, and exits with the example's status.
_RUNNER = """
import runpy, sys, threading, time
path = sys.argv[1]
sys.argv = [path]
status = 0
try:
    runpy.run_path(path, run_name="__main__")
except SystemExit as exc:
    status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
deadline = time.monotonic() + 2.0
while True:
    left = sorted(t.name for t in threading.enumerate() if t.name.startswith(("zen-ws-", "mock-ws-")))
    if not left or time.monotonic() > deadline:
        break
    time.sleep(0.01)
if left:
    print(f"the example left threads running: {left}", file=sys.stderr)
    status = status or 3
sys.exit(status)
"""


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    for name in ("no_proxy", "NO_PROXY"):
        env.pop(name, None)
    dead = "http://127.0.0.1:9"  # nothing listens there: a proxied connection would fail
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env[name] = dead
    return env


def test_the_seed_patterns_each_have_an_example():
    names = {path.name for path in EXAMPLES}
    assert {
        "echo.py",
        "deribit_price_feed.py",
        "binance_combined_streams.py",
        "notebook_walkthrough.py",
    } <= names


@pytest.mark.timeout(60)
@pytest.mark.parametrize("path", EXAMPLES, ids=[path.name for path in EXAMPLES])
def test_example_runs_offline_and_exits_zero(path: Path, tmp_path: Path):
    """The example exits 0 within the budget, prints something, and leaves no thread running."""
    started = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, "-c", _RUNNER, str(path)],
            cwd=tmp_path,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=BUDGET * 3,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{path.name} hung (killed after {exc.timeout:g}s)\n{exc.stderr or ''}")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, (
        f"{path.name} failed (exit {result.returncode})\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    assert result.stdout.strip(), f"{path.name} printed nothing"
    assert "Traceback" not in result.stderr, result.stderr
    assert elapsed < BUDGET, f"{path.name} took {elapsed:.1f}s (budget {BUDGET:g}s)"


def test_every_example_is_linked_from_the_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [path.name for path in EXAMPLES if f"examples/{path.name}" not in readme]
    assert not missing, f"examples not linked from README.md: {missing}"
