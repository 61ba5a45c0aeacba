"""A process-wide registry of named limiters (the Elixir original's API).

Example::

    from zen_websocket import rate_limiter

    rate_limiter.init("orders", rate=10, interval=1.0)
    if rate_limiter.consume("orders"):
        ...
    rate_limiter.shutdown("orders")
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ..errors import ConfigError
from .bucket import Clock, RateLimiter
from .costs import CostFunction, simple_cost
from .multi import MultiRateLimiter

__all__ = ["init", "register", "get", "consume", "acquire", "retry_after", "status", "shutdown", "names"]

_registry_lock = threading.Lock()  # guards _registry
_registry: dict[str, RateLimiter | MultiRateLimiter] = {}


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError("name", f"must be a non-empty str, got {name!r}")
    return name


def register(name: str, limiter: RateLimiter | MultiRateLimiter, *, replace: bool = False) -> None:
    """Register an existing limiter (e.g. a preset) under ``name``.

    Raises:
        ConfigError: ``name`` is taken and ``replace`` is false, or
            ``limiter`` is not a limiter.
    """
    _check_name(name)
    if not isinstance(limiter, (RateLimiter, MultiRateLimiter)):
        raise ConfigError("limiter", f"must be a RateLimiter or MultiRateLimiter, got {type(limiter).__name__}")
    with _registry_lock:
        if name in _registry and not replace:
            raise ConfigError(
                "name", f"a rate limiter named {name!r} already exists; shutdown({name!r}) it or pass replace=True"
            )
        _registry[name] = limiter


def init(
    name: str,
    rate: float,
    interval: float = 1.0,
    burst: float | None = None,
    cost: CostFunction = simple_cost,
    *,
    replace: bool = False,
    clock: Clock = time.monotonic,
) -> RateLimiter:
    """Create a :class:`RateLimiter` and register it under ``name``.

    An existing name is an error unless ``replace=True``: two parts of a
    program silently sharing (or stealing) one budget is the bug this
    prevents.

    Returns:
        The new limiter.

    Raises:
        ConfigError: invalid numbers (the option is named), or the name is taken.
    """
    limiter = RateLimiter(rate, interval, burst, cost, clock=clock, name=_check_name(name))
    register(name, limiter, replace=replace)
    return limiter


def get(name: str) -> RateLimiter | MultiRateLimiter:
    """The limiter registered under ``name``.

    Raises:
        KeyError: no limiter has that name.
    """
    with _registry_lock:
        try:
            return _registry[name]
        except KeyError:
            raise KeyError(
                f"no rate limiter named {name!r}; create it with rate_limiter.init({name!r}, rate=...)"
            ) from None


def consume(name: str, message: Any = None) -> bool:
    """:meth:`RateLimiter.consume` on the limiter named ``name``."""
    return get(name).consume(message)


def acquire(name: str, message: Any = None, timeout: float | None = None) -> bool:
    """:meth:`RateLimiter.acquire` on the limiter named ``name``."""
    return get(name).acquire(message, timeout)


def retry_after(name: str, message: Any = None) -> float:
    """:meth:`RateLimiter.retry_after` on the limiter named ``name``."""
    return get(name).retry_after(message)


def status(name: str) -> dict[str, Any]:
    """:meth:`RateLimiter.status` of the limiter named ``name``."""
    return get(name).status()


def shutdown(name: str) -> bool:
    """Forget the limiter named ``name``; True if it existed.

    Holders of the object can keep using it; only the name is released.
    """
    with _registry_lock:
        return _registry.pop(name, None) is not None


def names() -> list[str]:
    """Names of the registered limiters, in registration order."""
    with _registry_lock:
        return list(_registry)
