"""ClientSupervisor (restarts, intensity, connect_rate, send_balanced) and recordings served back.

Pure policy (restart intensity, connection pacing, balancing order) is tested
without sockets; everything else against real loopback servers.
"""

from __future__ import annotations

import base64
import itertools
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

import zen_websocket as zw
from tests.timeunit import SCALE, FakeClock, ms, wait_until
from zen_websocket.supervisor import ConnectPacer, RestartIntensity, balance_order
from zen_websocket.testing import FeedCollector, MockWebSocketServer, SequencedFeed, gaps

FAST = {"retry_delay": ms(10), "max_backoff": ms(50), "heartbeat_config": None, "close_timeout": ms(500)}
# A child that gives up at the first loss: every drop becomes a restart.
GIVES_UP = {**FAST, "retry_count": 0}


class Events:
    """The supervisor's restart and error events, waited on with a condition."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.items: list[tuple[str, object, object]] = []

    def restart(self, supervisor: zw.ClientSupervisor, child_id: object, client: zw.Client) -> None:
        with self.cond:
            self.items.append(("restart", child_id, client))
            self.cond.notify_all()

    def error(self, supervisor: zw.ClientSupervisor, child_id: object, exc: BaseException) -> None:
        with self.cond:
            self.items.append(("error", child_id, exc))
            self.cond.notify_all()

    def of(self, kind: str, child_id: object = None) -> list[object]:
        with self.cond:
            return [x for k, i, x in self.items if k == kind and (child_id is None or i == child_id)]

    def wait(self, kind: str, count: int, child_id: object = None, timeout: float = 5.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: len(self.of(kind, child_id)) >= count, timeout * SCALE)

    def callbacks(self) -> dict[str, object]:
        return {"on_restart": self.restart, "on_error": self.error}


class TimedServer(MockWebSocketServer):
    """Records, at the server, when each opening handshake arrives (accepted or not)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.attempt_times: list[float] = []

    def check_handshake(self, path, headers):
        with self._cond:
            self.attempt_times.append(time.monotonic())
        return None


def open_sockets() -> int:
    """Sockets this process holds (Linux /proc)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            pass  # closed meanwhile
    return count


def answer_requests(conn, message):
    """A handler answering every JSON-RPC request with its own params."""
    request = json.loads(message)
    return {"jsonrpc": "2.0", "id": request["id"], "result": request.get("params")}


# ---------------------------------------------------------------------------
# pure policy


def test_restart_intensity_allows_max_restarts_per_window():
    intensity = RestartIntensity(2, 10.0)
    assert intensity.allow(100.0)
    assert intensity.allow(105.0)
    assert not intensity.allow(109.9)  # a third within 10 s
    assert intensity.allow(110.0)  # the first one left the window
    assert not RestartIntensity(0, 10.0).allow(0.0)  # max_restarts=0: never restart


def test_connect_pacer_never_lets_more_than_attempts_start_in_any_window():
    clock = FakeClock(0.0)
    pacer = ConnectPacer(3, 10.0, clock=clock)
    starts = [pacer.reserve() for _ in range(7)]
    assert starts == [0.0, 0.0, 0.0, 10.0, 10.0, 10.0, 20.0]
    clock.advance(35.0)  # idle for long: a full burst again
    assert [pacer.reserve() for _ in range(4)] == [35.0, 35.0, 35.0, 45.0]


def test_connect_pacer_spaces_a_trickle_by_the_window_not_by_a_refill():
    # A token bucket (3 per 10 s) would let 3 more through at t=10 after a
    # burst at 0 *and* a refill meanwhile; the window never allows 4 in 10 s.
    clock = FakeClock(0.0)
    pacer = ConnectPacer(3, 10.0, clock=clock)
    starts = []
    for _ in range(9):
        starts.append(pacer.reserve())
        clock.advance(1.0)
    assert all(b - a >= 10.0 for a, b in itertools.pairwise(starts[::3]))
    assert all(starts[i + 3] - starts[i] >= 10.0 for i in range(len(starts) - 3))


def test_balance_order_pending_then_latency_then_least_recently_used():
    order = balance_order(
        [
            ("busy", 2, 0.001, 0.0),
            ("slow", 0, 0.050, 0.0),
            ("fast_recent", 0, 0.002, 9.0),
            ("fast_old", 0, 0.0021, 1.0),  # within LATENCY_RESOLUTION of fast_recent: a tie
            ("unmeasured", 1, None, 0.0),
        ]
    )
    assert order == ["fast_old", "fast_recent", "slow", "unmeasured", "busy"]


# ---------------------------------------------------------------------------
# construction and the dynamic / fixed patterns


@pytest.mark.parametrize(
    ("kwargs", "option"),
    [
        ({"max_restarts": -1}, "max_restarts"),
        ({"max_seconds": 0}, "max_seconds"),
        ({"connect_rate": (0, 1.0)}, "connect_rate"),
        ({"connect_rate": 5}, "connect_rate"),
        ({"on_restrat": print}, "on_restrat"),
        ({"children": [{"id": "x"}]}, "children"),
        ({"children": [{"url": "ws://127.0.0.1:1", "id": "x"}, {"url": "ws://127.0.0.1:2", "id": "x"}]}, "children"),
        ({"children": [{"url": "ws://127.0.0.1:1", "retry_cuont": 3}]}, "retry_cuont"),
    ],
)
def test_invalid_arguments_are_config_errors_naming_them(kwargs, option):
    with pytest.raises(zw.ConfigError) as info:
        zw.ClientSupervisor(**kwargs)
    assert info.value.option == option


def test_start_client_connects_supervised_children_with_ids(server):
    with zw.ClientSupervisor() as supervisor:
        a = supervisor.start_client(server.url, id="a", **FAST)
        b = supervisor.start_client(server.url, name="named", **FAST)
        c = supervisor.start_client(server.url, **FAST)
        assert a.get_state() == b.get_state() == c.get_state() == "connected"
        assert supervisor.ids() == ["a", "named", f"127.0.0.1:{server.port}"]  # id: given, else name, else label
        assert a.name == "a"  # the id names the client (and its threads)
        assert supervisor.get_client("a") is a and supervisor.list_clients() == [a, b, c]
        with pytest.raises(zw.UsageError):
            supervisor.start_client(server.url, id="a", **FAST)
        with pytest.raises(KeyError):
            supervisor.get_client("nobody")
        names = {t.name for t in threading.enumerate()}
        assert {"zen-ws-supervisor", "zen-ws-recv-a"} <= names
        supervisor.stop_client("a")
        supervisor.stop_client(b)  # by client
        assert a.get_state() == b.get_state() == "disconnected"
        assert supervisor.ids() == [f"127.0.0.1:{server.port}"]
    assert c.get_state() == "disconnected"
    with pytest.raises(zw.UsageError):
        supervisor.start_client(server.url, **FAST)


def test_fixed_children_are_connected_on_enter_and_closed_on_exit():
    with MockWebSocketServer() as btc, MockWebSocketServer() as eth:
        children = [{"url": btc.url, "id": "btc", **FAST}, {"url": eth.url, "id": "eth", **FAST}]
        with zw.ClientSupervisor(children=children) as supervisor:
            assert [c.get_state() for c in supervisor.list_clients()] == ["connected", "connected"]
            assert btc.wait_for_connections(1) and eth.wait_for_connections(1)
            clients = supervisor.list_clients()
        assert all(c.get_state() == "disconnected" for c in clients)
        assert btc.wait_for(lambda: not btc.connections) and eth.wait_for(lambda: not eth.connections)


def test_a_fixed_child_that_cannot_connect_fails_start_and_stops_the_others():
    with MockWebSocketServer() as gone:
        dead_url = gone.url
    with MockWebSocketServer() as up:
        supervisor = zw.ClientSupervisor(
            children=[{"url": up.url, "id": "up", **FAST}, {"url": dead_url, "id": "down", **FAST, "retry_count": 0}]
        )
        with pytest.raises(zw.ConnectError) as info:
            supervisor.start()
        assert info.value.reason == "econnrefused"
        assert len(supervisor) == 0
        assert up.connection_count == 1 and up.wait_for(lambda: not up.connections)


def test_a_forgotten_supervisor_does_not_hold_up_interpreter_exit():
    code = (
        "import zen_websocket as zw\n"
        "from zen_websocket.testing import MockWebSocketServer\n"
        "server = MockWebSocketServer().start()\n"
        "supervisor = zw.ClientSupervisor()\n"
        "supervisor.start_client(server.url, id='left', heartbeat_config=None)\n"
        "print('bye')\n"  # no stop(), no server.stop()
    )
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and result.stdout == "bye\n", result.stderr
    assert time.monotonic() - started < 10


# ---------------------------------------------------------------------------
# restarts


def test_a_child_that_gives_up_is_restarted_and_a_failed_restart_is_retried():
    events = Events()
    with MockWebSocketServer() as server, zw.ClientSupervisor(**events.callbacks()) as supervisor:
        first = supervisor.start_client(server.url, id="feed", **GIVES_UP)
        server.reject_handshake(503, times=1)  # the first restart attempt is refused
        server.drop_connections()  # retry_count=0: the child gives up at once
        assert events.wait("restart", 1)
        errors = events.of("error", "feed")
        assert len(errors) == 1 and isinstance(errors[0], zw.ConnectError) and errors[0].status_code == 503
        second = supervisor.get_client("feed")
        assert second is not first and second is events.of("restart")[0]
        assert second.get_state() == "connected" and first.get_state() == "disconnected"
        assert server.connection_count == 2


def test_a_child_closed_with_a_fatal_code_is_restarted(server):
    events = Events()
    with zw.ClientSupervisor(**events.callbacks()) as supervisor:
        first = supervisor.start_client(server.url, id="x", **FAST)
        server.connections[-1].close(1003, "unsupported data")  # fatal: no reconnect, the client ends
        assert events.wait("restart", 1)
        assert supervisor.get_client("x") is not first
        assert supervisor.get_client("x").get_state() == "connected"
        assert first.get_state_metrics()["reconnects"] == 0  # it did not retry: it was replaced


def test_restart_intensity_stops_only_that_child():
    events = Events()
    with MockWebSocketServer() as flaky, MockWebSocketServer() as steady:
        with zw.ClientSupervisor(max_restarts=2, max_seconds=30.0, **events.callbacks()) as supervisor:
            supervisor.start_client(flaky.url, id="flaky", **FAST)
            steady_client = supervisor.start_client(steady.url, id="steady", **FAST)
            for n in (1, 2):
                flaky.connections[-1].close(1003)
                assert events.wait("restart", n, "flaky")
            flaky.connections[-1].close(1003)  # a third ending within 30 s: more than max_restarts
            assert events.wait("error", 1, "flaky")
            error = events.of("error", "flaky")[-1]
            assert isinstance(error, zw.ConnectError) and error.reason == "max_restarts"
            assert "flaky" not in supervisor
            with pytest.raises(KeyError):
                supervisor.get_client("flaky")
            assert supervisor.get_client("steady") is steady_client and steady_client.get_state() == "connected"
            assert flaky.connection_count == 3
            assert len(events.of("restart", "flaky")) == 2


def test_stop_client_and_the_users_own_close_are_never_restarted():
    events = Events()
    with MockWebSocketServer() as a, MockWebSocketServer() as b, MockWebSocketServer() as c:
        with zw.ClientSupervisor(**events.callbacks()) as supervisor:
            supervisor.start_client(a.url, id="a", **FAST)
            supervisor.start_client(b.url, id="b", **FAST)
            supervisor.start_client(c.url, id="c", **FAST)
            supervisor.get_client("a").close()  # the user's own close
            supervisor.stop_client("b")
            assert supervisor.ids() == ["c"]
            # Restarts run in order in one thread: once c's restart is done,
            # anything queued before it (a or b) would have run too.
            c.connections[-1].close(1003)
            assert events.wait("restart", 1, "c")
            assert events.of("restart") == [supervisor.get_client("c")]
        assert a.connection_count == 1 and b.connection_count == 1


def test_stop_is_bounded_when_every_peer_is_dead(server):
    with zw.ClientSupervisor() as supervisor:
        for n in range(3):
            supervisor.start_client(server.url, id=n, **{**FAST, "close_timeout": 5.0})
        server.stall()  # half-open peers: no close handshake will ever be answered
        started = time.monotonic()
        supervisor.stop(timeout=ms(200))
        elapsed = time.monotonic() - started
    assert elapsed < ms(200) + 3 * 0.05 + 1.0
    assert all(c.get_state() == "disconnected" for c in supervisor.list_clients())


def test_restarted_child_resubscribes_and_a_numbered_feed_loses_nothing():
    collector = FeedCollector()
    events = Events()
    with SequencedFeed(interval=ms(2)) as feed, zw.ClientSupervisor(**events.callbacks()) as supervisor:
        for name in ("a", "b"):
            supervisor.start_client(feed.url, id=name, on_message=collector, **FAST)
            supervisor.get_client(name).subscribe(["ticker.BTC"], wait=True)
        assert wait_until(lambda: collector.count(1) >= 10 and collector.count(2) >= 10)
        feed.all_connections[0].close(1003)  # child a ends (fatal) and is restarted
        assert events.wait("restart", 1, "a")
        assert wait_until(lambda: collector.count(3) >= 10)  # the new connection streams...
        assert feed.channels(3) == {"ticker.BTC"}  # ...because its subscriptions were carried over
        assert supervisor.get_client("a").subscriptions == ["ticker.BTC"]
        seen = collector.snapshot()
        assert gaps(seen) == {}
        assert seen[1][-1] == feed.sent[1]  # the ended connection delivered all it carried


def test_a_callable_url_is_called_for_every_attempt_connect_reconnect_and_restart():
    events = Events()
    counter = itertools.count(1)
    with MockWebSocketServer() as server:

        def listen_key_url() -> str:
            return f"{server.url}/ws/key-{next(counter)}"

        with zw.ClientSupervisor(connect_rate=(100, 1.0), **events.callbacks()) as supervisor:
            client = supervisor.start_client(listen_key_url, id="user-data", **FAST)
            server.drop_connections()  # a reconnect
            assert wait_until(lambda: server.connection_count == 2 and client.get_state() == "connected")
            server.connections[-1].close(1003)  # a restart
            assert events.wait("restart", 1)
            assert supervisor.get_client("user-data").get_state() == "connected"
        assert server.handshake_paths == ["/ws/key-1", "/ws/key-2", "/ws/key-3"]


# ---------------------------------------------------------------------------
# connect_rate


def test_connect_rate_paces_first_connects_and_restarts_measured_at_the_server():
    window = ms(500)
    events = Events()
    with TimedServer() as server:
        with zw.ClientSupervisor(connect_rate=(2, window), **events.callbacks()) as supervisor:
            for n in range(4):
                supervisor.start_client(server.url, id=n, **GIVES_UP)
            server.drop_connections()  # the four children give up at once: four restarts
            assert events.wait("restart", 4, timeout=10)
            assert all(c.get_state() == "connected" for c in supervisor.list_clients())
        times = sorted(server.attempt_times)
    assert len(times) == 8
    # Never more than 2 attempts in any window, seen at the server. The slack
    # covers the time between the client's slot and the server reading the
    # request, which a loaded machine stretches; unpaced, they come within ms.
    spans = [times[i + 2] - times[i] for i in range(len(times) - 2)]
    assert min(spans) >= window * 0.6, spans
    assert times[-1] - times[0] >= 3 * window * 0.9


def test_a_paced_wait_ends_at_once_when_the_supervisor_stops(server):
    supervisor = zw.ClientSupervisor(connect_rate=(1, 60.0))
    supervisor.start_client(server.url, id="first", **FAST)
    outcome: list[BaseException] = []

    def second() -> None:
        try:
            supervisor.start_client(server.url, id="second", **FAST)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=second)
    thread.start()
    assert wait_until(lambda: "second" in supervisor)  # waiting for its slot, 60 s away
    started = time.monotonic()
    supervisor.stop()
    thread.join(5)
    assert not thread.is_alive() and time.monotonic() - started < 2.0
    assert isinstance(outcome[0], zw.ConnectError) and outcome[0].reason == "closed"
    assert server.connection_count == 1


# ---------------------------------------------------------------------------
# send_balanced


def test_send_balanced_prefers_the_child_with_fewer_pending_requests():
    with MockWebSocketServer() as silent, MockWebSocketServer(handler=answer_requests) as answering:
        with zw.ClientSupervisor() as supervisor:
            supervisor.start_client(silent.url, id="silent", **FAST)
            supervisor.start_client(answering.url, id="answering", **FAST)
            first = supervisor.send_balanced(zw.jsonrpc.build_request("public/test", {"n": 1}))
            assert first is not None and silent.wait_for(lambda: len(silent.received) == 1)
            # The silent child now has a request pending: the next ones go elsewhere.
            for n in (2, 3):
                future = supervisor.send_balanced(zw.jsonrpc.build_request("public/test", {"n": n}))
                assert future is not None and future.result(timeout=5)["result"] == {"n": n}
            assert not first.done()  # never answered, never re-sent
            assert len(silent.received) == 1 and len(answering.received) == 2


def test_send_balanced_skips_a_disconnected_child_and_moves_on_only_on_not_connected():
    with MockWebSocketServer() as down, MockWebSocketServer() as up:
        limiter = zw.RateLimiter(1, interval=60.0)
        limiter.consume()  # empty for a minute: a send through it waits
        with zw.ClientSupervisor() as supervisor:
            blocked = supervisor.start_client(up.url, id="blocked", rate_limiter=limiter, **FAST)
            supervisor.start_client(
                down.url, id="down", **{**FAST, "retry_count": None, "retry_delay": 30.0, "max_backoff": 30.0}
            )
            supervisor.start_client(up.url, id="spare", **FAST)
            down.refuse_connections(True)
            down.drop_connections()
            assert wait_until(lambda: supervisor.get_client("down").get_state() == "connecting")

            # "blocked" is first in line; its send waits on the limiter until
            # the client is closed under it: NotConnectedError, nothing went
            # out, so the message moves on ("down" is skipped: not connected).
            closer = threading.Thread(
                target=lambda: wait_until(lambda: limiter.status()["rejected"] >= 1) and blocked.close()
            )
            closer.start()
            assert supervisor.send_balanced("hello") is None
            closer.join(5)
            assert up.wait_for(lambda: up.received == ["hello"])
            assert up.all_connections[1].received == ["hello"]  # through "spare"
            assert down.received == []


def test_a_send_waiting_on_the_rate_limiter_sleeps_until_close_ends_it(server):
    """The wait send_balanced moves on from: asleep (not spinning on the limiter), and close() ends it."""
    limiter = zw.RateLimiter(1, interval=60.0)
    limiter.consume()
    client = zw.connect(server.url, rate_limiter=limiter, **FAST)
    closer = threading.Thread(target=lambda: (time.sleep(ms(300)), client.close()))  # the wait to measure
    cpu = time.process_time()
    started = time.monotonic()
    closer.start()
    with pytest.raises(zw.NotConnectedError):
        client.send_message("never")
    closer.join(5)
    waited = time.monotonic() - started
    assert waited < 5
    # Spinning on acquire() cost about a third of a core for as long as it waited.
    assert time.process_time() - cpu < 0.05 + 0.05 * waited
    assert server.received == []


def test_send_balanced_does_not_move_on_after_any_other_error():
    limiter = zw.RateLimiter(1, interval=60.0)
    limiter.consume()
    with MockWebSocketServer() as first, MockWebSocketServer() as second:
        with zw.ClientSupervisor() as supervisor:
            supervisor.start_client(first.url, id="limited", rate_limiter=limiter, rate_limit_mode="raise", **FAST)
            supervisor.start_client(second.url, id="free", **FAST)
            with pytest.raises(zw.RateLimited):
                supervisor.send_balanced("once")  # "limited" is first in line and refuses: no second try
            with pytest.raises(TypeError):
                supervisor.send_balanced(object())
        assert first.received == [] and second.received == []


def test_send_balanced_with_no_connected_child_is_not_connected_error(server):
    with zw.ClientSupervisor() as supervisor:
        with pytest.raises(zw.NotConnectedError):
            supervisor.send_balanced("nobody")
        supervisor.start_client(
            server.url, id="only", **{**FAST, "retry_count": None, "retry_delay": 30.0, "max_backoff": 30.0}
        )
        server.refuse_connections(True)
        server.drop_connections()
        assert wait_until(lambda: supervisor.get_client("only").get_state() == "connecting")
        with pytest.raises(zw.NotConnectedError):
            supervisor.send_balanced("nobody")
    assert server.received == []


# ---------------------------------------------------------------------------
# chaos


CHAOS_SECONDS = float(os.environ.get("ZW_CHAOS_SECONDS", "3"))


@pytest.mark.chaos
@pytest.mark.timeout(60 + 2 * CHAOS_SECONDS * SCALE)
def test_chaos_children_dropped_at_random_end_connected_with_nothing_sent_twice():
    """Drops, fatal closes, refusals and give-ups at random for ZW_CHAOS_SECONDS (3 s; 60 for the long run)."""
    seed = int(os.environ.get("ZW_CHAOS_SEED", random.randrange(1 << 30)))
    rng = random.Random(seed)
    children = 6
    collector = FeedCollector()
    events = Events()
    sockets_before = open_sockets()
    sent: list[int] = []
    not_sent = 0
    stop_sending = threading.Event()

    with SequencedFeed(interval=ms(5)) as feed:
        supervisor = zw.ClientSupervisor(max_restarts=10_000, max_seconds=1.0, **events.callbacks())
        try:
            for n in range(children):
                supervisor.start_client(feed.url, id=f"c{n}", on_message=collector, **{**FAST, "retry_count": 1})
                supervisor.get_client(f"c{n}").subscribe(["ticker.BTC"], wait=True)

            def send_loop() -> None:
                nonlocal not_sent
                for n in itertools.count():
                    if stop_sending.is_set():
                        return
                    try:
                        supervisor.send_balanced(f"msg-{n}")
                        sent.append(n)
                    except zw.NotConnectedError:
                        not_sent += 1
                    stop_sending.wait(ms(2))

            sender = threading.Thread(target=send_loop, name="chaos-sender")
            sender.start()
            deadline = time.monotonic() + CHAOS_SECONDS * SCALE
            actions = itertools.chain(["fatal"], iter(lambda: rng.choice(["drop", "fatal", "away", "give_up"]), None))
            for action in actions:
                if time.monotonic() >= deadline:
                    break
                conns = feed.connections
                if conns:
                    conn = rng.choice(conns)
                    if action == "drop":
                        conn.drop()
                    elif action == "fatal":
                        conn.close(1003, "chaos", wait=False)
                    elif action == "away":
                        conn.close(1001, "chaos", wait=False)
                    else:  # the reconnect and its retry are refused: the child gives up
                        feed.reject_handshake(503, times=2)
                        conn.drop()
                stop_sending.wait(rng.uniform(ms(20), ms(80)))
            feed.accept_handshakes()

            def settled() -> bool:
                clients = supervisor.list_clients()
                return (
                    len(clients) == children
                    and all(c.get_state() == "connected" for c in clients)
                    and len(feed.connections) == children
                    and all(feed.channels(conn.id) == {"ticker.BTC"} for conn in feed.connections)
                )

            assert wait_until(settled, timeout=10), (
                f"seed {seed}: {[(c.name, c.get_state()) for c in supervisor.list_clients()]}, "
                f"{[(conn.id, feed.channels(conn.id)) for conn in feed.connections]}"
            )
            stop_sending.set()
            sender.join(5)
            received = Counter(m for m in feed.received if isinstance(m, str) and m.startswith("msg-"))
            assert received and max(received.values()) == 1, f"a message was sent twice (seed {seed})"
            assert len(received) <= len(sent)
            assert gaps(collector.snapshot()) == {}, f"seed {seed}"
            assert events.of("restart"), f"no restart happened (seed {seed})"
            assert not [e for e in events.of("error") if getattr(e, "reason", None) == "max_restarts"]
        finally:
            stop_sending.set()
            supervisor.stop()
    assert not [t.name for t in threading.enumerate() if t.name.startswith(("zen-ws-", "mock-ws-"))]
    assert wait_until(lambda: open_sockets() <= sockets_before), "a socket was left open"


# ---------------------------------------------------------------------------
# recordings served back


def write_recording(path, records: list[tuple[float, str, str, object]]) -> None:
    """A recording file with chosen timestamps: (seconds from start, dir, type, data)."""
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with open(path, "w", encoding="utf-8") as file:
        for at, direction, kind, data in records:
            if kind == "binary":
                data = base64.b64encode(data).decode("ascii")  # type: ignore[arg-type]
            stamp = (start + timedelta(seconds=at)).isoformat(timespec="microseconds")
            file.write(json.dumps({"ts": stamp, "dir": direction, "type": kind, "data": data}) + "\n")


def test_a_recorded_session_is_served_back_in_order(tmp_path):
    path = str(tmp_path / "session.jsonl")
    with MockWebSocketServer(echo=True) as live:
        with zw.connect(live.url, record_to=path, **FAST) as client:
            live.inject_message({"seq": 1})
            live.inject_message(b"\x00\x01binary")
            client.send_message("echo me")
            live.inject_message({"seq": 2})
            original = [client.recv(timeout=5) for _ in range(4)]
    assert original[0] == '{"seq":1}' and original[1] == b"\x00\x01binary"

    with MockWebSocketServer(replay=path) as replay, zw.connect(replay.url, **FAST) as client:
        served = [client.recv(timeout=5) for _ in range(4)]
        with pytest.raises(TimeoutError):
            client.recv(timeout=ms(100))  # the client's own frames and the close are not played
    assert served == original


def test_realtime_replay_keeps_the_recorded_gaps_divided_by_speed(tmp_path):
    path = str(tmp_path / "gaps.jsonl")
    gap = ms(400)
    write_recording(
        path,
        [
            (0.0, "in", "text", "a"),
            (gap / 2, "out", "text", "client says"),
            (gap, "in", "binary", b"b"),
        ],
    )

    def arrival_gap(**replay_options) -> float:
        with MockWebSocketServer(replay=path, **replay_options) as server, zw.connect(server.url, **FAST) as client:
            assert client.recv(timeout=5) == "a"
            started = time.monotonic()
            assert client.recv(timeout=5) == b"b"
            return time.monotonic() - started

    assert arrival_gap(realtime=True, speed=2.0) >= gap / 2 - ms(30)
    assert arrival_gap(realtime=False) < gap / 2


def test_serve_recording_can_replay_the_servers_close(tmp_path):
    path = str(tmp_path / "closed.jsonl")
    write_recording(path, [(0.0, "in", "text", "last words"), (0.01, "in", "close", {"code": 1011, "reason": "oops"})])
    reasons: list[str] = []
    with MockWebSocketServer() as server:
        assert server.serve_recording(path, closes=True) == 2
        with zw.connect(server.url, on_disconnect=lambda c, reason: reasons.append(reason), **FAST) as client:
            assert client.recv(timeout=5) == "last words"
            assert wait_until(lambda: reasons)
            assert reasons[0] == "remote_close:1011"
        with pytest.raises(ValueError):
            server.serve_recording(path, speed=0)
