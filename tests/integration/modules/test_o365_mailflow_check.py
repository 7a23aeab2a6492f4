"""o365_mailflow_check against the lab: Postfix submission -> LMTP -> Dovecot, found and deleted over IMAP."""
from __future__ import annotations

import imaplib
import json
import ssl
import time
import uuid

import pytest

from tests.integration.support import cache_path, fetch_messages, lab_env, mint, run_module

pytestmark = pytest.mark.lab

CANARY_HEADER = "X-Mailops-Canary"


@pytest.fixture(scope="module")
def env():
    return lab_env()


def probe(env, check_mode=False, **args):
    base = {"sender_mailbox": env["LAB_MAILBOX"], "recipient_mailbox": env["LAB_MAILBOX_2"],
            "smtp_host": env["LAB_HOST"], "smtp_port": int(env["LAB_SMTP_PORT"]),
            "imap_host": env["LAB_HOST"], "imap_port": int(env["LAB_IMAP_PORT"]),
            "timeout": 10, "warn_s": 10, "crit_s": 30, "poll_interval_s": 1,
            "token_cache_path": cache_path("mailflow")}
    base.update(args)
    return run_module("o365_mailflow_check", base, check_mode=check_mode, timeout=180)


def left(env, canary_id, wait=1.0):
    """Canaries with this id still in the recipient's INBOX."""
    return fetch_messages(env["LAB_MAILBOX_2"], CANARY_HEADER, canary_id, wait=wait)


def imap_session(env, mailbox):
    token = mint("app", mailbox)
    context = ssl.create_default_context(cafile=env["O365_CA_PATH"])
    imap = imaplib.IMAP4_SSL(env["LAB_HOST"], int(env["LAB_IMAP_PORT"]), ssl_context=context, timeout=10)
    imap.authenticate("XOAUTH2", lambda _: ("user=%s\x01auth=Bearer %s\x01\x01" % (mailbox, token)).encode())
    return imap


def test_canary_arrives_is_measured_and_deleted(env):
    rc, result = probe(env)
    assert rc == 0, result
    assert result["status"] == "ok" and result["ok"] is True and result["changed"] is True
    assert 0 < result["latency_s"] < 10
    assert result["canary_id"].startswith("canary-") and result["message_id"].startswith("<")
    assert result["sent_at"] <= result["received_at"] and result["polls"] >= 1
    assert result["removed"] is True and set(result["timings"]) == {"login", "send", "poll", "cleanup"}
    assert left(env, result["canary_id"]) == []
    assert env["O365_CLIENT_SECRET"] not in json.dumps(result)


def test_stale_canary_of_an_earlier_run_is_removed_and_counted(env):
    stale_id = "canary-%d-%s" % (int(time.time()) - 3600, uuid.uuid4().hex[:12])
    rc, planted = run_module("o365_smtp_send", {
        "host": env["LAB_HOST"], "port": int(env["LAB_SMTP_PORT"]), "timeout": 10,
        "token_cache_path": cache_path("mailflow"),
        "sender": env["LAB_MAILBOX"], "to": [env["LAB_MAILBOX_2"]],
        "subject": "[mailops canary] " + stale_id, "headers": {CANARY_HEADER: stale_id}})
    assert rc == 0, planted
    assert len(left(env, stale_id, wait=15)) == 1     # delivered before the probe looks
    rc, result = probe(env)
    assert rc == 0, result
    assert result["stale_found"] >= 1 and result["stale_removed"] == result["stale_found"]
    assert left(env, stale_id) == [] and left(env, result["canary_id"]) == []


def test_smtp_auth_disabled_sender_is_classified_and_sends_nothing(env):
    rc, result = probe(env, sender_mailbox=env["LAB_MAILBOX_SMTP_DISABLED"])
    assert rc == 1, result
    assert result["status"] == "error" and result["error"]["category"] in ("disabled", "auth")
    assert "SmtpClientAuthentication" in (result["error"]["hint"] or "") + result["error"]["message"]
    assert result["changed"] is False and result["sent_at"] is None and result["message_id"] is None
    assert left(env, result["canary_id"], wait=2) == []


def test_imap_disabled_recipient_fails_before_sending(env):
    rc, result = probe(env, recipient_mailbox=env["LAB_MAILBOX_IMAP_DISABLED"])
    assert rc == 1 and result["status"] == "error" and result["error"]["category"] in ("disabled", "auth")
    assert result["changed"] is False and result["message_id"] is None


def test_check_mode_logs_in_and_sends_nothing(env):
    rc, result = probe(env, check_mode=True)
    assert rc == 0, result
    assert result["changed"] is False and result["status"] == "ok" and result["message_id"] is None
    assert result["timings"]["login"] > 0
    assert left(env, result["canary_id"], wait=2) == []


def test_canary_in_another_folder_is_lost_within_the_bound_and_cleaned_up_later(env):
    folder = "Canary-Lost"
    imap = imap_session(env, env["LAB_MAILBOX_2"])
    try:
        imap.create(folder)    # NO [ALREADYEXISTS] is fine
    finally:
        imap.logout()
    start = time.monotonic()
    rc, result = probe(env, folder=folder, warn_s=1, crit_s=3, poll_interval_s=1)
    elapsed = time.monotonic() - start
    assert rc == 1, result                              # fail_on: crit fails on lost
    assert result["status"] == "lost" and result["latency_s"] is None and result["changed"] is True
    assert result["removed"] is False
    assert elapsed < 3 + 10 + 15                        # crit_s + timeout + process and login overhead
    assert len(left(env, result["canary_id"], wait=10)) == 1    # it went to INBOX, not the polled folder

    # A later run on INBOX with a crit_s shorter than the lost canary's age treats it as stale.
    time.sleep(2.5)
    rc, later = probe(env, warn_s=2, crit_s=2, poll_interval_s=0.5, fail_on="never")
    assert rc == 0, later
    assert later["stale_removed"] >= 1 and left(env, result["canary_id"]) == []


def test_fail_on_never_reports_lost_without_failing(env):
    rc, result = probe(env, folder="Canary-Lost", warn_s=1, crit_s=2, poll_interval_s=1, fail_on="never",
                       cleanup=True)
    assert rc == 0 and result["status"] == "lost", result
    # Leave nothing behind for other tests: the next INBOX run with a short crit_s sweeps it.
    time.sleep(2.5)
    rc, sweep = probe(env, warn_s=2, crit_s=2, poll_interval_s=0.5, fail_on="never")
    assert rc == 0 and left(env, result["canary_id"]) == []


def test_bad_thresholds_fail_before_any_connection(env):
    rc, result = probe(env, warn_s=100, crit_s=10, smtp_port=1, imap_port=1)
    assert rc == 1 and result["msg"].startswith("crit_s"), result
    assert result["error"]["category"] == "config"
