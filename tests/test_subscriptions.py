"""Pure tests of zen_websocket.subscriptions: the set, the dialects, restores."""

from __future__ import annotations

import threading

import pytest

from zen_websocket import subscriptions
from zen_websocket.errors import ConfigError, SubscriptionError
from zen_websocket.subscriptions import (
    Ack,
    BinanceDialect,
    BybitDialect,
    CallableDialect,
    DeribitDialect,
    Dialect,
    OkxDialect,
    Refusal,
    Request,
    SubscriptionSet,
    get_dialect,
    okx_arg,
    okx_channel,
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


# --- refusals: why a channel was not confirmed ----------------------------------------------


def test_the_base_dialect_calls_every_refusal_permanent_quoting_the_error():
    (request,) = DeribitDialect().build(["a.100ms"], True)
    error = {"jsonrpc": "2.0", "id": 1, "error": {"code": 11050, "message": "bad_request"}}
    assert Dialect().classify_refusal(request, error) == Refusal(False, "refused with [11050] bad_request")
    binance_style = {"code": 2, "msg": "Invalid request", "id": 1}
    assert Dialect().classify_refusal(request, binance_style) == Refusal(False, "refused with [2] Invalid request")
    assert Dialect().classify_refusal(request, {"id": 1, "result": []}) == Refusal(False, "not confirmed by the server")
    assert Dialect().classify_refusal(request, None) == Refusal(False, "not confirmed by the server")


def test_deribit_unauthorized_is_transient_and_names_the_private_channels():
    dialect = DeribitDialect()
    request = Request({}, ["ticker.A.100ms", "user.orders.any.any.raw", "book.B.raw"], 1, "private/subscribe")
    error = {"jsonrpc": "2.0", "id": 1, "error": {"code": 13009, "message": "unauthorized"}}
    assert dialect.classify_refusal(request, error) == Refusal(
        True,
        "[13009] unauthorized: user.orders.any.any.raw, book.B.raw need an authenticated connection "
        "(user.* and *.raw channels); authenticate with public/auth in a connect callback, as "
        "zen_websocket.platforms.deribit.options(client_id, client_secret) does",
    )


def test_deribit_unauthorized_without_private_channels_speaks_of_these_channels():
    request = Request({}, ["ticker.A.100ms"], 1, "public/subscribe")
    error = {"jsonrpc": "2.0", "id": 1, "error": {"code": 13009, "message": "unauthorized"}}
    refusal = DeribitDialect().classify_refusal(request, error)
    assert refusal.transient is True
    assert refusal.reason.startswith("[13009] unauthorized: these channels need an authenticated connection ")


def test_deribit_too_many_requests_is_transient():
    request = Request({}, ["ticker.A.100ms"], 1, "public/subscribe")
    error = {"jsonrpc": "2.0", "id": 1, "error": {"code": 10028, "message": "too_many_requests"}}
    assert DeribitDialect().classify_refusal(request, error) == Refusal(
        True, "[10028] too_many_requests: rate limited; Deribit ends the session and the reconnect restores"
    )


def test_deribit_other_errors_and_missing_channels_are_permanent():
    dialect = DeribitDialect()
    request = Request({}, ["user.orders.any.any.raw"], 1, "private/subscribe")
    error = {"jsonrpc": "2.0", "id": 1, "error": {"code": 13010, "message": "value_error"}}
    assert dialect.classify_refusal(request, error) == Refusal(False, "refused with [13010] value_error")
    assert dialect.classify_refusal(request, {"jsonrpc": "2.0", "id": 1, "result": []}) == Refusal(
        False, "not in the server's result: no such channel on Deribit"
    )


# --- unsubscribe_all -----------------------------------------------------------------------------


def test_only_deribit_knows_messages_that_drop_every_subscription():
    assert Dialect().unsubscribes_all({"method": "public/unsubscribe_all"}) is False
    assert BinanceDialect().unsubscribes_all({"method": "public/unsubscribe_all"}) is False


@pytest.mark.parametrize(
    "message",
    [
        {"jsonrpc": "2.0", "id": 1, "method": "public/unsubscribe_all", "params": {}},
        {"method": "private/unsubscribe_all"},
        '{"jsonrpc": "2.0", "id": 1, "method": "public/unsubscribe_all"}',
        b'{"method": "private/unsubscribe_all"}',
    ],
)
def test_deribit_unsubscribe_all_in_every_form_drops_everything(message):
    assert DeribitDialect().unsubscribes_all(message) is True


@pytest.mark.parametrize(
    "message",
    [
        {"method": "public/unsubscribe", "params": {"channels": ["unsubscribe_all"]}},
        {"params": {"method": "public/unsubscribe_all"}},
        '{"method": "public/unsubscribe"}',
        b'{"method": "public/unsubscribe"}',
        '{"method": "public/unsubscribe", "note": "unsubscribe_all"}',
        b'{"method": "public/unsubscribe", "note": "unsubscribe_all"}',
        "unsubscribe_all but not json",
        b"unsubscribe_all but not json",
        '["public/unsubscribe_all"]',
        ["public/unsubscribe_all"],
        None,
    ],
)
def test_deribit_other_messages_keep_the_subscriptions(message):
    assert DeribitDialect().unsubscribes_all(message) is False


# --- a dialect as a subscription_format callable ------------------------------------------------


class _AnyInt:
    """Equal to any int: the id of a built message is the process's next one."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, int) and not isinstance(other, bool)


ANY_INT = _AnyInt()


def test_calling_a_dialect_returns_its_one_message_in_either_direction():
    assert BinanceDialect()(["a@trade"], True) == {"method": "SUBSCRIBE", "params": ["a@trade"], "id": ANY_INT}
    assert BinanceDialect()(["a@trade"], False)["method"] == "UNSUBSCRIBE"  # type: ignore[index]


def test_calling_a_dialect_that_needs_no_message_or_several_raises():
    with pytest.raises(ValueError):
        BinanceDialect()([], True)
    with pytest.raises(ValueError):
        BybitDialect()([f"t.{i}" for i in range(11)], True)
    with pytest.raises(ValueError):
        DeribitDialect()(["ticker.A.100ms", "user.orders.any.any.raw"], True)


def test_the_base_dialect_hooks_do_nothing():
    dialect = Dialect()
    assert dialect.ack_markers == () and dialect.event_markers == ()
    assert dialect.match_ack({"event": "subscribe"}) is None
    assert dialect.event_action({"e": "serverShutdown"}) is None
    assert dialect.renew({"e": "listenKeyExpired"}) is False
    dialect.forget_acks()


# --- Binance control events ----------------------------------------------------------------------


def test_binance_markers_follow_the_events_asked_for():
    assert BinanceDialect().event_markers == ()
    assert BinanceDialect(rotate_on_shutdown=True).event_markers == ('"serverShutdown"',)
    assert BinanceDialect(on_listen_key_expired=lambda event: True).event_markers == ('"listenKeyExpired"',)
    both = BinanceDialect(rotate_on_shutdown=True, on_listen_key_expired=lambda event: True)
    assert both.event_markers == ('"serverShutdown"', '"listenKeyExpired"')
    assert both.ack_markers == ()


def test_binance_options_are_kept_and_shown():
    def renew(event: dict) -> bool:
        return True

    dialect = BinanceDialect(rotate_on_shutdown=True, on_listen_key_expired=renew)
    assert dialect.rotate_on_shutdown is True and dialect.on_listen_key_expired is renew
    assert BinanceDialect().rotate_on_shutdown is False and BinanceDialect().on_listen_key_expired is None
    assert repr(dialect) == "BinanceDialect(rotate_on_shutdown=True)"
    assert repr(BinanceDialect()) == "BinanceDialect(rotate_on_shutdown=False)"


SHUTDOWN = {"e": "serverShutdown", "E": 1}
EXPIRED = {"e": "listenKeyExpired", "E": 2, "listenKey": "k1"}


@pytest.mark.parametrize(
    ("message", "action"),
    [
        (SHUTDOWN, "rotate"),
        ({"stream": "!serverShutdown", "data": SHUTDOWN}, "rotate"),
        ({"event": SHUTDOWN}, "rotate"),
        (EXPIRED, "renew"),
        ({"stream": "k1", "data": EXPIRED}, "renew"),
        ({"event": EXPIRED}, "renew"),
        ({"e": "trade"}, None),
        ({"data": {"e": "trade"}, "e": "serverShutdown"}, None),  # the wrapped event is the event
        ({"data": {"no": "e"}, "e": "serverShutdown"}, "rotate"),  # a wrapper without "e" is no event
        ({"data": "serverShutdown", "e": "serverShutdown"}, "rotate"),
        ({"data": {"e": "serverShutdown"}, "event": {"e": "trade"}}, "rotate"),  # combined streams first
        ({"data": {"x": 1}, "event": {"e": "listenKeyExpired"}}, "renew"),
    ],
)
def test_binance_event_actions_unwrap_the_event(message, action):
    dialect = BinanceDialect(rotate_on_shutdown=True, on_listen_key_expired=lambda event: True)
    assert dialect.event_action(message) == action


def test_binance_events_act_only_when_asked_for():
    rotate_only = BinanceDialect(rotate_on_shutdown=True)
    assert rotate_only.event_action(SHUTDOWN) == "rotate"
    assert rotate_only.event_action(EXPIRED) is None
    renew_only = BinanceDialect(on_listen_key_expired=lambda event: True)
    assert renew_only.event_action(EXPIRED) == "renew"
    assert renew_only.event_action(SHUTDOWN) is None


@pytest.mark.parametrize(("answer", "renews"), [(True, True), (1, True), (False, False), (None, False), (0, False)])
def test_binance_renew_hands_the_unwrapped_event_to_the_callback(answer, renews):
    seen: list[dict] = []
    dialect = BinanceDialect(on_listen_key_expired=lambda event: seen.append(event) or answer)
    assert dialect.renew({"stream": "k1", "data": EXPIRED}) is renews
    assert seen == [EXPIRED]


def test_binance_renew_without_a_callback_ignores_the_event():
    assert BinanceDialect(rotate_on_shutdown=True).renew(EXPIRED) is False


# --- Bybit -----------------------------------------------------------------------------------------


def test_bybit_builds_one_message_per_ten_topics_each_with_its_own_req_id():
    topics = [f"publicTrade.S{i}" for i in range(21)]
    requests = BybitDialect().build(topics)
    assert [r.channels for r in requests] == [topics[:10], topics[10:20], topics[20:]]
    for request in requests:
        assert request.message == {"req_id": request.request_id, "op": "subscribe", "args": request.channels}
        assert request.method == "subscribe"
        assert isinstance(request.request_id, str) and request.request_id.startswith("zw")
        assert request.request_id[2:].isdigit()
    assert len({r.request_id for r in requests}) == 3
    (unsubscribe,) = BybitDialect().build("publicTrade.S1", False)
    assert unsubscribe.message["op"] == "unsubscribe" and unsubscribe.method == "unsubscribe"  # type: ignore[index]
    assert unsubscribe.channels == ["publicTrade.S1"]
    assert BybitDialect().build([]) == []


def test_bybit_dialect_settings():
    dialect = BybitDialect()
    assert dialect.name == "bybit" and dialect.ack_markers == ('"req_id"',)
    assert dialect.max_channels_per_request == 10 and dialect.max_channels is None and dialect.min_interval == 0.0


@pytest.mark.parametrize("op", ["subscribe", "unsubscribe"])
def test_bybit_answers_name_their_request(op):
    answer = {"success": False, "ret_msg": "x", "req_id": "zw5", "op": op}
    assert BybitDialect().match_ack(answer) == Ack("zw5", True, answer)


@pytest.mark.parametrize(
    "message",
    [
        {"success": True, "ret_msg": "pong", "req_id": "zw5", "op": "ping"},
        {"success": True, "req_id": "zw5"},
        {"ret_msg": "", "req_id": "zw5", "op": "subscribe"},
        {"topic": "publicTrade.X", "data": [], "req_id": "zw5"},
    ],
)
def test_bybit_messages_that_are_no_subscribe_answer_go_to_the_user(message):
    assert BybitDialect().match_ack(message) is None


@pytest.mark.parametrize("req_id", ["", None, 5, ["zw5"]])
def test_bybit_answers_without_a_usable_req_id_are_swallowed(req_id):
    message = {"success": True, "op": "subscribe"}
    if req_id is not None:
        message["req_id"] = req_id
    assert BybitDialect().match_ack(message) == Ack(None)


def test_bybit_check_ack():
    dialect = BybitDialect()
    request = Request({}, ["orderbook.50.BTCUSDT", "publicTrade.NOPE", "publicTrade.ALSO"], "zw1", "subscribe")
    assert dialect.check_ack(request, {"success": True, "ret_msg": "publicTrade.NOPE"}) == []
    assert dialect.check_ack(request, "success") == request.channels
    assert dialect.check_ack(request, None) == request.channels
    named = {"success": False, "ret_msg": "Invalid topic :[publicTrade.ALSO, publicTrade.NOPE]"}
    assert dialect.check_ack(request, named) == ["publicTrade.NOPE", "publicTrade.ALSO"]
    truthy = {"success": 1, "ret_msg": "publicTrade.NOPE"}
    assert dialect.check_ack(request, truthy) == ["publicTrade.NOPE"]  # only true is success
    assert dialect.check_ack(request, {"success": False}) == request.channels
    assert dialect.check_ack(request, {"success": False, "ret_msg": "error"}) == request.channels
    result = dialect.check_ack(request, {"success": False})
    assert result is not request.channels


# --- OKX channel names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "arg"),
    [
        ("status", {"channel": "status"}),
        ("tickers:BTC-USDT", {"channel": "tickers", "instId": "BTC-USDT"}),
        ("tickers:", {"channel": "tickers", "instId": ""}),
        ("candle1m:BTC:USDT", {"channel": "candle1m", "instId": "BTC:USDT"}),
        ("instruments:instType=SPOT", {"channel": "instruments", "instType": "SPOT"}),
        ("opt:instType=OPTION&instFamily=BTC-USD", {"channel": "opt", "instType": "OPTION", "instFamily": "BTC-USD"}),
        ("x:a=1&=2&b", {"channel": "x", "a": "1", "b": ""}),
        ("x:a=1=2", {"channel": "x", "a": "1=2"}),
        (":BTC", {"channel": "", "instId": "BTC"}),
    ],
)
def test_okx_arg_parses_every_channel_name_shape(name, arg):
    assert okx_arg(name) == arg


@pytest.mark.parametrize(
    ("arg", "name"),
    [
        ({"channel": "status"}, "status"),
        ({}, ""),
        ({"channel": "tickers", "instId": "BTC-USDT"}, "tickers:BTC-USDT"),
        ({"instId": "BTC-USDT"}, ":BTC-USDT"),
        ({"channel": "t", "instId": 5}, "t:5"),
        ({"channel": 7}, "7"),
        ({"channel": "x", "b": "2", "a": "1"}, "x:a=1&b=2"),
        ({"channel": "x", "instId": "I", "a": "1"}, "x:a=1&instId=I"),
        ({"channel": "x", "instType": "SPOT"}, "x:instType=SPOT"),
    ],
)
def test_okx_channel_is_the_canonical_name_of_an_arg(arg, name):
    assert okx_channel(arg) == name


# --- OKX: building and matching per-channel acknowledgements ----------------------------------------


def okx_ack(op: str, name: str, **extra: object) -> dict:
    return {"event": op, "arg": okx_arg(name), "connId": "c1", **extra}


def test_okx_dialect_settings():
    dialect = OkxDialect()
    assert dialect.name == "okx" and dialect.ack_markers == ('"event"',) and dialect.event_markers == ()
    assert dialect.max_channels_per_request == 100 and dialect.max_channels is None
    assert dialect.min_interval == 0.35
    assert repr(dialect) == "OkxDialect()"


def test_okx_builds_exact_messages_with_their_own_ids():
    channels = [f"tickers:C{i}-USDT" for i in range(101)]
    first, second = OkxDialect().build(channels)
    assert first.message == {"id": first.request_id, "op": "subscribe", "args": [okx_arg(c) for c in channels[:100]]}
    assert second.message == {"id": second.request_id, "op": "subscribe", "args": [okx_arg(channels[100])]}
    assert (first.channels, first.method) == (channels[:100], "subscribe")
    assert second.channels == channels[100:]
    for request in (first, second):
        assert isinstance(request.request_id, str) and request.request_id.startswith("zw")
        assert request.request_id[2:].isdigit()
    assert first.request_id != second.request_id
    (unsubscribe,) = OkxDialect().build(["tickers:A-B"], False)
    assert unsubscribe.message["op"] == "unsubscribe" and unsubscribe.method == "unsubscribe"  # type: ignore[index]
    assert OkxDialect().build([]) == []


def test_okx_a_single_channel_request_completes_with_an_exact_summary():
    dialect = OkxDialect()
    (request,) = dialect.build(["tickers:BTC-USDT"])
    summary = {"event": "subscribe", "confirmed": ["tickers:BTC-USDT"], "refused": [], "errors": []}
    assert dialect.match_ack(okx_ack("subscribe", "tickers:BTC-USDT")) == Ack(request.request_id, True, summary)
    assert dialect.check_ack(request, summary) == []
    # answered: the same ack again waits for nothing
    assert dialect.match_ack(okx_ack("subscribe", "tickers:BTC-USDT")) == Ack(None)


def test_okx_partial_answers_and_the_summary_keep_the_users_order_and_names():
    dialect = OkxDialect()
    spaced = "opt:instType=OPTION&instFamily=BTC-USD"  # canonical: keys sorted
    (request,) = dialect.build(["tickers:A-USDT", spaced, "tickers:C-USDT"])
    assert dialect.match_ack(okx_ack("subscribe", "tickers:C-USDT")) == Ack(request.request_id, False, None)
    assert dialect.match_ack(okx_ack("subscribe", spaced)) == Ack(request.request_id, False)
    done = dialect.match_ack(okx_ack("subscribe", "tickers:A-USDT"))
    assert done == Ack(
        request.request_id,
        True,
        {"event": "subscribe", "confirmed": ["tickers:A-USDT", spaced, "tickers:C-USDT"], "refused": [], "errors": []},
    )


def test_okx_an_error_refuses_the_channel_and_records_code_and_text():
    dialect = OkxDialect()
    (request,) = dialect.build(["tickers:A-USDT", "tickers:NOPE-USDT"], False)
    error = {"event": "error", "code": "60018", "msg": "channel:tickers,instId:NOPE-USDT doesn't exist", "connId": "c"}
    assert dialect.match_ack(error) == Ack(request.request_id, False)
    done = dialect.match_ack(okx_ack("unsubscribe", "tickers:A-USDT"))
    summary = {
        "event": "unsubscribe",
        "confirmed": ["tickers:A-USDT"],
        "refused": ["tickers:NOPE-USDT"],
        "errors": [{"code": "60018", "msg": error["msg"]}],
    }
    assert done == Ack(request.request_id, True, summary)
    assert dialect.check_ack(request, summary) == ["tickers:NOPE-USDT"]


def test_okx_an_error_without_code_or_text_refuses_the_first_unanswered_channel():
    dialect = OkxDialect()
    (request,) = dialect.build(["status", "tickers:B-USDT"])
    done_first = dialect.match_ack({"event": "error"})
    assert done_first == Ack(request.request_id, False)
    done = dialect.match_ack({"event": "error", "msg": "B-USDT? no"})
    assert done is not None and done.done
    assert done.response["refused"] == ["status", "tickers:B-USDT"]
    assert done.response["confirmed"] == []
    assert done.response["errors"] == [{"code": None, "msg": None}, {"code": None, "msg": "B-USDT? no"}]


def test_okx_an_error_names_a_channel_only_when_all_its_values_are_in_the_text():
    dialect = OkxDialect()
    one = "opt:instType=OPTION&instFamily=F1"
    two = "opt:instType=OPTION&instFamily=F2"
    (request,) = dialect.build([one, two])
    first = dialect.match_ack({"event": "error", "code": "60018", "msg": "instType:OPTION, instFamily:F2"})
    assert first == Ack(request.request_id, False)
    done = dialect.match_ack(okx_ack("subscribe", one))
    assert done is not None and done.response["refused"] == [two] and done.response["confirmed"] == [one]


def test_okx_an_error_with_an_echoed_id_refuses_a_channel_of_that_request():
    dialect = OkxDialect()
    (older,) = dialect.build(["tickers:A-USDT"])
    (newer,) = dialect.build(["tickers:B-USDT"])
    done = dialect.match_ack({"event": "error", "code": "1", "msg": "no", "id": newer.request_id})
    assert done is not None and done.request_id == newer.request_id and done.done
    assert done.response["refused"] == ["tickers:B-USDT"]
    assert dialect.match_ack({"event": "error", "code": "1", "msg": "no", "id": "zw-unknown"}) is None
    done = dialect.match_ack({"event": "error", "code": "1", "msg": "no"})
    assert done is not None and done.request_id == older.request_id


def test_okx_an_error_without_an_echoed_id_goes_to_the_oldest_request():
    dialect = OkxDialect()
    (older,) = dialect.build(["tickers:A-USDT"])
    dialect.build(["tickers:B-USDT"])
    done = dialect.match_ack({"event": "error", "code": "1", "msg": "B-USDT"})
    assert done is not None and done.request_id == older.request_id
    assert done.response["refused"] == ["tickers:A-USDT"]


def test_okx_acks_match_the_oldest_request_of_their_op_that_waits_for_the_channel():
    dialect = OkxDialect()
    (subscribe,) = dialect.build(["tickers:A-USDT"], True)
    (unsubscribe,) = dialect.build(["tickers:A-USDT"], False)
    (again,) = dialect.build(["tickers:A-USDT"], True)
    assert dialect.match_ack(okx_ack("unsubscribe", "tickers:A-USDT")).request_id == unsubscribe.request_id
    assert dialect.match_ack(okx_ack("subscribe", "tickers:A-USDT")).request_id == subscribe.request_id
    assert dialect.match_ack(okx_ack("subscribe", "tickers:A-USDT")).request_id == again.request_id
    assert dialect.match_ack(okx_ack("subscribe", "tickers:A-USDT")) == Ack(None)


def test_okx_an_echoed_id_picks_the_request_and_an_unknown_one_matches_none():
    dialect = OkxDialect()
    (older,) = dialect.build(["tickers:A-USDT"])
    (newer,) = dialect.build(["tickers:A-USDT"])
    assert dialect.match_ack(okx_ack("subscribe", "tickers:A-USDT", id="zw-unknown")) == Ack(None)
    assert dialect.match_ack(okx_ack("subscribe", "tickers:A-USDT", id=newer.request_id)).request_id == newer.request_id
    assert dialect.match_ack(okx_ack("subscribe", "tickers:A-USDT", id=newer.request_id)) == Ack(None)
    assert dialect.match_ack(okx_ack("subscribe", "tickers:A-USDT")).request_id == older.request_id


@pytest.mark.parametrize(
    "message",
    [
        {"event": "login", "code": "0"},
        {"event": "channel-conn-count", "channel": "tickers"},
        {"arg": {"channel": "tickers", "instId": "A-USDT"}, "data": []},
        {"event": None},
    ],
)
def test_okx_messages_that_are_no_subscribe_answer_go_to_the_user(message):
    dialect = OkxDialect()
    dialect.build(["tickers:A-USDT"])
    assert dialect.match_ack(message) is None


def test_okx_errors_with_nothing_waiting_go_to_the_user():
    assert OkxDialect().match_ack({"event": "error", "code": "60009", "msg": "Login failed."}) is None


def test_okx_an_ack_without_a_usable_arg_waits_for_nothing():
    dialect = OkxDialect()
    (request,) = dialect.build(["tickers:A-USDT"])
    assert dialect.match_ack({"event": "subscribe"}) == Ack(None)
    assert dialect.match_ack({"event": "subscribe", "arg": "tickers:A-USDT"}) == Ack(None)
    assert dialect.match_ack(okx_ack("subscribe", "tickers:A-USDT")).request_id == request.request_id


def test_okx_forget_acks_drops_every_request_waiting():
    dialect = OkxDialect()
    dialect.build(["tickers:A-USDT"])
    dialect.build(["tickers:B-USDT"])
    dialect.forget_acks()
    assert dialect.match_ack(okx_ack("subscribe", "tickers:A-USDT")) == Ack(None)
    assert dialect.match_ack({"event": "error", "code": "1", "msg": "x"}) is None


def test_okx_remembers_at_most_max_expected_requests_forgetting_the_oldest():
    dialect = OkxDialect()
    dialect.MAX_EXPECTED = 2
    (first,) = dialect.build(["tickers:C0-USDT"])
    dialect.build(["tickers:C1-USDT"])
    assert dialect.match_ack(okx_ack("subscribe", "tickers:C0-USDT")).request_id == first.request_id  # 2 fit
    dialect.build(["tickers:C0-USDT"])
    (third,) = dialect.build(["tickers:C2-USDT"])
    assert dialect.match_ack(okx_ack("subscribe", "tickers:C1-USDT")) == Ack(None)  # the oldest went
    assert dialect.match_ack(okx_ack("subscribe", "tickers:C2-USDT")).request_id == third.request_id
    assert OkxDialect.MAX_EXPECTED == 1024


def test_okx_check_ack_reads_the_summary():
    request = Request({}, ["tickers:A-USDT", "tickers:B-USDT"], "zw1", "subscribe")
    dialect = OkxDialect()
    assert dialect.check_ack(request, {"refused": []}) == []
    assert dialect.check_ack(request, {"refused": ["tickers:B-USDT", "x"]}) == ["tickers:B-USDT"]
    assert dialect.check_ack(request, {"refused": "tickers:B-USDT"}) == request.channels
    assert dialect.check_ack(request, {"event": "subscribe"}) == request.channels
    assert dialect.check_ack(request, ["tickers:A-USDT"]) == request.channels


def test_bybit_a_refusal_without_ret_msg_names_no_topic_and_refuses_all():
    request = Request({}, ["No", "XX", "t.A"], "zw1", "subscribe")
    assert BybitDialect().check_ack(request, {"success": False, "req_id": "zw1"}) == ["No", "XX", "t.A"]


def test_okx_an_error_without_msg_names_no_channel_and_refuses_the_first():
    dialect = OkxDialect()
    (request,) = dialect.build(["t:A", "t:No", "t:XX"])
    assert dialect.match_ack({"event": "error", "code": "60012"}) == Ack(request.request_id, False)
    dialect.match_ack(okx_ack("subscribe", "t:No"))
    done = dialect.match_ack(okx_ack("subscribe", "t:XX"))
    assert done is not None and done.response["refused"] == ["t:A"]


def test_okx_an_ack_without_an_arg_confirms_no_channel_whatever_its_name():
    dialect = OkxDialect()
    dialect.build(["XXXX"])
    assert dialect.match_ack({"event": "subscribe"}) == Ack(None)
