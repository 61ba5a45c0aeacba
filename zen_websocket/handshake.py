"""The WebSocket opening handshake (RFC 6455 section 4): bounded, capped and abortable.

websocket-client's handshake was measured against hostile servers and found
wanting for a long-lived trading connection:

- it follows redirects, so ``wss://`` could end up on plaintext ``ws://``
  with the ``Authorization`` header handed to the redirect target;
- its ``timeout`` bounds each read, so a server that trickles its answer one
  byte at a time keeps an attempt alive for ever, and an 8 MB header line or a
  64 MB refusal body is read into memory;
- a handshake in progress cannot be aborted by ``close()``.

:func:`open_connection` does the whole attempt itself — DNS, TCP (directly
or through an HTTP CONNECT or SOCKS proxy), TLS, the HTTP/1.1 upgrade — under
ONE :class:`Deadline`, reads every response through :class:`HeadParser`
(fixed caps on lines, header count and head size), follows no redirect, and
hands the new socket to ``on_socket`` before connecting so that another
thread can ``shutdown()`` it to abort whichever phase is running.

The parsing and building parts (:class:`HeadParser`, :func:`build_request`,
:func:`accept_key`, :func:`parse_extensions`) do no I/O and are tested from
bytes.
"""

from __future__ import annotations

import base64
import errno
import functools
import hashlib
import ipaddress
import math
import os
import re
import select
import socket
import ssl
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import quote, unquote, urljoin, urlsplit

from .errors import ConfigError, ConnectError, connect_reason

__all__ = [
    "MAX_HEADERS",
    "MAX_HEAD_SIZE",
    "MAX_LINE",
    "MAX_REFUSAL_BODY",
    "Deadline",
    "Handshake",
    "HeadParser",
    "ResponseHead",
    "accept_key",
    "build_request",
    "check_request_headers",
    "default_ssl_context",
    "environment_proxy",
    "open_connection",
    "parse_extensions",
]

#: Longest status or header line accepted (bytes, without the line ending).
MAX_LINE = 8 * 1024
#: Most header lines accepted in one response.
MAX_HEADERS = 128
#: Largest response head accepted (status line, headers and blank line).
MAX_HEAD_SIZE = 64 * 1024
#: Most bytes of a refusal's body read (only to quote it in the error).
MAX_REFUSAL_BODY = 4 * 1024

# Each recv asks for at most this much: the head is read with bounded memory,
# and never more than 4 KiB past its end is consumed (the first frames, or a
# refusal body we will not read further).
_READ_CHUNK = 4 * 1024
# A refusal's status is the answer; its body only decorates the message, so a
# server that promises a body and dawdles does not hold the attempt for long.
_BODY_WAIT = 1.0
# Characters of a refusal body (or Location) quoted in an error message.
_QUOTE_CHARS = 200

# RFC 6455 section 1.3: the GUID appended to the key for Sec-WebSocket-Accept.
_WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_DEFAULT_PORTS = {"ws": 80, "wss": 443}
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})
# Today's defaults (websocket-client's): a proxy URL without a port.
_DEFAULT_PROXY_PORTS = {"http": 8080, "socks4": 1080, "socks4a": 1080, "socks5": 1080, "socks5h": 1080}

# RFC 9110 section 5.6.2 token; header names and subprotocols must be tokens.
_TOKEN_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_QUOTED_RE = re.compile(r'"((?:[^"\\]|\\.)*)"')
_OWS_RE = re.compile(r"[ \t]*")
_STATUS_RE = re.compile(rb"HTTP/1\.[01] ([0-9]{3})(?: (.*))?")
_HOST_RE = re.compile(r"[A-Za-z0-9._:\-]+")

# Set by the handshake itself; a user header with one of these names would
# break the upgrade (or, for the last two, the validation of the answer).
_RESERVED_HEADERS = {
    "host": "set from the URL",
    "upgrade": "set by the handshake",
    "connection": "set by the handshake",
    "sec-websocket-key": "set by the handshake",
    "sec-websocket-version": "set by the handshake",
    "sec-websocket-protocol": "use the subprotocols option",
    "sec-websocket-extensions": "use the extensions (compression) option",
}


class Deadline:
    """One time budget spread over every phase of a connection attempt.

    Args:
        timeout: seconds for the whole attempt; None means no deadline.
        clock: a monotonic clock (injected by tests).
    """

    def __init__(self, timeout: float | None, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.timeout = timeout
        self._clock = clock
        self._end = None if timeout is None else clock() + timeout

    def remaining(self) -> float | None:
        """Seconds left, always positive; None when there is no deadline.

        Raises:
            TimeoutError: once the deadline has passed. It never returns 0:
                ``settimeout(0)`` would make a socket non-blocking instead of
                failing it.
        """
        if self._end is None:
            return None
        left = self._end - self._clock()
        if left <= 0:
            raise TimeoutError(f"the {self.timeout:g}s connect timeout passed")
        return left


@dataclass(frozen=True)
class ResponseHead:
    """The status line and headers of an HTTP/1.x response.

    Attributes:
        status: the status code.
        reason: the reason phrase (server-controlled text; sanitise before showing).
        headers: ``(lower-case name, value)`` pairs in the order received.
    """

    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]

    def get(self, name: str) -> str | None:
        """The value of header ``name`` (any case); repeated fields joined with ``", "``."""
        name = name.lower()
        values = [value for key, value in self.headers if key == name]
        return ", ".join(values) if values else None

    def as_dict(self) -> dict[str, str]:
        """All headers, lower-case names, repeated fields joined with ``", "``."""
        out: dict[str, str] = {}
        for key, value in self.headers:
            out[key] = f"{out[key]}, {value}" if key in out else value
        return out


class HeadParser:
    """Incremental reader of one HTTP/1.x response head, with hard caps.

    Feed it bytes as they arrive until :attr:`head` is set; the bytes that
    followed the blank line are in :attr:`leftover`. It holds at most
    :data:`MAX_HEAD_SIZE` plus one fed chunk, and fails as soon as the bytes
    prove a cap broken (a line over :data:`MAX_LINE`, more than
    :data:`MAX_HEADERS` headers, a head over :data:`MAX_HEAD_SIZE`).
    Lines may end with CRLF or a bare LF (RFC 9112 section 2.2).
    """

    def __init__(self) -> None:
        self.head: ResponseHead | None = None
        self.leftover = b""
        self._buf = bytearray()
        self._scan = 0  # start of the first line not yet split off
        self._lines: list[bytes] = []

    def feed(self, data: bytes) -> bool:
        """Add received bytes; returns True once the head is complete.

        Raises:
            ValueError: the response is malformed or breaks a cap (the
                message says which, without quoting the bytes).
        """
        if self.head is not None:
            self.leftover += data
            return True
        self._buf += data
        buf = self._buf
        while True:
            end = buf.find(b"\n", self._scan)
            if end < 0:
                break
            line = bytes(buf[self._scan : end])
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > MAX_LINE:
                raise ValueError(f"a response line is longer than {MAX_LINE} bytes")
            self._scan = end + 1
            if self._scan > MAX_HEAD_SIZE:
                raise ValueError(f"the response head is larger than {MAX_HEAD_SIZE} bytes")
            if not line:
                self.leftover = bytes(buf[self._scan :])
                self.head = _parse_head(self._lines)
                self._buf = bytearray()
                self._lines = []
                return True
            self._lines.append(line)
            if len(self._lines) > MAX_HEADERS + 1:  # + the status line
                raise ValueError(f"the response has more than {MAX_HEADERS} header lines")
        # +1: a line of MAX_LINE bytes may be waiting for the LF after its CR.
        if len(buf) - self._scan > MAX_LINE + 1:
            raise ValueError(f"a response line is longer than {MAX_LINE} bytes")
        if len(buf) >= MAX_HEAD_SIZE:
            raise ValueError(f"the response head is larger than {MAX_HEAD_SIZE} bytes")
        return False


def _parse_head(lines: list[bytes]) -> ResponseHead:
    if not lines:
        raise ValueError("the response has no status line")
    match = _STATUS_RE.fullmatch(lines[0])
    if match is None:
        raise ValueError("the response does not start with an HTTP/1.x status line")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            # RFC 9112 section 5.2: obsolete line folding may be rejected.
            raise ValueError("the response uses obsolete header line folding")
        raw_name, colon, raw_value = line.partition(b":")
        name = raw_name.decode("latin-1")
        if not colon or not _TOKEN_RE.fullmatch(name):
            raise ValueError("the response has a malformed header line")
        value = raw_value.strip(b" \t")
        if b"\r" in value or b"\0" in value:
            raise ValueError("the response has a header value with CR or NUL")
        headers.append((name.lower(), value.decode("latin-1")))
    reason = (match.group(2) or b"").decode("latin-1")
    return ResponseHead(int(match.group(1)), reason, tuple(headers))


def accept_key(key: str) -> str:
    """The ``Sec-WebSocket-Accept`` a server must answer ``key`` with (RFC 6455 section 4.2.2)."""
    digest = hashlib.sha1((key + _WS_GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def parse_extensions(value: str) -> list[tuple[str, dict[str, str | None]]]:
    """Parse a ``Sec-WebSocket-Extensions`` value (RFC 6455 section 9.1).

    Returns:
        ``[(name, {param: value or None})]`` in order; quoted values unquoted.

    Raises:
        ValueError: the value does not follow the grammar, or an extension
            repeats a parameter (RFC 7692 section 7 forbids it).
    """
    result: list[tuple[str, dict[str, str | None]]] = []
    pos = 0
    size = len(value)

    def skip_ows(at: int) -> int:
        match = _OWS_RE.match(value, at)
        return match.end() if match else at

    while True:
        # The #rule allows empty list elements: ", , a".
        pos = skip_ows(pos)
        while pos < size and value[pos] == ",":
            pos = skip_ows(pos + 1)
        if pos >= size:
            break
        match = _TOKEN_RE.match(value, pos)
        if match is None:
            raise ValueError("malformed extension list: expected an extension name")
        name = match.group()
        params: dict[str, str | None] = {}
        pos = skip_ows(match.end())
        while pos < size and value[pos] == ";":
            pos = skip_ows(pos + 1)
            match = _TOKEN_RE.match(value, pos)
            if match is None:
                raise ValueError(f"malformed parameter in extension {name}")
            param = match.group()
            if param in params:
                raise ValueError(f"extension {name} repeats the parameter {param}")
            pos = skip_ows(match.end())
            param_value: str | None = None
            if pos < size and value[pos] == "=":
                pos = skip_ows(pos + 1)
                match = _TOKEN_RE.match(value, pos)
                if match is not None:
                    param_value = match.group()
                else:
                    match = _QUOTED_RE.match(value, pos)
                    if match is None:
                        raise ValueError(f"malformed value of {param} in extension {name}")
                    param_value = re.sub(r"\\(.)", r"\1", match.group(1))
                pos = skip_ows(match.end())
            params[param] = param_value
        result.append((name, params))
        if pos < size and value[pos] != ",":
            raise ValueError(f"malformed extension list after {name}")
    return result


def check_request_headers(headers: Mapping[str, str]) -> None:
    """Refuse user headers that would break or forge the upgrade request.

    A name must be an HTTP token and may not be one the handshake sets itself
    (Host, Upgrade, Connection, Sec-WebSocket-Key/-Version/-Protocol/
    -Extensions); a value must be Latin-1 text without CR, LF or NUL (a
    newline would inject headers). Messages name the header, never its value.

    Raises:
        ConfigError: with ``option="headers"``.
    """
    for name, value in headers.items():
        if not isinstance(name, str) or not _TOKEN_RE.fullmatch(name):
            raise ConfigError("headers", f"{name!r} is not a valid header name")
        why = _RESERVED_HEADERS.get(name.lower())
        if why is not None:
            raise ConfigError("headers", f"{name} may not be given: it is {why}")
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise ConfigError("headers", f"the value of {name} must be a str without CR, LF or NUL")
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            raise ConfigError("headers", f"the value of {name} is not Latin-1 text") from None


@dataclass(frozen=True)
class _Endpoint:
    """Where a ws(s) URL points: what TCP, TLS and the Host header need."""

    secure: bool
    host: str  # IDNA-encoded, IPv6 without brackets
    port: int
    target: str  # request target: path and query, percent-encoded

    @property
    def authority(self) -> str:
        """``host:port`` with IPv6 bracketed (CONNECT and messages)."""
        return f"{_bracket(self.host)}:{self.port}"

    @property
    def host_header(self) -> str:
        """The Host header: the port only when it is not the scheme's default."""
        default = _DEFAULT_PORTS["wss" if self.secure else "ws"]
        return _bracket(self.host) if self.port == default else self.authority


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _endpoint(url: str) -> _Endpoint:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError("url", f"invalid URL: {exc}") from None
    if parts.scheme not in _DEFAULT_PORTS:
        raise ConfigError("url", f"must start with ws:// or wss://, got {parts.scheme!r}")
    host = _ascii_host(parts.hostname, "url")
    # Percent-encode anything that may not appear in a request line (spaces,
    # controls, non-ASCII): a CR/LF in a URL can then never inject a header.
    target = quote(parts.path or "/", safe="!$%&'()*+,/:;=@~")
    if parts.query:
        target += "?" + quote(parts.query, safe="!$%&'()*+,/:;=?@~")
    return _Endpoint(parts.scheme == "wss", host, port or _DEFAULT_PORTS[parts.scheme], target)


def _ascii_host(hostname: str | None, option: str) -> str:
    if not hostname:
        raise ConfigError(option, "has no host")
    try:
        host = hostname.encode("idna").decode("ascii") if not hostname.isascii() else hostname
    except UnicodeError:
        raise ConfigError(option, "has an invalid host name") from None
    if not _HOST_RE.fullmatch(host):
        raise ConfigError(option, "has an invalid host name")
    return host


def build_request(
    url: str,
    key: str,
    *,
    headers: Mapping[str, str] = _NO_HEADERS,
    subprotocols: Sequence[str] | None = None,
    extensions: Sequence[str] = (),
) -> bytes:
    """The upgrade request for ``url`` (RFC 6455 section 4.1), as bytes.

    No ``Origin`` header is sent (a browser notion; some exchanges reject
    unknown origins) and the URL's userinfo is never sent.

    Args:
        url: a ``ws://`` or ``wss://`` URL.
        key: the ``Sec-WebSocket-Key`` (base64 of 16 random bytes).
        headers: extra headers, sent after the handshake's own.
        subprotocols: offered in ``Sec-WebSocket-Protocol`` when given.
        extensions: offered ``Sec-WebSocket-Extensions`` values.

    Raises:
        ConfigError: a bad URL, header, subprotocol or extension offer.
    """
    endpoint = _endpoint(url)
    check_request_headers(headers)
    lines = [
        f"GET {endpoint.target} HTTP/1.1",
        f"Host: {endpoint.host_header}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if subprotocols:
        for protocol in subprotocols:
            if not isinstance(protocol, str) or not _TOKEN_RE.fullmatch(protocol):
                raise ConfigError("subprotocols", f"{protocol!r} is not a valid subprotocol token")
        lines.append(f"Sec-WebSocket-Protocol: {', '.join(subprotocols)}")
    if extensions:
        for offer in extensions:
            if any(c in offer for c in "\r\n\0"):
                raise ConfigError("extensions", "an extension offer contains CR, LF or NUL")
            try:
                parse_extensions(offer)
            except ValueError as exc:
                raise ConfigError("extensions", str(exc)) from None
        lines.append(f"Sec-WebSocket-Extensions: {', '.join(extensions)}")
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@dataclass
class Handshake:
    """A connection whose upgrade succeeded.

    Attributes:
        sock: the connected socket (an ``ssl.SSLSocket`` for ``wss``), in
            blocking mode (``settimeout(None)``). For ``ws`` it is the socket
            given to ``on_socket``; for ``wss`` a TLS socket on a duplicate
            of it.
        subprotocol: the subprotocol the server chose, or None.
        extensions: the extensions the server accepted, as ``(name, params)``.
        response_headers: the 101 response's headers, lower-case names.
        leftover: bytes received after the response head (the first frames):
            feed them to the frame parser before reading the socket.
    """

    sock: socket.socket
    subprotocol: str | None = None
    extensions: list[tuple[str, dict[str, str | None]]] = field(default_factory=list)
    response_headers: dict[str, str] = field(default_factory=dict)
    leftover: bytes = b""


@functools.lru_cache(maxsize=1)
def default_ssl_context() -> ssl.SSLContext:
    """One verifying context for every ``wss://`` connection without its own.

    Loading the system CA store costs about 800 KiB and 27 ms; an
    ``SSLContext`` is safe to share between threads and connections.
    """
    return ssl.create_default_context()


def open_connection(
    url: str,
    *,
    timeout: float | None,
    headers: Mapping[str, str] = _NO_HEADERS,
    subprotocols: Sequence[str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    proxy: str | None = None,
    extensions: Sequence[str] = (),
    on_socket: Callable[[socket.socket], None] | None = None,
) -> Handshake:
    """Connect to ``url`` and perform the WebSocket upgrade within ``timeout``.

    One deadline covers TCP connect, the proxy tunnel, the TLS handshake and
    the upgrade response together (DNS resolution cannot be bounded, see
    :func:`_connect_tcp`). Redirects are never followed. Without ``proxy``
    the environment's proxy for ``url`` is used (:func:`environment_proxy`).

    Args:
        url: ``ws://`` or ``wss://`` URL; its userinfo is ignored.
        timeout: seconds for the whole attempt; None waits for ever.
        headers: extra request headers (see :func:`check_request_headers`).
        subprotocols: offered subprotocols.
        ssl_context: for ``wss``; default :func:`default_ssl_context`.
        proxy: ``http://[user:password@]host[:port]`` (HTTP CONNECT) or
            ``socks5://``, ``socks5h://``, ``socks4://``, ``socks4a://``
            (needs the ``python-socks`` package). None: the proxy the
            environment names for ``url``, if any (:func:`environment_proxy`).
        extensions: offered ``Sec-WebSocket-Extensions`` values, e.g.
            ``"permessage-deflate; client_max_window_bits"``.
        on_socket: called with each new socket as soon as it exists (before
            connecting). ``sock.shutdown(socket.SHUT_RDWR)`` from another
            thread ends the attempt within milliseconds in any phase (TCP,
            proxy, TLS, response), with the reason that failure implies
            (``"error"``, ``"tls"``...): callers that aborted on purpose map
            it. It may raise (a :class:`ConnectError` passes through) to
            refuse a socket, e.g. the next address tried after an abort.
            Through a SOCKS proxy it is called once python-socks has built
            the tunnel.

    Returns:
        The upgraded connection.

    Raises:
        ConnectError: ``reason`` is ``"timeout"``, ``"nxdomain"``,
            ``"econnrefused"``, ``"ehostunreach"``, ``"tls"``, ``"proxy"``,
            ``"redirect"`` (3xx, ``status_code`` set, target named),
            ``"not_websocket"`` (2xx), ``"unauthorized"`` (401/403),
            ``"handshake_status"`` (other statuses), ``"bad_handshake"`` (a
            101 that breaks RFC 6455, or a cap broken) or ``"error"`` (e.g.
            the server closed the connection); the cause is chained.
        ConfigError: before any I/O, for an invalid URL, header, subprotocol,
            extension offer or proxy URL.
    """
    endpoint = _endpoint(url)
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    request = build_request(url, key, headers=headers, subprotocols=subprotocols, extensions=extensions)
    offered_extensions = {name for offer in extensions for name, _ in parse_extensions(offer)}
    source = ""  # where the proxy came from, for messages
    if proxy is None:
        found = _environment_proxy(endpoint)
        if found is not None:
            source, proxy = found
    proxy_endpoint = _proxy_endpoint(proxy, source) if proxy else None
    via = f" (from ${source})" if source else ""
    deadline = Deadline(timeout)
    opened: list[socket.socket] = []  # every socket object to close on failure
    phase = "during the TCP connect"
    try:
        if proxy_endpoint is None:
            plain = _connect_tcp(endpoint.host, endpoint.port, deadline, on_socket)
            opened.append(plain)
        elif proxy_endpoint.scheme == "http":
            phase = f"while connecting to the proxy {proxy_endpoint.authority}{via}"
            plain = _connect_tcp(proxy_endpoint.host, proxy_endpoint.port, deadline, on_socket)
            opened.append(plain)
            phase = f"while opening a tunnel through the proxy {proxy_endpoint.authority}{via}"
            _http_connect(plain, proxy_endpoint, endpoint, deadline)
        else:
            phase = f"while opening a tunnel through the proxy {proxy_endpoint.authority}{via}"
            plain = _socks_connect(proxy_endpoint, endpoint, deadline, on_socket)
            opened.append(plain)
        sock = plain
        if endpoint.secure:
            phase = "during the TLS handshake"
            sock = _start_tls(plain, ssl_context or default_ssl_context(), endpoint.host, deadline)
            opened.append(sock)
        phase = "while sending the upgrade request"
        sock.settimeout(deadline.remaining())
        sock.sendall(request)
        phase = "while reading the upgrade response"
        parser = _read_head(sock, deadline, "the server")
        assert parser.head is not None
        head = parser.head
        if head.status != 101:
            body = _read_refusal_body(sock, head, parser.leftover, deadline)
            raise _refusal(head, body, endpoint, url)
        subprotocol, accepted = _validate_upgrade(head, key, subprotocols, offered_extensions)
        sock.settimeout(None)
    except ConnectError:
        _close_all(opened)
        raise
    except Exception as exc:
        _close_all(opened)
        raise _attempt_failed(exc, endpoint, phase) from exc
    if sock is not plain:
        # The TLS socket owns a duplicate descriptor; the plain one is done.
        plain.close()
    return Handshake(sock, subprotocol, accepted, head.as_dict(), parser.leftover)


def _close_all(sockets: list[socket.socket]) -> None:
    for sock in sockets:
        try:
            sock.close()
        except OSError:
            pass


def _connect_tcp(
    host: str, port: int, deadline: Deadline, on_socket: Callable[[socket.socket], None] | None
) -> socket.socket:
    """A connected TCP socket to ``host:port``, trying each address in turn.

    getaddrinfo cannot be bounded: it blocks inside libc with no timeout and
    no way to interrupt it, so a slow resolver can overrun the deadline (every
    later phase is then cut short by it). Running it in a thread would only
    leak the thread.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    last: OSError | None = None
    for family, kind, proto, _, address in infos:
        sock = socket.socket(family, kind, proto)
        try:
            if on_socket is not None:
                on_socket(sock)
            _tune(sock)
            sock.settimeout(deadline.remaining())
            sock.connect(address)
            return sock
        except TimeoutError:
            sock.close()
            raise  # the deadline is spent: no time for another address
        except OSError as exc:
            sock.close()
            last = exc
        except BaseException:
            sock.close()
            raise
    if last is None:
        raise OSError(errno.EHOSTUNREACH, "the host name resolved to no address")
    raise last


def _tune(sock: socket.socket) -> None:
    """TCP options websocket-client sets too: no Nagle delay, keepalive probes."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    # The kernel's defaults (2 h idle) never notice a dead peer in time;
    # websocket-client's values: probe after 30 s idle, every 10 s, 3 times.
    for option, value in (("TCP_KEEPIDLE", 30), ("TCP_KEEPINTVL", 10), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def _wait(sock: socket.socket, *, write: bool, deadline: Deadline) -> None:
    """Block until ``sock`` is readable (or writable), or the deadline passes.

    poll, not select: select fails on descriptors above 1024, which a process
    holding many connections has. Returning early is harmless: callers retry
    and wait again.

    Raises:
        TimeoutError: the deadline passed.
        OSError: the socket was closed under us (``EBADF``).
    """
    timeout = deadline.remaining()
    fd = sock.fileno()
    if fd < 0:
        raise OSError(errno.EBADF, "the socket was closed during the handshake")
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(fd, select.POLLOUT if write else select.POLLIN)
        events = poller.poll(None if timeout is None else max(1, math.ceil(timeout * 1000)))
        if events and events[0][1] & select.POLLNVAL:
            raise OSError(errno.EBADF, "the socket was closed during the handshake")
        ready = bool(events)
    else:  # Windows has no poll (and no descriptors above 1024 to fear)
        readable, writable, _ = select.select([] if write else [fd], [fd] if write else [], [], timeout)
        ready = bool(readable or writable)
    if not ready:
        deadline.remaining()  # raises TimeoutError once it has passed


def _start_tls(sock: socket.socket, context: ssl.SSLContext, hostname: str, deadline: Deadline) -> ssl.SSLSocket:
    """The TLS handshake over ``sock``, bounded as a whole by the deadline.

    ``wrap_socket`` detaches the socket object it is given, so it wraps a
    duplicate: the socket the caller got from ``on_socket`` still refers to
    the connection, and shutting it down aborts this phase too. The handshake
    runs non-blocking, waiting with poll for the remaining time: a per-recv
    timeout would let a server that trickles its handshake run for ever.
    """
    raw = sock.dup()
    try:
        raw.setblocking(False)
        tls = context.wrap_socket(raw, server_hostname=hostname, do_handshake_on_connect=False)
    except BaseException:
        raw.close()  # a no-op once wrap_socket has taken the descriptor over
        raise
    try:
        while True:
            try:
                tls.do_handshake()
                return tls
            except ssl.SSLWantReadError:
                _wait(tls, write=False, deadline=deadline)
            except ssl.SSLWantWriteError:
                _wait(tls, write=True, deadline=deadline)
    except BaseException:
        tls.close()
        raise


def _read_head(sock: socket.socket, deadline: Deadline, who: str) -> HeadParser:
    """Read one response head (caps enforced as bytes arrive) under the deadline.

    ``settimeout(remaining)`` before every recv: each call returns what has
    arrived, so a trickling server meets the deadline, not a fresh timeout.
    """
    parser = HeadParser()
    while parser.head is None:
        sock.settimeout(deadline.remaining())
        data = sock.recv(_READ_CHUNK)
        if not data:
            raise ConnectionResetError(errno.ECONNRESET, f"{who} closed the connection during the handshake")
        try:
            parser.feed(data)
        except ValueError as exc:
            raise _BadResponse(f"{who} sent a bad response: {exc}") from exc
    return parser


class _BadResponse(Exception):
    """A response that broke the HTTP grammar or a cap."""


def _read_refusal_body(sock: socket.socket, head: ResponseHead, leftover: bytes, deadline: Deadline) -> bytes:
    """At most :data:`MAX_REFUSAL_BODY` bytes of a refusal's body, to quote in the error.

    Only what ``Content-Length`` promises is awaited (without it, only what
    already arrived is used), for at most ``_BODY_WAIT`` seconds within the
    deadline. Failures end the read quietly: the status is the answer.
    """
    length_text = head.get("content-length")
    if length_text is None or not length_text.isdigit():
        return leftover[:MAX_REFUSAL_BODY]
    want = min(int(length_text), MAX_REFUSAL_BODY)
    body = bytearray(leftover[:want])
    give_up = time.monotonic() + _BODY_WAIT
    try:
        while len(body) < want:
            left = deadline.remaining()
            wait = give_up - time.monotonic()
            if wait <= 0:
                break
            sock.settimeout(wait if left is None else min(left, wait))
            chunk = sock.recv(want - len(body))
            if not chunk:
                break
            body += chunk
    except OSError:  # TimeoutError included
        pass
    return bytes(body)


def _printable(text: str, limit: int = _QUOTE_CHARS) -> str:
    """Server-controlled text made safe to show: one line, printable, at most ``limit`` chars."""
    cleaned = " ".join("".join(c if c.isprintable() else " " for c in text).split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


def _refusal(head: ResponseHead, body: bytes, endpoint: _Endpoint, url: str) -> ConnectError:
    """The ConnectError for a status other than 101."""
    status = head.status
    answer = f"{endpoint.authority} answered HTTP {status}"
    if head.reason:
        answer += f" {_printable(head.reason, 60)}"
    if 300 <= status < 400:
        location = head.get("location")
        where = _redirect_target(location, url) if location else "nowhere (no Location header)"
        message = (
            f"{answer} redirecting to {where}; redirects are not followed "
            "(one could downgrade wss to ws or hand the request's headers to another host)"
        )
        reason = "redirect"
    elif 200 <= status < 300:
        message = f"{answer} instead of 101 Switching Protocols: not a WebSocket endpoint"
        reason = "not_websocket"
    elif status in (401, 403):
        message = f"{answer}: not authorized"
        reason = "unauthorized"
    else:
        message = f"{answer} instead of 101 Switching Protocols"
        reason = "handshake_status"
    snippet = _printable(body.decode("utf-8", "replace"))
    if snippet:
        message += f": {snippet}"
    return ConnectError(message, reason=reason, status_code=status)


def _redirect_target(location: str, url: str) -> str:
    """``location`` resolved against ``url``, without userinfo, query or fragment."""
    try:
        base = urlsplit(url)
        base_url = f"{base.scheme}://{base.netloc.rpartition('@')[2]}{base.path}"
        parts = urlsplit(urljoin(base_url, location.strip()))
    except ValueError:
        return "an unparsable Location"
    netloc = parts.netloc.rpartition("@")[2]
    shown = f"{parts.scheme}://{netloc}{parts.path}" if netloc else parts.path
    return _printable(shown)


def _validate_upgrade(
    head: ResponseHead, key: str, subprotocols: Sequence[str] | None, offered_extensions: set[str]
) -> tuple[str | None, list[tuple[str, dict[str, str | None]]]]:
    """Check a 101 answer (RFC 6455 section 4.1, client steps 1-6).

    Returns:
        The chosen subprotocol and the accepted extensions.
    """
    upgrade = head.get("upgrade")
    if upgrade is None or upgrade.strip().lower() != "websocket":
        raise _BadResponse("the 101 response lacks 'Upgrade: websocket'")
    connection = head.get("connection") or ""
    if "upgrade" not in (token.strip().lower() for token in connection.split(",")):
        raise _BadResponse("the 101 response lacks 'Connection: Upgrade'")
    if head.get("sec-websocket-accept") != accept_key(key):
        raise _BadResponse("Sec-WebSocket-Accept does not match the key sent")
    subprotocol = head.get("sec-websocket-protocol")
    if subprotocol is not None:
        subprotocol = subprotocol.strip()
        if subprotocol not in (subprotocols or ()):
            raise _BadResponse(f"the server chose a subprotocol that was not offered: {_printable(subprotocol, 60)}")
    accepted: list[tuple[str, dict[str, str | None]]] = []
    value = head.get("sec-websocket-extensions")
    if value is not None:
        try:
            accepted = parse_extensions(value)
        except ValueError as exc:
            raise _BadResponse(f"the server's Sec-WebSocket-Extensions is malformed: {exc}") from exc
        for name, _ in accepted:
            if name not in offered_extensions:
                raise _BadResponse(f"the server accepted an extension that was not offered: {_printable(name, 60)}")
    return subprotocol, accepted


def _attempt_failed(exc: BaseException, endpoint: _Endpoint, phase: str) -> ConnectError:
    """A ConnectError for a failure that is not an HTTP refusal; never quotes secrets.

    ``phase`` and the endpoint say where it failed; ``str(exc)`` comes from
    the OS, the ssl module, python-socks or this module, none of which
    carries header values, userinfo or the query.
    """
    if isinstance(exc, _BadResponse):
        return ConnectError(f"{endpoint.authority}: {exc}", reason="bad_handshake")
    if isinstance(exc, _ProxyRefused):
        return ConnectError(str(exc), reason="proxy", status_code=exc.status_code)
    reason = connect_reason(exc)
    hint = ""
    if reason == "resource_exhausted":
        hint = (
            " - the process is out of file descriptors or memory: raise the limit (ulimit -n) or open fewer connections"
        )
    return ConnectError(
        f"connecting to {endpoint.authority} failed {phase} ({reason}): {type(exc).__name__}: {exc}{hint}",
        reason=reason,
    )


# -- proxies ----------------------------------------------------------------


@dataclass(frozen=True)
class _ProxyEndpoint:
    scheme: str
    host: str
    port: int
    username: str | None
    password: str | None

    @property
    def authority(self) -> str:
        return f"{_bracket(self.host)}:{self.port}"


class _ProxyRefused(Exception):
    """The proxy answered, but did not open the tunnel."""

    def __init__(self, message: str, status_code: int | None = None) -> None:
        self.status_code = status_code
        super().__init__(message)


def _proxy_endpoint(proxy: str, source: str = "") -> _ProxyEndpoint:
    """The parsed proxy URL; ``source`` names the environment variable it came from, if it did."""
    option = f"proxy (${source})" if source else "proxy"
    try:
        parts = urlsplit(proxy)
        port = parts.port
    except ValueError:
        raise ConfigError(option, "is not a valid URL") from None
    if parts.scheme not in _DEFAULT_PROXY_PORTS:
        raise ConfigError(option, "must be an http://, socks4://, socks4a://, socks5:// or socks5h:// URL")
    host = _ascii_host(parts.hostname, option)
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    return _ProxyEndpoint(parts.scheme, host, port or _DEFAULT_PROXY_PORTS[parts.scheme], username, password)


def _http_connect(sock: socket.socket, proxy: _ProxyEndpoint, endpoint: _Endpoint, deadline: Deadline) -> None:
    """Open an HTTP CONNECT tunnel to ``endpoint`` through the proxy on ``sock``."""
    lines = [f"CONNECT {endpoint.authority} HTTP/1.1", f"Host: {endpoint.authority}"]
    if proxy.username is not None:
        credentials = f"{proxy.username}:{proxy.password or ''}".encode()
        lines.append(f"Proxy-Authorization: Basic {base64.b64encode(credentials).decode('ascii')}")
    sock.settimeout(deadline.remaining())
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    try:
        parser = _read_head(sock, deadline, "the proxy")
    except _BadResponse as exc:
        raise _ProxyRefused(f"proxy {proxy.authority}: {exc}") from exc
    assert parser.head is not None
    head = parser.head
    # RFC 9110 section 9.3.6: any 2xx answer to CONNECT means the tunnel is open.
    if not 200 <= head.status < 300:
        body = _printable(_read_refusal_body(sock, head, parser.leftover, deadline).decode("utf-8", "replace"))
        message = f"proxy {proxy.authority} refused the tunnel to {endpoint.authority}: HTTP {head.status}"
        if head.reason:
            message += f" {_printable(head.reason, 60)}"
        raise _ProxyRefused(message + (f": {body}" if body else ""), head.status)
    if parser.leftover:
        # The server has not been spoken to yet: these bytes can only be the proxy's.
        raise _ProxyRefused(f"proxy {proxy.authority} sent data after opening the tunnel")


def _socks_connect(
    proxy: _ProxyEndpoint,
    endpoint: _Endpoint,
    deadline: Deadline,
    on_socket: Callable[[socket.socket], None] | None,
) -> socket.socket:
    """A tunnel through a SOCKS proxy, built by python-socks.

    python-socks creates and connects the socket itself, so ``on_socket`` sees
    it only once the tunnel is up, and its negotiation is bounded per read by
    the time remaining when it starts (a few small reads), not as a whole.
    """
    try:
        from python_socks import ProxyError, ProxyTimeoutError, ProxyType
        from python_socks.sync import Proxy
    except ImportError as exc:
        raise ConnectError(
            f"the proxy {proxy.scheme}://{proxy.authority} needs the python-socks package: pip install python-socks",
            reason="proxy",
        ) from exc
    kind = ProxyType.SOCKS5 if proxy.scheme.startswith("socks5") else ProxyType.SOCKS4
    # socks5h/socks4a: the proxy resolves the host name (curl's convention).
    remote_dns = proxy.scheme in ("socks5h", "socks4a")
    client = Proxy(kind, proxy.host, proxy.port, proxy.username, proxy.password, rdns=remote_dns)
    try:
        sock = client.connect(endpoint.host, endpoint.port, timeout=deadline.remaining())
    except ProxyTimeoutError as exc:
        raise TimeoutError(f"the SOCKS proxy {proxy.authority} did not answer in time") from exc
    except ProxyError as exc:
        raise _ProxyRefused(f"SOCKS proxy {proxy.authority} refused the tunnel to {endpoint.authority}: {exc}") from exc
    try:
        if on_socket is not None:
            on_socket(sock)
        _tune(sock)
        deadline.remaining()
    except BaseException:
        sock.close()
        raise
    return sock


# Environment variables consulted per URL scheme, most specific first (curl
# and requests read the https_/http_ ones; ws_/wss_ are aiohttp's and websockets').
_PROXY_KEYS = {"wss": ("wss", "https", "all"), "ws": ("ws", "http", "all")}


def environment_proxy(url: str) -> str | None:
    """The proxy URL the environment names for ``url``, or None for a direct connection.

    Read as ``requests`` and curl read it (``urllib.request.getproxies()``):
    ``wss://`` uses ``wss_proxy``, then ``https_proxy``, then ``all_proxy``;
    ``ws://`` uses ``ws_proxy``, ``http_proxy``, ``all_proxy`` (lower-case
    names win over upper-case ones). ``no_proxy`` (``*``, host names, domain
    suffixes, ``host:port``, IP addresses and networks such as
    ``10.0.0.0/8``) sends a host direct, and so does every loopback host
    (``localhost``, ``127.0.0.0/8``, ``::1``): a proxy's loopback is not
    this machine's. A value without a scheme is an ``http://`` proxy.

    Raises:
        ConfigError: ``url`` is not a valid ``ws://`` or ``wss://`` URL.
    """
    found = _environment_proxy(_endpoint(url))
    return found[1] if found else None


def _environment_proxy(endpoint: _Endpoint) -> tuple[str, str] | None:
    """(variable name, proxy URL) of the environment's proxy for ``endpoint``, or None."""
    if _is_loopback(endpoint.host):
        return None
    proxies = urllib.request.getproxies()
    scheme = "wss" if endpoint.secure else "ws"
    for key in _PROXY_KEYS[scheme]:
        value = proxies.get(key, "").strip()
        if value:
            break
    else:
        return None
    if _bypassed(endpoint, proxies.get("no", "")):
        return None
    return f"{key}_proxy", value if "://" in value else "http://" + value


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bypassed(endpoint: _Endpoint, no_proxy: str) -> bool:
    """True when ``no_proxy`` (or the platform's proxy settings) says to connect direct."""
    try:
        address = ipaddress.ip_address(endpoint.host)
    except ValueError:
        address = None
    for entry in no_proxy.split(","):
        entry = entry.strip()
        if address is not None and "/" in entry:
            # requests also matches IP addresses against networks (urllib does not).
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    # Host names, suffixes, "*" and host:port: urllib's own rules (and, on
    # macOS and Windows, the system's settings when no variable is set).
    return bool(urllib.request.proxy_bypass(endpoint.authority))
