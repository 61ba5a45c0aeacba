"""The session's decisions, without sockets, threads or sleeping (events in, actions out)."""

from __future__ import annotations

import json
import logging

import pytest

from tests.timeunit import FakeClock
from zen_websocket.config import ClientConfig
from zen_websocket.errors import (
    ConfigError,
    ConnectError,
    ConnectionClosed,
    HeartbeatTimeout,
    MessageTooLarge,
    ProtocolError,
    RequestTimeout,
    SilenceTimeout,
)
from zen_websocket.jsonrpc import Correlator
from zen_websocket.session import Dead, Inbound, Retry, Rotate, SendHeartbeat, Session, Stop, loss_reason
from zen_websocket.subscriptions import Ack, BinanceDialect, Dialect, OkxDialect, okx_arg

REFUSED = ConnectError("refused", reason="econnrefused")
UNAUTHORIZED = ConnectError("401", reason="unauthorized", status_code=401)


def make(clock: FakeClock | None = None, **options) -> Session:
    options.setdefault("heartbeat_config", None)
    config = ClientConfig.from_options("ws://127.0.0.1:1/", **options)
    return Session(config, Correlator(clock or FakeClock()), random=lambda: 0.5)


# -- the retry loop ----------------------------------------------------------


def test_first_connect_makes_one_attempt_plus_retry_count_retries_with_doubling_delays():
    session = make(retry_count=3, retry_delay=1.0, max_backoff=30.0)
    session.begin_connect()
    decisions = [session.attempt_failed(REFUSED) for _ in range(4)]
    assert decisions[:3] == [Retry(1.0, 2), Retry(2.0, 3), Retry(4.0, 4)]
    assert decisions[3] == Stop("retries_exhausted", False, REFUSED)
    assert session.attempts == 4


def test_a_loss_starts_a_new_loop_of_retry_count_attempts():
    session = make(retry_count=2, retry_delay=0.5, max_backoff=30.0)
    lost = ConnectionClosed(None, "dropped")
    assert session.connection_lost(lost) == Retry(0.5, 1)
    assert session.attempt_failed(REFUSED) == Retry(1.0, 2)
    assert session.attempt_failed(REFUSED) == Stop("retries_exhausted", False, REFUSED)


def test_delays_are_capped_by_max_backoff():
    session = make(retry_count=None, retry_delay=1.0, max_backoff=3.0)
    session.begin_connect()
    delays = [session.attempt_failed(REFUSED).delay for _ in range(5)]
    assert delays == [1.0, 2.0, 3.0, 3.0, 3.0]


def test_jitter_spreads_the_delay_with_the_injected_random_source():
    config = ClientConfig.from_options("ws://127.0.0.1:1/", heartbeat_config=None, retry_delay=1.0, jitter=0.5)
    low = Session(config, Correlator(), random=lambda: 0.0)
    high = Session(config, Correlator(), random=lambda: 1.0)
    assert low.attempt_failed(REFUSED).delay == pytest.approx(0.5)
    assert high.attempt_failed(REFUSED).delay == pytest.approx(1.5)


def test_a_fatal_attempt_stops_at_once_with_its_reason():
    session = make(retry_count=5)
    session.begin_connect()
    assert session.attempt_failed(UNAUTHORIZED) == Stop("unauthorized", True, UNAUTHORIZED)
    assert session.attempts == 1


def test_a_fatal_attempt_without_a_reason_is_a_fatal_error():
    session = make()
    exc = ConfigError("x", "bad")
    assert session.attempt_failed(exc) == Stop("fatal_error", True, exc)


def test_a_fatal_loss_stops_with_the_loss_reason():
    session = make()
    exc = ProtocolError("masked frame")
    assert session.connection_lost(exc) == Stop("protocol_error", True, exc)
    closed = ConnectionClosed(1002, "")
    assert session.connection_lost(closed) == Stop("remote_close:1002", True, closed)


def test_reconnect_on_error_false_stops_after_a_recoverable_loss_without_reporting():
    session = make(reconnect_on_error=False)
    exc = ConnectionClosed(1001, "going away")
    assert session.connection_lost(exc) == Stop("remote_close:1001", False, exc)


def test_the_users_is_fatal_predicate_is_the_classifier_first():
    seen = []

    def is_fatal(exc):
        seen.append(exc)
        return isinstance(exc, ConnectError) and exc.reason == "econnrefused"

    session = make(is_fatal=is_fatal)
    assert session.is_fatal(REFUSED) is True
    assert session.is_fatal(ConnectionClosed(1001, "")) is False
    assert session.is_fatal(UNAUTHORIZED) is True  # the category still applies
    assert seen[0] is REFUSED and len(seen) == 3


def test_an_is_fatal_predicate_that_raises_falls_back_to_the_category():
    def is_fatal(exc):
        raise RuntimeError("bug")

    session = make(is_fatal=is_fatal)
    assert session.is_fatal(REFUSED) is False
    assert session.is_fatal(UNAUTHORIZED) is True


def test_a_successful_connection_resets_the_retry_count():
    session = make(retry_count=2, retry_delay=1.0)
    session.begin_connect()
    session.attempt_failed(REFUSED)
    session.attempt_failed(REFUSED)
    session.connected(0.0)
    lost = ConnectionClosed(None, "")
    assert session.connection_lost(lost) == Retry(1.0, 1)
    assert session.attempt_failed(REFUSED) == Retry(2.0, 2)


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (HeartbeatTimeout("x"), "heartbeat_timeout"),
        (SilenceTimeout("x"), "max_silence"),
        (MessageTooLarge(10, 5), "message_too_large"),
        (ProtocolError("x"), "protocol_error"),
        (ConnectionClosed(1001, "bye"), "remote_close:1001"),
        (ConnectionClosed(None, "dropped"), "connection_dropped"),
        (ConnectionClosed(None, "write_timeout"), "write_timeout"),
        (None, "unknown"),
        (OSError("x"), "OSError"),
    ],
)
def test_loss_reasons(exc, reason):
    assert loss_reason(exc) == reason


# -- liveness ------------------------------------------------------------------


def test_ping_heartbeat_asks_for_a_ping_every_interval_then_declares_a_silent_peer_dead():
    session = make(heartbeat_config={"type": "ping", "interval": 1.0, "timeout": 0.5})
    session.connected(100.0)
    assert session.next_wakeup() == 101.0
    assert session.tick(100.9) == ([], [])
    actions, _ = session.tick(101.0)
    assert actions == [SendHeartbeat("ping", None)]
    session.heartbeat_sent(101.0)
    assert session.next_wakeup() == 101.5  # the reply deadline comes before the next ping
    actions, _ = session.tick(101.5)
    assert len(actions) == 1 and isinstance(actions[0], Dead)
    assert isinstance(actions[0].exc, HeartbeatTimeout)
    assert "0.5" in str(actions[0].exc)


def test_a_pong_proves_the_peer_alive_and_measures_the_round_trip():
    session = make(heartbeat_config={"type": "ping", "interval": 1.0, "timeout": 0.5})
    session.connected(100.0)
    session.heartbeat_sent(101.0)
    assert session.heartbeat_reply(101.2) == pytest.approx(0.2)
    assert session.tick(101.6) == ([], [])
    assert session.next_wakeup() == 102.0


def test_any_frame_after_the_ping_postpones_the_verdict():
    session = make(heartbeat_config={"type": "ping", "interval": 1.0, "timeout": 0.5})
    session.connected(100.0)
    session.heartbeat_sent(101.0)
    session.frame_received(101.4)
    assert session.tick(101.5) == ([], [])
    actions, _ = session.tick(101.9)
    assert isinstance(actions[0], Dead)


def test_max_silence_declares_the_peer_dead_without_any_heartbeat():
    session = make(max_silence=2.0)
    session.connected(10.0)
    assert session.next_wakeup() == 12.0
    session.frame_received(11.0)
    assert session.tick(12.5) == ([], [])
    actions, _ = session.tick(13.0)
    assert isinstance(actions[0], Dead) and isinstance(actions[0].exc, SilenceTimeout)
    assert "2.0" in str(actions[0].exc)


def test_custom_heartbeat_sends_its_message():
    session = make(heartbeat_config={"type": "custom", "interval": 5.0, "message": {"op": "ping"}, "expect": "pong"})
    session.connected(0.0)
    actions, _ = session.tick(5.0)
    assert actions == [SendHeartbeat("custom", {"op": "ping"})]


def test_nothing_is_timed_before_connected_or_after_disconnected():
    session = make(heartbeat_config={"type": "ping", "interval": 1.0})
    assert session.next_wakeup() is None
    session.connected(0.0)
    session.disconnected()
    assert session.next_wakeup() is None
    assert session.tick(100.0) == ([], [])


def test_tick_expires_requests_and_next_wakeup_includes_their_deadlines():
    clock = FakeClock(50.0)
    session = make(clock, heartbeat_config={"type": "ping", "interval": 10.0})
    session.connected(50.0)
    future = session.correlator.track(7, "public/test", timeout=2.0)
    assert session.next_wakeup() == 52.0
    actions, expired = session.tick(52.0)
    assert actions == []
    assert [p.id for p in expired] == [7]
    with pytest.raises(RequestTimeout):
        future.result(0)
    assert session.next_wakeup() == 60.0


def test_next_wakeup_is_the_request_deadline_without_a_heartbeat():
    clock = FakeClock(0.0)
    session = make(clock)
    session.correlator.track(1, "m", timeout=3.0)
    assert session.next_wakeup() == 3.0


# -- library traffic -----------------------------------------------------------


def deribit_session(clock: FakeClock | None = None) -> Session:
    session = make(clock, heartbeat_config={"type": "deribit", "interval": 10})
    session.connected(0.0)
    return session


HEARTBEAT = json.dumps({"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "heartbeat"}})
TEST_REQUEST = json.dumps({"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "test_request"}})


def test_plain_messages_are_delivered_without_being_decoded():
    session = make()
    assert session.text_received('{"id": 1, "result": 2}', 0.0) is None  # nothing in flight
    assert session.parse_errors == 0
    assert session.unmatched_responses == 0


def test_deribit_heartbeats_are_consumed():
    session = deribit_session()
    action = session.text_received(HEARTBEAT, 1.0)
    assert action is not None and action.kind == "heartbeat"
    assert session.text_received('{"method": "subscription", "params": {"channel": "heartbeat.x"}}', 1.0) is None


def test_only_one_test_request_answer_is_in_flight_at_a_time():
    from concurrent.futures import Future

    session = deribit_session()
    first = session.text_received(TEST_REQUEST, 1.0)
    assert first is not None and first.kind == "test_request"
    answer: Future = Future()
    session.test_in_flight = answer
    for _ in range(1000):
        action = session.text_received(TEST_REQUEST, 1.0)
        assert action is not None and action.kind == "coalesced"
    assert session.test_requests == 1
    assert session.test_requests_coalesced == 1000
    answer.set_result({})
    again = session.text_received(TEST_REQUEST, 2.0)
    assert again is not None and again.kind == "test_request"
    assert session.test_requests == 2


def test_a_new_connection_forgets_the_test_request_in_flight():
    from concurrent.futures import Future

    session = deribit_session()
    session.test_in_flight = Future()
    session.connected(5.0)
    action = session.text_received(TEST_REQUEST, 5.0)
    assert action is not None and action.kind == "test_request"


def test_a_response_completes_nothing_itself_but_hands_over_its_request():
    clock = FakeClock(0.0)
    session = make(clock)
    future = session.correlator.track(42, "public/test", timeout=None)
    clock.advance(0.25)
    action = session.text_received('{"jsonrpc":"2.0","id":42,"result":{"version":"1"}}', 0.25)
    assert action is not None and action.kind == "response"
    assert action.pending.id == 42 and action.pending.rtt == pytest.approx(0.25)
    assert action.message == {"jsonrpc": "2.0", "id": 42, "result": {"version": "1"}}
    assert action.deliver is False
    assert not future.done()  # the driver completes it after its book-keeping
    assert len(session.correlator) == 0


def test_a_send_message_response_is_also_delivered():
    session = make()
    session.correlator.track(9, "x", timeout=None, resolve_with="response", deliver=True)
    action = session.text_received('{"id":9,"result":1}', 0.0)
    assert action is not None and action.deliver is True


def test_unknown_ids_are_delivered_and_counted():
    session = make()
    session.correlator.track(1, "x", timeout=None)
    assert session.text_received('{"id":2,"result":1}', 0.0) is None
    assert session.text_received('{"id":3,"method":"server_request"}', 0.0) is None
    assert session.unmatched_responses == 1
    assert len(session.correlator) == 1


def test_hostile_nesting_is_counted_and_delivered_not_raised():
    session = make()
    session.correlator.track(1, "x", timeout=None)
    nested = '{"id": 1, "x": ' + "[" * 200_000 + "]" * 200_000 + "}"
    assert session.text_received(nested, 0.0) is None
    assert session.parse_errors == 1
    assert len(session.correlator) == 1  # the request still waits for its real answer


def test_invalid_json_and_non_objects_are_delivered():
    session = make()
    session.correlator.track(1, "x", timeout=None)
    assert session.text_received('"id" but not json', 0.0) is None
    assert session.parse_errors == 1
    assert session.text_received('["id", 1]', 0.0) is None
    assert session.text_received('{"id": null, "result": 1}', 0.0) is None
    assert session.parse_errors == 1
    assert session.unmatched_responses == 0


def test_custom_heartbeat_replies_are_matched_by_string_or_predicate():
    by_string = make(heartbeat_config={"type": "custom", "interval": 5.0, "message": "ping", "expect": "pong"})
    action = by_string.text_received("pong", 0.0)
    assert action is not None and action.kind == "heartbeat"
    assert by_string.text_received("pong!", 0.0) is None

    def raises(message):
        raise ValueError("bad predicate")

    by_predicate = make(heartbeat_config={"type": "custom", "interval": 5.0, "message": "ping", "expect": raises})
    assert by_predicate.text_received("pong", 0.0) is None


def test_text_needs_a_look_only_with_deribit_or_custom_expect():
    assert make().filters_text is False
    assert make(heartbeat_config={"type": "ping", "interval": 1.0}).filters_text is False
    assert deribit_session().filters_text is True
    custom = make(heartbeat_config={"type": "custom", "interval": 1.0, "message": "p", "expect": "q"})
    assert custom.filters_text is True
    assert make(heartbeat_config={"type": "custom", "interval": 1.0, "message": "p"}).filters_text is False


# -- more edges (each pins a decision a mutation could flip) -------------------


def test_attempts_are_numbered_from_the_first_without_begin_connect():
    session = make(retry_count=3, retry_delay=1.0)
    assert session.attempts == 0
    assert session.attempt_failed(REFUSED) == Retry(1.0, 2)
    assert session.attempts == 1


def test_without_an_injected_random_source_jitter_free_delays_are_exact():
    config = ClientConfig.from_options("ws://127.0.0.1:1/", heartbeat_config=None, retry_delay=0.25)
    session = Session(config, Correlator())
    assert session.attempt_failed(REFUSED) == Retry(0.25, 2)


def test_giving_up_after_a_loss_reports_the_last_error():
    session = make(retry_count=0)
    lost = ConnectionClosed(None, "dropped")
    assert session.connection_lost(lost) == Stop("retries_exhausted", False, lost)


def test_max_connection_age_asks_for_a_rotation_once_at_the_age():
    session = make(max_connection_age=100.0)
    session.connected(1000.0)
    assert session.rotate_at == 1100.0
    assert session.next_wakeup() == 1100.0
    assert session.tick(1099.9) == ([], [])
    actions, _ = session.tick(1100.0)
    assert actions == [Rotate()]
    assert session.rotate_at is None
    assert session.tick(1200.0) == ([], [])  # asked once; the driver rotates or reports a failure


def test_a_failed_rotation_is_tried_again_a_tenth_of_the_age_later_at_most_a_minute():
    short = make(max_connection_age=100.0)
    short.connected(0.0)
    short.tick(100.0)
    short.rotation_failed(100.0)
    assert short.rotate_at == 110.0
    long = make(max_connection_age=86_000.0)
    long.connected(0.0)
    long.rotation_failed(5.0)
    assert long.rotate_at == 65.0
    none = make()
    none.rotation_failed(5.0)
    assert none.rotate_at is None


def test_a_dead_peer_is_not_rotated():
    session = make(max_connection_age=1.0, max_silence=1.0)
    session.connected(0.0)
    actions, _ = session.tick(1.0)
    assert len(actions) == 1 and isinstance(actions[0], Dead)


def test_rotation_clock_restarts_on_every_connection_and_stops_on_disconnect():
    session = make(max_connection_age=10.0)
    session.connected(0.0)
    session.connected(5.0)
    assert session.rotate_at == 15.0
    session.disconnected()
    assert session.rotate_at is None
    assert session.next_wakeup() is None


def test_a_fresh_session_answers_its_first_test_request():
    session = make(heartbeat_config={"type": "deribit", "interval": 10})
    action = session.text_received(TEST_REQUEST, 0.0)
    assert action is not None and action.kind == "test_request" and action.deliver is False


def test_disconnect_forgets_the_test_request_in_flight():
    from concurrent.futures import Future

    session = deribit_session()
    session.test_in_flight = Future()
    session.disconnected()
    assert session.test_in_flight is None
    action = session.text_received(TEST_REQUEST, 1.0)
    assert action is not None and action.kind == "test_request"


def test_heartbeat_notifications_are_the_librarys_only_with_the_deribit_heartbeat():
    session = make(heartbeat_config={"type": "ping", "interval": 1.0})
    assert session.text_received(HEARTBEAT, 0.0) is None
    action = deribit_session().text_received(HEARTBEAT, 0.0)
    assert action is not None and action.deliver is False


def test_the_expect_predicate_sees_the_message():
    seen = []
    session = make(
        heartbeat_config={
            "type": "custom",
            "interval": 5.0,
            "message": "ping",
            "expect": lambda m: seen.append(m) or m == "pong",
        }
    )
    action = session.text_received("pong", 0.0)
    assert action is not None and action.kind == "heartbeat"
    assert seen == ["pong"]


def test_counters_accumulate():
    session = make()
    session.correlator.track(1, "x", timeout=None)
    for _ in range(3):
        session.text_received('"id" oops', 0.0)
        session.text_received('{"id": 5, "error": {"code": 1}}', 0.0)
    assert session.parse_errors == 3
    assert session.unmatched_responses == 3
    assert session.text_received('{"id": 6, "method": "x"}', 0.0) is None
    assert session.unmatched_responses == 3


# -- the subscription dialect's hook (use_dialect) -------------------------------


class Scripted(Dialect):
    """A dialect whose answers the test sets, recording what the session asks it."""

    name = "scripted"

    def __init__(self, *, acks: tuple[str, ...] = (), events: tuple[str, ...] = ()) -> None:
        self.ack_markers = acks
        self.event_markers = events
        self.ack: Ack | None = None
        self.action: str | None = None
        self.seen: list[tuple[str, object]] = []

    def match_ack(self, message):
        self.seen.append(("match_ack", message))
        return self.ack

    def event_action(self, message):
        self.seen.append(("event_action", message))
        return self.action


def with_dialect(dialect: Dialect, clock: FakeClock | None = None) -> Session:
    session = make(clock)
    session.use_dialect(dialect)
    return session


ACK_TEXT = '{"event": "subscribe", "n": 1}'
ACK_MESSAGE = {"event": "subscribe", "n": 1}


def test_inbound_is_not_delivered_unless_asked():
    assert Inbound("heartbeat").deliver is False
    assert Inbound("x", deliver=True).deliver is True


def test_use_dialect_with_markers_makes_text_worth_a_look():
    okx = with_dialect(OkxDialect())
    assert okx.dialect is not None and okx.filters_text is True
    assert with_dialect(Scripted(events=('"e"',))).filters_text is True
    plain = with_dialect(BinanceDialect())
    assert plain.dialect is not None and plain.filters_text is False


def test_a_text_without_any_marker_never_reaches_the_dialect():
    dialect = Scripted(acks=('"event"',), events=('"shutdown"',))
    session = with_dialect(dialect)
    assert session.text_received('{"data": [1]}', 0.0) is None
    assert dialect.seen == []


def test_an_ack_marker_asks_match_ack_only_and_a_partial_ack_is_swallowed():
    dialect = Scripted(acks=('"event"',))
    dialect.ack = Ack("zw1", done=False)
    dialect.action = "rotate"  # never asked: the dialect has no event markers
    session = with_dialect(dialect)
    action = session.text_received(ACK_TEXT, 0.0)
    assert action is not None and action.kind == "ack" and action.deliver is False
    assert dialect.seen == [("match_ack", ACK_MESSAGE)]
    assert session.unmatched_responses == 0


def test_an_event_marker_asks_event_action_only_and_the_event_is_still_delivered():
    dialect = Scripted(events=('"shutdown"',))
    dialect.ack = Ack("zw1")  # never asked: the dialect has no ack markers
    dialect.action = "renew"
    session = with_dialect(dialect)
    text = '{"e": "shutdown"}'
    action = session.text_received(text, 0.0)
    assert action is not None
    assert (action.kind, action.message, action.deliver, action.pending) == ("renew", {"e": "shutdown"}, True, None)
    assert dialect.seen == [("event_action", {"e": "shutdown"})]


def test_a_dialect_without_event_markers_is_never_asked_for_an_event_action():
    dialect = Scripted(acks=('"event"',))
    dialect.action = "rotate"
    session = with_dialect(dialect)
    assert session.text_received(ACK_TEXT, 0.0) is None
    assert dialect.seen == [("match_ack", ACK_MESSAGE)]


def test_a_marked_message_the_dialect_does_not_claim_goes_to_the_user():
    dialect = Scripted(acks=('"event"',), events=('"event"',))
    session = with_dialect(dialect)
    assert session.text_received(ACK_TEXT, 0.0) is None
    assert dialect.seen == [("match_ack", ACK_MESSAGE), ("event_action", ACK_MESSAGE)]


def test_any_of_the_markers_makes_the_message_the_dialects_business():
    dialect = Scripted(acks=('"first"', '"second"'))
    dialect.ack = Ack(None)
    session = with_dialect(dialect)
    action = session.text_received('{"second": 1}', 0.0)
    assert action is not None and action.kind == "ack"
    assert dialect.seen == [("match_ack", {"second": 1})]


def test_a_complete_ack_hands_over_the_request_with_the_dialects_response():
    clock = FakeClock(0.0)
    dialect = Scripted(acks=('"event"',))
    summary = {"event": "subscribe", "confirmed": ["a"]}
    dialect.ack = Ack("zw7", True, summary)
    session = with_dialect(dialect, clock)
    session.correlator.track("zw7", "subscribe", timeout=None, resolve_with="response")
    clock.advance(0.5)
    action = session.text_received(ACK_TEXT, 0.5)
    assert action is not None
    assert (action.kind, action.message, action.deliver) == ("response", summary, False)
    assert action.pending is not None and action.pending.id == "zw7"
    assert action.pending.rtt == pytest.approx(0.5)
    assert len(session.correlator) == 0
    assert session.unmatched_responses == 0


def test_a_complete_ack_of_a_send_message_request_is_delivered_too():
    dialect = Scripted(acks=('"event"',))
    dialect.ack = Ack(3, True, {"ok": 1})
    session = with_dialect(dialect)
    session.correlator.track(3, "x", timeout=None, resolve_with="response", deliver=True)
    action = session.text_received(ACK_TEXT, 0.0)
    assert action is not None and action.kind == "response" and action.deliver is True


def test_acks_nobody_waits_for_are_swallowed_and_counted_only_with_an_id():
    dialect = Scripted(acks=('"event"',))
    session = with_dialect(dialect)
    session.correlator.track("other", "x", timeout=None)
    dialect.ack = Ack("gone")
    for _ in range(2):
        action = session.text_received(ACK_TEXT, 0.0)
        assert action is not None and action.kind == "ack" and action.deliver is False
    assert session.unmatched_responses == 2
    dialect.ack = Ack(None)
    action = session.text_received(ACK_TEXT, 0.0)
    assert action is not None and action.kind == "ack"
    assert session.unmatched_responses == 2
    assert len(session.correlator) == 1  # the other request still waits


def test_okx_acks_through_the_session_complete_the_request_with_the_last_channel():
    dialect = OkxDialect()
    session = with_dialect(dialect)
    (request,) = dialect.build(["tickers:A-USDT", "tickers:B-USDT"], True)
    session.correlator.track(request.request_id, "subscribe", timeout=None, resolve_with="response")
    first = session.text_received(json.dumps({"event": "subscribe", "arg": okx_arg("tickers:A-USDT")}), 0.0)
    assert first is not None and first.kind == "ack"
    last = session.text_received(json.dumps({"event": "subscribe", "arg": okx_arg("tickers:B-USDT")}), 0.0)
    assert last is not None and last.kind == "response"
    assert last.message["confirmed"] == ["tickers:A-USDT", "tickers:B-USDT"]


def test_a_dialect_that_raises_is_logged_with_its_repr_and_the_message_delivered(caplog):
    class Broken(Scripted):
        def match_ack(self, message):
            raise RuntimeError("bug")

        def __repr__(self) -> str:
            return "Broken<1>"

    session = with_dialect(Broken(acks=('"event"',)))
    with caplog.at_level(logging.ERROR, logger="zen_websocket.session"):
        assert session.text_received(ACK_TEXT, 0.0) is None
    (record,) = caplog.records
    assert "Broken<1>" in record.getMessage()
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)


def test_binance_server_shutdown_asks_the_session_for_a_rotation():
    session = with_dialect(BinanceDialect(rotate_on_shutdown=True))
    event = {"e": "serverShutdown", "E": 1}
    action = session.text_received(json.dumps(event), 0.0)
    assert action is not None
    assert (action.kind, action.message, action.deliver) == ("rotate", event, True)


def test_disconnected_makes_the_dialect_forget_the_acks_it_waits_for():
    dialect = OkxDialect()
    session = with_dialect(dialect)
    dialect.build(["tickers:A-USDT"], True)
    session.disconnected()
    assert dialect.match_ack({"event": "subscribe", "arg": okx_arg("tickers:A-USDT")}) == Ack(None)


def test_jitter_without_an_injected_random_source_uses_the_default_one():
    config = ClientConfig.from_options("ws://127.0.0.1:1/", heartbeat_config=None, retry_delay=1.0, jitter=0.5)
    session = Session(config, Correlator())
    decision = session.attempt_failed(REFUSED)
    assert isinstance(decision, Retry) and 0.5 <= decision.delay <= 1.5
