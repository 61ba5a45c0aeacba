"""Run the Autobahn WebSocket test suite (client side) against zen_websocket.

Starts ``kosoku -m fuzzingserver`` (a native Autobahn fuzzing server) on a free
loopback port, drives every selected case with one echo client per case,
asks the server for its report and prints the verdicts per case group.

Protocol of the fuzzing server (checked against kosoku 0.1.0):

- ``/getCaseCount``: a text message with the number of selected cases.
- ``/runCase?case=N&agent=NAME`` (N is 1-based): the case; the client echoes
  every message back until the server closes.
- ``/updateReports?agent=NAME``: ends the run; kosoku writes
  ``OUTDIR/index.json`` (``{agent: {case_id: {behavior, behaviorClose,
  duration, remoteCloseCode, reportfile}}}``) plus one JSON/HTML file per
  case, then exits.

Usage::

    make autobahn                                  # the whole suite
    make autobahn AUTOBAHN_ARGS="-i 6.* -i 7.*"    # a few groups
    .venv/bin/python scripts/autobahn.py --raw     # raw websocket-client, for comparison

Exit status: 0 when no judged case is FAILED, ERROR or UNIMPLEMENTED, else 1.
Judged: groups 1 to 10 and the permessage-deflate groups 12 and 13 (the
client negotiates compression by default; 12 and 13 echo compressed
messages under each parameter the server can ask for); with ``--raw``
only 1 to 10 (websocket-client has no compression). Group 11 does not
exist in the suite.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import websocket  # noqa: E402

import zen_websocket as zw  # noqa: E402

VERDICTS = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "ERROR")
BAD = ("FAILED", "ERROR")
JUDGED_GROUPS = (*range(1, 11), 12, 13)  # 1.* .. 10.*, and permessage-deflate
RAW_JUDGED_GROUPS = tuple(range(1, 11))  # websocket-client has no permessage-deflate
# In the judged groups, UNIMPLEMENTED is bad too: for 12.* and 13.* it means
# compression was not negotiated.
JUDGED_BAD = (*BAD, "UNIMPLEMENTED")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-i", "--include", action="append", metavar="CASE", help="case id or glob (repeatable)")
    parser.add_argument("-x", "--exclude", action="append", metavar="CASE", help="case id or glob to skip (repeatable)")
    parser.add_argument(
        "--agent", help="agent name in the report (default: zen_websocket, or websocket-client with --raw)"
    )
    parser.add_argument("--raw", action="store_true", help="run a raw websocket-client echo loop instead")
    parser.add_argument(
        "--outdir", help="report directory (default: reports/autobahn, reports/autobahn-raw with --raw)"
    )
    parser.add_argument("--case-timeout", type=float, default=60.0, help="bound on one case, in seconds")
    parser.add_argument("--max-message-size", type=int, default=64 * 1024 * 1024, help="zen_websocket limit (bytes)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every case as it runs")
    return parser.parse_args(argv)


# -- the fuzzing server ---------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def kosoku_command() -> list[str]:
    exe = Path(sys.executable).parent / "kosoku"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("kosoku")
    if found:
        return [found]
    return [sys.executable, "-c", "from kosoku._cli import main; main()"]


class FuzzingServer:
    """The kosoku subprocess, on loopback only."""

    def __init__(self, outdir: Path, include: list[str] | None, exclude: list[str] | None) -> None:
        self.outdir = outdir
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}"
        cmd = [*kosoku_command(), "-m", "fuzzingserver", f"127.0.0.1:{self.port}", "-o", str(outdir)]
        for case in include or ():
            cmd += ["-i", case]
        for case in exclude or ():
            cmd += ["-x", case]
        outdir.mkdir(parents=True, exist_ok=True)
        index = outdir / "index.json"
        if index.exists():
            index.unlink()  # never read a previous run's verdicts
        self.log_path = outdir / "server.log"
        self._log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=str(ROOT))

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kosoku exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"kosoku did not listen on port {self.port} within {timeout}s")

    def control(self, path: str) -> str | None:
        """Open a control endpoint; return its first text message, if any."""
        ws = websocket.create_connection(self.url + path, timeout=30, suppress_origin=True)
        try:
            text = ws.recv()
            return text if isinstance(text, str) and text else None
        except websocket.WebSocketException:
            return None
        finally:
            ws.close(timeout=2)

    def stop(self, timeout: float = 120.0) -> int | None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        finally:
            self._log.close()
        return self.proc.returncode


# -- the clients under test -----------------------------------------------


def run_case_zen(url: str, timeout: float, max_message_size: int | None) -> str:
    """One case with a zen_websocket Client echoing every message; returns how it ended."""
    ended = threading.Event()
    errors: list[BaseException] = []

    def echo(client: zw.Client, message: Any) -> None:
        try:
            client.send_message(message)
        except zw.NotConnectedError:
            pass  # the server closed under us: nothing left to echo to

    client = zw.Client(
        url,
        heartbeat_config=None,
        reconnect_on_error=False,
        retry_count=0,
        max_message_size=max_message_size,
        on_message=echo,
        on_close=lambda client, code, reason: ended.set(),
        on_error=lambda client, exc: errors.append(exc),
    )
    try:
        client.connect()
    except zw.ConnectError as exc:
        return f"connect failed: {exc}"
    try:
        if not ended.wait(timeout) and client.get_state() != "disconnected":
            return "timeout"
        return f"error: {errors[0]!r}" if errors else "closed"
    finally:
        client.close(timeout=2.0)


def run_case_raw(url: str, timeout: float) -> str:
    """The same case with websocket-client's own reader (recv_data), for comparison."""
    ws = websocket.create_connection(url, timeout=timeout, suppress_origin=True)
    outcome = "closed"
    try:
        while True:
            opcode, data = ws.recv_data()
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            if opcode in (websocket.ABNF.OPCODE_TEXT, websocket.ABNF.OPCODE_BINARY):
                ws.send(data, opcode)
    except websocket.WebSocketPayloadException as exc:
        outcome = f"error: {exc!r}"
        _raw_close(ws, 1007)
    except websocket.WebSocketProtocolException as exc:
        outcome = f"error: {exc!r}"
        _raw_close(ws, 1002)
    except websocket.WebSocketTimeoutException:
        outcome = "timeout"
    except (websocket.WebSocketConnectionClosedException, OSError) as exc:
        outcome = f"dropped: {exc!r}"
    finally:
        ws.close(timeout=2)
    return outcome


def _raw_close(ws: websocket.WebSocket, code: int) -> None:
    try:
        ws.close(status=code, timeout=2)
    except Exception:
        pass


# -- report ---------------------------------------------------------------


def group_of(case_id: str) -> int:
    return int(case_id.split(".")[0])


def sort_key(case_id: str) -> list[int]:
    return [int(p) for p in case_id.split(".")]


def load_report(outdir: Path, agent: str) -> dict[str, dict[str, Any]]:
    """case_id -> per-case report (the index entry merged with its JSON file)."""
    with open(outdir / "index.json") as f:
        index = json.load(f)
    cases: dict[str, dict[str, Any]] = {}
    for case_id, entry in index.get(agent, {}).items():
        detail: dict[str, Any] = {}
        try:
            with open(outdir / entry["reportfile"]) as f:
                detail = json.load(f)
        except (OSError, ValueError, KeyError):
            pass
        cases[case_id] = {**detail, **entry}
    return cases


def print_report(
    cases: dict[str, dict[str, Any]],
    wall: dict[int, float],
    outcomes: dict[int, str],
    judged_groups: tuple[int, ...] = JUDGED_GROUPS,
) -> bool:
    """Print the verdict table; True when the judged groups have no FAILED/ERROR/UNIMPLEMENTED."""
    groups: dict[int, list[str]] = defaultdict(list)
    for case_id in sorted(cases, key=sort_key):
        groups[group_of(case_id)].append(case_id)

    header = f"{'group':>6} {'cases':>5} " + " ".join(f"{v:>13}" for v in VERDICTS) + f" {'time':>8}"
    print(header)
    print("-" * len(header))
    totals = dict.fromkeys(VERDICTS, 0)
    total_time = 0.0
    for group in sorted(groups):
        counts = dict.fromkeys(VERDICTS, 0)
        seconds = 0.0
        for case_id in groups[group]:
            case = cases[case_id]
            counts[case["behavior"]] = counts.get(case["behavior"], 0) + 1
            seconds += wall.get(case.get("case", -1), case.get("duration", 0) / 1000.0)
        for verdict in VERDICTS:
            totals[verdict] += counts[verdict]
        total_time += seconds
        row = " ".join(f"{counts[v]:>13}" for v in VERDICTS)
        print(f"{str(group) + '.*':>6} {len(groups[group]):>5} {row} {seconds:>7.1f}s")
    print("-" * len(header))
    row = " ".join(f"{totals[v]:>13}" for v in VERDICTS)
    print(f"{'all':>6} {len(cases):>5} {row} {total_time:>7.1f}s")

    bad = [c for c in sorted(cases, key=sort_key) if cases[c]["behavior"] in BAD]
    if bad:
        print(f"\n{len(bad)} FAILED/ERROR case(s):")
        for case_id in bad:
            case = cases[case_id]
            outcome = outcomes.get(case.get("case", -1), "")
            print(
                f"  {case_id:<9} {case['behavior']:<7} close={case.get('behaviorClose')} "
                f"remoteCloseCode={case.get('remoteCloseCode')}: {case.get('description', '')}"
            )
            detail = case.get("resultClose") if case.get("behaviorClose") not in ("OK", "INFORMATIONAL") else None
            detail = detail or case.get("result")
            if detail:
                print(f"            {detail}")
            if outcome and outcome != "closed":
                print(f"            client: {outcome}")
    non_ok_close = [
        c for c in sorted(cases, key=sort_key) if cases[c].get("behaviorClose") not in ("OK", "INFORMATIONAL")
    ]
    non_ok_close = [
        c for c in non_ok_close if cases[c]["behavior"] not in BAD and cases[c]["behavior"] != "UNIMPLEMENTED"
    ]
    if non_ok_close:
        print(f"\n{len(non_ok_close)} case(s) with a passing verdict but closing behaviour not OK:")
        for case_id in non_ok_close:
            print(f"  {case_id:<9} behaviorClose={cases[case_id].get('behaviorClose')}")
    unimplemented = [
        c
        for c in sorted(cases, key=sort_key)
        if cases[c]["behavior"] == "UNIMPLEMENTED" and group_of(c) in judged_groups
    ]
    if unimplemented:
        print(f"\n{len(unimplemented)} UNIMPLEMENTED case(s) in judged groups: {', '.join(unimplemented[:20])}")
    judged_bad = [c for c in cases if cases[c]["behavior"] in JUDGED_BAD and group_of(c) in judged_groups]
    return not judged_bad


# -- main -----------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    agent = args.agent or ("websocket-client" if args.raw else "zen_websocket")
    outdir = Path(args.outdir or ROOT / "reports" / ("autobahn-raw" if args.raw else "autobahn"))
    server = FuzzingServer(outdir, args.include, args.exclude)
    wall: dict[int, float] = {}
    outcomes: dict[int, str] = {}
    started = time.monotonic()
    try:
        server.wait_ready()
        count = int(server.control("/getCaseCount") or 0)
        print(
            f"kosoku on {server.url}: {count} case(s), agent {agent!r}, client {'raw websocket-client' if args.raw else 'zen_websocket'}"
        )
        for n in range(1, count + 1):
            url = f"{server.url}/runCase?case={n}&agent={agent}"
            t0 = time.monotonic()
            try:
                if args.raw:
                    outcome = run_case_raw(url, args.case_timeout)
                else:
                    outcome = run_case_zen(url, args.case_timeout, args.max_message_size or None)
            except Exception as exc:  # keep going: the report says ERROR
                outcome = f"exception: {exc!r}"
            wall[n] = time.monotonic() - t0
            outcomes[n] = outcome
            if args.verbose or outcome == "timeout":
                print(f"  case {n}/{count}: {outcome} ({wall[n]:.2f}s)", flush=True)
            elif n % 50 == 0 or n == count:
                print(f"  {n}/{count} cases run ({time.monotonic() - started:.0f}s)", flush=True)
        server.control(f"/updateReports?agent={agent}")
    finally:
        server.stop()
    if not (outdir / "index.json").exists():
        print(f"kosoku wrote no report; see {server.log_path}", file=sys.stderr)
        return 1
    cases = load_report(outdir, agent)
    print(f"\nreport: {outdir}/index.html  (total {time.monotonic() - started:.1f}s)\n")
    ok = print_report(cases, wall, outcomes, RAW_JUDGED_GROUPS if args.raw else JUDGED_GROUPS)
    judged = "1.* to 10.*" if args.raw else "1.* to 10.*, 12.*, 13.*"
    print(
        f"\nPASS: no FAILED/ERROR/UNIMPLEMENTED in {judged}"
        if ok
        else f"\nFAIL: FAILED/ERROR/UNIMPLEMENTED in {judged}"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
