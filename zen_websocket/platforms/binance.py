"""Binance: combined market-data streams, USDⓈ-M futures user data, WebSocket API requests.

Presets and hooks that return ordinary :class:`~zen_websocket.Client`
options; the adapter never touches a socket. Sources: Binance spot
"WebSocket Streams", "WebSocket API" and USDⓈ-M futures "User Data
Streams" documentation (developers.binance.com), summarised in the
project's PROTOCOLS.md; every number below names its source.

Combined streams, rotated before Binance's 24 h cut and on ``serverShutdown``::

    from zen_websocket.platforms import binance

    with binance.connect(["btcusdt@aggTrade", "ethusdt@bookTicker"]) as client:
        for message in client:          # {"stream": "btcusdt@aggTrade", "data": {...}}
            ...

Futures user data (listen key created over REST before connecting, kept
alive, renewed on ``listenKeyExpired``, deleted on close)::

    with binance.user_data_connect(api_key) as client:
        for event in client:
            ...

What the presets do:

- ``options()``: the Binance dialect (``SUBSCRIBE`` with ids, acks checked,
  at most 1,024 streams per connection), the 5 messages/s outgoing limiter
  (pongs count: the library charges them to it), no client heartbeat (the
  server pings every 20 s; ``max_silence`` notices a dead peer), rotation
  at ``max_connection_age`` (23.5 h, under the 24 h cut) and on
  ``serverShutdown`` (make-before-break, :meth:`Client.rotate`).
- ``serverShutdown`` and ``listenKeyExpired`` are seen by the dialect's
  event hook (:mod:`zen_websocket.subscriptions`), not by a ``message``
  callback: your queue keeps every message, these events included.
- Secrets: the API key travels only in the ``X-MBX-APIKEY`` header of the
  REST calls; listen keys are masked in URLs, logs, recordings and reprs by
  :mod:`zen_websocket.redact`.

Threads: ``zen-ws-listenkey-<name>`` (short-lived, one keepalive ``PUT`` at a
time, joined on close); the keepalive timer itself runs on the shared
``zen-ws-timer`` and never blocks.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Any
from urllib.parse import urlsplit

import requests

from .. import jsonrpc
from ..client import Client
from ..errors import ConfigError, ConnectError, UsageError
from ..ratelimit import binance_api_preset, binance_stream_preset
from ..redact import MASK, peer_text, redact_url
from ..scheduler import Scheduler, Timer, shared
from ..subscriptions import BinanceDialect
from . import connect_and_subscribe

__all__ = [
    "SPOT_STREAM_URL",
    "FUTURES_STREAM_URL",
    "FUTURES_REST_URL",
    "WS_API_URL",
    "LISTEN_KEY_PATH",
    "MAX_CONNECTION_AGE",
    "MAX_SILENCE",
    "LISTEN_KEY_KEEPALIVE",
    "REST_TIMEOUT",
    "ListenKeyError",
    "ListenKeyStream",
    "stream_url",
    "options",
    "connect",
    "user_data_connect",
    "api_options",
    "api_request",
    "api_request_async",
]

logger = logging.getLogger(__name__)

# Binance spot "WebSocket Streams" (PROTOCOLS.md): the market-data endpoint;
# raw streams at /ws/<stream>, combined streams at /stream?streams=a/b.
SPOT_STREAM_URL = "wss://stream.binance.com:9443"
# Binance USDⓈ-M futures "User Data Streams": wss://fstream.binance.com/ws/<listenKey>.
FUTURES_STREAM_URL = "wss://fstream.binance.com"
# Binance USDⓈ-M futures REST base, for the listen key endpoints.
FUTURES_REST_URL = "https://fapi.binance.com"
# Binance "WebSocket API" (PROTOCOLS.md).
WS_API_URL = "wss://ws-api.binance.com:443/ws-api/v3"
# Binance USDⓈ-M futures "User Data Streams": POST creates (or returns and
# extends the active key), PUT keeps alive, DELETE closes; header X-MBX-APIKEY.
LISTEN_KEY_PATH = "/fapi/v1/listenKey"

# Binance (PROTOCOLS.md): "A connection lives at most 24 h". Rotating at
# 23.5 h leaves half an hour for a rotation that fails to be retried (a
# failed rotation is retried a tenth of the age later, at most a minute).
MAX_CONNECTION_AGE = 23.5 * 3600
# Binance (PROTOCOLS.md): the server pings every 20 s. No frame at all for
# three ping intervals means the peer is gone, with no heartbeat of our own
# spending the 5 messages/s budget.
MAX_SILENCE = 60.0
# Binance futures (PROTOCOLS.md): a listen key is valid 60 minutes; PUT it
# "every ~30 minutes".
LISTEN_KEY_KEEPALIVE = 1800.0
# A bound on each listen key REST call (they run in the connecting thread,
# the keepalive thread or close()).
REST_TIMEOUT = 10.0
# Binance error -1125 "This listenKey does not exist": the key lapsed.
_NO_SUCH_KEY = -1125


def _stream_names(streams: str | Iterable[str]) -> list[str]:
    names = [streams] if isinstance(streams, str) else list(streams)
    for name in names:
        if not isinstance(name, str) or not name or "/" in name:
            raise ConfigError("streams", f"stream names are non-empty str without '/', got {name!r}")
    return list(dict.fromkeys(names))


def stream_url(streams: str | Iterable[str], *, base: str = SPOT_STREAM_URL) -> str:
    """The combined-stream URL for ``streams``: ``<base>/stream?streams=a/b/c``.

    Stream names keep the documented case (``btcusdt@aggTrade``,
    ``btcusdt@depth@100ms``, ``!ticker@arr``). Messages on it are wrapped as
    ``{"stream": name, "data": {...}}``. Long lists make long URLs: for
    hundreds of streams prefer :func:`connect`, which subscribes live.

    Args:
        streams: one name or several (duplicates dropped).
        base: the endpoint without a path (default the spot endpoint).

    Raises:
        ConfigError: an empty name or one with a ``/``.
    """
    names = _stream_names(streams)
    root = f"{base.rstrip('/')}/stream"
    return f"{root}?streams={'/'.join(names)}" if names else root


def options(**extra: Any) -> dict[str, Any]:
    """Client options for one Binance market-data stream connection.

    Returns a fresh dict (fresh dialect and limiter: one call per
    connection, the 5 messages/s limit is per connection):

    - ``subscription_format``: :class:`~zen_websocket.subscriptions.BinanceDialect`
      with live ``SUBSCRIBE`` ids, acks checked, 1,024 streams per
      connection, and rotation on ``serverShutdown``;
    - ``rate_limiter``: 5 messages per second, pongs included
      (:func:`~zen_websocket.rate_limiter.binance_stream_preset`);
    - ``heartbeat_config=None`` and ``max_silence=60``: Binance pings every
      20 s, so silence is what tells a dead peer;
    - ``max_connection_age``: 23.5 h, a make-before-break rotation before
      Binance's 24 h cut.

    Args:
        **extra: any client option; overrides the presets.
    """
    preset: dict[str, Any] = {
        "subscription_format": BinanceDialect(rotate_on_shutdown=True),
        "rate_limiter": binance_stream_preset(),
        "heartbeat_config": None,
        "max_silence": MAX_SILENCE,
        "max_connection_age": MAX_CONNECTION_AGE,
    }
    preset.update(extra)
    return preset


def _endpoint(url: str, path: str) -> str:
    """``url`` itself when it has a path, else ``url`` + ``path``."""
    return url if urlsplit(url).path not in ("", "/") else url.rstrip("/") + path


def connect(streams: str | Iterable[str] = (), *, url: str = SPOT_STREAM_URL, **options_: Any) -> Client:
    """Connect to Binance combined streams and subscribe live to ``streams``.

    The connection goes to ``<url>/stream`` (combined: every message is
    ``{"stream": ..., "data": ...}``); the streams are subscribed with
    ``SUBSCRIBE`` (acknowledged, restored after reconnects and rotations,
    ``unsubscribe`` works), not put into the URL.

    Args:
        streams: stream names to subscribe now.
        url: the endpoint; a URL with a path is used as it is.
        **options_: client options; override :func:`options`.

    Returns:
        The connected client, its streams confirmed.

    Raises:
        ConnectError: the connection failed.
        SubscriptionError: a stream was refused (the client is closed).
    """
    return connect_and_subscribe(_endpoint(url, "/stream"), _stream_names(streams), options(**options_))


# ---------------------------------------------------------------------------
# Futures user data: the listen key
# ---------------------------------------------------------------------------


class ListenKeyError(ConnectError):
    """A listen key REST call failed.

    Attributes:
        code: Binance's error code (e.g. -1125: the key does not exist), or None.
    """

    def __init__(self, message: str, *, reason: str, status_code: int | None = None, code: int | None = None) -> None:
        super().__init__(message, reason=reason, status_code=status_code)
        self.code = code


class ListenKeyStream:
    """The listen key behind one futures user data connection.

    :meth:`url` is the client's callable ``url``: every connection attempt
    (first connect, reconnect, rotation) ``POST``\\ s for the key first, which
    returns the active key (extending it) or, once it lapsed, a new one, so
    a reconnect never uses a dead key. :meth:`expired` is the dialect's
    ``listenKeyExpired`` hook (a rotation follows and picks up the new key).
    A timer on the shared timer thread ``PUT``\\ s every ``keepalive`` seconds
    in a thread of its own; :meth:`close` (the client's ``close`` callback)
    stops it and ``DELETE``\\ s the key.

    Locking: ``_lock`` guards ``_key``, ``_timer``, ``_worker``, ``_closed``
    and the counters; no REST call is made holding it.

    Args:
        api_key: the API key (sent as ``X-MBX-APIKEY``, never logged).
        rest_url: the futures REST base.
        ws_url: the futures stream base.
        keepalive: seconds between ``PUT``\\ s.
        rest_timeout: bound on each REST call.
        name: label for logs and the keepalive thread.
        proxy: the proxy for the REST calls (the client's ``proxy`` option).
            Environment proxies are ignored, as for the WebSocket itself.

    Raises:
        ConfigError: an empty ``api_key`` or a ``keepalive`` that is not positive.
    """

    def __init__(
        self,
        api_key: str,
        *,
        rest_url: str = FUTURES_REST_URL,
        ws_url: str = FUTURES_STREAM_URL,
        keepalive: float = LISTEN_KEY_KEEPALIVE,
        rest_timeout: float = REST_TIMEOUT,
        name: str = "binance-user-data",
        proxy: str | None = None,
    ) -> None:
        if not isinstance(api_key, str) or not api_key:
            raise ConfigError("api_key", "must be a non-empty str")
        for option, value in (("keepalive", keepalive), ("rest_timeout", rest_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ConfigError(option, f"must be a positive number of seconds, got {value!r}")
        self.name = name
        self.keepalive = float(keepalive)
        self.rest_timeout = float(rest_timeout)
        self._endpoint = rest_url.rstrip("/") + LISTEN_KEY_PATH
        self._ws_url = ws_url.rstrip("/")
        self._http = requests.Session()
        # Like the WebSocket handshake, never the http(s)_proxy environment
        # variables: a trading connection silently routed through a proxy
        # (with the API key header) is a latency and trust surprise.
        self._http.trust_env = False
        if proxy is not None:
            self._http.proxies = {"http": proxy, "https": proxy}
        self._http.headers["X-MBX-APIKEY"] = api_key
        self._lock = threading.Lock()
        self._key: str | None = None
        self._closed = False
        self._client: Client | None = None
        self._scheduler: Scheduler | None = None
        self._timer: Timer | None = None
        self._worker: threading.Thread | None = None
        self.created = 0
        """Listen keys obtained (a POST that returned a key not seen before)."""
        self.kept_alive = 0
        """Successful keepalive PUTs."""
        self.renewals = 0
        """``listenKeyExpired`` events acted on."""

    def __repr__(self) -> str:
        key = MASK if self._key else None
        return f"<ListenKeyStream {redact_url(self._endpoint)} key={key} created={self.created} closed={self._closed}>"

    # -- REST -------------------------------------------------------------------

    def _call(self, method: str) -> Any:
        """One REST call on the listen key endpoint; its decoded JSON answer."""
        try:
            response = self._http.request(method, self._endpoint, timeout=self.rest_timeout)
        except requests.RequestException as exc:
            # The text of a requests error names the host, never the header.
            raise ListenKeyError(
                f"listen key {method} failed: {type(exc).__name__}: {exc}", reason="listen_key"
            ) from exc
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code >= 400:
            code = body.get("code") if isinstance(body, dict) else None
            text = body.get("msg") if isinstance(body, dict) else response.text
            status = response.status_code
            raise ListenKeyError(
                f"listen key {method} refused: HTTP {status} [{code}] {peer_text(str(text), 200)}",
                reason="unauthorized" if status in (401, 403) else "listen_key",
                status_code=status,
                code=code if isinstance(code, int) else None,
            )
        return body

    def url(self) -> str:
        """The stream URL with a live key (``POST`` first): the client's callable ``url``.

        Raises:
            ListenKeyError: the REST call failed (recoverable unless the API
                key is refused: HTTP 4xx is fatal, as Binance answers a bad key).
        """
        body = self._call("POST")
        key = body.get("listenKey") if isinstance(body, dict) else None
        if not isinstance(key, str) or not key:
            raise ListenKeyError("listen key POST answered without a listenKey", reason="listen_key")
        with self._lock:
            if key != self._key:
                self.created += 1
                self._key = key
                logger.info("%s: new listen key", self.name)  # never the key itself
        return f"{self._ws_url}/ws/{key}"

    def expired(self, event: dict[str, Any]) -> bool:
        """``listenKeyExpired`` (receive thread; never blocks): rotate, unless it names an older key."""
        key = event.get("listenKey")
        with self._lock:
            if self._closed or (isinstance(key, str) and self._key is not None and key != self._key):
                return False
            self.renewals += 1
        logger.info("%s: listen key expired; rotating to a new one", self.name)
        return True

    # -- keepalive ----------------------------------------------------------------

    def start(self, client: Client) -> None:
        """Keep the key alive for ``client`` (call after it connected)."""
        scheduler = shared()
        with self._lock:
            if self._closed or self._scheduler is not None:
                return
            self._client = client
            scheduler.acquire()
            self._scheduler = scheduler
            self._timer = scheduler.call_later(self.keepalive, self._due)

    def _due(self) -> None:
        """On the shared timer thread: start a PUT in its own thread, arm the next one. Never blocks."""
        with self._lock:
            if self._closed or self._scheduler is None:
                return
            worker = self._worker
            if worker is None or not worker.is_alive():
                worker = threading.Thread(
                    target=self._keep_alive,
                    name=f"zen-ws-listenkey-{self.name}",
                    # Daemon so a forgotten client never blocks exit; close() joins it.
                    daemon=True,
                )
                self._worker = worker
                worker.start()
            self._timer = self._scheduler.call_later(self.keepalive, self._due)

    def _keep_alive(self) -> None:
        try:
            self._call("PUT")
        except ListenKeyError as exc:
            if exc.code != _NO_SUCH_KEY:
                logger.warning("%s: listen key keepalive failed (the next one retries): %s", self.name, exc)
                return
            with self._lock:
                client = None if self._closed else self._client
            if client is None:
                return
            # The key lapsed without a listenKeyExpired on our connection:
            # move to a new key now (rotate() calls url(), which POSTs).
            logger.warning("%s: listen key gone; rotating to a new one", self.name)
            try:
                client.rotate()
            except Exception as rotate_exc:
                logger.warning("%s: rotating to a new listen key failed: %s", self.name, rotate_exc)
            return
        with self._lock:
            self.kept_alive += 1

    def close(self, *_: Any) -> None:
        """Stop the keepalive and ``DELETE`` the key (the client's ``close`` callback). Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            timer, self._timer = self._timer, None
            worker = self._worker
            scheduler, self._scheduler = self._scheduler, None
            key = self._key
            self._client = None
        if timer is not None:
            timer.cancel()
        if worker is not None and worker is not threading.current_thread():
            worker.join(self.rest_timeout)
        if key is not None:
            try:
                self._call("DELETE")
            except ListenKeyError as exc:
                logger.warning("%s: deleting the listen key failed: %s", self.name, exc)
        if scheduler is not None:
            scheduler.release()
        self._http.close()


def _callbacks(value: Any) -> tuple[Callable[..., Any], ...]:
    if value is None:
        return ()
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def user_data_connect(
    api_key: str,
    *,
    rest_url: str = FUTURES_REST_URL,
    ws_url: str = FUTURES_STREAM_URL,
    keepalive: float = LISTEN_KEY_KEEPALIVE,
    rest_timeout: float = REST_TIMEOUT,
    **options_: Any,
) -> Client:
    """Connect to the USDⓈ-M futures user data stream of ``api_key``.

    A listen key is created with ``POST /fapi/v1/listenKey`` before
    connecting (and before every reconnect or rotation, which returns the
    active key or a new one), kept alive with ``PUT`` every ``keepalive``
    seconds, renewed on ``listenKeyExpired`` (new key, new URL, make-before-break
    rotation) and deleted with ``DELETE`` on close. Events arrive raw
    (``{"e": "ORDER_TRADE_UPDATE", ...}``), ``listenKeyExpired`` included.
    The REST calls use the ``proxy`` option, never environment proxies.

    Args:
        api_key: the API key (``X-MBX-APIKEY``; never logged).
        rest_url: the futures REST base.
        ws_url: the futures stream base.
        keepalive: seconds between keepalive ``PUT``\\ s (Binance: ~30 minutes).
        rest_timeout: bound on each REST call.
        **options_: client options; override :func:`options` (keep
            ``subscription_format``: its ``listenKeyExpired`` hook renews).

    Returns:
        The connected client.

    Raises:
        ConnectError: the listen key or the connection could not be had
            (a refused API key is fatal at once).
    """
    name = options_.get("name") or "binance-user-data"
    stream = ListenKeyStream(
        api_key,
        rest_url=rest_url,
        ws_url=ws_url,
        keepalive=keepalive,
        rest_timeout=rest_timeout,
        name=name,
        proxy=options_.get("proxy"),
    )
    user_close = _callbacks(options_.pop("on_close", None))
    settings = options(
        subscription_format=BinanceDialect(rotate_on_shutdown=True, on_listen_key_expired=stream.expired),
        name=name,
    )
    settings.update(options_)
    settings["on_close"] = (*user_close, stream.close)
    try:
        client = Client(stream.url, **settings)
        client.connect()
    except BaseException:
        stream.close()
        raise
    stream.start(client)
    return client


# ---------------------------------------------------------------------------
# WebSocket API requests
# ---------------------------------------------------------------------------


def api_options(**extra: Any) -> dict[str, Any]:
    """Client options for a Binance WebSocket API connection (``WS_API_URL``).

    - ``rate_limiter``: ``REQUEST_WEIGHT``, 6,000 per fixed minute, each
      request weighed by :func:`~zen_websocket.binance_cost`
      (:func:`~zen_websocket.rate_limiter.binance_api_preset`). The limit is
      per IP: pass one shared limiter to every connection of the process.
    - no client heartbeat, ``max_silence=60``, rotation before 24 h and on
      ``serverShutdown`` (PROTOCOLS.md: same 20 s ping and 24 h rules).

    Send requests with :func:`api_request`; a 429/418 answer raises
    :class:`~zen_websocket.RateLimited` with ``retry_after``.

    Args:
        **extra: any client option; overrides the presets.
    """
    preset: dict[str, Any] = {
        "subscription_format": BinanceDialect(rotate_on_shutdown=True),
        "rate_limiter": binance_api_preset(),
        "heartbeat_config": None,
        "max_silence": MAX_SILENCE,
        "max_connection_age": MAX_CONNECTION_AGE,
    }
    preset.update(extra)
    return preset


def api_request_async(
    client: Client, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None
) -> Future[Any]:
    """Send a WebSocket API request ``{"id", "method", "params"}``; a Future of its ``result``.

    The request is weighed by the client's limiter (:func:`api_options`).
    The Future raises :class:`~zen_websocket.jsonrpc.RateLimitedResponse`
    (a :class:`~zen_websocket.RateLimited` and a
    :class:`~zen_websocket.JsonRpcError`) for status 429/418,
    :class:`~zen_websocket.JsonRpcError` for other errors, and what
    :meth:`Client.request_async` raises otherwise.

    Raises:
        TypeError: ``method`` is not a non-empty str or ``params`` not a dict.
        NotConnectedError: not connected.
    """
    if not isinstance(method, str) or not method:
        raise TypeError(f"method must be a non-empty str, got {method!r}")
    if params is not None and not isinstance(params, dict):
        raise TypeError(f"params must be a dict, got {type(params).__name__}")
    request_id = jsonrpc.next_id()
    message: dict[str, Any] = {"id": request_id, "method": method}
    if params is not None:
        message["params"] = params
    payload = json.dumps(message, separators=(",", ":"), allow_nan=False).encode("utf-8")
    deadline = client.config.request_timeout if timeout is None else timeout
    # TODO(lead): a public Client call for requests in a non-JSON-RPC envelope;
    # until then the send path's tracking layer is used directly (Binance's
    # WebSocket API format has no "jsonrpc" member).
    return client._send_tracked(request_id, method, message, payload, deadline)


def api_request(
    client: Client, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None
) -> Any:
    """:func:`api_request_async` and wait: the ``result`` of a WebSocket API request.

    Raises:
        RateLimited: status 429 (rate limited) or 418 (IP banned), with ``retry_after``.
        JsonRpcError: any other error answer.
        RequestTimeout: no answer within ``timeout`` (default ``request_timeout``).
        UsageError: called from a ``message`` callback (use :func:`api_request_async`).
    """
    if client._driver.is_receive_thread():
        raise UsageError("api_request() from a message callback would deadlock; use api_request_async()")
    return api_request_async(client, method, params, timeout=timeout).result()
