# %% [markdown]
# # zen_websocket in a notebook
#
# A walk-through in cells (the `# %%` markers: open it as a notebook in VS Code,
# or with `jupytext --to notebook`), runnable as a plain script too:
#
#     python examples/notebook_walkthrough.py
#
# A local Deribit emulator stands in for the exchange, so every cell runs
# offline. Against the real one only the URL changes.

# %%
import inspect
import threading
import warnings

import zen_websocket as zw
from zen_websocket.testing import DeribitEmulator

exchange = DeribitEmulator().start()  # wss://www.deribit.com/ws/api/v2, on 127.0.0.1
print("exchange at", exchange.url)

# %% [markdown]
# ## Connect, and discover the options
# `help(zw.connect)` (or Shift-Tab in Jupyter) lists every option with its default.

# %%
client = zw.connect(exchange.url, name="walkthrough")
print(client, "->", client.get_state())
options = [name for name in inspect.signature(zw.connect).parameters if name != "url"]
print(len(options), "options, e.g.", ", ".join(options[:6]), "...")

# %% [markdown]
# ## Ask and answer: JSON-RPC

# %%
print("public/test ->", client.request("public/test"))

# %% [markdown]
# ## Subscribe and read

# %%
client.subscribe("deribit_price_index.btc_usd", wait=True)
for price in (97_000.0, 97_050.0):
    exchange.publish("deribit_price_index.btc_usd", {"index_name": "btc_usd", "price": price})
for _ in range(2):
    print("update:", client.recv_json(timeout=5)["params"]["data"])

# %% [markdown]
# ## Callbacks instead of the queue
# A `message` callback is called as `fn(client, data)`; one with another
# signature is refused when you register it (it would lose every message).

# %%
seen = threading.Event()


def on_message(client, data):
    print("callback got:", data[:60], "...")
    seen.set()


try:
    client.on("message", lambda data: print(data))  # the wrong signature
except TypeError as exc:
    print("refused:", exc)
client.on("message", on_message)
exchange.publish("deribit_price_index.btc_usd", {"index_name": "btc_usd", "price": 97_100.0})
seen.wait(5)
client.off("message", on_message)

# %% [markdown]
# ## Mistakes caught at once
# Typos get a suggestion; times are seconds, and a value that looks like
# milliseconds gets a warning.

# %%
try:
    zw.Client(exchange.url, heartbeat={"type": "ping"})
except zw.ConfigError as exc:
    print("ConfigError:", exc)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    zw.Client(exchange.url, timeout=5000)
print("warning:", caught[0].message)

# %% [markdown]
# ## Re-running a cell
# `client = zw.connect(...)` run twice leaves the first client connected:
# `zw.open_clients()` shows what is open, `zw.close_all()` closes it all.

# %%
client = zw.connect(exchange.url, name="walkthrough")  # the cell above, run again
print("open:", zw.open_clients())
print("closed", zw.close_all(), "clients")
print("open now:", zw.open_clients())

# %% [markdown]
# ## Why did it end?

# %%
print("state:", client.get_state(), "| close_code:", client.close_code, "| close_reason:", repr(client.close_reason))
exchange.stop()
