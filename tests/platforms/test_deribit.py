"""zen_websocket.platforms.deribit against the DeribitEmulator: auth, refresh, fatal credentials, chaos."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import zen_websocket as zw
from tests.timeunit import ms, wait_until
from zen_websocket.config import DERIBIT_MIN_HEARTBEAT_INTERVAL, ClientConfig, HeartbeatConfig
from zen_websocket.platforms import deribit
from zen_websocket.ratelimit import MultiRateLimiter
from zen_websocket.subscriptions import DeribitDialect, Request, get_dialect
from zen_websocket.testing import DeribitEmulator
from zen_websocket.testing.deribit import signature_for

CREDS = {"cid": "s3cret-client-secret-0123456789"}
CLIENT_ID, SECRET = next(iter(CREDS.items()))
PRIVATE = "user.orders.any.any.raw"
PUBLIC = "ticker.BTC-PERPETUAL.100ms"

_markers = itertools.count(1)


class Recorder:
    """Collects client events in order; ``wait`` blocks on a condition, not a sleep."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.cond = threading.Condition()

    def options(self) -> dict[str, Any]:
        def make(name: str):
            def fn(client, *args):
                with self.cond:
                    self.events.append((name, *args))
                    self.cond.notify_all()

            return fn

        return {f"on_{name}": make(name) for name in ("disconnect", "reconnect", "error", "close")}

    def of(self, name: str) -> list[tuple[Any, ...]]:
        with self.cond:
            return [event for event in self.events if event[0] == name]

    def wait(self, name: str, count: int = 1, timeout: float = 5.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len([e for e in self.events if e[0] == name]) >= count, timeout)


def fast(**overrides: Any) -> dict[str, Any]:
    """Client options at test speed: Deribit heartbeat every 100 ms (the emulator's minimum lowered)."""
    return {
        "heartbeat_interval": ms(100),
        "heartbeat_min_interval": ms(10),
        "retry_delay": ms(20),
        "max_backoff": ms(100),
        "close_timeout": ms(300),
        "request_timeout": 2.0,
        **overrides,
    }


@pytest.fixture
def exchange():
    with DeribitEmulator(credentials=dict(CREDS), min_heartbeat_interval=ms(10)) as emu:
        yield emu


def open_connection(exchange: DeribitEmulator, conn_id: int):
    return next((c for c in exchange.connections if c.id == conn_id), None)


def subscribed_on(exchange: DeribitEmulator, conn_id: int, *channels: str) -> bool:
    conn = open_connection(exchange, conn_id)
    return conn is not None and set(channels) <= exchange.subscriptions(conn)


def methods_on(exchange: DeribitEmulator, conn_id: int) -> list[str]:
    conn = next(c for c in exchange.all_connections if c.id == conn_id)
    return [json.loads(m)["method"] for m in list(conn.received)]


def refreshes(client: zw.Client) -> int:
    """Token refreshes on the client's current connection (-1 while it is not authenticated)."""
    state = deribit.session(client)
    return -1 if state is None else state.refreshes


def delivered(client: zw.Client, exchange: DeribitEmulator, channel: str) -> bool:
    """The exchange publishes one marked update on ``channel``; True when the client receives it."""
    marker = next(_markers)
    if exchange.publish(channel, {"marker": marker}) == 0:
        return False
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            message = client.recv_json(timeout=max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            return False
        params = message.get("params", {})
        if params.get("channel") == channel and params.get("data", {}).get("marker") == marker:
            return True
    return False


# ------------------------------------------------------------------ options (no sockets)


def test_options_are_ordinary_client_options_with_deribit_presets():
    """options() -> a plain dict that ClientConfig accepts: Deribit dialect, heartbeat and credit limiter."""
    opts = deribit.options(CLIENT_ID, SECRET)
    config = ClientConfig.from_options("ws://127.0.0.1:1", **opts)
    assert config.subscription_format == "deribit"
    assert config.heartbeat_config == HeartbeatConfig(type="deribit", interval=30)
    assert isinstance(config.rate_limiter, MultiRateLimiter)
    assert sorted(config.rate_limiter.buckets) == ["credits", "matching", "subscribe"]
    assert config.rate_limiter.buckets["matching"].status()["rate"] == 2.0  # the lowest tier
    assert set(config.callbacks) == {"connect", "disconnect", "close"}
    assert SECRET not in repr(opts) and SECRET not in repr(config)


def test_options_without_credentials_do_not_authenticate_and_extra_options_win():
    def mine(client):
        pass

    opts = deribit.options(heartbeat_interval=None, rate_limiter=None, on_connect=mine, name="pub")
    assert opts["heartbeat_config"] is None and opts["rate_limiter"] is None and opts["name"] == "pub"
    assert opts["on_connect"] == (mine,)
    authed = deribit.options(CLIENT_ID, SECRET, on_connect=[mine])
    assert len(authed["on_connect"]) == 2 and authed["on_connect"][1] is mine  # the user's run authenticated


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"client_id": CLIENT_ID}, "client_secret"),
        ({"client_secret": SECRET}, "client_id"),
        ({"client_id": CLIENT_ID, "client_secret": SECRET, "grant": "password"}, "grant"),
        ({"heartbeat_interval": 9}, "heartbeat_config.interval"),
        ({"heartbeat_interval": 10.5}, "heartbeat_config.interval"),
    ],
)
def test_options_refuse_invalid_values_naming_the_option(kwargs, option):
    with pytest.raises(zw.ConfigError) as info:
        deribit.options(**kwargs)
    assert info.value.option == option
    assert SECRET not in str(info.value)


def test_the_heartbeat_minimum_is_lowered_by_an_option_not_a_constant():
    """HeartbeatConfig.min_interval (the adapter's heartbeat_min_interval) allows 50 ms; Deribit's 10 s stays."""
    with pytest.raises(zw.ConfigError, match="minimum heartbeat interval is 10s"):
        HeartbeatConfig(type="deribit", interval=ms(50))
    lowered = HeartbeatConfig(type="deribit", interval=ms(50), min_interval=ms(10))
    assert lowered.interval == ms(50)
    with pytest.raises(zw.ConfigError, match="min_interval"):
        HeartbeatConfig(type="deribit", interval=ms(5), min_interval=ms(10))
    assert DERIBIT_MIN_HEARTBEAT_INTERVAL == 10.0


def test_client_signature_is_deribits_hmac_sha256():
    """hex HMAC-SHA256 of timestamp\\nnonce\\ndata keyed with the secret (PROTOCOLS.md)."""
    expected = hmac.new(b"key", b"1700000000000\nabc\nd", hashlib.sha256).hexdigest()
    assert deribit.client_signature("key", 1700000000000, "abc", "d") == expected
    assert deribit.client_signature("key", 1700000000000, "abc", "d") == signature_for("key", 1700000000000, "abc", "d")
    assert deribit.client_signature("key", 1, "n") != deribit.client_signature("key", 1, "m")


def test_auth_session_repr_masks_the_tokens():
    session = deribit.AuthSession("AT-secret-value", "RT-secret-value", 1.0, 900.0, 2, "connection mainaccount")
    assert "secret-value" not in repr(session) and "secret-value" not in str(session)
    assert "refreshes=2" in repr(session) and "'***'" in repr(session)


# ------------------------------------------------------------------ the Deribit dialect (no sockets)


def _error(code: int, message: str) -> dict:
    return {"jsonrpc": "2.0", "id": 1, "error": {"code": code, "message": message}}


def test_dialect_calls_13009_and_10028_transient_and_anything_else_permanent():
    dialect = DeribitDialect()
    request = Request({}, [PRIVATE, "trades.BTC-PERPETUAL.raw"], 1, "private/subscribe")
    unauthorized = dialect.classify_refusal(request, _error(13009, "unauthorized"))
    assert unauthorized.transient
    assert PRIVATE in unauthorized.reason and "trades.BTC-PERPETUAL.raw" in unauthorized.reason
    assert "authenticated" in unauthorized.reason
    assert dialect.classify_refusal(request, _error(10028, "too_many_requests")).transient
    assert not dialect.classify_refusal(request, _error(-32602, "Invalid params")).transient
    omitted = dialect.classify_refusal(request, {"jsonrpc": "2.0", "id": 1, "result": []})
    assert not omitted.transient and "no such channel" in omitted.reason
    # Other dialects keep the old rule: every refusal is permanent.
    assert not get_dialect("binance").classify_refusal(request, _error(13009, "unauthorized")).transient


@pytest.mark.parametrize(
    ("message", "clears"),
    [
        ({"jsonrpc": "2.0", "id": 1, "method": "public/unsubscribe_all", "params": {}}, True),
        ({"method": "private/unsubscribe_all"}, True),
        ('{"jsonrpc":"2.0","id":3,"method":"public/unsubscribe_all"}', True),
        (b'{"method":"private/unsubscribe_all"}', True),
        ({"method": "public/unsubscribe", "params": {"channels": ["x"]}}, False),
        ("public/unsubscribe_all", False),  # text that is not a request
        ({"method": "public/test"}, False),
    ],
)
def test_dialect_recognises_unsubscribe_all(message, clears):
    assert DeribitDialect().unsubscribes_all(message) is clears
    assert get_dialect("binance").unsubscribes_all(message) is False


# ------------------------------------------------------------------ auth on every connection


def test_connect_authenticates_before_it_returns(exchange):
    """public/auth has succeeded when connect() returns: a private subscription is granted at once."""
    with deribit.connect(exchange.url, CLIENT_ID, SECRET, **fast()) as client:
        assert exchange.auth_log == [(1, "client_credentials", True)]
        state = deribit.session(client)
        assert state is not None and state.scope == "connection mainaccount" and state.refreshes == 0
        assert state.expires_at > time.time()
        client.subscribe(PRIVATE, wait=True, timeout=2)
        assert methods_on(exchange, 1) == ["public/set_heartbeat", "public/auth", "private/subscribe"]
        assert delivered(client, exchange, PRIVATE)
    assert deribit.session(client) is None


def test_set_heartbeat_is_sent_as_an_integer():
    """Deribit's interval is an integer: 10 is sent as 10, not 10.0 (the emulator refuses 10.0)."""
    with DeribitEmulator(credentials=dict(CREDS)) as strict:
        rec = Recorder()
        with deribit.connect(strict.url, heartbeat_interval=10, **rec.options()) as client:
            assert client.request("public/test")["version"]
        request = next(r for r in strict.requests if r["method"] == "public/set_heartbeat")
        assert request["params"] == {"interval": 10} and type(request["params"]["interval"]) is int
        assert rec.of("error") == []


def test_client_signature_grant_authenticates_without_sending_the_secret(exchange):
    with deribit.connect(exchange.url, CLIENT_ID, SECRET, grant="client_signature", scope="session:t", **fast()):
        assert exchange.auth_log == [(1, "client_signature", True)]
    auth = next(r for r in exchange.requests if r["method"] == "public/auth")
    assert auth["params"]["scope"] == "session:t"
    assert SECRET not in json.dumps(exchange.requests)


def test_private_subscription_restored_after_a_drop_with_auth_first(exchange):
    """After a drop: auth on the new connection, then the restore; private and public channels both come back."""
    rec = Recorder()
    with deribit.connect(exchange.url, CLIENT_ID, SECRET, **fast(), **rec.options()) as client:
        client.subscribe([PRIVATE, PUBLIC], wait=True, timeout=2)
        exchange.drop_connections()
        assert rec.wait("reconnect")
        assert exchange.wait_for(lambda: subscribed_on(exchange, 2, PRIVATE, PUBLIC), 3)
        sequence = methods_on(exchange, 2)
        assert sequence.index("public/auth") < sequence.index("private/subscribe")
        assert exchange.auth_log == [(1, "client_credentials", True), (2, "client_credentials", True)]
        assert delivered(client, exchange, PRIVATE)
        assert client.subscriptions == [PRIVATE, PUBLIC]
        assert rec.of("error") == []


def test_a_rotation_authenticates_the_new_connection_before_its_restore(exchange):
    with deribit.connect(exchange.url, CLIENT_ID, SECRET, **fast()) as client:
        client.subscribe(PRIVATE, wait=True, timeout=2)
        first = deribit.session(client)
        client.rotate()
        sequence = methods_on(exchange, 2)
        assert sequence.index("public/auth") < sequence.index("private/subscribe")
        assert subscribed_on(exchange, 2, PRIVATE)
        assert deribit.session(client) is not None and deribit.session(client) != first
        assert delivered(client, exchange, PRIVATE)


# ------------------------------------------------------------------ refresh


def test_the_token_is_refreshed_before_it_expires():
    """At 80% of expires_in a refresh_token grant renews it: private calls made all along are never refused."""
    with DeribitEmulator(credentials=dict(CREDS), min_heartbeat_interval=ms(10), expires_in=ms(400)) as exchange:
        exchange.register_method("private/get_positions", lambda conn, params: [], private=True)
        with deribit.connect(exchange.url, CLIENT_ID, SECRET, **fast()) as client:
            deadline = time.monotonic() + 5.0
            while refreshes(client) < 3 and time.monotonic() < deadline:
                assert client.request("private/get_positions") == []  # 13009 would raise JsonRpcError
                time.sleep(ms(40))  # pacing, under Deribit's 20 requests/s: a call in every expiry window
            assert refreshes(client) >= 3
            grants = [grant for conn, grant, ok in exchange.auth_log if ok]
            assert grants[0] == "client_credentials" and set(grants[1:]) == {"refresh_token"}
            assert exchange.unauthorized == 0
            assert exchange.connection_count == 1


def test_a_failed_refresh_falls_back_to_a_full_auth_on_the_same_connection(exchange):
    exchange.expires_in = ms(200)
    rec = Recorder()
    with deribit.connect(exchange.url, CLIENT_ID, SECRET, **fast(), **rec.options()) as client:
        client.subscribe(PRIVATE, wait=True, timeout=2)
        exchange.revoke_refresh_tokens()
        assert exchange.wait_for(lambda: len(exchange.auth_log) >= 3, 3)
        assert exchange.auth_log[:3] == [
            (1, "client_credentials", True),
            (1, "refresh_token", False),
            (1, "client_credentials", True),
        ]
        assert wait_until(lambda: deribit.session(client) is not None)
        assert exchange.connection_count == 1 and rec.of("disconnect") == []
        assert delivered(client, exchange, PRIVATE)


# ------------------------------------------------------------------ wrong credentials are fatal


def test_wrong_credentials_fail_the_first_connect_with_unauthorized(exchange):
    rec = Recorder()
    client = zw.Client(exchange.url, **deribit.options(CLIENT_ID, "wrong-secret", **fast(), **rec.options()))
    with pytest.raises(zw.ConnectError) as info:
        client.connect()
    assert info.value.reason == "unauthorized" and info.value.attempts == 1
    assert isinstance(info.value.__cause__, zw.JsonRpcError) and info.value.__cause__.code == 13004
    assert "wrong-secret" not in str(info.value)
    assert client.get_state() == "disconnected"
    assert exchange.wait_for(lambda: not exchange.connections, 2)  # closed, not left hanging
    assert exchange.auth_log == [(1, "client_credentials", False)]
    assert rec.of("close") == [("close", 1000, "unauthorized")]
    with pytest.raises(zw.NotConnectedError):
        client.send_message("x")


def test_wrong_credentials_after_a_reconnect_end_the_client_with_error_and_close(exchange):
    rec = Recorder()
    client = deribit.connect(exchange.url, CLIENT_ID, SECRET, **fast(), **rec.options())
    try:
        exchange.credentials[CLIENT_ID] = "rotated-elsewhere"
        exchange.drop_connections()
        assert rec.wait("close")
        errors = [event[1] for event in rec.of("error")]
        assert len(errors) == 1 and isinstance(errors[0], zw.ConnectError) and errors[0].reason == "unauthorized"
        assert rec.of("close") == [("close", 1000, "unauthorized")]
        assert rec.of("reconnect") == []
        assert client.get_state() == "disconnected" and exchange.connection_count == 2
        with pytest.raises(zw.ConnectionClosed):
            client.recv(timeout=1)
    finally:
        client.close()


def test_wrong_credentials_during_a_refresh_fallback_end_the_client(exchange):
    """Refresh refused, then the full auth refused too (the key was revoked): error + close, no reconnect loop."""
    exchange.expires_in = ms(200)
    rec = Recorder()
    client = deribit.connect(exchange.url, CLIENT_ID, SECRET, **fast(), **rec.options())
    try:
        exchange.credentials[CLIENT_ID] = "revoked"
        exchange.revoke_refresh_tokens()
        assert rec.wait("close")
        assert [e[1].reason for e in rec.of("error")] == ["unauthorized"]
        assert rec.of("close") == [("close", 1000, "unauthorized")]
        assert exchange.connection_count == 1
    finally:
        client.close()


def test_an_auth_that_gets_no_answer_reconnects_and_authenticates_again(exchange):
    """A recoverable refusal (public/auth timed out) drops the connection; the next one authenticates."""
    exchange.method_delays["public/auth"] = 5.0
    rec = Recorder()
    client = deribit.connect(exchange.url, CLIENT_ID, SECRET, **fast(request_timeout=ms(150)), **rec.options())
    try:
        assert rec.wait("error")
        assert rec.of("error")[0][1].reason == "timeout"
        exchange.method_delays.clear()
        assert rec.wait("reconnect", timeout=5)
        assert wait_until(lambda: deribit.session(client) is not None)
        client.subscribe(PRIVATE, wait=True, timeout=2)
        assert rec.of("close") == []
    finally:
        client.close()


# ------------------------------------------------------------------ refusals, unsubscribe_all


def test_raw_channels_without_auth_are_reported_as_needing_auth_and_kept(exchange):
    """No credentials: a .raw channel is refused 13009; the error says it needs auth; it stays for later."""
    rec = Recorder()
    with deribit.connect(exchange.url, **fast(), **rec.options()) as client:
        client.subscribe(["trades.BTC-PERPETUAL.raw", PUBLIC])
        assert rec.wait("error")
        error = rec.of("error")[0][1]
        assert isinstance(error, zw.SubscriptionError) and error.channels == ["trades.BTC-PERPETUAL.raw"]
        assert "trades.BTC-PERPETUAL.raw" in str(error) and "authenticated" in str(error)
        assert isinstance(error.__cause__, zw.JsonRpcError) and error.__cause__.code == 13009
        assert client.subscriptions == ["trades.BTC-PERPETUAL.raw", PUBLIC]
        with pytest.raises(zw.SubscriptionError, match="authenticated"):
            client.subscribe("user.trades.any.any.raw", wait=True, timeout=2)


def test_unknown_channels_are_dropped_from_the_restore_set(exchange):
    rec = Recorder()
    with deribit.connect(exchange.url, CLIENT_ID, SECRET, **fast(), **rec.options()) as client:
        with pytest.raises(zw.SubscriptionError, match="no such channel") as info:
            client.subscribe(["book.NOPE-PERPETUAL.100ms", PUBLIC], wait=True, timeout=2)
        assert info.value.channels == ["book.NOPE-PERPETUAL.100ms"]
        assert client.subscriptions == [PUBLIC]


def test_rate_limited_subscribes_stay_and_the_session_end_is_followed_by_a_restore():
    """10028: Deribit ends the session; the refused channel is kept and restored on the next connection."""
    with DeribitEmulator(
        credentials=dict(CREDS), min_heartbeat_interval=ms(10), bucket_capacity=1500, refill_per_second=1
    ) as exchange:
        rec = Recorder()
        # No client-side limiter: the point is what happens when the server's limit is hit.
        opts = fast(heartbeat_interval=None, rate_limiter=None)
        with deribit.connect(exchange.url, CLIENT_ID, SECRET, **opts, **rec.options()) as client:
            client.request("public/test")  # auth + this: 1,000 of the 1,500 credits
            client.request("public/test")
            client.subscribe(PRIVATE)  # the 4th request: 10028, then the session ends
            assert rec.wait("reconnect")
            refused = [e[1] for e in rec.of("error") if isinstance(e[1], zw.SubscriptionError)]
            assert refused and "10028" in str(refused[0]) and "stay in the restore set" in str(refused[0])
            assert exchange.wait_for(lambda: subscribed_on(exchange, 2, PRIVATE), 3)
            assert client.subscriptions == [PRIVATE]
            assert exchange.rate_limited == 1


@pytest.mark.parametrize("how", ["request", "send_message"])
def test_unsubscribe_all_sent_through_the_client_empties_the_restore_set(exchange, how):
    rec = Recorder()
    with deribit.connect(exchange.url, CLIENT_ID, SECRET, **fast(), **rec.options()) as client:
        client.subscribe([PRIVATE, PUBLIC], wait=True, timeout=2)
        if how == "request":
            assert client.request("private/unsubscribe_all") == "ok"
        else:
            future = client.send_message(zw.jsonrpc.build_request("public/unsubscribe_all"))
            assert future is not None and future.result(2)["result"] == "ok"
        assert client.subscriptions == []
        assert exchange.all_subscriptions == set()
        exchange.drop_connections()
        assert rec.wait("reconnect")
        assert not any(m.endswith("subscribe") for m in methods_on(exchange, 2))


# ------------------------------------------------------------------ heartbeat


def test_the_deribit_heartbeat_answers_every_test_request_and_stays_connected():
    """test_request_every=1 at 50 ms: every test_request is answered in time; nothing is closed."""
    with DeribitEmulator(credentials=dict(CREDS), min_heartbeat_interval=ms(10), test_request_every=1) as exchange:
        rec = Recorder()
        with deribit.connect(exchange.url, CLIENT_ID, SECRET, **fast(heartbeat_interval=ms(50)), **rec.options()):
            session = exchange.session(exchange.connections[0])
            assert wait_until(lambda: session.test_requests_answered >= 8, timeout=5)
            assert exchange.heartbeat_timeouts == 0
            assert exchange.connection_count == 1 and rec.of("disconnect") == []


# ------------------------------------------------------------------ secrets


def _leaks(secret: str, texts: list[str], width: int = 8) -> list[str]:
    pieces = {secret[i : i + width] for i in range(len(secret) - width + 1)}
    return sorted(piece for piece in pieces if any(piece in text for text in texts))


def test_secrets_never_reach_logs_reprs_errors_metrics_or_recordings(caplog, tmp_path: Path):
    """client_secret, 214-character tokens and signatures: masked whatever the frame's length (debug logs cut at 500)."""
    secret = "CS" + "q7Zr2LmX9vTb4NcWp8Ke" * 2
    recording = tmp_path / "session.jsonl"
    texts: list[str] = []
    with DeribitEmulator(credentials={CLIENT_ID: secret}, min_heartbeat_interval=ms(10), expires_in=ms(200)) as ex:
        rec = Recorder()
        caplog.set_level(logging.DEBUG, logger="zen_websocket")
        opts = fast(debug=True, record_to=str(recording), name="secrets")
        with deribit.connect(ex.url, CLIENT_ID, secret, **opts, **rec.options()) as client:
            client.subscribe(PRIVATE, wait=True, timeout=2)
            assert wait_until(lambda: refreshes(client) >= 2)
            texts += [repr(client), repr(deribit.session(client)), repr(client.config), str(client.get_state_metrics())]
        with deribit.connect(ex.url, CLIENT_ID, secret, grant="client_signature", **fast(debug=True)):
            pass
        signatures = [r["params"]["signature"] for r in ex.requests if r.get("params", {}).get("signature")]
        with pytest.raises(zw.ConnectError) as info:
            deribit.connect(ex.url, CLIENT_ID, secret + "x", **fast(debug=True))
        texts += [str(info.value), repr(info.value), str(info.value.__cause__)]
        tokens = list(ex.tokens_issued)
    assert len(tokens) >= 6 and all(len(token) == 214 for token in tokens)
    # The auth answers are longer than the 500 characters a debug line shows: the tokens straddle the cut.
    sizes = [int(n) for r in caplog.records for n in re.findall(r" text (\d+) chars: ", r.getMessage())]
    assert max(sizes) > 600
    texts += [record.getMessage() for record in caplog.records]
    texts.append(recording.read_text(encoding="utf-8"))
    texts += [repr(event) for event in rec.events]
    for value in (secret, *tokens, *signatures):
        assert _leaks(value, texts) == [], f"a piece of a secret leaked: {value[:4]}..."


# ------------------------------------------------------------------ chaos: no private channel lost


def _received_method(exchange: DeribitEmulator, conn_id: int, method: str, grant: str | None = None) -> bool:
    conn = open_connection(exchange, conn_id)
    if conn is None:
        return False
    for raw in list(conn.received):
        request = json.loads(raw)
        if request.get("method") == method and (grant is None or request["params"].get("grant_type") == grant):
            return True
    return False


def _latest_id(exchange: DeribitEmulator) -> int:
    return max(c.id for c in exchange.all_connections)


def _assert_private_channel_survived(client: zw.Client, exchange: DeribitEmulator) -> None:
    """The private channel is subscribed on the newest connection, authenticated there, and delivers."""
    assert wait_until(lambda: subscribed_on(exchange, _latest_id(exchange), PRIVATE, PUBLIC), timeout=5)
    assert client.subscriptions == [PRIVATE, PUBLIC]
    assert delivered(client, exchange, PRIVATE)
    assert deribit.session(client) is not None


@pytest.mark.chaos
def test_chaos_drops_during_auth_lose_no_private_channel():
    """The connection drops three times while public/auth is in flight; each reconnect authenticates and restores."""
    with DeribitEmulator(credentials=dict(CREDS), min_heartbeat_interval=ms(10)) as exchange:
        rec = Recorder()
        with deribit.connect(exchange.url, CLIENT_ID, SECRET, **fast(), **rec.options()) as client:
            client.subscribe([PRIVATE, PUBLIC], wait=True, timeout=2)
            exchange.method_delays["public/auth"] = ms(150)  # a window to drop in
            for conn_id in (2, 3, 4):
                exchange.drop_connections()
                assert exchange.wait_for(lambda c=conn_id: _received_method(exchange, c, "public/auth"), 3)
            exchange.method_delays.clear()
            exchange.drop_connections()
            _assert_private_channel_survived(client, exchange)
            assert [e for e in rec.of("error") if isinstance(e[1], zw.SubscriptionError)] == []
            assert rec.of("close") == []


@pytest.mark.chaos
def test_chaos_drop_during_a_refresh_loses_no_private_channel():
    """The connection drops while a refresh_token grant is in flight; the reconnect does a full auth."""
    with DeribitEmulator(credentials=dict(CREDS), min_heartbeat_interval=ms(10), expires_in=ms(200)) as exchange:
        rec = Recorder()
        with deribit.connect(exchange.url, CLIENT_ID, SECRET, **fast(), **rec.options()) as client:
            client.subscribe([PRIVATE, PUBLIC], wait=True, timeout=2)
            exchange.method_delays["public/auth"] = ms(100)
            assert exchange.wait_for(lambda: _received_method(exchange, 1, "public/auth", "refresh_token"), 3)
            exchange.drop_connections()  # the refresh's answer never comes
            assert rec.wait("reconnect")
            exchange.method_delays.clear()
            _assert_private_channel_survived(client, exchange)
            assert wait_until(lambda: refreshes(client) >= 1, timeout=3)  # refreshing again on the new connection
            assert exchange.unauthorized == 0 and rec.of("close") == []


@pytest.mark.chaos
def test_chaos_drops_during_a_restore_lose_no_private_channel():
    """The connection drops twice while the private/subscribe of a restore is in flight."""
    with DeribitEmulator(credentials=dict(CREDS), min_heartbeat_interval=ms(10)) as exchange:
        rec = Recorder()
        with deribit.connect(exchange.url, CLIENT_ID, SECRET, **fast(), **rec.options()) as client:
            client.subscribe([PRIVATE, PUBLIC], wait=True, timeout=2)
            exchange.method_delays["private/subscribe"] = ms(150)
            for conn_id in (2, 3):
                exchange.drop_connections()
                assert exchange.wait_for(lambda c=conn_id: _received_method(exchange, c, "private/subscribe"), 3)
            exchange.method_delays.clear()
            exchange.drop_connections()
            _assert_private_channel_survived(client, exchange)
            assert rec.of("close") == []


@pytest.mark.chaos
def test_chaos_an_unanswered_auth_on_a_reconnect_never_restores_unauthenticated():
    """public/auth times out on the reconnect: the connection is dropped instead of restoring without auth."""
    with DeribitEmulator(credentials=dict(CREDS), min_heartbeat_interval=ms(10)) as exchange:
        rec = Recorder()
        opts = fast(request_timeout=ms(200))
        with deribit.connect(exchange.url, CLIENT_ID, SECRET, **opts, **rec.options()) as client:
            client.subscribe([PRIVATE, PUBLIC], wait=True, timeout=2)
            exchange.method_delays["public/auth"] = 5.0  # answered too late for request_timeout
            exchange.drop_connections()
            assert rec.wait("error")
            exchange.method_delays.clear()
            _assert_private_channel_survived(client, exchange)
            assert exchange.unauthorized == 0  # no private/subscribe ever went out unauthenticated
            # The auth timeout is reported; under load the churn around it may also
            # report a send that met a dropped connection, and nothing else.
            errors = [e[1] for e in rec.of("error")]
            assert any(isinstance(e, zw.ConnectError) and e.reason == "timeout" for e in errors)
            assert all(isinstance(e, (zw.ConnectError, zw.NotConnectedError)) for e in errors), errors
