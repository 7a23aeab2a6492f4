"""Bad-input matrix: malformed input to every module and to the tenant_config role fails with a message
naming the field, before any network call.

Every run points the mail host/port at a closed port and authority_host at another closed port, so a
network attempt would surface as a connection/token error instead of the config error; and the lab
IdP's request counters must not move over the whole matrix.
"""
from __future__ import annotations

import concurrent.futures
import json
import os
import re
import subprocess
import textwrap

import pytest
import yaml

from tests.integration import support
from tests.reliability.relsupport import closed_port, idp_requests, run_module

pytestmark = pytest.mark.lab

MB = 1024 * 1024
TENANT = "0c0a5a1e-5e57-4c3b-9b1d-1ab000000001"
CLIENT = "0c0a5a1e-a990-4a11-8000-00000000a001"
CERT_LIKE_FILE = os.path.join(support.ROOT, "README.md")    # exists, readable, not a certificate

# (case id, module, argument overrides, the field the message must name)
CASES = [
    # shared auth options, through the IMAP check
    ("tenant_id-not-guid-or-domain", "o365_imap_check", {"tenant_id": "not a tenant"}, "tenant_id"),
    ("tenant_id-trailing-newline", "o365_imap_check", {"tenant_id": TENANT + "\n"}, "tenant_id"),
    ("client_id-not-guid", "o365_imap_check", {"client_id": "my-app"}, "client_id"),
    ("client_id-1MB", "o365_imap_check", {"client_id": "a" * MB}, "client_id"),
    ("client_secret-and-certificate", "o365_imap_check", {"client_certificate_path": CERT_LIKE_FILE}, "client_secret"),
    ("certificate-missing-file", "o365_imap_check",
     {"client_secret": None, "client_certificate_path": "/nonexistent/app.pem"}, "client_certificate_path"),
    ("certificate-not-a-pem", "o365_imap_check",
     {"client_secret": None, "client_certificate_path": CERT_LIKE_FILE}, "client_certificate_path"),
    ("client_secret-binary-NUL", "o365_imap_check", {"client_secret": "abc\x00\x01def"}, "client_secret"),
    ("refresh_token-with-LF", "o365_imap_check", {"client_secret": None, "refresh_token": "rt\nX"}, "refresh_token"),
    ("access_token-blank", "o365_imap_check", {"access_token": "   "}, "access_token"),
    ("flow-access_token-without-token", "o365_imap_check", {"flow": "access_token"}, "access_token"),
    ("flow-refresh_token-without-token", "o365_imap_check", {"flow": "refresh_token"}, "refresh_token"),
    ("cloud-unknown", "o365_imap_check", {"cloud": "mars"}, "cloud"),
    ("authority_host-http", "o365_imap_check", {"authority_host": "http://login.example"}, "authority_host"),
    ("authority_host-with-path", "o365_imap_check", {"authority_host": "https://login.example/evil?x=1"},
     "authority_host"),
    ("ca_path-missing", "o365_imap_check", {"ca_path": "/nonexistent/ca.pem"}, "ca_path"),
    ("timeout-zero", "o365_imap_check", {"timeout": 0}, "timeout"),
    ("timeout-huge", "o365_imap_check", {"timeout": 1e9}, "timeout"),
    ("token_cache_path-directory", "o365_imap_check", {"token_cache_path": "/tmp"}, "token_cache_path"),
    ("scopes-reserved", "o365_imap_check", {"scopes": ["offline_access"]}, "scopes[0]"),
    ("scopes-with-space", "o365_imap_check", {"scopes": ["a b"]}, "scopes[0]"),
    # check options
    ("mailbox-not-address", "o365_imap_check", {"mailbox": "adele"}, "mailbox"),
    ("mailbox-header-injection", "o365_imap_check", {"mailbox": "adele@contoso.test\r\nX-Evil: 1"}, "mailbox"),
    ("mailbox-1MB", "o365_imap_check", {"mailbox": "a" * MB + "@contoso.test"}, "mailbox"),
    ("mailbox-binary", "o365_imap_check", {"mailbox": "\x00\xff\x01@contoso.test"}, "mailbox"),
    ("mailbox-and-mailboxes", "o365_imap_check", {"mailboxes": ["bob@contoso.test"]}, "mailbox"),
    ("port-zero", "o365_imap_check", {"port": 0}, "port"),
    ("port-too-big", "o365_imap_check", {"port": 70000}, "port"),
    ("host-with-slash-space", "o365_imap_check", {"host": "evil host/x"}, "host"),
    ("security-unknown", "o365_imap_check", {"security": "ssl"}, "security"),
    ("max_workers-zero", "o365_imap_check", {"max_workers": 0}, "max_workers"),
    ("folder-CRLF", "o365_imap_check", {"folder": "INBOX\r\nA002 DELETE INBOX"}, "folder"),
    ("search-CRLF", "o365_imap_check", {"search": "ALL\r\nA002 DELETE INBOX"}, "search"),
    ("search-literal", "o365_imap_check", {"search": "SUBJECT {5}"}, "search"),
    ("fleet-entry-port-string", "o365_imap_check",
     {"mailbox": None, "mailboxes": ["bob@contoso.test", {"address": "adele@contoso.test", "port": "99999"}]},
     "mailboxes[1].port"),
    ("fleet-entry-unknown-key", "o365_imap_check",
     {"mailbox": None, "mailboxes": [{"address": "adele@contoso.test", "password": "x"}]}, "mailboxes[0]"),
    ("fleet-entry-bad-address", "o365_imap_check", {"mailbox": None, "mailboxes": ["bob@contoso.test", "x@"]},
     "mailboxes[1]"),
    ("fleet-empty", "o365_pop_check", {"mailbox": None, "mailboxes": []}, "mailbox"),
    ("pop-port-negative", "o365_pop_check", {"port": -1}, "port"),
    ("smtp_check-ehlohost-space", "o365_smtp_check", {"ehlohost": "bad host"}, "ehlohost"),
    # sending
    ("send-to-header-injection", "o365_smtp_send", {"to": ["bob@contoso.test\r\nBcc: victim@evil.test"]}, "to[0]"),
    ("send-subject-header-injection", "o365_smtp_send", {"subject": "hi\r\nBcc: victim@evil.test"}, "subject"),
    ("send-subject-unicode-line-break", "o365_smtp_send", {"subject": "hi\u2028Bcc: x@evil.test"}, "subject"),
    ("send-subject-1MB", "o365_smtp_send", {"subject": "s" * MB}, "subject"),
    ("send-header-value-injection", "o365_smtp_send", {"headers": {"X-Ticket": "1\r\nBcc: x@evil.test"}},
     "headers.X-Ticket"),
    ("send-structural-header", "o365_smtp_send", {"headers": {"Bcc": "x@evil.test"}}, "headers.Bcc"),
    ("send-attach-missing", "o365_smtp_send", {"attach": ["/nonexistent/report.pdf"]}, "attach[0]"),
    ("send-sender-not-address", "o365_smtp_send", {"sender": "alerts"}, "sender"),
    ("send-charset-unknown", "o365_smtp_send", {"charset": "no-such-charset"}, "charset"),
    ("send-max_per_minute-zero", "o365_smtp_send", {"max_per_minute": 0}, "max_per_minute"),
    ("send-port-too-big", "o365_smtp_send", {"port": 70000}, "port"),
    ("send-port-zero", "o365_smtp_send", {"port": 0}, "port"),
    ("send-host-space", "o365_smtp_send", {"host": "smtp server"}, "host"),
    ("send-ehlohost-space", "o365_smtp_send", {"ehlohost": "bad host"}, "ehlohost"),
    ("send-batch-bad-recipient", "o365_smtp_send", {"messages": [{"to": ["bob@contoso.test"]}, {"to": ["nope"]}]},
     "messages[1].to[0]"),
    # token
    ("token-protocol-unknown", "o365_token", {"protocols": ["ftp"]}, "protocols"),
    ("token-no-credential", "o365_token", {"client_secret": None}, "flow"),
    # mail flow
    ("mailflow-sender-not-address", "o365_mailflow_check", {"sender_mailbox": "alerts"}, "sender_mailbox"),
    ("mailflow-warn-above-crit", "o365_mailflow_check", {"warn_s": 100, "crit_s": 10}, "crit_s"),
    ("mailflow-poll-zero", "o365_mailflow_check", {"poll_interval_s": 0}, "poll_interval_s"),
    ("mailflow-imap_port-zero", "o365_mailflow_check", {"imap_port": 0}, "imap_port"),
    ("mailflow-smtp_port-too-big", "o365_mailflow_check", {"smtp_port": 70000}, "smtp_port"),
    ("mailflow-smtp_host-space", "o365_mailflow_check", {"smtp_host": "smtp server"}, "smtp_host"),
    ("mailflow-folder-CRLF", "o365_mailflow_check", {"folder": "INBOX\r\nA1 LOGOUT"}, "folder"),
]


def _base(module: str, port: int) -> dict:
    if module == "o365_smtp_send":
        return {"sender": "adele@contoso.test", "to": ["bob@contoso.test"], "subject": "s", "body": "b",
                "host": "127.0.0.1", "port": port}
    if module == "o365_token":
        return {"protocols": ["imap"]}
    if module == "o365_mailflow_check":
        return {"sender_mailbox": "adele@contoso.test", "recipient_mailbox": "bob@contoso.test",
                "smtp_host": "127.0.0.1", "smtp_port": port, "imap_host": "127.0.0.1", "imap_port": port}
    return {"mailbox": "adele@contoso.test", "host": "127.0.0.1", "port": port}


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    """Run every case (4 at a time) with the IdP counter read before and after the whole matrix."""
    env_file = support.lab_env()
    cache = str(tmp_path_factory.mktemp("bad-input") / "cache.json")
    mail_port, idp_port = closed_port(), closed_port()
    env = support.module_env({"O365_AUTHORITY_HOST": "https://127.0.0.1:%d" % idp_port,
                              "O365_TOKEN_CACHE_PATH": cache, "O365_TENANT_ID": TENANT, "O365_CLIENT_ID": CLIENT,
                              "O365_CLIENT_SECRET": env_file["O365_CLIENT_SECRET"]})

    def one(case):
        _unused, module, overrides, _unused = case
        args = _base(module, mail_port)
        args.update(overrides)
        args = {k: v for k, v in args.items() if v is not None}
        if overrides.get("client_secret", "") is None:
            args["client_secret"] = ""     # the env fallback must not fill it in
        return run_module(module, args, env=env, timeout=60)

    before = idp_requests()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        results = dict(zip([c[0] for c in CASES], pool.map(one, CASES)))
    after = idp_requests()
    return results, before, after


def test_matrix_is_big_enough():
    assert len(CASES) >= 30
    assert len({c[1] for c in CASES}) >= 6       # every module that takes input on the managed node


def test_no_network_call_over_the_whole_matrix(matrix):
    _unused, before, after = matrix
    assert after == before, "the lab IdP answered %d requests during the bad-input matrix" % (after - before)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_naming_the_field(matrix, case):
    name, module, _unused, field = case
    rc, out, seconds = matrix[0][name]
    text = json.dumps(out)
    assert rc != 0 and out.get("failed"), text[:2000]
    msg = out.get("msg", "")
    error = out.get("error") or {}
    # Either our classified config error or Ansible's own argument-spec check (choices, types).
    if error:
        assert error.get("category") == "config", text[:2000]
        assert error["message"].startswith(field) or (field + ":") in error["message"] or field in msg, text[:2000]
    else:
        assert re.search(r"\b%s\b" % re.escape(field.split("[")[0]), msg), text[:2000]
    # Never a network failure in disguise.
    assert not re.search(r"refused the connection|cannot reach Entra|did not answer", text), text[:2000]
    # Ansible echoes the arguments under "invocation"; our own message must not echo a huge value.
    shown = json.dumps({k: v for k, v in out.items() if k != "invocation"})
    assert len(shown) < 20000, "the message echoes the huge value (%d chars)" % len(shown)
    assert seconds < 30


ROLE_CASES = [
    # (host, tenant settings change, the field named in the message)
    ("bad_tenant_id", {"tenant_id": "not a tenant"}, "tenant.tenant_id"),
    ("bad_client_id", {"app": {"client_id": "nope"}}, "tenant.app.client_id"),
    ("bad_port", {"endpoints": {"imap": {"port": 0}}}, "tenant.endpoints.imap.port"),
    ("bad_address", {"mailboxes": [{"address": "bob@"}]}, "tenant.mailboxes[0].address"),
    ("unknown_key", {"app": {"secret": "x"}}, "tenant.app"),
    ("bad_cloud", {"cloud": "mars"}, "tenant.cloud"),
    ("bad_authority", {"authority_host": "http://login.example"}, "tenant.authority_host"),
    ("secret_inline", {"app": {"client_secret": "plain-text-secret"}}, "tenant.app"),
]


def _merge(base: dict, change: dict) -> dict:
    out = dict(base)
    for key, value in change.items():
        out[key] = _merge(base.get(key) or {}, value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return out


def test_tenant_config_role_bad_settings(tmp_path):
    with open(os.path.join(support.ROOT, "docs", "examples", "tenant-app-only.yml"), encoding="utf-8") as handle:
        good = yaml.safe_load(handle)["mailops_o365_tenant"]
    hosts = {}
    (tmp_path / "host_vars").mkdir()
    for host, change, _unused in ROLE_CASES:
        hosts[host] = {"ansible_connection": "local"}
        (tmp_path / "host_vars" / (host + ".yml")).write_text(yaml.safe_dump({"mailops_o365_tenant": _merge(good, change)}))
    (tmp_path / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    (tmp_path / "play.yml").write_text(textwrap.dedent("""
        - name: Validate
          hosts: all
          gather_facts: false
          roles:
            - role: mailops.o365.tenant_config
    """))
    env = dict(os.environ, ANSIBLE_CONFIG=os.path.join(support.ROOT, "ansible.cfg"), ANSIBLE_NOCOLOR="1",
               ANSIBLE_STDOUT_CALLBACK="minimal", ANSIBLE_FORKS="8",
               PATH=os.path.join(support.ROOT, ".venv", "bin") + os.pathsep + os.environ.get("PATH", ""))
    before = idp_requests()
    proc = subprocess.run([os.path.join(support.ROOT, ".venv", "bin", "ansible-playbook"), "-i",
                           str(tmp_path / "inventory.yml"), str(tmp_path / "play.yml")], cwd=support.ROOT, env=env,
                          capture_output=True, text=True, timeout=240, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert idp_requests() == before
    failures = dict(re.findall(r"^(\S+) \| FAILED! => (\{.*?^\})", proc.stdout, re.M | re.S))
    for host, _unused, field in ROLE_CASES:
        assert host in failures, (host, out[-3000:])
        assert field in failures[host], (host, field, failures[host][:2000])
