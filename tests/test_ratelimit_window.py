"""FixedWindowLimiter: a limit counted in fixed windows (Binance REQUEST_WEIGHT), pure and with a fake clock."""

from __future__ import annotations

import time

import pytest

from tests.timeunit import FakeClock, ms
from zen_websocket.errors import ConfigError
from zen_websocket.ratelimit import FixedWindowLimiter, MultiRateLimiter, RateLimiter, register, shutdown


def drain(limiter, message=None) -> int:
    taken = 0
    while limiter.consume(message):
        taken += 1
    return taken


def test_a_window_admits_its_limit_and_nothing_until_the_next_window():
    clock = FakeClock(start=600.0)
    limiter = FixedWindowLimiter(10, 60.0, clock=clock)
    assert drain(limiter) == 10
    clock.advance(59.9)
    assert not limiter.consume()  # no continuous refill inside the window
    clock.advance(0.1)
    assert drain(limiter) == 10  # the whole limit at once in the new window


def test_windows_are_aligned_to_whole_multiples_of_the_interval():
    """Started mid-window, the first window ends at the next multiple, as the exchange's does."""
    clock = FakeClock(start=650.0)  # 50 s into the window [600, 660)
    limiter = FixedWindowLimiter(5, 60.0, clock=clock)
    assert drain(limiter) == 5
    assert limiter.retry_after() == pytest.approx(10.0, abs=1e-3)
    clock.advance(10.0)
    assert limiter.consume()


def test_costs_are_counted_against_the_window():
    clock = FakeClock(start=0.0)
    limiter = FixedWindowLimiter(100, 60.0, cost=lambda message: message["w"], clock=clock)
    assert limiter.consume({"w": 60})
    assert not limiter.consume({"w": 41})
    assert limiter.consume({"w": 40})
    with pytest.raises(ValueError):
        limiter.consume({"w": 101})  # could never pass


def test_charge_debt_is_forgiven_when_the_window_changes():
    clock = FakeClock(start=0.0)
    limiter = FixedWindowLimiter(3, 10.0, clock=clock)
    for _ in range(5):
        limiter.charge()
    assert limiter.tokens == -2
    clock.advance(10.0)
    assert drain(limiter) == 3


def test_acquire_waits_for_the_next_window_only():
    interval = ms(100)
    limiter = FixedWindowLimiter(2, interval, clock=time.monotonic)
    drain(limiter)
    started = time.monotonic()
    assert limiter.acquire(timeout=5 * interval)
    waited = time.monotonic() - started
    assert waited <= interval + ms(50)
    assert limiter.status()["consumed"] >= 1


def test_acquire_gives_up_at_once_when_the_window_ends_after_the_timeout():
    clock = FakeClock(start=0.0)
    limiter = FixedWindowLimiter(1, 60.0, clock=clock)
    assert limiter.consume()
    started = time.monotonic()
    assert not limiter.acquire(timeout=1.0)
    assert time.monotonic() - started < 0.5


def test_status_reports_the_window():
    clock = FakeClock(start=125.0)
    limiter = FixedWindowLimiter(6000, 60.0, clock=clock, name="weight")
    limiter.consume()
    status = limiter.status()
    assert status["name"] == "weight" and status["tokens"] == 5999 and status["capacity"] == 6000
    assert status["window_start"] == 120.0 and status["resets_in"] == pytest.approx(55.0)
    assert "FixedWindowLimiter(limit=6000" in repr(limiter)


def test_reset_gives_a_full_window():
    clock = FakeClock(start=0.0)
    limiter = FixedWindowLimiter(2, 60.0, clock=clock)
    drain(limiter)
    limiter.reset()
    assert drain(limiter) == 2


def test_it_is_a_rate_limiter_for_composites_and_the_registry():
    clock = FakeClock(start=0.0)
    window = FixedWindowLimiter(3, 60.0, clock=clock)
    assert isinstance(window, RateLimiter)
    both = MultiRateLimiter({"w": window, "b": RateLimiter(100, clock=clock)}, lambda m: ("w", "b"))
    assert drain(both) == 3
    register("fixed-window-test", window)
    shutdown("fixed-window-test")


@pytest.mark.parametrize("limit", [0, -1, float("nan"), "5"])
def test_invalid_limits_are_refused(limit):
    with pytest.raises(ConfigError):
        FixedWindowLimiter(limit)
