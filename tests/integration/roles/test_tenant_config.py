"""The tenant_config role for real: ansible-playbook applies it to a good and a bad tenant (no lab needed)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
BIN = os.path.join(ROOT, ".venv", "bin")
EXAMPLE = os.path.join(ROOT, "docs", "examples", "tenant-app-only.yml")

BAD_LINES = [
    "tenant.app: 'refresh_token_env' is required when auth is 'refresh_token'",
    "tenant.app: unknown key 'secret'",
    "tenant.endpoints.imap.port: must be between 1 and 65535 (got 0)",
    "tenant.mailboxes[0].address: 'bob@' is not an email address",
    "tenant.mailboxes[2].address: 'Ops@contoso.com' is listed twice (also tenant.mailboxes[1])",
    "tenant.tenant_id: 'not a tenant' is neither a GUID nor a domain name",
]

PLAYBOOK = """
- name: Validate tenants
  hosts: all
  gather_facts: false
  roles:
    - role: mailops.o365.tenant_config
  tasks:
    - name: Show the normalized settings
      ansible.builtin.debug:
        msg: "NORMALIZED {{ mailops_o365_tenant_settings.endpoints.imap.port }} {{ mailops_o365_tenant_settings.mailboxes[0].expect }}
          {{ mailops_o365_tenant_settings.app.client_secret | default('no-secret') }}"
"""


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "")
    env["ANSIBLE_CONFIG"] = os.path.join(ROOT, "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    env["ANSIBLE_RETRY_FILES_ENABLED"] = "0"
    return env


def _bad_tenant() -> dict:
    return {
        "name": "broken",
        "tenant_id": "not a tenant",
        "app": {"client_id": "3f2b9c1e-7a4d-4e8b-9c0a-1d2e3f4a5b6c", "auth": "refresh_token", "secret": "x",
                "permissions": ["IMAP.AccessAsUser.All"]},
        "endpoints": {"imap": {"port": 0}},
        "mailboxes": [{"address": "bob@"}, {"address": "ops@contoso.com"}, {"address": "Ops@contoso.com"}],
    }


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    if not os.path.exists(os.path.join(BIN, "ansible-playbook")):
        pytest.skip("no .venv/bin/ansible-playbook")
    work = tmp_path_factory.mktemp("tenant_config")
    with open(EXAMPLE, encoding="utf-8") as handle:
        good = yaml.safe_load(handle)["mailops_o365_tenant"]
    # The national-cloud example's form: client_secret as a Jinja expression over a vaulted variable.
    good["app"].pop("client_secret_env")
    good["app"]["client_secret"] = "{{ vault_good_secret }}"
    good["mailboxes"].append({"address": "relay@contoso.com", "protocols": ["smtp"], "folder": "Sent"})  # a warning
    (work / "pw").write_text("test-vault-password\n")
    vaulted = subprocess.run([os.path.join(BIN, "ansible-vault"), "encrypt_string", "--vault-password-file", str(work / "pw"),
                              "s3cr3t-value-never-shown", "--name", "vault_good_secret"],
                             cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120, check=True).stdout
    (work / "host_vars").mkdir()
    (work / "host_vars" / "good.yml").write_text(yaml.safe_dump({"mailops_o365_tenant": good}) + vaulted)
    (work / "host_vars" / "bad.yml").write_text(yaml.safe_dump({"mailops_o365_tenant": _bad_tenant()}))
    (work / "inventory.yml").write_text(textwrap.dedent("""
        all:
          hosts:
            good: {ansible_connection: local}
            bad: {ansible_connection: local}
    """))
    (work / "play.yml").write_text(PLAYBOOK)
    proc = subprocess.run([os.path.join(BIN, "ansible-playbook"), "-i", str(work / "inventory.yml"),
                           "--vault-password-file", str(work / "pw"), str(work / "play.yml")],
                          cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=240, check=False)
    yield proc
    shutil.rmtree(work, ignore_errors=True)


def test_bad_tenant_fails_listing_every_violation(run):
    out = run.stdout + run.stderr
    assert run.returncode != 0, out
    assert "fatal: [bad]" in out, out
    for line in BAD_LINES:
        assert line in out, (line, out)
    assert "6 problems in the tenant settings" in out, out


def test_good_tenant_passes_with_defaults_and_no_secret(run):
    out = run.stdout + run.stderr
    assert "fatal: [good]" not in out, out
    assert "NORMALIZED 993 ok" in out, out
    assert "no-secret" in out, out
    assert "s3cr3t-value-never-shown" not in out, out
    assert re.search(r"^good\s+: ok=\d+\s+changed=0\s+unreachable=0\s+failed=0", out, re.M), out
    assert "tenant.mailboxes[4].folder: is ignored: this mailbox is not checked over imap" in out, out
