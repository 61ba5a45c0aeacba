"""The ``zen-websocket`` command (also ``python -m zen_websocket``).

Three subcommands:

- ``tail URL``: connect, optionally subscribe, and print every message on
  its own line to stdout until ``--count`` messages or ``--seconds`` have
  passed (or Ctrl-C). Status lines and a closing summary go to stderr, so
  ``zen-websocket tail ... | jq`` sees only messages.
- ``replay FILE``: print the incoming messages of a ``record_to`` recording.
- ``serve FILE``: serve a recording's incoming messages to every client that
  connects, on 127.0.0.1 (needs the ``testing`` extra).

Exit status: 0 when done, 1 with a one-line error (cannot connect, the
connection ended for good, an unreadable file), 2 for a usage error, 130 on
Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from . import __version__, recorder
from .client import Client
from .errors import ConfigError, ConnectError, ConnectionClosed
from .redact import redact_url

__all__ = ["main"]

PROG = "zen-websocket"

# Exit statuses (130 = 128 + SIGINT, what shells report for Ctrl-C).
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

EPILOG = """\
examples:
  zen-websocket tail wss://test.deribit.com/ws/api/v2 --subscribe deribit_price_index.btc_usd --heartbeat deribit
  zen-websocket tail "wss://stream.binance.com:9443/stream?streams=btcusdt@trade" --count 10
  zen-websocket tail ws://127.0.0.1:8765 --seconds 60 --record session.jsonl
  zen-websocket replay session.jsonl --speed 10
  zen-websocket serve session.jsonl --port 8765

Messages go to stdout, one per line (text as received, JSON spread over several
lines compacted, binary as "base64:..."); status and the summary go to stderr.
Exit status: 0 done, 1 error (one line on stderr), 2 usage, 130 Ctrl-C.
"""


# ---------------------------------------------------------------------------
# argument parsing


def _whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: a whole number of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}")
        return value

    return parse


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``zen-websocket`` (its ``--help`` has examples)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Tail a WebSocket feed, replay a recording, or serve one back.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    tail = commands.add_parser(
        "tail",
        help="print a feed's messages, one per line",
        description="Connect to URL, subscribe, and print every message on its own line.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tail.add_argument("url", metavar="URL", help="ws:// or wss:// URL")
    tail.add_argument(
        "--subscribe",
        "-s",
        metavar="CHANNEL",
        action="append",
        default=[],
        help="channel to subscribe to (repeat for several)",
    )
    tail.add_argument(
        "--format",
        choices=("deribit", "binance"),
        default="deribit",
        help="subscription dialect (default: deribit)",
    )
    tail.add_argument(
        "--heartbeat",
        choices=("ping", "deribit", "none"),
        default="ping",
        help="keep-alive: WebSocket pings, Deribit's public/set_heartbeat, or none (default: ping)",
    )
    tail.add_argument(
        "--heartbeat-interval",
        type=_seconds,
        default=30.0,
        metavar="S",
        help="seconds between heartbeats (default: 30; Deribit's minimum is 10)",
    )
    tail.add_argument("--count", "-n", type=_whole_number(1), metavar="N", help="stop after N messages")
    tail.add_argument("--seconds", type=_seconds, metavar="S", help="stop after S seconds")
    tail.add_argument("--record", metavar="FILE", help="also record every frame to FILE (JSON lines)")
    tail.add_argument(
        "--header",
        "-H",
        type=_header,
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="extra handshake header (repeatable; values are never printed)",
    )
    tail.add_argument("--timeout", type=_seconds, default=5.0, metavar="S", help="connect timeout (default: 5)")
    tail.add_argument(
        "--retry-count",
        type=_whole_number(0),
        default=3,
        metavar="N",
        help="retries before giving up, when connecting and after a loss (default: 3)",
    )
    tail.add_argument("--quiet", "-q", action="store_true", help="no status lines, only errors and messages")
    tail.add_argument("--verbose", "-v", action="store_true", help="log the library's INFO messages to stderr")

    replay = commands.add_parser(
        "replay",
        help="print a recording's incoming messages",
        description="Print the incoming messages of a record_to recording, one per line.",
    )
    replay.add_argument("file", metavar="FILE", help="a recording (record_to= or tail --record)")
    replay.add_argument(
        "--speed",
        type=_seconds,
        metavar="X",
        help="keep the recorded gaps, X times faster (default: print at once)",
    )

    serve = commands.add_parser(
        "serve",
        help="serve a recording to clients on 127.0.0.1",
        description="Serve a recording's incoming messages to every client that connects (loopback only).",
    )
    serve.add_argument("file", metavar="FILE", help="a recording (record_to= or tail --record)")
    serve.add_argument(
        "--port",
        type=_whole_number(0),
        default=0,
        metavar="P",
        help="port on 127.0.0.1 (default: 0, a free port; the URL is printed)",
    )
    serve.add_argument(
        "--speed",
        type=_seconds,
        metavar="X",
        help="keep the recorded gaps, X times faster (default: send at once)",
    )
    serve.add_argument("--seconds", type=_seconds, metavar="S", help="stop serving after S seconds")
    return parser


# ---------------------------------------------------------------------------
# output


class _Output:
    """Messages to stdout, status and errors to stderr, each line flushed."""

    def __init__(self, quiet: bool = False, stdout: TextIO | None = None, stderr: TextIO | None = None) -> None:
        self.quiet = quiet
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.pipe_closed = False  # the reader of stdout went away (| head)
        self.count = 0  # messages written to stdout
        self.size = 0  # their size in bytes
        self._lock = threading.Lock()  # status lines come from library threads too

    def message(self, data: Any) -> None:
        """Print one message on one line, and count it."""
        line, size = _one_line(data)
        counted = False
        try:
            self.stdout.write(line + "\n")
            # Counted right after the write: a Ctrl-C lands between bytecodes,
            # and the summary should match what was printed.
            self.count += 1
            self.size += size
            counted = True
            self.stdout.flush()
        except BrokenPipeError:
            self.pipe_closed = True
            if counted:  # written to our buffer, never read
                self.count -= 1
                self.size -= size

    def status(self, text: str) -> None:
        if not self.quiet:
            self._err(text)

    def error(self, text: str) -> None:
        self._err(text)

    def _err(self, text: str) -> None:
        with self._lock:
            try:
                self.stderr.write(f"{PROG}: {text}\n")
                self.stderr.flush()
            except (BrokenPipeError, ValueError):
                pass


_LAYOUT = re.compile(r"[\r\n]+[ \t]*")


def _one_line(data: Any) -> tuple[str, int]:
    """The line printed for a message, and the message's size in bytes."""
    if isinstance(data, (bytes, bytearray)):
        return "base64:" + base64.b64encode(data).decode("ascii"), len(data)
    text = str(data)
    size = len(text.encode("utf-8", "surrogatepass"))
    if "\n" in text or "\r" in text:
        try:
            json.loads(text)
        except ValueError:
            text = text.replace("\r", "\\r").replace("\n", "\\n")
        else:
            # Pretty-printed JSON: a JSON string cannot hold a raw line break,
            # so every break and the indentation after it are layout. Dropping
            # them keeps every token as sent (numbers are not re-formatted).
            text = _LAYOUT.sub("", text)
    return text, size


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _error_line(exc: BaseException) -> str:
    """One line, whatever the exception's text holds."""
    return " ".join(str(exc).split()) or type(exc).__name__


# ---------------------------------------------------------------------------
# tail


def _tail(args: argparse.Namespace, out: _Output) -> int:
    heartbeat: dict[str, Any] | None = None
    if args.heartbeat != "none":
        heartbeat = {"type": args.heartbeat, "interval": args.heartbeat_interval}
    options: dict[str, Any] = {
        "subscription_format": args.format,
        "heartbeat_config": heartbeat,
        "timeout": args.timeout,
        "retry_count": args.retry_count,
        "headers": dict(args.header),
        "record_to": args.record,
        "on_disconnect": lambda client, reason: out.status(f"connection lost ({reason}); reconnecting"),
        "on_reconnect": lambda client, attempt: out.status(f"reconnected ({_plural(attempt, 'attempt')})"),
        "on_error": lambda client, exc: out.error(f"error: {_error_line(exc)}"),
    }
    try:
        client = Client(args.url, **options)
    except ConfigError as exc:
        out.error(f"error: {_error_line(exc)}")
        return EXIT_USAGE
    shown = redact_url(args.url)
    started = time.monotonic()
    status = EXIT_OK
    connected = False
    try:
        out.status(f"connecting to {shown}")
        try:
            client.connect()
        except (ConnectError, ConfigError) as exc:
            out.error(_error_line(exc))
            return EXIT_ERROR
        connected = True
        out.status(f"connected to {shown}")
        if args.subscribe:
            # The acknowledgement is checked in the background: a refused
            # channel is reported through on_error, the rest keep flowing.
            client.subscribe(args.subscribe)
            out.status(f"subscribed to {', '.join(args.subscribe)}")
        deadline = None if args.seconds is None else started + args.seconds
        while args.count is None or out.count < args.count:
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                break
            try:
                message = client.recv(timeout)
            except TimeoutError:
                break
            except ConnectionClosed as exc:
                out.error(f"the connection ended: {exc.reason or 'closed'}")
                status = EXIT_ERROR
                break
            out.message(message)
            if out.pipe_closed:
                break  # `tail ... | head`: the reader has what it wanted
    except KeyboardInterrupt:
        status = EXIT_INTERRUPTED
    finally:
        try:
            client.close()
        except KeyboardInterrupt:  # a second Ctrl-C while closing: leave at once
            status = EXIT_INTERRUPTED
        if connected:
            reconnects = client.get_state_metrics()["reconnects"]
            out.status(
                f"{_plural(out.count, 'message')}, {_plural(out.size, 'byte')}, {_plural(reconnects, 'reconnect')} "
                f"in {time.monotonic() - started:.1f}s"
            )
    if out.pipe_closed:
        _silence_stdout()
    return status


def _silence_stdout() -> None:
    """After the reader of stdout went away, keep the interpreter's final flush from failing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


# ---------------------------------------------------------------------------
# replay and serve


def _replay(args: argparse.Namespace, out: _Output) -> int:
    def show(record: dict[str, Any]) -> None:
        if record.get("dir") == "in" and record.get("type") in ("text", "binary") and not out.pipe_closed:
            out.message(record["data"])

    try:
        total = recorder.replay(args.file, show, realtime=args.speed is not None, speed=args.speed or 1.0)
    except OSError as exc:
        out.error(f"cannot read {args.file}: {exc.strerror or exc}")
        return EXIT_ERROR
    except (ValueError, KeyError, TypeError) as exc:
        out.error(f"{args.file} is not a recording (JSON lines from record_to=): {_error_line(exc)}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if out.pipe_closed:
        _silence_stdout()
    out.status(f"{_plural(out.count, 'message')}, {_plural(out.size, 'byte')} (of {_plural(total, 'record')})")
    return EXIT_OK


def _serve(args: argparse.Namespace, out: _Output) -> int:
    try:
        from .testing import MockWebSocketServer
    except ImportError as exc:
        out.error(f"serve needs the testing extra: {exc}")
        return EXIT_ERROR
    server = MockWebSocketServer(port=args.port)
    try:
        frames = server.serve_recording(args.file, realtime=args.speed is not None, speed=args.speed or 1.0)
    except OSError as exc:
        out.error(f"cannot read {args.file}: {exc.strerror or exc}")
        return EXIT_ERROR
    except (ValueError, KeyError, TypeError) as exc:
        out.error(f"{args.file} is not a recording (JSON lines from record_to=): {_error_line(exc)}")
        return EXIT_ERROR
    try:
        server.start()
    except OSError as exc:
        out.error(f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}")
        return EXIT_ERROR
    started = time.monotonic()
    status = EXIT_OK
    try:
        out.status(f"serving {_plural(frames, 'message')} from {args.file} at {server.url} (Ctrl-C to stop)")
        stop = threading.Event()  # never set: waits are bounded so Ctrl-C is seen at once
        while args.seconds is None or time.monotonic() - started < args.seconds:
            left = 0.25 if args.seconds is None else min(0.25, args.seconds - (time.monotonic() - started))
            stop.wait(max(0.0, left))
    except KeyboardInterrupt:
        status = EXIT_INTERRUPTED
    finally:
        connections = server.connection_count
        server.stop()
        out.status(f"served {_plural(connections, 'connection')} in {time.monotonic() - started:.1f}s")
    return status


# ---------------------------------------------------------------------------
# entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``zen-websocket`` with ``argv`` (default: the command line); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    for stream in (sys.stdout, sys.stderr):
        # A message in any script must not kill the command on a non-UTF-8 terminal.
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    out = _Output(quiet=getattr(args, "quiet", False))
    if getattr(args, "verbose", False):
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    try:
        if args.command == "tail":
            return _tail(args, out)
        if args.command == "replay":
            return _replay(args, out)
        return _serve(args, out)
    except KeyboardInterrupt:  # between the handlers above: still quiet
        return EXIT_INTERRUPTED
