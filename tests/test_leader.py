"""request() reads its own answer when nobody else is reading (leader/follower, connection.Lead).

Observable: ``message.received`` telemetry runs in the thread that read the
message, so a test can see who read what. Every test also checks that
notifications arriving meanwhile reach the queue complete and in order,
whoever read them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import zen_websocket as zw
from tests.timeunit import ms, wait_until
from zen_websocket import telemetry
from zen_websocket.testing import MockWebSocketServer

BASE = {"heartbeat_config": None, "retry_delay": ms(20), "max_backoff": ms(100), "close_timeout": ms(500)}


class NumberedFeed:
    """A server side that numbers every notification it sends, whichever thread sends it.

    JSON-RPC requests are answered; ``params.before`` notifications are sent
    first (so the answer comes after them on the wire). ``feed/never`` is not
    answered, ``feed/close`` closes the connection, ``feed/stream`` starts a
    background sender on that connection, ``feed/stop`` stops every sender.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seq = 0
        self.stop = threading.Event()
        self.streamers: list[threading.Thread] = []

    def notify(self, conn: object) -> None:
        with self.lock:  # numbered and sent in one step: the wire order is the number order
            self.seq += 1
            conn.send(json.dumps({"jsonrpc": "2.0", "method": "subscription", "params": {"seq": self.seq}}))

    def stream(self, conn: object, interval: float) -> None:
        while not self.stop.wait(interval):
            try:
                self.notify(conn)
            except Exception:  # the connection closed
                return

    def handler(self, conn: object, message: str) -> str | None:
        request = json.loads(message)
        method, params = request.get("method"), request.get("params") or {}
        for _ in range(params.get("before", 0)):
            self.notify(conn)
        if method == "feed/never":
            return None
        if method == "feed/close":
            conn.close(1011, "bye", wait=False)
            return None
        if method == "feed/stop":
            self.stop.set()
        if method == "feed/stream":
            thread = threading.Thread(target=self.stream, args=(conn, params["interval"]), daemon=True)
            self.streamers.append(thread)
            thread.start()
        with self.lock:  # after the notifications already numbered
            return json.dumps({"jsonrpc": "2.0", "id": request["id"], "result": params.get("echo", "ok")})


@pytest.fixture
def feed():
    numbered = NumberedFeed()
    with MockWebSocketServer(handler=numbered.handler) as server:
        numbered.server = server
        yield numbered
        numbered.stop.set()
    for thread in numbered.streamers:
        thread.join(2)


@pytest.fixture
def readers():
    """Which thread read each message: (thread name, size) in reading order."""
    seen: list[str] = []
    telemetry.attach(
        "test-leader-readers", telemetry.MESSAGE_RECEIVED, lambda *_: seen.append(threading.current_thread().name)
    )
    yield seen
    telemetry.detach("test-leader-readers")


def drain_numbers(client: zw.Client, expected: int, timeout: float = 3.0) -> list[int]:
    numbers: list[int] = []
    deadline = time.monotonic() + timeout
    while len(numbers) < expected and time.monotonic() < deadline:
        try:
            message = json.loads(client.recv(timeout=max(0.01, deadline - time.monotonic())))
        except TimeoutError:
            break
        numbers.append(message["params"]["seq"])
    return numbers


def test_request_reads_its_own_answer_in_the_calling_thread(feed, readers):
    with zw.connect(feed.server.url, **BASE) as client:
        readers.clear()
        for i in range(20):
            assert client.request("feed/echo", {"echo": i}) == i
        # Read here unless the receive thread happened to be reading at that
        # moment (just after connecting, or looking at its socket again).
        assert readers.count(threading.current_thread().name) >= 15, readers
        assert client.get_state_metrics()["pending_requests"] == 0


def test_notifications_read_by_a_request_reach_the_queue_in_order(feed, readers):
    with zw.connect(feed.server.url, **BASE) as client:
        readers.clear()
        for _ in range(10):
            client.request("feed/echo", {"before": 30})
        assert readers.count(threading.current_thread().name) >= 10
        assert drain_numbers(client, 300) == list(range(1, 301))


def test_a_stream_read_by_both_threads_keeps_its_order(feed, readers):
    """Notifications stream all the time; requests come and go: no gap, no reordering."""
    with zw.connect(feed.server.url, **BASE) as client:
        client.request("feed/stream", {"interval": 0.0005})
        for i in range(200):
            client.request("feed/echo", {"before": 2})
            if i % 20 == 0:  # a pause without a request: the receive thread reads the stream
                target = feed.seq + 5
                assert wait_until(lambda target=target: feed.seq >= target)
        feed.stop.set()
        total = feed.seq
        numbers = drain_numbers(client, total)
        assert numbers == list(range(1, total + 1))
        names = set(readers)
        assert threading.current_thread().name in names
        assert any(name.startswith("zen-ws-recv-") for name in names)


def test_concurrent_requests_from_many_threads(feed):
    """One thread leads at a time; the others wait and get their own answers, whoever reads them."""
    errors: list[BaseException] = []
    with zw.connect(feed.server.url, **BASE) as client:
        client.request("feed/stream", {"interval": 0.001})

        def worker(k: int) -> None:
            try:
                for i in range(100):
                    value = f"{k}-{i}"
                    assert client.request("feed/echo", {"echo": value, "before": i % 3}) == value
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        feed.stop.set()
        assert not errors, errors[:3]
        assert client.get_state_metrics()["pending_requests"] == 0
        total = feed.seq
        assert drain_numbers(client, total) == list(range(1, total + 1))


def test_close_from_another_thread_ends_a_waiting_leader(feed, readers):
    with zw.connect(feed.server.url, **BASE) as client:
        closer = threading.Timer(ms(50), client.close)
        started = time.monotonic()
        closer.start()
        with pytest.raises(zw.ConnectionLost):
            client.request("feed/never", timeout=10)
        assert time.monotonic() - started < 2
        closer.join()
    assert client.get_state() == "disconnected"


def test_after_a_leader_times_out_the_receive_thread_reads_again(feed, readers):
    with zw.connect(feed.server.url, **BASE) as client:
        with pytest.raises(zw.RequestTimeout):
            client.request("feed/never", timeout=ms(50))
        readers.clear()
        feed.notify(feed.server.connections[0])
        # Nobody is in recv(): the receive thread reads it and queues it.
        assert wait_until(lambda: readers != [])
        assert readers[0].startswith("zen-ws-recv-")
        assert drain_numbers(client, 1) == [1]


def test_recv_reads_for_itself_when_the_queue_is_empty(feed, readers):
    with zw.connect(feed.server.url, **BASE) as client:
        client.request("feed/stream", {"interval": 0.0005})
        numbers = drain_numbers(client, 300)
        feed.stop.set()
        assert numbers == list(range(1, 301))
        assert threading.current_thread().name in readers  # read by recv() itself, no hand-off
        total = feed.seq
        assert drain_numbers(client, total - 300) == list(range(301, total + 1))


def test_close_from_another_thread_ends_a_reading_recv(feed):
    with zw.connect(feed.server.url, **BASE) as client:
        closer = threading.Timer(ms(50), client.close)
        started = time.monotonic()
        closer.start()
        with pytest.raises(zw.ConnectionClosed):
            client.recv(timeout=10)
        assert time.monotonic() - started < 2
        closer.join()


def test_recv_timeout_while_reading_for_itself(feed):
    with zw.connect(feed.server.url, **BASE) as client:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            client.recv(timeout=ms(50))
        assert ms(50) <= time.monotonic() - started < 2
        feed.notify(feed.server.connections[0])
        assert drain_numbers(client, 1) == [1]


def test_message_callbacks_stay_on_the_receive_thread(feed):
    threads: list[str] = []
    options = dict(BASE, on_message=lambda client, message: threads.append(threading.current_thread().name))
    with zw.connect(feed.server.url, **options) as client:
        for _ in range(5):
            client.request("feed/echo", {"before": 3})
        assert wait_until(lambda: len(threads) >= 15)
    assert threads and all(name.startswith("zen-ws-recv-") for name in threads)


def test_a_bounded_queue_is_filled_by_the_receive_thread_only(feed, readers):
    with zw.connect(feed.server.url, max_queue=1000, **BASE) as client:
        readers.clear()
        client.request("feed/echo", {"before": 5})
        assert all(name.startswith("zen-ws-recv-") for name in readers)
        assert drain_numbers(client, 5) == [1, 2, 3, 4, 5]


def test_peer_close_read_by_a_leader_fails_the_request_and_reconnects(feed):
    with zw.connect(feed.server.url, **BASE) as client:
        with pytest.raises(zw.ConnectionLost):
            client.request("feed/close", timeout=5)
        assert wait_until(lambda: client.get_state() == "connected" and client.get_state_metrics()["reconnects"] == 1)
        assert client.request("feed/echo", {"echo": "again"}) == "again"


# Ctrl-C children (run in a subprocess: SIGINT goes to the main thread). They
# share this start: a client, a thread sending SIGINT at random moments, and a
# handler that raises only when the signal lands in library code (one landing
# in the child's own lines would lose what it holds there, which is no fault
# of the library). Then each runs its loop and prints a JSON report.
CTRL_C_START = textwrap.dedent(
    """
    import json, os, random, signal, sys, threading, time
    import zen_websocket as zw

    url, seconds = sys.argv[1], float(sys.argv[2])
    client = zw.connect(url, heartbeat_config=None, close_timeout=0.5)
    stop = threading.Event()

    def interrupter():
        rng = random.Random(7)
        while not stop.wait(rng.uniform(0.0005, 0.004)):
            os.kill(os.getpid(), signal.SIGINT)

    library = os.path.dirname(zw.__file__)

    def on_sigint(signum, frame):
        if frame is not None and frame.f_code.co_filename.startswith(library):
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    interrupts = 0
    """
)

CTRL_C_REQUEST_LOOP = textwrap.dedent(
    """
    threading.Thread(target=interrupter, daemon=True).start()
    answered = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            client.request("feed/echo", {"before": 3}, timeout=5)
            answered += 1
        except KeyboardInterrupt:
            interrupts += 1
    stop.set()
    time.sleep(0.05)  # a SIGINT sent just before stop is delivered now
    # Interrupts are over: a last request, then every notification the server numbered.
    while True:
        try:
            last = client.request("feed/echo", {"echo": "last"}, timeout=5)
            break
        except KeyboardInterrupt:
            interrupts += 1
    numbers = []
    while True:
        try:
            message = json.loads(client.recv(timeout=0.5))
        except TimeoutError:
            break
        if message.get("method") == "subscription":
            numbers.append(message["params"]["seq"])
    print(json.dumps({"interrupts": interrupts, "answered": answered, "last": last,
                      "numbers": numbers, "state": client.get_state()}))
    client.close()
    """
)

CTRL_C_RECV_LOOP = textwrap.dedent(
    """
    client.request("feed/stream", {"interval": 0.0002})
    threading.Thread(target=interrupter, daemon=True).start()
    numbers = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            numbers.append(json.loads(client.recv(timeout=1))["params"]["seq"])
        except KeyboardInterrupt:
            interrupts += 1
    stop.set()
    time.sleep(0.05)
    while True:
        try:
            client.request("feed/stop", timeout=5)
            break
        except KeyboardInterrupt:
            interrupts += 1
    while True:
        try:
            message = json.loads(client.recv(timeout=0.3))
        except TimeoutError:
            break
        except KeyboardInterrupt:
            interrupts += 1
            continue
        numbers.append(message["params"]["seq"])
    print(json.dumps({"interrupts": interrupts, "numbers": numbers, "state": client.get_state(),
                      "reconnects": client.get_state_metrics()["reconnects"]}))
    os._exit(0)
    """
)


def run_ctrl_c_child(loop: str, url: str, seconds: float) -> dict:
    """Run CTRL_C_START + ``loop`` in a subprocess against ``url``; its JSON report."""
    result = subprocess.run(
        [sys.executable, "-c", CTRL_C_START + loop, url, str(seconds)],
        capture_output=True,
        text=True,
        timeout=45,
        env=dict(os.environ, PYTHONPATH=os.getcwd()),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.timeout(60)
def test_ctrl_c_during_requests_loses_no_message(feed):
    """SIGINT at random moments of request() in the main thread: raised, and the stream stays whole."""
    report = run_ctrl_c_child(CTRL_C_REQUEST_LOOP, feed.server.url, 2.0)
    assert report["interrupts"] > 20 and report["answered"] > 20, report
    assert report["last"] == "last" and report["state"] == "connected"
    numbers = report["numbers"]
    assert numbers == list(range(1, feed.seq + 1)), (len(numbers), feed.seq)
    assert feed.server.connection_count == 1  # never reconnected: the stream was never corrupted


# -- the parked receive thread ------------------------------------------------
#
# After a request, when nothing is expected, the receive thread is left
# parked (Lead.release) and looks at the socket again after _PARKED_FOR. With
# _PARKED_FOR stretched to a minute, only an explicit unpark can wake it, so
# each test below hangs (and fails on its bound) if its unpark is missing.


@pytest.fixture
def parked_for_long(monkeypatch):
    from zen_websocket import connection

    monkeypatch.setattr(connection, "_PARKED_FOR", 60.0)


def back_to_back(client: zw.Client, n: int = 20) -> None:
    for i in range(n):
        assert client.request("feed/echo", {"echo": i}) == i


def test_recv_wakes_a_parked_receive_thread(feed, parked_for_long):
    with zw.connect(feed.server.url, **BASE) as client:
        back_to_back(client)
        feed.notify(feed.server.connections[0])  # nobody reads the socket now
        assert drain_numbers(client, 1, timeout=5) == [1]


def test_a_consumer_blocked_in_recv_keeps_the_receive_thread_awake(feed, parked_for_long):
    with zw.connect(feed.server.url, **BASE) as client:
        got: list[int] = []
        consumer = threading.Thread(target=lambda: got.extend(drain_numbers(client, 3, timeout=5)))
        consumer.start()
        assert wait_until(lambda: client._recv_lock.locked())
        back_to_back(client)
        for _ in range(3):
            feed.notify(feed.server.connections[0])
        consumer.join(10)
        assert got == [1, 2, 3]


def test_request_async_after_requests_gets_its_answer(feed, parked_for_long):
    with zw.connect(feed.server.url, **BASE) as client:
        back_to_back(client)
        assert client.request_async("feed/echo", {"echo": "async"}).result(timeout=5) == "async"


def test_heartbeat_replies_are_read_after_requests(feed, parked_for_long):
    options = dict(BASE, heartbeat_config={"type": "ping", "interval": ms(30), "timeout": ms(300)})
    with zw.connect(feed.server.url, **options) as client:
        back_to_back(client)
        health = client.get_heartbeat_health()
        # Two more replies after the requests: each was read although nobody else reads.
        before = health["last_heartbeat_at"]
        assert wait_until(lambda: client.get_heartbeat_health()["last_heartbeat_at"] != before, timeout=2)
        before = client.get_heartbeat_health()["last_heartbeat_at"]
        assert wait_until(lambda: client.get_heartbeat_health()["last_heartbeat_at"] != before, timeout=2)
        assert client.get_heartbeat_health()["total_failures"] == 0
        assert client.get_state() == "connected"


def test_close_after_requests_is_prompt(feed, parked_for_long):
    client = zw.connect(feed.server.url, **BASE)
    back_to_back(client)
    started = time.monotonic()
    client.close()
    assert time.monotonic() - started < 2
    assert feed.server.wait_for(lambda: not feed.server.connections, timeout=2)


def test_unsolicited_data_is_read_within_the_park_time(feed, readers, monkeypatch):
    from zen_websocket import connection

    monkeypatch.setattr(connection, "_PARKED_FOR", ms(20))
    with zw.connect(feed.server.url, **BASE) as client:
        back_to_back(client)
        readers.clear()
        feed.notify(feed.server.connections[0])
        # Read by the receive thread on its own (nobody is in recv()): queued.
        assert wait_until(lambda: readers == [readers[0]] if readers else False, timeout=2)
        assert readers[0].startswith("zen-ws-recv-")
        assert drain_numbers(client, 1) == [1]


@pytest.mark.timeout(60)
def test_ctrl_c_during_recv_loses_no_message(feed):
    """SIGINT at random moments of recv() reading for itself: raised, and no message lost or reordered."""
    report = run_ctrl_c_child(CTRL_C_RECV_LOOP, feed.server.url, 1.5)
    numbers, interrupts = report["numbers"], report["interrupts"]
    assert interrupts > 20 and len(numbers) > 1000, (interrupts, len(numbers))
    assert numbers[0] == 1 and numbers == list(range(1, len(numbers) + 1)), "a message was lost"
    assert numbers[-1] == feed.seq
    assert report["state"] == "connected" and report["reconnects"] == 0
    assert feed.server.connection_count == 1
