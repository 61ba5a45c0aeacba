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
