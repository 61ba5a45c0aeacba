"""telemetry: attach, execute, detach, and broken handlers."""

from __future__ import annotations

import logging

import pytest

from zen_websocket import telemetry

EVENT = ("zen_websocket", "test", "thing")


@pytest.fixture(autouse=True)
def clean():
    yield
    for entry in telemetry.list_handlers(("zen_websocket", "test")):
        telemetry.detach(entry["id"])


def test_handler_receives_event_measurements_metadata_config():
    seen = []
    telemetry.attach("t1", EVENT, lambda *args: seen.append(args), config={"k": 1})
    telemetry.execute(EVENT, {"size": 3}, {"name": "a"})
    assert seen == [(EVENT, {"size": 3}, {"name": "a"}, {"k": 1})]


def test_duplicate_id_is_rejected_and_detach_stops_delivery():
    seen = []
    telemetry.attach("t2", EVENT, lambda *args: seen.append(1))
    with pytest.raises(ValueError):
        telemetry.attach("t2", EVENT, lambda *args: None)
    assert telemetry.detach("t2") is True
    assert telemetry.detach("t2") is False
    telemetry.execute(EVENT, {}, {})
    assert seen == []


def test_attach_many_and_list_handlers():
    other = ("zen_websocket", "test", "other")
    telemetry.attach_many("t3", [EVENT, other], lambda *args: None)
    events = {entry["event"] for entry in telemetry.list_handlers(("zen_websocket", "test"))}
    assert events == {EVENT, other}
    assert telemetry.handlers_for(("zen_websocket", "test", "none")) is None


def test_raising_handler_is_detached_and_logged(caplog):
    calls = []

    def bad(*args):
        calls.append(1)
        raise RuntimeError("boom")

    telemetry.attach("t4", EVENT, bad)
    with caplog.at_level(logging.ERROR, logger="zen_websocket.telemetry"):
        telemetry.execute(EVENT, {}, {})
        telemetry.execute(EVENT, {}, {})
    assert calls == [1]
    assert "t4" in caplog.text and "boom" in caplog.text
    assert telemetry.handlers_for(EVENT) is None
