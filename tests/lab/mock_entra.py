"""Mock Microsoft Entra ID (Azure AD v2.0 endpoints) for the local M365 lab.

Serves HTTPS on 127.0.0.1 only. Signs real RS256 JWTs shaped like the access
tokens Microsoft issues for Exchange Online (outlook.office.com /
outlook.office365.com), so Dovecot/Postfix in the lab can verify them locally.

Started by tests/lab/labctl.py:  python mock_entra.py --state .lab
Reads .lab/identities.json and .lab/idp/*.pem written by labctl.

Test-only control surface under /_lab/ (see tests/lab/README.md).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import socket
import ssl
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt  # PyJWT
from cryptography import x509
from cryptography.hazmat.primitives import serialization

OUTLOOK_DELEGATED = "https://outlook.office.com"
OUTLOOK_APP = "https://outlook.office365.com"
OUTLOOK_RESOURCES = (OUTLOOK_DELEGATED, OUTLOOK_APP)
OIDC_SCOPES = {"openid", "profile", "offline_access", "email"}
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_uint(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def now() -> int:
    return int(time.time())


class AADError(Exception):
    """An error reply in Entra ID's JSON shape."""

    def __init__(self, status, error, code, message, suberror=None, headers=None):
        super().__init__(message)
        self.status = status
        self.error = error
        self.code = code
        self.message = message
        self.suberror = suberror
        self.headers = headers or {}

    def body(self):
        trace_id = str(uuid.uuid4())
        corr = str(uuid.uuid4())
        ts = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
        desc = (f"AADSTS{self.code}: {self.message} Trace ID: {trace_id} "
                f"Correlation ID: {corr} Timestamp: {ts}")
        body = {
            "error": self.error,
            "error_description": desc,
            "error_codes": [self.code],
            "timestamp": ts,
            "trace_id": trace_id,
            "correlation_id": corr,
            "error_uri": f"https://127.0.0.1/error?code={self.code}",
        }
        if self.suberror:
            body["suberror"] = self.suberror
        return body


class Directory:
    """Identities loaded from .lab/identities.json, indexed."""

    def __init__(self, data):
        self.data = data
        self.settings = data.get("settings", {})
        self.tenants = {}      # id -> tenant
        self.by_domain = {}    # domain -> tenant
        self.apps = {}         # client_id -> (tenant, app)
        self.users = {}        # address -> (tenant, mailbox)
        for t in data["tenants"]:
            self.tenants[t["id"]] = t
            self.by_domain[t["domain"].lower()] = t
            for app in t["apps"]:
                app["_cert_pub"] = None
                if app.get("cert_pem"):
                    cert = x509.load_pem_x509_certificate(app["cert_pem"].encode())
                    app["_cert_pub"] = cert.public_key()
                self.apps[app["client_id"]] = (t, app)
            for m in t["mailboxes"]:
                self.users[m["address"].lower()] = (t, m)

    def tenant(self, ref):
        if ref is None:
            return None
        ref = ref.lower()
        return self.tenants.get(ref) or self.by_domain.get(ref)


class State:
    def __init__(self, state_dir, base_url):
        self.state_dir = state_dir
        self.base_url = base_url.rstrip("/")
        with open(os.path.join(state_dir, "identities.json")) as f:
            self.dir = Directory(json.load(f))
        idp = os.path.join(state_dir, "idp")
        with open(os.path.join(idp, "signing-key.pem"), "rb") as f:
            self.key = serialization.load_pem_private_key(f.read(), None)
        with open(os.path.join(idp, "other-key.pem"), "rb") as f:
            self.other_key = serialization.load_pem_private_key(f.read(), None)
        with open(os.path.join(idp, "kid")) as f:
            self.kid = f.read().strip()
        self.lock = threading.Lock()
        self.refresh_tokens = {}   # rt -> dict
        self.device_codes = {}     # device_code -> dict
        self.user_codes = {}       # user_code -> device_code
        self.auth_codes = {}       # code -> dict
        self.faults = []           # list of dicts
        self.reset_counters()
        s = self.dir.settings
        self.at_lifetime = int(s.get("access_token_lifetime", 3600))
        self.rt_lifetime = int(s.get("refresh_token_lifetime", 7776000))
        self.dc_interval = int(s.get("device_code_interval", 1))
        self.dc_lifetime = int(s.get("device_code_lifetime", 900))

    # -- counters / faults -------------------------------------------------
    def reset_counters(self):
        with getattr(self, "lock", threading.Lock()):
            self.counters = {"endpoints": {}, "tenants": {}, "clients": {},
                             "grants": {}, "token_requests": 0, "errors": {}}

    def count(self, endpoint=None, tenant=None, client=None, grant=None):
        """endpoint: a real endpoint name (discovery, keys, token, devicecode, authorize)."""
        with self.lock:
            c = self.counters
            if endpoint:
                c["endpoints"][endpoint] = c["endpoints"].get(endpoint, 0) + 1
            if tenant:
                c["tenants"][tenant] = c["tenants"].get(tenant, 0) + 1
            if client:
                c["clients"][client] = c["clients"].get(client, 0) + 1
            if grant:
                c["grants"][grant] = c["grants"].get(grant, 0) + 1
            if endpoint == "token":
                c["token_requests"] += 1

    def count_error(self, code):
        with self.lock:
            k = str(code)
            self.counters["errors"][k] = self.counters["errors"].get(k, 0) + 1

    def take_fault(self, endpoint):
        with self.lock:
            for f in self.faults:
                if f["endpoint"] in (endpoint, "any") and f["count"] > 0:
                    f["count"] -= 1
                    fault = dict(f)
                    self.faults = [x for x in self.faults if x["count"] > 0]
                    return fault
        return None

    # -- signing -------------------------------------------------------------
    def jwks(self):
        pub = self.key.public_key().public_numbers()
        return {"keys": [{
            "kty": "RSA", "use": "sig", "kid": self.kid, "x5t": self.kid,
            "n": b64url_uint(pub.n), "e": b64url_uint(pub.e),
            "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
        }]}

    def sign(self, claims, other_key=False, headers=None):
        hdr = {"typ": "JWT", "kid": self.kid, "x5t": self.kid}
        if headers:
            hdr.update(headers)
        key = self.other_key if other_key else self.key
        return jwt.encode(claims, key, algorithm="RS256", headers=hdr)

    # -- token shapes --------------------------------------------------------
    def _common(self, tenant, app, lifetime):
        t = now()
        lifetime = self.at_lifetime if lifetime is None else int(lifetime)
        tid = tenant["id"]
        return {
            "iss": f"https://sts.windows.net/{tid}/",
            "iat": t - 300 if lifetime > 0 else t + lifetime - 600,
            "nbf": t - 300 if lifetime > 0 else t + lifetime - 600,
            "exp": t + lifetime,
            "aio": b64url(secrets.token_bytes(24)),
            "app_displayname": app["name"] if app else "lab-mint",
            "appid": app["client_id"] if app else str(uuid.UUID(int=0)),
            "idp": f"https://sts.windows.net/{tid}/",
            "rh": "0.AAAA" + b64url(secrets.token_bytes(12)) + ".",
            "tid": tid,
            "uti": b64url(secrets.token_bytes(16)),
            "ver": "1.0",
        }

    def app_token_claims(self, tenant, app, lifetime=None, appidacr="1"):
        c = self._common(tenant, app, lifetime)
        sp_oid = app.get("sp_object_id") if app else str(uuid.uuid4())
        c.update({
            "aud": OUTLOOK_APP,
            "appidacr": appidacr,
            "idtyp": "app",
            "oid": sp_oid,
            "roles": list(app.get("roles", [])) if app else
            ["IMAP.AccessAsApp", "POP.AccessAsApp", "SMTP.SendAsApp"],
            "sub": sp_oid,
            "wids": ["0997a1d0-0d1d-4acb-b408-d5ca73121e90"],
        })
        return c

    def user_token_claims(self, tenant, app, mailbox, scopes, lifetime=None):
        c = self._common(tenant, app, lifetime)
        name = mailbox.get("display_name") or mailbox["address"]
        given, _unused, family = name.partition(" ")
        c.update({
            "aud": OUTLOOK_DELEGATED,
            "acct": 0,
            "acr": "1",
            "amr": ["pwd"],
            "appidacr": "0" if not app or app.get("kind") == "public" else "1",
            "family_name": family or name,
            "given_name": given,
            "idtyp": "user",
            "ipaddr": "127.0.0.1",
            "name": name,
            "oid": mailbox["oid"],
            "puid": mailbox.get("puid", "10032000" + mailbox["oid"][:8].upper()),
            "scp": " ".join(scopes),
            "sid": str(uuid.uuid4()),
            "sub": b64url(hashlib.sha256((mailbox["oid"] + c["appid"]).encode()).digest()),
            "unique_name": mailbox["address"],
            "upn": mailbox["address"],
            "wids": ["b79fbf4d-3ef9-4689-8143-76b194e85509"],
        })
        return c

    def id_token(self, tenant, app, mailbox, nonce=None):
        t = now()
        c = {
            "aud": app["client_id"],
            "iss": f"{self.base_url}/{tenant['id']}/v2.0",
            "iat": t, "nbf": t, "exp": t + 3600,
            "name": mailbox.get("display_name") or mailbox["address"],
            "oid": mailbox["oid"],
            "preferred_username": mailbox["address"],
            "rh": "0.AAAA.",
            "sub": b64url(hashlib.sha256((mailbox["oid"] + app["client_id"]).encode()).digest()),
            "tid": tenant["id"],
            "uti": b64url(secrets.token_bytes(16)),
            "ver": "2.0",
        }
        if nonce:
            c["nonce"] = nonce
        return self.sign(c)


def consented_scopes(app):
    return list(app.get("delegated", []))


class Handler(BaseHTTPRequestHandler):
    server_version = "LabEntra/1.0"
    sys_version = ""
    protocol_version = "HTTP/1.1"

    @property
    def st(self) -> State:
        return self.server.state

    def log_message(self, fmt, *args):  # keep tokens out of logs: path only
        if self.server.quiet:
            return
        sys.stderr.write("%s %s\n" % (self.log_date_time_string(), fmt % args))

    # -- plumbing ------------------------------------------------------------
    def _send(self, status, body=None, headers=None, ctype="application/json; charset=utf-8"):
        data = b""
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-store, no-cache")
        self.send_header("Pragma", "no-cache")
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_error(self, e: AADError):
        self.st.count_error(e.code)
        self._send(e.status, e.body(), e.headers)

    def _read_body(self):
        # the body is always consumed up front (do_POST) so early errors never
        # leave bytes behind on a keep-alive connection
        if getattr(self, "_body", None) is None:
            n = int(self.headers.get("Content-Length") or 0)
            self._body = self.rfile.read(n) if n else b""
        return self._body

    def _form(self):
        raw = self._read_body().decode("utf-8", "replace")
        return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}

    def _json(self):
        raw = self._read_body()
        return json.loads(raw or b"{}")

    def _apply_fault(self, endpoint):
        f = self.st.take_fault(endpoint)
        if not f:
            return False
        if f.get("delay"):
            time.sleep(float(f["delay"]))
        status = f.get("status")
        if not status:
            return False
        headers = {}
        if f.get("retry_after") is not None:
            headers["Retry-After"] = int(f["retry_after"])
        if status == 429:
            e = AADError(429, "temporarily_unavailable", 50196,
                         "The server temporarily throttled the request.", headers=headers)
        else:
            e = AADError(int(status), "temporarily_unavailable", 90033,
                         "A transient error has occurred. Please try again.",
                         headers=headers)
        self._send_error(e)
        return True

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        try:
            self._route("GET")
        except AADError as e:
            self._send_error(e)
        except Exception as e:  # noqa: BLE001
            self._send(500, {"error": "server_error", "error_description": repr(e)})

    def do_POST(self):
        self._body = None
        self._read_body()
        try:
            self._route("POST")
        except AADError as e:
            self._send_error(e)
        except Exception as e:  # noqa: BLE001
            self._send(500, {"error": "server_error", "error_description": repr(e)})

    def _route(self, method):
        url = urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        if parts and parts[0] == "_lab":
            return self._lab(method, parts[1:], query)
        if parts == ["devicelogin"]:
            return self._send(200, b"Lab device login: approve with POST /_lab/device/approve\n",
                              ctype="text/plain")
        if len(parts) < 2:
            return self._send(404, {"error": "not_found"})
        tenant_ref, rest = parts[0], parts[1:]
        endpoint = {
            ("v2.0", ".well-known", "openid-configuration"): "discovery",
            ("discovery", "v2.0", "keys"): "keys",
            ("discovery", "keys"): "keys",
            ("oauth2", "v2.0", "token"): "token",
            ("oauth2", "v2.0", "devicecode"): "devicecode",
            ("oauth2", "v2.0", "authorize"): "authorize",
        }.get(tuple(rest))
        if endpoint is None:
            return self._send(404, {"error": "not_found"})
        if self._apply_fault(endpoint):
            return
        tenant = self.st.dir.tenant(tenant_ref)
        multi = tenant_ref.lower() in ("common", "organizations")
        if multi and endpoint not in ("discovery", "keys"):
            # lab apps are single-tenant: /common and /organizations resolve to the
            # home tenant of the client
            params = self._form() if method == "POST" else query
            entry = self.st.dir.apps.get(params.get("client_id") or "")
            if entry is None:
                self.st.count(endpoint, tenant_ref)
                raise AADError(400, "unauthorized_client", 700016,
                               f"Application with identifier '{params.get('client_id')}' was "
                               "not found in the directory.")
            tenant = entry[0]
        self.st.count(endpoint, tenant["domain"] if tenant else tenant_ref)
        if endpoint == "keys":
            return self._send(200, self.st.jwks())
        if multi and endpoint == "discovery":
            return self._send(200, self._discovery(
                {"id": tenant_ref.lower()}, issuer=f"{self.st.base_url}/{{tenantid}}/v2.0"))
        if tenant is None:
            # Entra answers discovery of an unknown tenant with error=invalid_tenant
            raise AADError(400, "invalid_tenant" if endpoint == "discovery" else "invalid_request",
                           90002,
                           f"Tenant '{tenant_ref}' not found. Check to make sure you have the "
                           "correct tenant ID and are signing into the correct cloud.")
        if endpoint == "discovery":
            return self._send(200, self._discovery(tenant))
        if endpoint == "authorize" and method == "GET":
            return self._authorize(tenant, query)
        if method != "POST":
            return self._send(405, {"error": "method_not_allowed"})
        form = self._form()
        if endpoint == "token":
            return self._token(tenant, tenant_ref, form)
        if endpoint == "devicecode":
            return self._devicecode(tenant, form)
        return self._send(405, {"error": "method_not_allowed"})

    def _discovery(self, tenant, issuer=None):
        b = f"{self.st.base_url}/{tenant['id']}"
        return {
            "token_endpoint": f"{b}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post", "private_key_jwt", "client_secret_basic"],
            "jwks_uri": f"{b}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": issuer or f"{b}/v2.0",
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{b}/openid/userinfo",
            "authorization_endpoint": f"{b}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{b}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{b}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "tid", "oid",
                                 "preferred_username", "name"],
            "kerberos_endpoint": f"{b}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "lab.test",
            "cloud_graph_host_name": "graph.lab.test",
            "msgraph_host": "graph.lab.test",
            "rbac_url": "https://pas.lab.test",
        }

    # -- client authentication ----------------------------------------------
    def _client(self, tenant, form, require_confidential):
        client_id = form.get("client_id")
        auth = self.headers.get("Authorization", "")
        secret = form.get("client_secret")
        if auth.lower().startswith("basic "):
            try:
                cid, _unused, sec = base64.b64decode(auth[6:]).decode().partition(":")
                client_id = client_id or cid
                secret = sec
            except Exception:  # noqa: BLE001
                pass
        if not client_id:
            raise AADError(400, "invalid_request", 900144,
                           "The request body must contain the following parameter: 'client_id'.")
        entry = self.st.dir.apps.get(client_id)
        if entry is None:
            raise AADError(400, "unauthorized_client", 700016,
                           f"Application with identifier '{client_id}' was not found in the "
                           f"directory '{tenant['display_name']}'. This can happen if the "
                           "application has not been installed by the administrator of the "
                           "tenant or consented to by any user in the tenant. You may have "
                           "sent your authentication request to the wrong tenant.")
        app_tenant, app = entry
        if app_tenant["id"] != tenant["id"]:
            raise AADError(400, "unauthorized_client", 700016,
                           f"Application with identifier '{client_id}' was not found in the "
                           f"directory '{tenant['display_name']}'. You may have sent your "
                           "authentication request to the wrong tenant.")
        self.st.count(client=client_id)
        assertion = form.get("client_assertion")
        if app.get("kind") == "public":
            if secret or assertion:
                raise AADError(401, "invalid_client", 700025,
                               "Client is public so neither 'client_assertion' nor "
                               "'client_secret' should be presented.")
            if require_confidential:
                raise AADError(401, "invalid_client", 7000218,
                               "The request body must contain the following parameter: "
                               "'client_assertion' or 'client_secret'.")
            return app, "0"
        if assertion:
            self._check_assertion(tenant, app, form)
            return app, "2"
        if secret is None:
            raise AADError(401, "invalid_client", 7000218,
                           "The request body must contain the following parameter: "
                           "'client_assertion' or 'client_secret'.")
        if not app.get("secret") or not secrets.compare_digest(secret, app["secret"]):
            raise AADError(401, "invalid_client", 7000215,
                           "Invalid client secret provided. Ensure the secret being sent in "
                           "the request is the client secret value, not the client secret ID, "
                           f"for a secret added to app '{client_id}'.")
        if app.get("secret_expired"):
            raise AADError(401, "invalid_client", 7000222,
                           f"The provided client secret keys for app '{client_id}' are "
                           "expired. Visit the Azure portal to create new keys for your app: "
                           "https://aka.ms/NewClientSecret, or consider using certificate "
                           "credentials for added security: https://aka.ms/certCreds.")
        return app, "1"

    def _check_assertion(self, tenant, app, form):
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise AADError(400, "invalid_request", 50027,
                           "Invalid client_assertion_type.")
        if app.get("_cert_pub") is None:
            raise AADError(401, "invalid_client", 700027,
                           "Client assertion failed signature validation: no certificate "
                           "is registered for this application.")
        token = form["client_assertion"]
        try:
            hdr = jwt.get_unverified_header(token)
            claims = jwt.decode(token, app["_cert_pub"],
                                algorithms=["RS256", "PS256"],
                                options={"verify_aud": False, "require": ["exp", "iss", "sub", "aud"]},
                                leeway=300)
        except jwt.ExpiredSignatureError:
            raise AADError(401, "invalid_client", 700024,
                           "Client assertion is not within its valid time range.") from None
        except jwt.InvalidTokenError as e:
            raise AADError(401, "invalid_client", 700027,
                           f"Client assertion failed signature validation. ({e.__class__.__name__})") from None
        thumbs = {app.get("cert_x5t"), app.get("cert_x5t_s256")}
        presented = {str(hdr.get(k, "")).rstrip("=") for k in ("x5t", "x5t#S256")}
        if not thumbs & presented:
            raise AADError(401, "invalid_client", 700027,
                           "Client assertion contains an invalid signature. Key was not found.")
        if claims.get("iss") != app["client_id"] or claims.get("sub") != app["client_id"]:
            raise AADError(401, "invalid_client", 700023,
                           "Client assertion audience/issuer claim does not match: 'iss' and "
                           "'sub' must be the client_id.")
        aud = claims.get("aud")
        auds = aud if isinstance(aud, list) else [aud]
        ok = [f"{self.st.base_url}/{ref}/oauth2/v2.0/token" for ref in (tenant["id"], tenant["domain"])]
        ok += [f"{self.st.base_url}/{ref}/v2.0" for ref in (tenant["id"], tenant["domain"])]
        if not any(a in ok for a in auds):
            raise AADError(401, "invalid_client", 700021,
                           f"Client assertion audience claim does not match Realm issuer. "
                           f"Review the documentation at https://aka.ms/certCreds . {auds}")

    # -- scopes ----------------------------------------------------------------
    @staticmethod
    def _split_scopes(scope):
        return [s for s in (scope or "").split() if s]

    def _delegated_scopes(self, app, scope_str):
        """Validate requested delegated scopes; return (scp list, echoed scope list)."""
        requested = self._split_scopes(scope_str)
        resource_scopes = [s for s in requested if s not in OIDC_SCOPES]
        if not resource_scopes:
            raise AADError(400, "invalid_scope", 70011,
                           "The provided value for the input parameter 'scope' is not valid. "
                           "The scope 'openid profile offline_access' does not contain a "
                           "resource scope.")
        consented = consented_scopes(app)
        wanted = []
        for s in resource_scopes:
            res, _unused, short = s.rpartition("/")
            if res not in OUTLOOK_RESOURCES:
                if res.startswith("http"):
                    raise AADError(400, "invalid_resource", 500011,
                                   f"The resource principal named {res} was not found in the "
                                   "tenant. This can happen if the application has not been "
                                   "installed by the administrator of the tenant.")
                raise AADError(400, "invalid_scope", 70011,
                               f"The provided value for the input parameter 'scope' is not "
                               f"valid. The scope '{s}' is not valid.")
            if short == ".default":
                wanted.extend(consented)
                continue
            if short not in ("IMAP.AccessAsUser.All", "POP.AccessAsUser.All", "SMTP.Send",
                             "EWS.AccessAsUser.All", "Mail.Read", "Mail.Send", "User.Read"):
                raise AADError(400, "invalid_scope", 70011,
                               f"The provided value for the input parameter 'scope' is not "
                               f"valid. The scope '{s}' does not exist.")
            if short not in consented:
                raise AADError(400, "invalid_grant", 65001,
                               f"The user or administrator has not consented to use the "
                               f"application with ID '{app['client_id']}' named "
                               f"'{app['name']}'. Send an interactive authorization request "
                               "for this user and resource.", suberror="consent_required")
            wanted.append(short)
        if not wanted:
            raise AADError(400, "invalid_grant", 65001,
                           f"The user or administrator has not consented to use the "
                           f"application with ID '{app['client_id']}'.", suberror="consent_required")
        # Entra puts every consented scope of the resource into scp, in a stable order
        scp = sorted(set(consented))
        echo = [f"{OUTLOOK_DELEGATED}/{s}" for s in scp]
        return scp, echo, requested

    # -- grants ----------------------------------------------------------------
    def _token(self, tenant, tenant_ref, form):
        grant = form.get("grant_type")
        self.st.count(grant=grant or "-")
        if grant == "client_credentials":
            return self._grant_client_credentials(tenant, form)
        if grant == "refresh_token":
            return self._grant_refresh(tenant, form)
        if grant == DEVICE_GRANT:
            return self._grant_device(tenant, form)
        if grant == "authorization_code":
            return self._grant_auth_code(tenant, form)
        if not grant:
            raise AADError(400, "invalid_request", 900144,
                           "The request body must contain the following parameter: 'grant_type'.")
        raise AADError(400, "unsupported_grant_type", 70003,
                       f"The app requested an unsupported grant type '{grant}'.")

    def _grant_client_credentials(self, tenant, form):
        app, acr = self._client(tenant, form, require_confidential=True)
        scopes = self._split_scopes(form.get("scope"))
        if not scopes:
            raise AADError(400, "invalid_request", 900144,
                           "The request body must contain the following parameter: 'scope'.")
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            raise AADError(400, "invalid_scope", 70011,
                           "The provided request must include a 'scope' input parameter. "
                           "The provided value for the input parameter 'scope' is not valid. "
                           f"The scope {' '.join(scopes)} is not valid. Client credential "
                           "flows must have a scope value with /.default suffixed to the "
                           "resource identifier (application ID URI).")
        resource = scopes[0][: -len("/.default")]
        if resource not in OUTLOOK_RESOURCES:
            raise AADError(400, "invalid_resource", 500011,
                           f"The resource principal named {resource} was not found in the "
                           f"tenant named {tenant['display_name']}.")
        if app.get("kind") != "app" or not app.get("roles"):
            raise AADError(400, "invalid_grant", 65001,
                           f"The application '{app['name']}' has no admin-consented application "
                           "permissions for Office 365 Exchange Online.")
        claims = self.st.app_token_claims(tenant, app, appidacr=acr)
        claims["aud"] = resource if resource == OUTLOOK_APP else OUTLOOK_APP
        at = self.st.sign(claims)
        exp = claims["exp"] - now()
        return self._send(200, {"token_type": "Bearer", "expires_in": exp,
                                "ext_expires_in": exp, "access_token": at})

    def _user(self, address):
        entry = self.st.dir.users.get((address or "").lower())
        if entry is None:
            raise AADError(400, "invalid_grant", 50034,
                           f"The user account {address} does not exist in the directory.")
        return entry

    def _delegated_response(self, tenant, app, mailbox, scopes_str, nonce=None,
                            rt_family=None):
        if mailbox.get("mfa_required"):
            raise AADError(400, "invalid_grant", 50076,
                           "Due to a configuration change made by your administrator, or "
                           "because you moved to a new location, you must use multi-factor "
                           "authentication to access 'Office 365 Exchange Online'.",
                           suberror="basic_action")
        if mailbox.get("shared"):
            raise AADError(400, "invalid_grant", 50057,
                           "The user account is disabled (shared mailbox: no sign-in).")
        scp, echo, requested = self._delegated_scopes(app, scopes_str)
        claims = self.st.user_token_claims(tenant, app, mailbox, scp)
        body = {"token_type": "Bearer", "scope": " ".join(echo),
                "expires_in": claims["exp"] - now(), "ext_expires_in": claims["exp"] - now(),
                "access_token": self.st.sign(claims)}
        if "offline_access" in requested or rt_family is not None:
            rt = "1.AAAA" + b64url(secrets.token_bytes(48))
            with self.st.lock:
                self.st.refresh_tokens[rt] = {
                    "tenant": tenant["id"], "client_id": app["client_id"],
                    "user": mailbox["address"], "scope": scopes_str,
                    "exp": now() + self.st.rt_lifetime,
                }
            body["refresh_token"] = rt
        # Always an id_token: msal needs it (or client_info) to find the account, asked for or not.
        body["id_token"] = self.st.id_token(tenant, app, mailbox, nonce)
        body["client_info"] = b64url(json.dumps(
            {"uid": mailbox["oid"], "utid": tenant["id"]}).encode())
        return self._send(200, body)

    def _grant_refresh(self, tenant, form):
        app, _unused = self._client(tenant, form, require_confidential=False)
        rt = form.get("refresh_token")
        if not rt:
            raise AADError(400, "invalid_request", 900144,
                           "The request body must contain the following parameter: "
                           "'refresh_token'.")
        with self.st.lock:
            info = self.st.refresh_tokens.get(rt)
        if info is None:
            raise AADError(400, "invalid_grant", 9002313,
                           "Invalid request. Request is malformed or invalid.")
        if info["tenant"] != tenant["id"]:
            raise AADError(400, "invalid_grant", 7000012,
                           "The grant was obtained for a different tenant.")
        if info["client_id"] != app["client_id"]:
            raise AADError(400, "invalid_grant", 70000,
                           "Provided grant is invalid or malformed: the refresh token was "
                           "issued to a different client id.")
        if info["exp"] <= now():
            raise AADError(400, "invalid_grant", 700082,
                           "The refresh token has expired due to inactivity. The token was "
                           "issued on 2024-01-01T00:00:00.0000000Z and was inactive for "
                           "90.00:00:00.")
        _unused, mailbox = self._user(info["user"])
        scope = form.get("scope") or info["scope"]
        return self._delegated_response(tenant, app, mailbox, scope, rt_family=rt)

    def _devicecode(self, tenant, form):
        client_id = form.get("client_id")
        entry = self.st.dir.apps.get(client_id or "")
        if entry is None or entry[0]["id"] != tenant["id"]:
            raise AADError(400, "unauthorized_client", 700016,
                           f"Application with identifier '{client_id}' was not found in the "
                           f"directory '{tenant['display_name']}'.")
        self.st.count(client=client_id)
        _unused, app = entry
        self._delegated_scopes(app, form.get("scope"))  # validate early like Entra
        device_code = "DAQABAAEAAA" + b64url(secrets.token_bytes(40))
        user_code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _unused in range(9))
        verification = f"{self.st.base_url}/devicelogin"
        with self.st.lock:
            self.st.device_codes[device_code] = {
                "tenant": tenant["id"], "client_id": client_id, "scope": form.get("scope", ""),
                "user_code": user_code, "user": None, "exp": now() + self.st.dc_lifetime}
            self.st.user_codes[user_code] = device_code
        return self._send(200, {
            "user_code": user_code, "device_code": device_code,
            "verification_uri": verification, "expires_in": self.st.dc_lifetime,
            "interval": self.st.dc_interval,
            "message": f"To sign in, use a web browser to open the page {verification} and "
                       f"enter the code {user_code} to authenticate."})

    def _grant_device(self, tenant, form):
        app, _unused = self._client(tenant, form, require_confidential=False)
        code = form.get("device_code")
        with self.st.lock:
            info = self.st.device_codes.get(code or "")
        if info is None:
            raise AADError(400, "invalid_grant", 70000,
                           "Provided grant is invalid or malformed.")
        if info["tenant"] != tenant["id"]:
            raise AADError(400, "invalid_grant", 7000012,
                           "The grant was obtained for a different tenant.")
        if info["exp"] <= now():
            raise AADError(400, "expired_token", 70020,
                           "The provided value for the input parameter 'device_code' is not "
                           "valid. This device code has expired.")
        if info["user"] is None:
            raise AADError(400, "authorization_pending", 70016,
                           "OAuth 2.0 device flow error. Authorization is pending. Continue "
                           "polling.")
        with self.st.lock:
            self.st.device_codes.pop(code, None)
            self.st.user_codes.pop(info["user_code"], None)
        _unused, mailbox = self._user(info["user"])
        return self._delegated_response(tenant, app, mailbox, info["scope"])

    def _authorize(self, tenant, q):
        client_id = q.get("client_id")
        entry = self.st.dir.apps.get(client_id or "")
        redirect_uri = q.get("redirect_uri")
        if entry is None or entry[0]["id"] != tenant["id"] or not redirect_uri:
            raise AADError(400, "unauthorized_client", 700016,
                           f"Application with identifier '{client_id}' was not found in the "
                           f"directory '{tenant['display_name']}'.")
        _unused, app = entry
        self.st.count(client=client_id)
        state = q.get("state")

        def redirect(params):
            if state is not None:
                params["state"] = state
            sep = "&" if "?" in redirect_uri else "?"
            self._send(302, b"", headers={"Location": redirect_uri + sep + urlencode(params)},
                       ctype="text/html")

        hint = q.get("login_hint")
        if not hint:
            return self._send(400, {"error": "invalid_request", "error_description":
                                    "The lab has no sign-in UI: pass login_hint=<mailbox>."})
        entry_u = self.st.dir.users.get(hint.lower())
        if entry_u is None or entry_u[0]["id"] != tenant["id"]:
            return redirect({"error": "invalid_request", "error_description":
                             f"AADSTS50034: The user account {hint} does not exist in the "
                             f"{tenant['domain']} directory."})
        _unused, mailbox = entry_u
        try:
            self._delegated_scopes(app, q.get("scope"))
            if mailbox.get("mfa_required"):
                raise AADError(400, "interaction_required", 50076,
                               "Due to a configuration change made by your administrator, "
                               "you must use multi-factor authentication.")
        except AADError as e:
            self.st.count_error(e.code)
            return redirect({"error": e.error, "error_description": e.body()["error_description"],
                             "error_codes": str(e.code)})
        if q.get("code_challenge") and q.get("code_challenge_method", "plain") != "S256":
            return redirect({"error": "invalid_request",
                             "error_description": "AADSTS501491: code_challenge_method must be S256."})
        code = "0.AAAA" + b64url(secrets.token_bytes(48))
        with self.st.lock:
            self.st.auth_codes[code] = {
                "tenant": tenant["id"], "client_id": client_id, "user": mailbox["address"],
                "scope": q.get("scope", ""), "redirect_uri": redirect_uri,
                "challenge": q.get("code_challenge"), "nonce": q.get("nonce"),
                "exp": now() + 600}
        return redirect({"code": code, "session_state": str(uuid.uuid4())})

    def _grant_auth_code(self, tenant, form):
        app, _unused = self._client(tenant, form, require_confidential=False)
        code = form.get("code")
        with self.st.lock:
            info = self.st.auth_codes.get(code or "")
        if info is None:
            raise AADError(400, "invalid_grant", 70008,
                           "The provided authorization code or refresh token has expired or "
                           "was already redeemed.")
        if info["tenant"] != tenant["id"]:
            raise AADError(400, "invalid_grant", 7000012,
                           "The grant was obtained for a different tenant.")
        if info["client_id"] != app["client_id"]:
            raise AADError(400, "invalid_grant", 70000,
                           "The authorization code was issued to a different client.")
        if form.get("redirect_uri") != info["redirect_uri"]:
            raise AADError(400, "invalid_grant", 50148,
                           "The redirect_uri does not match the one used in the authorization "
                           "request.")
        if info["challenge"]:
            verifier = form.get("code_verifier") or ""
            if b64url(hashlib.sha256(verifier.encode()).digest()) != info["challenge"]:
                raise AADError(400, "invalid_grant", 501481,
                               "The Code_Verifier does not match the code_challenge supplied "
                               "in the authorization request.")
        with self.st.lock:
            self.st.auth_codes.pop(code, None)
        _unused, mailbox = self._user(info["user"])
        scope = form.get("scope") or info["scope"]
        return self._delegated_response(tenant, app, mailbox, scope, nonce=info["nonce"])

    # -- lab control surface -----------------------------------------------------
    def _lab(self, method, parts, query):
        st = self.st
        path = "/".join(parts)
        if path == "health":
            return self._send(200, {"status": "ok", "pid": os.getpid(), "kid": st.kid})
        if path == "counters" and method == "GET":
            with st.lock:
                return self._send(200, json.loads(json.dumps(st.counters)))
        if path == "counters/reset" and method == "POST":
            self._read_body()
            st.reset_counters()
            return self._send(200, {"status": "reset"})
        if path == "faults" and method == "GET":
            with st.lock:
                return self._send(200, {"faults": list(st.faults)})
        if path == "faults" and method == "POST":
            req = self._json()
            f = {"endpoint": req.get("endpoint", "token"), "status": req.get("status"),
                 "retry_after": req.get("retry_after"), "delay": req.get("delay", 0),
                 "count": int(req.get("count", 1))}
            if f["endpoint"] not in ("token", "devicecode", "authorize", "discovery", "keys", "any"):
                return self._send(400, {"error": "bad endpoint"})
            with st.lock:
                st.faults.append(f)
            return self._send(200, {"status": "armed", "fault": f})
        if path == "faults/clear" and method == "POST":
            self._read_body()
            with st.lock:
                st.faults = []
            return self._send(200, {"status": "cleared"})
        if path == "mint" and method == "POST":
            return self._mint(self._json())
        if path == "device/approve" and method == "POST":
            req = self._json()
            with st.lock:
                dc = st.user_codes.get(req.get("user_code", ""))
                info = st.device_codes.get(dc) if dc else None
                if info is None:
                    return self._send(404, {"error": "unknown user_code"})
                user = (req.get("user") or "").lower()
                if user not in st.dir.users:
                    return self._send(404, {"error": "unknown user"})
                info["user"] = user
            return self._send(200, {"status": "approved"})
        if path == "refresh_tokens/expire" and method == "POST":
            req = self._json()
            n = 0
            with st.lock:
                for rt, info in st.refresh_tokens.items():
                    if (req.get("refresh_token") in (None, rt)) and \
                       (req.get("user") in (None, info["user"])):
                        info["exp"] = now() - 1
                        n += 1
            return self._send(200, {"expired": n})
        if path == "settings" and method == "POST":
            req = self._json()
            with st.lock:
                for k in ("at_lifetime", "rt_lifetime", "dc_interval"):
                    if k in req:
                        setattr(st, k, int(req[k]))
            return self._send(200, {k: getattr(st, k) for k in
                                    ("at_lifetime", "rt_lifetime", "dc_interval")})
        return self._send(404, {"error": "not_found", "path": path})

    def _mint(self, req):
        st = self.st
        kind = req.get("kind", "app")
        tenant = st.dir.tenant(req.get("tenant"))
        user = (req.get("user") or "").lower() or None
        if tenant is None and user and user in st.dir.users:
            tenant = st.dir.users[user][0]
        if tenant is None:
            tenant = st.dir.tenant(st.dir.data["main_tenant"])
        app = None
        if req.get("client_id"):
            entry = st.dir.apps.get(req["client_id"])
            app = entry[1] if entry else {"client_id": req["client_id"], "name": "unknown",
                                          "roles": ["IMAP.AccessAsApp", "POP.AccessAsApp",
                                                    "SMTP.SendAsApp"],
                                          "delegated": ["IMAP.AccessAsUser.All",
                                                        "POP.AccessAsUser.All", "SMTP.Send"]}
        if kind == "app":
            if app is None:
                app = next(a for a in tenant["apps"] if a.get("kind") == "app"
                           and a.get("mailboxes") == "all" and not a.get("secret_expired"))
            claims = st.app_token_claims(tenant, app, lifetime=req.get("lifetime"))
        elif kind == "delegated":
            if app is None:
                app = next(a for a in tenant["apps"] if a.get("kind") == "public")
            if user and user in st.dir.users:
                mailbox = st.dir.users[user][1]
            else:
                mailbox = {"address": user or "nobody@" + tenant["domain"],
                           "oid": str(uuid.uuid4())}
            claims = st.user_token_claims(tenant, app, mailbox,
                                          sorted(app.get("delegated", [])),
                                          lifetime=req.get("lifetime"))
        else:
            return self._send(400, {"error": "kind must be app or delegated"})
        for k, v in (req.get("claims") or {}).items():
            if v is None:
                claims.pop(k, None)
            else:
                claims[k] = v
        headers = req.get("headers")
        token = st.sign(claims, other_key=bool(req.get("sign_with_other_key")), headers=headers)
        return self._send(200, {"access_token": token, "claims": claims,
                                "expires_in": claims.get("exp", 0) - now()})


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256
    tls = None

    def finish_request(self, request, client_address):
        # TLS handshake in the worker thread, not in the accept loop
        try:
            request.settimeout(30)
            # headers and body go out in separate writes: without NODELAY, Nagle +
            # delayed ACK cost ~40 ms per keep-alive request
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tls_sock = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        try:
            self.RequestHandlerClass(tls_sock, client_address, self)
        finally:
            try:
                tls_sock.close()
            except OSError:
                pass


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--state", required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=int(os.environ.get("LAB_IDP_PORT", 18443)))
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost"):
        ap.error("the lab binds 127.0.0.1 only")
    state_dir = os.path.abspath(args.state)
    base_url = f"https://127.0.0.1:{args.port}"
    srv = Server((args.host, args.port), Handler)
    srv.state = State(state_dir, base_url)
    srv.quiet = not args.verbose
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(os.path.join(state_dir, "pki", "server-chain.pem"),
                        os.path.join(state_dir, "pki", "server.key"))
    srv.tls = ctx
    print(f"mock entra listening on {base_url}", flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
