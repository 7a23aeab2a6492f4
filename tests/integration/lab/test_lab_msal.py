"""Real msal 1.x against the mock Entra ID: every flow the collection uses."""
from __future__ import annotations

import threading
import time
from urllib.parse import parse_qsl, urlsplit

import jwt
import msal
import pytest

pytestmark = [pytest.mark.lab, pytest.mark.timeout(60)]

APP_SCOPE = ["https://outlook.office365.com/.default"]
USER_SCOPES = ["https://outlook.office.com/IMAP.AccessAsUser.All",
               "https://outlook.office.com/SMTP.Send"]
REDIRECT = "http://localhost:8400/callback"


def claims(token):
    return jwt.decode(token, options={"verify_signature": False})


def cca(lab, client_id, credential, tenant=None):
    return msal.ConfidentialClientApplication(client_id, client_credential=credential,
                                              **lab.msal_kwargs(tenant))


def pca(lab, client_id=None, tenant=None):
    return msal.PublicClientApplication(client_id or lab.env["LAB_PUBLIC_CLIENT_ID"],
                                        **lab.msal_kwargs(tenant))


def check_app_token(lab, result, client_id):
    assert "access_token" in result, result
    c = claims(result["access_token"])
    assert c["aud"] == "https://outlook.office365.com"
    assert c["iss"] == f"https://sts.windows.net/{lab.tenant_id}/"
    assert c["tid"] == lab.tenant_id and c["appid"] == client_id
    assert c["idtyp"] == "app"
    assert set(c["roles"]) == {"IMAP.AccessAsApp", "POP.AccessAsApp", "SMTP.SendAsApp"}
    assert result["token_type"] == "Bearer" and 0 < result["expires_in"] <= 3600
    hdr = jwt.get_unverified_header(result["access_token"])
    assert hdr["alg"] == "RS256" and hdr["typ"] == "JWT" and hdr["kid"]


def test_client_secret(lab):
    cid = lab.env["O365_CLIENT_ID"]
    r = cca(lab, cid, lab.env["O365_CLIENT_SECRET"]).acquire_token_for_client(scopes=APP_SCOPE)
    check_app_token(lab, r, cid)
    assert claims(r["access_token"])["appidacr"] == "1"


def test_client_secret_tenant_by_domain(lab):
    cid = lab.env["O365_CLIENT_ID"]
    r = cca(lab, cid, lab.env["O365_CLIENT_SECRET"], tenant="contoso.test") \
        .acquire_token_for_client(scopes=APP_SCOPE)
    check_app_token(lab, r, cid)


def test_token_verifies_with_jwks(lab):
    r = cca(lab, lab.env["O365_CLIENT_ID"], lab.env["O365_CLIENT_SECRET"]) \
        .acquire_token_for_client(scopes=APP_SCOPE)
    s = lab.http_session()
    conf = s.get(lab.authority() + "/v2.0/.well-known/openid-configuration", timeout=5).json()
    for k in ("issuer", "token_endpoint", "authorization_endpoint",
              "device_authorization_endpoint", "jwks_uri"):
        assert conf[k].startswith(lab.env["O365_AUTHORITY_HOST"])
    jwks = jwt.PyJWKClient(conf["jwks_uri"])
    jwks.fetch_data = lambda: s.get(conf["jwks_uri"], timeout=5).json()  # lab CA
    key = jwt.PyJWKSet.from_dict(jwks.fetch_data())[jwt.get_unverified_header(r["access_token"])["kid"]]
    jwt.decode(r["access_token"], key.key, algorithms=["RS256"],
               audience="https://outlook.office365.com",
               issuer=f"https://sts.windows.net/{lab.tenant_id}/")


def _cert_key(path):
    text = open(path).read()
    return text[: text.index("-----BEGIN CERTIFICATE-----")]


def test_certificate_pem(lab):
    cid = lab.env["LAB_CERT_CLIENT_ID"]
    cred = {"private_key": _cert_key(lab.env["LAB_CERT_PATH"]),
            "thumbprint": lab.env["LAB_CERT_THUMBPRINT"]}
    r = cca(lab, cid, cred).acquire_token_for_client(scopes=APP_SCOPE)
    check_app_token(lab, r, cid)
    assert claims(r["access_token"])["appidacr"] == "2"


def test_certificate_pem_encrypted(lab):
    cid = lab.env["LAB_CERT_CLIENT_ID"]
    cred = {"private_key": _cert_key(lab.env["LAB_CERT_PATH_ENCRYPTED"]),
            "thumbprint": lab.env["LAB_CERT_THUMBPRINT"],
            "passphrase": lab.env["LAB_CERT_PASSWORD"]}
    r = cca(lab, cid, cred).acquire_token_for_client(scopes=APP_SCOPE)
    check_app_token(lab, r, cid)


def test_certificate_pfx(lab):
    cid = lab.env["LAB_CERT_CLIENT_ID"]
    cred = {"private_key_pfx_path": lab.env["LAB_CERT_PFX_PATH"],
            "passphrase": lab.env["LAB_CERT_PASSWORD"]}
    r = cca(lab, cid, cred).acquire_token_for_client(scopes=APP_SCOPE)
    check_app_token(lab, r, cid)


def test_certificate_wrong_key_rejected(lab):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    r = cca(lab, lab.env["LAB_CERT_CLIENT_ID"],
            {"private_key": other, "thumbprint": lab.env["LAB_CERT_THUMBPRINT"]}) \
        .acquire_token_for_client(scopes=APP_SCOPE)
    assert r.get("error") == "invalid_client" and 700027 in r["error_codes"], r


def _device_token(lab, user="adele@contoso.test", client_id=None, scopes=tuple(USER_SCOPES)):
    app = pca(lab, client_id)
    flow = app.initiate_device_flow(scopes=scopes)
    assert "user_code" in flow, flow
    lab.approve_device(flow["user_code"], user)
    result = app.acquire_token_by_device_flow(flow, exit_condition=lambda f: time.time() > f["expires_at"])
    return app, result


def check_user_token(lab, result, user, client_id=None):
    assert "access_token" in result, result
    c = claims(result["access_token"])
    assert c["aud"] == "https://outlook.office.com"
    assert c["upn"] == user and c["unique_name"] == user and c["idtyp"] == "user"
    assert c["appid"] == (client_id or lab.env["LAB_PUBLIC_CLIENT_ID"])
    assert "IMAP.AccessAsUser.All" in c["scp"].split()
    assert result.get("refresh_token") and result.get("id_token")
    assert "https://outlook.office.com/IMAP.AccessAsUser.All" in result["scope"].split()


def test_device_flow_pending_then_approved(lab):
    app = pca(lab)
    flow = app.initiate_device_flow(scopes=USER_SCOPES)
    assert flow["interval"] >= 1 and flow["verification_uri"].startswith("https://127.0.0.1")
    # raw poll before approval: authorization_pending (AADSTS70016)
    s = lab.http_session()
    r = s.post(lab.authority() + "/oauth2/v2.0/token", timeout=5, data={
        "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
        "client_id": lab.env["LAB_PUBLIC_CLIENT_ID"], "device_code": flow["device_code"]})
    assert r.status_code == 400 and r.json()["error"] == "authorization_pending"
    assert r.json()["error_codes"] == [70016]
    threading.Timer(0.5, lab.approve_device, (flow["user_code"], "adele@contoso.test")).start()
    result = app.acquire_token_by_device_flow(
        flow, exit_condition=lambda f: time.time() > f["expires_at"])
    check_user_token(lab, result, "adele@contoso.test")
    accounts = app.get_accounts()
    assert [a["username"] for a in accounts] == ["adele@contoso.test"]
    silent = app.acquire_token_silent(USER_SCOPES, account=accounts[0])
    assert silent and "access_token" in silent


def test_refresh_token_rotation(lab):
    app, first = _device_token(lab)
    check_user_token(lab, first, "adele@contoso.test")
    rt1 = first["refresh_token"]
    second = app.acquire_token_by_refresh_token(rt1, scopes=USER_SCOPES)
    check_user_token(lab, second, "adele@contoso.test")
    assert second["refresh_token"] != rt1
    # the old refresh token stays valid (concurrent refreshers never lose)
    third = app.acquire_token_by_refresh_token(rt1, scopes=USER_SCOPES)
    check_user_token(lab, third, "adele@contoso.test")


def test_refresh_token_expired_700082(lab):
    app, first = _device_token(lab, user="bob@contoso.test")
    assert lab.expire_refresh_tokens(refresh_token=first["refresh_token"]) == 1
    r = app.acquire_token_by_refresh_token(first["refresh_token"], scopes=USER_SCOPES)
    assert r["error"] == "invalid_grant" and r["error_codes"] == [700082], r
    assert r["error_description"].startswith("AADSTS700082:")


def test_refresh_token_other_tenant_7000012(lab):
    _unused, first = _device_token(lab)
    app01 = lab.tenant("tenant01.test")["apps"][0]
    # a contoso refresh token redeemed at tenant01's endpoint (by tenant01's own app,
    # so client authentication passes and the grant check answers)
    r = lab.http_session().post(lab.authority("tenant01.test") + "/oauth2/v2.0/token", timeout=5,
                                data={"grant_type": "refresh_token",
                                      "client_id": app01["client_id"],
                                      "client_secret": app01["secret"],
                                      "refresh_token": first["refresh_token"],
                                      "scope": " ".join(USER_SCOPES)})
    assert r.status_code == 400
    _err(r.json(), 7000012, "invalid_grant")


def test_auth_code_pkce(lab):
    app = pca(lab)
    flow = app.initiate_auth_code_flow(USER_SCOPES, redirect_uri=REDIRECT,
                                       login_hint="adele@contoso.test")
    assert flow["code_verifier"] and "code_challenge=" in flow["auth_uri"]
    r = lab.http_session().get(flow["auth_uri"], allow_redirects=False, timeout=5)
    assert r.status_code == 302
    loc = urlsplit(r.headers["Location"])
    assert f"{loc.scheme}://{loc.netloc}{loc.path}" == REDIRECT
    auth_response = dict(parse_qsl(loc.query))
    result = app.acquire_token_by_auth_code_flow(flow, auth_response)
    check_user_token(lab, result, "adele@contoso.test")
    assert [a["username"] for a in app.get_accounts()] == ["adele@contoso.test"]


def test_auth_code_pkce_wrong_verifier(lab):
    app = pca(lab)
    flow = app.initiate_auth_code_flow(USER_SCOPES, redirect_uri=REDIRECT,
                                       login_hint="adele@contoso.test")
    r = lab.http_session().get(flow["auth_uri"], allow_redirects=False, timeout=5)
    auth_response = dict(parse_qsl(urlsplit(r.headers["Location"]).query))
    flow["code_verifier"] = "x" * 43
    result = app.acquire_token_by_auth_code_flow(flow, auth_response)
    assert result.get("error") == "invalid_grant" and result["error_codes"] == [501481], result


# --------------------------------------------------------------------------- AADSTS errors
def _err(result, code, error=None):
    assert "access_token" not in result, result
    assert result["error_codes"] == [code], result
    assert result["error_description"].startswith(f"AADSTS{code}: ")
    for k in ("timestamp", "trace_id", "correlation_id"):
        assert result.get(k)
    if error:
        assert result["error"] == error


def test_aadsts90002_unknown_tenant(lab):
    s = lab.http_session()
    r = s.post(lab.authority("11111111-2222-3333-4444-555555555555") + "/oauth2/v2.0/token",
               data={"grant_type": "client_credentials", "client_id": lab.env["O365_CLIENT_ID"],
                     "client_secret": "x", "scope": APP_SCOPE[0]}, timeout=5)
    assert r.status_code == 400
    _err(r.json(), 90002, "invalid_request")
    r = s.get(lab.authority("nosuch.test") + "/v2.0/.well-known/openid-configuration", timeout=5)
    assert r.status_code == 400 and r.json()["error_codes"] == [90002]


def test_aadsts700016_unknown_client(lab):
    r = cca(lab, "99999999-9999-9999-9999-999999999999", "x").acquire_token_for_client(APP_SCOPE)
    _err(r, 700016, "unauthorized_client")


def test_aadsts7000215_bad_secret(lab):
    r = cca(lab, lab.env["O365_CLIENT_ID"], "wrong").acquire_token_for_client(APP_SCOPE)
    _err(r, 7000215, "invalid_client")


def test_aadsts7000222_expired_secret(lab):
    r = cca(lab, lab.env["LAB_APP_EXPIRED_CLIENT_ID"], lab.env["LAB_APP_EXPIRED_SECRET"]) \
        .acquire_token_for_client(APP_SCOPE)
    _err(r, 7000222, "invalid_client")


@pytest.mark.parametrize("scope", [["https://outlook.office365.com/IMAP.AccessAsApp"],
                                   ["https://outlook.office.com/Nope.Read"]])
def test_aadsts70011_invalid_scope(lab, scope):
    r = cca(lab, lab.env["O365_CLIENT_ID"], lab.env["O365_CLIENT_SECRET"]) \
        .acquire_token_for_client(scope)
    _err(r, 70011, "invalid_scope")


def test_aadsts70011_delegated_unknown_scope(lab):
    app = pca(lab)
    flow = app.initiate_device_flow(scopes=["https://outlook.office.com/Nope.Read"])
    assert flow.get("error_codes") == [70011], flow


def test_aadsts65001_consent_missing(lab):
    # the IMAP-only public client asks for SMTP.Send
    app = pca(lab, lab.env["LAB_PUBLIC_IMAP_ONLY_CLIENT_ID"])
    flow = app.initiate_device_flow(scopes=["https://outlook.office.com/SMTP.Send"])
    _err(flow, 65001, "invalid_grant")


def test_aadsts50076_mfa_required(lab):
    _unused, r = _device_token(lab, user=lab.env["LAB_MFA_MAILBOX"])
    _err(r, 50076, "invalid_grant")
    app = pca(lab)
    flow = app.initiate_auth_code_flow(USER_SCOPES, redirect_uri=REDIRECT,
                                       login_hint=lab.env["LAB_MFA_MAILBOX"])
    loc = lab.http_session().get(flow["auth_uri"], allow_redirects=False, timeout=5).headers["Location"]
    resp = dict(parse_qsl(urlsplit(loc).query))
    assert resp["error"] == "interaction_required" and "AADSTS50076" in resp["error_description"]


def test_aadsts7000012_grant_for_other_tenant(lab):
    # a device code issued in contoso redeemed at tenant01's endpoint
    app = pca(lab)
    flow = app.initiate_device_flow(scopes=USER_SCOPES)
    lab.approve_device(flow["user_code"], "adele@contoso.test")
    t01 = lab.tenant("tenant01.test")
    # redeem at tenant01 with tenant01's own (confidential) app so client auth passes
    app01 = t01["apps"][0]
    r = lab.http_session().post(lab.authority("tenant01.test") + "/oauth2/v2.0/token", timeout=5,
                                data={"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                                      "client_id": app01["client_id"],
                                      "client_secret": app01["secret"],
                                      "device_code": flow["device_code"]})
    _err(r.json(), 7000012, "invalid_grant")


def test_other_tenant_app(lab):
    t = lab.tenant("tenant03.test")
    app = t["apps"][0]
    r = cca(lab, app["client_id"], app["secret"], tenant=t["id"]).acquire_token_for_client(APP_SCOPE)
    assert "access_token" in r, r
    assert claims(r["access_token"])["tid"] == t["id"]


@pytest.mark.parametrize("ref", ["organizations", "common"])
def test_multi_tenant_authorities(lab, ref):
    """/organizations and /common resolve to the client's home tenant."""
    app, r = None, None
    app = pca(lab, tenant=ref)
    flow = app.initiate_device_flow(scopes=USER_SCOPES)
    lab.approve_device(flow["user_code"], "adele@contoso.test")
    r = app.acquire_token_by_device_flow(flow)
    check_user_token(lab, r, "adele@contoso.test")
    assert claims(r["access_token"])["tid"] == lab.tenant_id
    assert app.acquire_token_silent(USER_SCOPES, account=app.get_accounts()[0])
    c = cca(lab, lab.env["O365_CLIENT_ID"], lab.env["O365_CLIENT_SECRET"], tenant=ref)
    check_app_token(lab, c.acquire_token_for_client(APP_SCOPE), lab.env["O365_CLIENT_ID"])
