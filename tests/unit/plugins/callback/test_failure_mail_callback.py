# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""o365_failure_mail: the scrubber, the failure text, the body, and the event flow with a fake sender."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.mailops.o365.plugins.callback import o365_failure_mail as cb
from ansible_collections.mailops.o365.plugins.module_utils._errors import O365Error
from ansible_collections.mailops.o365.plugins.module_utils.xoauth2 import encode_xoauth2

SECRET = "lab~Very.Secret-Value_42"


def jwt() -> str:
    def enc(d):
        return base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b"=").decode()
    return "%s.%s.%s" % (enc({"alg": "RS256", "typ": "JWT"}), enc({"aud": "https://outlook.office365.com"}), "c2ln_bmF0dXJl")


# ----------------------------------------------------------------------------- scrub

def test_scrub_drops_configured_secrets_and_token_shapes():
    token = jwt()
    sasl = encode_xoauth2("adele@contoso.test", "opaque-token-value-123456")
    text = "secret %s jwt %s sasl %s header Authorization: Bearer abcdefgh12345678 raw auth=Bearer zzzzzzzzzz\x01" % (
        SECRET, token, sasl)
    out = cb.scrub(text, [SECRET, None, ""])
    for leaked in (SECRET, token, sasl, "abcdefgh12345678", "zzzzzzzzzz"):
        assert leaked not in out
    assert out.count("[redacted]") == 5 and "Bearer [redacted]" in out


def test_scrub_leaves_ordinary_text_and_ignores_tiny_secrets():
    text = "Task failed on web01: disk /var is 95% full (rc=1)"
    assert cb.scrub(text, ["a", "rc", None]) == text


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_scrub_never_lets_the_secret_through(noise):
    assert SECRET not in cb.scrub(noise + SECRET + noise, [SECRET])


# ----------------------------------------------------------------------------- failure text

def test_failure_text_of_no_log_results_is_hidden():
    assert cb.failure_text({"msg": "password=hunter2"}, True, 500) == cb.NO_LOG_TEXT
    assert cb.failure_text({"censored": "the output has been hidden", "msg": "x"}, False, 500) == cb.NO_LOG_TEXT
    assert cb.failure_text({"_ansible_no_log": True, "msg": "x"}, False, 500) == cb.NO_LOG_TEXT


def test_failure_text_collects_msg_category_stderr_rc_and_truncates():
    text = cb.failure_text({"msg": "non-zero return code", "stderr": "boom\n", "rc": 3,
                            "error": {"category": "auth", "message": "m"}}, False, 500)
    assert text == "non-zero return code (category: auth) stderr: boom rc=3"
    long = cb.failure_text({"msg": "x" * 2000}, False, 100)
    assert len(long) == 100 and long.endswith("...")
    assert cb.failure_text({}, False, 100) == "failed (no message)"


def test_compose_lists_at_most_max_failures():
    entries = [{"kind": "FAILED", "host": "h%d" % i, "play": "p", "task": "t", "message": "m"} for i in range(5)]
    body = cb.compose("site.yml", entries, {"failed": 5, "unreachable": 0, "hosts": {"h0": {"failures": 1, "ok": 0}}}, 2)
    assert body.count("[FAILED]") == 2 and "... and 3 more not listed." in body
    assert "h0: failures=1" in body and "site.yml" in body


# ----------------------------------------------------------------------------- event flow

class Named:
    def __init__(self, name, no_log=False):
        self.name, self.no_log = name, no_log

    def get_name(self):
        return self.name


class Result:
    def __init__(self, host, task, data, no_log=False):
        self.host, self.task, self.result = Named(host), Named(task, no_log), data


class Stats:
    def __init__(self, **per_host):
        self.processed = dict.fromkeys(per_host, 1)
        self.per_host = per_host

    def summarize(self, host):
        base = {"ok": 0, "failures": 0, "unreachable": 0, "changed": 0, "skipped": 0, "rescued": 0, "ignored": 0}
        base.update(self.per_host[host])
        return base


class Display:
    verbosity = 0

    def __init__(self):
        self.warnings, self.lines = [], []

    def warning(self, text, *args, **kwargs):
        self.warnings.append(text)

    def display(self, text, *args, **kwargs):
        self.lines.append(text)


class FakeSender:
    sent = []
    fail = None

    def __init__(self, settings, mailbox, host, port, security, ehlohost, warn):
        self.settings, self.mailbox = settings, mailbox

    def open(self):
        if FakeSender.fail is not None:
            raise FakeSender.fail  # pylint: disable=raising-bad-type

    def send_all(self, prepared):
        FakeSender.sent.append(prepared[0])
        return [prepared[0].result(delivery="accepted", accepted=list(prepared[0].recipients))]

    def close(self):
        pass


OPTIONS = {"sender": "ansible@contoso.test", "to": ["oncall@contoso.test"], "subject_prefix": "[ansible failure]",
           "host": "127.0.0.1", "port": 2525, "security": "starttls", "max_message_chars": 500, "max_failures": 100,
           "tenant_id": "contoso.test", "client_id": "6731de76-14a6-49ae-97bc-6eba6914391e", "client_secret": SECRET,
           "timeout": 5.0}


@pytest.fixture()
def plugin(monkeypatch, tmp_path):
    FakeSender.sent, FakeSender.fail = [], None
    monkeypatch.setattr(cb, "SmtpSender", FakeSender)
    display = Display()
    plugin = cb.CallbackModule(display=display)
    options = dict(OPTIONS, token_cache_path=str(tmp_path / "cache.json"))
    plugin.get_option = lambda name, hostvars=None: options.get(name)
    plugin.v2_playbook_on_play_start(Named("Deploy"))
    return plugin, display, options


def test_one_mail_for_the_run_listing_every_failure(plugin):
    p, display, _unused = plugin
    p.v2_runner_on_failed(Result("web01", "Render", {"msg": "render failed with %s and %s" % (SECRET, jwt())}))
    p.v2_runner_on_failed(Result("db01", "Migrate", {"msg": "migration failed"}))
    p.v2_runner_on_failed(Result("web01", "Ignored", {"msg": "ignored"}), ignore_errors=True)
    p.v2_runner_on_failed(Result("vault01", "Creds", {"msg": "hunter2"}, no_log=True))
    p.v2_runner_on_unreachable(Result("gone01", "Gather", {"msg": "Failed to connect"}))
    p.v2_playbook_on_stats(Stats(web01={"failures": 1, "ignored": 1}, db01={"failures": 1},
                                 vault01={"failures": 1}, gone01={"unreachable": 1}))
    assert len(FakeSender.sent) == 1 and display.warnings == []
    message = FakeSender.sent[0].message
    body = message.get_content()
    assert str(message["Subject"]) == "[ansible failure] playbook: 3 failed, 1 unreachable"
    assert "task: Render" in body and "task: Migrate" in body and "[UNREACHABLE] host: gone01" in body
    assert "Ignored" not in body and "hunter2" not in body and cb.NO_LOG_TEXT in body
    assert SECRET not in message.as_string() and jwt() not in message.as_string()
    assert FakeSender.sent[0].recipients == ["oncall@contoso.test"]


def test_nothing_sent_when_nothing_failed_or_all_failures_were_rescued(plugin):
    p, _unused, _unused = plugin
    p.v2_playbook_on_stats(Stats(web01={"ok": 3}))
    p.v2_runner_on_failed(Result("web01", "Fails then rescued", {"msg": "x"}))
    p.v2_playbook_on_stats(Stats(web01={"ok": 3, "rescued": 1}))
    assert FakeSender.sent == []


def test_send_failure_is_a_scrubbed_warning(plugin):
    p, display, _unused = plugin
    FakeSender.fail = O365Error("auth", "SMTP server refused: 535 5.7.3 for %s" % SECRET, hint="token %s" % jwt())
    p.v2_runner_on_failed(Result("web01", "Render", {"msg": "x"}))
    p.v2_playbook_on_stats(Stats(web01={"failures": 1}))
    assert len(display.warnings) == 1 and "was not sent" in display.warnings[0]
    assert SECRET not in display.warnings[0] and jwt() not in display.warnings[0]


def test_unexpected_exception_never_escapes(plugin, monkeypatch):
    p, display, _unused = plugin
    FakeSender.fail = RuntimeError("socket exploded near %s" % SECRET)
    p.v2_runner_on_failed(Result("web01", "Render", {"msg": "x"}))
    p.v2_playbook_on_stats(Stats(web01={"failures": 1}))
    assert "RuntimeError" in display.warnings[0] and SECRET not in display.warnings[0]


def test_missing_recipients_is_a_warning(plugin):
    p, display, options = plugin
    options["to"] = []
    p.v2_runner_on_failed(Result("web01", "Render", {"msg": "x"}))
    p.v2_playbook_on_stats(Stats(web01={"failures": 1}))
    assert FakeSender.sent == [] and "no recipients" in display.warnings[0]


def test_bad_auth_settings_are_a_warning(plugin):
    p, display, options = plugin
    options["client_id"] = "not-a-guid"
    p.v2_runner_on_failed(Result("web01", "Render", {"msg": "x"}))
    p.v2_playbook_on_stats(Stats(web01={"failures": 1}))
    assert FakeSender.sent == [] and "client_id" in display.warnings[0]
