"""Cross-checks against an independent server implementation (aiohttp).

The shipped MockWebSocketServer is built on ``websockets``; these tests make
sure nothing in the client depends on that library's particular behaviour.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import zen_websocket as zw
from tests.timeunit import ms, wait_until

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import WSMsgType, web  # noqa: E402


class AiohttpServer:
    """An aiohttp WebSocket server on loopback, in a thread with its own loop."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.connections = 0
        self.port = 0
        self.thread = threading.Thread(target=self._run, name="aiohttp-server", daemon=True)

    async def handler(self, request):
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        self.connections += 1
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                if msg.data.startswith("close:"):
                    await ws.close(code=int(msg.data[6:]), message=b"bye")
                    break
                if msg.data.startswith("big:"):
                    await ws.send_str("x" * int(msg.data[4:]))
                    continue
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws

    def _run(self):
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/", self.handler)
        self.runner = web.AppRunner(app, handle_signals=False)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()

    def __enter__(self):
        self.thread.start()
        assert self.ready.wait(5)
        return self

    def __exit__(self, *exc):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    @property
    def url(self):
        return f"ws://127.0.0.1:{self.port}/"


OPTIONS = {"retry_delay": ms(20), "max_backoff": ms(100), "close_timeout": ms(500)}


def test_echo_text_binary_and_large_messages():
    with AiohttpServer() as server:
        with zw.connect(server.url, heartbeat_config=None, **OPTIONS) as client:
            client.send_message("héllo")
            assert client.recv(2) == "héllo"
            client.send_message(b"\x00" * 70000)
            assert client.recv(2) == b"\x00" * 70000
            client.send_message("big:2000000")
            assert client.recv(5) == "x" * 2_000_000


def test_pings_are_answered_by_an_independent_server():
    with AiohttpServer() as server:
        hb = {"type": "ping", "interval": ms(20), "timeout": ms(200)}
        with zw.connect(server.url, heartbeat_config=hb, **OPTIONS) as client:
            deadline = time.monotonic() + 2
            while client.get_heartbeat_health()["sent"] < 3 and time.monotonic() < deadline:
                time.sleep(0.01)
            health = client.get_heartbeat_health()
            assert health["sent"] >= 3
            assert health["last_rtt"] is not None and health["failures"] == 0


def test_server_close_code_is_seen_and_client_reconnects():
    reasons = []
    reconnected = threading.Event()
    with AiohttpServer() as server:
        client = zw.connect(
            server.url,
            heartbeat_config=None,
            on_disconnect=lambda c, reason: reasons.append(reason),
            on_reconnect=lambda c, attempt: reconnected.set(),
            **OPTIONS,
        )
        try:
            client.send_message("close:4001")
            assert reconnected.wait(3)
            assert reasons == ["remote_close:4001"]
            # The server counts a connection in its handler, which may run just after our 101.
            assert wait_until(lambda: server.connections == 2)
            client.send_message("still here")
            assert client.recv(2) == "still here"
        finally:
            client.close()


def test_oversized_message_closes_with_1009_and_no_reconnect():
    errors = []
    with AiohttpServer() as server:
        client = zw.connect(
            server.url, heartbeat_config=None, max_message_size=1000, on_error=lambda c, e: errors.append(e), **OPTIONS
        )
        client.send_message("big:5000")
        deadline = time.monotonic() + 3
        while client.get_state() != "disconnected" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.get_state() == "disconnected"
        assert isinstance(errors[0], zw.MessageTooLarge)
        # aiohttp compresses (permessage-deflate is negotiated), so the size is known
        # only as "over the limit": decompression stops there, never inflating the rest.
        assert errors[0].size > 1000 and errors[0].limit == 1000
        # A twin with the same backoff, closed later with a code that is retried: once it is
        # back, the client under test has had longer than a retry delay to come back too.
        reconnected = threading.Event()
        with zw.connect(
            server.url, heartbeat_config=None, on_reconnect=lambda c, attempt: reconnected.set(), **OPTIONS
        ) as twin:
            twin.send_message("close:4001")
            assert reconnected.wait(3)
        assert wait_until(lambda: server.connections >= 3)  # counted by the server once its handshake is sent
        assert server.connections == 3  # the twin's two, and the client's one: no reconnect
        client.close()
