"""Binance combined streams: several streams on one connection, plus a live SUBSCRIBE.

A combined-stream URL (``/stream?streams=a/b``) wraps every event as
``{"stream": name, "data": event}``, so one connection can carry many
symbols and the consumer still knows which stream each event came from.
``subscription_format="binance"`` adds streams to the open connection with
Binance's ``SUBSCRIBE`` method (acknowledged, and restored after a
reconnect); the rate limiter keeps the client under Binance's 5 incoming
messages per second.

Runs offline against ``zen_websocket.testing.BinanceEmulator``::

    python examples/binance_combined_streams.py

Against Binance: ``wss://stream.binance.com:9443/stream?streams=btcusdt@trade/ethusdt@trade``.
"""

from __future__ import annotations

import json
from collections import Counter

import zen_websocket as zw
from zen_websocket.testing import BinanceEmulator

STREAMS = ["btcusdt@trade", "ethusdt@trade"]


def main() -> int:
    with BinanceEmulator() as binance:
        url = f"{binance.url}/stream?streams={'/'.join(STREAMS)}"
        with zw.connect(
            url,
            subscription_format="binance",
            rate_limiter=zw.rate_limiter.binance_stream_preset(),  # 5 messages/s, as Binance allows
        ) as client:
            print("connected with", ", ".join(STREAMS))
            # A third stream on the same connection, without reconnecting.
            client.subscribe("solusdt@trade", wait=True)
            print("live SUBSCRIBE acknowledged; streams now:", sorted(binance.all_subscriptions))

            handles = [binance.start_trades(stream, interval=0.01, count=3) for stream in (*STREAMS, "solusdt@trade")]
            per_stream: Counter[str] = Counter()
            for _ in range(9):
                event = json.loads(client.recv(timeout=5))  # {"stream": ..., "data": {...}}
                trade = event["data"]
                per_stream[event["stream"]] += 1
                print(f"{event['stream']:<15} trade #{trade['t']} {trade['s']} @ {trade['p']}")
            for handle in handles:
                handle.stop()
            print("events per stream:", dict(sorted(per_stream.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
