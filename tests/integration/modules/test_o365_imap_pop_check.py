"""o365_imap_check and o365_pop_check against the lab's real Dovecot, with real signed tokens."""
from __future__ import annotations

import contextlib
import json
import socket
import threading
import time

import pytest

from tests.integration.support import cache_path, lab_env, mint, module_env, run_module

pytestmark = pytest.mark.lab

PROTOCOLS = {
    # protocol -> (module, tls port key, starttls port key)
    "imap": ("o365_imap_check", "LAB_IMAP_PORT", "LAB_IMAP_STARTTLS_PORT"),
    "pop": ("o365_pop_check", "LAB_POP_PORT", "LAB_POP_STARTTLS_PORT"),
}


@pytest.fixture(scope="module")
def env():
    return lab_env()


def check(protocol, env, security="tls", **args):
    module, tls_key, starttls_key = PROTOCOLS[protocol]
    port = env[tls_key if security == "tls" else starttls_key]
    base = {"host": env["LAB_HOST"], "port": int(port), "security": security, "timeout": 10,
            "token_cache_path": cache_path("checks")}
    base.update(args)
    return run_module(module, base)


@pytest.mark.parametrize("protocol", ["imap", "pop"])
@pytest.mark.parametrize("security", ["tls", "starttls"])
def test_good_app_token_both_tls_modes(env, protocol, security):
    rc, result = check(protocol, env, security, mailbox=env["LAB_MAILBOX"])
    assert rc == 0, result
    assert result["ok"] and result["authenticated"] and isinstance(result["messages"], int)
    assert set(result["timings"]) >= {"connect", "tls", "greeting", "auth", "command", "total"}
    assert any("XOAUTH2" in c for c in result["capabilities"])
    assert env["O365_CLIENT_SECRET"] not in json.dumps(result)


def test_imap_returns_folder_state_and_search(env):
    rc, result = check("imap", env, mailbox=env["LAB_MAILBOX"], search="ALL")
    assert rc == 0 and result["uidvalidity"] and result["search_matches"] == result["messages"]
    assert result["unseen"] is not None


@pytest.mark.parametrize("protocol", ["imap", "pop"])
def test_good_delegated_token(env, protocol):
    token = mint("delegated", env["LAB_MAILBOX"])
    rc, result = check(protocol, env, mailbox=env["LAB_MAILBOX"], access_token=token)
    assert rc == 0 and result["ok"]
    assert token not in json.dumps(result)


def test_shared_mailbox_with_delegate_token(env):
    token = mint("delegated", env["LAB_MAILBOX"])
    rc, result = check("imap", env, mailbox=env["LAB_SHARED_MAILBOX"], access_token=token)
    assert rc == 0 and result["ok"], result


@pytest.mark.parametrize("protocol", ["imap", "pop"])
def test_wrong_user_is_refused_by_the_server(env, protocol):
    token = mint("delegated", env["LAB_MAILBOX_2"])
    rc, result = check(protocol, env, mailbox=env["LAB_MAILBOX"], access_token=token)
    assert rc == 1 and not result["ok"] and result["error"]["category"] == "auth"
    assert result["error"]["server_reply"] and result["error"]["hint"]
    assert token not in json.dumps(result)


@pytest.mark.parametrize("claims,needle", [
    ({"exp": 1000000000}, "expired"),
    ({"aud": "https://graph.microsoft.com"}, "audience"),
    ({"scp": "SMTP.Send"}, "IMAP.AccessAsUser.All"),
])
def test_claims_problems_reported_before_connecting(env, claims, needle):
    token = mint("delegated", env["LAB_MAILBOX"], claims=claims)
    # An unreachable port proves nothing was connected: the claims verdict comes first.
    rc, result = check("imap", env, mailbox=env["LAB_MAILBOX"], access_token=token, port=1)
    assert rc == 1 and result["error"]["category"] == "auth"
    assert any(needle in p for p in result["problems"]) and result["timings"] == {}


@pytest.mark.parametrize("protocol", ["imap", "pop"])
def test_server_validates_signature_and_expiry_itself(env, protocol):
    """Tokens the diagnosis cannot fault (good claims) but the server must refuse."""
    other_key = mint("delegated", env["LAB_MAILBOX"], sign_with_other_key=True)
    rc, result = check(protocol, env, mailbox=env["LAB_MAILBOX"], access_token=other_key)
    assert rc == 1 and result["error"]["category"] == "auth" and result["authenticated"] is False


@pytest.mark.parametrize("protocol", ["imap", "pop"])
def test_app_without_mailbox_permission(env, protocol):
    rc, result = check(protocol, env, mailbox=env["LAB_MAILBOX"], client_id=env["LAB_APP_LIMITED_CLIENT_ID"],
                       client_secret=env["LAB_APP_LIMITED_SECRET"], token_cache_path=cache_path("limited"))
    assert rc == 1 and result["error"]["category"] == "auth"
    assert "Add-MailboxPermission" in result["error"]["hint"]


@pytest.mark.parametrize("protocol,key", [("imap", "LAB_MAILBOX_IMAP_DISABLED"), ("pop", "LAB_MAILBOX_POP_DISABLED")])
def test_protocol_disabled_for_mailbox(env, protocol, key):
    rc, result = check(protocol, env, mailbox=env[key])
    assert rc == 1 and result["error"]["category"] == "auth"
    assert ("ImapEnabled" if protocol == "imap" else "PopEnabled") in result["error"]["hint"]


def _free_port():
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("protocol", ["imap", "pop"])
def test_server_down_is_a_connection_error(env, protocol):
    rc, result = check(protocol, env, mailbox=env["LAB_MAILBOX"], port=_free_port())
    assert rc == 1 and result["error"]["category"] == "connection"


@contextlib.contextmanager
def silent_server():
    """Accepts TCP and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for conn in held:
            conn.close()
        listener.close()


@pytest.mark.parametrize("protocol", ["imap", "pop"])
def test_silent_server_times_out_without_hanging(env, protocol):
    with silent_server() as port:
        start = time.monotonic()
        rc, result = check(protocol, env, mailbox=env["LAB_MAILBOX"], port=port, timeout=2)
        elapsed = time.monotonic() - start
    assert rc == 1 and result["error"]["category"] == "timeout"
    assert elapsed < 2 + 3, "timeout 2 s, module start-up included"


@pytest.mark.parametrize("protocol", ["imap", "pop"])
def test_untrusted_certificate(env, protocol):
    rc, result = check(protocol, env, mailbox=env["LAB_MAILBOX"], ca_path="/etc/ssl/certs/ca-certificates.crt",
                       access_token=mint("app", env["LAB_MAILBOX"]))
    assert rc == 1 and result["error"]["category"] == "tls"


def test_validate_certs_false_warns(env):
    rc, result = check("imap", env, mailbox=env["LAB_MAILBOX"], validate_certs=False,
                       access_token=mint("app", env["LAB_MAILBOX"]))
    assert rc == 0 and "validate_certs is false" in json.dumps(result.get("warnings"))


@pytest.mark.parametrize("protocol", ["imap", "pop"])
def test_fleet_of_200_with_broken_ones_exact_counts(env, protocol):
    prefix, domain = env["LAB_FLEET_PREFIX"], env["LAB_DOMAIN"]
    good = ["%s%04d@%s" % (prefix, i, domain) for i in range(1, 201)]
    disabled = env["LAB_MAILBOX_IMAP_DISABLED" if protocol == "imap" else "LAB_MAILBOX_POP_DISABLED"]
    broken = [disabled, "ghost@" + domain, {"address": env["LAB_MAILBOX"], "port": _free_port()}]
    mailboxes = good[:100] + broken + good[100:]
    rc, result = check(protocol, env, mailboxes=mailboxes, max_workers=16, fail_on_error=True)
    assert rc == 1, "a fleet with failures fails the task"
    summary = result["summary"]
    assert (summary["total"], summary["ok"], summary["failed"]) == (203, 200, 3)
    assert summary["by_category"] == {"auth": 2, "connection": 1}
    assert [r["mailbox"] for r in result["results"]] == [m if isinstance(m, str) else m["address"] for m in mailboxes]
    assert summary["latency_ms"]["p95"] >= summary["latency_ms"]["median"] >= summary["latency_ms"]["min"]


def test_fleet_fail_on_error_false_still_returns_everything(env):
    rc, result = check("imap", env, mailboxes=[env["LAB_MAILBOX"], "ghost@" + env["LAB_DOMAIN"]], fail_on_error=False)
    assert rc == 0 and result["summary"]["failed"] == 1 and len(result["results"]) == 2


def test_check_mode_runs_the_real_check(env):
    module, _unused, _unused = PROTOCOLS["imap"]
    rc, result = run_module(module, {"host": env["LAB_HOST"], "port": int(env["LAB_IMAP_PORT"]),
                                     "mailbox": env["LAB_MAILBOX"]}, check_mode=True, env=module_env())
    assert rc == 0 and result["ok"] and result["changed"] is False


@pytest.mark.parametrize("args,field", [
    ({"mailbox": "bob@"}, "mailbox"),
    ({"mailboxes": ["a@contoso.test", "bad address"]}, "mailboxes[1]"),
    ({"mailboxes": [{"address": "a@contoso.test", "port": 70000}]}, "mailboxes[0].port"),
    ({"mailboxes": [{"address": "a@contoso.test", "colour": "red"}]}, "mailboxes[0]"),
    ({"mailbox": "a@contoso.test", "folder": "IN\r\nBOX"}, "folder"),
    ({"mailbox": "a@contoso.test", "search": "ALL\r\nA1 DELETE INBOX"}, "search"),
    ({"mailbox": "a@contoso.test", "max_workers": 0}, "max_workers"),
    ({"mailbox": "a@contoso.test", "host": "evil host\r\n"}, "host"),
])
def test_bad_input_fails_before_any_connection(env, args, field):
    args = dict(args, port=1) if "port" not in args and "mailboxes" not in args else args
    rc, result = run_module("o365_imap_check", dict(args, access_token=mint("app", env["LAB_MAILBOX"])))
    assert rc == 1 and result["msg"].startswith(field), result["msg"]
