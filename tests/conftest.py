from __future__ import annotations

import threading
import time

import pytest


def _zw_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("zen-ws-")}


@pytest.fixture(autouse=True)
def no_leaked_threads():
    """Every test must leave no zen_websocket thread behind."""
    before = _zw_threads()
    yield
    deadline = time.monotonic() + 2.0
    leaked = _zw_threads() - before
    while leaked and time.monotonic() < deadline:
        time.sleep(0.01)
        leaked = {t for t in leaked if t.is_alive()}
    assert not leaked, f"threads leaked: {sorted(t.name for t in leaked)}"


@pytest.fixture
def echo_server():
    """A MockWebSocketServer on loopback that echoes every message."""
    from zen_websocket.testing import MockWebSocketServer

    with MockWebSocketServer(echo=True) as server:
        yield server


@pytest.fixture
def server():
    """A MockWebSocketServer on loopback that only records."""
    from zen_websocket.testing import MockWebSocketServer

    with MockWebSocketServer() as srv:
        yield srv
