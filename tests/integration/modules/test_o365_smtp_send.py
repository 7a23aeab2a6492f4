"""o365_smtp_send against the lab's real Postfix (STARTTLS + XOAUTH2 through Dovecot SASL), read back over IMAP."""
from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid

import pytest

from tests.integration.support import cache_path, fetch_messages, lab_env, mint, run_module

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def env():
    return lab_env()


def send(env, check_mode=False, **args):
    base = {"host": env["LAB_HOST"], "port": int(env["LAB_SMTP_PORT"]), "timeout": 10,
            "token_cache_path": cache_path("smtp"), "sender": env["LAB_MAILBOX"]}
    base.update(args)
    return run_module("o365_smtp_send", base, check_mode=check_mode)


def tag():
    return "it-" + uuid.uuid4().hex[:12]


def test_full_message_round_trip(env, tmp_path):
    report = tmp_path / "report.html"
    report.write_text("<h1>Report</h1>")
    data = tmp_path / "data.csv"
    data.write_bytes(b"a,b\n1,2\n")
    subject = "Rapport \u00e9t\u00e9 " + tag()
    rc, result = send(env, to=[env["LAB_MAILBOX_2"]], cc=[env["LAB_SHARED_MAILBOX"]], bcc=[env["LAB_MAILBOX"]],
                      subject=subject, subtype="html", body="<p>Gr\u00fc\u00dfe</p>", attach=[str(report), str(data)],
                      headers={"X-Alert-Id": "42"})
    assert rc == 0, result
    assert result["changed"] and result["delivery"] == "accepted"
    assert sorted(result["accepted"]) == sorted([env["LAB_MAILBOX_2"], env["LAB_SHARED_MAILBOX"], env["LAB_MAILBOX"]])
    for box in (env["LAB_MAILBOX_2"], env["LAB_SHARED_MAILBOX"], env["LAB_MAILBOX"]):
        messages = fetch_messages(box, "X-Alert-Id", "42")
        message = next(m for m in messages if m["Subject"] == subject)
        assert message["Message-ID"] == result["message_id"]
        assert "Bcc" not in message and env["LAB_MAILBOX"] not in str(message["To"]) + str(message["Cc"])
        assert message.get_body(("html",)).get_content().strip() == "<p>Gr\u00fc\u00dfe</p>"
        attachments = {a.get_filename(): a.get_content() for a in message.iter_attachments()}
        assert attachments["report.html"].strip() == "<h1>Report</h1>"
        assert attachments["data.csv"] in (b"a,b\n1,2\n", "a,b\n1,2\n")


def test_check_mode_authenticates_and_sends_nothing(env):
    subject = tag()
    rc, result = send(env, check_mode=True, to=[env["LAB_MAILBOX_2"]], subject=subject)
    assert rc == 0 and result["changed"] is False
    assert result["would_send"][0]["subject"] == subject and result["timings"]["auth"] >= 0
    assert fetch_messages(env["LAB_MAILBOX_2"], "Subject", subject, wait=2) == []


def test_batch_of_50_over_one_connection(env):
    batch = tag()
    messages = [{"to": [env["LAB_MAILBOX_2"]], "subject": "%s #%d" % (batch, i)} for i in range(50)]
    rc, result = send(env, messages=messages, max_per_minute=1000, headers={"X-Batch": batch})
    assert rc == 0, result
    assert result["summary"] == {"total": 50, "accepted": 50, "failed": 0, "not_sent": 0}
    assert [r["index"] for r in result["results"]] == list(range(50))
    assert len(fetch_messages(env["LAB_MAILBOX_2"], "X-Batch", batch, wait=20)) >= 1


def test_bad_token_is_refused(env):
    token = mint("app", env["LAB_MAILBOX"], sign_with_other_key=True)
    rc, result = send(env, access_token=token, to=[env["LAB_MAILBOX_2"]], subject=tag())
    assert rc == 1 and result["error"]["category"] == "auth"
    assert token not in json.dumps(result)


def test_smtp_auth_disabled_for_mailbox(env):
    rc, result = send(env, sender=env["LAB_MAILBOX_SMTP_DISABLED"], to=[env["LAB_MAILBOX_2"]], subject=tag())
    assert rc == 1 and result["error"]["category"] in ("disabled", "auth")
    assert "SmtpClientAuthentication" in (result["error"]["hint"] or "") + result["error"]["message"]


def test_sending_as_someone_else_is_refused(env):
    rc, result = send(env, mailbox=env["LAB_MAILBOX"], sender=env["LAB_MAILBOX_2"], to=[env["LAB_MAILBOX"]],
                      subject=tag())
    assert rc == 1 and result["error"]["category"] in ("auth", "protocol")
    assert result.get("delivery") in ("refused", "not_sent")


def _free_port():
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_down(env):
    rc, result = send(env, port=_free_port(), to=[env["LAB_MAILBOX_2"]], subject=tag())
    assert rc == 1 and result["error"]["category"] == "connection"


class StallAfterData:
    """A STARTTLS-less fake that takes the whole message and never answers the final dot:
    the client must time out, report delivery unknown and never resend."""

    def __init__(self):
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.port = self.listener.getsockname()[1]
        self.data_commands = 0
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        self.listener.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _unused = self.listener.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self.session, args=(conn,), daemon=True).start()

    def session(self, conn):
        with conn:
            conn.settimeout(20)
            f = conn.makefile("rb")
            conn.sendall(b"220 fake ESMTP\r\n")
            for line in f:
                verb = line.strip().upper()
                if verb.startswith(b"EHLO"):
                    conn.sendall(b"250-fake\r\n250 AUTH XOAUTH2\r\n")
                elif verb == b"DATA":
                    self.data_commands += 1
                    conn.sendall(b"354 go ahead\r\n")
                    for body in f:
                        if body in (b".\r\n", b".\n"):
                            break
                    self.stop.wait(20)  # never answer
                    return
                else:
                    conn.sendall(b"250 ok\r\n")

    def close(self):
        self.stop.set()
        self.listener.close()


def test_no_plaintext_fallback_when_starttls_missing(env):
    fake = StallAfterData()
    try:
        rc, result = send(env, port=fake.port, to=[env["LAB_MAILBOX_2"]], subject=tag(),
                          access_token=mint("app", env["LAB_MAILBOX"]))
    finally:
        fake.close()
    assert rc == 1 and result["error"]["category"] == "tls" and fake.data_commands == 0


def test_server_silent_after_data_is_never_resent(env):
    from tests.unit.fakes.smtpserver import HANG, FakeSmtpServer, cert_dir

    fake = FakeSmtpServer({"DATAEND": HANG}, hang_seconds=15)
    with fake:
        start = time.monotonic()
        rc, result = send(env, port=fake.port, to=[env["LAB_MAILBOX_2"]], subject=tag(), timeout=2,
                          ca_path=str(cert_dir() / "cert.pem"), access_token=mint("app", env["LAB_MAILBOX"]))
        elapsed = time.monotonic() - start
    assert rc == 1 and result["delivery"] == "unknown" and result["error"]["category"] == "timeout"
    assert sum(1 for _unused, line in fake.log if line.upper() == "DATA") == 1
    assert fake.connections == 1 and elapsed < 2 + 4


@pytest.mark.parametrize("args,field", [
    ({"to": ["bob@"]}, "to[0]"),
    ({"to": ["ok@contoso.test"], "subject": "x\r\nBcc: victim@contoso.test"}, "subject"),
    ({"to": ["ok@contoso.test"], "headers": {"X-A": "1\r\nBcc: v@contoso.test"}}, "headers"),
    ({"to": ["ok@contoso.test\r\nRCPT TO:<v@contoso.test>"]}, "to[0]"),
    ({"to": ["ok@contoso.test"], "attach": ["/nonexistent/file.pdf"]}, "attach[0]"),
    ({"subject": "no recipients"}, "to"),
    ({"to": ["ok@contoso.test"], "subtype": "rtf"}, "subtype"),
    ({"messages": [{"to": ["ok@contoso.test"]}, {"to": ["x@"]}]}, "messages[1].to[0]"),
])
def test_bad_input_fails_before_connecting_and_sends_nothing(env, args, field):
    fake_port = _free_port()  # nothing listens: a connection attempt would show as a connection error
    rc, result = send(env, port=fake_port, access_token=mint("app", env["LAB_MAILBOX"]), **args)
    assert rc == 1, result
    message = result["msg"]
    assert message.startswith(field) or ("value of subtype" in message and field == "subtype"), message
    assert "connection" not in json.dumps(result.get("error", {}))
