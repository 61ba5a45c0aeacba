"""The Sans-I/O codec (zen_websocket.protocol), tested from bytes alone: no socket, no thread."""

from __future__ import annotations

import itertools
import random
import tracemalloc
from typing import Any

import pytest

from zen_websocket.errors import ConfigError, ConnectionClosed, MessageTooLarge, ProtocolError, UsageError
from zen_websocket.protocol import (
    MAX_FRAGMENTS,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Frame,
    Protocol,
    client_frame,
    parse_close,
    valid_close_code,
)

KEY = b"\x37\xfa\x21\x3d"


def fixed_key(n: int) -> bytes:
    assert n == 4
    return KEY


def frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, length_form: int = 0) -> bytes:
    """A server frame (unmasked); ``length_form`` 16 or 64 forces that length encoding."""
    n = len(payload)
    b0 = (0x80 if fin else 0) | rsv | opcode
    if length_form == 64 or (not length_form and n >= 65536):
        header = bytes((b0, 127)) + n.to_bytes(8, "big")
    elif length_form == 16 or (not length_form and n >= 126):
        header = bytes((b0, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((b0, n))
    return header + payload


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


def feed(data: bytes, **options: Any) -> Protocol:
    proto = Protocol(**options)
    proto.receive_data(data)
    return proto


def drain(proto: Protocol) -> list[tuple[int, Any]]:
    events = []
    while (event := proto.next_event()) is not None:
        events.append(event)
    return events


def events_of(data: bytes, **options: Any) -> list[tuple[int, Any]]:
    return drain(feed(data, **options))


def failure(data: bytes, **options: Any) -> Exception:
    """The exception next_event raises on ``data`` (after any events before it)."""
    proto = feed(data, **options)
    with pytest.raises((ProtocolError, MessageTooLarge)) as info:
        drain(proto)
    return info.value


def unmask(wire: bytes) -> tuple[int, int, bytes, bytes]:
    """Parse one client frame: (first byte, payload length, key, unmasked payload)."""
    assert wire[1] & 0x80, "client frames must be masked"
    length = wire[1] & 0x7F
    offset = 2
    if length == 126:
        length = int.from_bytes(wire[2:4], "big")
        offset = 4
    elif length == 127:
        length = int.from_bytes(wire[2:10], "big")
        offset = 10
    key = wire[offset : offset + 4]
    masked = wire[offset + 4 :]
    assert len(masked) == length
    return wire[0], length, key, bytes(b ^ key[i % 4] for i, b in enumerate(masked))


# -- events --------------------------------------------------------------


def test_every_event_type_comes_out_with_its_value():
    """Text as str, binary/ping/pong as bytes, close as (code, reason)."""
    data = (
        frame(OP_TEXT, "héllo".encode())
        + frame(OP_BINARY, b"\x00\xff")
        + frame(OP_PING, b"p1")
        + frame(OP_PONG, b"p2")
        + frame(OP_CLOSE, close_payload(1001, "bye ✓".encode()))
    )
    events = events_of(data)
    assert events == [
        (OP_TEXT, "héllo"),
        (OP_BINARY, b"\x00\xff"),
        (OP_PING, b"p1"),
        (OP_PONG, b"p2"),
        (OP_CLOSE, (1001, "bye ✓")),
    ]
    assert type(events[0][1]) is str
    assert type(events[1][1]) is bytes
    assert type(events[2][1]) is bytes


def test_close_without_payload_is_code_1005():
    assert events_of(frame(OP_CLOSE)) == [(OP_CLOSE, (1005, ""))]


def test_close_with_code_only_has_empty_reason():
    assert events_of(frame(OP_CLOSE, close_payload(4000))) == [(OP_CLOSE, (4000, ""))]


def test_empty_messages():
    """Empty text, empty binary and an empty fragmented message are events too."""
    data = (
        frame(OP_TEXT)
        + frame(OP_BINARY)
        + frame(OP_TEXT, fin=False)
        + frame(OP_CONT)
        + frame(OP_BINARY, fin=False)
        + frame(OP_CONT)
        + frame(OP_PING)
    )
    assert events_of(data) == [(OP_TEXT, ""), (OP_BINARY, b""), (OP_TEXT, ""), (OP_BINARY, b""), (OP_PING, b"")]


def test_no_bytes_means_no_event():
    proto = Protocol()
    assert proto.next_event() is None
    proto.receive_data(b"")
    assert proto.next_event() is None


def test_partial_header_and_partial_payload_wait_for_more():
    wire = frame(OP_TEXT, b"abcdef")
    proto = Protocol()
    proto.receive_data(wire[:1])
    assert proto.next_event() is None
    proto.receive_data(wire[1:4])
    assert proto.next_event() is None
    assert proto.bytes_received == 0
    proto.receive_data(wire[4:])
    assert proto.next_event() == (OP_TEXT, "abcdef")
    assert proto.next_event() is None


@pytest.mark.parametrize(
    ("size", "header"),
    [(0, 2), (125, 2), (126, 4), (65535, 4), (65536, 10), (70000, 10)],
)
def test_payload_length_encodings(size, header):
    """7-bit, 16-bit and 64-bit lengths, at each boundary; bytes_received counts header and payload."""
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    wire = frame(OP_BINARY, payload)
    assert len(wire) == header + size
    proto = feed(wire + frame(OP_PING, b"after"))
    assert proto.next_event() == (OP_BINARY, payload)
    assert proto.bytes_received == header + size
    assert proto.next_event() == (OP_PING, b"after")
    assert proto.bytes_received == header + size + 7


def test_non_minimal_length_encodings_are_accepted():
    """Like today's reader, a short payload in a 16- or 64-bit length still parses."""
    data = frame(OP_TEXT, b"abc", length_form=16) + frame(OP_BINARY, b"xyz", length_form=64)
    assert events_of(data) == [(OP_TEXT, "abc"), (OP_BINARY, b"xyz")]


def test_fragments_with_interleaved_control_frames():
    """Pings, pongs and a close between fragments come out at once; the message after its last fragment."""
    data = (
        frame(OP_TEXT, b"He", fin=False)
        + frame(OP_PING, b"1")
        + frame(OP_CONT, "llo, wö".encode(), fin=False)
        + frame(OP_PONG, b"2")
        + frame(OP_CONT, b"rld")
        + frame(OP_BINARY, b"a", fin=False)
        + frame(OP_CONT, b"b", fin=False)
        + frame(OP_PING, b"3")
        + frame(OP_CONT, b"c")
    )
    assert events_of(data) == [
        (OP_PING, b"1"),
        (OP_PONG, b"2"),
        (OP_TEXT, "Hello, wörld"),
        (OP_PING, b"3"),
        (OP_BINARY, b"abc"),
    ]


def test_close_between_fragments_is_delivered():
    data = frame(OP_BINARY, b"a", fin=False) + frame(OP_CLOSE, close_payload(1000))
    assert events_of(data) == [(OP_CLOSE, (1000, ""))]


def test_fragmented_binary_is_bytes_and_fragmented_text_is_str():
    events = events_of(
        frame(OP_BINARY, b"ab", fin=False) + frame(OP_CONT, b"cd") + frame(OP_TEXT, b"ab", fin=False) + frame(OP_CONT)
    )
    assert events == [(OP_BINARY, b"abcd"), (OP_TEXT, "ab")]
    assert type(events[0][1]) is bytes
    assert type(events[1][1]) is str


def test_message_state_resets_after_a_fragmented_message():
    """After the last fragment a new message may start, and a continuation is again an error."""
    data = frame(OP_TEXT, b"a", fin=False) + frame(OP_CONT, b"b") + frame(OP_TEXT, b"c")
    assert events_of(data) == [(OP_TEXT, "ab"), (OP_TEXT, "c")]
    exc = failure(data + frame(OP_CONT, b"d"))
    assert str(exc) == "continuation frame without a message to continue"


def _stream() -> bytes:
    text = "fragmented ✓ text".encode()
    return (
        frame(OP_TEXT, b"small")
        + frame(OP_BINARY, bytes(range(200)) * 2)  # 16-bit length
        + frame(OP_TEXT, text[:12], fin=False)  # splits the 3-byte check mark
        + frame(OP_PING, b"mid")
        + frame(OP_CONT, b"", fin=False)
        + frame(OP_CONT, text[12:])
        + frame(OP_BINARY, b"\x01" * 300, length_form=64)
        + frame(OP_PONG)
        + frame(OP_BINARY, b"tail")
        + frame(OP_CLOSE, close_payload(1000, b"done"))
    )


def _expected() -> list[tuple[int, Any]]:
    return [
        (OP_TEXT, "small"),
        (OP_BINARY, bytes(range(200)) * 2),
        (OP_PING, b"mid"),
        (OP_TEXT, "fragmented ✓ text"),
        (OP_BINARY, b"\x01" * 300),
        (OP_PONG, b""),
        (OP_BINARY, b"tail"),
        (OP_CLOSE, (1000, "done")),
    ]


def test_whole_stream_at_once():
    proto = feed(_stream())
    assert drain(proto) == _expected()
    assert proto.bytes_received == len(_stream())


def test_one_byte_at_a_time_gives_the_same_events():
    stream = _stream()
    proto = Protocol()
    events = []
    for i in range(len(stream)):
        proto.receive_data(stream[i : i + 1])
        events.extend(drain(proto))
    assert events == _expected()
    assert proto.bytes_received == len(stream)


@pytest.mark.parametrize("seed", range(6))
def test_random_read_sizes_give_the_same_events(seed):
    """Reads of any size, several queued before a parse, split frames anywhere."""
    stream = _stream()
    rng = random.Random(seed)
    proto = Protocol()
    events = []
    pos = 0
    while pos < len(stream):
        for _ in range(rng.randint(1, 3)):  # sometimes several reads before parsing
            size = rng.choice((1, 2, 3, 7, 100, 1000, 20000))
            proto.receive_data(stream[pos : pos + size])
            pos += size
        events.extend(drain(proto))
    assert events == _expected()
    assert proto.bytes_received == len(stream)


def test_a_frame_ending_exactly_with_a_read_then_more_reads_queued():
    """Three reads queued: the second ends exactly where the payload ends."""
    wire = frame(OP_BINARY, b"x" * 300)
    proto = Protocol()
    proto.receive_data(wire[:100])
    proto.receive_data(wire[100:])
    proto.receive_data(frame(OP_TEXT, b"next"))
    proto.receive_data(frame(OP_PING, b"p"))
    assert drain(proto) == [(OP_BINARY, b"x" * 300), (OP_TEXT, "next"), (OP_PING, b"p")]


def test_two_payloads_each_running_into_the_next_queued_read():
    first, second = frame(OP_BINARY, b"a" * 300), frame(OP_BINARY, b"b" * 300)
    proto = Protocol()
    proto.receive_data(first[:100])
    proto.receive_data(first[100:] + second[:100])
    proto.receive_data(second[100:])
    assert drain(proto) == [(OP_BINARY, b"a" * 300), (OP_BINARY, b"b" * 300)]
    assert proto.bytes_received == 2 * 304


def test_a_read_queued_behind_complete_frames_is_kept():
    """Reads queued while whole frames were still unparsed stay in order with later reads."""
    proto = Protocol()
    proto.receive_data(frame(OP_TEXT, b"one"))
    proto.receive_data(frame(OP_TEXT, b"two"))
    assert proto.next_event() == (OP_TEXT, "one")
    proto.receive_data(frame(OP_TEXT, b"three"))
    assert drain(proto) == [(OP_TEXT, "two"), (OP_TEXT, "three")]


def test_large_payload_in_many_reads_then_frames_in_its_last_read():
    payload = bytes(range(256)) * 4096  # 1 MiB
    wire = frame(OP_BINARY, payload) + frame(OP_TEXT, b"after")
    proto = Protocol()
    events = []
    for i in range(0, len(wire), 4096):
        proto.receive_data(wire[i : i + 4096])
        events.extend(drain(proto))
    assert events == [(OP_BINARY, payload), (OP_TEXT, "after")]


@pytest.mark.parametrize(
    ("opcode", "size"),
    [(OP_TEXT, 65535), (OP_BINARY, 65536)],
    ids=["text-16-bit-length-whole-frame-path", "binary-64-bit-length-general-path"],
)
def test_a_64_kib_message_split_at_every_byte_gives_the_same_events(opcode, size):
    """Two reads, cut anywhere: in the header, the payload (one copy, by the join) or the frames after."""
    payload = ("x" * (size - 6) + "✓end").encode()  # a 3-byte character near the end
    message = payload.decode() if opcode == OP_TEXT else payload
    wire = frame(opcode, payload) + frame(OP_PING, b"p") + frame(OP_BINARY, b"tail")
    expected = [(opcode, message), (OP_PING, b"p"), (OP_BINARY, b"tail")]
    for cut in range(1, len(wire)):
        proto = Protocol()
        proto.receive_data(wire[:cut])
        events = drain(proto)
        proto.receive_data(wire[cut:])
        events.extend(drain(proto))
        assert events == expected, cut
        assert proto.bytes_received == len(wire)


def test_a_fragmented_message_spanning_reads_is_joined_in_order():
    """Fragments of 10-70 kB, most running on into the next 64 KiB read, with a ping between two of them."""
    text = ("é" * 50000 + "z" * 100000).encode()  # 200,000 bytes, two-byte characters first
    cuts = [0, 70001, 140001, 150000, len(text)]  # the first cut splits a character
    wire = b""
    for i, (start, end) in enumerate(itertools.pairwise(cuts)):
        fin = end == len(text)
        wire += frame(OP_TEXT if i == 0 else OP_CONT, text[start:end], fin=fin)
        if i == 1:
            wire += frame(OP_PING, b"mid")
    wire += frame(OP_BINARY, b"after")
    proto = Protocol()
    events = []
    for i in range(0, len(wire), 65536):
        proto.receive_data(wire[i : i + 65536])
        events.extend(drain(proto))
    assert events == [(OP_PING, b"mid"), (OP_TEXT, text.decode()), (OP_BINARY, b"after")]
    assert proto.bytes_received == len(wire)


def test_a_payload_one_byte_short_after_a_queued_read_still_waits():
    wire = frame(OP_BINARY, b"0123456789")
    proto = Protocol()
    proto.receive_data(wire[:5])
    assert proto.next_event() is None
    proto.receive_data(wire[5:-1])
    assert proto.next_event() is None
    proto.receive_data(wire[-1:])
    assert proto.next_event() == (OP_BINARY, b"0123456789")


@pytest.mark.parametrize("cut", [3, 9])
def test_an_extended_header_cut_after_earlier_frames_waits(cut):
    """The header check counts from the read offset, not from the start of the read."""
    wire = frame(OP_BINARY, b"x" * 70000)
    proto = feed(frame(OP_TEXT, b"first") + wire[:cut])
    assert proto.next_event() == (OP_TEXT, "first")
    assert proto.next_event() is None
    proto.receive_data(wire[cut:])
    assert proto.next_event() == (OP_BINARY, b"x" * 70000)


def test_header_split_across_reads():
    wire = frame(OP_BINARY, b"y" * 70000)
    proto = Protocol()
    for cut in (1, 5, 9):  # inside the 10-byte header
        proto = Protocol()
        proto.receive_data(wire[:cut])
        assert proto.next_event() is None
        proto.receive_data(wire[cut:])
        assert proto.next_event() == (OP_BINARY, b"y" * 70000)


def test_a_control_frame_split_across_reads():
    wire = frame(OP_PING, b"0123456789")
    proto = Protocol()
    proto.receive_data(wire[:5])
    assert proto.next_event() is None
    proto.receive_data(wire[5:9])
    proto.receive_data(wire[9:] + frame(OP_PONG, b"z"))
    assert drain(proto) == [(OP_PING, b"0123456789"), (OP_PONG, b"z")]
    assert proto.bytes_received == 12 + 3


def test_bytearray_input_is_copied():
    """A caller may reuse its receive buffer once receive_data returns."""
    data = bytearray(frame(OP_BINARY, b"keep"))
    proto = Protocol()
    proto.receive_data(data)
    data[2:] = b"XXXX"
    assert proto.next_event() == (OP_BINARY, b"keep")


def test_memoryview_input():
    proto = Protocol()
    proto.receive_data(memoryview(frame(OP_TEXT, b"mv")))  # type: ignore[arg-type]
    assert proto.next_event() == (OP_TEXT, "mv")


# -- protocol violations -------------------------------------------------


def test_masked_server_frame_is_1002():
    wire = bytes((0x81, 0x80 | 3)) + b"\x00\x00\x00\x00abc"
    exc = failure(wire)
    assert isinstance(exc, ProtocolError)
    assert exc.close_code == 1002
    assert str(exc) == "the server sent a masked frame"


def test_masked_frame_fails_from_its_first_two_bytes():
    assert isinstance(failure(bytes((0x82, 0x85))), ProtocolError)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7])
def test_unknown_data_opcode_is_1002(opcode):
    exc = failure(frame(opcode, b"x"))
    assert isinstance(exc, ProtocolError)
    assert exc.close_code == 1002
    assert str(exc) == f"unknown data opcode {opcode:#x}"


@pytest.mark.parametrize("opcode", [0xB, 0xC, 0xD, 0xE, 0xF])
def test_unknown_control_opcode_is_1002(opcode):
    exc = failure(frame(opcode, b"x"))
    assert isinstance(exc, ProtocolError)
    assert exc.close_code == 1002
    assert str(exc) == f"unknown control opcode {opcode:#x}"


@pytest.mark.parametrize("opcode", [OP_CLOSE, OP_PING, OP_PONG])
def test_fragmented_control_frame_is_1002(opcode):
    exc = failure(frame(opcode, fin=False))
    assert isinstance(exc, ProtocolError)
    assert exc.close_code == 1002
    assert str(exc) == "control frames must be final and at most 125 bytes"


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG])
def test_control_payload_of_125_is_fine(opcode):
    assert events_of(frame(opcode, b"c" * 125)) == [(opcode, b"c" * 125)]


@pytest.mark.parametrize("opcode", [OP_CLOSE, OP_PING, OP_PONG])
def test_control_payload_of_126_is_1002_from_the_header(opcode):
    exc = failure(frame(opcode, b"c" * 126)[:4])
    assert isinstance(exc, ProtocolError)
    assert exc.close_code == 1002
    assert str(exc) == "control frames must be final and at most 125 bytes"


def test_64_bit_length_with_msb_set_is_1002():
    header = bytes((0x82, 127)) + (1 << 63).to_bytes(8, "big")
    exc = failure(header, max_message_size=None)
    assert isinstance(exc, ProtocolError)
    assert exc.close_code == 1002
    assert str(exc) == "64-bit payload length with the most significant bit set"


def test_64_bit_length_just_below_msb_waits_for_the_payload():
    header = bytes((0x82, 127)) + ((1 << 63) - 1).to_bytes(8, "big")
    proto = feed(header, max_message_size=None)
    assert proto.next_event() is None


def test_continuation_without_a_message_is_1002():
    exc = failure(frame(OP_CONT, b"x"))
    assert isinstance(exc, ProtocolError)
    assert exc.close_code == 1002
    assert str(exc) == "continuation frame without a message to continue"


@pytest.mark.parametrize("first", [OP_TEXT, OP_BINARY])
@pytest.mark.parametrize("second", [OP_TEXT, OP_BINARY])
def test_new_data_frame_inside_a_fragmented_message_is_1002(first, second):
    exc = failure(frame(first, b"a", fin=False) + frame(second, b"b"))
    assert isinstance(exc, ProtocolError)
    assert exc.close_code == 1002
    assert str(exc) == "new data frame while a fragmented message is in progress"


@pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10, 0x70])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_CONT])
def test_rsv_bits_without_an_extension_are_1002(rsv, opcode):
    prefix = frame(OP_BINARY, fin=False) if opcode == OP_CONT else b""
    exc = failure(prefix + frame(opcode, b"x", rsv=rsv))
    assert isinstance(exc, ProtocolError)
    assert exc.close_code == 1002
    assert str(exc) == f"reserved bits {rsv:#x} set without a negotiated extension"


@pytest.mark.parametrize("rsv", [0x40, 0x20, 0x10])
@pytest.mark.parametrize("opcode", [OP_CLOSE, OP_PING, OP_PONG])
def test_rsv_bits_on_a_control_frame_are_1002_even_when_an_extension_owns_them(rsv, opcode):
    exc = failure(frame(opcode, rsv=rsv), extensions=[Recorder(0x70)])
    assert isinstance(exc, ProtocolError)
    assert exc.close_code == 1002
    assert str(exc) == "reserved bits set on a control frame"


def test_close_with_one_byte_payload_is_1002():
    exc = failure(frame(OP_CLOSE, b"\x03"))
    assert isinstance(exc, ProtocolError)
    assert exc.close_code == 1002
    assert str(exc) == "close frame with a one-byte payload"


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535])
def test_close_with_invalid_code_is_1002(code):
    exc = failure(frame(OP_CLOSE, close_payload(code)))
    assert isinstance(exc, ProtocolError)
    assert exc.close_code == 1002
    assert str(exc) == f"invalid close code {code}"


def test_close_reason_invalid_utf8_is_1007():
    exc = failure(frame(OP_CLOSE, close_payload(1000, b"\xc3")))
    assert isinstance(exc, ProtocolError)
    assert exc.close_code == 1007
    assert str(exc) == "invalid UTF-8 in a close reason"
    assert isinstance(exc.__cause__, UnicodeDecodeError)


def test_text_invalid_utf8_is_1007():
    exc = failure(frame(OP_TEXT, b"ok\xff"))
    assert isinstance(exc, ProtocolError)
    assert exc.close_code == 1007
    assert str(exc) == "invalid UTF-8 in a text message"
    assert isinstance(exc.__cause__, UnicodeDecodeError)


def test_binary_is_not_checked_for_utf8():
    assert events_of(frame(OP_BINARY, b"\xff\xfe")) == [(OP_BINARY, b"\xff\xfe")]


@pytest.mark.parametrize("where", [0, 1, 2])
def test_fragmented_text_fails_fast_on_the_fragment_that_proves_it_invalid(where):
    """Autobahn 6.4.x: the error comes before the message's last fragment is even received."""
    fragments = [b"abc", b"def", b"ghi"]
    fragments[where] = b"a\xffb"
    data = frame(OP_TEXT, fragments[0], fin=False)
    data += b"".join(frame(OP_CONT, part, fin=False) for part in fragments[1 : where + 1])
    exc = failure(data)  # the final fragment never arrives
    assert isinstance(exc, ProtocolError)
    assert exc.close_code == 1007
    assert str(exc) == "invalid UTF-8 in a text message"


def test_fragmented_text_may_split_a_character():
    euro = "€".encode()
    data = frame(OP_TEXT, euro[:1], fin=False) + frame(OP_CONT, euro[1:2], fin=False) + frame(OP_CONT, euro[2:])
    assert events_of(data) == [(OP_TEXT, "€")]


def test_fragmented_text_ending_inside_a_character_is_1007():
    euro = "€".encode()
    exc = failure(frame(OP_TEXT, b"x", fin=False) + frame(OP_CONT, euro[:2]))
    assert isinstance(exc, ProtocolError)
    assert exc.close_code == 1007


def test_fragmented_text_ending_with_an_empty_fragment_after_a_split_character_is_1007():
    """The final (empty) fragment still checks that no character was left unfinished."""
    euro = "€".encode()
    exc = failure(frame(OP_TEXT, euro[:2], fin=False) + frame(OP_CONT))
    assert isinstance(exc, ProtocolError)
    assert exc.close_code == 1007


def test_fragmented_text_with_a_cut_character_then_ascii_is_1007():
    """An ASCII fragment is only valid if the fragment before it ended on a whole character."""
    euro = "€".encode()
    exc = failure(frame(OP_TEXT, euro[:2], fin=False) + frame(OP_CONT, b"abc", fin=False))
    assert isinstance(exc, ProtocolError)
    assert exc.close_code == 1007


def test_fragmented_text_mixing_ascii_and_multibyte_fragments():
    text = "ab€cd😀ef"
    raw = text.encode()
    data = frame(OP_TEXT, raw[:2], fin=False)
    data += b"".join(frame(OP_CONT, raw[i : i + 1], fin=False) for i in range(2, len(raw) - 1))
    data += frame(OP_CONT, raw[-1:])
    assert events_of(data) == [(OP_TEXT, text)]


def test_unfinished_character_at_a_fragment_boundary_is_not_an_error_yet():
    euro = "€".encode()
    proto = feed(frame(OP_TEXT, euro[:2], fin=False))
    assert proto.next_event() is None


# -- whole frames (the fast path) -------------------------------------------


@pytest.mark.parametrize("size", [125, 126, 65535])
def test_a_whole_frame_over_the_limit_fails_from_its_header(size):
    header = frame(OP_TEXT, b"a" * size)[: 2 if size < 126 else 4]
    exc = failure(header, max_message_size=size - 1)
    assert isinstance(exc, MessageTooLarge)
    assert (exc.size, exc.limit) == (size, size - 1)


def test_a_16_bit_length_cut_inside_waits_then_parses():
    wire = frame(OP_BINARY, b"b" * 300) + frame(OP_TEXT, b"x" * 200)
    for cut in (1, 2, 3, 306, 307):  # inside either 4-byte header
        proto = feed(wire[:cut])
        events = drain(proto)
        proto.receive_data(wire[cut:])
        assert events + drain(proto) == [(OP_BINARY, b"b" * 300), (OP_TEXT, "x" * 200)], cut


def test_a_16_bit_length_for_a_short_payload_is_accepted():
    """RFC 6455 asks for the minimal length form, but a longer one is unambiguous."""
    assert events_of(frame(OP_TEXT, b"short", length_form=16)) == [(OP_TEXT, "short")]


def test_invalid_utf8_in_a_whole_frame_with_a_16_bit_length_is_1007():
    exc = failure(frame(OP_TEXT, b"a" * 200 + b"\xff"))
    assert isinstance(exc, ProtocolError)
    assert exc.close_code == 1007


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_a_whole_frame_inside_a_fragmented_message_is_an_error_and_whole_frames_pass_after_it(opcode):
    inside = frame(OP_TEXT, b"a", fin=False) + frame(opcode, b"x" * 200)
    assert str(failure(inside)) == "new data frame while a fragmented message is in progress"
    after = frame(OP_TEXT, b"a", fin=False) + frame(OP_CONT, b"b") + frame(opcode, b"x" * 200)
    x = "x" * 200 if opcode == OP_TEXT else b"x" * 200
    assert events_of(after) == [(OP_TEXT, "ab"), (opcode, x)]


# -- size and fragment caps ----------------------------------------------


def test_header_announcing_1_gb_fails_at_once():
    header = bytes((0x82, 127)) + (2**30).to_bytes(8, "big")
    exc = failure(header)  # only the header was fed
    assert isinstance(exc, MessageTooLarge)
    assert exc.size == 2**30
    assert exc.limit == 16 * 2**20
    assert exc.close_code == 1009


def test_default_limit_is_16_mib():
    assert Protocol().max_message_size == 16 * 2**20
    assert Protocol().max_fragments == MAX_FRAGMENTS == 1 << 20
    header = bytes((0x82, 127)) + (16 * 2**20).to_bytes(8, "big")
    assert feed(header).next_event() is None  # exactly the limit: waits for the payload
    header = bytes((0x82, 127)) + (16 * 2**20 + 1).to_bytes(8, "big")
    assert isinstance(failure(header), MessageTooLarge)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_message_exactly_at_the_limit_passes_and_one_over_fails(opcode):
    assert events_of(frame(opcode, b"a" * 10), max_message_size=10) == [
        (opcode, "a" * 10 if opcode == OP_TEXT else b"a" * 10)
    ]
    exc = failure(frame(opcode, b"a" * 11)[:2], max_message_size=10)
    assert isinstance(exc, MessageTooLarge)
    assert (exc.size, exc.limit) == (11, 10)


def test_fragment_sizes_add_up_against_the_limit():
    ok = frame(OP_BINARY, b"a" * 4, fin=False) + frame(OP_CONT, b"b" * 3, fin=False) + frame(OP_CONT, b"c" * 3)
    assert events_of(ok, max_message_size=10) == [(OP_BINARY, b"aaaabbbccc")]
    over = frame(OP_BINARY, b"a" * 4, fin=False) + frame(OP_CONT, b"b" * 3, fin=False) + frame(OP_CONT, b"c" * 4)[:2]
    exc = failure(over, max_message_size=10)
    assert isinstance(exc, MessageTooLarge)
    assert (exc.size, exc.limit) == (11, 10)


def test_limit_applies_per_message_not_per_connection():
    data = frame(OP_TEXT, b"a" * 8) + frame(OP_BINARY, b"b" * 5, fin=False) + frame(OP_CONT, b"c" * 5)
    assert events_of(data, max_message_size=10) == [(OP_TEXT, "a" * 8), (OP_BINARY, b"b" * 5 + b"c" * 5)]


def test_control_frames_are_not_counted_against_the_limit():
    data = frame(OP_BINARY, b"a" * 10, fin=False) + frame(OP_PING, b"p" * 125) + frame(OP_CONT)
    assert events_of(data, max_message_size=10) == [(OP_PING, b"p" * 125), (OP_BINARY, b"a" * 10)]


def test_zero_limit_allows_only_empty_messages():
    assert events_of(frame(OP_TEXT), max_message_size=0) == [(OP_TEXT, "")]
    exc = failure(frame(OP_TEXT, b"x"), max_message_size=0)
    assert isinstance(exc, MessageTooLarge)
    assert (exc.size, exc.limit) == (1, 0)


def test_no_limit():
    assert events_of(frame(OP_BINARY, b"z" * 70000), max_message_size=None) == [(OP_BINARY, b"z" * 70000)]


def _fragments(count: int, opcode: int = OP_BINARY, payload: bytes = b"f") -> bytes:
    """One message in ``count`` frames."""
    if count == 1:
        return frame(opcode, payload)
    return (
        frame(opcode, payload, fin=False)
        + frame(OP_CONT, payload, fin=False) * (count - 2)
        + frame(OP_CONT, payload, fin=True)
    )


def test_fragments_exactly_at_the_cap_pass():
    assert events_of(_fragments(3), max_fragments=3) == [(OP_BINARY, b"fff")]


def test_one_fragment_over_the_cap_is_1009_from_its_header():
    data = frame(OP_BINARY, b"f", fin=False) + frame(OP_CONT, b"f", fin=False) * 2 + frame(OP_CONT, b"f")[:1]
    proto = feed(data[:-1], max_fragments=3)
    assert proto.next_event() is None  # three frames so far: fine
    exc = failure(data + b"\x01", max_fragments=3)  # the fourth frame's header
    assert isinstance(exc, ProtocolError)
    assert exc.close_code == 1009
    assert str(exc) == "too many fragments"


def test_fragment_cap_of_one_forbids_fragmentation_only():
    assert events_of(_fragments(1), max_fragments=1) == [(OP_BINARY, b"f")]
    exc = failure(_fragments(2), max_fragments=1)
    assert isinstance(exc, ProtocolError)
    assert exc.close_code == 1009


def test_fragment_count_restarts_with_each_message_and_ignores_control_frames():
    message = frame(OP_TEXT, b"a", fin=False) + frame(OP_PING) + frame(OP_PONG) + frame(OP_CONT, b"b")
    assert events_of(message * 3, max_fragments=2) == [(OP_PING, b""), (OP_PONG, b""), (OP_TEXT, "ab")] * 3


def test_no_fragment_cap():
    assert events_of(_fragments(2000), max_fragments=None) == [(OP_BINARY, b"f" * 2000)]


def test_zero_length_fragments_cost_no_memory():
    """A hostile stream of empty continuation frames must not grow memory (it did: +230 MB per 57 MiB)."""
    proto = Protocol()
    proto.receive_data(frame(OP_BINARY, b"start", fin=False))
    assert proto.next_event() is None
    empties = frame(OP_CONT, fin=False) * 500  # tracemalloc makes each frame slow
    tracemalloc.start()
    try:
        proto.receive_data(empties)
        assert proto.next_event() is None
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(4):
            proto.receive_data(empties)
            assert proto.next_event() is None
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 1024, grown  # 2000 more fragments; a list of them alone would take 16 KB
    proto.receive_data(frame(OP_CONT, b"end"))
    assert proto.next_event() == (OP_BINARY, b"startend")


def test_fragmented_message_memory_is_about_its_size():
    """Fragments accumulate in one buffer, not one object per fragment."""
    proto = Protocol()
    fragment = b"0123456789abcdef"
    count = 1024  # 16 KiB in 16-byte fragments
    data = frame(OP_BINARY, fragment, fin=False) + frame(OP_CONT, fragment, fin=False) * (count - 1)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        proto.receive_data(data)
        assert proto.next_event() is None
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    size = len(fragment) * count
    assert grown < 1.5 * size, grown  # a list of 16-byte bytes objects would take over 3x
    proto.receive_data(frame(OP_CONT))
    assert proto.next_event() == (OP_BINARY, fragment * count)


# -- failure is sticky, end of stream ------------------------------------


def test_failure_is_sticky():
    proto = feed(frame(OP_TEXT, b"ok") + frame(OP_CONT, b"x") + frame(OP_TEXT, b"never"))
    assert proto.next_event() == (OP_TEXT, "ok")
    with pytest.raises(ProtocolError) as first:
        proto.next_event()
    proto.receive_data(frame(OP_TEXT, b"more"))  # ignored, never raises
    proto.receive_eof()
    for _ in range(2):
        with pytest.raises(ProtocolError) as again:
            proto.next_event()
        assert again.value is first.value


def test_too_large_is_sticky():
    proto = feed(frame(OP_BINARY, b"x" * 5), max_message_size=4)
    with pytest.raises(MessageTooLarge) as first:
        proto.next_event()
    with pytest.raises(MessageTooLarge) as again:
        proto.next_event()
    assert again.value is first.value


def test_eof_without_close_frame_raises_connection_closed_none():
    proto = Protocol()
    proto.receive_eof()
    with pytest.raises(ConnectionClosed) as info:
        proto.next_event()
    assert info.value.code is None
    assert info.value.reason == "connection dropped without a close frame"
    with pytest.raises(ConnectionClosed) as again:
        proto.next_event()
    assert again.value is info.value


def test_events_before_eof_are_delivered_first():
    proto = feed(frame(OP_TEXT, b"a") + frame(OP_BINARY, b"b"))
    proto.receive_eof()
    assert proto.next_event() == (OP_TEXT, "a")
    assert proto.next_event() == (OP_BINARY, b"b")
    with pytest.raises(ConnectionClosed) as info:
        proto.next_event()
    assert info.value.code is None


@pytest.mark.parametrize("cut", [1, 2, 3, 5])
def test_eof_mid_frame_raises_connection_closed(cut):
    """Inside the header (1), after it (2), inside the payload (3, 5)."""
    proto = feed(frame(OP_TEXT, b"abcdef")[:cut])
    assert proto.next_event() is None
    proto.receive_eof()
    with pytest.raises(ConnectionClosed) as info:
        proto.next_event()
    assert info.value.code is None
    assert info.value.reason == "connection dropped without a close frame"


def test_eof_mid_frame_with_queued_reads_raises_connection_closed():
    wire = frame(OP_BINARY, b"x" * 300)
    proto = feed(wire[:50])
    proto.receive_data(wire[50:100])
    proto.receive_eof()
    with pytest.raises(ConnectionClosed):
        proto.next_event()


def test_eof_inside_an_extended_header_raises_connection_closed():
    proto = feed(frame(OP_BINARY, b"x" * 300)[:3])
    assert proto.next_event() is None
    proto.receive_eof()
    with pytest.raises(ConnectionClosed):
        proto.next_event()


def test_eof_inside_a_fragmented_message_raises_connection_closed():
    proto = feed(frame(OP_TEXT, b"a", fin=False))
    proto.receive_eof()
    with pytest.raises(ConnectionClosed) as info:
        proto.next_event()
    assert info.value.code is None


def test_bytes_after_a_close_frame_are_ignored_and_eof_then_reports_the_close():
    proto = feed(frame(OP_CLOSE, close_payload(1001, b"away")) + frame(OP_TEXT, b"late"))
    assert proto.next_event() == (OP_CLOSE, (1001, "away"))
    assert proto.next_event() is None
    proto.receive_data(frame(OP_TEXT, b"later"))
    assert proto.next_event() is None
    assert proto.bytes_received == 8
    proto.receive_eof()
    with pytest.raises(ConnectionClosed) as info:
        proto.next_event()
    assert (info.value.code, info.value.reason) == (1001, "away")


def test_receive_data_after_eof_is_a_usage_error():
    proto = Protocol()
    proto.receive_eof()
    with pytest.raises(UsageError, match=r"^receive_data\(\) after receive_eof\(\)$"):
        proto.receive_data(b"\x81\x00")


# -- extensions ----------------------------------------------------------


class XorExtension:
    """A toy extension: XORs payloads with one byte and marks them with rsv1."""

    name = "x-xor"
    rsv_bits = 0x40

    def __init__(self, key: int = 0x5A) -> None:
        self.key = key
        self.decoded: list[tuple[Frame, int | None]] = []

    def _xor(self, payload: bytes) -> bytes:
        return bytes(b ^ self.key for b in payload)

    def decode(self, frame: Frame, *, max_size: int | None) -> Frame:
        self.decoded.append((frame, max_size))
        if not frame.rsv1:
            return frame
        return frame._replace(payload=self._xor(frame.payload), rsv1=False)

    def encode(self, frame: Frame) -> Frame:
        return frame._replace(payload=self._xor(frame.payload), rsv1=True)


class Recorder:
    """Records the frames it sees; appends a tag to payloads; sets the RSV flags it is told to."""

    name = "x-record"

    def __init__(self, rsv_bits: int, tag: bytes = b"", flags: tuple[bool, bool, bool] = (False, False, False)):
        self.rsv_bits = rsv_bits
        self.tag = tag
        self.flags = flags
        self.seen: list[Frame] = []
        self.sizes: list[int | None] = []

    def decode(self, frame: Frame, *, max_size: int | None) -> Frame:
        self.seen.append(frame)
        self.sizes.append(max_size)
        return frame._replace(payload=frame.payload + self.tag)

    def encode(self, frame: Frame) -> Frame:
        self.seen.append(frame)
        rsv1, rsv2, rsv3 = self.flags
        return frame._replace(payload=frame.payload + self.tag, rsv1=rsv1, rsv2=rsv2, rsv3=rsv3)


def test_extension_round_trip_and_rsv1_accepted():
    xor = XorExtension()
    proto = Protocol(extensions=[xor], urandom=fixed_key)
    wire = proto.send(OP_TEXT, b"hello")
    first, _, key, payload = unmask(wire)
    assert first == 0x80 | 0x40 | OP_TEXT  # fin, rsv1, text
    assert key == KEY
    assert payload == xor._xor(b"hello")
    proto.receive_data(frame(OP_TEXT, xor._xor("wörld".encode()), rsv=0x40) + frame(OP_BINARY, b"plain"))
    assert drain(proto) == [(OP_TEXT, "wörld"), (OP_BINARY, b"plain")]


def test_rsv_bits_an_extension_does_not_own_are_still_1002():
    for rsv in (0x20, 0x10):
        exc = failure(frame(OP_TEXT, b"x", rsv=rsv | 0x40), extensions=[XorExtension()])
        assert isinstance(exc, ProtocolError)
        assert exc.close_code == 1002
        assert str(exc) == f"reserved bits {rsv | 0x40:#x} set without a negotiated extension"


def test_extensions_see_fragments_in_order_with_their_flags_and_the_remaining_budget():
    recorder = Recorder(0x70)
    data = (
        frame(OP_BINARY, b"abc", fin=False, rsv=0x40)
        + frame(OP_PING, b"ctl")
        + frame(OP_CONT, b"de", fin=False, rsv=0x20)
        + frame(OP_CONT, b"f", rsv=0x10)
        + frame(OP_TEXT, b"t")  # opcode bit 0x01 must not read as an RSV flag
        + frame(OP_TEXT, b"u", rsv=0x70)
    )
    assert events_of(data, extensions=[recorder], max_message_size=10) == [
        (OP_PING, b"ctl"),
        (OP_BINARY, b"abcdef"),
        (OP_TEXT, "t"),
        (OP_TEXT, "u"),
    ]
    assert recorder.seen == [
        Frame(False, OP_BINARY, b"abc", True, False, False),
        Frame(False, OP_CONT, b"de", False, True, False),
        Frame(True, OP_CONT, b"f", False, False, True),
        Frame(True, OP_TEXT, b"t", False, False, False),
        Frame(True, OP_TEXT, b"u", True, True, True),
    ]  # the ping was not shown to the extension
    assert recorder.sizes == [10, 7, 5, 10, 10]


def test_extensions_get_no_budget_without_a_limit():
    recorder = Recorder(0x40)
    assert events_of(frame(OP_BINARY, b"a"), extensions=[recorder], max_message_size=None) == [(OP_BINARY, b"a")]
    assert recorder.sizes == [None]


def test_decoded_size_is_checked_even_if_the_extension_does_not():
    """The message is measured after decoding: an extension that grows it past the limit fails it."""
    growing = Recorder(0x40, tag=b"++")
    assert events_of(frame(OP_BINARY, b"a" * 8), extensions=[growing], max_message_size=10) == [
        (OP_BINARY, b"a" * 8 + b"++")
    ]
    exc = failure(frame(OP_BINARY, b"a" * 9), extensions=[Recorder(0x40, tag=b"++")], max_message_size=10)
    assert isinstance(exc, MessageTooLarge)
    assert (exc.size, exc.limit) == (11, 10)


def test_decoded_size_adds_up_across_fragments():
    data = frame(OP_BINARY, b"a" * 4, fin=False) + frame(OP_CONT, b"b" * 3)
    assert events_of(data, extensions=[Recorder(0x40, tag=b"+")], max_message_size=10) == [(OP_BINARY, b"aaaa+bbb+")]
    data = frame(OP_BINARY, b"a" * 4, fin=False) + frame(OP_CONT, b"b" * 5)  # 10 on the wire, 11 decoded
    exc = failure(data, extensions=[Recorder(0x40, tag=b"+")], max_message_size=10)
    assert isinstance(exc, MessageTooLarge)
    assert (exc.size, exc.limit) == (11, 10)


def test_an_extensions_own_too_large_error_propagates_and_sticks():
    class Bomb(Recorder):
        def decode(self, frame: Frame, *, max_size: int | None) -> Frame:
            raise MessageTooLarge(10**9, max_size or 0)

    proto = feed(frame(OP_BINARY, b"z", rsv=0x40), extensions=[Bomb(0x40)], max_message_size=100)
    with pytest.raises(MessageTooLarge) as first:
        proto.next_event()
    assert first.value.limit == 100
    with pytest.raises(MessageTooLarge) as again:
        proto.next_event()
    assert again.value is first.value


def test_extended_text_is_checked_for_utf8_after_decoding():
    xor = XorExtension()
    exc = failure(frame(OP_TEXT, xor._xor(b"\xff"), rsv=0x40), extensions=[xor])
    assert isinstance(exc, ProtocolError)
    assert exc.close_code == 1007
    fragments = frame(OP_TEXT, xor._xor(b"ok"), fin=False, rsv=0x40) + frame(OP_CONT, xor._xor(b"\xfe"), fin=False)
    exc = failure(fragments, extensions=[XorExtension()])
    assert isinstance(exc, ProtocolError)
    assert exc.close_code == 1007


def test_extensions_encode_in_order_and_decode_in_reverse():
    first, second = Recorder(0x40, tag=b"1"), Recorder(0x20, tag=b"2")
    proto = Protocol(extensions=[first, second], urandom=fixed_key)
    assert unmask(proto.send(OP_BINARY, b"m"))[3] == b"m12"
    assert second.seen[-1].payload == b"m1"
    proto.receive_data(frame(OP_BINARY, b"w"))
    assert proto.next_event() == (OP_BINARY, b"w21")
    assert first.seen[-1].payload == b"w2"


@pytest.mark.parametrize(
    ("flags", "bits"),
    [
        ((True, False, False), 0x40),
        ((False, True, False), 0x20),
        ((False, False, True), 0x10),
        ((True, True, True), 0x70),
    ],
)
def test_send_sets_the_rsv_bits_the_extension_returns(flags, bits):
    proto = Protocol(extensions=[Recorder(0x70, flags=flags)], urandom=fixed_key)
    assert proto.send(OP_BINARY, b"x")[0] == 0x80 | bits | OP_BINARY


def test_extensions_see_outgoing_data_frames_only():
    recorder = Recorder(0x40, tag=b"+")
    proto = Protocol(extensions=[recorder], urandom=fixed_key)
    assert unmask(proto.send(OP_PING, b"p"))[3] == b"p"
    assert unmask(proto.send_close(1000))[3] == b"\x03\xe8"
    assert recorder.seen == []
    assert unmask(proto.send(OP_TEXT, b"t"))[3] == b"t+"
    assert recorder.seen == [Frame(True, OP_TEXT, b"t")]


def test_extensions_must_own_distinct_valid_rsv_bits():
    with pytest.raises(ConfigError) as info:
        Protocol(extensions=[Recorder(0x40), Recorder(0x40)])
    assert info.value.option == "extensions"
    assert str(info.value) == "extensions: x-record: invalid or already claimed RSV bits 0x40"
    with pytest.raises(ConfigError):
        Protocol(extensions=[Recorder(0x40), Recorder(0x20), Recorder(0x40)])
    with pytest.raises(ConfigError):
        Protocol(extensions=[Recorder(0x80)])
    with pytest.raises(ConfigError):
        Protocol(extensions=[Recorder(0x08)])
    Protocol(extensions=[Recorder(0x40), Recorder(0x20), Recorder(0x10)])


# -- options -------------------------------------------------------------


def test_option_bounds():
    with pytest.raises(ConfigError) as info:
        Protocol(max_message_size=-1)
    assert info.value.option == "max_message_size"
    assert str(info.value) == "max_message_size: must be >= 0 or None, not -1"
    with pytest.raises(ConfigError) as info:
        Protocol(max_fragments=0)
    assert info.value.option == "max_fragments"
    assert str(info.value) == "max_fragments: must be >= 1 or None, not 0"
    assert Protocol(max_message_size=0, max_fragments=1).max_fragments == 1
    assert Protocol(max_message_size=None, max_fragments=None).max_message_size is None


# -- sending -------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "second", "extended"),
    [
        (0, 0x80, b""),
        (125, 0x80 | 125, b""),
        (126, 0xFE, b"\x00\x7e"),
        (65535, 0xFE, b"\xff\xff"),
        (65536, 0xFF, b"\x00\x00\x00\x00\x00\x01\x00\x00"),
    ],
)
def test_send_header_and_masked_payload(size, second, extended):
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    wire = Protocol(urandom=fixed_key).send(OP_BINARY, payload)
    assert wire[0] == 0x82  # fin, binary, no RSV
    assert wire[1] == second
    header = 2 + len(extended)
    assert wire[2:header] == extended
    assert wire[header : header + 4] == KEY
    assert len(wire) == header + 4 + size
    assert unmask(wire)[3] == payload


def test_send_masks_with_a_fresh_key_each_frame():
    proto = Protocol()
    keys = {unmask(proto.send(OP_TEXT, b"abcdefgh"))[2] for _ in range(8)}
    assert len(keys) > 1


def test_send_exact_bytes():
    wire = Protocol(urandom=fixed_key).send(OP_TEXT, b"Hi!")
    assert wire == b"\x81\x83" + KEY + bytes((ord("H") ^ 0x37, ord("i") ^ 0xFA, ord("!") ^ 0x21))


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_PING, OP_PONG, OP_CLOSE])
def test_send_every_opcode_as_a_final_frame(opcode):
    wire = Protocol(urandom=fixed_key).send(opcode, b"ab")
    assert wire[0] == 0x80 | opcode
    assert unmask(wire)[2:] == (KEY, b"ab")


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_send_control_payload_limit(opcode):
    proto = Protocol(urandom=fixed_key)
    assert unmask(proto.send(opcode, b"c" * 125))[1] == 125
    with pytest.raises(ValueError, match="126 bytes exceeds 125"):
        proto.send(opcode, b"c" * 126)


@pytest.mark.parametrize("opcode", [OP_CONT, 3, 7, 0xB, 0xF])
def test_send_rejects_opcodes_that_are_not_one_final_frame(opcode):
    with pytest.raises(ValueError, match="cannot be sent"):
        Protocol().send(opcode, b"")


def test_send_close_default_is_1000_without_reason():
    assert unmask(Protocol(urandom=fixed_key).send_close())[0:4:3] == (0x88, b"\x03\xe8")


def test_send_close_with_code_and_reason():
    first, _, key, payload = unmask(Protocol(urandom=fixed_key).send_close(4001, "bye ✓"))
    assert first == 0x88
    assert key == KEY
    assert payload == b"\x0f\xa1" + "bye ✓".encode()
    assert parse_close(payload) == (4001, "bye ✓")


def test_send_close_1005_has_no_payload():
    wire = Protocol(urandom=fixed_key).send_close(1005, "ignored")
    assert wire == b"\x88\x80" + KEY


@pytest.mark.parametrize(
    ("reason", "kept"),
    [
        ("a" * 123, "a" * 123),
        ("a" * 124, "a" * 123),
        ("a" * 122 + "é", "a" * 122),  # 124 bytes; the 2-byte é would be cut in half
        ("a" * 121 + "é", "a" * 121 + "é"),  # exactly 123 bytes
        ("a" * 121 + "€", "a" * 121),  # 124 bytes; cut after the first byte of €
        ("a" * 122 + "€", "a" * 122),  # cut after the second byte of €
        ("a" * 120 + "€", "a" * 120 + "€"),  # exactly 123 bytes
        ("a" * 120 + "😀", "a" * 120),  # a 4-byte character cut after three
        ("😀" * 40, "😀" * 30),  # 160 bytes; 120 kept
    ],
)
def test_send_close_cuts_the_reason_to_123_bytes_on_a_character_boundary(reason, kept):
    payload = unmask(Protocol(urandom=fixed_key).send_close(1000, reason))[3]
    assert payload == b"\x03\xe8" + kept.encode()
    assert parse_close(payload) == (1000, kept)


@pytest.mark.parametrize("code", [999, 1004, 1006, 1015, 2999, 5000])
def test_send_close_rejects_codes_that_may_not_be_sent(code):
    with pytest.raises(ValueError, match=f"close code {code}"):
        Protocol().send_close(code)


@pytest.mark.parametrize("code", [1000, 1002, 1007, 1009, 1011, 1014, 3000, 4999])
def test_send_close_accepts_valid_codes(code):
    assert unmask(Protocol(urandom=fixed_key).send_close(code))[3] == code.to_bytes(2, "big")


# -- helpers -------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "valid"),
    [
        (999, False),
        (1000, True),
        (1003, True),
        (1004, False),
        (1005, False),
        (1006, False),
        (1007, True),
        (1014, True),
        (1015, False),
        (2999, False),
        (3000, True),
        (4999, True),
        (5000, False),
    ],
)
def test_valid_close_code_boundaries(code, valid):
    assert valid_close_code(code) is valid


def test_parse_close():
    assert parse_close(b"") == (1005, "")
    assert parse_close(b"\x03\xe8") == (1000, "")
    assert parse_close(b"\x0b\xb8ok") == (3000, "ok")
    with pytest.raises(ProtocolError) as info:
        parse_close(b"\x03")
    assert info.value.close_code == 1002
    with pytest.raises(ProtocolError) as info:
        parse_close(b"\x03\xed")  # 1005 may not be sent
    assert info.value.close_code == 1002
    with pytest.raises(ProtocolError) as info:
        parse_close(b"\x03\xe8\xff")
    assert info.value.close_code == 1007


def test_client_frame_rsv_and_exact_bytes():
    assert client_frame(OP_BINARY, b"", fixed_key) == b"\x82\x80" + KEY
    assert client_frame(OP_BINARY, b"\x00\x00\x00\x00\x00", fixed_key, rsv=0x40) == b"\xc2\x85" + KEY + KEY + KEY[:1]
    assert client_frame(OP_TEXT, b"x", fixed_key, rsv=0x30)[0] == 0x80 | 0x30 | OP_TEXT


def test_opcode_values():
    assert (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG) == (0, 1, 2, 8, 9, 10)


def test_a_parsed_read_is_not_kept_alive():
    """Once every byte of a read is parsed the codec drops its reference: an idle client holds no read buffer."""
    import sys

    proto = Protocol()
    data = frame(OP_TEXT, b"x" * 1000) + frame(OP_TEXT, b"y" * 10)
    before = sys.getrefcount(data)
    proto.receive_data(data)
    assert sys.getrefcount(data) == before + 1  # parsed in place
    assert proto.next_event() == (OP_TEXT, "x" * 1000)
    assert proto.next_event() == (OP_TEXT, "y" * 10)
    assert proto.next_event() is None
    assert sys.getrefcount(data) == before


def test_a_large_text_message_decoded_in_place_is_still_checked():
    """Large whole text frames are decoded straight from the read: valid text as usual, bad UTF-8 is 1007."""
    text = "é" * 40_000  # 80,000 bytes: over the in-place threshold, 64-bit length
    proto = feed(frame(OP_TEXT, text.encode()) + frame(OP_TEXT, b"after"))
    assert proto.next_event() == (OP_TEXT, text)
    assert proto.next_event() == (OP_TEXT, "after")
    bad = feed(frame(OP_TEXT, b"a" * 20_000 + b"\xff" + b"a" * 20_000))
    with pytest.raises(ProtocolError) as info:
        bad.next_event()
    assert info.value.close_code == 1007


def test_masking_keys_are_read_ahead_and_never_repeat_a_slice():
    """MaskKeys hands out consecutive 4-byte slices of os.urandom reads, from any thread."""
    import threading

    from zen_websocket.protocol import MaskKeys

    keys = MaskKeys()
    got: list[bytes] = []
    lock = threading.Lock()

    def take() -> None:
        mine = [keys(4) for _ in range(3000)]
        with lock:
            got.extend(mine)

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(got) == 12000 and all(len(key) == 4 for key in got)
    # 12,000 keys span about 12 reads of 4,096 bytes: duplicates would mean a slice handed out twice
    # (random collisions among 2**32 values are possible but this many is not: allow a few).
    assert len(set(got)) >= 11990
    proto = Protocol()
    first, second = proto.send(OP_TEXT, b"x"), proto.send(OP_TEXT, b"x")
    assert first[2:6] != second[2:6] or first[6:] != second[6:]
