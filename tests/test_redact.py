"""zen_websocket.redact: secrets never leave the library, whatever the text's shape or length."""

from __future__ import annotations

import copy
import json
import time

import pytest

from tests.timeunit import SCALE
from zen_websocket import redact
from zen_websocket.redact import (
    MASK,
    SECRET_KEY_SUFFIXES,
    SECRET_KEYS,
    is_secret_key,
    peer_text,
    redact_headers,
    redact_json,
    redact_text,
    redact_url,
    safe_text,
    truncate,
)

# A real Deribit refresh token is 214 characters long.
TOKEN = "".join(chr(ord("a") + (i * 7) % 26) for i in range(214))


def leaks(secret: str, text: str, run: int = 8) -> bool:
    """Whether any ``run`` consecutive characters of ``secret`` appear in ``text``."""
    return any(secret[i : i + run] in text for i in range(len(secret) - run + 1))


# -- which keys are secret ---------------------------------------------------

SECRET_NAMES = [
    # Deribit public/auth request and result
    "client_secret",
    "access_token",
    "refresh_token",
    "signature",
    # OKX login, Coinbase, Binance WebSocket API
    "sign",
    "passphrase",
    "apiKey",
    "api_key",
    "API-KEY",
    "X-MBX-APIKEY",
    "key",
    # Bybit SDKs, Binance user data, generic
    "apiSecret",
    "api_secret",
    "secret",
    "password",
    "userPassword",
    "listenKey",
    "listen_key",
    "token",
    "sessionToken",
    "TOKEN",
    "authSig",
    "sig",
    "private_key",
    "privateKey",
    "secret_key",
    "secretKey",
    "access_key",
    "accessKey",
    "client-secret",
]

PUBLIC_NAMES = [
    "tokens",
    "token_type",
    "keyboard",
    "monkey",
    "signed",
    "signal",
    "passive",
    "secrets",
    "expires_in",
    "client_id",
    "timestamp",
    "instrument_name",
    "public key",  # a space: not a word, never secret
    "api.key",
    "",
]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_each_secret_key_has_its_string_value_masked(name):
    assert is_secret_key(name)
    assert redact_text(f'{{"{name}":"v4lue","n":1}}') == f'{{"{name}":"***","n":1}}'
    assert redact_json({name: "v4lue", "n": 1}) == {name: MASK, "n": 1}


@pytest.mark.parametrize("name", PUBLIC_NAMES)
def test_other_keys_are_kept(name):
    assert not is_secret_key(name)
    text = f'{{"{name}":"v4lue"}}'
    assert redact_text(text) == text
    assert redact_json({name: "v4lue"}) == {name: "v4lue"}


def test_the_public_names():
    assert redact.__all__ == [
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
    assert all(callable(getattr(redact, name)) for name in redact.__all__ if name.islower())
    assert MASK == "***"


def test_the_documented_key_lists():
    assert SECRET_KEYS == ("sign", "key")
    assert SECRET_KEY_SUFFIXES == (
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


def test_every_secret_name_contains_a_scan_word():
    """The fast scanner only looks where a scan word is: every rule must contain one."""
    for name in SECRET_KEYS + SECRET_KEY_SUFFIXES:
        assert any(word.decode() in name for word in redact._SCAN_WORDS), name


def test_an_underscore_in_a_suffix_may_be_a_dash_or_absent_but_nothing_else():
    assert is_secret_key("api-key") and is_secret_key("apikey") and is_secret_key("api_key")
    assert not is_secret_key("api__key")
    assert not is_secret_key("api.key")
    assert not is_secret_key("keys")
    assert not is_secret_key("signs")
    assert not is_secret_key("xkey")  # "key" alone is exact, not a suffix
    assert not is_secret_key("xsign")


def test_is_secret_key_takes_any_str():
    assert not is_secret_key("caf\u00e9_token")  # non-ASCII letters are not word characters here
    assert not is_secret_key("\udcff")  # a lone surrogate does not raise


# -- redact_text: values -----------------------------------------------------


def test_deribit_auth_request_and_response_are_masked():
    request = (
        '{"jsonrpc":"2.0","id":1,"method":"public/auth","params":'
        '{"grant_type":"client_credentials","client_id":"abc","client_secret":"s3cr3t"}}'
    )
    assert redact_text(request) == (
        '{"jsonrpc":"2.0","id":1,"method":"public/auth","params":'
        '{"grant_type":"client_credentials","client_id":"abc","client_secret":"***"}}'
    )
    response = json.dumps({"result": {"access_token": TOKEN, "refresh_token": TOKEN, "token_type": "bearer"}})
    assert redact_text(response) == (
        '{"result": {"access_token": "***", "refresh_token": "***", "token_type": "bearer"}}'
    )


def test_okx_login_args_are_masked_except_the_timestamp():
    login = '{"op":"login","args":[{"apiKey":"K1","passphrase":"P1","timestamp":"1538054050","sign":"S1"}]}'
    assert redact_text(login) == (
        '{"op":"login","args":[{"apiKey":"***","passphrase":"***","timestamp":"1538054050","sign":"***"}]}'
    )


@pytest.mark.parametrize(
    ("frame", "expected"),
    [
        (
            '{"req_id":"1","op":"auth","args":["BYBITKEY",1662350400000,"BYBITSIG"]}',
            '{"req_id":"1","op":"auth","args":["***",1662350400000,"***"]}',
        ),
        # the op may come after the args: masking sees the whole frame
        (
            '{"args": ["BYBITKEY", 1662350400000, "BYBITSIG"], "op": "auth"}',
            '{"args": ["***", 1662350400000, "***"], "op": "auth"}',
        ),
        # BitMEX
        (
            '{"op":"authKeyExpires","args":["BMKEY",1518064236,"BMSIG"]}',
            '{"op":"authKeyExpires","args":["***",1518064236,"***"]}',
        ),
        # escaped quotes and a "]" inside an argument do not end it early
        (
            '{"op":"auth","args":["K\\"]EY",1,"SIG"]}',
            '{"op":"auth","args":["***",1,"***"]}',
        ),
        # an argument cut short is masked to the end
        ('{"op":"auth","args":["BYBITKEY",1,"BYBI', '{"op":"auth","args":["***",1,"***"'),
    ],
)
def test_positional_auth_args_are_masked(frame, expected):
    assert redact_text(frame) == expected


@pytest.mark.parametrize(
    "frame",
    [
        '{"op":"subscribe","args":["orderbook.1.BTCUSDT"]}',
        '{"op":"Auth","args":["kept"]}',  # the op is matched as Bybit and BitMEX write it
        '{"op":"xauth","args":["kept"]}',
        '{"op":"auth","arguments":["kept"]}',
        '{"op": 1, "args": ["kept"]}',
    ],
)
def test_args_of_other_operations_are_kept(frame):
    assert redact_text(frame) == frame


def test_numbers_under_secret_keys_are_masked_and_other_literals_kept():
    text = '{"password": 123456, "Passphrase":-1.5e3, "token": null, "key": true, "sign": {"a": 1}, "secret": [1]}'
    assert redact_text(text) == (
        '{"password": "***", "Passphrase":"***", "token": null, "key": true, "sign": {"a": 1}, "secret": [1]}'
    )


def test_objects_under_a_secret_key_are_still_searched():
    assert redact_text('{"key":{"token":"x","n":"y"}}') == '{"key":{"token":"***","n":"y"}}'


def test_whitespace_around_the_colon_is_allowed():
    assert redact_text('{"token" \n:\t "x", "n": 1}') == '{"token" \n:\t "***", "n": 1}'


def test_escaped_quotes_and_backslashes_inside_a_value_are_masked_with_it():
    text = '{"apiSecret":"a\\"b\\\\","next":"ok"}'
    assert json.loads(text)["apiSecret"] == 'a"b\\'
    assert redact_text(text) == '{"apiSecret":"***","next":"ok"}'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"token":"abcdefgh', '{"token":"***"'),
        ('{"token":"abc\\', '{"token":"***"'),
        ('{"token":"abc\\"de', '{"token":"***"'),
        ('{"token":12', '{"token":"***"'),
        ('{"token":', '{"token":'),
        ('{"token"', '{"token"'),
        ('{"tok', '{"tok'),
    ],
)
def test_a_value_cut_short_is_masked_to_the_end(text, expected):
    assert redact_text(text) == expected


def test_text_that_is_not_json_is_masked_where_it_has_key_value_pairs():
    text = 'auth failed for token=abc; got "key" : "v" and "sign":"x" then "key" alone'
    assert redact_text(text) == 'auth failed for token=abc; got "key" : "***" and "sign":"***" then "key" alone'


def test_key_names_used_as_values_are_not_keys():
    for text in ('{"type":"token","x":"y"}', '{"a":["key","sig"]}', '"key"', "key", 'token"', '{"note":"token\\":1"}'):
        assert redact_text(text) == text


def test_several_secrets_and_a_key_matching_two_rules_are_each_masked_once():
    text = '{"secret_token":"a","x":1,"sig":"b","secretKey":"c","last":"d"}'
    assert redact_text(text) == '{"secret_token":"***","x":1,"sig":"***","secretKey":"***","last":"d"}'


def test_json_quoted_inside_a_string_is_masked_too():
    """A server quoting the request in its error text: the secret is one level down."""
    inner = {"client_secret": 'SEC"RET\\', "x": 1, "password": 42}
    frame = json.dumps({"error": {"message": "bad request: " + json.dumps(inner)}})
    assert redact_text(frame) == (
        '{"error": {"message": "bad request: {\\"client_secret\\": \\"***\\", \\"x\\": 1, \\"password\\": \\"***\\"}"}}'
    )
    assert "SEC" not in redact_text(frame)


def test_an_escaped_value_cut_short_is_masked_to_the_end():
    assert redact_text('{"m":"{\\"token\\":\\"abcdef') == '{"m":"{\\"token\\":\\"***\\"'


def test_non_ascii_text_around_secrets_is_kept_exactly():
    text = '{"name":"caf\u00e9 \u20ac \U0001f600","token":"x\u00e9y","tail":"\u00fc"}'
    assert redact_text(text) == '{"name":"caf\u00e9 \u20ac \U0001f600","token":"***","tail":"\u00fc"}'


def test_lone_surrogates_survive():
    text = '{"a":"\udcff","token":"x"}'
    assert redact_text(text) == '{"a":"\udcff","token":"***"}'


def test_secrets_at_the_very_start_and_after_a_bare_word_are_found():
    assert redact_text('"token":"x"') == '"token":"***"'
    assert redact_text('key: "a", "key": "v"') == 'key: "a", "key": "***"'
    assert redact_text('\\"token\\":\\"abc\\"') == '\\"token\\":\\"***\\"'


def test_an_escaped_closing_quote_needs_an_escaped_opening_quote():
    for text in ('"token\\":\\"abc\\', 'x"token\\":\\"abc\\"'):
        assert redact_text(text) == text


def test_text_without_secrets_is_returned_unchanged():
    text = '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"book.BTC-PERPETUAL.raw"}}'
    assert redact_text(text) is text


# -- redact_text: the cut ------------------------------------------------------


@pytest.mark.parametrize("offset", [-214, -150, -20, -1, 0, 1])
def test_a_token_straddling_the_500_char_cut_never_leaks(offset):
    """The old debug log cut at 500 characters first and leaked 194 characters of a refresh token."""
    head = '{"jsonrpc":"2.0","id":9,"result":{"pad":"'
    prefix = '","refresh_token":"'
    pad = "p" * (500 + offset - len(head) - len(prefix))
    frame = f'{head}{pad}{prefix}{TOKEN}","expires_in":900,"scope":"{"s" * 500}"}}}}'
    assert frame.index(TOKEN) == 500 + offset
    shown = redact_text(frame, 500)
    assert not leaks(TOKEN, shown)
    masked = redact_text(frame)
    assert masked == f'{head}{pad}{prefix[:-1]}"***","expires_in":900,"scope":"{"s" * 500}"}}}}'
    assert shown == masked[:500] + f"…(+{len(masked) - 500} chars)"


def test_the_limit_cuts_after_masking():
    assert redact_text('{"token":"abcdef","x":"yz"}', 12) == '{"token":"**…(+12 chars)'
    assert redact_text('{"a":1}', 7) == '{"a":1}'
    assert redact_text('{"a":1}', 6) == '{"a":1…(+1 chars)'
    assert redact_text('{"a":1}', None) == '{"a":1}'


def test_truncate():
    assert truncate("abcdef", 3) == "abc…(+3 chars)"
    assert truncate("abcdef", 6) == "abcdef"
    assert truncate("abcdef", 5) == "abcde…(+1 chars)"
    assert truncate("abcdef", 0) == "…(+6 chars)"
    assert truncate("", 0) == ""
    with pytest.raises(ValueError, match="limit must be >= 0, got -1"):
        truncate("abc", -1)


# -- redact_text: time ---------------------------------------------------------


def _cpu_seconds(fn, *args):
    # CPU time of this process, not wall time: other test runs sharing the
    # machine must not make a linear scan look slow.
    start = time.process_time()
    result = fn(*args)
    return time.process_time() - start, result


def test_a_16_mib_frame_is_masked_in_well_under_half_a_second():
    rows = json.dumps([{"price": 50000.5 + i, "amount": 1.25, "side": "buy", "tick_direction": 0} for i in range(200)])
    body = (rows + ",") * (16 * 1024 * 1024 // (len(rows) + 1))
    frame = f'{{"access_token":"{TOKEN}","rows":[{body}[]],"refresh_token":"{TOKEN}"}}'
    assert len(frame) >= 16 * 1024 * 1024 - 2 * len(rows)
    seconds, masked = _cpu_seconds(redact_text, frame)
    assert seconds < 0.5 * SCALE, f"{seconds:.3f}s"
    assert masked.startswith('{"access_token":"***","rows":[[{"price": 50000.5, ')
    assert masked.endswith('[]],"refresh_token":"***"}')
    assert len(masked) == len(frame) - 2 * (len(TOKEN) - len(MASK))


@pytest.mark.parametrize(
    "text",
    [
        '"' * 500_000,
        '"token' * 60_000,
        '{"token":"a",' * 50_000,
        '"key" : ' * 60_000,
        '{"token":"' + "\\" * 500_000,
        '{"p":"{\\"token\\":\\"' + '\\\\\\"' * 120_000,
        '{"op":"auth","args":[' + '"a",1,' * 100_000,
        '{"op":"auth","args":[' + '"' * 500_000,
        "tokensecretpasssigkey" * 25_000,
        "\\" * 500_000,
    ],
    ids=[
        "quotes",
        "open-keys",
        "many-secrets",
        "keys-spaced",
        "backslashes",
        "escaped",
        "auth",
        "auth-quotes",
        "words",
        "bare-backslashes",
    ],
)
def test_pathological_texts_are_masked_in_linear_time(text):
    """Up to 500 KB each: a backtracking or quadratic scan would take minutes (and hit the test timeout)."""
    seconds, masked = _cpu_seconds(redact_text, text)
    assert seconds < 2.0 * SCALE, f"{seconds:.3f}s"
    assert len(masked) <= len(text) + 3 * text.count('"')


# -- redact_json -------------------------------------------------------------


def test_redact_json_masks_a_deep_copy():
    value = {
        "op": "auth",
        "args": ["KEY", 1662350400000, "SIG", {"n": "kept"}],
        "nested": [{"client_secret": "x", "ok": "y", 3: "int key"}],
        "pair": ("a", {"token": 5}),
        "quoted": '{"token":"q"}',
        "plain": "no quotes token",
        "flag": True,
        "key": {"token": "z", "public": "p"},
        "password": False,
        "secret": None,
    }
    original = copy.deepcopy(value)
    assert redact_json(value) == {
        "op": "auth",
        "args": [MASK, 1662350400000, MASK, {"n": "kept"}],
        "nested": [{"client_secret": MASK, "ok": "y", 3: "int key"}],
        "pair": ("a", {"token": MASK}),
        "quoted": '{"token":"***"}',
        "plain": "no quotes token",
        "flag": True,
        "key": {"token": MASK, "public": "p"},
        "password": False,
        "secret": None,
    }
    assert value == original


def test_redact_json_args_only_for_auth_operations():
    assert redact_json({"op": "subscribe", "args": ["a"]}) == {"op": "subscribe", "args": ["a"]}
    assert redact_json({"op": "authKeyExpires", "args": ["a", 1.5]}) == {"op": "authKeyExpires", "args": [MASK, 1.5]}
    assert redact_json({"op": "Auth", "args": ["a"]}) == {"op": "Auth", "args": ["a"]}
    assert redact_json({"op": ["auth"], "args": ["a"]}) == {"op": ["auth"], "args": ["a"]}
    assert redact_json({"op": "auth", "args": "a"}) == {"op": "auth", "args": "a"}
    assert redact_json({"op": "auth", "argv": ["a"]}) == {"op": "auth", "argv": ["a"]}


def test_redact_json_leaves_scalars_alone():
    for value in (None, 1, 1.5, True, "text", b"bytes"):
        assert redact_json(value) == value
    assert redact_json([{"sign": 1.5}]) == [{"sign": MASK}]


def test_a_frame_and_its_decoded_value_are_masked_alike():
    frame = '{"op":"auth","args":["K",1,"S"],"params":{"apiKey":"a","signature":"s","n":2},"listenKey":"l"}'
    assert json.loads(redact_text(frame)) == redact_json(json.loads(frame))


# -- redact_url ----------------------------------------------------------------

LISTEN_KEY = "pqia91ma19a5s61cv6a81va65sdf19v8a65a1a5s61cv6a81va65sdf19v8a65a1"[:60]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("wss://user:pw123@host.example/ws", "wss://host.example/ws"),
        ("wss://user@host.example:9443/ws", "wss://host.example:9443/ws"),
        ("wss://host.example/ws?token=abc&stream=btc", "wss://host.example/ws?token=***&stream=***"),
        ("wss://host.example/ws?flag&token=", "wss://host.example/ws?flag&token=***"),
        (f"wss://fstream.binance.com/ws/{LISTEN_KEY}", "wss://fstream.binance.com/ws/***"),
        (f"wss://h/ws/{LISTEN_KEY}/btcusdt@trade", "wss://h/ws/***/btcusdt@trade"),
        (f"wss://h/ws?{LISTEN_KEY}", "wss://h/ws?***"),
        (f"wss://h/ws?{LISTEN_KEY}=1", "wss://h/ws?***=***"),
        ("wss://h/" + "a" * 31, "wss://h/" + "a" * 31),
        ("wss://h/" + "a" * 32, "wss://h/***"),
        ("wss://h/" + "a-_9" * 8, "wss://h/***"),
        ("wss://h/" + "a" * 31 + ".", "wss://h/" + "a" * 31 + "."),
        ("wss://h/ws/api/v2", "wss://h/ws/api/v2"),
        ("wss://u:p@[::1]:8443/ws?x=1", "wss://[::1]:8443/ws?x=***"),
        ("ws://[fe80::1]/", "ws://[fe80::1]/"),
        ("ws://127.0.0.1:8765", "ws://127.0.0.1:8765"),
        ("ws://Host.Example:80/Path", "ws://Host.Example:80/Path"),
        ("wss://h/ws#fragment", "wss://h/ws"),
        ("ws://user:pw123@/x?token=tok123", "ws:///x?token=***"),
        ("ws://user:pa55word/x", "ws://user:***/x"),
        ("ws://", "ws://"),
        ("127.0.0.1:80", "127.0.0.1:80"),
        ("ws://[::1/x", MASK),
        ("", ""),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_redact_url_of_a_non_string_shows_nothing():
    assert redact_url(None) == MASK  # type: ignore[arg-type]
    assert redact_url(lambda: "wss://h/?token=x") == MASK  # type: ignore[arg-type]


def test_config_still_exports_redact_url():
    from zen_websocket import config

    assert config.redact_url is redact_url


# -- redact_headers --------------------------------------------------------------


def test_redact_headers_shows_only_harmless_values():
    headers = {
        "Authorization": "Bearer T",
        "X-MBX-APIKEY": "K",
        "Cookie": "c=1",
        "Sec-WebSocket-Protocol": "token.abc",
        "User-Agent": "zen/1",
        "origin": "https://a",
        "Host": "h",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Extensions": "permessage-deflate",
    }
    assert redact_headers(headers) == {
        "Authorization": MASK,
        "X-MBX-APIKEY": MASK,
        "Cookie": MASK,
        "Sec-WebSocket-Protocol": MASK,
        "User-Agent": "zen/1",
        "origin": "https://a",
        "Host": "h",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Extensions": "permessage-deflate",
    }


def test_redact_headers_takes_pairs_and_lines():
    assert redact_headers([("Authorization", "x"), ("User-Agent", "u")]) == {"Authorization": MASK, "User-Agent": "u"}
    assert redact_headers(["Authorization: Bearer x", " User-Agent :  u/1 "]) == {
        "Authorization": MASK,
        "User-Agent": "u/1",
    }
    assert redact_headers({}) == {}


# -- safe_text and peer_text -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain", "plain"),
        ("a\nb", "a\\nb"),
        ("a\r\tb", "a\\r\\tb"),
        ("\x00\x1b[31m\x7f", "\\x00\\x1b[31m\\x7f"),
        ("\x85\x9f\xa0", "\\x85\\x9f\xa0"),
        (
            "\u2028\u2029\u202a\u202e\u200e\u200f\u2066\u2069",
            "\\u2028\\u2029\\u202a\\u202e\\u200e\\u200f\\u2066\\u2069",
        ),
        ("\u2027\u202f\u2065\u206a\u200d", "\u2027\u202f\u2065\u206a\u200d"),
        ("caf\u00e9 \U0001f600", "caf\u00e9 \U0001f600"),
    ],
)
def test_safe_text_escapes_control_characters(text, shown):
    assert safe_text(text, 100) == shown


def test_safe_text_counts_escapes_in_the_limit():
    assert safe_text("abc", 3) == "abc"
    assert safe_text("abc", 0) == "…(+3 chars)"
    assert safe_text("\n", 0) == "…(+1 chars)"
    assert safe_text("abcd", 3) == "abc…(+1 chars)"
    assert safe_text("a\nbc", 4) == "a\\nb…(+1 chars)"
    assert safe_text("a\nbc", 3) == "a\\n…(+2 chars)"
    assert safe_text("a\nbc", 2) == "a…(+3 chars)"
    assert safe_text("\n", 1) == "…(+1 chars)"
    assert safe_text("a\n", 3) == "a\\n"
    assert safe_text("\x1b" * 50, 8) == "\\x1b\\x1b…(+48 chars)"
    with pytest.raises(ValueError, match="limit must be >= 0, got -1"):
        safe_text("a\n", -1)
    with pytest.raises(ValueError, match="limit must be >= 0"):
        safe_text("ab", -1)


def test_safe_text_looks_only_at_what_it_shows():
    assert safe_text("abc\n", 3) == "abc…(+1 chars)"


def test_peer_text_masks_before_cutting_then_escapes():
    text = f'{{"error":"bad\\nline","refresh_token":"{TOKEN}"}}\n' + "x" * 5_000_000
    shown = peer_text(text)
    # 43 characters, the newline shown as 2, then x up to 200; 199 of the
    # 5,000,044 masked characters were shown.
    assert shown == '{"error":"bad\\nline","refresh_token":"***"}\\n' + "x" * 155 + "…(+4999845 chars)"
    assert peer_text("short") == "short"
    assert peer_text("line\nbreak", 6) == "line\\n…(+5 chars)"
    assert peer_text("line\nbreak", 5) == "line…(+6 chars)"


def test_peer_text_shows_non_strings_with_str():
    assert peer_text({"token": "x"}) == "{'token': 'x'}"
    assert peer_text(12345, 3) == "123…(+2 chars)"
    assert peer_text(None) == "None"
