"""send_alert.yml delivers; bootstrap_token.yml completes the device code flow with a headless approval."""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

from tests.integration import support


def test_send_alert_delivers(tmp_path):
    marker = "alert-%s" % uuid.uuid4().hex[:12]
    proc = support.run_playbook("playbooks/send_alert.yml", timeout=180, extra_vars={
        "alert_to": "bob@contoso.test", "alert_subject": "Disk full %s" % marker, "alert_body": "db01: /var is 98% full",
        "alert_headers": {"X-Alert-Id": marker}},
        env=dict(support.lab_env(), O365_TOKEN_CACHE_PATH=str(tmp_path / "cache.json")))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    messages = support.fetch_messages("bob@contoso.test", "X-Alert-Id", marker)
    assert len(messages) == 1
    assert messages[0]["Subject"] == "Disk full %s" % marker
    assert "98% full" in messages[0].get_content()


def test_bootstrap_token_with_headless_approval(tmp_path):
    cache = tmp_path / "cache.json"
    cmd = [os.path.join(support.ROOT, ".venv", "bin", "ansible-playbook"), "playbooks/bootstrap_token.yml",
           "-e", json.dumps({"bootstrap_token_wait_seconds": 3, "bootstrap_token_username": "adele@contoso.test",
                             "bootstrap_token_cache_path": str(cache), "bootstrap_token_timeout": 60})]
    full_env = support.module_env(support.lab_env())
    full_env["ANSIBLE_CONFIG"] = os.path.join(support.ROOT, "ansible.cfg")
    full_env["PATH"] = os.path.join(support.ROOT, ".venv", "bin") + os.pathsep + full_env.get("PATH", "")
    log = tmp_path / "out.txt"
    with open(log, "w") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=support.ROOT, env=full_env, text=True)
    code = None
    deadline = time.monotonic() + 60
    while code is None and time.monotonic() < deadline and proc.poll() is None:
        for line in log.read_text().splitlines():
            if '"user code: ' in line:
                code = line.split('"user code: ', 1)[1].split('"')[0]
        time.sleep(0.2)
    assert code, log.read_text()
    support.lab_call("POST", "/device/approve", {"user_code": code, "user": "adele@contoso.test"})
    assert proc.wait(timeout=120) == 0, log.read_text()
    out = log.read_text()
    assert "Refresh token of adele@contoso.test stored in the token cache" in out, out
    assert cache.exists()
    data = json.loads(cache.read_text())
    assert data.get("RefreshToken"), "no refresh token in the cache"
    for entry in data["RefreshToken"].values():
        assert entry["secret"] not in out  # the refresh token is never printed
