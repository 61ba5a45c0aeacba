"""Token-bucket rate limiting, exchange cost functions, presets and a named registry.

A :class:`RateLimiter` holds up to ``burst`` tokens and refills continuously at
``rate`` tokens per ``interval`` seconds. Each message costs ``cost(message)``
tokens. The limiter owns no thread and no timer: the refill is computed from
the injected clock whenever the bucket is looked at, so an idle limiter costs
nothing and tests drive time with a fake clock.

Exchanges with several limits get a :class:`MultiRateLimiter`, which routes
each message to one or more buckets and takes from all of them or none.

Example::

    import zen_websocket as zw

    limiter = zw.rate_limiter.deribit_preset()
    client = zw.connect(url, rate_limiter=limiter)       # sends wait for credits

    # The named registry of the Elixir original:
    zw.rate_limiter.init("orders", rate=10, interval=1.0)
    if zw.rate_limiter.consume("orders"):
        ...

This module is the public face; the code lives in :mod:`zen_websocket.ratelimit`,
one module per concern (bucket, multi, window, costs, exchanges, presets,
registry).
Every exchange number is in :mod:`zen_websocket.ratelimit.exchanges`, each
citing its source.
"""

from __future__ import annotations

# The package's public API, kept in one list (its __all__): a name added
# there is public here too, so this module can never drift from it.
from .ratelimit import *  # noqa: F403
from .ratelimit import __all__ as __all__
from .ratelimit.bucket import _bench_consume  # noqa: F401  (the benchmark hook, kept where it was)
