"""Deribit API v2: ordinary ``Client`` options that authenticate, keep the token fresh and pace requests.

Adapters translate; they don't own sockets and don't wrap the client. This
module returns options (callbacks, a heartbeat, a dialect, a rate limiter)
for a plain :class:`~zen_websocket.Client`, so both of these work::

    from zen_websocket.platforms import deribit

    client = deribit.connect(deribit.TESTNET_URL, client_id="...", client_secret="...")
    client = zw.connect(deribit.TESTNET_URL, **deribit.options("...", "..."))

    client.subscribe(["user.orders.any.any.raw"])   # private: restored after every reconnect
    deribit.session(client)                         # AuthSession(access_token='***', expires_at=..., ...)

What the options do (sources: Deribit API v2 documentation, docs.deribit.com,
summarised in the project's PROTOCOLS.md):

- **Authentication on every connection.** Deribit tokens are
  connection-scoped: a ``connect`` callback calls ``public/auth`` on the
  first connection, after every reconnect and on a rotation's new
  connection, before the subscriptions are restored and before
  ``connect()`` returns. ``grant="client_credentials"`` sends the secret;
  ``grant="client_signature"`` sends only an HMAC-SHA256 signature of
  ``timestamp + "\\n" + nonce + "\\n" + data`` made with it.
- **Refresh before expiry.** At 80% of ``expires_in`` a timer on the shared
  timer thread sends ``public/auth`` with ``grant_type=refresh_token``
  (``client.request_async``: the timer never waits for the answer); if the
  refresh fails, a full ``public/auth`` follows; if that fails too, the
  connection is dropped and the reconnect authenticates.
- **Wrong credentials are fatal.** Deribit's 13004 (and a ``public/auth``
  the server calls malformed) raise ``ConnectError(reason="unauthorized")``
  from the connect callback: the first ``connect()`` raises it, later the
  client reports it through the ``error`` event and closes (``close``
  event). Other failures (a lost connection, no answer in time) reconnect.
- **Deribit's heartbeat** (``public/set_heartbeat``, ``test_request``
  answered with ``public/test``) every ``heartbeat_interval`` seconds.
- **The credit rate limiter** (``zw.rate_limiter.deribit_preset()``, the
  lowest matching-engine tier): pass ``rate_limiter=deribit_preset(tier=1)``
  for your tier, one instance per sub-account.
- Subscriptions in Deribit's dialect: private channels (``user.*``,
  ``*.raw``) go through ``private/subscribe``; refusals for 13009 (not
  authorized yet) and 10028 (rate limited, Deribit then ends the session)
  keep the channels for the next restore; ``public/unsubscribe_all`` sent
  through the client empties the restore set.

Secrets: ``client_secret``, tokens and signatures are masked wherever the
library shows text (:mod:`zen_websocket.redact`); :class:`AuthSession`'s
repr shows ``***`` for the tokens.

Threads: none of its own. The connect callback runs in the client's connect
sequence; refresh timers run on the shared ``zen-ws-timer`` and their
answers in the thread that completes the request (never blocking it).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import secrets
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from ..client import Client
from ..config import EVENTS, HeartbeatConfig
from ..errors import (
    ConfigError,
    ConnectError,
    ConnectionClosed,
    JsonRpcError,
    NotConnectedError,
    RateLimited,
    RequestTimeout,
)
from ..ratelimit import deribit_preset
from ..redact import MASK
from ..scheduler import Timer, shared

__all__ = [
    "MAINNET_URL",
    "TESTNET_URL",
    "GRANTS",
    "REFRESH_AT",
    "AuthSession",
    "client_signature",
    "connect",
    "options",
    "session",
]

logger = logging.getLogger(__name__)

# Deribit API v2 endpoints (PROTOCOLS.md).
MAINNET_URL = "wss://www.deribit.com/ws/api/v2"
TESTNET_URL = "wss://test.deribit.com/ws/api/v2"

#: The ``public/auth`` grants a connection can start with (PROTOCOLS.md); the
#: third, ``refresh_token``, is what the refresh timer uses.
GRANTS = ("client_credentials", "client_signature")

#: The share of ``expires_in`` after which the token is refreshed (PROTOCOLS.md:
#: "Refresh before expiry (e.g. at 80% of expires_in)").
REFRESH_AT = 0.8

# public/auth answers that no retry can change (Deribit error codes,
# PROTOCOLS.md): 13004 invalid_credentials (a wrong secret or signature),
# and a request the server calls malformed (13010 value_required, -32602
# invalid params such as an unknown scope, -32601: not a Deribit server).
_AUTH_REFUSED = frozenset({13004, 13010, -32602, -32601})

# How soon a refresh held back without a wait time is tried again (seconds).
_RETRY_SOON = 1.0


def client_signature(client_secret: str, timestamp: int, nonce: str, data: str = "") -> str:
    """The ``signature`` of Deribit's ``client_signature`` grant.

    Deribit API v2, ``public/auth`` (PROTOCOLS.md): the hex HMAC-SHA256 of
    ``timestamp + "\\n" + nonce + "\\n" + data`` keyed with the client secret.

    Args:
        client_secret: the API key's secret.
        timestamp: milliseconds since the epoch.
        nonce: a random string, new for every signature.
        data: optional user data, also sent in the request.

    Returns:
        The lowercase hex digest.
    """
    payload = f"{timestamp}\n{nonce}\n{data}".encode()
    return hmac.new(client_secret.encode(), payload, hashlib.sha256).hexdigest()


@dataclass(frozen=True, repr=False)
class AuthSession:
    """A connection's Deribit authentication, as :func:`session` returns it.

    Attributes:
        access_token: the bearer token (shown as ``***`` in the repr).
        refresh_token: the token the next refresh sends (``***`` in the repr).
        expires_at: when the access token expires, ``time.time()`` seconds.
        expires_in: its lifetime in seconds, as the server gave it.
        refreshes: successful ``refresh_token`` grants on this connection.
        scope: the scope the server granted (e.g. ``"connection mainaccount"``).
    """

    access_token: str
    refresh_token: str
    expires_at: float
    expires_in: float
    refreshes: int
    scope: str | None

    def __repr__(self) -> str:
        return (
            f"AuthSession(access_token={MASK!r}, refresh_token={MASK!r}, expires_at={self.expires_at:.3f}, "
            f"expires_in={self.expires_in:g}, refreshes={self.refreshes}, scope={self.scope!r})"
        )


class _ClientAuth:
    """One client's authentication state.

    ``generation`` counts connections (and invalidations): a refresh armed
    or answered for an older generation is ignored, so a token of a lost
    connection is never refreshed, stored or acted on.

    Locking: ``lock`` guards every field; it is never held while calling the
    client.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.generation = 0
        self.timer: Timer | None = None
        self.session: AuthSession | None = None

    def begin(self) -> int:
        """A new connection (or the end of one): forget the token, cancel the refresh; returns the new generation."""
        with self.lock:
            self.generation += 1
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.session = None
            return self.generation

    def current(self, generation: int) -> bool:
        """Whether ``generation`` is still the connection this state is about."""
        with self.lock:
            return generation == self.generation

    def refresh_token(self, generation: int) -> str | None:
        """The refresh token of ``generation``'s session, if it is still current."""
        with self.lock:
            if generation != self.generation or self.session is None:
                return None
            return self.session.refresh_token

    def store(self, generation: int, result: Any, *, refreshed: bool) -> AuthSession | None:
        """Keep a ``public/auth`` result; None if it is malformed or ``generation`` is stale.

        Raises:
            ValueError: the result lacks a token or a positive ``expires_in``.
        """
        if not isinstance(result, dict):
            raise ValueError("public/auth returned no result object")
        access = result.get("access_token")
        refresh = result.get("refresh_token")
        expires_in = result.get("expires_in")
        if not isinstance(access, str) or not access or not isinstance(refresh, str) or not refresh:
            raise ValueError("public/auth returned no access_token or refresh_token")
        if isinstance(expires_in, bool) or not isinstance(expires_in, (int, float)) or expires_in <= 0:
            raise ValueError("public/auth returned no positive expires_in")
        scope = result.get("scope")
        with self.lock:
            if generation != self.generation:
                return None
            previous = self.session.refreshes if self.session is not None else 0
            self.session = AuthSession(
                access_token=access,
                refresh_token=refresh,
                expires_at=time.time() + float(expires_in),
                expires_in=float(expires_in),
                refreshes=previous + (1 if refreshed else 0),
                scope=scope if isinstance(scope, str) else None,
            )
            return self.session

    def arm(self, generation: int, timer: Timer) -> None:
        """Make ``timer`` the pending refresh of ``generation`` (cancelled at once when stale)."""
        with self.lock:
            if generation != self.generation:
                timer.cancel()
                return
            if self.timer is not None and self.timer is not timer:
                self.timer.cancel()
            self.timer = timer


# client -> its authentication state (weak: a forgotten client is not kept alive).
_STATES: weakref.WeakKeyDictionary[Client, _ClientAuth] = weakref.WeakKeyDictionary()
_states_lock = threading.Lock()  # guards _STATES (weak dicts are not thread-safe to mutate)


def _state_for(client: Client) -> _ClientAuth:
    with _states_lock:
        state = _STATES.get(client)
        if state is None:
            state = _STATES[client] = _ClientAuth()
        return state


def session(client: Client) -> AuthSession | None:
    """The Deribit authentication of ``client``'s current connection.

    Args:
        client: a client built with :func:`options` (or :func:`connect`).

    Returns:
        The :class:`AuthSession` (tokens masked in its repr), or None when
        the client has no credentials, or its current connection is not
        authenticated (yet, or any more).
    """
    with _states_lock:
        state = _STATES.get(client)
    if state is None:
        return None
    with state.lock:
        return state.session


# How a done-callback continues: fn(client_ref, state, generation, future).
_Continuation = Callable[["weakref.ref[Client]", _ClientAuth, int, "Future[Any]"], None]


class _Authenticator:
    """The callbacks :func:`options` registers: ``connect`` authenticates, ``disconnect``/``close`` forget.

    One instance may serve several clients (an options dict used twice):
    everything per client lives in its :class:`_ClientAuth`.
    """

    def __init__(self, client_id: str, client_secret: str, grant: str, scope: str | None) -> None:
        self.client_id = client_id
        self._client_secret = client_secret
        self.grant = grant
        self.scope = scope

    def __repr__(self) -> str:
        # Shown when a callback fails: never the secret.
        return f"<deribit auth client_id={self.client_id!r} grant={self.grant!r}>"

    # -- the connect callback (connect sequence: may block) -------------

    def __call__(self, client: Client) -> None:
        """Authenticate the new connection, then arm the refresh.

        Raises:
            ConnectError: ``reason="unauthorized"`` when Deribit refuses the
                credentials (the client ends); another reason when the
                connection was lost or the answer did not come (it reconnects).
        """
        state = _state_for(client)
        generation = state.begin()
        try:
            result = client.request("public/auth", self._params())
        except JsonRpcError as exc:
            raise self._refusal(exc) from exc
        except RequestTimeout as exc:
            raise ConnectError("Deribit public/auth got no answer in time", reason="timeout") from exc
        except (ConnectionClosed, NotConnectedError, RateLimited) as exc:
            raise ConnectError(f"Deribit public/auth did not complete: {exc}", reason="error") from exc
        try:
            stored = state.store(generation, result, refreshed=False)
        except ValueError as exc:
            raise ConnectError(f"Deribit public/auth: {exc}", reason="error") from exc
        if stored is not None:
            logger.info(
                "%s: authenticated with Deribit (%s, scope %s, expires in %gs)",
                client.name,
                self.grant,
                stored.scope,
                stored.expires_in,
            )
            self._arm_refresh(client, state, generation, stored)

    def disconnected(self, client: Client, reason: str) -> None:
        """The connection is gone, and its token with it: stop refreshing it."""
        state = _state_for(client)
        state.begin()

    def closed(self, client: Client, code: int | None, reason: str) -> None:
        """The client is closed for good: cancel the refresh and forget it."""
        with _states_lock:
            state = _STATES.pop(client, None)
        if state is not None:
            state.begin()

    # -- requests -----------------------------------------------------------

    def _params(self) -> dict[str, Any]:
        """The ``public/auth`` params of the configured grant (a fresh signature each time)."""
        params: dict[str, Any]
        if self.grant == "client_signature":
            timestamp = int(time.time() * 1000)
            nonce = secrets.token_hex(8)
            params = {
                "grant_type": "client_signature",
                "client_id": self.client_id,
                "timestamp": timestamp,
                "nonce": nonce,
                "data": "",
                "signature": client_signature(self._client_secret, timestamp, nonce),
            }
        else:
            params = {
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self._client_secret,
            }
        if self.scope:
            params["scope"] = self.scope
        return params

    def _refusal(self, exc: BaseException) -> ConnectError:
        """The ConnectError for a failed ``public/auth``: fatal when no retry can help."""
        if isinstance(exc, JsonRpcError) and exc.code in _AUTH_REFUSED:
            error = ConnectError(f"Deribit refused public/auth ({self.grant}): {exc}", reason="unauthorized")
        elif isinstance(exc, RequestTimeout):
            error = ConnectError("Deribit public/auth got no answer in time", reason="timeout")
        else:
            error = ConnectError(f"Deribit public/auth failed: {exc}", reason="error")
        error.__cause__ = exc
        return error

    # -- the refresh (timer thread and done-callbacks: never block) --------

    def _arm_refresh(self, client: Client, state: _ClientAuth, generation: int, stored: AuthSession) -> None:
        self._later(weakref.ref(client), state, generation, stored.expires_in * REFRESH_AT, self._refresh_due)

    def _later(
        self,
        client_ref: weakref.ref[Client],
        state: _ClientAuth,
        generation: int,
        delay: float,
        fn: Callable[[weakref.ref[Client], _ClientAuth, int], None],
    ) -> None:
        timer = shared().call_later(delay, fn, client_ref, state, generation)
        state.arm(generation, timer)

    def _refresh_due(self, client_ref: weakref.ref[Client], state: _ClientAuth, generation: int) -> None:
        """On the timer thread: send the ``refresh_token`` grant."""
        token = state.refresh_token(generation)
        if token is None:
            return
        self._send(
            client_ref,
            state,
            generation,
            lambda: {"grant_type": "refresh_token", "refresh_token": token},
            self._refreshed,
            self._refresh_due,
        )

    def _reauthenticate(self, client_ref: weakref.ref[Client], state: _ClientAuth, generation: int) -> None:
        """A full ``public/auth`` on the same connection, after a refresh failed."""
        self._send(client_ref, state, generation, self._params, self._reauthenticated, self._reauthenticate)

    def _send(
        self,
        client_ref: weakref.ref[Client],
        state: _ClientAuth,
        generation: int,
        make_params: Callable[[], dict[str, Any]],
        on_done: _Continuation,
        again: Callable[[weakref.ref[Client], _ClientAuth, int], None],
    ) -> None:
        """Send ``public/auth`` without waiting; ``on_done`` gets the future.

        The rate limiter is asked first (``retry_after``), so that a send
        held back by it is tried again later from the timer instead of
        waiting in this thread.
        """
        client = client_ref()
        if client is None or not state.current(generation):
            return
        params = make_params()
        limiter = client.config.rate_limiter
        wait = limiter.retry_after({"method": "public/auth", "params": params}) if limiter is not None else 0.0
        if wait > 0:
            self._later(client_ref, state, generation, wait, again)
            return
        try:
            future = client.request_async("public/auth", params)
        except RateLimited as exc:
            self._later(client_ref, state, generation, exc.retry_after or _RETRY_SOON, again)
            return
        except (NotConnectedError, ConnectionClosed):
            return  # the connection is gone: the reconnect authenticates again
        future.add_done_callback(functools.partial(on_done, client_ref, state, generation))

    def _refreshed(
        self, client_ref: weakref.ref[Client], state: _ClientAuth, generation: int, future: Future[Any]
    ) -> None:
        self._answered(client_ref, state, generation, future, refreshed=True)

    def _reauthenticated(
        self, client_ref: weakref.ref[Client], state: _ClientAuth, generation: int, future: Future[Any]
    ) -> None:
        self._answered(client_ref, state, generation, future, refreshed=False)

    def _answered(
        self,
        client_ref: weakref.ref[Client],
        state: _ClientAuth,
        generation: int,
        future: Future[Any],
        *,
        refreshed: bool,
    ) -> None:
        """The answer to a refresh (``refreshed``) or to the full auth that follows a failed one."""
        client = client_ref()
        if client is None or not state.current(generation):
            return
        exc = future.exception()
        if exc is None:
            try:
                stored = state.store(generation, future.result(), refreshed=refreshed)
            except ValueError as malformed:
                exc = malformed
            else:
                if stored is not None:
                    if refreshed:
                        logger.debug("%s: Deribit token refreshed (expires in %gs)", client.name, stored.expires_in)
                    else:
                        logger.info("%s: authenticated with Deribit again after a failed refresh", client.name)
                    self._arm_refresh(client, state, generation, stored)
                return
        if isinstance(exc, ConnectionClosed):
            return  # lost meanwhile: the reconnect authenticates again
        if refreshed:
            logger.warning("%s: Deribit token refresh failed (%s); authenticating again", client.name, exc)
            self._reauthenticate(client_ref, state, generation)
            return
        # Fatal (wrong credentials now): the client ends with error + close.
        # Otherwise the connection is dropped and the reconnect authenticates.
        client._refuse(self._refusal(exc))


def options(
    client_id: str | None = None,
    client_secret: str | None = None,
    *,
    grant: str = "client_credentials",
    scope: str | None = None,
    heartbeat_interval: float | None = 30,
    heartbeat_min_interval: float | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Client options for Deribit API v2.

    Args:
        client_id: the API key's client id; None for public data only.
        client_secret: its secret (never logged or shown).
        grant: ``"client_credentials"`` (sends the secret) or
            ``"client_signature"`` (sends an HMAC-SHA256 signature made with it).
        scope: the ``scope`` to ask ``public/auth`` for (e.g.
            ``"session:bot1"``); None for Deribit's default (the connection).
        heartbeat_interval: seconds between Deribit heartbeats (a whole number,
            at least 10); None turns the heartbeat off.
        heartbeat_min_interval: the server's smallest interval when it is not
            Deribit's 10 s: for a test against
            ``DeribitEmulator(min_heartbeat_interval=...)`` (see
            ``HeartbeatConfig.min_interval``).
        **extra: any other ``Client`` option; ``rate_limiter``,
            ``heartbeat_config`` and ``subscription_format`` given here
            replace the presets, and ``on_<event>`` callbacks are added after
            the adapter's own (so your ``connect`` callbacks run authenticated).

    Returns:
        A dict for ``zw.connect(url, **options)`` or ``zw.Client(url, **options)``.

    Raises:
        ConfigError: only one of ``client_id``/``client_secret``, an unknown
            ``grant``, or an invalid heartbeat interval.
    """
    if (client_id is None) != (client_secret is None):
        missing = "client_secret" if client_secret is None else "client_id"
        raise ConfigError(missing, "Deribit authentication needs both client_id and client_secret (or neither)")
    for option, value in (("client_id", client_id), ("client_secret", client_secret)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(option, "must be a non-empty str")
    if grant not in GRANTS:
        raise ConfigError("grant", f"must be one of {', '.join(GRANTS)}, got {grant!r}")
    if scope is not None and not isinstance(scope, str):
        raise ConfigError("scope", "must be a str or None")
    heartbeat = (
        None
        if heartbeat_interval is None
        else HeartbeatConfig(type="deribit", interval=heartbeat_interval, min_interval=heartbeat_min_interval)
    )
    result: dict[str, Any] = {
        "subscription_format": "deribit",
        "heartbeat_config": heartbeat,
        "rate_limiter": deribit_preset(),
    }
    callbacks: dict[str, list[Any]] = {}
    if client_id is not None and client_secret is not None:
        auth = _Authenticator(client_id, client_secret, grant, scope)
        callbacks = {"on_connect": [auth], "on_disconnect": [auth.disconnected], "on_close": [auth.closed]}
    for key, value in extra.items():
        if key.startswith("on_") and key[3:] in EVENTS:
            callbacks.setdefault(key, []).extend(value if isinstance(value, (list, tuple)) else [value])
        else:
            result[key] = value
    for key, fns in callbacks.items():
        result[key] = tuple(fns)
    return result


def connect(
    url: str | Callable[[], str] = TESTNET_URL,
    client_id: str | None = None,
    client_secret: str | None = None,
    *,
    grant: str = "client_credentials",
    scope: str | None = None,
    heartbeat_interval: float | None = 30,
    heartbeat_min_interval: float | None = None,
    **extra: Any,
) -> Client:
    """Connect to Deribit with :func:`options`; authenticated before it returns when credentials are given.

    Args:
        url: the endpoint (:data:`TESTNET_URL` by default, or :data:`MAINNET_URL`).
        client_id, client_secret, grant, scope, heartbeat_interval,
        heartbeat_min_interval, **extra: as for :func:`options`.

    Returns:
        The connected :class:`~zen_websocket.Client`.

    Raises:
        ConnectError: connecting failed; ``reason="unauthorized"`` when
            Deribit refused the credentials.
        ConfigError: an invalid option.
    """
    opts = options(
        client_id,
        client_secret,
        grant=grant,
        scope=scope,
        heartbeat_interval=heartbeat_interval,
        heartbeat_min_interval=heartbeat_min_interval,
        **extra,
    )
    return Client(url, **opts).connect()
