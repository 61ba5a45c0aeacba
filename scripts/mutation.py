"""Mutation testing of the pure modules, one module at a time, with mutmut 3.

Each pure module is mutated and checked against ONLY its own fast unit-test
file(s): the score says how much of the module those tests pin down, not how
much the socket tests happen to touch. mutmut 3 copies the whole project into
``mutants/`` under the directory it runs in, so each module gets a work
directory of its own (``reports/mutation/<module>/``) holding a copy of the
package, the tests and a ``setup.cfg`` whose ``[mutmut]`` section names that
module and its tests. The work directories are wiped before each run, so a
score is never a cached one.

Scores are ``killed / total``, where killed counts mutants a test failed on
(or hung on: a timeout is a detection too) and total is every mutant mutmut
made, including those no test reached. A second score leaves out surviving
mutants that only change the text of an error or log message (a string in a
``raise``, an exception constructor or a logging call, or that string
replaced by ``None``): tests check the error's type and data, not its prose.

Usage::

    python scripts/mutation.py                  # every module, scores at the end
    python scripts/mutation.py jsonrpc config   # some modules
    python scripts/mutation.py --diffs jsonrpc  # also print each survivor's diff
    python scripts/mutation.py --fail-under 90 reconnect

A module whose source or test file does not exist (yet) is skipped with a
message; a module whose tests fail before any mutation (the package does not
import, say) is reported as an error with pytest's reason. Exit status: 0, or
1 if a run failed or a score is under ``--fail-under``. A full run takes about
ten minutes on two cores, most of it the rate limiter's threaded tests.
"""

from __future__ import annotations

import argparse
import configparser
import difflib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "zen_websocket"


@dataclass(frozen=True)
class Target:
    """A module to mutate: source globs (relative to the root) and its unit tests."""

    name: str
    sources: tuple[str, ...]
    tests: tuple[str, ...]


# Only pure modules: their tests open no socket, so a run takes seconds.
TARGETS = (
    Target("reconnect", ("zen_websocket/reconnect.py",), ("tests/test_reconnect.py",)),
    Target(
        "subscriptions",
        ("zen_websocket/subscriptions.py",),
        ("tests/test_subscriptions.py", "tests/test_exchange_dialects.py"),
    ),
    Target("jsonrpc", ("zen_websocket/jsonrpc.py",), ("tests/test_jsonrpc.py",)),
    Target(
        "ratelimit",
        ("zen_websocket/ratelimit/*.py", "zen_websocket/rate_limiter.py"),
        ("tests/test_rate_limiter.py", "tests/test_ratelimit_window.py"),
    ),
    Target("heartbeat", ("zen_websocket/heartbeat.py",), ("tests/test_heartbeat_monitor.py",)),
    Target("config", ("zen_websocket/config.py",), ("tests/test_config.py",)),
    Target("protocol", ("zen_websocket/protocol.py", "zen_websocket/protocol/*.py"), ("tests/test_protocol.py",)),
    Target("deflate", ("zen_websocket/deflate.py",), ("tests/test_deflate.py",)),
    Target("session", ("zen_websocket/session.py", "zen_websocket/session/*.py"), ("tests/test_session.py",)),
)

# mutmut's statuses (mutmut.stats.status_by_exit_code) that mean a test noticed the mutant.
DETECTED = {"killed", "timeout", "caught by type check", "segfault"}
# Statuses that are no verdict on the tests at all: left out of the total.
NOT_COUNTED = {"skipped", "not checked", "check was interrupted by user"}


@dataclass
class Score:
    """One module's result."""

    name: str
    status: str = "ok"  # "ok", "skipped" or "error"
    note: str = ""
    total: int = 0
    detected: int = 0
    survivors: list[str] = field(default_factory=list)
    message_only: list[str] = field(default_factory=list)
    diffs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def percent(self) -> float:
        return 100.0 * self.detected / self.total if self.total else 100.0

    @property
    def adjusted_total(self) -> int:
        return self.total - len(self.message_only)

    @property
    def adjusted_percent(self) -> float:
        total = self.adjusted_total
        return 100.0 * self.detected / total if total else 100.0


def _mutmut() -> str:
    # The venv's console script: `python -m mutmut` re-imports mutmut.__main__
    # and mutmut warns against it.
    beside = Path(sys.executable).with_name("mutmut")
    if beside.exists():
        return str(beside)
    found = shutil.which("mutmut")
    if found is None:
        raise SystemExit("mutmut is not installed: pip install -e '.[dev]' (or make venv)")
    return found


def _sources(target: Target, root: Path) -> list[str]:
    found: set[str] = set()
    for pattern in target.sources:
        found.update(str(path.relative_to(root)) for path in root.glob(pattern) if path.is_file())
    return sorted(found)


def _prepare(target: Target, root: Path, work: Path, sources: list[str]) -> None:
    """A work directory with the package, the tests and a [mutmut] section for ``target``."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(root / PACKAGE, work / PACKAGE, ignore=ignore)
    shutil.copytree(root / "tests", work / "tests", ignore=ignore)
    shutil.copy2(root / "pyproject.toml", work / "pyproject.toml")
    cfg = configparser.RawConfigParser()
    cfg.read(root / "setup.cfg")
    cfg["mutmut"] = {
        "source_paths": PACKAGE,
        "only_mutate": "\n" + "\n".join(sources),
        "pytest_add_cli_args_test_selection": "\n" + "\n".join(target.tests),
        # Tests in file order: mutmut's timings assume a stable order.
        "pytest_add_cli_args": "\n-p\nno:randomly",
        # A mutant that makes a wait hang is a detection; don't sit 15x the
        # test time on it (the unit tests take milliseconds).
        "timeout_multiplier": "5.0",
        # The work directory lives inside the project's git checkout.
        "use_git_change_detection": "false",
    }
    with open(work / "setup.cfg", "w", encoding="utf-8") as f:
        cfg.write(f)


def _run_mutmut(work: Path, jobs: int, log: Path) -> int:
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1", "PYTHONIOENCODING": "utf-8"}
    env.pop("MUTANT_UNDER_TEST", None)
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.run(
            [_mutmut(), "run", "--max-children", str(jobs)],
            cwd=work,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
    return proc.returncode


def _results(work: Path) -> dict[str, str]:
    proc = subprocess.run(
        [_mutmut(), "results", "--all", "true"], cwd=work, capture_output=True, text=True, encoding="utf-8"
    )
    statuses: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            statuses[name] = status
    return statuses


# Diffs of many mutants in one process: `mutmut show` costs about a second
# each (it starts mutmut and walks every file), too slow for 100 survivors.
_DIFFS_AT_ONCE = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
print(json.dumps({name: get_diff_for_mutant(name) for name in json.load(sys.stdin)}))
"""


def _diffs(work: Path, mutants: list[str]) -> dict[str, str]:
    """Each mutant's diff, as ``mutmut show`` prints it."""
    if not mutants:
        return {}
    proc = subprocess.run(
        [sys.executable, "-c", _DIFFS_AT_ONCE],
        cwd=work,
        input=json.dumps(mutants),
        capture_output=True,
        text=True,
        encoding="utf-8",
    )
    if proc.returncode == 0:
        return dict(json.loads(proc.stdout))
    # mutmut's internals moved: fall back to its command line, one at a time.
    shown = {}
    for mutant in mutants:
        out = subprocess.run([_mutmut(), "show", mutant], cwd=work, capture_output=True, text=True, encoding="utf-8")
        shown[mutant] = out.stdout.partition("\n")[2]  # drop the "# name: status" line
    return shown


# -- message-only mutants --------------------------------------------------------

# Calls whose string arguments are prose: exception constructors and logging.
_EXCEPTION_CALL = re.compile(r"(Error|Exception|Warning|Timeout|Closed|Lost|Limited)$")
_LOG_METHODS = {"debug", "info", "warning", "error", "exception", "critical", "log"}


def _tokens(text: str) -> list[tokenize.TokenInfo]:
    """The tokens of a code fragment; a fragment may end inside brackets."""
    out: list[tokenize.TokenInfo] = []
    skip = {tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.COMMENT, tokenize.ENDMARKER}
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type not in skip:
                out.append(token)
    except (tokenize.TokenError, IndentationError, SyntaxError):
        pass  # EOF inside an open bracket: keep what was read
    return out


def _is_prose(token: tokenize.TokenInfo) -> bool:
    # Option names, dict keys and dialect words have no spaces; messages do.
    return token.type == tokenize.STRING and any(ch.isspace() for ch in token.string[1:-1])


def _in_message_call(tokens: list[tokenize.TokenInfo], index: int) -> bool:
    """True if ``tokens[index]`` is an argument of an exception or logging call, or of ``raise``."""
    depth = 0
    for i in range(index - 1, -1, -1):
        text = tokens[i].string
        if text in (")", "]", "}"):
            depth += 1
        elif text in ("(", "[", "{"):
            if depth:
                depth -= 1
                continue
            if text != "(" or i == 0 or tokens[i - 1].type != tokenize.NAME:
                return False
            callee = tokens[i - 1].string
            if _EXCEPTION_CALL.search(callee):
                return True
            return callee in _LOG_METHODS and i >= 3 and tokens[i - 2].string == "." and "log" in tokens[i - 3].string
        elif depth == 0 and text == "raise":
            return True
    return False


def message_only(diff: str) -> bool:
    """True if the mutant in ``diff`` only changes the prose of an error or log message."""
    old_lines: list[str] = []
    new_lines: list[str] = []
    for line in diff.splitlines():
        if line.startswith(("---", "+++", "@@", "#")):
            continue
        if line.startswith("-"):
            old_lines.append(line[1:])
        elif line.startswith("+"):
            new_lines.append(line[1:])
        else:
            old_lines.append(line[1:])
            new_lines.append(line[1:])
    # Line by line: a hunk may start mid-block or inside a docstring, which
    # would stop a tokenizer reading it whole. Both sides are cut the same
    # way, so context lines give equal tokens whatever they are.
    old = [token for line in old_lines for token in _tokens(line.lstrip() + "\n")]
    new = [token for line in new_lines for token in _tokens(line.lstrip() + "\n")]
    matcher = difflib.SequenceMatcher(a=[t.string for t in old], b=[t.string for t in new], autojunk=False)
    changed = False
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            continue
        changed = True
        replaced = [t for t in old[a0:a1] if t.string != ","]
        added = [t for t in new[b0:b1] if t.string != ","]
        if not replaced or not all(_is_prose(t) for t in replaced):
            return False
        if not all(t.type == tokenize.STRING or t.string == "None" for t in added):
            return False
        if not all(_in_message_call(old, old.index(t)) for t in replaced):
            return False
    return changed


# -- one module ------------------------------------------------------------------


def run_target(target: Target, root: Path, workdir: Path, jobs: int, want_diffs: bool) -> Score:
    score = Score(target.name)
    sources = _sources(target, root)
    missing_tests = [test for test in target.tests if not (root / test).is_file()]
    if not sources or missing_tests:
        score.status = "skipped"
        score.note = "no source file yet" if not sources else f"no {', '.join(missing_tests)} yet"
        return score
    work = workdir / target.name
    started = time.monotonic()
    _prepare(target, root, work, sources)
    code = _run_mutmut(work, jobs, work / "mutmut.log")
    score.seconds = time.monotonic() - started
    statuses = _results(work)
    if code != 0 or not statuses:
        score.status = "error"
        score.note = f"mutmut exited {code}: {_why(work / 'mutmut.log')} (log: {work / 'mutmut.log'})"
        return score
    for mutant, status in sorted(statuses.items(), key=lambda item: _natural(item[0])):
        if status in NOT_COUNTED:
            continue
        score.total += 1
        if status in DETECTED:
            score.detected += 1
            continue
        score.survivors.append(mutant)
    diffs = _diffs(work, score.survivors)
    score.message_only = [mutant for mutant in score.survivors if message_only(diffs.get(mutant, ""))]
    if want_diffs:
        score.diffs = diffs
    return score


def _why(log: Path) -> str:
    """The line of a failed run's log that says what went wrong (pytest's ``E`` line, if any)."""
    lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines()]
    errors = [line[1:].strip() for line in lines if line.startswith("E ")]
    if errors:
        return errors[-1]
    return next((line for line in reversed(lines) if line), "no output")


def _natural(name: str) -> tuple[str, int]:
    base, _, number = name.rpartition("__mutmut_")
    return base, int(number) if number.isdigit() else 0


def _report(scores: list[Score], want_diffs: bool) -> None:
    for score in scores:
        if score.status != "ok":
            continue
        counted = [m for m in score.survivors if m not in score.message_only]
        if not score.survivors:
            continue
        print(f"\n{score.name}: {len(counted)} survivor(s), {len(score.message_only)} message-only")
        for mutant in score.survivors:
            mark = "  (message only)" if mutant in score.message_only else ""
            print(f"  {mutant}{mark}")
            if want_diffs and mutant in score.diffs:
                print("\n".join("      " + line for line in score.diffs[mutant].splitlines()))
    print("\nMutation scores (killed / total; then without message-only survivors)")
    for score in scores:
        if score.status == "skipped":
            print(f"  {score.name:<14} skipped: {score.note}")
        elif score.status == "error":
            print(f"  {score.name:<14} ERROR: {score.note}")
        else:
            print(
                f"  {score.name:<14} {score.detected:>4} / {score.total:<4} {score.percent:5.1f}%"
                f"    {score.detected:>4} / {score.adjusted_total:<4} {score.adjusted_percent:5.1f}%"
                f"    ({score.seconds:.0f} s)"
            )


def main(argv: list[str] | None = None) -> int:
    names = [target.name for target in TARGETS]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("modules", nargs="*", metavar="MODULE", help=f"some of: {', '.join(names)} (default: all)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="mutants run in parallel")
    parser.add_argument("--diffs", action="store_true", help="print each survivor's diff")
    parser.add_argument("--fail-under", type=float, default=None, help="exit 1 if an adjusted score is lower")
    parser.add_argument("--root", type=Path, default=ROOT, help="project to test (default: this checkout)")
    parser.add_argument("--workdir", type=Path, default=None, help="default: ROOT/reports/mutation")
    parser.add_argument("--json", type=Path, default=None, help="also write the scores to this file")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.modules) - set(names))
    if unknown:
        parser.error(f"unknown module(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    root = args.root.resolve()
    workdir = (args.workdir or root / "reports" / "mutation").resolve()
    chosen = [target for target in TARGETS if not args.modules or target.name in args.modules]
    scores = []
    for target in chosen:
        print(f"mutating {target.name} ...", flush=True)
        scores.append(run_target(target, root, workdir, max(1, args.jobs), args.diffs))
    _report(scores, args.diffs)
    if args.json is not None:
        args.json.write_text(
            json.dumps(
                [
                    {
                        "module": s.name,
                        "status": s.status,
                        "note": s.note,
                        "detected": s.detected,
                        "total": s.total,
                        "percent": round(s.percent, 1),
                        "adjusted_total": s.adjusted_total,
                        "adjusted_percent": round(s.adjusted_percent, 1),
                        "survivors": s.survivors,
                        "message_only": s.message_only,
                    }
                    for s in scores
                ],
                indent=2,
            ),
            encoding="utf-8",
        )
    failed = any(s.status == "error" for s in scores)
    if args.fail_under is not None:
        failed |= any(s.status == "ok" and s.adjusted_percent < args.fail_under for s in scores)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
