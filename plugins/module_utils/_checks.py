# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the mailbox check modules share: their options, targets, tokens and the fleet run.

The path runs one way: targets -> token (one per tenant/app/scope, or per delegated user)
-> claims diagnosis -> SASL XOAUTH2 -> protocol client -> classified result -> summary.
"""

from __future__ import annotations

import re
import threading
from typing import Callable, Dict, List, Optional

from ansible_collections.mailops.o365.plugins.module_utils._claims import UnusableToken, require_usable
from ansible_collections.mailops.o365.plugins.module_utils._clouds import DEFAULT_PORTS, get_cloud
from ansible_collections.mailops.o365.plugins.module_utils._errors import O365Error, config_error
from ansible_collections.mailops.o365.plugins.module_utils._fleet import failed_result, run_fleet, summarize
from ansible_collections.mailops.o365.plugins.module_utils._tls import client_context
from ansible_collections.mailops.o365.plugins.module_utils._token import APP_ONLY_FLOWS, acquire_token, resolve_flow
from ansible_collections.mailops.o365.plugins.module_utils.xoauth2 import encode_xoauth2

CHECK_ARGUMENT_SPEC = dict(
    mailbox=dict(type="str"),
    mailboxes=dict(type="list", elements="raw"),
    host=dict(type="str"),
    port=dict(type="int"),
    security=dict(type="str", choices=["tls", "starttls"]),
    max_workers=dict(type="int", default=16),
    fail_on_error=dict(type="bool", default=True),
)
CHECK_MUTUALLY_EXCLUSIVE = [("mailbox", "mailboxes")]
CHECK_REQUIRED_ONE_OF = [("mailbox", "mailboxes")]

# Per-mailbox overrides a fleet entry may carry, beside its address.
TARGET_KEYS = ("address", "host", "port", "security", "folder", "search", "username")
MAX_FLEET = 100000
# Exchange Online's ways in: implicit TLS for IMAP and POP, STARTTLS submission for SMTP.
DEFAULT_SECURITY = {"imap": "tls", "pop": "tls", "smtp": "starttls"}

ADDRESS_RE = re.compile(r"^[^@\s\x00-\x1f\x7f<>()\[\],;:\"\\]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
                        r"[A-Za-z0-9-]{2,63}$")
HOST_RE = re.compile(r"^[A-Za-z0-9.\-:\[\]]{1,253}$")


def validate_address(field: str, value) -> str:
    if not isinstance(value, str) or not ADDRESS_RE.fullmatch(value):
        raise config_error(field, "%r is not an email address" % (str(value)[:100],))
    return value


def build_targets(params: dict, protocol: str, extra_keys: tuple = (),
                  validate: Optional[Callable[[dict, Callable[[str], str]], None]] = None) -> List[dict]:
    """One dict per mailbox with every setting resolved (host and port from the cloud table).

    Everything is validated here, before the first connection of the fleet.
    """
    cloud = get_cloud(params.get("cloud") or "public")
    defaults = {"host": params.get("host") or cloud.host_for(protocol), "port": params.get("port"),
                "security": params.get("security") or DEFAULT_SECURITY[protocol], "username": params.get("username")}
    for k in extra_keys:
        defaults[k] = params.get(k)
    if params.get("mailbox") is not None:
        entries, prefix = [params["mailbox"]], "mailbox"
    else:
        entries, prefix = params.get("mailboxes") or [], "mailboxes"
        if not entries:
            raise config_error("mailboxes", "must list at least one mailbox")
        if len(entries) > MAX_FLEET:
            raise config_error("mailboxes", "more than %d mailboxes in one task; split the fleet" % MAX_FLEET)
    targets = []
    for i, entry in enumerate(entries):
        field = "%s[%d]" % (prefix, i) if prefix == "mailboxes" else prefix
        target = _target(entry, field, defaults, extra_keys)
        if validate:  # protocol-specific keys, named as the user wrote them
            validate(target, lambda key, e=entry, f=field: _where(e, f, key))
        target["port"] = target["port"] or DEFAULT_PORTS[(protocol, target["security"])]
        targets.append(target)
    return targets


def _target(entry, field: str, defaults: dict, extra_keys: tuple) -> dict:
    target = dict(defaults)
    if isinstance(entry, dict):
        unknown = set(entry) - set(TARGET_KEYS) - set(extra_keys)
        if unknown:
            raise config_error(field, "unknown keys %s; allowed: %s" % (sorted(unknown), ", ".join(TARGET_KEYS + extra_keys)))
        if "address" not in entry:
            raise config_error(field, "a mailbox entry needs 'address'")
        target.update({k: v for k, v in entry.items() if v is not None})
        address = entry["address"]
        field_address = field + ".address"
    else:
        address, field_address = entry, field
    target["mailbox"] = validate_address(field_address, address)
    target.pop("address", None)
    if target["security"] not in ("tls", "starttls"):
        raise config_error(_where(entry, field, "security"), "must be 'tls' or 'starttls'")
    port = target["port"]
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536):
        raise config_error(_where(entry, field, "port"), "must be an integer between 1 and 65535 (got %r)" % (port,))
    host = target["host"]
    if not isinstance(host, str) or not HOST_RE.fullmatch(host):
        raise config_error(_where(entry, field, "host"), "%r is not a host name or address" % (str(host)[:100],))
    return target


def _where(entry, field: str, key: str) -> str:
    """The option to name in an error: the fleet entry's override, or the task-level option."""
    return "%s.%s" % (field, key) if isinstance(entry, dict) and key in entry else key


class TokenProvider:
    """Tokens for a check run: app-only (and given) tokens are shared by every mailbox; delegated
    tokens are per user, from the cache. Each distinct token is asked for once, thread-safely."""

    def __init__(self, settings, protocols: List[str], warn: Callable[[str], None]) -> None:
        self.settings = settings
        self.protocols = protocols
        self.warn = warn
        self.flow = resolve_flow(settings)
        self.shared = self.flow in APP_ONLY_FLOWS or self.flow == "access_token"
        self._lock = threading.Lock()
        self._locks: Dict[str, threading.Lock] = {}
        self._tokens: Dict[str, object] = {}

    def get(self, username: Optional[str], stale=None):
        """The token for ``username``; with ``stale`` (a cached token a server refused), a fresh
        one from Entra ID, fetched once however many mailboxes report the same stale token."""
        key = "" if self.shared else (username or "").lower()
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._tokens or (stale is not None and self._tokens[key] is stale):
                try:
                    self._tokens[key] = acquire_token(self.settings, self.protocols, username=username,
                                                      warn=self.warn, fresh=stale is not None)
                except O365Error as err:
                    self._tokens[key] = err  # every mailbox on this token gets the same classified error
            token = self._tokens[key]
        if isinstance(token, O365Error):
            raise token
        return token


def run_checks(module, protocol: str, probe: Callable[..., dict], extra_keys: tuple = (),
               validate: Optional[Callable[[dict, Callable[[str], str]], None]] = None) -> dict:
    """Check every target; shape a single-mailbox or a fleet result and the failure rule."""
    params = module.params
    settings = module.settings
    if not 1 <= params["max_workers"] <= 256:
        raise config_error("max_workers", "must be between 1 and 256 (got %d)" % params["max_workers"])
    targets = build_targets(params, protocol, extra_keys, validate)
    tokens = TokenProvider(settings, [protocol], module.warn)
    context = client_context(settings.ca_path, settings.validate_certs)
    cloud = get_cloud(settings.cloud)

    def attempt(target: dict, token) -> dict:
        try:
            require_usable(token.access_token, protocol, cloud, settings.tenant_id)
        except UnusableToken as err:
            return dict(failed_result(target, err), problems=err.problems)
        return probe(target, encode_xoauth2(target["mailbox"], token.access_token), context, settings.timeout)

    def check(target: dict) -> dict:
        username = target.get("username") or target["mailbox"]
        try:
            token = tokens.get(username)
            result = attempt(target, token)
            if refused_cached_token(result, token):
                result = attempt(target, tokens.get(username, stale=token))
        except O365Error as err:
            result = failed_result(target, err)
        result["mailbox"] = target["mailbox"]
        return result

    results = run_fleet(targets, check, params["max_workers"])
    if params.get("mailbox") is not None:
        return _single(module, results[0])
    return _fleet(module, results)


def refused_cached_token(result: dict, token) -> bool:
    """A login refused for a token served from the cache deserves one try with a fresh token:
    the permission may have been granted since, or the cache holds another authority's token."""
    return (token.source == "cache" and not result.get("ok") and not result.get("authenticated")
            and (result.get("error") or {}).get("category") == "auth" and not result.get("problems"))


def _single(module, result: dict) -> dict:
    out = dict(result, changed=False)
    if not result.get("ok"):
        error = result.get("error") or {}
        out["msg"] = "%s: %s" % (result["mailbox"], error.get("message", "check failed"))
        if module.params["fail_on_error"]:
            module.fail_json(**out)
    return out


def _fleet(module, results: List[dict]) -> dict:
    summary = summarize(results)
    out = dict(changed=False, results=results, summary=summary)
    if summary["failed"]:
        categories = ", ".join("%s %d" % kv for kv in sorted(summary["by_category"].items()))
        out["msg"] = "%d of %d mailboxes failed (%s)" % (summary["failed"], summary["total"], categories)
        if module.params["fail_on_error"]:
            module.fail_json(**out)
    else:
        out["msg"] = "all %d mailboxes answered" % summary["total"]
    return out
