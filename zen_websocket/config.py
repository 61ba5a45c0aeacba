"""Client options: one frozen dataclass, validated once at construction.

Every invalid value raises :class:`~zen_websocket.errors.ConfigError` naming
the option, so a typo or a negative delay fails when the client is built,
not hours later during a reconnect.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import ssl
import sys
import textwrap
import typing
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError
from .redact import redact_headers, redact_url
from .subscriptions import get_dialect

__all__ = [
    "ClientConfig",
    "HeartbeatConfig",
    "EVENTS",
    "HEARTBEAT_TYPES",
    "OVERFLOW_POLICIES",
    "DERIBIT_MIN_HEARTBEAT_INTERVAL",
    "COMPRESSIONS",
    "check_url",
    "redact_url",  # re-exported: it lives in zen_websocket.redact now
]

#: Events a callback can be registered for (``client.on(event, fn)``).
EVENTS = ("message", "connect", "disconnect", "reconnect", "error", "close")
#: What each event's callbacks are called with: checked when a callback is registered.
EVENT_ARGS: dict[str, tuple[str, ...]] = {
    "message": ("client", "data"),
    "connect": ("client",),
    "disconnect": ("client", "reason"),
    "reconnect": ("client", "attempt"),
    "error": ("client", "exc"),
    "close": ("client", "code", "reason"),
}
HEARTBEAT_TYPES = ("ping", "deribit", "custom")
OVERFLOW_POLICIES = ("drop_oldest", "drop_newest", "block")
RATE_LIMIT_MODES = ("wait", "raise")
#: Values of ``compression`` besides None: permessage-deflate (RFC 7692).
COMPRESSIONS = ("deflate",)
# Deribit rejects public/set_heartbeat below 10 s (API v2, public/set_heartbeat).
DERIBIT_MIN_HEARTBEAT_INTERVAL = 10.0


def _positive(option: str, value: Any, *, allow_none: bool = False) -> float | None:
    if value is None:
        if allow_none:
            return None
        raise ConfigError(option, "must be a positive number, not None")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(option, f"must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(option, f"must be positive, got {value!r}")
    return float(value)


# Times are seconds; the Elixir original took milliseconds, so a value ported
# from it (timeout=5000, interval=30_000) is a thousand times too long. No
# connect, request or heartbeat time of a trading client is near 1000 s.
_IMPLAUSIBLE_SECONDS = 1000.0


def _warn_if_milliseconds(option: str, value: float | None) -> None:
    """Warn when ``value`` seconds looks like a value meant in milliseconds."""
    if value is not None and value >= _IMPLAUSIBLE_SECONDS:
        warnings.warn(
            f"{option}={value:g} is {value / 60:.0f} minutes: times are in seconds, not milliseconds "
            f"(for {value:g} ms write {option}={value / 1000:g})",
            UserWarning,
            stacklevel=_user_stacklevel(),
        )


def _user_stacklevel() -> int:
    """The ``stacklevel`` of the first caller outside zen_websocket, so a warning names the user's line."""
    level = 1
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_globals.get("__name__", "").partition(".")[0] == "zen_websocket":
        frame = frame.f_back
        level += 1
    return level


def _did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest candidate, or ``""``."""
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_callback(event: str, fn: Any) -> None:
    """Raise ``TypeError`` unless ``fn`` can be called the way ``event`` calls it.

    A callback with the wrong signature would otherwise raise on every call,
    inside a library thread, and its messages would be lost.

    Args:
        event: a name in :data:`EVENTS`.
        fn: the callback.

    Raises:
        TypeError: ``fn`` is not callable, or does not accept the event's
            arguments (:data:`EVENT_ARGS`). Callables without an
            introspectable signature (some builtins) are accepted.
    """
    if not callable(fn):
        raise TypeError(f"the {event!r} callback must be callable, got {type(fn).__name__}")
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # a builtin without signature metadata: nothing to check
    args = EVENT_ARGS[event]
    try:
        signature.bind(*args)
    except TypeError:
        shown = getattr(fn, "__qualname__", None) or type(fn).__name__
        expected = ", ".join(args)
        raise TypeError(
            f"the {event!r} callback {shown}{signature} cannot be called as fn({expected}): "
            f"{event} callbacks are called with ({expected})"
        ) from None


@dataclass(frozen=True, slots=True)
class HeartbeatConfig:
    """How the client keeps a connection provably alive.

    Args:
        type: ``"ping"`` (WebSocket ping frames), ``"deribit"``
            (``public/set_heartbeat`` + answering ``test_request``) or
            ``"custom"`` (send ``message`` every ``interval``).
        interval: seconds between heartbeats.
        message: for ``"custom"``: the ``str``/``bytes``/``dict`` to send.
        timeout: seconds to wait for a reply before declaring the connection
            dead; defaults to ``interval``.
        expect: for ``"custom"``: the reply, as an exact string or a predicate
            on incoming messages; replies it matches are not delivered, and a
            heartbeat unanswered for ``timeout`` means the peer is dead. Without
            it the heartbeat is only sent (use ``max_silence`` to catch silence).
        min_interval: for ``"deribit"``: the smallest ``interval`` the server
            accepts. None: Deribit's own rule, a whole number of seconds, at
            least 10. Set it only for a server that accepts less, such as
            ``DeribitEmulator(min_heartbeat_interval=0.02)`` in a test; any
            interval from it up, fractions included, is then allowed.
    """

    type: str = "ping"
    interval: float = 30.0
    message: Any = None
    timeout: float | None = None
    expect: str | Callable[[Any], bool] | None = None
    min_interval: float | None = None

    def __post_init__(self) -> None:
        if self.type not in HEARTBEAT_TYPES:
            raise ConfigError(
                "heartbeat_config.type",
                f"unknown heartbeat type {self.type!r}; expected one of {', '.join(HEARTBEAT_TYPES)}",
            )
        interval = _positive("heartbeat_config.interval", self.interval)
        object.__setattr__(self, "interval", interval)
        _warn_if_milliseconds("heartbeat_config.interval", interval)
        min_interval = _positive("heartbeat_config.min_interval", self.min_interval, allow_none=True)
        object.__setattr__(self, "min_interval", min_interval)
        if self.type == "deribit" and interval is not None:
            self._check_deribit_interval(interval, min_interval)
        timeout = _positive("heartbeat_config.timeout", self.timeout, allow_none=True)
        _warn_if_milliseconds("heartbeat_config.timeout", timeout)
        object.__setattr__(self, "timeout", interval if timeout is None else timeout)
        if self.type == "custom":
            if self.message is None:
                raise ConfigError("heartbeat_config.message", "a custom heartbeat needs a message to send")
            if not isinstance(self.message, (str, bytes, dict, list)):
                raise ConfigError("heartbeat_config.message", "must be str, bytes, dict or list")
        if self.expect is not None and not (isinstance(self.expect, str) or callable(self.expect)):
            raise ConfigError("heartbeat_config.expect", "must be a string or a predicate")

    @staticmethod
    def _check_deribit_interval(interval: float, min_interval: float | None) -> None:
        if min_interval is not None:
            # A server that says it accepts less (a test emulator): its word.
            if interval < min_interval:
                raise ConfigError(
                    "heartbeat_config.interval",
                    f"below min_interval ({min_interval:g}s), got {interval:g}",
                )
            return
        if interval < DERIBIT_MIN_HEARTBEAT_INTERVAL:
            raise ConfigError(
                "heartbeat_config.interval",
                f"Deribit's minimum heartbeat interval is {DERIBIT_MIN_HEARTBEAT_INTERVAL:g}s, got {interval:g}",
            )
        if interval != int(interval) and DERIBIT_MIN_HEARTBEAT_INTERVAL >= 1:
            # Deribit API v2, public/set_heartbeat: "interval" is an integer
            # (PROTOCOLS.md). (Tests that lowered the module's minimum below a
            # second, before min_interval existed, keep their fractions.)
            raise ConfigError(
                "heartbeat_config.interval",
                f"Deribit takes a whole number of seconds (public/set_heartbeat), got {interval:g}",
            )

    @classmethod
    def coerce(cls, value: Any) -> HeartbeatConfig | None:
        """Build from a dict, pass a ``HeartbeatConfig`` through, keep None."""
        if value is None or isinstance(value, HeartbeatConfig):
            return value
        if isinstance(value, Mapping):
            known = {f.name for f in dataclasses.fields(cls)}
            for key in value:
                if key not in known:
                    raise ConfigError(f"heartbeat_config.{key}", "unknown heartbeat option" + _did_you_mean(key, known))
            return cls(**dict(value))
        raise ConfigError("heartbeat_config", f"must be a dict, HeartbeatConfig or None, got {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class ClientConfig:
    """All options of a :class:`~zen_websocket.Client`, validated.

    Build it with :meth:`from_options` (which also rejects unknown names) or
    directly; see the README's options table for what each one means.
    """

    url: str | Callable[[], str]
    timeout: float = 5.0
    headers: Mapping[str, str] = field(default_factory=dict)
    subprotocols: list[str] | None = None
    ssl_context: ssl.SSLContext | None = None
    proxy: str | None = None
    retry_count: int | None = 3
    retry_delay: float = 1.0
    max_backoff: float = 30.0
    jitter: float = 0.0
    reconnect_on_error: bool = True
    is_fatal: Callable[[BaseException], bool] | None = None
    restore_subscriptions: bool = True
    heartbeat_config: HeartbeatConfig | None = field(default_factory=HeartbeatConfig)
    max_silence: float | None = None
    request_timeout: float = 30.0
    close_timeout: float = 2.0
    max_queue: int | None = None
    overflow: str = "drop_oldest"
    max_message_size: int | None = 16 * 1024 * 1024
    subscription_format: Any = "deribit"
    rate_limiter: Any = None
    rate_limit_mode: str = "wait"
    record_to: str | None = None
    name: str | None = None
    debug: bool = False
    compression: str | None = "deflate"
    write_timeout: float | None = 10.0
    max_connection_age: float | None = None
    callbacks: Mapping[str, tuple[Callable[..., Any], ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check_url()
        _positive("timeout", self.timeout)
        _positive("retry_delay", self.retry_delay)
        _positive("max_backoff", self.max_backoff)
        _positive("request_timeout", self.request_timeout)
        _positive("close_timeout", self.close_timeout)
        _positive("max_silence", self.max_silence, allow_none=True)
        _positive("write_timeout", self.write_timeout, allow_none=True)
        _positive("max_connection_age", self.max_connection_age, allow_none=True)
        for option in ("timeout", "retry_delay", "max_backoff", "request_timeout", "close_timeout", "write_timeout"):
            _warn_if_milliseconds(option, getattr(self, option))
        for option in ("reconnect_on_error", "restore_subscriptions", "debug"):
            # "no" would count as true: only a real bool is accepted.
            if not isinstance(getattr(self, option), bool):
                raise ConfigError(option, f"must be True or False, got {getattr(self, option)!r}")
        if self.compression is not None and self.compression not in COMPRESSIONS:
            raise ConfigError("compression", f"must be 'deflate' or None, got {self.compression!r}")
        if self.max_backoff < self.retry_delay:
            raise ConfigError("max_backoff", f"must be >= retry_delay ({self.retry_delay}), got {self.max_backoff}")
        if isinstance(self.jitter, bool) or not isinstance(self.jitter, (int, float)) or not 0 <= self.jitter <= 1:
            raise ConfigError("jitter", f"must be a fraction between 0 and 1, got {self.jitter!r}")
        if self.retry_count is not None and (
            isinstance(self.retry_count, bool) or not isinstance(self.retry_count, int) or self.retry_count < 0
        ):
            raise ConfigError("retry_count", f"must be a non-negative int or None, got {self.retry_count!r}")
        if not isinstance(self.headers, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()
        ):
            raise ConfigError("headers", "must be a mapping of str to str")
        if self.subprotocols is not None and (
            isinstance(self.subprotocols, str) or not all(isinstance(p, str) for p in self.subprotocols)
        ):
            raise ConfigError("subprotocols", "must be a list of str")
        if self.ssl_context is not None and not isinstance(self.ssl_context, ssl.SSLContext):
            raise ConfigError("ssl_context", "must be an ssl.SSLContext")
        if self.proxy is not None:
            parts = urlsplit(self.proxy) if isinstance(self.proxy, str) else None
            if (
                parts is None
                or parts.scheme not in ("http", "socks4", "socks4a", "socks5", "socks5h")
                or not parts.hostname
            ):
                raise ConfigError("proxy", "must be an http:// or socks5:// URL with a host")
        if self.is_fatal is not None and not callable(self.is_fatal):
            raise ConfigError("is_fatal", "must be a predicate on an exception")
        object.__setattr__(self, "heartbeat_config", HeartbeatConfig.coerce(self.heartbeat_config))
        if self.max_queue is not None and (
            isinstance(self.max_queue, bool) or not isinstance(self.max_queue, int) or self.max_queue <= 0
        ):
            raise ConfigError("max_queue", f"must be a positive int or None, got {self.max_queue!r}")
        if self.overflow not in OVERFLOW_POLICIES:
            raise ConfigError("overflow", f"must be one of {', '.join(OVERFLOW_POLICIES)}, got {self.overflow!r}")
        if self.max_message_size is not None and (
            isinstance(self.max_message_size, bool)
            or not isinstance(self.max_message_size, int)
            or self.max_message_size <= 0
        ):
            raise ConfigError("max_message_size", f"must be a positive int or None, got {self.max_message_size!r}")
        # The one dialect registry decides what a format may be (names, Dialect
        # instances, callables); it raises ConfigError naming the option.
        get_dialect(self.subscription_format)
        if self.rate_limit_mode not in RATE_LIMIT_MODES:
            raise ConfigError("rate_limit_mode", f"must be 'wait' or 'raise', got {self.rate_limit_mode!r}")
        if self.rate_limiter is not None and not (
            hasattr(self.rate_limiter, "acquire") and hasattr(self.rate_limiter, "consume")
        ):
            raise ConfigError("rate_limiter", "must be a RateLimiter (with consume() and acquire())")
        if self.name is not None and not isinstance(self.name, str):
            raise ConfigError("name", "must be a str")
        if self.record_to is not None and not isinstance(self.record_to, str):
            raise ConfigError("record_to", "must be a file path (str)")

    def _check_url(self) -> None:
        if callable(self.url):
            return  # called for every connection attempt; each result is checked then
        check_url(self.url)

    @classmethod
    def from_options(cls, url: str | Callable[[], str], **options: Any) -> ClientConfig:
        """Validate ``options`` (the keyword arguments of ``connect``).

        ``on_<event>=fn`` options register callbacks; any other unknown name
        raises :class:`ConfigError`.
        """
        known = {f.name for f in dataclasses.fields(cls)} - {"url", "callbacks"}
        callbacks: dict[str, tuple[Callable[..., Any], ...]] = {}
        values: dict[str, Any] = {}
        for key, value in options.items():
            if key.startswith("on_") and key[3:] in EVENTS:
                fns = tuple(value) if isinstance(value, (list, tuple)) else (value,)
                for fn in fns:
                    if not callable(fn):
                        raise ConfigError(key, "must be callable")
                    check_callback(key[3:], fn)
                callbacks[key[3:]] = fns
            elif key in known:
                values[key] = value
            else:
                candidates = [*known, *(f"on_{event}" for event in EVENTS)]
                raise ConfigError(key, "unknown option" + _did_you_mean(key, candidates))
        if "headers" in values and values["headers"] is None:
            values["headers"] = {}
        return cls(url=url, callbacks=callbacks, **values)

    @property
    def label(self) -> str:
        """The name used in thread names and logs (``name``, else host:port, else the callable's name)."""
        if self.name:
            return self.name
        if callable(self.url):
            return getattr(self.url, "__name__", "url()")
        parts = urlsplit(self.url)
        return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'wss' else 80)}"

    def __repr__(self) -> str:
        # Header values (API keys, bearer tokens) never appear in a repr.
        headers = redact_headers(self.headers)
        url = f"<callable {self.label}>" if callable(self.url) else redact_url(self.url)
        return f"ClientConfig(url={url!r}, name={self.name!r}, headers={headers!r})"


def check_url(url: Any, option: str = "url") -> None:
    """Raise :class:`ConfigError` unless ``url`` is a ``ws://`` or ``wss://`` URL with a host.

    Messages show the URL only through ``redact_url``: userinfo, query values
    and listen keys stay out of logs and tracebacks. The parser's own error
    text is not shown either: it can quote a "port" that is a password
    written without its "@".
    """
    if not isinstance(url, str):
        raise ConfigError(option, f"must be a str (or a callable returning one), got {type(url).__name__}")
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a port out of range or not a number
    except ValueError as exc:
        raise ConfigError(option, f"invalid URL (bad IPv6 host or port) {shown!r}") from exc
    if parts.scheme not in ("ws", "wss"):
        raise ConfigError(option, f"must start with ws:// or wss://, got {shown!r}")
    if not parts.hostname:
        raise ConfigError(option, f"has no host: {shown!r}")


def options_signature(*leading: inspect.Parameter, returns: Any = inspect.Signature.empty) -> inspect.Signature:
    """``leading`` parameters, then every option as a keyword-only parameter with its default.

    Generated from :class:`ClientConfig`, so ``help(zw.connect)`` and
    notebook completion list the options without a second copy of them.
    """
    try:
        hints = typing.get_type_hints(ClientConfig)
    except Exception:  # an annotation this Python cannot evaluate: show the option without it
        hints = {}
    params = list(leading)
    for spec in dataclasses.fields(ClientConfig):
        if spec.name in ("url", "callbacks"):
            continue
        if spec.default is not dataclasses.MISSING:
            default = spec.default
        elif spec.default_factory is not dataclasses.MISSING:
            default = spec.default_factory()
        else:
            default = inspect.Parameter.empty
        annotation = hints.get(spec.name, inspect.Parameter.empty)
        params.append(
            inspect.Parameter(spec.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
        )
    callback = Callable | list | None
    for event in EVENTS:
        params.append(
            inspect.Parameter(f"on_{event}", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=callback)
        )
    return inspect.Signature(params, return_annotation=returns)


def options_doc() -> str:
    """A docstring section listing every option with its default (appended to ``connect``'s and ``Client``'s)."""
    entries = [f"{p.name}={_shown_default(p.default)}" for p in options_signature().parameters.values()]
    # Indented like a docstring body, so that inspect.cleandoc (help()) keeps the layout.
    body = textwrap.fill(", ".join(entries), width=92, initial_indent=" " * 8, subsequent_indent=" " * 8)
    return (
        "\n    Options (keyword-only; times in seconds; the README's options table says what each does)::\n\n"
        + body
        + "\n"
    )


def _shown_default(value: Any) -> str:
    if isinstance(value, HeartbeatConfig):  # the dict form users write
        return repr({"type": value.type, "interval": value.interval})
    return repr(value)
