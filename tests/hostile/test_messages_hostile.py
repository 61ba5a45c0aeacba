"""Hostile message content: deep JSON, look-alike ids, callbacks that raise the unusual (F5, F12)."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

import zen_websocket as zw
from tests.hostile.rawserver import OP_TEXT, EventLog, RawConn, Serve
from tests.timeunit import ms

DEPTH = 200_000
NESTED = "[" * DEPTH + "]" * DEPTH
# The same depth where a response could hide: it carries "id", so a client
# with a request in flight has to look inside (and its JSON decoder recurses).
NESTED_WITH_ID = '{"jsonrpc":"2.0","id":"nested","params":' + NESTED + "}"


def _reply(request: dict[str, Any], result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request["id"], "result": result}


# -- F5: deeply nested JSON --------------------------------------------------------


@pytest.mark.parametrize(
    "heartbeat",
    [None, {"type": "deribit", "interval": 10}],
    ids=["request-in-flight", "deribit-heartbeat"],
)
def test_f5_deeply_nested_json_is_an_ordinary_message_not_a_dead_connection(
    serve: Serve, events: EventLog, heartbeat: dict[str, Any] | None
) -> None:
    """200,000 levels of nesting are delivered as they are and counted as a parse error; nothing else suffers."""

    def script(conn: RawConn) -> None:
        conn.accept_upgrade()
        if heartbeat is not None:
            set_heartbeat = conn.recv_json()
            assert set_heartbeat["method"] == "public/set_heartbeat"
            conn.send_json(_reply(set_heartbeat, "ok"))
        held = conn.recv_json()  # answered only after the hostile messages
        conn.send_text(NESTED)
        conn.send_text(NESTED_WITH_ID)
        for seq in range(1000):
            conn.send_json({"jsonrpc": "2.0", "method": "subscription", "params": {"channel": "seq", "data": seq}})
        conn.send_json(_reply(held, {"answer": 42}))
        conn.finish()

    server = serve(script)
    client = zw.connect(
        server.url, heartbeat_config=heartbeat, retry_count=0, close_timeout=ms(300), **events.options()
    )
    try:
        future = client.request_async("public/get_index", {"currency": "BTC"}, timeout=10.0)
        assert client.recv(timeout=5.0) == NESTED
        assert client.recv(timeout=5.0) == NESTED_WITH_ID
        numbers = [json.loads(client.recv(timeout=5.0))["params"]["data"] for _ in range(1000)]
        assert numbers == list(range(1000))
        assert future.result(timeout=5.0) == {"answer": 42}
        assert events.of("disconnect") == []
        assert client.get_state() == "connected"
        assert client.get_state_metrics()["parse_errors"] >= 1
        assert server.connection_count == 1
    finally:
        client.close()


# -- F12 (a): ids that compare equal but are not the same JSON value -----------------


@pytest.mark.parametrize(("lookalike", "request_id"), [(True, 1), (5.0, 5)], ids=["true-vs-1", "5.0-vs-5"])
def test_f12_a_response_id_must_match_the_request_id_exactly(serve: Serve, lookalike: Any, request_id: int) -> None:
    """``"id": true`` does not answer request 1 (nor 5.0 request 5): it is an ordinary message; the real id resolves."""
    go = threading.Event()

    def script(conn: RawConn) -> None:
        conn.accept_upgrade()
        request = conn.recv_json()
        conn.send_json({"jsonrpc": "2.0", "id": lookalike, "result": "look-alike"})
        conn.recv_until(lambda opcode, payload: opcode == OP_TEXT and payload == b"go")
        go.set()
        conn.send_json({"jsonrpc": "2.0", "id": request["id"], "result": "real"})
        conn.finish()

    server = serve(script)
    client = zw.connect(server.url, heartbeat_config=None, close_timeout=ms(300))
    try:
        future = client.send_message({"jsonrpc": "2.0", "id": request_id, "method": "x"})
        assert future is not None
        first = client.recv_json(timeout=5.0)
        assert first == {"jsonrpc": "2.0", "id": lookalike, "result": "look-alike"}
        assert type(first["id"]) is type(lookalike)
        # The receive thread matched (or not) before it delivered: no race here.
        assert not future.done(), f"resolved by a look-alike id: {future.result()}"
        client.send_message("go")
        assert future.result(timeout=5.0)["result"] == "real"
        assert go.is_set()
    finally:
        client.close()


# -- F12 (b, d): callbacks that raise what ``except Exception`` does not expect -------


def _boom_then_after(conn: RawConn) -> None:
    conn.accept_upgrade()
    if conn.index == 0:
        conn.send_text("boom")
        conn.send_text("after")
        # A round trip on this same connection proves it survived.
        conn.recv_until(lambda opcode, payload: opcode == OP_TEXT and payload == b"still here")
        conn.send_text("acknowledged")
    conn.finish()


@pytest.mark.parametrize("raised", [MemoryError, SystemExit], ids=["MemoryError", "SystemExit"])
def test_f12_b_d_a_callback_raising_memoryerror_or_systemexit_is_reported_and_the_connection_lives(
    serve: Serve, events: EventLog, raised: type[BaseException]
) -> None:
    """A message callback raising MemoryError/SystemExit: an ``error`` event, no disconnect, later messages arrive."""
    delivered: list[str] = []
    acknowledged = threading.Event()

    def on_message(client: zw.Client, data: str) -> None:
        if data == "boom":
            raise raised("raised by a user callback")
        delivered.append(data)
        if data == "after":
            client.send_message("still here")
        if data == "acknowledged":
            acknowledged.set()

    server = serve(_boom_then_after)
    client = zw.connect(
        server.url,
        heartbeat_config=None,
        retry_delay=ms(20),
        close_timeout=ms(300),
        on_message=on_message,
        **events.options("disconnect", "reconnect", "error", "close"),
    )
    try:
        assert acknowledged.wait(3.0), f"later messages never arrived: {events.events}"
        assert delivered == ["after", "acknowledged"]
        errors = [args[0] for args in events.of("error")]
        assert errors, "no error event"
        error = errors[0]
        assert isinstance(error, zw.CallbackError)
        assert isinstance(error.__cause__, raised)
        assert events.of("disconnect") == []
        assert client.get_state_metrics()["reconnects"] == 0
        assert client.get_state() == "connected"
        assert server.connection_count == 1
    finally:
        client.close()


# -- F12 (c): an unusable recording path ----------------------------------------------


def test_f12_c_unopenable_record_to_is_a_config_error_and_leaves_the_client_disconnected(
    serve: Serve,
) -> None:
    """``record_to`` in a missing directory raises ConfigError naming the option; the client is not half-open."""

    def polite(conn: RawConn) -> None:
        conn.accept_upgrade()
        conn.finish()

    server = serve(polite)
    built: list[zw.Client] = []
    with pytest.raises(zw.ConfigError) as info:
        client = zw.Client(server.url, heartbeat_config=None, record_to="/nonexistent-dir/x.jsonl")
        built.append(client)
        client.connect()
    assert info.value.option == "record_to"
    assert "record_to" in str(info.value)
    for client in built:  # when the check happens in connect(), not at construction
        try:
            assert client.get_state() == "disconnected"
        finally:
            client.close()
