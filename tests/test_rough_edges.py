"""The rough edges a new user hit (issue 11), one section per edge; each test fails without its fix.

1. proxy environment variables are honoured like ``requests`` does, loopback goes direct;
2. a callback with the wrong signature is refused at registration, and a
   callback's exception is shown (with its traceback) when logging is not configured;
3. ``ConnectError`` names the URL, the attempts and the last cause;
4. ``client.close_code`` / ``client.close_reason`` after the end;
5. times that look like milliseconds warn;
6. ``connect``/``Client`` show every option in their signature, typos get a suggestion;
7. boolean options are booleans; bytes-like messages are binary frames, as documented;
8. the missing ``testing`` extra is named; the editable install is warning-free;
9. ``zw.open_clients()`` / ``zw.close_all()`` for notebooks.
"""

from __future__ import annotations

import configparser
import dataclasses
import functools
import inspect
import os
import selectors
import socket
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import pytest

import zen_websocket as zw
from tests.timeunit import ms, wait_until
from zen_websocket.config import EVENTS, ClientConfig
from zen_websocket.handshake import environment_proxy
from zen_websocket.testing import MockWebSocketServer

ROOT = Path(__file__).resolve().parent.parent
FAST = {"retry_delay": ms(20), "max_backoff": ms(100), "heartbeat_config": None}
PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "ws_proxy", "wss_proxy", "no_proxy")


# -- 1. proxies from the environment ------------------------------------------------------------


class TunnelProxy:
    """An HTTP CONNECT proxy on loopback that tunnels every target to 127.0.0.1 (same port).

    The target host is never resolved, by the proxy or by the client: a
    name under ``.invalid`` proves the connection went through the proxy.
    """

    def __init__(self) -> None:
        self.targets: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept, "test-proxy-accept")

    def _spawn(self, target, name: str, *args) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        self._listener.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except (TimeoutError, OSError):
                continue
            self._spawn(self._tunnel, "test-proxy-conn", conn)

    def _tunnel(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                head += chunk
            target = head.split(b" ")[1].decode()
            self.targets.append(target)
            port = int(target.rpartition(":")[2])
            with socket.create_connection(("127.0.0.1", port), timeout=5) as upstream:
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                with selectors.DefaultSelector() as selector:
                    selector.register(conn, selectors.EVENT_READ, upstream)
                    selector.register(upstream, selectors.EVENT_READ, conn)
                    while not self._stop.is_set():
                        for key, _ in selector.select(0.02):
                            try:
                                data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                                if not data:
                                    return
                                key.data.sendall(data)
                            except OSError:
                                return

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self._listener.close()


@pytest.fixture
def proxy():
    tunnel = TunnelProxy()
    yield tunnel
    tunnel.close()


@pytest.fixture
def clean_proxy_env(monkeypatch):
    """No proxy variable from the machine leaks into these tests."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


def _invalid_host_url(server: MockWebSocketServer) -> str:
    # Reachable only through the proxy: the client never resolves the name.
    return f"ws://exchange.invalid:{server.port}/"


def test_http_proxy_variable_is_used_for_ws_urls(clean_proxy_env, proxy, echo_server):
    clean_proxy_env.setenv("http_proxy", proxy.url)
    clean_proxy_env.setenv("https_proxy", "http://127.0.0.1:9")  # for wss:// only: not used here
    with zw.connect(_invalid_host_url(echo_server), retry_count=0, **FAST) as client:
        client.send_message("through the proxy")
        assert client.recv(timeout=5) == "through the proxy"
    assert proxy.targets == [f"exchange.invalid:{echo_server.port}"]


def test_upper_case_and_all_proxy_variables_are_used_too(clean_proxy_env, proxy, echo_server):
    clean_proxy_env.setenv("ALL_PROXY", proxy.url.removeprefix("http://"))  # no scheme: http://
    with zw.connect(_invalid_host_url(echo_server), retry_count=0, **FAST):
        pass
    assert proxy.targets == [f"exchange.invalid:{echo_server.port}"]


def test_loopback_goes_direct_whatever_the_variables_say(clean_proxy_env, echo_server):
    for name in ("http_proxy", "https_proxy", "all_proxy"):
        clean_proxy_env.setenv(name, "http://127.0.0.1:9")  # a dead proxy
    for url in (echo_server.url, f"ws://localhost:{echo_server.port}/"):
        with zw.connect(url, retry_count=0, **FAST) as client:
            client.send_message("direct")
            assert client.recv(timeout=5) == "direct"


def test_the_proxy_option_wins_over_the_variables(clean_proxy_env, proxy, echo_server):
    clean_proxy_env.setenv("http_proxy", "http://127.0.0.1:9")
    with zw.connect(_invalid_host_url(echo_server), proxy=proxy.url, retry_count=0, **FAST):
        pass
    assert proxy.targets == [f"exchange.invalid:{echo_server.port}"]


def test_a_failing_environment_proxy_is_named_in_the_error(clean_proxy_env):
    clean_proxy_env.setenv("http_proxy", "http://127.0.0.1:9")
    with pytest.raises(zw.ConnectError) as info:
        zw.connect("ws://exchange.invalid:9000/", retry_count=0, **FAST)
    assert "127.0.0.1:9 (from $http_proxy)" in str(info.value)


@pytest.mark.parametrize(
    ("no_proxy", "url", "proxied"),
    [
        ("", "ws://exchange.invalid/", True),
        ("*", "ws://exchange.invalid/", False),
        ("exchange.invalid", "ws://exchange.invalid/", False),
        (".invalid", "wss://feed.exchange.invalid/ws", False),
        ("other.invalid, exchange.invalid", "ws://exchange.invalid:8080/", False),
        ("exchange.invalid:8080", "ws://exchange.invalid:8080/", False),
        ("other.invalid", "ws://exchange.invalid/", True),
        ("10.0.0.0/8", "ws://10.1.2.3/", False),
        ("10.0.0.0/8", "ws://192.0.2.1/", True),
        ("", "ws://127.0.0.1:9000/", False),
        ("", "ws://[::1]:9000/", False),
        ("", "ws://localhost/", False),
    ],
)
def test_no_proxy_sends_matching_hosts_direct(clean_proxy_env, no_proxy, url, proxied):
    clean_proxy_env.setenv("http_proxy", "http://proxy.invalid:3128")
    clean_proxy_env.setenv("https_proxy", "http://proxy.invalid:3128")
    clean_proxy_env.setenv("no_proxy", no_proxy)
    assert environment_proxy(url) == ("http://proxy.invalid:3128" if proxied else None)


def test_wss_prefers_wss_then_https_proxy(clean_proxy_env):
    clean_proxy_env.setenv("https_proxy", "http://https-proxy.invalid:1")
    clean_proxy_env.setenv("http_proxy", "http://http-proxy.invalid:1")
    assert environment_proxy("wss://exchange.invalid/") == "http://https-proxy.invalid:1"
    assert environment_proxy("ws://exchange.invalid/") == "http://http-proxy.invalid:1"
    clean_proxy_env.setenv("wss_proxy", "socks5h://wss-proxy.invalid:1080")
    assert environment_proxy("wss://exchange.invalid/") == "socks5h://wss-proxy.invalid:1080"


def test_the_readme_says_what_the_code_does():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "environment variables are ignored" not in readme
    assert "no_proxy" in readme and "loopback" in readme


# -- 2. callbacks: signatures checked, failures visible --------------------------------------------


@pytest.mark.parametrize(
    ("event", "fn", "expected"),
    [
        ("message", lambda data: None, "(client, data)"),
        ("connect", lambda: None, "(client)"),
        ("close", lambda client, code: None, "(client, code, reason)"),
        ("error", lambda client, exc, extra: None, "(client, exc)"),
    ],
)
def test_a_callback_with_the_wrong_signature_is_refused_at_registration(server, event, fn, expected):
    with pytest.raises(TypeError) as info:
        zw.Client(server.url, **{f"on_{event}": fn})
    assert f"'{event}' callback" in str(info.value) and expected in str(info.value)
    client = zw.Client(server.url)
    with pytest.raises(TypeError, match=rf"{event} callbacks are called with"):
        client.on(event, fn)


class _Handler:
    def on_message(self, client, data):
        pass

    def __call__(self, client, data):
        pass


@pytest.mark.parametrize(
    "fn",
    [
        lambda client, data: None,
        lambda *args: None,
        lambda client, data, extra=None: None,
        functools.partial(lambda tag, client, data: None, "tag"),
        _Handler().on_message,
        _Handler(),
        print,  # a builtin without a signature is trusted
    ],
)
def test_callbacks_that_can_take_the_arguments_are_accepted(server, fn):
    zw.Client(server.url, on_message=fn).on("message", fn)


def test_a_failing_callback_is_shown_on_stderr_when_logging_is_not_configured(server):
    """Once per callback, with its traceback: the library's NullHandler would hide it."""
    code = textwrap.dedent(
        f"""
        import time
        import zen_websocket as zw

        calls = []
        def broken(client, data):
            calls.append(data)
            raise ZeroDivisionError("broken callback")

        with zw.connect({server.url!r}, on_message=broken, heartbeat_config=None) as client:
            deadline = time.monotonic() + 5
            while len(calls) < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            print(client.get_state_metrics()["callback_errors"])
        """
    )
    server.on_connect = lambda conn: [conn.send(f"m{i}") for i in range(3)]
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, env=_env())
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"
    assert result.stderr.count("Traceback") == 1, result.stderr
    assert "ZeroDivisionError: broken callback" in result.stderr
    assert "message callback" in result.stderr and "configure logging" in result.stderr


# -- 3. ConnectError names the URL, the attempts and the cause --------------------------------------


def test_connect_error_names_the_redacted_url_the_attempts_and_the_cause():
    with pytest.raises(zw.ConnectError) as info:
        zw.connect("ws://user:pa55@127.0.0.1:9/feed?token=hunter2", retry_count=2, **FAST)
    message = str(info.value)
    assert message.startswith("cannot connect to ws://127.0.0.1:9/feed?token=*** (3 attempts): ")
    assert "econnrefused" in message
    assert "hunter2" not in message and "pa55" not in message
    assert (info.value.reason, info.value.attempts) == ("econnrefused", 3)


def test_connect_error_of_a_fatal_answer_says_one_attempt():
    with MockWebSocketServer() as server:
        server.reject_handshake(403)
        with pytest.raises(zw.ConnectError) as info:
            zw.connect(server.url, retry_count=3, **FAST)
    assert str(info.value).startswith(f"cannot connect to {server.url} (1 attempt): ")
    assert info.value.status_code == 403


# -- 4. why the client ended -------------------------------------------------------------------


def test_close_code_and_reason_after_close(echo_server):
    client = zw.connect(echo_server.url, **FAST)
    assert (client.close_code, client.close_reason) == (None, None)
    client.close()
    assert (client.close_code, client.close_reason) == (1000, "closed by client")


def test_close_reason_tells_giving_up_from_close(server):
    client = zw.connect(server.url, retry_count=0, **FAST)
    server.refuse_connections()
    server.drop_connections()
    assert list(client) == []  # iteration ends the same way...
    assert client.close_reason == "retries_exhausted"  # ...but the reason differs
    assert client.close_code is None
    client.close()
    assert client.close_reason == "retries_exhausted"  # close() after the end changes nothing


def test_close_reason_after_a_failed_first_connect():
    client = zw.Client("ws://127.0.0.1:9/", retry_count=0, **FAST)
    with pytest.raises(zw.ConnectError):
        client.connect()
    assert (client.close_code, client.close_reason) == (None, "connect_failed")


# -- 5. milliseconds mistaken for seconds -------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"timeout": 5000}, "timeout=5000"),
        ({"request_timeout": 30_000}, "request_timeout=30000"),
        ({"retry_delay": 1000, "max_backoff": 30_000}, "retry_delay=1000"),
        ({"heartbeat_config": {"type": "ping", "interval": 30_000}}, "heartbeat_config.interval=30000"),
        ({"heartbeat_config": {"interval": 20, "timeout": 10_000}}, "heartbeat_config.timeout=10000"),
    ],
)
def test_times_that_look_like_milliseconds_warn_at_the_callers_line(options, name):
    with pytest.warns(UserWarning, match="times are in seconds") as caught:
        zw.Client("ws://127.0.0.1:9/", **options)
    assert any(name in str(w.message) for w in caught)
    assert {w.filename for w in caught} == {__file__}  # the user's line, not the library's


def test_plausible_times_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        zw.Client(
            "ws://127.0.0.1:9/",
            timeout=10,
            request_timeout=120,
            max_backoff=300,
            heartbeat_config={"type": "deribit", "interval": 30},
            max_connection_age=23 * 3600,  # Binance's 24 h cut is a long time on purpose
            max_silence=3600,
        )


# -- 6. discoverable options ---------------------------------------------------------------------


@pytest.mark.parametrize("target", [zw.connect, zw.Client])
def test_the_signature_lists_every_option_with_its_default(target):
    params = inspect.signature(target).parameters
    assert next(iter(params)) == "url"
    for spec in dataclasses.fields(ClientConfig):
        if spec.name in ("url", "callbacks"):
            continue
        param = params[spec.name]
        assert param.kind is inspect.Parameter.KEYWORD_ONLY
        default = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
        assert param.default == default, spec.name
    for event in EVENTS:
        assert f"on_{event}" in params
    assert "retry_delay=1.0" in (target.__doc__ or "")


@pytest.mark.parametrize(
    ("options", "suggestion"),
    [
        ({"heartbeat": {"type": "ping"}}, "did you mean 'heartbeat_config'?"),
        ({"timout": 5}, "did you mean 'timeout'?"),
        ({"on_mesage": print}, "did you mean 'on_message'?"),
        ({"heartbeat_config": {"intervall": 5}}, "did you mean 'interval'?"),
    ],
)
def test_an_unknown_option_suggests_the_closest_name(options, suggestion):
    with pytest.raises(zw.ConfigError, match="unknown") as info:
        zw.Client("ws://127.0.0.1:9/", **options)
    assert suggestion in str(info.value)


# -- 7. validation gaps ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [("debug", "yes"), ("reconnect_on_error", "no"), ("restore_subscriptions", 1), ("debug", None)],
)
def test_boolean_options_must_be_booleans(option, value):
    with pytest.raises(zw.ConfigError) as info:
        zw.Client("ws://127.0.0.1:9/", **{option: value})
    assert info.value.option == option and "True or False" in str(info.value)


def test_bytes_like_messages_are_sent_as_binary_frames_as_the_readme_says(echo_server):
    with zw.connect(echo_server.url, **FAST) as client:
        client.send_message(bytearray(b"\x01\x02"))
        client.send_message(memoryview(b"\x03\x04"))
        assert [client.recv(timeout=5), client.recv(timeout=5)] == [b"\x01\x02", b"\x03\x04"]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "`bytes`, `bytearray` or `memoryview` as a binary frame" in readme


# -- 8. installation ------------------------------------------------------------------------------


def test_the_testing_package_without_its_extra_names_the_extra():
    code = "import sys; sys.modules['websockets'] = None\nfrom zen_websocket.testing import MockWebSocketServer"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20, env=_env())
    assert result.returncode == 1
    assert "pip install 'zen_websocket[testing]'" in result.stderr


def test_the_flat_layout_is_mapped_for_a_plain_editable_install():
    """setuptools installs ``pip install -e .`` with a .pth file (no finder warning) when package_dir is {"": ...}."""
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = [line for line in config["options"]["package_dir"].splitlines() if line.strip()]
    mapping = {name.strip(): path.strip() for name, _, path in (line.partition("=") for line in lines)}
    assert mapping == {"": "."}


# -- 9. notebooks: what is open, and closing it --------------------------------------------------


def test_open_clients_and_close_all(echo_server):
    first = zw.connect(echo_server.url, **FAST)
    second = zw.connect(echo_server.url, **FAST)  # the same cell, run again
    closed_before = zw.connect(echo_server.url, **FAST)
    closed_before.close()
    try:
        assert {id(c) for c in zw.open_clients()} >= {id(first), id(second)}
        assert closed_before not in zw.open_clients()
        assert zw.close_all() >= 2
        assert first.get_state() == second.get_state() == "disconnected"
        assert zw.open_clients() == []
    finally:
        first.close()
        second.close()


def test_a_client_that_gave_up_is_not_open(server):
    client = zw.connect(server.url, retry_count=0, **FAST)
    server.refuse_connections()
    server.drop_connections()
    assert wait_until(lambda: client not in zw.open_clients())
    client.close()


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in PROXY_VARIABLES:
        env.pop(name, None)
        env.pop(name.upper(), None)
    return env
