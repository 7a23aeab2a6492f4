"""playbooks/verify_mail.yml through ansible-runner, the way an AWX job runs it, against the lab.

The private data directory is laid out like AWX's (see conftest.py): the collection is built from
this checkout and installed by a project sync into ``requirements_collections/``, the inventory is
AWX's executable ``inventory/hosts`` script, and the environment is exactly what the credential
type ``awx/credential_type.yml`` injects, rendered with AWX's rules from the lab's values.

Three tenants, one inventory host each: the lab's main tenant ``contoso`` (its inventory from
playbooks/inventory/lab.yml, with the deliberately broken mailboxes) and ``tenant01``/``tenant02``.
A job template takes at most one credential of a given type (docs/awx.md, section 4), and the lab's
tenants each have their own app, so:

* ``contoso`` is checked with the attached credential: its settings read ``O365_TENANT_ID``,
  ``O365_CLIENT_ID`` and ``client_secret_env: O365_CLIENT_SECRET`` from what the credential injects;
* ``tenant01``/``tenant02`` name their own tenant and client id in host vars and their secret by
  environment variable (``client_secret_env: MAILOPS_TENANT0x_CLIENT_SECRET``). In AWX those would
  come from a second custom credential type (one per extra app) or a secret lookup; here they are
  injected as extra envvars beside the credential's. The authority host and the CA bundle still come
  from the one credential (``O365_AUTHORITY_HOST``, ``O365_CA_PATH``: a file AWX writes for the job).

The verdict is deterministic: ``mailbox_reachability_fail_on: crit`` (the job template's extra var),
latency crit thresholds out of reach (60 s, so a loaded machine cannot add a crit), and
``ghost@contoso.test`` does not exist, so ``contoso`` fails (IMAP and SMTP), every other row of
every tenant passes, and the job ends ``failed`` (rc 2): what an AWX notification fires on.
"""
from __future__ import annotations

import base64
import json
import os
import re
import stat
import time
from pathlib import Path

import ansible_runner
import pytest
import yaml

from tests.integration import support
from tests.integration.awx.conftest import (
    awx_env,
    awx_meta_vars,
    build_collection,
    build_private_data_dir,
    render_credential,
    scrubbed_environ,
    walk_files,
    write_inventory_script,
)

pytestmark = [pytest.mark.lab, pytest.mark.slow]

LAB_INVENTORY = Path(support.ROOT) / "playbooks" / "inventory" / "lab.yml"
PLAYBOOK = "playbooks/verify_mail.yml"  # relative to project/, as a job template names it
EXTRA_TENANTS = ("tenant01.test", "tenant02.test")
MAILBOXES_PER_EXTRA_TENANT = 8
FORKS = 3
PROTOCOLS = ("imap", "pop", "smtp")
STATUS_WORDS = ("OK", "WARN", "CRIT", "FAIL", "EXPECTED")
# A loaded CI machine must not turn a slow TLS handshake into a crit (default crit: 2 s): only a
# failed check decides this job's verdict. Warn thresholds keep their defaults.
CALM_THRESHOLDS = {"latency_ms": {"crit": {p: 60000 for p in ("connect", "tls", "greeting", "auth", "command", "total")}}}


def _contoso(env: dict) -> dict:
    """lab.yml's contoso, as an AWX inventory host: the server endpoints are plain inventory data
    (the LAB_* variables exist only on a workstation), the app comes from the credential (O365_*)."""
    with open(LAB_INVENTORY, encoding="utf-8") as handle:
        host = yaml.safe_load(handle)["tenants"]["hosts"]["contoso"]
    tenant = host["mailops_o365_tenant"]
    for text in json.dumps(tenant["endpoints"]), json.dumps(tenant["app"]):
        assert "LAB_" in text or "O365_" in text  # what is replaced below is what lab.yml reads from env
    tenant["endpoints"] = {
        "imap": {"host": env["LAB_HOST"], "port": int(env["LAB_IMAP_PORT"]), "security": "tls"},
        "pop": {"host": env["LAB_HOST"], "port": int(env["LAB_POP_PORT"]), "security": "tls"},
        "smtp": {"host": env["LAB_HOST"], "port": int(env["LAB_SMTP_PORT"]), "security": "starttls"},
    }
    assert tenant["app"]["client_secret_env"] == "O365_CLIENT_SECRET"
    assert "O365_TENANT_ID" in tenant["tenant_id"] and "O365_CA_PATH" in tenant["ca_path"]
    tenant.pop("reports", None)  # the job's default: reports/ in the project directory
    tenant["thresholds"] = dict(tenant.get("thresholds") or {}, **CALM_THRESHOLDS)
    return host


def _extra_tenant(env: dict, identity: dict) -> tuple[str, dict, str, str]:
    app = identity["apps"][0]
    name = identity["domain"].split(".")[0]
    secret_env = "MAILOPS_%s_CLIENT_SECRET" % name.upper()
    endpoint = {"host": env["LAB_HOST"], "security": "tls"}
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": "{{ ansible_playbook_python }}",
        "mailops_o365_tenant": {
            "name": name,
            "description": identity["display_name"],
            "tenant_id": identity["id"],
            # shared with the credential: one authority host and CA bundle for the whole job
            "authority_host": "{{ lookup('ansible.builtin.env', 'O365_AUTHORITY_HOST') }}",
            "ca_path": "{{ lookup('ansible.builtin.env', 'O365_CA_PATH') }}",
            "app": {"client_id": app["client_id"], "auth": "client_secret", "client_secret_env": secret_env,
                    "permissions": app["roles"]},
            "endpoints": {"imap": dict(endpoint, port=int(env["LAB_IMAP_PORT"])),
                          "pop": dict(endpoint, port=int(env["LAB_POP_PORT"])),
                          "smtp": dict(endpoint, port=int(env["LAB_SMTP_PORT"]), security="starttls")},
            "mailboxes": [{"address": m["address"]} for m in identity["mailboxes"][:MAILBOXES_PER_EXTRA_TENANT]],
            "thresholds": CALM_THRESHOLDS,
        },
    }
    return name, host, secret_env, app["secret"]


def _rows(hosts: dict) -> dict:
    """(tenant, mailbox, protocol) -> what is expected: 'ok', an expected category, or 'fail'."""
    rows = {}
    for name, host in hosts.items():
        for box in host["mailops_o365_tenant"]["mailboxes"]:
            for protocol in box.get("protocols", PROTOCOLS):
                expected = box.get("expect", "ok")
                if box["address"].startswith("ghost@"):
                    expected = "fail"
                rows[(name, box["address"], protocol)] = expected
    return rows


def _tokens(cache_file: Path) -> list:
    with open(cache_file, encoding="utf-8") as handle:
        cache = json.load(handle)
    return [entry["secret"] for entry in cache.get("AccessToken", {}).values()]


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    env = support.lab_env()
    work = tmp_path_factory.mktemp("awx")
    private_data_dir = work / "awx_job_4242"
    private_data_dir.mkdir()
    tarball = build_collection(work)
    build_private_data_dir(private_data_dir, tarball)

    with open(env["LAB_IDENTITIES"], encoding="utf-8") as handle:
        identities = {t["domain"]: t for t in json.load(handle)["tenants"]}
    hosts = {"contoso": _contoso(env)}
    tenant_secrets = {}
    for domain in EXTRA_TENANTS:
        name, host, secret_env, secret = _extra_tenant(env, identities[domain])
        hosts[name] = host
        tenant_secrets[secret_env] = secret
    inventory = write_inventory_script(private_data_dir, hosts)

    # The credential, as a user fills it in AWX: the lab's main app with its secret, the lab's
    # authority host and its CA (a multi-line PEM field that AWX writes to a private file).
    with open(env["O365_CA_PATH"], encoding="utf-8") as handle:
        ca_pem = handle.read()
    credential_env = render_credential({
        "tenant_id": env["O365_TENANT_ID"], "client_id": env["O365_CLIENT_ID"],
        "client_secret": env["O365_CLIENT_SECRET"], "authority_host": env["O365_AUTHORITY_HOST"],
        "ca_bundle": ca_pem, "cloud": "", "username": "",
    }, private_data_dir)
    assert Path(credential_env["O365_CA_PATH"]).parent == private_data_dir / "env"
    assert credential_env["O365_CLIENT_CERTIFICATE_PATH"] == "" and credential_env["O365_REFRESH_TOKEN"] == ""

    # The token cache: in the EE, HOME=/runner (the private data dir, outside artifacts/); kept out of
    # the private data dir here so that the whole directory can be searched for tokens.
    cache_home = work / "home-cache"
    envvars = dict(awx_env(private_data_dir), XDG_CACHE_HOME=str(cache_home), **tenant_secrets, **credential_env)
    extravars = dict(awx_meta_vars(), mailbox_reachability_fail_on="crit")

    started = time.monotonic()
    with scrubbed_environ():
        runner = ansible_runner.run(private_data_dir=str(private_data_dir), playbook=PLAYBOOK,
                                    inventory=str(inventory), extravars=extravars, envvars=envvars,
                                    cmdline="--forks=%d" % FORKS, ident="4242", quiet=True, timeout=240)
    elapsed = time.monotonic() - started
    stdout = (private_data_dir / "artifacts" / "4242" / "stdout").read_text()
    events = list(runner.events)
    cache_file = cache_home / "mailops.o365" / "token_cache.json"
    secrets = {"credential client secret": env["O365_CLIENT_SECRET"]}
    secrets.update({"%s secret" % k: v for k, v in tenant_secrets.items()})
    return {"runner": runner, "events": events, "stdout": stdout, "dir": private_data_dir, "hosts": hosts,
            "secrets": secrets, "cache_file": cache_file, "elapsed": elapsed}


def _task_events(job, task, kinds=("runner_on_ok", "runner_on_failed")):
    return [e for e in job["events"] if e.get("event") in kinds and e["event_data"].get("task") == task]


def test_job_fails_deterministically_on_the_broken_mailbox(job):
    runner = job["runner"]
    assert runner.status == "failed" and runner.rc == 2, (runner.status, runner.rc, job["stdout"][-4000:])
    stats = [e for e in job["events"] if e["event"] == "playbook_on_stats"]
    assert len(stats) == 1
    data = stats[0]["event_data"]
    assert data["failures"] == {"contoso": 1}, data
    assert not data.get("dark"), data
    assert set(data["ok"]) == set(job["hosts"])
    failed = [e for e in job["events"] if e["event"] == "runner_on_failed" and not e["event_data"].get("ignore_errors")]
    assert [(e["event_data"]["host"], e["event_data"]["task"]) for e in failed] == [("contoso", "Fail the tenants that failed")]
    assert "contoso: " in failed[0]["event_data"]["res"]["msg"] and "fail on crit" in failed[0]["event_data"]["res"]["msg"]
    assert job["elapsed"] < 120, "the job took %.0f s" % job["elapsed"]


def test_the_collection_came_from_the_project_sync(job):
    """The role's tasks ran from requirements_collections/, i.e. the built tarball, not the checkout."""
    paths = {e["event_data"].get("task_path", "") for e in job["events"] if e["event"] == "runner_on_ok"
             and "mailbox_reachability" in e["event_data"].get("task_path", "")}
    assert paths
    root = str(job["dir"] / "requirements_collections" / "ansible_collections" / "mailops" / "o365") + os.sep
    assert all(p.startswith(root) for p in paths), paths


def test_every_mailbox_and_protocol_is_a_job_event(job):
    rows = _rows(job["hosts"])
    seen = {}
    for task, protocol in (("Check IMAP", "imap"), ("Check POP", "pop"), ("Check SMTP AUTH (nothing is sent)", "smtp")):
        events = _task_events(job, task)
        assert {e["event_data"]["host"] for e in events} == set(job["hosts"]), task
        for event in events:
            assert event["event"] == "runner_on_ok"  # fail_on_error: false - the report judges
            host = event["event_data"]["host"]
            for result in event["event_data"]["res"]["results"]:
                seen[(host, result["mailbox"], protocol)] = result
    assert set(seen) == set(rows)
    for key, expected in rows.items():
        result = seen[key]
        if expected == "ok":
            assert result["ok"] is True, (key, result)
        else:
            assert result["ok"] is False, (key, result)
            if expected != "fail":
                assert result["error"]["category"] == expected, (key, result["error"])


def test_one_concise_line_per_mailbox_and_protocol(job):
    """What an AWX user reads in the job output: one line per mailbox x protocol, per tenant."""
    rows = _rows(job["hosts"])
    line_events = _task_events(job, "Show one line per mailbox and protocol", ("runner_on_ok",))
    assert {e["event_data"]["host"] for e in line_events} == set(job["hosts"])
    pattern = re.compile(r"^(%s)\s+(\S+) (\S+@\S+) (imap|pop|smtp)\b" % "|".join(STATUS_WORDS))
    from_events = {}
    for event in line_events:
        for line in event["event_data"]["res"]["msg"]:
            match = pattern.match(line)
            if match:
                key = match.group(2, 3, 4)
                assert key not in from_events, "two lines for %s" % (key,)
                from_events[key] = match.group(1)
    assert set(from_events) == set(rows)
    for key, expected in rows.items():
        word = {"ok": ("OK", "WARN"), "fail": ("FAIL",)}.get(expected, ("EXPECTED",))
        assert from_events[key] in word, (key, from_events[key])
        # and the same line, once, in the job's stdout
        stdout_lines = [ln for ln in job["stdout"].splitlines()
                        if re.search(r'"%s\s+%s %s %s\b' % (from_events[key], *map(re.escape, key)), ln)]
        assert len(stdout_lines) == 1, (key, stdout_lines)


def test_no_secret_in_events_stdout_or_artifacts(job):
    tokens = _tokens(job["cache_file"])
    assert len(tokens) >= 1 + len(EXTRA_TENANTS), "expected one access token per tenant app in the job's cache"
    needles = dict(job["secrets"])
    mailboxes = {box["address"] for host in job["hosts"].values() for box in host["mailops_o365_tenant"]["mailboxes"]}
    for i, token in enumerate(tokens):
        needles["access token %d" % i] = token
        needles["access token %d signature" % i] = token.rsplit(".", 1)[-1]
        for mailbox in mailboxes:
            sasl = base64.b64encode(("user=%s\x01auth=Bearer %s\x01\x01" % (mailbox, token)).encode()).decode()
            needles["SASL XOAUTH2 of %s with token %d" % (mailbox, i)] = sasl
    assert all(len(v) > 12 for v in needles.values())

    def leaks(text: str) -> list:
        return sorted(label for label, value in needles.items() if value in text)

    assert leaks(job["stdout"]) == []
    for event in job["events"]:
        assert leaks(json.dumps(event)) == [], event.get("event_data", {}).get("task")
    artifacts = job["dir"] / "artifacts"
    files = list(walk_files(artifacts))
    assert any(f.name == "stdout" for f in files) and any(f.parent.name == "job_events" for f in files)
    injected = set(job["secrets"].values())
    for path in files:
        if path.name == "command" and path.parent.name == "4242":
            # ansible-runner itself (2.4, runner.py) always dumps the job's command, cwd and full
            # environment here, so the injected credential is in it as AWX passed it (AWX deletes the
            # private data dir after the job and shows only a redacted job_env). Check that it is
            # private (0600) and that nothing but those injected env values carries a secret: no token,
            # nothing in the command line.
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            command = json.loads(path.read_text())
            assert leaks(json.dumps([command["command"], command["cwd"]])) == []
            for key, value in command["env"].items():
                found = leaks("%s=%s" % (key, value))
                assert not found or (value in injected and found == leaks(value)), (key, found)
            continue
        assert leaks(path.read_bytes().decode("utf-8", "replace")) == [], path
    # The reports the job wrote (project/reports/) carry no secret either; only env/ holds the
    # credential (the injected files and the envvars ansible-runner reads), as in AWX.
    for path in walk_files(job["dir"]):
        if job["dir"] / "env" in path.parents:
            continue
        if artifacts in path.parents or "requirements_collections" in path.parts:
            continue  # checked above / the collection itself
        assert leaks(path.read_bytes().decode("utf-8", "replace")) == [], path
    # the search does find what it looks for: the credential is in the envvars ansible-runner read
    assert "credential client secret" in leaks((job["dir"] / "env" / "envvars").read_text())
    reports = job["dir"] / "project" / "reports"
    assert (reports / "report.json").is_file() and (reports / "contoso" / "report.json").is_file()
