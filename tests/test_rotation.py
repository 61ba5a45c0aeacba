"""Make-before-break rotation, max_connection_age and callable URLs, against real loopback servers."""

from __future__ import annotations

import itertools
import json

import pytest

import zen_websocket as zw
from tests.timeunit import ms, wait_until
from zen_websocket.testing import FeedCollector, MockWebSocketServer, SequencedFeed, gaps

FAST = {"retry_delay": ms(20), "max_backoff": ms(100), "heartbeat_config": None, "close_timeout": ms(500)}


def test_rotate_switches_connections_without_losing_a_message():
    collector = FeedCollector()
    with SequencedFeed(interval=ms(2)) as feed:
        client = zw.connect(feed.url, on_message=collector, **FAST)
        try:
            client.subscribe(["ticker.BTC"], wait=True)
            assert wait_until(lambda: collector.count(1) >= 20)
            client.rotate()
            assert feed.connection_count == 2
            assert feed.channels(2) == {"ticker.BTC"}  # restored on the new one before the switch
            assert wait_until(lambda: collector.count(2) >= 20)
            first = feed.all_connections[0]
            assert wait_until(lambda: not first.is_open)  # the old one was closed...
            assert first.close_code == 1000  # ...politely
            metrics = client.get_state_metrics()
            assert metrics["reconnects"] == 0
            assert client.get_state() == "connected"
        finally:
            client.close()
        seen = collector.snapshot()
        assert gaps(seen) == {}
        assert seen[1][-1] == feed.sent[1]  # every message the old connection carried was received


def test_connect_callbacks_run_on_the_new_connection_before_the_switch():
    seen_on: list[int] = []

    def handler(conn, message):
        if isinstance(message, str) and "auth" in message:
            seen_on.append(conn.id)
            request = json.loads(message)
            return {"jsonrpc": "2.0", "id": request["id"], "result": {"ok": True}}
        return None

    with MockWebSocketServer(handler=handler) as server:
        client = zw.connect(server.url, on_connect=lambda c: c.request("public/auth", timeout=ms(1000) * 2), **FAST)
        try:
            assert seen_on == [1]
            client.rotate()
            assert seen_on == [1, 2]
        finally:
            client.close()


def test_a_failed_rotation_keeps_the_old_connection_and_raises():
    with MockWebSocketServer(echo=True) as server:
        client = zw.connect(server.url, **FAST)
        try:
            server.refuse_connections(True)
            with pytest.raises(zw.ConnectError) as info:
                client.rotate(timeout=ms(500))
            assert info.value.reason == "econnrefused"
            assert client.get_state() == "connected"
            client.send_message("still here")
            assert client.recv(timeout=2) == "still here"
            assert server.connection_count == 1
        finally:
            client.close()


def test_rotate_when_not_connected_is_not_connected_error():
    with MockWebSocketServer() as server:
        client = zw.connect(server.url, **FAST)
        client.close()
        with pytest.raises(zw.NotConnectedError):
            client.rotate()


def test_max_connection_age_rotates_by_itself_without_losing_a_message():
    collector = FeedCollector()
    rotations: list[dict] = []
    zw.telemetry.attach("rotation-test", ("zen_websocket", "client", "rotate"), lambda e, m, md, c: rotations.append(m))
    try:
        with SequencedFeed(interval=ms(2)) as feed:
            client = zw.connect(feed.url, on_message=collector, max_connection_age=ms(150), **FAST)
            try:
                client.subscribe(["ticker.BTC"], wait=True)
                assert wait_until(lambda: collector.count(3) >= 5, timeout=5)
                assert client.get_state_metrics()["reconnects"] == 0
            finally:
                client.close()
            seen = collector.snapshot()
            assert gaps(seen) == {}
            for conn in (1, 2):
                assert seen[conn][-1] == feed.sent[conn]
    finally:
        zw.telemetry.detach("rotation-test")
    assert len(rotations) >= 2
    assert all(m["age"] >= ms(150) for m in rotations)


def test_a_callable_url_is_called_for_every_attempt():
    counter = itertools.count(1)
    with MockWebSocketServer() as server:

        def listen_key_url() -> str:
            return f"{server.url}/ws/key-{next(counter)}"

        client = zw.connect(listen_key_url, **FAST)
        try:
            assert client.get_state() == "connected"
            server.drop_connections()
            assert wait_until(lambda: server.connection_count == 2 and client.get_state() == "connected")
            client.rotate()
        finally:
            client.close()
        assert server.handshake_paths == ["/ws/key-1", "/ws/key-2", "/ws/key-3"]
        assert "/ws/key-3" in repr(client)  # the URL of the current (last) connection


def test_a_callable_url_that_returns_garbage_is_a_config_error():
    client = zw.Client(lambda: "http://example.invalid/", **FAST)
    with pytest.raises(zw.ConfigError) as info:
        client.connect()
    assert info.value.option == "url()"
    assert client.get_state() == "disconnected"
