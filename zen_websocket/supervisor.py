"""Supervision: many clients under one owner, restarted when they end on their own.

A :class:`ClientSupervisor` holds children, each a :class:`~zen_websocket.Client`
with an id. A child that ends on its own (it gave up after ``retry_count``,
or hit a fatal error) is replaced by a new client with the same id and
options, subscribed to the channels its predecessor had; ``get_client(id)``
always returns the current one. More than ``max_restarts`` restarts of one
child within ``max_seconds`` stop that child for good, as an Erlang
supervisor's restart intensity does; the others go on. What the user ends
(``stop_client``, ``stop()``, or the client's own ``close()``) is never
restarted.

Policy without I/O, tested in microseconds:

- :class:`RestartIntensity`: may this child restart now?
- :class:`ConnectPacer`: when may the next connection attempt to a host
  start (``connect_rate``)?
- :func:`balance_order`: which connected child ``send_balanced`` tries first.

The I/O edge is one thread, ``zen-ws-supervisor``, woken by a condition: a
child's ``close`` event fires in that child's own library thread (its
receive thread, usually), which must not connect a replacement (connecting
blocks), so the event only queues the child and the supervisor thread does
the restart. There is no thread per child beyond what a ``Client`` has.
Restarts run one after another in that thread. The thread is a daemon; an
atexit hook stops forgotten supervisors before the clients' own hook runs.

``connect_rate`` paces every connection attempt of every child (first
connects, reconnects, rotations and restarts) per host: each child's URL is
wrapped in a callable (the driver calls a callable ``url`` before every
attempt) that waits for the host's pacer before handing the URL over. The
wait is on the child's own stop event, so ``close()`` ends it at once.

Locking: ``ClientSupervisor._lock`` guards the children table, the restart
queue, ``_started``/``_stopped`` and each child's ``client``, ``stopping``
and ``last_used`` (``last_live`` is written only by the thread that
connected that client); ``_wake`` is a condition over it. It is never held
while connecting or closing a client or calling user code.
"""

from __future__ import annotations

import atexit
import functools
import logging
import math
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from .callbacks import CallbackTable
from .client import Client
from .config import ClientConfig
from .connection import CLOSED_BY_CLIENT, ConnectionState, Latch
from .errors import ConfigError, ConnectError, NotConnectedError, UsageError
from .redact import redact_url

__all__ = [
    "SUPERVISOR_EVENTS",
    "ClientSupervisor",
    "ConnectPacer",
    "RestartIntensity",
    "balance_order",
]

logger = logging.getLogger(__name__)

#: Events a supervisor callback can be registered for (``supervisor.on(event, fn)``).
SUPERVISOR_EVENTS = ("restart", "error")

#: The name of the supervisor's one thread.
SUPERVISOR_THREAD = "zen-ws-supervisor"

# The close reason of the user's own client.close() (connection.Driver.close):
# the one ending that is not the child's own doing.

# Latencies closer than this count as equal in send_balanced, so that a
# microsecond of noise does not pin every send on one child: the least
# recently used one then takes its turn.
LATENCY_RESOLUTION = 0.001

# Stop: the least time one child's close is given once the overall budget is
# spent (enough for a close frame to a live peer and the joins).
_MIN_CLOSE_TIMEOUT = 0.05

# Supervisors with a thread, stopped at exit before the clients' own hook
# closes their children (atexit runs hooks in reverse order of registration,
# and this module registers after client.py), so that no restart races it.
_live_supervisors: weakref.WeakSet[ClientSupervisor] = weakref.WeakSet()


def _stop_all_at_exit(timeout: float = 0.25) -> None:
    for supervisor in list(_live_supervisors):
        try:
            supervisor.stop(timeout)
        except Exception:
            logger.exception("stopping %r at exit failed", supervisor)


atexit.register(_stop_all_at_exit)


# ---------------------------------------------------------------------------
# Policy (no I/O)
# ---------------------------------------------------------------------------


class RestartIntensity:
    """At most ``max_restarts`` restarts within any ``max_seconds``.

    Args:
        max_restarts: restarts allowed within the window (0: never restart).
        max_seconds: the window, in seconds.

    Example::

        intensity = RestartIntensity(3, 5.0)
        intensity.allow(now)  # True: restart, and the restart is counted
    """

    __slots__ = ("_times", "max_restarts", "max_seconds")

    def __init__(self, max_restarts: int, max_seconds: float) -> None:
        self.max_restarts = max_restarts
        self.max_seconds = max_seconds
        # A list, not a deque: it holds at most max_restarts times, and an
        # empty deque costs 760 bytes (a first block) in every child of a
        # 1,000-child supervisor; an empty list costs 56.
        self._times: list[float] = []

    def allow(self, now: float) -> bool:
        """True (and the restart is counted) unless ``max_restarts`` happened within the window before ``now``."""
        times = self._times
        while times and times[0] <= now - self.max_seconds:
            del times[0]
        if len(times) >= self.max_restarts:
            return False
        times.append(now)
        return True

    def __len__(self) -> int:
        """Restarts counted in the current window (as of the last :meth:`allow`)."""
        return len(self._times)


class ConnectPacer:
    """At most ``attempts`` connection attempts in any window of ``seconds`` (one host).

    A sliding window with reservations: :meth:`reserve` hands each caller its
    own start time at once, so waiting callers sleep exactly until their slot
    instead of waking together to race for the next one. A slot reserved by
    a caller that then gives up is not handed back (the pacing errs on the
    slow side, never on the fast side).

    Unlike a token bucket of the same rate, which after a full burst allows
    another full refill within the same window, this never lets more than
    ``attempts`` start within ``seconds``: the shape of exchange limits such
    as Binance's 300 connections per 5 minutes per IP.

    Args:
        attempts: attempts allowed per window.
        seconds: the window, in seconds.
        clock: a monotonic clock.
    """

    def __init__(self, attempts: int, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.attempts = attempts
        self.seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()  # guards _slots
        self._slots: deque[float] = deque(maxlen=attempts)  # the last `attempts` start times, ascending

    def reserve(self) -> float:
        """Take the next slot; returns its start time on the clock (now, or later)."""
        with self._lock:
            now = self._clock()
            slots = self._slots
            start = now if len(slots) < self.attempts else max(now, slots[0] + self.seconds)
            slots.append(start)  # maxlen drops the oldest
            return start


def balance_order(candidates: Iterable[tuple[Any, int, float | None, float]]) -> list[Any]:
    """The order in which ``send_balanced`` tries children: healthiest first.

    Args:
        candidates: ``(item, pending requests, latency p50 or None, last used)``
            per connected child, in the supervisor's order.

    Returns:
        The items: fewest pending requests first, then lowest latency (None,
        no sample yet, counts as 0; latencies within ``LATENCY_RESOLUTION``
        are equal), then least recently used; ties keep the given order.
    """

    def key(entry: tuple[Any, int, float | None, float]) -> tuple[int, int, float]:
        _, pending, latency, last_used = entry
        return pending, int((latency or 0.0) / LATENCY_RESOLUTION), last_used

    return [entry[0] for entry in sorted(candidates, key=key)]


# ---------------------------------------------------------------------------
# The I/O edge
# ---------------------------------------------------------------------------


class _Child:
    """One supervised child: its spec and its current client (fields guarded by the supervisor's lock)."""

    __slots__ = ("client", "id", "intensity", "last_live", "last_used", "options", "stopping", "url")

    def __init__(self, child_id: Hashable, url: Any, options: dict[str, Any], intensity: RestartIntensity) -> None:
        self.id = child_id
        self.url = url
        self.options = options
        self.intensity = intensity
        self.client: Client | None = None
        # The last client that connected: a restart carries its channels over
        # (the current client may be a restart attempt that never connected).
        self.last_live: Client | None = None
        self.stopping = False  # stop_client()/stop(): never restart
        self.last_used = 0.0  # monotonic time of its last send_balanced


class _PacedURL:
    """A child's URL behind the host's pacer: called by the driver before every attempt."""

    def __init__(self, url: str | Callable[[], str], pacers: _Pacers) -> None:
        self.url = url
        self._pacers = pacers
        # The client's stop event, set once the client exists (before connect):
        # close() sets it, which ends a wait at once.
        self.stopping: threading.Event | Latch = threading.Event()

    def __repr__(self) -> str:
        url = self.url
        return f"<paced {redact_url(url) if isinstance(url, str) else url!r}>"

    def __call__(self) -> str:
        url = self.url() if callable(self.url) else self.url
        if not isinstance(url, str):
            return url  # not a URL: the client's own check raises ConfigError naming url()
        start = self._pacers.reserve(urlsplit(url).hostname or "")
        delay = start - time.monotonic()
        if delay > 0 and self.stopping.wait(delay):
            raise ConnectError("connect aborted: the client was closed", reason="closed")
        return url


class _Pacers:
    """One :class:`ConnectPacer` per host name, shared by every child of a supervisor."""

    def __init__(self, attempts: int, seconds: float) -> None:
        self.attempts = attempts
        self.seconds = seconds
        self._lock = threading.Lock()  # guards _by_host
        self._by_host: dict[str, ConnectPacer] = {}

    def reserve(self, host: str) -> float:
        # Per host name, not per host:port: exchanges count connections per IP.
        with self._lock:
            pacer = self._by_host.get(host.lower())
            if pacer is None:
                pacer = self._by_host[host.lower()] = ConnectPacer(self.attempts, self.seconds)
        return pacer.reserve()


class ClientSupervisor:
    """Many clients, each restarted when it ends on its own.

    Args:
        children: fixed children, each a dict ``{"url": ..., "id": ..., **options}``
            (``id`` defaults to the ``name`` option, else the client's
            default name, ``host:port``); :meth:`start` connects them.
        max_restarts: restarts allowed per child within ``max_seconds``;
            one more stops that child for good (``error`` event).
        max_seconds: the restart intensity window, in seconds.
        connect_rate: ``(attempts, seconds)``: at most that many connection
            attempts per host name in any ``seconds``, shared by every
            child: first connects, reconnects, rotations and restarts.
            None: no pacing.
        **callbacks: ``on_restart=fn`` (``fn(supervisor, id, client)``) and
            ``on_error=fn`` (``fn(supervisor, id, exc)``).

    Raises:
        ConfigError: an invalid argument, a child without ``url``, an
            invalid child option, or two children with the same id.

    Example::

        with zw.ClientSupervisor(children=[{"url": url, "id": "btc"}]) as supervisor:
            supervisor.get_client("btc").subscribe(["ticker.BTC-PERPETUAL.100ms"])
    """

    def __init__(
        self,
        children: Iterable[Mapping[str, Any]] | None = None,
        *,
        max_restarts: int = 3,
        max_seconds: float = 5.0,
        connect_rate: Sequence[float] | None = None,
        **callbacks: Any,
    ) -> None:
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise ConfigError("max_restarts", f"must be a non-negative int, got {max_restarts!r}")
        self.max_restarts = max_restarts
        self.max_seconds = _positive("max_seconds", max_seconds)
        self.connect_rate = _connect_rate(connect_rate)
        self._pacers = _Pacers(*self.connect_rate) if self.connect_rate else None

        self._callbacks = CallbackTable()  # copy-on-write; readers don't lock
        for key, value in callbacks.items():
            event = key[3:] if key.startswith("on_") else ""
            if event not in SUPERVISOR_EVENTS:
                raise ConfigError(key, f"unknown option; supervisor events are {', '.join(SUPERVISOR_EVENTS)}")
            for fn in value if isinstance(value, (list, tuple)) else (value,):
                if not callable(fn):
                    raise ConfigError(key, "must be callable")
                self.on(event, fn)

        self._specs: list[tuple[Hashable, Any, dict[str, Any]]] = []
        seen: set[Hashable] = set()
        for spec in children or ():
            if not isinstance(spec, Mapping) or "url" not in spec:
                raise ConfigError("children", "each child must be a dict with a 'url'")
            options = dict(spec)
            url = options.pop("url")
            child_id, options = _child_spec(url, options.pop("id", None), options)
            if child_id in seen:
                raise ConfigError("children", f"two children have the id {child_id!r}")
            seen.add(child_id)
            self._specs.append((child_id, url, options))

        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # the supervisor thread waits on it for restarts
        self._children: dict[Hashable, _Child] = {}
        self._pending: deque[_Child] = deque()  # children waiting for a restart
        self._started = False  # start() ran (the fixed children were started)
        self._stopped = False
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------
    # public API

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else "running" if self._thread is not None else "new"
        return f"<zen_websocket.ClientSupervisor {state} children={len(self._children)}>"

    def __enter__(self) -> ClientSupervisor:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __len__(self) -> int:
        """Children supervised now."""
        return len(self._children)

    def __contains__(self, child_id: object) -> bool:
        """True if a child with this id is supervised."""
        return child_id in self._children

    def start(self) -> ClientSupervisor:
        """Connect the fixed ``children``, in order; a second call does nothing.

        Returns:
            The supervisor itself.

        Raises:
            ConnectError: a child could not connect; the children already
                started are stopped again (the supervisor is then stopped).
            UsageError: the supervisor was stopped.
        """
        with self._lock:
            if self._stopped:
                raise UsageError("this supervisor was stopped; create a new one")
            if self._started:
                return self
            self._started = True
        try:
            for child_id, url, options in self._specs:
                self._start_child(child_id, url, dict(options))
        except BaseException:
            self.stop()
            raise
        return self

    def start_client(
        self,
        url: str | Callable[[], str],
        *,
        id: Hashable | None = None,  # the contract's name (DESIGN "Supervision"), though it shadows the builtin
        **options: Any,
    ) -> Client:
        """Connect a new supervised child; returns its (connected) client.

        Args:
            url: as for ``zw.connect`` (a callable is called for every attempt).
            id: the child's id; defaults to the ``name`` option, else the
                client's default name (``host:port``). It is also the
                client's ``name`` unless ``name`` is given.
            **options: client options, as for ``zw.connect``; restarts reuse them.

        Raises:
            UsageError: a child with this id exists, or the supervisor was stopped.
            ConfigError: an invalid option.
            ConnectError: the first connect failed (nothing is supervised then).
        """
        child_id, options = _child_spec(url, id, options)
        return self._start_child(child_id, url, options)

    def get_client(self, child_id: Hashable) -> Client:
        """The current client of a child (a restart replaces it).

        Raises:
            KeyError: no child has this id (never started, stopped, or given up on).
        """
        with self._lock:
            child = self._children.get(child_id)
            client = child.client if child is not None else None
        if client is None:
            raise KeyError(child_id)
        return client

    def list_clients(self) -> list[Client]:
        """The current client of every child, in the order they were started."""
        with self._lock:
            return [child.client for child in self._children.values() if child.client is not None]

    def ids(self) -> list[Hashable]:
        """The ids of every child, in the order they were started."""
        with self._lock:
            return list(self._children)

    def stop_client(self, id_or_client: Hashable | Client, timeout: float | None = None) -> None:
        """Stop one child for good: close its client (bounded, like ``close()``); never restarted.

        Args:
            id_or_client: the child's id, or its current client.
            timeout: bound on the close (default: the client's ``close_timeout``).

        Raises:
            KeyError: no such child.
        """
        with self._lock:
            child = self._find(id_or_client)
            if child is None:
                raise KeyError(id_or_client)
            child.stopping = True
            del self._children[child.id]
            client = child.client
        if client is not None:
            client.close(timeout)

    def stop(self, timeout: float | None = None) -> None:
        """Close every child and join the supervisor thread. Idempotent, safe from any thread.

        Bounded: the children share one deadline of ``timeout`` seconds
        (default: the largest ``close_timeout`` among them); once it has
        passed, each remaining child gets a short close.
        """
        with self._wake:
            already = self._stopped
            self._stopped = True
            children = list(self._children.values())
            for child in children:
                child.stopping = True
            self._children.clear()
            self._pending.clear()
            thread = self._thread
            self._wake.notify_all()
        _live_supervisors.discard(self)
        me = threading.current_thread()
        if already:
            if thread is not None and thread is not me:
                thread.join(timeout if timeout is not None else 2.0)
            return
        clients = [child.client for child in children if child.client is not None]
        if timeout is None:
            timeout = max((c.config.close_timeout for c in clients), default=2.0)
        deadline = time.monotonic() + timeout
        for client in clients:
            try:
                client.close(max(_MIN_CLOSE_TIMEOUT, deadline - time.monotonic()))
            except Exception:
                logger.exception("closing %r failed", client)
        if thread is not None and thread is not me:
            thread.join(max(_MIN_CLOSE_TIMEOUT, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning("%s did not stop within %.2fs", thread.name, timeout)

    def send_balanced(self, message: Any) -> Future[Any] | None:
        """Send through the healthiest connected child; returns what ``send_message`` returns.

        Healthiest: fewest pending requests, then lowest recent latency
        (p50 of the last round trips), then least recently used. The next
        child is tried only when the send certainly did not happen
        (:class:`NotConnectedError`), never after a timeout or another
        error, so a message is never sent twice.

        Raises:
            NotConnectedError: no child is connected (or every one failed so).
            TypeError, RateLimited: as ``send_message``.
        """
        tried = 0
        for child, client in self._healthiest():
            with self._lock:
                child.last_used = time.monotonic()
            tried += 1
            try:
                return client.send_message(message)
            except NotConnectedError:
                continue  # nothing went out on this child: the next one may send it
        raise NotConnectedError("no connected child" if not tried else f"no connected child could send ({tried} tried)")

    def on(self, event: str, fn: Callable[..., Any]) -> None:
        """Register ``fn`` for ``event``: ``restart`` (``fn(supervisor, id, client)``) or ``error`` (``fn(supervisor, id, exc)``).

        Callbacks run in the supervisor thread (or in the thread that called
        ``start_client``/``start``); one that raises is logged.
        """
        if event not in SUPERVISOR_EVENTS:
            raise ConfigError("event", f"unknown event {event!r}; expected one of {', '.join(SUPERVISOR_EVENTS)}")
        if not callable(fn):
            raise TypeError("callback must be callable")
        self._callbacks.add(event, fn)

    def off(self, event: str, fn: Callable[..., Any] | None = None) -> bool:
        """Remove ``fn`` (or every callback when None) from ``event``; True if any was removed."""
        return self._callbacks.remove(event, fn)

    # ------------------------------------------------------------------
    # starting children

    def _start_child(self, child_id: Hashable, url: Any, options: dict[str, Any]) -> Client:
        child = _Child(child_id, url, options, RestartIntensity(self.max_restarts, self.max_seconds))
        with self._lock:
            if self._stopped:
                raise UsageError("this supervisor was stopped; create a new one")
            if child_id in self._children:
                raise UsageError(f"a child with the id {child_id!r} is already supervised; pass another id=")
            self._children[child_id] = child
        self._ensure_thread()
        client: Client | None = None
        try:
            client = self._new_client(child)
            self._install(child, client)
            client.connect()
            child.last_live = client
        except BaseException:
            with self._lock:
                if self._children.get(child_id) is child:
                    del self._children[child_id]
            if client is not None:
                client.close()  # a no-op after a failed connect; frees it if stop() raced us
            raise
        return client

    def _new_client(self, child: _Child) -> Client:
        """A new, unconnected client for ``child``, its ``close`` event watched."""
        url = child.url
        paced = _PacedURL(url, self._pacers) if self._pacers is not None else None
        client = Client(paced if paced is not None else url, **child.options)
        if paced is not None:
            paced.stopping = client._driver.stopping
        client.on("close", functools.partial(self._child_closed, child))
        return client

    def _install(self, child: _Child, client: Client) -> None:
        """Make ``client`` the child's current one, unless the child is being stopped.

        Under the lock, so that :meth:`stop` either sees this client (and
        closes it) or this raises before it is connected.
        """
        with self._lock:
            if self._stopped or child.stopping:
                raise ConnectError("connect aborted: the supervisor is stopping", reason="closed")
            child.client = client

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is not None or self._stopped:
                return
            self._thread = threading.Thread(
                target=self._run,
                name=SUPERVISOR_THREAD,
                # Daemon so that a forgotten stop() never blocks interpreter
                # exit (the clients' own atexit hook closes them); stop() joins it.
                daemon=True,
            )
            self._thread.start()
            _live_supervisors.add(self)

    # ------------------------------------------------------------------
    # restarts

    def _child_closed(self, child: _Child, client: Client, code: int | None, reason: str) -> None:
        """A child's ``close`` event, in one of its library threads: queue a restart, never block."""
        with self._wake:
            if client is not child.client or child.stopping or self._stopped:
                return
            if self._children.get(child.id) is not child:
                return
            if reason == CLOSED_BY_CLIENT:
                # The user's own close(): the child is done, not restarted.
                del self._children[child.id]
                return
            self._pending.append(child)
            self._wake.notify()
        logger.warning("%s: child %r ended (%s); restarting", SUPERVISOR_THREAD, child.id, reason)

    def _run(self) -> None:
        """The supervisor thread: restart queued children, one at a time, until stop()."""
        while True:
            with self._wake:
                while not self._pending and not self._stopped:
                    self._wake.wait()
                if self._stopped:
                    return
                child = self._pending.popleft()
            try:
                self._restart(child)
            except BaseException:  # a bug here must not end supervision silently
                logger.exception("restarting child %r failed", child.id)

    def _restart(self, child: _Child) -> None:
        with self._lock:
            if self._stopped or child.stopping or self._children.get(child.id) is not child:
                return
            allowed = child.intensity.allow(time.monotonic())
            if not allowed:
                del self._children[child.id]
            old = child.client
            carry_from = child.last_live
        if not allowed:
            error = ConnectError(
                f"child {child.id!r} ended more than {self.max_restarts} times within {self.max_seconds:g}s; "
                "stopped for good",
                reason="max_restarts",
            )
            error.__cause__ = old._driver.last_error if old is not None else None
            logger.error("%s", error)
            self._emit("error", child.id, error)
            return
        try:
            client = self._new_client(child)
            self._install(child, client)
        except ConnectError:
            return  # stopping
        try:
            client.connect()
        except Exception as exc:
            with self._wake:
                if self._stopped or child.stopping or self._children.get(child.id) is not child:
                    return
                # Try again; the intensity counts every attempt, so a child
                # that cannot connect is given up on.
                self._pending.append(child)
                self._wake.notify()
            logger.warning("restart of child %r failed: %s", child.id, exc)
            self._emit("error", child.id, exc)
            return
        child.last_live = client
        self._carry_subscriptions(child, carry_from, client)
        logger.info("child %r restarted", child.id)
        self._emit("restart", child.id, client)

    def _carry_subscriptions(self, child: _Child, old: Client | None, new: Client) -> None:
        """The new client subscribes to what its predecessor had (unless a connect callback already did).

        Waits for the acknowledgement, as a reconnect's restore does, so the
        ``restart`` event finds the channels live; refused ones are reported.
        """
        if old is None or not new.config.restore_subscriptions:
            return
        have = set(new.subscriptions)
        channels = [c for c in old.subscriptions if c not in have]
        if not channels:
            return
        try:
            new.subscribe(channels, wait=True)
        except NotConnectedError:
            # Lost again already: remembered, so the reconnect restores them.
            new._subs.add(channels)
        except Exception as exc:
            logger.warning("child %r: restoring %d channels failed: %s", child.id, len(channels), exc)
            self._emit("error", child.id, exc)

    # ------------------------------------------------------------------
    # helpers

    def _find(self, id_or_client: Any) -> _Child | None:
        assert self._lock.locked()
        if isinstance(id_or_client, Client):
            for child in self._children.values():
                if child.client is id_or_client:
                    return child
            return None
        return self._children.get(id_or_client)

    def _healthiest(self) -> Iterator[tuple[_Child, Client]]:
        """Connected children, healthiest first; latency is looked at only within the best pending group."""
        with self._lock:
            entries = [(c, c.client, c.last_used) for c in self._children.values() if c.client is not None]
        by_pending: dict[int, list[tuple[_Child, Client, float]]] = {}
        for child, client, last_used in entries:
            if client.get_state() is ConnectionState.CONNECTED:
                by_pending.setdefault(len(client._correlator), []).append((child, client, last_used))
        for pending in sorted(by_pending):
            group = [
                ((child, client), pending, client._latency.percentile(50), last_used)
                for child, client, last_used in by_pending[pending]
            ]
            yield from balance_order(group)

    def _emit(self, event: str, *args: Any) -> None:
        for fn in self._callbacks.get(event, ()):
            try:
                fn(self, *args)
            except BaseException:  # SystemExit too: a callback never ends the supervisor thread
                logger.exception("supervisor %s callback %r raised", event, fn)


def _child_spec(url: Any, child_id: Hashable | None, options: dict[str, Any]) -> tuple[Hashable, dict[str, Any]]:
    """Validate a child's options; its id (default: ``name``, else the label) and options with ``name`` set."""
    config = ClientConfig.from_options(url, **options)  # ConfigError naming the option, before anything connects
    if child_id is None:
        child_id = config.label
    try:
        hash(child_id)
    except TypeError:
        raise ConfigError("id", f"must be hashable, got {type(child_id).__name__}") from None
    options = dict(options)
    # The id names the client's threads and log lines (zen-ws-recv-<id>).
    options.setdefault("name", str(child_id))
    return child_id, options


def _positive(option: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigError(option, f"must be a positive number of seconds, got {value!r}")
    return float(value)


def _connect_rate(value: Any) -> tuple[int, float] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence) or len(value) != 2:
        raise ConfigError("connect_rate", f"must be (attempts, seconds), got {value!r}")
    attempts, seconds = value
    if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1:
        raise ConfigError("connect_rate", f"attempts must be a positive int, got {attempts!r}")
    return attempts, _positive("connect_rate", seconds)
