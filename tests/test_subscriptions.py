"""Pure tests of zen_websocket.subscriptions: the set, the dialects, restores."""

from __future__ import annotations

import threading

import pytest

from zen_websocket import subscriptions
from zen_websocket.errors import ConfigError, SubscriptionError
from zen_websocket.subscriptions import (
    BinanceDialect,
    CallableDialect,
    DeribitDialect,
    Dialect,
    Request,
    SubscriptionSet,
    get_dialect,
    plan_restore,
)

# --- SubscriptionSet ------------------------------------------------------------


def test_add_returns_only_new_channels_in_order():
    subs = SubscriptionSet()
    assert subs.add(["b", "a"]) == ["b", "a"]
    assert subs.add(["a", "c", "c"]) == ["c"]
    assert subs.snapshot() == ["b", "a", "c"]


def test_a_single_string_is_one_channel_not_its_letters():
    subs = SubscriptionSet()
    assert subs.add("book.BTC-PERPETUAL.100ms") == ["book.BTC-PERPETUAL.100ms"]
    assert len(subs) == 1


def test_remove_returns_only_channels_that_were_present():
    subs = SubscriptionSet(["a", "b", "c"])
    assert subs.remove(["c", "x", "a"]) == ["c", "a"]
    assert subs.snapshot() == ["b"]
    assert "b" in subs and "a" not in subs


def test_readding_a_removed_channel_puts_it_last():
    subs = SubscriptionSet(["a", "b"])
    subs.remove("a")
    subs.add("a")
    assert subs.snapshot() == ["b", "a"]


def test_clear_empties_the_set_and_returns_what_was_there():
    subs = SubscriptionSet(["a", "b"])
    assert subs.clear() == ["a", "b"]
    assert len(subs) == 0 and subs.snapshot() == []


def test_snapshot_is_a_copy():
    subs = SubscriptionSet(["a"])
    snapshot = subs.snapshot()
    snapshot.append("b")
    assert subs.snapshot() == ["a"]
    assert list(subs) == ["a"]


@pytest.mark.parametrize("bad", [[""], [None], [1], [b"a"]])
def test_channel_names_must_be_non_empty_strings(bad):
    with pytest.raises(TypeError, match="channel"):
        SubscriptionSet().add(bad)


def test_concurrent_adds_report_each_channel_as_new_exactly_once():
    subs = SubscriptionSet()
    reported: list[list[str]] = [[] for _ in range(8)]
    channels = [f"ch{i}" for i in range(500)]

    def adder(out: list[str], offset: int) -> None:
        for channel in channels[offset:] + channels[:offset]:
            out.extend(subs.add(channel))

    threads = [threading.Thread(target=adder, args=(reported[n], n * 50)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    everything = [channel for out in reported for channel in out]
    assert sorted(everything) == sorted(channels)
    assert len(subs) == 500


# --- Deribit -----------------------------------------------------------------------


def test_deribit_builds_a_public_subscribe_json_rpc_request():
    (request,) = DeribitDialect().build(["book.BTC-PERPETUAL.100ms", "deribit_price_index.btc_usd"], True)
    message = request.message
    assert isinstance(message, dict)
    assert message["jsonrpc"] == "2.0"
    assert message["method"] == "public/subscribe"
    assert message["params"] == {"channels": ["book.BTC-PERPETUAL.100ms", "deribit_price_index.btc_usd"]}
    assert isinstance(message["id"], int) and request.request_id == message["id"]
    assert request.method == "public/subscribe"
    assert request.channels == ["book.BTC-PERPETUAL.100ms", "deribit_price_index.btc_usd"]


def test_deribit_sends_auth_channels_in_a_separate_private_request_after_public_ones():
    requests = DeribitDialect().build(
        ["user.orders.any.any.raw", "ticker.BTC-PERPETUAL.100ms", "trades.BTC-PERPETUAL.raw"], True
    )
    assert [r.method for r in requests] == ["public/subscribe", "private/subscribe"]
    assert requests[0].channels == ["ticker.BTC-PERPETUAL.100ms"]
    assert requests[1].channels == ["user.orders.any.any.raw", "trades.BTC-PERPETUAL.raw"]
    assert requests[0].request_id != requests[1].request_id


def test_deribit_unsubscribe_uses_the_unsubscribe_methods():
    requests = DeribitDialect().build(["ticker.X.100ms", "user.trades.any.any.raw"], False)
    assert [r.method for r in requests] == ["public/unsubscribe", "private/unsubscribe"]


def test_deribit_private_channels_are_user_and_raw():
    dialect = DeribitDialect()
    assert dialect.needs_auth("user.portfolio.btc")
    assert dialect.needs_auth("book.BTC-PERPETUAL.raw")
    assert not dialect.needs_auth("book.BTC-PERPETUAL.100ms")
    assert not dialect.needs_auth("deribit_price_index.btc_usd")


def test_deribit_batches_large_subscriptions():
    channels = [f"ticker.I{i}.100ms" for i in range(1200)]
    requests = DeribitDialect().build(channels, True)
    assert [len(r.channels) for r in requests] == [500, 500, 200]
    assert [c for r in requests for c in r.channels] == channels
    assert len({r.request_id for r in requests}) == 3
    assert all(r.message["params"]["channels"] == r.channels for r in requests)  # type: ignore[index]


def test_deribit_drops_duplicate_channels_and_builds_nothing_for_none():
    dialect = DeribitDialect()
    (request,) = dialect.build(["a.100ms", "a.100ms"], True)
    assert request.channels == ["a.100ms"]
    assert dialect.build([], True) == []


def test_deribit_ack_reports_channels_missing_from_the_result():
    dialect = DeribitDialect()
    (request,) = dialect.build(["a.100ms", "b.100ms", "c.100ms"], True)
    response = {"jsonrpc": "2.0", "id": request.request_id, "result": ["a.100ms", "c.100ms"]}
    assert dialect.check_ack(request, response) == ["b.100ms"]
    response["result"] = ["c.100ms", "b.100ms", "a.100ms"]
    assert dialect.check_ack(request, response) == []


@pytest.mark.parametrize(
    "response",
    [
        {"jsonrpc": "2.0", "id": 1, "error": {"code": 13009, "message": "unauthorized"}},
        {"jsonrpc": "2.0", "id": 1, "result": "ok"},
        {"jsonrpc": "2.0", "id": 1, "result": None},
        "garbage",
    ],
)
def test_deribit_ack_error_or_unexpected_result_confirms_nothing(response):
    dialect = DeribitDialect()
    (request,) = dialect.build(["a.100ms", "b.100ms"], True)
    assert dialect.check_ack(request, response) == ["a.100ms", "b.100ms"]


def test_deribit_has_no_connection_cap_and_spaces_requests_for_its_subscribe_limit():
    dialect = DeribitDialect()
    dialect.check_capacity(100_000, 100_000)  # no published cap: never refuses
    assert dialect.max_channels is None
    assert dialect.min_interval >= 1 / 3  # about 3 subscribe requests per second


# --- Binance -----------------------------------------------------------------------


def test_binance_builds_subscribe_control_messages():
    (request,) = BinanceDialect().build(["btcusdt@trade", "ethusdt@depth@100ms"], True)
    assert request.message == {
        "method": "SUBSCRIBE",
        "params": ["btcusdt@trade", "ethusdt@depth@100ms"],
        "id": request.request_id,
    }
    assert isinstance(request.request_id, int) and request.method == "SUBSCRIBE"


def test_binance_builds_unsubscribe_control_messages():
    (request,) = BinanceDialect().build("btcusdt@trade", False)
    assert request.message["method"] == "UNSUBSCRIBE"  # type: ignore[index]


def test_binance_keeps_stream_names_as_given():
    # kline_1M (monthly) is upper case on purpose: names are not lower-cased.
    (request,) = BinanceDialect().build(["btcusdt@kline_1M"], True)
    assert request.channels == ["btcusdt@kline_1M"]


def test_binance_batches_streams_per_message():
    channels = [f"s{i}@trade" for i in range(450)]
    requests = BinanceDialect().build(channels, True)
    assert [len(r.channels) for r in requests] == [200, 200, 50]
    assert [c for r in requests for c in r.channels] == channels


def test_binance_null_result_confirms_every_stream():
    dialect = BinanceDialect()
    (request,) = dialect.build(["a@trade", "b@trade"], True)
    assert dialect.check_ack(request, {"result": None, "id": request.request_id}) == []


@pytest.mark.parametrize(
    "response",
    [
        {"code": 2, "msg": "Invalid request: too many streams", "id": 1},
        {"id": 1, "error": {"code": 3, "msg": "bad"}},
        {"e": "trade"},
        None,
    ],
)
def test_binance_error_confirms_no_stream(response):
    dialect = BinanceDialect()
    (request,) = dialect.build(["a@trade", "b@trade"], True)
    assert dialect.check_ack(request, response) == ["a@trade", "b@trade"]


def test_binance_refuses_more_than_1024_streams_per_connection():
    dialect = BinanceDialect()
    dialect.check_capacity(1000, 24)
    with pytest.raises(SubscriptionError, match="1024") as info:
        dialect.check_capacity(1000, 25, ["x@trade"] * 25)
    assert len(info.value.channels) == 25


def test_binance_spaces_control_messages_within_five_per_second():
    dialect = BinanceDialect()
    assert dialect.max_channels == 1024
    assert dialect.min_interval >= 0.2


# --- callable dialect ------------------------------------------------------------------


def test_callable_dialect_sends_one_message_and_tracks_its_id():
    calls: list[tuple[list[str], bool]] = []

    def okx(channels: list[str], subscribe: bool) -> dict:
        calls.append((channels, subscribe))
        return {"op": "subscribe" if subscribe else "unsubscribe", "args": channels, "id": "req-1"}

    dialect = CallableDialect(okx)
    (request,) = dialect.build(["a", "b"], True)
    assert calls == [(["a", "b"], True)]
    assert request.request_id == "req-1" and request.channels == ["a", "b"]
    assert dialect.name == "okx"
    assert dialect.check_ack(request, {"id": "req-1", "result": True}) == []
    assert dialect.check_ack(request, {"id": "req-1", "error": {"code": 1}}) == ["a", "b"]


def test_callable_dialect_takes_the_method_of_a_json_rpc_message():
    dialect = CallableDialect(lambda ch, sub: {"jsonrpc": "2.0", "id": 5, "method": "sub", "params": ch})
    (request,) = dialect.build(["a"], True)
    assert (request.request_id, request.method) == (5, "sub")


@pytest.mark.parametrize("message", ['{"op": "subscribe"}', b"sub", ["a"], {"op": "subscribe"}, {"id": True}])
def test_callable_dialect_without_an_id_expects_no_ack(message):
    dialect = CallableDialect(lambda channels, subscribe: message)
    (request,) = dialect.build(["a"], True)
    assert request.request_id is None
    assert dialect.check_ack(request, {"code": 1, "msg": "error", "id": 9}) == []


def test_callable_dialect_rejects_a_function_that_returns_no_message():
    dialect = CallableDialect(lambda channels, subscribe: None)
    with pytest.raises(TypeError, match="returned NoneType"):
        dialect.build(["a"], True)


def test_callable_dialect_builds_nothing_for_no_channels():
    called: list[bool] = []
    dialect = CallableDialect(lambda channels, subscribe: called.append(True) or {})
    assert dialect.build([], True) == []
    assert called == []


# --- get_dialect, plan_restore ----------------------------------------------------------


def test_get_dialect_by_name_instance_and_callable():
    assert isinstance(get_dialect("deribit"), DeribitDialect)
    assert isinstance(get_dialect("binance"), BinanceDialect)
    mine = BinanceDialect()
    assert get_dialect(mine) is mine
    assert isinstance(get_dialect(lambda channels, subscribe: {}), CallableDialect)


@pytest.mark.parametrize("fmt", ["kraken", "Deribit", "", 5, None])
def test_get_dialect_rejects_unknown_formats_naming_the_option(fmt):
    with pytest.raises(ConfigError) as info:
        get_dialect(fmt)
    assert info.value.option == "subscription_format"


def test_base_dialect_has_no_builder():
    with pytest.raises(NotImplementedError):
        Dialect().build(["a"], True)


def test_plan_restore_subscribes_everything_in_subscription_order():
    subs = SubscriptionSet(["user.orders.any.any.raw", "ticker.A.100ms", "ticker.B.100ms"])
    requests = plan_restore(DeribitDialect(), subs)
    assert [r.method for r in requests] == ["public/subscribe", "private/subscribe"]
    assert requests[0].channels == ["ticker.A.100ms", "ticker.B.100ms"]
    assert requests[1].channels == ["user.orders.any.any.raw"]


def test_plan_restore_batches_binance_streams():
    channels = [f"s{i}@trade" for i in range(1024)]
    requests = plan_restore(BinanceDialect(), channels)
    assert sum(len(r.channels) for r in requests) == 1024
    assert all(r.method == "SUBSCRIBE" for r in requests)
    assert len(requests) == 6


def test_plan_restore_refuses_more_streams_than_a_connection_holds():
    with pytest.raises(SubscriptionError):
        plan_restore(BinanceDialect(), [f"s{i}@trade" for i in range(1025)])


def test_plan_restore_of_nothing_sends_nothing():
    assert plan_restore(BinanceDialect(), SubscriptionSet()) == []


def test_request_is_immutable():
    request = Request({"a": 1}, ["a"], 1, "m")
    with pytest.raises(AttributeError):
        request.request_id = 2  # type: ignore[misc]


def test_module_exports_are_defined():
    for name in subscriptions.__all__:
        assert hasattr(subscriptions, name), name


# --- contracts the mutation run pinned down ------------------------------------------------


def test_build_subscribes_unless_told_otherwise():
    assert DeribitDialect().build(["trades.x"])[0].method == "public/subscribe"
    assert BinanceDialect().build(["trades.x"])[0].method == "SUBSCRIBE"
    assert CallableDialect(lambda ch, sub: {"sub": sub}).build(["trades.x"])[0].message == {"sub": True}


def test_the_base_dialect_treats_every_channel_as_public():
    assert Dialect().needs_auth("user.orders.any.any.raw") is False


def test_plan_restore_asks_the_dialect_to_subscribe_explicitly():
    calls: list[tuple[list[str], object]] = []

    class Recording(Dialect):
        def build(self, channels, subscribe=False):  # a subclass with another default
            calls.append((list(channels), subscribe))
            return []

    plan_restore(Recording(), SubscriptionSet(["a", "b"]))
    assert calls == [(["a", "b"], True)]


def test_plan_restore_names_the_channels_that_do_not_fit():
    channels = [f"s{i}@trade" for i in range(1025)]
    with pytest.raises(SubscriptionError) as info:
        plan_restore(BinanceDialect(), channels)
    assert info.value.channels == channels


def test_check_capacity_without_channels_raises_with_none_listed():
    with pytest.raises(SubscriptionError, match="1024") as info:
        BinanceDialect().check_capacity(1020, 5)
    assert info.value.channels == []
    BinanceDialect().check_capacity(1020, 4)  # exactly full is allowed


def test_batches_without_a_batch_size_is_one_batch_and_a_copy():
    channels = ["a", "b", "c"]
    (batch,) = Dialect().batches(channels)
    assert batch == channels and batch is not channels


def test_dialects_repr_names_their_class():
    assert repr(Dialect()) == "Dialect()"
    assert repr(DeribitDialect()).startswith("DeribitDialect(")


def test_deribit_error_response_confirms_nothing_even_with_a_result_list():
    (request,) = DeribitDialect().build(["a", "b"], True)
    response = {"id": request.request_id, "error": {"code": 1, "message": "no"}, "result": ["a", "b"]}
    assert DeribitDialect().check_ack(request, response) == ["a", "b"]


def test_callable_dialect_rejects_a_non_callable_naming_the_option():
    with pytest.raises(ConfigError) as info:
        CallableDialect("okx")  # type: ignore[arg-type]
    assert info.value.option == "subscription_format"


def test_callable_dialect_without_a_name_is_called_custom():
    class Builder:
        def __call__(self, channels: list[str], subscribe: bool) -> dict:
            return {"channels": channels}

    assert CallableDialect(Builder()).name == "custom"


def test_callable_dialect_request_carries_the_built_message_and_no_method_unless_given():
    message = {"op": "subscribe", "args": ["a"], "id": 3}
    (request,) = CallableDialect(lambda channels, subscribe: message).build(["a"], True)
    assert request.message is message
    assert request.method is None
