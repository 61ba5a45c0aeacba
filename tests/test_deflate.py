"""permessage-deflate (zen_websocket.deflate): from bytes, then against real servers.

The extension is tested first from bytes alone (RFC 7692 section 7.2.3's
examples, limits, bad input), then negotiation (:func:`accept`, :func:`offer`),
then end to end on loopback against ``websockets`` with each parameter the
server can ask for, against :class:`MockWebSocketServer`, and against a
hand-written server that sends exactly the bytes a broken or hostile one
would (a bad answer, a decompression bomb).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import random
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.sync.server import ServerConnection, serve

import zen_websocket as zw
from tests.timeunit import wait_until
from zen_websocket.deflate import DEFAULT_OFFER, PerMessageDeflate, accept, offer
from zen_websocket.errors import ConfigError, ConnectError, MessageTooLarge, ProtocolError
from zen_websocket.handshake import parse_extensions
from zen_websocket.protocol import OP_BINARY, OP_CONT, OP_TEXT, Frame, Protocol
from zen_websocket.testing import MockWebSocketServer

ROOT = Path(__file__).resolve().parent.parent
KEY = b"\x37\xfa\x21\x3d"
MIB = 2**20
# RFC 7692 7.2.3.1: "Hello" in one compressed block, 00 00 ff ff stripped.
HELLO = bytes.fromhex("f248cdc9c90700")


def server_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
    """An unmasked frame as a server sends it."""
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        return bytes((b0, n)) + payload
    if n < 65536:
        return bytes((b0, 126)) + n.to_bytes(2, "big") + payload
    return bytes((b0, 127)) + n.to_bytes(8, "big") + payload


def events(data: bytes, extension: PerMessageDeflate | None = None, **options: Any) -> list[tuple[int, Any]]:
    """Every event the codec, with the extension, parses from ``data``."""
    proto = Protocol(extensions=[extension or PerMessageDeflate()], **options)
    proto.receive_data(data)
    out = []
    while (event := proto.next_event()) is not None:
        out.append(event)
    return out


def deflated(data: bytes, bits: int = 15) -> bytes:
    """``data`` compressed as a permessage-deflate message payload, by plain zlib."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -bits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflated(payload: bytes, bits: int = 15) -> bytes:
    """Inflate with a ``bits`` window, strictly.

    zlib lets a distance reach into the output of the same call, past the
    window; taking 64 bytes per call leaves only the window to reach into,
    so a stream that needs a larger one fails here.
    """
    decompressor = zlib.decompressobj(wbits=-bits)
    data = payload + b"\x00\x00\xff\xff"
    out = []
    while data:
        out.append(decompressor.decompress(data, 64))
        data = decompressor.unconsumed_tail
    out.append(decompressor.flush())
    return b"".join(out)


def far_repeats(size: int, block: int = 20_000, seed: int = 7, text: bool = False) -> bytes:
    """``size`` bytes of a random block repeated: deflate can only shrink it by reaching ``block`` bytes back."""
    rng = random.Random(seed)
    alphabet = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 "
    chunk = bytes(rng.choice(alphabet) for _ in range(block)) if text else rng.randbytes(block)
    return (chunk * (size // block + 1))[:size]


# -- decode: RFC 7692 section 7.2.3, from bytes ------------------------------


def test_rfc_7_2_3_1_one_compressed_block_decodes_to_hello():
    assert events(server_frame(OP_TEXT, HELLO, rsv1=True)) == [(OP_TEXT, "Hello")]


def test_rfc_7_2_3_1_fragments_continue_one_stream_with_rsv1_on_the_first_only():
    wire = bytes.fromhex("4103f248cd") + bytes.fromhex("8004c9c90700")  # the RFC's two frames
    assert events(wire) == [(OP_TEXT, "Hello")]


def test_rfc_7_2_3_2_second_message_reuses_the_window_of_the_first():
    wire = server_frame(OP_TEXT, HELLO, rsv1=True) + server_frame(OP_TEXT, bytes.fromhex("f200110000"), rsv1=True)
    assert events(wire) == [(OP_TEXT, "Hello"), (OP_TEXT, "Hello")]


def test_server_no_context_takeover_starts_each_message_with_an_empty_window():
    # The RFC's second message points back into the first: without context it cannot be inflated.
    wire = server_frame(OP_TEXT, HELLO, rsv1=True) + server_frame(OP_TEXT, bytes.fromhex("f200110000"), rsv1=True)
    proto = Protocol(extensions=[PerMessageDeflate(server_no_context_takeover=True)])
    proto.receive_data(wire)
    assert proto.next_event() == (OP_TEXT, "Hello")
    with pytest.raises(ProtocolError, match="invalid permessage-deflate data") as info:
        proto.next_event()
    assert info.value.close_code == 1002


def test_rfc_7_2_3_3_a_stored_block_decodes():
    assert events(server_frame(OP_TEXT, bytes.fromhex("000500faff48656c6c6f00"), rsv1=True)) == [(OP_TEXT, "Hello")]


def test_rfc_7_2_3_4_a_final_block_ends_the_stream_and_the_next_message_starts_a_new_one():
    final = bytes.fromhex("f348cdc9c9070000")  # BFINAL set, then the RFC's padding byte
    wire = server_frame(OP_TEXT, final, rsv1=True) + server_frame(OP_TEXT, HELLO, rsv1=True)
    assert events(wire) == [(OP_TEXT, "Hello"), (OP_TEXT, "Hello")]


def test_rfc_7_2_3_5_two_blocks_in_one_message_decode():
    wire = server_frame(OP_TEXT, bytes.fromhex("f248050000 00ffff cac9c90700".replace(" ", "")), rsv1=True)
    assert events(wire) == [(OP_TEXT, "Hello")]


def test_binary_messages_and_empty_messages_inflate():
    assert events(server_frame(OP_BINARY, deflated(b"\x00\xff" * 1000), rsv1=True)) == [(OP_BINARY, b"\x00\xff" * 1000)]
    assert events(server_frame(OP_TEXT, deflated(b""), rsv1=True)) == [(OP_TEXT, "")]


def test_messages_without_rsv1_pass_through_uncompressed_fragmented_or_not():
    wire = (
        server_frame(OP_TEXT, b"plain")
        + server_frame(OP_BINARY, b"fr", fin=False)
        + server_frame(OP_CONT, b"ag")
        + server_frame(OP_TEXT, HELLO, rsv1=True)
    )
    assert events(wire) == [(OP_TEXT, "plain"), (OP_BINARY, b"frag"), (OP_TEXT, "Hello")]


def test_rsv1_on_a_continuation_frame_is_a_protocol_error():
    wire = server_frame(OP_TEXT, HELLO[:3], fin=False, rsv1=True) + server_frame(OP_CONT, HELLO[3:], rsv1=True)
    with pytest.raises(ProtocolError, match="continuation") as info:
        events(wire)
    assert info.value.close_code == 1002


def test_invalid_deflate_data_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="invalid permessage-deflate data"):
        events(server_frame(OP_TEXT, b"\xff\xff\xff\xff", rsv1=True))


def test_data_after_the_final_block_is_a_protocol_error():
    final = bytes.fromhex("f348cdc9c90700")
    with pytest.raises(ProtocolError, match="after the final"):
        events(server_frame(OP_TEXT, final + b"more data the stream has ended without", rsv1=True))


def test_a_window_of_8_bits_from_the_server_is_inflated():
    ext = accept([("permessage-deflate", {"server_max_window_bits": "8"})])
    assert ext is not None and ext.server_max_window_bits == 8
    payload = far_repeats(5000, block=200)
    assert events(server_frame(OP_BINARY, deflated(payload, bits=9), rsv1=True), ext) == [(OP_BINARY, payload)]


# -- decode: the size limit, bombs --------------------------------------------


def test_a_message_inflating_to_exactly_the_limit_passes_and_one_byte_more_fails():
    data = b"a" * 10_000
    assert events(server_frame(OP_TEXT, deflated(data), rsv1=True), max_message_size=10_000) == [
        (OP_TEXT, "a" * 10_000)
    ]
    with pytest.raises(MessageTooLarge) as info:
        events(server_frame(OP_TEXT, deflated(data + b"a"), rsv1=True), max_message_size=10_000)
    assert info.value.limit == 10_000 and info.value.close_code == 1009


def test_the_limit_counts_every_fragment_of_a_compressed_message():
    payload = deflated(b"z" * 30_000)
    wire = b"".join(
        server_frame(OP_CONT if i else OP_BINARY, payload[i : i + 8], fin=i + 8 >= len(payload), rsv1=not i)
        for i in range(0, len(payload), 8)
    )
    assert events(wire, max_message_size=30_000) == [(OP_BINARY, b"z" * 30_000)]
    with pytest.raises(MessageTooLarge) as info:
        events(wire, max_message_size=29_999)
    assert info.value.limit == 29_999


def _bomb(gib: int = 1) -> bytes:
    """``gib`` GiB of zeros as one permessage-deflate payload (about 1 MB per GiB), built in milliseconds.

    One MiB of zeros is compressed and sync-flushed; its blocks only reach
    back inside themselves, so 1024 copies in a row are one valid stream.
    """
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = compressor.compress(bytes(MIB)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return (piece * 1024 * gib)[:-4]


_BOMB_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    sys.path.insert(0, sys.argv[1])
    from tests.test_deflate import _bomb, server_frame
    from zen_websocket.deflate import PerMessageDeflate
    from zen_websocket.errors import MessageTooLarge
    from zen_websocket.protocol import OP_BINARY, Protocol

    wire = server_frame(OP_BINARY, _bomb(), rsv1=True)
    proto = Protocol(max_message_size=16 * 2**20, extensions=[PerMessageDeflate()])
    proto.receive_data(wire)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    try:
        proto.next_event()
        outcome = "no error"
    except MessageTooLarge as exc:
        outcome = f"MessageTooLarge {exc.size} {exc.limit}"
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"outcome": outcome, "seconds": seconds, "growth_kib": peak - before, "wire": len(wire)}))
    """
)


def test_a_1_gib_bomb_fails_fast_with_bounded_memory():
    """1 GiB of zeros in ~1 MB against max_message_size 16 MiB: MessageTooLarge, peak RSS growth < 40 MB."""
    proc = subprocess.run(
        [sys.executable, "-c", _BOMB_CHILD, str(ROOT)], capture_output=True, text=True, timeout=25, check=True
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["wire"] < 2 * MIB
    assert result["outcome"] == f"MessageTooLarge {16 * MIB + 1} {16 * MIB}"
    assert result["growth_kib"] < 40 * 1024, result
    assert result["seconds"] < 2.0, result


# -- encode ---------------------------------------------------------------------


def test_encode_compresses_hello_into_the_rfc_bytes_and_sets_rsv1():
    frame = PerMessageDeflate().encode(Frame(True, OP_TEXT, b"Hello"))
    assert frame == Frame(True, OP_TEXT, HELLO, True, False, False)


def test_encode_keeps_no_context_so_the_same_message_compresses_the_same():
    """RFC 7692 7.2.3.2 with client_no_context_takeover: both payloads are the first's bytes."""
    ext = PerMessageDeflate()
    assert ext.encode(Frame(True, OP_TEXT, b"Hello")).payload == HELLO
    assert ext.encode(Frame(True, OP_TEXT, b"Hello")).payload == HELLO


def test_send_puts_rsv1_and_the_compressed_payload_on_the_wire():
    proto = Protocol(extensions=[PerMessageDeflate()], urandom=lambda n: KEY)
    wire = proto.send(OP_TEXT, b"Hello")
    assert wire[0] == 0x80 | 0x40 | OP_TEXT
    assert wire[1] == 0x80 | len(HELLO) and wire[2:6] == KEY
    assert bytes(b ^ KEY[i % 4] for i, b in enumerate(wire[6:])) == HELLO


def test_control_frames_are_never_compressed():
    proto = Protocol(extensions=[PerMessageDeflate()], urandom=lambda n: KEY)
    assert proto.send(0x9, b"ping")[0] == 0x89
    assert proto.send_close(1000)[0] == 0x88


def test_messages_under_min_size_go_out_as_they_are():
    ext = PerMessageDeflate(min_size=6)
    small = Frame(True, OP_TEXT, b"Hello")
    assert ext.encode(small) is small
    assert ext.encode(Frame(True, OP_TEXT, b"Hello!")).rsv1


def test_level_sets_the_effort_and_every_level_inflates():
    data = b"a" * 1000
    stored = PerMessageDeflate(level=0).encode(Frame(True, OP_TEXT, data)).payload
    fastest = PerMessageDeflate().encode(Frame(True, OP_TEXT, data)).payload
    assert len(stored) > len(data) > 10 * len(fastest)
    assert inflated(stored) == inflated(fastest) == data


def test_frames_that_are_not_whole_messages_go_out_as_they_are():
    ext = PerMessageDeflate()
    for frame in (Frame(False, OP_TEXT, b"Hello"), Frame(True, OP_CONT, b"Hello")):
        assert ext.encode(frame) is frame


@pytest.mark.parametrize("bits", [8, 9, 10, 12])
def test_encode_never_reaches_back_further_than_client_max_window_bits(bits):
    # Repeats 100 bytes back (any window can use them), 300 and 5000 bytes back (only larger ones can).
    payload = (
        far_repeats(100_000, block=100, seed=1) + far_repeats(100_000, block=300) + far_repeats(100_000, block=5000)
    )
    with pytest.raises(zlib.error):  # the data does reach back further than the window
        inflated(deflated(payload, bits=15), bits=bits)
    frame = PerMessageDeflate(client_max_window_bits=bits).encode(Frame(True, OP_BINARY, payload))
    assert frame.rsv1 and len(frame.payload) < len(payload)
    assert inflated(frame.payload, bits=bits) == payload


def test_encode_is_stateless_so_concurrent_sends_decode_in_any_order():
    ext = PerMessageDeflate()
    messages = [f"message {i} ".encode() * 50 for i in range(200)]
    outputs: dict[int, bytes] = {}

    def work(start: int) -> None:
        for i in range(start, len(messages), 4):
            outputs[i] = ext.encode(Frame(True, OP_TEXT, messages[i])).payload

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # One receiver with context takeover, messages in reverse order: each inflates alone.
    decompressor = zlib.decompressobj(wbits=-15)
    for i in reversed(range(len(messages))):
        assert decompressor.decompress(outputs[i] + b"\x00\x00\xff\xff") == messages[i]
    assert ext.bytes_out_raw == sum(map(len, messages))
    assert ext.bytes_out_compressed == sum(map(len, outputs.values()))


def test_round_trip_through_our_own_encode_and_decode():
    sender, receiver = PerMessageDeflate(), PerMessageDeflate()
    rng = random.Random(1)
    for size in (0, 1, 100, 5000, 70_000, 300_000):
        data = rng.randbytes(size // 2) + bytes(size - size // 2)
        frame = sender.encode(Frame(True, OP_BINARY, data))
        assert receiver.decode(frame, max_size=None).payload == data
    assert receiver.bytes_in_compressed == sender.bytes_out_compressed
    assert receiver.bytes_in_raw == sender.bytes_out_raw


def test_invalid_construction_is_refused():
    for kwargs in ({"server_max_window_bits": 7}, {"client_max_window_bits": 16}, {"min_size": -1}, {"level": 10}):
        with pytest.raises(ConfigError):
            PerMessageDeflate(**kwargs)


# -- negotiation: offer() and accept() ------------------------------------------


def test_default_offer_announces_no_client_context_lets_the_server_cap_our_window_and_asks_nothing():
    assert offer() == DEFAULT_OFFER == "permessage-deflate; client_no_context_takeover; client_max_window_bits"
    assert parse_extensions(offer()) == [
        ("permessage-deflate", {"client_no_context_takeover": None, "client_max_window_bits": None})
    ]


def test_offer_can_ask_the_server_for_a_smaller_window_and_no_context():
    assert parse_extensions(offer(server_max_window_bits=10, server_no_context_takeover=True)) == [
        (
            "permessage-deflate",
            {
                "client_no_context_takeover": None,
                "client_max_window_bits": None,
                "server_no_context_takeover": None,
                "server_max_window_bits": "10",
            },
        )
    ]
    with pytest.raises(ConfigError, match="server_max_window_bits"):
        offer(server_max_window_bits=16)


def test_accept_without_permessage_deflate_is_none():
    assert accept([]) is None
    assert accept([("x-other", {})]) is None


def test_accept_of_a_bare_answer_uses_full_windows_and_context_takeover():
    ext = accept([("permessage-deflate", {})])
    assert isinstance(ext, PerMessageDeflate)
    assert (ext.server_no_context_takeover, ext.client_no_context_takeover) == (False, False)
    assert (ext.server_max_window_bits, ext.client_max_window_bits) == (15, 15)
    assert (ext.name, ext.rsv_bits) == ("permessage-deflate", 0x40)


def test_accept_reads_every_parameter():
    ext = accept(
        [
            (
                "permessage-deflate",
                {
                    "server_no_context_takeover": None,
                    "client_no_context_takeover": None,
                    "server_max_window_bits": "10",
                    "client_max_window_bits": "9",
                },
            )
        ]
    )
    assert ext is not None
    assert (ext.server_no_context_takeover, ext.client_no_context_takeover) == (True, True)
    assert (ext.server_max_window_bits, ext.client_max_window_bits) == (10, 9)


def test_accept_grants_what_we_asked_for():
    asked = offer(server_max_window_bits=10, server_no_context_takeover=True)
    ext = accept([("permessage-deflate", {"server_no_context_takeover": None, "server_max_window_bits": "9"})], asked)
    assert ext is not None and ext.server_max_window_bits == 9 and ext.server_no_context_takeover


def test_a_client_window_we_offered_binds_us_when_the_answer_is_silent():
    ext = accept([("permessage-deflate", {})], "permessage-deflate; client_max_window_bits=10")
    assert ext is not None and ext.client_max_window_bits == 10


BAD_ANSWERS = {
    "accepted twice": ([("permessage-deflate", {}), ("permessage-deflate", {})], DEFAULT_OFFER),
    "unknown parameter": ([("permessage-deflate", {"x-level": "9"})], DEFAULT_OFFER),
    "value on a flag": ([("permessage-deflate", {"server_no_context_takeover": "1"})], DEFAULT_OFFER),
    "value on the client flag": ([("permessage-deflate", {"client_no_context_takeover": "yes"})], DEFAULT_OFFER),
    "window without value": ([("permessage-deflate", {"server_max_window_bits": None})], DEFAULT_OFFER),
    "window 7": ([("permessage-deflate", {"server_max_window_bits": "7"})], DEFAULT_OFFER),
    "window 16": ([("permessage-deflate", {"client_max_window_bits": "16"})], DEFAULT_OFFER),
    "window 08": ([("permessage-deflate", {"server_max_window_bits": "08"})], DEFAULT_OFFER),
    "window not a number": ([("permessage-deflate", {"client_max_window_bits": "ten"})], DEFAULT_OFFER),
    "client window not offered": ([("permessage-deflate", {"client_max_window_bits": "10"})], "permessage-deflate"),
    "server window above the ask": (
        [("permessage-deflate", {"server_max_window_bits": "12"})],
        offer(server_max_window_bits=10),
    ),
    "client window above our offer": (
        [("permessage-deflate", {"client_max_window_bits": "12"})],
        "permessage-deflate; client_max_window_bits=10",
    ),
    "server window ask ignored": ([("permessage-deflate", {})], offer(server_max_window_bits=10)),
    "no-context ask ignored": ([("permessage-deflate", {})], offer(server_no_context_takeover=True)),
}


@pytest.mark.parametrize("case", BAD_ANSWERS, ids=list(BAD_ANSWERS))
def test_accept_refuses_an_answer_that_breaks_rfc_7692(case):
    extensions, asked = BAD_ANSWERS[case]
    with pytest.raises(ConnectError, match="invalid permessage-deflate response") as info:
        accept(extensions, asked)
    assert info.value.reason == "bad_handshake"


# -- against websockets, for real -------------------------------------------------


@contextlib.contextmanager
def websockets_server(**options: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """A ``websockets`` echo server on loopback; ``seen`` gets the request's extension header and the negotiated extension.

    The message ``fragments <n>`` is answered with a fragmented text
    message of n bytes, ``binary-fragments <n>`` with a binary one.
    """
    seen: dict[str, Any] = {}

    def handler(ws: ServerConnection) -> None:
        seen["offer"] = ws.request.headers.get("Sec-WebSocket-Extensions") if ws.request else None
        seen["extensions"] = list(ws.protocol.extensions)
        for message in ws:
            if isinstance(message, str) and message.startswith(("fragments ", "binary-fragments ")):
                kind, size = message.split()
                data = far_repeats(int(size), text=True)
                chunks = [data[i : i + 7000] for i in range(0, len(data), 7000)]
                ws.send([c.decode() for c in chunks] if kind == "fragments" else chunks)
            elif isinstance(message, str) and message.startswith("burst-then-close "):
                # Many compressed messages in one go, then the close: they reach
                # the client in few reads, all before the end.
                for seq in range(int(message.split()[1])):
                    ws.send(json.dumps({"seq": seq}))
                ws.close(1001)
            else:
                ws.send(message)

    with serve(handler, "127.0.0.1", 0, max_size=None, **options) as server:
        thread = threading.Thread(target=server.serve_forever, name="test-websockets-server")
        thread.start()
        try:
            yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}", seen
        finally:
            server.shutdown()
            thread.join(10)


def negotiated(client: zw.Client) -> tuple[Any, ...]:
    """The extensions the client's live connection runs (reaches into the driver: no public accessor yet)."""
    return tuple(client._driver.link.protocol.extensions)


def round_trip(client: zw.Client, message: Any) -> None:
    client.send_message(message)
    assert client.recv(timeout=10) == message


SERVER_PARAMS = {
    "default": ({"compression": "deflate"}, {"server_max_window_bits": 12, "client_max_window_bits": 12}),
    "server_no_context_takeover": (
        {"server_no_context_takeover": True},
        {"server_no_context_takeover": True},
    ),
    "client_no_context_takeover": (
        {"client_no_context_takeover": True},
        {"client_no_context_takeover": True},
    ),
    "server_max_window_bits=10": ({"server_max_window_bits": 10}, {"server_max_window_bits": 10}),
    "client_max_window_bits=10": ({"client_max_window_bits": 10}, {"client_max_window_bits": 10}),
}


@pytest.mark.parametrize("param", SERVER_PARAMS, ids=list(SERVER_PARAMS))
def test_round_trips_with_each_parameter_a_websockets_server_asks_for(param):
    """Text and binary, small and 1 MB, both ways compressed (windows: see the strict encode test above)."""
    server_options, expected = SERVER_PARAMS[param]
    if "compression" not in server_options:
        server_options = {"compression": None, "extensions": [ServerPerMessageDeflateFactory(**server_options)]}
    with websockets_server(**server_options) as (url, seen):
        with zw.connect(url, heartbeat_config=None) as client:
            (ext,) = negotiated(client)
            for name, value in expected.items():
                assert getattr(ext, name) == value, name
            assert wait_until(lambda: "extensions" in seen)
            assert seen["offer"] == DEFAULT_OFFER
            assert seen["extensions"], "the server did not negotiate permessage-deflate"
            for message in ("hi", "hi", far_repeats(MIB, text=True).decode(), b"\x00\x01", far_repeats(MIB)):
                round_trip(client, message)
            assert 0 < ext.bytes_in_compressed < ext.bytes_in_raw  # the server did compress
            assert 0 < ext.bytes_out_compressed < ext.bytes_out_raw  # and so did we


def test_many_messages_through_one_context_takeover_stream():
    with websockets_server(compression="deflate") as (url, _):
        with zw.connect(url, heartbeat_config=None) as client:
            for i in range(300):
                round_trip(client, json.dumps({"seq": i, "channel": "ticker.BTC-PERPETUAL", "price": 97000 + i % 7}))
            (ext,) = negotiated(client)
            assert ext.bytes_in_raw > 2 * ext.bytes_in_compressed


@pytest.mark.parametrize("kind", ["fragments", "binary-fragments"])
def test_fragmented_compressed_messages_from_the_server(kind):
    with websockets_server(compression="deflate") as (url, _):
        with zw.connect(url, heartbeat_config=None) as client:
            for size in (10, 50_000, 400_000):
                client.send_message(f"{kind} {size}")
                expected = far_repeats(size, text=True)
                assert client.recv(timeout=10) == (expected.decode() if kind == "fragments" else expected)


def test_a_burst_read_together_is_queued_in_order_and_nothing_is_lost_when_the_connection_ends():
    """With compression the receive thread queues what one read yields at once; the end flushes it too."""
    with websockets_server(compression="deflate") as (url, _):
        with zw.connect(url, heartbeat_config=None, reconnect_on_error=False) as client:
            client.send_message("burst-then-close 2000")
            seqs = [json.loads(message)["seq"] for message in client]
    assert seqs == list(range(2000))
    assert client.close_code == 1001


def test_a_server_that_declines_gives_a_plain_connection():
    with websockets_server(compression=None) as (url, seen):
        with zw.connect(url, heartbeat_config=None) as client:
            assert negotiated(client) == ()
            assert wait_until(lambda: "extensions" in seen)
            assert seen["offer"] == DEFAULT_OFFER and seen["extensions"] == []
            round_trip(client, "plain")
            round_trip(client, far_repeats(MIB))


def test_compression_none_sends_no_offer():
    with websockets_server(compression="deflate") as (url, seen):
        with zw.connect(url, heartbeat_config=None, compression=None) as client:
            assert negotiated(client) == ()
            assert wait_until(lambda: "extensions" in seen)
            assert seen["offer"] is None and seen["extensions"] == []
            round_trip(client, "plain")


def test_mock_server_with_compression_negotiates_it():
    with MockWebSocketServer(echo=True, compression="deflate") as server:
        with zw.connect(server.url, heartbeat_config=None) as client:
            assert len(negotiated(client)) == 1
            assert server.wait_for_connections(1)
            assert server.connections[0].ws.protocol.extensions
            round_trip(client, json.dumps({"jsonrpc": "2.0", "method": "public/test", "pad": "x" * 5000}))
            round_trip(client, far_repeats(200_000))


def test_mock_server_without_compression_gets_the_offer_and_declines():
    with MockWebSocketServer(echo=True) as server:
        with zw.connect(server.url, heartbeat_config=None) as client:
            assert negotiated(client) == ()
            round_trip(client, "plain")
        headers = {k.lower(): v for k, v in server.handshake_headers[0].items()}
        assert headers["sec-websocket-extensions"] == DEFAULT_OFFER


# -- against a hand-written server: bad answers, a bomb -----------------------------


class RawServer:
    """One connection on loopback, by hand: answers the upgrade with ``extensions`` then runs ``then(sock)``."""

    def __init__(self, extensions: str | None, then: Callable[[socket.socket], Any] | None = None) -> None:
        self.extensions = extensions
        self.then = then
        self.result: Any = None
        self.error: BaseException | None = None
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"ws://127.0.0.1:{self.listener.getsockname()[1]}"
        self.thread = threading.Thread(target=self._run, name="test-raw-deflate-server")

    def __enter__(self) -> RawServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()
        self.thread.join(10)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        try:
            self.listener.settimeout(10)
            sock, _ = self.listener.accept()
        except OSError:
            return
        with sock:
            sock.settimeout(10)
            try:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = sock.recv(4096)
                    if not chunk:
                        return
                    head += chunk
                key = next(
                    line.split(b":", 1)[1].strip()
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"sec-websocket-key:")
                )
                accept_value = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
                answer = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                answer += b"Sec-WebSocket-Accept: " + accept_value + b"\r\n"
                if self.extensions is not None:
                    answer += f"Sec-WebSocket-Extensions: {self.extensions}\r\n".encode()
                sock.sendall(answer + b"\r\n")
                if self.then is not None:
                    self.result = self.then(sock)
                else:
                    while sock.recv(65536):  # until the client hangs up
                        pass
            except (ConnectionError, TimeoutError) as exc:
                self.error = exc


def read_client_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One masked client frame: (opcode, unmasked payload)."""

    def exact(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the client hung up")
            data += chunk
        return data

    b0, b1 = exact(2)
    length = b1 & 0x7F
    if length == 126:
        length = struct.unpack("!H", exact(2))[0]
    elif length == 127:
        length = struct.unpack("!Q", exact(8))[0]
    mask = exact(4)
    payload = exact(length)
    return b0 & 0x0F, bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


BAD_WIRE_ANSWERS = [
    "permessage-deflate, permessage-deflate",
    "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
    "permessage-deflate; x-unknown=1",
    'permessage-deflate; client_max_window_bits="8x"',
]


@pytest.mark.parametrize("answer", BAD_WIRE_ANSWERS)
def test_a_bad_answer_on_the_wire_fails_the_connect_at_once(answer):
    with RawServer(answer) as server:
        with pytest.raises(ConnectError) as info:
            zw.connect(server.url, heartbeat_config=None, retry_delay=0.01)
    assert info.value.reason == "bad_handshake" and info.value.attempts == 1


def test_a_bomb_from_a_server_closes_the_connection_with_1009():
    """1 GiB of compressed zeros (about 1 MB on the wire) against max_message_size 16 MiB."""

    def send_bomb(sock: socket.socket) -> int | None:
        sock.sendall(server_frame(OP_BINARY, _bomb(), rsv1=True))
        while True:
            opcode, payload = read_client_frame(sock)
            if opcode == 0x8:
                sock.sendall(server_frame(0x8, payload[:2]))
                return struct.unpack("!H", payload[:2])[0] if payload else None

    with RawServer("permessage-deflate", send_bomb) as server:
        with zw.Client(server.url, heartbeat_config=None, reconnect_on_error=False, max_message_size=16 * MIB):
            assert wait_until(lambda: not server.thread.is_alive(), timeout=10)
    assert server.result == 1009
