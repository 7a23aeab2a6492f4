"""What integration tests share: the lab's settings and control surface, and running modules for real."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import requests

from tests.lab.labclient import read_env

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, ".venv", "collections")
# LAB_STATE_DIR lets a second lab (other ports, other state dir) run beside the default one.
ENV_FILE = os.path.join(os.environ.get("LAB_STATE_DIR") or os.path.join(ROOT, ".lab"), "env")
# One token cache per test run: a cache left by an earlier lab (other signing key) must not leak in.
CACHE_DIR = tempfile.mkdtemp(prefix="mailops-o365-it-")


def cache_path(name: str = "token_cache") -> str:
    return os.path.join(CACHE_DIR, name + ".json")


def lab_env() -> dict:
    if not os.path.exists(ENV_FILE):
        raise RuntimeError("the lab is not running: run `make lab-up` first")
    return read_env(ENV_FILE)


def lab_call(method: str, path: str, payload: dict | None = None) -> dict:
    """Call the lab's test-only control surface (/_lab/...)."""
    env = lab_env()
    response = requests.request(method, env["LAB_CONTROL_URL"] + path, json=payload, timeout=10,
                                verify=env["O365_CA_PATH"])
    response.raise_for_status()
    return response.json()


def token_requests() -> int:
    """Every request the mock Entra ID answered (discovery included): the network traffic to count."""
    return sum(v for k, v in lab_call("GET", "/counters")["endpoints"].items())


def mint(kind: str, user: str | None = None, **extra) -> str:
    payload = {"kind": kind, "user": user}
    payload.update(extra)
    return lab_call("POST", "/mint", payload)["access_token"]


def module_env(extra: dict | None = None, auth: bool = True) -> dict:
    """Environment of a module run: the lab's O365_* settings (the env fallbacks) when ``auth``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("O365_")}
    env["PYTHONPATH"] = COLLECTIONS
    if auth:
        env.update({k: v for k, v in lab_env().items() if k.startswith("O365_")})
    env.update(extra or {})
    return env


def run_module(name: str, args: dict, check_mode: bool = False, env: dict | None = None,
               timeout: float = 120) -> tuple[int, dict]:
    """Execute a module the way Ansible does (AnsibleModule reading its args file) and parse its JSON."""
    module_args = dict(args, _ansible_check_mode=check_mode)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": module_args}, handle)
    try:
        proc = subprocess.run([sys.executable, "-m", "ansible_collections.mailops.o365.plugins.modules." + name,
                               handle.name], capture_output=True, text=True, timeout=timeout,
                              env=env if env is not None else module_env(), check=False)
    finally:
        os.unlink(handle.name)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        raise AssertionError("module printed no JSON\nstdout: %s\nstderr: %s" % (proc.stdout, proc.stderr)) from None


def run_playbook(playbook: str, extra_vars: dict | None = None, env: dict | None = None, timeout: float = 600,
                 args: tuple = ()) -> subprocess.CompletedProcess:
    cmd = [os.path.join(ROOT, ".venv", "bin", "ansible-playbook"), playbook]
    if extra_vars:
        cmd += ["-e", json.dumps(extra_vars)]
    cmd += list(args)
    full_env = module_env(env)
    full_env["ANSIBLE_CONFIG"] = os.path.join(ROOT, "ansible.cfg")
    full_env["PATH"] = os.path.join(ROOT, ".venv", "bin") + os.pathsep + full_env.get("PATH", "")
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=ROOT, check=False)


def fetch_messages(mailbox: str, header: str, value: str, wait: float = 15.0) -> list:
    """Messages in ``mailbox``'s INBOX whose ``header`` contains ``value``, read over IMAP with an
    app token (imaplib is fine for test tooling); polls until at least one arrives or ``wait`` passes."""
    import email
    import email.policy
    import imaplib
    import ssl
    import time

    env = lab_env()
    token = mint("app", mailbox)
    raw = "user=%s\x01auth=Bearer %s\x01\x01" % (mailbox, token)
    context = ssl.create_default_context(cafile=env["O365_CA_PATH"])
    deadline = time.monotonic() + wait
    while True:
        with imaplib.IMAP4_SSL(env["LAB_HOST"], int(env["LAB_IMAP_PORT"]), ssl_context=context, timeout=10) as imap:
            imap.authenticate("XOAUTH2", lambda _unused: raw.encode())
            imap.select("INBOX", readonly=True)
            _unused, data = imap.uid("SEARCH", None, "HEADER", header, '"%s"' % value)
            uids = data[0].split()
            found = []
            for uid in uids:
                _unused, parts = imap.uid("FETCH", uid, "(BODY.PEEK[])")
                found.append(email.message_from_bytes(parts[0][1], policy=email.policy.default))
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(0.3)
