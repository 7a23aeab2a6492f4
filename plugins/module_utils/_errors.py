# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Error categories, the one classifier, and the hint table.

Every failure anywhere in the collection becomes an ``O365Error`` with one of ``CATEGORIES``.
``RULES`` is the single table of known Entra ID codes and Exchange Online replies: the
classifier reads it, and ``docs/troubleshooting.md`` is generated from it (a test keeps the
page current). Server wording changes over time, so rules match on codes and stable phrases.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Optional

CATEGORIES = (
    "config",      # bad input, caught before any network call
    "token",       # Entra ID refused or could not be reached
    "connection",  # TCP connect failed, reset, closed early
    "tls",         # handshake, certificate or host name problem
    "timeout",     # a socket operation exceeded `timeout`
    "auth",        # the mail server refused the token
    "disabled",    # the protocol or SMTP AUTH is switched off
    "throttled",   # Exchange or Entra ID asked us to slow down
    "protocol",    # an unexpected server reply
)

HINT_APP_ONLY = (
    "For app-only access register the app's service principal in Exchange "
    "(New-ServicePrincipal -AppId <app id> -ObjectId <enterprise application object id>, "
    "not the app registration's object id) and grant it the mailbox "
    "(Add-MailboxPermission -Identity <mailbox> -User <service principal id> -AccessRights FullAccess)."
)


class O365Error(Exception):
    """A classified failure. ``message`` and ``server_reply`` must never contain a secret."""

    def __init__(self, category: str, message: str, hint: Optional[str] = None,
                 server_reply: Optional[str] = None, code: Optional[str] = None) -> None:
        if category not in CATEGORIES:
            raise ValueError("unknown error category %r" % category)
        super().__init__(message)
        self.category = category
        self.message = message
        self.hint = hint
        self.server_reply = server_reply
        self.code = code

    def as_dict(self) -> dict:
        out = {"category": self.category, "message": self.message, "hint": self.hint}
        if self.server_reply is not None:
            out["server_reply"] = self.server_reply
        if self.code is not None:
            out["code"] = self.code
        return out


def config_error(field: str, problem: str) -> O365Error:
    """A bad-input error; the message always starts with the option's name."""
    return O365Error("config", "%s: %s" % (field, problem))


class Rule(NamedTuple):
    source: str     # "entra", "imap", "pop" or "smtp"
    pattern: str    # AADSTS number for "entra"; a case-insensitive regex for server replies
    example: str    # a reply as seen in the field (documentation and test fixture)
    category: str
    cause: str
    hint: str


RULES = (
    # Entra ID token endpoint
    Rule("entra", "90002", "AADSTS90002: Tenant 'x' not found.", "token",
         "The tenant id or domain does not exist in this cloud.",
         "Check tenant_id (directory id GUID or verified domain) and cloud."),
    Rule("entra", "700016", "AADSTS700016: Application with identifier 'x' was not found in the directory 'y'.",
         "token", "The client id is not registered in this tenant, or the app was never consented here.",
         "Check client_id and tenant_id; for a multi-tenant app, an admin of this tenant must consent to it."),
    Rule("entra", "7000215", "AADSTS7000215: Invalid client secret provided.", "token",
         "The client secret is wrong (often the secret's id was pasted instead of its value).",
         "Create a new client secret under Certificates & secrets and use its Value."),
    Rule("entra", "7000222", "AADSTS7000222: The provided client secret keys for app 'x' are expired.",
         "token", "The client secret has expired.",
         "Create a new client secret (or switch to a certificate) and update the credential."),
    Rule("entra", "70011", "AADSTS70011: The provided request must include a 'scope' input parameter.",
         "token", "The scope is invalid for this flow.",
         "Client credentials need https://outlook.office365.com/.default; delegated flows need "
         "https://outlook.office.com/IMAP.AccessAsUser.All, POP.AccessAsUser.All or SMTP.Send."),
    Rule("entra", "65001", "AADSTS65001: The user or administrator has not consented to use the application.",
         "token", "Consent for the requested permission is missing.",
         "Add the permission under API permissions (Office 365 Exchange Online) and grant admin consent."),
    Rule("entra", "50076", "AADSTS50076: Due to a configuration change made by your administrator, "
         "you must use multi-factor authentication.", "token",
         "Conditional Access requires MFA for this sign-in.",
         "Bootstrap the refresh token interactively (device code playbook) or use an app-only identity."),
    Rule("entra", "50079", "AADSTS50079: The user is required to use multi-factor authentication.", "token",
         "The user must register for MFA before signing in.",
         "Have the user complete MFA registration, then bootstrap again with the device code flow."),
    Rule("entra", "700082", "AADSTS700082: The refresh token has expired due to inactivity.", "token",
         "The refresh token expired (usually 90 days without use).",
         "Run playbooks/bootstrap_token.yml again to obtain a new refresh token."),
    Rule("entra", "70008", "AADSTS70008: The provided authorization code or refresh token has expired.",
         "token", "The refresh token or authorization code has expired or was revoked.",
         "Run playbooks/bootstrap_token.yml again to obtain a new refresh token."),
    Rule("entra", "7000012", "AADSTS7000012: The grant was obtained for a different tenant.", "token",
         "The refresh token belongs to another tenant.",
         "Use the tenant_id the token was issued for, or bootstrap a token in this tenant."),
    Rule("entra", "900144", "AADSTS900144: The request body must contain the following parameter: 'scope'.",
         "token", "A required parameter is missing from the token request.",
         "Set protocols or scopes."),
    Rule("entra", "500011", "AADSTS500011: The resource principal named x was not found in the tenant.",
         "token", "The scope names a resource that is not in the tenant (e.g. graph.microsoft.com/SMTP.Send).",
         "Use the Outlook resource: https://outlook.office.com/... (delegated) or "
         "https://outlook.office365.com/.default (app-only)."),
    # IMAP
    Rule("imap", r"user is authenticated but not connected", "BAD User is authenticated but not connected.",
         "auth", "The login succeeded but the token's identity does not match the mailbox, "
         "or it lacks access to it (also seen after many rapid reconnects).",
         "Make the mailbox match the token's user, or grant the service principal FullAccess on it "
         "(Add-MailboxPermission); slow down reconnects."),
    Rule("imap", r"\bAUTHENTICATE failed|\[AUTHENTICATIONFAILED\]", "NO AUTHENTICATE failed.", "auth",
         "The token was refused: wrong scope or audience, app-only token without a service principal "
         "or mailbox permission, or IMAP disabled for the mailbox.",
         "Delegated: scope https://outlook.office.com/IMAP.AccessAsUser.All. App-only: scope "
         "https://outlook.office365.com/.default and role IMAP.AccessAsApp. " + HINT_APP_ONLY
         + " Check Set-CASMailbox -ImapEnabled $true."),
    Rule("imap", r"\[LIMIT\]|too many (simultaneous )?connections", "* BYE Too many simultaneous connections.",
         "throttled", "Too many connections to this mailbox.",
         "Lower max_workers or spread checks out; Exchange limits concurrent IMAP connections per mailbox."),
    Rule("imap", r"\[UNAVAILABLE\]", "NO [UNAVAILABLE] Mailbox is temporarily unavailable", "throttled",
         "The server or mailbox is temporarily unavailable.", "Retry later; if it persists, check the service health."),
    # POP3
    Rule("pop", r"\[SYS/TEMP\]|\[IN-USE\]|\[LOGIN-DELAY\]|server unavailable",
         "-ERR Server Unavailable. 21", "throttled",
         "The server is busy or the mailbox is in use (RFC 2449/3206 response codes).",
         "Retry later; avoid overlapping POP sessions on one mailbox."),
    Rule("pop", r"unknown user name or bad password|authentication fail",
         "-ERR Authentication failure: unknown user name or bad password.", "auth",
         "The token was refused: wrong scope or audience (POP.AccessAsUser.All / POP.AccessAsApp "
         "missing), no service principal or mailbox permission, or POP disabled.",
         "As for IMAP, with Set-CASMailbox -PopEnabled $true. " + HINT_APP_ONLY),
    # SMTP AUTH
    Rule("smtp", r"\b5\.7\.139\b.*SmtpClientAuthentication is disabled",
         "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.",
         "disabled", "SMTP AUTH is turned off for the tenant or the mailbox.",
         "Set-TransportConfig -SmtpClientAuthenticationDisabled $false, or per mailbox "
         "Set-CASMailbox -Identity <mailbox> -SmtpClientAuthenticationDisabled $false ($null inherits the tenant)."),
    Rule("smtp", r"\b5\.7\.139\b.*security defaults",
         "535 5.7.139 Authentication unsuccessful, user is locked by your organization's security defaults policy.",
         "auth", "Security defaults or Conditional Access block this sign-in.",
         "Use OAuth2 (this collection) and review security defaults / Conditional Access."),
    Rule("smtp", r"\b5\.7\.139\b", "535 5.7.139 Authentication unsuccessful, the user credentials were incorrect.",
         "auth", "The credentials were refused.", "Check the token's user and scopes."),
    Rule("smtp", r"\b5\.7\.3\b", "535 5.7.3 Authentication unsuccessful [SN2PR00CA0018.namprd00.prod.outlook.com]",
         "auth", "Token and mailbox do not match, or SMTP.Send (delegated) / SMTP.SendAsApp (app-only) is missing.",
         "Check scopes, that `mailbox` is the token's user, and for app-only the service principal's "
         "mailbox permission. " + HINT_APP_ONLY),
    Rule("smtp", r"\b5\.7\.57\b", "530 5.7.57 Client not authenticated to send mail.", "auth",
         "MAIL FROM was sent before authentication succeeded.", "Authenticate first (AUTH XOAUTH2)."),
    Rule("smtp", r"\b5\.7\.60\b", "550 5.7.60 SMTP; Client does not have permissions to send as this sender",
         "auth", "The From address differs from the authenticated mailbox and SendAs is not granted.",
         "Send as the authenticated mailbox, or Add-RecipientPermission <sender> -Trustee <mailbox> -AccessRights SendAs."),
    Rule("smtp", r"\b5\.7\.30\b", "550 5.7.30 Basic authentication is not supported for Client Submission.",
         "auth", "Basic authentication was attempted after its retirement.", "Use XOAUTH2."),
    Rule("smtp", r"\b4\.7\.0\b.*authentication", "454 4.7.0 Temporary authentication failure", "auth",
         "The server's token validation failed temporarily.",
         "Retry later; if it persists, check the token (claims in o365_token) and the service health."),
    Rule("smtp", r"\b5\.7\.8\b", "535 5.7.8 Error: authentication failed", "auth",
         "The token was refused.", "Check the token's scope (SMTP.Send / SMTP.SendAsApp) and that mailbox is its user."),
    Rule("smtp", r"\b5\.3\.4\b|message size exceeds", "552 5.3.4 Message size exceeds fixed maximum message size",
         "config", "The message is larger than the server accepts.",
         "Send smaller attachments (base64 adds a third) or a link instead."),
    Rule("smtp", r"\b5\.1\.1\b|\b5\.1\.10\b|recipient not found|user unknown",
         "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", "protocol",
         "The recipient address does not exist.", "Check the recipient's address."),
    Rule("smtp", r"\b4\.3\.2\b|concurrent connections limit", "432 4.3.2 Concurrent connections limit exceeded",
         "throttled", "More than 3 concurrent SMTP connections for one mailbox.",
         "Lower concurrency per mailbox; the send is retried with backoff."),
    Rule("smtp", r"\b4\.2\.0\b.*mailbox logon failure", "430 4.2.0 STOREDRV; mailbox logon failure", "auth",
         "App-only SMTP without access to the mailbox.", HINT_APP_ONLY),
    Rule("smtp", r"\b5\.2\.2\b", "554 5.2.2 mailbox full", "protocol",
         "The recipient's mailbox is over quota.", "Ask the recipient's admin to free space."),
    Rule("smtp", r"\b5\.5\.12[47]\b|invalid xoauth2", "501 5.5.124 Invalid XOAUTH2 auth data", "auth",
         "The token's shape or audience was not accepted.",
         "Check the token audience (https://outlook.office365.com for app-only) and refresh it earlier."),
)

# Compiled on first use: a process that never classifies a server reply (every check answered)
# does not pay for compiling the whole table at import time.
_REPLY_RULES: dict = {}


def _reply_rules(protocol: str) -> list:
    rules = _REPLY_RULES.get(protocol)
    if rules is None:
        rules = [(re.compile(r.pattern, re.IGNORECASE), r) for r in RULES if r.source == protocol]
        _REPLY_RULES[protocol] = rules
    return rules


_ENTRA_RULES = {r.pattern: r for r in RULES if r.source == "entra"}

_AADSTS = re.compile(r"AADSTS(\d+)")


def entra_error(error: dict, status: Optional[int] = None) -> O365Error:
    """Classify an Entra ID token endpoint error response (msal's result dict)."""
    raw_codes = error.get("error_codes")
    # A proxy or a broken endpoint may send anything: only a list of codes is one.
    codes = [str(c) for c in raw_codes] if isinstance(raw_codes, list) else []
    description = str(error.get("error_description") or error.get("error") or "unknown error")
    match = _AADSTS.search(description)
    if match and match.group(1) not in codes:
        codes.insert(0, match.group(1))
    first_line = description.splitlines()[0] if description else ""
    for code in codes:
        rule = _ENTRA_RULES.get(code)
        if rule:
            return O365Error(rule.category, "Entra ID refused the token request: %s" % first_line,
                             hint="%s %s" % (rule.cause, rule.hint), code="AADSTS" + code)
    category = "throttled" if status == 429 or error.get("error") == "temporarily_unavailable" else "token"
    return O365Error(category, "Entra ID refused the token request: %s" % first_line,
                     code=("AADSTS" + codes[0]) if codes else error.get("error"))


def classify_reply(protocol: str, reply: str, default: str = "protocol") -> O365Error:
    """Classify a mail server's failure reply; the server's own text is kept in ``server_reply``."""
    text = (reply or "").strip()
    for regex, rule in _reply_rules(protocol):
        if regex.search(text):
            return O365Error(rule.category, "%s server refused: %s" % (protocol.upper(), text),
                             hint="%s %s" % (rule.cause, rule.hint), server_reply=text)
    category = default
    if protocol == "smtp" and text[:1] == "4":
        category = "throttled" if re.search(r"\b4\.7\.\d+|throttl|too many", text, re.I) else default
    return O365Error(category, "%s server replied: %s" % (protocol.upper(), text or "(nothing)"),
                     server_reply=text)


def troubleshooting_rows() -> list:
    """Rows for docs/troubleshooting.md: (where, reply or code, category, cause, fix)."""
    rows = []
    for rule in RULES:
        where = {"entra": "Entra ID", "imap": "IMAP", "pop": "POP3", "smtp": "SMTP"}[rule.source]
        seen = ("AADSTS" + rule.pattern) if rule.source == "entra" else rule.example
        rows.append((where, seen, rule.category, rule.cause, rule.hint))
    return rows
