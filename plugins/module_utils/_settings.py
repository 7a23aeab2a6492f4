# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tenant settings: JSON Schema validation, plain-sentence errors, semantic checks and defaults.

Pure Python, used on the controller by the ``o365_validate_settings`` action plugin; importable and
testable without Ansible running. ``jsonschema`` is imported lazily (only the controller needs it).

Every violation is reported, each as ``{path, message}`` where ``path`` reads like
``tenants[2].mailboxes[5].address`` and ``message`` is a sentence (``'bob@' is not an email address``).
Messages never quote ``app.client_secret``.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
import re
from typing import Any, Dict, List, Optional, Tuple

from ansible_collections.mailops.o365.plugins.module_utils._clouds import CLOUDS, DEFAULT_PORTS, PROTOCOLS, app_role, delegated_permission

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           "meta", "tenant_settings.schema.json")

PHASES = ("connect", "tls", "greeting", "auth", "command", "total")
DEFAULT_LATENCY_MS = {
    "warn": {"connect": 500, "tls": 500, "greeting": 1000, "auth": 2000, "command": 2000, "total": 5000},
    "crit": {"connect": 2000, "tls": 2000, "greeting": 5000, "auth": 8000, "command": 8000, "total": 15000},
}
DEFAULT_MAILFLOW_S = {"warn": 120, "crit": 600}
DEFAULT_MAILFLOW_TIMEOUT_S = 900
DEFAULT_SECURITY = {"imap": "tls", "pop": "tls", "smtp": "starttls"}
DEFAULT_ENV = {"client_secret": ("client_secret_env", "O365_CLIENT_SECRET"),
               "access_token": ("access_token_env", "O365_ACCESS_TOKEN")}
APP_ONLY_AUTH = ("client_secret", "client_certificate")
DELEGATED_AUTH = ("refresh_token", "cache")
# Which reference keys each auth uses (the others are ignored, with a warning).
AUTH_REFERENCES = {
    "client_secret": ("client_secret", "client_secret_env"),
    "client_certificate": ("client_certificate_path", "client_certificate_password_env"),
    "refresh_token": ("refresh_token_env", "username"),
    "cache": ("username",),
    "access_token": ("access_token_env", "username"),
}
# Consumer (Microsoft account) domains, and their country variants (outlook.fr, hotmail.co.uk, live.com.au).
CONSUMER_DOMAIN = re.compile(r"^(?:outlook|hotmail|live|msn)\.(?:com|[a-z]{2}|(?:co|com)\.[a-z]{2})$")
CONSUMER_SENTENCE = ("is a consumer (Outlook.com) account; Microsoft does not support OAuth2 IMAP, POP or SMTP AUTH "
                     "for these with Exchange Online apps")
VAULTED_PLACEHOLDER = "{{ vaulted }}"

_TYPE_NAMES = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
               "number": "a number", "boolean": "true or false", "null": "null"}
_CONTROL = re.compile("[\x00-\x1f\x7f\x85\u2028\u2029]")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# Within one path, an error of a higher rank hides the others (a type error explains everything;
# "contains control characters" or "too long" explains why a pattern does not match).
_RANK = {"type": 3, "not": 2, "maxLength": 2}


class SettingsError(Exception):
    """The validation itself could not run (no jsonschema, unreadable schema)."""


def load_schema(path: Optional[str] = None) -> dict:
    path = path or SCHEMA_PATH
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError) as err:
        raise SettingsError("cannot read the settings schema %s: %s" % (path, err)) from err


def _validator(schema: dict):
    try:
        import jsonschema  # lazy: only the controller validates settings
    except ImportError as err:
        raise SettingsError("validating tenant settings needs the Python package jsonschema on the controller "
                            "(pip install 'jsonschema>=4.18,<5')") from err
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.exceptions.SchemaError as err:
        raise SettingsError("the settings schema is not a valid JSON Schema: %s" % err.message) from err
    return cls(schema)


# --- paths and values ---------------------------------------------------------------------------

def join(path: str, *parts) -> str:
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            path = "%s[%d]" % (path, part)
        elif isinstance(part, str) and _IDENTIFIER.match(part):
            path = "%s.%s" % (path, part) if path else part
        else:
            path = "%s[%s]" % (path, json.dumps(str(part)))
    return path


def show(value: Any, limit: int = 80) -> str:
    """A value as it may appear in a sentence: strings quoted with control characters escaped."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        if len(value) > limit:
            return "%s... (%d characters)" % (repr(str(value[:limit]))[:-1], len(value))
        return repr(str(value))
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (bytes, bytearray)):
        return "%s (bytes)" % repr(bytes(value[:limit]))
    return _kind(value)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean (%s)" % show(value)
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, str):
        return "a string (%s)" % show(value, 40)
    if isinstance(value, int):
        return "an integer (%d)" % value
    if isinstance(value, float):
        return "a number (%r)" % value
    if isinstance(value, (bytes, bytearray)):
        return "bytes"
    return "a %s" % type(value).__name__


def _problem(path: str, message: str) -> dict:
    return {"path": path, "message": message}


def line(problem: dict) -> str:
    return "%s: %s" % (problem["path"], problem["message"])


# --- schema errors -> sentences -----------------------------------------------------------------

def _sentences(error, prefix: str) -> List[Tuple[int, dict]]:
    """(rank, problem) for one jsonschema error; additionalProperties gives one per unknown key."""
    path = join(prefix, *error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    value = error.instance
    kind = error.validator
    secret = bool(schema.get("x-secret"))
    shown = "the value" if secret else show(value)
    custom = schema.get("x-message")
    if kind == "type":
        expected = error.validator_value
        expected = [expected] if isinstance(expected, str) else list(expected)
        message = "must be %s, not %s" % (" or ".join(_TYPE_NAMES.get(t, t) for t in expected),
                                          "a string" if secret else _kind(value))
        return [(_RANK["type"], _problem(path, message))]
    if kind == "additionalProperties":
        allowed = sorted((schema.get("properties") or {}).keys())
        out = []
        for key in sorted((k for k in value if k not in allowed), key=str):
            message = "unknown key %s" % show(key)
            close = difflib.get_close_matches(str(key), allowed, n=1)
            if close:
                message += " (did you mean %s?)" % show(close[0])
            out.append((0, _problem(path, message)))
        return out
    if kind == "required":
        missing = [name for name in error.validator_value if name not in value]
        when = schema.get("x-when")
        return [(0, _problem(path, "%s is required%s" % (show(name), " when %s" % when if when else "")))
                for name in missing]
    if kind in ("pattern", "anyOf", "oneOf", "format") and custom:
        return [(0, _problem(path, custom if secret else "%s %s" % (shown, custom)))]
    if kind == "not" and custom:
        return [(_RANK["not"], _problem(path, "%s %s" % (shown, custom)))]
    if kind in ("enum", "const"):
        options = error.validator_value if kind == "enum" else [error.validator_value]
        message = "%s %s; use one of %s" % (shown, custom or "is not allowed", ", ".join(show(o) for o in options))
        return [(0, _problem(path, message))]
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            message = "must be between %s and %s (got %s)" % (low, high, shown)
        elif low is not None:
            message = "must be at least %s (got %s)" % (low, shown)
        else:
            message = "must be at most %s (got %s)" % (high, shown)
        return [(0, _problem(path, message))]
    if kind == "minLength":
        if error.validator_value == 1:
            return [(0, _problem(path, "must not be empty"))]
        return [(0, _problem(path, "%s is shorter than %d characters" % (shown, error.validator_value)))]
    if kind == "maxLength":
        return [(_RANK["maxLength"], _problem(path, "%s is longer than the limit of %d characters"
                                              % (shown, error.validator_value)))]
    if kind == "minItems":
        if error.validator_value == 1:
            return [(0, _problem(path, "must not be empty"))]
        return [(0, _problem(path, "must list at least %d entries" % error.validator_value))]
    if kind == "maxItems":
        return [(0, _problem(path, "lists %d entries; at most %d are allowed" % (len(value), error.validator_value)))]
    if kind == "uniqueItems":
        return [(0, _problem(path, "lists %s more than once" % _first_duplicate(value)))]
    if kind == "pattern":
        return [(0, _problem(path, "%s does not match %s" % (shown, error.validator_value)))]
    return [(0, _problem(path, error.message if not secret else "is not valid"))]


def _first_duplicate(values) -> str:
    seen = []
    for v in values:
        if v in seen:
            return show(v)
        seen.append(v)
    return "an entry"


def schema_errors(validator, instance: Any, prefix: str) -> List[dict]:
    ranked: Dict[str, List[Tuple[int, dict]]] = {}
    for error in validator.iter_errors(instance):
        for rank, problem in _sentences(error, prefix):
            ranked.setdefault(problem["path"], []).append((rank, problem))
    out = []
    for items in ranked.values():
        top = max(rank for rank, dummy in items)
        for rank, problem in items:
            if (rank == top or top < 2) and problem not in out:
                out.append(problem)
    return out


# --- defaults -----------------------------------------------------------------------------------

def _covered(app: dict) -> List[str]:
    """Protocols the app's permissions cover for its auth, in PROTOCOLS order."""
    perms = app.get("permissions")
    if not isinstance(perms, list):
        return []
    auth = app.get("auth")
    out = []
    for protocol in PROTOCOLS:
        needs = _needed(auth, protocol)
        if needs and any(p in perms for p in needs):
            out.append(protocol)
    return out


def _needed(auth: Any, protocol: str) -> Tuple[str, ...]:
    if auth in APP_ONLY_AUTH:
        return (app_role(protocol),)
    if auth in DELEGATED_AUTH:
        return (delegated_permission(protocol),)
    if auth == "access_token":  # a given token may be either kind
        return (app_role(protocol), delegated_permission(protocol))
    return ()


def normalize(tenant: Any) -> Any:
    """A copy with every default filled in; tolerant of invalid input (it is validated separately)."""
    if not isinstance(tenant, dict):
        return copy.deepcopy(tenant)
    out = copy.deepcopy(tenant)
    cloud = out.setdefault("cloud", "public")
    known_cloud = CLOUDS.get(cloud) if isinstance(cloud, str) else None
    if known_cloud:
        out.setdefault("authority_host", known_cloud.authority_host)
    out.setdefault("ca_path", None)
    app = out.get("app")
    if isinstance(app, dict):
        env = DEFAULT_ENV.get(app.get("auth")) if isinstance(app.get("auth"), str) else None
        if env and not (env[0] == "client_secret_env" and "client_secret" in app):
            app.setdefault(env[0], env[1])
    app = app if isinstance(app, dict) else {}
    endpoints = out.setdefault("endpoints", {})
    if isinstance(endpoints, dict):
        for protocol in PROTOCOLS:
            entry = endpoints.setdefault(protocol, {})
            if not isinstance(entry, dict):
                continue
            if known_cloud:
                entry.setdefault("host", known_cloud.host_for(protocol))
            security = entry.setdefault("security", DEFAULT_SECURITY[protocol])
            if (protocol, security) in DEFAULT_PORTS:
                entry.setdefault("port", DEFAULT_PORTS[(protocol, security)])
    mailboxes = out.get("mailboxes")
    if isinstance(mailboxes, list):
        covered = _covered(app)
        for mailbox in mailboxes:
            if not isinstance(mailbox, dict):
                continue
            protocols = mailbox.setdefault("protocols", list(covered))
            if isinstance(protocols, list) and "imap" in protocols:
                mailbox.setdefault("folder", "INBOX")
            mailbox.setdefault("expect", "ok")
    thresholds = out.setdefault("thresholds", {})
    if isinstance(thresholds, dict):
        latency = thresholds.setdefault("latency_ms", {})
        if isinstance(latency, dict):
            for level, defaults in DEFAULT_LATENCY_MS.items():
                phases = latency.setdefault(level, {})
                if isinstance(phases, dict):
                    for phase in PHASES:
                        phases.setdefault(phase, defaults[phase])
        flow = thresholds.setdefault("mailflow_s", {})
        if isinstance(flow, dict):
            for level, default in DEFAULT_MAILFLOW_S.items():
                flow.setdefault(level, default)
    mailflow = out.setdefault("mailflow", {})
    if isinstance(mailflow, dict):
        mailflow.setdefault("enabled", False)
        mailflow.setdefault("timeout_s", DEFAULT_MAILFLOW_TIMEOUT_S)
    alerts = out.setdefault("alerts", {"recipients": [], "sender": None})
    if isinstance(alerts, dict):
        alerts.setdefault("subject_prefix", "[mailops]")
    reports = out.setdefault("reports", {})
    if isinstance(reports, dict):
        reports.setdefault("directory", "reports")
        reports.setdefault("formats", ["json"])
    return out


# --- semantic checks (what the schema cannot express) -------------------------------------------

def _domain(address: Any) -> Optional[str]:
    if isinstance(address, str) and "@" in address:
        return address.rsplit("@", 1)[1].lower()
    return None


def _consumer(value: Any) -> bool:
    domain = _domain(value) if isinstance(value, str) and "@" in value else (value.lower() if isinstance(value, str) else None)
    return bool(domain and CONSUMER_DOMAIN.match(domain))


def semantic_checks(raw: dict, norm: dict, prefix: str) -> Tuple[List[dict], List[dict]]:
    """Errors and warnings the schema cannot express. ``raw`` is what the user wrote, ``norm`` has defaults."""
    errors: List[dict] = []
    warnings: List[dict] = []
    if not isinstance(raw, dict):
        return errors, warnings
    app = raw.get("app") if isinstance(raw.get("app"), dict) else {}
    auth = app.get("auth")
    perms = app.get("permissions") if isinstance(app.get("permissions"), list) else None
    covered = _covered(app)

    if _consumer(raw.get("tenant_id")):
        errors.append(_problem(join(prefix, "tenant_id"), "%s %s" % (show(raw["tenant_id"]), CONSUMER_SENTENCE)))
    _check_app(app, prefix, errors, warnings)
    if perms is not None and auth in APP_ONLY_AUTH + DELEGATED_AUTH and not covered:
        needs = [_needed(auth, p)[0] for p in PROTOCOLS]
        errors.append(_problem(join(prefix, "app", "permissions"),
                               "grants none of %s, which auth %s (%s) needs"
                               % (", ".join(needs), show(auth), "app-only" if auth in APP_ONLY_AUTH else "delegated")))

    mailboxes = raw.get("mailboxes") if isinstance(raw.get("mailboxes"), list) else []
    norm_boxes = norm.get("mailboxes") if isinstance(norm.get("mailboxes"), list) else []
    seen: Dict[str, int] = {}
    by_address: Dict[str, dict] = {}
    for i, box in enumerate(mailboxes):
        if not isinstance(box, dict):
            continue
        address = box.get("address")
        here = join(prefix, "mailboxes", i)
        if isinstance(address, str):
            key = address.lower()
            if key in seen:
                errors.append(_problem(join(here, "address"), "%s is listed twice (also %s)"
                                       % (show(address), join(prefix, "mailboxes", seen[key]))))
            else:
                seen[key] = i
                by_address[key] = norm_boxes[i] if i < len(norm_boxes) else box
            if _consumer(address):
                errors.append(_problem(join(here, "address"), "%s %s" % (show(address), CONSUMER_SENTENCE)))
        if _consumer(box.get("username")):
            errors.append(_problem(join(here, "username"), "%s %s" % (show(box["username"]), CONSUMER_SENTENCE)))
        protocols = box.get("protocols")
        if perms is not None and isinstance(protocols, list):
            for protocol in protocols:
                needs = _needed(auth, protocol) if protocol in PROTOCOLS else ()
                if needs and not any(p in perms for p in needs):
                    errors.append(_problem(join(here, "protocols"), "%s needs the %s permission (auth %s), which app.permissions does not list"
                                           % (show(protocol), " or ".join(needs), show(auth))))
        effective = protocols if isinstance(protocols, list) else covered
        if "folder" in box and "imap" not in effective:
            warnings.append(_problem(join(here, "folder"), "is ignored: this mailbox is not checked over imap"))

    _check_endpoints(raw.get("endpoints"), prefix, warnings)
    _check_thresholds(raw.get("thresholds"), norm.get("thresholds"), prefix, errors)
    _check_mailflow(raw.get("mailflow"), norm, by_address, covered, auth, prefix, errors, warnings)
    alerts = raw.get("alerts")
    if isinstance(alerts, dict) and perms is not None and auth in APP_ONLY_AUTH + DELEGATED_AUTH and "smtp" not in covered:
        warnings.append(_problem(join(prefix, "alerts"), "alerts are sent over SMTP, which app.permissions does not cover"))
    return errors, warnings


def _check_app(app: dict, prefix: str, errors: List[dict], warnings: List[dict]) -> None:
    auth = app.get("auth")
    where = join(prefix, "app")
    if "client_secret" in app and "client_secret_env" in app:
        errors.append(_problem(join(where, "client_secret"), "give either client_secret or client_secret_env, not both"))
    if _consumer(app.get("username")):
        errors.append(_problem(join(where, "username"), "%s %s" % (show(app["username"]), CONSUMER_SENTENCE)))
    used = AUTH_REFERENCES.get(auth) if isinstance(auth, str) else None
    if used is not None:
        for key in ("client_secret", "client_secret_env", "client_certificate_path", "client_certificate_password_env",
                    "refresh_token_env", "access_token_env", "username"):
            if key in app and key not in used:
                warnings.append(_problem(join(where, key), "is ignored with auth %s" % show(auth)))
    perms = app.get("permissions")
    if isinstance(perms, list) and auth in APP_ONLY_AUTH + DELEGATED_AUTH:
        wanted = {_needed(auth, p)[0] for p in PROTOCOLS}
        known = {name for a in APP_ONLY_AUTH + DELEGATED_AUTH for p in PROTOCOLS for name in _needed(a, p)}
        for i, perm in enumerate(perms):
            if isinstance(perm, str) and perm not in wanted and perm in known:
                kind = "a delegated permission" if auth in APP_ONLY_AUTH else "an app-only permission"
                warnings.append(_problem(join(where, "permissions", i), "%s is %s; auth %s does not use it"
                                         % (show(perm), kind, show(auth))))


def _check_endpoints(endpoints: Any, prefix: str, warnings: List[dict]) -> None:
    if not isinstance(endpoints, dict):
        return
    for protocol in PROTOCOLS:
        entry = endpoints.get(protocol)
        if not isinstance(entry, dict) or "port" not in entry:
            continue
        security = entry.get("security", DEFAULT_SECURITY[protocol])
        other = "starttls" if security == "tls" else "tls"
        if entry["port"] == DEFAULT_PORTS.get((protocol, other)) and security in ("tls", "starttls"):
            warnings.append(_problem(join(prefix, "endpoints", protocol, "port"), "%s is the usual %s port, but security is %s"
                                     % (show(entry["port"]), other, show(security))))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_thresholds(raw: Any, norm: Any, prefix: str, errors: List[dict]) -> None:
    if not isinstance(norm, dict):
        return
    raw = raw if isinstance(raw, dict) else {}
    latency = norm.get("latency_ms")
    raw_latency = raw.get("latency_ms") if isinstance(raw.get("latency_ms"), dict) else {}
    if isinstance(latency, dict) and isinstance(latency.get("warn"), dict) and isinstance(latency.get("crit"), dict):
        raw_crit = raw_latency.get("crit") if isinstance(raw_latency.get("crit"), dict) else {}
        for phase in PHASES:
            warn, crit = latency["warn"].get(phase), latency["crit"].get(phase)
            if _is_int(warn) and _is_int(crit) and warn >= crit:
                default = "" if phase in raw_crit else ", the default"
                errors.append(_problem(join(prefix, "thresholds", "latency_ms", "warn", phase),
                                       "%d must be lower than crit.%s (%d%s)" % (warn, phase, crit, default)))
    flow = norm.get("mailflow_s")
    raw_flow = raw.get("mailflow_s") if isinstance(raw.get("mailflow_s"), dict) else {}
    if isinstance(flow, dict) and _is_int(flow.get("warn")) and _is_int(flow.get("crit")) and flow["warn"] >= flow["crit"]:
        errors.append(_problem(join(prefix, "thresholds", "mailflow_s", "warn"), "%d must be lower than crit (%d%s)"
                               % (flow["warn"], flow["crit"], "" if "crit" in raw_flow else ", the default")))


def _check_mailflow(raw: Any, norm: dict, by_address: dict, covered: List[str], auth: Any, prefix: str,
                    errors: List[dict], warnings: List[dict]) -> None:
    if not isinstance(raw, dict):
        return
    roles = (("from", "smtp", "sends"), ("to", "imap", "reads"))
    for key, protocol, verb in roles:
        address = raw.get(key)
        if not isinstance(address, str):
            continue
        where = join(prefix, "mailflow", key)
        if _consumer(address):
            errors.append(_problem(where, "%s %s" % (show(address), CONSUMER_SENTENCE)))
        if auth in APP_ONLY_AUTH + DELEGATED_AUTH and isinstance((norm.get("app") or {}).get("permissions"), list) \
                and protocol not in covered:
            errors.append(_problem(where, "the mail flow test %s over %s, which app.permissions does not cover for auth %s"
                                   % (verb, protocol.upper(), show(auth))))
            continue
        box = by_address.get(address.lower())
        if box is None:
            warnings.append(_problem(where, "%s is not among this tenant's mailboxes, so its %s access is not checked first"
                                     % (show(address), protocol.upper())))
        elif isinstance(box.get("protocols"), list) and protocol not in box["protocols"]:
            warnings.append(_problem(where, "%s is listed in mailboxes without %s, so its %s access is not checked first"
                                     % (show(address), protocol, protocol.upper())))
    timeout = (norm.get("mailflow") or {}).get("timeout_s")
    crit = ((norm.get("thresholds") or {}).get("mailflow_s") or {}).get("crit") if isinstance(norm.get("thresholds"), dict) else None
    if raw.get("enabled") is True and _is_int(timeout) and _is_int(crit) and timeout <= crit:
        warnings.append(_problem(join(prefix, "mailflow", "timeout_s"), "%d is not above thresholds.mailflow_s.crit (%d): "
                                 "a slow message times out before it is critical" % (timeout, crit)))


def _check_list(tenants: list, prefix: str, errors: List[dict]) -> None:
    for key, fold in (("name", False), ("tenant_id", True)):
        seen: Dict[str, int] = {}
        for i, tenant in enumerate(tenants):
            value = tenant.get(key) if isinstance(tenant, dict) else None
            if not isinstance(value, str):
                continue
            norm = value.lower() if fold else value
            if norm in seen:
                errors.append(_problem(join(prefix, i, key), "%s is already used by %s" % (show(value), join(prefix, seen[norm]))))
            else:
                seen[norm] = i


# --- entry point --------------------------------------------------------------------------------

def _sort_key(problem: dict):
    parts = re.split(r"(\d+)", problem["path"])
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts], problem["message"]


def validate_settings(settings: Any, path: Optional[str] = None, schema: Optional[dict] = None,
                      schema_path: Optional[str] = None) -> dict:
    """Validate one tenant (a dict) or several (a list); every violation is reported.

    Returns ``{valid, errors: [{path, message}], warnings: [{path, message}], normalized}``;
    ``normalized`` mirrors the input's shape with defaults filled in (``None`` when invalid).
    Raises ``SettingsError`` only when validation cannot run at all.
    """
    validator = _validator(schema if schema is not None else load_schema(schema_path))
    is_list = isinstance(settings, (list, tuple))
    prefix = path if path else ("tenants" if is_list else "tenant")
    errors: List[dict] = []
    warnings: List[dict] = []
    if settings is None:
        errors.append(_problem(prefix, "no tenant settings given"))
        tenants, prefixes = [], []
    elif is_list:
        tenants = list(settings)
        prefixes = [join(prefix, i) for i in range(len(tenants))]
        if not tenants:
            errors.append(_problem(prefix, "must list at least one tenant"))
        _check_list(tenants, prefix, errors)
    else:
        tenants, prefixes = [settings], [prefix]
    normalized = []
    for tenant, where in zip(tenants, prefixes):
        errors.extend(schema_errors(validator, tenant, where))
        norm = normalize(tenant)
        more_errors, more_warnings = semantic_checks(tenant, norm if isinstance(norm, dict) else {}, where)
        errors.extend(more_errors)
        warnings.extend(more_warnings)
        normalized.append(norm)
    errors.sort(key=_sort_key)
    warnings.sort(key=_sort_key)
    valid = not errors
    if not valid:
        result_normalized = None
    else:
        result_normalized = normalized if is_list else normalized[0]
    return {"valid": valid, "errors": errors, "warnings": warnings, "normalized": result_normalized}


def error_lines(problems: List[dict]) -> List[str]:
    return [line(p) for p in problems]


def summary(result: dict) -> str:
    """The failure message: a count, then every violation on its own line."""
    count = len(result["errors"])
    head = "%d problem%s in the tenant settings:" % (count, "" if count == 1 else "s")
    return "\n".join([head] + error_lines(result["errors"]))
