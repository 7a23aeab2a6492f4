"""Fault knobs and counters of the mock IdP; server-down knobs of the mail side."""
from __future__ import annotations

import socket
import time

import msal
import pytest

pytestmark = [pytest.mark.lab, pytest.mark.timeout(60)]

APP_SCOPE = ["https://outlook.office365.com/.default"]


def token_request(lab, **extra):
    data = {"grant_type": "client_credentials", "client_id": lab.env["O365_CLIENT_ID"],
            "client_secret": lab.env["O365_CLIENT_SECRET"], "scope": APP_SCOPE[0]}
    data.update(extra)
    return lab.http_session().post(lab.authority() + "/oauth2/v2.0/token", data=data, timeout=10)


def test_counters(lab_clean):
    lab = lab_clean
    assert lab.counters()["token_requests"] == 0
    for _unused in range(3):
        assert token_request(lab).status_code == 200
    c = lab.counters()
    assert c["token_requests"] == 3
    assert c["endpoints"]["token"] == 3
    assert c["tenants"]["contoso.test"] == 3
    assert c["clients"][lab.env["O365_CLIENT_ID"]] == 3
    assert c["grants"]["client_credentials"] == 3
    token_request(lab, client_secret="bad")
    assert lab.counters()["errors"]["7000215"] == 1
    lab.reset_counters()
    assert lab.counters()["token_requests"] == 0


def test_fault_429_retry_after(lab_clean):
    lab = lab_clean
    lab.fault("token", status=429, retry_after=7, count=2)
    for _unused in range(2):
        r = token_request(lab)
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "7"
        assert r.json()["error_codes"]
    assert token_request(lab).status_code == 200  # count exhausted


@pytest.mark.parametrize("status", [500, 503])
def test_fault_5xx(lab_clean, status):
    lab = lab_clean
    lab.fault("token", status=status, count=1)
    assert token_request(lab).status_code == status
    assert token_request(lab).status_code == 200


def test_fault_delay(lab_clean):
    lab = lab_clean
    lab.fault("token", delay=1.0, count=1)
    t = time.monotonic()
    assert token_request(lab).status_code == 200
    assert time.monotonic() - t >= 0.9
    t = time.monotonic()
    token_request(lab)
    assert time.monotonic() - t < 0.9


def test_fault_devicecode_only(lab_clean):
    lab = lab_clean
    lab.fault("devicecode", status=503, count=1)
    assert token_request(lab).status_code == 200
    app = msal.PublicClientApplication(lab.env["LAB_PUBLIC_CLIENT_ID"], **lab.msal_kwargs())
    flow = app.initiate_device_flow(scopes=["https://outlook.office.com/IMAP.AccessAsUser.All"])
    assert "user_code" not in flow


def test_fault_any_and_clear(lab_clean):
    lab = lab_clean
    lab.fault("any", status=500, count=5)
    assert token_request(lab).status_code == 500
    lab.clear_faults()
    assert token_request(lab).status_code == 200


def test_msal_sees_429(lab_clean):
    lab = lab_clean
    lab.fault("token", status=429, retry_after=1, count=1)
    app = msal.ConfidentialClientApplication(
        lab.env["O365_CLIENT_ID"], client_credential=lab.env["O365_CLIENT_SECRET"],
        **lab.msal_kwargs())
    r = app.acquire_token_for_client(scopes=APP_SCOPE)
    assert "access_token" not in r


def _open(lab, port):
    try:
        with socket.create_connection((lab.host, port), timeout=1):
            return True
    except OSError:
        return False


def test_stop_start_dovecot(lab):
    try:
        lab.stop_service("dovecot")
        assert not _open(lab, lab.port("imap")) and not _open(lab, lab.port("pop"))
    finally:
        lab.start_service("dovecot")
    lab.imap_login(lab.env["LAB_MAILBOX"]).logout()


def test_stop_start_postfix(lab):
    try:
        lab.stop_service("postfix")
        assert not _open(lab, lab.port("smtp")) and not _open(lab, lab.port("smtps"))
    finally:
        lab.start_service("postfix")
    lab.send_mail(lab.env["LAB_MAILBOX"], lab.env["LAB_MAILBOX_2"], subject="after restart")


def test_stop_start_idp(lab):
    try:
        lab.stop_service("idp")
        assert not _open(lab, lab.port("idp"))
    finally:
        lab.start_service("idp")
    assert token_request(lab).status_code == 200


def test_stop_start_one_listener(lab):
    try:
        lab.stop_listener("imaps")
        assert not _open(lab, lab.port("imap"))
        assert _open(lab, lab.port("pop")) and _open(lab, lab.port("imap_starttls"))
        lab.imap_login(lab.env["LAB_MAILBOX"], starttls=True).logout()
    finally:
        lab.start_listener("imaps")
    lab.imap_login(lab.env["LAB_MAILBOX"]).logout()
    try:
        lab.stop_listener("smtp")
        assert not _open(lab, lab.port("smtp")) and _open(lab, lab.port("smtps"))
        lab.send_mail(lab.env["LAB_MAILBOX"], lab.env["LAB_MAILBOX_2"], implicit_tls=True)
    finally:
        lab.start_listener("smtp")
    assert _open(lab, lab.port("smtp"))
