"""HeartbeatMonitor: send/dead decisions on a fake clock."""

from __future__ import annotations

from zen_websocket.config import HeartbeatConfig
from zen_websocket.heartbeat import HeartbeatMonitor


def test_ping_sends_every_interval_and_declares_dead_after_timeout():
    mon = HeartbeatMonitor(HeartbeatConfig("ping", 10.0, timeout=3.0))
    mon.start(100.0)
    assert mon.next_deadline() == 110.0
    assert mon.poll(109.9) is None
    assert mon.poll(110.0) == "send"
    mon.on_sent(110.0)
    assert mon.next_deadline() == 113.0
    assert mon.poll(112.9) is None
    assert mon.poll(113.0) == "dead_heartbeat"
    assert mon.failures == 1 and mon.total_failures == 1


def test_reply_clears_outstanding_and_measures_rtt():
    mon = HeartbeatMonitor(HeartbeatConfig("ping", 10.0, timeout=3.0))
    mon.start(0.0)
    mon.on_sent(10.0)
    assert mon.on_reply(10.25, wall=5.0) == 0.25
    assert mon.poll(13.5) is None
    assert mon.health()["last_rtt"] == 0.25
    assert mon.health()["last_heartbeat_at"] == 5.0
    assert mon.next_deadline() == 20.0


def test_frames_after_a_ping_prove_life_while_pong_is_queued():
    mon = HeartbeatMonitor(HeartbeatConfig("ping", 10.0, timeout=3.0))
    mon.start(0.0)
    mon.on_sent(10.0)
    mon.last_frame_at = 12.0
    assert mon.poll(14.0) is None
    assert mon.poll(15.0) == "dead_heartbeat"


def test_deribit_dead_after_interval_plus_timeout_of_silence():
    mon = HeartbeatMonitor(HeartbeatConfig("deribit", 10.0, timeout=5.0))
    mon.start(0.0)
    assert not mon.sends
    assert mon.next_deadline() == 15.0
    mon.last_frame_at = 9.0
    assert mon.poll(20.0) is None
    assert mon.poll(24.0) == "dead_heartbeat"


def test_custom_without_expect_only_sends():
    mon = HeartbeatMonitor(HeartbeatConfig("custom", 1.0, message="ping"))
    mon.start(0.0)
    assert mon.poll(1.0) == "send"
    mon.on_sent(1.0)
    assert mon.poll(50.0) == "send"  # never dead: nothing is expected


def test_max_silence_without_heartbeat():
    mon = HeartbeatMonitor(None, max_silence=2.0)
    mon.start(0.0)
    assert mon.next_deadline() == 2.0
    mon.last_frame_at = 1.5
    assert mon.poll(3.0) is None
    assert mon.poll(3.5) == "dead_silence"


def test_stopped_monitor_has_nothing_due():
    mon = HeartbeatMonitor(HeartbeatConfig("ping", 1.0))
    mon.start(0.0)
    mon.stop()
    assert mon.next_deadline() is None
    assert mon.poll(100.0) is None
    assert mon.health()["active"] is False


def test_a_new_monitor_is_idle_with_nothing_counted():
    mon = HeartbeatMonitor(HeartbeatConfig("ping", 10.0, timeout=3.0))
    assert mon.active is False
    assert mon.last_frame_at == 0.0
    assert (mon.next_send_at, mon.outstanding_since, mon.last_heartbeat_at, mon.last_rtt) == (None,) * 4
    assert (mon.failures, mon.total_failures, mon.sent) == (0, 0, 0)
    assert mon.next_deadline() is None and mon.poll(1e9) is None
    assert mon.health() == {
        "active": False,
        "type": "ping",
        "interval": 10.0,
        "timeout": 3.0,
        "last_heartbeat_at": None,
        "last_rtt": None,
        "failures": 0,
        "total_failures": 0,
        "sent": 0,
    }


def test_health_reports_every_counter_after_activity():
    mon = HeartbeatMonitor(HeartbeatConfig("custom", 2.0, message="hb", timeout=1.0, expect="ok"))
    mon.start(0.0)
    mon.on_sent(2.0)
    assert mon.poll(3.0) == "dead_heartbeat"
    mon.on_sent(4.0)
    assert mon.on_reply(4.5, wall=77.0) == 2.5  # timed from the first unanswered send
    assert mon.health() == {
        "active": True,
        "type": "custom",
        "interval": 2.0,
        "timeout": 1.0,
        "last_heartbeat_at": 77.0,
        "last_rtt": 2.5,
        "failures": 0,
        "total_failures": 1,
        "sent": 2,
    }


def test_health_without_a_heartbeat_config_is_inactive_even_when_started():
    mon = HeartbeatMonitor(None, max_silence=5.0)
    mon.start(0.0)
    health = mon.health()
    assert health["active"] is False
    assert (health["type"], health["interval"], health["timeout"]) == (None, None, None)


def test_each_death_counts_one_failure_in_a_row_and_one_in_total():
    mon = HeartbeatMonitor(HeartbeatConfig("ping", 10.0, timeout=1.0), max_silence=30.0)
    mon.start(0.0)
    mon.on_sent(10.0)
    assert mon.poll(11.0) == "dead_heartbeat"
    assert mon.poll(11.0) == "dead_heartbeat"
    assert (mon.failures, mon.total_failures) == (2, 2)
    mon.on_reply(11.5, wall=1.0)
    assert (mon.failures, mon.total_failures) == (0, 2)  # a reply ends the run, not the total
    mon.last_frame_at = 11.5
    mon.next_send_at = None
    assert mon.poll(41.5) == "dead_silence"
    assert (mon.failures, mon.total_failures) == (1, 3)
    assert mon.poll(41.5) == "dead_silence"
    assert (mon.failures, mon.total_failures) == (2, 4)


def test_every_heartbeat_sent_is_counted():
    mon = HeartbeatMonitor(HeartbeatConfig("ping", 1.0))
    mon.start(0.0)
    for n in range(1, 4):
        mon.on_sent(float(n))
        assert mon.sent == n
    assert mon.outstanding_since == 1.0  # the oldest unanswered send is kept


def test_a_reply_without_a_wall_time_stamps_it_with_the_clock():
    import time

    mon = HeartbeatMonitor(HeartbeatConfig("ping", 1.0))
    mon.start(0.0)
    before = time.time()
    assert mon.on_reply(0.5) is None  # nothing of ours was outstanding: no rtt
    after = time.time()
    assert mon.last_heartbeat_at is not None and before <= mon.last_heartbeat_at <= after
    assert mon.last_rtt is None


def test_a_server_driven_heartbeat_schedules_no_send():
    mon = HeartbeatMonitor(HeartbeatConfig("deribit", 10.0))
    mon.start(5.0)
    assert mon.next_send_at is None
    assert not mon.expects_reply


def test_stop_forgets_the_schedule_and_the_outstanding_heartbeat():
    mon = HeartbeatMonitor(HeartbeatConfig("ping", 1.0))
    mon.start(0.0)
    mon.on_sent(1.0)
    mon.stop()
    assert mon.next_send_at is None and mon.outstanding_since is None
    mon.start(10.0)
    assert mon.next_deadline() == 11.0  # no stale dead verdict from before the stop
