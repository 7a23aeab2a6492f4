"""The SMTP password login of the one benchmark mailbox (LAB_PLAIN_USER / LAB_PLAIN_PASSWORD).

Dovecot offers `xoauth2 plain login` (as Exchange Online advertises `AUTH LOGIN XOAUTH2` on SMTP
and `AUTH=PLAIN` on IMAP), but the only password in the lab is `smtp/<LAB_PLAIN_USER>`: PLAIN and
LOGIN succeed for that mailbox over SMTP (after STARTTLS, or on the implicit-TLS port) and nowhere
else. XOAUTH2 is validated exactly as before.
"""
from __future__ import annotations

import base64
import os
import shutil
import smtplib
import subprocess
import uuid

import pytest

pytestmark = [pytest.mark.lab, pytest.mark.timeout(60)]

CURL = shutil.which("curl")
requires_curl = pytest.mark.skipif(CURL is None, reason="curl not installed")


@pytest.fixture(name="plain")
def fixture_plain(lab):
    """(user, password) of the SMTP password mailbox; skip on a lab started before it existed."""
    user, password = lab.env.get("LAB_PLAIN_USER"), lab.env.get("LAB_PLAIN_PASSWORD")
    if not user or not password:
        pytest.skip("the running lab has no LAB_PLAIN_USER: restart it (labctl.py restart)")
    return user, password


def curl_pw(lab, url, user, password, *extra, timeout=10):
    """curl with user:password (SASL PLAIN unless --login-options says otherwise)."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("all_proxy", "http_proxy", "https_proxy", "curl_ca_bundle")}
    cmd = [CURL, "-sS", "--noproxy", "*", "--max-time", str(timeout), "--cacert", lab.ca_path,
           "--user", f"{user}:{password}", url, *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 5, env=env, check=False)
    return proc.returncode, proc.stdout, proc.stderr


def smtp_send_pw(lab, tmp_path, user, password, rcpt, *extra, implicit=False, sender=None):
    """One message with curl over SMTP STARTTLS (or smtps); returns ((rc, out, err), subject)."""
    subject = f"plain {uuid.uuid4()}"
    msg = tmp_path / "msg.eml"
    msg.write_bytes(f"From: {sender or user}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\n"
                    "sent with a password through the lab\r\n".encode())
    url = (f"smtps://{lab.host}:{lab.port('smtps')}" if implicit
           else f"smtp://{lab.host}:{lab.port('smtp')}")
    args = ["--mail-from", sender or user, "--mail-rcpt", rcpt, "-T", str(msg), *extra]
    if not implicit:
        args.append("--ssl-reqd")
    return curl_pw(lab, url, user, password, *args), subject


def smtp_auth(lab, mechanism, initial):
    """STARTTLS, EHLO, AUTH <mechanism> <initial>; LOGIN answers the 334 prompts. Returns (code, text)."""
    client = smtplib.SMTP(lab.host, lab.port("smtp"), timeout=10)
    try:
        client.starttls(context=lab.ssl_context())
        client.ehlo()
        if mechanism == "LOGIN":
            code, resp = client.docmd("AUTH", "LOGIN")
            for part in initial:
                if code != 334:
                    break
                code, resp = client.docmd(base64.b64encode(part.encode()).decode())
        else:
            code, resp = client.docmd("AUTH", f"{mechanism} {initial}")
            if code == 334:   # XOAUTH2 error challenge: answer with an empty line
                code, resp = client.docmd("")
        return code, resp.decode()
    finally:
        client.close()


def b64(text):
    return base64.b64encode(text.encode()).decode()


# ------------------------------------------------------------------ the password works on SMTP
@requires_curl
@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "smtps"])
def test_plain_smtp_roundtrip(lab, plain, tmp_path, implicit):
    user, password = plain
    rcpt = lab.env["LAB_MAILBOX_2"]
    (rc, _unused, err), subject = smtp_send_pw(lab, tmp_path, user, password, rcpt, implicit=implicit)
    assert rc == 0, err
    msgs = lab.read_mailbox(rcpt, search=f'SUBJECT "{subject}"',
                            wait_for=lambda ms: any(m["Subject"] == subject for m in ms))
    assert any(m["Subject"] == subject for m in msgs), "PLAIN SMTP -> LMTP -> IMAP round trip"


@requires_curl
def test_login_mechanism_smtp(lab, plain, tmp_path):
    user, password = plain
    (rc, _unused, err), _unused = smtp_send_pw(lab, tmp_path, user, password, lab.env["LAB_MAILBOX"],
                                               "--login-options", "AUTH=LOGIN")
    assert rc == 0, err


def test_plain_and_login_replies(lab, plain):
    user, password = plain
    assert smtp_auth(lab, "PLAIN", b64(f"\0{user}\0{password}"))[0] == 235
    assert smtp_auth(lab, "LOGIN", [user, password])[0] == 235
    code, text = smtp_auth(lab, "PLAIN", b64(f"\0{user}\0{password}x"))
    assert code == 535, text
    assert smtp_auth(lab, "LOGIN", [user, "wrong"])[0] == 535


def test_ehlo_advertises_password_mechanisms_after_starttls_only(lab):
    client = smtplib.SMTP(lab.host, lab.port("smtp"), timeout=10)
    try:
        client.ehlo()
        assert "auth" not in client.esmtp_features   # no password before TLS
        client.starttls(context=lab.ssl_context())
        client.ehlo()
        assert set(client.esmtp_features["auth"].split()) == {"XOAUTH2", "PLAIN", "LOGIN"}
    finally:
        client.close()


# ------------------------------------------------------------------ and nowhere else
@requires_curl
@pytest.mark.parametrize("proto", ["imaps", "imap-starttls", "pop3s", "pop3-stls"])
def test_same_password_refused_by_imap_and_pop3(lab, plain, proto):
    user, password = plain
    url, extra = {
        "imaps": (f"imaps://{lab.host}:{lab.port('imap')}/", []),
        "imap-starttls": (f"imap://{lab.host}:{lab.port('imap_starttls')}/", ["--ssl-reqd"]),
        "pop3s": (f"pop3s://{lab.host}:{lab.port('pop')}/", []),
        "pop3-stls": (f"pop3://{lab.host}:{lab.port('pop_starttls')}/", ["--ssl-reqd"]),
    }[proto]
    rc, _unused, err = curl_pw(lab, url, user, password, *extra)
    assert rc == 67, (rc, err)  # CURLE_LOGIN_DENIED
    rc, _unused, err = curl_pw(lab, url, user, password, "--login-options", "AUTH=LOGIN", *extra)
    assert rc == 67, (rc, err)


def test_imap_login_command_refused(lab, plain):
    """IMAP LOGIN (plaintext, not SASL) goes through the same passdb: refused."""
    import imaplib
    user, password = plain
    client = imaplib.IMAP4_SSL(lab.host, lab.port("imap"), ssl_context=lab.ssl_context(), timeout=10)
    try:
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            client.login(user, password)
    finally:
        client.shutdown()


@requires_curl
@pytest.mark.parametrize("who", ["LAB_MAILBOX", "LAB_MAILBOX_2", "fleet", "LAB_SHARED_MAILBOX"])
@pytest.mark.parametrize("which", ["plain_password", "other"])
def test_other_mailboxes_refused_over_smtp(lab, plain, tmp_path, who, which):
    other = lab.fleet(1)[0] if who == "fleet" else lab.env[who]
    password = plain[1] if which == "plain_password" else "Passw0rd!"
    (rc, _unused, err), _unused = smtp_send_pw(lab, tmp_path, other, password, lab.env["LAB_MAILBOX"])
    assert rc == 67, (rc, err)


@pytest.mark.parametrize("password", ["", "x", "{PLAIN}x"])
def test_other_mailbox_empty_or_scheme_password_refused(lab, password):
    """Mailboxes have no password in `users` (lookup only): an empty one must not log in."""
    user = lab.env["LAB_MAILBOX"]
    assert smtp_auth(lab, "PLAIN", b64(f"\0{user}\0{password}"))[0] == 535
    assert smtp_auth(lab, "PLAIN", b64(f"{user}\0{user}\0{password}"))[0] == 535


def test_authzid_cannot_impersonate(lab, plain):
    """PLAIN authzid other than the login (master-user style) is refused: no master passdb."""
    user, password = plain
    code, text = smtp_auth(lab, "PLAIN", b64(f"{lab.env['LAB_MAILBOX']}\0{user}\0{password}"))
    assert code == 535, text


def test_sender_must_be_the_password_mailbox(lab, plain):
    user, password = plain
    client = smtplib.SMTP(lab.host, lab.port("smtp"), timeout=10)
    try:
        client.starttls(context=lab.ssl_context())
        client.login(user, password)
        with pytest.raises(smtplib.SMTPRecipientsRefused):
            client.sendmail(lab.env["LAB_MAILBOX"], [lab.env["LAB_MAILBOX_2"]], b"Subject: x\r\n\r\nx\r\n")
    finally:
        client.close()


def test_token_as_password_refused(lab, plain):
    """A valid bearer token sent as a PLAIN password is just a wrong password."""
    user = lab.env["LAB_MAILBOX"]
    token = lab.mint("app", user)
    assert smtp_auth(lab, "PLAIN", b64(f"\0{user}\0{token}"))[0] == 535
    assert smtp_auth(lab, "PLAIN", b64(f"\0{plain[0]}\0{lab.mint('app', plain[0])}"))[0] == 535


# ------------------------------------------------------------------ XOAUTH2 unchanged
def _xoauth2(user, token):
    return b64(f"user={user}\x01auth=Bearer {token}\x01\x01")


def test_xoauth2_unchanged_for_the_password_mailbox(lab, plain):
    user = plain[0]
    assert smtp_auth(lab, "XOAUTH2", _xoauth2(user, lab.mint("app", user)))[0] == 235
    assert smtp_auth(lab, "XOAUTH2", _xoauth2(user, lab.mint("delegated", user)))[0] == 235
    lab.imap_login(user, lab.mint("app", user)).logout()
    bad = lab.mint("app", user, sign_with_other_key=True)
    assert smtp_auth(lab, "XOAUTH2", _xoauth2(user, bad))[0] == 535
    with pytest.raises(Exception, match="AUTHENTICATIONFAILED"):
        lab.imap_login(user, bad)


def test_xoauth2_password_in_place_of_token_refused(lab, plain):
    user, password = plain
    assert smtp_auth(lab, "XOAUTH2", _xoauth2(user, password))[0] == 535


def test_imap_capability_lists_plain_and_xoauth2(lab):
    import socket
    with socket.create_connection((lab.host, lab.port("imap")), timeout=5) as raw:
        with lab.ssl_context().wrap_socket(raw, server_hostname=lab.host) as sock:
            stream = sock.makefile("rb")
            stream.readline()
            sock.sendall(b"a CAPABILITY\r\n")
            caps = stream.readline().decode()
    assert "AUTH=XOAUTH2" in caps and "AUTH=PLAIN" in caps   # as Exchange Online advertises
