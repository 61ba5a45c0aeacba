"""Backoff: the reconnect arithmetic as a value."""

from __future__ import annotations

import pytest

from zen_websocket.reconnect import Backoff


def test_delay_doubles_from_retry_delay_up_to_the_cap():
    policy = Backoff(retry_delay=1.0, max_backoff=10.0, retry_count=None)
    delays = []
    for _ in range(6):
        delays.append(policy.delay())
        policy = policy.increment()
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_exhausted_after_retry_count_consecutive_failures():
    policy = Backoff(retry_count=2)
    assert not policy.exhausted
    policy = policy.increment()
    assert not policy.exhausted
    policy = policy.increment()
    assert policy.exhausted
    assert not policy.reset().exhausted


def test_none_retries_forever_without_overflow():
    policy = Backoff(retry_delay=0.5, max_backoff=30.0, retry_count=None, failures=5000)
    assert not policy.exhausted
    assert policy.delay() == 30.0


def test_jitter_spreads_within_the_fraction():
    policy = Backoff(retry_delay=1.0, max_backoff=8.0, jitter=0.2, failures=2)
    assert policy.delay(lambda: 0.0) == 4.0 * 0.8
    assert policy.delay(lambda: 1.0) == 4.0 * 1.2
    assert policy.delay(lambda: 0.5) == 4.0


def test_increment_returns_a_new_value():
    policy = Backoff()
    assert policy.increment() is not policy
    assert policy.failures == 0


def test_reset_after_failures_counts_from_zero_again():
    policy = Backoff(retry_delay=1.0, max_backoff=30.0, retry_count=3).increment().increment()
    fresh = policy.reset()
    assert fresh.failures == 0
    assert fresh.delay() == 1.0  # the first retry's delay again
    assert fresh.increment().increment().increment().exhausted  # a full retry_count again


def test_jittered_delays_below_one_second_are_kept():
    policy = Backoff(retry_delay=0.1, max_backoff=1.0, jitter=0.5)
    assert policy.delay(lambda: 0.0) == pytest.approx(0.05)
    assert policy.delay(lambda: 1.0) == pytest.approx(0.15)


def test_jitter_never_makes_a_delay_negative():
    policy = Backoff(retry_delay=1.0, jitter=2.0)  # a spread wider than the delay itself
    assert policy.delay(lambda: 0.0) == 0.0
