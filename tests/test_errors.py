"""errors.categorize: which failures are worth a reconnect."""

from __future__ import annotations

import socket
import ssl

import pytest

from zen_websocket import errors
from zen_websocket.errors import (
    ConfigError,
    ConnectError,
    ConnectionClosed,
    HeartbeatTimeout,
    JsonRpcError,
    MessageTooLarge,
    ProtocolError,
    RequestTimeout,
    SilenceTimeout,
    categorize,
)


@pytest.mark.parametrize("code", [1000, 1001, 1005, 1006, 1011, 1012, 1013, 1014, 3000, 4000, 4999, None])
def test_server_closes_that_reconnecting_can_fix_are_recoverable(code):
    assert categorize(ConnectionClosed(code)) == "recoverable"


@pytest.mark.parametrize("code", [1002, 1003, 1007, 1009, 1010])
def test_server_closes_caused_by_the_client_are_fatal(code):
    assert categorize(ConnectionClosed(code)) == "fatal"


@pytest.mark.parametrize(
    ("status", "category"),
    [(401, "fatal"), (403, "fatal"), (404, "fatal"), (400, "fatal"), (408, "recoverable"), (429, "recoverable")]
    + [(500, "recoverable"), (502, "recoverable"), (503, "recoverable")],
)
def test_handshake_status_categories(status, category):
    reason = "unauthorized" if status in (401, 403) else "handshake_status"
    assert categorize(ConnectError("x", reason=reason, status_code=status)) == category


@pytest.mark.parametrize(
    "exc",
    [
        TimeoutError(),
        TimeoutError(),
        ConnectionRefusedError(),
        ConnectionResetError(),
        socket.gaierror(),
        ssl.SSLError("alert"),
        HeartbeatTimeout(),
        SilenceTimeout(),
        OSError(113, "unreachable"),
        RuntimeError("unknown"),
    ],
)
def test_transient_failures_are_recoverable(exc):
    assert categorize(exc) == "recoverable"
    assert categorize(ConnectError("x", reason=errors.connect_reason(exc)).with_traceback(None)) == "recoverable"


@pytest.mark.parametrize(
    "exc",
    [
        ssl.SSLCertVerificationError("bad cert"),
        ProtocolError("masked frame"),
        MessageTooLarge(10, 5),
        ConfigError("timeout", "bad"),
        ConnectError("x", reason="unauthorized", status_code=401),
    ],
)
def test_failures_that_would_repeat_are_fatal(exc):
    assert categorize(exc) == "fatal"


def test_connect_error_categorized_by_its_cause():
    try:
        try:
            raise ssl.SSLCertVerificationError("self-signed")
        except ssl.SSLError as cause:
            raise ConnectError("tls", reason="tls") from cause
    except ConnectError as exc:
        assert categorize(exc) == "fatal"
        assert exc.reason == "tls"


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (ConnectionRefusedError(), "econnrefused"),
        (socket.gaierror(), "nxdomain"),
        (TimeoutError(), "timeout"),
        (ssl.SSLError(), "tls"),
        (OSError(113, "No route to host"), "ehostunreach"),
    ],
)
def test_connect_reasons(exc, reason):
    assert errors.connect_reason(exc) == reason


def test_exceptions_carry_data_and_builtin_bases():
    timeout = RequestTimeout(7, "public/test", 1.5)
    assert isinstance(timeout, TimeoutError)
    assert (timeout.request_id, timeout.method, timeout.timeout) == (7, "public/test", 1.5)
    err = JsonRpcError(10028, "too_many_requests", {"x": 1}, 3, "public/subscribe")
    assert (err.code, err.message, err.data, err.request_id, err.method) == (
        10028,
        "too_many_requests",
        {"x": 1},
        3,
        "public/subscribe",
    )
    assert isinstance(ConfigError("a", "b"), ValueError)
    assert issubclass(errors.ConnectionLost, ConnectionClosed)


# -- bounded messages: the peer's text never makes an exception huge ----------


def test_a_json_rpc_error_reads_as_before_when_short():
    err = JsonRpcError(10028, "too_many_requests", {"x": 1}, 3, "public/subscribe")
    assert str(err) == "public/subscribe (id=3) failed: [10028] too_many_requests"
    assert str(JsonRpcError(None, "boom")) == "request (id=None) failed: [None] boom"


def test_a_5_mb_json_rpc_error_message_is_cut_but_kept_whole_on_the_exception():
    message = "x" * 5_000_000
    data = {"reason": "y" * 1_000_000}
    err = JsonRpcError(-32000, message, data, 7, "private/buy")
    assert len(str(err)) <= 1024
    assert str(err) == "private/buy (id=7) failed: [-32000] " + "x" * 200 + "…(+4999800 chars)"
    assert err.message is message
    assert err.data is data


def test_every_part_of_a_json_rpc_error_is_bounded_and_escaped():
    err = JsonRpcError("9" * 5000, "line\nforged", None, "i" * 5000, "m\x1b" * 5000)  # type: ignore[arg-type]
    text = str(err)
    assert len(text) <= 1024
    assert "\n" not in text and "\x1b" not in text
    assert text == (
        "m\\x1b" * 20
        + "…(+9960 chars) (id="
        + "i" * 100
        + "…(+4900 chars)) failed: ["
        + "9" * 100
        + "…(+4900 chars)] line\\nforged"
    )


def test_a_json_rpc_error_masks_secrets_the_server_quotes():
    message = 'invalid params: {"client_secret": "s3cr3t-value", "grant_type": "client_credentials"}'
    err = JsonRpcError(-32602, message, None, 1, "public/auth")
    assert str(err) == (
        'public/auth (id=1) failed: [-32602] invalid params: {"client_secret": "***", "grant_type": "client_credentials"}'
    )
    assert err.message == message


def test_a_non_string_json_rpc_message_is_shown_with_str():
    assert str(JsonRpcError(1, {"msg": "no"}, None, 2, "m")) == "m (id=2) failed: [1] {'msg': 'no'}"  # type: ignore[arg-type]


def test_a_2_mb_connect_error_is_cut_and_escaped():
    reason = "Forbidden\r\n" + "z" * 2_000_000
    err = ConnectError(f"handshake rejected with HTTP 403: {reason}", reason="unauthorized", status_code=403)
    text = str(err)
    assert len(text) <= 1024
    assert text == "handshake rejected with HTTP 403: Forbidden\\r\\n" + "z" * 753 + "…(+1999247 chars)"
    assert err.message == f"handshake rejected with HTTP 403: {reason}"
    assert (err.reason, err.status_code, err.attempts) == ("unauthorized", 403, 1)


def test_a_short_connect_error_reads_as_given():
    err = ConnectError("connect failed (econnrefused): ConnectionRefusedError: refused", reason="econnrefused")
    assert str(err) == "connect failed (econnrefused): ConnectionRefusedError: refused"
    assert err.message == str(err)


def test_a_connect_error_masks_secrets_in_a_quoted_body():
    err = ConnectError('HTTP 400: {"code":-2014,"apiKey":"mbx-key-value"}', status_code=400)
    assert str(err) == 'HTTP 400: {"code":-2014,"apiKey":"***"}'


def test_config_error_names_the_option_and_bounds_its_message():
    message = "must be a plain name, got " + "a\n" * 1000
    err = ConfigError("name", message)
    assert err.option == "name"
    assert err.message is message
    assert (
        str(err) == "name: must be a plain name, got " + "a\\n" * 258 + "…(+1484 chars)"
    )  # 26 + 258 * 2 of 2026 shown
    assert len(str(err)) <= 1024
    assert str(ConfigError("timeout", "bad")) == "timeout: bad"
    assert str(ConfigError("o" * 200, "bad")) == "o" * 100 + "…(+100 chars): bad"


def test_messages_of_the_simple_exceptions():
    assert str(ConnectionClosed(1000, "bye")) == "connection closed (code=1000, bye)"
    assert str(ConnectionClosed()) == "connection closed (no close frame)"
    assert str(ConnectionClosed(None, "retries_exhausted")) == "connection closed (no close frame, retries_exhausted)"
    assert str(MessageTooLarge(20, 10)) == "message of 20 bytes exceeds max_message_size=10"
    assert MessageTooLarge(20, 10).close_code == 1009
    assert ProtocolError("bad").close_code == 1002
    assert str(RequestTimeout(7, "public/test", 1.5)) == "request 'public/test' (id=7) got no response within 1.5s"


def test_connect_error_defaults():
    err = ConnectError("failed")
    assert (err.reason, err.status_code, err.attempts, err.message) == ("error", None, 1, "failed")
