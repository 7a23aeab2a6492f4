"""Reports from synthetic results: statuses, counts, and each format parsed back."""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET

import pytest

from ansible_collections.mailops.o365.plugins.module_utils import _reports as R

prometheus_parser = pytest.importorskip("prometheus_client.parser")

HOSTILE = '<script>alert("x")</script>&"\\\n'

THRESHOLDS = {"latency_ms": {"warn": {"connect": 100, "auth": 500, "total": 1000},
                             "crit": {"connect": 400, "auth": 2000, "total": 4000}},
              "mailflow_s": {"warn": 30, "crit": 60}}


def ok(mailbox, total=50.0, **phases):
    timings = {"connect": 1.0, "tls": 2.0, "greeting": 3.0, "auth": 10.0, "command": 5.0, "total": total}
    timings.update(phases)
    return {"mailbox": mailbox, "ok": True, "authenticated": True, "timings": timings, "error": None}


def failed(mailbox, category, message="refused", hint="Do the thing.", reply=None):
    return {"mailbox": mailbox, "ok": False, "authenticated": False, "timings": {"connect": 1.0, "total": 20.0},
            "error": {"category": category, "message": message, "hint": hint, "server_reply": reply}}


def settings(name="contoso", mailflow=False):
    return {
        "name": name, "tenant_id": "contoso.test", "cloud": "public", "thresholds": THRESHOLDS,
        "mailboxes": [
            {"address": "adele@contoso.test", "protocols": ["imap", "pop", "smtp"], "expect": "ok"},
            {"address": "slow@contoso.test", "protocols": ["imap"], "expect": "ok"},
            {"address": "noimap@contoso.test", "protocols": ["imap"], "expect": "disabled"},
            {"address": "ghost@contoso.test", "protocols": ["imap", "smtp"], "expect": "ok"},
            {"address": "drift@contoso.test", "protocols": ["pop"], "expect": "disabled"},
            {"address": "crit@contoso.test", "protocols": ["smtp"], "expect": "ok"},
        ],
        "mailflow": {"enabled": mailflow, "from": "adele@contoso.test", "to": "bob@contoso.test"},
    }


def results():
    return {
        "imap": {"results": [ok("adele@contoso.test"), ok("slow@contoso.test", total=1500.0),
                             failed("noimap@contoso.test", "disabled"),
                             failed("ghost@contoso.test", "auth", message=HOSTILE, hint=HOSTILE, reply=HOSTILE)],
                 "summary": {}},
        "pop": [ok("adele@contoso.test"), ok("drift@contoso.test")],
        # out of order on purpose: matched by address
        "smtp": [ok("crit@contoso.test", connect=450.0), failed("ghost@contoso.test", "auth"), ok("ADELE@contoso.test")],
    }


def by_key(tenant):
    return {(c["mailbox"], c["protocol"]): c for c in tenant["checks"]}


def test_statuses_follow_thresholds_and_expectations():
    tenant = R.evaluate_tenant(settings(), results())
    checks = by_key(tenant)
    assert checks[("adele@contoso.test", "imap")]["status"] == "ok"
    assert checks[("adele@contoso.test", "smtp")]["status"] == "ok"
    slow = checks[("slow@contoso.test", "imap")]
    assert slow["status"] == "warn"
    assert slow["breaches"] == [{"phase": "total", "value_ms": 1500.0, "level": "warn", "threshold_ms": 1000.0}]
    assert checks[("noimap@contoso.test", "imap")]["status"] == "expected"
    assert checks[("ghost@contoso.test", "imap")]["status"] == "fail"
    assert checks[("ghost@contoso.test", "imap")]["category"] == "auth"
    drift = checks[("drift@contoso.test", "pop")]
    assert drift["status"] == "fail" and drift["category"] == "unexpected_success"
    assert checks[("crit@contoso.test", "smtp")]["status"] == "crit"
    assert tenant["counts"] == {"total": 9, "ok": 3, "warn": 1, "crit": 1, "fail": 3, "expected_failures": 1}
    assert tenant["verdict"] == "failed" and tenant["worst"] == "fail"


def test_expected_failure_with_another_category_fails():
    check = R.judge(failed("x@contoso.test", "auth"), "disabled", THRESHOLDS)
    assert check["status"] == "fail"
    assert "expected to fail with 'disabled'" in check["message"]


@pytest.mark.parametrize("fail_on,verdict", [("crit", "passed"), ("warn", "failed"), ("never", "passed")])
def test_fail_on(fail_on, verdict):
    s = settings()
    s["mailboxes"] = [s["mailboxes"][1], s["mailboxes"][2]]  # warn + expected failure
    tenant = R.evaluate_tenant(s, {"imap": results()["imap"]}, fail_on=fail_on)
    assert tenant["verdict"] == verdict
    assert tenant["worst"] == "warn"


def test_missing_results_and_tenant_error():
    s = settings()
    tenant = R.evaluate_tenant(s, {}, error={"category": "token", "message": "AADSTS7000215: bad secret", "hint": "Rotate it."})
    assert {c["status"] for c in tenant["checks"]} == {"fail"}
    assert {c["category"] for c in tenant["checks"]} == {"token"}
    assert tenant["verdict"] == "failed"
    tenant = R.evaluate_tenant(s, {"imap": None, "pop": {"skipped": True}})
    assert all(c["message"] == "no result: the check did not run" for c in tenant["checks"])


def test_mailflow_statuses():
    s = settings(mailflow=True)
    tenant = R.evaluate_tenant(s, results(), mailflow={"status": "ok", "latency_s": 1.25, "ok": True})
    assert tenant["mailflow"]["status"] == "ok" and tenant["mailflow"]["latency_s"] == 1.25
    tenant = R.evaluate_tenant(s, results(), mailflow={"status": "lost", "latency_s": None})
    assert tenant["mailflow"]["status"] == "fail"
    tenant = R.evaluate_tenant(s, results(), mailflow=None)
    assert tenant["mailflow"]["status"] == "fail"
    assert R.evaluate_tenant(settings(), results(), mailflow={"status": "lost"})["mailflow"] is None


def report(**kwargs):
    tenants = [R.evaluate_tenant(settings(), results()),
               R.evaluate_tenant(dict(settings(name='evil"\\\n<b>'), mailflow={"enabled": True, "from": "a@b.test", "to": "c@d.test"}),
                                 results(), mailflow={"status": "warn", "latency_s": 42.5})]
    return R.build_report(tenants, now=1700000000.5, **kwargs)


def test_json_counts_and_round_trip():
    data = json.loads(R.render_json(report(missing=["offline"])))
    assert data["counts"]["total"] == 18
    assert data["counts"]["fail"] == 6 and data["counts"]["expected_failures"] == 2
    assert data["counts"]["tenants"] == 3 and data["counts"]["tenants_failed"] == 3
    assert data["tenants"][2]["name"] == "offline" and data["tenants"][2]["error"]
    assert data["generated_at"] == "2023-11-14T22:13:20Z"
    assert data["verdict"] == "failed"


def test_junit_one_testcase_per_mailbox_and_protocol():
    rep = report()
    root = ET.fromstring(R.render_junit(rep).split("\n", 1)[1])
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["contoso", 'evil"\\\n<b>']
    cases = list(suites[0].findall("testcase"))
    assert len(cases) == 9
    names = {c.get("name") for c in cases}
    assert "ghost@contoso.test imap" in names and "noimap@contoso.test imap" in names
    failures = {c.get("name"): c.find("failure") for c in cases}
    assert failures["ghost@contoso.test imap"] is not None
    assert "Hint:" in failures["ghost@contoso.test imap"].text
    assert failures["noimap@contoso.test imap"] is None  # expected failure passes
    assert failures["slow@contoso.test imap"] is None  # warn passes with fail_on crit
    assert len(suites[1].findall("testcase")) == 10  # + the mail flow test
    assert root.get("tests") == "19"
    warn_root = ET.fromstring(R.render_junit(report(fail_on="warn")).split("\n", 1)[1])
    assert any(c.get("name") == "slow@contoso.test imap" and c.find("failure") is not None for c in warn_root.iter("testcase"))


def test_html_lists_every_mailbox_and_escapes():
    page = R.render_html(report())
    for box in settings()["mailboxes"]:
        assert box["address"] in page
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "evil&quot;" in page and "<b>" not in page
    assert "http://" not in page and "https://" not in page and "<link" not in page  # self-contained
    assert page.count('class="check"') == 18
    assert 'class="p-auth" style="width:' in page


def test_prometheus_parses_and_escapes():
    text = R.render_prometheus(report())
    families = {f.name: f for f in prometheus_parser.text_string_to_metric_families(text)}
    up = families["mailops_o365_check_up"].samples
    assert len(up) == 18
    ghost = [s for s in up if s.labels["mailbox"] == "ghost@contoso.test" and s.labels["protocol"] == "imap"]
    assert ghost[0].value == 0
    noimap = [s for s in up if s.labels["mailbox"] == "noimap@contoso.test"]
    assert noimap[0].value == 1
    assert {s.labels["tenant"] for s in up} == {"contoso", 'evil"\\\n<b>'}
    phases = {s.labels["phase"] for s in families["mailops_o365_check_latency_ms"].samples}
    assert phases == set(R.PHASES)
    flow = families["mailops_o365_mailflow_latency_seconds"].samples
    assert [(s.labels["tenant"], s.value) for s in flow] == [('evil"\\\n<b>', 42.5)]
    assert families["mailops_o365_last_run_timestamp_seconds"].samples[0].value == 1700000000.5
    assert "# TYPE mailops_o365_check_up gauge" in text


def test_write_reports_is_atomic_and_complete(tmp_path):
    rep = report()
    paths = R.write_reports(rep, str(tmp_path / "out"), R.FORMATS)
    assert set(paths) == set(R.FORMATS)
    assert sorted(os.listdir(tmp_path / "out")) == sorted(R.FILE_NAMES.values())  # no temporary files left
    with pytest.raises(R.ReportError):
        R.write_reports(rep, str(tmp_path), ["pdf"])


def test_lines_are_concise():
    rep = report()
    lines = R.lines(rep)
    assert len(lines) == 19
    assert all("\n" not in line for line in lines)
    assert any(line.startswith("EXPECTED contoso noimap@contoso.test imap") for line in lines)
    assert all("slow@" not in line for line in R.failing(rep))
