"""The shared timer thread: ordering, cancelling, waking early, surviving a raising callback, owned lifetime."""

from __future__ import annotations

import threading
import time

from tests.timeunit import ms
from zen_websocket.scheduler import Scheduler


def running(name: str = "zen-ws-timer-test") -> Scheduler:
    scheduler = Scheduler(name=name)
    scheduler.acquire()
    return scheduler


def test_timers_run_in_deadline_order_not_submission_order():
    scheduler = running()
    try:
        order: list[str] = []
        done = threading.Event()
        now = time.monotonic()
        scheduler.call_at(now + ms(60), lambda: (order.append("late"), done.set()))
        scheduler.call_at(now + ms(20), order.append, "early")
        scheduler.call_at(now + ms(40), order.append, "middle")
        assert done.wait(2)
        assert order == ["early", "middle", "late"]
    finally:
        scheduler.release()


def test_an_earlier_timer_wakes_a_thread_sleeping_towards_a_later_one():
    scheduler = running()
    try:
        fired = threading.Event()
        scheduler.call_later(60.0, lambda: None)  # the thread now sleeps for a minute
        started = time.monotonic()
        scheduler.call_later(ms(20), fired.set)
        assert fired.wait(2)
        assert time.monotonic() - started < 1.0
    finally:
        scheduler.release()


def test_a_cancelled_timer_never_runs():
    scheduler = running()
    try:
        ran: list[str] = []
        done = threading.Event()
        timer = scheduler.call_later(ms(10), ran.append, "cancelled")
        timer.cancel()
        scheduler.call_later(ms(30), done.set)
        assert done.wait(2)
        assert ran == []
        assert timer.cancelled
    finally:
        scheduler.release()


def test_a_raising_callback_is_logged_and_the_thread_goes_on(caplog):
    scheduler = running()
    try:
        done = threading.Event()

        def boom() -> None:
            raise RuntimeError("bug in a timer")

        scheduler.call_later(0, boom)
        scheduler.call_later(ms(10), done.set)
        assert done.wait(2)
        assert any("bug in a timer" in (r.exc_text or "") or r.exc_info for r in caplog.records)
    finally:
        scheduler.release()


def test_the_thread_lives_while_users_hold_it_and_is_joined_by_the_last_release():
    scheduler = Scheduler(name="zen-ws-timer-owned")

    def alive() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "zen-ws-timer-owned"]

    assert alive() == []
    scheduler.acquire()
    scheduler.acquire()
    assert len(alive()) == 1
    assert scheduler.users == 2
    scheduler.release()
    assert len(alive()) == 1
    scheduler.release()
    assert alive() == []
    assert len(scheduler) == 0
    # A later user gets a new thread.
    scheduler.acquire()
    fired = threading.Event()
    scheduler.call_later(0, fired.set)
    assert fired.wait(2)
    scheduler.release()
    assert alive() == []


def test_release_from_the_timer_thread_does_not_join_itself():
    scheduler = running("zen-ws-timer-self")
    released = threading.Event()

    def release_here() -> None:
        scheduler.release()
        released.set()

    scheduler.call_later(0, release_here)
    assert released.wait(2)
    deadline = time.monotonic() + 2
    while any(t.name == "zen-ws-timer-self" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert not any(t.name == "zen-ws-timer-self" for t in threading.enumerate())


def test_timers_never_run_before_their_time_even_when_batched():
    """A wake-up runs every timer due; one due a moment later waits for its time (up to the resolution late)."""
    scheduler = Scheduler(name="zen-ws-timer-batch", resolution=ms(20))
    scheduler.acquire()
    try:
        ran: list[tuple[float, float]] = []
        done = threading.Event()
        now = time.monotonic()
        whens = [now + ms(10) + i * ms(1) for i in range(10)]
        for when in whens:
            scheduler.call_at(when, lambda when=when: ran.append((when, time.monotonic())))
        scheduler.call_at(whens[-1], done.set)
        assert done.wait(2)
        assert len(ran) == 10
        assert all(at >= when for when, at in ran)
    finally:
        scheduler.release()


def test_a_release_in_the_middle_of_a_batch_runs_nothing_more():
    scheduler = Scheduler(name="zen-ws-timer-batch-release")
    scheduler.acquire()
    ran: list[str] = []
    released = threading.Event()

    def release_here() -> None:
        ran.append("first")
        scheduler.release()
        released.set()

    when = time.monotonic() + ms(10)
    scheduler.call_at(when, release_here)
    scheduler.call_at(when, ran.append, "second")
    assert released.wait(2)
    deadline = time.monotonic() + 2
    while any(t.name == "zen-ws-timer-batch-release" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.005)
    assert ran == ["first"]
