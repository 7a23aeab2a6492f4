"""The mail side is real: an independent client (curl's XOAUTH2) against Dovecot and Postfix."""
from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import time
import uuid

import pytest

pytestmark = [pytest.mark.lab, pytest.mark.timeout(60)]

CURL = shutil.which("curl")


def curl(lab, url, user, token, *extra, timeout=10):
    """Run curl with SASL XOAUTH2; returns (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("all_proxy", "http_proxy", "https_proxy", "curl_ca_bundle")}
    cmd = [CURL, "-sS", "--noproxy", "*", "--max-time", str(timeout),
           "--cacert", lab.ca_path, "--login-options", "AUTH=XOAUTH2",
           "--oauth2-bearer", token, "-u", f"{user}:", url, *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 5, env=env, check=False)
    return r.returncode, r.stdout, r.stderr


def imaps(lab):
    return f"imaps://{lab.host}:{lab.port('imap')}/"


def imap_starttls(lab):
    return f"imap://{lab.host}:{lab.port('imap_starttls')}/"


def pop3s(lab):
    return f"pop3s://{lab.host}:{lab.port('pop')}/"


def pop3_stls(lab):
    return f"pop3://{lab.host}:{lab.port('pop_starttls')}/"


def smtp_url(lab, implicit=False):
    return (f"smtps://{lab.host}:{lab.port('smtps')}" if implicit
            else f"smtp://{lab.host}:{lab.port('smtp')}")


def send_curl(lab, user, token, rcpt, tmp_path, subject=None, implicit=False, sender=None):
    msg = tmp_path / "msg.eml"
    subject = subject or f"lab {uuid.uuid4()}"
    msg.write_bytes(f"From: {sender or user}\r\nTo: {rcpt}\r\nSubject: {subject}\r\n\r\n"
                    "sent by curl through the lab\r\n".encode())
    extra = ["--mail-from", sender or user, "--mail-rcpt", rcpt, "-T", str(msg)]
    if not implicit:
        extra.append("--ssl-reqd")
    return curl(lab, smtp_url(lab, implicit), user, token, *extra), subject


requires_curl = pytest.mark.skipif(CURL is None, reason="curl not installed")


# ------------------------------------------------------------------ happy paths
@requires_curl
@pytest.mark.parametrize("kind", ["app", "delegated"])
def test_curl_imap_implicit_tls(lab, kind):
    user = lab.env["LAB_MAILBOX"]
    rc, out, err = curl(lab, imaps(lab), user, lab.mint(kind, user))
    assert rc == 0, err
    assert "INBOX" in out


@requires_curl
def test_curl_imap_starttls(lab):
    user = lab.env["LAB_MAILBOX"]
    rc, out, err = curl(lab, imap_starttls(lab), user, lab.mint("app", user), "--ssl-reqd")
    assert rc == 0, err
    assert "INBOX" in out


@requires_curl
@pytest.mark.parametrize("url", [pop3s, pop3_stls])
def test_curl_pop3(lab, url):
    user = lab.env["LAB_MAILBOX_2"]
    extra = ["--ssl-reqd"] if url is pop3_stls else []
    rc, out, err = curl(lab, url(lab), user, lab.mint("delegated", user), *extra)
    assert rc == 0, err


@requires_curl
@pytest.mark.parametrize("implicit", [False, True])
def test_curl_smtp_then_imap_roundtrip(lab, tmp_path, implicit):
    user, rcpt = lab.env["LAB_MAILBOX"], lab.env["LAB_MAILBOX_2"]
    (rc, _unused, err), subject = send_curl(lab, user, lab.mint("app", user), rcpt, tmp_path,
                                            implicit=implicit)
    assert rc == 0, err
    msgs = lab.read_mailbox(rcpt, search=f'SUBJECT "{subject}"',
                            wait_for=lambda ms: any(m["Subject"] == subject for m in ms))
    assert any(m["Subject"] == subject for m in msgs), "SMTP -> LMTP -> IMAP round trip"


def test_smtp_delegated_roundtrip_labclient(lab):
    user, rcpt = lab.env["LAB_MAILBOX_2"], lab.env["LAB_MAILBOX"]
    subject = f"delegated {uuid.uuid4()}"
    lab.send_mail(user, rcpt, subject=subject, token=lab.mint("delegated", user))
    msgs = lab.read_mailbox(rcpt, search=f'SUBJECT "{subject}"',
                            wait_for=lambda ms: any(m["Subject"] == subject for m in ms))
    assert any(m["Subject"] == subject for m in msgs)


# ------------------------------------------------------------------ bad tokens
BAD = {
    "other_key": dict(sign_with_other_key=True),
    "expired": dict(lifetime=-120),
    "wrong_audience": dict(claims={"aud": "https://graph.microsoft.com"}),
    "wrong_issuer": dict(claims={"iss": "https://sts.windows.net/00000000-0000-0000-0000-000000000000/"}),
    "no_sub": dict(claims={"sub": None}),
}


@requires_curl
@pytest.mark.parametrize("kind", ["app", "delegated"])
@pytest.mark.parametrize("bad", sorted(BAD))
def test_curl_imap_rejects_bad_token(lab, kind, bad):
    user = lab.env["LAB_MAILBOX"]
    rc, _unused, err = curl(lab, imaps(lab), user, lab.mint(kind, user, **BAD[bad]))
    assert rc == 67, (rc, err)  # CURLE_LOGIN_DENIED


@requires_curl
@pytest.mark.parametrize("bad", ["other_key", "expired", "wrong_audience", "wrong_issuer"])
def test_curl_pop3_and_smtp_reject_bad_token(lab, tmp_path, bad):
    user = lab.env["LAB_MAILBOX"]
    token = lab.mint("app", user, **BAD[bad])
    rc, _unused, err = curl(lab, pop3s(lab), user, token)
    assert rc == 67, (rc, err)
    (rc, _unused, err), _unused = send_curl(lab, user, token, lab.env["LAB_MAILBOX_2"], tmp_path)
    assert rc == 67, (rc, err)


@requires_curl
def test_curl_other_users_token_refused(lab):
    rc, _unused, err = curl(lab, imaps(lab), lab.env["LAB_MAILBOX"],
                            lab.mint("delegated", lab.env["LAB_MAILBOX_2"]))
    assert rc == 67, err


def test_delegated_token_cannot_use_app_path(lab):
    """A user token re-labelled with the app audience still needs idtyp=app."""
    user = lab.env["LAB_MAILBOX"]
    token = lab.mint("delegated", lab.env["LAB_MAILBOX_2"],
                     claims={"aud": "https://outlook.office365.com"})
    with pytest.raises(Exception, match="AUTHENTICATIONFAILED|failed"):
        lab.imap_login(user, token)


def test_other_tenant_app_refused(lab):
    with pytest.raises(Exception, match="AUTHENTICATIONFAILED"):
        lab.imap_login(lab.env["LAB_MAILBOX"], lab.mint("app", tenant="tenant01.test"))
    c = lab.imap_login("user001@tenant01.test", lab.mint("app", tenant="tenant01.test"))
    c.logout()


def test_unknown_mailbox_clean_no(lab):
    with pytest.raises(Exception, match="AUTHENTICATIONFAILED"):
        lab.imap_login("nobody@contoso.test", lab.mint("app"))


# ------------------------------------------------------------------ switches & permissions
@requires_curl
def test_protocol_switches(lab, tmp_path):
    noimap = lab.env["LAB_MAILBOX_IMAP_DISABLED"]
    nopop = lab.env["LAB_MAILBOX_POP_DISABLED"]
    nosmtp = lab.env["LAB_MAILBOX_SMTP_DISABLED"]
    assert curl(lab, imaps(lab), noimap, lab.mint("delegated", noimap))[0] == 67
    assert curl(lab, pop3s(lab), noimap, lab.mint("delegated", noimap))[0] == 0
    assert curl(lab, pop3s(lab), nopop, lab.mint("delegated", nopop))[0] == 67
    assert curl(lab, imaps(lab), nopop, lab.mint("delegated", nopop))[0] == 0
    (rc, _unused, _unused), _unused = send_curl(lab, nosmtp, lab.mint("delegated", nosmtp), noimap, tmp_path)
    assert rc == 67
    assert curl(lab, imaps(lab), nosmtp, lab.mint("app", nosmtp))[0] == 0


def _smtp_auth_reply(lab, user, token):
    import base64
    import smtplib
    s = smtplib.SMTP(lab.host, lab.port("smtp"), timeout=10)
    try:
        s.starttls(context=lab.ssl_context())
        s.ehlo()
        xo = base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode()).decode()
        code, resp = s.docmd("AUTH", "XOAUTH2 " + xo)
        if code == 334:
            code, resp = s.docmd("")
        return code, resp.decode()
    finally:
        s.close()


def test_smtp_disabled_reply_text(lab):
    nosmtp = lab.env["LAB_MAILBOX_SMTP_DISABLED"]
    code, text = _smtp_auth_reply(lab, nosmtp, lab.mint("delegated", nosmtp))
    assert code == 535
    assert "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled" in text


def test_imap_disabled_reply_text(lab):
    noimap = lab.env["LAB_MAILBOX_IMAP_DISABLED"]
    with pytest.raises(Exception, match="AUTHENTICATE failed"):
        lab.imap_login(noimap, lab.mint("delegated", noimap))


@requires_curl
def test_imap_only_token_refused_by_smtp_and_pop(lab, tmp_path):
    user = lab.env["LAB_MAILBOX"]
    token = lab.mint("delegated", user, client_id=lab.env["LAB_PUBLIC_IMAP_ONLY_CLIENT_ID"])
    assert curl(lab, imaps(lab), user, token)[0] == 0
    assert curl(lab, pop3s(lab), user, token)[0] == 67
    (rc, _unused, _unused), _unused = send_curl(lab, user, token, lab.env["LAB_MAILBOX_2"], tmp_path)
    assert rc == 67


def _pop3_auth(lab, user, token):
    """Two-line AUTH XOAUTH2 like Exchange's transcript; True on +OK."""
    import base64
    import poplib
    p = poplib.POP3_SSL(lab.host, lab.port("pop"), context=lab.ssl_context(), timeout=10)
    try:
        p._putcmd("AUTH XOAUTH2")
        assert p._getline()[0].startswith(b"+")
        p._putcmd(base64.b64encode(f"user={user}\x01auth=Bearer {token}\x01\x01".encode()).decode())
        line = p._getline()[0]
        if line.startswith(b"+ ") or line == b"+":   # error challenge: answer empty
            p._putcmd("")
            line = p._getline()[0]
        return line.startswith(b"+OK")
    finally:
        p.close()


@pytest.mark.parametrize("kind,claims,ok", [
    ("app", {"roles": ["IMAP.AccessAsApp"]}, {"imap"}),
    ("app", {"roles": ["SMTP.SendAsApp", "POP.AccessAsApp"]}, {"pop3", "smtp"}),
    ("delegated", {"scp": "POP.AccessAsUser.All"}, {"pop3"}),
    ("delegated", {"scp": "SMTP.Send IMAP.AccessAsUser.All"}, {"imap", "smtp"}),
])
def test_per_protocol_permissions(lab, kind, claims, ok):
    user = lab.env["LAB_MAILBOX"]
    token = lab.mint(kind, user, claims=claims)
    got = set()
    try:
        lab.imap_login(user, token).logout()
        got.add("imap")
    except Exception:  # noqa: BLE001
        pass
    if _pop3_auth(lab, user, token):
        got.add("pop3")
    if _smtp_auth_reply(lab, user, token)[0] == 235:
        got.add("smtp")
    assert got == ok


@requires_curl
def test_limited_app_only_on_its_mailboxes(lab):
    cid = lab.env["LAB_APP_LIMITED_CLIENT_ID"]
    allowed = lab.env["LAB_APP_LIMITED_MAILBOXES"].split(",")
    token = lab.mint("app", client_id=cid)
    for mbx in allowed:
        assert curl(lab, imaps(lab), mbx, token)[0] == 0, mbx
    assert curl(lab, imaps(lab), lab.env["LAB_MAILBOX"], token)[0] == 67
    assert curl(lab, pop3s(lab), lab.env["LAB_MAILBOX"], token)[0] == 67
    assert _smtp_auth_reply(lab, lab.env["LAB_MAILBOX"], token)[0] == 535
    assert _smtp_auth_reply(lab, allowed[0], token)[0] == 235


def test_shared_mailbox_with_app(lab):
    c = lab.imap_login(lab.env["LAB_SHARED_MAILBOX"], lab.mint("app"))
    c.logout()


def test_sender_must_be_login(lab):
    import smtplib
    user = lab.env["LAB_MAILBOX"]
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        lab.send_mail(user, lab.env["LAB_MAILBOX_2"], sender=lab.env["LAB_MAILBOX_2"])


def test_no_relay(lab):
    import smtplib
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        lab.send_mail(lab.env["LAB_MAILBOX"], "someone@example.com")


# ------------------------------------------------------------------ protocol surface
def _line(sock_file):
    return sock_file.readline().decode()


def test_imap_greeting_and_capabilities(lab):
    with socket.create_connection((lab.host, lab.port("imap")), timeout=5) as raw:
        with lab.ssl_context().wrap_socket(raw, server_hostname=lab.host) as s:
            f = s.makefile("rb")
            greeting = _line(f)
            assert "The Microsoft Exchange IMAP4 service is ready." in greeting
            s.sendall(b"a CAPABILITY\r\n")
            caps = _line(f)
            assert "AUTH=XOAUTH2" in caps and "SASL-IR" in caps


def test_pop3_greeting(lab):
    with socket.create_connection((lab.host, lab.port("pop")), timeout=5) as raw:
        with lab.ssl_context().wrap_socket(raw, server_hostname=lab.host) as s:
            assert "The Microsoft Exchange POP3 service is ready." in _line(s.makefile("rb"))


def test_smtp_ehlo_after_starttls(lab):
    import smtplib
    s = smtplib.SMTP(lab.host, lab.port("smtp"), timeout=10)
    try:
        s.ehlo()
        assert "auth" not in s.esmtp_features  # AUTH only after STARTTLS
        s.starttls(context=lab.ssl_context())
        s.ehlo()
        assert "XOAUTH2" in s.esmtp_features["auth"]
        assert int(s.esmtp_features["size"]) >= 10 * 1024 * 1024
    finally:
        s.close()


def test_long_token_on_auth_line(lab):
    """Real tokens put 1.7-2.5 KB on the AUTH line; pad a token to ~3 KB."""
    user = lab.env["LAB_MAILBOX"]
    token = lab.mint("app", user, claims={"lab_padding": "x" * 1500})
    assert len(token) > 2500
    assert _smtp_auth_reply(lab, user, token)[0] == 235
    lab.imap_login(user, token).logout()


def test_fleet_mailbox(lab):
    fleet = lab.fleet(3)
    for mbx in fleet:
        lab.imap_login(mbx, lab.mint("app", mbx)).logout()


def test_mail_tls_cert_from_lab_ca(lab):
    ctx = lab.ssl_context()
    for port in (lab.port("imap"), lab.port("pop"), lab.port("smtps")):
        with socket.create_connection((lab.host, port), timeout=5) as raw:
            with ctx.wrap_socket(raw, server_hostname=lab.host) as s:
                assert s.version() in ("TLSv1.2", "TLSv1.3")
    with pytest.raises(ssl.SSLError):
        with socket.create_connection((lab.host, lab.port("imap")), timeout=5) as raw:
            ssl.create_default_context().wrap_socket(raw, server_hostname=lab.host)
    time.sleep(0)


def test_shared_mailbox_delegate_fullaccess(lab):
    shared = lab.env["LAB_SHARED_MAILBOX"]
    lab.imap_login(shared, lab.mint("delegated", lab.env["LAB_MAILBOX"])).logout()
    with pytest.raises(Exception, match="AUTHENTICATIONFAILED"):
        lab.imap_login(shared, lab.mint("delegated", lab.env["LAB_MAILBOX_2"]))


def test_mail_without_auth_530(lab):
    import smtplib
    s = smtplib.SMTP(lab.host, lab.port("smtp"), timeout=10)
    try:
        s.starttls(context=lab.ssl_context())
        s.ehlo()
        s.docmd("MAIL FROM:<adele@contoso.test>")
        code, text = s.docmd("RCPT TO:<bob@contoso.test>")
        assert code == 530 and b"5.7.57" in text
    finally:
        s.close()


def test_purge_mailbox(lab):
    mbx = lab.fleet(10)[-1]
    lab.send_mail(lab.env["LAB_MAILBOX"], mbx, subject="to purge")
    lab.read_mailbox(mbx, wait_for=lambda ms: len(ms) > 0)
    assert lab.purge_mailbox(mbx) >= 1
    assert lab.read_mailbox(mbx) == []
