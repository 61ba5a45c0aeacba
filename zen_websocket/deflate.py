"""permessage-deflate (RFC 7692) for the codec's extension seam, on the standard library's ``zlib``.

Three pieces, none of which does I/O:

- :func:`offer` is the ``Sec-WebSocket-Extensions`` value the client sends;
- :func:`accept` checks the server's answer against it (RFC 7692 section 7)
  and returns the negotiated :class:`PerMessageDeflate`, or None when the
  server declined (the connection then runs uncompressed);
- :class:`PerMessageDeflate` is the :class:`~zen_websocket.protocol.Extension`
  the codec runs every data frame through.

Choices, and why:

- **Inbound** (what the server sends, where compression pays: market data)
  is inflated with one ``decompressobj`` kept across messages (context
  takeover) unless the server said ``server_no_context_takeover``; it costs
  the server's window (``2**server_max_window_bits`` bytes) plus about
  7 KiB per connection, from the first compressed message on. Output is
  bounded by the codec's ``max_size``: ``decompress(data, max_size + 1)``
  never produces more than the limit plus one byte, so a 1 GB bomb of zeros
  costs one limit's worth of memory and fails at once with
  :class:`~zen_websocket.errors.MessageTooLarge`.
- **Outbound** messages are compressed each on its own (no context
  takeover), whatever the server allows. The driver builds a frame before
  taking its send lock, so with a shared compressor two threads could put
  frames on the wire in another order than they were compressed in, and
  the server would inflate garbage. A compressor per message has no such
  order, needs no lock and holds no memory between sends (a zlib compressor
  is about 256 KiB); the price, a worse ratio on small messages, is paid on
  the direction that carries little (orders and requests). The offer says
  so (``client_no_context_takeover``), which lets the server free memory.
  They are compressed at level 1, zlib's fastest: on 128 KiB of text it is
  about 4 times faster than level 6, for 17 % more bytes.
- Every message is compressed, as browsers and ``websockets`` do, though
  RFC 7692 lets a sender choose message by message. Skipping small ones
  would save about 12 microseconds per send (deflate's fixed cost per
  block, measured on a 170-byte order) and a few bytes, but Autobahn's
  harness (kosoku) errors on an uncompressed echo; ``min_size`` sets a
  threshold for those who build the extension themselves.
- Window bits 8 (a 256-byte window) are not available from zlib for raw
  deflate; 9 is used instead, on both sides. Inflating with a larger window
  than the server's is always safe; and zlib's deflate never reaches back
  further than its window minus 262 bytes, which for 9 bits is 250: inside
  the 256 bytes a server that set ``client_max_window_bits=8`` can see.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Sequence

from .errors import ConfigError, ConnectError, MessageTooLarge, ProtocolError
from .handshake import parse_extensions
from .protocol import OP_CONT, Extension, Frame

__all__ = [
    "DEFAULT_OFFER",
    "NAME",
    "PerMessageDeflate",
    "accept",
    "offer",
]

NAME = "permessage-deflate"
#: What :func:`offer` sends by default. ``client_no_context_takeover`` tells
#: the server what we do anyway (see the module docstring), so it may drop
#: its decompressor after each message; ``client_max_window_bits`` lets it
#: cap our window. Both ask nothing of the server, and Autobahn's 13.2-13.7
#: only negotiate when they are offered.
DEFAULT_OFFER = f"{NAME}; client_no_context_takeover; client_max_window_bits"

# RFC 7692 7.2.1: the sender strips the empty stored block that ends a
# Z_SYNC_FLUSH; the receiver appends it again before inflating the end.
_SYNC_TAIL = b"\x00\x00\xff\xff"
# zlib's deflate keeps this many bytes of lookahead: a window of 2**bits
# reaches back 2**bits - 262 bytes (MAX_DIST in deflate.h).
_MIN_LOOKAHEAD = 262
# After a final (BFINAL) deflate block, RFC 7692 7.2.3.4 allows one byte of
# padding, and the receiver appends _SYNC_TAIL: more than that is data the
# stream has ended without.
_MAX_AFTER_FINAL_BLOCK = 1 + len(_SYNC_TAIL)
_WINDOW_BITS = {str(bits): bits for bits in range(8, 16)}  # the exact spellings RFC 7692 allows


class PerMessageDeflate(Extension):
    """The negotiated permessage-deflate extension of one connection.

    Build it with :func:`accept`; the parameters are the server's answer.
    ``decode`` runs in the receive thread only; ``encode`` keeps no state
    between messages and may be called from several threads at once.

    Args:
        server_no_context_takeover: the server starts every message afresh,
            so the decompressor is dropped after each one.
        client_no_context_takeover: the server asked us not to keep
            context; we never do (see the module docstring), so this is
            recorded only.
        server_max_window_bits: the server compressor's window (8-15); the
            decompressor is sized for it (9 for 8, like the compressor: a
            larger window always inflates a smaller one's stream).
        client_max_window_bits: the largest window our compressor may use
            (8-15; 9 is used for 8, see the module docstring).
        min_size: messages shorter than this many bytes are sent
            uncompressed; 0 (the default) compresses every message.
        level: zlib compression level of outgoing messages, 0-9 (or -1
            for zlib's default, 6).

    Attributes:
        bytes_in_compressed: payload bytes of the compressed frames received.
        bytes_in_raw: what they inflated to.
        bytes_out_raw: bytes of the messages sent compressed, before.
        bytes_out_compressed: the same messages after compression.

    Raises:
        ConfigError: a window outside 8-15, a negative ``min_size`` or a
            level outside -1..9.
    """

    name = NAME
    rsv_bits = 0x40  # RSV1 marks a compressed message (RFC 7692 section 6)

    def __init__(
        self,
        *,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int = 15,
        client_max_window_bits: int = 15,
        min_size: int = 0,
        level: int = 1,
    ) -> None:
        for option, bits in (
            ("server_max_window_bits", server_max_window_bits),
            ("client_max_window_bits", client_max_window_bits),
        ):
            if not 8 <= bits <= 15:
                raise ConfigError(option, f"must be between 8 and 15, not {bits}")
        if min_size < 0:
            raise ConfigError("min_size", f"must be >= 0, not {min_size}")
        if not -1 <= level <= 9:
            raise ConfigError("level", f"must be between -1 and 9, not {level}")
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.min_size = min_size
        self.level = level
        self._inflate_bits = max(9, server_max_window_bits)
        # Created at the first compressed message, dropped after a message
        # when the server keeps no context (or ended its stream).
        self._decompressor: zlib._Decompress | None = None
        self._inflating = False  # a fragmented compressed message is open
        self._inflated = 0  # bytes it has inflated to so far
        self.bytes_in_compressed = 0
        self.bytes_in_raw = 0
        self._count_lock = threading.Lock()  # guards the bytes_out_* counters (encode runs in any thread)
        self.bytes_out_raw = 0
        self.bytes_out_compressed = 0

    def __repr__(self) -> str:
        return (
            f"PerMessageDeflate(server_no_context_takeover={self.server_no_context_takeover}, "
            f"client_no_context_takeover={self.client_no_context_takeover}, "
            f"server_max_window_bits={self.server_max_window_bits}, "
            f"client_max_window_bits={self.client_max_window_bits}, min_size={self.min_size}, level={self.level})"
        )

    def decode(self, frame: Frame, *, max_size: int | None) -> Frame:
        """Inflate the frames of a compressed message; others pass unchanged.

        RSV1 on the first frame of a message marks the whole message
        compressed; its continuation frames carry no RSV1 but continue the
        same deflate stream.

        Args:
            frame: a data or continuation frame, in order.
            max_size: bytes the rest of the message may still inflate to,
                None for no limit.

        Returns:
            The frame with its payload inflated and RSV1 cleared.

        Raises:
            MessageTooLarge: the message would inflate past ``max_size``;
                raised before more than ``max_size + 1`` bytes exist. Its
                ``size`` is then a lower bound (the rest is never inflated).
            ProtocolError: RSV1 on a continuation frame, invalid deflate
                data, or data after the stream's final block.
        """
        if frame.opcode == OP_CONT:
            if frame.rsv1:
                raise ProtocolError("RSV1 set on a continuation frame")
            if not self._inflating:
                return frame  # part of an uncompressed message
        elif not frame.rsv1:
            return frame
        else:
            self._inflating = True
            self._inflated = 0
        payload = frame.payload
        fin = frame.fin
        decompressor = self._decompressor
        if decompressor is None:
            decompressor = self._decompressor = zlib.decompressobj(wbits=-self._inflate_bits)
        # One copy of the compressed bytes, to inflate the message's end in
        # the same call (a second call would cost more on small messages).
        data = payload + _SYNC_TAIL if fin else payload
        try:
            # max_length bounds the output, so a bomb never inflates past
            # the limit: the unconsumed input is simply left unread.
            out = decompressor.decompress(data, 0 if max_size is None else max_size + 1)
        except zlib.error as exc:
            raise ProtocolError(f"invalid permessage-deflate data: {exc}") from exc
        if max_size is not None and len(out) > max_size:
            limit = self._inflated + max_size
            raise MessageTooLarge(limit + 1, limit)
        self._inflated += len(out)
        self.bytes_in_compressed += len(payload)
        self.bytes_in_raw += len(out)
        if fin:
            self._inflating = False
            if decompressor.eof:
                # The server ended its stream with a final block (RFC 7692
                # 7.2.3.4): the next message starts a new one.
                if len(decompressor.unused_data) > _MAX_AFTER_FINAL_BLOCK:
                    raise ProtocolError("permessage-deflate data after the final deflate block")
                self._decompressor = None
            elif self.server_no_context_takeover:
                self._decompressor = None
        return Frame(fin, frame.opcode, out)

    def encode(self, frame: Frame) -> Frame:
        """Compress a whole message of at least ``min_size`` bytes; others pass unchanged.

        Each message gets its own compressor (no context takeover) with a
        window just large enough to reach across it, capped by
        ``client_max_window_bits``: small messages cost a small compressor.

        Returns:
            The frame with its payload compressed and RSV1 set, or ``frame``
            itself when it is sent as it is.
        """
        payload = frame.payload
        size = len(payload)
        # Only a message sent as one frame is compressed: its continuation
        # frames would have to share the stream (our codec sends none).
        if size < self.min_size or not frame.fin or frame.opcode == OP_CONT:
            return frame
        bits = max(9, min(self.client_max_window_bits, (size + _MIN_LOOKAHEAD).bit_length()))
        # memLevel 8 (zlib's default) goes with a 15-bit window; smaller
        # windows need proportionally smaller hash tables.
        compressor = zlib.compressobj(self.level, zlib.DEFLATED, -bits, max(1, bits - 7))
        data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        data = data[: -len(_SYNC_TAIL)]  # RFC 7692 7.2.1: a sync flush ends with 00 00 ff ff
        with self._count_lock:
            self.bytes_out_raw += size
            self.bytes_out_compressed += len(data)
        return Frame(True, frame.opcode, data, True, frame.rsv2, frame.rsv3)


def offer(*, server_max_window_bits: int | None = None, server_no_context_takeover: bool = False) -> str:
    """The ``Sec-WebSocket-Extensions`` value the client sends.

    By default :data:`DEFAULT_OFFER`: permessage-deflate with
    ``client_no_context_takeover`` (true of our compressor) and
    ``client_max_window_bits`` (the server may cap our window; we honour any
    cap), and no demand on the server, so every RFC 7692 server can accept
    it as it likes.

    Args:
        server_max_window_bits: ask the server to compress with at most this
            window (8-15): a smaller one means a smaller decompressor
            (``2**bits`` bytes) per connection, and a worse ratio.
        server_no_context_takeover: ask the server to compress each message
            afresh, so no decompressor outlives a message.

    Raises:
        ConfigError: ``server_max_window_bits`` outside 8-15.
    """
    parts = [DEFAULT_OFFER]
    if server_no_context_takeover:
        parts.append("server_no_context_takeover")
    if server_max_window_bits is not None:
        if not 8 <= server_max_window_bits <= 15:
            raise ConfigError("server_max_window_bits", f"must be between 8 and 15, not {server_max_window_bits}")
        parts.append(f"server_max_window_bits={server_max_window_bits}")
    return "; ".join(parts)


def accept(
    extensions: Sequence[tuple[str, dict[str, str | None]]], offered: str = DEFAULT_OFFER
) -> PerMessageDeflate | None:
    """The extension the server's answer negotiates, checked against what we offered (RFC 7692 section 7).

    Args:
        extensions: the accepted extensions, as
            :attr:`zen_websocket.handshake.Handshake.extensions` lists them.
        offered: the offer that was sent (from :func:`offer`).

    Returns:
        The negotiated extension, or None when the server did not accept
        permessage-deflate (the connection runs uncompressed).

    Raises:
        ConnectError: ``reason="bad_handshake"`` (fatal): permessage-deflate
            accepted twice, an unknown parameter, a value where
            none belongs or a missing or invalid one (window bits must be
            8-15), ``client_max_window_bits`` when we did not offer it, a
            server window larger than we asked for, or a
            ``server_no_context_takeover`` we asked for left out. (A
            repeated parameter already fails the handshake's parser.)
    """
    answers = [params for name, params in extensions if name == NAME]
    if not answers:
        return None
    if len(answers) > 1:
        raise _bad("the server accepted it more than once")
    asked = next((params for name, params in parse_extensions(offered) if name == NAME), {})
    no_context = {"server_no_context_takeover": False, "client_no_context_takeover": False}
    # A window we offered to keep under binds us even if the answer is silent on it.
    windows = {"server_max_window_bits": 15, "client_max_window_bits": _offered_bits(asked, "client_max_window_bits")}
    for param, value in answers[0].items():
        if param in no_context:
            if value is not None:
                raise _bad(f"{param} takes no value, got {_shown(value)}")
            no_context[param] = True
        elif param in windows:
            if param == "client_max_window_bits" and param not in asked:
                raise _bad("client_max_window_bits in the answer, but we did not offer it")
            bits = _WINDOW_BITS.get(value) if value is not None else None
            if bits is None:
                raise _bad(f"{param} must be 8 to 15, got {_shown(value)}")
            if bits > _offered_bits(asked, param):
                raise _bad(f"{param}={bits} is above the {asked[param]} offered")
            windows[param] = bits
        else:
            raise _bad(f"unknown parameter {_shown(param)}")
    # What we asked of the server, it must grant (RFC 7692 7.1.1.1, 7.1.2.1).
    if "server_no_context_takeover" in asked and not no_context["server_no_context_takeover"]:
        raise _bad("server_no_context_takeover was asked for and left out")
    if asked.get("server_max_window_bits") is not None and "server_max_window_bits" not in answers[0]:
        raise _bad("server_max_window_bits was asked for and left out")
    return PerMessageDeflate(
        server_no_context_takeover=no_context["server_no_context_takeover"],
        client_no_context_takeover=no_context["client_no_context_takeover"],
        server_max_window_bits=windows["server_max_window_bits"],
        client_max_window_bits=windows["client_max_window_bits"],
    )


def _offered_bits(asked: dict[str, str | None], param: str) -> int:
    """The window ``param`` was limited to in our offer (15 when not, or when offered without a value)."""
    value = asked.get(param)
    return 15 if value is None else int(value)


def _bad(detail: str) -> ConnectError:
    return ConnectError(f"invalid {NAME} response: {detail}", reason="bad_handshake")


def _shown(value: str | None) -> str:
    """A server-chosen value for an error message: quoted, and short."""
    return repr(value if value is None or len(value) <= 20 else value[:20] + "...")
