"""One place for secrets and for text that came from the peer.

Everything that leaves the library as text (debug logs, recordings, reprs,
metrics, telemetry metadata, exception messages) passes through here first:

- :func:`redact_text` masks secret values in JSON text (a frame), even when
  the text is not valid JSON, then cuts it. Masking runs on the whole text
  before the cut, so a secret that crosses the cut never leaks its prefix.
- :func:`redact_json` does the same on a decoded value (a deep copy).
- :func:`redact_url` hides userinfo, query values and key-like path segments.
- :func:`redact_headers` hides header values.
- :func:`peer_text` makes server text safe for an exception message: masked,
  control characters escaped, bounded.

Which JSON keys are secret (case-insensitive; in a suffix, ``_`` may also be
written ``-`` or left out, so ``api_key`` covers ``apiKey`` and ``API-KEY``):

- exactly :data:`SECRET_KEYS`: ``sign`` (OKX login, https://www.okx.com/docs-v5/en/#overview-websocket-login)
  and ``key`` (Coinbase Exchange's authenticated subscribe,
  https://docs.cdp.coinbase.com/exchange/docs/websocket-auth);
- any key ending in one of :data:`SECRET_KEY_SUFFIXES`: ``token``
  (Deribit ``access_token``/``refresh_token``, https://docs.deribit.com/#public-auth;
  Kraken v2 ``token``), ``secret`` (Deribit ``client_secret``, ``apiSecret``
  of the Bybit SDKs), ``password``, ``passphrase`` (OKX, Coinbase),
  ``signature`` (Deribit ``client_signature`` grant, Binance WebSocket API
  https://developers.binance.com/docs/binance-spot-api-docs/web-socket-api),
  ``sig`` (Bitfinex ``authSig``), ``api_key`` (OKX/Binance ``apiKey``,
  ``X-MBX-APIKEY``), ``listen_key`` (Binance user data streams,
  ``listenKey``), ``private_key``, ``secret_key``, ``access_key``.

A masked value is a string or a number; ``null``, booleans, objects and
arrays under a secret key are left as they are (objects are still searched).
Keys are matched as written: a key with a character other than ASCII
letters, digits, ``_`` and ``-`` (or spelled with ``\\u`` escapes) is not
secret. Keys are also found one level down, in a JSON string that carries
JSON (``"{\\"client_secret\\":\\"...\\"}"``, a server quoting a request in
its error text).

Positional credentials have no key to recognise them by: in a message whose
``"op"`` starts with ``auth`` (Bybit v5 ``{"op":"auth","args":[api_key,
expires, signature]}``, https://bybit-exchange.github.io/docs/v5/ws/connect;
BitMEX ``authKeyExpires``), every string in ``"args"`` is masked and the
numbers (``expires``) are kept.

Masking is linear in the length of the text, whatever the text: candidate
keys are found with ``bytes.find`` and no pattern has a quantifier that can
backtrack. A 16 MiB frame takes about a tenth of a second.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = [
    "MASK",
    "SECRET_KEYS",
    "SECRET_KEY_SUFFIXES",
    "SHOWN_HEADERS",
    "is_secret_key",
    "peer_text",
    "redact_headers",
    "redact_json",
    "redact_text",
    "redact_url",
    "safe_text",
    "truncate",
]

#: What a secret is replaced with.
MASK = "***"

#: JSON keys masked when the whole key is one of these (case-insensitive).
SECRET_KEYS = ("sign", "key")

#: JSON keys masked when they end with one of these (case-insensitive; ``_``
#: may be ``-`` or absent).
SECRET_KEY_SUFFIXES = (
    "token",
    "secret",
    "password",
    "passphrase",
    "signature",
    "sig",
    "api_key",
    "listen_key",
    "private_key",
    "secret_key",
    "access_key",
)

#: Header names whose values :func:`redact_headers` shows (lower case);
#: every other value can carry a credential (Authorization, X-MBX-APIKEY,
#: cookies, and even Sec-WebSocket-Protocol, which some servers use for tokens).
SHOWN_HEADERS = frozenset({"host", "origin", "user-agent", "sec-websocket-version", "sec-websocket-extensions"})


def _alternatives(names: Iterable[str]) -> bytes:
    return "|".join(re.escape(name).replace("_", "[_-]?") for name in names).encode("ascii")


# The key rule as one pattern, shared by the frame scanner and is_secret_key()
# so that a frame and its decoded dict are masked alike. Bytes: ``\w`` and the
# case folding are ASCII-only, as JSON keys of every exchange are.
_KEY_RE = re.compile(
    rb"(?:[\w-]*(?:" + _alternatives(SECRET_KEY_SUFFIXES) + rb")|" + _alternatives(SECRET_KEYS) + rb")",
    re.IGNORECASE,
)

# Every name in SECRET_KEYS and SECRET_KEY_SUFFIXES contains one of these, so
# the scanner finds candidate keys with bytes.find (C speed) instead of trying
# a regex at every quote of a 16 MiB frame, which costs seconds.
_SCAN_WORDS = (b"token", b"secret", b"pass", b"sig", b"key")

# A JSON string: runs of plain characters separated by escapes. The unrolled
# form has exactly one way to match any text, so it cannot backtrack; an
# escape may be a lone backslash at the very end (text cut there), and the
# closing quote is optional so a value cut short is masked to the end.
_STRING = rb'"[^"\\]*(?:\\(?:.|\Z)[^"\\]*)*"?'
_NUMBER = rb"-?\d[\d.eE+-]*"
_VALUE_AFTER_KEY = re.compile(rb'"\s*:\s*(' + _STRING + rb"|" + _NUMBER + rb")", re.DOTALL)

# Inside a JSON string that carries JSON (a server echoing a request in its
# error text, recorded as a frame) the inner string is delimited by \" and
# read in outer escapes: a plain character or \n-like escape is one inner
# character, \\ is the inner backslash and takes the next inner character
# with it (so \\\" is an inner escaped quote). Each step is decided by the
# next two bytes: no backtracking.
_ESCAPED_STRING = rb'\\"(?:[^"\\]|\\[^"\\]|\\\\(?:[^"\\]|\\.))*(?:\\")?'
_VALUE_AFTER_ESCAPED_KEY = re.compile(rb'\\"\s*:\s*(' + _ESCAPED_STRING + rb"|" + _NUMBER + rb")", re.DOTALL)

_MASKED = b'"' + MASK.encode("ascii") + b'"'
_MASKED_ESCAPED = b'\\"' + MASK.encode("ascii") + b'\\"'

# Positional credentials: the "args" of an "op" that starts with "auth".
_AUTH_OP = re.compile(r"auth[A-Za-z0-9_]*")
_AUTH_MESSAGE = re.compile(rb'"op"\s*:\s*"auth[A-Za-z0-9_]*"')
_AUTH_ARGS = re.compile(rb'"args"\s*:\s*\[([^"\]]*(?:' + _STRING + rb'[^"\]]*)*)', re.DOTALL)
_ANY_STRING = re.compile(_STRING, re.DOTALL)

# Characters that would let peer text forge log lines or reorder what a
# terminal shows: C0/C1 controls, DEL, line/paragraph separators, bidi controls.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")

# A path segment that looks like a key rather than a word (a Binance listen
# key is 60 such characters; no channel or endpoint name is this long).
_KEY_LIKE = re.compile(r"[A-Za-z0-9_-]{32,}")


def is_secret_key(name: str) -> bool:
    """Whether the value of the JSON key ``name`` is masked (see the module docstring)."""
    return _KEY_RE.fullmatch(name.encode("utf-8", "surrogatepass")) is not None


def truncate(text: str, limit: int) -> str:
    """``text`` cut to its first ``limit`` characters, with a marker saying how many were cut.

    Args:
        text: any text.
        limit: how many characters to keep (>= 0).

    Returns:
        ``text`` itself when it is short enough, else ``text[:limit]``
        followed by ``…(+N chars)``.

    Raises:
        ValueError: ``limit`` is negative.
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    extra = len(text) - limit
    if extra <= 0:
        return text
    return f"{text[:limit]}…(+{extra} chars)"


def _key_value_spans(raw: bytes) -> list[tuple[int, int, bytes]]:
    """(start, end, replacement) of every value under a secret key in ``raw``.

    For each scan word, its occurrences are visited in order and ``pos`` only
    moves forward (each search starts where the previous one's string or
    value ended), so every byte is looked at a bounded number of times:
    linear in ``len(raw)`` whatever the input. A key found by two words
    gives the same span twice; :func:`redact_text` keeps the first.
    """
    low = raw.lower()
    spans: list[tuple[int, int, bytes]] = []
    for word in _SCAN_WORDS:
        pos = 0  # everything before pos is decided for this word
        hit = low.find(word)
        while hit >= 0:
            # The candidate's string ends at the next quote and starts at
            # the last quote before it.
            close = low.find(b'"', hit)
            if close < 0:
                break
            opening = low.rfind(b'"', pos, hit)
            pos = close
            escaped = raw[close - 1] == 0x5C  # a backslash: \"key\" inside a string
            if opening >= 0 and escaped == (opening > 0 and raw[opening - 1] == 0x5C):
                key = raw[opening + 1 : close - 1 if escaped else close]
                if _KEY_RE.fullmatch(key):
                    after = _VALUE_AFTER_ESCAPED_KEY if escaped else _VALUE_AFTER_KEY
                    match = after.match(raw, close - 1 if escaped else close)
                    if match:
                        spans.append((match.start(1), match.end(1), _MASKED_ESCAPED if escaped else _MASKED))
                        pos = match.end(1)
            hit = low.find(word, pos)
    return spans


def _auth_args_spans(raw: bytes) -> list[tuple[int, int, bytes]]:
    if not _AUTH_MESSAGE.search(raw):
        return []
    return [(m.start(1), m.end(1), _ANY_STRING.sub(_MASKED, m.group(1))) for m in _AUTH_ARGS.finditer(raw)]


def redact_text(text: str, limit: int | None = None) -> str:
    """``text`` (usually a JSON frame) with every secret value masked, then cut to ``limit``.

    Works on text that is not valid JSON or was cut short: a secret whose
    closing quote is missing is masked to the end. The whole text is masked
    before it is cut, in time linear in its length (about 10 ms per MiB).

    Args:
        text: the text to mask.
        limit: cut the masked text to this many characters (see
            :func:`truncate`); None keeps it whole.

    Returns:
        The masked (and possibly cut) text.
    """
    raw = text.encode("utf-8", "surrogatepass")
    spans = sorted(_key_value_spans(raw) + _auth_args_spans(raw))
    if spans:
        pieces: list[bytes] = []
        done = 0
        for start, end, replacement in spans:
            if start >= done:  # a span inside a masked one is already gone
                pieces += (raw[done:start], replacement)
                done = end
        pieces.append(raw[done:])
        text = b"".join(pieces).decode("utf-8", "surrogatepass")
    return text if limit is None else truncate(text, limit)


def redact_json(obj: Any) -> Any:
    """A deep copy of a decoded JSON value with every secret masked.

    Dict values under a secret key (strings and numbers) become ``"***"``;
    strings that contain JSON are masked with :func:`redact_text`; the string
    arguments of an ``auth*`` operation are masked. Tuples stay tuples; other
    objects are returned as they are.

    Args:
        obj: a value as ``json.loads`` returns it (or as a user passes it to send).

    Returns:
        The masked copy; ``obj`` itself is never modified.
    """
    if isinstance(obj, dict):
        op = obj.get("op")
        auth = isinstance(op, str) and _AUTH_OP.fullmatch(op) is not None
        copy: dict[Any, Any] = {}
        for key, value in obj.items():
            if isinstance(key, str) and is_secret_key(key) and _is_scalar(value):
                copy[key] = MASK
            elif auth and key == "args" and isinstance(value, list):
                copy[key] = [MASK if isinstance(item, str) else redact_json(item) for item in value]
            else:
                copy[key] = redact_json(value)
        return copy
    if isinstance(obj, list):
        return [redact_json(item) for item in obj]
    if isinstance(obj, tuple):
        return tuple(redact_json(item) for item in obj)
    if isinstance(obj, str) and '"' in obj:
        return redact_text(obj)
    return obj


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def redact_url(url: str) -> str:
    """``url`` as it may be shown: no userinfo, no query values, no key-like path segments.

    The scheme, host and a numeric port are kept (IPv6 hosts keep their
    brackets); every query value becomes ``***`` (names stay, unless they
    look like keys); a path segment of 32 or more characters from
    ``[A-Za-z0-9_-]`` (a Binance listen key in ``/ws/<listenKey>``) becomes
    ``***``; the fragment is dropped. Never raises: a value that is not a
    parsable URL string is shown as ``***``.

    Args:
        url: the URL, possibly with credentials in it.

    Returns:
        The URL with every credential hidden.
    """
    if not isinstance(url, str):
        return MASK
    try:
        parts = urlsplit(url)
    except ValueError:  # unbalanced IPv6 brackets and the like
        return MASK
    netloc = parts.netloc.rpartition("@")[2]
    if netloc.startswith("["):
        end = netloc.find("]") + 1
        host, port = netloc[:end], netloc[end + 1 :]
    else:
        host, _, port = netloc.partition(":")
    if port and not port.isdigit():
        # Not a port: most likely "user:password" with the "@" forgotten.
        port = MASK
    netloc = f"{host}:{port}" if port else host
    path = "/".join(_hide_key_like(segment) for segment in parts.path.split("/"))
    query = "&".join(_hide_query_value(pair) for pair in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, netloc, path, query, ""))


def _hide_key_like(segment: str) -> str:
    return MASK if _KEY_LIKE.fullmatch(segment) else segment


def _hide_query_value(pair: str) -> str:
    name, sep, _ = pair.partition("=")
    return f"{_hide_key_like(name)}={MASK}" if sep else _hide_key_like(name)


def redact_headers(headers: Mapping[str, str] | Iterable[tuple[str, str]] | Iterable[str]) -> dict[str, str]:
    """Header names with their values masked, except those in :data:`SHOWN_HEADERS`.

    Args:
        headers: a mapping, ``(name, value)`` pairs or ``"Name: value"`` lines.

    Returns:
        A new dict, name -> value or ``"***"``.
    """
    items: Iterable[Any] = headers.items() if isinstance(headers, Mapping) else headers
    shown: dict[str, str] = {}
    for item in items:
        if isinstance(item, str):
            name, _, value = item.partition(":")
            name, value = name.strip(), value.strip()
        else:
            name, value = item
        shown[name] = value if name.lower() in SHOWN_HEADERS else MASK
    return shown


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def safe_text(text: str, limit: int) -> str:
    """``text`` with control characters escaped, at most ``limit`` characters plus the cut marker.

    Escapes are counted in ``limit``, and the marker counts the characters of
    ``text`` that were left out. Nothing is masked: see :func:`peer_text`.

    Args:
        text: any text.
        limit: how many characters to show (>= 0).

    Returns:
        The escaped, bounded text.

    Raises:
        ValueError: ``limit`` is negative.
    """
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    head = text[:limit]
    if not _CONTROL.search(head):
        return truncate(text, limit)
    pieces: list[str] = []
    used = 0
    for char in head:
        piece = _CONTROL.sub(_escape, char)
        if used + len(piece) > limit:
            break
        pieces.append(piece)
        used += len(piece)
    left_out = len(text) - len(pieces)
    return "".join(pieces) + (f"…(+{left_out} chars)" if left_out else "")


def peer_text(text: Any, limit: int = 200) -> str:
    """Text that came from the peer, safe to put into an exception or a log line.

    Secrets are masked on the whole text first (:func:`redact_text`), then
    control characters are escaped and the result is cut (:func:`safe_text`).

    Args:
        text: the peer's text; anything else is shown with ``str()``.
        limit: how many characters to show.

    Returns:
        At most ``limit`` characters plus the cut marker.
    """
    return safe_text(redact_text(text if isinstance(text, str) else str(text)), limit)
