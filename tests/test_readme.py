"""The README is tested: its runnable examples run, and the names it documents exist.

Convention: a fenced ```python block immediately preceded by the line
``<!-- runnable -->`` is a runnable example. Each one runs in a fresh
interpreter, on loopback only (the shipped mock servers and emulators), must
exit with status 0 within a few seconds, and must leave no zen_websocket or
mock-server thread running.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import zen_websocket as zw
from zen_websocket import telemetry
from zen_websocket.config import ClientConfig

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
TEXT = README.read_text(encoding="utf-8")

MARKER = "<!-- runnable -->"
# Seconds one example may take, interpreter start included; scaled like the rest of the suite.
BLOCK_BUDGET = 8.0 * float(os.environ.get("ZW_TEST_TIME_SCALE", "1.0"))

_FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)

# Appended to every example: the process must not rely on the atexit hook to
# stop its clients and servers; every thread they started must be gone.
_EPILOGUE = """

import threading as _threading, time as _time
_deadline = _time.monotonic() + 2.0
while True:
    _left = sorted(t.name for t in _threading.enumerate() if t.name.startswith(("zen-ws-", "mock-ws-")))
    if not _left or _time.monotonic() > _deadline:
        break
    _time.sleep(0.01)
assert not _left, f"the example left threads running: {_left}"
"""


def runnable_blocks() -> list[tuple[int, str]]:
    """(line number, code) of every ```python block right after the runnable marker."""
    blocks = []
    for match in _FENCE.finditer(TEXT):
        before = TEXT[: match.start()].rstrip("\n")
        if before.endswith(MARKER):
            line = TEXT.count("\n", 0, match.start()) + 2  # first line of code
            blocks.append((line, match.group(1)))
    return blocks


BLOCKS = runnable_blocks()


def test_readme_opens_with_make_demo_and_make_test():
    first_code = TEXT[TEXT.index("```") :].split("```")[1]
    assert "make demo" in first_code and "make test" in first_code
    # Nothing but the title comes before those two commands.
    assert TEXT[: TEXT.index("```")].strip() == "# zen_websocket"


def test_readme_has_runnable_examples():
    assert len(BLOCKS) >= 10, "the runnable marker convention broke: too few examples found"
    # A marker followed by something other than a python block is a typo.
    markers = len(re.findall(rf"^{re.escape(MARKER)}[ \t]*$", TEXT, re.MULTILINE))
    assert markers == len(BLOCKS), "a <!-- runnable --> marker is not right before a ```python block"


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("line", "code"), BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_runnable_example_runs(line, code, tmp_path):
    """The example exits 0, quickly, and leaves no thread behind."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    for proxy in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        # A dead proxy, as on a machine behind one: loopback must go direct anyway.
        env[proxy] = "http://127.0.0.1:9"
    env.pop("no_proxy", None)
    env.pop("NO_PROXY", None)
    started = time.monotonic()
    try:
        result = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code) + _EPILOGUE],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=BLOCK_BUDGET * 3,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"README.md:{line}: the example hung (killed after {exc.timeout:g}s)\n{exc.stderr or ''}")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, (
        f"README.md:{line}: the example failed (exit {result.returncode})\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    assert elapsed < BLOCK_BUDGET, f"README.md:{line}: the example took {elapsed:.1f}s (budget {BLOCK_BUDGET:g}s)"


def test_every_exported_name_is_documented():
    missing = [name for name in zw.__all__ if not re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", TEXT)]
    # Module-qualified mentions (zw.errors, zw.rate_limiter...) count as well.
    missing = [name for name in missing if f"zw.{name}" not in TEXT]
    assert not missing, f"zen_websocket.__all__ names missing from README.md: {missing}"


_ZW_NAME = re.compile(r"(?<![\w.])zw((?:\.[A-Za-z_]\w*)+)")


def test_every_zw_name_in_the_readme_exists():
    """``zw.X`` and ``zw.module.Y`` mentions resolve to real attributes."""
    names = sorted({match.group(1).lstrip(".") for match in _ZW_NAME.finditer(TEXT)})
    assert names, "no zw.X names found"
    unresolved = []
    for dotted in names:
        obj: object = zw
        for part in dotted.split("."):
            if not hasattr(obj, part):
                # A method call on a returned value (zw.connect(...).x) is not
                # matched by the regex; anything unresolved here is a wrong name.
                unresolved.append(f"zw.{dotted}")
                break
            obj = getattr(obj, part)
    assert not unresolved, f"README.md documents names that do not exist: {unresolved}"


def test_options_table_lists_every_client_option():
    fields = [f.name for f in dataclasses.fields(ClientConfig) if f.name not in ("url", "callbacks")]
    missing = [name for name in fields if not re.search(rf"^\| `{name}` \|", TEXT, re.MULTILINE)]
    assert not missing, f"options missing from the README options table: {missing}"


def test_telemetry_table_lists_every_event():
    missing = [".".join(event[1:]) for event in telemetry.EVENTS if f"`{'.'.join(event[1:])}`" not in TEXT]
    assert not missing, f"telemetry events missing from README.md: {missing}"
