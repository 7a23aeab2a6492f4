"""POP3 XOAUTH2 probe against scripted servers: the seed's transcripts and Exchange's replies."""

import base64
import json
import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.mailops.o365.plugins.module_utils._pop import (
    check_pop,
    parse_capa,
    parse_pop_status,
    parse_stat,
    sasl_mechanisms,
    unstuff,
)
from ansible_collections.mailops.o365.plugins.module_utils.xoauth2 import decode_xoauth2
from ansible_collections.mailops.o365.tests.unit.fakes.mailserver import (
    FakeMailServer,
    client_context,
    closed_port,
    transcript,
    untrusting_context,
)

# The seed's POP transcript string, unfolded (shared/seeds/ms-oauth-imap-pop-smtp.en.md).
SASL = ("dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJo"
        "ZG1semRHRXVZMjl0Q2cBAQ==")
USER, TOKEN = decode_xoauth2(SASL)
SASL_RE = re.escape(SASL)
GREETING = "+OK The Microsoft Exchange POP3 service is ready."

HELLO = transcript(f"""
S: {GREETING}
C: CAPA
S: +OK
S: TOP
S: UIDL
S: SASL PLAIN XOAUTH2
S: USER
S: .
""")
QUIT = transcript("""
C: QUIT
S: +OK Microsoft Exchange Server POP3 server signing off.
""")


def auth(continuation, reply):
    return [("C", "AUTH XOAUTH2"), ("S", continuation), ("C", SASL_RE), ("S", reply)]


def assert_no_secret(obj):
    text = json.dumps(obj) + repr(obj)
    assert SASL not in text and TOKEN not in text


def run(steps, security="tls", timeout=3.0, context=None):
    with FakeMailServer(steps, implicit_tls=security == "tls") as srv:
        start = time.monotonic()
        result = check_pop("127.0.0.1", srv.port, security, USER, SASL, context or client_context(), timeout)
        srv.elapsed = time.monotonic() - start
    assert_no_secret(result)
    return result, srv


@pytest.mark.parametrize("continuation", ["+", "+ ", "+ VGhpcyBpcyBhIGNoYWxsZW5nZQ=="])
def test_seed_success_with_any_continuation_form(continuation):
    steps = HELLO + auth(continuation, "+OK User successfully authenticated.") + [
        ("C", "STAT"), ("S", "+OK 3 4711")] + QUIT
    result, srv = run(steps)
    assert srv.errors == []
    assert result["ok"] and result["authenticated"]
    assert result["server_greeting"] == GREETING
    assert result["capabilities"] == ["TOP", "UIDL", "SASL PLAIN XOAUTH2", "USER"]
    assert (result["messages"], result["size"]) == (3, 4711)
    assert set(result["timings"]) == {"connect", "tls", "greeting", "auth", "command", "total"}
    # Two lines, as Microsoft documents: the token is not on the AUTH line.
    assert "AUTH XOAUTH2" in srv.received and SASL in srv.received


def test_seed_failure_keeps_the_server_text():
    reply = "-ERR Authentication failure: unknown user name or bad password."
    result, srv = run(HELLO + auth("+", reply) + QUIT)
    assert srv.errors == []
    assert not result["ok"] and not result["authenticated"]
    assert result["error"]["category"] == "auth"
    assert result["error"]["server_reply"] == reply
    assert reply in result["error"]["message"] and USER in result["error"]["message"]
    assert result["messages"] is None


def test_xoauth2_error_challenge_gets_an_empty_answer_then_the_servers_err():
    challenge = base64.b64encode(b'{"status":"401","schemes":"Bearer","scope":"x"}').decode()
    steps = HELLO + [("C", "AUTH XOAUTH2"), ("S", "+"), ("C", SASL_RE), ("S", f"+ {challenge}"),
                     ("C", ""), ("S", "-ERR [AUTH] Authentication failed")] + QUIT
    result, srv = run(steps)
    assert srv.errors == []
    assert result["error"]["category"] == "auth"
    assert "status=401" in result["error"]["message"]


def test_repeated_error_challenge_is_cancelled_with_star():
    challenge = base64.b64encode(b'{"status":"401","schemes":"Bearer","scope":"x"}').decode()
    steps = HELLO + [("C", "AUTH XOAUTH2"), ("S", "+"), ("C", SASL_RE), ("S", f"+ {challenge}"),
                     ("C", ""), ("S", f"+ {challenge}"), ("C", r"\*"),
                     ("S", "-ERR [AUTH] Authentication failed")] + QUIT
    result, srv = run(steps)
    assert srv.errors == []
    assert result["error"]["category"] == "auth"
    assert "status=401" in result["error"]["message"]


def test_stat_refused_after_login():
    steps = HELLO + auth("+", "+OK User successfully authenticated.") + [
        ("C", "STAT"), ("S", "-ERR [SYS/TEMP] Server Unavailable. 21")]
    result, _unused = run(steps)
    assert result["authenticated"] and not result["ok"]
    assert result["error"]["category"] == "throttled"
    assert "after a successful AUTH" in result["error"]["message"]


def test_capa_without_xoauth2_is_disabled_and_token_not_sent():
    steps = transcript("""
S: +OK ready
C: CAPA
S: +OK
S: SASL PLAIN LOGIN
S: .
C: QUIT
S: +OK bye
""")
    result, srv = run(steps)
    assert srv.errors == []
    assert result["error"]["category"] == "disabled"
    assert "PLAIN LOGIN" in result["error"]["message"]
    assert SASL not in srv.received


def test_capa_refused_still_tries_auth_and_dot_unstuffing():
    steps = transcript("""
S: +OK ready
C: CAPA
S: -ERR unknown command
""") + auth("+ ", "+OK in") + [("C", "STAT"), ("S", "+OK 0 0")] + QUIT
    result, srv = run(steps)
    assert srv.errors == []
    assert result["ok"] and result["capabilities"] == []
    assert unstuff("..x") == ".x" and unstuff(".x") == ".x"


def test_stls_rereads_capa_after_tls():
    steps = transcript("""
S: +OK plain
C: CAPA
S: +OK
S: STLS
S: .
C: STLS
S: +OK Begin TLS
""") + [("TLS",)] + transcript("""
C: CAPA
S: +OK
S: SASL XOAUTH2
S: ..dotted
S: .
""") + auth("+", "+OK in") + [("C", "STAT"), ("S", "+OK 1 10")] + QUIT
    result, srv = run(steps, security="starttls")
    assert srv.errors == []
    assert result["ok"], result
    assert result["capabilities"] == ["SASL XOAUTH2", ".dotted"]


def test_err_greeting():
    result, _unused = run(transcript("S: -ERR [IN-USE] too many sessions"))
    assert result["error"]["category"] == "throttled"


def test_server_closes_mid_auth():
    steps = HELLO + [("C", "AUTH XOAUTH2"), ("S", "+"), ("C", SASL_RE), ("CLOSE",)]
    result, _unused = run(steps)
    assert result["error"]["category"] == "connection"
    assert "connection closed by server during auth" in result["error"]["message"]


def test_silent_server_times_out():
    result, srv = run([("HANG", 1.5)], timeout=0.5)
    assert result["error"]["category"] == "timeout"
    assert srv.elapsed < 1.0


def test_connection_refused():
    result = check_pop("127.0.0.1", closed_port(), "tls", USER, SASL, client_context(), 2.0)
    assert result["error"]["category"] == "connection"


def test_untrusted_certificate():
    result, _unused = run([("S", GREETING)], context=untrusting_context())
    assert result["error"]["category"] == "tls"


def test_line_too_long():
    result, _unused = run([("RAW", b"+OK " + b"x" * 70000 + b"\r\n"), ("HANG", 1)])
    assert result["error"]["category"] == "protocol"


def test_malformed_reply_is_protocol():
    result, _unused = run([("S", "HELLO there")])
    assert result["error"]["category"] == "protocol"


def test_parser_examples():
    assert parse_pop_status("+OK") == (True, "")
    assert parse_pop_status("-ERR nope") == (False, "nope")
    assert parse_stat("3 4711 extra") == (3, 4711)
    assert parse_capa(["SASL  PLAIN XOAUTH2", "", "TOP"]) == ["SASL PLAIN XOAUTH2", "TOP"]
    assert sasl_mechanisms(["TOP", "sasl plain xoauth2"]) == ["PLAIN", "XOAUTH2"]
    assert sasl_mechanisms(["TOP"]) is None
    for bad in ("+OKAY", "OK", "", "-ER"):
        with pytest.raises(ValueError):
            parse_pop_status(bad)


ANY = st.one_of(st.text(), st.binary(), st.none(), st.integers(), st.lists(st.text()),
                st.lists(st.one_of(st.text(), st.integers())))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([parse_pop_status, parse_capa, parse_stat, unstuff, sasl_mechanisms]), ANY)
def test_parsers_raise_only_value_error(parser, value):
    try:
        parser(value)
    except ValueError:
        pass
