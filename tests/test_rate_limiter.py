"""Tests of zen_websocket.rate_limiter: buckets, costs, presets, registry.

Arithmetic is driven by a fake clock; the few waiting and concurrency tests
use the real clock with budgets of milliseconds.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tests.timeunit import FakeClock, ms
from zen_websocket import rate_limiter as rl
from zen_websocket.errors import ConfigError
from zen_websocket.rate_limiter import (
    MultiRateLimiter,
    RateLimiter,
    binance_api_preset,
    binance_cost,
    binance_stream_preset,
    deribit_cost,
    deribit_preset,
    is_deribit_subscription,
    is_matching_engine,
    simple_cost,
)
from zen_websocket.ratelimit import FixedWindowLimiter


def drain(limiter: RateLimiter | MultiRateLimiter, message: object = None) -> int:
    taken = 0
    while limiter.consume(message):
        taken += 1
    return taken


def wait_until(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.001)


def by_message(message: object) -> float:
    """Cost function for tests: the message is its own cost (None costs 1)."""
    return 1 if message is None else message  # type: ignore[return-value]


# --- configuration --------------------------------------------------------------


@pytest.mark.parametrize("option", ["rate", "interval", "burst"])
@pytest.mark.parametrize("value", [0, -1, math.nan, math.inf, "5", True])
def test_invalid_numbers_raise_config_error_naming_the_option(option, value):
    kwargs = {"rate": 10, "interval": 1.0, "burst": 10}
    kwargs[option] = value
    with pytest.raises(ConfigError) as info:
        RateLimiter(**kwargs)
    assert info.value.option == option
    assert option in str(info.value)


def test_cost_must_be_callable():
    with pytest.raises(ConfigError) as info:
        RateLimiter(10, cost=5)  # type: ignore[arg-type]
    assert info.value.option == "cost"


def test_burst_below_one_cannot_pass_a_single_simple_message():
    with pytest.raises(ConfigError) as info:
        RateLimiter(0.5)
    assert info.value.option == "burst"


def test_burst_defaults_to_rate_and_the_bucket_starts_full():
    limiter = RateLimiter(5, clock=FakeClock())
    assert limiter.capacity == limiter.burst == 5
    assert drain(limiter) == 5


def test_explicit_burst_sets_the_capacity():
    limiter = RateLimiter(5, burst=12, clock=FakeClock())
    assert drain(limiter) == 12


# --- refill ---------------------------------------------------------------------


def test_tokens_refill_continuously_not_in_steps():
    clock = FakeClock()
    limiter = RateLimiter(10, 1.0, clock=clock)
    drain(limiter)
    clock.advance(0.05)  # half a token
    assert not limiter.consume()
    clock.advance(0.05)  # now a whole one
    assert limiter.consume()
    assert not limiter.consume()


def test_refill_uses_rate_per_interval():
    clock = FakeClock()
    limiter = RateLimiter(6000, 60.0, clock=clock)  # 100 per second
    drain(limiter)
    clock.advance(0.5)
    assert drain(limiter) == 50


def test_idle_bucket_never_holds_more_than_burst():
    clock = FakeClock()
    limiter = RateLimiter(10, burst=3, clock=clock)
    clock.advance(3600)
    assert limiter.tokens == 3
    assert drain(limiter) == 3


def test_a_clock_stepping_back_does_not_drain_the_bucket():
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock)
    clock.advance(-5)
    assert limiter.tokens == 10


def test_many_small_refills_add_up_despite_float_rounding():
    clock = FakeClock()
    limiter = RateLimiter(10, 1.0, burst=1, clock=clock)
    passed = 0
    for _ in range(1000):  # 10 s in steps of 0.01 s: exactly 100 tokens
        clock.advance(0.01)
        passed += limiter.consume()
    assert passed == 100


# --- costs ----------------------------------------------------------------------


def test_consume_takes_the_cost_of_the_message():
    limiter = RateLimiter(10, cost=by_message, clock=FakeClock())
    assert limiter.consume(7)
    assert not limiter.consume(4)
    assert limiter.consume(3)
    assert limiter.tokens == pytest.approx(0)


def test_a_cost_larger_than_burst_raises_value_error():
    limiter = RateLimiter(10, cost=by_message, clock=FakeClock(), name="orders")
    with pytest.raises(ValueError, match=r"orders.*burst is 10"):
        limiter.consume(11)
    with pytest.raises(ValueError):
        limiter.acquire(11, timeout=0)


@pytest.mark.parametrize("cost", [-1, math.nan, "1", None, True])
def test_a_cost_function_returning_a_non_number_raises_value_error(cost):
    limiter = RateLimiter(10, cost=lambda message: cost, clock=FakeClock())
    with pytest.raises(ValueError, match="cost function"):
        limiter.consume("x")


def test_a_zero_cost_message_always_passes():
    limiter = RateLimiter(1, cost=by_message, clock=FakeClock())
    drain(limiter)
    assert limiter.consume(0)


# --- retry_after, charge, status, reset ----------------------------------------


def test_retry_after_is_zero_when_available_and_the_deficit_otherwise():
    clock = FakeClock()
    limiter = RateLimiter(10, cost=by_message, clock=clock)
    assert limiter.retry_after(10) == 0
    limiter.consume(10)
    assert limiter.retry_after(1) == pytest.approx(0.1)
    assert limiter.retry_after(5) == pytest.approx(0.5)
    clock.advance(0.5)
    assert limiter.retry_after(5) == 0


def test_charge_goes_into_debt_and_delays_later_sends():
    clock = FakeClock()
    limiter = RateLimiter(10, cost=by_message, clock=clock)
    limiter.consume(10)
    limiter.charge(3)  # a pong that had to go out now
    assert limiter.tokens == pytest.approx(-3)
    assert limiter.retry_after(1) == pytest.approx(0.4)
    clock.advance(0.35)
    assert not limiter.consume(1)
    clock.advance(0.05)
    assert limiter.consume(1)


def test_charge_accepts_a_cost_larger_than_burst_but_stops_the_debt_at_minus_burst():
    limiter = RateLimiter(2, cost=by_message, clock=FakeClock())
    limiter.charge(5)
    assert limiter.tokens == pytest.approx(-2)
    assert limiter.status()["consumed"] == 1  # the frame still went out


def test_a_ping_flood_of_charges_cannot_push_the_next_send_past_two_bursts():
    """F8: 1,000 charged pongs leave the bucket at -burst, not -990."""
    clock = FakeClock()
    limiter = RateLimiter(10, clock=clock)
    for _ in range(1000):
        limiter.charge()
    assert limiter.tokens == pytest.approx(-10)
    assert limiter.retry_after() == pytest.approx(1.1)  # 11 tokens at 10/s, not 999 s
    clock.advance(1.05)
    assert not limiter.consume()
    clock.advance(0.05)
    assert limiter.consume()


def test_charge_below_the_floor_still_counts_the_frame_and_keeps_the_refill():
    clock = FakeClock()
    limiter = RateLimiter(4, cost=by_message, clock=clock)
    limiter.charge(3)
    limiter.charge(3)  # 4 - 6 = -2: above the floor, taken in full
    assert limiter.tokens == pytest.approx(-2)
    limiter.charge(3)  # would be -5: stopped at -4
    assert limiter.tokens == pytest.approx(-4)
    clock.advance(0.5)
    assert limiter.tokens == pytest.approx(-2)
    assert limiter.status()["consumed"] == 3


# --- try_acquire -----------------------------------------------------------------


def test_try_acquire_takes_a_free_token_without_waiting():
    clock = FakeClock()
    limiter = RateLimiter(2, clock=clock)
    assert limiter.try_acquire() and limiter.try_acquire()
    assert not limiter.try_acquire()  # no token: a pong would be skipped
    assert limiter.tokens == pytest.approx(0)  # and no debt was run up
    assert limiter.status()["rejected"] == 1
    clock.advance(0.5)
    assert limiter.try_acquire()


def test_try_acquire_takes_the_cost_of_the_message():
    limiter = RateLimiter(5, cost=by_message, clock=FakeClock())
    assert limiter.try_acquire(4)
    assert limiter.tokens == pytest.approx(1)
    assert not limiter.try_acquire(2)


def test_try_acquire_never_drives_the_balance_negative_under_a_ping_flood():
    clock = FakeClock()
    limiter = RateLimiter(5, clock=clock)
    sent = sum(limiter.try_acquire() for _ in range(1000))
    assert sent == 5
    assert limiter.tokens == pytest.approx(0)
    assert limiter.retry_after() == pytest.approx(0.2)  # the next user send waits one token's refill


def test_try_acquire_does_not_take_tokens_promised_to_a_waiting_send():
    clock = FakeClock()
    limiter = RateLimiter(10, burst=2, cost=by_message, clock=clock)
    drain(limiter)
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(limiter.acquire(2, timeout=30.0)), daemon=True)
    waiter.start()
    wait_until(lambda: limiter.status()["waiting"] == 1)
    clock.advance(0.1)  # one token: free for nobody but the waiter
    assert not limiter.try_acquire(1)
    clock.advance(0.1)
    waiter.join(5.0)
    assert result == [True]


def test_multi_try_acquire_takes_from_every_routed_bucket_or_none():
    clock = FakeClock()
    multi = _two_buckets(clock)
    assert multi.try_acquire(("a", "b"))
    assert not multi.try_acquire(("a", "b"))  # b is empty
    assert multi.buckets["a"].tokens == 2 and multi.buckets["b"].tokens == 0
    assert multi.try_acquire("a")


def test_status_reports_the_bucket_and_counters():
    clock = FakeClock()
    limiter = RateLimiter(4, 2.0, burst=3, clock=clock, name="feed")
    limiter.consume()
    limiter.consume()
    limiter.consume()
    limiter.consume()
    status = limiter.status()
    assert status["name"] == "feed"
    assert status["tokens"] == pytest.approx(0)
    assert (status["capacity"], status["rate"], status["interval"]) == (3, 4, 2.0)
    assert (status["consumed"], status["rejected"], status["waiting"]) == (3, 1, 0)
    assert status["waited_seconds"] == 0.0


def test_reset_refills_and_zeroes_counters():
    limiter = RateLimiter(3, clock=FakeClock())
    drain(limiter)
    limiter.reset()
    status = limiter.status()
    assert (status["tokens"], status["consumed"], status["rejected"]) == (3, 0, 0)


# --- acquire ------------------------------------------------------------------------


def test_acquire_returns_at_once_when_tokens_are_available():
    limiter = RateLimiter(5)
    assert all(limiter.acquire(timeout=0) for _ in range(5))


def test_acquire_with_zero_timeout_behaves_like_consume():
    limiter = RateLimiter(1, clock=FakeClock())
    assert limiter.acquire(timeout=0)
    assert not limiter.acquire(timeout=0)
    assert limiter.status()["rejected"] == 1


def test_acquire_waits_for_the_refill():
    limiter = RateLimiter(100, burst=1)  # one token every 10 ms
    assert limiter.consume()
    started = time.monotonic()
    assert limiter.acquire(timeout=5.0)
    assert time.monotonic() - started >= 0.009
    assert limiter.status()["waited_seconds"] >= 0.009


def test_acquire_gives_up_at_once_when_the_refill_cannot_make_the_timeout():
    limiter = RateLimiter(1, burst=1)  # next token in 1 s
    limiter.consume()
    started = time.monotonic()
    assert not limiter.acquire(timeout=0.5)
    assert time.monotonic() - started < 0.5
    assert limiter.status()["rejected"] == 1


def test_a_queued_waiter_times_out_while_the_head_waits():
    limiter = RateLimiter(0.001, burst=1)  # no refill within the test
    limiter.consume()
    head_result: list[bool] = []
    head = threading.Thread(target=lambda: head_result.append(limiter.acquire()), daemon=True)
    head.start()
    wait_until(lambda: limiter.status()["waiting"] == 1)
    assert not limiter.acquire(timeout=0.02)  # queued behind the head, gives up at its deadline
    limiter.reset()  # tokens for the head
    head.join(5.0)
    assert head_result == [True]


def test_consume_does_not_overtake_threads_waiting_in_acquire():
    clock = FakeClock()
    limiter = RateLimiter(10, burst=2, cost=by_message, clock=clock)
    drain(limiter)
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(limiter.acquire(2, timeout=30.0)), daemon=True)
    waiter.start()
    wait_until(lambda: limiter.status()["waiting"] == 1)
    clock.advance(0.1)  # one token is there, the waiter needs two
    assert limiter.retry_after(1) == 0
    assert not limiter.consume(1)  # but it is promised to the waiter
    clock.advance(0.1)
    waiter.join(5.0)
    assert result == [True]
    assert limiter.tokens == pytest.approx(0)


def test_waiters_are_served_in_arrival_order():
    served: list[str] = []

    class Recording(RateLimiter):
        def _take_locked(self, cost: float) -> None:
            served.append(threading.current_thread().name)  # under the lock: the true order
            super()._take_locked(cost)

    limiter = Recording(0.001, burst=4)  # no refill within the test
    drain(limiter)
    served.clear()
    threads = []
    for n in range(4):
        thread = threading.Thread(target=limiter.acquire, name=f"waiter{n}", daemon=True)
        thread.start()
        wait_until(lambda n=n: limiter.status()["waiting"] == n + 1)
        threads.append(thread)
    limiter.reset()  # four tokens at once: the queue drains in order
    for thread in threads:
        thread.join(5.0)
    assert served == ["waiter0", "waiter1", "waiter2", "waiter3"]


def test_reset_wakes_a_waiter_at_once():
    limiter = RateLimiter(0.001, burst=1)  # the next token would take 1000 s
    limiter.consume()
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(limiter.acquire()), daemon=True)
    waiter.start()
    wait_until(lambda: limiter.status()["waiting"] == 1)
    limiter.reset()
    waiter.join(5.0)
    assert result == [True]


def _check_budget(stamps: list[float], rate_per_second: float, burst: float) -> None:
    """Every window [stamps[i], stamps[j]] holds at most burst + rate * width takes."""
    stamps = sorted(stamps)
    for i in range(len(stamps)):
        for j in range(i, len(stamps)):
            allowed = burst + rate_per_second * (stamps[j] - stamps[i]) + 1e-6
            assert j - i + 1 <= allowed, f"{j - i + 1} takes within {stamps[j] - stamps[i]:.6f}s"


def _stamping_clock() -> tuple[threading.local, Callable[[], float]]:
    # Records, per thread, the clock reading the limiter used for its last
    # decision: the exact time a token was taken, with no scheduling skew.
    local = threading.local()

    def clock() -> float:
        local.now = time.monotonic()
        return local.now

    return local, clock


@pytest.mark.parametrize("method", ["consume", "acquire"])
def test_eight_threads_never_exceed_the_budget_over_any_window(method):
    local, clock = _stamping_clock()
    limiter = RateLimiter(400, 1.0, burst=10, clock=clock)
    stamps: list[float] = []
    stamps_lock = threading.Lock()
    stop = time.monotonic() + 0.25

    def hammer() -> None:
        mine = []
        while time.monotonic() < stop:
            if method == "consume":
                if limiter.consume():
                    mine.append(local.now)
            elif limiter.acquire(timeout=0.05):
                mine.append(local.now)
        with stamps_lock:
            stamps.extend(mine)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10.0)
    assert len(stamps) >= 10  # the test did exercise the limiter
    _check_budget(stamps, 400, 10)
    assert limiter.status()["consumed"] == len(stamps)


# --- MultiRateLimiter --------------------------------------------------------------


def _two_buckets(clock: FakeClock) -> MultiRateLimiter:
    buckets = {
        "a": RateLimiter(10, burst=3, clock=clock, name="a"),
        "b": RateLimiter(10, burst=1, clock=clock, name="b"),
    }
    return MultiRateLimiter(buckets, lambda message: message or ("a", "b"), name="pair")


def test_multi_consumes_from_every_routed_bucket():
    clock = FakeClock()
    multi = _two_buckets(clock)
    assert multi.consume(("a", "b"))
    assert multi.buckets["a"].tokens == 2
    assert multi.buckets["b"].tokens == 0


def test_multi_takes_nothing_when_one_bucket_is_short():
    clock = FakeClock()
    multi = _two_buckets(clock)
    assert multi.consume(("a", "b"))
    assert not multi.consume(("a", "b"))  # b is empty
    assert multi.buckets["a"].tokens == 2  # a was not charged for the failure
    assert multi.consume("a")  # a alone still has tokens
    assert multi.status()["rejected"] == 1


def test_multi_retry_after_is_the_slowest_bucket():
    clock = FakeClock()
    multi = _two_buckets(clock)
    multi.consume(("a", "b"))
    assert multi.retry_after("a") == 0
    assert multi.retry_after(("a", "b")) == pytest.approx(0.1)


def test_multi_charge_takes_from_every_bucket_into_debt():
    clock = FakeClock()
    multi = _two_buckets(clock)
    multi.charge(("a", "b"))
    multi.charge(("a", "b"))
    assert multi.buckets["b"].tokens == pytest.approx(-1)
    assert multi.buckets["a"].tokens == pytest.approx(1)


def test_multi_charge_stops_each_bucket_at_minus_its_burst():
    clock = FakeClock()
    multi = _two_buckets(clock)  # a: burst 3, b: burst 1
    for _ in range(100):
        multi.charge(("a", "b"))
    assert multi.buckets["a"].tokens == pytest.approx(-3)
    assert multi.buckets["b"].tokens == pytest.approx(-1)
    assert multi.status()["consumed"] == 100
    assert multi.retry_after(("a", "b")) == pytest.approx(0.4)  # a: 4 tokens at 10/s


def test_multi_an_empty_route_is_free():
    multi = MultiRateLimiter({"a": RateLimiter(1, clock=FakeClock())}, lambda message: ())
    assert all(multi.consume() for _ in range(10))


def test_multi_routing_to_an_unknown_bucket_is_a_key_error():
    multi = _two_buckets(FakeClock())
    with pytest.raises(KeyError, match="nope"):
        multi.consume("nope")


def test_multi_acquire_waits_for_every_bucket():
    buckets = {"fast": RateLimiter(1000, burst=1), "slow": RateLimiter(100, burst=1)}
    multi = MultiRateLimiter(buckets, lambda message: ("fast", "slow"))
    assert multi.consume()
    started = time.monotonic()
    assert multi.acquire(timeout=5.0)
    assert time.monotonic() - started >= 0.009  # the slow bucket's 10 ms
    assert buckets["fast"].status()["consumed"] == buckets["slow"].status()["consumed"] == 2


def test_multi_status_and_reset_cover_every_bucket():
    clock = FakeClock()
    multi = _two_buckets(clock)
    multi.consume(("a", "b"))
    status = multi.status()
    assert status["name"] == "pair" and status["consumed"] == 1
    assert set(status["buckets"]) == {"a", "b"}
    assert status["buckets"]["b"]["tokens"] == 0
    multi.reset()
    assert multi.status()["buckets"]["b"]["tokens"] == 1
    assert multi.status()["consumed"] == 0


@pytest.mark.parametrize(
    ("buckets", "route", "option"),
    [
        ({}, lambda m: "a", "buckets"),
        ({"a": object()}, lambda m: "a", "buckets.a"),
        ({"a": RateLimiter(1)}, "a", "route"),
    ],
)
def test_multi_rejects_bad_configuration_naming_it(buckets, route, option):
    with pytest.raises(ConfigError) as info:
        MultiRateLimiter(buckets, route)
    assert info.value.option == option


def test_multi_threads_never_overdraw_any_bucket():
    local, clock = _stamping_clock()
    shared = RateLimiter(300, burst=5, clock=clock)
    # Only the shared bucket stamps: its clock reading is the time of the decision.
    only_a = RateLimiter(10_000, burst=10_000)
    multi = MultiRateLimiter({"shared": shared, "a": only_a}, lambda message: message)
    stamps: list[float] = []
    stamps_lock = threading.Lock()
    stop = time.monotonic() + 0.2

    def hammer(route: tuple[str, ...]) -> None:
        mine = []
        while time.monotonic() < stop:
            if multi.consume(route):
                mine.append(local.now)
        with stamps_lock:
            stamps.extend(mine)

    routes = [("shared", "a"), ("shared",)] * 4
    threads = [threading.Thread(target=hammer, args=(route,)) for route in routes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10.0)
    assert len(stamps) >= 5
    _check_budget(stamps, 300, 5)
    assert shared.status()["consumed"] == len(stamps)


# --- cost functions --------------------------------------------------------------


def test_simple_cost_is_one_for_anything():
    assert simple_cost() == simple_cost({"method": "x"}) == simple_cost(b"x") == 1


@pytest.mark.parametrize(
    "message",
    [None, {"method": "public/get_time"}, '{"method": "private/buy"}', b'{"method": "public/test"}', "ping"],
)
def test_deribit_cost_is_500_credits_per_request(message):
    assert deribit_cost(message) == 500


@pytest.mark.parametrize(
    "method",
    [
        "private/buy",
        "private/sell",
        "private/edit",
        "private/edit_by_label",
        "private/cancel",
        "private/cancel_all",
        "private/cancel_all_by_currency",
        "private/cancel_all_by_instrument",
        "private/cancel_all_by_kind_or_type",
        "private/cancel_by_label",
        "private/cancel_quotes",
        "private/close_position",
        "private/mass_quote",
    ],
)
def test_matching_engine_methods_are_recognised_in_every_message_form(method):
    request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {}}
    assert is_matching_engine(request)
    assert is_matching_engine(json.dumps(request))
    assert is_matching_engine(json.dumps(request).encode())


@pytest.mark.parametrize(
    "message",
    [
        None,
        {"method": "public/get_instruments"},
        {"method": "private/get_positions"},
        {"method": "private/enable_cancel_on_disconnect"},
        {"params": {"method": "private/buy"}},
        '{"method": "private/buy"',  # broken JSON
        b"\xff\xfe",
        "private/buy",
        ["private/buy"],
    ],
)
def test_other_messages_are_not_matching_engine_requests(message):
    assert not is_matching_engine(message)


def test_deribit_subscription_requests_are_recognised():
    assert is_deribit_subscription({"method": "public/subscribe"})
    assert is_deribit_subscription('{"method": "private/unsubscribe"}')
    assert not is_deribit_subscription({"method": "public/get_time"})


@pytest.mark.parametrize(
    ("message", "weight"),
    [
        (None, 1),
        ("raw text", 1),
        ({"method": "ping"}, 1),
        ({"method": "time"}, 1),
        ({"method": "exchangeInfo"}, 20),
        ({"method": "depth", "params": {"symbol": "BTCUSDT"}}, 5),
        ({"method": "depth", "params": {"symbol": "BTCUSDT", "limit": 100}}, 5),
        ({"method": "depth", "params": {"symbol": "BTCUSDT", "limit": 101}}, 25),
        ({"method": "depth", "params": {"symbol": "BTCUSDT", "limit": 500}}, 25),
        ({"method": "depth", "params": {"symbol": "BTCUSDT", "limit": 1000}}, 50),
        ({"method": "depth", "params": {"symbol": "BTCUSDT", "limit": 5000}}, 250),
        ({"method": "depth", "params": {"symbol": "BTCUSDT", "limit": "500"}}, 25),
        ({"method": "order.place", "params": {"symbol": "BTCUSDT"}}, 1),
        ({"method": "order.status"}, 4),
        ({"method": "ticker.price", "params": {"symbol": "BTCUSDT"}}, 2),
        ({"method": "ticker.price"}, 4),
        ({"method": "ticker.24hr", "params": {"symbol": "BTCUSDT"}}, 2),
        ({"method": "ticker.24hr", "params": {"symbols": ["A"] * 20}}, 2),
        ({"method": "ticker.24hr", "params": {"symbols": ["A"] * 21}}, 40),
        ({"method": "ticker.24hr", "params": {"symbols": ["A"] * 101}}, 80),
        ({"method": "ticker.24hr"}, 80),
        ({"method": "openOrders.status", "params": {"symbol": "BTCUSDT"}}, 6),
        ({"method": "openOrders.status"}, 80),
        ({"method": "SUBSCRIBE", "params": ["btcusdt@trade"], "id": 1}, 1),
        ({"method": "UNSUBSCRIBE", "params": ["btcusdt@trade"], "id": 2}, 1),
        ({"method": "some.future.method"}, 1),
        ({"method": "myFilters", "params": {"symbol": "BTCUSDT"}}, 40),
        ({"method": "allOrderLists"}, 20),
        ({"method": "ticker", "params": {"symbol": "BTCUSDT", "windowSize": "7d"}}, 4),
        ({"method": "ticker", "params": {"symbols": ["A"] * 50}}, 200),
        ({"method": "ticker", "params": {"symbols": ["A", "B", "C"]}}, 12),
        ({"method": "ticker", "params": {"symbols": ["A"] * 51}}, 200),
        ({"method": "order.test", "params": {"symbol": "BTCUSDT"}}, 1),
        ({"method": "order.test", "params": {"symbol": "BTCUSDT", "computeCommissionRates": True}}, 20),
        ({"method": "executionRules", "params": {"symbol": "BTCUSDT"}}, 2),
        ({"method": "executionRules", "params": {"symbols": ["A"] * 5}}, 10),
        ({"method": "executionRules", "params": {"symbols": ["A"] * 30}}, 40),
        ({"method": "executionRules", "params": {"symbolStatus": "TRADING"}}, 40),
        ({"method": "executionRules"}, 40),
        ('{"id": 1, "method": "exchangeInfo"}', 20),
        (b'{"id": 1, "method": "depth", "params": {"limit": 1000}}', 50),
    ],
)
def test_binance_cost_is_the_request_weight(message, weight):
    assert binance_cost(message) == weight


# --- presets ------------------------------------------------------------------------


def test_deribit_preset_allows_100_ordinary_requests_then_refills_10000_credits_per_second():
    clock = FakeClock()
    limiter = deribit_preset(clock=clock)
    request = {"jsonrpc": "2.0", "id": 1, "method": "public/get_time"}
    assert drain(limiter, request) == 100  # 50,000 / 500
    clock.advance(0.05)  # 500 credits
    assert limiter.consume(request)
    assert not limiter.consume(request)


def test_deribit_preset_limits_orders_in_their_own_bucket():
    clock = FakeClock()
    limiter = deribit_preset(clock=clock)
    drain(limiter, {"method": "public/get_time"})  # credits exhausted
    order = {"jsonrpc": "2.0", "id": 2, "method": "private/buy", "params": {}}
    assert drain(limiter, order) == 2  # default: the lowest published tier, burst 2
    clock.advance(1.0)
    assert drain(limiter, order) == 2  # 2 per second


def test_deribit_preset_takes_the_account_tier():
    limiter = deribit_preset(matching_rate=30, matching_burst=100, clock=FakeClock())
    assert drain(limiter, {"method": "private/sell"}) == 100


@pytest.mark.parametrize(("tier", "burst", "rate"), [(1, 100, 30), (2, 50, 20)])
def test_deribit_preset_tier_gives_the_published_matching_limits(tier, burst, rate):
    """PROTOCOLS.md: Tier 1 30/s burst 100, Tier 2 20/s burst 50."""
    clock = FakeClock()
    limiter = deribit_preset(tier=tier, clock=clock)
    order = {"method": "private/buy"}
    assert drain(limiter, order) == burst
    clock.advance(1.0)
    assert drain(limiter, order) == rate


def test_deribit_preset_refuses_a_tier_without_published_numbers():
    with pytest.raises(ConfigError, match="tier"):
        deribit_preset(tier=3)


def test_deribit_preset_limits_subscribes_and_charges_them_credits():
    clock = FakeClock()
    limiter = deribit_preset(clock=clock)
    subscribe = {"method": "public/subscribe", "params": {"channels": ["a"]}}
    assert drain(limiter, subscribe) == 3
    assert limiter.buckets["credits"].tokens == 50_000 - 3 * 500
    clock.advance(1 / 3)
    assert limiter.consume(subscribe)


def test_binance_stream_preset_admits_at_most_five_messages_in_any_second():
    """Burst plus refill within one second stays at 5 (burst 5 at 5/s admitted 9)."""
    clock = FakeClock()
    limiter = binance_stream_preset(clock=clock)
    sent: list[float] = []
    for _ in range(300):  # 3 s in 10 ms steps, sending whenever allowed
        while limiter.consume():
            sent.append(clock.now)
        clock.advance(0.01)
    assert max(sum(1 for t in sent if start <= t < start + 1.0) for start in sent) <= 5
    assert len(sent) >= 12  # and it does not starve: about 4 per second


def test_binance_api_preset_meters_request_weight_per_minute():
    clock = FakeClock(start=960.0)  # a whole minute: Binance's windows start on the minute
    limiter = binance_api_preset(clock=clock)
    assert limiter.capacity == 6000 and limiter.interval == 60.0
    heavy = {"method": "depth", "params": {"symbol": "BTCUSDT", "limit": 5000}}
    assert drain(limiter, heavy) == 24  # 24 * 250 = 6000
    clock.advance(30.0)
    assert limiter.retry_after(heavy) == pytest.approx(30.0)  # nothing comes back until the next window


def test_binance_api_preset_admits_at_most_6000_weight_per_fixed_minute():
    """A token bucket admitted the burst plus a minute of refill (12,000) in the first minute."""
    clock = FakeClock(start=960.0)
    limiter = binance_api_preset(clock=clock)
    heavy = {"method": "exchangeInfo"}  # 20
    admitted = 0
    for _ in range(600):  # 0.1 s steps through one whole minute
        while limiter.consume(heavy):
            admitted += 20
        clock.advance(0.1)
    assert admitted == 6000
    clock.advance(0.01)  # the next minute: a fresh window of 6000
    assert drain(limiter, heavy) == 300


def test_presets_are_fresh_objects():
    assert binance_stream_preset() is not binance_stream_preset()
    assert deribit_preset().buckets["credits"] is not deribit_preset().buckets["credits"]


# --- registry -----------------------------------------------------------------------


@pytest.fixture
def registry() -> Iterator[None]:
    before = set(rl.names())
    yield
    for name in set(rl.names()) - before:
        rl.shutdown(name)


def test_registry_init_consume_status_shutdown(registry):
    limiter = rl.init("test-orders", rate=2, interval=1.0)
    assert rl.get("test-orders") is limiter
    assert rl.consume("test-orders") and rl.consume("test-orders")
    assert not rl.consume("test-orders")
    assert rl.status("test-orders")["name"] == "test-orders"
    assert rl.status("test-orders")["consumed"] == 2
    assert rl.retry_after("test-orders") > 0
    assert rl.shutdown("test-orders")
    assert not rl.shutdown("test-orders")
    assert "test-orders" not in rl.names()


def test_registry_acquire_waits_on_the_named_limiter(registry):
    rl.init("test-acquire", rate=100, burst=1)
    assert rl.acquire("test-acquire", timeout=1.0)
    assert rl.acquire("test-acquire", timeout=1.0)


def test_registry_refuses_a_taken_name_unless_replacing(registry):
    first = rl.init("test-dup", rate=1)
    with pytest.raises(ConfigError, match="test-dup") as info:
        rl.init("test-dup", rate=5)
    assert info.value.option == "name"
    assert rl.get("test-dup") is first
    second = rl.init("test-dup", rate=5, replace=True)
    assert rl.get("test-dup") is second


def test_registry_unknown_name_is_a_key_error_naming_it(registry):
    with pytest.raises(KeyError, match="no-such-limiter"):
        rl.consume("no-such-limiter")


def test_registry_rejects_an_empty_name(registry):
    with pytest.raises(ConfigError) as info:
        rl.init("", rate=1)
    assert info.value.option == "name"


def test_registry_holds_presets(registry):
    rl.register("test-deribit", deribit_preset())
    assert rl.consume("test-deribit", {"method": "public/test"})
    assert "buckets" in rl.status("test-deribit")
    with pytest.raises(ConfigError):
        rl.register("test-bad", object())  # type: ignore[arg-type]


def test_registry_init_is_thread_safe(registry):
    errors: list[BaseException] = []

    def create(n: int) -> None:
        try:
            rl.init("test-race", rate=n + 1)
        except ConfigError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) == 7  # exactly one thread won the name
    assert rl.get("test-race").rate in range(1, 9)


def test_bench_hook_returns_seconds_per_call():
    per_call = rl._bench_consume(1000)
    assert 0 < per_call < 1


def test_module_exports_are_defined():
    for name in rl.__all__:
        assert hasattr(rl, name), name


def test_rate_limiter_re_exports_the_whole_ratelimit_package():
    from zen_websocket import ratelimit

    assert set(rl.__all__) == set(ratelimit.__all__)
    for name in ratelimit.__all__:
        assert getattr(rl, name) is getattr(ratelimit, name), name


# --- contracts the mutation run pinned down ------------------------------------------------


@pytest.mark.parametrize(
    ("params", "weight"),
    [
        (["BTCUSDT"], 5),  # params that are no object: the default limit
        ({"limit": "abc"}, 5),  # a limit that is no number: the default
        ({"limit": None}, 5),
        ({"limit": [1]}, 5),
        ({"limit": True}, 5),
        ({"limit": 10_000}, 250),  # past the table: the largest weight
    ],
)
def test_binance_depth_weight_falls_back_to_the_default_limit_or_the_largest_weight(params, weight):
    assert binance_cost({"method": "depth", "params": params}) == weight


def test_binance_ticker_book_and_24hr_boundaries():
    assert binance_cost({"method": "ticker.book", "params": {"symbol": "BTCUSDT"}}) == 2
    assert binance_cost({"method": "ticker.book"}) == 4
    assert binance_cost({"method": "ticker.24hr", "params": {"symbols": ["A"] * 100}}) == 40


def test_a_method_that_is_not_a_string_is_no_request():
    assert not is_matching_engine({"method": 5})
    assert not is_deribit_subscription({"method": ["public/subscribe"]})
    assert binance_cost({"method": 5}) == 1


def test_a_message_costing_exactly_the_burst_passes():
    limiter = RateLimiter(10, cost=by_message, clock=FakeClock())
    assert limiter.consume(10)


def test_an_unnamed_limiter_calls_itself_rate_limiter_in_errors():
    limiter = RateLimiter(10, cost=by_message, clock=FakeClock())
    with pytest.raises(ValueError, match="can never pass rate limiter, whose burst is 10"):
        limiter.consume(11)


def test_reprs_show_the_configuration():
    limiter = RateLimiter(5, 2.0, burst=3, clock=FakeClock(), name="feed")
    assert repr(limiter) == "RateLimiter(rate=5, interval=2, burst=3, name='feed')"
    assert repr(_two_buckets(FakeClock())) == "MultiRateLimiter(buckets=['a', 'b'], name='pair')"


def test_every_rejection_and_every_take_is_counted():
    clock = FakeClock()
    limiter = RateLimiter(1, clock=clock)
    assert limiter.consume()
    assert not limiter.consume() and not limiter.consume()
    assert not limiter.acquire(timeout=0) and not limiter.acquire(timeout=0)
    assert not limiter.acquire(timeout=0.5) and not limiter.acquire(timeout=0.5)  # refill needs 1 s
    assert limiter.status()["rejected"] == 6
    limiter.reset()
    status = limiter.status()
    assert (status["consumed"], status["rejected"], status["waited_seconds"]) == (0, 0, 0.0)


def _start_waiter(limiter: RateLimiter | MultiRateLimiter, message: object = None, timeout: float | None = 30.0):
    result: list[bool] = []
    thread = threading.Thread(target=lambda: result.append(limiter.acquire(message, timeout)), daemon=True)
    thread.start()
    return thread, result


def test_waited_seconds_add_up_on_the_limiters_clock():
    clock = FakeClock()
    limiter = RateLimiter(10, burst=1, clock=clock)
    for expected in (0.1, 0.2):
        drain(limiter)
        thread, result = _start_waiter(limiter)
        wait_until(lambda: limiter.status()["waiting"] == 1)
        clock.advance(0.1)
        thread.join(5.0)
        assert result == [True]
        assert limiter.status()["waited_seconds"] == pytest.approx(expected, abs=1e-9)


def test_a_refill_arriving_exactly_at_the_deadline_is_waited_for():
    clock = FakeClock()
    limiter = RateLimiter(10, burst=1, clock=clock)
    assert limiter.consume()
    thread, result = _start_waiter(limiter, timeout=0.1)  # the token is due in exactly 0.1 s
    wait_until(lambda: limiter.status()["waiting"] == 1)
    clock.advance(0.1)
    thread.join(5.0)
    assert result == [True]
    assert limiter.status()["rejected"] == 0


def test_a_queued_waiter_is_served_when_the_refill_reaches_it_in_time():
    limiter = RateLimiter(20, burst=1)  # a token every 50 ms
    assert limiter.consume()
    head, head_result = _start_waiter(limiter)
    wait_until(lambda: limiter.status()["waiting"] == 1)
    assert limiter.acquire(timeout=ms(500))  # second in line: about 100 ms
    head.join(5.0)
    assert head_result == [True]
    assert limiter.status()["rejected"] == 0


def test_each_queued_waiter_that_times_out_is_counted():
    limiter = RateLimiter(0.001, burst=1)  # no refill within the test
    limiter.consume()
    head, head_result = _start_waiter(limiter, timeout=None)
    wait_until(lambda: limiter.status()["waiting"] == 1)
    assert not limiter.acquire(timeout=ms(10))
    assert not limiter.acquire(timeout=ms(10))
    assert limiter.status()["rejected"] == 2
    limiter.reset()
    head.join(5.0)
    assert head_result == [True]


# --- MultiRateLimiter contracts ---------------------------------------------------------


def _priced_pair(clock: FakeClock) -> MultiRateLimiter:
    """Two buckets whose cost is the message's ``cost`` member; the route is its ``to`` member."""

    def price(message: object) -> float:
        return message["cost"] if isinstance(message, dict) else 1  # type: ignore[index]

    buckets = {
        "a": RateLimiter(10, burst=3, cost=price, clock=clock, name="a"),
        "b": RateLimiter(10, burst=5, cost=price, clock=clock, name="b"),
    }
    return MultiRateLimiter(buckets, lambda message: message["to"] if isinstance(message, dict) else ("a",))


def test_multi_costs_come_from_the_message():
    clock = FakeClock()
    multi = _priced_pair(clock)
    assert multi.consume({"to": ("a", "b"), "cost": 3})
    assert multi.buckets["a"].tokens == 0 and multi.buckets["b"].tokens == 2
    with pytest.raises(ValueError, match="burst is 3"):
        multi.consume({"to": ("a",), "cost": 4})
    assert multi.retry_after({"to": ("b",), "cost": 4}) == pytest.approx(0.2)


def test_multi_charge_prices_the_message_and_allows_more_than_a_burst():
    clock = FakeClock()
    multi = _priced_pair(clock)
    multi.charge({"to": ("a", "b"), "cost": 4})
    multi.charge({"to": ("a", "b"), "cost": 4})
    assert multi.buckets["a"].tokens == pytest.approx(-3)  # floor: minus a's burst
    assert multi.buckets["b"].tokens == pytest.approx(-3)
    assert multi.status()["consumed"] == 2


def test_multi_counts_every_take_and_every_rejection():
    clock = FakeClock()
    multi = _two_buckets(clock)
    assert multi.consume(("a", "b"))
    assert multi.consume("a")
    assert not multi.consume(("a", "b")) and not multi.consume(("a", "b"))
    status = multi.status()
    assert (status["consumed"], status["rejected"], status["waiting"], status["waited_seconds"]) == (2, 2, 0, 0.0)
    assert set(status) == {"name", "consumed", "rejected", "waited_seconds", "waiting", "buckets"}
    multi.reset()
    status = multi.status()
    assert (status["consumed"], status["rejected"], status["waited_seconds"]) == (0, 0, 0.0)


def test_multi_acquire_waits_on_the_buckets_clock_and_counts():
    clock = FakeClock()
    multi = _priced_pair(clock)
    assert multi.consume({"to": ("a", "b"), "cost": 3})
    thread, result = _start_waiter(multi, {"to": ("a", "b"), "cost": 2})
    wait_until(lambda: multi.status()["waiting"] == 1)
    clock.advance(0.1)  # one token in a: not enough
    assert thread.is_alive()
    clock.advance(0.1)
    thread.join(5.0)
    assert result == [True]
    status = multi.status()
    assert status["consumed"] == 2
    assert status["waited_seconds"] == pytest.approx(0.2, abs=1e-9)
    assert multi.buckets["a"].tokens == pytest.approx(0)  # the waiter's message was priced and routed
    assert multi.buckets["b"].tokens == pytest.approx(2)


def test_multi_acquire_gives_up_within_its_timeout():
    multi = MultiRateLimiter({"a": RateLimiter(0.001, burst=1)}, lambda message: "a")
    assert multi.consume()
    assert not multi.acquire(timeout=ms(50))
    assert multi.status()["rejected"] == 1


def test_multi_reset_wakes_a_waiter_at_once():
    multi = MultiRateLimiter({"a": RateLimiter(0.001, burst=1)}, lambda message: "a")
    assert multi.consume()
    thread, result = _start_waiter(multi, timeout=None)
    wait_until(lambda: multi.status()["waiting"] == 1)
    multi.reset()
    thread.join(5.0)
    assert result == [True]


# --- presets and registry contracts -------------------------------------------------------


def test_presets_name_themselves_and_their_buckets():
    assert binance_api_preset().name == "binance_api"
    assert binance_stream_preset().name == "binance_stream"
    deribit = deribit_preset(name="acct")
    assert deribit.name == "acct" and deribit_preset().name == "deribit"
    assert {key: bucket.name for key, bucket in deribit.buckets.items()} == {
        "credits": "acct.credits",
        "matching": "acct.matching",
        "subscribe": "acct.subscribe",
    }


def test_registry_passes_message_and_timeout_through(registry):
    clock = FakeClock()
    rl.init("test-pass", rate=10, cost=by_message, clock=clock)
    assert rl.acquire("test-pass", 10, timeout=0)  # the whole bucket: the message is the cost
    assert rl.retry_after("test-pass", 5) == pytest.approx(0.5)
    assert rl.consume("test-pass", 0)  # a free message passes an empty bucket
    assert not rl.acquire("test-pass", 5, timeout=0)  # gives up at once: the refill needs 0.5 s
    clock.advance(0.5)
    assert rl.consume("test-pass", 5)


def test_registry_init_defaults_and_passes_every_option(registry):
    plain = rl.init("test-plain", rate=4)
    assert (plain.rate, plain.interval, plain.capacity) == (4, 1.0, 4)
    clock = FakeClock()
    shaped = rl.init("test-shaped", rate=4, interval=2.0, burst=2, cost=by_message, clock=clock)
    assert (shaped.interval, shaped.capacity) == (2.0, 2)
    assert shaped.consume(2) and not shaped.consume(1)
    clock.advance(0.5)  # the injected clock drives the refill: 4 per 2 s
    assert shaped.consume(1)


def test_registry_register_refuses_a_taken_name_by_default(registry):
    rl.register("test-reg", RateLimiter(1))
    with pytest.raises(ConfigError) as info:
        rl.register("test-reg", RateLimiter(2))
    assert info.value.option == "name"
    with pytest.raises(ConfigError) as info:
        rl.register("test-reg2", "not a limiter")  # type: ignore[arg-type]
    assert info.value.option == "limiter"


# --- the fixed window: status, waits and reset (pure, fake clock) ---------------------------------


def test_fixed_window_defaults_to_one_minute_windows():
    limiter = FixedWindowLimiter(5, clock=FakeClock(start=600.0))
    assert limiter.status()["interval"] == 60.0
    assert repr(limiter) == "FixedWindowLimiter(limit=5, interval=60, name=None)"


def test_fixed_window_status_says_when_the_window_started_and_resets():
    clock = FakeClock(start=650.0)
    limiter = FixedWindowLimiter(5, 60.0, clock=clock)
    status = limiter.status()
    assert (status["window_start"], status["resets_in"]) == (600.0, 10.0)
    clock.advance(9.5)
    assert limiter.status()["resets_in"] == pytest.approx(0.5)
    clock.advance(0.5)
    status = limiter.status()
    assert (status["window_start"], status["resets_in"]) == (660.0, 60.0)
    assert status["capacity"] == 5 and status["tokens"] == 5


def test_fixed_window_status_shows_the_new_window_refilled():
    clock = FakeClock(start=600.0)
    limiter = FixedWindowLimiter(3, 60.0, clock=clock)
    assert drain(limiter) == 3
    assert limiter.status()["tokens"] == pytest.approx(0.0)
    clock.advance(60.0)
    assert limiter.status()["tokens"] == 3


def test_fixed_window_retry_after_is_zero_while_tokens_last_then_until_the_next_window():
    clock = FakeClock(start=600.0)
    limiter = FixedWindowLimiter(2, 60.0, clock=clock)
    assert limiter.consume()
    assert limiter.retry_after() == 0.0  # exactly the cost is left
    assert limiter.consume()
    clock.advance(59.5)
    assert limiter.retry_after() == pytest.approx(0.5 + 1e-6, abs=1e-9)  # a hair past the boundary


def test_fixed_window_counts_every_rejection():
    limiter = FixedWindowLimiter(1, 60.0, clock=FakeClock(start=600.0))
    assert limiter.consume()
    assert not limiter.consume()
    assert not limiter.consume()
    assert limiter.status()["rejected"] == 2


def test_fixed_window_reset_starts_a_full_window_at_the_current_time():
    clock = FakeClock(start=600.0)
    limiter = FixedWindowLimiter(2, 60.0, clock=clock)
    assert drain(limiter) == 2
    clock.advance(100.0)  # now 700: inside [660, 720)
    limiter.reset()
    assert limiter.status()["window_start"] == 660.0
    assert drain(limiter) == 2
    clock.advance(19.0)  # 719: still the reset's window
    assert not limiter.consume()
    clock.advance(1.0)
    assert limiter.consume()


# --- Binance weights by symbols and flags --------------------------------------------------------


@pytest.mark.parametrize(("symbols", "weight"), [('["A"]', 4), ('["A","B","C"]', 12), ("", 4)])
def test_binance_ticker_symbols_given_as_text_are_counted_by_commas(symbols, weight):
    assert binance_cost({"method": "ticker", "params": {"symbols": symbols}}) == weight


@pytest.mark.parametrize(("flag", "weight"), [(True, 20), ("true", 20), ("TRUE", 20), ("True", 20), ("false", 1)])
def test_binance_order_test_costs_20_when_it_computes_commissions(flag, weight):
    assert binance_cost({"method": "order.test", "params": {"computeCommissionRates": flag}}) == weight


def test_binance_execution_rules_by_symbol_status_cost_the_cap():
    assert binance_cost({"method": "executionRules", "params": {"symbol": "A"}}) == 2
    assert binance_cost({"method": "executionRules", "params": {"symbol": "A", "symbolStatus": "TRADING"}}) == 40


# --- Deribit preset options ----------------------------------------------------------------------


def test_deribit_preset_rejects_an_unknown_tier_listing_the_known_ones():
    with pytest.raises(ConfigError) as info:
        deribit_preset(tier=3)
    assert info.value.option == "tier"
    assert str(info.value) == "tier: Deribit publishes matching-engine limits for tiers 1, 2, got 3"


def test_deribit_preset_matching_rate_overrides_the_tiers():
    buckets = deribit_preset(tier=1, matching_rate=7.0, clock=FakeClock()).buckets
    assert buckets["matching"].status()["rate"] == 7.0
    assert deribit_preset(tier=1, clock=FakeClock()).buckets["matching"].status()["rate"] == 30.0
