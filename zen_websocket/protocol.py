"""Sans-I/O framing for the client side of RFC 6455: bytes in, events out.

:class:`Protocol` owns no socket, thread or clock. The driver reads the
socket and hands the bytes over; the codec parses every complete frame in
them and answers with events; messages to send come back as bytes::

    data = sock.recv(256 * 1024)
    proto.receive_data(data)               # or proto.receive_eof() on b""
    while (event := proto.next_event()) is not None:
        opcode, value = event              # (OP_TEXT, str), (OP_CLOSE, (code, reason)), ...
    sock.sendall(proto.send(OP_TEXT, b"..."))

Framing can therefore be tested from bytes alone, and extensions plug into
one seam (:class:`Extension`): they see every incoming data frame after it is
parsed and every outgoing data frame before it is masked.

Why it reads the way it does (the receive loop is the hot path):

- The buffer is the ``bytes`` object the socket returned, read through an
  offset: a 256 KiB read full of small frames costs one slice per payload
  and no other copy. Bytes that arrive while a frame is still incomplete are
  queued and joined once, when the frame can be completed, so a large
  payload arriving in many reads is copied a constant number of times, not
  once per read.
- Sizes are checked from the frame header, before waiting for the payload:
  a header announcing 1 GB fails at once.
- The usual frame (a whole text or binary message under 64 KiB, without
  RSV bits or extensions) is parsed by a short path with only the checks
  that can fail for it; every other frame takes the general one.
- A payload's bytes are copied once (the slice, or the join of a payload
  that spans reads) and text is decoded from that copy. Decoding straight
  from a ``memoryview`` of the read, skipping the slice, was measured and
  gains nothing at 64 KB (an unaligned start makes the decoder scan and
  copy in two passes, which is what slice-then-decode costs too).
- A fragmented message grows in ONE ``bytearray``: memory is the message's
  size, never one object per fragment, and zero-length fragments cost
  nothing. The number of frames per message is capped (``max_fragments``)
  because empty fragments still cost CPU.
- Text is decoded once per message with a strict ``bytes.decode`` (C);
  fragmented text is also fed to an incremental decoder so that invalid
  UTF-8 fails as soon as a fragment proves it (Autobahn 6.4.x).
"""

from __future__ import annotations

import codecs
import os
import struct
import threading
import typing
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from .errors import ConfigError, ConnectionClosed, MessageTooLarge, ProtocolError, UsageError

__all__ = [
    "MAX_FRAGMENTS",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "Extension",
    "Frame",
    "Protocol",
    "client_frame",
    "parse_close",
    "valid_close_code",
]

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA

# Autobahn 9.3.x sends a message as 65,536 fragments of 64 bytes; a million
# leaves room for that while bounding the work an endless stream of empty
# fragments can cause.
MAX_FRAGMENTS = 1 << 20

_FIN = 0x80
_FIN_BINARY = _FIN | OP_BINARY
# First bytes of a whole text or binary message without RSV bits.
_WHOLE_DATA_FRAME = frozenset((_FIN | OP_TEXT, _FIN_BINARY))
_RSV_BITS = 0x70  # rsv1 0x40, rsv2 0x20, rsv3 0x10
_MASK = 0x80
_MAX_CONTROL_PAYLOAD = 125  # RFC 6455 5.5
_MAX_CLOSE_REASON = 123  # 125 minus the two bytes of the code
_DROPPED = "connection dropped without a close frame"

_utf8_decoder = codecs.getincrementaldecoder("utf-8")
_pack_header16 = struct.Struct("!BBH").pack
_pack_header64 = struct.Struct("!BBQ").pack
_unpack_length64 = struct.Struct("!Q").unpack_from
_close_code = struct.Struct("!H")


class Frame(NamedTuple):
    """One data frame as extensions see it.

    Attributes:
        fin: whether this is the last frame of its message.
        opcode: ``OP_TEXT``, ``OP_BINARY`` or ``OP_CONT``.
        payload: the (unmasked) payload.
        rsv1: the RSV1 bit (permessage-deflate marks compressed messages with it).
        rsv2: the RSV2 bit.
        rsv3: the RSV3 bit.
    """

    fin: bool
    opcode: int
    payload: bytes
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False


class Extension(typing.Protocol):
    """A negotiated extension (e.g. permessage-deflate): the codec's one seam.

    Attributes:
        name: the extension's name, as negotiated.
        rsv_bits: the RSV bits it owns (0x40 rsv1, 0x20 rsv2, 0x10 rsv3);
            incoming data frames may carry them, other RSV bits are a
            protocol error.
    """

    name: str
    rsv_bits: int

    def decode(self, frame: Frame, *, max_size: int | None) -> Frame:
        """Transform one incoming data or continuation frame (frames arrive in order).

        Args:
            frame: the frame as parsed (or as the next extension returned it).
            max_size: bytes the rest of this message may still take once
                decoded, None for no limit.

        Raises:
            MessageTooLarge: the decoded payload would exceed ``max_size``
                (a decompression bomb must fail before it is inflated).
            ProtocolError: the frame is invalid for this extension.
        """
        ...

    def encode(self, frame: Frame) -> Frame:
        """Transform one outgoing data frame (the RSV bits of the result are sent)."""
        ...


class MaskKeys:
    """Masking keys from ``os.urandom``, 1,024 four-byte keys per system call.

    RFC 6455 5.3 wants each key unpredictable to the server: a strong source
    read ahead is as unpredictable as one read per frame. Reading per frame
    made every send a system call that also released the GIL, which in a
    process with many connections often meant waiting to get it back
    (measured on the timer thread's heartbeats). Thread-safe.
    """

    __slots__ = ("_buf", "_lock", "_pos")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buf = b""
        self._pos = 0

    def __call__(self, n: int) -> bytes:
        """``n`` random bytes (n <= 4096)."""
        with self._lock:
            pos = self._pos
            end = pos + n
            if end > len(self._buf):
                self._buf = os.urandom(4096)
                pos, end = 0, n
            self._pos = end
            return self._buf[pos:end]


#: The process's masking keys (see :class:`MaskKeys`).
mask_keys = MaskKeys()


def client_frame(opcode: int, payload: bytes, urandom: Callable[[int], bytes] = mask_keys, *, rsv: int = 0) -> bytes:
    """One final client frame: header, 4-byte masking key, masked payload (RFC 6455 5.2-5.3).

    The key comes from ``urandom`` (the RFC wants an unpredictable one); the
    XOR runs over the whole payload at once as two big integers, which is
    several times faster than a per-byte loop in Python.

    Args:
        opcode: the frame's opcode.
        payload: the unmasked payload.
        urandom: source of the 4-byte masking key.
        rsv: RSV bits to set (0x40, 0x20, 0x10 or a combination).

    Returns:
        The frame, ready for ``sendall``.
    """
    n = len(payload)
    mask = urandom(4)
    first = _FIN | rsv | opcode
    if n < 126:
        header = bytes((first, _MASK | n))
    elif n < 65536:
        header = _pack_header16(first, _MASK | 126, n)
    else:
        header = _pack_header64(first, _MASK | 127, n)
    if not n:
        return header + mask
    key = mask * (n >> 2) + mask[: n & 3]  # the key repeated over exactly n bytes
    masked = (int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")).to_bytes(n, "little")
    return header + mask + masked


def valid_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a close frame (RFC 6455 7.4, IANA registry).

    1012-1014 are registered (service restart, try again later, bad gateway)
    and exchanges send them, so they are accepted. 1004-1006 and 1015 are
    reserved and never sent on the wire.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def parse_close(payload: bytes) -> tuple[int, str]:
    """The ``(code, reason)`` of a close frame's payload.

    Returns:
        ``(1005, "")`` for an empty payload (no code sent), else the code
        and the UTF-8 reason.

    Raises:
        ProtocolError: a one-byte payload or an invalid code (close code
            1002); a reason that is not UTF-8 (close code 1007).
    """
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise ProtocolError("close frame with a one-byte payload")
    code = _close_code.unpack_from(payload)[0]
    if not valid_close_code(code):
        raise ProtocolError(f"invalid close code {code}")
    try:
        reason = payload[2:].decode()  # strict UTF-8
    except UnicodeDecodeError as exc:
        raise ProtocolError("invalid UTF-8 in a close reason", 1007) from exc
    return code, reason


class Protocol:
    """Client side of RFC 6455 framing for one connection: bytes in -> events out; messages out -> bytes.

    Not thread-safe: one thread feeds and reads it (the receive thread);
    :meth:`send` and :meth:`send_close` keep no state beyond the extensions',
    so they may be called under the driver's own send lock.

    Attributes:
        max_message_size: largest message in bytes (decoded size when an
            extension transforms payloads), None for no limit.
        max_fragments: most frames in one message, None for no limit.
        extensions: the negotiated extensions, in negotiation order.
        bytes_received: wire bytes (headers and payloads) of the frames
            parsed so far.
    """

    def __init__(
        self,
        *,
        max_message_size: int | None = 16 * 2**20,
        max_fragments: int | None = MAX_FRAGMENTS,
        extensions: Sequence[Extension] = (),
        urandom: Callable[[int], bytes] = mask_keys,
    ) -> None:
        """Create the codec for one connection.

        Args:
            max_message_size: largest message in bytes, None for no limit.
            max_fragments: most frames in one message, None for no limit.
            extensions: the extensions the handshake negotiated, in order.
            urandom: source of masking keys (tests pass a fixed one).

        Raises:
            ConfigError: a negative size, fewer than one fragment, or
                extensions whose RSV bits are invalid or overlap.
        """
        if max_message_size is not None and max_message_size < 0:
            raise ConfigError("max_message_size", f"must be >= 0 or None, not {max_message_size}")
        if max_fragments is not None and max_fragments < 1:
            raise ConfigError("max_fragments", f"must be >= 1 or None, not {max_fragments}")
        free = _RSV_BITS  # RSV bits no extension has claimed yet
        for extension in extensions:
            bits = extension.rsv_bits
            if bits & ~free:
                raise ConfigError("extensions", f"{extension.name}: invalid or already claimed RSV bits {bits:#x}")
            free &= ~bits
        self.max_message_size = max_message_size
        self.max_fragments = max_fragments
        self.extensions = tuple(extensions)
        self._urandom = urandom
        # RSV bits that fail a data frame: those no negotiated extension owns.
        self._foreign_rsv = free
        self.bytes_received = 0
        self._reset_input(b"")
        self._end_message()
        self._eof = False
        self._close: tuple[int, str] | None = None  # the peer's close frame
        self._failure: Exception | None = None

    # Unparsed input is _buf[_pos:] followed by the queued reads _chunks.
    _buf: bytes
    _pos: int
    _chunks: list[bytes]
    _chunked: int  # total length of _chunks
    # The fragmented message in progress. Between messages _message is b"",
    # so len(_message) is always the size of the message so far.
    _message: bytes | bytearray
    _message_opcode: int | None  # OP_TEXT or OP_BINARY while one is open
    _message_frames: int  # its frames so far
    _decoder: Any  # its incremental UTF-8 decoder, None for binary
    # True while no extension is negotiated and no fragmented message is
    # open: a whole text or binary frame then needs no check but the size.
    _fast_path: bool

    def _reset_input(self, data: bytes) -> None:
        """Make ``data`` the whole unparsed input."""
        self._buf = data
        self._pos = 0
        self._chunks = []
        self._chunked = 0

    def _end_message(self) -> None:
        """No fragmented message is open."""
        self._message = b""
        self._message_opcode = None
        self._fast_path = not self.extensions

    # -- input -----------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Append bytes read from the socket (ignored once closed or failed).

        Raises:
            UsageError: called after :meth:`receive_eof`.
        """
        if self._eof:
            raise UsageError("receive_data() after receive_eof()")
        if self._failure is not None or self._close is not None or not data:
            return  # nothing after a close frame or a failure is parsed
        # A copy of a bytearray or memoryview (a caller's buffer may be
        # reused); the same object, at no cost, for bytes.
        data = bytes(data)
        if self._pos == len(self._buf) and not self._chunks:
            # Everything before was consumed: parse the new read in place.
            self._reset_input(data)
        else:
            # Joined once the incomplete frame can be completed (see _take and _refill).
            self._chunks.append(data)
            self._chunked += len(data)

    def receive_eof(self) -> None:
        """Record that the peer closed TCP; :meth:`next_event` then drains and raises."""
        self._eof = True

    # -- events ----------------------------------------------------------

    def next_event(self) -> tuple[int, Any] | None:
        """The next message or control frame, or None when more bytes are needed.

        Returns:
            ``(OP_TEXT, str)``, ``(OP_BINARY, bytes)``, ``(OP_PING, bytes)``,
            ``(OP_PONG, bytes)`` or ``(OP_CLOSE, (code, reason))`` (code 1005
            when the close frame had no payload); None when the buffered
            bytes hold no complete event. Bytes after a close frame are
            ignored.

        Raises:
            ProtocolError: the peer broke RFC 6455; ``close_code`` is 1002,
                1007 for invalid UTF-8, 1009 for too many fragments.
            MessageTooLarge: a message over ``max_message_size`` (1009).
            ConnectionClosed: :meth:`receive_eof` was called and no complete
                event is left: code None when no close frame came, else the
                peer's code and reason.

        Once it has raised, the codec is failed: every later call raises
        the same exception again.
        """
        if self._failure is not None:
            raise self._failure
        try:
            while True:
                buf = self._buf
                pos = self._pos
                if len(buf) - pos < 2:
                    if self._refill():
                        continue
                    if pos == len(buf) and pos:
                        self._reset_input(b"")  # do not keep a whole read (up to 1 MiB) alive while idle
                    return None
                b0 = buf[pos]
                b1 = buf[pos + 1]
                if b0 in _WHOLE_DATA_FRAME and b1 <= 126 and self._fast_path:
                    # The usual frame: a whole message under 64 KiB, unmasked,
                    # no RSV bits, no extension, no fragmented message open.
                    # Of the general path's checks only the size limit can
                    # fail, so they are skipped: the codec alone spends
                    # 15-25% less per 200-byte frame, 10-15% less at 2 KB.
                    # Anything else (a frame while a fragmented message is
                    # open is an error) takes the general path below.
                    start = pos + 2
                    if b1 == 126:
                        start = pos + 4
                        if len(buf) < start:
                            if self._refill():
                                continue
                            return None
                        b1 = buf[pos + 2] << 8 | buf[pos + 3]
                    limit = self.max_message_size
                    if limit is not None and b1 > limit:
                        raise MessageTooLarge(b1, limit)
                    end = start + b1
                    if end <= len(buf):
                        payload = buf[start:end]
                        self._pos = end
                    else:
                        taken = self._take(start, b1)
                        if taken is None:
                            return None
                        payload = taken
                    self.bytes_received += end - pos
                    if b0 == _FIN_BINARY:
                        return OP_BINARY, payload
                    try:
                        return OP_TEXT, payload.decode()  # strict UTF-8, in C
                    except UnicodeDecodeError as exc:
                        raise ProtocolError("invalid UTF-8 in a text message", 1007) from exc
                opcode = b0 & 0x0F
                length = b1 & 0x7F
                if b1 & _MASK:
                    raise ProtocolError("the server sent a masked frame")
                if opcode >= OP_CLOSE:
                    return self._control(buf, pos, b0, opcode, length)
                if opcode > OP_BINARY:
                    raise ProtocolError(f"unknown data opcode {opcode:#x}")
                if b0 & self._foreign_rsv:
                    raise ProtocolError(f"reserved bits {b0 & _RSV_BITS:#x} set without a negotiated extension")
                header = 2
                if length >= 126:
                    header = 4 if length == 126 else 10
                    if len(buf) - pos < header:
                        if self._refill():
                            continue
                        return None
                    if length == 126:
                        length = buf[pos + 2] << 8 | buf[pos + 3]
                    else:
                        length = _unpack_length64(buf, pos + 2)[0]
                        if length >> 63:
                            raise ProtocolError("64-bit payload length with the most significant bit set")
                # Message state and size are checked from the header, before
                # waiting for a byte of the payload.
                if opcode == OP_CONT:
                    if self._message_opcode is None:
                        raise ProtocolError("continuation frame without a message to continue")
                    if self.max_fragments is not None and self._message_frames >= self.max_fragments:
                        raise ProtocolError("too many fragments", 1009)
                elif self._message_opcode is not None:
                    raise ProtocolError("new data frame while a fragmented message is in progress")
                limit = self.max_message_size
                if limit is not None:
                    size = len(self._message) + length
                    if size > limit:
                        raise MessageTooLarge(size, limit)
                start = pos + header
                end = start + length
                if end <= len(buf):
                    if opcode == OP_TEXT and length >= _DECODE_IN_PLACE and b0 & _FIN and self._fast_path:
                        # A large whole text message: decoded straight from
                        # the read, without first copying its payload out.
                        try:
                            text = str(memoryview(buf)[start:end], "utf-8")
                        except UnicodeDecodeError as exc:
                            raise ProtocolError("invalid UTF-8 in a text message", 1007) from exc
                        self._pos = end
                        self.bytes_received += header + length
                        return OP_TEXT, text
                    payload = buf[start:end]
                    self._pos = end
                else:
                    taken = self._take(start, length)
                    if taken is None:
                        return None
                    payload = taken
                self.bytes_received += header + length
                fin = b0 & _FIN
                if self.extensions:
                    payload = self._decode(Frame(fin == _FIN, opcode, payload, *_rsv_flags(b0)))
                if opcode == OP_CONT:
                    message = self._continue(fin, payload)
                    if message is not None:
                        return message
                elif not fin:
                    self._start(opcode, payload)
                elif opcode == OP_TEXT:
                    try:
                        return OP_TEXT, payload.decode()  # strict UTF-8, in C
                    except UnicodeDecodeError as exc:
                        raise ProtocolError("invalid UTF-8 in a text message", 1007) from exc
                else:
                    return OP_BINARY, payload
        except Exception as exc:
            # Sticky: after a violation the stream cannot be trusted, and a
            # driver that calls again must see the same reason to close.
            self._failure = exc
            self._stop_input()
            raise

    def _control(self, buf: bytes, pos: int, b0: int, opcode: int, length: int) -> tuple[int, Any] | None:
        """Parse a control frame: its event, or None when more bytes are needed."""
        if opcode > OP_PONG:
            raise ProtocolError(f"unknown control opcode {opcode:#x}")
        if b0 & _RSV_BITS:
            raise ProtocolError("reserved bits set on a control frame")
        if not b0 & _FIN or length > _MAX_CONTROL_PAYLOAD:
            raise ProtocolError("control frames must be final and at most 125 bytes")
        end = pos + 2 + length
        if end <= len(buf):
            payload = buf[pos + 2 : end]
            self._pos = end
        else:
            taken = self._take(pos + 2, length)
            if taken is None:
                return None
            payload = taken
        self.bytes_received += 2 + length
        if opcode == OP_CLOSE:
            close = self._close = parse_close(payload)
            self._stop_input()  # RFC 6455 5.5.1: nothing follows a close frame
            return OP_CLOSE, close
        return opcode, payload

    def _refill(self) -> bool:
        """Join the queued reads to the buffer, for a header that runs into them.

        A header is at most 10 bytes, so the unparsed tail joined here is
        short; the payloads that follow are then parsed in place.

        Returns:
            True when reads were joined (parse again); False when none are queued.

        Raises:
            ConnectionClosed: nothing is queued and the peer closed TCP.
        """
        if not self._chunks:
            self._starved()
            return False
        self._chunks.insert(0, self._buf[self._pos :])
        self._reset_input(b"".join(self._chunks))
        return True

    def _take(self, start: int, length: int) -> bytes | None:
        """The payload ``length`` bytes from ``start`` that runs on into queued reads.

        Only the payload is copied (once, by the join): the read that
        completes it becomes the buffer, so the frames after it are parsed
        in place. A large payload arriving in many reads is thus copied once
        in all, not once per read.

        Returns:
            The payload, with the read offset moved past it; None when more
            bytes are needed.

        Raises:
            ConnectionClosed: the peer closed TCP, so they never will come.
        """
        buf = self._buf
        missing = length - (len(buf) - start)
        if missing > self._chunked:
            self._starved()
            return None
        chunks = self._chunks
        pieces: list[Any] = [memoryview(buf)[start:]]
        i = 0
        while missing > len(chunks[i]):
            missing -= len(chunks[i])
            pieces.append(chunks[i])
            i += 1
        last = chunks[i]
        pieces.append(memoryview(last)[:missing])
        payload = b"".join(pieces)
        self._chunks = chunks[i + 1 :]
        self._chunked = sum(map(len, self._chunks))
        self._buf = last
        self._pos = missing
        return payload

    def _starved(self) -> None:
        """More bytes are needed; raise if the peer closed TCP, so they never will come."""
        if self._eof:
            if self._close is not None:
                raise ConnectionClosed(*self._close)
            raise ConnectionClosed(None, _DROPPED)

    def _stop_input(self) -> None:
        """Drop buffered input (closed or failed; receive_data then ignores reads)."""
        self._reset_input(b"")
        self._end_message()

    def _decode(self, frame: Frame) -> bytes:
        """Run an incoming data frame through the extensions; returns the payload."""
        limit = self.max_message_size
        remaining = None if limit is None else limit - len(self._message)
        # Mirror of send(): the last extension to encode is the first to decode.
        for extension in reversed(self.extensions):
            frame = extension.decode(frame, max_size=remaining)
        payload = frame.payload
        # The extension must enforce max_size itself (before inflating);
        # this catches one that does not.
        if limit is not None and len(self._message) + len(payload) > limit:
            raise MessageTooLarge(len(self._message) + len(payload), limit)
        return payload

    def _start(self, opcode: int, payload: bytes) -> None:
        """First frame of a fragmented message."""
        self._message_opcode = opcode
        self._fast_path = False  # the next frame must be a continuation: the general path checks it
        self._message_frames = 1
        self._message = bytearray(payload)  # the one buffer the fragments grow
        self._decoder = _utf8_decoder() if opcode == OP_TEXT else None
        if self._decoder is not None:
            self._check_utf8(payload, False)

    def _continue(self, fin: int, payload: bytes) -> tuple[int, Any] | None:
        """A continuation frame; returns the message when it is the last one."""
        self._message_frames += 1
        self._message += payload  # an empty fragment adds nothing
        if self._decoder is not None:
            self._check_utf8(payload, bool(fin))
        if not fin:
            return None
        message = self._message
        self._end_message()
        if self._decoder is not None:
            return OP_TEXT, message.decode()  # validated fragment by fragment
        return OP_BINARY, bytes(message)

    def _check_utf8(self, payload: bytes, final: bool) -> None:
        # Fail fast: the fragment that proves the text invalid ends it now.
        if payload.isascii() and not self._decoder.getstate()[0]:
            return  # ASCII after a whole character: valid, and nothing is left pending
        try:
            self._decoder.decode(payload, final)
        except UnicodeDecodeError as exc:
            raise ProtocolError("invalid UTF-8 in a text message", 1007) from exc

    # -- output ----------------------------------------------------------

    def send(self, opcode: int, payload: bytes) -> bytes:
        """One final, masked client frame carrying ``payload``.

        Data frames go through every extension's ``encode``, in negotiation
        order; control frames are sent as they are.

        Args:
            opcode: ``OP_TEXT``, ``OP_BINARY``, ``OP_PING``, ``OP_PONG`` or ``OP_CLOSE``.
            payload: the payload (UTF-8 for text).

        Returns:
            The frame's bytes.

        Raises:
            ValueError: an opcode that cannot be sent as one final frame, or
                a control payload over 125 bytes.
        """
        if opcode in (OP_TEXT, OP_BINARY):
            if not self.extensions:
                return client_frame(opcode, payload, self._urandom)
            frame = Frame(True, opcode, payload)
            for extension in self.extensions:
                frame = extension.encode(frame)
            rsv = (0x40 if frame.rsv1 else 0) | (0x20 if frame.rsv2 else 0) | (0x10 if frame.rsv3 else 0)
            return client_frame(opcode, frame.payload, self._urandom, rsv=rsv)
        if opcode in (OP_CLOSE, OP_PING, OP_PONG):
            if len(payload) > _MAX_CONTROL_PAYLOAD:
                raise ValueError(f"control frame payload of {len(payload)} bytes exceeds 125")
            return client_frame(opcode, payload, self._urandom)
        raise ValueError(f"opcode {opcode:#x} cannot be sent as one final frame")

    def send_close(self, code: int = 1000, reason: str = "") -> bytes:
        """A masked close frame.

        Args:
            code: the close code; 1005 sends an empty payload (no code, no reason).
            reason: cut to 123 UTF-8 bytes, never inside a character.

        Returns:
            The frame's bytes.

        Raises:
            ValueError: ``code`` may not be sent (see :func:`valid_close_code`).
        """
        if code == 1005:
            return client_frame(OP_CLOSE, b"", self._urandom)
        if not valid_close_code(code):
            raise ValueError(f"close code {code} may not be sent")
        raw = reason.encode()
        if len(raw) > _MAX_CLOSE_REASON:
            cut = _MAX_CLOSE_REASON
            while (raw[cut] & 0xC0) == 0x80:  # a continuation byte: the cut splits a character
                cut -= 1
            raw = raw[:cut]
        return client_frame(OP_CLOSE, _close_code.pack(code) + raw, self._urandom)


# Text payloads at least this long are decoded from the read in place (a
# memoryview costs more than copying a small payload).
_DECODE_IN_PLACE = 16 * 1024


def _rsv_flags(b0: int) -> tuple[bool, bool, bool]:
    return bool(b0 & 0x40), bool(b0 & 0x20), bool(b0 & 0x10)
