"""Exchange dialects without sockets: OKX/Bybit acks the dialect matches itself, Binance control
events, the session's hook that consults them, and Binance 429/418 answers as RateLimited."""

from __future__ import annotations

import json
import time

import pytest

from tests.timeunit import FakeClock
from zen_websocket.config import ClientConfig
from zen_websocket.errors import JsonRpcError, RateLimited
from zen_websocket.jsonrpc import Correlator, RateLimitedResponse, error_from_response
from zen_websocket.session import Session
from zen_websocket.subscriptions import (
    Ack,
    BinanceDialect,
    BybitDialect,
    DeribitDialect,
    OkxDialect,
    get_dialect,
    okx_arg,
    okx_channel,
    plan_restore,
)

# -- OKX -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "arg"),
    [
        ("tickers:BTC-USDT", {"channel": "tickers", "instId": "BTC-USDT"}),
        ("status", {"channel": "status"}),
        ("instruments:instType=SPOT", {"channel": "instruments", "instType": "SPOT"}),
        (
            "mark-price:instFamily=BTC-USD&instType=OPTION",
            {"channel": "mark-price", "instFamily": "BTC-USD", "instType": "OPTION"},
        ),
    ],
)
def test_okx_channel_names_round_trip_through_args(name, arg):
    assert okx_arg(name) == arg
    assert okx_channel(arg) == name


def test_okx_builds_subscribe_messages_with_ids_and_args_in_batches_of_100():
    dialect = OkxDialect()
    requests = dialect.build([f"tickers:C{i}-USDT" for i in range(150)], True)
    assert [len(r.channels) for r in requests] == [100, 50]
    first = requests[0]
    assert first.message["op"] == "subscribe" and first.method == "subscribe"
    assert first.message["args"][0] == {"channel": "tickers", "instId": "C0-USDT"}
    assert first.message["id"] == first.request_id and first.request_id.isalnum() and len(first.request_id) <= 32
    assert requests[0].request_id != requests[1].request_id
    assert dialect.build(["tickers:A-B"], False)[0].message["op"] == "unsubscribe"


def ack(op: str, name: str, **extra) -> dict:
    return {"event": op, "arg": okx_arg(name), "connId": "c1", **extra}


def test_okx_acks_confirm_channel_by_channel_and_complete_the_request_with_the_last():
    dialect = OkxDialect()
    (request,) = dialect.build(["tickers:BTC-USDT", "tickers:ETH-USDT"], True)
    assert dialect.match_ack(ack("subscribe", "tickers:ETH-USDT")) == Ack(request.request_id, done=False)
    done = dialect.match_ack(ack("subscribe", "tickers:BTC-USDT"))
    assert done is not None and done.done and done.request_id == request.request_id
    assert dialect.check_ack(request, done.response) == []
    assert done.response["confirmed"] == ["tickers:BTC-USDT", "tickers:ETH-USDT"]


def test_okx_error_without_id_refuses_the_channel_its_text_names():
    dialect = OkxDialect()
    (request,) = dialect.build(["tickers:BTC-USDT", "tickers:NOPE-USDT", "tickers:ETH-USDT"], True)
    error = {"event": "error", "code": "60018", "msg": "Wrong URL or channel:tickers,instId:NOPE-USDT doesn't exist."}
    assert dialect.match_ack(ack("subscribe", "tickers:BTC-USDT")).done is False
    assert dialect.match_ack(error).done is False
    done = dialect.match_ack(ack("subscribe", "tickers:ETH-USDT"))
    assert dialect.check_ack(request, done.response) == ["tickers:NOPE-USDT"]
    assert done.response["errors"] == [{"code": "60018", "msg": error["msg"]}]


def test_okx_error_naming_nothing_refuses_the_first_unanswered_channel():
    """OKX answers the args of a message in order."""
    dialect = OkxDialect()
    (request,) = dialect.build(["tickers:A-USDT", "tickers:B-USDT"], True)
    dialect.match_ack(ack("subscribe", "tickers:A-USDT"))
    done = dialect.match_ack({"event": "error", "code": "60012", "msg": "Invalid request"})
    assert done.done and dialect.check_ack(request, done.response) == ["tickers:B-USDT"]


def test_okx_echoed_id_picks_the_request():
    dialect = OkxDialect()
    (older,) = dialect.build(["tickers:BTC-USDT"], True)
    (newer,) = dialect.build(["tickers:BTC-USDT"], True)
    done = dialect.match_ack(ack("subscribe", "tickers:BTC-USDT", id=newer.request_id))
    assert done.request_id == newer.request_id
    assert dialect.match_ack(ack("subscribe", "tickers:BTC-USDT")).request_id == older.request_id


def test_okx_unknown_acks_are_swallowed_and_foreign_errors_go_to_the_user():
    dialect = OkxDialect()
    assert dialect.match_ack(ack("subscribe", "tickers:BTC-USDT")) == Ack(None)
    assert dialect.match_ack({"event": "error", "code": "60009", "msg": "Login failed."}) is None
    assert dialect.match_ack({"event": "login", "code": "0"}) is None
    assert dialect.match_ack({"arg": {"channel": "tickers"}, "data": []}) is None


def test_okx_forgets_expected_acks_when_the_connection_is_gone():
    dialect = OkxDialect()
    dialect.build(["tickers:BTC-USDT"], True)
    dialect.forget_acks()
    assert dialect.match_ack(ack("subscribe", "tickers:BTC-USDT")) == Ack(None)


def test_okx_bookkeeping_is_bounded():
    dialect = OkxDialect()
    for i in range(OkxDialect.MAX_EXPECTED + 10):
        dialect.build([f"tickers:C{i}-USDT"], True)
    assert len(dialect._expected) == OkxDialect.MAX_EXPECTED


def test_okx_unexpected_answers_confirm_nothing():
    (request,) = OkxDialect().build(["tickers:BTC-USDT"], True)
    assert OkxDialect().check_ack(request, {"event": "error"}) == ["tickers:BTC-USDT"]


# -- Bybit -----------------------------------------------------------------------------------


def test_bybit_builds_at_most_10_topics_per_request_each_with_a_req_id():
    requests = BybitDialect().build([f"publicTrade.S{i}" for i in range(25)], True)
    assert [len(r.channels) for r in requests] == [10, 10, 5]
    message = requests[0].message
    assert message["op"] == "subscribe" and message["req_id"] == requests[0].request_id
    assert message["args"] == [f"publicTrade.S{i}" for i in range(10)]


def test_bybit_answers_are_matched_by_req_id_and_pongs_are_not():
    dialect = BybitDialect()
    (request,) = dialect.build(["orderbook.50.BTCUSDT"], True)
    answer = {"success": True, "ret_msg": "", "conn_id": "x", "req_id": request.request_id, "op": "subscribe"}
    assert dialect.match_ack(answer) == Ack(request.request_id, True, answer)
    assert dialect.check_ack(request, answer) == []
    pong = {"success": True, "ret_msg": "pong", "conn_id": "x", "req_id": "", "op": "ping"}
    assert dialect.match_ack(pong) is None
    assert dialect.match_ack({**answer, "req_id": ""}) == Ack(None)


def test_bybit_refusal_names_its_topics_or_refuses_all():
    dialect = BybitDialect()
    (request,) = dialect.build(["orderbook.50.BTCUSDT", "publicTrade.NOPE"], True)
    named = {"success": False, "ret_msg": "Invalid topic :[publicTrade.NOPE]", "req_id": request.request_id}
    assert dialect.check_ack(request, named) == ["publicTrade.NOPE"]
    vague = {"success": False, "ret_msg": "args size >10", "req_id": request.request_id}
    assert dialect.check_ack(request, vague) == request.channels


def test_okx_and_bybit_are_registered_names():
    assert isinstance(get_dialect("okx"), OkxDialect)
    assert isinstance(get_dialect("bybit"), BybitDialect)


def test_a_dialect_is_also_a_subscription_format_callable():
    dialect = BybitDialect()
    assert callable(dialect)
    assert dialect(["publicTrade.BTCUSDT"], True)["args"] == ["publicTrade.BTCUSDT"]
    with pytest.raises(ValueError):
        dialect([f"publicTrade.S{i}" for i in range(11)], True)
    assert plan_restore(dialect, ["publicTrade.BTCUSDT"])[0].message["op"] == "subscribe"


# -- Binance control events -------------------------------------------------------------------

SHUTDOWN = {"e": "serverShutdown", "E": 1}


@pytest.mark.parametrize(
    "message",
    [SHUTDOWN, {"stream": "!serverShutdown", "data": SHUTDOWN}, {"event": SHUTDOWN}],
    ids=["raw", "combined", "ws-api"],
)
def test_binance_server_shutdown_asks_for_a_rotation_in_every_wrapping(message):
    assert BinanceDialect(rotate_on_shutdown=True).event_action(message) == "rotate"
    assert BinanceDialect().event_action(message) is None  # only when asked for


def test_binance_listen_key_expired_asks_for_a_renewal_handled_by_the_callback():
    seen = []
    dialect = BinanceDialect(on_listen_key_expired=lambda event: seen.append(event) or True)
    event = {"e": "listenKeyExpired", "E": 1, "listenKey": "k"}
    assert dialect.event_markers == ('"listenKeyExpired"',)
    assert dialect.event_action(event) == "renew"
    assert dialect.renew({"stream": "k", "data": event}) is True
    assert seen == [event]
    assert BinanceDialect().renew(event) is False


def test_binance_markers_are_empty_unless_events_are_wanted():
    assert BinanceDialect().event_markers == ()
    assert DeribitDialect().ack_markers == () and DeribitDialect().event_markers == ()


# -- the session's hook -------------------------------------------------------------------------


def session_with(dialect, clock: FakeClock | None = None) -> Session:
    config = ClientConfig.from_options("ws://127.0.0.1:1/", heartbeat_config=None)
    session = Session(config, Correlator(clock or FakeClock()))
    session.use_dialect(dialect)
    return session


def test_session_completes_an_okx_request_only_when_every_channel_is_answered():
    dialect = OkxDialect()
    session = session_with(dialect)
    (request,) = dialect.build(["tickers:BTC-USDT", "tickers:ETH-USDT"], True)
    future = session.correlator.track(request.request_id, "subscribe", timeout=None, resolve_with="response")
    first = session.text_received(json.dumps(ack("subscribe", "tickers:BTC-USDT")), 1.0)
    assert first is not None and first.kind == "ack" and not first.deliver
    last = session.text_received(json.dumps(ack("subscribe", "tickers:ETH-USDT")), 1.0)
    assert last is not None and last.kind == "response" and last.deliver is False
    last.pending.complete(last.message)
    assert future.result(0)["confirmed"] == ["tickers:BTC-USDT", "tickers:ETH-USDT"]
    assert len(session.correlator) == 0


def test_session_leaves_market_data_alone():
    session = session_with(OkxDialect())
    assert session.filters_text
    data = json.dumps({"arg": {"channel": "tickers", "instId": "BTC-USDT"}, "data": [{"last": "1"}]})
    assert session.text_received(data, 1.0) is None
    assert session.parse_errors == 0


def test_session_swallows_an_ack_whose_request_timed_out():
    dialect = BybitDialect()
    session = session_with(dialect)
    (request,) = dialect.build(["publicTrade.BTCUSDT"], True)
    answer = {"success": True, "ret_msg": "", "req_id": request.request_id, "op": "subscribe"}
    action = session.text_received(json.dumps(answer), 1.0)
    assert action is not None and action.kind == "ack"
    assert session.unmatched_responses == 1


def test_session_turns_server_shutdown_into_a_rotation_that_is_still_delivered():
    session = session_with(BinanceDialect(rotate_on_shutdown=True))
    action = session.text_received(json.dumps({"stream": "!serverShutdown", "data": SHUTDOWN}), 1.0)
    assert action is not None and action.kind == "rotate" and action.deliver
    assert session.text_received(json.dumps({"stream": "btcusdt@trade", "data": {"e": "trade"}}), 1.0) is None


def test_a_plain_binance_dialect_costs_the_receive_path_nothing():
    session = session_with(BinanceDialect())
    assert not session.filters_text


def test_a_dialect_that_raises_never_breaks_the_receive_path():
    class Broken(OkxDialect):
        def match_ack(self, message):
            raise RuntimeError("bug")

    session = session_with(Broken())
    assert session.text_received(json.dumps(ack("subscribe", "tickers:BTC-USDT")), 1.0) is None


def test_disconnect_forgets_the_dialect_acks():
    dialect = OkxDialect()
    session = session_with(dialect)
    dialect.build(["tickers:BTC-USDT"], True)
    session.disconnected()
    assert dialect._expected == {}


# -- Binance WebSocket API rate-limit answers -----------------------------------------------------


def binance_error(status: int, data: dict | None) -> dict:
    error = {"code": -1003, "msg": "Too much request weight used"}
    if data is not None:
        error["data"] = data
    return {"id": "7", "status": status, "error": error, "rateLimits": []}


def test_status_429_is_rate_limited_with_retry_after_from_the_servers_clock():
    exc = error_from_response(binance_error(429, {"serverTime": 1_000_000, "retryAfter": 1_012_500}), "depth")
    assert isinstance(exc, RateLimitedResponse)
    assert isinstance(exc, RateLimited) and isinstance(exc, JsonRpcError)
    assert exc.retry_after == pytest.approx(12.5)
    assert (exc.status, exc.code, exc.method, exc.request_id) == (429, -1003, "depth", "7")
    assert "Too much request weight" in str(exc)


def test_status_418_is_rate_limited_too():
    exc = error_from_response(binance_error(418, {"serverTime": 5_000, "retryAfter": 125_000}))
    assert isinstance(exc, RateLimited) and exc.status == 418 and exc.retry_after == pytest.approx(120.0)


def test_without_retry_after_it_waits_for_the_next_whole_minute():
    exc = error_from_response(binance_error(429, None))
    assert isinstance(exc, RateLimited)
    assert 0.0 < exc.retry_after <= 60.0
    assert exc.retry_after == pytest.approx(60.0 - time.time() % 60.0, abs=1.0)


def test_other_errors_stay_plain_json_rpc_errors():
    exc = error_from_response({"id": 1, "status": 400, "error": {"code": -1102, "msg": "bad"}})
    assert type(exc) is JsonRpcError


def test_a_request_waiting_for_its_result_raises_rate_limited():
    correlator = Correlator(FakeClock())
    future = correlator.track(7, "depth", timeout=None)
    response = binance_error(429, {"serverTime": 0, "retryAfter": 3000})
    response["id"] = 7
    correlator.resolve(response)
    with pytest.raises(RateLimited) as info:
        future.result(0)
    assert info.value.retry_after == pytest.approx(3.0)


def test_correlator_take_id_for_answers_without_an_id_member():
    correlator = Correlator(FakeClock())
    correlator.track("zw1", "subscribe", timeout=None)
    assert correlator.take_id(True) is None
    pending = correlator.take_id("zw1")
    assert pending is not None and pending.id == "zw1" and pending.rtt == 0.0
    assert correlator.take_id("zw1") is None
