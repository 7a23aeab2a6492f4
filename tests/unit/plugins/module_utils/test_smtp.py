# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SMTP client against the scripted fake server on 127.0.0.1."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.mailops.o365.plugins.module_utils._errors import RULES, O365Error
from ansible_collections.mailops.o365.plugins.module_utils._message import build_message, message_bytes
from ansible_collections.mailops.o365.plugins.module_utils._smtp import (
    Pacer,
    Reply,
    ReplyError,
    SendError,
    SmtpSession,
    parse_reply,
    parse_reply_line,
    redact,
)
from ansible_collections.mailops.o365.plugins.module_utils.xoauth2 import encode_xoauth2
from ansible_collections.mailops.o365.tests.unit.fakes.smtpserver import (
    CLOSE,
    HANG,
    FakeSmtpServer,
    client_context,
    closed_port,
    untrusting_context,
)

TOKEN = "EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA"
SASL = encode_xoauth2("test@contoso.onmicrosoft.com", TOKEN)
SMTP_RULES = [r for r in RULES if r.source == "smtp"]


@pytest.fixture
def servers():
    made = []

    def make(script=None, **kwargs) -> FakeSmtpServer:
        server = FakeSmtpServer(script, **kwargs)
        made.append(server)
        return server
    yield make
    for server in made:
        server.stop()


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def session(server: FakeSmtpServer, **kwargs) -> SmtpSession:
    kwargs.setdefault("context", client_context())
    kwargs.setdefault("timeout", 2.0)
    kwargs.setdefault("sleep", Sleeps())
    kwargs.setdefault("security", "tls" if server.implicit_tls else "starttls")
    return SmtpSession("127.0.0.1", server.port, **kwargs)


def message(**spec):
    spec.setdefault("sender", "Test <test@contoso.onmicrosoft.com>")
    spec.setdefault("to", ["alice@example.com"])
    spec.setdefault("subject", "hello")
    spec.setdefault("body", "hi\n.leading dot\n")
    return build_message(spec)


def assert_no_secret(*things) -> None:
    for thing in things:
        for text in (str(thing), repr(thing)):
            assert SASL not in text and TOKEN not in text
        if isinstance(thing, O365Error):
            assert_no_secret(thing.as_dict(), thing.args, getattr(thing, "result", None))


# ----------------------------------------------------------------------------- seed transcript

def test_seed_transcript_success(servers):
    server = servers()
    with session(server) as smtp:
        result = smtp.authenticate(SASL)
        info = smtp.info()
    assert result["server_response"] == "235 2.7.0 Authentication successful"
    assert result["initial_response"] is False
    after_tls = server.lines[len(server.clear_lines()):]
    assert after_tls[:3] == ["EHLO [127.0.0.1]", "AUTH XOAUTH2", SASL]
    assert set(info["timings"]) >= {"connect", "greeting", "tls", "ehlo", "auth"}
    assert "total" in smtp.timings
    assert info["tls_version"] in ("TLSv1.2", "TLSv1.3") and info["auth_mechanisms"] == ["LOGIN", "XOAUTH2"]
    assert_no_secret(result, info, smtp)


def test_seed_transcript_failure(servers):
    reply = "535 5.7.3 Authentication unsuccessful [SN2PR00CA0018.namprd00.prod.outlook.com]"
    server = servers({"AUTHDATA": reply})
    with session(server) as smtp, pytest.raises(O365Error) as caught:
        smtp.authenticate(SASL)
    assert caught.value.category == "auth"
    assert caught.value.server_reply == reply
    assert server.count("MAIL") == 0
    assert_no_secret(caught.value)


def test_initial_response_is_one_line(servers):
    server = servers()
    with session(server, initial_response=True) as smtp:
        smtp.authenticate(SASL)
    assert "AUTH XOAUTH2 " + SASL in server.lines
    assert SASL not in [line for line in server.lines if not line.startswith("AUTH")]


def test_xoauth2_error_challenge_gets_empty_line(servers):
    challenge = base64.b64encode(json.dumps({"status": "401", "schemes": "bearer",
                                             "scope": "https://outlook.office.com/SMTP.Send"}).encode()).decode()
    server = servers({"AUTHDATA": "334 " + challenge, "AUTHEND":
                      "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant."})
    with session(server) as smtp, pytest.raises(O365Error) as caught:
        smtp.authenticate(SASL)
    assert caught.value.category == "disabled"
    assert "status=401" in caught.value.message
    assert server.lines[server.lines.index(SASL) + 1] == ""
    assert_no_secret(caught.value)


@pytest.mark.parametrize("rule", SMTP_RULES, ids=[r.example[:30] for r in SMTP_RULES])
def test_exchange_replies_classified_at_auth(servers, rule):
    server = servers({"AUTHDATA": rule.example})
    with session(server) as smtp, pytest.raises(O365Error) as caught:
        smtp.authenticate(SASL)
    assert caught.value.category == rule.category
    assert caught.value.server_reply == rule.example
    assert_no_secret(caught.value)


@pytest.mark.parametrize("step,reply,category,delivery", [
    ("MAIL", "530 5.7.57 Client not authenticated to send mail.", "auth", "refused"),
    ("MAIL", "550 5.7.60 SMTP; Client does not have permissions to send as this sender", "auth", "refused"),
    ("MAIL", "432 4.3.2 Concurrent connections limit exceeded", "throttled", "not_sent"),
    ("MAIL", "430 4.2.0 STOREDRV; mailbox logon failure", "auth", "not_sent"),
    ("DATAEND", "554 5.2.2 mailbox full", "protocol", "refused"),
    ("DATAEND", "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded", "throttled", "not_sent"),
])
def test_exchange_replies_classified_at_send(servers, step, reply, category, delivery):
    server = servers({step: lambda _line: reply})
    msg, rcpts = message()
    with session(server) as smtp:
        smtp.authenticate(SASL)
        with pytest.raises(SendError) as caught:
            smtp.send(msg, "test@contoso.onmicrosoft.com", rcpts)
    assert (caught.value.category, caught.value.delivery) == (category, delivery)
    assert caught.value.server_reply == reply
    assert server.count("DATA") <= 1
    assert_no_secret(caught.value)


# ----------------------------------------------------------------------------- TLS

def test_no_starttls_means_nothing_in_clear(servers):
    server = servers(starttls=False, auth_before_tls=True)
    smtp = session(server)
    with pytest.raises(O365Error) as caught:
        smtp.open()
    assert caught.value.category == "tls"
    assert "STARTTLS" in caught.value.message and "AUTH" in caught.value.message
    assert server.verbs == ["EHLO"]
    with pytest.raises(O365Error):
        smtp.authenticate(SASL)
    assert SASL not in "".join(server.lines) and server.count("AUTH") == 0


def test_starttls_refused(servers):
    server = servers({"STARTTLS": "454 4.7.0 TLS not available due to temporary reason"})
    with pytest.raises(O365Error) as caught:
        session(server).open()
    assert caught.value.category == "tls" and "454 4.7.0" in caught.value.message
    assert server.count("AUTH") == 0


def test_untrusted_certificate(servers):
    server = servers()
    with pytest.raises(O365Error) as caught:
        session(server, context=untrusting_context()).open()
    assert caught.value.category == "tls"
    assert server.count("AUTH") == 0


def test_implicit_tls(servers):
    server = servers(implicit_tls=True)
    msg, rcpts = message()
    with session(server) as smtp:
        smtp.authenticate(SASL)
        result = smtp.send(msg, "test@contoso.onmicrosoft.com", rcpts)
    assert result["delivery"] == "accepted"
    assert all(tls for tls, _line in server.log)
    assert server.count("STARTTLS") == 0 and server.count("EHLO") == 1
    assert {"connect", "tls", "greeting"} <= set(smtp.timings)


def test_implicit_tls_against_plain_server(servers):
    server = servers()
    with pytest.raises(O365Error) as caught:
        session(server, security="tls").open()
    assert caught.value.category == "tls"


# ----------------------------------------------------------------------------- auth availability

def test_auth_not_offered(servers):
    server = servers(auth=None)
    with session(server) as smtp, pytest.raises(O365Error) as caught:
        smtp.authenticate(SASL)
    assert caught.value.category == "disabled"
    assert "STARTTLS" in caught.value.message or "SIZE" in caught.value.message or "8BITMIME" in caught.value.message


def test_xoauth2_not_offered(servers):
    server = servers(auth="PLAIN LOGIN")
    with session(server) as smtp, pytest.raises(O365Error) as caught:
        smtp.authenticate(SASL)
    assert caught.value.category == "auth" and "PLAIN LOGIN" in caught.value.message
    assert server.count("AUTH") == 0


def test_bad_sasl_not_echoed(servers):
    server = servers()
    with session(server) as smtp, pytest.raises(O365Error) as caught:
        smtp.authenticate(SASL + "\r\nMAIL FROM:<x@y.z>")
    assert caught.value.category == "config"
    assert_no_secret(caught.value)
    assert server.count("AUTH") == 0


def test_server_echo_of_secret_is_redacted(servers):
    server = servers({"AUTHDATA": lambda line: "535 5.7.8 bad token '%s'" % line})
    with session(server) as smtp, pytest.raises(O365Error) as caught:
        smtp.authenticate(SASL)
    assert "[redacted]" in caught.value.message
    assert_no_secret(caught.value)


def test_close_mid_auth(servers):
    server = servers({"AUTHDATA": CLOSE})
    with session(server) as smtp, pytest.raises(O365Error) as caught:
        smtp.authenticate(SASL)
    assert caught.value.category == "connection"
    assert_no_secret(caught.value)


def test_redact_helper():
    assert redact("echo " + SASL[:40], SASL) == "echo [redacted]"
    assert redact("token " + TOKEN, SASL) == "token [redacted]"
    assert redact("535 5.7.3 [SN2PR00CA0018.namprd00.prod.outlook.com]", SASL).endswith("outlook.com]")


# ----------------------------------------------------------------------------- sending

def test_send_success_and_wire(servers):
    server = servers(size=10_000_000)
    msg, rcpts = message(cc=["bob@example.com"], bcc=["carol@example.com"])
    with session(server) as smtp:
        smtp.authenticate(SASL)
        result = smtp.send(msg, "test@contoso.onmicrosoft.com", rcpts)
    assert result["delivery"] == "accepted"
    assert result["accepted"] == ["alice@example.com", "bob@example.com", "carol@example.com"]
    assert result["refused"] == {}
    assert result["server_response"] == "250 2.0.0 OK queued as FAKE1"
    assert result["message_id"] == msg["Message-ID"] and result["attempts"] == 1
    assert "send" in result["timings"]
    assert "MAIL FROM:<test@contoso.onmicrosoft.com> SIZE=%d" % result["size"] in server.lines
    assert server.messages == [message_bytes(msg)]       # dot-stuffing undone by the server
    assert b"carol" not in server.messages[0]
    assert_no_secret(result)


def test_rcpt_4xx_retried_then_succeeds(servers):
    server = servers({"RCPT": ["451 4.3.0 Temporary failure, try again"]})
    msg, rcpts = message()
    smtp = session(server)
    with smtp:
        smtp.authenticate(SASL)
        result = smtp.send(msg, "test@contoso.onmicrosoft.com", rcpts)
    assert result["delivery"] == "accepted" and result["attempts"] == 2
    assert server.count("DATA") == 1 and server.count("RSET") == 1 and len(server.messages) == 1
    assert smtp.sleep == [2.0]


def test_432_on_first_rcpt_is_retried(servers):
    server = servers({"RCPT": ["432 4.3.2 Concurrent connections limit exceeded"]})
    msg, rcpts = message(to=["a@example.com", "b@example.com"])
    with session(server) as smtp:
        smtp.authenticate(SASL)
        result = smtp.send(msg, "test@contoso.onmicrosoft.com", rcpts)
    assert result["accepted"] == ["a@example.com", "b@example.com"] and result["attempts"] == 2
    assert server.count("DATA") == 1


def test_persistent_throttling_gives_up_without_data(servers):
    server = servers({"MAIL": lambda _line: "432 4.3.2 Concurrent connections limit exceeded"})
    msg, rcpts = message()
    smtp = session(server, max_attempts=3, backoff=1.0)
    with smtp:
        smtp.authenticate(SASL)
        with pytest.raises(SendError) as caught:
            smtp.send(msg, "test@contoso.onmicrosoft.com", rcpts)
    assert caught.value.category == "throttled" and caught.value.delivery == "not_sent"
    assert caught.value.result["attempts"] == 3 and smtp.sleep == [1.0, 2.0]
    assert server.count("MAIL") == 3 and server.count("DATA") == 0


def test_retry_stops_at_deadline(servers):
    server = servers({"MAIL": lambda _line: "451 4.3.0 busy"})
    msg, rcpts = message()
    now = [1000.0]
    slept = Sleeps()

    def sleep(seconds: float) -> None:
        slept(seconds)
        now[0] += seconds
    smtp = session(server, max_attempts=10, backoff=5.0, retry_deadline=12.0, sleep=sleep, clock=lambda: now[0])
    with smtp:
        smtp.authenticate(SASL)
        with pytest.raises(SendError):
            smtp.send(msg, "test@contoso.onmicrosoft.com", rcpts)
    assert slept == [5.0]       # the next wait (10 s) would pass the 12 s deadline
    assert server.count("MAIL") == 2


def test_rcpt_4xx_on_last_attempt_reported_as_refused(servers):
    server = servers({"RCPT": lambda line: "450 4.2.0 greylisted" if "b@" in line else "250 2.1.5 OK"})
    msg, rcpts = message(to=["a@example.com", "b@example.com"])
    with session(server, max_attempts=2) as smtp:
        smtp.authenticate(SASL)
        result = smtp.send(msg, "test@contoso.onmicrosoft.com", rcpts)
    assert result["accepted"] == ["a@example.com"]
    assert result["refused"] == {"b@example.com": "450 4.2.0 greylisted"}
    assert server.count("DATA") == 1


def test_data_command_4xx_retried(servers):
    server = servers({"DATA": ["451 4.3.0 busy"]})
    msg, rcpts = message()
    with session(server) as smtp:
        smtp.authenticate(SASL)
        result = smtp.send(msg, "test@contoso.onmicrosoft.com", rcpts)
    assert result["delivery"] == "accepted" and result["attempts"] == 2
    assert len(server.messages) == 1


def test_silent_after_data_is_unknown_and_not_resent(servers):
    server = servers({"DATAEND": HANG})
    msg, rcpts = message()
    smtp = session(server, timeout=0.5)
    with smtp:
        smtp.authenticate(SASL)
        with pytest.raises(SendError) as caught:
            smtp.send(msg, "test@contoso.onmicrosoft.com", rcpts)
        assert caught.value.category == "timeout" and caught.value.delivery == "unknown"
        assert "data" in caught.value.message and "not sent again" in caught.value.message
        with pytest.raises(SendError) as again:     # the session is closed: no second DATA
            smtp.send(msg, "test@contoso.onmicrosoft.com", rcpts)
    assert again.value.category == "connection" and again.value.delivery == "not_sent"
    assert server.count("DATA") == 1 and len(server.messages) == 1
    assert_no_secret(caught.value, again.value)


def test_close_after_data_is_unknown(servers):
    server = servers({"DATAEND": CLOSE})
    msg, rcpts = message()
    with session(server) as smtp:
        smtp.authenticate(SASL)
        with pytest.raises(SendError) as caught:
            smtp.send(msg, "test@contoso.onmicrosoft.com", rcpts)
    assert caught.value.category == "connection" and caught.value.delivery == "unknown"
    assert server.count("DATA") == 1


def test_5xx_after_data_not_resent(servers):
    server = servers({"DATAEND": ["550 5.7.1 Message rejected as spam"]})
    msg, rcpts = message()
    with session(server) as smtp:
        smtp.authenticate(SASL)
        with pytest.raises(SendError) as caught:
            smtp.send(msg, "test@contoso.onmicrosoft.com", rcpts)
        assert caught.value.delivery == "refused"
        assert caught.value.result["server_response"] == "550 5.7.1 Message rejected as spam"
        # The session stays usable for the next message of a batch.
        assert smtp.send(msg, "test@contoso.onmicrosoft.com", rcpts)["delivery"] == "accepted"
    assert server.count("DATA") == 2 and len(server.messages) == 2


def test_partial_refusal(servers):
    server = servers({"RCPT": lambda line: "550 5.1.1 User unknown" if "bad@" in line else "250 2.1.5 OK"})
    msg, rcpts = message(to=["good@example.com", "bad@example.com"])
    with session(server) as smtp:
        smtp.authenticate(SASL)
        result = smtp.send(msg, "test@contoso.onmicrosoft.com", rcpts)
    assert result["delivery"] == "accepted" and result["accepted"] == ["good@example.com"]
    assert result["refused"] == {"bad@example.com": "550 5.1.1 User unknown"}
    assert server.count("DATA") == 1 and smtp.sleep == []


def test_all_recipients_refused(servers):
    server = servers({"RCPT": lambda _line: "550 5.1.1 User unknown"})
    msg, rcpts = message(to=["a@example.com", "b@example.com"])
    with session(server) as smtp:
        smtp.authenticate(SASL)
        with pytest.raises(SendError) as caught:
            smtp.send(msg, "test@contoso.onmicrosoft.com", rcpts)
    assert caught.value.delivery == "refused" and "every recipient" in caught.value.message
    assert set(caught.value.result["refused"]) == {"a@example.com", "b@example.com"}
    assert server.count("DATA") == 0


def test_size_limit_checked_before_mail_from(servers):
    server = servers(size=300)
    msg, rcpts = message(body="x" * 1000)
    with session(server) as smtp:
        assert smtp.max_size == 300
        smtp.authenticate(SASL)
        with pytest.raises(SendError) as caught:
            smtp.send(msg, "test@contoso.onmicrosoft.com", rcpts)
    assert caught.value.category == "config" and caught.value.message.startswith("message:")
    assert caught.value.delivery == "not_sent" and server.count("MAIL") == 0


def test_421_on_mail_closes(servers):
    server = servers({"MAIL": "421 4.3.2 Service not available, closing channel"})
    msg, rcpts = message()
    with session(server) as smtp:
        smtp.authenticate(SASL)
        with pytest.raises(SendError) as caught:
            smtp.send(msg, "test@contoso.onmicrosoft.com", rcpts)
    assert caught.value.delivery == "not_sent" and caught.value.category == "throttled"
    assert server.count("RSET") == 0


def test_bad_envelope_rejected_before_network(servers):
    server = servers()
    msg, _rcpts = message()
    with session(server) as smtp:
        with pytest.raises(SendError) as caught:
            smtp.send(msg, "test@contoso.onmicrosoft.com", ["ok@example.com", "x@y.z>\r\nRCPT TO:<evil@x.com"])
    assert caught.value.category == "config" and caught.value.message.startswith("recipients[1]:")
    assert server.count("MAIL") == 0


# ----------------------------------------------------------------------------- connection phases

def test_connection_refused():
    smtp = SmtpSession("127.0.0.1", closed_port(), context=client_context(), timeout=2.0)
    with pytest.raises(O365Error) as caught:
        smtp.open()
    assert caught.value.category == "connection"


def test_greeting_timeout_names_phase(servers):
    server = servers({"GREETING": HANG})
    with pytest.raises(O365Error) as caught:
        session(server, timeout=0.3).open()
    assert caught.value.category == "timeout" and "greeting" in caught.value.message


def test_greeting_refusal(servers):
    server = servers({"GREETING": "554 5.3.2 No SMTP service here"})
    with pytest.raises(O365Error) as caught:
        session(server).open()
    assert caught.value.category == "connection" and "554" in caught.value.message


def test_malformed_reply_is_protocol_error(servers):
    server = servers({"GREETING": "hello there"})
    with pytest.raises(O365Error) as caught:
        session(server).open()
    assert caught.value.category == "protocol"


def test_ehlohost_and_check_mode_sends_no_mail(servers):
    server = servers()
    with session(server, ehlohost="client.example.org") as smtp:
        smtp.authenticate(SASL)
    assert "EHLO client.example.org" in server.lines
    assert server.count("MAIL") == 0 and server.count("QUIT") == 1


@pytest.mark.parametrize("kwargs,field", [
    ({"security": "none"}, "security"), ({"port": 0}, "port"), ({"timeout": 0}, "timeout"),
    ({"ehlohost": "a b"}, "ehlohost"), ({"context": None}, "context"),
])
def test_bad_arguments(kwargs, field):
    args = {"context": client_context(), **kwargs}
    port = args.pop("port", 587)
    with pytest.raises(O365Error) as caught:
        SmtpSession("127.0.0.1", port, **args)
    assert caught.value.category == "config" and caught.value.message.startswith(field + ":")


# ----------------------------------------------------------------------------- pacing

def test_pacer_sliding_window():
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds
    pacer = Pacer(max_per_minute=3, clock=lambda: now[0], sleep=sleep)
    for _unused in range(3):
        assert pacer.wait() == 0
        now[0] += 1
    assert pacer.wait() == pytest.approx(57.0)     # the first send leaves the window at t=60
    now[0] = 200.0
    assert pacer.wait() == 0
    assert slept == [pytest.approx(57.0)]


def test_pacer_rejects_zero():
    with pytest.raises(O365Error):
        Pacer(max_per_minute=0)


# ----------------------------------------------------------------------------- reply parser

def test_parse_multiline_reply():
    reply = parse_reply([b"250-smtp.example Hello\r\n", b"250-SIZE 35882577\r\n", b"250 2.0.0 OK\r\n"])
    assert reply.code == 250 and reply.lines == ("smtp.example Hello", "SIZE 35882577", "2.0.0 OK")
    assert parse_reply([b"535 5.7.3 Authentication unsuccessful\r\n"]).enhanced == "5.7.3"
    assert parse_reply([b"334\r\n"]) == Reply(334, None, ("",))
    assert parse_reply([b"250 5.0.0 mismatched class\r\n"]).enhanced is None
    assert str(parse_reply([b"250-a\r\n", b"250 b\r\n"])) == "250 a b"


@pytest.mark.parametrize("lines", [
    [], [b"25\r\n"], [b"abc ok\r\n"], [b"250-a\r\n"], [b"250-a\r\n", b"251 b\r\n"],
    [b"250 a\r\n", b"250 b\r\n"], [b"250xa\r\n"], [b"650 no\r\n"], [b"250 " + b"x" * 9000],
])
def test_parse_reply_rejects(lines):
    with pytest.raises(ReplyError):
        parse_reply(lines)


@given(st.lists(st.binary(max_size=60), max_size=6))
@settings(max_examples=400, deadline=None)
def test_parse_reply_fuzz(lines):
    try:
        reply = parse_reply(lines)
    except ReplyError:
        return
    assert 200 <= reply.code <= 599 and len(reply.lines) == len(lines)


@given(st.sampled_from([250, 354, 421, 535]), st.lists(st.text(max_size=40).filter(
    lambda t: "\r" not in t and "\n" not in t), min_size=1, max_size=5))
@settings(max_examples=200, deadline=None)
def test_parse_reply_roundtrip(code, texts):
    raw = [("%d%s%s\r\n" % (code, "-" if i < len(texts) - 1 else " ", t)).encode() for i, t in enumerate(texts)]
    reply = parse_reply(raw)
    assert reply.code == code and list(reply.lines) == texts


def test_parse_reply_line_types():
    with pytest.raises(ReplyError):
        parse_reply_line("250 ok")   # str, not bytes


@pytest.mark.parametrize("reply,category", [
    ("501 5.5.127 Invalid XOAUTH2 auth data", "auth"),
    ("535 5.7.139 Authentication unsuccessful, user is locked by your organization's security defaults policy.",
     "auth"),
    ("535 5.7.8 Error: authentication failed: UGFzc3dvcmQ6", "auth"),      # Postfix wording
    ("454 4.7.0 Temporary authentication failure", "auth"),
])
def test_other_auth_replies(servers, reply, category):
    server = servers({"AUTHDATA": reply})
    with session(server) as smtp, pytest.raises(O365Error) as caught:
        smtp.authenticate(SASL)
    assert caught.value.category == category and caught.value.server_reply == reply


def test_plaintext_injected_after_starttls_is_discarded(servers):
    # CVE-2011-0411 style: a reply smuggled in the same packet as "220" must not be read after TLS.
    server = servers({"STARTTLS": "220 2.0.0 go ahead\n250 2.0.0 injected"})
    with session(server) as smtp:
        assert smtp.tls_active and "auth" in smtp.esmtp_features
        smtp.authenticate(SASL)
    assert server.count("AUTH") == 1 and all(tls for tls, line in server.log if line.upper().startswith("AUTH"))
