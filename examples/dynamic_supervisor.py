"""A dynamic supervisor: connections started at run time, replaced when they end on their own.

A program that opens one connection per instrument as it goes (here: one per
currency) hands them to a ``zw.ClientSupervisor``. When a connection gives up
(its reconnects ran out) or hits a fatal error, the supervisor starts a new
client with the same id and options, subscribes it to the channels the old
one had, and fires ``restart``. Requests go through the healthiest child with
``send_balanced``.

Runs offline: a Deribit emulator on 127.0.0.1 stands in for the exchange::

    python examples/dynamic_supervisor.py
"""

from __future__ import annotations

import threading

import zen_websocket as zw
from zen_websocket.testing import DeribitEmulator


def main() -> int:
    restarts: list[str] = []
    both_restarted = threading.Event()

    def on_restart(supervisor: zw.ClientSupervisor, child_id: str, client: zw.Client) -> None:
        restarts.append(child_id)
        print(f"restarted {child_id}: {client.get_state()}, subscribed to {client.subscriptions}")
        if len(restarts) == 2:
            both_restarted.set()

    with (
        DeribitEmulator() as exchange,
        zw.ClientSupervisor(
            max_restarts=3,  # more than 3 restarts of one child within 5 s stop that child
            max_seconds=5.0,
            connect_rate=(10, 1.0),  # at most 10 connection attempts per second to the host, all children together
            on_restart=on_restart,
        ) as supervisor,
    ):
        # Started at run time; retry_count=0 makes this demo's children give up at the first loss.
        for currency in ("btc", "eth"):
            client = supervisor.start_client(exchange.url, id=currency, retry_count=0)
            client.subscribe([f"deribit_price_index.{currency}_usd"], wait=True)
        print("children:", supervisor.ids())

        exchange.drop_connections()  # the exchange vanishes: both children give up...
        assert both_restarted.wait(10), "the children were not restarted"  # ...and are replaced

        btc = supervisor.get_client("btc")  # always the current client
        exchange.publish("deribit_price_index.btc_usd", {"price": 97000.0})
        print("btc:", btc.recv_json(timeout=5)["params"]["data"])

        # A request through the child with the fewest pending requests.
        future = supervisor.send_balanced(zw.jsonrpc.build_request("public/test"))
        assert future is not None
        print("public/test:", future.result(timeout=5)["result"])

        supervisor.stop_client("eth")  # stopped by us: never restarted
        print("children:", supervisor.ids())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
