"""Side-by-side benchmark: zen_websocket vs websocket-client vs websockets (sync).

Everything runs on loopback against ONE ``scripts/bench_server.py``
subprocess (pre-built frames, so the server is never the bottleneck):

(a) receive throughput: zen ``recv()`` loop, zen ``message`` callback, raw
    websocket-client ``recv()`` (default, which checks UTF-8 in pure Python,
    and ``skip_utf8_validation=True``), ``websockets.sync`` ``recv()``;
(b) echo round trip p50/p99, zen ``send_message`` + ``recv`` vs raw send + recv;
(c) CPU seconds per 100,000 messages received (whole client process);
(d) RSS and threads per idle connection (each client kind in a fresh child
    process, so one kind's freed memory cannot hide the other's cost);
(e) ``client.request()`` round trip vs raw echo, and vs raw websocket-client
    (``skip_utf8_validation=True``) doing the same JSON-RPC round trip by
    hand (build the request with the next id, ``json.dumps``, send, recv,
    ``json.loads``, check the id, take ``"result"``): p50 and p99;
(f) JSON-RPC notifications received while a request is in flight (the
    router looks at every message) vs plain ``recv()``;
(g) ``RateLimiter.consume()`` cost per call;
(h) a compressed stream: ~1 KB JSON messages from a ``websockets`` server
    with permessage-deflate, in its own process, to zen_websocket and to
    ``websockets.sync``, both with compression on (medians of interleaved runs);
(i) scale: one ``ClientSupervisor`` holding 1,000 children (the server in
    another process), a ping every second each: connect time, KiB and
    threads per child, idle CPU, heartbeat lateness p99;
(j) large messages: ``recv()`` throughput at 2 KB and 64 KB, zen
    ``recv()`` loop vs raw websocket-client ``recv()``
    (``skip_utf8_validation=True``) vs ``websockets.sync`` ``recv()``,
    interleaved like (a), with CPU per 100,000 messages and per GB.

Usage::

    .venv/bin/python scripts/bench.py            # full run, 3-4 minutes on 2 cores
    .venv/bin/python scripts/bench.py --quick    # 10x fewer messages (smoke test)
    .venv/bin/python scripts/bench.py --json results.json
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import threading
import time
import timeit
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import websocket  # websocket-client
from websockets.sync.client import connect as websockets_connect

import zen_websocket as zw

HERE = Path(__file__).resolve().parent
SERVER = HERE / "bench_server.py"
REPEATS = 3
SIZE = 200  # bytes per message, (a) and (f)
# (j): message size -> (burst, repeats) of a full run. The server caches one
# burst whole (64 KB x 2,000 is 131 MB) and sends it ``repeats`` times per run,
# so a run lasts about 0.3-1 s (fastest to slowest client when this was
# written) without holding more in memory.
LARGE_BURSTS = {2 * 1024: (20_000, 2), 64 * 1024: (2_000, 5)}
TITLE = "zen_websocket benchmark"
HEADER = f"{'client':<58}{'msg/s':>12}{'CPU s/100k':>12}"


@dataclass
class Throughput:
    """Best of ``REPEATS`` bursts."""

    label: str
    messages: int
    rate: float  # messages per second, best run
    cpu_per_100k: float  # process CPU seconds per 100,000 messages, best run
    runs: list[float]  # every run's rate
    size: int = SIZE  # bytes per message
    cpu_per_gb: float = field(init=False)  # process CPU seconds per 10**9 payload bytes, best run

    def __post_init__(self) -> None:
        self.cpu_per_gb = self.cpu_per_100k / (100_000 * self.size) * 1e9


@dataclass
class Latency:
    label: str
    samples: int
    p50_us: float
    p99_us: float


# ---------------------------------------------------------------------------
# the server subprocess


def start_server() -> tuple[subprocess.Popen[str], str]:
    """Start bench_server.py on a free loopback port; return it and its URL."""
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.isdigit():
        proc.kill()
        proc.wait()
        raise RuntimeError(f"bench server did not print its port (got {line!r})")
    return proc, f"ws://127.0.0.1:{line}"


def stop_server(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    if proc.stdout is not None:
        proc.stdout.close()


# ---------------------------------------------------------------------------
# helpers


def percentile(sorted_samples: list[float], p: float) -> float:
    """Nearest-rank percentile of already sorted samples."""
    rank = max(1, -(-len(sorted_samples) * p // 100))  # ceil without float error
    return sorted_samples[int(rank) - 1]


def timed_loop(recv: Callable[[], Any], n: int) -> tuple[int, float, float]:
    """Read a burst of ``n`` messages then ``done``; the clock starts at the first message.

    Starting at the first message leaves the server's start-up of the burst
    out; the client's per-message work is all that is timed.
    """
    first = recv()
    assert first != "done"
    t0 = time.perf_counter()
    c0 = time.process_time()
    count = 0
    while recv() != "done":
        count += 1
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    assert count == n - 1, f"expected {n - 1} messages after the first, got {count}"
    return count, elapsed, cpu


def size_name(size: int) -> str:
    """``200 B``, ``2 KB``, ``64 KB``: how the report names a message size."""
    return f"{size // 1024} KB" if size >= 1024 and size % 1024 == 0 else f"{size} B"


def progress(text: str) -> None:
    """Progress goes to stderr, so stdout is just the report."""
    print(f"  {text}", file=sys.stderr, flush=True)


def zen_client(url: str, **options: Any) -> zw.Client:
    # No heartbeats: a ping in the middle of a measurement is noise.
    return zw.connect(url, heartbeat_config=None, name="bench", **options)


def raw_client(url: str, skip_utf8: bool) -> websocket.WebSocket:
    if skip_utf8:
        return websocket.create_connection(url, skip_utf8_validation=True)
    return websocket.create_connection(url)


def websockets_client(url: str) -> Any:
    # proxy=None: never route loopback through an environment proxy.
    # Entered as a context manager, as websockets 14+ wants (closed by close()).
    return websockets_connect(url, max_size=None, compression=None, proxy=None).__enter__()


# ---------------------------------------------------------------------------
# (a) + (c) + (f) receive throughput
#
# Every client is opened first, then the rounds are interleaved (run 1 of
# each client, run 2 of each...), so a slow moment of the machine cannot
# favour one client; the best run of each is reported.


class Receiver:
    """One client under test: ``run()`` times one burst of ``n`` messages.

    With ``repeats``, the server sends its cached burst of ``n // repeats``
    messages that many times over before ``done``.
    """

    def __init__(self, key: str, label: str, n: int, size: int = SIZE, repeats: int = 1) -> None:
        if n % repeats:
            raise ValueError(f"{n} messages are not {repeats} equal bursts")
        self.key, self.label, self.n, self.size, self.repeats = key, label, n, size, repeats
        self.rates: list[float] = []
        self.cpus: list[float] = []

    def command(self, kind: str = "blast") -> str:
        """The bench server's command for one run."""
        return f"{kind} {self.n // self.repeats} {self.size} {self.repeats}"

    def run(self) -> tuple[int, float, float]:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def measure(self) -> None:
        gc.collect()
        count, elapsed, cpu = self.run()
        self.rates.append(count / elapsed)
        self.cpus.append(cpu / count * 100_000)

    def result(self) -> Throughput:
        return Throughput(self.label, self.n, max(self.rates), min(self.cpus), self.rates, self.size)


class ZenRecv(Receiver):
    def __init__(
        self,
        key: str,
        label: str,
        n: int,
        url: str,
        kind: str = "blast",
        in_flight: bool = False,
        size: int = SIZE,
        repeats: int = 1,
    ) -> None:
        super().__init__(key, label, n, size, repeats)
        self.kind = kind
        self.client = zen_client(url)
        self.pending = None
        if in_flight:
            # The server never answers bench/never: the router must inspect every message.
            self.pending = self.client.request_async("bench/never", timeout=3600)
            assert self.client.get_state_metrics()["pending_requests"] == 1

    def run(self) -> tuple[int, float, float]:
        self.client.send_message(self.command(self.kind))
        result = timed_loop(self.client.recv, self.n)
        if self.pending is not None:
            assert not self.pending.done() and self.client.get_state_metrics()["pending_requests"] == 1
        return result

    def close(self) -> None:
        self.client.close()


class ZenCallback(Receiver):
    def __init__(self, key: str, label: str, n: int, url: str) -> None:
        super().__init__(key, label, n)
        self.done = threading.Event()
        self.count = 0
        self.t0 = self.c0 = self.t1 = self.c1 = 0.0
        self.client = zen_client(url, on_message=self.on_message)

    def on_message(self, _client: zw.Client, data: Any) -> None:
        if data == "done":
            self.t1, self.c1 = time.perf_counter(), time.process_time()
            self.done.set()
            return
        if self.count == 0:  # the clock starts at the first message, as in timed_loop
            self.t0, self.c0 = time.perf_counter(), time.process_time()
        self.count += 1

    def run(self) -> tuple[int, float, float]:
        self.count = 0
        self.done.clear()
        self.client.send_message(self.command())
        if not self.done.wait(120):
            raise RuntimeError("callback burst did not finish")
        assert self.count == self.n, f"expected {self.n} messages, got {self.count}"
        return self.n - 1, self.t1 - self.t0, self.c1 - self.c0

    def close(self) -> None:
        self.client.close()


class RawRecv(Receiver):
    def __init__(
        self, key: str, label: str, n: int, url: str, skip_utf8: bool, size: int = SIZE, repeats: int = 1
    ) -> None:
        super().__init__(key, label, n, size, repeats)
        self.ws = raw_client(url, skip_utf8)

    def run(self) -> tuple[int, float, float]:
        self.ws.send(self.command())
        return timed_loop(self.ws.recv, self.n)

    def close(self) -> None:
        self.ws.close()


class WebsocketsRecv(Receiver):
    def __init__(self, key: str, label: str, n: int, url: str, size: int = SIZE, repeats: int = 1) -> None:
        super().__init__(key, label, n, size, repeats)
        self.ws = websockets_client(url)

    def run(self) -> tuple[int, float, float]:
        self.ws.send(self.command())
        return timed_loop(self.ws.recv, self.n)

    def close(self) -> None:
        self.ws.close()


def bench_receive(url: str, n: int) -> dict[str, Throughput]:
    makers: list[Callable[[], Receiver]] = [
        lambda: ZenRecv("zen_recv", "zen_websocket  recv() loop", n, url),
        lambda: ZenCallback("zen_callback", 'zen_websocket  on("message") callback', n, url),
        lambda: RawRecv("raw_default", "websocket-client recv() (default: UTF-8 checked in Python)", n, url, False),
        lambda: RawRecv("raw_skip", "websocket-client recv() (skip_utf8_validation=True)", n, url, True),
        lambda: WebsocketsRecv("websockets", "websockets.sync recv()", n, url),
        lambda: ZenRecv(
            "notify_plain", "zen_websocket  recv(), notifications, nothing in flight", n, url, kind="notify"
        ),
        lambda: ZenRecv("routed", "zen_websocket  recv(), notifications, 1 request in flight", n, url, "notify", True),
    ]
    return interleave(makers, "receive")


def interleave(makers: list[Callable[[], Receiver]], what: str) -> dict[str, Throughput]:
    """Open every receiver, then run ``REPEATS`` rounds of one burst each, in turn."""
    receivers: list[Receiver] = []
    try:
        for make in makers:
            receivers.append(make())
        for round_no in range(REPEATS):
            for r in receivers:
                started = time.monotonic()
                r.measure()
                progress(f"{what} round {round_no + 1}/{REPEATS}: {r.key} {time.monotonic() - started:.1f}s")
    finally:
        for r in receivers:
            r.close()
    return {r.key: r.result() for r in receivers}


# ---------------------------------------------------------------------------
# (j) large messages
#
# One size at a time, so the server's one cached burst serves every round of
# that size (the 64 KB burst is hundreds of MB: rebuilding it per run would
# only waste time).


def bench_large(url: str, size: int, burst: int, repeats: int) -> dict[str, Throughput]:
    kib = size_name(size)
    n = burst * repeats
    raw_label = f"websocket-client recv() (skip_utf8_validation=True), {kib}"
    makers: list[Callable[[], Receiver]] = [
        lambda: ZenRecv("zen_recv", f"zen_websocket  recv() loop, {kib}", n, url, size=size, repeats=repeats),
        lambda: RawRecv("raw_skip", raw_label, n, url, True, size, repeats),
        lambda: WebsocketsRecv("websockets", f"websockets.sync recv(), {kib}", n, url, size, repeats),
    ]
    return interleave(makers, f"receive {kib}")


# ---------------------------------------------------------------------------
# (b) + (e) round trips, interleaved in blocks for the same reason


# About the size of the request in (e), so echo and request move similar bytes.
ECHO_PAYLOAD = '{"op":"echo","pad":"' + "x" * (SIZE - 22) + '"}'
REQUEST_PAD = "x" * (SIZE - 70)
BLOCKS = 10


def bench_round_trips(url: str, n: int) -> dict[str, Latency]:
    zen = zen_client(url)
    raw_default = raw_client(url, skip_utf8=False)
    raw_skip = raw_client(url, skip_utf8=True)
    params = {"pad": REQUEST_PAD}

    def zen_echo() -> None:
        zen.send_message(ECHO_PAYLOAD)
        zen.recv()

    def raw_default_echo() -> None:
        raw_default.send(ECHO_PAYLOAD)
        raw_default.recv()

    def raw_skip_echo() -> None:
        raw_skip.send(ECHO_PAYLOAD)
        raw_skip.recv()

    def zen_request() -> None:
        zen.request("bench/echo", params)

    raw_ids = itertools.count(1)

    def raw_jsonrpc() -> Any:
        # What request() does, by hand: the same compact bytes on the wire.
        request_id = next(raw_ids)
        request = {"jsonrpc": "2.0", "id": request_id, "method": "bench/echo", "params": params}
        raw_skip.send(json.dumps(request, separators=(",", ":")))
        response = json.loads(raw_skip.recv())
        if response["id"] != request_id:
            raise RuntimeError(f"raw JSON-RPC: expected id {request_id}, got {response['id']!r}")
        return response["result"]

    cases: list[tuple[str, str, Callable[[], Any]]] = [
        ("zen_echo", "zen_websocket  send_message() + recv()", zen_echo),
        ("raw_echo_default", "websocket-client send() + recv() (default)", raw_default_echo),
        ("raw_echo_skip", "websocket-client send() + recv() (skip_utf8_validation=True)", raw_skip_echo),
        ("zen_request", 'zen_websocket  request("bench/echo")', zen_request),
        ("raw_jsonrpc", "websocket-client same JSON-RPC by hand (skip-utf8)", raw_jsonrpc),
    ]
    samples: dict[str, list[float]] = {key: [] for key, _, _ in cases}
    clock = time.perf_counter
    try:
        for _, _, round_trip in cases:
            for _ in range(min(500, n)):  # warm-up
                round_trip()
        gc.collect()
        per_block = max(1, n // BLOCKS)
        for _ in range(BLOCKS):
            for key, _, round_trip in cases:
                out = samples[key]
                for _ in range(per_block):
                    t0 = clock()
                    round_trip()
                    out.append(clock() - t0)
    finally:
        zen.close()
        raw_default.close()
        raw_skip.close()
    results = {}
    for key, label, _ in cases:
        s = sorted(samples[key])
        results[key] = Latency(label, len(s), percentile(s, 50) * 1e6, percentile(s, 99) * 1e6)
    return results


# ---------------------------------------------------------------------------
# (g) rate limiter


def bench_consume(calls: int) -> float:
    """Microseconds per uncontended ``RateLimiter.consume()`` (best of 3)."""
    limiter = zw.RateLimiter(rate=1e12, burst=1e12)
    best = min(timeit.repeat(limiter.consume, number=calls, repeat=REPEATS))
    assert limiter.tokens > 0
    return best / calls * 1e6


# ---------------------------------------------------------------------------
# (h) a compressed stream
#
# The server is websockets itself (permessage-deflate with its defaults:
# 12-bit windows, context takeover), in its own process. For "stream N" it
# compresses the whole burst through its connection's Sans-I/O protocol
# first and then writes it at once, so the clients' clocks, which start at
# the first message, time only their own inflating and parsing.

DEFLATE_ROUNDS = 5


def _book_side(rng: random.Random, mid: float, side: int) -> list[list[float]]:
    return [[round(mid + side * (i + rng.random()) * 0.5, 1), round(rng.uniform(0.001, 25), 4)] for i in range(18)]


def deflate_messages(n: int) -> list[str]:
    """``n`` order-book updates of about 1 KB, varied like real ones (so they do not compress to nothing)."""
    rng = random.Random(7)
    messages = []
    mid = 97_000.0
    for seq in range(n):
        mid += rng.uniform(-5, 5)
        data: dict[str, Any] = {
            "type": "change",
            "timestamp": 1_700_000_000_000 + seq * 7,
            "change_id": 80_000_000 + seq,
        }
        data |= {"instrument_name": "BTC-PERPETUAL", "bids": _book_side(rng, mid, -1), "asks": _book_side(rng, mid, 1)}
        body = {"channel": "book.BTC-PERPETUAL.raw", "data": data}
        messages.append(json.dumps({"jsonrpc": "2.0", "method": "subscription", "params": body}))
    return messages


def deflate_server() -> None:
    """The websockets server of (h); prints its port, serves until killed."""
    from websockets.sync.server import serve

    bursts: dict[int, list[str]] = {}

    def handler(ws: Any) -> None:
        for command in ws:
            if not isinstance(command, str) or not command.startswith("stream "):
                ws.send(command)
                continue
            n = int(command.split()[1])
            if n not in bursts:
                bursts.clear()
                bursts[n] = deflate_messages(n)
            # protocol_mutex is what websockets holds around its own sends.
            with ws.protocol_mutex:
                for message in bursts[n]:
                    ws.protocol.send_text(message.encode())
                ws.protocol.send_text(b"done")
                ws.socket.sendall(b"".join(ws.protocol.data_to_send()))

    with serve(handler, "127.0.0.1", 0, compression="deflate", max_size=None, ping_interval=None) as server:
        print(server.socket.getsockname()[1], flush=True)
        server.serve_forever()


class ZenDeflateRecv(Receiver):
    def __init__(self, key: str, label: str, n: int, url: str) -> None:
        super().__init__(key, label, n)
        self.client = zen_client(url)
        # The codec's negotiated extensions (no public accessor): the row means nothing uncompressed.
        extensions = self.client._driver.link.protocol.extensions
        assert extensions, "zen_websocket did not negotiate permessage-deflate"
        self.extension = extensions[0]

    def run(self) -> tuple[int, float, float]:
        self.client.send_message(f"stream {self.n}")
        return timed_loop(self.client.recv, self.n)

    def close(self) -> None:
        self.client.close()


class ZenDeflateCallback(ZenCallback):
    """The callback row of (a) on the compressed stream: no hand-off to a consumer thread."""

    def __init__(self, key: str, label: str, n: int, url: str) -> None:
        super().__init__(key, label, n, url)
        assert self.client._driver.link.protocol.extensions, "zen_websocket did not negotiate permessage-deflate"

    def run(self) -> tuple[int, float, float]:
        self.count = 0
        self.done.clear()
        self.client.send_message(f"stream {self.n}")
        if not self.done.wait(120):
            raise RuntimeError("compressed callback burst did not finish")
        assert self.count == self.n, f"expected {self.n} messages, got {self.count}"
        return self.n - 1, self.t1 - self.t0, self.c1 - self.c0


class WebsocketsDeflateRecv(Receiver):
    def __init__(self, key: str, label: str, n: int, url: str) -> None:
        super().__init__(key, label, n)
        self.ws = websockets_connect(url, max_size=None, compression="deflate", proxy=None).__enter__()
        assert self.ws.protocol.extensions, "websockets did not negotiate permessage-deflate"

    def run(self) -> tuple[int, float, float]:
        self.ws.send(f"stream {self.n}")
        return timed_loop(self.ws.recv, self.n)

    def close(self) -> None:
        self.ws.close()


def bench_compressed(n: int) -> dict[str, Any]:
    proc = subprocess.Popen([sys.executable, __file__, "--deflate-server"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    port = proc.stdout.readline().strip()
    receivers: list[Receiver] = []
    try:
        if not port.isdigit():
            raise RuntimeError(f"deflate server did not print its port (got {port!r})")
        url = f"ws://127.0.0.1:{port}"
        zen = ZenDeflateRecv("zen_deflate", "zen_websocket  recv(), compression on", n, url)
        receivers.append(zen)
        callback_label = 'zen_websocket  on("message") callback, compression on'
        receivers.append(ZenDeflateCallback("zen_deflate_callback", callback_label, n, url))
        receivers.append(WebsocketsDeflateRecv("websockets_deflate", "websockets.sync recv(), compression on", n, url))
        for round_no in range(DEFLATE_ROUNDS):
            for r in receivers:
                started = time.monotonic()
                r.measure()
                progress(f"compressed round {round_no + 1}/{DEFLATE_ROUNDS}: {r.key} {time.monotonic() - started:.1f}s")
        ext = zen.extension
        raw_size = sum(map(len, deflate_messages(min(n, 2000)))) / min(n, 2000)
        out: dict[str, Any] = {"n": n, "rounds": DEFLATE_ROUNDS, "message_bytes": raw_size}
        out["wire_ratio"] = ext.bytes_in_raw / ext.bytes_in_compressed
        for r in receivers:
            out[r.key] = {
                "label": r.label,
                "rate": statistics.median(r.rates),
                "cpu_us": statistics.median(r.cpus) / 100_000 * 1e6,
                "rates": r.rates,
            }
        return out
    finally:
        for r in receivers:
            r.close()
        stop_server(proc)


# ---------------------------------------------------------------------------
# (d) idle connections, each kind in a child process


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(kind: str, url: str, count: int) -> None:
    """Open ``count`` idle connections; print RSS and thread deltas as JSON."""
    gc.collect()
    rss0, threads0 = rss_bytes(), threading.active_count()
    clients: list[Any] = []
    try:
        for _ in range(count):
            if kind == "zen":
                clients.append(zw.connect(url))  # default heartbeat: as users run it
            else:
                clients.append(websocket.create_connection(url))
        time.sleep(0.3)  # let every thread reach its idle wait
        gc.collect()
        rss1, threads1 = rss_bytes(), threading.active_count()
    finally:
        for c in clients:
            c.close()
    leftover = threading.active_count() - threads0
    print(json.dumps({"rss": rss1 - rss0, "threads": threads1 - threads0, "leftover_threads": leftover}))


def bench_memory(url: str, count: int) -> dict[str, Any]:
    out: dict[str, Any] = {"connections": count}
    for kind in ("zen", "raw"):
        proc = subprocess.run(
            [sys.executable, __file__, "--memory-child", kind, url, str(count)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        out[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


# ---------------------------------------------------------------------------
# (i) scale: one ClientSupervisor holding 1,000 children, a ping every second each
#
# In a child process (a clean RSS baseline, and its threads die with it),
# against the same bench server process. Heartbeat timing is read from the
# client's own telemetry: the heartbeat monitor schedules each ping one
# interval after the previous one, so the spacing of a child's
# ``heartbeat.sent`` events minus the interval is how late the shared timer
# thread ran it.

SCALE_INTERVAL = 1.0  # seconds between one child's pings


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds so far of this process's threads, summed by role (Linux; all 0 elsewhere).

    Roles: ``timer`` (zen-ws-timer), ``receive`` (zen-ws-recv-*), ``other``.
    Read from ``/proc/self/task/<id>/schedstat`` (nanoseconds on the CPU,
    not rounded to clock ticks as ``stat`` is: a thousand receive threads
    each run far less than a tick per second).
    """
    out = {"timer": 0.0, "receive": 0.0, "other": 0.0}
    for thread in threading.enumerate():
        try:
            with open(f"/proc/self/task/{thread.native_id}/schedstat") as f:
                seconds = int(f.read().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            continue
        if thread.name == zw.scheduler.TIMER_THREAD:
            out["timer"] += seconds
        elif thread.name.startswith("zen-ws-recv-"):
            out["receive"] += seconds
        else:
            out["other"] += seconds
    return out


def scale_child(url: str, children: int, seconds: float) -> None:
    """Start ``children`` supervised clients pinging every second, idle ``seconds``; print figures as JSON."""
    import resource
    from collections import defaultdict
    from itertools import pairwise

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * children + 256  # a socket and a poll object per client, and some slack
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(
            resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(hard, wanted), hard)
        )
    sent: list[tuple[float, str]] = []
    rtts: list[float] = []
    counts = {"failures": 0, "reconnects": 0}
    telemetry = zw.telemetry
    telemetry.attach(
        "bench-scale-sent", telemetry.HEARTBEAT_SENT, lambda e, m, md, c: sent.append((time.monotonic(), md["name"]))
    )
    telemetry.attach(
        "bench-scale-reply",
        telemetry.HEARTBEAT_REPLY,
        lambda e, m, md, c: m["rtt"] is not None and rtts.append(m["rtt"]),
    )

    def count(key: str) -> Callable[..., None]:
        def handler(*_: Any) -> None:
            counts[key] += 1

        return handler

    telemetry.attach("bench-scale-failure", telemetry.HEARTBEAT_FAILURE, count("failures"))
    telemetry.attach("bench-scale-reconnect", telemetry.RECONNECT_ATTEMPT, count("reconnects"))
    gc.collect()
    rss0, threads0 = rss_bytes(), threading.active_count()
    supervisor = zw.ClientSupervisor()
    try:
        started = time.perf_counter()
        for i in range(children):
            supervisor.start_client(url, id=f"c{i}", heartbeat_config={"type": "ping", "interval": SCALE_INTERVAL})
        connect_s = time.perf_counter() - started
        time.sleep(SCALE_INTERVAL + 0.5)  # every child is pinging
        gc.collect()
        rss1, threads1 = rss_bytes(), threading.active_count()
        window_start, cpu0, split0 = time.monotonic(), time.process_time(), thread_cpu_seconds()
        time.sleep(seconds)
        window_end, idle_cpu, split1 = time.monotonic(), time.process_time() - cpu0, thread_cpu_seconds()
        connected = sum(c.get_state() == "connected" for c in supervisor.list_clients())
    finally:
        stop_started = time.perf_counter()
        supervisor.stop()
        stop_s = time.perf_counter() - stop_started
        for handler_id in ("bench-scale-sent", "bench-scale-reply", "bench-scale-failure", "bench-scale-reconnect"):
            telemetry.detach(handler_id)
    by_child: dict[str, list[float]] = defaultdict(list)
    for at, name in sent:
        by_child[name].append(at)
    # Spacings that end inside the idle window.
    late = sorted(
        b - a - SCALE_INTERVAL
        for times in by_child.values()
        for a, b in pairwise(times)
        if window_start <= b <= window_end
    )
    on_time = sum(
        all(b - a < 1.5 * SCALE_INTERVAL for a, b in pairwise(t for t in times if t <= window_end))
        and any(t >= window_end - 1.5 * SCALE_INTERVAL for t in times)
        for times in by_child.values()
    )
    rtts.sort()
    split = {
        role: (split1[role] - split0[role]) / (window_end - window_start) * 100 if split1[role] else None
        for role in ("timer", "receive")
    }
    print(
        json.dumps(
            {
                "children": children,
                "seconds": seconds,
                "connect_s": connect_s,
                "rss_per_child": (rss1 - rss0) / children,
                "threads_per_child": (threads1 - threads0) / children,
                "idle_cpu_percent": idle_cpu / (window_end - window_start) * 100,
                # Where the idle CPU goes (None where /proc is not available).
                "timer_cpu_percent": split["timer"],
                "receive_cpu_percent": split["receive"],
                "pings": len(late),
                "late_p50_ms": percentile(late, 50) * 1000 if late else None,
                "late_p99_ms": percentile(late, 99) * 1000 if late else None,
                "late_max_ms": late[-1] * 1000 if late else None,
                "rtt_p99_ms": percentile(rtts, 99) * 1000 if rtts else None,
                "children_on_time": on_time,
                "connected": connected,
                "heartbeat_failures": counts["failures"],
                "reconnects": counts["reconnects"],
                "stop_s": stop_s,
                "leftover_threads": threading.active_count() - threads0,
            }
        )
    )


def bench_scale(url: str, children: int, seconds: float) -> dict[str, Any]:
    code = "import sys, bench; bench.scale_child(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))"
    proc = subprocess.run(
        [sys.executable, "-c", code, url, str(children), str(seconds)],
        cwd=HERE,  # so that "import bench" finds this file
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def report_scale(s: dict[str, Any]) -> None:
    print(
        f"(i) Scale: one ClientSupervisor, {s['children']:,} children in this process (server in another), "
        f"a ping every {SCALE_INTERVAL:g} s each, {s['seconds']:g} s idle"
    )
    print(
        f"  connect {s['children']:,} children: {s['connect_s']:.2f} s ({s['connect_s'] / s['children'] * 1000:.2f} ms each)"
    )
    print(f"  memory {s['rss_per_child'] / 1024:.1f} KiB and {s['threads_per_child']:.3f} threads per child")
    print(f"  idle CPU {s['idle_cpu_percent']:.1f}% of one core ({s['pings']:,} pings timed)")
    if s.get("timer_cpu_percent") is not None and s.get("receive_cpu_percent") is not None:
        print(
            f"    of which the timer thread {s['timer_cpu_percent']:.1f}%, "
            f"the {s['children']:,} receive threads {s['receive_cpu_percent']:.1f}%"
        )
    print(
        f"  ping lateness (spacing - {SCALE_INTERVAL:g} s): p50 {s['late_p50_ms']:.1f} ms, p99 {s['late_p99_ms']:.1f} ms, "
        f"max {s['late_max_ms']:.1f} ms; pong round trip p99 {s['rtt_p99_ms']:.1f} ms"
    )
    print(
        f"  children with every heartbeat on time: {s['children_on_time']:,}/{s['children']:,}; connected at the end: "
        f"{s['connected']:,}; heartbeat failures {s['heartbeat_failures']}, reconnects {s['reconnects']}"
    )
    print(f"  stop() of all children: {s['stop_s']:.2f} s; threads left: {s['leftover_threads']}")
    print()


# ---------------------------------------------------------------------------
# report


def report_large(large: dict[int, dict[str, Throughput]], by_size: dict[str, float]) -> None:
    """Print (j); ``by_size`` is zen/raw skip-utf8 ``recv()`` msg/s per size, 200 B of (a) included."""
    print(f"(j) Receive large text messages; best of {REPEATS} runs, interleaved per size, as (a)")
    print(f"  {'client':<58}{'msg/s':>12}{'MB/s':>9}{'CPU s/100k':>12}{'CPU s/GB':>10}")
    for size, rows in large.items():
        for key in ("zen_recv", "raw_skip", "websockets"):
            t = rows[key]
            mb_s = t.rate * t.size / 1e6
            print(f"  {t.label:<58}{t.rate:>12,.0f}{mb_s:>9,.0f}{t.cpu_per_100k:>12.3f}{t.cpu_per_gb:>10.3f}")
        zen, raw, wsr = (rows[k] for k in ("zen_recv", "raw_skip", "websockets"))
        print(
            f"    {size_name(size)} x {zen.messages:,}: zen/raw skip-utf8 msg/s {zen.rate / raw.rate:.2f}x, "
            f"CPU per message {zen.cpu_per_100k / raw.cpu_per_100k:.2f}x; zen/websockets msg/s "
            f"{zen.rate / wsr.rate:.2f}x, CPU per message {zen.cpu_per_100k / wsr.cpu_per_100k:.2f}x"
        )
    shown = ", ".join(f"{size_name(int(size))} {ratio:.2f}x" for size, ratio in by_size.items())
    print(f"  zen recv()/raw skip-utf8 msg/s by size: {shown}")
    print()


def ratios(r: dict[str, Any]) -> dict[str, Any]:
    """The ratios issue 8 sets targets on (zen over the other client), as the report and ``--json`` show them."""
    by_size: dict[int, dict[str, Throughput]] = {SIZE: r["throughput"], **r["large"]}
    lat: dict[str, Latency] = r["latency"]
    return {
        "recv_vs_raw_skip_utf8": {
            str(size): rows["zen_recv"].rate / rows["raw_skip"].rate for size, rows in by_size.items()
        },
        "recv_vs_websockets": {
            str(size): rows["zen_recv"].rate / rows["websockets"].rate for size, rows in by_size.items()
        },
        "request_vs_raw_jsonrpc": {
            "p50": lat["zen_request"].p50_us / lat["raw_jsonrpc"].p50_us,
            "p99": lat["zen_request"].p99_us / lat["raw_jsonrpc"].p99_us,
        },
    }


def check(ok: bool) -> str:
    return "[met] " if ok else "[MISS]"


def report(r: dict[str, Any], quick: bool) -> list[tuple[str, bool]]:
    """Print the tables; return (target, met) pairs."""
    n = r["n"]
    tp: dict[str, Throughput] = r["throughput"]
    lat: dict[str, Latency] = r["latency"]
    mem = r["memory"]

    print(f"(a)+(c) Receive {n:,} text messages of {SIZE} bytes; best of {REPEATS} runs")
    print("        (clock and CPU start at each burst's first message; CPU = whole client process)")
    print("  " + HEADER)
    for key in ("zen_recv", "zen_callback", "raw_default", "raw_skip", "websockets"):
        t = tp[key]
        print(f"  {t.label:<58}{t.rate:>12,.0f}{t.cpu_per_100k:>12.3f}")
    zr, zc = tp["zen_recv"].rate, tp["zen_callback"].rate
    rd, rs, wsr = tp["raw_default"].rate, tp["raw_skip"].rate, tp["websockets"].rate
    print("  ratios (zen/other, msg/s):")
    print(f"    {'':<22}{'raw default':>14}{'raw skip-utf8':>15}{'websockets':>12}")
    print(f"    {'zen recv()':<22}{zr / rd:>13.2f}x{zr / rs:>14.2f}x{zr / wsr:>11.2f}x")
    print(f"    {'zen callback':<22}{zc / rd:>13.2f}x{zc / rs:>14.2f}x{zc / wsr:>11.2f}x")
    print()

    rt = ratios(r)
    report_large(r["large"], rt["recv_vs_raw_skip_utf8"])

    print(f"(b)+(e) Round trips, {r['rtt_n']:,} sequential, ~{SIZE}-byte messages")
    print(f"  {'':<58}{'p50 µs':>12}{'p99 µs':>12}")
    for key in ("zen_echo", "raw_echo_default", "raw_echo_skip", "zen_request", "raw_jsonrpc"):
        x = lat[key]
        print(f"  {x.label:<58}{x.p50_us:>12.1f}{x.p99_us:>12.1f}")
    ze, rde, rse, zq = (lat[k].p50_us for k in ("zen_echo", "raw_echo_default", "raw_echo_skip", "zen_request"))
    rpc50, rpc99 = rt["request_vs_raw_jsonrpc"]["p50"], rt["request_vs_raw_jsonrpc"]["p99"]
    print(f"  ratios (p50): zen echo/raw default {ze / rde:.2f}x, zen echo/raw skip-utf8 {ze / rse:.2f}x,")
    print(
        f"                zen request/raw echo default {zq / rde:.2f}x, zen request/raw echo skip-utf8 {zq / rse:.2f}x"
    )
    print(f"  zen request()/raw JSON-RPC by hand: p50 {rpc50:.2f}x, p99 {rpc99:.2f}x (target <= 1.3x, stretch <= 1.1x)")
    print()

    plain, routed, notify_plain = tp["zen_recv"], tp["routed"], tp["notify_plain"]
    print(f"(f) JSON-RPC notifications via recv(), {n:,} x {SIZE} bytes; best of {REPEATS} runs")
    print("  " + HEADER)
    for t in (notify_plain, routed):
        print(f"  {t.label:<58}{t.rate:>12,.0f}{t.cpu_per_100k:>12.3f}")
    print(
        f"  routed/plain recv() of (a): {routed.rate / plain.rate:.2f}x; "
        f"routed/notifications with nothing in flight: {routed.rate / notify_plain.rate:.2f}x"
    )
    print()

    zm, rm = mem["zen"], mem["raw"]
    count = mem["connections"]
    print(f"(d) Idle connections: {count} each, fresh child process per client kind")
    print(f"  {'':<58}{'KiB/conn':>12}{'threads/conn':>14}")
    print(
        f"  {'zen_websocket (default heartbeat: ping every 30 s)':<58}{zm['rss'] / count / 1024:>12.1f}{zm['threads'] / count:>14.2f}"
    )
    print(
        f"  {'websocket-client create_connection()':<58}{rm['rss'] / count / 1024:>12.1f}{rm['threads'] / count:>14.2f}"
    )
    print(f"  threads left after close: zen {zm['leftover_threads']}, websocket-client {rm['leftover_threads']}")
    print()

    print(
        f"(g) RateLimiter.consume(), uncontended, {r['consume_calls']:,} calls, best of {REPEATS}: {r['consume_us']:.3f} µs/call"
    )
    print()

    c = r["compressed"]
    zd, zc, wd = c["zen_deflate"], c["zen_deflate_callback"], c["websockets_deflate"]
    print(
        f"(h) Compressed stream: {c['n']:,} JSON messages of ~{c['message_bytes']:,.0f} bytes from a websockets server "
        f"(permessage-deflate,\n    its defaults), own process; median of {c['rounds']} interleaved runs; "
        f"{c['wire_ratio']:.1f}x smaller on the wire"
    )
    print(f"  {'':<58}{'msg/s':>12}{'CPU µs/msg':>12}")
    for x in (zd, zc, wd):
        print(f"  {x['label']:<58}{x['rate']:>12,.0f}{x['cpu_us']:>12.1f}")
    print(
        f"  ratios zen/websockets: recv() msg/s {zd['rate'] / wd['rate']:.2f}x, CPU per message "
        f"{zd['cpu_us'] / wd['cpu_us']:.2f}x; callback msg/s {zc['rate'] / wd['rate']:.2f}x, "
        f"CPU per message {zc['cpu_us'] / wd['cpu_us']:.2f}x"
    )
    print()

    sc = r["scale"]
    report_scale(sc)

    big = rt["recv_vs_raw_skip_utf8"][str(64 * 1024)]
    targets = [
        (f"recv() >= 1.5x raw websocket-client, default        ({zr / rd:.2f}x)", zr >= 1.5 * rd),
        (f"recv() >= 1.5x raw websocket-client, skip-utf8      ({zr / rs:.2f}x)", zr >= 1.5 * rs),
        (f"recv() >= 1.0x websockets sync                      ({zr / wsr:.2f}x)", zr >= 1.0 * wsr),
        (f"recv() {SIZE} B >= 2x websockets sync                  ({zr / wsr:.2f}x)", zr >= 2.0 * wsr),
        (
            f"recv() 64 KB >= 2x raw websocket-client, skip-utf8  ({big:.2f}x)",
            big >= 2.0,
        ),
        (f"echo p50 <= 1.3x raw echo, default                  ({ze / rde:.2f}x)", ze <= 1.3 * rde),
        (f"echo p50 <= 1.3x raw echo, skip-utf8                ({ze / rse:.2f}x)", ze <= 1.3 * rse),
        (f"request p50 <= 1.3x raw JSON-RPC by hand            ({rpc50:.2f}x)", rpc50 <= 1.3),
        (f"request p99 <= 1.3x raw JSON-RPC by hand            ({rpc99:.2f}x)", rpc99 <= 1.3),
        (
            f"routed notifications >= 0.9x plain recv() of (a)    ({routed.rate / plain.rate:.2f}x)",
            routed.rate >= 0.9 * plain.rate,
        ),
        (f"RateLimiter.consume() < 2 µs                        ({r['consume_us']:.3f} µs)", r["consume_us"] < 2.0),
        (
            f"{sc['children']:,} children: every heartbeat on time ({sc['children_on_time']:,}/{sc['children']:,}), "
            f"ping lateness p99 < 100 ms ({sc['late_p99_ms']:.1f} ms)",
            sc["children_on_time"] == sc["children"] and sc["heartbeat_failures"] == 0 and sc["late_p99_ms"] < 100,
        ),
        (
            f"{sc['children']:,} children: <= 32 KiB and 1 thread each, connected in <= 2 s "
            f"({sc['rss_per_child'] / 1024:.1f} KiB, {sc['threads_per_child']:.3f}, {sc['connect_s']:.2f} s)",
            sc["rss_per_child"] <= 32 * 1024 and sc["threads_per_child"] < 1.01 and sc["connect_s"] <= 2.0,
        ),
        (
            f"{sc['children']:,} children: idle CPU <= 5% of a core  ({sc['idle_cpu_percent']:.1f}%)",
            sc["idle_cpu_percent"] <= 5.0,
        ),
    ]
    print("Targets" + ("  (--quick: small samples, indicative only)" if quick else ""))
    for text, ok in targets:
        print(f"  {check(ok)} {text}")
    met = sum(ok for _, ok in targets)
    print(f"  {met}/{len(targets)} met")
    return targets


# ---------------------------------------------------------------------------


def run(url: str, quick: bool) -> dict[str, Any]:
    scale = 10 if quick else 1
    n = 200_000 // scale
    rtt_n = 10_000 // scale
    conns = 200 // scale
    consume_calls = 1_000_000 // scale
    results: dict[str, Any] = {"n": n, "rtt_n": rtt_n, "consume_calls": consume_calls}
    results["throughput"] = bench_receive(url, n)
    results["large"] = {
        size: bench_large(url, size, burst // scale, repeats) for size, (burst, repeats) in LARGE_BURSTS.items()
    }
    started = time.monotonic()
    results["latency"] = bench_round_trips(url, rtt_n)
    progress(f"round trips {time.monotonic() - started:.1f}s")
    started = time.monotonic()
    results["memory"] = bench_memory(url, conns)
    progress(f"idle connections {time.monotonic() - started:.1f}s")
    results["consume_us"] = bench_consume(consume_calls)
    started = time.monotonic()
    results["compressed"] = bench_compressed(20_000 // scale)
    progress(f"compressed stream {time.monotonic() - started:.1f}s")
    started = time.monotonic()
    results["scale"] = bench_scale(url, 1000 // scale, 10.0 if not quick else 3.0)
    progress(f"scale {time.monotonic() - started:.1f}s")
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10x fewer messages (smoke test)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--memory-child", nargs=3, metavar=("KIND", "URL", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--deflate-server", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.deflate_server:
        deflate_server()
        return 0
    if args.memory_child:
        kind, url, count = args.memory_child
        memory_child(kind, url, int(count))
        return 0

    started = time.monotonic()
    server, url = start_server()
    try:
        print(f"{TITLE}: {url} (loopback), Python {platform.python_version()}, {os.cpu_count()} CPUs")
        print(
            f"zen_websocket {zw.__version__}, websocket-client {websocket.__version__}, "
            f"websockets {_websockets_version()}"
        )
        print(
            "Heartbeats disabled (heartbeat_config=None) on every zen client except (d), "
            "which uses the default heartbeat."
        )
        print(
            f"Throughput: best of {REPEATS} runs, interleaved across clients; round trips: "
            f"{BLOCKS} interleaved blocks per client. websockets.sync adds proxy=None (loopback only)."
        )
        print()
        results = run(url, args.quick)
    finally:
        stop_server(server)
    print()
    targets = report(results, args.quick)
    leftover = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
    print(
        f"\nServer stopped (exit {server.returncode}); threads left in this process: {len(leftover)} {leftover or ''}"
    )
    print(f"Total time {time.monotonic() - started:.1f}s")
    if args.json:
        out = dict(results)
        out["throughput"] = {k: asdict(v) for k, v in results["throughput"].items()}
        out["large"] = {str(size): {k: asdict(v) for k, v in rows.items()} for size, rows in results["large"].items()}
        out["latency"] = {k: asdict(v) for k, v in results["latency"].items()}
        out["ratios"] = ratios(results)
        out["targets"] = [{"target": text, "met": ok} for text, ok in targets]
        out["quick"] = args.quick
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"Results written to {args.json}")
    return 1 if leftover else 0


def _websockets_version() -> str:
    from importlib.metadata import version

    return version("websockets")


if __name__ == "__main__":
    sys.exit(main())
