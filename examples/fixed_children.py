"""Fixed children: a known set of supervised connections, each with an id.

Two Deribit connections, one per currency, declared up front and connected
together when the ``with`` block starts; each is restarted if it ends on its
own (here: the exchange closes one with a fatal code). ``get_client(id)``
always returns the current client, so the code below never holds a stale one.

Runs offline: a Deribit emulator on 127.0.0.1 stands in for the exchange::

    python examples/fixed_children.py
"""

from __future__ import annotations

import json
import threading

import zen_websocket as zw
from zen_websocket.testing import DeribitEmulator


def main() -> int:
    prices: dict[str, float] = {}
    got_both = threading.Condition()

    def on_message(client: zw.Client, message: str) -> None:
        data = json.loads(message)
        if data.get("method") == "subscription":
            with got_both:
                prices[client.name] = data["params"]["data"]["price"]
                got_both.notify_all()

    restarted = threading.Event()

    with DeribitEmulator() as exchange:
        # Options shared by both children; callbacks given as options carry over to restarted clients.
        options = {"on_message": on_message, "retry_delay": 0.05}
        children = [
            {"url": exchange.url, "id": "btc", **options},
            {"url": exchange.url, "id": "eth", **options},
        ]
        with zw.ClientSupervisor(
            children=children, on_restart=lambda supervisor, child_id, client: restarted.set()
        ) as supervisor:
            for currency in ("btc", "eth"):
                supervisor.get_client(currency).subscribe([f"deribit_price_index.{currency}_usd"], wait=True)

            # The exchange ends btc's connection with a fatal code (1003: the client is at fault,
            # so the client itself does not retry): the supervisor replaces it.
            exchange.connections[0].close(1003, "unsupported data")
            assert restarted.wait(10), "btc was not restarted"

            exchange.publish("deribit_price_index.btc_usd", {"price": 97000.0})
            exchange.publish("deribit_price_index.eth_usd", {"price": 3500.0})
            with got_both:
                assert got_both.wait_for(lambda: len(prices) == 2, timeout=5), prices
            print("prices:", dict(sorted(prices.items())))
            print(
                "states:",
                {child_id: supervisor.get_client(child_id).get_state().value for child_id in supervisor.ids()},
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
