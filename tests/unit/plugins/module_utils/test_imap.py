"""IMAP XOAUTH2 probe against scripted servers: the seed's transcripts and Exchange's replies."""

import base64
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.mailops.o365.plugins.module_utils._errors import O365Error
from ansible_collections.mailops.o365.plugins.module_utils._imap import (
    check_imap,
    decode_mailbox,
    encode_mailbox,
    imap_delete_uids,
    imap_fetch_headers,
    parse_capability,
    parse_header_block,
    parse_imap_response_line,
    parse_response_code,
    parse_search,
    parse_status,
    parse_xoauth2_error,
    quote,
    uid_set,
)
from ansible_collections.mailops.o365.plugins.module_utils.xoauth2 import decode_xoauth2
from ansible_collections.mailops.o365.tests.unit.fakes.mailserver import (
    FakeMailServer,
    client_context,
    closed_port,
    transcript,
    untrusting_context,
)

# The seed's IMAP transcript string (shared/seeds/ms-oauth-imap-pop-smtp.en.md).
SASL = ("dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJo"
        "ZG1semRHRXVZMjl0Q2cBAQ==")
USER, TOKEN = decode_xoauth2(SASL)
SASL_RE = re.escape(SASL)
GREETING = "* OK The Microsoft Exchange IMAP4 service is ready."
CAPS = "IMAP4 IMAP4rev1 AUTH=PLAIN AUTH=XOAUTH2 SASL-IR UIDPLUS MOVE ID UNSELECT CHILDREN IDLE NAMESPACE LITERAL+"

HELLO = transcript(f"""
S: {GREETING}
C: \\S+ CAPABILITY
S: * CAPABILITY {CAPS}
S: {{tag}} OK CAPABILITY completed.
""")
AUTH_OK = transcript(f"""
C: \\S+ AUTHENTICATE XOAUTH2 {SASL_RE}
S: {{tag}} OK AUTHENTICATE completed.
""")
MAILBOX = transcript("""
C: \\S+ STATUS "INBOX" \\(MESSAGES UNSEEN UIDVALIDITY\\)
S: * STATUS INBOX (MESSAGES 3 UNSEEN 1 UIDVALIDITY 14)
S: {tag} OK STATUS completed.
C: \\S+ EXAMINE "INBOX"
S: * 3 EXISTS
S: * 0 RECENT
S: * FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $MDNSent)
S: * OK [PERMANENTFLAGS ()] Permanent flags
S: * OK [UNSEEN 2] Is the first unseen message
S: * OK [UIDVALIDITY 14] UIDVALIDITY value
S: * OK [UIDNEXT 4] The next unique identifier value
S: {tag} OK [READ-ONLY] EXAMINE completed.
""")
LOGOUT = transcript("""
C: \\S+ LOGOUT
S: * BYE Microsoft Exchange Server IMAP4 server signing off.
S: {tag} OK LOGOUT completed.
""")


def assert_no_secret(obj):
    text = json.dumps(obj) + repr(obj)
    assert SASL not in text and TOKEN not in text


def run(steps, security="tls", timeout=3.0, context=None, func=check_imap, **kwargs):
    with FakeMailServer(steps, implicit_tls=security == "tls") as srv:
        start = time.monotonic()
        result = func("127.0.0.1", srv.port, security, USER, SASL, context or client_context(), timeout, **kwargs)
        srv.elapsed = time.monotonic() - start
    assert_no_secret(result)
    return result, srv


def test_seed_success_with_sasl_ir_on_exchange():
    result, srv = run(HELLO + AUTH_OK + MAILBOX + LOGOUT)
    assert srv.errors == []
    assert result["ok"] and result["authenticated"]
    assert result["server_greeting"] == GREETING
    assert "AUTH=XOAUTH2" in result["capabilities"] and "SASL-IR" in result["capabilities"]
    assert result["messages"] == 3
    assert result["unseen"] == 1  # the STATUS count, not [UNSEEN 2] (a sequence number)
    assert result["uidvalidity"] == 14
    assert "error" not in result
    # The initial response went on the AUTHENTICATE line itself.
    assert any(line.endswith(f"AUTHENTICATE XOAUTH2 {SASL}") for line in srv.received)


def test_seed_failure_keeps_the_server_text_and_logs_out_politely():
    steps = HELLO + transcript(f"""
C: \\S+ AUTHENTICATE XOAUTH2 {SASL_RE}
S: {{tag}} NO AUTHENTICATE failed.
""") + LOGOUT
    result, srv = run(steps)
    assert srv.errors == []
    assert not result["ok"] and not result["authenticated"]
    error = result["error"]
    assert error["category"] == "auth"
    assert error["server_reply"] == "NO AUTHENTICATE failed."
    assert "NO AUTHENTICATE failed." in error["message"]
    assert error["hint"]
    assert {"connect", "tls", "greeting", "auth", "total"} <= set(result["timings"])
    assert "command" not in result["timings"]


def test_without_sasl_ir_waits_for_the_continuation():
    steps = transcript(f"""
S: * OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] Dovecot ready.
C: \\S+ AUTHENTICATE XOAUTH2
S: +
C: {SASL_RE}
S: * CAPABILITY IMAP4rev1 IDLE
S: {{tag}} OK Logged in
""") + MAILBOX + LOGOUT
    result, srv = run(steps)
    assert srv.errors == []
    assert result["ok"]
    assert result["server_greeting"].startswith("* OK [CAPABILITY")
    assert result["capabilities"] == ["IMAP4rev1", "AUTH=XOAUTH2"]  # what was offered before login is kept


def test_user_authenticated_but_not_connected_on_status():
    steps = HELLO + AUTH_OK + transcript("""
C: \\S+ STATUS "INBOX" .*
S: {tag} BAD User is authenticated but not connected.
""") + LOGOUT
    result, srv = run(steps)
    assert srv.errors == []
    assert result["authenticated"] and not result["ok"]
    assert result["error"]["category"] == "auth"
    assert result["error"]["server_reply"] == "BAD User is authenticated but not connected."
    assert "after a successful AUTHENTICATE" in result["error"]["message"]
    assert "command" in result["timings"]


def test_user_authenticated_but_not_connected_on_examine():
    steps = HELLO + AUTH_OK + MAILBOX[:3] + transcript("""
C: \\S+ EXAMINE "INBOX"
S: {tag} BAD User is authenticated but not connected.
""") + LOGOUT
    result, srv = run(steps)
    assert srv.errors == []
    assert result["authenticated"] and not result["ok"]
    assert result["error"]["category"] == "auth"
    assert result["unseen"] == 1 and result["messages"] is None


def test_examine_no_for_a_missing_folder_is_protocol():
    steps = HELLO + AUTH_OK + transcript("""
C: \\S+ STATUS "Nope" .*
S: {tag} NO [NONEXISTENT] Mailbox doesn't exist: Nope
""") + LOGOUT
    result, _unused = run(steps, folder="Nope")
    assert result["authenticated"] and not result["ok"]
    assert result["error"]["category"] == "protocol"
    assert "NONEXISTENT" in result["error"]["server_reply"]


def test_xoauth2_json_error_continuation():
    challenge = base64.b64encode(json.dumps(
        {"status": "401", "schemes": "Bearer", "scope": "https://outlook.office.com/IMAP.AccessAsUser.All"}
    ).encode()).decode()
    steps = HELLO + transcript(f"""
C: \\S+ AUTHENTICATE XOAUTH2 {SASL_RE}
S: + {challenge}
C:
S: {{tag}} NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)
""") + LOGOUT
    result, srv = run(steps)
    assert srv.errors == []
    assert srv.received[-2] == ""  # we answered the challenge with an empty line
    error = result["error"]
    assert error["category"] == "auth"
    assert "status=401" in error["message"] and "schemes=Bearer" in error["message"]
    assert error["server_reply"].startswith("NO [AUTHENTICATIONFAILED]")


def test_literals_in_responses_do_not_desync():
    sneaky = b"A002 OK fake\r\n* BYE fake\r\n"
    steps = HELLO + AUTH_OK + [
        ("C", r'\S+ STATUS "INBOX" .*'),
        ("RAW", b"* STATUS {5}\r\nINBOX (MESSAGES 7 UNSEEN 2 UIDVALIDITY 9)\r\n"),
        ("RAW", b"* 1 FETCH (FLAGS (\\Seen) BODY[HEADER] {%d}\r\n%s)\r\n" % (len(sneaky), sneaky)),
        ("S", "{tag} OK STATUS completed."),
        ("C", r'\S+ EXAMINE "INBOX"'),
        ("S", "* OK [UIDVALIDITY 9] ok"),
        ("S", "* 7 EXISTS"),
        ("S", "{tag} OK [READ-ONLY] done"),
    ] + LOGOUT
    result, srv = run(steps)
    assert srv.errors == []
    assert result["ok"], result
    assert (result["messages"], result["unseen"], result["uidvalidity"]) == (7, 2, 9)


def test_missing_auth_xoauth2_is_disabled_and_says_what_was_offered():
    steps = transcript("""
S: * OK [CAPABILITY IMAP4rev1 SASL-IR AUTH=PLAIN AUTH=LOGIN] ready
C: \\S+ LOGOUT
S: {tag} OK bye
""")
    result, srv = run(steps)
    assert srv.errors == []
    assert result["error"]["category"] == "disabled"
    assert "AUTH=XOAUTH2" in result["error"]["message"]
    assert "AUTH=PLAIN AUTH=LOGIN" in result["error"]["message"]


def test_starttls_rereads_capabilities_after_tls():
    steps = transcript("""
S: * OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] plain text
C: \\S+ STARTTLS
S: {tag} OK Begin TLS negotiation now.
""") + [("TLS",)] + transcript("""
C: \\S+ CAPABILITY
S: * CAPABILITY IMAP4rev1 AUTH=XOAUTH2 SASL-IR
S: {tag} OK done
""") + AUTH_OK + MAILBOX + LOGOUT
    result, srv = run(steps, security="starttls")
    assert srv.errors == []
    assert result["ok"], result
    assert result["capabilities"] == ["IMAP4rev1", "AUTH=XOAUTH2", "SASL-IR"]
    assert {"connect", "greeting", "tls", "auth", "command", "total"} == set(result["timings"])


def test_starttls_not_offered_is_tls():
    steps = transcript("""
S: * OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] plain text
""") + [("HANG", 2)]
    result, _unused = run(steps, security="starttls")
    assert result["error"]["category"] == "tls"
    assert "STARTTLS" in result["error"]["message"]


def test_greeting_bye_is_classified():
    result, _unused = run(transcript("S: * BYE Too many connections, try later"))
    assert not result["ok"]
    assert result["error"]["category"] == "throttled"
    assert "Too many connections" in result["error"]["message"]
    assert result["server_greeting"] == "* BYE Too many connections, try later"


def test_concurrent_probes_share_no_state():
    servers = [FakeMailServer(HELLO + AUTH_OK + MAILBOX + LOGOUT, implicit_tls=True) for _unused in range(12)]
    for srv in servers:
        srv.__enter__()
    try:
        with ThreadPoolExecutor(max_workers=12) as pool:
            results = list(pool.map(lambda srv: check_imap(
                "127.0.0.1", srv.port, "tls", USER, SASL, client_context(), 5.0), servers))
    finally:
        for srv in servers:
            srv.close()
    assert all(r["ok"] and r["messages"] == 3 for r in results)
    assert all(srv.errors == [] for srv in servers)


def test_server_closes_mid_auth():
    steps = HELLO + [("C", rf"\S+ AUTHENTICATE XOAUTH2 {SASL_RE}"), ("CLOSE",)]
    result, _unused = run(steps)
    assert result["error"]["category"] == "connection"
    assert "connection closed by server during auth" in result["error"]["message"]
    assert not result["authenticated"]


def test_silent_server_times_out_within_the_timeout():
    result, srv = run([("HANG", 1.5)], timeout=0.5)
    assert result["error"]["category"] == "timeout"
    assert "greeting" in result["error"]["message"]
    assert srv.elapsed < 0.5 + 0.5


def test_connection_refused():
    port = closed_port()
    result = check_imap("127.0.0.1", port, "tls", USER, SASL, client_context(), 2.0)
    assert result["error"]["category"] == "connection"
    assert f"127.0.0.1:{port}" in result["error"]["message"]
    assert set(result["timings"]) == {"connect", "total"}


def test_untrusted_certificate_is_tls():
    result, _unused = run([("S", GREETING)], context=untrusting_context())
    assert result["error"]["category"] == "tls"
    assert result["error"]["hint"]


def test_line_too_long_is_protocol():
    result, _unused = run([("RAW", b"* OK " + b"x" * 70000 + b"\r\n"), ("HANG", 1)])
    assert result["error"]["category"] == "protocol"


def test_timings_present_and_consistent():
    result, _unused = run(HELLO + AUTH_OK + MAILBOX + LOGOUT)
    timings = result["timings"]
    assert set(timings) == {"connect", "tls", "greeting", "auth", "command", "total"}
    assert all(isinstance(v, float) and v >= 0 for v in timings.values())
    assert timings["total"] >= max(v for k, v in timings.items() if k != "total")
    assert timings["total"] + 0.5 >= sum(v for k, v in timings.items() if k != "total")


def test_search_returns_uids():
    steps = HELLO + AUTH_OK + MAILBOX + transcript("""
C: \\S+ UID SEARCH SUBJECT "canary 123"
S: * SEARCH 5 9
S: {tag} OK SEARCH completed.
""") + LOGOUT
    result, srv = run(steps, search='SUBJECT "canary 123"')
    assert srv.errors == []
    assert result["search_matches"] == 2 and result["search_uids"] == [5, 9]


@pytest.mark.parametrize("search", ["ALL\r\nA1 LOGOUT", "X\nY", "", "SUBJECT ü", "SUBJECT {5}"])
def test_bad_search_is_config(search):
    with pytest.raises(O365Error) as info:
        check_imap("127.0.0.1", 1, "tls", USER, SASL, client_context(), 1.0, search=search)
    assert info.value.category == "config"


def test_non_ascii_folder_uses_modified_utf7():
    steps = HELLO + AUTH_OK + transcript("""
C: \\S+ STATUS "Entw&APw-rfe" .*
S: * STATUS "Entw&APw-rfe" (MESSAGES 0 UNSEEN 0)
S: {tag} OK done
C: \\S+ EXAMINE "Entw&APw-rfe"
S: * 0 EXISTS
S: {tag} OK done
""") + LOGOUT
    result, srv = run(steps, folder="Entwürfe")
    assert srv.errors == []
    assert result["ok"] and result["messages"] == 0


def test_delete_uids_uses_uid_expunge_with_uidplus():
    steps = HELLO + AUTH_OK + transcript("""
C: \\S+ SELECT "INBOX"
S: * 9 EXISTS
S: * OK [UIDVALIDITY 14] ok
S: {tag} OK [READ-WRITE] SELECT completed.
C: \\S+ UID STORE 5,7:8 \\+FLAGS\\.SILENT \\(\\\\Deleted\\)
S: {tag} OK STORE completed.
C: \\S+ UID EXPUNGE 5,7:8
S: * 3 EXPUNGE
S: * 4 EXPUNGE
S: * 4 EXPUNGE
S: {tag} OK EXPUNGE completed.
""") + LOGOUT
    result, srv = run(steps, func=imap_delete_uids, folder="INBOX", uids=[8, 5, 7], uidvalidity=14)
    assert srv.errors == []
    assert result["ok"] and result["expunged"] == 3


def test_delete_uids_refuses_on_uidvalidity_change():
    steps = HELLO + AUTH_OK + transcript("""
C: \\S+ SELECT "INBOX"
S: * OK [UIDVALIDITY 15] ok
S: {tag} OK [READ-WRITE] SELECT completed.
""") + [("HANG", 2)]
    result, srv = run(steps, func=imap_delete_uids, folder="INBOX", uids=[5], uidvalidity=14)
    assert not result["ok"] and "UIDVALIDITY" in result["error"]["message"]
    assert not any("STORE" in line for line in srv.received if line)


def test_fetch_headers_reads_literals():
    block = b"Subject: =?utf-8?q?canary_=C3=BC?=\r\nFrom: probe@example.com\r\nMessage-ID: <1@x>\r\n\r\n"
    steps = HELLO + AUTH_OK + transcript("""
C: \\S+ EXAMINE "INBOX"
S: * 1 EXISTS
S: {tag} OK done
C: \\S+ UID FETCH 5 \\(UID BODY\\.PEEK\\[HEADER\\.FIELDS \\(SUBJECT FROM DATE MESSAGE-ID\\)\\]\\)
""") + [
        ("RAW", b"* 1 FETCH (UID 5 BODY[HEADER.FIELDS (SUBJECT FROM DATE MESSAGE-ID)] {%d}\r\n%s)\r\n"
         % (len(block), block)),
        ("S", "{tag} OK FETCH completed."),
    ] + LOGOUT
    result, srv = run(steps, func=imap_fetch_headers, folder="INBOX", uids=[5])
    assert srv.errors == []
    assert result["ok"], result
    assert result["headers"] == [{"uid": 5, "subject": "canary ü", "from": "probe@example.com",
                                  "date": None, "message-id": "<1@x>"}]


def test_server_echoing_the_token_is_redacted():
    steps = HELLO + transcript(f"""
C: \\S+ AUTHENTICATE XOAUTH2 {SASL_RE}
S: {{tag}} NO bad token {TOKEN} in {SASL}
""") + LOGOUT
    result, _unused = run(steps)  # run() asserts the absence
    assert "<redacted>" in result["error"]["message"]


# ----------------------------------------------------------------------------- pure parsers

def test_parse_examples():
    assert parse_imap_response_line("* 3 EXISTS") == ("*", "EXISTS", 3, "")
    assert parse_imap_response_line("A1 no AUTHENTICATE failed.") == ("A1", "NO", None, "AUTHENTICATE failed.")
    assert parse_imap_response_line("+") == ("+", "", None, "")
    assert parse_imap_response_line("+ abc") == ("+", "", None, "abc")
    assert parse_response_code("[UIDVALIDITY 14] ok") == ("UIDVALIDITY", "14")
    assert parse_capability(" IMAP4rev1  AUTH=XOAUTH2 ") == ["IMAP4rev1", "AUTH=XOAUTH2"]
    assert parse_status('"a (b)" (MESSAGES 3 unseen 1)') == {"MESSAGES": 3, "UNSEEN": 1}
    assert parse_search("1 4 9 (MODSEQ 5)") == [1, 4, 9]
    assert parse_search("") == []
    assert uid_set([9, 1, 2, 3, 7, 3]) == "1:3,7,9"
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    assert encode_mailbox("台北/日本語") == "&U,BTFw-/&ZeVnLIqe-"  # RFC 3501 5.1.3 example
    assert encode_mailbox("A&B") == "A&-B"
    assert parse_xoauth2_error(base64.b64encode(b'{"status":"400"}').decode()) == {"status": "400"}


@pytest.mark.parametrize("line", ["", "*", "A1", "A1 MAYBE x", "* 3", " * OK", "A(1 OK x"])
def test_parse_imap_response_line_rejects(line):
    with pytest.raises(ValueError):
        parse_imap_response_line(line)


PARSERS = [parse_imap_response_line, parse_response_code, parse_capability, parse_status, parse_search,
           parse_xoauth2_error, decode_mailbox]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PARSERS), st.one_of(st.text(), st.binary(), st.none(), st.integers()))
def test_parsers_raise_only_value_error(parser, value):
    try:
        parser(value)
    except ValueError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_parse_status_on_imap_like_text(name):
    try:
        parse_status(f"{name} (MESSAGES 1 {name} 2)")
    except ValueError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_parse_header_block_never_fails(data):
    assert isinstance(parse_header_block(data), dict)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",))))
def test_mailbox_encoding_round_trips(name):
    encoded = encode_mailbox(name)
    assert encoded.isascii()
    assert decode_mailbox(encoded) == name
