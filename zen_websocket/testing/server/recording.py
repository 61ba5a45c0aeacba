"""What clients sent: recorded messages and counters, waiting on them, and assertions."""

from __future__ import annotations

from .connection import MockConnection
from .core import _ServerCore
from .messages import Expected, Message, _short, message_matches

# Internal to the package: nothing here is public API.
__all__: list[str] = []


class _Recording(_ServerCore):
    """Recorded state of :class:`MockWebSocketServer` and the assertions on it."""

    @property
    def received(self) -> list[Message]:
        """Messages received from all clients, in order (a copy)."""
        with self._cond:
            return list(self._received)

    def clear_received(self) -> None:
        """Forget received messages (server-wide and per connection)."""
        with self._cond:
            self._received.clear()
            for conn in self._all:
                conn.received.clear()

    @property
    def all_connections(self) -> list[MockConnection]:
        """Every connection that completed the opening handshake, oldest first."""
        with self._cond:
            return list(self._all)

    @property
    def connection_count(self) -> int:
        """Number of accepted opening handshakes since start."""
        with self._cond:
            return self._connection_count

    @property
    def attempt_count(self) -> int:
        """Number of TCP connections accepted since start (including rejected handshakes)."""
        with self._cond:
            return self._attempt_count

    @property
    def rejected_count(self) -> int:
        """Number of opening handshakes answered with an HTTP error or reset."""
        with self._cond:
            return self._rejected_count

    def wait_for_message(self, expected: Expected, timeout: float = 1.0) -> Message | None:
        """Wait for a received message matching ``expected``; ``None`` on timeout.

        See :meth:`assert_message_sent` for what ``expected`` can be.
        """
        found: list[Message] = []

        def check() -> bool:
            for message in self._received:
                if message_matches(expected, message):
                    found.append(message)
                    return True
            return False

        self.wait_for(check, timeout)
        return found[0] if found else None

    def assert_message_sent(self, expected: Expected, timeout: float = 1.0) -> Message:
        """Assert that a client sent a message matching ``expected`` (waiting up to ``timeout``).

        Args:
            expected: An exact ``str``/``bytes``; a compiled regular expression
                (searched); a dict, matched partially against the message
                decoded as JSON (every key of ``expected`` must be present
                with an equal value, nested dicts matched the same way); or a
                predicate ``fn(message) -> bool`` (exceptions count as no match).
            timeout: Seconds to wait.

        Returns:
            The first matching message.

        Raises:
            AssertionError: Listing the messages received, if none matched.
        """
        message = self.wait_for_message(expected, timeout)
        if message is None:
            received = self.received
            shown = "\n".join(f"  {i}: {_short(m)}" for i, m in enumerate(received[-20:]))
            more = f" (last 20 of {len(received)})" if len(received) > 20 else ""
            raise AssertionError(
                f"no message matching {expected!r} within {timeout:g}s; received {len(received)}{more}:\n{shown or '  (nothing)'}"
            )
        return message

    def wait_for_connections(self, n: int = 1, timeout: float = 1.0) -> bool:
        """Wait until at least ``n`` connections are open at once; returns whether they are."""
        return self.wait_for(lambda: len(self.connections) >= n, timeout)
