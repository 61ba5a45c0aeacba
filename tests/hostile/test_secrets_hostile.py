"""Secrets and server text: recordings, debug logs, reprs, metrics, telemetry, errors (F9, F10, F11)."""

from __future__ import annotations

import json
import logging
import os
import random
import string
import time
from pathlib import Path
from typing import Any

import pytest

import zen_websocket as zw
from tests.hostile.rawserver import OP_CLOSE, OP_TEXT, RawConn, Serve
from tests.timeunit import ms

MB = 1024 * 1024


def _secret(label: str, length: int = 40, seed: int = 0) -> str:
    """A distinctive random secret: no 8 characters of it occur in ordinary log text by chance."""
    rng = random.Random(f"{label}-{seed}")
    return label + "".join(rng.choices(string.ascii_letters + string.digits, k=length - len(label)))


CLIENT_SECRET = _secret("CS")
ACCESS_TOKEN = _secret("AT", 64)
REFRESH_TOKEN = _secret("RT", 64)
OKX_API_KEY = _secret("OK", 36)
OKX_PASSPHRASE = _secret("OP", 24)
OKX_SIGN = _secret("OS", 44)
BYBIT_API_KEY = _secret("BK", 18)
BYBIT_SIGNATURE = _secret("BS", 64)
API_SECRET = _secret("AS", 48)

OKX_LOGIN = {
    "op": "login",
    "args": [{"apiKey": OKX_API_KEY, "passphrase": OKX_PASSPHRASE, "timestamp": "1700000000", "sign": OKX_SIGN}],
}
BYBIT_AUTH = {"op": "auth", "args": [BYBIT_API_KEY, 1700000000000, BYBIT_SIGNATURE]}
API_SECRET_MESSAGE = {"op": "configure", "apiKeyName": "desk-7", "apiSecret": API_SECRET}


def _echo_texts_politely(conn: RawConn) -> None:
    """Echo every text frame; answer the close."""
    conn.accept_upgrade()
    while True:
        _, opcode, payload = conn.recv_frame(timeout=30.0)
        if opcode == OP_TEXT:
            conn.send_frame(OP_TEXT, payload)
        elif opcode == OP_CLOSE:
            conn.send_frame(OP_CLOSE, payload)
            conn.close_tcp()
            return


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records]


def _leaks(secret: str, texts: list[str], width: int = 8) -> list[str]:
    """The ``width``-character pieces of ``secret`` found in ``texts``."""
    pieces = {secret[i : i + width] for i in range(len(secret) - width + 1)}
    return sorted(piece for piece in pieces if any(piece in text for text in texts))


# -- F9: recordings -------------------------------------------------------------------


def test_f9_recording_is_private_and_holds_no_secret(serve: Serve, tmp_path: Path) -> None:
    """``record_to`` creates a 0600 file, and no credential or token (either direction) is written to it."""

    def exchange(conn: RawConn) -> None:
        conn.accept_upgrade()
        auth = conn.recv_json()
        conn.send_json(
            {
                "jsonrpc": "2.0",
                "id": auth["id"],
                "result": {
                    "access_token": ACCESS_TOKEN,
                    "refresh_token": REFRESH_TOKEN,
                    "expires_in": 900,
                    "scope": "session:desk-7",
                    "token_type": "bearer",
                },
            }
        )
        conn.recv_json()  # OKX login
        conn.send_json({"event": "login", "code": "0", "msg": ""})
        conn.recv_json()  # Bybit auth
        conn.send_json({"op": "auth", "success": True, "ret_msg": ""})
        conn.recv_json()  # apiSecret
        conn.send_json({"op": "configure", "success": True, "apiSecret": API_SECRET})
        conn.finish()

    server = serve(exchange)
    path = tmp_path / "s.jsonl"
    client = zw.connect(server.url, heartbeat_config=None, record_to=str(path), close_timeout=ms(300))
    try:
        mode = os.stat(path).st_mode & 0o777
        result = client.request(
            "public/auth",
            {"grant_type": "client_credentials", "client_id": "desk-7-client", "client_secret": CLIENT_SECRET},
            timeout=5.0,
        )
        assert result["access_token"] == ACCESS_TOKEN  # masking is for the file, not for the program
        client.send_message(OKX_LOGIN)
        assert client.recv_json(timeout=5.0)["event"] == "login"
        client.send_message(BYBIT_AUTH)
        assert client.recv_json(timeout=5.0)["op"] == "auth"
        client.send_message(API_SECRET_MESSAGE)
        assert client.recv_json(timeout=5.0)["op"] == "configure"
    finally:
        client.close()
    assert mode == 0o600, f"recording created with mode {mode:o}"
    text = path.read_text(encoding="utf-8")
    records = [json.loads(line) for line in text.splitlines() if line.strip()]
    # The recording did capture the exchange (both directions), so absence below means masking.
    assert {r["dir"] for r in records} >= {"in", "out"}
    assert "desk-7-client" in text and "1700000000" in text and "desk-7" in text
    secrets = [
        CLIENT_SECRET,
        ACCESS_TOKEN,
        REFRESH_TOKEN,
        OKX_API_KEY,
        OKX_PASSPHRASE,
        OKX_SIGN,
        BYBIT_API_KEY,
        BYBIT_SIGNATURE,
        API_SECRET,
    ]
    assert [s for s in secrets if s in text] == []


# -- F10: debug logs, reprs, metrics, telemetry, config errors -----------------------------

LONG_REFRESH_TOKEN = _secret("rt", 214, seed=10)
TOKEN_AT = 400  # where the token starts in the frame: it straddles the 500th character


def _padded(prefix: str, suffix: str) -> str:
    """``prefix + pad + suffix`` where ``pad`` puts the end of ``prefix + pad`` at TOKEN_AT."""
    return "p" * (TOKEN_AT - len(prefix) - len(suffix))


def test_f10_debug_log_never_shows_a_token_that_straddles_the_cut(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """A 214-char refresh_token across character 500 of a frame: no 8 of its characters reach the debug log."""

    def exchange(conn: RawConn) -> None:
        conn.accept_upgrade()
        request = conn.recv_json()
        head = '{"jsonrpc":"2.0","id":' + json.dumps(request["id"]) + ',"result":{"pad":"'
        middle = '","refresh_token":"'
        text = head + _padded(head, middle) + middle + LONG_REFRESH_TOKEN + '","expires_in":900}}'
        assert text.index(LONG_REFRESH_TOKEN) == TOKEN_AT
        conn.send_text(text)
        conn.finish()

    caplog.set_level(logging.DEBUG)
    server = serve(exchange)
    client = zw.connect(server.url, heartbeat_config=None, debug=True, close_timeout=ms(300))
    try:
        # Out: the same token, across character 500 of the frame the client writes.
        head = '{"jsonrpc":"2.0","method":"public/auth","params":{"pad":"'
        middle = '","grant_type":"refresh_token","refresh_token":"'
        params = {"pad": _padded(head, middle), "grant_type": "refresh_token", "refresh_token": LONG_REFRESH_TOKEN}
        result = client.request("public/auth", params, timeout=5.0)
        assert result["refresh_token"] == LONG_REFRESH_TOKEN
    finally:
        client.close()
    messages = _messages(caplog)
    assert any("refresh_token" in m for m in messages), "the frames were not logged at all"
    assert _leaks(LONG_REFRESH_TOKEN, messages) == []


def test_f10_debug_log_masks_okx_and_bybit_credentials(serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    """OKX ``passphrase``/``sign``/``apiKey``, Bybit auth ``args`` and ``apiSecret`` are masked both ways."""
    caplog.set_level(logging.DEBUG)
    server = serve(_echo_texts_politely)
    client = zw.connect(server.url, heartbeat_config=None, debug=True, close_timeout=ms(300))
    try:
        for message in (OKX_LOGIN, BYBIT_AUTH, API_SECRET_MESSAGE):
            client.send_message(message)
            assert client.recv_json(timeout=5.0) == message  # echoed: the secret comes back in as well
    finally:
        client.close()
    messages = _messages(caplog)
    assert any("login" in m for m in messages) and any("apiKeyName" in m for m in messages), "frames not logged"
    for secret in (OKX_API_KEY, OKX_PASSPHRASE, OKX_SIGN, BYBIT_API_KEY, BYBIT_SIGNATURE, API_SECRET):
        assert _leaks(secret, messages) == [], secret[:2]


def test_f10_listen_key_in_the_url_path_is_never_shown(serve: Serve, caplog: pytest.LogCaptureFixture) -> None:
    """A 60-char listen key in the URL path: not in logs (INFO included), repr, metrics or telemetry metadata."""
    listen_key = _secret("LK", 60)
    seen: list[str] = []

    def handler(event: Any, measurements: Any, metadata: Any, config: Any) -> None:
        seen.append(repr(metadata))

    caplog.set_level(logging.DEBUG)
    server = serve(_echo_texts_politely)
    url = f"ws://127.0.0.1:{server.port}/ws/{listen_key}"
    zw.telemetry.attach_many("hostile-f10-listen-key", zw.telemetry.EVENTS, handler)
    try:
        client = zw.connect(url, heartbeat_config=None, debug=True, close_timeout=ms(300))
        try:
            client.send_message("hello")
            assert client.recv(timeout=5.0) == "hello"
            shown = [repr(client), str(client.get_state_metrics()["url"])]
        finally:
            client.close()
    finally:
        zw.telemetry.detach("hostile-f10-listen-key")
    assert server.conn(0).request_line == f"GET /ws/{listen_key} HTTP/1.1"  # the real URL was used
    messages = _messages(caplog)
    assert any(r.levelno == logging.INFO and "127.0.0.1" in r.getMessage() for r in caplog.records)
    assert seen, "no telemetry event was emitted"
    assert [m for m in messages if listen_key in m] == []
    assert [s for s in shown if listen_key in s] == []
    assert [s for s in seen if listen_key in s] == []


def test_f10_config_error_for_a_url_without_host_hides_its_credentials() -> None:
    """``ws://user:pw123@/x?token=tok123`` has no host: ConfigError, without the password or the token."""
    with pytest.raises(zw.ConfigError) as info:
        zw.Client("ws://user:pw123@/x?token=tok123")
    assert "pw123" not in str(info.value)
    assert "tok123" not in str(info.value)


# -- F11: unbounded server text ---------------------------------------------------------


def test_f11_a_5_mb_error_message_gives_a_bounded_json_rpc_error(
    serve: Serve, caplog: pytest.LogCaptureFixture
) -> None:
    """An error response whose message is 5 MB: JsonRpcError's str() stays <= 1,024 chars, log lines <= 4,096."""

    def refuse(conn: RawConn) -> None:
        conn.accept_upgrade()
        request = conn.recv_json()
        error = {"code": -32000, "message": "E" * (5 * MB)}
        conn.send_json({"jsonrpc": "2.0", "id": request["id"], "error": error})
        conn.finish()

    caplog.set_level(logging.DEBUG)
    server = serve(refuse)
    client = zw.connect(server.url, heartbeat_config=None, close_timeout=ms(300))
    try:
        with pytest.raises(zw.JsonRpcError) as info:
            client.request("private/buy", {"amount": 10}, timeout=5.0)
    finally:
        client.close()
    assert info.value.code == -32000
    assert len(str(info.value)) <= 1024
    assert max(map(len, _messages(caplog)), default=0) <= 4096


@pytest.mark.parametrize("where", ["body", "reason"])
def test_f11_a_403_with_2_mb_of_text_gives_a_bounded_connect_error(
    serve: Serve, caplog: pytest.LogCaptureFixture, where: str
) -> None:
    """A 403 whose body (or reason phrase) is 2 MB: ConnectError's str() stays <= 1,024 chars, log lines <= 4,096."""
    text = "R" * (2 * MB)
    if where == "body":
        response = f"HTTP/1.1 403 Forbidden\r\nContent-Length: {len(text)}\r\n\r\n{text}"
    else:
        response = f"HTTP/1.1 403 {text}\r\nContent-Length: 0\r\n\r\n"

    def refuse(conn: RawConn) -> None:
        conn.read_request()
        try:
            conn.send_raw(response.encode("ascii"))
        except OSError:
            pass  # the client stopped reading early: fine
        conn.close_tcp()

    caplog.set_level(logging.DEBUG)
    server = serve(refuse)
    started = time.monotonic()
    with pytest.raises(zw.ConnectError) as info:
        zw.connect(server.url, heartbeat_config=None, retry_count=0, timeout=5.0)
    assert time.monotonic() - started < 5.0
    assert len(str(info.value)) <= 1024
    assert max(map(len, _messages(caplog)), default=0) <= 4096
