"""Subscription bookkeeping and the exchanges' subscribe dialects.

Pure policy: a :class:`SubscriptionSet` remembers which channels a client
wants, and a :class:`Dialect` turns channel lists into the messages an
exchange expects and checks its acknowledgements. The client sends the
:class:`Request` objects, waits ``dialect.min_interval`` between them, tracks
each ``request_id`` with the JSON-RPC correlator and passes the answer to
:meth:`Dialect.check_ack`.

Example::

    dialect = get_dialect("binance")
    wanted = SubscriptionSet()
    dialect.check_capacity(len(wanted), 2)
    for request in dialect.build(["btcusdt@trade", "ethusdt@trade"], subscribe=True):
        ...  # send request.message, await the response with request.request_id
        missing = dialect.check_ack(request, response)
    wanted.add(["btcusdt@trade", "ethusdt@trade"])

    # after a reconnect
    for request in plan_restore(dialect, wanted):
        ...
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from . import jsonrpc
from .errors import ConfigError, SubscriptionError

__all__ = [
    "Channels",
    "Message",
    "Request",
    "SubscriptionSet",
    "Dialect",
    "DeribitDialect",
    "BinanceDialect",
    "CallableDialect",
    "get_dialect",
    "plan_restore",
    "BINANCE_MAX_STREAMS",
    "BINANCE_MIN_INTERVAL",
    "BINANCE_BATCH_SIZE",
    "DERIBIT_MIN_INTERVAL",
    "DERIBIT_BATCH_SIZE",
]

#: What a subscribe call accepts: one channel name or an iterable of them.
Channels = str | Iterable[str]
#: A message as the client sends it: dicts and lists are JSON-encoded.
Message = dict[str, Any] | list[Any] | str | bytes

# Binance spot "WebSocket Streams", WebSocket limits (PROTOCOLS.md): at most
# 1024 streams per connection.
BINANCE_MAX_STREAMS = 1024
# Binance spot "WebSocket Streams" (PROTOCOLS.md): 5 incoming messages per
# second per connection, pings and pongs included; going over disconnects.
# 0.2 s would sit exactly on the limit, and messages sent 0.2 s apart can
# arrive closer together (TCP coalescing, network jitter), so 0.25 s keeps a
# fifth of the budget for pongs and jitter.
BINANCE_MIN_INTERVAL = 0.25
# Binance publishes no cap on streams per SUBSCRIBE message. 200 keeps each
# message small, so restoring a full connection (1024 streams) takes 6
# messages, about 1.5 s at BINANCE_MIN_INTERVAL.
BINANCE_BATCH_SIZE = 200
# Deribit API v2: "Subscribe requests have their own low limit (about 3 per
# second)" (PROTOCOLS.md). 1/3 s plus margin for jitter.
DERIBIT_MIN_INTERVAL = 0.35
# Deribit publishes no cap on channels per subscribe request. 500 keeps a
# request around 20 KB even with long channel names.
DERIBIT_BATCH_SIZE = 500


def _channel_list(channels: Channels) -> list[str]:
    """Validate ``channels`` (one name or an iterable) into a de-duplicated list."""
    items = [channels] if isinstance(channels, str) else list(channels)
    for channel in items:
        if not isinstance(channel, str) or not channel:
            raise TypeError(f"channel names must be non-empty str, got {channel!r}")
    return list(dict.fromkeys(items))


@dataclass(frozen=True)
class Request:
    """One subscription message to send.

    Attributes:
        message: what to send (a dict is JSON-encoded by the client).
        channels: the channels this message (un)subscribes.
        request_id: the id its acknowledgement carries, or None when the
            exchange sends no acknowledgement the client can match.
        method: the request's method, for logs and telemetry.
    """

    message: Message
    channels: list[str] = field(default_factory=list)
    request_id: int | str | None = None
    method: str | None = None


class SubscriptionSet:
    """A thread-safe, insertion-ordered set of channel names.

    Insertion order is kept so that a restore re-subscribes in the order the
    user subscribed (matters when the first batch holds the important feeds).

    Args:
        channels: initial channels.
    """

    def __init__(self, channels: Channels = ()) -> None:
        self._lock = threading.Lock()  # guards _channels
        self._channels: dict[str, None] = {}
        if channels:
            self.add(channels)

    def add(self, channels: Channels) -> list[str]:
        """Add channels.

        Args:
            channels: one name or an iterable of names.

        Returns:
            The channels that were not in the set before, in order.

        Raises:
            TypeError: a channel is not a non-empty str.
        """
        items = _channel_list(channels)
        with self._lock:
            added = [channel for channel in items if channel not in self._channels]
            for channel in added:
                self._channels[channel] = None
        return added

    def remove(self, channels: Channels) -> list[str]:
        """Remove channels.

        Returns:
            The channels that were in the set, in the order given.

        Raises:
            TypeError: a channel is not a non-empty str.
        """
        items = _channel_list(channels)
        with self._lock:
            removed = [channel for channel in items if channel in self._channels]
            for channel in removed:
                del self._channels[channel]
        return removed

    def snapshot(self) -> list[str]:
        """The channels, in insertion order (a copy)."""
        with self._lock:
            return list(self._channels)

    def clear(self) -> list[str]:
        """Remove every channel; returns what was removed."""
        with self._lock:
            removed = list(self._channels)
            self._channels.clear()
        return removed

    def __contains__(self, channel: object) -> bool:
        """True if ``channel`` is in the set."""
        return channel in self._channels

    def __len__(self) -> int:
        """Number of channels."""
        return len(self._channels)

    def __iter__(self) -> Iterator[str]:
        """Iterate over a snapshot (safe while other threads modify the set)."""
        return iter(self.snapshot())

    def __repr__(self) -> str:
        return f"SubscriptionSet({self.snapshot()!r})"


class Dialect:
    """How one exchange (un)subscribes; subclass and override :meth:`build`.

    Attributes:
        name: the dialect's name (``subscription_format`` value).
        max_channels_per_request: channels per message, None for no batching.
        max_channels: channels per connection, None for no limit.
        min_interval: seconds the client waits between two control messages.
    """

    name: str = "dialect"
    max_channels_per_request: int | None = None
    max_channels: int | None = None
    min_interval: float = 0.0

    def build(self, channels: Channels, subscribe: bool = True) -> list[Request]:
        """The messages that (un)subscribe ``channels``.

        Args:
            channels: one name or an iterable of names (duplicates dropped).
            subscribe: True to subscribe, False to unsubscribe.

        Returns:
            The requests to send, in order; empty for no channels.
        """
        raise NotImplementedError

    def check_ack(self, request: Request, response: Any) -> list[str]:
        """The channels of ``request`` that ``response`` does not confirm.

        The default: an error response confirms nothing, anything else all.

        Returns:
            An empty list when all were confirmed.
        """
        if jsonrpc.classify(response) == "error" or not isinstance(response, dict):
            return list(request.channels)
        return []

    def check_capacity(self, current: int, adding: int, channels: Iterable[str] | None = None) -> None:
        """Refuse a subscribe that would exceed ``max_channels`` per connection.

        Args:
            current: channels subscribed now.
            adding: new channels about to be subscribed.
            channels: the new channels, attached to the error.

        Raises:
            SubscriptionError: ``current + adding > max_channels``.
        """
        if self.max_channels is not None and current + adding > self.max_channels:
            raise SubscriptionError(
                f"{self.name}: subscribing {adding} more channel(s) to the {current} already subscribed "
                f"would exceed the limit of {self.max_channels} per connection; use another connection",
                list(channels) if channels is not None else None,
            )

    def needs_auth(self, channel: str) -> bool:
        """True if ``channel`` can only be subscribed after authentication."""
        return False

    def batches(self, channels: list[str]) -> list[list[str]]:
        """``channels`` cut into lists of at most ``max_channels_per_request``."""
        size = self.max_channels_per_request
        if not channels:
            return []
        if size is None:
            return [list(channels)]
        return [channels[start : start + size] for start in range(0, len(channels), size)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class DeribitDialect(Dialect):
    """Deribit API v2 ``public/subscribe`` / ``private/subscribe``.

    Params are ``{"channels": [...]}``; the result lists the channels actually
    (un)subscribed, so any channel missing from it is unconfirmed. Channels
    that need authentication (``user.*`` and ``*.raw``, PROTOCOLS.md) go in
    separate ``private/`` requests after the public ones, so public channels
    are restored even when authentication fails.
    """

    name = "deribit"
    max_channels_per_request: int | None = DERIBIT_BATCH_SIZE
    max_channels: int | None = None
    min_interval = DERIBIT_MIN_INTERVAL

    def needs_auth(self, channel: str) -> bool:
        """True for ``user.*`` channels and ``.raw`` (un-aggregated) channels."""
        # Deribit API v2, subscriptions (PROTOCOLS.md): .raw channels and the
        # user.* channels need an authenticated connection.
        return channel.startswith("user.") or channel.endswith(".raw")

    def build(self, channels: Channels, subscribe: bool = True) -> list[Request]:
        """``public/`` requests for public channels, then ``private/`` ones, batched."""
        items = _channel_list(channels)
        action = "subscribe" if subscribe else "unsubscribe"
        public = [channel for channel in items if not self.needs_auth(channel)]
        private = [channel for channel in items if self.needs_auth(channel)]
        requests: list[Request] = []
        for scope, group in (("public", public), ("private", private)):
            method = f"{scope}/{action}"
            for batch in self.batches(group):
                message = jsonrpc.build_request(method, {"channels": batch})
                requests.append(Request(message, batch, message["id"], method))
        return requests

    def check_ack(self, request: Request, response: Any) -> list[str]:
        """Channels not listed in the response's ``result`` (all of them on an error)."""
        if not isinstance(response, dict) or jsonrpc.classify(response) != "response":
            return list(request.channels)
        result = response.get("result")
        if not isinstance(result, list):
            return list(request.channels)
        confirmed = {channel for channel in result if isinstance(channel, str)}
        return [channel for channel in request.channels if channel not in confirmed]


class BinanceDialect(Dialect):
    """Binance spot stream control: ``{"method": "SUBSCRIBE", "params": [...], "id": N}``.

    The acknowledgement ``{"result": null, "id": N}`` confirms every stream of
    the message; an error ``{"code": n, "msg": "...", "id": N}`` confirms none.
    At most :data:`BINANCE_MAX_STREAMS` streams per connection.
    """

    name = "binance"
    max_channels_per_request: int | None = BINANCE_BATCH_SIZE
    max_channels: int | None = BINANCE_MAX_STREAMS
    min_interval = BINANCE_MIN_INTERVAL

    def build(self, channels: Channels, subscribe: bool = True) -> list[Request]:
        """``SUBSCRIBE``/``UNSUBSCRIBE`` messages, batched."""
        items = _channel_list(channels)
        method = "SUBSCRIBE" if subscribe else "UNSUBSCRIBE"
        requests: list[Request] = []
        for batch in self.batches(items):
            request_id = jsonrpc.next_id()
            message = {"method": method, "params": batch, "id": request_id}
            requests.append(Request(message, batch, request_id, method))
        return requests

    def check_ack(self, request: Request, response: Any) -> list[str]:
        """Nothing missing on a ``result`` response; every stream on an error."""
        if isinstance(response, dict) and jsonrpc.classify(response) == "response":
            return []
        return list(request.channels)


class CallableDialect(Dialect):
    """A user function ``fn(channels, subscribe) -> message`` as a dialect.

    One message carries all channels. If it is a dict with an int or str
    ``"id"``, the client waits for the response with that id and any
    non-error response confirms every channel; otherwise no acknowledgement
    is expected (``request_id`` is None).

    Args:
        fn: builds the message from the channel list and the direction.

    Raises:
        ConfigError: ``fn`` is not callable (option ``subscription_format``).
    """

    def __init__(self, fn: Callable[[list[str], bool], Any]) -> None:
        if not callable(fn):
            raise ConfigError("subscription_format", f"must be 'deribit', 'binance' or a callable, got {fn!r}")
        self.fn = fn
        self.name = getattr(fn, "__name__", "custom")

    def build(self, channels: Channels, subscribe: bool = True) -> list[Request]:
        """One request built by ``fn``.

        Raises:
            TypeError: ``fn`` returned something that is not a dict, list, str
                or bytes.
        """
        items = _channel_list(channels)
        if not items:
            return []
        message = self.fn(list(items), subscribe)
        if not isinstance(message, (dict, list, str, bytes)):
            raise TypeError(
                f"subscription_format callable {self.name} returned {type(message).__name__}; "
                "expected a dict, list, str or bytes"
            )
        request_id: int | str | None = None
        method: str | None = None
        if isinstance(message, dict):
            candidate = message.get("id")
            if isinstance(candidate, (int, str)) and not isinstance(candidate, bool):
                request_id = candidate
            if isinstance(message.get("method"), str):
                method = message["method"]
        return [Request(message, items, request_id, method)]

    def check_ack(self, request: Request, response: Any) -> list[str]:
        """Nothing missing unless an acknowledgement was expected and is an error."""
        if request.request_id is None:
            return []
        return super().check_ack(request, response)

    def __repr__(self) -> str:
        return f"CallableDialect({self.fn!r})"


_DIALECTS: dict[str, Callable[[], Dialect]] = {"deribit": DeribitDialect, "binance": BinanceDialect}


def get_dialect(fmt: str | Dialect | Callable[[list[str], bool], Any]) -> Dialect:
    """The dialect for a ``subscription_format`` option value.

    Args:
        fmt: ``"deribit"``, ``"binance"``, a :class:`Dialect` instance, or a
            callable ``(channels, subscribe) -> message``.

    Returns:
        A dialect (a new one for names and callables).

    Raises:
        ConfigError: an unknown name or an unusable value
            (option ``subscription_format``).
    """
    if isinstance(fmt, Dialect):
        return fmt
    if isinstance(fmt, str):
        factory = _DIALECTS.get(fmt)
        if factory is None:
            raise ConfigError(
                "subscription_format",
                f"unknown subscription format {fmt!r}; expected one of {', '.join(_DIALECTS)} or a callable",
            )
        return factory()
    if callable(fmt):
        return CallableDialect(fmt)
    raise ConfigError("subscription_format", f"must be 'deribit', 'binance' or a callable, got {fmt!r}")


def plan_restore(dialect: Dialect, channels: Channels | SubscriptionSet) -> list[Request]:
    """The subscribe requests that restore ``channels`` after a reconnect.

    Args:
        dialect: the connection's dialect.
        channels: what to restore (a :class:`SubscriptionSet` is snapshotted).

    Returns:
        The batched requests, in subscription order (Deribit: public first).

    Raises:
        SubscriptionError: more channels than the dialect allows per connection.
    """
    items = channels.snapshot() if isinstance(channels, SubscriptionSet) else _channel_list(channels)
    dialect.check_capacity(0, len(items), items)
    return dialect.build(items, True)
