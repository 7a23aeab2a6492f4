"""verify_mail.yml for real against the lab: reports, counts, broken mailboxes, Chromium, and one token per tenant."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
import yaml

from tests.integration import support

INVENTORY = os.path.join(support.ROOT, "playbooks", "inventory", "lab.yml")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _lab_tenant() -> dict:
    with open(INVENTORY, encoding="utf-8") as handle:
        return yaml.safe_load(handle)["tenants"]["hosts"]["contoso"]["mailops_o365_tenant"]


def _expected_rows() -> dict:
    rows = {}
    for box in _lab_tenant()["mailboxes"]:
        for protocol in box.get("protocols", ["imap", "pop", "smtp"]):
            rows[(box["address"], protocol)] = box.get("expect", "ok")
    return rows


@pytest.fixture(scope="module")
def verify(tmp_path_factory):
    out = tmp_path_factory.mktemp("verify_mail")
    env = dict(support.lab_env(), O365_TOKEN_CACHE_PATH=str(out / "token_cache.json"))
    proc = support.run_playbook("playbooks/verify_mail.yml", extra_vars={"verify_mail_reports_dir": str(out / "reports")},
                                env=env, timeout=300)
    return proc, out / "reports"


def test_run_fails_only_for_the_broken_mailbox(verify):
    proc, _unused = verify
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out  # ghost@ fails by design
    assert "HTML report:" in out, out
    assert "FAIL     contoso ghost@contoso.test imap" in out, out
    assert "EXPECTED contoso noimap@contoso.test imap" in out, out
    assert "lab~" not in out, "a secret was printed"


def test_json_counts_match_the_inventory(verify):
    _unused, reports = verify
    for path in (reports / "report.json", reports / "contoso" / "report.json"):
        data = json.loads(path.read_text())
        rows = _expected_rows()
        tenant = data["tenants"][0]
        assert {(c["mailbox"], c["protocol"]) for c in tenant["checks"]} == set(rows)
        expected = sum(1 for v in rows.values() if v != "ok")
        assert data["counts"]["total"] == len(rows)
        assert data["counts"]["expected_failures"] == expected
        assert data["counts"]["fail"] == 2  # ghost@ over IMAP and SMTP
        assert data["counts"]["ok"] + data["counts"]["warn"] + data["counts"]["crit"] == len(rows) - expected - 2
        checks = {(c["mailbox"], c["protocol"]): c for c in tenant["checks"]}
        assert checks[("ghost@contoso.test", "imap")]["category"] == "auth"
        assert checks[("noimap@contoso.test", "imap")]["status"] == "expected"
        assert checks[("nosmtp@contoso.test", "smtp")]["status"] == "expected"
        assert checks[("nosmtp@contoso.test", "smtp")]["category"] == "disabled"
        assert all(c["timings"].get("total") for c in tenant["checks"] if c["status"] == "ok")


def test_mailflow_latency_is_measured(verify):
    _unused, reports = verify
    flow = json.loads((reports / "report.json").read_text())["tenants"][0]["mailflow"]
    assert flow["status"] in ("ok", "warn"), flow
    assert flow["latency_s"] is not None and flow["latency_s"] >= 0


def test_junit_and_prometheus_parse(verify):
    from prometheus_client.parser import text_string_to_metric_families

    _unused, reports = verify
    root = ET.parse(reports / "junit.xml").getroot()
    cases = [c for c in root.iter("testcase") if not c.get("name").startswith("mailflow ")]
    assert len(cases) == len(_expected_rows())
    families = {f.name: f for f in text_string_to_metric_families((reports / "mailops_o365.prom").read_text())}
    assert len(families["mailops_o365_check_up"].samples) == len(_expected_rows())
    assert families["mailops_o365_mailflow_latency_seconds"].samples


def test_html_renders_in_chromium(verify, tmp_path):
    _unused, reports = verify
    page = reports / "index.html"
    text = page.read_text()
    for address, _unused in _expected_rows():
        assert address in text
    if not os.path.exists(CHROMIUM):
        pytest.fail("chromium is missing (make test installs it)")
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
             "--user-data-dir=%s" % (tmp_path / "profile"), "--window-size=1400,2000"]
    shot = tmp_path / "report.png"
    subprocess.run(flags + ["--screenshot=%s" % shot, page.as_uri()], capture_output=True, timeout=60, check=False)
    assert shot.exists() and shot.stat().st_size > 10000
    dom = subprocess.run(flags + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=60, check=False).stdout
    assert '<table class="checks">' in dom
    for address, _unused in _expected_rows():
        assert address in dom


def _multi_inventory(path, count: int = 3) -> list:
    env = support.lab_env()
    with open(env["LAB_IDENTITIES"], encoding="utf-8") as handle:
        identities = json.load(handle)
    hosts, secrets = {}, {}
    for tenant in [t for t in identities["tenants"] if not t.get("main")][:count]:
        app = tenant["apps"][0]
        name = tenant["domain"].split(".")[0]
        secret_env = "LABTEST_%s_SECRET" % name.upper()
        secrets[secret_env] = app["secret"]
        endpoint = {"host": env["LAB_HOST"]}
        hosts[name] = {"ansible_connection": "local", "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                       "mailops_o365_tenant": {
                           "name": name, "tenant_id": tenant["id"], "authority_host": env["O365_AUTHORITY_HOST"],
                           "ca_path": env["O365_CA_PATH"],
                           "app": {"client_id": app["client_id"], "auth": "client_secret", "client_secret_env": secret_env,
                                   "permissions": app["roles"]},
                           "endpoints": {"imap": dict(endpoint, port=int(env["LAB_IMAP_PORT"])),
                                         "pop": dict(endpoint, port=int(env["LAB_POP_PORT"])),
                                         "smtp": dict(endpoint, port=int(env["LAB_SMTP_PORT"]))},
                           "mailboxes": [{"address": m["address"]} for m in tenant["mailboxes"][:10]],
                           "reports": {"formats": ["json"]}}}
    path.write_text(yaml.safe_dump({"tenants": {"hosts": hosts}}))
    return list(hosts), secrets, [h["mailops_o365_tenant"]["tenant_id"] for h in hosts.values()], \
        [h["mailops_o365_tenant"]["app"]["client_id"] for h in hosts.values()]


def test_three_tenants_one_token_request_each(tmp_path):
    names, secrets, _unused, client_ids = _multi_inventory(tmp_path / "inventory.yml")
    env = dict(secrets, O365_TOKEN_CACHE_PATH=str(tmp_path / "cache.json"))
    support.lab_call("POST", "/counters/reset", {})
    proc = support.run_playbook("playbooks/verify_mail.yml", env=env, timeout=300,
                                extra_vars={"verify_mail_reports_dir": str(tmp_path / "reports")},
                                args=("-i", str(tmp_path / "inventory.yml")))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    counters = support.lab_call("GET", "/counters")
    # Counted per app (client id): others may use the lab meanwhile, so totals are not asserted.
    for client_id in client_ids:  # one token request per (tenant, app); discovery is not a token request
        assert counters["clients"].get(client_id) == 1, counters
    data = json.loads((tmp_path / "reports" / "report.json").read_text())
    assert [t["name"] for t in data["tenants"]] == names
    assert data["counts"]["total"] == 3 * 10 * 3 and data["counts"]["ok"] == 90, data["counts"]
    for secret in secrets.values():
        assert secret not in out
