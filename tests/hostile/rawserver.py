"""A hostile WebSocket peer on raw sockets, and the helpers the hostile suite shares.

:class:`RawServer` is deliberately *not* built on ``MockWebSocketServer`` or
``websockets``: a well-behaved server library refuses to send what these
tests need (masked server frames, an 8 MB header line, a trickled upgrade,
four million empty continuation frames, a peer that stops reading). Each
accepted connection runs a *script*, ``script(conn)``, in its own thread;
the script drives the wire byte by byte through :class:`RawConn`.

Threads: ``hostile-accept`` accepts, ``hostile-conn-<n>`` runs one script.
Both are daemons (a broken test must never keep the interpreter alive) and
both are joined by :meth:`RawServer.stop`, which first shuts every socket
down so that a script blocked in ``recv``/``sendall`` wakes at once.

:func:`run_client_process` runs client code in a subprocess and reports its
peak RSS growth, for the findings about memory: the server stays in the test
process, so only the client's memory is measured.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "ClientProcess",
    "EventLog",
    "RawConn",
    "RawServer",
    "Script",
    "Serve",
    "close_payload",
    "frame_bytes",
    "run_client_process",
    "zw_threads",
]

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

# RFC 6455 4.2.2: the GUID the server appends to the client's key.
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

Script = Callable[["RawConn"], None]
#: The ``serve`` fixture: start a server running a script (stopped after the test).
Serve = Callable[[Script], "RawServer"]


def close_payload(code: int, reason: str = "") -> bytes:
    """The payload of a close frame carrying ``code`` and ``reason``."""
    return struct.pack("!H", code) + reason.encode("utf-8")


def zw_threads() -> list[threading.Thread]:
    """The library's live threads (named ``zen-ws-*``)."""
    return [t for t in threading.enumerate() if t.name.startswith("zen-ws-") and t.is_alive()]


class RawConn:
    """One accepted TCP connection, driven by a script.

    Everything it received is recorded: ``request_line``/``request_headers``
    after :meth:`read_request`, every frame :meth:`recv_frame` returned in
    ``frames``.
    """

    def __init__(self, sock: socket.socket, index: int, stopping: threading.Event) -> None:
        self.sock = sock
        self.index = index  # 0 for the server's first connection, 1 for the next...
        self._stopping = stopping
        self._buf = bytearray()  # bytes read but not parsed yet
        self.request_line: str | None = None
        self.request_headers: dict[str, str] = {}
        self.request_seen = threading.Event()  # set once the upgrade request was read
        self.frames: list[tuple[bool, int, bytes]] = []  # every frame read, in order
        self._frames_changed = threading.Condition()  # notified by the background reader
        self.reader_done = False
        self.helper_threads: list[threading.Thread] = []  # background readers, joined by RawServer.stop()

    # -- the opening handshake -------------------------------------------

    def read_request(self, timeout: float = 5.0) -> tuple[str, dict[str, str]]:
        """Read the client's HTTP upgrade request.

        Returns:
            The request line and the headers (names lower-cased).
        """
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self._buf:
            self._read_some(deadline)
        end = self._buf.index(b"\r\n\r\n")
        head = bytes(self._buf[:end]).decode("latin-1")
        del self._buf[: end + 4]
        line, *rest = head.split("\r\n")
        headers = {}
        for header in rest:
            name, _, value = header.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.request_line, self.request_headers = line, headers
        self.request_seen.set()
        return line, headers

    def accept_response(self, extra_headers: Iterable[tuple[str, str]] = ()) -> bytes:
        """The bytes of a valid ``101`` answer to the request read by :meth:`read_request`."""
        key = self.request_headers["sec-websocket-key"].encode("ascii")
        accept = base64.b64encode(hashlib.sha1(key + _ACCEPT_GUID).digest()).decode("ascii")
        lines = [
            "HTTP/1.1 101 Switching Protocols",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {accept}",
            *(f"{name}: {value}" for name, value in extra_headers),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def accept_upgrade(self, extra_headers: Iterable[tuple[str, str]] = ()) -> None:
        """Read the request if not done yet, then answer ``101`` (no extension negotiated)."""
        if self.request_line is None:
            self.read_request()
        self.send_raw(self.accept_response(extra_headers))

    # -- writing ---------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        """Write ``data`` as is."""
        self.sock.sendall(data)

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True, rsv: int = 0, mask: bool = False) -> None:
        """Write one frame; ``rsv`` is the RSV bits (0x40, 0x20, 0x10), ``mask`` masks it (servers must not)."""
        self.send_raw(frame_bytes(opcode, payload, fin=fin, rsv=rsv, mask=mask))

    def send_text(self, text: str) -> None:
        """Write one final text frame."""
        self.send_frame(OP_TEXT, text.encode("utf-8"))

    def send_json(self, obj: Any) -> None:
        """Write ``obj`` JSON-encoded as one text frame."""
        self.send_text(json.dumps(obj))

    def trickle(self, data: bytes, delay: float) -> None:
        """Write ``data`` one byte at a time, ``delay`` seconds apart; stops early on stop() or a dead socket."""
        for i in range(len(data)):
            try:
                self.sock.sendall(data[i : i + 1])
            except OSError:
                return
            if self._stopping.wait(delay):
                return

    # -- reading ---------------------------------------------------------

    def recv_frame(self, timeout: float = 5.0) -> tuple[bool, int, bytes]:
        """Read one frame, unmasking what the client masked.

        Returns:
            ``(fin, opcode, payload)``.

        Raises:
            TimeoutError: no whole frame within ``timeout``.
            ConnectionError: the client closed TCP.
        """
        deadline = time.monotonic() + timeout
        while True:
            frame = self._parse_frame()
            if frame is not None:
                self.frames.append(frame)
                return frame
            self._read_some(deadline)

    def recv_json(self, timeout: float = 5.0) -> Any:
        """The next text frame, JSON-decoded (control frames before it are recorded and skipped).

        Raises:
            ConnectionError: a close frame or EOF came first.
        """
        deadline = time.monotonic() + timeout
        while True:
            _, opcode, payload = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if opcode == OP_TEXT:
                return json.loads(payload)
            if opcode == OP_CLOSE:
                raise ConnectionError(f"the client closed the connection: {payload!r}")

    def recv_until(self, predicate: Callable[[int, bytes], bool], timeout: float = 5.0) -> tuple[int, bytes]:
        """Read frames until ``predicate(opcode, payload)`` holds; returns that frame."""
        deadline = time.monotonic() + timeout
        while True:
            _, opcode, payload = self.recv_frame(max(0.0, deadline - time.monotonic()))
            if predicate(opcode, payload):
                return opcode, payload

    def start_reader(self) -> None:
        """Read and record every frame in a background thread until EOF, a close frame or stop().

        For scripts that write a flood while the client answers it: without a
        reader, the client's answers fill the socket buffers and both sides
        block. Wait on what it read with :meth:`wait_frame`; the script must
        not call :meth:`recv_frame` itself meanwhile.
        """
        thread = threading.Thread(
            target=self._read_all,
            name=f"hostile-reader-{self.index}",
            daemon=True,  # as every hostile thread; RawServer.stop() joins it
        )
        self.helper_threads.append(thread)
        thread.start()

    def wait_frame(self, predicate: Callable[[int, bytes], bool], timeout: float = 5.0) -> tuple[int, bytes] | None:
        """The first recorded frame matching ``predicate(opcode, payload)``, waiting up to ``timeout``; None if none."""
        found: list[tuple[int, bytes]] = []
        checked = 0  # frames already looked at: a flood of 10,000 must not be rescanned per frame

        def match() -> bool:
            nonlocal checked
            frames = self.frames
            while not found and checked < len(frames):
                _, opcode, payload = frames[checked]
                checked += 1
                if predicate(opcode, payload):
                    found.append((opcode, payload))
            return bool(found) or self.reader_done

        with self._frames_changed:
            self._frames_changed.wait_for(match, timeout)
        return found[0] if found else None

    def _read_all(self) -> None:
        try:
            while True:
                _, opcode, _ = self.recv_frame(timeout=3600.0)
                with self._frames_changed:
                    self._frames_changed.notify_all()
                if opcode == OP_CLOSE:
                    return
        except (OSError, ValueError):
            return  # EOF, or stop() shut the socket down
        finally:
            with self._frames_changed:
                self.reader_done = True
                self._frames_changed.notify_all()

    def finish(self) -> None:
        """Read (and ignore) frames until the client's close frame, answer it and close TCP.

        The polite end of a script: the client's ``close()`` then completes its
        closing handshake at once instead of waiting out ``close_timeout``.
        """
        try:
            if self.helper_threads:  # the background reader owns the socket's reading side
                frame = self.wait_frame(lambda opcode, _: opcode == OP_CLOSE, timeout=3600.0)
                if frame is None:
                    return
                payload = frame[1]
            else:
                _, payload = self.recv_until(lambda opcode, _: opcode == OP_CLOSE, timeout=3600.0)
            self.send_frame(OP_CLOSE, payload)
        except OSError:
            return  # EOF, or stop() shut the socket down
        finally:
            self.close_tcp()

    def stop_reading(self) -> None:
        """Never read (nor answer) anything again; hold the connection open until the server stops."""
        self._stopping.wait()

    def wait_for_stop(self, timeout: float | None = None) -> bool:
        """Block until the server stops (or ``timeout``); True once it has."""
        return self._stopping.wait(timeout)

    def close_tcp(self) -> None:
        """Close TCP at once, without a close frame."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def _read_some(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the client sent nothing in time")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:  # socket.timeout is TimeoutError since 3.10
            raise TimeoutError("the client sent nothing in time") from None
        if not data:
            raise ConnectionError("the client closed TCP")
        self._buf += data

    def _parse_frame(self) -> tuple[bool, int, bytes] | None:
        buf = self._buf
        if len(buf) < 2:
            return None
        fin, opcode = bool(buf[0] & 0x80), buf[0] & 0x0F
        masked, length = bool(buf[1] & 0x80), buf[1] & 0x7F
        pos = 2
        if length >= 126:
            pos = 4 if length == 126 else 10
            if len(buf) < pos:
                return None
            length = int.from_bytes(buf[2:pos], "big")
        key_end = pos + (4 if masked else 0)
        if len(buf) < key_end + length:
            return None
        payload = bytes(buf[key_end : key_end + length])
        if masked:
            payload = _xor(payload, bytes(buf[pos:key_end]))
        del buf[: key_end + length]
        return fin, opcode, payload


def _xor(payload: bytes, key: bytes) -> bytes:
    """``payload`` XOR the 4-byte ``key`` repeated (RFC 6455 5.3), as one big-integer XOR."""
    n = len(payload)
    if not n:
        return payload
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def frame_bytes(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0, mask: bool = False) -> bytes:
    """One frame as bytes (a server frame unless ``mask``); any length, any bits the test asks for."""
    n = len(payload)
    first = (0x80 if fin else 0) | rsv | opcode
    mask_bit = 0x80 if mask else 0
    if n < 126:
        header = bytes((first, mask_bit | n))
    elif n < 65536:
        header = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        header = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not mask:
        return header + payload
    key = os.urandom(4)
    return header + key + _xor(payload, key)


class RawServer:
    """A listening socket on 127.0.0.1 (port 0) that runs ``script(conn)`` per connection.

    Use it as a context manager (or call :meth:`start`/:meth:`stop`). The
    script runs in its own thread; whatever it raises is kept in ``errors``
    (an ``OSError`` after :meth:`stop` is expected: stop shuts the sockets down).

    Args:
        script: called with a :class:`RawConn` for every accepted connection;
            ``conn.index`` tells successive connections apart.
    """

    def __init__(self, script: Script) -> None:
        self._script = script
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # guards connections and errors (accept and script threads write them)
        self.connections: list[RawConn] = []
        self.errors: list[BaseException] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self.url = f"ws://127.0.0.1:{self.port}/"
        self._accept_thread = threading.Thread(
            target=self._accept_loop,
            name="hostile-accept",
            daemon=True,  # a test that fails before stop() must not keep the interpreter alive
        )
        self._started = False

    def __enter__(self) -> RawServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def connection_count(self) -> int:
        """How many connections were accepted so far."""
        with self._lock:
            return len(self.connections)

    def conn(self, index: int, timeout: float = 5.0) -> RawConn:
        """The ``index``-th connection, waiting up to ``timeout`` for it to be accepted."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if len(self.connections) > index:
                    return self.connections[index]
            if time.monotonic() >= deadline:
                raise TimeoutError(f"connection {index} was not accepted within {timeout}s")
            time.sleep(0.002)

    def start(self) -> RawServer:
        """Start accepting."""
        if not self._started:
            self._started = True
            self._accept_thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop: wake every blocked thread (by shutting its socket down), then join them all."""
        self._stopping.set()
        try:
            # On Linux shutdown() wakes a thread blocked in accept(); close() alone would not.
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        with self._lock:
            conns = list(self.connections)
        for conn in conns:
            try:
                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._started:
            self._accept_thread.join(timeout)
        # Scripts first: a script may still start a background reader until it ends.
        self._join(list(self._threads), timeout)
        self._join([t for conn in conns for t in conn.helper_threads], timeout)
        for conn in conns:
            conn.sock.close()

    @staticmethod
    def _join(threads: list[threading.Thread], timeout: float) -> None:
        for thread in threads:
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError(f"{thread.name} did not stop within {timeout}s")

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return  # stop() shut the listener down
            with self._lock:
                conn = RawConn(sock, len(self.connections), self._stopping)
                self.connections.append(conn)
            thread = threading.Thread(
                target=self._run_script,
                args=(conn,),
                name=f"hostile-conn-{conn.index}",
                daemon=True,  # same reason as the accept thread; stop() joins it
            )
            self._threads.append(thread)
            thread.start()

    def _run_script(self, conn: RawConn) -> None:
        try:
            self._script(conn)
        except BaseException as exc:  # kept for the test to inspect; a script thread must not die noisily
            with self._lock:
                self.errors.append(exc)


class EventLog:
    """Collects a client's events in order, for ``on_<event>=`` options; waits on them without sleeping."""

    NAMES = ("message", "connect", "disconnect", "reconnect", "error", "close")

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.times: list[float] = []  # time.monotonic() of each event
        self._cond = threading.Condition()

    def options(self, *names: str) -> dict[str, Callable[..., None]]:
        """``on_<event>`` options recording ``names`` (default: every event but ``message``)."""

        def make(name: str) -> Callable[..., None]:
            def record(client: Any, *args: Any) -> None:
                with self._cond:
                    self.events.append((name, *args))
                    self.times.append(time.monotonic())
                    self._cond.notify_all()

            return record

        return {f"on_{name}": make(name) for name in (names or self.NAMES[1:])}

    def of(self, name: str) -> list[tuple[Any, ...]]:
        """The arguments of every ``name`` event so far."""
        with self._cond:
            return [event[1:] for event in self.events if event[0] == name]

    def first_time(self, name: str) -> float | None:
        """``time.monotonic()`` of the first ``name`` event, or None."""
        with self._cond:
            return next((t for event, t in zip(self.events, self.times, strict=True) if event[0] == name), None)

    def wait(self, name: str, count: int = 1, timeout: float = 5.0) -> bool:
        """Wait until ``name`` happened ``count`` times; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: sum(e[0] == name for e in self.events) >= count, timeout)


@dataclass
class ClientProcess:
    """What :func:`run_client_process` reports."""

    result: dict[str, Any]  # what the code put in ``result``
    rss_growth: int  # bytes: peak RSS (VmHWM) at the end minus peak RSS after the imports
    returncode: int
    stderr: str = field(repr=False)


_PRELUDE = """
import json, sys, threading, time
import zen_websocket as zw

def _vm_hwm():
    # Peak resident set size so far, in bytes (Linux /proc).
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")

result = {}
_baseline = _vm_hwm()
"""

_EPILOGUE = """
print(json.dumps({"result": result, "rss_growth": _vm_hwm() - _baseline}), flush=True)
"""


def run_client_process(code: str, *, timeout: float = 20.0, **values: Any) -> ClientProcess:
    """Run client ``code`` in a fresh interpreter and measure its peak RSS growth.

    The code runs after ``import zen_websocket as zw`` and the baseline
    measurement; it stores what the test needs in the dict ``result``.
    ``values`` are bound as variables first (their ``repr`` must round-trip:
    str, int, float, ...), e.g. ``url=server.url``.

    Raises:
        AssertionError: the process failed or printed no report (its stderr is shown).
    """
    bindings = "".join(f"{name} = {value!r}\n" for name, value in values.items())
    source = _PRELUDE + bindings + textwrap.dedent(code) + _EPILOGUE
    # The repository root on the path, so that the checkout (not an installed copy) is imported.
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-c", source], capture_output=True, text=True, timeout=timeout, env=env, cwd=root
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0 and lines, f"client process failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    report = json.loads(lines[-1])
    return ClientProcess(report["result"], report["rss_growth"], proc.returncode, proc.stderr)
