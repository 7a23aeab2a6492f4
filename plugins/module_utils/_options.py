# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The shared authentication options: one argument spec, one validated settings object.

Documented once in ``plugins/doc_fragments/auth.py``. Validation happens here, before any
network call, and every message starts with the option's name and never holds a secret.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple, Optional

from ansible.module_utils.basic import env_fallback

from ansible_collections.mailops.o365.plugins.module_utils._clouds import CLOUDS
from ansible_collections.mailops.o365.plugins.module_utils._errors import config_error

FLOWS = ("auto", "access_token", "client_secret", "client_certificate", "refresh_token", "cache",
         "device_code", "auth_code")


def _env(name: str) -> dict:
    return {"fallback": (env_fallback, [name])}


AUTH_ARGUMENT_SPEC = {
    "tenant_id": dict(type="str", **_env("O365_TENANT_ID")),
    "client_id": dict(type="str", **_env("O365_CLIENT_ID")),
    "client_secret": dict(type="str", no_log=True, **_env("O365_CLIENT_SECRET")),
    "client_certificate_path": dict(type="path", **_env("O365_CLIENT_CERTIFICATE_PATH")),
    "client_certificate_password": dict(type="str", no_log=True, **_env("O365_CLIENT_CERTIFICATE_PASSWORD")),
    "refresh_token": dict(type="str", no_log=True, **_env("O365_REFRESH_TOKEN")),
    "access_token": dict(type="str", no_log=True, **_env("O365_ACCESS_TOKEN")),
    "username": dict(type="str", **_env("O365_USERNAME")),
    "cloud": dict(type="str", choices=sorted(CLOUDS), **_env("O365_CLOUD")),
    "authority_host": dict(type="str", **_env("O365_AUTHORITY_HOST")),
    "token_cache_path": dict(type="path", no_log=False, **_env("O365_TOKEN_CACHE_PATH")),
    "ca_path": dict(type="path", **_env("O365_CA_PATH")),
    "validate_certs": dict(type="bool", default=True),
    "timeout": dict(type="float", default=30.0),
    "flow": dict(type="str", default="auto", choices=list(FLOWS)),
    "scopes": dict(type="list", elements="str"),
}

# Patterns are shared with meta/tenant_settings.schema.json; always use fullmatch (a "$" alone
# would accept a trailing newline).
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
DOMAIN_RE = re.compile(r"^(?=.{4,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")
_WELL_KNOWN_TENANTS = ("organizations", "common")
HOST_URL_RE = re.compile(r"^https://[A-Za-z0-9.\-\[\]:]+(?::\d{1,5})?/?$")


def default_cache_path() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mailops.o365", "token_cache.json")


class AuthSettings(NamedTuple):
    """Validated authentication settings; build it with ``from_params``."""
    tenant_id: Optional[str]
    client_id: Optional[str]
    client_secret: Optional[str]
    client_certificate_path: Optional[str]
    client_certificate_password: Optional[str]
    refresh_token: Optional[str]
    access_token: Optional[str]
    username: Optional[str]
    cloud: str
    authority_host: Optional[str]
    token_cache_path: str
    ca_path: Optional[str]
    validate_certs: bool
    timeout: float
    flow: str
    scopes: Optional[list]

    @classmethod
    def from_params(cls, params: dict) -> AuthSettings:
        # An empty value (e.g. an AWX credential field left blank) means "not set".
        values = {name: None if params.get(name) == "" else params.get(name) for name in cls._fields}
        values["cloud"] = values["cloud"] or "public"
        values["flow"] = values["flow"] or "auto"
        values["validate_certs"] = True if values["validate_certs"] is None else bool(values["validate_certs"])
        values["timeout"] = 30.0 if values["timeout"] is None else float(values["timeout"])
        values["token_cache_path"] = values["token_cache_path"] or default_cache_path()
        settings = cls(**values)
        settings.validate()
        return settings

    @property
    def uses_network_token(self) -> bool:
        return self.flow != "access_token" and not (self.flow == "auto" and self.access_token)

    def validate(self) -> None:
        _validate_ids(self)
        _validate_credentials(self)
        _validate_transport(self)
        if self.uses_network_token:
            _validate_cache_dir(self.token_cache_path)


def _validate_ids(s: AuthSettings) -> None:
    if s.tenant_id is not None and not (GUID_RE.fullmatch(s.tenant_id) or DOMAIN_RE.fullmatch(s.tenant_id)
                                        or s.tenant_id in _WELL_KNOWN_TENANTS):
        raise config_error("tenant_id", "%r is neither a GUID nor a domain name" % s.tenant_id[:80])
    if s.client_id is not None and not GUID_RE.fullmatch(s.client_id):
        raise config_error("client_id", "%r is not a GUID (the application (client) id)" % s.client_id[:80])
    if s.cloud not in CLOUDS:
        raise config_error("cloud", "unknown cloud %r; use one of %s" % (s.cloud, ", ".join(sorted(CLOUDS))))
    if s.scopes is not None:
        for i, scope in enumerate(s.scopes):
            if not scope or re.search(r"\s", scope):
                raise config_error("scopes[%d]" % i, "must be a non-empty scope without spaces")
            if scope in ("offline_access", "openid", "profile"):
                raise config_error("scopes[%d]" % i, "%s is reserved and added by msal itself" % scope)


def _validate_credentials(s: AuthSettings) -> None:
    if s.client_secret and s.client_certificate_path:
        raise config_error("client_secret", "client_secret and client_certificate_path are mutually "
                           "exclusive; give one (check O365_CLIENT_SECRET / O365_CLIENT_CERTIFICATE_PATH)")
    if s.access_token is not None and not s.access_token.strip():
        raise config_error("access_token", "must not be empty")
    for name in ("access_token", "refresh_token", "client_secret"):
        value = getattr(s, name)
        if value and re.search(r"[\r\n\x00\x01]", value):
            raise config_error(name, "contains control characters (CR, LF, NUL or ^A)")
    if s.flow == "access_token" and not s.access_token:
        raise config_error("access_token", "flow=access_token needs access_token")
    if s.uses_network_token:
        for name in ("tenant_id", "client_id"):
            if not getattr(s, name):
                raise config_error(name, "is required to get a token from Entra ID "
                                   "(or set access_token); env %s" % ("O365_" + name.upper()))
    if s.flow == "client_secret" and not s.client_secret:
        raise config_error("client_secret", "flow=client_secret needs client_secret")
    if s.flow == "refresh_token" and not s.refresh_token:
        raise config_error("refresh_token", "flow=refresh_token needs refresh_token")
    if s.client_certificate_path or s.flow == "client_certificate":
        _validate_certificate_path(s)


def _validate_certificate_path(s: AuthSettings) -> None:
    path = s.client_certificate_path
    if not path:
        raise config_error("client_certificate_path", "flow=client_certificate needs client_certificate_path")
    if not os.path.isfile(path):
        raise config_error("client_certificate_path", "file %s does not exist" % path)
    if not os.access(path, os.R_OK):
        raise config_error("client_certificate_path", "file %s is not readable" % path)


def _validate_transport(s: AuthSettings) -> None:
    if s.authority_host is not None and not HOST_URL_RE.fullmatch(s.authority_host):
        raise config_error("authority_host", "must be an https:// URL with a host and no path "
                           "(got %r)" % s.authority_host[:120])
    if s.ca_path is not None and not os.path.isfile(s.ca_path):
        raise config_error("ca_path", "file %s does not exist" % s.ca_path)
    if not 0 < s.timeout <= 3600:
        raise config_error("timeout", "must be between 0 and 3600 seconds (got %s)" % s.timeout)


def _validate_cache_dir(path: str) -> None:
    directory = os.path.dirname(os.path.abspath(path)) or "."
    probe = directory
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if os.path.isdir(path):
        raise config_error("token_cache_path", "%s is a directory; give a file path" % path)
    if not (os.path.isdir(probe) and os.access(probe, os.W_OK | os.X_OK)):
        raise config_error("token_cache_path", "directory %s is not writable" % directory)
    if os.path.exists(path) and not os.access(path, os.R_OK | os.W_OK):
        raise config_error("token_cache_path", "file %s is not readable and writable" % path)
