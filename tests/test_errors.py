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
