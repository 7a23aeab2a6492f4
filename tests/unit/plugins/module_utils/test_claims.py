"""Claims diagnosis and scope/cloud resolution."""
import base64
import json
import time

import pytest

from ansible_collections.mailops.o365.plugins.module_utils._claims import decode_claims, diagnose, summarize
from ansible_collections.mailops.o365.plugins.module_utils._clouds import CLOUDS, get_cloud, scopes_for

TENANT = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"


def _b64(data):
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def jwt(claims):
    return "%s.%s.sig" % (_b64({"typ": "JWT", "alg": "RS256"}), _b64(claims))


def delegated(**over):
    c = {"aud": "https://outlook.office.com", "tid": TENANT, "idtyp": "user", "upn": "adele@contoso.test",
         "scp": "IMAP.AccessAsUser.All POP.AccessAsUser.All SMTP.Send", "exp": time.time() + 3600}
    c.update(over)
    return c


def app(**over):
    c = {"aud": "https://outlook.office365.com", "tid": TENANT, "idtyp": "app",
         "roles": ["IMAP.AccessAsApp", "POP.AccessAsApp", "SMTP.SendAsApp"], "exp": time.time() + 3600}
    c.update(over)
    return c


PUBLIC = get_cloud("public")


def test_good_tokens_have_no_problems():
    assert diagnose(delegated(), ["imap", "pop", "smtp"], PUBLIC, TENANT) == []
    assert diagnose(app(), ["imap", "pop", "smtp"], PUBLIC, TENANT) == []


@pytest.mark.parametrize("claims,protocols,needle", [
    (delegated(exp=1000), ["imap"], "expired at 1970-01-01T00:16:40Z"),
    (delegated(aud="https://graph.microsoft.com"), ["imap"], "audience"),
    (delegated(scp="IMAP.AccessAsUser.All"), ["smtp"], "SMTP.Send scope needed for SMTP"),
    (app(roles=["IMAP.AccessAsApp"]), ["pop"], "POP.AccessAsApp role"),
    (app(tid="11111111-1111-1111-1111-111111111111"), ["imap"], "issued by tenant"),
])
def test_each_problem_is_reported(claims, protocols, needle):
    problems = diagnose(claims, protocols, PUBLIC, TENANT)
    assert any(needle in p for p in problems), problems


def test_exchange_app_id_audience_is_accepted():
    assert diagnose(app(aud="00000002-0000-0ff1-ce00-000000000000"), ["imap"], PUBLIC, TENANT) == []


def test_opaque_token_gives_no_claims_and_no_error():
    assert decode_claims("EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA") is None
    assert decode_claims("a.b.c") is None
    assert diagnose(None, ["imap"], PUBLIC) == []
    assert summarize(None) == {}


def test_summary_has_iso_expiry_and_no_signature():
    token = jwt(delegated(exp=1798761600))
    summary = summarize(decode_claims(token))
    assert summary["expires_at"] == "2027-01-01T00:00:00Z"
    assert summary["upn"] == "adele@contoso.test" and "sig" not in json.dumps(summary)


def test_delegated_scopes_follow_protocols():
    assert scopes_for(PUBLIC, ["smtp", "imap"], app_only=False) == [
        "https://outlook.office.com/IMAP.AccessAsUser.All", "https://outlook.office.com/SMTP.Send"]


def test_app_only_scope_is_default():
    assert scopes_for(PUBLIC, ["imap"], app_only=True) == ["https://outlook.office365.com/.default"]


@pytest.mark.parametrize("name,authority,imap,smtp", [
    ("public", "https://login.microsoftonline.com", "outlook.office365.com", "smtp.office365.com"),
    ("usgov", "https://login.microsoftonline.us", "outlook.office365.us", "smtp.office365.us"),
    ("usdod", "https://login.microsoftonline.us", "outlook-dod.office365.us", "outlook-dod.office365.us"),
    ("china", "https://login.partner.microsoftonline.cn", "partner.outlook.cn", "smtp.partner.outlook.cn"),
])
def test_cloud_table(name, authority, imap, smtp):
    cloud = CLOUDS[name]
    assert (cloud.authority_host, cloud.host_for("imap"), cloud.host_for("smtp")) == (authority, imap, smtp)
    assert scopes_for(cloud, ["pop"], app_only=False)[0].endswith("/POP.AccessAsUser.All")
