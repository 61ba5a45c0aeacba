"""Fixtures of the hostile-peer suite: raw-socket servers that are always stopped."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.hostile.rawserver import EventLog, RawServer, Script


@pytest.fixture
def serve() -> Iterator[Callable[[Script], RawServer]]:
    """Start a :class:`RawServer` running ``script``; every server is stopped after the test.

    Stopping shuts the scripts' sockets down, which also unblocks a client
    thread stuck on a hostile peer, before the leaked-thread check runs.
    """
    servers: list[RawServer] = []

    def start(script: Script) -> RawServer:
        server = RawServer(script).start()
        servers.append(server)
        return server

    yield start
    for server in reversed(servers):
        server.stop()
    # A script that broke (not just lost its socket) means the exchange did
    # not go as the test assumed: say so, next to whatever the test reported.
    broken = [exc for server in servers for exc in server.errors if not isinstance(exc, OSError)]
    if broken:
        pytest.fail(f"server script failed: {broken[0]!r}", pytrace=False)


@pytest.fixture
def events() -> EventLog:
    """A fresh :class:`EventLog`; pass ``**events.options()`` to the client."""
    return EventLog()
