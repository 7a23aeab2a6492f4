"""o365_token and the token core against the lab's mock Entra ID: every flow through msal for real."""
from __future__ import annotations

import json
import os
import stat
import time
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from ansible_collections.mailops.o365.plugins.module_utils._claims import decode_claims
from ansible_collections.mailops.o365.plugins.module_utils._errors import O365Error
from ansible_collections.mailops.o365.plugins.module_utils._options import AuthSettings
from ansible_collections.mailops.o365.plugins.module_utils._token import PendingFlow, acquire_token
from tests.integration.support import lab_call, lab_env, run_module, token_requests

pytestmark = pytest.mark.lab


@pytest.fixture()
def env():
    lab_call("POST", "/faults/clear", {})
    return lab_env()


@pytest.fixture()
def cache(tmp_path):
    return str(tmp_path / "cache" / "token_cache.json")


def settings(env, cache, **over) -> AuthSettings:
    params = dict(tenant_id=env["O365_TENANT_ID"], client_id=env["O365_CLIENT_ID"],
                  client_secret=env["O365_CLIENT_SECRET"], authority_host=env["O365_AUTHORITY_HOST"],
                  ca_path=env["O365_CA_PATH"], token_cache_path=cache, timeout=20)
    params.update(over)
    return AuthSettings.from_params(params)


def test_client_secret_then_cache_without_any_network(env, cache):
    first = acquire_token(settings(env, cache), ["imap", "smtp"])
    assert first.source == "network" and first.flow == "client_secret"
    claims = decode_claims(first.access_token)
    assert claims["aud"] == "https://outlook.office365.com" and claims["idtyp"] == "app"
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600
    before = token_requests()
    second = acquire_token(settings(env, cache), ["imap", "smtp"])
    assert token_requests() == before, "a cached token must cost no request at all, discovery included"
    assert (second.source, second.access_token) == ("cache", first.access_token)


def test_module_second_call_reports_source_cache(env, cache):
    rc, first = run_module("o365_token", {"token_cache_path": cache, "protocols": ["imap"]})
    assert rc == 0 and first["source"] == "network" and first["problems"] == []
    before = token_requests()
    rc, second = run_module("o365_token", {"token_cache_path": cache, "protocols": ["imap"]})
    assert rc == 0 and second["source"] == "cache" and token_requests() == before
    assert env["O365_CLIENT_SECRET"] not in json.dumps(second)


def test_client_certificate(env, cache):
    token = acquire_token(settings(env, cache, client_id=env["LAB_CERT_CLIENT_ID"], client_secret=None,
                                   client_certificate_path=env["LAB_CERT_PATH"]), ["pop"])
    assert token.flow == "client_certificate" and decode_claims(token.access_token)["appid"] == env["LAB_CERT_CLIENT_ID"]


def test_client_certificate_with_encrypted_key(env, cache):
    token = acquire_token(settings(env, cache, client_id=env["LAB_CERT_CLIENT_ID"], client_secret=None,
                                   client_certificate_path=env["LAB_CERT_PATH_ENCRYPTED"],
                                   client_certificate_password=env["LAB_CERT_PASSWORD"]), ["imap"])
    assert token.source == "network"


def _device_bootstrap(env, cache, user):
    s = settings(env, cache, client_id=env["LAB_PUBLIC_CLIENT_ID"], client_secret=None, flow="device_code")
    pending = acquire_token(s, ["imap", "smtp"])
    assert isinstance(pending, PendingFlow) and pending.instructions["user_code"]
    json.dumps(pending.state)  # the state must survive a round trip through Ansible
    lab_call("POST", "/device/approve", {"user_code": pending.instructions["user_code"], "user": user})
    return acquire_token(s, ["imap", "smtp"], flow_state=json.loads(json.dumps(pending.state)))


def test_device_code_two_phases_then_cached_refresh(env, cache):
    user = env["LAB_MAILBOX"]
    token = _device_bootstrap(env, cache, user)
    claims = decode_claims(token.access_token)
    assert claims["upn"] == user and "IMAP.AccessAsUser.All" in claims["scp"]
    assert "RefreshToken" in json.load(open(cache))
    # Later runs: flow cache (the module's auto with only username) use the cached account, no network.
    s = settings(env, cache, client_id=env["LAB_PUBLIC_CLIENT_ID"], client_secret=None, username=user)
    before = token_requests()
    again = acquire_token(s, ["imap", "smtp"])
    assert (again.source, again.flow, token_requests()) == ("cache", "cache", before)


def test_cached_refresh_token_is_redeemed_when_access_token_expired(env, cache):
    user = env["LAB_MAILBOX_2"]
    _device_bootstrap(env, cache, user)
    data = json.load(open(cache))
    for entry in data["AccessToken"].values():
        entry["expires_on"] = str(int(time.time()) - 10)
    with open(cache, "w") as handle:
        json.dump(data, handle)
    s = settings(env, cache, client_id=env["LAB_PUBLIC_CLIENT_ID"], client_secret=None, username=user)
    token = acquire_token(s, ["imap"])
    assert token.source == "network" and decode_claims(token.access_token)["upn"] == user


def test_refresh_token_flow_rotates_into_cache(env, cache, tmp_path):
    user = env["LAB_MAILBOX"]
    _device_bootstrap(env, str(tmp_path / "bootstrap.json"), user)
    refresh = next(iter(json.load(open(tmp_path / "bootstrap.json"))["RefreshToken"].values()))["secret"]
    s = settings(env, cache, client_id=env["LAB_PUBLIC_CLIENT_ID"], client_secret=None, refresh_token=refresh,
                 username=user)
    token = acquire_token(s, ["smtp"])
    assert token.flow == "refresh_token" and decode_claims(token.access_token)["scp"].find("SMTP.Send") >= 0
    rotated = next(iter(json.load(open(cache))["RefreshToken"].values()))["secret"]
    assert rotated and rotated != refresh
    before = token_requests()
    assert acquire_token(s, ["smtp"]).source == "cache" and token_requests() == before


def test_auth_code_with_pkce_two_phases(env, cache):
    s = settings(env, cache, client_id=env["LAB_PUBLIC_CLIENT_ID"], client_secret=None, flow="auth_code",
                 username=env["LAB_MAILBOX"])
    pending = acquire_token(s, ["imap"], redirect_uri="http://localhost:8400")
    auth_uri = pending.instructions["auth_uri"]
    assert "code_challenge" in parse_qs(urlparse(auth_uri).query)
    redirect = requests.get(auth_uri, allow_redirects=False, verify=env["O365_CA_PATH"], timeout=10)
    assert redirect.status_code == 302
    token = acquire_token(s, ["imap"], flow_state=pending.state, auth_response=redirect.headers["Location"],
                          redirect_uri="http://localhost:8400")
    assert decode_claims(token.access_token)["upn"] == env["LAB_MAILBOX"]


@pytest.mark.parametrize("over,code", [
    ({"tenant_id": "nosuchtenant.test"}, "AADSTS90002"),
    ({"client_id": "11111111-2222-3333-4444-555555555555"}, "AADSTS700016"),
    ({"client_secret": "wrong-secret-value"}, "AADSTS7000215"),
    ({"scopes": ["https://outlook.office365.com/IMAP.AccessAsApp"]}, "AADSTS70011"),
])
def test_entra_errors_are_classified(env, cache, over, code):
    with pytest.raises(O365Error) as info:
        acquire_token(settings(env, cache, **over), ["imap"])
    assert info.value.code == code and info.value.category == "token" and info.value.hint
    assert env["O365_CLIENT_SECRET"] not in str(info.value.as_dict())


def test_expired_secret(env, cache):
    with pytest.raises(O365Error) as info:
        acquire_token(settings(env, cache, client_id=env["LAB_APP_EXPIRED_CLIENT_ID"],
                               client_secret=env["LAB_APP_EXPIRED_SECRET"]), ["imap"])
    assert info.value.code == "AADSTS7000222"


def test_429_with_retry_after_is_retried_within_timeout(env, cache):
    lab_call("POST", "/faults", {"endpoint": "token", "status": 429, "retry_after": 1, "count": 2})
    start = time.monotonic()
    token = acquire_token(settings(env, cache), ["imap"])
    assert token.source == "network" and 2 <= time.monotonic() - start < 10


def test_500_then_success(env, cache):
    lab_call("POST", "/faults", {"endpoint": "token", "status": 500, "count": 1})
    assert acquire_token(settings(env, cache), ["imap"]).source == "network"


def test_persistent_429_gives_up_within_timeout(env, cache):
    lab_call("POST", "/faults", {"endpoint": "token", "status": 429, "retry_after": 1, "count": 50})
    start = time.monotonic()
    with pytest.raises(O365Error) as info:
        acquire_token(settings(env, cache, timeout=3), ["imap"])
    assert time.monotonic() - start < 3 + 2
    assert info.value.category in ("throttled", "token")
    lab_call("POST", "/faults/clear", {})


def test_ca_path_wins_over_requests_ca_bundle(env, cache, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    assert acquire_token(settings(env, cache), ["imap"]).source == "network"


def test_untrusted_authority_is_a_tls_error(env, cache):
    with pytest.raises(O365Error) as info:
        acquire_token(settings(env, cache, ca_path=None), ["imap"])
    assert info.value.category == "tls"


def test_claims_problems_reported_by_module(env, tmp_path):
    from tests.integration.support import mint

    token = mint("delegated", env["LAB_MAILBOX"], claims={"scp": "IMAP.AccessAsUser.All"})
    rc, result = run_module("o365_token", {"access_token": token, "protocols": ["smtp"]})
    assert rc == 0 and result["source"] == "given"
    assert any("SMTP.Send" in p for p in result["problems"])
    assert result["access_token"] == "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"  # a given token is never echoed
