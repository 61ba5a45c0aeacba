"""Subscription bookkeeping and the exchanges' subscribe dialects.

Pure policy: a :class:`SubscriptionSet` remembers which channels a client
wants, and a :class:`Dialect` turns channel lists into the messages an
exchange expects and checks its acknowledgements. The client sends the
:class:`Request` objects, waits ``dialect.min_interval`` between them, tracks
each ``request_id`` with the JSON-RPC correlator and passes the answer to
:meth:`Dialect.check_ack`; channels it did not confirm stay in the restore set
when :meth:`Dialect.classify_refusal` calls the refusal transient (Deribit:
not authorized yet, rate limited) and are dropped otherwise.

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

Two hooks let a dialect look at incoming text the session already inspects,
without a ``message`` callback (which would divert every message from the
user's queue). Both start with a cheap substring test, so market data pays
one ``in`` per marker and is never decoded for them:

- **Acknowledgements without a JSON-RPC id** (``ack_markers`` +
  :meth:`Dialect.match_ack`): the dialect says which request a message
  answers (OKX ``event: subscribe``, one per channel; Bybit ``success`` by
  ``req_id``) and when the request is fully answered; the session then
  completes the request the correlator tracks under that id, and
  :meth:`Dialect.check_ack` judges the answer as usual.
- **Control events** (``event_markers`` + :meth:`Dialect.event_action`):
  the dialect names an action, ``"rotate"`` (replace the connection
  make-before-break: Binance ``serverShutdown``) or ``"renew"`` (the driver
  calls :meth:`Dialect.renew`, which must not block, then rotates: Binance
  ``listenKeyExpired``). The event is still delivered to the user.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from . import jsonrpc
from .errors import ConfigError, SubscriptionError

__all__ = [
    "Channels",
    "channel_list",
    "Message",
    "Request",
    "Refusal",
    "SubscriptionSet",
    "Dialect",
    "DeribitDialect",
    "BinanceDialect",
    "CallableDialect",
    "OkxDialect",
    "BybitDialect",
    "Ack",
    "okx_arg",
    "okx_channel",
    "get_dialect",
    "plan_restore",
    "BINANCE_MAX_STREAMS",
    "BINANCE_MIN_INTERVAL",
    "BINANCE_BATCH_SIZE",
    "DERIBIT_MIN_INTERVAL",
    "DERIBIT_BATCH_SIZE",
    "OKX_BATCH_SIZE",
    "OKX_MIN_INTERVAL",
    "BYBIT_BATCH_SIZE",
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
# OKX v5 (PROTOCOLS.md; OKX "WebSocket" overview): one message may carry many
# args, up to 64 KB in all; 100 args stays far below that.
OKX_BATCH_SIZE = 100
# OKX v5, WebSocket limits: subscribe/unsubscribe/login requests count
# against 480 per hour per connection and connections against 3 per second
# per IP; spacing restores like Deribit's keeps bursts small.
OKX_MIN_INTERVAL = 0.35
# Bybit v5 "Connect" (PROTOCOLS.md; Bybit docs, "How to subscribe"): spot
# accepts at most 10 args per subscribe request.
BYBIT_BATCH_SIZE = 10
# Deribit API v2 error codes (PROTOCOLS.md): a subscribe refused with one of
# these may succeed on a later connection. 13009 unauthorized: the connection
# is not (or no longer) authenticated, e.g. a re-auth that failed; 10028
# too_many_requests: Deribit then ends the session, and the restore after the
# reconnect subscribes again.
DERIBIT_UNAUTHORIZED = 13009
DERIBIT_TOO_MANY_REQUESTS = 10028
# Deribit API v2: methods that drop every subscription of the connection.
DERIBIT_UNSUBSCRIBE_ALL = frozenset({"public/unsubscribe_all", "private/unsubscribe_all"})


def channel_list(channels: Channels) -> list[str]:
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


@dataclass(frozen=True)
class Refusal:
    """Why a subscribe was not confirmed, and whether asking again later can help.

    Attributes:
        transient: True when a later connection may be granted the channels
            (not authorized yet, rate limited): they stay in the restore set.
            False (unknown channel, invalid params): they are dropped from
            it, since every restore would be refused again.
        reason: what the server said, in words for the ``SubscriptionError``.
    """

    transient: bool
    reason: str


def _error_code_and_text(response: Any) -> tuple[int | None, str] | None:
    """``(code, message)`` of a JSON-RPC error response, None for anything else."""
    if jsonrpc.classify(response) != "error":
        return None
    error = jsonrpc.error_from_response(response)
    return error.code, error.message


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
        items = channel_list(channels)
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
        items = channel_list(channels)
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

    def classify_refusal(self, request: Request, response: Any) -> Refusal:
        """Whether channels that ``response`` did not confirm may be granted on a later connection.

        The client keeps transient refusals in the restore set and drops
        permanent ones. The default: every refusal is permanent.

        Args:
            request: the subscribe request.
            response: its answer (an error response, or a result that leaves
                channels out).

        Returns:
            The :class:`Refusal`.
        """
        error = _error_code_and_text(response)
        if error is None:
            return Refusal(False, "not confirmed by the server")
        return Refusal(False, f"refused with [{error[0]}] {error[1]}")

    def unsubscribes_all(self, message: Any) -> bool:
        """True if ``message``, sent by the user, drops every subscription of the connection.

        The client then empties its restore set, so that nothing comes back
        after the next reconnect. The default: no message does.
        """
        return False

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

    # -- hooks on incoming text (see the module docstring) -----------------

    #: Every acknowledgement this dialect matches itself contains one of these
    #: substrings. Empty (the default): acknowledgements carry the request's
    #: ``"id"`` and the correlator matches them.
    ack_markers: tuple[str, ...] = ()
    #: Every control event this dialect reacts to contains one of these
    #: substrings. Empty: none.
    event_markers: tuple[str, ...] = ()

    def match_ack(self, message: dict[str, Any]) -> Ack | None:
        """Which request ``message`` acknowledges, for dialects with ``ack_markers``.

        Called in the receive thread for messages that contain a marker; must
        be quick and must not block.

        Returns:
            None when ``message`` is no acknowledgement of this dialect (it
            goes on to the user), else an :class:`Ack`.
        """
        return None

    def forget_acks(self) -> None:
        """Drop the bookkeeping of acknowledgements still expected (the connection is gone)."""

    def event_action(self, message: dict[str, Any]) -> str | None:
        """The action a control event asks for: ``"rotate"``, ``"renew"`` or None.

        Called in the receive thread for messages that contain one of
        ``event_markers``; the message is delivered to the user either way.
        """
        return None

    def renew(self, message: dict[str, Any]) -> bool:
        """Carry out a ``"renew"`` event before the rotation (e.g. mark a listen key expired).

        Called by the driver in the receive thread: it must not block (do the
        slow part in the callable ``url``, which the rotation calls).

        Returns:
            True to rotate now, False to ignore the event (e.g. it names an
            older key than the current one).
        """
        return False

    def __call__(self, channels: list[str], subscribe: bool) -> Message:
        """The one message that (un)subscribes ``channels``.

        A dialect is a valid ``subscription_format`` value wherever a callable
        ``(channels, subscribe) -> message`` is; the client itself always uses
        :meth:`build` (which batches and tracks acknowledgements).

        Raises:
            ValueError: the channels need more than one message.
        """
        requests = self.build(channels, subscribe)
        if len(requests) != 1:
            raise ValueError(f"{self.name}: {len(requests)} messages needed; use build()")
        return requests[0].message

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@dataclass(frozen=True)
class Ack:
    """What :meth:`Dialect.match_ack` recognised in an incoming message.

    Attributes:
        request_id: the id the acknowledged request is tracked under, or
            None for an acknowledgement nobody waits for any more (it is
            swallowed all the same).
        done: the request is fully answered: complete it with ``response``.
            False for a partial answer (OKX acknowledges channel by channel).
        response: what :meth:`Dialect.check_ack` receives when ``done``.
    """

    request_id: int | str | None
    done: bool = True
    response: Any = None


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
        items = channel_list(channels)
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

    def classify_refusal(self, request: Request, response: Any) -> Refusal:
        """13009 (unauthorized) and 10028 (too_many_requests) are transient; anything else is permanent.

        A channel left out of a successful result does not exist (Deribit
        answers ``"result": []`` for an unknown instrument,
        https://github.com/adampointer/go-deribit/issues/16): permanent.
        """
        error = _error_code_and_text(response)
        if error is None:
            return Refusal(False, "not in the server's result: no such channel on Deribit")
        code, text = error
        if code == DERIBIT_UNAUTHORIZED:
            private = [channel for channel in request.channels if self.needs_auth(channel)]
            return Refusal(
                True,
                f"[{code}] {text}: {', '.join(private) or 'these channels'} need an authenticated connection "
                "(user.* and *.raw channels); authenticate with public/auth in a connect callback, as "
                "zen_websocket.platforms.deribit.options(client_id, client_secret) does",
            )
        if code == DERIBIT_TOO_MANY_REQUESTS:
            return Refusal(True, f"[{code}] {text}: rate limited; Deribit ends the session and the reconnect restores")
        return Refusal(False, f"refused with [{code}] {text}")

    def unsubscribes_all(self, message: Any) -> bool:
        """True for ``public/unsubscribe_all`` and ``private/unsubscribe_all`` (a dict or its JSON text)."""
        # A cheap test first: this runs on every send.
        if isinstance(message, str) and "unsubscribe_all" not in message:
            return False
        if isinstance(message, bytes) and b"unsubscribe_all" not in message:
            return False
        if isinstance(message, (str, bytes)):
            try:
                message = json.loads(message)
            except ValueError:
                return False
        return isinstance(message, dict) and message.get("method") in DERIBIT_UNSUBSCRIBE_ALL


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

    def __init__(
        self,
        *,
        rotate_on_shutdown: bool = False,
        on_listen_key_expired: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        """Args:
        rotate_on_shutdown: a ``serverShutdown`` event ("reconnect soon",
            PROTOCOLS.md) asks for a make-before-break rotation.
        on_listen_key_expired: called (receive thread, must not block) with a
            ``listenKeyExpired`` event; returning True renews: the connection
            rotates, and the client's callable ``url`` hands out a new key.
        """
        self.rotate_on_shutdown = rotate_on_shutdown
        self.on_listen_key_expired = on_listen_key_expired
        markers: tuple[str, ...] = ()
        if rotate_on_shutdown:
            markers += ('"serverShutdown"',)
        if on_listen_key_expired is not None:
            markers += ('"listenKeyExpired"',)
        self.event_markers = markers

    @staticmethod
    def _event(message: dict[str, Any]) -> dict[str, Any]:
        # Combined streams wrap events as {"stream": ..., "data": {...}}; the
        # WebSocket API as {"event": {...}} (PROTOCOLS.md, Binance docs).
        for wrapper in ("data", "event"):
            inner = message.get(wrapper)
            if isinstance(inner, dict) and "e" in inner:
                return inner
        return message

    def event_action(self, message: dict[str, Any]) -> str | None:
        """``"rotate"`` for ``serverShutdown``, ``"renew"`` for ``listenKeyExpired`` (as configured)."""
        kind = self._event(message).get("e")
        if kind == "serverShutdown" and self.rotate_on_shutdown:
            return "rotate"
        if kind == "listenKeyExpired" and self.on_listen_key_expired is not None:
            return "renew"
        return None

    def renew(self, message: dict[str, Any]) -> bool:
        """Hand a ``listenKeyExpired`` event to ``on_listen_key_expired``."""
        callback = self.on_listen_key_expired
        return bool(callback(self._event(message))) if callback is not None else False

    def __repr__(self) -> str:
        return f"BinanceDialect(rotate_on_shutdown={self.rotate_on_shutdown})"

    def build(self, channels: Channels, subscribe: bool = True) -> list[Request]:
        """``SUBSCRIBE``/``UNSUBSCRIBE`` messages, batched."""
        items = channel_list(channels)
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
        items = channel_list(channels)
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


def okx_arg(channel: str) -> dict[str, str]:
    """The OKX subscription arg for a channel name.

    ``"tickers:BTC-USDT"`` is ``{"channel": "tickers", "instId": "BTC-USDT"}``;
    ``"instruments:instType=SPOT"`` (``key=value`` pairs joined by ``&``)
    gives those keys; a bare ``"status"`` is ``{"channel": "status"}``. Never
    raises: whatever follows the first ``:`` without ``=`` is the instId.
    """
    name, sep, rest = channel.partition(":")
    arg = {"channel": name}
    if not sep:
        return arg
    if "=" not in rest:
        arg["instId"] = rest
        return arg
    for pair in rest.split("&"):
        key, _, value = pair.partition("=")
        if key:
            arg[key] = value
    return arg


def okx_channel(arg: Mapping[str, Any]) -> str:
    """The canonical channel name of an OKX arg (the inverse of :func:`okx_arg`)."""
    name = str(arg.get("channel", ""))
    rest = {str(k): str(v) for k, v in arg.items() if k != "channel"}
    if not rest:
        return name
    if set(rest) == {"instId"}:
        return f"{name}:{rest['instId']}"
    return name + ":" + "&".join(f"{key}={value}" for key, value in sorted(rest.items()))


@dataclass
class _Expected:
    """An OKX request waiting for its per-channel answers (``_lock`` of the dialect)."""

    op: str
    names: dict[str, str]  # canonical name -> the name the user gave, in order
    remaining: list[str]  # canonical names not answered yet, in order
    refused: list[str] = field(default_factory=list)
    errors: list[Any] = field(default_factory=list)


class OkxDialect(Dialect):
    """OKX v5 public channels: ``{"id": ..., "op": "subscribe", "args": [{"channel": ..., "instId": ...}]}``.

    Channel names are ``"<channel>:<instId>"`` (see :func:`okx_arg`). OKX
    acknowledges channel by channel, ``{"event": "subscribe", "arg": {...},
    "connId": ...}``, with no request id (PROTOCOLS.md), and refuses one
    with ``{"event": "error", "code": "60018", "msg": ...}``, naming no arg
    either. So this dialect keeps the channels each request still waits for:
    an ack confirms its channel in the oldest request that waits for it; an
    error refuses the channel its text names, else the first unanswered one
    (OKX answers the args of a message in order); an ``"id"``, when OKX
    echoes it, picks the request. The request is complete when every channel
    is answered. One instance per client: the bookkeeping is per connection.
    """

    name = "okx"
    max_channels_per_request: int | None = OKX_BATCH_SIZE
    max_channels: int | None = None
    min_interval = OKX_MIN_INTERVAL
    ack_markers = ('"event"',)
    # A bound on requests remembered without an answer (acks that never came
    # and were not cleared by a disconnect): the oldest are forgotten.
    MAX_EXPECTED = 1024

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards _expected
        self._expected: OrderedDict[str, _Expected] = OrderedDict()

    def build(self, channels: Channels, subscribe: bool = True) -> list[Request]:
        """``subscribe``/``unsubscribe`` messages, batched; their answers are expected from now on."""
        items = channel_list(channels)
        op = "subscribe" if subscribe else "unsubscribe"
        requests: list[Request] = []
        for batch in self.batches(items):
            # OKX ids are 1-32 alphanumeric characters.
            request_id = f"zw{jsonrpc.next_id()}"
            args = [okx_arg(channel) for channel in batch]
            names = {okx_channel(arg): channel for arg, channel in zip(args, batch, strict=True)}
            with self._lock:
                self._expected[request_id] = _Expected(op, names, list(names))
                while len(self._expected) > self.MAX_EXPECTED:
                    self._expected.popitem(last=False)
            requests.append(Request({"id": request_id, "op": op, "args": args}, batch, request_id, op))
        return requests

    def match_ack(self, message: dict[str, Any]) -> Ack | None:
        """A per-channel ack or error answering one of our requests; None for anything else."""
        event = message.get("event")
        if event not in ("subscribe", "unsubscribe", "error"):
            return None
        echoed = message.get("id")
        with self._lock:
            if event == "error":
                found = self._waiting_for_error(echoed, message)
                if found is None:
                    return None  # not ours (a login error, say): the user sees it
                request_id, expected, name = found
                expected.refused.append(name)
                expected.errors.append({"code": message.get("code"), "msg": message.get("msg")})
            else:
                arg = message.get("arg")
                name = okx_channel(arg) if isinstance(arg, Mapping) else ""
                found_ack = self._waiting_for(event, name, echoed)
                if found_ack is None:
                    return Ack(None)  # an ack nobody waits for (timed out): swallowed
                request_id, expected = found_ack
            expected.remaining.remove(name)
            if expected.remaining:
                return Ack(request_id, done=False)
            del self._expected[request_id]
        refused = [expected.names[n] for n in expected.refused]
        confirmed = [user for canonical, user in expected.names.items() if canonical not in expected.refused]
        summary = {"event": expected.op, "confirmed": confirmed, "refused": refused, "errors": expected.errors}
        return Ack(request_id, True, summary)

    def _waiting_for(self, op: Any, name: str, echoed: Any) -> tuple[str, _Expected] | None:
        assert self._lock.locked()
        for request_id, expected in self._expected.items():
            if expected.op == op and name in expected.remaining and (echoed is None or echoed == request_id):
                return request_id, expected
        return None

    def _waiting_for_error(self, echoed: Any, message: dict[str, Any]) -> tuple[str, _Expected, str] | None:
        assert self._lock.locked()
        text = str(message.get("msg", ""))
        for request_id, expected in self._expected.items():
            if not expected.remaining or (echoed is not None and echoed != request_id):
                continue
            for name in expected.remaining:
                values = [v for k, v in okx_arg(name).items() if k != "channel"]
                if values and all(value in text for value in values):
                    return request_id, expected, name
            return request_id, expected, expected.remaining[0]
        return None

    def forget_acks(self) -> None:
        """The connection is gone: no answer to anything sent on it will come."""
        with self._lock:
            self._expected.clear()

    def check_ack(self, request: Request, response: Any) -> list[str]:
        """The channels OKX refused (every channel on an unexpected answer)."""
        if isinstance(response, dict) and isinstance(response.get("refused"), list):
            return [channel for channel in request.channels if channel in response["refused"]]
        return list(request.channels)

    def __repr__(self) -> str:
        return "OkxDialect()"


class BybitDialect(Dialect):
    """Bybit v5 public topics: ``{"req_id": ..., "op": "subscribe", "args": ["orderbook.50.BTCUSDT"]}``.

    The answer names the request by ``req_id``: ``{"success": true,
    "ret_msg": "", "conn_id": ..., "req_id": ..., "op": "subscribe"}``
    (PROTOCOLS.md). ``success: false`` refuses the topics its ``ret_msg``
    names, or all of them when it names none.
    """

    name = "bybit"
    max_channels_per_request: int | None = BYBIT_BATCH_SIZE
    max_channels: int | None = None
    min_interval = 0.0
    ack_markers = ('"req_id"',)

    def build(self, channels: Channels, subscribe: bool = True) -> list[Request]:
        """``subscribe``/``unsubscribe`` messages of at most 10 topics, each with its ``req_id``."""
        items = channel_list(channels)
        op = "subscribe" if subscribe else "unsubscribe"
        requests: list[Request] = []
        for batch in self.batches(items):
            request_id = f"zw{jsonrpc.next_id()}"
            requests.append(Request({"req_id": request_id, "op": op, "args": batch}, batch, request_id, op))
        return requests

    def match_ack(self, message: dict[str, Any]) -> Ack | None:
        """The answer to a subscribe/unsubscribe (by ``req_id``); None for pongs and data."""
        request_id = message.get("req_id")
        if message.get("op") not in ("subscribe", "unsubscribe") or "success" not in message:
            return None
        if not isinstance(request_id, str) or not request_id:
            return Ack(None)
        return Ack(request_id, True, message)

    def check_ack(self, request: Request, response: Any) -> list[str]:
        """Nothing missing on ``success: true``; the named topics (or all) otherwise."""
        if not isinstance(response, dict):
            return list(request.channels)
        if response.get("success") is True:
            return []
        text = str(response.get("ret_msg", ""))
        named = [channel for channel in request.channels if channel in text]
        return named or list(request.channels)


_DIALECTS: dict[str, Callable[[], Dialect]] = {
    "deribit": DeribitDialect,
    "binance": BinanceDialect,
    "okx": OkxDialect,
    "bybit": BybitDialect,
}


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
    items = channels.snapshot() if isinstance(channels, SubscriptionSet) else channel_list(channels)
    dialect.check_capacity(0, len(items), items)
    return dialect.build(items, True)
