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
