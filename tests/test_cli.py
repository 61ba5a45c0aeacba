"""The ``zen-websocket`` command, run for real (``python -m zen_websocket``) against loopback servers.

Each test starts its server in this process and the command in a subprocess;
stdout must hold only messages (one per line), stderr the status, the
summary and errors.
"""

from __future__ import annotations

import base64
import configparser
import http.server
import importlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import zen_websocket as zw
from tests.timeunit import SCALE
from zen_websocket import cli
from zen_websocket.testing import BinanceEmulator, DeribitEmulator, MockWebSocketServer

ROOT = Path(__file__).resolve().parent.parent
# Seconds one command may take, interpreter start included.
BUDGET = 8.0 * SCALE


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONPATH": str(ROOT)}
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        env.pop(name, None)
    return env


def run_cli(*args: str, timeout: float = BUDGET) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zen_websocket", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
    )


# The command with Python's own Ctrl-C handler restored: a test runner started
# in the background can hand its children an ignored SIGINT.
_WITH_CTRL_C = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv = ['zen-websocket', *sys.argv[1:]]; runpy.run_module('zen_websocket', run_name='__main__')"
)


def start_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _WITH_CTRL_C, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )


def interrupt(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    """Ctrl-C the command; its exit status, stdout and stderr."""
    proc.send_signal(signal.SIGINT)
    try:
        stdout, stderr = proc.communicate(timeout=BUDGET)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"Ctrl-C did not stop the command\n{stderr}")
    return proc.returncode, stdout, stderr


@pytest.fixture
def pushing_server():
    """A server that sends five numbered messages (text, one of them binary) to each connection."""

    def greet(conn):
        for i in range(1, 5):
            conn.send(json.dumps({"seq": i}))
        conn.send(b"\x00\xffbin")

    with MockWebSocketServer(on_connect=greet) as server:
        yield server


# -- tail ---------------------------------------------------------------------------------------


def test_tail_prints_each_message_on_its_own_line_and_a_summary_on_stderr(pushing_server):
    result = run_cli("tail", pushing_server.url, "--count", "5")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        '{"seq": 1}',
        '{"seq": 2}',
        '{"seq": 3}',
        '{"seq": 4}',
        "base64:" + base64.b64encode(b"\x00\xffbin").decode(),
    ]
    assert re.search(r"^zen-websocket: 5 messages, 45 bytes, 0 reconnects in \d+\.\ds$", result.stderr, re.M)
    assert f"connected to {pushing_server.url}" in result.stderr


def test_tail_stops_after_count_messages(pushing_server):
    result = run_cli("tail", pushing_server.url, "-n", "2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['{"seq": 1}', '{"seq": 2}']
    assert "2 messages" in result.stderr


def test_tail_stops_after_seconds_when_nothing_arrives(server):
    started = time.monotonic()
    result = run_cli("tail", server.url, "--seconds", "0.3")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert "0 messages" in result.stderr
    assert time.monotonic() - started < BUDGET


def test_a_message_is_always_one_line():
    """Pretty-printed JSON is compacted, other line breaks escaped, binary shown as base64."""
    pretty = '{\n  "a": [\n    1,\n    97000.10000000000001\n  ],\n  "b": "é"\n}'
    assert cli._one_line(pretty) == ('{"a": [1,97000.10000000000001],"b": "é"}', len(pretty.encode()))
    assert cli._one_line("two\r\nlines") == ("two\\r\\nlines", 10)
    assert cli._one_line(b"\x01\x02") == ("base64:AQI=", 2)
    assert cli._one_line('{"compact":1}') == ('{"compact":1}', 13)


def test_tail_subscribes_in_the_deribit_dialect_and_prints_the_feed():
    with DeribitEmulator() as exchange:
        feed = exchange.start_feed(
            lambda seq: exchange.publish("deribit_price_index.btc_usd", {"price": 97000 + seq}), interval=0.01
        )
        result = run_cli(
            "tail", exchange.url, "--subscribe", "deribit_price_index.btc_usd", "--count", "3", "--heartbeat", "none"
        )
        feed.stop()
        subscribes = [r for r in exchange.requests if r.get("method") == "public/subscribe"]
    assert result.returncode == 0, result.stderr
    assert subscribes and subscribes[0]["params"] == {"channels": ["deribit_price_index.btc_usd"]}
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 3
    assert all(line["params"]["channel"] == "deribit_price_index.btc_usd" for line in lines)
    assert "subscribed to deribit_price_index.btc_usd" in result.stderr


def test_tail_with_the_deribit_heartbeat_sets_it_on_the_exchange():
    with DeribitEmulator() as exchange:
        exchange.start_feed(lambda seq: exchange.publish("deribit_price_index.btc_usd", {"seq": seq}), interval=0.01)
        result = run_cli(
            "tail",
            exchange.url,
            "-s",
            "deribit_price_index.btc_usd",
            "--heartbeat",
            "deribit",
            "--heartbeat-interval",
            "10",
            "--count",
            "1",
        )
        methods = [(r.get("method"), r.get("params")) for r in exchange.requests]
    assert result.returncode == 0, result.stderr
    assert ("public/set_heartbeat", {"interval": 10}) in methods


def test_tail_subscribes_in_the_binance_dialect():
    with BinanceEmulator() as binance:
        binance.start_trades("btcusdt@trade", interval=0.01)
        result = run_cli("tail", binance.url + "/ws", "--format", "binance", "-s", "btcusdt@trade", "--count", "2")
        control = list(binance.control_messages)
    assert result.returncode == 0, result.stderr
    assert control[0]["method"] == "SUBSCRIBE" and control[0]["params"] == ["btcusdt@trade"]
    trades = [json.loads(line) for line in result.stdout.splitlines()]
    assert [trade["s"] for trade in trades] == ["BTCUSDT", "BTCUSDT"]


def test_tail_records_the_session(pushing_server, tmp_path, capsys):
    path = tmp_path / "session.jsonl"
    assert cli.main(["tail", pushing_server.url, "--count", "5", "--record", str(path)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 5
    counts = zw.recorder.metadata(str(path))["counts"]
    assert counts["in_text"] == 4 and counts["in_binary"] == 1


def test_tail_sends_extra_headers_and_never_prints_them(pushing_server, capsys):
    assert cli.main(["tail", pushing_server.url, "-n", "1", "-H", "X-Api-Key: s3cr3t", "--verbose"]) == 0
    assert pushing_server.handshake_headers[0]["X-Api-Key"] == "s3cr3t"
    assert "s3cr3t" not in capsys.readouterr().err


def test_tail_cannot_connect_exits_1_with_one_line_naming_the_url_and_the_cause():
    url = "ws://127.0.0.1:9/feed?token=hunter2"  # nothing listens on port 9 (discard)
    result = run_cli("tail", url, "--retry-count", "0")
    assert result.returncode == 1
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if "cannot connect" in line]
    assert len(errors) == 1, result.stderr
    assert "ws://127.0.0.1:9/feed" in errors[0] and "(1 attempt)" in errors[0] and "econnrefused" in errors[0]
    assert "hunter2" not in result.stderr and "Traceback" not in result.stderr


def test_tail_of_a_plain_http_server_fails_at_once():
    """A 200 answer is not a WebSocket endpoint: fatal after one attempt, whatever retry_count says."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"hello")

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=httpd.serve_forever, name="test-http", daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        result = run_cli("tail", f"ws://127.0.0.1:{httpd.server_port}/", "--retry-count", "3")
        elapsed = time.monotonic() - started
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
    assert result.returncode == 1
    assert "(1 attempt)" in result.stderr and "not a WebSocket endpoint" in result.stderr
    assert elapsed < BUDGET / 2  # no 1 + 2 + 4 s of backoff


def test_tail_with_an_invalid_url_is_a_usage_error(capsys):
    assert cli.main(["tail", "http://127.0.0.1:9/"]) == 2
    assert "ws:// or wss://" in capsys.readouterr().err


def test_tail_reports_the_end_of_the_connection_and_exits_1():
    """The server goes away for good: the command says why and exits 1."""
    with MockWebSocketServer() as server:
        proc = subprocess.Popen(
            [sys.executable, "-m", "zen_websocket", "tail", server.url, "--retry-count", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(),
        )
        try:
            assert server.wait_for_connections(1, timeout=BUDGET)
            server.refuse_connections()
            server.drop_connections()
            _, stderr = proc.communicate(timeout=BUDGET)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 1
    assert "the connection ended: retries_exhausted" in stderr


def test_ctrl_c_exits_130_quietly(pushing_server):
    proc = start_cli("tail", pushing_server.url)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == '{"seq": 1}'  # it is streaming...
        status, _, stderr = interrupt(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert status == 130
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert re.search(r"^zen-websocket: \d messages?, .* reconnects in", stderr, re.M)  # the summary still comes


def test_help_shows_examples():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "examples:" in result.stdout and "zen-websocket tail" in result.stdout
    for command in ("tail", "replay", "serve"):
        assert command in result.stdout


def test_tail_help_lists_the_design_options():
    tail_help = cli.build_parser()._subparsers._group_actions[0].choices["tail"].format_help()  # type: ignore[union-attr]
    for flag in ("--subscribe", "--format", "--heartbeat", "--count", "--seconds", "--record"):
        assert flag in tail_help


def test_no_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main([])
    assert info.value.code == 2 and "usage:" in capsys.readouterr().err


# -- replay and serve ---------------------------------------------------------------------------


@pytest.fixture
def recording(tmp_path) -> Path:
    """A real recording: two text echoes and one binary echo."""
    path = tmp_path / "session.jsonl"
    with MockWebSocketServer(echo=True) as server:
        with zw.connect(str(server.url), record_to=str(path)) as client:
            for data in ("first", {"n": 2}, b"\x01\x02"):
                client.send_message(data)
                client.recv(timeout=5)
    return path


def test_replay_prints_the_incoming_messages(recording):
    result = run_cli("replay", str(recording))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["first", '{"n":2}', "base64:AQI="]
    assert "3 messages" in result.stderr and "Traceback" not in result.stderr


def test_replay_with_speed_keeps_the_recorded_gaps(tmp_path, capsys):
    path = tmp_path / "gaps.jsonl"
    records = [
        {"ts": "2026-01-01T00:00:00.000000+00:00", "dir": "in", "type": "text", "data": "a"},
        {"ts": "2026-01-01T00:00:01.000000+00:00", "dir": "in", "type": "text", "data": "b"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    started = time.monotonic()
    assert cli.main(["replay", str(path), "--speed", "4"]) == 0  # a 1 s gap played in 0.25 s
    elapsed = time.monotonic() - started
    assert capsys.readouterr().out.splitlines() == ["a", "b"]
    assert elapsed >= 0.25


def test_replay_of_a_missing_file_exits_1_with_one_line(tmp_path, capsys):
    assert cli.main(["replay", str(tmp_path / "nope.jsonl")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read" in err


@pytest.mark.parametrize("command", ["replay", "serve"])
def test_a_file_that_is_not_a_recording_exits_1(tmp_path, capsys, command):
    path = tmp_path / "notes.txt"
    path.write_text("hello\n")
    assert cli.main([command, str(path)]) == 1
    assert "is not a recording" in capsys.readouterr().err


def test_serve_plays_a_recording_to_a_client_then_stops_on_ctrl_c(recording):
    proc = start_cli("serve", str(recording), "--port", "0")
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"at (ws://127\.0\.0\.1:\d+)", line)
        assert match, line
        with zw.connect(match.group(1)) as client:
            assert [client.recv(timeout=5) for _ in range(3)] == ["first", '{"n":2}', b"\x01\x02"]
        status, _, stderr = interrupt(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert status == 130
    assert "served 1 connection" in stderr and "Traceback" not in stderr


def test_tail_reads_what_serve_serves(recording):
    proc = start_cli("serve", str(recording), "--port", "0")
    try:
        assert proc.stderr is not None
        url = re.search(r"at (ws://\S+)", proc.stderr.readline())
        assert url
        result = run_cli("tail", url.group(1), "--count", "3")
        interrupt(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["first", '{"n":2}', "base64:AQI="]


def test_serve_with_seconds_stops_by_itself(recording, capsys):
    assert cli.main(["serve", str(recording), "--seconds", "0.2"]) == 0
    assert "served 0 connections" in capsys.readouterr().err


# -- how it is installed ------------------------------------------------------------------------


def test_the_console_script_is_declared_and_points_at_main():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    entries = config["options.entry_points"]["console_scripts"].strip().splitlines()
    scripts = {name.strip(): target.strip() for name, _, target in (line.partition("=") for line in entries)}
    module, _, attr = scripts["zen-websocket"].partition(":")
    assert getattr(importlib.import_module(module), attr) is cli.main


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"zen-websocket {zw.__version__}"
