"""record_to: every frame, both directions, as JSON lines, secrets masked, owner-only; replay and metadata."""

from __future__ import annotations

import base64
import json
import logging
import os
import stat
import threading

import pytest

import zen_websocket as zw
from tests.timeunit import ms, wait_until
from zen_websocket import recorder as recorder_module
from zen_websocket.recorder import Recorder, iter_records, metadata, replay

SECRETS = (
    "s3cr3t-value",
    "AT-access-token",
    "RT-refresh-token",
    "okx-key",
    "okx-pass",
    "okx-sign",
    "bybit-key",
    "bybit-sig",
    "bin-secret",
)


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


def mode_of(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def read_lines(path) -> list[dict]:
    with open(path, encoding="utf-8") as file:
        return [json.loads(line) for line in file]


@pytest.fixture
def usual_umask():
    """The common 022, under which a plain open() would create a world-readable file."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_a_new_recording_is_readable_by_its_owner_only(tmp_path, usual_umask):
    path = tmp_path / "new.jsonl"
    recorder = Recorder(str(path), "t")
    recorder.close()
    assert mode_of(path) == 0o600


def test_an_existing_recording_is_appended_to_and_keeps_its_mode(tmp_path):
    path = tmp_path / "old.jsonl"
    path.write_text('{"ts": "2026-01-01T00:00:00.000000+00:00", "dir": "in", "type": "text", "data": "old"}\n')
    path.chmod(0o640)
    recorder = Recorder(str(path), "t")
    recorder.record("out", "new")
    recorder.close()
    assert mode_of(path) == 0o640
    assert [(r["dir"], r["data"]) for r in read_lines(path)] == [("in", "old"), ("out", "new")]


def test_secrets_are_masked_in_every_kind_of_record(tmp_path):
    path = tmp_path / "secrets.jsonl"
    recorder = Recorder(str(path), "t")
    recorder.record("out", '{"method":"public/auth","params":{"client_id":"cid","client_secret":"s3cr3t-value"}}')
    recorder.record("in", '{"result":{"access_token":"AT-access-token","refresh_token":"RT-refresh-token"}}')
    recorder.record(
        "out", '{"op":"login","args":[{"apiKey":"okx-key","passphrase":"okx-pass","timestamp":"1","sign":"okx-sign"}]}'
    )
    recorder.record("out", '{"op":"auth","args":["bybit-key",1662350400000,"bybit-sig"]}')
    recorder.record("out", b'{"apiSecret":"bin-secret","n":1}')
    recorder.record("in", b"\xff\x00apiSecret")
    recorder.record("close", {"code": 4001, "reason": '{"token":"AT-access-token"}'})
    recorder.record("out", {"password": "s3cr3t-value", "n": [1]})
    recorder.close()
    content = path.read_text(encoding="utf-8")
    for secret in SECRETS:
        assert secret not in content
    records = read_lines(path)
    assert [(r["dir"], r["type"], r["data"]) for r in records] == [
        ("out", "text", '{"method":"public/auth","params":{"client_id":"cid","client_secret":"***"}}'),
        ("in", "text", '{"result":{"access_token":"***","refresh_token":"***"}}'),
        ("out", "text", '{"op":"login","args":[{"apiKey":"***","passphrase":"***","timestamp":"1","sign":"***"}]}'),
        ("out", "text", '{"op":"auth","args":["***",1662350400000,"***"]}'),
        ("out", "binary", base64.b64encode(b'{"apiSecret":"***","n":1}').decode("ascii")),
        ("in", "binary", base64.b64encode(b"\xff\x00apiSecret").decode("ascii")),
        ("in", "close", {"code": 4001, "reason": '{"token":"***"}'}),
        ("out", "text", {"password": "***", "n": [1]}),
    ]


def test_replay_and_metadata_read_a_masked_recording(tmp_path):
    path = str(tmp_path / "replay.jsonl")
    recorder = Recorder(path, "t")
    recorder.record("out", '{"client_secret":"s3cr3t-value"}')
    recorder.record("in", b'{"token":"AT-access-token"}')
    recorder.record("close", {"code": 1000, "reason": ""})
    recorder.close()
    seen: list[dict] = []
    assert replay(path, seen.append) == 3
    assert [r["data"] for r in seen] == ['{"client_secret":"***"}', b'{"token":"***"}', {"code": 1000, "reason": ""}]
    assert [r["data"] for r in iter_records(path)] == [r["data"] for r in seen]
    meta = metadata(path)
    assert meta["count"] == 3
    assert meta["counts"] == {"out_text": 1, "in_binary": 1, "in_close": 1}
    assert meta["first"] == seen[0]["ts"] and meta["last"] == seen[2]["ts"]


@pytest.mark.parametrize(
    ("where", "reason"),
    [("missing-dir/x.jsonl", "No such file or directory"), ("", "Is a directory")],
)
def test_a_path_that_cannot_be_opened_raises_config_error_naming_record_to(tmp_path, where, reason):
    path = str(tmp_path / where) if where else str(tmp_path)
    with pytest.raises(zw.ConfigError) as info:
        Recorder(path, "t")
    assert info.value.option == "record_to"
    assert str(info.value) == f"record_to: cannot open {path!r} for appending: {reason}"
    assert isinstance(info.value.__cause__, OSError)


def test_a_path_with_a_nul_raises_config_error(tmp_path):
    with pytest.raises(zw.ConfigError) as info:
        Recorder(str(tmp_path / "a\0b"), "t")
    assert info.value.option == "record_to"
    assert str(info.value).endswith("for appending: embedded null byte")


def test_connect_with_an_unopenable_record_to_raises_config_error(echo_server, tmp_path):
    client = zw.Client(echo_server.url, record_to=str(tmp_path / "missing" / "x.jsonl"), heartbeat_config=None)
    with pytest.raises(zw.ConfigError) as info:
        client.connect()
    assert info.value.option == "record_to"
    assert client.get_state() == "disconnected"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")
def test_a_full_disk_stops_the_recording_not_the_caller(caplog):
    caplog.set_level(logging.ERROR, logger="zen_websocket.recorder")
    recorder = Recorder("/dev/full", "t")
    recorder.record("in", "first")
    assert wait_until(lambda: caplog.records)
    for n in range(100):  # skipped: one error, not one per frame
        recorder.record("in", f"frame {n}")
    recorder.close()
    recorder.record("in", "after close")  # never raises
    assert [r.getMessage() for r in caplog.records] == [
        "writing the recording /dev/full failed; recording stopped",
        "closing the recording /dev/full failed",  # the buffered line still cannot be written
    ]
    assert all(r.exc_info for r in caplog.records)


def test_a_value_json_cannot_encode_loses_its_line_only(tmp_path, caplog):
    caplog.set_level(logging.ERROR, logger="zen_websocket.recorder")
    path = tmp_path / "odd.jsonl"
    recorder = Recorder(str(path), "t")
    recorder.record("out", {"x": object()})
    recorder.record("out", "next")
    recorder.close()
    assert [r["data"] for r in read_lines(path)] == ["next"]
    assert [r.getMessage() for r in caplog.records] == [f"a frame could not be recorded to {path}; skipped"]
    assert caplog.records[0].exc_info


def test_each_frame_reaches_the_file_once_the_queue_is_empty(tmp_path):
    """A crash loses at most what was still queued: the writer flushes whenever it catches up."""
    path = tmp_path / "flushed.jsonl"
    recorder = Recorder(str(path), "t")
    try:
        recorder.record("in", "one")
        assert wait_until(lambda: path.read_text(encoding="utf-8").endswith('"data": "one"}\n'))
    finally:
        recorder.close()


def test_the_writer_is_a_named_daemon_thread_joined_on_close(tmp_path):
    recorder = Recorder(str(tmp_path / "named.jsonl"))
    threads = [t for t in threading.enumerate() if t.name == "zen-ws-recorder-recorder"]
    assert len(threads) == 1 and threads[0].daemon
    recorder.close()
    assert not threads[0].is_alive()


def test_the_public_names():
    assert recorder_module.__all__ == ["Recorder", "iter_records", "metadata", "replay"]


def _handmade(tmp_path, stamps):
    path = tmp_path / "handmade.jsonl"
    lines = [json.dumps({"ts": ts, "dir": "in", "type": "text", "data": str(n)}) for n, ts in enumerate(stamps)]
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    return str(path)


STAMPS = [
    "2026-01-01T00:00:00.000000+00:00",
    "2026-01-01T00:00:01.500000+00:00",
    "2026-01-01T00:00:01.000000+00:00",  # out of order: no negative sleep
    "2026-01-01T00:00:02.000000+00:00",
]


def test_replay_in_realtime_keeps_the_gaps_divided_by_speed(tmp_path):
    path = _handmade(tmp_path, STAMPS)
    slept: list[float] = []
    seen: list[str] = []
    assert replay(path, lambda r: seen.append(r["data"]), realtime=True, speed=2.0, sleep=slept.append) == 4
    assert seen == ["0", "1", "2", "3"]
    assert slept == [0.75, 0.5]


def test_replay_does_not_sleep_unless_realtime(tmp_path):
    path = _handmade(tmp_path, STAMPS)
    slept: list[float] = []
    assert replay(path, lambda r: None, sleep=slept.append) == 4
    assert replay(path, lambda r: None, realtime=True, sleep=slept.append) == 4
    assert slept == [1.5, 1.0]


def test_replay_does_not_sleep_between_frames_of_the_same_instant(tmp_path):
    path = _handmade(tmp_path, [STAMPS[0], STAMPS[0]])
    slept: list[float] = []
    assert replay(path, lambda r: None, realtime=True, sleep=slept.append) == 2
    assert slept == []


@pytest.mark.parametrize("speed", [0, -1.0])
def test_replay_needs_a_positive_speed(tmp_path, speed):
    with pytest.raises(ValueError, match=r"^speed must be positive$"):
        replay(_handmade(tmp_path, STAMPS), lambda r: None, speed=speed)


def test_metadata_of_a_handmade_recording(tmp_path):
    assert metadata(_handmade(tmp_path, STAMPS)) == {
        "count": 4,
        "counts": {"in_text": 4},
        "first": STAMPS[0],
        "last": STAMPS[3],
        "duration": 2.0,
    }


def test_metadata_of_an_empty_recording(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("", encoding="utf-8")
    assert metadata(str(path)) == {"count": 0, "counts": {}, "first": None, "last": None, "duration": 0.0}


def test_close_twice_is_harmless(tmp_path):
    recorder = Recorder(str(tmp_path / "twice.jsonl"), "t")
    recorder.close()
    recorder.close()


def test_a_live_session_records_no_secret(echo_server, tmp_path, usual_umask):
    path = tmp_path / "live.jsonl"
    auth = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "public/auth",
        "params": {"grant_type": "client_credentials", "client_id": "cid", "client_secret": "s3cr3t-value"},
    }
    with zw.connect(echo_server.url, record_to=str(path), heartbeat_config=None, close_timeout=ms(500)) as client:
        client.send_message(auth)
        client.recv(2)
        client.send_message('{"op":"auth","args":["bybit-key",1662350400000,"bybit-sig"]}')
        client.recv(2)
    assert mode_of(path) == 0o600
    content = path.read_text(encoding="utf-8")
    for secret in SECRETS:
        assert secret not in content
    records = read_lines(path)
    masked = (
        '{"jsonrpc":"2.0","id":1,"method":"public/auth","params":'
        '{"grant_type":"client_credentials","client_id":"cid","client_secret":"***"}}'
    )
    assert [(r["dir"], r["data"]) for r in records[:4]] == [
        ("out", masked),
        ("in", masked),
        ("out", '{"op":"auth","args":["***",1662350400000,"***"]}'),
        ("in", '{"op":"auth","args":["***",1662350400000,"***"]}'),
    ]
