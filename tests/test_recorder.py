"""record_to: every frame, both directions, as JSON lines; replay and metadata."""

from __future__ import annotations

import json

import zen_websocket as zw
from tests.timeunit import ms


def test_session_is_recorded_and_replayed(echo_server, tmp_path):
    path = str(tmp_path / "session.jsonl")
    with zw.connect(echo_server.url, record_to=path, heartbeat_config=None, close_timeout=ms(500)) as client:
        client.send_message("hello")
        assert client.recv(2) == "hello"
        client.send_message(b"\x01\x02")
        assert client.recv(2) == b"\x01\x02"
        client.send_message({"a": 1})
        client.recv(2)
    with open(path, encoding="utf-8") as file:
        records = [json.loads(line) for line in file]
    assert [(r["dir"], r["type"]) for r in records[:6]] == [
        ("out", "text"),
        ("in", "text"),
        ("out", "binary"),
        ("in", "binary"),
        ("out", "text"),
        ("in", "text"),
    ]
    assert records[0]["data"] == "hello"
    assert records[2]["data"] == "AQI="  # base64
    assert records[4]["data"] == '{"a":1}'
    assert "T" in records[0]["ts"] and "." in records[0]["ts"]
    seen = []
    assert zw.recorder.replay(path, seen.append) == len(records)
    assert seen[3]["data"] == b"\x01\x02"
    meta = zw.recorder.metadata(path)
    assert meta["count"] == len(records)
    assert meta["counts"]["out_text"] == 2 and meta["counts"]["in_binary"] == 1
    assert meta["duration"] >= 0


def test_failed_connect_leaves_no_recorder_thread(tmp_path):
    path = str(tmp_path / "none.jsonl")
    try:
        zw.connect("ws://127.0.0.1:9", record_to=path, retry_count=0, heartbeat_config=None)
    except zw.ConnectError as exc:
        assert exc.reason == "econnrefused"
    else:  # pragma: no cover - port 9 (discard) is closed on loopback
        raise AssertionError("connect to a closed port succeeded")
