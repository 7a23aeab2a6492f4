"""o365_failure_mail in a real ansible-playbook run: the alert is read back from the lab mailbox over IMAP."""
from __future__ import annotations

import base64
import json
import os
import uuid

import pytest

from tests.integration.support import cache_path, fetch_messages, lab_env, mint, run_playbook

pytestmark = pytest.mark.lab

HERE = os.path.dirname(os.path.abspath(__file__))
INVENTORY = os.path.join(HERE, "inventory.yml")


@pytest.fixture(scope="module")
def env():
    return lab_env()


def fake_jwt() -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")
    return "%s.%s.%s" % (part({"alg": "RS256"}), part({"aud": "https://outlook.office365.com", "oid": "x"}), "c2lnbmF0dXJl")


def play(env, playbook: str, tag: str, **extra_env) -> object:
    callback_env = {
        "ANSIBLE_CALLBACKS_ENABLED": "mailops.o365.o365_failure_mail",
        "O365_FAILURE_MAIL_SENDER": env["LAB_MAILBOX"],
        "O365_FAILURE_MAIL_TO": env["LAB_MAILBOX_2"],
        "O365_FAILURE_MAIL_SUBJECT_PREFIX": "[%s]" % tag,
        "O365_FAILURE_MAIL_HOST": env["LAB_HOST"],
        "O365_FAILURE_MAIL_PORT": env["LAB_SMTP_PORT"],
        "O365_FAILURE_MAIL_TIMEOUT": "10",
        "O365_TOKEN_CACHE_PATH": cache_path("callback"),
        "ANSIBLE_NOCOLOR": "1",
    }
    callback_env.update(extra_env)
    return run_playbook(os.path.join(HERE, playbook), extra_vars={"run_tag": tag, "jwt": fake_jwt()},
                        env=callback_env, args=("-i", INVENTORY), timeout=180)


def ours(proc) -> list:
    """The lines this callback printed (Ansible's own output shows the failing tasks' msg, secret included)."""
    return [line for line in (proc.stdout + proc.stderr).splitlines() if "o365_failure_mail" in line]


def tag() -> str:
    return "it-" + uuid.uuid4().hex[:12]


def test_failing_run_sends_one_mail_listing_every_failure_and_no_secret(env):
    run_tag = tag()
    proc = play(env, "failing.yml", run_tag)
    assert proc.returncode in (2, 4), proc.stdout + proc.stderr          # the play's own result is untouched
    messages = fetch_messages(env["LAB_MAILBOX_2"], "Subject", run_tag, wait=20)
    assert len(messages) == 1, [m["Subject"] for m in messages]
    mail = messages[0]
    body = mail.get_body(("plain",)).get_content()
    assert mail["Subject"].startswith("[%s] failing.yml: 3 failed, 1 unreachable" % run_tag), mail["Subject"]
    assert str(mail["From"]) == env["LAB_MAILBOX"] and mail["Auto-Submitted"] == "auto-generated"

    assert "[FAILED] host: web01" in body and "task: Render config on web01" in body
    assert "web01 broke %s" % run_tag in body and "play: Deploy the thing" in body
    assert "[FAILED] host: db01" in body and "task: Migrate database on db01" in body
    assert "db01-stderr-%s" % run_tag in body and "rc=3" in body
    assert "[UNREACHABLE] host: gone01" in body
    assert "[FAILED] host: vault01" in body and "output hidden (no_log)" in body
    assert "sensitive-%s" % run_tag not in body
    assert "ignored-%s" % run_tag not in body

    raw = mail.as_string()
    assert env["O365_CLIENT_SECRET"] not in raw and fake_jwt() not in raw and "[redacted]" in body
    lines = ours(proc)
    assert lines and not any(env["O365_CLIENT_SECRET"] in line for line in lines)
    assert "failure report" in proc.stdout


def test_passing_run_sends_nothing(env):
    run_tag = tag()
    proc = play(env, "passing.yml", run_tag)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "failure report" not in proc.stdout
    assert fetch_messages(env["LAB_MAILBOX_2"], "Subject", run_tag, wait=3) == []


def test_send_failure_is_a_warning_without_secrets(env):
    run_tag = tag()
    proc = play(env, "failing.yml", run_tag, O365_FAILURE_MAIL_PORT="1")
    assert proc.returncode in (2, 4), proc.stdout + proc.stderr
    output = proc.stdout + proc.stderr
    lines = ours(proc)
    assert any("o365_failure_mail: the failure mail was not sent" in line for line in lines), output
    assert "Traceback" not in output and not any(env["O365_CLIENT_SECRET"] in line for line in lines)
    assert "PLAY RECAP" in proc.stdout


def test_refused_token_is_a_warning(env):
    run_tag = tag()
    token = mint("app", env["LAB_MAILBOX"], sign_with_other_key=True)
    proc = play(env, "failing.yml", run_tag, O365_ACCESS_TOKEN=token)
    output = proc.stdout + proc.stderr
    assert "o365_failure_mail: the failure mail was not sent" in output, output
    assert token not in output and "Traceback" not in output
    assert fetch_messages(env["LAB_MAILBOX_2"], "Subject", run_tag, wait=2) == []
