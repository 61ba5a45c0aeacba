"""Chaos for the Binance adapter: serverShutdown notices during rotations, against the emulator.

A numbered aggTrade feed (ids 1, 2, 3... across every connection) runs while
the server announces shutdowns, including on a rotation's new connection
before it took over, and the client rotates by age as well. Invariants:
every id arrives (make-before-break loses nothing), no rotation turns into a
drop (``reconnects == 0``), one connection is left, no rate-limit violation,
no error event.
"""

from __future__ import annotations

import random
import threading

import pytest

import zen_websocket as zw
from tests.platforms.test_binance import FAST, TradeIds
from tests.timeunit import ms, wait_until
from zen_websocket.platforms import binance
from zen_websocket.testing import BinanceEmulator, MockConnection

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(60)]


def test_a_server_shutdown_on_the_new_connection_during_the_rotation_rotates_again():
    """Connection 2 is told to shut down before the rotation onto it is complete: a third follows."""
    emulator: list[BinanceEmulator] = []

    def shutdown_the_candidate(conn: MockConnection) -> None:
        if conn.id == 2:  # the rotation's new connection, before its SUBSCRIBE is even read
            emulator[0].server_shutdown(conn, close_after=ms(600))

    errors: list[BaseException] = []
    with BinanceEmulator(ping_interval=None, on_connect=shutdown_the_candidate) as emu:
        emulator.append(emu)
        trades = TradeIds()
        with binance.connect(
            ["btcusdt@aggTrade"], url=emu.url, on_message=trades, on_error=lambda c, e: errors.append(e), **FAST
        ) as client:
            count = 300
            feed = emu.start_trades("btcusdt@aggTrade", interval=ms(2), count=count)
            assert wait_until(lambda: feed.sent >= 20)
            emu.server_shutdown(emu.connections[0], close_after=ms(600))
            assert wait_until(lambda: emu.connection_count == 3 and len(emu.connections) == 1, 10)
            assert wait_until(lambda: not feed.running, 10)
            assert wait_until(lambda: not trades.missing(count), 5), trades.missing(count)[:20]
            assert client.get_state_metrics()["reconnects"] == 0
            assert emu.subscriptions(emu.connections[0]) == ["btcusdt@aggTrade"]
        assert [m["data"]["e"] for m in trades.others] == ["serverShutdown", "serverShutdown"]
    assert errors == [] and emu.violations == []


def test_shutdown_notices_at_random_through_rotations_by_age_lose_nothing():
    rng = random.Random(10)
    errors: list[BaseException] = []
    with BinanceEmulator(ping_interval=None) as emu:
        trades = TradeIds()
        with binance.connect(
            ["btcusdt@aggTrade"],
            url=emu.url,
            on_message=trades,
            on_error=lambda c, e: errors.append(e),
            max_connection_age=ms(400),
            **FAST,
        ) as client:
            count = 600
            feed = emu.start_trades("btcusdt@aggTrade", interval=ms(3), count=count)
            stop = threading.Event()
            # Notices to any open connection (the current one, one being
            # replaced, a rotation's candidate), each cut a second later: a
            # storm, yet within the 4 rotations a second the limiter allows.
            while feed.running and not stop.wait(rng.uniform(ms(150), ms(400))):
                open_now = emu.connections
                if open_now:
                    emu.server_shutdown(rng.choice(open_now), close_after=ms(1000))
            assert wait_until(lambda: not trades.missing(count), 5), trades.missing(count)[:20]
            assert client.get_state_metrics()["reconnects"] == 0
            assert client.get_state() == zw.ConnectionState.CONNECTED
            assert wait_until(lambda: len(emu.connections) == 1, 5)
        assert emu.connection_count >= 4
    assert errors == [] and emu.violations == []
