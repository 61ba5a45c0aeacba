"""Soak test: random faults for minutes against a loopback server streaming numbered messages.

A :class:`~zen_websocket.testing.SequencedFeed`, in a process of its own
(so that RSS and threads are the client's alone), answers Deribit ``public/subscribe`` requests
and streams ``{"method": "subscription", "params": {"channel": ch, "data":
{"conn": id, "seq": n}}}`` to subscribed connections, ``seq`` counting from 1
on each connection. One zen_websocket client (callback mode) subscribes; every
``--fault-every`` seconds a random fault hits it: TCP drop, half-open stall,
close 1001/1011/1000, connections refused for a while, one HTTP 503.

Measured and compared with targets (a PASS/FAIL line each):

* restore latency: from the moment the server can be reached again (the
  client's disconnect for drop/close/stall, the listener back for a refusal,
  the 503 answer for a rejection) to the server receiving the restoring
  ``public/subscribe``, minus the backoff delay the successful attempt slept
  (``reconnect.attempt`` telemetry): p99 must stay under 50 ms;
* dead-peer detection (stall -> disconnect with ``heartbeat_timeout``): p99
  within ``interval + timeout`` + 10 %;
* messages lost outside connection gaps: per connection the client must see
  seqs 1..k with no hole, repeat or disorder (only a dead connection's tail
  may be missing): must be 0;
* thread count back to its starting value, client connected at the end;
* threads and RSS flat: the second half may add at most RSS_SLACK_KIB
  (after the first half has warmed the allocator up), and no thread.

Thread count and RSS are printed at start, middle and end.

Usage::

    python scripts/soak.py                 # 10 minutes
    python scripts/soak.py --quick         # 20 seconds
    python scripts/soak.py --minutes 2 --fault-every 0.5 --seed 7
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import threading
import time
from collections import Counter, defaultdict
from multiprocessing.managers import BaseManager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import zen_websocket as zw
from zen_websocket import telemetry
from zen_websocket.testing import SequencedFeed

CHANNELS = ["ticker.BTC-PERPETUAL.100ms", "book.ETH-PERPETUAL.100ms"]
FAULTS = ["drop", "stall", "close_1001", "close_1011", "close_1000", "refuse", "reject_503"]
HB_INTERVAL = 0.5
HB_TIMEOUT = 0.5
RETRY_DELAY = 0.05
MAX_BACKOFF = 1.0
RSS_SLACK_KIB = 2048  # allowed RSS growth over the second half of the run
RESTORE_SLACK = 0.050  # target: restore within the scheduled backoff delay + 50 ms (p99)
HEALTHY_WAIT = 15.0  # bound on waiting for a recovery; beyond it the episode counts as failed


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100.0 * (len(ordered) - 1))))
    return ordered[index]


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


class _FeedServer:
    """Runs in the server process: a SequencedFeed behind plain methods.

    The server lives in its own process so that the soak's RSS and thread
    counts are the client's alone (the test server keeps records and
    churns threads of its own). ``time.monotonic()`` is system-wide on
    Linux, so its timestamps compare with the client's.
    """

    def __init__(self, interval: float) -> None:
        self.feed = SequencedFeed(interval=interval, close_timeout=0.5, history=20).start()

    def url(self) -> str:
        return self.feed.url

    def restored_at(self, conn_id: int) -> float | None:
        return self.feed.restored_at(conn_id, CHANNELS)

    def newest_id(self) -> int | None:
        conns = self.feed.all_connections
        return conns[-1].id if conns else None

    def counts(self) -> tuple[int, int]:
        """(accepted connections, rejected handshakes)."""
        return self.feed.connection_count, self.feed.rejected_count

    def fault(self, name: str, *args: Any) -> None:
        getattr(self.feed, name)(*args)

    def wait_rejected(self, count: int, timeout: float) -> bool:
        return self.feed.wait_for(lambda: self.feed.rejected_count > count, timeout)

    def stop_feed(self) -> None:
        self.feed.stop_feed()

    def stop(self) -> None:
        self.feed.stop()


class _FeedManager(BaseManager):
    pass


_FeedManager.register("FeedServer", _FeedServer)


class Feed:
    """Client side of the server process."""

    def __init__(self, interval: float) -> None:
        self._manager = _FeedManager()
        self._manager.start()
        self.remote: Any = self._manager.FeedServer(interval)  # type: ignore[attr-defined]
        self.url: str = self.remote.url()

    def subscribed_at(self, conn_id: int) -> float | None:
        """When every channel was subscribed on ``conn_id`` (monotonic), or None."""
        return self.remote.restored_at(conn_id)  # type: ignore[no-any-return]

    def newest_id(self) -> int | None:
        return self.remote.newest_id()  # type: ignore[no-any-return]

    def counts(self) -> tuple[int, int]:
        return tuple(self.remote.counts())  # type: ignore[return-value]

    def fault(self, name: str, *args: Any) -> None:
        self.remote.fault(name, *args)

    def stop(self) -> None:
        try:
            self.remote.stop()
        finally:
            self.remote = None  # drops the proxy's connection to the server process
            self._manager.shutdown()


class Watcher:
    """Client side: per-connection contiguity, telemetry timeline."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.lock = threading.Lock()
        self.last_seq: dict[int, int] = {}
        self.count: dict[int, int] = defaultdict(int)
        self.lost = 0  # holes, repeats or disorder inside a connection
        self.anomalies: list[str] = []
        self.delivered = 0
        self.errors: list[BaseException] = []
        self.attempts: list[tuple[float, int, float]] = []  # (time, attempt, delay)
        self.disconnects: list[tuple[float, str]] = []
        telemetry.attach_many(
            f"soak.{name}",
            [("zen_websocket", "reconnect", "attempt"), ("zen_websocket", "client", "disconnect")],
            self._telemetry,
        )

    def detach(self) -> None:
        telemetry.detach(f"soak.{self.name}")

    def _telemetry(
        self, event: tuple[str, ...], measurements: dict[str, Any], metadata: dict[str, Any], _c: Any
    ) -> None:
        if metadata.get("name") != self.name:
            return
        now = time.monotonic()
        with self.lock:
            if event[-1] == "attempt":
                self.attempts.append((now, measurements["attempt"], measurements["delay"]))
            else:
                self.disconnects.append((now, metadata.get("reason", "?")))

    def on_message(self, _client: Any, raw: Any) -> None:
        message = json.loads(raw)
        with self.lock:
            self.delivered += 1
            if message.get("method") != "subscription":
                self.anomalies.append(f"unexpected message {raw[:100]!r}")
                return
            data = message["params"]["data"]
            conn, seq = data["conn"], data["seq"]
            expected = self.last_seq.get(conn, 0) + 1
            if seq != expected:
                self.lost += abs(seq - expected) or 1
                if len(self.anomalies) < 20:
                    self.anomalies.append(f"conn #{conn}: got seq {seq}, expected {expected}")
            self.last_seq[conn] = max(seq, self.last_seq.get(conn, 0))
            self.count[conn] += 1

    def on_error(self, _client: Any, exc: BaseException) -> None:
        with self.lock:
            self.errors.append(exc)

    def received_on(self, conn_id: int) -> int:
        with self.lock:
            return self.count.get(conn_id, 0)


def snapshot(label: str) -> dict[str, Any]:
    return {"label": label, "threads": threading.active_count(), "rss_kib": rss_kib(), "fds": fd_count()}


def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    duration = 20.0 if args.quick else args.minutes * 60.0
    start_snap = snapshot("start")
    baseline_threads = set(threading.enumerate())

    feed = Feed(interval=args.stream_interval)
    watcher = Watcher(f"soak-{os.getpid()}")
    client = zw.connect(
        feed.url,
        name=watcher.name,
        heartbeat_config={"type": "ping", "interval": HB_INTERVAL, "timeout": HB_TIMEOUT},
        retry_delay=RETRY_DELAY,
        max_backoff=MAX_BACKOFF,
        retry_count=None,
        jitter=args.jitter,
        close_timeout=1.0,
        on_message=watcher.on_message,
        on_error=watcher.on_error,
    )
    client.subscribe(CHANNELS, wait=True, timeout=10)

    def healthy_after(conn_id: int) -> int | None:
        """Wait for a connection newer than ``conn_id``, restored and streaming; its id or None."""
        deadline = time.monotonic() + HEALTHY_WAIT
        while time.monotonic() < deadline:
            newest = feed.newest_id()
            if (
                newest is not None
                and newest > conn_id
                and watcher.received_on(newest) > 0
                and client.get_state() == "connected"
                and feed.subscribed_at(newest) is not None
            ):
                return int(newest)
            time.sleep(0.002)
        return None

    restore_latency: list[float] = []  # server reachable -> restore subscribe received
    restore_excess: list[float] = []  # the same minus the backoff delay slept
    excess_by_kind: dict[str, list[float]] = defaultdict(list)
    overhead: list[float] = []  # restore subscribe - max(reachable, when the successful attempt was due)
    detection: list[float] = []  # stall -> heartbeat_timeout disconnect
    faults: Counter[str] = Counter()
    failed_episodes: list[str] = []
    middle_snap: dict[str, Any] | None = None

    current = healthy_after(0)
    if current is None:
        print("FAIL: the client never became healthy", flush=True)
        return 1
    started = time.monotonic()
    end = started + duration
    stop = threading.Event()
    print(
        f"soak: {duration:.0f}s, a fault every {args.fault_every}s, seed {args.seed}, server {feed.url} (own process)",
        flush=True,
    )
    try:
        while time.monotonic() < end:
            # Spread around the mean so faults hit every phase of the heartbeat cycle.
            stop.wait(args.fault_every * rng.uniform(0.5, 1.5))
            if middle_snap is None and time.monotonic() >= started + duration / 2:
                middle_snap = snapshot("middle")
            fault = rng.choice(FAULTS)
            faults[fault] += 1
            t_fault = time.monotonic()
            t_up: float | None = None  # when the server is reachable again (refuse, 503)
            if fault == "drop":
                feed.fault("drop_connections", rng.random() < 0.5)
            elif fault == "stall":
                feed.fault("stall", HB_INTERVAL + HB_TIMEOUT + 3.0)
            elif fault.startswith("close_"):
                feed.fault("simulate_disconnect", int(fault.split("_")[1]), "soak")
            elif fault == "refuse":
                feed.fault("refuse_connections", True)
                feed.fault("drop_connections")
                stop.wait(rng.uniform(0.1, 1.5))
                feed.fault("refuse_connections", False)
                t_up = time.monotonic()
            elif fault == "reject_503":
                rejected = feed.counts()[1]
                feed.fault("reject_handshake", 503, 1)
                feed.fault("drop_connections")
                if feed.remote.wait_rejected(rejected, HEALTHY_WAIT):
                    t_up = time.monotonic()
            new = healthy_after(current)
            if new is None:
                failed_episodes.append(f"{fault} at +{t_fault - started:.1f}s: no recovery within {HEALTHY_WAIT}s")
                continue
            with watcher.lock:
                disconnects = [(t, r) for t, r in watcher.disconnects if t >= t_fault]
                attempts = list(watcher.attempts)
            if not disconnects:
                failed_episodes.append(f"{fault} at +{t_fault - started:.1f}s: no disconnect seen")
                current = new
                continue
            t_disc, reason = disconnects[0]
            if fault == "stall":
                if reason == "heartbeat_timeout":
                    detection.append(t_disc - t_fault)
                else:
                    failed_episodes.append(f"stall at +{t_fault - started:.1f}s: disconnect reason {reason}")
            t_restore = feed.subscribed_at(new)
            assert t_restore is not None  # healthy_after() waited for it
            reachable = max(t_disc, t_up or t_disc)
            before = [a for a in attempts if a[0] <= t_restore]
            delay = before[-1][2] if before else 0.0
            scheduled = before[-1][0] + delay if before else reachable
            overhead.append(t_restore - max(reachable, scheduled))
            restore_latency.append(t_restore - reachable)
            restore_excess.append(t_restore - reachable - delay)
            excess_by_kind[fault].append(t_restore - reachable - delay)
            current = new
    finally:
        metrics = client.get_state_metrics()
        end_state = client.get_state()
        end_snap_live = snapshot("end (live)")
        feed.remote.stop_feed()
        server_connections, server_rejections = feed.counts()
        client.close()
        feed.stop()
        watcher.detach()
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and set(threading.enumerate()) - baseline_threads:
            time.sleep(0.05)
        end_snap = snapshot("end (closed)")

    elapsed = time.monotonic() - started
    print()
    print(f"ran {elapsed:.1f}s, {sum(faults.values())} faults: {dict(sorted(faults.items()))}")
    print(
        f"reconnects: {metrics['reconnects']} (server connections {server_connections}, "
        f"503 rejections {server_rejections}); messages delivered {watcher.delivered}, "
        f"messages_received {metrics['messages_received']}"
    )
    print(
        f"restore latency (reachable -> restore subscribe): p50 {restore_latency and percentile(restore_latency, 50) * 1000:.1f} ms, "
        f"p99 {percentile(restore_latency, 99) * 1000:.1f} ms, max {max(restore_latency, default=float('nan')) * 1000:.1f} ms "
        f"(n={len(restore_latency)})"
    )
    print(
        f"  minus the scheduled backoff delay: p50 {percentile(restore_excess, 50) * 1000:.1f} ms, "
        f"p99 {percentile(restore_excess, 99) * 1000:.1f} ms, max {max(restore_excess, default=float('nan')) * 1000:.1f} ms "
        f"(target p99 <= {RESTORE_SLACK * 1000:.0f} ms)"
    )
    print(
        f"  after the successful attempt was due and the server reachable: p50 {percentile(overhead, 50) * 1000:.1f} ms, "
        f"p99 {percentile(overhead, 99) * 1000:.1f} ms (connect + handshake + restore)"
    )
    print(
        "  by fault, minus backoff (p50/max ms; a refusal ends mid-sleep, hence negative): "
        + ", ".join(
            f"{kind} {percentile(v, 50) * 1000:.1f}/{max(v) * 1000:.1f}" for kind, v in sorted(excess_by_kind.items())
        )
    )
    target_detect = (HB_INTERVAL + HB_TIMEOUT) * 1.1
    print(
        f"dead-peer detection (stall): p50 {percentile(detection, 50) * 1000:.0f} ms, "
        f"p99 {percentile(detection, 99) * 1000:.0f} ms, max {max(detection, default=float('nan')) * 1000:.0f} ms "
        f"(n={len(detection)}, target p99 <= {target_detect * 1000:.0f} ms)"
    )
    print(f"messages lost outside connection gaps: {watcher.lost}")
    for line in watcher.anomalies[:10]:
        print(f"  {line}")
    middle_snap = middle_snap or snapshot("middle")
    for snap in (start_snap, middle_snap, end_snap_live, end_snap):
        print(
            f"{snap['label']:>13}: threads {snap['threads']:3d}  RSS {snap['rss_kib'] / 1024:7.1f} MiB  fds {snap['fds']}"
        )
    if watcher.errors:
        print(f"error events: {[repr(e) for e in watcher.errors[:5]]}")
    for line in failed_episodes[:10]:
        print(f"  failed episode: {line}")

    results = [
        (
            "restore within backoff delay + 50 ms (p99)",
            bool(restore_excess) and percentile(restore_excess, 99) <= RESTORE_SLACK,
        ),
        (
            "dead-peer detection within interval + timeout + 10% (p99)",
            not detection or percentile(detection, 99) <= target_detect,
        ),
        ("no message lost outside connection gaps", watcher.lost == 0 and not watcher.anomalies),
        ("every fault recovered, no error event", not failed_episodes and not watcher.errors),
        (
            "reconnects == server connections - 1",
            metrics["reconnects"] == server_connections - 1 and metrics["reconnects"] >= sum(faults.values()),
        ),
        ("client connected at the end", end_state == "connected"),
        ("no thread left after close", end_snap["threads"] <= start_snap["threads"]),
        (
            f"threads and RSS flat over the second half (+{RSS_SLACK_KIB // 1024} MiB at most)",
            end_snap_live["threads"] <= middle_snap["threads"]
            and end_snap_live["rss_kib"] - middle_snap["rss_kib"] <= RSS_SLACK_KIB,
        ),
    ]
    print()
    for label, ok in results:
        print(f"{'PASS' if ok else 'FAIL'}: {label}")
    return 0 if all(ok for _, ok in results) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="duration in minutes (default 10)")
    parser.add_argument(
        "--fault-every", type=float, default=1.0, help="mean seconds between faults, spread 0.5x-1.5x (default 1.0)"
    )
    parser.add_argument("--quick", action="store_true", help="run 20 seconds")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random, printed)")
    parser.add_argument("--jitter", type=float, default=0.1, help="client backoff jitter (default 0.1)")
    parser.add_argument("--stream-interval", type=float, default=0.005, help="seconds between stream ticks")
    parser.add_argument("-v", "--verbose", action="store_true", help="library logging at INFO")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR, format="%(asctime)s %(name)s %(message)s"
    )
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
