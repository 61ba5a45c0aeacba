"""Local resource exhaustion is named at once, not retried silently (a real EMFILE, in a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import zen_websocket as zw
from zen_websocket.errors import categorize, connect_reason
from zen_websocket.testing import MockWebSocketServer


def test_out_of_file_descriptors_fails_the_first_connect_at_once_and_says_why():
    with MockWebSocketServer() as server:
        code = textwrap.dedent(
            f"""
            import resource, time
            import zen_websocket as zw
            clients = []
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
            started = None
            try:
                for _ in range(200):
                    started = time.monotonic()
                    clients.append(zw.connect({server.url!r}, heartbeat_config=None, retry_count=3, retry_delay=1.0))
            except zw.ConnectError as exc:
                print("reason", exc.reason)
                print("attempts", exc.attempts)
                print("seconds", round(time.monotonic() - started, 3))
                print("message", exc)
            finally:
                resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
                for client in clients:
                    client.close()
            """
        )
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert lines["reason"] == "resource_exhausted"
    assert lines["attempts"] == "1"  # fatal: not retried for seconds
    assert float(lines["seconds"]) < 1.0
    assert "ulimit -n" in lines["message"]


def test_resource_errnos_are_named_and_fatal():
    import errno

    for number in (errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS):
        exc = OSError(number, os.strerror(number))
        assert connect_reason(exc) == "resource_exhausted"
        assert categorize(zw.ConnectError("x", reason="resource_exhausted")) == "fatal"
    assert connect_reason(OSError(errno.ECONNRESET, "reset")) == "error"
