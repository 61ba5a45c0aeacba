"""A Deribit price feed with Deribit's heartbeat and authentication.

What a Deribit client needs, against a local emulator of the exchange
(``zen_websocket.testing.DeribitEmulator`` on 127.0.0.1, no network):

- **auth**: a ``connect`` callback calls ``public/auth`` after every
  (re)connect, before the subscriptions are restored (Deribit tokens die
  with their connection);
- **heartbeat**: ``heartbeat_config={"type": "deribit", ...}`` sends
  ``public/set_heartbeat`` on every connection and answers each
  ``test_request`` with ``public/test`` (or Deribit closes the connection);
- **subscriptions**: a public price index and a private channel, restored
  after a reconnect.

Run it with ``python examples/deribit_price_feed.py``. Against the real
exchange use ``wss://test.deribit.com/ws/api/v2`` and your API key.
"""

from __future__ import annotations

import json
import threading

import zen_websocket as zw
from zen_websocket.testing import DeribitEmulator

PRICE = "deribit_price_index.btc_usd"
ORDERS = "user.orders.any.any.raw"  # private: sent as private/subscribe, needs auth
CLIENT_ID, CLIENT_SECRET = "example_id", "example_secret"


def authenticate(client: zw.Client) -> None:
    """Runs after every handshake, before subscriptions are restored."""
    result = client.request(
        "public/auth",
        {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": CLIENT_SECRET},
    )
    print(f"authenticated (token expires in {result['expires_in']} s)")


def main() -> int:
    with DeribitEmulator(credentials={CLIENT_ID: CLIENT_SECRET}) as exchange:
        reconnected = threading.Event()
        with zw.connect(
            exchange.url,
            heartbeat_config={"type": "deribit", "interval": 10},  # Deribit's minimum is 10 s
            on_connect=authenticate,
            on_reconnect=lambda client, attempt: reconnected.set(),
            retry_delay=0.05,  # a quick reconnect for the demonstration below
        ) as client:
            client.subscribe([PRICE, ORDERS], wait=True)  # raises SubscriptionError if refused
            print("subscribed:", client.subscriptions)

            for i, price in enumerate((97_000.0, 97_012.5, 96_990.25)):
                exchange.publish(PRICE, {"index_name": "btc_usd", "price": price, "timestamp": 1_700_000_000_000 + i})
                update = json.loads(client.recv(timeout=5))
                print(f"{update['params']['channel']}: {update['params']['data']['price']:,.2f}")

            # Deribit asks for proof of life; the client answers it by itself.
            exchange.send_test_request()
            exchange.wait_for(lambda: any(r.get("method") == "public/test" for r in exchange.requests), timeout=5)
            health = client.get_heartbeat_health()
            print(f"heartbeat: {health['type']} every {health['interval']:g} s, test_request answered")

            # The exchange drops the connection: the client reconnects,
            # authenticates again and restores both subscriptions.
            exchange.drop_connections()
            if not reconnected.wait(5):
                print("no reconnect within 5 s")
                return 1
            exchange.wait_for(lambda: exchange.all_subscriptions >= {PRICE, ORDERS}, timeout=5)
            print("after the reconnect, subscribed again to:", sorted(exchange.all_subscriptions))
            exchange.publish(ORDERS, {"order_id": "ETH-1", "order_state": "filled"})
            print("private update:", json.loads(client.recv(timeout=5))["params"]["data"])
            print(f"{client.get_state_metrics()['reconnects']} reconnect, state {client.get_state()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
