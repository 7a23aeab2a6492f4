# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Mail-flow probe: thresholds, canary tagging, stale selection, and the run with fake IMAP/SMTP and a fake clock."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.mailops.o365.plugins.module_utils import _mailflow as mf
from ansible_collections.mailops.o365.plugins.module_utils._errors import O365Error
from ansible_collections.mailops.o365.plugins.module_utils._message import build_message
from ansible_collections.mailops.o365.plugins.module_utils._options import AuthSettings

SENDER, RECIPIENT = "probe-out@contoso.test", "probe-in@contoso.test"
NOW = 1_700_000_000.0


# ----------------------------------------------------------------------------- thresholds

@pytest.mark.parametrize("latency,status", [
    (0.001, "ok"), (59.999, "ok"), (60.0, "warn"), (299.9, "warn"), (300.0, "crit"), (301.0, "crit"), (None, "lost"),
])
def test_classify_latency(latency, status):
    assert mf.classify_latency(latency, 60.0, 300.0) == status


@given(st.floats(0, 1e6), st.floats(0.001, 1e4), st.floats(0, 1e4))
def test_classify_latency_is_monotonic(latency, warn, extra):
    crit = warn + extra
    order = ["ok", "warn", "crit"]
    assert order.index(mf.classify_latency(latency, warn, crit)) <= order.index(mf.classify_latency(latency + 1, warn, crit))


@pytest.mark.parametrize("status,fail_on,fails", [
    ("ok", "crit", False), ("warn", "crit", False), ("crit", "crit", True), ("lost", "crit", True),
    ("warn", "warn", True), ("ok", "warn", False),
    ("crit", "never", False), ("lost", "never", False), ("error", "never", True), ("error", "crit", True),
])
def test_should_fail(status, fail_on, fails):
    assert mf.should_fail(status, fail_on) is fails


def test_backoff_doubles_and_is_capped():
    seen, interval = [], 1.0
    for _unused in range(8):
        seen.append(interval)
        interval = mf.next_interval(interval, 10.0)
    assert seen == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0, 10.0]


# ----------------------------------------------------------------------------- tagging

def test_canary_ids_are_unique_and_carry_their_time():
    ids = {mf.new_canary_id(NOW) for _unused in range(1000)}
    assert len(ids) == 1000
    assert all(i.startswith("canary-1700000000-") for i in ids)
    assert mf.canary_epoch("[mailops canary] " + next(iter(ids))) == 1700000000
    assert mf.canary_epoch("Re: something else") is None
    assert mf.canary_epoch(None) is None


def test_canary_message_is_tagged_and_valid():
    cid = mf.new_canary_id(NOW)
    message, recipients = build_message(mf.canary_spec(SENDER, RECIPIENT, cid))
    assert recipients == [RECIPIENT]
    assert message[mf.CANARY_HEADER] == cid
    assert str(message["Subject"]) == "%s %s" % (mf.SUBJECT_PREFIX, cid)
    assert message["Auto-Submitted"] == "auto-generated"


def test_search_criteria_are_quoted_and_single_line():
    assert mf.canary_search("canary-1-abcdef") == 'HEADER X-Mailops-Canary "canary-1-abcdef"'
    assert mf.stale_search(SENDER) == 'HEADER X-Mailops-Canary "canary-" FROM "%s"' % SENDER


def test_stale_selection():
    old = "[mailops canary] canary-%d-aaaaaa" % (NOW - 1000)
    young = "[mailops canary] canary-%d-bbbbbb" % (NOW - 10)
    fetched = [
        {"uid": 7, "subject": old, "date": None},
        {"uid": 3, "subject": young, "date": None},
        {"uid": 9, "subject": "no id", "date": email.utils.formatdate(NOW - 3600)},
        {"uid": 5, "subject": "no id", "date": email.utils.formatdate(NOW - 5)},
        {"uid": 4, "subject": None, "date": "garbage"},     # ours by header and sender, age unknown
    ]
    assert mf.pick_stale(fetched, 300.0, NOW) == [4, 7, 9]


# ----------------------------------------------------------------------------- options

def params(**extra):
    base = {"sender_mailbox": SENDER, "recipient_mailbox": RECIPIENT}
    base.update(extra)
    return base


def test_config_defaults_come_from_the_cloud_table():
    c = mf.ProbeConfig.from_params(params(), "public")
    assert (c.smtp_host, c.smtp_port, c.smtp_security) == ("smtp.office365.com", 587, "starttls")
    assert (c.imap_host, c.imap_port, c.imap_security) == ("outlook.office365.com", 993, "tls")
    assert (c.folder, c.warn_s, c.crit_s, c.fail_on, c.cleanup) == ("INBOX", 60.0, 300.0, "crit", True)


@pytest.mark.parametrize("extra,field", [
    ({"sender_mailbox": "nobody@"}, "sender_mailbox"),
    ({"recipient_mailbox": "a@b.test\r\nRCPT TO:<x@y.test>"}, "recipient_mailbox"),
    ({"warn_s": 0}, "warn_s"),
    ({"warn_s": 100, "crit_s": 50}, "crit_s"),
    ({"crit_s": 10 ** 6}, "crit_s"),
    ({"poll_interval_s": 0}, "poll_interval_s"),
    ({"poll_interval_s": 400}, "poll_interval_s"),
    ({"folder": "IN\r\nBOX"}, "folder"),
    ({"smtp_port": 70000}, "smtp_port"),
])
def test_bad_options_fail_naming_the_option(extra, field):
    with pytest.raises(O365Error) as info:
        mf.ProbeConfig.from_params(params(**extra), "public")
    assert info.value.category == "config" and info.value.message.startswith(field)


# ----------------------------------------------------------------------------- the run

class Clock:
    def __init__(self):
        self.t = 100.0
        self.slept = []

    def monotonic(self):
        return self.t

    def wall(self):
        return NOW + self.t

    def sleep(self, seconds):
        assert seconds >= 0
        self.slept.append(seconds)
        self.t += seconds


class FakeSender:
    sent = []
    sent_at = None
    clock = None
    fail_open = None
    delivery = "accepted"

    def __init__(self, settings, mailbox, host, port, security, ehlohost, warn):
        self.mailbox = mailbox

    def open(self):
        if FakeSender.fail_open is not None:
            raise FakeSender.fail_open  # pylint: disable=raising-bad-type

    def send_all(self, prepared):
        FakeSender.sent.append(prepared[0].message)
        FakeSender.sent_at = FakeSender.clock.t
        out = prepared[0].result(delivery=FakeSender.delivery)
        if FakeSender.delivery != "accepted":
            out["error"] = {"category": "timeout", "message": "no reply to the final dot"}
        return [out]

    def close(self):
        pass


class FakeImap:
    """Stands in for check_imap / imap_fetch_headers / imap_delete_uids; the canary shows up after ``arrive_after``."""

    def __init__(self, clock, arrive_after=None, stale=(), poll_errors=()):
        self.clock = clock
        self.arrive_after = arrive_after
        self.stale = dict(stale)          # uid -> subject
        self.poll_errors = list(poll_errors)
        self.deleted = []
        self.polls = 0

    def check(self, host, port, security, user, sasl, context, timeout, folder="INBOX", search=None):
        assert timeout <= 10
        if search and search.startswith("HEADER X-Mailops-Canary \"canary-\""):
            return {"ok": True, "uidvalidity": 11, "search_uids": sorted(self.stale)}
        self.polls += 1
        if self.poll_errors:
            return {"ok": False, "error": self.poll_errors.pop(0)}
        arrived = self.arrive_after is not None and self.clock.t - FakeSender.sent_at >= self.arrive_after
        return {"ok": True, "uidvalidity": 11, "search_uids": [42] if arrived else []}

    def fetch(self, host, port, security, user, sasl, context, timeout, folder, uids):
        return {"ok": True, "headers": [{"uid": u, "subject": self.stale[u], "date": None} for u in uids]}

    def delete(self, host, port, security, user, sasl, context, timeout, folder, uids, uidvalidity=None):
        assert uidvalidity == 11
        self.deleted.extend(uids)
        return {"ok": True, "expunged": len(uids)}


@pytest.fixture()
def rig(monkeypatch, tmp_path):
    clock = Clock()
    FakeSender.sent, FakeSender.fail_open, FakeSender.delivery, FakeSender.clock = [], None, "accepted", clock
    monkeypatch.setattr(mf, "SmtpSender", FakeSender)
    monkeypatch.setattr(mf, "imap_sasl", lambda settings, mailbox, warn: "c2FzbA==")

    def make(arrive_after=None, **kwargs):
        imap = FakeImap(clock, arrive_after, **kwargs)
        monkeypatch.setattr(mf, "check_imap", imap.check)
        monkeypatch.setattr(mf, "imap_fetch_headers", imap.fetch)
        monkeypatch.setattr(mf, "imap_delete_uids", imap.delete)
        return imap
    settings = AuthSettings.from_params({"access_token": "x" * 40, "timeout": 10})
    warnings = []

    def probe(check_mode=False, **extra):
        config = mf.ProbeConfig.from_params(params(warn_s=10, crit_s=60, poll_interval_s=8, **extra), "public")
        return mf.MailflowProbe(settings, config, warnings.append, clock.monotonic, clock.wall,
                                clock.sleep).run(check_mode)
    return clock, make, probe, warnings


def test_fast_delivery_is_ok_and_cleaned_up(rig):
    clock, make, probe, _unused = rig
    stale = {3: "[mailops canary] canary-%d-aaaaaa" % (NOW - 5000), 4: "[mailops canary] canary-%d-bbbbbb" % (NOW + 99)}
    imap = make(arrive_after=2.5, stale=stale)
    result = probe()
    assert result["status"] == "ok" and result["ok"] and result["changed"]
    assert result["latency_s"] == 3.0                  # found by the poll after 1 + 2 s
    assert len(FakeSender.sent) == 1 and result["message_id"] == FakeSender.sent[0]["Message-ID"]
    assert FakeSender.sent[0][mf.CANARY_HEADER] == result["canary_id"]
    assert imap.deleted == [3, 42]                     # the young one (4) may be another probe's
    assert result["stale_found"] == 1 and result["stale_removed"] == 1 and result["removed"] is True
    assert result["sent_at"] and result["received_at"] and set(result["timings"]) == {"login", "send", "poll", "cleanup"}


def test_slow_delivery_is_warn(rig):
    _unused, make, probe, _unused = rig
    make(arrive_after=20)
    result = probe()
    assert result["status"] == "warn" and not result["ok"] and 20 <= result["latency_s"] < 60


def test_never_arrives_is_lost_within_the_bound(rig):
    clock, make, probe, _unused = rig
    imap = make(arrive_after=None)
    start = clock.t
    result = probe()
    assert result["status"] == "lost" and result["latency_s"] is None and result["received_at"] is None
    assert clock.t - start <= 60 + 1e-9                 # no sleep crosses the deadline
    assert max(clock.slept) <= 8 and imap.polls == result["polls"] <= 15
    assert result["removed"] is False and len(FakeSender.sent) == 1


def test_arrival_at_the_last_poll_is_crit(rig):
    _unused, make, probe, _unused = rig
    make(arrive_after=59.5)
    result = probe()
    assert result["status"] == "crit" and result["latency_s"] >= 60


def test_transient_poll_errors_are_retried(rig):
    _unused, make, probe, _unused = rig
    make(arrive_after=1, poll_errors=[{"category": "connection", "message": "reset"}])
    result = probe()
    assert result["status"] == "ok" and result["polls"] == 2


def test_auth_error_while_polling_stops_at_once(rig):
    _unused, make, probe, _unused = rig
    imap = make(arrive_after=1, poll_errors=[{"category": "auth", "message": "NO AUTHENTICATE failed."}])
    result = probe()
    assert result["status"] == "error" and result["error"]["category"] == "auth" and imap.polls == 1
    assert result["changed"] is True                    # the canary went out


def test_every_poll_failing_is_error_not_lost(rig):
    _unused, make, probe, _unused = rig
    make(arrive_after=1, poll_errors=[{"category": "timeout", "message": "slow"}] * 100)
    result = probe()
    assert result["status"] == "error" and result["error"]["category"] == "timeout"


def test_smtp_login_failure_sends_nothing(rig):
    _unused, make, probe, _unused = rig
    imap = make(arrive_after=1)
    FakeSender.fail_open = O365Error("disabled", "SMTP server refused: 535 5.7.139 SmtpClientAuthentication is disabled")
    result = probe()
    assert result["status"] == "error" and result["error"]["category"] == "disabled"
    assert FakeSender.sent == [] and result["changed"] is False and imap.polls == 0


def test_unknown_delivery_is_reported_and_never_resent(rig):
    _unused, make, probe, _unused = rig
    imap = make(arrive_after=1)
    FakeSender.delivery = "unknown"
    result = probe()
    assert result["status"] == "error" and result["changed"] is True and len(FakeSender.sent) == 1
    assert result["message_id"] == FakeSender.sent[0]["Message-ID"] and imap.polls == 0


def test_check_mode_logs_in_and_sends_nothing(rig):
    _unused, make, probe, _unused = rig
    imap = make(arrive_after=1, stale={3: "[mailops canary] canary-%d-aaaaaa" % (NOW - 5000)})
    result = probe(check_mode=True)
    assert result["status"] == "ok" and result["changed"] is False and FakeSender.sent == []
    assert result["stale_found"] == 1 and imap.deleted == [] and result["stale_removed"] == 0


def test_no_cleanup_leaves_everything(rig):
    _unused, make, probe, _unused = rig
    imap = make(arrive_after=1, stale={3: "[mailops canary] canary-%d-aaaaaa" % (NOW - 5000)})
    result = probe(cleanup=False)
    assert result["status"] == "ok" and imap.deleted == [] and result["removed"] is False


def test_cleanup_failure_is_a_warning(rig, monkeypatch):
    _unused, make, probe, warnings = rig
    make(arrive_after=1)
    refused = {"ok": False, "error": {"category": "protocol", "message": "NO nope"}}
    monkeypatch.setattr(mf, "imap_delete_uids", lambda *a, **k: refused)
    result = probe()
    assert result["status"] == "ok" and result["removed"] is False and "NO nope" in warnings[-1]
