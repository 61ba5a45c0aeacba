"""zen_websocket in 60 lines: a live BTC price feed, without touching the network.

An embedded Deribit emulator (``zen_websocket.testing.DeribitEmulator``)
runs on 127.0.0.1 and publishes a random-walk BTC index price every 100 ms
on ``deribit_price_index.btc_usd``, in Deribit's JSON-RPC notification
format::

    {"jsonrpc": "2.0", "method": "subscription",
     "params": {"channel": "deribit_price_index.btc_usd",
                "data": {"index_name": "btc_usd", "price": 97123.45, "timestamp": 1700000000000}}}

The client part (``stream_prices``) is exactly what you would write against
``wss://www.deribit.com/ws/api/v2``: connect, subscribe, read, request, close.

Run it with ``make demo`` or ``python scripts/demo.py --seconds 10``.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from datetime import datetime

import zen_websocket as zw
from zen_websocket.testing import DeribitEmulator

CHANNEL = "deribit_price_index.btc_usd"


# ---------------------------------------------------------------------------
# The simulated exchange (stands in for Deribit; not part of the client code)


def start_exchange() -> DeribitEmulator:
    """A local Deribit emulator publishing a random-walk BTC price every 100 ms."""
    exchange = DeribitEmulator().start()
    price = 97_000.0
    rng = random.Random()

    def tick(_seq: int) -> None:
        nonlocal price
        price = max(1.0, price + rng.gauss(0, 15))
        exchange.publish(
            CHANNEL,
            {"index_name": "btc_usd", "price": round(price, 2), "timestamp": int(time.time() * 1000)},
        )

    exchange.start_feed(tick, interval=0.1)
    return exchange


# ---------------------------------------------------------------------------
# Terminal styling: colours only on a terminal, plain ASCII when UTF-8 is unavailable


def _styles() -> tuple[str, str, str, str, str]:
    tty = sys.stdout.isatty()
    try:
        "▲▼·".encode(sys.stdout.encoding or "ascii")
        up, down = "▲", "▼"
    except (UnicodeEncodeError, LookupError):
        up, down = "^", "v"
    if not tty:
        return up, down, "", "", ""
    return up, down, "\033[32m", "\033[31m", "\033[0m"


UP, DOWN, GREEN, RED, RESET = _styles()


def print_update(data: dict, previous: float | None) -> None:
    """One line per price update: ``12:00:01.234  BTC-USD  97,123.45  ▲ +12.30``."""
    price = data["price"]
    stamp = datetime.fromtimestamp(data["timestamp"] / 1000).strftime("%H:%M:%S.%f")[:-3]
    if previous is None:
        move = ""
    else:
        change = price - previous
        arrow, colour = (UP, GREEN) if change >= 0 else (DOWN, RED)
        move = f"{colour}{arrow} {change:+,.2f}{RESET}"
    print(f"{stamp}  BTC-USD  {price:>10,.2f}  {move}".rstrip(), flush=True)


# ---------------------------------------------------------------------------
# The client: this is the part to copy


def stream_prices(url: str, seconds: float) -> int:
    received = 0
    previous: float | None = None
    # heartbeat_config: Deribit's own heartbeat (public/set_heartbeat); the
    # client answers test_request messages itself. retry_count: reconnect
    # for ever if the connection drops; subscriptions are restored.
    with zw.connect(url, heartbeat_config={"type": "deribit", "interval": 10}, retry_count=None) as client:
        client.subscribe([CHANNEL], wait=True)  # raises SubscriptionError if refused
        print(f"Subscribed to {CHANNEL}; streaming for {seconds:g} s\n")

        started = time.monotonic()
        deadline = started + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                message = json.loads(client.recv(timeout=remaining))
            except TimeoutError:
                break
            if message.get("method") != "subscription":
                continue  # responses to our requests never get here: request() takes them
            data = message["params"]["data"]
            print_update(data, previous)
            previous = data["price"]
            received += 1
        elapsed = time.monotonic() - started

        # A JSON-RPC round trip: request() waits for the response with the same id.
        rtts = []
        for _ in range(5):
            t0 = time.perf_counter()
            client.request("public/test")
            rtts.append((time.perf_counter() - t0) * 1000)

        metrics = client.get_state_metrics()
    # Leaving the with-block closed the connection (close frame, threads joined).
    print(
        f"\nSummary: {received} messages in {elapsed:.1f} s ({received / elapsed:.1f} msg/s), "
        f'request("public/test") round trip p50 {statistics.median(rtts):.2f} ms over {len(rtts)} calls, '
        f"{metrics['reconnects']} reconnects, {metrics['messages_sent']} messages sent"
    )
    print(f"Connection closed cleanly (state: {client.get_state()}).")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="Live BTC price feed from a local Deribit emulator.")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long to stream (default 5)")
    args = parser.parse_args()

    exchange = start_exchange()
    try:
        print(f"zen_websocket {zw.__version__} demo: simulated Deribit at {exchange.url} (no network)")
        return stream_prices(exchange.url, args.seconds)
    except KeyboardInterrupt:
        return 130
    finally:
        exchange.stop()


if __name__ == "__main__":
    sys.exit(main())
