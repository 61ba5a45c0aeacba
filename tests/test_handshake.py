"""handshake: a bounded, capped, abortable WebSocket opening handshake.

Pure parts (response parsing, accept key, request building, extension
parsing, error categories) are tested from bytes. Everything else runs
against raw-socket servers scripted in this file on 127.0.0.1, port 0: they
send exactly the bytes a hostile or broken server would.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import selectors
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.timeunit import FakeClock, ms, wait_until
from zen_websocket.errors import ConfigError, ConnectError, categorize, connect_reason
from zen_websocket.handshake import (
    MAX_HEAD_SIZE,
    MAX_HEADERS,
    MAX_LINE,
    MAX_REFUSAL_BODY,
    Deadline,
    HeadParser,
    accept_key,
    build_request,
    check_request_headers,
    open_connection,
    parse_extensions,
)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3's example key
SECRET = "S3CR3T-value"


# -- pure: accept key, deadline ----------------------------------------------


def test_accept_key_is_the_rfc6455_example():
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_deadline_spreads_one_budget_and_raises_once_spent():
    clock = FakeClock()
    deadline = Deadline(5.0, clock=clock)
    assert deadline.remaining() == pytest.approx(5.0)
    clock.advance(2.0)
    assert deadline.remaining() == pytest.approx(3.0)
    clock.advance(3.0)
    with pytest.raises(TimeoutError, match="5s"):
        deadline.remaining()
    assert Deadline(None, clock=clock).remaining() is None


# -- pure: response head parser ----------------------------------------------

RESPONSE = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"X-Multi: a\r\n"
    b"x-multi:   b  \r\n"
    b"\r\n"
    b"\x81\x02hi"
)


def test_head_parser_splits_status_headers_and_leftover():
    parser = HeadParser()
    assert parser.feed(RESPONSE) is True
    head = parser.head
    assert head is not None
    assert (head.status, head.reason) == (101, "Switching Protocols")
    assert head.get("UPGRADE") == "websocket"
    assert head.get("x-multi") == "a, b"
    assert head.get("absent") is None
    assert head.as_dict() == {"upgrade": "websocket", "connection": "Upgrade", "x-multi": "a, b"}
    assert parser.leftover == b"\x81\x02hi"


def test_head_parser_fed_byte_by_byte_gives_the_same_result():
    parser = HeadParser()
    done = [parser.feed(RESPONSE[i : i + 1]) for i in range(len(RESPONSE))]
    whole = HeadParser()
    whole.feed(RESPONSE)
    assert done.index(True) == RESPONSE.index(b"\r\n\r\n") + 3
    assert (parser.head, parser.leftover) == (whole.head, whole.leftover)


def test_head_parser_accepts_bare_lf_and_http_1_0_and_no_reason():
    parser = HeadParser()
    assert parser.feed(b"HTTP/1.0 200\nA: 1\n\n")
    assert parser.head is not None
    assert (parser.head.status, parser.head.reason, parser.head.get("a")) == (200, "", "1")


@pytest.mark.parametrize(
    "data",
    [
        b"\r\n",
        b"HTTP/2 101 Switching Protocols\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 1010 Nope\r\n\r\n",
        b"HTTP/1.1 101 OK\r\nBad Name: x\r\n\r\n",
        b"HTTP/1.1 101 OK\r\nName : x\r\n\r\n",
        b"HTTP/1.1 101 OK\r\nno colon\r\n\r\n",
        b"HTTP/1.1 101 OK\r\nA: 1\r\n folded\r\n\r\n",
        b"HTTP/1.1 101 OK\r\nA: 1\r2\r\n\r\n",
    ],
)
def test_head_parser_rejects_malformed_responses(data):
    with pytest.raises(ValueError):
        HeadParser().feed(data)


def _line(name: str, total: int) -> bytes:
    """A header line of exactly ``total`` bytes before its CRLF."""
    prefix = f"{name}: ".encode()
    return prefix + b"v" * (total - len(prefix))


def test_head_parser_line_cap_is_exact():
    ok = HeadParser()
    assert ok.feed(b"HTTP/1.1 101 OK\r\n" + _line("A", MAX_LINE) + b"\r\n\r\n")
    with pytest.raises(ValueError, match="longer than 8192"):
        HeadParser().feed(b"HTTP/1.1 101 OK\r\n" + _line("A", MAX_LINE + 1) + b"\r\n\r\n")


def test_head_parser_rejects_an_over_long_line_before_it_ends():
    parser = HeadParser()
    parser.feed(b"HTTP/1.1 101 OK\r\n" + _line("A", MAX_LINE) + b"\r")  # may still be a valid line
    with pytest.raises(ValueError, match="longer than 8192"):
        parser.feed(b"v")


def test_head_parser_header_count_cap_is_exact():
    def head(count: int) -> bytes:
        return b"HTTP/1.1 101 OK\r\n" + b"".join(b"H%d: x\r\n" % i for i in range(count)) + b"\r\n"

    ok = HeadParser()
    assert ok.feed(head(MAX_HEADERS))
    assert ok.head is not None and len(ok.head.headers) == MAX_HEADERS
    with pytest.raises(ValueError, match="more than 128 header lines"):
        HeadParser().feed(head(MAX_HEADERS + 1))


def _head_of_size(size: int) -> bytes:
    """A complete head of exactly ``size`` bytes, lines under MAX_LINE."""
    status = b"HTTP/1.1 101 OK\r\n"
    lines: list[bytes] = []
    left = size - len(status) - 2
    while left > 0:
        take = min(8000, left)
        if 0 < left - take < 10:  # keep the last line long enough for "Hn: "
            take -= 10
        lines.append(_line(f"H{len(lines)}", take - 2) + b"\r\n")
        left -= take
    data = status + b"".join(lines) + b"\r\n"
    assert len(data) == size
    return data


def test_head_parser_head_size_cap_is_exact():
    assert HeadParser().feed(_head_of_size(MAX_HEAD_SIZE))
    with pytest.raises(ValueError, match="larger than 65536"):
        HeadParser().feed(_head_of_size(MAX_HEAD_SIZE + 1))


def test_head_parser_rejects_a_big_head_before_its_end_arrives():
    parser = HeadParser()
    big = _head_of_size(MAX_HEAD_SIZE + 100)[: MAX_HEAD_SIZE - 1]
    assert parser.feed(big) is False
    with pytest.raises(ValueError, match="larger than 65536"):
        parser.feed(b"v")


# -- pure: extensions ----------------------------------------------------------


def test_parse_extensions_reads_names_params_and_quoted_values():
    value = 'permessage-deflate; client_max_window_bits; server_max_window_bits="10" , , x-other;a=b'
    assert parse_extensions(value) == [
        ("permessage-deflate", {"client_max_window_bits": None, "server_max_window_bits": "10"}),
        ("x-other", {"a": "b"}),
    ]
    assert parse_extensions("") == []


@pytest.mark.parametrize(
    "value",
    ["permessage-deflate;", "a b", "a; =1", 'a; b="unterminated', "a; b=1; b=2", "a;b=@", "a,;"],
)
def test_parse_extensions_rejects_malformed_values(value):
    with pytest.raises(ValueError):
        parse_extensions(value)


# -- pure: request building ------------------------------------------------------


def test_request_has_exactly_the_upgrade_headers_then_the_users():
    request = build_request(
        "wss://user:pw@Example.COM:8443/ws/stream?streams=a&b=1#frag",
        KEY,
        headers={"X-MBX-APIKEY": SECRET, "Origin": "https://mine"},
        subprotocols=["json", "v2.proto"],
        extensions=["permessage-deflate; client_max_window_bits"],
    )
    assert request == (
        b"GET /ws/stream?streams=a&b=1 HTTP/1.1\r\n"
        b"Host: example.com:8443\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n"
        b"Sec-WebSocket-Protocol: json, v2.proto\r\n"
        b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        b"X-MBX-APIKEY: S3CR3T-value\r\n"
        b"Origin: https://mine\r\n"
        b"\r\n"
    )


@pytest.mark.parametrize(
    ("url", "start", "host"),
    [
        ("ws://h", b"GET / HTTP/1.1", b"h"),
        ("ws://h:80/a", b"GET /a HTTP/1.1", b"h"),
        ("ws://h:443/", b"GET / HTTP/1.1", b"h:443"),
        ("wss://h:443/", b"GET / HTTP/1.1", b"h"),
        ("wss://h:80/", b"GET / HTTP/1.1", b"h:80"),
        ("ws://[::1]:9000/x", b"GET /x HTTP/1.1", b"[::1]:9000"),
        ("ws://[::1]/x", b"GET /x HTTP/1.1", b"[::1]"),
        ("ws://h/a b/\xe9?q=a b", b"GET /a%20b/%C3%A9?q=a%20b HTTP/1.1", b"h"),
    ],
)
def test_request_line_and_host_port_only_when_not_default(url, start, host):
    lines = build_request(url, KEY).split(b"\r\n")
    assert lines[0] == start
    assert lines[1] == b"Host: " + host


def test_request_sends_neither_origin_nor_userinfo_nor_fragment():
    request = build_request("ws://alice:hunter2@h/p#frag", KEY)
    assert b"origin" not in request.lower()
    assert b"alice" not in request and b"hunter2" not in request and b"frag" not in request


@pytest.mark.parametrize(
    "name",
    ["Host", "upgrade", "CONNECTION", "Sec-WebSocket-Key", "sec-websocket-version"]
    + ["Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions"],
)
def test_headers_the_handshake_sets_cannot_be_replaced(name):
    with pytest.raises(ConfigError, match=name) as info:
        check_request_headers({name: SECRET})
    assert info.value.option == "headers"
    assert SECRET not in str(info.value)


@pytest.mark.parametrize(
    "headers",
    [{"X-A": "ok\r\nX-Injected: 1"}, {"X-A": "a\nb"}, {"X-A": "nul\0"}, {"Bad Name": "x"}, {"X-A": "€uro"}],
)
def test_header_injection_and_bad_names_are_refused(headers):
    with pytest.raises(ConfigError) as info:
        check_request_headers(headers)
    assert info.value.option == "headers"
    assert "Injected" not in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"subprotocols": ["a b"]}, "subprotocols"),
        ({"subprotocols": ["a,b"]}, "subprotocols"),
        ({"extensions": ["permessage-deflate;"]}, "extensions"),
        ({"extensions": ["x\r\nInjected: 1"]}, "extensions"),
    ],
)
def test_bad_subprotocols_and_extension_offers_are_config_errors(kwargs, option):
    with pytest.raises(ConfigError) as info:
        build_request("ws://h/", KEY, **kwargs)
    assert info.value.option == option


@pytest.mark.parametrize("url", ["http://h/", "ws://", "ws://h:99999/", "ws://h\u00a0x/"])
def test_bad_urls_are_config_errors(url):
    with pytest.raises(ConfigError) as info:
        build_request(url, KEY)
    assert info.value.option == "url"


# -- pure: error categories --------------------------------------------------------


@pytest.mark.parametrize(
    ("reason", "status", "category"),
    [
        ("redirect", 301, "fatal"),
        ("redirect", 307, "fatal"),
        ("not_websocket", 200, "fatal"),
        ("bad_handshake", None, "fatal"),
        ("unauthorized", 401, "fatal"),
        ("handshake_status", 404, "fatal"),
        ("handshake_status", 408, "recoverable"),
        ("handshake_status", 429, "recoverable"),
        ("handshake_status", 503, "recoverable"),
        ("handshake_status", 100, "recoverable"),
        ("proxy", 407, "fatal"),
        ("proxy", 502, "recoverable"),
        ("proxy", None, "recoverable"),
        ("timeout", None, "recoverable"),
        ("error", None, "recoverable"),
    ],
)
def test_connect_error_categories(reason, status, category):
    assert categorize(ConnectError("x", reason=reason, status_code=status)) == category


def test_a_missing_proxy_package_is_fatal():
    try:
        try:
            raise ModuleNotFoundError("No module named 'python_socks'")
        except ImportError as cause:
            raise ConnectError("pip install python-socks", reason="proxy") from cause
    except ConnectError as exc:
        assert categorize(exc) == "fatal"


class _StatusError(Exception):
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (401, "unauthorized"),
        (403, "unauthorized"),
        (302, "redirect"),
        (200, "not_websocket"),
        (500, "handshake_status"),
    ],
)
def test_connect_reason_of_foreign_status_errors(status, reason):
    assert connect_reason(_StatusError(status)) == reason


# -- loopback servers ----------------------------------------------------------------

Script = Callable[["RawServer", socket.socket], None]


def read_request(conn: socket.socket) -> bytes:
    """The request head (bounded: the client under test is ours)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            raise EOFError("client closed before its request ended")
        data += chunk
        assert len(data) < 65536
    return data


def request_key(request: bytes) -> str:
    for line in request.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"sec-websocket-key":
            return value.strip().decode()
    raise AssertionError("no Sec-WebSocket-Key in the request")


def upgrade(request: bytes, *extra: str, accept: str | None = None) -> bytes:
    """A valid 101 answer to ``request`` plus ``extra`` header lines."""
    key = request_key(request)
    digest = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept if accept is not None else digest.decode()}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class RawServer:
    """A loopback TCP server running ``script(server, conn)`` for each connection.

    One thread accepts and runs the scripts in turn; ``tls`` wraps each
    connection first. ``stop`` ends waiting scripts; ``reached`` is set by
    scripts at the point a test waits for.
    """

    def __init__(self, script: Script, *, tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.tls = tls
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.02)
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.reached = threading.Event()
        self.accepted = 0
        self.requests: list[bytes] = []
        self.sent = 0
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, name="test-raw-server", daemon=True)
        self.thread.start()

    def url(self, path: str = "/", scheme: str | None = None) -> str:
        return f"{scheme or ('wss' if self.tls else 'ws')}://127.0.0.1:{self.port}{path}"

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            try:
                conn.settimeout(ms(5000))
                if self.tls is not None:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                self.script(self, conn)
            except Exception as exc:  # the client hanging up mid-script is often the point
                self.errors.append(exc)
            finally:
                conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(ms(5000))
        self.listener.close()
        assert not self.thread.is_alive()


@pytest.fixture
def serve() -> Iterator[Callable[..., RawServer]]:
    """Start RawServers; all are stopped and joined after the test."""
    servers: list[RawServer] = []

    def start(script: Script, **kwargs: Any) -> RawServer:
        server = RawServer(script, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture(scope="module")
def ca() -> Any:
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture(scope="module")
def server_tls(ca: Any) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_tls(ca: Any) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def answer(response: bytes | Callable[[bytes], bytes], *, then_wait: bool = True) -> Script:
    """A script: read the request, send ``response`` (or ``response(request)``), then hold the connection."""

    def script(server: RawServer, conn: socket.socket) -> None:
        request = read_request(conn)
        server.requests.append(request)
        conn.sendall(response(request) if callable(response) else response)
        server.reached.set()
        if then_wait:
            server.stop.wait(ms(10000))

    return script


def fails(url: str, **kwargs: Any) -> tuple[ConnectError, float]:
    """open_connection's ConnectError and how long it took."""
    kwargs.setdefault("timeout", ms(5000))
    start = time.monotonic()
    with pytest.raises(ConnectError) as info:
        open_connection(url, **kwargs)
    return info.value, time.monotonic() - start


# -- success ---------------------------------------------------------------------------


def test_ws_success_returns_a_blocking_socket_and_the_first_frames(serve):
    frame = b"\x81\x05hello"
    server = serve(
        answer(
            lambda req: (
                upgrade(req, "Sec-WebSocket-Protocol: json", "Sec-WebSocket-Extensions: permessage-deflate; x=1")
                + frame
            )
        )
    )
    result = open_connection(
        server.url("/feed?x=1"),
        timeout=ms(5000),
        headers={"X-Api-Key": SECRET},
        subprotocols=["json", "msgpack"],
        extensions=["permessage-deflate; client_max_window_bits"],
    )
    with result.sock:
        assert result.leftover == frame
        assert result.subprotocol == "json"
        assert result.extensions == [("permessage-deflate", {"x": "1"})]
        assert result.response_headers["upgrade"] == "websocket"
        assert result.sock.gettimeout() is None
        assert not isinstance(result.sock, ssl.SSLSocket)
    request = server.requests[0]
    assert request.startswith(b"GET /feed?x=1 HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n" % server.port)
    assert b"X-Api-Key: " + SECRET.encode() in request
    assert b"origin" not in request.lower()


def test_wss_success_with_trusted_certificates(serve, server_tls, client_tls):
    server = serve(answer(lambda req: upgrade(req) + b"\x82\x01\x00"), tls=server_tls)
    sockets: list[socket.socket] = []
    result = open_connection(server.url(), timeout=ms(5000), ssl_context=client_tls, on_socket=sockets.append)
    with result.sock:
        assert isinstance(result.sock, ssl.SSLSocket)
        assert result.sock.gettimeout() is None
        assert result.leftover == b"\x82\x01\x00"
        assert result.subprotocol is None and result.extensions == []
        # The plain socket handed to on_socket was released; the TLS one owns the connection.
        assert len(sockets) == 1 and sockets[0].fileno() == -1
        result.sock.sendall(b"\x88\x80abcd")  # still usable
    assert server.requests[0].split(b"\r\n")[1] == b"Host: 127.0.0.1:%d" % server.port


def test_an_untrusted_certificate_fails_as_tls_and_is_fatal(serve, server_tls):
    server = serve(answer(upgrade), tls=server_tls)
    error, _ = fails(server.url(), ssl_context=ssl.create_default_context())
    assert error.reason == "tls"
    assert error.status_code is None
    assert isinstance(error.__cause__, ssl.SSLCertVerificationError)
    assert categorize(error) == "fatal"


# -- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "reason", "category"),
    [
        (401, "unauthorized", "fatal"),
        (403, "unauthorized", "fatal"),
        (404, "handshake_status", "fatal"),
        (407, "handshake_status", "fatal"),
        (429, "handshake_status", "recoverable"),
        (500, "handshake_status", "recoverable"),
        (503, "handshake_status", "recoverable"),
        (200, "not_websocket", "fatal"),
        (204, "not_websocket", "fatal"),
    ],
)
def test_refusal_statuses_map_to_exact_reasons(serve, status, reason, category):
    body = b"denied:\x00\x1b[31m red\nline two"
    response = b"HTTP/1.1 %d Whatever\r\nContent-Length: %d\r\n\r\n" % (status, len(body)) + body
    server = serve(answer(response))
    error, elapsed = fails(
        server.url(f"/private?apiKey={SECRET}").replace("ws://", f"ws://user:{SECRET}@"),
        headers={"X-MBX-APIKEY": SECRET},
    )
    assert (error.reason, error.status_code) == (reason, status)
    assert categorize(error) == category
    message = str(error)
    assert f"HTTP {status} Whatever" in message
    assert "denied: [31m red line two" in message  # sanitised to one printable line
    assert SECRET not in message and "user" not in message
    assert elapsed < ms(1000)


def test_redirect_is_not_followed_and_names_its_target(serve):
    target = socket.create_server(("127.0.0.1", 0))
    with target:
        port = target.getsockname()[1]
        location = f"ws://user:{SECRET}@127.0.0.1:{port}/next?token={SECRET}#frag"
        server = serve(answer(f"HTTP/1.1 301 Moved Permanently\r\nLocation: {location}\r\n\r\n".encode()))
        error, _ = fails(server.url())
        assert (error.reason, error.status_code) == ("redirect", 301)
        assert categorize(error) == "fatal"
        assert f"ws://127.0.0.1:{port}/next" in str(error)
        assert "not followed" in str(error)
        assert SECRET not in str(error) and "user" not in str(error)
        target.setblocking(False)
        with pytest.raises(BlockingIOError):
            target.accept()  # nothing ever connected to the redirect target


def test_wss_redirect_to_plain_ws_is_refused(serve, server_tls, client_tls):
    target = socket.create_server(("127.0.0.1", 0))
    with target:
        port = target.getsockname()[1]
        response = f"HTTP/1.1 308 Permanent Redirect\r\nLocation: ws://127.0.0.1:{port}/\r\n\r\n".encode()
        server = serve(answer(response), tls=server_tls)
        error, _ = fails(server.url(), ssl_context=client_tls, headers={"Authorization": f"Bearer {SECRET}"})
        assert (error.reason, error.status_code) == ("redirect", 308)
        assert f"ws://127.0.0.1:{port}/" in str(error)
        target.setblocking(False)
        with pytest.raises(BlockingIOError):
            target.accept()


def test_relative_redirect_is_resolved_without_the_query(serve):
    server = serve(answer(b"HTTP/1.1 302 Found\r\nLocation: ../other?sig=x\r\n\r\n"))
    error, _ = fails(server.url(f"/a/b?key={SECRET}"))
    assert (error.reason, error.status_code) == ("redirect", 302)
    assert f"ws://127.0.0.1:{server.port}/other" in str(error)
    assert "sig" not in str(error) and SECRET not in str(error)


@pytest.mark.parametrize(
    "extra",
    [
        {"accept": "d3Jvbmc="},
        {"lines": ["Sec-WebSocket-Protocol: other"]},
        {"lines": ["Sec-WebSocket-Extensions: x-unoffered"]},
        {"lines": ["Sec-WebSocket-Extensions: permessage-deflate;"]},
    ],
)
def test_a_101_that_breaks_the_rules_is_a_bad_handshake(serve, extra):
    server = serve(answer(lambda req: upgrade(req, *extra.get("lines", ()), accept=extra.get("accept"))))
    error, _ = fails(server.url(), subprotocols=["json"], extensions=["permessage-deflate"])
    assert (error.reason, error.status_code) == ("bad_handshake", None)
    assert categorize(error) == "fatal"


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: keep-alive\r\nSec-WebSocket-Accept: {accept}\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    ],
)
def test_a_101_without_the_upgrade_headers_is_a_bad_handshake(serve, response):
    server = serve(answer(lambda req: response.replace(b"{accept}", accept_key(request_key(req)).encode())))
    error, _ = fails(server.url())
    assert (error.reason, error.status_code) == ("bad_handshake", None)


def test_connection_header_with_upgrade_among_tokens_is_accepted(serve):
    server = serve(answer(lambda req: upgrade(req).replace(b"Connection: Upgrade", b"Connection: keep-alive, UPGRADE")))
    result = open_connection(server.url(), timeout=ms(5000))
    result.sock.close()
    assert result.response_headers["connection"] == "keep-alive, UPGRADE"


def test_refused_port_is_econnrefused():
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    error, elapsed = fails(f"ws://127.0.0.1:{port}/")
    assert (error.reason, error.status_code) == ("econnrefused", None)
    assert categorize(error) == "recoverable"
    assert elapsed < ms(1000)


def test_server_closing_mid_handshake_is_an_error(serve):
    server = serve(answer(b"HTTP/1.1 101 Switching", then_wait=False))
    error, _ = fails(server.url())
    assert (error.reason, error.status_code) == ("error", None)
    assert "closed the connection" in str(error)
    assert categorize(error) == "recoverable"


def test_config_errors_come_before_any_connection(serve):
    server = serve(answer(upgrade))
    with pytest.raises(ConfigError) as info:
        open_connection(server.url(), timeout=ms(5000), headers={"Sec-WebSocket-Key": SECRET})
    assert info.value.option == "headers"
    with pytest.raises(ConfigError) as info:
        open_connection(server.url(), timeout=ms(5000), proxy="ftp://127.0.0.1:1")
    assert info.value.option == "proxy"
    assert server.accepted == 0


# -- caps ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "words"),
    [
        (b"HTTP/1.1 101 Switching Protocols\r\nX-Big: " + b"a" * (MAX_LINE + 10), "longer than 8192"),
        (
            b"HTTP/1.1 101 Switching Protocols\r\n" + b"".join(b"H%d: x\r\n" % i for i in range(MAX_HEADERS + 1)),
            "more than 128 header lines",
        ),
        (
            b"HTTP/1.1 101 Switching Protocols\r\n" + b"".join(_line(f"H{i}", 7000) + b"\r\n" for i in range(10)),
            "larger than 65536",
        ),
    ],
)
def test_oversized_heads_fail_fast_as_bad_handshake(serve, head, words):
    server = serve(answer(head))  # and the connection stays open: the cap, not EOF, ends it
    error, elapsed = fails(server.url())
    assert (error.reason, error.status_code) == ("bad_handshake", None)
    assert words in str(error)
    assert elapsed < ms(1000)


def test_a_huge_refusal_body_is_read_at_most_4_KiB(serve):
    """A 403 promising 64 MB and writing for ever: the client reads <= 4 KiB of it and fails at once."""
    head = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 67108864\r\n\r\n"

    def flood(server: RawServer, conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(head)
        conn.settimeout(ms(20))
        chunk = b"<html>" + b"x" * 65530
        while not server.stop.is_set() and server.sent < 16 * 1024 * 1024:
            try:
                server.sent += conn.send(chunk)
            except TimeoutError:
                continue  # the client stopped reading; keep the pressure on until told to stop

    server = serve(flood)
    kept: list[socket.socket] = []
    # A duplicate of the client's socket keeps the connection open after the
    # client closes its own, so what it did not read can be counted below.
    error, elapsed = fails(server.url(), on_socket=lambda sock: kept.append(sock.dup()))
    assert (error.reason, error.status_code) == ("unauthorized", 403)
    assert elapsed < ms(1000)
    assert "<html>xxx" in str(error) and len(str(error)) < 400
    server.stop.set()
    server.thread.join(ms(5000))  # the server closes its end: the rest can be drained to EOF
    (dup,) = kept
    with dup:
        dup.settimeout(ms(5000))
        unread = 0
        while chunk := dup.recv(1 << 20):
            unread += len(chunk)
    assert server.sent > 4 * MAX_REFUSAL_BODY
    assert server.sent - unread <= MAX_REFUSAL_BODY


def test_a_refusal_body_shorter_than_promised_does_not_hold_the_attempt(serve):
    server = serve(answer(b"HTTP/1.1 500 Oops\r\nContent-Length: 100\r\n\r\npartial"))
    error, elapsed = fails(server.url(), timeout=ms(10000))
    assert (error.reason, error.status_code) == ("handshake_status", 500)
    assert str(error).endswith(": partial")
    assert elapsed < ms(2000)  # the body wait is capped (1 s), not the 10 s deadline


# -- one deadline ----------------------------------------------------------------------------


def trickle(server: RawServer, conn: socket.socket) -> None:
    """Answer one byte every 20 ms: each read succeeds, the head never ends."""
    read_request(conn)
    server.reached.set()
    data = b"HTTP/1.1 101 Switching Protocols\r\n" + b"X-Slow: yes\r\n" * 1000
    for i in range(len(data)):
        if server.stop.wait(0.02):
            return
        conn.sendall(data[i : i + 1])


def test_a_trickling_server_fails_at_the_deadline(serve):
    server = serve(trickle)
    error, elapsed = fails(server.url(), timeout=ms(300))
    assert (error.reason, error.status_code) == ("timeout", None)
    assert categorize(error) == "recoverable"
    assert ms(300) <= elapsed < ms(300) + ms(150)


def tls_trickle(context: ssl.SSLContext) -> Script:
    """Do a real TLS server handshake but send its flight one byte every 20 ms."""

    def script(server: RawServer, conn: socket.socket) -> None:
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_side=True)
        flight = b""
        while not flight:
            data = conn.recv(65536)
            if not data:
                return
            incoming.write(data)
            with contextlib.suppress(ssl.SSLWantReadError):
                tls.do_handshake()
            flight = outgoing.read()
        server.reached.set()
        for i in range(len(flight)):
            if server.stop.wait(0.02):
                return
            conn.sendall(flight[i : i + 1])

    return script


def tls_stall(server: RawServer, conn: socket.socket) -> None:
    """Accept TCP, read the ClientHello, never answer."""
    conn.recv(65536)
    server.reached.set()
    server.stop.wait(ms(10000))


@pytest.mark.parametrize("mode", ["trickle", "stall"])
def test_a_slow_tls_handshake_is_bounded_by_the_deadline(serve, server_tls, client_tls, mode):
    server = serve(tls_trickle(server_tls) if mode == "trickle" else tls_stall)
    error, elapsed = fails(server.url(scheme="wss"), timeout=ms(300), ssl_context=client_tls)
    assert (error.reason, error.status_code) == ("timeout", None)
    assert "TLS handshake" in str(error)
    assert ms(300) <= elapsed < ms(300) + ms(150)


@pytest.fixture
def full_backlog() -> Iterator[int]:
    """A loopback port whose accept queue is full: a new connect stays in SYN_SENT."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=ms(2000))
    try:
        yield port
    finally:
        filler.close()
        listener.close()


def test_a_tcp_connect_that_hangs_fails_at_the_deadline(full_backlog):
    error, elapsed = fails(f"ws://127.0.0.1:{full_backlog}/", timeout=ms(300))
    assert (error.reason, error.status_code) == ("timeout", None)
    assert "TCP connect" in str(error)
    assert ms(300) <= elapsed < ms(300) + ms(150)


def test_timeouts_report_where_without_secrets(serve):
    server = serve(answer(b"", then_wait=True))
    error, _ = fails(
        server.url(f"/p?token={SECRET}").replace("ws://", f"ws://u:{SECRET}@"),
        timeout=ms(200),
        headers={"Authorization": SECRET},
    )
    assert error.reason == "timeout"
    assert "reading the upgrade response" in str(error)
    assert f"127.0.0.1:{server.port}" in str(error)
    assert SECRET not in str(error)


# -- abort via on_socket ---------------------------------------------------------------------


class Attempt:
    """open_connection in a thread, so the test thread can abort it through on_socket."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        self.sockets: list[socket.socket] = []
        self.error: BaseException | None = None
        self.ended = 0.0
        self.aborted = 0.0
        kwargs.setdefault("timeout", ms(5000))
        self.thread = threading.Thread(
            target=self._run, args=(url, kwargs), name="test-attempt", daemon=True
        )  # daemon: a hang must not block the run; joined below
        self.thread.start()

    def _run(self, url: str, kwargs: dict[str, Any]) -> None:
        try:
            result = open_connection(url, on_socket=self.sockets.append, **kwargs)
            result.sock.close()
        except BaseException as exc:
            self.error = exc
        finally:
            self.ended = time.monotonic()

    def abort(self) -> None:
        assert wait_until(lambda: self.sockets, timeout=2.0)
        self.aborted = time.monotonic()
        self.sockets[-1].shutdown(socket.SHUT_RDWR)

    def result(self) -> tuple[ConnectError, float]:
        self.thread.join(ms(5000))
        assert not self.thread.is_alive()
        assert isinstance(self.error, ConnectError), self.error
        return self.error, self.ended - self.aborted


def _tcp_state(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]


@pytest.mark.skipif(not hasattr(socket, "TCP_INFO"), reason="needs Linux TCP_INFO to see SYN_SENT")
def test_abort_during_tcp_connect_ends_the_attempt_at_once(full_backlog):
    attempt = Attempt(f"ws://127.0.0.1:{full_backlog}/")
    syn_sent = 2  # TCP_SYN_SENT in linux/tcp_states.h
    assert wait_until(lambda: attempt.sockets and _tcp_state(attempt.sockets[-1]) == syn_sent, timeout=2.0)
    attempt.abort()
    error, after_abort = attempt.result()
    assert (error.reason, error.status_code) == ("error", None)
    assert "TCP connect" in str(error)
    assert after_abort < ms(250)


def test_abort_during_tls_handshake_ends_the_attempt_at_once(serve, client_tls):
    server = serve(tls_stall)
    attempt = Attempt(server.url(scheme="wss"), ssl_context=client_tls)
    assert server.reached.wait(ms(5000))
    attempt.abort()
    error, after_abort = attempt.result()
    assert (error.reason, error.status_code) == ("tls", None)
    assert "TLS handshake" in str(error)
    assert after_abort < ms(250)


@pytest.mark.parametrize("secure", [False, True])
def test_abort_while_reading_the_response_ends_the_attempt_at_once(serve, server_tls, client_tls, secure):
    server = serve(answer(b"HTTP/1.1 101 Switching Protocols\r\n"), tls=server_tls if secure else None)
    attempt = Attempt(server.url(), ssl_context=client_tls)
    assert server.reached.wait(ms(5000))
    attempt.abort()
    error, after_abort = attempt.result()
    assert (error.reason, error.status_code) == ("error", None)
    assert "reading the upgrade response" in str(error)
    assert after_abort < ms(250)


def test_on_socket_may_refuse_the_attempt(serve):
    server = serve(answer(upgrade))

    def refuse(sock: socket.socket) -> None:
        raise ConnectError("client is closing", reason="closed")

    error, _ = fails(server.url(), on_socket=refuse)
    assert (error.reason, str(error)) == ("closed", "client is closing")
    assert server.accepted == 0


# -- proxies ------------------------------------------------------------------------------------


class ConnectProxy:
    """A one-connection-at-a-time HTTP CONNECT proxy on loopback.

    It records each CONNECT head; with ``refuse`` it answers that instead of
    opening the tunnel.
    """

    def __init__(self, refuse: bytes | None = None) -> None:
        self.refuse = refuse
        self.heads: list[bytes] = []
        self.server = RawServer(self._handle)
        self.port = self.server.port

    def _handle(self, server: RawServer, conn: socket.socket) -> None:
        head = read_request(conn)
        self.heads.append(head)
        if self.refuse is not None:
            conn.sendall(self.refuse)
            return
        host, _, port = head.split(b" ")[1].decode().rpartition(":")
        with socket.create_connection((host, int(port)), timeout=ms(5000)) as upstream:
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            _pump(conn, upstream, server.stop)

    def close(self) -> None:
        self.server.close()


def _pump(a: socket.socket, b: socket.socket, stop: threading.Event) -> None:
    """Copy bytes both ways until either side closes or ``stop`` is set."""
    with selectors.DefaultSelector() as selector:
        selector.register(a, selectors.EVENT_READ, b)
        selector.register(b, selectors.EVENT_READ, a)
        while not stop.is_set():
            for key, _ in selector.select(0.02):
                data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                if not data:
                    return
                key.data.sendall(data)


@pytest.fixture
def proxy_factory() -> Iterator[Callable[..., ConnectProxy]]:
    proxies: list[ConnectProxy] = []

    def start(**kwargs: Any) -> ConnectProxy:
        proxies.append(ConnectProxy(**kwargs))
        return proxies[-1]

    yield start
    for proxy in proxies:
        proxy.close()


@pytest.mark.parametrize("secure", [False, True])
def test_http_connect_proxy_tunnels_with_basic_auth(serve, proxy_factory, server_tls, client_tls, secure):
    server = serve(answer(lambda req: upgrade(req) + b"\x81\x00"), tls=server_tls if secure else None)
    proxy = proxy_factory()
    result = open_connection(
        server.url(),
        timeout=ms(5000),
        proxy=f"http://alice:p%40ss@127.0.0.1:{proxy.port}",
        ssl_context=client_tls,
    )
    result.sock.close()
    assert result.leftover == b"\x81\x00"
    credentials = base64.b64encode(b"alice:p@ss")
    assert proxy.heads == [
        b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nProxy-Authorization: Basic %s\r\n\r\n"
        % (server.port, server.port, credentials)
    ]
    assert b"proxy-authorization" not in server.requests[0].lower()


@pytest.mark.parametrize(("status", "category"), [(407, "fatal"), (502, "recoverable")])
def test_proxy_refusing_the_tunnel_is_a_proxy_error(serve, proxy_factory, status, category):
    server = serve(answer(upgrade))
    proxy = proxy_factory(
        refuse=b"HTTP/1.1 %d No\r\nProxy-Authenticate: Basic\r\nContent-Length: 9\r\n\r\ngo away!!" % status
    )
    error, elapsed = fails(server.url(), proxy=f"http://bob:{SECRET}@127.0.0.1:{proxy.port}")
    assert (error.reason, error.status_code) == ("proxy", status)
    assert categorize(error) == category
    assert f"127.0.0.1:{proxy.port}" in str(error) and "go away!!" in str(error)
    assert SECRET not in str(error) and "bob" not in str(error)
    assert server.accepted == 0
    assert elapsed < ms(1000)


def test_a_proxy_that_speaks_first_after_200_is_refused(serve):
    proxy = serve(answer(b"HTTP/1.1 200 OK\r\n\r\nHTTP/1.1 101 Switching Protocols\r\n\r\n"))
    error, _ = fails("ws://127.0.0.1:9/", proxy=f"http://127.0.0.1:{proxy.port}")
    assert (error.reason, error.status_code) == ("proxy", None)


def test_a_trickling_proxy_is_bounded_by_the_same_deadline(serve):
    proxy = serve(trickle)
    error, elapsed = fails("ws://127.0.0.1:9/", proxy=f"http://127.0.0.1:{proxy.port}", timeout=ms(300))
    assert (error.reason, error.status_code) == ("timeout", None)
    assert ms(300) <= elapsed < ms(300) + ms(150)


def _has_python_socks() -> bool:
    try:
        import python_socks  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(_has_python_socks(), reason="python-socks is installed")
def test_socks_proxy_without_python_socks_says_what_to_install(serve):
    server = serve(answer(upgrade))
    error, _ = fails(server.url(), proxy=f"socks5://u:{SECRET}@127.0.0.1:1080")
    assert (error.reason, error.status_code) == ("proxy", None)
    assert "pip install python-socks" in str(error)
    assert SECRET not in str(error)
    assert categorize(error) == "fatal"
    assert server.accepted == 0


def socks5(server: RawServer, conn: socket.socket) -> None:
    """A minimal SOCKS5 proxy (RFC 1928/1929) accepting user ``u``/``pw``."""

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    _, count = exactly(2)
    methods = exactly(count)
    assert 2 in methods
    conn.sendall(b"\x05\x02")
    _, user_len = exactly(2)
    user = exactly(user_len)
    (password_len,) = exactly(1)
    password = exactly(password_len)
    server.requests.append(user + b":" + password)
    conn.sendall(b"\x01\x00")
    _, command, _, kind = exactly(4)
    assert command == 1
    if kind == 1:
        host = socket.inet_ntoa(exactly(4))
    else:
        assert kind == 3
        host = exactly(exactly(1)[0]).decode()
    (port,) = struct.unpack("!H", exactly(2))
    with socket.create_connection((host, port), timeout=ms(5000)) as upstream:
        conn.sendall(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")
        _pump(conn, upstream, server.stop)


@pytest.mark.parametrize("scheme", ["socks5", "socks5h"])
def test_socks5_proxy_through_python_socks(serve, scheme):
    pytest.importorskip("python_socks")
    server = serve(answer(lambda req: upgrade(req) + b"\x81\x00"))
    proxy = serve(socks5)
    sockets: list[socket.socket] = []
    result = open_connection(
        server.url(), timeout=ms(5000), proxy=f"{scheme}://u:pw@127.0.0.1:{proxy.port}", on_socket=sockets.append
    )
    result.sock.close()
    assert result.leftover == b"\x81\x00"
    assert proxy.requests == [b"u:pw"]
    assert sockets == [result.sock]


def socks5_wrong_password(server: RawServer, conn: socket.socket) -> None:
    """A SOCKS5 proxy that rejects every username/password (RFC 1929 status 1)."""
    conn.recv(16)
    conn.sendall(b"\x05\x02")
    conn.recv(600)
    conn.sendall(b"\x01\x01")


def test_socks5_proxy_refusing_credentials_is_a_proxy_error(serve):
    pytest.importorskip("python_socks")
    server = serve(answer(upgrade))
    proxy = serve(socks5_wrong_password)
    error, _ = fails(server.url(), proxy=f"socks5://u:{SECRET}@127.0.0.1:{proxy.port}")
    assert (error.reason, error.status_code) == ("proxy", None)
    assert f"127.0.0.1:{proxy.port}" in str(error)
    assert SECRET not in str(error)
    assert server.accepted == 0


def test_public_names_are_exported():
    import zen_websocket.handshake as module

    assert all(hasattr(module, name) for name in module.__all__)
    assert {"Deadline", "Handshake", "open_connection", "default_ssl_context"} <= set(module.__all__)
    assert module.default_ssl_context() is module.default_ssl_context()
    assert module.default_ssl_context().verify_mode == ssl.CERT_REQUIRED
