"""The threaded driver: sockets, threads and timers, carrying out the session's answers.

Two classes:

- :class:`Link`: one physical connection, the socket and its codec
  (:class:`~zen_websocket.protocol.Protocol`). It writes whole frames under
  ``_send_lock``, every blocking write bounded by ``write_timeout``
  (:meth:`Link.send`); :meth:`Link.try_send` never blocks (heartbeats and
  pongs from threads that must not wait); :meth:`Link.abort` wakes a blocked
  reader or writer from any thread.
- :class:`Driver`: one logical connection. It runs the handshake attempts
  (the session's one retry loop), the receive thread, the timers and the
  close sequence, and hands messages and events to its host (the public
  :class:`~zen_websocket.client.Client`).

Which thread runs what:

- ``zen-ws-recv-<name>`` (one per client, for its whole life): reads the
  socket, feeds the codec, answers pings, routes responses and hands
  messages to the host; when the connection is lost it waits out the
  backoff, runs the next handshake, and starts the connect sequence. A
  thread in ``request()`` or in ``recv()`` with an empty queue reads for
  itself instead while nobody else is reading (:class:`Lead`).
- ``zen-ws-connect-<name>`` (short-lived, after each reconnect): the connect
  sequence (Deribit ``set_heartbeat``, ``connect`` callbacks, subscription
  restore, the ``reconnect`` event), so that a callback waiting on
  ``client.request()`` has the receive thread reading its answer. The first
  ``connect()`` runs that sequence in the caller's thread.
- ``zen-ws-timer`` (one per process, :mod:`zen_websocket.scheduler`):
  heartbeats, dead-peer verdicts and request deadlines of every client. It
  never blocks on a socket: a heartbeat that cannot be written at once (a
  peer that stopped reading) is not waited for, and the missing reply
  declares the peer dead.

Locks (never held while calling user code or telemetry):

- ``Driver._state_lock`` guards ``state``, ``link``, ``closing``, ``final``.
- ``Link._send_lock`` serialises whole frames on the socket.
- ``Driver._count_lock`` guards the send-side counters.
"""

from __future__ import annotations

import _signal  # signal's C module: its wrappers convert handlers to enums, 10 µs a call
import enum
import json
import logging
import select
import socket
import ssl
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import deflate, handshake, telemetry
from .errors import (
    ConfigError,
    ConnectError,
    ConnectionClosed,
    ConnectionLost,
    HeartbeatTimeout,
    MessageTooLarge,
    NotConnectedError,
    ProtocolError,
    UsageError,
)
from .inbox import CLOSED
from .protocol import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, Protocol
from .redact import peer_text
from .scheduler import TIMER_THREAD, Scheduler, Timer, shared
from .session import Dead, Retry, Rotate, SendHeartbeat, Session, Stop, loss_reason

if TYPE_CHECKING:
    from .client import Client

__all__ = ["CLOSED_BY_CLIENT", "READ_CHUNK", "ConnectionState", "Driver", "Lead", "Link", "encode"]

logger = logging.getLogger(__name__)

#: The ``close`` event's reason when the user called ``close()`` (the one end a
#: supervisor never restarts).
CLOSED_BY_CLIENT = "closed by client"

# One read per burst: a backlog of small frames is parsed from memory with
# one system call (WEBSOCKET-CLIENT-NOTES: about 2x the throughput of
# reading each frame's bytes separately). 1 MiB rather than 256 KiB: 64 KB
# messages went from 1.47x to 1.78x raw websocket-client (make bench); the
# codec lets go of a read once it is parsed, so an idle client holds none.
READ_CHUNK = 1024 * 1024
# A read after a short one: under glibc's default mmap threshold (128 KiB).
SMALL_READ = 64 * 1024

# What a non-blocking socket raises when it has nothing to read, or no room
# to write (a TLS socket may need the other direction first).
_WOULD_BLOCK = (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError)

# How long after the last caller that read for itself (Lead.release) a parked
# receive thread leaves the socket unwatched: what arrives meanwhile, when
# nobody waits for anything, is read at the latest this much later.
_PARKED_FOR = 0.01

# The longest text of a frame shown in a debug log line (masked, control characters escaped so a
# frame cannot forge log lines, then cut).
LOG_FRAME_CHARS = 500


class ConnectionState(str, enum.Enum):
    """What ``client.get_state()`` returns; compares equal to its string value."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"

    def __str__(self) -> str:
        return self.value


class Latch:
    """A one-way :class:`threading.Event` (set, never cleared) on one lock.

    About a tenth of an Event's memory (no Condition, no waiter list), which
    counts at four per client (close requested, closed for good, a link's
    end, the peer's close) and a thousand clients per process.
    """

    __slots__ = ("_flag", "_lock")

    def __init__(self) -> None:
        self._flag = False
        self._lock = threading.Lock()
        self._lock.acquire()  # released once, by set()

    def is_set(self) -> bool:
        """Whether :meth:`set` was called."""
        return self._flag

    def set(self) -> None:
        """Set it and wake every waiter (once; later calls do nothing)."""
        if self._flag:
            return
        self._flag = True
        try:
            self._lock.release()
        except RuntimeError:
            pass  # set by another thread at the same moment

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until set or ``timeout`` seconds (None: for ever); True when set."""
        if self._flag:
            return True
        if self._lock.acquire(True, -1 if timeout is None else max(0.0, timeout)):
            try:
                self._lock.release()  # passed on to the next waiter
            except RuntimeError:
                pass  # released by a concurrent set(): already free
            return True
        return self._flag


class WriteTimeout(ConnectionClosed):
    """A write did not complete within ``write_timeout``: the peer stopped reading."""

    def __init__(self, timeout: float | None) -> None:
        super().__init__(None, "write_timeout")
        self.timeout = timeout


# ---------------------------------------------------------------------------
# One physical connection
# ---------------------------------------------------------------------------


class Link:
    """A socket after a successful handshake, with its codec.

    The socket is non-blocking: every wait is a ``poll`` of our own, so a
    read never blocks a writer's timeout and a write never waits longer than
    ``write_timeout``. Two roles, each behind its lock:

    - the writer role (``_send_lock``): whole frames, one at a time;
    - the reader role (``read_lock``): reading the socket, feeding the codec
      and dispatching its events. The receive thread takes it whenever the
      socket is readable; a ``request()`` caller takes it while nobody else
      holds it and reads its own answer (see :meth:`Driver.lead`).

    Args:
        result: the handshake's result (socket, subprotocol, leftover bytes).
        protocol: the codec for this connection.
        write_timeout: bound on one blocking write (None: unbounded).
    """

    def __init__(self, result: handshake.Handshake, protocol: Protocol, write_timeout: float | None) -> None:
        self.sock: socket.socket = result.sock
        self.protocol = protocol
        self.subprotocol = result.subprotocol
        self.response_headers = result.response_headers
        self.write_timeout = write_timeout
        self._send_lock = threading.Lock()  # guards writes to the socket (whole frames) and close_sent
        self.read_lock = threading.Lock()  # the reader role: recv, the codec, dispatch
        # Cleared while a request() caller holds the reader role; created by
        # the first one (Lead.take), so a client that never leads pays nothing.
        self.reader_free: threading.Event | None = None
        # poll, not select: a process may hold more than 1,024 fds. One poll
        # object per role: a poll object cannot be polled by two threads at once.
        self._out_poll = select.poll()  # writers, under _send_lock
        self._out_poll.register(self.sock, select.POLLOUT)
        self._in_poll = select.poll()  # the receive thread, waiting without the reader role
        self._in_poll.register(self.sock, select.POLLIN)
        self._lead_poll = select.poll()  # whoever holds the reader role
        self._lead_poll.register(self.sock, select.POLLIN)
        self._read_size = SMALL_READ  # see recv()
        self._tls = isinstance(self.sock, ssl.SSLSocket)
        self.drained = False  # the last read was short (see recv())
        self.bytes_sent = 0  # written under _send_lock
        self.close_sent = False
        self.close_code: int | None = None
        self.close_reason = ""
        self.lost_exc: BaseException | None = None  # why it ended, first cause wins
        self.lost = Latch()  # the link ended (its end handled by whoever read it)
        self.peer_closed = Latch()  # the peer's close frame (or the end) arrived
        self.established_at = time.monotonic()
        # Rotation (make-before-break): a new link is a candidate until it is
        # promoted; the old one is retired, so its loss is not a disconnect.
        self.candidate = False
        self.retired = False
        # A control event on this link asked for its replacement (Binance
        # serverShutdown): picked up after its promotion when it is a candidate.
        self.rotate_requested = False
        self.sock.setblocking(False)
        if result.leftover:
            protocol.receive_data(result.leftover)

    @property
    def bytes_received(self) -> int:
        """Wire bytes of the frames read so far."""
        return self.protocol.bytes_received

    def fail(self, exc: BaseException) -> None:
        """Mark the link lost with ``exc`` (unless it already has a cause) and abort it."""
        if self.lost_exc is None:
            self.lost_exc = exc
        self.abort()

    def recv(self) -> bytes | None:
        """One read of what the socket holds: bytes (b"" at the end), or None when it has nothing now.

        For the holder of ``read_lock``.
        """
        size = self._read_size
        try:
            data = self.sock.recv(size)
        except _WOULD_BLOCK:
            return None
        # A read that filled its buffer is part of a burst: read more at once
        # next time. Otherwise stay small: a 1 MiB buffer is over glibc's
        # mmap threshold, and a short read into one costs an mmap, an mremap
        # and an munmap (measured: 20-75 µs instead of 3 µs per small read).
        self._read_size = READ_CHUNK if len(data) == size else SMALL_READ
        # A short read emptied the socket (a TLS socket may still hold
        # decrypted bytes): the receive thread then waits without reading
        # again first (saves a system call and an exception per wake-up).
        self.drained = len(data) < size and not (self._tls and self.sock.pending())  # type: ignore[attr-defined]
        return data

    def wait_readable(self) -> None:
        """The receive thread's wait (without the reader role): until readable or hung up."""
        self._in_poll.poll()

    def lead_wait(self, timeout: float) -> bool:
        """The reader role holder's wait, at most ``timeout`` seconds; True when readable or hung up."""
        return bool(self._lead_poll.poll(max(0, int(timeout * 1000 + 0.999))))

    def send(self, opcode: int, payload: bytes) -> int:
        """Write one frame, waiting at most ``write_timeout``; returns its size on the wire.

        Raises:
            NotConnectedError: the link is lost, closing, or the write timed
                out (then the link is failed with :class:`WriteTimeout`: a
                partial frame may be on the wire, so it cannot be used again).
        """
        frame = self.protocol.send(opcode, payload)
        timeout = self.write_timeout
        if not self._send_lock.acquire(timeout=-1 if timeout is None else timeout):
            # Another writer is stuck on a peer that stopped reading.
            self.fail(WriteTimeout(timeout))
            raise NotConnectedError(f"write timed out after {timeout}s: the peer stopped reading")
        try:
            if self.close_sent:
                # RFC 6455 5.5.1: nothing may follow our close frame.
                raise NotConnectedError("the connection is closing")
            try:
                self._write(frame, timeout)
            except TimeoutError as exc:
                self.fail(WriteTimeout(timeout))
                raise NotConnectedError(f"write timed out after {timeout}s: the peer stopped reading") from exc
            except OSError as exc:
                raise NotConnectedError(f"connection lost while sending: {exc}") from exc
            self.bytes_sent += len(frame)
            return len(frame)
        finally:
            self._send_lock.release()

    def _write(self, data: bytes, timeout: float | None) -> None:
        """Write all of ``data`` within ``timeout`` (None: no bound), under ``_send_lock``.

        Raises:
            TimeoutError: the socket had no room for that long (part of
                ``data`` may be on the wire).
            OSError: the connection failed.
        """
        sock = self.sock
        try:
            sent = sock.send(data)
        except _WOULD_BLOCK:
            sent = 0
        if sent == len(data):
            return  # almost always: the socket had room
        view = memoryview(data)[sent:]
        deadline = None if timeout is None else time.monotonic() + timeout
        while view:
            if deadline is None:
                ready = self._out_poll.poll()
            else:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError("write timed out")
                ready = self._out_poll.poll(max(1, int(remaining * 1000 + 0.999)))
            if not ready:
                continue  # timed out: the deadline check above decides
            try:
                view = view[sock.send(view) :]
            except ssl.SSLWantReadError:
                # TLS wants to read first (a post-handshake message): the
                # reader does that; the socket is writable, so do not spin.
                time.sleep(0.001)
            except _WOULD_BLOCK:
                continue

    def try_send(self, opcode: int, payload: bytes) -> bool:
        """Write one small frame only if that cannot block; True if it went out.

        For the timer thread (heartbeats) and the reader (pongs): neither may
        wait on a peer that stopped reading, or on a writer that is stuck on
        one.
        """
        if not self._send_lock.acquire(blocking=False):
            return False
        try:
            if self.close_sent:
                return False
            frame = self.protocol.send(opcode, payload)
            try:
                sent = self.sock.send(frame)
            except _WOULD_BLOCK:
                return False  # no room: nothing went out
            if sent < len(frame):
                # Part of the frame is on the wire: it must be finished or the
                # stream is broken (a control frame is tiny: this is rare).
                self._write(frame[sent:], self.write_timeout)
            self.bytes_sent += len(frame)
            return True
        except OSError:  # TimeoutError included: the next reader sees the broken stream
            return False
        finally:
            self._send_lock.release()

    def send_close(self, code: int, reason: str, timeout: float) -> bool:
        """Send our close frame once, within ``timeout``; False if it could not go out."""
        if self.close_sent:
            return True
        frame = self.protocol.send_close(code, reason)
        if not self._send_lock.acquire(timeout=max(0.0, timeout)):
            return False
        try:
            if self.close_sent:
                return True
            self._write(frame, max(0.001, timeout))
            self.bytes_sent += len(frame)
            self.close_sent = True
            return True
        except OSError:
            return False
        finally:
            self._send_lock.release()

    def drain_until_eof(self, timeout: float) -> None:
        """After the closing handshake: give the server ``timeout`` in all to close TCP first.

        Whatever arrives meanwhile is discarded; a peer that keeps sending
        cannot stretch the wait. For the holder of ``read_lock``.
        """
        deadline = time.monotonic() + timeout
        try:
            while True:
                data = self.recv()
                if data == b"":
                    return
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (data is None and not self.lead_wait(remaining)):
                    return
        except OSError:
            pass

    def shutdown(self) -> None:
        """Shut the socket down: a reader or writer blocked on it wakes up (the fd stays open)."""
        _shutdown(self.sock)

    def abort(self) -> None:
        """Shut the socket down (waking any blocked reader or writer) and close it."""
        sock = self.sock
        _shutdown(sock)
        try:
            sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------
# One logical connection
# ---------------------------------------------------------------------------

_live_drivers: weakref.WeakSet[Driver] = weakref.WeakSet()


class Driver:
    """Runs one client's connection: attempts, receive thread, timers, close.

    The host (the public ``Client``) supplies delivery and events: it owns
    the inbox, the callbacks and the connect sequence; the driver calls its
    underscore methods named in the module docstring.
    """

    def __init__(self, host: Client, session: Session) -> None:
        self.host = host
        self.session = session
        self.config = config = host.config
        self.name = host.name
        self._debug = config.debug
        self._meta = host._meta

        self._state_lock = threading.Lock()
        self.state = ConnectionState.DISCONNECTED
        self.link: Link | None = None
        self.closing = False
        self.final = False  # closed for good: close(), a fatal error or giving up
        self.ever_connected = False
        self.stopping = Latch()  # set by close(): interrupts backoff waits
        self.done = Latch()  # set when the client is closed for good
        self.final_code: int | None = None
        self.final_reason = ""
        self._thread: threading.Thread | None = None  # zen-ws-recv-<name> of the current link
        self._receivers: set[threading.Thread] = set()  # every receive thread alive (two during a rotation)
        self._connect_thread: threading.Thread | None = None  # zen-ws-connect-<name>
        self._rotate_thread: threading.Thread | None = None  # zen-ws-rotate-<name> (max_connection_age)
        # Guards _rotating: whether a zen-ws-rotate thread is at work. Its
        # decision to stop is taken under this lock, so a rotation requested
        # just as it ends (a serverShutdown) starts a new thread, never lost.
        self._rotate_thread_lock = threading.Lock()
        self._rotating = False
        self._rotate_lock = threading.Lock()  # one rotation at a time
        # During a rotation the connect sequence runs in the rotating thread and
        # must send on the new link: a per-thread override of ``link``.
        self._local: threading.local | None = None  # created by the first rotation
        self._rotating_link: Link | None = None  # the candidate, for close() to abort
        self._handshake_sock: socket.socket | None = None  # the handshake in progress, for close() to abort
        self._scheduler: Scheduler | None = None
        self._parked: Link | None = None  # a link whose receive thread a leader left parked (Lead.release)
        self.lead_seen = 0.0  # when a leader last left the receive thread parked (Lead.release)
        self._timer: Timer | None = None
        self._timer_lock = threading.Lock()  # guards _timer

        self._count_lock = threading.Lock()
        self.messages_received = 0  # receive thread only
        self.messages_sent = 0
        self.bytes_received_closed = 0  # bytes of links already gone
        self.bytes_sent_closed = 0
        self.dropped = 0
        self.reconnects = 0
        self.connected_since: float | None = None  # time.time()
        self.downtime = 0.0
        self.lost_at: float | None = None
        self.last_error: BaseException | None = None
        self.callback_errors = 0
        self.pongs_skipped = 0
        self.recorder: Any = None  # opened by connect(), closed by _finish()
        # The subscription dialect looks at incoming text with its markers
        # (its own acknowledgements, control events such as serverShutdown).
        session.use_dialect(host._dialect)

    # -- connecting ---------------------------------------------------------

    def connect(self) -> None:
        """The first connect, in the caller's thread: the retry loop, then the connect sequence."""
        with self._state_lock:
            if self.final or self.closing:
                raise UsageError("this client was closed; create a new one")
            if self.state is not ConnectionState.DISCONNECTED or self.ever_connected:
                raise UsageError("connect() was already called on this client")
            self.state = ConnectionState.CONNECTING
        if self.config.record_to:
            from .recorder import Recorder

            try:
                self.recorder = Recorder(self.config.record_to, self.name)
            except BaseException:
                self._end_attempts()
                raise
        _live_drivers.add(self)
        session = self.session
        session.begin_connect()
        while True:
            try:
                link = self._open()
                break
            except Exception as exc:
                self.last_error = exc
                decision = session.attempt_failed(exc)
                if self.stopping.is_set():
                    decision = Stop("closed", False, exc)
                if isinstance(decision, Stop):
                    self._end_attempts()
                    raise _connect_error(exc, session.attempts, self.stopping.is_set(), url=self._meta["url"]) from (
                        exc.__cause__ if isinstance(exc, ConnectError) else exc
                    )
                logger.info(
                    "%s: connect attempt %d failed (%s); retrying in %.3fs",
                    self.name,
                    session.attempts,
                    _short(exc),
                    decision.delay,
                )
                self.stopping.wait(decision.delay)
        self._install(link, reconnect=False)
        self._thread = self._start_receiver(link)
        try:
            self.host._after_connect(reconnect=False)
        except ConnectError as exc:
            # A connect callback refused the connection (wrong credentials...).
            if not self.session.is_fatal(exc):
                self.refuse(exc, link)  # reconnected like any lost connection; connect() returns
                return
            exc.attempts = session.attempts + 1
            logger.error("%s: the connection was refused: %s", self.name, exc)
            self.close(self.config.close_timeout, reason=exc.reason)
            raise

    def _end_attempts(self) -> None:
        with self._state_lock:
            self.state = ConnectionState.DISCONNECTED
            self.final = True
        self.done.set()
        _live_drivers.discard(self)
        if self.recorder is not None:
            self.recorder.close()

    def _open(self, timeout: float | None = None) -> Link:
        """One handshake, bounded by ``timeout`` as a whole; close() can abort it."""
        if self.stopping.is_set():
            raise ConnectError("client is closing", reason="closed")
        config = self.config
        url = self.host._resolve_url()

        offers = [deflate.offer()] if config.compression == "deflate" else []
        try:
            result = handshake.open_connection(
                url,
                timeout=config.timeout if timeout is None else timeout,
                headers=config.headers,
                subprotocols=config.subprotocols,
                ssl_context=config.ssl_context,
                proxy=config.proxy,
                on_socket=self._remember_socket,
                extensions=offers,
            )
        finally:
            self._handshake_sock = None
        try:
            extension = deflate.accept(result.extensions) if offers else None
        except ConnectError:
            result.sock.close()  # an answer we cannot honour: fatal, and the socket is ours to close
            raise
        protocol = Protocol(max_message_size=config.max_message_size, extensions=[extension] if extension else [])
        return Link(result, protocol, config.write_timeout)

    def _remember_socket(self, sock: socket.socket) -> None:
        self._handshake_sock = sock
        if self.stopping.is_set():  # close() came first: abort at once
            _shutdown(sock)

    def _install(self, link: Link, *, reconnect: bool) -> None:
        """The link is up: state ``connected``, timers on, telemetry."""
        with self._state_lock:
            if self.closing:
                link.abort()
                raise ConnectError("client is closing", reason="closed")
            self.link = link
            self.state = ConnectionState.CONNECTED
            self.ever_connected = True
        now = time.monotonic()
        self.session.connected(now)
        self.connected_since = time.time()
        if self.lost_at is not None:
            self.downtime += now - self.lost_at
            self.lost_at = None
        if self._scheduler is None:
            self._scheduler = shared()
            self._scheduler.acquire()
        self.reschedule()
        logger.info("%s: connected to %s", self.name, self._meta["url"])
        self.host._emit_telemetry(telemetry.CONNECT, {"reconnect": reconnect})

    # -- the receive thread -------------------------------------------------

    def _start_receiver(self, link: Link) -> threading.Thread:
        thread = threading.Thread(
            target=self._run,
            args=(link,),
            name=f"zen-ws-recv-{self.name}",
            # Daemon so that a forgotten client never blocks interpreter exit;
            # the atexit hook closes it politely first.
            daemon=True,
        )
        self._receivers.add(thread)
        thread.start()
        return thread

    def _run(self, link: Link | None) -> None:
        """The receive thread: read until lost, then reconnect as the session says."""
        try:
            while link is not None:
                exc = self._receive(link)
                if self.stopping.is_set() or link.retired or link.candidate:
                    return  # closing, or rotated away, or a rotation that failed
                self._lost(link, exc)
                link = self._reconnect(self.session.connection_lost(exc))
        except BaseException as exc:  # a bug here must not leave the client hanging
            logger.exception("%s: receive thread failed", self.name)
            self.host._report_error(exc)
            self._finish(None, "internal_error")
        finally:
            self._receivers.discard(threading.current_thread())

    def _receive(self, link: Link) -> BaseException:
        """Read and dispatch until the link ends; returns why it ended.

        The reader role is taken only while there is something to read: a
        ``request()`` or ``recv()`` caller may hold it meanwhile (:class:`Lead`),
        and then this thread waits until the caller is done, or stays parked.
        """
        read_lock = link.read_lock
        reader_free = link.reader_free  # None until a first leader
        try:
            while True:
                if read_lock.acquire(blocking=False):
                    try:
                        if link.lost.is_set() or self._pump(link):
                            break  # ended: handled by whoever read the end (a leader, or this thread)
                    finally:
                        read_lock.release()
                    link.wait_readable()  # woken by data, the peer's close, or abort()
                elif reader_free is None or reader_free.is_set():
                    # A leader is letting go at this moment (or, the first
                    # one, has not created the event yet): wait for it.
                    read_lock.acquire()
                    read_lock.release()
                    reader_free = link.reader_free
                else:
                    # A caller is reading (Lead). Waiting on the lock itself
                    # would make this thread its owner the moment the caller
                    # let go, and the caller's next request would find it
                    # taken: wait for the event instead. A leader that had
                    # nothing left for anyone leaves this thread parked
                    # (Lead.release): it stays so while leaders keep coming,
                    # and looks at the socket again _PARKED_FOR after the last.
                    while not reader_free.wait(max(0.001, self.lead_seen + _PARKED_FOR - time.monotonic())):
                        if time.monotonic() - self.lead_seen >= _PARKED_FOR or link.lost.is_set():
                            break
        finally:
            link.abort()  # the socket is closed by its receive thread only
        assert link.lost_exc is not None
        return link.lost_exc

    def _pump(
        self,
        link: Link,
        done: Callable[[], bool] | None = None,
        deadline: float | None = None,
        guard: _SigintGuard | None = None,
    ) -> bool:
        """Dispatch what the codec holds and what the socket has; True when the link ended.

        The caller holds ``link.read_lock``. Without ``done`` (the receive
        thread) it returns when the socket has nothing more for now; with it
        (a leader) it waits for the socket until ``done()`` (a request's
        answer is in, or a message was queued for ``recv()``) or ``deadline``,
        and then returns once the codec holds no complete event (what is still
        in the socket is for the next reader).
        """
        host = self.host
        session = self.session
        proto = link.protocol
        recv = link.recv
        monotonic = time.monotonic
        next_event = proto.next_event
        inbox = host._inbox
        put_now = inbox.put_nowait  # the unbounded inbox: straight into the queue
        # With an extension (permessage-deflate) zlib releases the GIL on every
        # message, so a consumer blocked in recv() would be woken once per
        # message; queue what one read yields in one go instead (measured: 2.25
        # context switches per message against 0.03). Without one, every
        # message is handed over at once (lowest latency).
        batch: list[Any] | None = [] if proto.extensions and put_now is not None else None
        correlator = session.correlator
        in_flight = correlator._pending  # read without its lock: empty means no request in flight
        filters = session.filters_text
        record = self.recorder.record if self.recorder is not None else None
        debug = self._debug
        read_short = False  # this call's last read emptied the socket (then the receive thread waits)
        exc: BaseException | None = None
        try:
            while True:
                event = next_event()
                if event is None:
                    if batch:
                        for item in batch:
                            put_now(item)  # type: ignore[misc]
                        batch.clear()
                    if done is not None:
                        if done():
                            return False  # the leader's answer is in; the rest is the receive thread's
                        if link.drained:
                            # The last read emptied the socket: a leader waits
                            # before reading (an empty read costs an exception);
                            # in a burst it reads straight on.
                            remaining = 3600.0 if deadline is None else deadline - monotonic()
                            if remaining <= 0:
                                return False
                            if guard is None:
                                link.lead_wait(remaining)
                            else:
                                guard.wait(link, remaining)  # Ctrl-C: _Interrupted, with nothing in hand
                    elif read_short:
                        return False  # the receive thread: its last read emptied the socket
                    data = recv()
                    if data is None:
                        if done is None:
                            return False  # the receive thread: nothing more for now
                        link.drained = True  # the leader waits before it reads again
                    elif data:
                        read_short = link.drained
                        proto.receive_data(data)
                    else:
                        proto.receive_eof()
                    continue
                opcode, payload = event
                session.heartbeat.last_frame_at = monotonic()
                if opcode in (OP_TEXT, OP_BINARY):
                    self.messages_received += 1
                    if record is not None:
                        record("in", payload)
                    if debug:
                        self._log_frame("<", payload)
                    handlers = telemetry.handlers_for(telemetry.MESSAGE_RECEIVED)
                    if handlers:
                        telemetry.dispatch(handlers, telemetry.MESSAGE_RECEIVED, {"size": len(payload)}, self._meta)
                    if opcode == OP_TEXT and (filters or (in_flight and ('"id"' in payload or "\\u" in payload))):
                        action = session.text_received(payload, monotonic())
                        if action is not None and not self._library_message(action, link):
                            continue
                    callbacks = host._callbacks.get("message")
                    if callbacks:
                        for fn in callbacks:
                            try:
                                fn(host, payload)
                            except BaseException as cb_exc:  # SystemExit too: a callback never ends the thread
                                host._callback_failed("message", fn, cb_exc)
                    elif batch is not None:
                        batch.append(payload)
                    elif put_now is not None:
                        put_now(payload)
                    else:
                        dropped = inbox.put(payload, self.stopping)
                        if dropped is not CLOSED:
                            self.dropped += 1
                            host._emit_telemetry(
                                telemetry.QUEUE_OVERFLOW,
                                {"dropped": 1, "total": self.dropped},
                                policy=self.config.overflow,
                            )
                elif opcode == OP_PING:
                    self._pong(link, payload)
                elif opcode == OP_PONG:
                    self._heartbeat_reply()
                elif opcode == OP_CLOSE:
                    code, reason = payload
                    link.close_code, link.close_reason = code, reason
                    if record is not None:
                        record("close", {"code": code, "reason": reason})
                    if not link.close_sent:
                        # Echo the peer's code (websocket-client would send 1000).
                        link.send_close(code, "", self.config.close_timeout)
                    link.peer_closed.set()
                    link.drain_until_eof(self.config.close_timeout)  # the server closes TCP first
                    exc = ConnectionClosed(code, reason)
                    break
        except (ProtocolError, MessageTooLarge) as protocol_exc:
            exc = protocol_exc
            logger.error("%s: %s; closing with %d", self.name, protocol_exc, protocol_exc.close_code)
            if link.send_close(protocol_exc.close_code, "", self.config.close_timeout):
                link.drain_until_eof(self.config.close_timeout)
        except ConnectionClosed as closed_exc:
            exc = closed_exc
        except OSError as os_exc:
            exc = ConnectionClosed(None, f"socket error: {os_exc}")
            exc.__cause__ = os_exc
        except Exception as other:  # a bug, or MemoryError: report it, never die silently
            logger.exception("%s: receive loop failed", self.name)
            exc = other
            host._report_error(other)
        finally:
            if batch:  # nothing read is lost, whatever ended the loop
                for item in batch:
                    put_now(item)  # type: ignore[misc]
        # The link ended (whoever read the end handles it; the receive thread
        # then only closes the socket and reconnects).
        if link.lost_exc is None:
            link.lost_exc = exc
        link.peer_closed.set()
        link.shutdown()  # wakes the receive thread if a leader read the end
        if not (self.stopping.is_set() or link.retired or link.candidate):
            # Fail in-flight requests at once: a connect callback waiting
            # on one must not sit out its whole timeout.
            self.fail_pending(ConnectionLost(link.close_code, loss_reason(link.lost_exc)))
        link.lost.set()
        return True

    def _library_message(self, action: Any, link: Link) -> bool:
        """Carry out what the session decided about a text message; True if the user gets it too."""
        kind = action.kind
        if kind == "response":
            pending = action.pending
            rtt = pending.rtt
            if rtt is not None:
                self.host._latency.add(rtt)
            if telemetry.handlers_for(telemetry.REQUEST_STOP):
                self.host._emit_telemetry(
                    telemetry.REQUEST_STOP, {"duration": rtt}, method=pending.method, id=pending.id
                )
            # Last: the woken caller competes with this thread for the GIL,
            # so the book-keeping above is done before it wakes.
            pending.complete(action.message)
            return action.deliver
        if kind == "heartbeat":
            self._heartbeat_reply()
            return False
        if kind == "test_request":
            self._heartbeat_reply()
            try:
                self.session.test_in_flight = self.host._internal_request_async("public/test", {}, charge=True)
            except Exception as exc:
                self.host._report_error(exc)
            return False
        if kind == "coalesced":
            self._heartbeat_reply()
        if kind in ("rotate", "renew"):
            self._control_event(kind, action.message, link)
            return action.deliver
        return False

    def _control_event(self, kind: str, message: Any, link: Link) -> None:
        """A dialect's control event on ``link``: replace it make-before-break.

        ``"renew"`` first lets the dialect renew what the URL carries (it
        must not block; the rotation calls the callable ``url`` for the new
        one). A notice on a rotation's candidate is picked up once it is
        promoted; one on the link being replaced needs nothing more.
        """
        if link.retired:
            return
        if kind == "renew":
            dialect = self.session.dialect
            try:
                if dialect is None or not dialect.renew(message):
                    return
            except Exception as exc:
                logger.exception("%s: renewing after a control event failed", self.name)
                self.host._report_error(exc)
                return
        logger.info("%s: %s notice from the server: rotating the connection", self.name, kind)
        link.rotate_requested = True
        if not link.candidate:
            self._rotate_in_background()

    def _pong(self, link: Link, payload: bytes) -> None:
        """Answer a ping without waiting: skipped when the limiter or the socket has no room.

        RFC 6455 5.5.3 lets an endpoint answer only the most recent of
        several pings, so a ping flood cannot run the rate limiter into debt
        or block the receive thread.
        """
        limiter = self.config.rate_limiter
        if limiter is not None and not limiter.consume(None):
            self.pongs_skipped += 1
            return
        if not link.try_send(OP_PONG, payload):
            self.pongs_skipped += 1

    def _heartbeat_reply(self) -> None:
        rtt = self.session.heartbeat_reply(time.monotonic())
        handlers = telemetry.handlers_for(telemetry.HEARTBEAT_REPLY)
        if handlers:
            telemetry.dispatch(
                handlers, telemetry.HEARTBEAT_REPLY, {"rtt": rtt}, dict(self._meta, type=self.session.heartbeat_type)
            )

    def _log_frame(self, direction: str, data: Any) -> None:
        if isinstance(data, str):
            logger.debug("%s %s text %d chars: %s", self.name, direction, len(data), peer_text(data, LOG_FRAME_CHARS))
        else:
            logger.debug("%s %s binary %d bytes", self.name, direction, len(data))

    # -- losing and reconnecting ------------------------------------------

    def _lost(self, link: Link, exc: BaseException) -> None:
        """Book-keeping after a link is gone, before any reconnect."""
        self._retire(link)
        with self._state_lock:
            if not self.closing:
                self.state = ConnectionState.CONNECTING
        self.session.disconnected()
        self._cancel_timer()
        self.lost_at = time.monotonic()
        self.last_error = exc
        reason = loss_reason(exc)
        logger.warning("%s: disconnected (%s)", self.name, reason)
        self.host._emit_telemetry(telemetry.DISCONNECT, {}, reason=reason, code=link.close_code)
        self.host._emit("disconnect", reason)

    def unpark(self) -> None:
        """Wake a receive thread a leader left parked: something needs the socket watched now."""
        link = self._parked
        if link is not None:
            self._parked = None
            link.reader_free.set()  # type: ignore[union-attr]  # a parked link has had a leader

    def _retire(self, link: Link) -> None:
        """Forget a finished link, keeping its byte counts (once)."""
        self.unpark()
        with self._state_lock:
            if self.link is not link:
                return
            self.link = None
            self.bytes_received_closed += link.bytes_received
            self.bytes_sent_closed += link.bytes_sent

    def _reconnect(self, decision: Retry | Stop) -> Link | None:
        """The session's retry loop after a loss; the new link, or None when the client ended."""
        downtime_before = self.downtime
        session = self.session
        while True:
            if self.stopping.is_set():
                return None
            if isinstance(decision, Stop):
                self._stop(decision)
                return None
            self.host._emit_telemetry(
                telemetry.RECONNECT_ATTEMPT, {"attempt": decision.attempt, "delay": decision.delay}
            )
            if self.stopping.wait(decision.delay):
                return None
            try:
                link = self._open()
                self._install(link, reconnect=True)
            except Exception as exc:
                self.last_error = exc
                if self.stopping.is_set():
                    return None
                logger.info("%s: reconnect attempt %d failed: %s", self.name, decision.attempt, _short(exc))
                decision = session.attempt_failed(exc)
                continue
            self.reconnects += 1
            attempt = decision.attempt
            self._start_connect_sequence(attempt, downtime_before, link)
            return link

    def _stop(self, decision: Stop) -> None:
        if decision.reason == "retries_exhausted":
            logger.error("%s: giving up after %d attempts", self.name, self.session.attempts)
            self.host._emit_telemetry(telemetry.RECONNECT_GIVE_UP, {"attempts": self.session.attempts})
            self._finish(None, "retries_exhausted")
            return
        exc = decision.exc
        if decision.fatal and exc is not None:
            self.host._report_error(exc)
        code = getattr(exc, "close_code", None)
        if not isinstance(code, int):
            code = getattr(exc, "code", None)
        # A refused connection (Driver.refuse) ends with its own word ("unauthorized").
        reason = exc.reason if isinstance(exc, ConnectError) else decision.reason
        self._finish(code if isinstance(code, int) else None, reason)

    def _start_connect_sequence(self, attempt: int, downtime_before: float, link: Link) -> None:
        previous = self._connect_thread
        if previous is not None and previous.is_alive():
            # Its requests failed with ConnectionLost when the link dropped.
            previous.join(self.config.close_timeout)
        thread = threading.Thread(
            target=self._connect_sequence,
            args=(attempt, downtime_before, link),
            name=f"zen-ws-connect-{self.name}",
            # Daemon for the same reason as the receive thread; close() joins it.
            daemon=True,
        )
        self._connect_thread = thread
        thread.start()

    def _connect_sequence(self, attempt: int, downtime_before: float, link: Link) -> None:
        try:
            try:
                self.host._after_connect(reconnect=True)
            except ConnectError as exc:
                self.refuse(exc, link)  # a connect callback refused the connection
                return
            if self.stopping.is_set():
                return
            self.host._emit_telemetry(
                telemetry.RECONNECT_SUCCESS, {"attempts": attempt, "downtime": self.downtime - downtime_before}
            )
            self.host._emit("reconnect", attempt)
        except BaseException as exc:
            logger.exception("%s: connect sequence failed", self.name)
            self.host._report_error(exc)

    def refuse(self, exc: ConnectError, link: Link | None = None) -> None:
        """The connection was refused: a ``connect`` callback (or a platform adapter) raised ``exc``.

        This is how wrong credentials end a client. A fatal ``exc`` (per
        ``session.is_fatal``; ``reason="unauthorized"`` is) is reported with
        the ``error`` event and the client closes for good (``close`` event,
        with ``exc.reason``). A recoverable one is reported and the link is
        dropped: the receive thread reconnects as after any loss, and the
        next connect sequence tries again. The first ``connect()`` handles a
        fatal refusal itself (it raises instead).

        Safe from any thread: on the timer thread, which must not block, a
        fatal refusal fails the link instead and the receive thread ends the
        client (its ``_stop`` reports the error).

        Args:
            exc: why the connection was refused.
            link: the refused connection (default: the current one).
        """
        link = self.link if link is None else link
        if self.stopping.is_set():
            return
        fatal = self.session.is_fatal(exc)
        if fatal and threading.current_thread().name == TIMER_THREAD:
            if link is not None:
                link.fail(exc)
            return
        logger.warning("%s: connection refused (%s): %s", self.name, "fatal" if fatal else "reconnecting", exc)
        self.host._report_error(exc)
        if fatal:
            self.close(self.config.close_timeout, reason=exc.reason)
        elif link is not None:
            link.fail(exc)

    # -- rotation (make-before-break) ----------------------------------------

    def rotate(self, timeout: float | None = None) -> None:
        """Replace the connection make-before-break (see ``Client.rotate``)."""
        with self._rotate_lock:
            old = self.require_link()
            new = self._open(timeout)
            new.candidate = True
            self._rotating_link = new
            thread = self._start_receiver(new)
            if self._local is None:
                self._local = threading.local()
            self._local.link = new
            refused: ConnectError | None = None
            try:
                self.host._after_connect(reconnect=True, rotation=True)
            except ConnectError as exc:
                refused = exc  # a connect callback refused the new connection
            finally:
                self._local.link = None
                self._rotating_link = None
            with self._state_lock:
                promote = refused is None and not self.closing and self.link is old and not new.lost.is_set()
                if promote:
                    old.retired = True
                    new.candidate = False
                    self.link = new
                    self._thread = thread
                    self.bytes_received_closed += old.bytes_received
                    self.bytes_sent_closed += old.bytes_sent
            if not promote:
                new.send_close(1000, "", self.config.close_timeout)
                new.abort()
                thread.join(self.config.close_timeout)
                if refused is not None:
                    if self.session.is_fatal(refused):
                        # Wrong credentials hold for the old connection too: the client ends.
                        self.refuse(refused, old)
                    raise refused
                if self.closing:
                    raise ConnectError("rotation aborted: the client was closed", reason="closed")
                if new.lost.is_set():
                    raise ConnectError(
                        f"rotation failed: the new connection was lost ({loss_reason(new.lost_exc)})",
                        reason="error",
                    )
                raise ConnectError("rotation failed: the old connection was lost meanwhile", reason="error")
            now = time.monotonic()
            self.session.connected(now)
            self.connected_since = time.time()
            self.reschedule()
            logger.info("%s: rotated to a new connection to %s", self.name, self._meta["url"])
            self.host._emit_telemetry(telemetry.ROTATE, {"age": now - old.established_at})
            # Then the old one goes, politely; its receive thread reads until the
            # server's close and ends without a disconnect (it is retired).
            if old.send_close(1000, "", self.config.close_timeout):
                old.lost.wait(self.config.close_timeout)
            old.abort()
        if new.rotate_requested:
            # Its own shutdown notice came during the rotation: replace it too
            # (the rotating thread loops on it, see _rotate_for_age).
            self._rotate_in_background()

    def _rotate_in_background(self) -> None:
        """At ``max_connection_age`` (timer thread) or on a control event (receive thread): rotate in a thread of its own."""
        with self._rotate_thread_lock:
            if self._rotating:
                return  # the rotating thread looks at the current link's request before it ends
            self._rotating = True
            thread = threading.Thread(
                target=self._rotate_for_age,
                name=f"zen-ws-rotate-{self.name}",
                # Daemon like the others; close() joins it.
                daemon=True,
            )
            self._rotate_thread = thread
        thread.start()

    def _rotate_for_age(self) -> None:
        try:
            while True:
                self.rotate()
                # A control event (serverShutdown) on the new connection while
                # it was being set up: it is on its way out too.
                with self._rotate_thread_lock:
                    link = self.link
                    if self.stopping.is_set() or link is None or not link.rotate_requested:
                        self._rotating = False
                        return
        except BaseException as exc:
            with self._rotate_thread_lock:
                self._rotating = False
            if not isinstance(exc, Exception):
                raise
            if self.stopping.is_set():
                return
            logger.warning("%s: rotation at max_connection_age failed; keeping the connection: %s", self.name, exc)
            self.session.rotation_failed(time.monotonic())
            self.reschedule()
            self.host._report_error(exc)

    # -- timers (the shared timer thread) -----------------------------------

    def reschedule(self) -> None:
        """Arm the timer for the session's next deadline (earlier than the armed one, or none armed)."""
        scheduler = self._scheduler
        if scheduler is None or self.final:
            return
        when = self.session.next_wakeup()
        with self._timer_lock:
            timer = self._timer
            if timer is not None and not timer.cancelled:
                if when is not None and timer.when <= when:
                    return  # the armed timer comes first; it re-arms after it runs
                timer.cancel()
            self._timer = None if when is None else scheduler.call_at(when, self._tick)

    def _cancel_timer(self) -> None:
        with self._timer_lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

    def _tick(self) -> None:
        """On the timer thread: heartbeats, dead-peer verdicts, request deadlines. Never blocks."""
        with self._timer_lock:
            self._timer = None
        link = self.link
        if link is None or self.stopping.is_set():
            # No connection: only request deadlines can be due.
            for pending in self.session.correlator.expire(time.monotonic()):
                self.host._emit_telemetry(telemetry.REQUEST_TIMEOUT, {}, method=pending.method, id=pending.id)
            return
        now = time.monotonic()
        actions, expired = self.session.tick(now)
        for action in actions:
            if isinstance(action, SendHeartbeat):
                self._send_heartbeat(link, action, now)
            elif isinstance(action, Rotate):
                self._rotate_in_background()
            elif isinstance(action, Dead):
                if isinstance(action.exc, HeartbeatTimeout):
                    self.host._emit_telemetry(
                        telemetry.HEARTBEAT_FAILURE, {"failures": self.session.heartbeat.failures}
                    )
                logger.warning("%s: connection is dead: %s", self.name, action.exc)
                link.fail(action.exc)  # wakes the receive thread and any stuck writer
                return
        for pending in expired:
            self.host._emit_telemetry(telemetry.REQUEST_TIMEOUT, {}, method=pending.method, id=pending.id)
        self.reschedule()

    def _send_heartbeat(self, link: Link, action: SendHeartbeat, now: float) -> None:
        # Counted as sent even when the frame could not go out at once: a peer
        # that stopped reading then misses its reply and is declared dead.
        self.session.heartbeat_sent(now)
        if self._parked is not None:
            self.unpark()  # its reply must be read in time
        limiter = self.config.rate_limiter
        if limiter is not None and not limiter.consume(action.message):
            return
        if action.kind == "ping":
            sent = link.try_send(OP_PING, b"zw")
        else:
            opcode, payload = encode(action.message)
            sent = link.try_send(opcode, payload)
            if sent:
                self.count_sent(action.message, payload, "out")
        if sent:
            self.host._emit_telemetry(telemetry.HEARTBEAT_SENT, {}, type=action.kind)

    # -- sending (any thread) -------------------------------------------------

    def require_link(self) -> Link:
        """The live link (the new one, in a rotation's connect sequence), or :class:`NotConnectedError`."""
        local = self._local
        override = None if local is None else getattr(local, "link", None)
        if override is not None:
            if override.lost.is_set():
                raise NotConnectedError("the new connection was lost during the rotation")
            return override
        link = self.link
        if link is None or self.state is not ConnectionState.CONNECTED:
            if self.final:
                raise NotConnectedError("the client is closed")
            raise NotConnectedError(f"not connected (state {self.state.value})")
        return link

    def write(self, opcode: int, payload: bytes, shown: Any) -> None:
        """The last layer of every send: record, log, write (bounded), count, telemetry.

        ``shown`` is what the recording and the debug log show (the message
        as the user gave it, or its text).
        """
        link = self.require_link()
        if self.recorder is not None or self._debug:
            # Before the write: an echo must never be recorded ahead of its cause.
            text = shown if isinstance(shown, (str, bytes)) else payload.decode("utf-8")
            if self.recorder is not None:
                self.recorder.record("out", text)
            if self._debug:
                self._log_frame(">", text)
        # Counted and reported as the frame is handed over, before the write:
        # the echo of a fast server must never be seen ahead of its cause.
        with self._count_lock:
            self.messages_sent += 1
        handlers = telemetry.handlers_for(telemetry.MESSAGE_SENT)
        if handlers:
            telemetry.dispatch(handlers, telemetry.MESSAGE_SENT, {"size": len(payload)}, self._meta)
        try:
            link.send(opcode, payload)
        except BaseException:
            with self._count_lock:
                self.messages_sent -= 1
            raise

    def count_sent(self, shown: Any, payload: bytes, direction: str) -> None:
        """Record and count a frame that went out through :meth:`Link.try_send`."""
        if self.recorder is not None:
            self.recorder.record(direction, shown if isinstance(shown, (str, bytes)) else payload.decode("utf-8"))
        with self._count_lock:
            self.messages_sent += 1

    def fail_pending(self, exc: ConnectionLost) -> None:
        """Fail every request in flight with a copy of ``exc``."""
        self.session.correlator.fail_all(lambda pending: ConnectionLost(exc.code, exc.reason))

    # -- closing ----------------------------------------------------------------

    def close(self, timeout: float, *, reason: str = CLOSED_BY_CLIENT) -> None:
        """Close for good: close frame, bounded wait, then join every thread (bounded by ``timeout``).

        ``reason`` is what the ``close`` event reports (a refused connection
        passes its own, see :meth:`refuse`).
        """
        with self._state_lock:
            already = self.closing
            self.closing = True
            link = self.link
        me = threading.current_thread()
        if already:
            # A second caller waits for the first (unless it is one of our threads).
            if not me.name.startswith("zen-ws-"):
                self.done.wait(timeout)
            return
        deadline = time.monotonic() + timeout
        self.stopping.set()
        self.unpark()
        self._cancel_timer()
        sock = self._handshake_sock
        if sock is not None:  # a handshake in progress: abort it
            _shutdown(sock)
        receiver = self._thread
        if (
            link is not None
            and not link.lost.is_set()
            and link.send_close(1000, "", max(0.0, deadline - time.monotonic()))
            and receiver is not me  # from a message callback nobody else reads the answer
        ):
            link.peer_closed.wait(max(0.0, deadline - time.monotonic()))
            # Then the server's TCP close, which the receive thread waits for.
            link.lost.wait(max(0.0, deadline - time.monotonic()))
        if link is not None:
            link.abort()
            self._retire(link)
        rotating = self._rotating_link
        if rotating is not None:
            rotating.abort()
        # Before joining: a connect callback or a restore may be waiting on a request.
        self.fail_pending(ConnectionLost(1000, CLOSED_BY_CLIENT))
        for thread in (*self._receivers, self._connect_thread, self._rotate_thread):
            if thread is not None and thread is not me and thread.is_alive():
                thread.join(max(0.05, deadline - time.monotonic()))
                if thread.is_alive():
                    logger.warning("%s: %s did not stop within %.2fs", self.name, thread.name, timeout)
        self.session.disconnected()
        self._finish(1000, reason)

    def _finish(self, code: int | None, reason: str) -> None:
        """Closed for good (gave up, fatal error, or close()): runs once."""
        with self._state_lock:
            if self.final:
                return
            self.final = True
            self.state = ConnectionState.DISCONNECTED
        self.final_code = code
        self.final_reason = reason
        self._cancel_timer()
        if self.lost_at is not None:
            self.downtime += time.monotonic() - self.lost_at
            self.lost_at = None
        self.host._inbox.close()
        self.done.set()
        _live_drivers.discard(self)
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.release()
        self.host._emit_telemetry(telemetry.CLOSE, {}, code=code, reason=reason)
        self.host._emit("close", code, reason)
        if self.recorder is not None:
            self.recorder.close()

    def is_receive_thread(self) -> bool:
        """True in this client's receive thread (where a blocking request would deadlock)."""
        return threading.current_thread() in self._receivers


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, ConnectError) else str(exc)
    return text if len(text) <= 200 else text[:200] + "…"


def _connect_error(exc: BaseException, attempts: int, closing: bool, *, url: str = "the server") -> BaseException:
    """The exception the first ``connect()`` raises after its last attempt.

    Its message says what happened in one line: the URL (``url``, already
    redacted), how many attempts were made, and the last attempt's cause,
    e.g. ``cannot connect to ws://127.0.0.1:9/ (4 attempts): connecting to
    127.0.0.1:9 failed during the TCP connect (econnrefused): ...``.
    """
    if isinstance(exc, ConfigError):
        return exc
    tried = f"{attempts} attempt{'' if attempts == 1 else 's'}"
    if closing and not (isinstance(exc, ConnectError) and exc.reason == "closed"):
        return ConnectError(
            f"connecting to {url} aborted ({tried}): the client was closed", reason="closed", attempts=attempts
        )
    if isinstance(exc, ConnectError):
        # The same exception, its message prefixed: its type, reason,
        # status_code and any other attribute stay as the handshake set them.
        exc.attempts = attempts
        prefix = f"cannot connect to {url} ({tried}): "
        exc.message = prefix + exc.message
        exc.args = (prefix + (str(exc.args[0]) if exc.args else ""), *exc.args[1:])
        return exc
    return ConnectError(f"cannot connect to {url} ({tried}): {_short(exc)}", reason="error", attempts=attempts)


def close_all_at_exit(timeout: float = 0.25) -> None:
    """Close every open client politely (the atexit hook): daemon threads would die silently."""
    for driver in list(_live_drivers):
        try:
            driver.close(timeout)
        except Exception:
            logger.exception("closing %r at exit failed", driver.host)


def encode(data: Any) -> tuple[int, bytes]:
    """The opcode and payload of a message: str -> text, bytes -> binary, dict/list -> JSON text."""
    if isinstance(data, str):
        return OP_TEXT, data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return OP_BINARY, bytes(data)
    if isinstance(data, (dict, list)):
        return OP_TEXT, _dumps(data)
    raise TypeError(f"cannot send {type(data).__name__}: use str, bytes, dict or list")


def _dumps(data: Any) -> bytes:
    try:
        return json.dumps(data, separators=(",", ":"), allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise TypeError(f"message is not JSON-encodable: {exc}") from exc


class Lead:
    """The reader role, taken by a caller that would otherwise wait (leader/follower).

    ``recv()`` with an empty queue takes it (``consumer=True``) and reads
    until something is queued. ``request()`` calls :meth:`take` just before
    its frame is written and :meth:`read` after: when no other thread is
    reading, its caller becomes the reader and dispatches what arrives (its
    answer, and every notification, in order, to the queue) itself, instead
    of waiting for the receive thread to read the answer and wake it: two
    thread hand-offs fewer per round trip. The role is taken before the write
    so that the receive thread cannot read the answer first. When another
    thread is reading, when messages go to ``message`` callbacks (they run in
    the receive thread only) or when the queue is bounded (only the receive
    thread may block on a full queue), the caller just waits.

    Ctrl-C in the main thread is deferred while the caller dispatches and
    raised by :meth:`release` once nothing is in hand (see
    :class:`_SigintGuard`): no byte read and no message is lost to it.
    """

    __slots__ = ("_consumer", "_driver", "_guard", "_link")

    def __init__(self, driver: Driver, *, consumer: bool = False) -> None:
        self._driver = driver
        self._consumer = consumer  # taken by recv() for an empty queue, not by request()
        self._link: Link | None = None
        self._guard: _SigintGuard | None = None

    @property
    def taken(self) -> bool:
        """Whether the caller holds the reader role."""
        return self._link is not None

    def take(self) -> None:
        """Become the reader if nobody else is reading (called just before the write)."""
        driver = self._driver
        host = driver.host
        if host._callbacks.get("message") or host._inbox.put_nowait is None:
            return
        link = driver.require_link()
        read_lock = link.read_lock
        if read_lock.locked():
            return
        # The guard first, so that no Ctrl-C can come between taking the
        # role and recording it (release() gives back what was recorded).
        # Installing it may raise a Ctrl-C already pending: nothing is held yet.
        self._guard = _SigintGuard.enter()
        if not read_lock.acquire(blocking=False):
            return
        reader_free = link.reader_free
        if reader_free is None:
            reader_free = link.reader_free = threading.Event()
        reader_free.clear()
        self._link = link

    def _nothing_expected(self, link: Link) -> bool:
        """Whether the receive thread may stay parked (the caller still holds the reader role).

        After ``recv()`` (the consumer) what is in the socket is the
        consumer's to read on its next call. Either way it stays there while
        leaders keep coming, for at most ``_PARKED_FOR`` after the last (see
        :meth:`Driver._receive`).
        """
        driver = self._driver
        session = driver.session
        if (
            session.correlator._pending  # another request's answer must not wait
            or session.heartbeat.outstanding_since is not None
            or driver.stopping.is_set()
            or link.lost.is_set()
        ):
            return False
        if not self._consumer and (driver.host._recv_lock.locked() or link.lead_wait(0)):
            return False  # a consumer waits in recv(), or something is already in the socket
        driver.lead_seen = time.monotonic()
        return True

    def read(self, done: Callable[[], bool], timeout: float | None) -> None:
        """Read and dispatch until ``done()`` or ``timeout`` passes (when the role was taken)."""
        link = self._link
        if link is None or link.lost.is_set():
            return  # not the reader; or the link ended before (its end was handled then)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self._driver._pump(link, done, deadline, self._guard)
        except _Interrupted:
            pass  # raised by release() as the previous handler's KeyboardInterrupt

    def release(self) -> None:
        """Give the role back; then raise a Ctrl-C deferred meanwhile.

        When nothing is left for anyone (nothing to read, no other request in
        flight, no heartbeat reply awaited, nobody blocked in ``recv()``) the
        receive thread is left parked instead of woken: a caller making
        requests back to back then reads every answer without the receive
        thread waking twice per round trip (measured: a fifth of the round
        trip on a 2-core machine). It looks at the socket again ``_PARKED_FOR``
        after the last such caller, or at once when ``recv()``, another
        request, a heartbeat or ``close()`` needs it (:meth:`Driver.unpark`).
        """
        link, self._link = self._link, None
        if link is not None:
            park = self._nothing_expected(link)
            if park:
                self._driver._parked = link  # before the release: an unpark from then on finds it
            link.read_lock.release()
            if not park:
                link.reader_free.set()  # type: ignore[union-attr]  # created by take(); the receive thread reads on
        guard, self._guard = self._guard, None
        if guard is not None:
            guard.exit()


class _Interrupted(BaseException):
    """Ctrl-C during a leader's wait (nothing read yet): ends the lead, then raised as KeyboardInterrupt."""


class _SigintGuard:
    """Ctrl-C, deferred while a ``request()`` caller in the main thread holds the reader role.

    Python runs signal handlers in the main thread between any two bytecodes:
    a KeyboardInterrupt there could fall between a read and the codec, or
    between an event and the queue, and lose it. While the guard is in place
    the handler only records the signal, except during the wait for the
    socket (where nothing is in hand), which it interrupts; :meth:`exit`
    restores the previous handler and calls it with the recorded signal.
    """

    __slots__ = ("pending", "previous", "waiting")

    def __init__(self, previous: Any) -> None:
        self.previous = previous
        self.pending: tuple[int, Any] | None = None
        self.waiting = False

    @classmethod
    def enter(cls) -> _SigintGuard | None:
        """Install a guard in the main thread when SIGINT has a Python handler; else None."""
        if threading.current_thread() is not threading.main_thread():
            return None  # only the main thread runs Python signal handlers
        previous = _signal.getsignal(_signal.SIGINT)
        if not callable(previous):
            return None  # ignored or the OS default: no exception can come
        guard = cls(previous)
        _signal.signal(_signal.SIGINT, guard._handler)
        return guard

    def _handler(self, signum: int, frame: Any) -> None:
        self.pending = (signum, frame)
        if self.waiting:
            raise _Interrupted

    def wait(self, link: Link, timeout: float) -> None:
        """The leader's wait for the socket; raises :class:`_Interrupted` on Ctrl-C."""
        self.waiting = True
        try:
            if self.pending is None:
                link.lead_wait(timeout)
        finally:
            self.waiting = False
        if self.pending is not None:
            raise _Interrupted

    def exit(self) -> None:
        """Restore the previous handler; call it with the deferred signal, if one came."""
        _signal.signal(_signal.SIGINT, self.previous)
        if self.pending is not None:
            self.previous(*self.pending)
