"""Pure tests of zen_websocket.jsonrpc: ids, building, classifying, correlating."""

from __future__ import annotations

import json
import math
import threading
import time
from concurrent.futures import Future

import pytest

from tests.timeunit import FakeClock, ms
from zen_websocket import jsonrpc
from zen_websocket.errors import ConfigError, ConnectionLost, JsonRpcError, RateLimited, RequestTimeout, UsageError
from zen_websocket.jsonrpc import (
    Correlator,
    LatencyWindow,
    RateLimitedResponse,
    build_request,
    classify,
    error_from_response,
    may_be_response,
    next_id,
)

# --- next_id ----------------------------------------------------------------


def test_next_id_is_a_positive_increasing_int():
    first, second = next_id(), next_id()
    assert isinstance(first, int) and first > 0
    assert second > first


def test_next_id_is_unique_across_threads():
    results: list[list[int]] = [[] for _ in range(8)]

    def take(bucket: list[int]) -> None:
        for _ in range(2000):
            bucket.append(next_id())

    threads = [threading.Thread(target=take, args=(bucket,)) for bucket in results]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = [i for bucket in results for i in bucket]
    assert len(set(ids)) == len(ids) == 16000
    for bucket in results:  # each thread sees its own ids increase
        assert bucket == sorted(bucket)


# --- build_request ------------------------------------------------------------


def test_build_request_has_jsonrpc_id_method_and_params():
    request = build_request("public/subscribe", {"channels": ["a"]}, id=7)
    assert request == {"jsonrpc": "2.0", "id": 7, "method": "public/subscribe", "params": {"channels": ["a"]}}


def test_build_request_omits_params_when_not_given():
    request = build_request("public/test")
    assert "params" not in request
    assert isinstance(request["id"], int) and request["id"] > 0


def test_build_request_gives_each_request_a_fresh_id():
    assert build_request("a")["id"] != build_request("a")["id"]


def test_build_request_keeps_a_string_id():
    assert build_request("a", [1], id="abc")["id"] == "abc"


def test_build_request_keeps_empty_structured_params():
    assert build_request("a", {})["params"] == {}
    assert build_request("a", [])["params"] == []


@pytest.mark.parametrize("method", ["", None, 5, b"public/test"])
def test_build_request_rejects_a_method_that_is_not_a_non_empty_str(method):
    with pytest.raises(TypeError, match="method"):
        build_request(method)


@pytest.mark.parametrize("bad_id", [True, 1.5, ["x"], {"a": 1}])
def test_build_request_rejects_ids_that_are_not_int_or_str(bad_id):
    with pytest.raises(TypeError, match="id"):
        build_request("a", id=bad_id)


@pytest.mark.parametrize("params", [5, "text", 1.0, True])
def test_build_request_rejects_params_that_are_not_structured(params):
    with pytest.raises(TypeError, match="dict or list"):
        build_request("a", params)


def test_build_request_rejects_unencodable_params_at_once_with_the_method_named():
    with pytest.raises(TypeError, match="private/buy") as info:
        build_request("private/buy", {"amount": object()})
    assert isinstance(info.value.__cause__, TypeError)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_build_request_rejects_nan_and_infinity_as_type_error(value):
    with pytest.raises(TypeError, match="JSON"):
        build_request("a", {"price": value})


def test_build_request_rejects_circular_params():
    params: dict = {}
    params["self"] = params
    with pytest.raises(TypeError, match="JSON"):
        build_request("a", params)


# --- classify -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ({"jsonrpc": "2.0", "id": 1, "result": {"version": "1.2"}}, "response"),
        ({"result": None, "id": 1}, "response"),  # Binance stream control ack
        ({"id": "a", "status": 200, "result": {"serverTime": 1}}, "response"),  # Binance WS API
        ({"id": 1, "result": 5, "error": None}, "response"),  # JSON-RPC 1.0 style
        ({"jsonrpc": "2.0", "id": 1, "error": {"code": 10028, "message": "too_many_requests"}}, "error"),
        ({"code": 2, "msg": "Invalid request", "id": 1}, "error"),  # Binance stream control error
        ({"id": "a", "status": 400, "error": {"code": -1102, "msg": "bad"}}, "error"),  # Binance WS API
        ({"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "parse error"}}, "error"),
        ({"jsonrpc": "2.0", "method": "subscription", "params": {"channel": "c", "data": {}}}, "notification"),
        ({"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "test_request"}}, "notification"),
        ({"method": "heartbeat", "id": None}, "notification"),
        ({"jsonrpc": "2.0", "id": 3, "method": "public/test"}, "request"),
        ({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1}, "request"),
        ({"e": "trade", "s": "BTCUSDT"}, "other"),
        ({"stream": "btcusdt@trade", "data": {}}, "other"),
        ({"id": 1}, "other"),
        ({"code": 2, "msg": "no id"}, "other"),
        ([{"id": 1, "result": 1}], "other"),
        ("text", "other"),
        (None, "other"),
    ],
)
def test_classify_recognises_each_message_kind(message, kind):
    assert classify(message) == kind


# --- error_from_response ------------------------------------------------------------


def test_error_from_jsonrpc_error_object_carries_code_message_data_id_and_method():
    exc = error_from_response(
        {"jsonrpc": "2.0", "id": 9, "error": {"code": 13009, "message": "unauthorized", "data": {"reason": "x"}}},
        "private/get_positions",
    )
    assert isinstance(exc, JsonRpcError)
    assert (exc.code, exc.message, exc.data, exc.request_id, exc.method) == (
        13009,
        "unauthorized",
        {"reason": "x"},
        9,
        "private/get_positions",
    )
    assert "13009" in str(exc) and "private/get_positions" in str(exc)


def test_error_from_binance_stream_control_error_reads_top_level_code_and_msg():
    exc = error_from_response({"code": 2, "msg": "Invalid request: unknown property", "id": 4})
    assert (exc.code, exc.message, exc.request_id) == (2, "Invalid request: unknown property", 4)


def test_error_from_binance_ws_api_error_reads_the_nested_msg_and_data():
    exc = error_from_response(
        {
            "id": "r1",
            "status": 429,
            "error": {"code": -1003, "msg": "Too many requests", "data": {"retryAfter": 1700000000000}},
            "rateLimits": [],
        }
    )
    assert (exc.code, exc.message, exc.request_id) == (-1003, "Too many requests", "r1")
    assert exc.data == {"retryAfter": 1700000000000}


def test_error_without_code_has_code_none():
    exc = error_from_response({"id": 1, "error": {"message": "boom"}})
    assert exc.code is None and exc.message == "boom"


def test_error_that_is_a_bare_string_becomes_the_message():
    exc = error_from_response({"id": 1, "error": "not allowed"})
    assert exc.code is None and exc.message == "not allowed"


def test_error_code_given_as_a_numeric_string_becomes_an_int():
    assert error_from_response({"id": 1, "error": {"code": "10028", "message": "x"}}).code == 10028


def test_error_with_no_message_mentions_the_status():
    exc = error_from_response({"id": 1, "status": 403, "error": {"code": -2015}})
    assert exc.code == -2015 and "403" in exc.message


@pytest.mark.parametrize("message", [None, "oops", [1, 2], {"id": 1}, {"id": 1, "error": 42}])
def test_error_from_response_never_raises_on_malformed_input(message):
    exc = error_from_response(message, "m")
    assert isinstance(exc, JsonRpcError)
    assert exc.message
    assert exc.method == "m"


def test_error_from_response_survives_a_dict_whose_get_raises():
    class Hostile(dict):
        def get(self, *args, **kwargs):
            raise RuntimeError("no")

    exc = error_from_response(Hostile(id=1))
    assert isinstance(exc, JsonRpcError) and "malformed" in exc.message


# --- may_be_response ------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        {"jsonrpc": "2.0", "id": 1, "result": 1},
        {"result": None, "id": 12345},
        {"id": "x", "status": 200, "result": {"ü": "ß"}},
        {"data": {"text": "é"}, "id": 3, "result": []},
    ],
)
@pytest.mark.parametrize("ensure_ascii", [True, False])
def test_may_be_response_never_misses_an_object_with_an_id(message, ensure_ascii):
    text = json.dumps(message, ensure_ascii=ensure_ascii)
    assert may_be_response(text)
    assert may_be_response(text.encode())


def test_may_be_response_rejects_market_data_without_an_id():
    text = json.dumps({"e": "trade", "s": "BTCUSDT", "p": "1.0", "ideal": "identity"})
    assert not may_be_response(text)
    assert not may_be_response(text.encode())


def test_may_be_response_covers_an_id_key_spelled_with_unicode_escapes():
    text = '{"\\u0069d": 1, "result": 2}'
    assert json.loads(text) == {"id": 1, "result": 2}
    assert may_be_response(text)


# --- Correlator -------------------------------------------------------------------


def test_resolve_completes_the_future_with_the_result():
    correlator = Correlator(clock=FakeClock())
    future = correlator.track(1, "public/test", timeout=5.0)
    pending = correlator.resolve({"jsonrpc": "2.0", "id": 1, "result": {"version": "1"}})
    assert pending is not None and pending.method == "public/test"
    assert future.result(timeout=0) == {"version": "1"}
    assert len(correlator) == 0


def test_resolve_with_response_gives_the_whole_message():
    correlator = Correlator(clock=FakeClock())
    future = correlator.track("a", timeout=5.0, resolve_with="response")
    message = {"id": "a", "status": 200, "result": {"x": 1}, "rateLimits": []}
    correlator.resolve(message)
    assert future.result(timeout=0) is message


def test_resolve_with_response_gives_error_messages_too_without_raising():
    correlator = Correlator(clock=FakeClock())
    future = correlator.track(2, timeout=5.0, resolve_with="response")
    message = {"code": 2, "msg": "Invalid request", "id": 2}
    correlator.resolve(message)
    assert future.result(timeout=0) is message


def test_error_response_fails_the_future_with_json_rpc_error():
    correlator = Correlator(clock=FakeClock())
    future = correlator.track(3, "private/buy", timeout=5.0)
    correlator.resolve({"jsonrpc": "2.0", "id": 3, "error": {"code": 10028, "message": "too_many_requests"}})
    with pytest.raises(JsonRpcError) as info:
        future.result(timeout=0)
    assert (info.value.code, info.value.request_id, info.value.method) == (10028, 3, "private/buy")


def test_binance_null_result_resolves_to_none():
    correlator = Correlator(clock=FakeClock())
    future = correlator.track(4, "SUBSCRIBE", timeout=5.0)
    correlator.resolve({"result": None, "id": 4})
    assert future.done() and future.result(timeout=0) is None


@pytest.mark.parametrize("message", [{"id": 99, "result": 1}, {"result": 1}, {"id": None, "result": 1}, "x", None])
def test_resolve_ignores_messages_without_a_tracked_id(message):
    correlator = Correlator(clock=FakeClock())
    future = correlator.track(1, timeout=5.0)
    assert correlator.resolve(message) is None
    assert not future.done() and len(correlator) == 1


def test_resolve_ignores_an_unhashable_id_from_a_broken_peer():
    correlator = Correlator(clock=FakeClock())
    correlator.track(1, timeout=5.0)
    assert correlator.resolve({"id": [1], "result": 1}) is None


@pytest.mark.parametrize(
    ("tracked", "answered"),
    [(1, True), (0, False), (5, 5.0), (1, 1.0), (1, "1"), ("1", 1), ("5", 5.0)],
)
def test_an_id_matches_only_an_id_of_the_same_type(tracked, answered):
    """F12: ``{"id": true}`` must not answer request 1, nor ``5.0`` request 5."""
    correlator = Correlator(clock=FakeClock())
    future = correlator.track(tracked, timeout=5.0)
    assert correlator.resolve({"id": answered, "result": "not yours"}) is None
    assert correlator.take({"id": answered, "result": "not yours"}) is None
    assert not future.done() and correlator.pending_ids() == [tracked]
    assert answered not in correlator
    assert correlator.cancel(answered) is None
    assert correlator.pending_ids() == [tracked]
    assert correlator.resolve({"id": tracked, "result": "yours"}) is not None
    assert future.result(timeout=0) == "yours"


def test_contains_and_cancel_find_a_tracked_id_of_the_same_type():
    correlator = Correlator(clock=FakeClock())
    correlator.track(7, timeout=5.0)
    correlator.track("7", timeout=5.0)
    assert 7 in correlator and "7" in correlator
    assert [1] not in correlator  # unhashable: no error, just absent
    pending = correlator.cancel("7")
    assert pending is not None and pending.id == "7"
    assert correlator.pending_ids() == [7]
    assert correlator.cancel([7]) is None


def test_resolve_sets_the_round_trip_time_from_the_clock():
    clock = FakeClock()
    correlator = Correlator(clock=clock)
    correlator.track(1, timeout=5.0)
    clock.advance(0.25)
    pending = correlator.resolve({"id": 1, "result": 1})
    assert pending is not None and pending.rtt == pytest.approx(0.25)


def test_tracking_an_id_already_in_flight_is_a_usage_error():
    correlator = Correlator(clock=FakeClock())
    correlator.track(1, timeout=5.0)
    with pytest.raises(UsageError, match="already in flight"):
        correlator.track(1, timeout=5.0)


def test_an_id_can_be_tracked_again_once_resolved():
    correlator = Correlator(clock=FakeClock())
    correlator.track(1, timeout=5.0)
    correlator.resolve({"id": 1, "result": 1})
    future = correlator.track(1, timeout=5.0)
    correlator.resolve({"id": 1, "result": 2})
    assert future.result(timeout=0) == 2


@pytest.mark.parametrize("bad_id", [None, True, 1.5, (1,)])
def test_track_rejects_ids_that_are_not_int_or_str(bad_id):
    with pytest.raises(TypeError):
        Correlator().track(bad_id, timeout=1.0)


@pytest.mark.parametrize("timeout", [0, -1, math.nan, math.inf, "5"])
def test_track_rejects_a_bad_timeout_naming_it(timeout):
    with pytest.raises(ConfigError) as info:
        Correlator().track(1, timeout=timeout)
    assert info.value.option == "timeout"


def test_track_rejects_an_unknown_resolve_with():
    with pytest.raises(ConfigError) as info:
        Correlator().track(1, timeout=1.0, resolve_with="everything")  # type: ignore[arg-type]
    assert info.value.option == "resolve_with"


def test_expire_fails_only_requests_past_their_deadline_with_request_timeout():
    clock = FakeClock()
    correlator = Correlator(clock=clock)
    short = correlator.track(1, "public/test", timeout=1.0)
    long = correlator.track(2, timeout=10.0)
    forever = correlator.track(3, timeout=None)
    clock.advance(0.999)
    assert correlator.expire() == []
    clock.advance(0.001)
    expired = correlator.expire()
    assert [p.id for p in expired] == [1]
    with pytest.raises(RequestTimeout) as info:
        short.result(timeout=0)
    assert (info.value.request_id, info.value.method, info.value.timeout) == (1, "public/test", 1.0)
    assert isinstance(info.value, TimeoutError)
    assert not long.done() and not forever.done()
    assert sorted(correlator.pending_ids()) == [2, 3]


def test_expire_accepts_an_explicit_now():
    correlator = Correlator(clock=FakeClock(0.0))
    correlator.track(1, timeout=1.0)
    assert correlator.expire(now=0.5) == []
    assert [p.id for p in correlator.expire(now=2.0)] == [1]


def test_a_request_without_timeout_never_expires():
    correlator = Correlator(clock=FakeClock())
    future = correlator.track(1, timeout=None)
    assert correlator.expire(now=1e12) == []
    assert not future.done() and correlator.next_deadline() is None


def test_next_deadline_is_the_earliest_live_deadline():
    clock = FakeClock(100.0)
    correlator = Correlator(clock=clock)
    assert correlator.next_deadline() is None
    correlator.track(1, timeout=5.0)
    correlator.track(2, timeout=2.0)
    correlator.track(3, timeout=None)
    assert correlator.next_deadline() == 102.0
    correlator.resolve({"id": 2, "result": None})
    assert correlator.next_deadline() == 105.0
    correlator.resolve({"id": 1, "result": None})
    assert correlator.next_deadline() is None


def test_a_resolved_request_does_not_expire_even_if_its_id_is_reused():
    clock = FakeClock()
    correlator = Correlator(clock=clock)
    correlator.track(1, timeout=1.0)
    correlator.resolve({"id": 1, "result": 1})
    reused = correlator.track(1, timeout=10.0)
    clock.advance(2.0)
    assert correlator.expire() == []
    assert not reused.done()


def test_stale_deadlines_of_resolved_requests_are_compacted():
    correlator = Correlator(clock=FakeClock())
    for i in range(1000):
        correlator.track(i, timeout=30.0)
        correlator.resolve({"id": i, "result": i})
    assert len(correlator._deadlines) <= 130  # bounded, not 1000


def test_cancel_stops_tracking_without_completing_the_future():
    correlator = Correlator(clock=FakeClock())
    future = correlator.track(1, timeout=5.0)
    pending = correlator.cancel(1)
    assert pending is not None and pending.future is future
    assert not future.done() and len(correlator) == 0
    assert correlator.resolve({"id": 1, "result": 1}) is None
    assert correlator.cancel(1) is None


def test_fail_all_fails_every_request_with_the_factory_exception():
    correlator = Correlator(clock=FakeClock())
    futures = [correlator.track(i, f"m{i}", timeout=5.0) for i in range(3)]
    failed = correlator.fail_all(lambda p: ConnectionLost(reason=f"lost {p.method}"))
    assert [p.id for p in failed] == [0, 1, 2]
    assert len(correlator) == 0 and correlator.next_deadline() is None
    for i, future in enumerate(futures):
        with pytest.raises(ConnectionLost, match=f"lost m{i}"):
            future.result(timeout=0)


def test_fail_all_still_fails_requests_when_the_factory_raises():
    correlator = Correlator(clock=FakeClock())
    future = correlator.track(1, timeout=5.0)

    def broken(pending):
        raise ValueError("factory bug")

    correlator.fail_all(broken)
    with pytest.raises(ValueError, match="factory bug"):
        future.result(timeout=0)


def test_a_future_cancelled_by_the_user_is_forgotten_and_resolve_does_not_raise():
    correlator = Correlator(clock=FakeClock())
    future = correlator.track(1, timeout=5.0)
    assert future.cancel()
    assert len(correlator) == 0
    assert correlator.resolve({"id": 1, "result": 1}) is None


def test_resolve_and_expire_tolerate_a_future_cancelled_after_being_popped():
    correlator = Correlator(clock=FakeClock())
    future = correlator.track(1, timeout=1.0)
    pending = correlator.cancel(1)
    assert pending is not None
    future.cancel()
    # Completing an already-cancelled future must be a no-op, not InvalidStateError.
    jsonrpc._complete(future, 5)
    jsonrpc._complete(future, exception=RuntimeError("x"))
    assert future.cancelled()


def test_done_callbacks_run_outside_the_lock():
    correlator = Correlator(clock=FakeClock())
    future = correlator.track(1, timeout=5.0)
    seen: list[object] = []
    # The callback uses the correlator: it would deadlock if run under its lock.
    future.add_done_callback(lambda f: seen.append(correlator.track(2, timeout=5.0)))
    worker = threading.Thread(target=correlator.resolve, args=({"id": 1, "result": 1},), daemon=True)
    worker.start()
    worker.join(5.0)
    assert not worker.is_alive()
    assert len(seen) == 1 and 2 in correlator


def test_concurrent_track_and_resolve_completes_every_future_with_its_own_result():
    correlator = Correlator()
    futures: dict[int, Future] = {}
    lock = threading.Lock()

    def client(start: int) -> None:
        for i in range(start, start + 500):
            future = correlator.track(i, timeout=30.0)
            with lock:
                futures[i] = future

    def server() -> None:
        done = 0
        while done < 4000:
            for request_id in correlator.pending_ids():
                if correlator.resolve({"id": request_id, "result": request_id * 2}) is not None:
                    done += 1

    threads = [threading.Thread(target=client, args=(n * 500,)) for n in range(8)]
    responder = threading.Thread(target=server, daemon=True)
    responder.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    responder.join(20)
    assert not responder.is_alive()
    assert len(futures) == 4000 and len(correlator) == 0
    assert all(future.result(timeout=0) == i * 2 for i, future in futures.items())


# --- LatencyWindow -------------------------------------------------------------------


def test_latency_percentiles_use_nearest_rank():
    window = LatencyWindow()
    for n in range(1, 101):
        window.add(n / 1000)
    assert window.percentile(50) == pytest.approx(0.050)
    assert window.percentile(99) == pytest.approx(0.099)
    assert window.percentile(100) == pytest.approx(0.100)
    assert window.percentile(0) == pytest.approx(0.001)


def test_latency_percentile_is_none_before_any_sample():
    assert LatencyWindow().percentile(50) is None


def test_latency_window_keeps_only_the_last_samples():
    window = LatencyWindow(size=3)
    for value in (10.0, 1.0, 2.0, 3.0):
        window.add(value)
    assert window.count == 3 and window.total == 4
    assert window.percentile(100) == 3.0


def test_latency_window_clear_forgets_everything():
    window = LatencyWindow()
    window.add(1.0)
    window.clear()
    assert window.count == 0 and window.total == 0 and window.percentile(50) is None


@pytest.mark.parametrize("value", [-0.1, math.nan, math.inf])
def test_latency_window_rejects_impossible_round_trip_times(value):
    with pytest.raises(ValueError):
        LatencyWindow().add(value)


@pytest.mark.parametrize("p", [-1, 100.5])
def test_latency_percentile_must_be_within_0_and_100(p):
    with pytest.raises(ValueError):
        LatencyWindow().percentile(p)


@pytest.mark.parametrize("size", [0, -1, 1.5, True])
def test_latency_window_size_must_be_a_positive_int(size):
    with pytest.raises(ConfigError) as info:
        LatencyWindow(size)
    assert info.value.option == "size"


def test_module_exports_are_defined():
    for name in jsonrpc.__all__:
        assert hasattr(jsonrpc, name), name


def test_waiter_completes_once_and_wakes_its_caller():
    import threading
    from concurrent.futures import InvalidStateError

    from zen_websocket.jsonrpc import Waiter

    waiter = Waiter()
    assert not waiter.done() and not waiter.cancelled()
    with pytest.raises(TimeoutError):
        waiter.result(0.01)
    threading.Timer(0.02, waiter.set_result, args=({"ok": 1},)).start()
    assert waiter.result(2) == {"ok": 1}
    assert waiter.result(0) == {"ok": 1}  # again, at once
    with pytest.raises(InvalidStateError):
        waiter.set_result(2)
    failed = Waiter()
    failed.set_exception(ValueError("boom"))
    with pytest.raises(ValueError):
        failed.result(0)


def test_correlator_completes_a_waiter_given_to_track():
    from zen_websocket.jsonrpc import Waiter

    correlator = Correlator()
    waiter = Waiter()
    assert correlator.track(41, "m", timeout=None, future=waiter) is waiter
    correlator.resolve({"jsonrpc": "2.0", "id": 41, "error": {"code": 7, "message": "no"}})
    with pytest.raises(JsonRpcError) as info:
        waiter.result(0)
    assert info.value.code == 7 and len(correlator) == 0


def test_take_then_complete_is_resolve_in_two_steps():
    correlator = Correlator()
    future = correlator.track(77, "m", timeout=None)
    pending = correlator.take({"jsonrpc": "2.0", "id": 77, "result": [1]})
    assert pending is not None and pending.rtt is not None
    assert len(correlator) == 0 and not future.done()  # untracked, not yet completed
    pending.complete({"jsonrpc": "2.0", "id": 77, "result": [1]})
    assert future.result(0) == [1]
    assert correlator.take({"id": 77, "result": 1}) is None


# --- contracts the mutation run pinned down ------------------------------------------------


def test_next_id_takes_the_lock_on_a_free_threaded_build(monkeypatch):
    monkeypatch.setattr(jsonrpc, "_GIL_ENABLED", False)
    first, second = next_id(), next_id()
    assert isinstance(first, int) and second > first


def test_an_id_with_only_code_or_only_msg_is_no_error():
    """Binance's stream-control error has both ``code`` and ``msg``; one alone is market data."""
    assert classify({"id": 1, "code": 5}) == "other"
    assert classify({"id": 1, "msg": "hello"}) == "other"


def test_error_from_a_non_dict_has_no_code_and_shows_what_arrived():
    exc = error_from_response([1, 2], "m")
    assert exc.code is None
    assert exc.message == "malformed error response: [1, 2]"


def test_an_error_that_is_neither_object_nor_string_becomes_its_text():
    exc = error_from_response({"id": 1, "error": ["nope", 5]})
    assert (exc.code, exc.message, exc.data) == (None, "['nope', 5]", None)


def test_a_bare_string_error_has_no_data():
    assert error_from_response({"id": 1, "error": "not allowed"}).data is None


@pytest.mark.parametrize(
    ("message", "code", "text", "data"),
    [
        ({"id": 1, "code": 7}, 7, "unknown error", None),
        ({"id": 1, "msg": "bad symbol"}, None, "bad symbol", None),
        ({"id": 1, "code": 3, "message": "boom"}, 3, "boom", None),
        ({"id": 1, "code": 3, "msg": "a", "message": "b"}, 3, "a", None),
        ({"id": 1, "code": 1, "msg": "x", "data": {"k": 1}}, 1, "x", {"k": 1}),
    ],
)
def test_error_from_top_level_members_reads_code_msg_or_message_and_data(message, code, text, data):
    exc = error_from_response(message)
    assert (exc.code, exc.message, exc.data) == (code, text, data)


def test_an_empty_error_message_falls_back_to_status_or_unknown():
    assert error_from_response({"id": 1, "error": {"code": 1, "message": ""}}).message == "unknown error"
    assert error_from_response({"id": 1, "status": 418, "error": {"code": 1, "message": ""}}).message == "status 418"


def test_a_hostile_dict_still_gives_an_error_for_the_method_naming_the_failure():
    class Hostile(dict):
        def get(self, *args, **kwargs):
            raise RuntimeError("no")

    exc = error_from_response(Hostile(id=1), "private/buy")
    assert exc.method == "private/buy" and exc.code is None
    assert exc.message == "malformed error response (RuntimeError)"


def test_may_be_response_covers_unicode_escapes_in_bytes_too():
    assert may_be_response(b'{"\\u0069d": 1, "result": 2}')
    assert not may_be_response(b'{"e": "trade", "u": 1}')


def test_a_pending_request_defaults_to_result_and_not_delivered():
    pending = jsonrpc.PendingRequest(1, "m", Future(), 10.0, None)
    assert (pending.resolve_with, pending.deliver, pending.rtt, pending.deadline) == ("result", False, None, None)
    assert jsonrpc.PendingRequest(2, None, Future(), 10.0, 2.5).deadline == 12.5


def test_track_records_whether_the_response_is_delivered_too():
    correlator = Correlator(clock=FakeClock())
    correlator.track(1, timeout=None)
    correlator.track(2, timeout=None, deliver=True)
    first = correlator.take({"id": 1, "result": None})
    second = correlator.take({"id": 2, "result": None})
    assert first is not None and first.deliver is False
    assert second is not None and second.deliver is True


def test_stale_entries_piling_up_never_hide_a_live_deadline():
    """Compaction keeps the live deadlines: after hundreds of answered requests, a silent one still times out."""
    clock = FakeClock()
    correlator = Correlator(clock=clock)
    silent = correlator.track("silent", timeout=1.0)
    for i in range(500):
        correlator.track(i, timeout=30.0)
        correlator.resolve({"id": i, "result": i})
    assert correlator.next_deadline() == clock.now + 1.0
    clock.advance(1.0)
    assert [p.id for p in correlator.expire()] == ["silent"]
    with pytest.raises(RequestTimeout):
        silent.result(timeout=0)


def test_compaction_keeps_the_heap_within_twice_the_live_requests():
    correlator = Correlator(clock=FakeClock())
    for i in range(100):
        correlator.track(f"live{i}", timeout=30.0)
    for i in range(1000):
        correlator.track(i, timeout=30.0)
        correlator.resolve({"id": i, "result": i})
    assert len(correlator) == 100
    assert 100 <= len(correlator._deadlines) <= 2 * 101


def test_latency_window_defaults_to_1024_samples_and_keeps_its_size():
    assert LatencyWindow().size == 1024
    assert LatencyWindow(1).size == 1


def test_latency_window_accepts_a_zero_round_trip():
    window = LatencyWindow()
    window.add(0.0)
    assert window.percentile(50) == 0.0


def test_latency_p100_is_the_largest_sample():
    window = LatencyWindow(size=200)
    for n in range(200):
        window.add(float(n))
    assert window.percentile(100) == 199.0
    assert window.percentile(50) == 99.0


def test_a_new_waiter_is_not_done():
    assert jsonrpc.Waiter().done() is False


def test_waiter_result_without_timeout_waits_for_the_completion():
    waiter = jsonrpc.Waiter()
    threading.Timer(ms(20), waiter.set_result, args=("late",)).start()
    assert waiter.result() == "late"


def test_waiter_result_with_zero_timeout_does_not_wait():
    waiter = jsonrpc.Waiter()
    timer = threading.Timer(ms(50), waiter.set_result, args=("late",))
    timer.start()
    try:
        with pytest.raises(TimeoutError):
            waiter.result(0)  # at once, not after the result arrives
    finally:
        timer.join()


@pytest.mark.parametrize(
    ("method", "params", "request_id"),
    [
        ("public/test", None, 7),
        ("private/buy", {"amount": 10, "label": 'é"x'}, 8),
        ("m", [1, 2.5, None], 'abc-"1'),
        ("ünïcode", (1, 2), 0),
    ],
)
def test_encode_request_gives_the_bytes_json_dumps_would(method, params, request_id):
    """One request builder: the encoded envelope equals compact json.dumps of the same object."""
    import json

    from zen_websocket.jsonrpc import encode_request

    request, payload = encode_request(method, params, request_id)
    assert request == build_request(method, params, request_id)
    assert payload == json.dumps(request, separators=(",", ":")).encode()
    assert json.loads(payload) == json.loads(json.dumps(request))


# --- Binance rate-limit refusals (status 429/418) -------------------------------------------------


def test_retry_after_is_retry_after_minus_the_servers_clock_in_seconds():
    assert jsonrpc._retry_after({"retryAfter": 1_000_001_500, "serverTime": 1_000_000_000}, 5.0) == 1.5
    assert jsonrpc._retry_after({"retryAfter": 1_000_000_000, "serverTime": 1_000_002_000}, 5.0) == 0.0


def test_retry_after_without_the_servers_clock_uses_the_local_one():
    assert jsonrpc._retry_after({"retryAfter": 10_000}, 7_500.0) == 2.5
    assert jsonrpc._retry_after({"retryAfter": 10_000, "serverTime": True}, 7_500.0) == 2.5
    assert jsonrpc._retry_after({"retryAfter": 10_000, "serverTime": "9000"}, 7_500.0) == 2.5


@pytest.mark.parametrize("data", [None, {}, {"retryAfter": True}, {"retryAfter": "10000"}, ["retryAfter"]])
def test_retry_after_without_a_usable_retry_after_waits_for_the_next_whole_minute(data):
    assert jsonrpc._retry_after(data, 90_500.0) == 29.5
    assert jsonrpc._retry_after(data, 120_000.0) == 60.0


@pytest.mark.parametrize("status", [429, 418])
def test_a_rate_limit_status_gives_a_rate_limited_response_with_everything(status):
    response = {
        "id": "r7",
        "status": status,
        "error": {"code": -1003, "msg": "Too many requests", "data": {"retryAfter": 5_000, "serverTime": 2_000}},
    }
    exc = error_from_response(response, method="order.place")
    assert isinstance(exc, RateLimitedResponse) and isinstance(exc, RateLimited) and isinstance(exc, JsonRpcError)
    assert exc.retry_after == 3.0 and exc.status == status
    assert (exc.code, exc.message, exc.request_id, exc.method) == (-1003, "Too many requests", "r7", "order.place")
    assert exc.data == {"retryAfter": 5_000, "serverTime": 2_000}


def test_a_rate_limit_without_the_servers_clock_counts_from_the_local_clock_in_seconds():
    now_ms = time.time() * 1000.0
    exc = error_from_response(
        {"id": 1, "status": 429, "error": {"code": -1003, "data": {"retryAfter": now_ms + 120_000}}}
    )
    assert isinstance(exc, RateLimitedResponse)
    assert 115.0 <= exc.retry_after <= 120.0
    assert exc.message == "status 429"


@pytest.mark.parametrize("status", [None, 400, 403, True, "429"])
def test_other_statuses_give_a_plain_json_rpc_error(status):
    response = {"id": 1, "error": {"code": -1, "msg": "no"}}
    if status is not None:
        response["status"] = status
    exc = error_from_response(response, method="m")
    assert type(exc) is JsonRpcError
    assert (exc.code, exc.message, exc.method) == (-1, "no", "m")


def test_a_rate_limited_response_keeps_its_constructor_arguments():
    exc = RateLimitedResponse(2.5, 418, -1003, "banned", {"x": 1}, 9, "m")
    assert (exc.retry_after, exc.status, exc.code, exc.message, exc.data, exc.request_id, exc.method) == (
        2.5,
        418,
        -1003,
        "banned",
        {"x": 1},
        9,
        "m",
    )


# --- stale deadlines: when the heap is rebuilt ----------------------------------------------------


def test_stale_deadlines_are_kept_up_to_64_and_dropped_on_the_65th():
    correlator = Correlator(clock=FakeClock())
    for i in range(64):
        correlator.track(i, timeout=30.0)
        correlator.resolve({"id": i, "result": i})
    assert len(correlator._deadlines) == 64  # not yet worth a rebuild
    correlator.track(64, timeout=30.0)
    assert len(correlator._deadlines) == 1  # only the live one is left


def test_deadlines_are_rebuilt_only_when_stale_ones_outnumber_live_ones():
    correlator = Correlator(clock=FakeClock())
    for i in range(32):
        correlator.track(i, timeout=30.0)
    for i in range(100, 134):
        correlator.track(i, timeout=30.0)  # at the last: 66 entries, 33 live: exactly twice
        correlator.resolve({"id": i, "result": i})
    assert len(correlator._deadlines) == 66
    correlator.track(200, timeout=30.0)  # 67 entries, 33 live: more than twice
    assert len(correlator._deadlines) == 33
