# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Token acquisition: one dispatcher, one small function per flow, msal underneath.

Order of work for every flow but ``access_token``: lock the cache file, look for an unexpired
token in it (no network, not even msal's authority discovery), and only then build an msal
application and ask Entra ID. msal is imported lazily so a task given an access token never
loads it.
"""

from __future__ import annotations

import json
import time
from typing import Callable, NamedTuple, Optional
from urllib.parse import parse_qs, urlparse

from ansible_collections.mailops.o365.plugins.module_utils._cache import PersistentCache
from ansible_collections.mailops.o365.plugins.module_utils._clouds import get_cloud, scopes_for
from ansible_collections.mailops.o365.plugins.module_utils._errors import O365Error, config_error, entra_error
from ansible_collections.mailops.o365.plugins.module_utils._options import AuthSettings

APP_ONLY_FLOWS = ("client_secret", "client_certificate")
TWO_PHASE_FLOWS = ("device_code", "auth_code")
# Tokens closer than this to expiry are not served from the cache (msal uses the same margin).
EXPIRY_MARGIN = 300


class TokenResult(NamedTuple):
    access_token: str
    token_type: str
    expires_on: Optional[int]
    scopes: list
    source: str            # "cache", "network" or "given"
    flow: str
    account: Optional[str]  # the user of a delegated token


class PendingFlow(NamedTuple):
    """Phase one of a two-phase flow: what the person must do, and the state for phase two."""
    flow: str
    instructions: dict
    state: dict


def resolve_flow(s: AuthSettings) -> str:
    """The flow ``auto`` stands for, from the credentials given."""
    if s.flow != "auto":
        return s.flow
    if s.access_token:
        return "access_token"
    if s.refresh_token:
        return "refresh_token"
    if s.client_certificate_path:
        return "client_certificate"
    if s.client_secret:
        return "client_secret"
    if s.username:
        return "cache"
    raise config_error("flow", "no credential given: set access_token, client_secret, client_certificate_path "
                       "or refresh_token, or username (with a token cache bootstrapped by the device_code flow)")


def token_scopes(s: AuthSettings, protocols, flow: str) -> list:
    if s.scopes:
        return list(s.scopes)
    return scopes_for(get_cloud(s.cloud), protocols, app_only=flow in APP_ONLY_FLOWS)


def acquire_token(s: AuthSettings, protocols, username: Optional[str] = None, flow_state: Optional[dict] = None,
                  auth_response: Optional[str] = None, redirect_uri: str = "http://localhost",
                  warn: Optional[Callable[[str], None]] = None, fresh: bool = False):
    """Return a TokenResult, or a PendingFlow for phase one of device_code / auth_code.

    ``fresh`` drops the cached access token first: for when a server refused a cached token
    (permissions granted since it was issued, or a token from another authority).
    """
    flow = resolve_flow(s)
    username = username or s.username
    if flow == "access_token":
        return TokenResult(s.access_token, "Bearer", None, list(s.scopes or []), "given", flow, username)
    scopes = token_scopes(s, protocols, flow)
    credential = _client_credential(s)  # a bad certificate fails here, before any network call
    with PersistentCache(s.token_cache_path, s.timeout, warn) as store:
        for entry in _cached_entries(store, s, scopes, flow, username):
            if fresh:
                store.remove("AccessToken", entry)
            elif _expires_on(entry) > time.time() + EXPIRY_MARGIN:
                return TokenResult(entry["secret"], entry.get("token_type", "Bearer"), _expires_on(entry),
                                   str(entry.get("target", "")).split(), "cache", flow, username)
        ctx = _FlowContext(s, store, scopes, flow, username, credential)
        from msal.exceptions import MsalError

        try:
            return _FLOWS[flow](ctx, flow_state=flow_state, auth_response=auth_response, redirect_uri=redirect_uri)
        except MsalError as exc:  # e.g. MsalServiceError for a 5xx/429 whose body is not an OAuth2 error
            raise _msal_error(exc, authority_host(s)) from None


def _msal_error(exc: Exception, host: str) -> O365Error:
    text = str(exc)[:300]
    category = "throttled" if "429" in text else "token"
    return O365Error(category, "Entra ID at %s failed the token request: %s" % (host, text),
                     hint="Entra ID answered with an HTTP error instead of an OAuth2 error (an outage or "
                          "throttling, after retries within timeout); try again later.")


def _client_credential(s: AuthSettings):
    if s.client_certificate_path:
        from ansible_collections.mailops.o365.plugins.module_utils._certificate import load_client_certificate

        return load_client_certificate(s.client_certificate_path, s.client_certificate_password)
    return s.client_secret


# --- cache lookup without msal's network-bound application object ---------------------------

def _environment(s: AuthSettings) -> str:
    """The cache's "environment": msal records the authority's lower-case host name, port dropped."""
    return urlparse(authority_host(s)).hostname or ""


def authority_host(s: AuthSettings) -> str:
    return (s.authority_host or get_cloud(s.cloud).authority_host).rstrip("/")


def _expires_on(entry: dict) -> int:
    try:
        return int(entry.get("expires_on", 0))
    except (TypeError, ValueError):
        return 0


def _cached_entries(store: PersistentCache, s: AuthSettings, scopes: list, flow: str,
                    username: Optional[str]) -> list:
    """The cached access tokens this request could use, read from the cache's JSON (msal's
    format: the same matching as msal's own search) without importing msal."""
    if flow in TWO_PHASE_FLOWS or (flow == "refresh_token" and not username):
        return []  # bootstrapping, or no way to tell whose token the refresh token is
    query = {"client_id": s.client_id, "environment": _environment(s)}
    if flow in APP_ONLY_FLOWS:
        query["realm"] = s.tenant_id
    else:
        account = _find_account(store, s, username)
        if account is None:
            return []
        query["home_account_id"] = account["home_account_id"]
    wanted = set(scopes)
    return [e for e in store.entries("AccessToken")
            if all(_same(e.get(k), v) for k, v in query.items()) and wanted <= set(str(e.get("target", "")).split())]


def _same(stored, wanted) -> bool:
    return isinstance(stored, str) and isinstance(wanted, str) and stored.lower() == wanted.lower()


def _find_account(store: PersistentCache, s: AuthSettings, username: Optional[str]) -> Optional[dict]:
    accounts = [a for a in store.entries("Account") if _same(a.get("environment"), _environment(s))]
    if username:
        accounts = [a for a in accounts if str(a.get("username", "")).lower() == username.lower()]
    # Without a username only an unambiguous cache can be used.
    return accounts[0] if len(accounts) == 1 or (username and accounts) else None


# --- msal applications ----------------------------------------------------------------------

class _FlowContext:
    def __init__(self, s: AuthSettings, store: PersistentCache, scopes: list, flow: str, username: Optional[str],
                 credential) -> None:
        self.s = s
        self.credential = credential
        self.store = store
        self.scopes = scopes
        self.flow = flow
        self.username = username

    def app(self, confidential: bool):
        import msal

        from ansible_collections.mailops.o365.plugins.module_utils._http import MsalHttpClient

        s = self.s
        http = MsalHttpClient(s)
        kwargs = dict(authority="%s/%s" % (authority_host(s), s.tenant_id), token_cache=self.store.msal_cache(),
                      http_client=http, instance_discovery=False if s.authority_host else None)
        try:
            if confidential:
                return msal.ConfidentialClientApplication(s.client_id, client_credential=self.credential, **kwargs)
            return msal.PublicClientApplication(s.client_id, **kwargs)
        except ValueError as exc:
            if http.last_error:  # e.g. AADSTS90002 from the tenant's discovery document
                raise entra_error(http.last_error) from None
            raise _discovery_error(exc, authority_host(s)) from None

    def result(self, response: dict) -> TokenResult:
        if "access_token" not in response:
            raise entra_error(response)
        claims = response.get("id_token_claims") or {}
        account = claims.get("preferred_username") or claims.get("upn") or self.username
        expires_in = int(response.get("expires_in") or 3600)
        source = "cache" if response.get("token_source") == "cache" else "network"
        return TokenResult(response["access_token"], response.get("token_type", "Bearer"),
                           int(time.time()) + expires_in, str(response.get("scope") or " ".join(self.scopes)).split(),
                           source, self.flow, account)


def _discovery_error(exc: ValueError, host: str) -> O365Error:
    text = str(exc)
    start = text.find("{")
    if start >= 0:
        try:
            return entra_error(json.loads(text[start:]))
        except ValueError:
            pass
    return O365Error("token", "Entra ID at %s gave no usable authority configuration: %s" % (host, text[:300]))


# --- one function per flow ------------------------------------------------------------------

def _client_credentials(ctx: _FlowContext, **_ignored) -> TokenResult:
    return ctx.result(ctx.app(confidential=True).acquire_token_for_client(ctx.scopes))


def _refresh_token(ctx: _FlowContext, **_ignored) -> TokenResult:
    app = ctx.app(confidential=ctx.credential is not None)
    silent = _silent(app, ctx)
    if silent is not None:
        return silent
    return ctx.result(app.acquire_token_by_refresh_token(ctx.s.refresh_token, ctx.scopes))


def _from_cached_account(ctx: _FlowContext, **_ignored) -> TokenResult:
    app = ctx.app(confidential=ctx.credential is not None)
    silent = _silent(app, ctx)
    if silent is None:
        who = ctx.username or "any account"
        raise O365Error("token", "no cached refresh token for %s in %s" % (who, ctx.s.token_cache_path),
                        hint="Bootstrap one with the device_code flow (playbooks/bootstrap_token.yml) "
                             "or give refresh_token.")
    return silent


def _silent(app, ctx: _FlowContext) -> Optional[TokenResult]:
    """Redeem the cached refresh token of the account, if there is one."""
    account = _find_account(ctx.store, ctx.s, ctx.username)
    if account is None:
        return None
    accounts = [a for a in app.get_accounts() if a.get("home_account_id") == account["home_account_id"]]
    if not accounts:
        return None
    response = app.acquire_token_silent_with_error(ctx.scopes, account=accounts[0])
    if response is None:
        return None
    return ctx.result(response)


def _device_code(ctx: _FlowContext, flow_state: Optional[dict] = None, **_ignored):
    app = ctx.app(confidential=False)
    if not flow_state:
        state = app.initiate_device_flow(scopes=ctx.scopes)
        if "user_code" not in state:
            raise entra_error(state)
        instructions = {k: state.get(k) for k in ("user_code", "verification_uri", "message", "expires_at")}
        return PendingFlow("device_code", instructions, state)
    deadline = min(float(flow_state.get("expires_at", 0)) or float("inf"), time.time() + ctx.s.timeout)
    response = app.acquire_token_by_device_flow(dict(flow_state), exit_condition=lambda f: time.time() >= deadline)
    if response.get("error") == "authorization_pending":
        raise O365Error("timeout", "the device code was not approved within %s s" % ctx.s.timeout,
                        hint="Open the verification URL, enter the user code, then run phase two again.")
    return ctx.result(response)


def _auth_code(ctx: _FlowContext, flow_state: Optional[dict] = None, auth_response: Optional[str] = None,
               redirect_uri: str = "http://localhost", **_ignored):
    app = ctx.app(confidential=ctx.credential is not None)
    if not flow_state:
        state = app.initiate_auth_code_flow(ctx.scopes, redirect_uri=redirect_uri, login_hint=ctx.username)
        return PendingFlow("auth_code", {"auth_uri": state["auth_uri"]}, state)
    if not auth_response:
        raise config_error("auth_response", "phase two of auth_code needs the URL the browser was redirected to")
    query = {k: v[0] for k, v in parse_qs(urlparse(auth_response).query).items()}
    if not query:
        raise config_error("auth_response", "the redirected URL carries no code or error")
    try:
        response = app.acquire_token_by_auth_code_flow(dict(flow_state), query)
    except ValueError as exc:  # state mismatch: msal raises instead of returning an error
        raise config_error("auth_response", "does not belong to this flow_state (%s)" % exc) from None
    return ctx.result(response)


_FLOWS = {
    "client_secret": _client_credentials,
    "client_certificate": _client_credentials,
    "refresh_token": _refresh_token,
    "cache": _from_cached_account,
    "device_code": _device_code,
    "auth_code": _auth_code,
}
