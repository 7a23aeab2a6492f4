"""Token cache under concurrency: 10 processes refresh through one cache file at once (delegated, device
code bootstrap); the file stays valid JSON, mode 0600, nothing is lost; a truncated file recovers."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time

import pytest

from tests.integration import support

pytestmark = pytest.mark.lab

WORKER = r"""
import json, sys
sys.path[:0] = [sys.argv[2], sys.argv[3]]
from ansible_collections.mailops.o365.plugins.module_utils._options import AuthSettings
from ansible_collections.mailops.o365.plugins.module_utils._token import acquire_token
s = AuthSettings.from_params(json.loads(sys.argv[1]))
warnings = []
token = acquire_token(s, ["imap", "smtp"], warn=warnings.append)
print(json.dumps({"source": token.source, "account": token.account, "warnings": warnings}))
"""


def _params(env: dict, cache: str, **extra) -> dict:
    params = {"tenant_id": env["O365_TENANT_ID"], "client_id": env["LAB_PUBLIC_CLIENT_ID"],
              "authority_host": env["O365_AUTHORITY_HOST"], "ca_path": env["O365_CA_PATH"],
              "token_cache_path": cache, "timeout": 60}
    params.update(extra)
    return params


def _bootstrap(env: dict, cache: str, user: str) -> None:
    from ansible_collections.mailops.o365.plugins.module_utils._options import AuthSettings
    from ansible_collections.mailops.o365.plugins.module_utils._token import PendingFlow, acquire_token

    s = AuthSettings.from_params(_params(env, cache, flow="device_code"))
    pending = acquire_token(s, ["imap", "smtp"])
    assert isinstance(pending, PendingFlow)
    support.lab_call("POST", "/device/approve", {"user_code": pending.instructions["user_code"], "user": user})
    acquire_token(s, ["imap", "smtp"], flow_state=json.loads(json.dumps(pending.state)))


def _expire_access_tokens(cache: str) -> None:
    with open(cache, encoding="utf-8") as handle:
        data = json.load(handle)
    for entry in data["AccessToken"].values():
        entry["expires_on"] = str(int(time.time()) - 10)
    with open(cache, "w", encoding="utf-8") as handle:
        json.dump(data, handle)


def _spawn(params: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(params), support.ROOT, support.COLLECTIONS],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ten_processes_refresh_through_one_cache(lab_clean, tmp_path):
    env = support.lab_env()
    user = env["LAB_MAILBOX"]
    cache = str(tmp_path / "cache.json")
    _bootstrap(env, cache, user)
    _expire_access_tokens(cache)
    params = _params(env, cache, username=user)
    procs = [_spawn(params) for _unused in range(10)]
    outs = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        outs.append(json.loads(stdout))
    assert all(o["account"] == user for o in outs)
    # The lock serializes them: one refreshes over the network, the others find its token cached.
    sources = sorted(o["source"] for o in outs)
    assert sources.count("network") >= 1 and sources.count("cache") >= 5, sources
    with open(cache, encoding="utf-8") as handle:
        data = json.load(handle)          # valid JSON
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600
    assert [a["username"] for a in data["Account"].values()] == [user]
    assert data["RefreshToken"], "the refresh token was lost"
    # ...and it still works: expire the access tokens again and refresh once more.
    _expire_access_tokens(cache)
    proc = _spawn(params)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert json.loads(stdout)["source"] == "network"


def test_truncated_cache_recovers_with_a_warning(lab_clean, tmp_path):
    env = support.lab_env()
    cache = str(tmp_path / "cache.json")
    params = {"tenant_id": env["O365_TENANT_ID"], "client_id": env["O365_CLIENT_ID"],
              "client_secret": env["O365_CLIENT_SECRET"], "authority_host": env["O365_AUTHORITY_HOST"],
              "ca_path": env["O365_CA_PATH"], "token_cache_path": cache, "timeout": 30}
    proc = _spawn(params)
    assert proc.wait(timeout=120) == 0
    text = open(cache, encoding="utf-8").read()
    with open(cache, "w", encoding="utf-8") as handle:
        handle.write(text[: len(text) // 2])      # a crash mid-write of an older, non-atomic writer
    proc = _spawn(params)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    out = json.loads(stdout)
    assert out["source"] == "network" and out["warnings"], out
    assert not any(env["O365_CLIENT_SECRET"] in w for w in out["warnings"])
    json.load(open(cache, encoding="utf-8"))
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600
