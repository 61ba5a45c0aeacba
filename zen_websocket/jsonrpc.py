"""JSON-RPC policy: ids, request building, message classification, correlation.

Nothing here touches a socket or starts a thread. The client's receive thread
feeds decoded messages to a :class:`Correlator`, which completes the
``concurrent.futures.Future`` of the matching request; a timer (or the receive
loop) calls :meth:`Correlator.expire` so that requests without an answer fail
with :class:`~zen_websocket.errors.RequestTimeout` instead of hanging.

The dialects understood, besides plain JSON-RPC 2.0 (Deribit):

* Binance stream control: ``{"result": null, "id": 1}`` on success and
  ``{"code": 2, "msg": "...", "id": 1}`` on failure (Binance "WebSocket
  Streams" doc, live subscribing; PROTOCOLS.md).
* Binance WebSocket API: ``{"id": ..., "status": 200, "result": ...}`` and
  ``{"id": ..., "status": 400, "error": {"code": -1102, "msg": "..."}}``
  (Binance "WebSocket API" doc, response format; PROTOCOLS.md). Status 429
  (rate limited) and 418 (IP banned) carry ``error.data.retryAfter`` (ms
  since the epoch) and become :class:`RateLimitedResponse`, a
  :class:`~zen_websocket.errors.RateLimited` with ``retry_after`` in seconds.

Example::

    correlator = Correlator()
    request = build_request("public/test")
    future = correlator.track(request["id"], "public/test", timeout=5.0)
    ...  # send it; the receive thread calls correlator.resolve(decoded)
    future.result()
"""

from __future__ import annotations

import heapq
import itertools
import json
import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Future, InvalidStateError
from typing import Any, Literal

from .errors import ConfigError, JsonRpcError, RateLimited, RequestTimeout, UsageError

__all__ = [
    "RateLimitedResponse",
    "RATE_LIMIT_STATUSES",
    "Waiter",
    "Clock",
    "ResolveWith",
    "next_id",
    "build_request",
    "encode_request",
    "classify",
    "error_from_response",
    "may_be_response",
    "PendingRequest",
    "Correlator",
    "LatencyWindow",
]

Clock = Callable[[], float]
ResolveWith = Literal["result", "response"]
_RESOLVE_WITH = ("result", "response")

# ---------------------------------------------------------------------------
# Ids
# ---------------------------------------------------------------------------

# itertools.count.__next__ is implemented in C and runs entirely while holding
# the GIL, so two threads can never get the same number: no lock is needed on
# a GIL build. On a free-threaded build (PEP 703, ``sys._is_gil_enabled()``
# false) that guarantee is gone, so there we pay for a lock.
_ids = itertools.count(1)
_GIL_ENABLED: bool = getattr(sys, "_is_gil_enabled", lambda: True)()
_ids_lock = threading.Lock()


def next_id() -> int:
    """Return a process-unique, positive, increasing integer request id.

    Thread-safe: every call in the process, from any thread and any client,
    gets a different number, so ids never collide between clients that share
    a correlator or a recording.

    Returns:
        The next id (1, 2, 3, ...).
    """
    if _GIL_ENABLED:
        return next(_ids)
    with _ids_lock:
        return next(_ids)


# ---------------------------------------------------------------------------
# Building requests
# ---------------------------------------------------------------------------


def build_request(method: str, params: Any = None, id: int | str | None = None) -> dict[str, Any]:
    """Build a JSON-RPC 2.0 request object.

    ``params`` is checked by encoding it once, so an unencodable value fails
    here, in the caller's frame, rather than later in the send path of another
    thread.

    Args:
        method: the method name, e.g. ``"public/subscribe"``; a non-empty str.
        params: the parameters (a dict or a list); omitted from the request
            when None.
        id: the request id; a fresh :func:`next_id` when None.

    Returns:
        ``{"jsonrpc": "2.0", "id": ..., "method": ..., "params": ...}``.

    Raises:
        TypeError: ``method`` is not a non-empty str, ``id`` is not an int or
            str, ``params`` is not a dict or list, or ``params`` cannot be
            encoded as strict JSON (unencodable objects, NaN or infinities,
            circular references).
    """
    return encode_request(method, params, id)[0]


_encode_json_str = json.encoder.encode_basestring_ascii  # C-accelerated, as json.dumps uses


def encode_request(method: str, params: Any = None, id: int | str | None = None) -> tuple[dict[str, Any], bytes]:
    """:func:`build_request` and its compact JSON encoding, encoded once.

    The envelope is formatted directly (the same bytes ``json.dumps`` with
    compact separators gives); only ``params`` goes through the encoder. The
    client's send path uses this, so a request is encoded exactly once.

    Returns:
        ``(request, payload)``: the request object and its UTF-8 JSON text.

    Raises:
        TypeError: as :func:`build_request`.
    """
    if not isinstance(method, str) or not method:
        raise TypeError(f"JSON-RPC method must be a non-empty str, got {method!r}")
    if id is None:
        id = next_id()
    elif isinstance(id, bool) or not isinstance(id, (int, str)):
        # bool is an int subclass, but True as an id is always a bug.
        raise TypeError(f"JSON-RPC id must be an int or str, got {type(id).__name__}")
    request: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    shown_id = _encode_json_str(id) if isinstance(id, str) else str(id)
    head = f'{{"jsonrpc":"2.0","id":{shown_id},"method":{_encode_json_str(method)}'
    if params is None:
        return request, (head + "}").encode("utf-8")
    # JSON-RPC 2.0 section 4.2: params MUST be a structured value.
    if not isinstance(params, (dict, list, tuple)):
        raise TypeError(f"JSON-RPC params must be a dict or list, got {type(params).__name__}")
    try:
        # allow_nan=False: NaN and Infinity are not JSON; servers reject
        # them with an unhelpful parse error, so refuse them here.
        encoded = json.dumps(params, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"params of {method!r} cannot be encoded as JSON: {exc}") from exc
    request["params"] = params
    return request, f'{head},"params":{encoded}}}'.encode()


# ---------------------------------------------------------------------------
# Classifying incoming messages
# ---------------------------------------------------------------------------


def classify(message: Any) -> str:
    """Say what kind of JSON message ``message`` is.

    Args:
        message: a decoded JSON value (usually a dict).

    Returns:
        ``"response"``: it has an ``id`` key and a ``result`` key (JSON-RPC,
        Binance ``{"result": null, "id": 1}``, Binance WebSocket API
        ``{"id": ..., "status": 200, "result": ...}``).
        ``"error"``: it has an ``id`` key and a non-null ``error`` key, or is a
        Binance stream-control error ``{"code": 2, "msg": "...", "id": 1}``.
        ``"notification"``: it has a ``method`` and no (or a null) ``id``,
        e.g. Deribit ``subscription`` and ``heartbeat``.
        ``"request"``: it has a ``method`` and a non-null ``id``.
        ``"other"``: anything else (market data events, non-dicts).
    """
    if not isinstance(message, dict):
        return "other"
    if "id" in message:
        # Some JSON-RPC 1.0-style servers send both members with the unused one
        # null, so a null "error" does not make an error.
        if message.get("error") is not None:
            return "error"
        if "result" in message:
            return "response"
        if "code" in message and "msg" in message:
            return "error"
    if "method" in message:
        return "notification" if message.get("id") is None else "request"
    return "other"


def _as_code(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return None
    return None


#: Binance WebSocket API statuses of a refusal for the rate limit: 429 (a
#: limit was broken; back off) and 418 (the IP is banned for repeating it).
#: Binance "WebSocket API", rate limits (PROTOCOLS.md).
RATE_LIMIT_STATUSES = frozenset({429, 418})


class RateLimitedResponse(RateLimited, JsonRpcError):
    """The server refused a request for its rate limit (Binance WebSocket API status 429 or 418).

    Both a :class:`~zen_websocket.errors.RateLimited` (``except
    zw.RateLimited`` catches it; ``retry_after`` in seconds) and a
    :class:`~zen_websocket.errors.JsonRpcError` (``code``, ``message``,
    ``data``, ``request_id``, ``method``), so code written for either keeps
    working.

    Attributes:
        retry_after: seconds until the server accepts requests again
            (``error.data.retryAfter`` minus ``serverTime``; without them,
            until the next whole minute, when Binance's weight window resets).
        status: the response's ``status`` (429 or 418 = banned).
    """

    def __init__(
        self,
        retry_after: float,
        status: int,
        code: int | None,
        message: str,
        data: Any = None,
        request_id: Any = None,
        method: str | None = None,
    ) -> None:
        JsonRpcError.__init__(self, code, message, data, request_id, method)
        self.retry_after = retry_after
        self.status = status


def _retry_after(data: Any, now_ms: float) -> float:
    """Seconds to wait from a Binance error's ``data`` (``retryAfter``/``serverTime``, ms)."""
    retry_at = data.get("retryAfter") if isinstance(data, dict) else None
    if isinstance(retry_at, (int, float)) and not isinstance(retry_at, bool):
        server_now = data.get("serverTime")
        # The server's own clock when given: a skewed local clock must not
        # turn a two-minute ban into no wait at all.
        if not isinstance(server_now, (int, float)) or isinstance(server_now, bool):
            server_now = now_ms
        return max(0.0, (retry_at - server_now) / 1000.0)
    # No retryAfter: Binance's weight windows are whole UTC minutes.
    return 60.0 - (now_ms / 1000.0) % 60.0


def error_from_response(message: Any, method: str | None = None) -> JsonRpcError:
    """Build a :class:`~zen_websocket.errors.JsonRpcError` from an error response.

    Understands JSON-RPC ``{"error": {"code", "message", "data"}}``, Binance
    stream control ``{"code", "msg"}`` at the top level, and the Binance
    WebSocket API ``{"status": 4xx, "error": {"code", "msg", "data"}}``. An
    error object without a code gives ``code=None``; an error that is a bare
    string becomes the message.

    Never raises: a malformed response still gives an error describing it,
    because this runs in the receive thread, where an exception would be worse
    than an imprecise message.

    Args:
        message: the decoded response.
        method: the method of the request that failed, when known.

    Returns:
        The exception (not raised): a :class:`RateLimitedResponse` for a
        Binance WebSocket API response with status 429 or 418.
    """
    try:
        if not isinstance(message, dict):
            return JsonRpcError(None, f"malformed error response: {message!r:.200}", method=method)
        request_id = message.get("id")
        error = message.get("error")
        code: int | None = None
        text: Any = None
        data: Any = None
        if isinstance(error, dict):
            code = _as_code(error.get("code"))
            text = error.get("message", error.get("msg"))
            data = error.get("data")
        elif isinstance(error, str):
            text = error
        elif error is not None:
            text = str(error)
        elif "code" in message or "msg" in message:
            code = _as_code(message.get("code"))
            text = message.get("msg", message.get("message"))
            data = message.get("data")
        status = message.get("status")
        if text is None or text == "":
            text = f"status {status}" if status is not None else "unknown error"
        if status in RATE_LIMIT_STATUSES and not isinstance(status, bool):
            retry_after = _retry_after(data, time.time() * 1000.0)
            return RateLimitedResponse(retry_after, status, code, str(text), data, request_id, method)
        return JsonRpcError(code, str(text), data, request_id, method)
    except Exception as exc:  # a dict subclass with a hostile get(), say
        return JsonRpcError(None, f"malformed error response ({type(exc).__name__})", method=method)


def may_be_response(text: str | bytes) -> bool:
    """Cheap test of whether a frame could carry a top-level ``"id"``.

    The receive thread calls this before ``json.loads`` when requests are in
    flight, so that market-data frames (most of the traffic) skip decoding.
    False positives are fine (the frame is decoded and checked for real);
    false negatives are impossible for a JSON object whose ``id`` key is
    written as ``"id"``. JSON also allows the key to be spelled with escapes
    (``"\\u0069d"``); no exchange does that, but any frame containing a
    ``\\u`` escape is treated as a possible response, so even that case is
    covered (at the price of decoding frames with escaped non-ASCII text).

    Args:
        text: the raw frame payload.

    Returns:
        True if the frame may be a response to a request.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        raw = bytes(text)
        return b'"id"' in raw or b"\\u" in raw
    return '"id"' in text or "\\u" in text


# ---------------------------------------------------------------------------
# Correlation
# ---------------------------------------------------------------------------


class PendingRequest:
    """A request waiting for its response.

    Attributes:
        id: the request id.
        method: the method, when known (used in errors and metrics).
        future: the ``Future`` the caller waits on.
        sent_at: clock time when it was tracked.
        timeout: seconds allowed, or None for no deadline.
        deadline: clock time after which it expires, or None.
        resolve_with: ``"result"`` (the future gets the ``result`` member, an
            error response raises) or ``"response"`` (the future gets the
            whole response, errors included).
        rtt: round-trip time in seconds, set when the response arrives.
        deliver: whether the response is also an ordinary message for the
            user (``send_message`` futures) or consumed (library requests).
    """

    __slots__ = ("deadline", "deliver", "future", "id", "method", "resolve_with", "rtt", "sent_at", "timeout")

    def __init__(
        self,
        id: Any,
        method: str | None,
        future: Future[Any],
        sent_at: float,
        timeout: float | None,
        resolve_with: ResolveWith = "result",
        deliver: bool = False,
    ) -> None:
        self.id = id
        self.method = method
        self.future = future
        self.sent_at = sent_at
        self.timeout = timeout
        self.deadline: float | None = None if timeout is None else sent_at + timeout
        self.resolve_with: ResolveWith = resolve_with
        self.rtt: float | None = None
        self.deliver = deliver

    def complete(self, message: dict[str, Any]) -> None:
        """Complete the future with ``message``, as ``resolve_with`` says."""
        if self.resolve_with == "response":
            _complete(self.future, message)
        elif classify(message) == "error":
            _complete(self.future, exception=error_from_response(message, self.method))
        else:
            _complete(self.future, message.get("result"))

    def __repr__(self) -> str:
        return f"PendingRequest(id={self.id!r}, method={self.method!r}, deadline={self.deadline!r})"


def _complete(future: Future[Any], result: Any = None, exception: BaseException | None = None) -> None:
    # A future the user cancelled (or one completed twice through a race the
    # caller could not prevent) must not make the receive thread raise.
    try:
        if exception is not None:
            future.set_exception(exception)
        else:
            future.set_result(result)
    except InvalidStateError:
        pass


class Waiter:
    """A one-shot future for a single blocking caller (``Client.request``).

    A lock created locked and released by the thread that completes it:
    cheaper to create, complete and wait on than
    ``concurrent.futures.Future`` (no Condition, no callbacks), and a blocked
    :meth:`result` is interrupted by Ctrl-C. It cannot be cancelled; the
    :class:`Correlator` completes it at most once.
    """

    __slots__ = ("_done", "_exception", "_lock", "_result")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()
        self._result: Any = None
        self._exception: BaseException | None = None
        self._done = False

    def done(self) -> bool:
        """Whether a result or an exception was set."""
        return self._done

    def cancelled(self) -> bool:
        """Always False: a waiter cannot be cancelled."""
        return False

    def _finish(self) -> None:
        if self._done:
            raise InvalidStateError("waiter already completed")
        self._done = True
        self._lock.release()

    def set_result(self, result: Any) -> None:
        """Complete with ``result`` and wake the caller."""
        self._result = result
        self._finish()

    def set_exception(self, exception: BaseException) -> None:
        """Complete with ``exception`` and wake the caller."""
        self._exception = exception
        self._finish()

    def result(self, timeout: float | None = None) -> Any:
        """The result, waiting up to ``timeout`` seconds (None: for ever).

        Raises:
            TimeoutError: nothing arrived in time.
            BaseException: the exception it was completed with.
        """
        if not self._done:
            if not self._lock.acquire(True, -1 if timeout is None else max(0.0, timeout)):
                raise TimeoutError(f"no result within {timeout}s")
            self._lock.release()  # later calls return at once
        if self._exception is not None:
            raise self._exception
        return self._result


def _request_key(request_id: Any) -> int | str | None:
    """``request_id`` as a key of tracked requests, or None if it cannot be one.

    Requests are tracked under int or str ids only, and an id matches only an
    id of the same type. A bare dict lookup is not enough: ``True == 1`` and
    ``5.0 == 5`` (with equal hashes), so a peer answering ``{"id": true}`` or
    ``{"id": 5.0}`` would complete requests 1 and 5 with a response that was
    never theirs. So bools, floats and every other type match nothing; int
    and str never equal each other, so past this check the lookup is exact.
    """
    if isinstance(request_id, bool) or not isinstance(request_id, (int, str)):
        return None
    return request_id


class Correlator:
    """Matches responses to requests by id; thread-safe.

    Locking contract: ``_lock`` guards ``_pending`` and ``_deadlines`` and
    nothing else. Futures are completed *after* the lock is released, because
    completing a future runs its done-callbacks (user code) in this thread.

    Args:
        clock: monotonic clock in seconds (injectable for tests).
    """

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._pending: dict[Hashable, PendingRequest] = {}
        # Min-heap of (deadline, seq, pending) with lazy deletion: resolved
        # entries stay until they reach the top or the heap is compacted.
        self._deadlines: list[tuple[float, int, PendingRequest]] = []
        self._seq = itertools.count()

    def __len__(self) -> int:
        """Number of requests in flight."""
        return len(self._pending)

    def __contains__(self, request_id: object) -> bool:
        """True if ``request_id`` is in flight."""
        key = _request_key(request_id)
        if key is None:
            return False
        with self._lock:
            return key in self._pending

    def pending_ids(self) -> list[Any]:
        """Ids of the requests in flight, oldest first."""
        with self._lock:
            return list(self._pending)

    def track(
        self,
        request_id: int | str,
        method: str | None = None,
        *,
        timeout: float | None,
        resolve_with: ResolveWith = "result",
        future: Any = None,
        deliver: bool = False,
    ) -> Future[Any]:
        """Start waiting for the response to ``request_id``.

        Call it *before* sending the request: a fast server could otherwise
        answer before the id is known.

        Args:
            request_id: the id the response will carry (int or str).
            method: the request's method, for errors and metrics.
            timeout: seconds before :meth:`expire` fails it; None for never.
            resolve_with: ``"result"`` or ``"response"`` (see
                :class:`PendingRequest`).
            future: what to complete instead of a new ``Future``, e.g. a
                :class:`Waiter` for a blocking caller.
            deliver: recorded on the :class:`PendingRequest` for the caller of
                :meth:`resolve` (the client delivers such responses to the user too).

        Returns:
            The future the response completes. Cancelling it stops tracking.

        Raises:
            UsageError: a request with this id is already in flight (reusing
                an id would hand one caller the other's response).
            TypeError: ``request_id`` is not an int or str.
            ConfigError: ``timeout`` is not positive or ``resolve_with`` is unknown.
        """
        if isinstance(request_id, bool) or not isinstance(request_id, (int, str)):
            raise TypeError(f"request id must be an int or str, got {request_id!r}")
        if timeout is not None and (
            isinstance(timeout, bool)
            or not isinstance(timeout, (int, float))
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise ConfigError("timeout", f"must be a positive number of seconds or None, got {timeout!r}")
        if resolve_with not in _RESOLVE_WITH:
            raise ConfigError("resolve_with", f"must be 'result' or 'response', got {resolve_with!r}")
        cancellable = future is None
        if future is None:
            future = Future()
        pending = PendingRequest(request_id, method, future, self._clock(), timeout, resolve_with, deliver)
        with self._lock:
            if request_id in self._pending:
                raise UsageError(f"request id {request_id!r} is already in flight; ids must be unique")
            self._pending[request_id] = pending
            if pending.deadline is not None:
                heapq.heappush(self._deadlines, (pending.deadline, next(self._seq), pending))
                self._maybe_compact_locked()
        # Registered outside the lock: add_done_callback runs the callback at
        # once if the future is already done, and _forget takes the lock.
        if cancellable:
            future.add_done_callback(lambda f: self._forget(pending) if f.cancelled() else None)
        return future

    def _forget(self, pending: PendingRequest) -> None:
        # Remove ``pending`` only if it is still the entry for its id: the id
        # may have been resolved and re-used by then.
        with self._lock:
            if self._pending.get(pending.id) is pending:
                del self._pending[pending.id]

    def _maybe_compact_locked(self) -> None:
        # Resolved requests leave stale heap entries behind; rebuild when they
        # outnumber the live ones, so memory stays proportional to what is in
        # flight even at thousands of requests per second.
        assert self._lock.locked()
        if len(self._deadlines) > 64 and len(self._deadlines) > 2 * len(self._pending):
            live = [entry for entry in self._deadlines if self._pending.get(entry[2].id) is entry[2]]
            heapq.heapify(live)
            self._deadlines = live

    def resolve(self, message: Any) -> PendingRequest | None:
        """Complete the request that ``message`` answers, if any.

        Any message whose ``id`` is tracked completes it; the id must have
        the tracked id's type (``true`` never answers request 1, nor ``5.0``
        request 5). With
        ``resolve_with="result"`` the future gets ``message["result"]`` (None
        when absent), or the :class:`~zen_websocket.errors.JsonRpcError` from
        :func:`error_from_response` for an error response. With
        ``resolve_with="response"`` it gets the whole message, errors included.

        Args:
            message: a decoded message (non-dicts are ignored).

        Returns:
            The completed request (with ``rtt`` set), or None if the id is not
            tracked; such messages are ordinary messages for the user.
        """
        pending = self.take(message)
        if pending is not None:
            pending.complete(message)
        return pending

    def take(self, message: Any) -> PendingRequest | None:
        """Stop tracking the request ``message`` answers, without completing it.

        :meth:`resolve` in two steps, for a caller that wants its own
        book-keeping done before the waiting thread wakes up: ``take``, then
        :meth:`PendingRequest.complete`.
        """
        if not isinstance(message, dict):
            return None
        return self.take_id(message.get("id"))

    def take_id(self, request_id: Any) -> PendingRequest | None:
        """Stop tracking ``request_id`` as answered (its ``rtt`` is set), without completing it.

        For answers that carry no ``id`` member: a subscription dialect that
        matches its own acknowledgements (OKX ``event: subscribe`` per
        channel, Bybit ``req_id``) names the request it answers.

        Returns:
            The request, or None if it is not tracked (or no int/str id).
        """
        key = _request_key(request_id)
        if key is None:
            return None
        with self._lock:
            pending = self._pending.pop(key, None)
        if pending is None:
            return None
        pending.rtt = max(0.0, self._clock() - pending.sent_at)
        return pending

    def expire(self, now: float | None = None) -> list[PendingRequest]:
        """Fail every request past its deadline with ``RequestTimeout``.

        Args:
            now: the clock time to compare with (default: the clock now).

        Returns:
            The requests that expired.
        """
        if now is None:
            now = self._clock()
        expired: list[PendingRequest] = []
        with self._lock:
            heap = self._deadlines
            while heap and heap[0][0] <= now:
                pending = heapq.heappop(heap)[2]
                if self._pending.get(pending.id) is pending:
                    del self._pending[pending.id]
                    expired.append(pending)
        for pending in expired:
            _complete(pending.future, exception=RequestTimeout(pending.id, pending.method, pending.timeout))
        return expired

    def cancel(self, request_id: Any) -> PendingRequest | None:
        """Stop tracking ``request_id`` without completing its future.

        For a request whose send failed: the caller completes the future
        itself (with the send error).

        Returns:
            The request, or None if it was not tracked.
        """
        key = _request_key(request_id)
        if key is None:
            return None
        with self._lock:
            return self._pending.pop(key, None)

    def fail_all(self, exc_factory: Callable[[PendingRequest], BaseException]) -> list[PendingRequest]:
        """Fail every request in flight, e.g. with ``ConnectionLost`` on a disconnect.

        Args:
            exc_factory: builds the exception for each request. If it raises,
                that exception fails the request instead, so no caller is left
                waiting forever.

        Returns:
            The requests that were failed.
        """
        with self._lock:
            failed = list(self._pending.values())
            self._pending.clear()
            self._deadlines.clear()
        for pending in failed:
            try:
                exc = exc_factory(pending)
            except Exception as factory_error:
                exc = factory_error
            _complete(pending.future, exception=exc)
        return failed

    def next_deadline(self) -> float | None:
        """The earliest deadline of a request in flight (clock time), or None."""
        with self._lock:
            heap = self._deadlines
            while heap:
                pending = heap[0][2]
                if self._pending.get(pending.id) is pending:
                    return heap[0][0]
                heapq.heappop(heap)
            return None


# ---------------------------------------------------------------------------
# Latency
# ---------------------------------------------------------------------------


class LatencyWindow:
    """The last ``size`` round-trip times, for p50/p99 metrics.

    ``add`` is called by the receive thread for each resolved request; any
    thread may read percentiles. A lock makes the snapshot consistent (a bare
    deque copied while another thread appends can raise).

    Args:
        size: how many samples to keep.

    Raises:
        ConfigError: ``size`` is not a positive int.
    """

    def __init__(self, size: int = 1024) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ConfigError("size", f"must be a positive int, got {size!r}")
        self.size = size
        self._lock = threading.Lock()  # guards _samples and _total
        self._samples: deque[float] = deque(maxlen=size)
        self._total = 0

    def add(self, seconds: float) -> None:
        """Record one round-trip time.

        Raises:
            ValueError: ``seconds`` is negative or not finite.
        """
        if not math.isfinite(seconds) or seconds < 0:
            raise ValueError(f"round-trip time must be a non-negative finite number, got {seconds!r}")
        with self._lock:
            self._samples.append(seconds)
            self._total += 1

    @property
    def count(self) -> int:
        """Number of samples in the window (what percentiles are computed from)."""
        return len(self._samples)

    @property
    def total(self) -> int:
        """Number of samples ever added."""
        return self._total

    def percentile(self, p: float) -> float | None:
        """The ``p``-th percentile (nearest rank) of the window, e.g. 50 or 99.

        Returns:
            Seconds, or None when no sample was recorded yet.

        Raises:
            ValueError: ``p`` is not within 0..100.
        """
        if not 0 <= p <= 100:
            raise ValueError(f"percentile must be within 0..100, got {p!r}")
        with self._lock:
            samples = sorted(self._samples)
        if not samples:
            return None
        # Nearest rank: the smallest sample with at least p% of samples <= it.
        rank = max(1, math.ceil(p / 100 * len(samples)))
        return samples[rank - 1]

    def clear(self) -> None:
        """Forget every sample."""
        with self._lock:
            self._samples.clear()
            self._total = 0
