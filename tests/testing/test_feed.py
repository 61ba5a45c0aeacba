"""SequencedFeed: numbered notifications per connection, and the gap check."""

from __future__ import annotations

import json

from websockets.sync.client import connect

from tests.timeunit import ms, wait_until
from zen_websocket.testing import SequencedFeed, gaps


def test_feed_numbers_each_connection_from_one_for_its_channels():
    with SequencedFeed(interval=ms(2)) as feed:
        with connect(feed.url) as ws:
            ws.send(
                json.dumps({"jsonrpc": "2.0", "id": 1, "method": "public/subscribe", "params": {"channels": ["a"]}})
            )
            assert json.loads(ws.recv(2)) == {"jsonrpc": "2.0", "id": 1, "result": ["a"]}
            first = [json.loads(ws.recv(2))["params"] for _ in range(3)]
        assert [p["data"]["seq"] for p in first] == [1, 2, 3]
        assert {p["channel"] for p in first} == {"a"}
        conn_id = first[0]["data"]["conn"]
        assert feed.channels(conn_id) == {"a"}
        assert feed.restored_at(conn_id, ["a"]) is not None
        assert feed.restored_at(conn_id, ["a", "b"]) is None
        with connect(feed.url) as ws:
            assert wait_until(lambda: len(feed.connections) == 1)
            ws.send(
                json.dumps({"jsonrpc": "2.0", "id": 2, "method": "public/subscribe", "params": {"channels": ["b"]}})
            )
            ws.recv(2)
            second = json.loads(ws.recv(2))["params"]["data"]
        assert second["seq"] == 1 and second["conn"] != conn_id
        assert feed.sent[conn_id] >= 3


def test_gaps_reports_only_broken_sequences():
    assert gaps({1: [1, 2, 3], 2: []}) == {}
    assert gaps({1: [1, 3], 2: [2, 1], 3: [1, 2]}) == {1: [1, 3], 2: [2, 1]}
