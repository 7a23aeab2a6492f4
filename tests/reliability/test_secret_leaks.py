"""No secret leaks: every module and every playbook against the lab at -vvvv with ANSIBLE_DEBUG, the
log file, the failure mail callback enabled; every captured byte is searched for every secret.

Captured: stdout and stderr of each ansible-playbook run, ANSIBLE_LOG_PATH, every registered result (written
to a file by the playbook), the reports of verify_mail.yml, whatever is left in the remote/local temp dirs,
and the full text of the mails the runs sent (failure mail callback, alert, the sent test mail).
Secrets (the real values, collected, never printed): client secrets (env file and identities), the
certificate's private key (base64 body lines of both PEMs) and its password, every access, refresh and id
token of every token cache the runs used, the minted tokens passed in, each JWT's signature on its own, and
the SASL XOAUTH2 base64 of every (mailbox, access token) pair.
The one documented place a token may appear - o365_token's returned access_token - is checked separately.
"""
from __future__ import annotations

import base64
import email
import email.policy
import glob
import imaplib
import json
import os
import re
import ssl
import subprocess
import threading
import time
import uuid

import pytest
import yaml

from ansible_collections.mailops.o365.plugins.module_utils._options import AuthSettings
from ansible_collections.mailops.o365.plugins.module_utils._token import acquire_token
from ansible_collections.mailops.o365.plugins.module_utils.xoauth2 import encode_xoauth2
from tests.integration import support

pytestmark = pytest.mark.lab

HERE = os.path.dirname(os.path.abspath(__file__))
LEAK_PLAYBOOK = os.path.join(HERE, "leak", "modules.yml")
LAB_INVENTORY = os.path.join(support.ROOT, "playbooks", "inventory", "lab.yml")
PLAY_TIMEOUT = 150
MIN_SECRET = 12          # shorter fragments (e.g. a PEM's last line) would match by chance


# ---------------------------------------------------------------------------------------------------------
# running the playbooks


def _base_env(lab: dict, run_dir: str, name: str, tag: str, extra: dict) -> dict:
    env = support.module_env(lab)
    env.update({
        "ANSIBLE_CONFIG": os.path.join(support.ROOT, "ansible.cfg"),
        "PATH": os.path.join(support.ROOT, ".venv", "bin") + os.pathsep + env.get("PATH", ""),
        "ANSIBLE_DEBUG": "1",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_LOG_PATH": os.path.join(run_dir, "ansible.log"),
        "ANSIBLE_CALLBACKS_ENABLED": "mailops.o365.o365_failure_mail",
        "ANSIBLE_KEEP_REMOTE_FILES": "0",
        "ANSIBLE_REMOTE_TEMP": os.path.join(run_dir, "remote_tmp"),
        "ANSIBLE_LOCAL_TEMP": os.path.join(run_dir, "local_tmp"),
        "O365_TOKEN_CACHE_PATH": os.path.join(run_dir, "token_cache.json"),
        "O365_FAILURE_MAIL_SENDER": lab["LAB_MAILBOX"],
        "O365_FAILURE_MAIL_TO": lab["LAB_MAILBOX_2"],
        "O365_FAILURE_MAIL_SUBJECT_PREFIX": "[%s-%s]" % (tag, name),
        "O365_FAILURE_MAIL_HOST": lab["LAB_HOST"],
        "O365_FAILURE_MAIL_PORT": lab["LAB_SMTP_PORT"],
        "O365_FAILURE_MAIL_TIMEOUT": "10",
    })
    env.update(extra)
    return env


def _play(run_dir: str, playbook: str, env: dict, args: list, on_output=None) -> int:
    """ansible-playbook -vvvv; stdout and stderr to files in run_dir. ``on_output(text)`` is polled while it
    runs (True ends the polling)."""
    cmd = [os.path.join(support.ROOT, ".venv", "bin", "ansible-playbook"), playbook, "-vvvv"] + args
    stdout_path, stderr_path = os.path.join(run_dir, "stdout.txt"), os.path.join(run_dir, "stderr.txt")
    with open(stdout_path, "w", encoding="utf-8") as out, open(stderr_path, "w", encoding="utf-8") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, cwd=support.ROOT, env=env)  # pylint: disable=consider-using-with
        try:
            deadline = time.monotonic() + PLAY_TIMEOUT
            done = on_output is None
            while proc.poll() is None and time.monotonic() < deadline:
                if not done:
                    with open(stdout_path, encoding="utf-8", errors="replace") as handle:
                        done = bool(on_output(handle.read()))
                time.sleep(0.2)
            return proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)


def _approver(user: str):
    """on_output for bootstrap_token.yml: approve the device code headlessly as soon as it is shown."""
    def check(text: str) -> bool:
        if '"user code: ' not in text:
            return False
        code = text.split('"user code: ', 1)[1].split('"', 1)[0]
        support.lab_call("POST", "/device/approve", {"user_code": code, "user": user})
        return True
    return check


def _bootstrap_refresh_token(lab: dict, cache: str) -> str:
    """A delegated refresh token for LAB_MAILBOX through the device code flow, approved headlessly."""
    settings = AuthSettings.from_params(dict(
        tenant_id=lab["O365_TENANT_ID"], client_id=lab["LAB_PUBLIC_CLIENT_ID"], authority_host=lab["O365_AUTHORITY_HOST"],
        ca_path=lab["O365_CA_PATH"], token_cache_path=cache, timeout=20, flow="device_code"))
    pending = acquire_token(settings, ["imap", "smtp"])
    support.lab_call("POST", "/device/approve", {"user_code": pending.instructions["user_code"], "user": lab["LAB_MAILBOX"]})
    acquire_token(settings, ["imap", "smtp"], flow_state=json.loads(json.dumps(pending.state)))
    with open(cache, encoding="utf-8") as handle:
        return next(iter(json.load(handle)["RefreshToken"].values()))["secret"]


def _fetch_with_body(lab: dict, mailbox: str, header: str, body: str, wait: float = 15.0) -> list:
    """Messages of ``mailbox`` with ``header`` whose body contains ``body`` (support.fetch_messages searches
    headers only)."""
    context = ssl.create_default_context(cafile=lab["O365_CA_PATH"])
    sasl = encode_xoauth2(mailbox, support.mint("app", mailbox))
    deadline = time.monotonic() + wait
    while True:
        with imaplib.IMAP4_SSL(lab["LAB_HOST"], int(lab["LAB_IMAP_PORT"]), ssl_context=context, timeout=10) as imap:
            imap.authenticate("XOAUTH2", lambda challenge: base64.b64decode(sasl))
            imap.select("INBOX", readonly=True)
            uids = imap.uid("SEARCH", None, "HEADER", header, '""', "BODY", '"%s"' % body)[1][0].split()
            found = [email.message_from_bytes(imap.uid("FETCH", uid, "(BODY.PEEK[])")[1][0][1], policy=email.policy.default)
                     for uid in uids]
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(0.5)


@pytest.fixture(scope="module")
def leak_run(tmp_path_factory):
    """All playbooks, concurrently, each in its own directory; then the mails they sent."""
    lab = support.lab_env()
    root = str(tmp_path_factory.mktemp("secret-leaks"))
    tag = "leak-" + uuid.uuid4().hex[:10]
    bootstrap_cache = os.path.join(root, "bootstrap_token_cache.json")
    refresh_token = _bootstrap_refresh_token(lab, bootstrap_cache)
    good = support.mint("app", lab["LAB_MAILBOX"])
    bad = support.mint("app", lab["LAB_MAILBOX"], sign_with_other_key=True)
    runs = {name: os.path.join(root, name) for name in ("modules", "verify_mail", "send_alert", "bootstrap_token")}
    for run_dir in runs.values():
        os.makedirs(os.path.join(run_dir, "out"))
    alert_id = tag + "-alert"
    plays = {
        "modules": (LEAK_PLAYBOOK, {"LEAK_REFRESH_TOKEN": refresh_token, "LEAK_GOOD_TOKEN": good, "LEAK_BAD_TOKEN": bad},
                    ["-e", json.dumps({"leak_out": os.path.join(runs["modules"], "out"), "leak_tag": tag})], None),
        "verify_mail": ("playbooks/verify_mail.yml", {},
                        ["-e", json.dumps({"verify_mail_reports_dir": os.path.join(runs["verify_mail"], "out", "reports-" + tag)})],
                        None),
        "send_alert": ("playbooks/send_alert.yml", {},
                       ["-e", json.dumps({"alert_to": lab["LAB_MAILBOX_2"], "alert_subject": "Leak test %s" % tag,
                                          "alert_body": "nothing secret", "alert_headers": {"X-Alert-Id": alert_id}})],
                       None),
        "bootstrap_token": ("playbooks/bootstrap_token.yml", {},
                            ["-e", json.dumps({"bootstrap_token_wait_seconds": 3,
                                               "bootstrap_token_username": lab["LAB_MAILBOX"],
                                               "bootstrap_token_cache_path": os.path.join(runs["bootstrap_token"],
                                                                                          "bootstrap_cache.json"),
                                               "bootstrap_token_timeout": 60})],
                            _approver(lab["LAB_MAILBOX"])),
    }
    codes = {}

    def run(name):
        playbook, extra, args, on_output = plays[name]
        env = _base_env(lab, runs[name], name, tag, extra)
        codes[name] = _play(runs[name], playbook, env, args, on_output)

    threads = [threading.Thread(target=run, args=(name,)) for name in plays]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(PLAY_TIMEOUT + 30)
    mails = {}
    for name in ("modules", "verify_mail"):   # both runs fail: one failure mail each
        mails["failure mail " + name] = support.fetch_messages(lab["LAB_MAILBOX_2"], "Subject", "[%s-%s]" % (tag, name),
                                                               wait=20)
    mails["alert mail send_alert"] = support.fetch_messages(lab["LAB_MAILBOX_2"], "X-Alert-Id", alert_id, wait=10)
    mails["sent mail modules"] = support.fetch_messages(lab["LAB_MAILBOX_2"], "X-Leak-Test", tag, wait=10)
    # the role's alert mail names the reports directory, which carries the tag
    mails["alert mail verify_mail"] = _fetch_with_body(lab, lab["LAB_MAILBOX_2"], "X-Mailops-Tenant", "reports-" + tag)
    for name, messages in mails.items():
        with open(os.path.join(root, name.replace(" ", "_") + ".eml.txt"), "w", encoding="utf-8") as handle:
            for message in messages:
                handle.write(message.as_string() + "\n")
                for part in message.walk():
                    if part.get_content_maintype() == "text":
                        handle.write(part.get_content() + "\n")
    return {"lab": lab, "root": root, "runs": runs, "codes": codes, "mails": mails, "tokens": {"good": good, "bad": bad},
            "refresh_token": refresh_token, "bootstrap_cache": bootstrap_cache}


# ---------------------------------------------------------------------------------------------------------
# collecting secrets and captured text


def _read(path: str) -> str:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return handle.read()


# A cache holds only the latest token per key: a token replaced during the run (a refused token is fetched
# afresh, a refresh token rotates) is gone from it. So anything shaped like a token is a leak, too.
SHAPES = {
    "JWT-shaped token": re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{20,}"),
    "refresh-token-shaped value": re.compile(r"(?<![A-Za-z0-9_.-])[01]\.A[A-Za-z0-9_-]{40,}"),
    "SASL XOAUTH2-shaped base64": re.compile(r"dXNlcj[0-9A-Za-z+/]{30,}"),
    "raw SASL XOAUTH2": re.compile(r"auth=Bearer\s*\S{20,}", re.I),
}
RESULT_TOKEN_RE = re.compile(r'"pending": (?:true|false), "access_token": "([^"]+)"')


def _key_lines(pem_path: str) -> list:
    """The base64 body lines of the PEM's private key block."""
    lines, inside = [], False
    for line in _read(pem_path).splitlines():
        if line.startswith("-----BEGIN") and "PRIVATE KEY" in line:
            inside = True
        elif line.startswith("-----END") and "PRIVATE KEY" in line:
            inside = False
        elif inside and ":" not in line and line.strip():   # skip Proc-Type/DEK-Info headers
            lines.append(line.strip())
    return [line for line in lines if len(line) >= MIN_SECRET]


def _cache_files(run: dict) -> list:
    return sorted(set(glob.glob(os.path.join(run["root"], "**", "*cache*.json"), recursive=True)))


def _cache_secrets(path: str) -> dict:
    data = json.loads(_read(path))
    return {kind: [entry["secret"] for entry in (data.get(section) or {}).values() if entry.get("secret")]
            for kind, section in (("access token", "AccessToken"), ("refresh token", "RefreshToken"),
                                  ("id token", "IdToken"))}


def _mailboxes(lab: dict) -> set:
    with open(LAB_INVENTORY, encoding="utf-8") as handle:
        inventory = yaml.safe_load(handle)
    boxes = {box["address"] for box in inventory["tenants"]["hosts"]["contoso"]["mailops_o365_tenant"]["mailboxes"]}
    boxes.update(lab[k] for k in ("LAB_MAILBOX", "LAB_MAILBOX_2", "LAB_SHARED_MAILBOX", "LAB_MAILBOX_IMAP_DISABLED",
                                  "LAB_MAILBOX_POP_DISABLED", "LAB_MAILBOX_SMTP_DISABLED"))
    boxes.add("ghost@" + lab["LAB_DOMAIN"])
    return boxes


def collect_secrets(run: dict) -> list:
    """[(kind, value)], deduplicated; every value long enough not to match by chance."""
    lab = run["lab"]
    with open(lab["LAB_IDENTITIES"], encoding="utf-8") as handle:
        identities = json.load(handle)
    found = []
    found += [("client secret", lab[k]) for k in ("O365_CLIENT_SECRET", "LAB_APP_EXPIRED_SECRET", "LAB_APP_LIMITED_SECRET")]
    found += [("client secret", app["secret"]) for tenant in identities["tenants"] for app in tenant.get("apps", [])
              if app.get("secret")]
    found += [("certificate key", line) for path in (lab["LAB_CERT_PATH_ENCRYPTED"], lab["LAB_CERT_PATH"])
              for line in _key_lines(path)]
    found.append(("certificate password", lab["LAB_CERT_PASSWORD"]))
    access = []
    for path in _cache_files(run):
        for kind, values in _cache_secrets(path).items():
            found += [(kind, value) for value in values]
            access += values if kind == "access token" else []
    for path in glob.glob(os.path.join(run["root"], "*", "stdout.txt")):   # o365_token results (ANSIBLE_DEBUG)
        returned = [token for token in RESULT_TOKEN_RE.findall(_read(path)) if token.count(".") == 2]
        found += [("access token", token) for token in returned]
        access += returned
    found.append(("refresh token", run["refresh_token"]))
    found += [("minted token", token) for token in run["tokens"].values()]
    access += list(run["tokens"].values())
    for kind, value in list(found):
        if "token" in kind and value.count(".") == 2:
            found.append(("token signature", value.rsplit(".", 1)[1]))
    found += [("SASL XOAUTH2", encode_xoauth2(box, token)) for token in set(access) for box in _mailboxes(lab)]
    unique = {}
    for kind, value in found:
        if len(value) >= MIN_SECRET:
            unique.setdefault(value, kind)
    return [(kind, value) for value, kind in unique.items()]


# ansible-core's own ANSIBLE_DEBUG messages print what no collection can mask - its config documents that
# "debug output can also include secret information despite no_log settings" (DEFAULT_DEBUG):
#   "done with _execute_module (<module>, <templated args, no_log ones included>)"
#   "_low_level_execute_command() done: rc=0, stdout=<the module's raw JSON, before the controller's no_log>"
# Only those spans are masked, and only the values of the options the modules declare no_log (in the args)
# and o365_token's documented access_token (in its raw JSON); everything else on those lines is searched.
DEBUG_PREFIX = r"^ *\d+ \d+\.\d+: "
CORE_ARGS_RE = re.compile(DEBUG_PREFIX + r"done with _execute_module \(.*$", re.M)
NO_LOG_ARG_RE = re.compile(r"""'(client_secret|client_certificate_password|refresh_token|access_token|auth_response)': """
                           r"""(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")
CORE_STDOUT_RE = re.compile(DEBUG_PREFIX + r"_low_level_execute_command\(\) done: rc=-?\d+, stdout=.*?\n, stderr=", re.M | re.S)
TOKEN_RESULT_RE = re.compile(r'("pending": (?:true|false), "access_token": )"[^"]*"')
MASK = "<masked: ansible-core debug>"


def mask_core_debug(text: str) -> tuple:
    """The text with those spans masked, and how many values were masked."""
    count = 0

    def args(match):
        nonlocal count
        line, masked = NO_LOG_ARG_RE.subn(lambda m: "'%s': '%s'" % (m.group(1), MASK), match.group(0))
        count += masked
        return line

    def stdout(match):
        nonlocal count
        span, masked = TOKEN_RESULT_RE.subn(lambda m: m.group(1) + '"%s"' % MASK, match.group(0))
        count += masked
        return span

    text = CORE_ARGS_RE.sub(args, text)
    return CORE_STDOUT_RE.sub(stdout, text), count


def captured(run: dict) -> tuple:
    """{place: text} of everything the runs produced, except the token caches (where tokens belong), with
    ansible-core's debug spans masked; and how many values were masked per place."""
    caches = set(_cache_files(run))
    places, masked = {}, {}
    for path in sorted(glob.glob(os.path.join(run["root"], "**", "*"), recursive=True)):
        if os.path.isfile(path) and path not in caches:
            place = os.path.relpath(path, run["root"])
            places[place], masked[place] = mask_core_debug(_read(path))
    return places, {place: count for place, count in masked.items() if count}


LONG_RUN_RE = re.compile(r"[A-Za-z0-9_+/=.~-]{24,}")


def _redacted(text: str, index: int, value: str, kind: str) -> str:
    """60 characters either side, the secret replaced by its kind, any other long token-like run cut too."""
    start, end = max(0, index - 60), index + len(value) + 60
    before, after = (LONG_RUN_RE.sub("<...>", part) for part in (text[start:index], text[index + len(value):end]))
    return repr(before + "<%s>" % kind.upper().replace(" ", "_") + after)


def find_leaks(secrets: list, places: dict) -> list:
    leaks = []
    for kind, shape in SHAPES.items():
        for place, text in places.items():
            for match in shape.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                snippet = _redacted(text, match.start(), match.group(0), kind)
                leaks.append("%s in %s line %d: %s" % (kind, place, line, snippet))
    for kind, value in secrets:
        for place, text in places.items():
            index = text.find(value)
            if index >= 0:
                line = text.count("\n", 0, index) + 1
                leaks.append("%s in %s line %d: %s" % (kind, place, line, _redacted(text, index, value, kind)))
    return leaks


# ---------------------------------------------------------------------------------------------------------
# tests


def test_every_playbook_ran_as_expected(leak_run):
    codes, runs = leak_run["codes"], leak_run["runs"]

    def tail(name):
        return _read(os.path.join(runs[name], "stdout.txt"))[-3000:] + _read(os.path.join(runs[name], "stderr.txt"))[-2000:]

    # modules.yml ends with a task that fails by design, verify_mail.yml fails for ghost@ by design
    assert codes.get("modules") == 2, tail("modules")
    stdout = _read(os.path.join(runs["modules"], "stdout.txt"))
    assert "Send with a refused token (fails the run)" in stdout and "failed=1" in stdout, tail("modules")
    assert codes.get("verify_mail") == 2, tail("verify_mail")
    assert codes.get("send_alert") == 0, tail("send_alert")
    assert codes.get("bootstrap_token") == 0, tail("bootstrap_token")
    out = os.path.join(runs["modules"], "out")
    results = {}
    for name in ("results_checks.json", "results_settings.json"):
        results.update(json.loads(_read(os.path.join(out, name))))
    assert len(results) == 18, sorted(results)
    for name in ("imap_secret", "imap_cert", "imap_refresh", "imap_given", "pop_single", "smtp_single", "smtp_refresh",
                 "send_ok", "mailflow", "validate_ok", "tenant_config"):
        assert not results[name].get("failed"), (name, results[name].get("msg"))
    for name in ("imap_refused", "send_refused", "validate_literal"):
        assert results[name].get("failed"), (name, results[name].get("msg"))
    assert results["imap_fleet"]["summary"]["failed"] >= 2 and results["smtp_fleet"]["summary"]["failed"] >= 2
    assert glob.glob(os.path.join(runs["verify_mail"], "out", "reports-*", "report.json"))
    assert os.path.getsize(os.path.join(runs["modules"], "ansible.log")) > 0
    for name, messages in leak_run["mails"].items():
        assert len(messages) == 1, (name, len(messages))
    assert "[FAILED]" in leak_run["mails"]["failure mail modules"][0].get_body(("plain",)).get_content()


def test_secret_collection_is_not_vacuous(leak_run):
    """Every kind of secret was collected, and is found where it legitimately is: the search works."""
    lab = leak_run["lab"]
    secrets = collect_secrets(leak_run)
    kinds = {}
    for kind, value in secrets:
        kinds.setdefault(kind, []).append(value)
    counts = {kind: len(values) for kind, values in kinds.items()}
    assert counts.get("client secret", 0) >= 3 and counts.get("certificate key", 0) >= 10, counts
    assert counts.get("certificate password") == 1 and counts.get("minted token") == 2, counts
    # tokens of the client secret, certificate, refresh token and device code flows, from several caches
    assert counts.get("access token", 0) >= 4 and counts.get("refresh token", 0) >= 2, counts
    assert counts.get("token signature", 0) >= counts["access token"] and counts.get("SASL XOAUTH2", 0) >= 100, counts

    legit = {"env file": _read(support.ENV_FILE), "identities": _read(lab["LAB_IDENTITIES"]),
             "encrypted PEM": _read(lab["LAB_CERT_PATH_ENCRYPTED"]), "PEM": _read(lab["LAB_CERT_PATH"])}
    legit.update({os.path.basename(path): _read(path) for path in _cache_files(leak_run)})
    # The SASL exchange as a client builds it by hand (inside TLS, where tokens legitimately travel). The
    # minted tokens live nowhere else: o365_token returns a given token masked, since it is a no_log option.
    for token in kinds["access token"][:3] + kinds["minted token"]:
        raw = "user=%s\x01auth=Bearer %s\x01\x01" % (lab["LAB_MAILBOX"], token)
        legit["SASL exchange"] = legit.get("SASL exchange", "") + raw + base64.b64encode(raw.encode()).decode() + "\n"
    found_kinds = {kind for kind, value in secrets if any(value in text for text in legit.values())}
    assert found_kinds == set(kinds), "never found where it belongs: %s" % sorted(set(kinds) - found_kinds)

    # the shapes match the real values
    for kind, shape in SHAPES.items():
        source = {"JWT-shaped token": "access token", "refresh-token-shaped value": "refresh token",
                  "SASL XOAUTH2-shaped base64": "SASL XOAUTH2"}.get(kind)
        samples = kinds[source] if source else [legit["SASL exchange"]]
        assert all(shape.search(value) for value in samples), kind

    # every flow's token was actually in the caches of the runs
    caches = {os.path.relpath(p, leak_run["root"]): _cache_secrets(p) for p in _cache_files(leak_run)}
    assert caches["modules/token_cache.json"]["access token"], caches.keys()
    assert caches["modules/token_cache.json"]["refresh token"], "the refresh token flow left no refresh token"
    assert caches["bootstrap_token/bootstrap_cache.json"]["refresh token"], caches.keys()
    assert caches["verify_mail/token_cache.json"]["access token"], caches.keys()


def test_o365_token_returns_the_access_token_only_where_documented(leak_run, tmp_path):
    """o365_token run directly returns its access_token (documented); the no_log'ed runs show nothing."""
    cache = str(tmp_path / "documented_cache.json")
    rc, result = support.run_module("o365_token", {"token_cache_path": cache, "protocols": ["imap", "smtp"]}, timeout=60)
    assert rc == 0 and result["source"] == "network", result
    token = _cache_secrets(cache)["access token"][0]
    assert result["access_token"] == token and token in json.dumps(result)
    assert leak_run["lab"]["O365_CLIENT_SECRET"] not in json.dumps(result)
    assert token not in json.dumps(result.get("invocation", {})), "the token is returned once, not in invocation"
    # the four no_log'ed o365_token tasks of modules.yml: hidden on screen (the leak search covers every byte)
    stdout = _read(os.path.join(leak_run["runs"]["modules"], "stdout.txt"))
    assert stdout.count("the output has been hidden due to the fact that 'no_log: true'") >= 4


def test_masking_of_core_debug_is_narrow():
    """Only no_log option values in the args line and o365_token's access_token in its raw JSON are masked."""
    text = ("ok: [localhost] => {\"client_secret\": \"s3cret-visible\"}\n"
            " 123 1795841913.24836: done with _execute_module (mailops.o365.o365_imap_check, {'client_secret': 's3cret-a', "
            "'headers': {'X': 's3cret-b'}, 'refresh_token': \"it's-s3cret-c\"})\n"
            " 123 1795841913.3: _low_level_execute_command() done: rc=0, stdout=\n"
            '{"changed": false, "pending": false, "access_token": "s3cret-d", "msg": "s3cret-e"}\n, stderr=\n'
            "s3cret-f\n")
    masked, count = mask_core_debug(text)
    assert count == 3
    for hidden in ("s3cret-a", "s3cret-c", "s3cret-d"):
        assert hidden not in masked
    for shown in ("s3cret-visible", "s3cret-b", "s3cret-e", "s3cret-f"):
        assert shown in masked


def test_no_secret_in_any_output_log_result_report_or_mail(leak_run):
    secrets = collect_secrets(leak_run)
    places, masked = captured(leak_run)
    assert any(p.endswith("stdout.txt") for p in places) and any(p.endswith("ansible.log") for p in places)
    assert any(".eml.txt" in p for p in places) and any("reports" in p for p in places), sorted(places)
    # ANSIBLE_DEBUG was on: ansible-core printed the module args and raw results, so the masking had work to do
    assert masked.get("modules/stdout.txt", 0) >= 10, masked
    leaks = find_leaks(secrets, places)
    kinds = {}
    for kind, _value in secrets:
        kinds[kind] = kinds.get(kind, 0) + 1
    summary = "searched %s in %d places (%d KiB); ansible-core debug values masked: %s" % (
        kinds, len(places), sum(len(t) for t in places.values()) // 1024, masked)
    print(summary)
    assert not leaks, "%d leak(s):\n%s\n%s" % (len(leaks), "\n".join(leaks[:40]), summary)
