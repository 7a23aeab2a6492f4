# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Reachability reports: judge check results against thresholds and expectations, then render them.

Pure Python (standard library only), used on the controller by the ``o365_report`` action plugin and
testable without Ansible. Nothing here touches the network.

The path: the fleet results of the check modules (one list per protocol, in the order of the
tenant's mailboxes that request the protocol) + the tenant's normalized settings
-> ``evaluate_tenant`` (one row per mailbox x protocol with a status) -> ``build_report`` (one or many
tenants, counts, verdict) -> ``render_json`` / ``render_junit`` / ``render_html`` /
``render_prometheus`` -> ``write_reports`` (atomic: temporary file + rename).

Statuses of a mailbox x protocol row, from best to worst:

``ok``        answered, every phase below its warn threshold
``expected``  failed with exactly the category the mailbox's ``expect`` names (counts as passing)
``warn``      answered, a phase at or above its warn threshold
``crit``      answered, a phase at or above its crit threshold
``fail``      did not answer (or answered although a failure was expected)

The verdict follows ``fail_on``: ``crit`` (default) fails on ``fail`` and ``crit``; ``warn`` also on
``warn``; ``never`` never fails. A tenant-level error (no token) always counts as ``fail``.
"""

from __future__ import annotations

import html
import json
import os
import tempfile
import time
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from typing import Any, Dict, Iterable, List, Optional

PROTOCOLS = ("imap", "pop", "smtp")
PHASES = ("connect", "tls", "greeting", "auth", "command", "total")
BAR_PHASES = ("connect", "tls", "greeting", "auth", "command")
STATUSES = ("ok", "expected", "warn", "crit", "fail")
SEVERITY = {"ok": 0, "expected": 0, "warn": 1, "crit": 2, "fail": 3}
FAIL_ON = {"crit": ("crit", "fail"), "warn": ("warn", "crit", "fail"), "never": ()}
# o365_mailflow_check statuses -> report statuses
MAILFLOW_STATUS = {"ok": "ok", "warn": "warn", "crit": "crit", "lost": "fail", "error": "fail"}
FORMATS = ("json", "junit", "html", "prometheus")
FILE_NAMES = {"json": "report.json", "junit": "junit.xml", "html": "index.html", "prometheus": "mailops_o365.prom"}


class ReportError(Exception):
    """Bad input to the report writers (the action plugin turns it into a failed task)."""


# --- judging ------------------------------------------------------------------------------------

def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def breaches(timings: Optional[dict], thresholds: Optional[dict]) -> List[dict]:
    """Every phase at or above its warn or crit threshold: ``[{phase, value_ms, level, threshold_ms}]``."""
    timings = timings or {}
    latency = (thresholds or {}).get("latency_ms") or {}
    out = []
    for phase in PHASES:
        value = _number(timings.get(phase))
        if value is None:
            continue
        for level in ("crit", "warn"):
            limit = _number((latency.get(level) or {}).get(phase))
            if limit is not None and value >= limit:
                out.append({"phase": phase, "value_ms": value, "level": level, "threshold_ms": limit})
                break
    return out


def judge(result: Optional[dict], expect: str = "ok", thresholds: Optional[dict] = None) -> dict:
    """The status of one mailbox x protocol result, and why."""
    expect = expect or "ok"
    if result is None:
        return {"status": "fail", "category": "protocol", "message": "no result: the check did not run",
                "hint": None, "server_reply": None, "breaches": []}
    error = result.get("error") or {}
    category = error.get("category")
    base = {"category": category, "message": error.get("message"), "hint": error.get("hint"),
            "server_reply": error.get("server_reply"), "breaches": []}
    if not result.get("ok"):
        if expect != "ok" and category == expect:
            base["status"] = "expected"
            return base
        if expect != "ok":
            base["message"] = "expected to fail with %r, failed with %r: %s" % (expect, category, base["message"])
        base["status"] = "fail"
        return base
    if expect != "ok":
        base.update(status="fail", category="unexpected_success",
                    message="answered, but this mailbox is expected to fail with %r" % expect,
                    hint="The mailbox's 'expect' no longer matches the tenant: fix the tenant or the setting.")
        return base
    found = breaches(result.get("timings"), thresholds)
    base["breaches"] = found
    levels = {b["level"] for b in found}
    base["status"] = "crit" if "crit" in levels else "warn" if "warn" in levels else "ok"
    if found:
        base["message"] = "slow: " + ", ".join(
            "%s %.0f ms >= %s %.0f ms" % (b["phase"], b["value_ms"], b["level"], b["threshold_ms"]) for b in found)
    return base


def _by_address(results: Iterable[dict]) -> Dict[str, List[dict]]:
    out: Dict[str, List[dict]] = {}
    for result in results:
        if isinstance(result, dict) and isinstance(result.get("mailbox"), str):
            out.setdefault(result["mailbox"].lower(), []).append(result)
    return out


def _protocol_results(value: Any) -> Optional[List[dict]]:
    """A fleet task's registered result, its ``results`` list, or None when the task did not run."""
    if value is None:
        return None
    if isinstance(value, dict):
        if value.get("skipped"):
            return None
        value = value.get("results")
    if value is None:
        return None
    if not isinstance(value, list):
        raise ReportError("results of a protocol must be a list or a registered fleet result")
    return value


def evaluate_tenant(settings: dict, results: Optional[dict] = None, mailflow: Optional[dict] = None,
                    error: Optional[dict] = None, fail_on: str = "crit") -> dict:
    """One tenant: a row per mailbox x protocol (settings order, then imap, pop, smtp), counts, verdict.

    ``results`` maps a protocol to its fleet result (or the ``results`` list); results are matched to
    mailboxes by address. ``error`` is a tenant-level failure (no token: ``{category, message, hint}``)
    given to every row that has no result.
    """
    if not isinstance(settings, dict) or not isinstance(settings.get("name"), str):
        raise ReportError("tenant settings must be a dict with a name")
    if fail_on not in FAIL_ON:
        raise ReportError("fail_on must be one of %s" % ", ".join(FAIL_ON))
    results = results or {}
    thresholds = settings.get("thresholds") or {}
    per_protocol = {}
    for protocol in PROTOCOLS:
        listed = _protocol_results(results.get(protocol))
        per_protocol[protocol] = _by_address(listed) if listed is not None else None
    checks = []
    for box in settings.get("mailboxes") or []:
        address = box["address"] if isinstance(box, dict) else str(box)
        protocols = (box.get("protocols") if isinstance(box, dict) else None) or list(PROTOCOLS)
        expect = (box.get("expect") if isinstance(box, dict) else None) or "ok"
        for protocol in PROTOCOLS:
            if protocol not in protocols:
                continue
            found = (per_protocol[protocol] or {}).get(address.lower())
            result = found.pop(0) if found else None
            if result is None and error:
                verdict = {"status": "fail", "category": error.get("category") or "token",
                           "message": error.get("message"), "hint": error.get("hint"),
                           "server_reply": None, "breaches": []}
            else:
                verdict = judge(result, expect, thresholds)
            row = {"mailbox": address, "protocol": protocol, "expect": expect,
                   "ok": bool(result and result.get("ok")),
                   "authenticated": bool(result and result.get("authenticated")),
                   "timings": dict((result or {}).get("timings") or {})}
            row.update(verdict)
            checks.append(row)
    flow = _mailflow(settings, mailflow)
    tenant = {"name": settings["name"], "description": settings.get("description"),
              "tenant_id": settings.get("tenant_id"), "cloud": settings.get("cloud"),
              "error": error or None, "checks": checks, "mailflow": flow,
              "thresholds": thresholds}
    tenant.update(_verdict([c["status"] for c in checks] + ([flow["status"]] if flow else [])
                           + (["fail"] if error else []), fail_on))
    tenant["counts"] = counts(checks)
    return tenant


def _mailflow(settings: dict, result: Optional[dict]) -> Optional[dict]:
    config = settings.get("mailflow") or {}
    if not config.get("enabled"):
        return None
    limits = (settings.get("thresholds") or {}).get("mailflow_s") or {}
    flow = {"from": config.get("from"), "to": config.get("to"), "warn_s": limits.get("warn"),
            "crit_s": limits.get("crit"), "latency_s": None, "module_status": None, "message": None, "hint": None}
    if not result or result.get("skipped"):
        flow.update(status="fail", message=(result or {}).get("msg") or "the mail flow check did not run")
        return flow
    error = result.get("error") if isinstance(result.get("error"), dict) else {}
    module_status = result.get("status")
    status = MAILFLOW_STATUS.get(module_status, "fail")
    if result.get("failed") and status in ("ok", "warn"):
        status = "fail"
    flow.update(status=status, module_status=module_status, latency_s=_number(result.get("latency_s")),
                message=error.get("message") or result.get("msg"), hint=error.get("hint"))
    return flow


def counts(checks: List[dict]) -> dict:
    out = {"total": len(checks), "ok": 0, "warn": 0, "crit": 0, "fail": 0, "expected_failures": 0}
    for check in checks:
        key = "expected_failures" if check["status"] == "expected" else check["status"]
        out[key] += 1
    return out


def _verdict(statuses: List[str], fail_on: str) -> dict:
    worst = max(statuses, key=lambda s: SEVERITY[s], default="ok")
    worst = "ok" if worst == "expected" else worst
    failing = [s for s in statuses if s in FAIL_ON[fail_on]]
    return {"worst": worst, "verdict": "failed" if failing else "passed", "fail_on": fail_on}


def build_report(tenants: List[dict], fail_on: str = "crit", now: Optional[float] = None,
                 missing: Iterable[str] = ()) -> dict:
    """A report over evaluated tenants; ``missing`` names tenants that produced no result at all."""
    if fail_on not in FAIL_ON:
        raise ReportError("fail_on must be one of %s" % ", ".join(FAIL_ON))
    tenants = [dict(t) for t in tenants]
    for name in missing:
        tenants.append({"name": name, "description": None, "tenant_id": None, "cloud": None, "checks": [],
                        "mailflow": None, "thresholds": {}, "counts": counts([]), "worst": "fail",
                        "verdict": "failed" if fail_on != "never" else "passed", "fail_on": fail_on,
                        "error": {"category": "protocol", "message": "no report: the tenant failed before its checks "
                                  "finished (see the job output)", "hint": None}})
    for tenant in tenants:  # the report's fail_on decides, whatever each tenant was evaluated with
        statuses = [c["status"] for c in tenant.get("checks") or []]
        statuses += [tenant["mailflow"]["status"]] if tenant.get("mailflow") else []
        statuses += ["fail"] if tenant.get("error") else []
        tenant.update(_verdict(statuses, fail_on))
    now = time.time() if now is None else now
    all_checks = [c for t in tenants for c in t.get("checks") or []]
    report = {"generator": "mailops.o365.o365_report", "timestamp": round(now, 3),
              "generated_at": datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "fail_on": fail_on, "tenants": tenants, "counts": counts(all_checks)}
    report["counts"]["tenants"] = len(tenants)
    report["counts"]["tenants_failed"] = sum(1 for t in tenants if t["verdict"] == "failed")
    worst = max((t["worst"] for t in tenants), key=lambda s: SEVERITY[s], default="ok")
    report.update(worst=worst, verdict="failed" if report["counts"]["tenants_failed"] else "passed")
    return report


def failing(report: dict) -> List[str]:
    """One concise line per failing row (the alert mail's body and the job output)."""
    lines = []
    for tenant in report["tenants"]:
        bad = FAIL_ON[report["fail_on"]] or FAIL_ON["crit"]
        if tenant.get("error") and not tenant.get("checks"):
            lines.append(_one_line("%s: %s" % (tenant["name"], tenant["error"].get("message"))))
        for check in tenant.get("checks") or []:
            if check["status"] in bad:
                lines.append(check_line(tenant["name"], check))
        flow = tenant.get("mailflow")
        if flow and flow["status"] in bad:
            lines.append(mailflow_line(tenant["name"], flow))
    return lines


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def check_line(tenant: str, check: dict) -> str:
    total = (check.get("timings") or {}).get("total")
    parts = ["%-8s" % check["status"].upper(), tenant, check["mailbox"], check["protocol"]]
    if total is not None:
        parts.append("%.0f ms" % total)
    if check["status"] == "expected":
        parts.append("(failed as expected: %s)" % check.get("category"))
    elif check["status"] != "ok":
        parts.append("- %s%s" % ("[%s] " % check["category"] if check.get("category") else "", check.get("message") or ""))
    return _one_line(" ".join(parts)).replace(check["status"].upper() + " ", "%-8s " % check["status"].upper(), 1)


def mailflow_line(tenant: str, flow: dict) -> str:
    latency = "%.1f s" % flow["latency_s"] if flow.get("latency_s") is not None else "no latency"
    line = "%-8s %s mailflow %s -> %s %s" % (flow["status"].upper(), tenant, flow.get("from"), flow.get("to"), latency)
    if flow["status"] != "ok" and flow.get("message"):
        line += " - %s" % flow["message"]
    return _one_line(line).replace(flow["status"].upper() + " ", "%-8s " % flow["status"].upper(), 1)


def lines(report: dict) -> List[str]:
    out = []
    for tenant in report["tenants"]:
        if tenant.get("error"):
            out.append(_one_line("ERROR    %s %s" % (tenant["name"], tenant["error"].get("message"))).replace("ERROR ", "ERROR    ", 1))
        out.extend(check_line(tenant["name"], c) for c in tenant.get("checks") or [])
        if tenant.get("mailflow"):
            out.append(mailflow_line(tenant["name"], tenant["mailflow"]))
    return out


# --- JSON ---------------------------------------------------------------------------------------

def render_json(report: dict) -> str:
    return json.dumps(report, indent=2, sort_keys=False, default=str) + "\n"


# --- JUnit XML ----------------------------------------------------------------------------------

def _clean(text: Any) -> str:
    """Text XML 1.0 can carry (control characters other than tab/newline are dropped)."""
    return "".join(ch for ch in str(text) if ch in "\t\n\r" or ord(ch) >= 0x20) if text is not None else ""


def render_junit(report: dict) -> str:
    bad = FAIL_ON[report["fail_on"]] or FAIL_ON["crit"]
    root = ET.Element("testsuites", name="mailops.o365 mailbox reachability")
    total_tests = total_failures = 0
    for tenant in report["tenants"]:
        suite = ET.SubElement(root, "testsuite", name=_clean(tenant["name"]), timestamp=report["generated_at"])
        tests = failures = 0
        if tenant.get("error") and not tenant.get("checks"):
            case = ET.SubElement(suite, "testcase", name="tenant", classname="mailops_o365.%s" % _clean(tenant["name"]))
            ET.SubElement(case, "failure", message=_clean(tenant["error"].get("message")),
                          type=_clean(tenant["error"].get("category"))).text = _clean(tenant["error"].get("message"))
            tests += 1
            failures += 1
        for check in tenant.get("checks") or []:
            seconds = ((check.get("timings") or {}).get("total") or 0) / 1000.0
            case = ET.SubElement(suite, "testcase", name="%s %s" % (_clean(check["mailbox"]), check["protocol"]),
                                 classname="mailops_o365.%s.%s" % (_clean(tenant["name"]), check["protocol"]),
                                 time="%.3f" % seconds)
            tests += 1
            details = _details(check)
            if check["status"] in bad:
                failures += 1
                ET.SubElement(case, "failure", message=_clean("%s: %s" % (check["status"], check.get("message") or "")),
                              type=_clean(check.get("category") or check["status"])).text = _clean(details)
            elif check["status"] != "ok":
                ET.SubElement(case, "system-out").text = _clean("%s: %s" % (check["status"], details))
        flow = tenant.get("mailflow")
        if flow:
            case = ET.SubElement(suite, "testcase", name="mailflow %s -> %s" % (_clean(flow.get("from")), _clean(flow.get("to"))),
                                 classname="mailops_o365.%s.mailflow" % _clean(tenant["name"]),
                                 time="%.3f" % (flow.get("latency_s") or 0))
            tests += 1
            if flow["status"] in bad:
                failures += 1
                ET.SubElement(case, "failure", message=_clean("%s: %s" % (flow["status"], flow.get("message") or "")),
                              type="mailflow").text = _clean("\n".join(x for x in (flow.get("message"), flow.get("hint")) if x))
        suite.set("tests", str(tests))
        suite.set("failures", str(failures))
        suite.set("errors", "0")
        total_tests += tests
        total_failures += failures
    root.set("tests", str(total_tests))
    root.set("failures", str(total_failures))
    root.set("errors", "0")
    text = ET.tostring(root, encoding="unicode")
    ET.fromstring(text)  # noqa: S314 - our own output: it must parse back
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + text + "\n"


def _details(check: dict) -> str:
    out = []
    if check.get("message"):
        out.append(check["message"])
    if check.get("hint"):
        out.append("Hint: %s" % check["hint"])
    if check.get("server_reply"):
        out.append("Server reply: %s" % check["server_reply"])
    for b in check.get("breaches") or []:
        out.append("%s %.0f ms >= %s threshold %.0f ms" % (b["phase"], b["value_ms"], b["level"], b["threshold_ms"]))
    return "\n".join(out)


# --- Prometheus textfile ------------------------------------------------------------------------

def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(**labels) -> str:
    return "{%s}" % ",".join('%s="%s"' % (k, _label(v)) for k, v in labels.items())


def _value(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def render_prometheus(report: dict) -> str:
    families = [
        ("mailops_o365_check_up", "1 when the mailbox answered over the protocol as expected (expected failures count), 0 when not."),
        ("mailops_o365_check_severity", "0 ok or expected failure, 1 warn, 2 crit, 3 fail."),
        ("mailops_o365_check_latency_ms", "Duration of a probe phase in milliseconds."),
        ("mailops_o365_mailflow_up", "1 when the mail flow test message arrived within the critical threshold."),
        ("mailops_o365_mailflow_latency_seconds", "Seconds from sending the mail flow test message to finding it."),
        ("mailops_o365_tenant_up", "1 when the tenant passed (verdict), 0 when it failed."),
        ("mailops_o365_last_run_timestamp_seconds", "Unix time of the run that wrote this file."),
    ]
    samples: Dict[str, List[str]] = {name: [] for name, _unused in families}
    for tenant in report["tenants"]:
        name = tenant["name"]
        for check in tenant.get("checks") or []:
            key = dict(tenant=name, mailbox=check["mailbox"], protocol=check["protocol"])
            samples["mailops_o365_check_up"].append("%s %d" % (_labels(**key), 0 if check["status"] == "fail" else 1))
            samples["mailops_o365_check_severity"].append("%s %d" % (_labels(**key), SEVERITY[check["status"]]))
            for phase in PHASES:
                value = _number((check.get("timings") or {}).get(phase))
                if value is not None:
                    samples["mailops_o365_check_latency_ms"].append("%s %s" % (_labels(phase=phase, **key), _value(value)))
        flow = tenant.get("mailflow")
        if flow:
            samples["mailops_o365_mailflow_up"].append("%s %d" % (_labels(tenant=name), 0 if flow["status"] == "fail" else 1))
            if flow.get("latency_s") is not None:
                samples["mailops_o365_mailflow_latency_seconds"].append("%s %s" % (_labels(tenant=name), _value(flow["latency_s"])))
        samples["mailops_o365_tenant_up"].append("%s %d" % (_labels(tenant=name), 1 if tenant["verdict"] == "passed" else 0))
    samples["mailops_o365_last_run_timestamp_seconds"].append(_value(round(report["timestamp"], 3)))
    out = []
    for name, text in families:
        out.append("# HELP %s %s" % (name, text))
        out.append("# TYPE %s gauge" % name)
        out.extend(name + sample if sample.startswith("{") else "%s %s" % (name, sample) for sample in samples[name])
    return "\n".join(out) + "\n"


# --- HTML ---------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1d2330}
header{background:#1d2330;color:#fff;padding:16px 24px}
header h1{margin:0 0 6px;font-size:20px}
.summary{display:flex;flex-wrap:wrap;gap:8px;margin-top:8px}
.pill{padding:4px 10px;border-radius:12px;font-size:13px;font-weight:600;background:#3a4256}
main{padding:16px 24px}
section{background:#fff;border-radius:6px;box-shadow:0 1px 3px rgba(0,0,0,.12);margin-bottom:20px;padding:12px 16px}
section h2{margin:0 0 6px;font-size:17px}
.meta{color:#5b6475;font-size:13px;margin-bottom:8px}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:5px 8px;border-bottom:1px solid #e3e6ec;vertical-align:top}
th{background:#f0f2f5;font-weight:600}
.status{display:inline-block;min-width:64px;text-align:center;border-radius:4px;padding:2px 6px;font-weight:700;color:#fff}
.s-ok{background:#2e8540}.s-expected{background:#5b7fa6}.s-warn{background:#d89614}.s-crit{background:#d0501a}.s-fail{background:#b3261e}
.s-passed{background:#2e8540}.s-failed{background:#b3261e}
.bar{display:flex;width:260px;height:12px;background:#eceef2;border-radius:3px;overflow:hidden}
.bar span{display:block;height:100%}
.p-connect{background:#6c8ebf}.p-tls{background:#8e6cbf}.p-greeting{background:#4fa3a5}.p-auth{background:#e0a030}.p-command{background:#7fae4e}
.ms{color:#5b6475;font-size:12px;white-space:nowrap}
.err{color:#b3261e}.hint{color:#374151;font-size:12px;margin-top:2px}
.legend span{display:inline-block;margin-right:10px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
code{font-size:12px;background:#f0f2f5;padding:0 3px;border-radius:3px;word-break:break-all}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _bar(timings: dict, scale: float) -> str:
    parts = []
    for phase in BAR_PHASES:
        value = _number((timings or {}).get(phase))
        if value is None or value <= 0:
            continue
        width = max(0.5, min(100.0, 100.0 * value / scale))
        parts.append('<span class="p-%s" style="width:%.2f%%" title="%s %.1f ms"></span>' % (phase, width, phase, value))
    return '<div class="bar">%s</div>' % "".join(parts)


def render_html(report: dict) -> str:
    c = report["counts"]
    totals = [_number((ch.get("timings") or {}).get("total")) or 0 for t in report["tenants"] for ch in t.get("checks") or []]
    scale = max(totals + [1.0])
    title = "Mailbox reachability - %s" % report["verdict"]
    out = ['<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           "<title>%s</title>" % _e(title), "<style>%s</style></head><body>" % _CSS,
           "<header><h1>Mailbox reachability: %d tenant%s, <span class=\"status s-%s\">%s</span></h1>"
           % (c["tenants"], "" if c["tenants"] == 1 else "s", _e(report["verdict"]), _e(report["verdict"].upper())),
           '<div>Generated %s by mailops.o365 &middot; fail on: %s</div><div class="summary">'
           % (_e(report["generated_at"]), _e(report["fail_on"]))]
    for key, label in (("total", "checks"), ("ok", "ok"), ("expected_failures", "expected failures"), ("warn", "warn"),
                       ("crit", "crit"), ("fail", "fail"), ("tenants_failed", "tenants failed")):
        out.append('<span class="pill" id="count-%s">%d %s</span>' % (key, c.get(key, 0), _e(label)))
    out.append("</div></header><main>")
    out.append('<div class="legend">%s</div>' % "".join('<span><i class="p-%s"></i>%s</span>' % (p, p) for p in BAR_PHASES))
    out.append("<section><h2>Tenants</h2><table id=\"tenants\"><thead><tr><th>Tenant</th><th>Verdict</th><th>Checks</th>"
               "<th>ok</th><th>expected</th><th>warn</th><th>crit</th><th>fail</th><th>Mail flow</th></tr></thead><tbody>")
    for t in report["tenants"]:
        tc = t["counts"]
        flow = t.get("mailflow")
        flow_cell = "-" if not flow else '<span class="status s-%s">%s</span> %s' % (
            _e(flow["status"]), _e(flow["status"]), _e("%.1f s" % flow["latency_s"]) if flow.get("latency_s") is not None else "")
        out.append('<tr><td><a href="#tenant-%s">%s</a></td><td><span class="status s-%s">%s</span></td><td>%d</td><td>%d</td>'
                   "<td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%s</td></tr>"
                   % (_e(t["name"]), _e(t["name"]), _e(t["verdict"]), _e(t["verdict"]), tc["total"], tc["ok"],
                      tc["expected_failures"], tc["warn"], tc["crit"], tc["fail"], flow_cell))
    out.append("</tbody></table></section>")
    for t in report["tenants"]:
        out.append('<section id="tenant-%s"><h2>%s <span class="status s-%s">%s</span></h2>'
                   % (_e(t["name"]), _e(t["name"]), _e(t["verdict"]), _e(t["verdict"])))
        meta = [x for x in (t.get("description"), t.get("tenant_id") and "tenant %s" % t["tenant_id"],
                            t.get("cloud") and "cloud %s" % t["cloud"]) if x]
        out.append('<div class="meta">%s</div>' % _e(" | ".join(meta)))
        if t.get("error"):
            out.append('<div class="err">%s</div>' % _e(t["error"].get("message")))
            if t["error"].get("hint"):
                out.append('<div class="hint">Fix: %s</div>' % _e(t["error"]["hint"]))
        flow = t.get("mailflow")
        if flow:
            out.append('<p>Mail flow %s &rarr; %s: <span class="status s-%s">%s</span> %s (warn %s s, crit %s s)%s</p>'
                       % (_e(flow.get("from")), _e(flow.get("to")), _e(flow["status"]), _e(flow["status"]),
                          _e("%.1f s" % flow["latency_s"]) if flow.get("latency_s") is not None else "no latency measured",
                          _e(flow.get("warn_s")), _e(flow.get("crit_s")),
                          ' <span class="err">%s</span>' % _e(flow["message"]) if flow.get("message") and flow["status"] != "ok" else ""))
        out.append('<table class="checks"><thead><tr><th>Mailbox</th><th>Protocol</th><th>Status</th><th>Latency</th>'
                   "<th>Total</th><th>Error and fix</th></tr></thead><tbody>")
        for ch in t.get("checks") or []:
            timings = ch.get("timings") or {}
            total = _number(timings.get("total"))
            detail = ""
            if ch["status"] == "expected":
                detail = "failed as expected (%s)" % _e(ch.get("category"))
                if ch.get("message"):
                    detail += '<div class="hint">%s</div>' % _e(ch["message"])
            elif ch["status"] != "ok":
                detail = '<div class="err">%s%s</div>' % ("[%s] " % _e(ch["category"]) if ch.get("category") else "", _e(ch.get("message")))
                if ch.get("hint"):
                    detail += '<div class="hint">Fix: %s</div>' % _e(ch["hint"])
                if ch.get("server_reply"):
                    detail += '<div class="hint">Server: <code>%s</code></div>' % _e(ch["server_reply"])
            out.append('<tr class="check" data-status="%s"><td>%s</td><td>%s</td><td><span class="status s-%s">%s</span></td>'
                       '<td>%s</td><td class="ms">%s</td><td>%s</td></tr>'
                       % (_e(ch["status"]), _e(ch["mailbox"]), _e(ch["protocol"]), _e(ch["status"]), _e(ch["status"]),
                          _bar(timings, scale), _e("%.0f ms" % total) if total is not None else "-", detail))
        out.append("</tbody></table></section>")
    out.append("</main></body></html>")
    return "\n".join(out) + "\n"


# --- files --------------------------------------------------------------------------------------

RENDERERS = {"json": render_json, "junit": render_junit, "html": render_html, "prometheus": render_prometheus}


def atomic_write(path: str, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to a temporary file in the same directory, then rename it over ``path``."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".%s." % os.path.basename(path), suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_reports(report: dict, directory: str, formats: Iterable[str]) -> Dict[str, str]:
    """Render and write each format into ``directory``; returns ``{format: path}``."""
    written = {}
    for fmt in formats:
        if fmt not in RENDERERS:
            raise ReportError("unknown report format %r; use %s" % (fmt, ", ".join(FORMATS)))
        path = os.path.join(directory, FILE_NAMES[fmt])
        atomic_write(path, RENDERERS[fmt](report))
        written[fmt] = path
    return written
