"""Benchmarks of mailops.o365 against the local lab (`make bench`).

Every comparison runs in one process tree on this machine, against the lab (`.lab/`, or
``$LAB_STATE_DIR`` when set): the lab's servers (mock Entra ID, Dovecot, Postfix) share the CPU
with the benchmark. Prints a table and writes bench/results.json:
``{"ratios": {...}, "figures": {...}, "machine": {...}, "notes": [...]}``.

Ratios are named so that the target reads naturally: for times "ours over theirs" (lower is
better, e.g. module_vs_ping <= 1.5), for speed-ups "theirs over ours" (higher is better, e.g.
fleet_vs_loop >= 20).

    .venv/bin/python bench/run.py                 # everything, ~12-18 min on 2 cores
    .venv/bin/python bench/run.py --quick         # fewer repetitions, smaller samples (smoke test)
    .venv/bin/python bench/run.py --only fleet,floor   # a subset (results.json gets only those)
    .venv/bin/python bench/run.py --only smtp     # just the SMTP comparisons
    .venv/bin/python bench/run.py --full-loop     # measure the 1,000-task loop for real (~10+ min)
"""

from __future__ import annotations

import argparse
import base64
import imaplib
import json
import os
import platform
import re
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")
COLLECTIONS = os.path.join(ROOT, ".venv", "collections")
STATE_DIR = os.environ.get("LAB_STATE_DIR") or os.path.join(ROOT, ".lab")
ENV_FILE = os.path.join(STATE_DIR, "env")
RESULTS = os.path.join(ROOT, "bench", "results.json")
CACHE_DIR = os.path.join(tempfile.gettempdir(), "mailops-o365-bench-cache")  # community.general download
MAX_WORKERS = 16  # the module's default; the floor uses the same

TARGETS = {  # ratio -> (comparison, bound, human text)
    "fleet_vs_loop": (">=", 20, ">= 20x"),
    "fleet_vs_floor": ("<=", 1.3, "<= 1.3x"),
    "module_vs_ping": ("<=", 1.5, "<= 1.5x"),
    "smtp_vs_community_mail": ("<=", 1.2, "<= 1.2x"),
    "smtp_batch_vs_tasks": (">=", 5, ">= 5x"),
    "token_requests_per_tenant_app": ("<=", 1, "1 per (tenant, app, scope)"),
    "fleet_1000_wall_s": ("<=", 20, "<= 20 s"),
}

NOTES: list = []


def note(text: str) -> None:
    NOTES.append(text)
    print("  note: " + text, flush=True)


# --------------------------------------------------------------------------- lab and processes

def lab_env() -> dict:
    if not os.path.exists(ENV_FILE):
        sys.exit("bench: the lab is not running (%s missing): run `make lab-up` (or `make bench`)" % ENV_FILE)
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    from tests.lab.labclient import read_env  # the lab's own reader of its env file

    return read_env(ENV_FILE)


LAB = {}
WORK = ""


def lab_call(method: str, path: str, payload=None) -> dict:
    ctx = ssl.create_default_context(cafile=LAB["O365_CA_PATH"])
    data = json.dumps(payload).encode() if payload is not None else (b"" if method == "POST" else None)
    req = urllib.request.Request(LAB["LAB_CONTROL_URL"] + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
        return json.loads(resp.read().decode())


def mint_app_token(user: str) -> str:
    return lab_call("POST", "/mint", {"kind": "app", "user": user})["access_token"]


def proc_env(extra: dict | None = None, auth: bool = True, collections: str | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("O365_", "ANSIBLE_"))}
    env.update({k: v for k, v in LAB.items() if k.startswith("LAB_")})
    env["O365_CA_PATH"] = LAB["O365_CA_PATH"]
    env["O365_AUTHORITY_HOST"] = LAB["O365_AUTHORITY_HOST"]
    if auth:
        env.update({k: v for k, v in LAB.items() if k.startswith("O365_")})
    env["O365_TOKEN_CACHE_PATH"] = os.path.join(WORK, "token_cache.json")
    env["ANSIBLE_CONFIG"] = os.path.join(ROOT, "ansible.cfg")
    env["ANSIBLE_COLLECTIONS_PATH"] = COLLECTIONS + (os.pathsep + collections if collections else "")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_RETRY_FILES_ENABLED"] = "0"
    env["PATH"] = VENV_BIN + os.pathsep + env.get("PATH", "")
    env.update(extra or {})
    return env


def run(cmd: list, env: dict | None = None, ok_rc=(0,), timeout: float = 900) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env if env is not None else proc_env(), cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, check=False)
    wall = time.perf_counter() - start
    if proc.returncode not in ok_rc:
        sys.stderr.write("bench: command failed (rc %d): %s\n--- stdout\n%s\n--- stderr\n%s\n"
                         % (proc.returncode, " ".join(cmd[:4]), proc.stdout[-4000:], proc.stderr[-4000:]))
        raise SystemExit(1)
    return wall, proc


def playbook(name: str, tasks: list, vars_: dict | None = None) -> str:
    path = os.path.join(WORK, name + ".yml")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump([{"name": name, "hosts": "localhost", "gather_facts": False, "vars": vars_ or {},
                    "tasks": tasks}], handle, indent=1)  # JSON is YAML
    return path


def ansible_playbook(path: str, env: dict | None = None, args=(), ok_rc=(0,)) -> tuple[float, subprocess.CompletedProcess]:
    return run([os.path.join(VENV_BIN, "ansible-playbook"), path, *args], env=env, ok_rc=ok_rc)


def median(values):
    return statistics.median(values)


def fleet_boxes(n: int, start: int = 1) -> list:
    prefix, size = LAB.get("LAB_FLEET_PREFIX", "fleet"), int(LAB.get("LAB_FLEET_SIZE", "5000"))
    if start + n - 1 > size:
        sys.exit("bench: the lab has %d fleet mailboxes, %d needed" % (size, start + n - 1))
    return ["%s%04d@%s" % (prefix, i, LAB["LAB_DOMAIN"]) for i in range(start, start + n)]


def imap_task(extra: dict) -> dict:
    args = {"host": LAB["LAB_HOST"], "port": int(LAB["LAB_IMAP_PORT"]), "max_workers": MAX_WORKERS}
    args.update(extra)
    return {"name": "imap", "mailops.o365.o365_imap_check": args}


def warm_token_cache() -> None:
    """One token in the bench's token cache, so runs compare checks, not Entra ID round trips."""
    path = playbook("warm", [{"mailops.o365.o365_token": {"protocols": ["imap", "pop", "smtp"]}}])
    ansible_playbook(path)


# --------------------------------------------------------------------------- 1 + 7: fleet, loop, scale

def bench_fleet(res: dict, quick: bool, full_loop: bool) -> None:
    print("\n[fleet] one o365_imap_check task over N mailboxes (max_workers %d), whole ansible-playbook run"
          % MAX_WORKERS, flush=True)
    warm_token_cache()
    sizes = [10, 100, 1000] if quick else [10, 100, 1000, 5000]
    walls = {}
    for n in sizes:
        boxes = os.path.join(WORK, "boxes_%d.json" % n)
        with open(boxes, "w", encoding="utf-8") as handle:
            json.dump({"bench_boxes": fleet_boxes(n)}, handle)
        path = playbook("fleet_%d" % n, [dict(imap_task({"mailboxes": "{{ bench_boxes }}"}), register="r"),
                                         {"ansible.builtin.assert": {"that": ["r.summary.ok == %d" % n],
                                                                     "quiet": True}}])
        reps = 1 if n >= 5000 or (quick and n >= 1000) else 3
        times = [ansible_playbook(path, args=("-e", "@" + boxes))[0] for _unused in range(reps)]
        walls[n] = median(times)
        res["figures"]["fleet_%d_wall_s" % n] = round(walls[n], 2)
        print("  fleet %5d: %6.2f s (median of %d: %s)" % (n, walls[n], reps, ", ".join("%.2f" % t for t in times)),
              flush=True)
    res["figures"]["fleet_scale_ms_per_mailbox"] = {str(n): round(walls[n] / n * 1000, 2) for n in sizes}
    empty = playbook("empty", [{"ansible.builtin.meta": "noop"}])
    base = median([ansible_playbook(empty)[0] for _unused in range(3)])
    res["figures"]["ansible_playbook_startup_s"] = round(base, 2)

    loop_n = 1000 if full_loop else (20 if quick else 50)
    boxes = os.path.join(WORK, "boxes_loop.json")
    with open(boxes, "w", encoding="utf-8") as handle:
        json.dump({"bench_boxes": fleet_boxes(loop_n)}, handle)
    path = playbook("loop_%d" % loop_n, [dict(imap_task({"mailbox": "{{ item }}"}), loop="{{ bench_boxes }}")])
    wall = ansible_playbook(path, args=("-e", "@" + boxes))[0]
    loop_1000 = wall if loop_n == 1000 else base + (wall - base) * 1000.0 / loop_n
    res["figures"]["loop_%d_wall_s" % loop_n] = round(wall, 2)
    res["figures"]["loop_per_task_s"] = round((wall - base) / loop_n, 3)
    res["figures"]["loop_1000_wall_s" + ("" if loop_n == 1000 else "_scaled")] = round(loop_1000, 1)
    if loop_n != 1000:
        note("the 1,000-mailbox task loop was NOT run: %d loop tasks were measured (%.1f s) and scaled to 1,000 "
             "(startup %.2f s + 1,000 x per-task %.3f s = %.0f s); --full-loop measures it for real"
             % (loop_n, wall, base, (wall - base) / loop_n, loop_1000))
    print("  loop %d tasks: %.2f s -> 1,000 tasks %s %.1f s" % (loop_n, wall, "=" if loop_n == 1000 else "~", loop_1000))
    res["ratios"]["fleet_vs_loop"] = round(loop_1000 / walls[1000], 1)


# --------------------------------------------------------------------------- 2 + 3: floor, curl

class _StubModule:
    """Just what run_checks uses of an AnsibleModule, so the fleet core runs in this process."""

    def __init__(self, params: dict, settings) -> None:
        self.params = params
        self.settings = settings
        self.warnings: list = []

    def warn(self, text: str) -> None:
        self.warnings.append(text)

    def fail_json(self, **kwargs) -> None:
        raise RuntimeError("fleet failed: %s" % kwargs.get("msg"))


def _ours_in_process(boxes: list):
    sys.path.insert(0, COLLECTIONS)
    from ansible_collections.mailops.o365.plugins.module_utils._checks import run_checks
    from ansible_collections.mailops.o365.plugins.module_utils._options import AuthSettings
    from ansible_collections.mailops.o365.plugins.modules.o365_imap_check import probe, validate

    auth = {"tenant_id": LAB["O365_TENANT_ID"], "client_id": LAB["O365_CLIENT_ID"],
            "client_secret": LAB["O365_CLIENT_SECRET"], "authority_host": LAB["O365_AUTHORITY_HOST"],
            "ca_path": LAB["O365_CA_PATH"], "token_cache_path": os.path.join(WORK, "token_cache.json"),
            "validate_certs": True, "timeout": 30}
    settings = AuthSettings.from_params(auth)
    params = dict(auth, mailboxes=boxes, mailbox=None, host=LAB["LAB_HOST"], port=int(LAB["LAB_IMAP_PORT"]),
                  security=None, max_workers=MAX_WORKERS, fail_on_error=True, folder="INBOX", search=None,
                  cloud="public", username=None)

    def go() -> dict:
        return run_checks(_StubModule(params, settings), "imap", probe, extra_keys=("folder", "search"),
                          validate=validate)
    return go


def _floor_login(host: str, port: int, ctx: ssl.SSLContext, user: str, token: str) -> None:
    """The floor: the same protocol steps as o365_imap_check, by hand (TLS, greeting, AUTHENTICATE
    XOAUTH2 with SASL-IR, STATUS, EXAMINE, LOGOUT), no parsing beyond finding the tagged reply."""
    sasl = base64.b64encode(("user=%s\x01auth=Bearer %s\x01\x01" % (user, token)).encode()).decode()
    with socket.create_connection((host, port), timeout=30) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as sock:
            f = sock.makefile("rb")
            f.readline()  # greeting with [CAPABILITY ...]

            def cmd(tag: str, text: str) -> bytes:
                sock.sendall(("%s %s\r\n" % (tag, text)).encode())
                while True:
                    line = f.readline()
                    if not line:
                        raise RuntimeError("closed")
                    if line.startswith(tag.encode() + b" "):
                        return line

            if not cmd("A1", "AUTHENTICATE XOAUTH2 " + sasl).startswith(b"A1 OK"):
                raise RuntimeError("auth failed for %s" % user)
            cmd("A2", 'STATUS "INBOX" (MESSAGES UNSEEN UIDVALIDITY)')
            if not cmd("A3", 'EXAMINE "INBOX"').startswith(b"A3 OK"):
                raise RuntimeError("examine failed")
            cmd("A4", "LOGOUT")


def bench_floor(res: dict, quick: bool) -> None:
    n = 300 if quick else 1000
    reps = 2 if quick else 5
    print("\n[floor] %d mailboxes in this process, %d threads: our fleet core (run_checks) vs a bare client"
          % (n, MAX_WORKERS), flush=True)
    warm_token_cache()
    boxes = fleet_boxes(n)
    ours = _ours_in_process(boxes)
    from ansible_collections.mailops.o365.plugins.module_utils._options import AuthSettings
    from ansible_collections.mailops.o365.plugins.module_utils._tls import client_context
    from ansible_collections.mailops.o365.plugins.module_utils._token import acquire_token

    settings = AuthSettings.from_params({
        "tenant_id": LAB["O365_TENANT_ID"], "client_id": LAB["O365_CLIENT_ID"],
        "client_secret": LAB["O365_CLIENT_SECRET"], "authority_host": LAB["O365_AUTHORITY_HOST"],
        "ca_path": LAB["O365_CA_PATH"], "token_cache_path": os.path.join(WORK, "token_cache.json")})
    token = acquire_token(settings, ["imap"]).access_token
    ctx = ssl.create_default_context(cafile=LAB["O365_CA_PATH"])
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    host, port = LAB["LAB_HOST"], int(LAB["LAB_IMAP_PORT"])
    assert client_context(LAB["O365_CA_PATH"]).minimum_version == ctx.minimum_version

    def floor() -> None:
        with ThreadPoolExecutor(max_workers=MAX_WORKERS) as pool:
            list(pool.map(lambda box: _floor_login(host, port, ctx, box, token), boxes))

    ours()  # warm-up (imports, first connections)
    floor()
    t_ours, t_floor = [], []
    for _unused in range(reps):  # interleaved, so drift in the lab hits both
        start = time.perf_counter()
        out = ours()
        t_ours.append(time.perf_counter() - start)
        if out["summary"]["ok"] != n:
            raise SystemExit("bench: fleet run failed: %s" % out["summary"])
        start = time.perf_counter()
        floor()
        t_floor.append(time.perf_counter() - start)
    mo, mf = median(t_ours), median(t_floor)
    res["figures"]["fleet_inprocess_%d_s" % n] = round(mo, 3)
    res["figures"]["floor_inprocess_%d_s" % n] = round(mf, 3)
    res["figures"]["fleet_ms_per_mailbox"] = round(mo / n * 1000, 3)
    res["figures"]["floor_ms_per_mailbox"] = round(mf / n * 1000, 3)
    res["ratios"]["fleet_vs_floor"] = round(mo / mf, 2)
    print("  ours %.2f s (%.2f ms/mailbox), floor %.2f s (%.2f ms/mailbox), median of %d"
          % (mo, mo / n * 1000, mf, mf / n * 1000, reps), flush=True)
    _curl(res, quick, token)


def _curl(res: dict, quick: bool, token: str) -> None:
    if not shutil.which("curl"):
        note("curl not installed: independent-client comparison skipped")
        return
    n = 100 if quick else 300
    boxes = fleet_boxes(n)
    url = "imaps://%s:%s/" % (LAB["LAB_HOST"], LAB["LAB_IMAP_PORT"])

    def login(box: str) -> None:
        proc = subprocess.run(["curl", "-sS", "--cacert", LAB["O365_CA_PATH"], "--login-options", "AUTH=XOAUTH2",
                               "--oauth2-bearer", token, "-u", box + ":", "-X", "EXAMINE INBOX", url],
                              capture_output=True, text=True, timeout=60, check=False)
        if proc.returncode != 0:
            raise SystemExit("bench: curl failed for %s: %s" % (box, proc.stderr.strip()))

    print("\n[curl] %d logins, one curl process each, %d at a time (TLS, AUTHENTICATE XOAUTH2, EXAMINE)"
          % (n, MAX_WORKERS), flush=True)
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=MAX_WORKERS) as pool:
        list(pool.map(login, boxes))
    wall = time.perf_counter() - start
    seq = []
    for box in boxes[:10]:
        t = time.perf_counter()
        login(box)
        seq.append(time.perf_counter() - t)
    per = wall / n * 1000
    res["figures"]["curl_ms_per_mailbox_concurrent"] = round(per, 2)
    res["figures"]["curl_single_login_ms"] = round(median(seq) * 1000, 1)
    if "fleet_ms_per_mailbox" in res["figures"]:
        res["ratios"]["curl_vs_fleet"] = round(per / res["figures"]["fleet_ms_per_mailbox"], 1)
    print("  curl: %.2f ms per mailbox at %d-way, one login alone %.1f ms" % (per, MAX_WORKERS, median(seq) * 1000))


# --------------------------------------------------------------------------- 4: tokens

def _tenant_inventory(n_per_tenant: int) -> tuple[str, dict, int]:
    with open(LAB["LAB_IDENTITIES"], encoding="utf-8") as handle:
        ids = json.load(handle)
    hosts, secrets = {}, {}
    for tenant in ids["tenants"]:
        app = next(a for a in tenant["apps"] if a.get("kind") == "app" and a.get("secret")
                   and not a.get("secret_expired") and a.get("mailboxes") == "all")
        domain = tenant["domain"]
        if tenant.get("main"):
            boxes = fleet_boxes(n_per_tenant)
        else:
            boxes = [m["address"] for m in tenant["mailboxes"]][:n_per_tenant]
        name = re.sub(r"[^a-z0-9_]", "_", domain.split(".")[0])
        var = "BENCH_SECRET_" + name.upper()
        secrets[var] = app["secret"]
        hosts[name] = {
            "ansible_connection": "local",
            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
            "mailops_o365_tenant": {
                "name": name, "tenant_id": tenant["id"], "authority_host": LAB["O365_AUTHORITY_HOST"],
                "ca_path": LAB["O365_CA_PATH"],
                "app": {"client_id": app["client_id"], "auth": "client_secret", "client_secret_env": var,
                        "permissions": ["IMAP.AccessAsApp"]},
                "endpoints": {"imap": {"host": LAB["LAB_HOST"], "port": int(LAB["LAB_IMAP_PORT"]), "security": "tls"}},
                "mailboxes": [{"address": b} for b in boxes],
                "reports": {"formats": ["json"]},
            },
        }
    path = os.path.join(WORK, "tenants.yml")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump({"tenants": {"hosts": hosts}}, handle, indent=1)
    return path, secrets, len(hosts)


def bench_tokens(res: dict, quick: bool) -> None:
    per = 20 if quick else 100
    inventory, secrets, tenants = _tenant_inventory(per)
    print("\n[tokens] playbooks/verify_mail.yml over %d tenants x %d mailboxes (IMAP only), fresh token cache"
          % (tenants, per), flush=True)
    note("token count: verify_mail.yml restricted to IMAP (app.permissions [IMAP.AccessAsApp]), mail flow and "
         "alerts off, fail_on never, json reports only; the count is the IdP's token_requests counter")
    cache = os.path.join(WORK, "verify_token_cache.json")
    env = proc_env(dict(secrets), auth=False)
    lab_call("POST", "/counters/reset")
    wall, proc = ansible_playbook(os.path.join(ROOT, "playbooks", "verify_mail.yml"), env=env, args=(
        "-i", inventory, "-e", json.dumps({"mailbox_reachability_token_cache_path": cache,
                                           "mailbox_reachability_fail_on": "never",
                                           "mailbox_reachability_mailflow": False,
                                           "mailbox_reachability_alert": False,
                                           "verify_mail_reports_dir": os.path.join(WORK, "reports"),
                                           "verify_mail_formats": ["json"]})))
    counters = lab_call("GET", "/counters")
    requests_ = counters["token_requests"]
    res["figures"]["verify_mail_%dx%d_wall_s" % (tenants, per)] = round(wall, 1)
    res["figures"]["token_requests_total"] = requests_
    res["figures"]["idp_requests_by_endpoint"] = counters["endpoints"]
    res["figures"]["token_requests_per_tenant_app"] = round(requests_ / tenants, 2)
    res["ratios"]["token_requests_per_tenant_app"] = round(requests_ / tenants, 2)
    print("  %.1f s; IdP token requests %d for %d (tenant, app, scope) -> %.2f each; endpoints %s"
          % (wall, requests_, tenants, requests_ / tenants, counters["endpoints"]), flush=True)

    # o365_token twice (whole ad-hoc runs): network, then cache.
    reps = 2 if quick else 5
    net, hit = [], []
    for i in range(reps):
        env = proc_env({"O365_TOKEN_CACHE_PATH": os.path.join(WORK, "tok_%d.json" % i)})
        cmd = [os.path.join(VENV_BIN, "ansible"), "localhost", "-m", "mailops.o365.o365_token", "-a", "protocols=imap"]
        for bucket, want in ((net, "network"), (hit, "cache")):
            wall, proc = run(cmd, env=env)
            source = re.search(r'"source": "(\w+)"', proc.stdout)
            if not source or source.group(1) != want:
                raise SystemExit("bench: o365_token source %s, expected %s" % (source and source.group(1), want))
            bucket.append(wall)
    res["figures"]["o365_token_network_s"] = round(median(net), 3)
    res["figures"]["o365_token_cache_s"] = round(median(hit), 3)
    res["ratios"]["o365_token_cache_vs_network"] = round(median(hit) / median(net), 2)
    print("  o365_token run: network %.3f s, cache %.3f s (median of %d)" % (median(net), median(hit), reps))

    # acquire_token in this process: network (fresh cache file: msal app + discovery + token) vs cached.
    sys.path.insert(0, COLLECTIONS)
    from ansible_collections.mailops.o365.plugins.module_utils._options import AuthSettings
    from ansible_collections.mailops.o365.plugins.module_utils._token import acquire_token

    def settings(path: str):
        return AuthSettings.from_params({
            "tenant_id": LAB["O365_TENANT_ID"], "client_id": LAB["O365_CLIENT_ID"],
            "client_secret": LAB["O365_CLIENT_SECRET"], "authority_host": LAB["O365_AUTHORITY_HOST"],
            "ca_path": LAB["O365_CA_PATH"], "token_cache_path": path})
    n = 5 if quick else 20
    t_net, t_hit = [], []
    for i in range(n):
        s = settings(os.path.join(WORK, "acq_%d.json" % i))
        t = time.perf_counter()
        a = acquire_token(s, ["imap"])
        t_net.append(time.perf_counter() - t)
        t = time.perf_counter()
        b = acquire_token(s, ["imap"])
        t_hit.append(time.perf_counter() - t)
        assert a.source == "network" and b.source == "cache", (a.source, b.source)
    res["figures"]["acquire_token_network_ms"] = round(median(t_net) * 1000, 2)
    res["figures"]["acquire_token_cache_ms"] = round(median(t_hit) * 1000, 2)
    print("  acquire_token in process: network %.2f ms, cache %.2f ms (median of %d)"
          % (median(t_net) * 1000, median(t_hit) * 1000, n))


# --------------------------------------------------------------------------- 5: module overhead

def bench_overhead(res: dict, quick: bool) -> None:
    reps = 3 if quick else 9
    print("\n[overhead] ad-hoc `ansible localhost -m ...`: o365_imap_check with access_token vs ansible.builtin.ping",
          flush=True)
    box = fleet_boxes(1)[0]
    token = mint_app_token(box)
    env = proc_env(auth=False)  # only O365_CA_PATH / O365_AUTHORITY_HOST: the token is given
    ansible = os.path.join(VENV_BIN, "ansible")
    ours = [ansible, "localhost", "-m", "mailops.o365.o365_imap_check", "-a",
            "mailbox=%s access_token=%s host=%s port=%s" % (box, token, LAB["LAB_HOST"], LAB["LAB_IMAP_PORT"])]
    ping = [ansible, "localhost", "-m", "ansible.builtin.ping"]
    run(ours, env=env), run(ping, env=env)  # warm-up: page cache, ansiballz cache
    t_ours, t_ping = [], []
    for _unused in range(reps):
        t_ours.append(run(ours, env=env)[0])
        t_ping.append(run(ping, env=env)[0])
    mo, mp = median(t_ours), median(t_ping)
    res["figures"]["adhoc_imap_check_s"] = round(mo, 3)
    res["figures"]["adhoc_ping_s"] = round(mp, 3)
    res["ratios"]["module_vs_ping"] = round(mo / mp, 2)
    print("  o365_imap_check %.3f s, ping %.3f s (median of %d) -> %.2fx" % (mo, mp, reps, mo / mp))

    # Is msal imported on the access_token path? Run the module itself under -X importtime.
    args = os.path.join(WORK, "args.json")
    with open(args, "w", encoding="utf-8") as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": {"mailbox": box, "access_token": token, "host": LAB["LAB_HOST"],
                                           "port": int(LAB["LAB_IMAP_PORT"])}}, handle)
    menv = dict(env, PYTHONPATH=COLLECTIONS)
    _unused, proc = run([sys.executable, "-X", "importtime", "-m",
                         "ansible_collections.mailops.o365.plugins.modules.o365_imap_check", args], env=menv)
    out = json.loads(proc.stdout)
    if not out.get("ok"):
        raise SystemExit("bench: module run failed: %s" % out.get("msg"))
    rows = [line.split("|") for line in proc.stderr.splitlines() if line.startswith("import time:") and "|" in line]
    rows = [(int(r[0].split(":")[1]), int(r[1]), r[2][1:]) for r in rows if r[1].strip().isdigit()]
    msal_loaded = any(name.strip() == "msal" or name.strip().startswith("msal.") for _unused, _unused, name in rows)
    heavy = sorted(((cum, name) for _unused, cum, name in rows if not name.startswith(" ")), reverse=True)[:5]
    res["figures"]["msal_imported_on_access_token_path"] = msal_loaded
    res["figures"]["module_import_total_ms"] = round(sum(own for own, _unused, _unused in rows) / 1000, 1)
    res["figures"]["module_top_imports_ms"] = {m: round(us / 1000, 1) for us, m in heavy}
    print("  msal imported with access_token: %s; top-level imports (cumulative ms): %s"
          % (msal_loaded, ", ".join("%s %.1f" % (m, us / 1000) for us, m in heavy)))


# --------------------------------------------------------------------------- 6: SMTP

def community_general() -> str | None:
    """A collections path holding community.general: installed ones first, else the `ansible` wheel from PyPI."""
    for base in (os.environ.get("BENCH_COMMUNITY_GENERAL"), CACHE_DIR):
        if base and os.path.exists(os.path.join(base, "ansible_collections", "community", "general", "plugins",
                                                "modules", "mail.py")):
            return base
    try:
        import ansible_collections.community.general  # noqa: F401 - the ansible package in this venv
        return None  # already on the default search path
    except ImportError:
        pass
    print("  fetching community.general: pip download --no-deps ansible (PyPI) ...", flush=True)
    dl = os.path.join(CACHE_DIR, "wheel")
    os.makedirs(dl, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--disable-pip-version-check",
                           "ansible", "-d", dl], capture_output=True, text=True, timeout=600, check=False)
    wheels = [w for w in os.listdir(dl) if w.startswith("ansible-") and w.endswith(".whl")]
    if proc.returncode != 0 or not wheels:
        note("community.general unavailable (pip download ansible failed: %s)" % proc.stderr.strip()[-200:])
        return ""
    with zipfile.ZipFile(os.path.join(dl, sorted(wheels)[-1])) as whl:
        whl.extractall(CACHE_DIR, [m for m in whl.namelist() if m.startswith("ansible_collections/community/general/")])
    return CACHE_DIR


def _smtp_args() -> dict:
    return {"host": LAB["LAB_HOST"], "port": int(LAB["LAB_SMTP_PORT"]), "security": "starttls"}


def _count_delivered(rcpt: str, marker: str, expected: int, timeout: float = 60) -> int:
    """Messages in rcpt's INBOX whose Subject contains marker (IMAP, app token); waits for `expected`."""
    ctx = ssl.create_default_context(cafile=LAB["O365_CA_PATH"])
    token = mint_app_token(rcpt)
    deadline = time.monotonic() + timeout
    found = 0
    while True:
        client = imaplib.IMAP4_SSL(LAB["LAB_HOST"], int(LAB["LAB_IMAP_PORT"]), ssl_context=ctx, timeout=30)
        try:
            client.authenticate("XOAUTH2",
                                lambda _challenge: ("user=%s\x01auth=Bearer %s\x01\x01" % (rcpt, token)).encode())
            client.select("INBOX", readonly=True)
            typ, data = client.search(None, "SUBJECT", '"%s"' % marker)
            found = len(data[0].split()) if typ == "OK" and data and data[0] else 0
        finally:
            client.logout()
        if found >= expected or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def bench_smtp(res: dict, quick: bool) -> None:
    n = 20 if quick else 50       # one-message tasks per measured loop (each side)
    reps = 1 if quick else 3      # interleaved loops per side (ours, theirs, ours, ...), median
    batch_n = 100                 # messages in the batch task, compared with 100 tasks
    plain_user, plain_password = LAB.get("LAB_PLAIN_USER", ""), LAB.get("LAB_PLAIN_PASSWORD", "")
    sender = plain_user or fleet_boxes(1, start=4998)[0]
    rcpt = fleet_boxes(1, start=4999)[0]
    tag = "%x" % int(time.time())   # subjects of this run, to count deliveries
    print("\n[smtp] lab Postfix submission (STARTTLS): %d x %d one-message tasks per side, interleaved; one batch task "
          "of %d messages" % (reps, n, batch_n), flush=True)
    warm_token_cache()
    note("SMTP batch: max_per_minute set to 10000 (the module's maximum) so the 30/min Exchange pacing "
         "does not dominate the benchmark")
    boxes = os.path.join(WORK, "smtp_items.json")
    with open(boxes, "w", encoding="utf-8") as handle:
        json.dump({"bench_items": list(range(n)), "bench_plain_password": plain_password}, handle)
    os.chmod(boxes, 0o600)
    msg = {"sender": sender, "to": [rcpt], "subject": "bench-ours-%s {{ item }}" % tag,
           "body": "benchmark message {{ item }}"}
    ours_tasks = playbook("smtp_tasks", [{"name": "send", "mailops.o365.o365_smtp_send": dict(_smtp_args(), **msg),
                                          "loop": "{{ bench_items }}"}])
    batch = playbook("smtp_batch", [{"name": "send", "mailops.o365.o365_smtp_send": dict(
        _smtp_args(), sender=sender, max_per_minute=10000,
        messages=[{"to": [rcpt], "subject": "bench batch %d" % i, "body": "benchmark message %d" % i}
                  for i in range(batch_n)]), "register": "sent"},
        {"ansible.builtin.assert": {"that": ["sent.results | length == %d" % batch_n], "quiet": True}}])
    empty = playbook("empty", [{"ansible.builtin.meta": "noop"}])
    base = median([ansible_playbook(empty)[0] for _unused in range(3)])
    mb = median([ansible_playbook(batch)[0] for _unused in range(3)])

    # community.general.mail: user/password (PLAIN) over STARTTLS on the same port, same sender and
    # recipient, one real message per task
    cg_path = community_general()
    cg, cg_env = None, None
    if cg_path != "" and (not plain_user or not plain_password):
        note("smtp_vs_community_mail NOT measured: the lab has no LAB_PLAIN_USER/LAB_PLAIN_PASSWORD (started before "
             "the SMTP password mailbox existed): restart it (tests/lab/labctl.py restart)")
    elif cg_path != "":
        cg_env = proc_env(collections=cg_path) if cg_path else proc_env()
        cg = playbook("smtp_community_mail", [{"name": "send", "community.general.mail": {
            "host": LAB["LAB_HOST"], "port": int(LAB["LAB_SMTP_PORT"]), "secure": "starttls",
            "username": plain_user, "password": "{{ bench_plain_password }}", "sender": sender, "to": [rcpt],
            "subject": "bench-cg-%s {{ item }}" % tag, "body": "benchmark message {{ item }}"},
            "loop": "{{ bench_items }}"}])
    t_ours, t_cg = [], []
    for _unused in range(reps):   # interleaved, so drift in the machine's load hits both
        t_ours.append(ansible_playbook(ours_tasks, args=("-e", "@" + boxes))[0])
        if cg:
            t_cg.append(ansible_playbook(cg, env=cg_env, args=("-e", "@" + boxes))[0])
    mt = median(t_ours)
    per_task = (mt - base) / n
    tasks_100 = mt if n == batch_n else base + per_task * batch_n
    res["figures"]["smtp_%d_tasks_wall_s" % n] = round(mt, 2)
    res["figures"]["smtp_per_task_s"] = round(per_task, 3)
    res["figures"]["smtp_batch_%d_wall_s" % batch_n] = round(mb, 2)
    res["figures"]["smtp_%d_tasks_wall_s%s" % (batch_n, "" if n == batch_n else "_scaled")] = round(tasks_100, 1)
    res["ratios"]["smtp_batch_vs_tasks"] = round(tasks_100 / mb, 1)
    if n != batch_n:
        note("smtp_batch_vs_tasks: %d one-message tasks were measured (median %.1f s) and scaled to %d (startup "
             "%.2f s + per task %.3f s)" % (n, mt, batch_n, base, per_task))
    print("  o365_smtp_send: %d tasks %.2f s (%.3f s/task; %s) -> %d tasks ~%.1f s; one batch task of %d: %.2f s "
          "-> %.1fx" % (n, mt, per_task, ", ".join("%.2f" % t for t in t_ours), batch_n, tasks_100, batch_n, mb,
                        tasks_100 / mb), flush=True)
    if not cg:
        return
    mc = median(t_cg)
    got_ours = _count_delivered(rcpt, "bench-ours-%s" % tag, n * reps)
    got_cg = _count_delivered(rcpt, "bench-cg-%s" % tag, n * reps)
    if got_ours != n * reps or got_cg != n * reps:
        raise SystemExit("bench: delivered to %s: o365_smtp_send %d, community.general.mail %d, expected %d each"
                         % (rcpt, got_ours, got_cg, n * reps))
    res["figures"]["community_mail_%d_tasks_wall_s" % n] = round(mc, 2)
    res["figures"]["community_mail_per_task_s"] = round((mc - base) / n, 3)
    res["figures"]["smtp_vs_community_mail_per_task"] = round(per_task / ((mc - base) / n), 2)
    res["ratios"]["smtp_vs_community_mail"] = round(mt / mc, 2)
    note("smtp_vs_community_mail: %d x %d one-message tasks per side, interleaved, median; both send as %s to %s on "
         "the lab's submission port (STARTTLS) and every message was delivered (counted over IMAP: %d + %d). "
         "o365_smtp_send: AUTH XOAUTH2 with an app token from the token cache, certificate verified against the lab "
         "CA. community.general.mail: username/password, AUTH PLAIN (smtplib's choice among PLAIN LOGIN), "
         "secure=starttls; it does NOT verify the server certificate (smtplib's default context, no CA option), "
         "and with secure=starttls it first tries implicit TLS on the port (a failed handshake) before the "
         "STARTTLS connection: both are part of its cost as shipped (community.general %s)"
         % (reps, n, sender, rcpt, got_ours, got_cg, _cg_version(cg_path)))
    print("  community.general.mail (PLAIN, STARTTLS): %d tasks %.2f s (%.3f s/task; %s) -> ours %.2fx "
          "(per task %.2fx)" % (n, mc, (mc - base) / n, ", ".join("%.2f" % t for t in t_cg), mt / mc,
                                per_task / ((mc - base) / n)), flush=True)


def _cg_version(path: str | None) -> str:
    for base in ([path] if path else []) + sys.path:
        manifest = os.path.join(base, "ansible_collections", "community", "general", "MANIFEST.json")
        if os.path.exists(manifest):
            with open(manifest, encoding="utf-8") as handle:
                return json.load(handle).get("collection_info", {}).get("version", "?")
    return "?"


# --------------------------------------------------------------------------- report

def machine() -> dict:
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            cpu = next((line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")), cpu)
    except OSError:
        pass
    ver = subprocess.run([os.path.join(VENV_BIN, "ansible"), "--version"], capture_output=True, text=True,
                         check=False).stdout.splitlines()[:1]
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "platform": platform.platform(),
            "ansible": ver[0] if ver else None, "lab_state_dir": STATE_DIR,
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
            "note": "the lab's servers (mock Entra ID, Dovecot, Postfix) run on the same %s CPUs as the benchmark "
                    "and compete with it" % os.cpu_count()}


def verdict(name: str, value) -> str:
    if name not in TARGETS or value is None:
        return ""
    op, bound, text = TARGETS[name]
    ok = value >= bound if op == ">=" else value <= bound
    return "%s (target %s)" % ("met" if ok else "MISSED", text)


def table(res: dict) -> str:
    rows = [("ratio / figure", "value", "target")]
    for key, value in res["ratios"].items():
        rows.append((key, "%sx" % value if key != "token_requests_per_tenant_app" else str(value), verdict(key, value)))
    for key in ("fleet_1000_wall_s", "fleet_10_wall_s", "fleet_100_wall_s", "fleet_5000_wall_s", "loop_1000_wall_s_scaled",
                "loop_1000_wall_s", "fleet_ms_per_mailbox", "floor_ms_per_mailbox", "curl_ms_per_mailbox_concurrent",
                "adhoc_imap_check_s", "adhoc_ping_s", "msal_imported_on_access_token_path", "o365_token_network_s",
                "o365_token_cache_s", "acquire_token_network_ms", "acquire_token_cache_ms"):
        if key in res["figures"]:
            rows.append((key, str(res["figures"][key]), verdict(key, res["figures"][key])))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["| " + " | ".join(r[i].ljust(width[i]) for i in range(3)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in width) + "|")
    return "\n".join(lines)


def write(res: dict, output: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, "w", encoding="utf-8") as handle:
        json.dump(res, handle, indent=2, sort_keys=False)
        handle.write("\n")


def main() -> None:
    global LAB, WORK
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions and smaller samples (smoke test)")
    parser.add_argument("--full-loop", action="store_true", help="run the 1,000-task loop for real")
    parser.add_argument("--only", default="", help="comma list of: fleet,floor,tokens,overhead,smtp")
    parser.add_argument("--output", default=RESULTS)
    opts = parser.parse_args()
    LAB = lab_env()
    WORK = tempfile.mkdtemp(prefix="mailops-o365-bench-")
    parts = [p for p in (opts.only.split(",") if opts.only else ["fleet", "floor", "tokens", "overhead", "smtp"]) if p]
    res = {"ratios": {}, "figures": {}, "machine": machine(), "notes": NOTES}
    print("mailops.o365 benchmarks against the lab in %s (%d CPUs, shared with the lab's servers)"
          % (STATE_DIR, os.cpu_count()))
    start = time.perf_counter()
    bench = {"fleet": lambda: bench_fleet(res, opts.quick, opts.full_loop), "floor": lambda: bench_floor(res, opts.quick),
             "tokens": lambda: bench_tokens(res, opts.quick), "overhead": lambda: bench_overhead(res, opts.quick),
             "smtp": lambda: bench_smtp(res, opts.quick)}
    try:
        for part in parts:
            bench[part]()
            write(res, opts.output)  # after each part: a stopped run keeps what it measured
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    res["figures"]["bench_wall_s"] = round(time.perf_counter() - start, 1)
    res["machine"]["quick"] = opts.quick
    res["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    write(res, opts.output)
    print("\n" + table(res))
    print("\nMachine: %s CPUs (%s); the lab's servers share them with the benchmark; load average %s at start, "
          "%s at end." % (os.cpu_count(), res["machine"]["cpu"], res["machine"]["loadavg_at_start"],
                          res["machine"]["loadavg_at_end"]))
    for text in NOTES:
        print("- " + text)
    print("Wrote %s (%.0f s)" % (opts.output, res["figures"]["bench_wall_s"]))


if __name__ == "__main__":
    main()
