# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""JWT claims diagnosis: why a token cannot work for IMAP, POP or SMTP, before connecting.

The payload is decoded without checking the signature: this is for diagnosis only, the mail
server does the real validation. Opaque (non-JWT) tokens give no claims and no problems.
"""

from __future__ import annotations

import base64
import datetime
import json
import time
from typing import Iterable, Optional

from ansible_collections.mailops.o365.plugins.module_utils._clouds import (
    Cloud,
    accepted_audiences,
    app_role,
    delegated_permission,
)
from ansible_collections.mailops.o365.plugins.module_utils._errors import O365Error
from ansible_collections.mailops.o365.plugins.module_utils._options import GUID_RE

_SUMMARY_CLAIMS = ("aud", "iss", "tid", "appid", "azp", "idtyp", "scp", "roles", "upn", "unique_name",
                   "email", "preferred_username", "oid")


def decode_claims(token: str) -> Optional[dict]:
    """Return the JWT payload as a dict, or None for an opaque token."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, UnicodeError):
        return None
    return claims if isinstance(claims, dict) else None


def is_app_token(claims: dict) -> bool:
    if claims.get("idtyp") in ("app", "user"):
        return claims["idtyp"] == "app"
    return "roles" in claims and "scp" not in claims


def _epoch(value) -> Optional[int]:
    """A usable `exp`: a number of seconds a date can hold (not NaN, infinity, a bool or year 300000)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not -62135596800 <= value <= 253402300799:
        return None
    return int(value)


def summarize(claims: Optional[dict]) -> dict:
    """The claims worth showing (no signature, nothing secret), with `exp` as ISO time too."""
    if not claims:
        return {}
    out = {k: claims[k] for k in _SUMMARY_CLAIMS if k in claims}
    exp = _epoch(claims.get("exp"))
    if exp is not None:
        out["exp"] = exp
        out["expires_at"] = iso_time(exp)
    return out


def iso_time(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(int(epoch), datetime.timezone.utc).isoformat().replace("+00:00", "Z")


def token_user(claims: Optional[dict]) -> Optional[str]:
    if not claims:
        return None
    for key in ("upn", "unique_name", "preferred_username", "email"):
        if isinstance(claims.get(key), str):
            return claims[key]
    return None


def diagnose(claims: Optional[dict], protocols: Iterable[str], cloud: Cloud,
             tenant_id: Optional[str] = None, now: Optional[float] = None) -> list:
    """List, in plain sentences, why this token cannot work for ``protocols``. Empty means no known problem."""
    if not claims:
        return []
    now = time.time() if now is None else now
    problems = []
    exp = _epoch(claims.get("exp"))
    if exp is not None and exp <= now:
        problems.append("token expired at %s" % iso_time(exp))
    aud = claims.get("aud")
    # RFC 7519 4.1.3: `aud` is a string or an array of strings.
    audiences = [aud] if isinstance(aud, str) else [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []
    if not set(audiences) & accepted_audiences(cloud):
        problems.append("audience %r is not Exchange Online (%s); request the Outlook scopes, "
                        "not Microsoft Graph's" % (aud, cloud.app_resource))
    tid = claims.get("tid")
    if tenant_id and GUID_RE.fullmatch(tenant_id) and isinstance(tid, str) and tid and tid.lower() != tenant_id.lower():
        problems.append("token was issued by tenant %s, not %s" % (tid, tenant_id))
    if is_app_token(claims):
        roles = claims.get("roles")
        roles = roles.split() if isinstance(roles, str) else roles if isinstance(roles, list) else []
        for protocol in protocols:
            if app_role(protocol) not in roles:
                problems.append("app-only token lacks the %s role needed for %s"
                                % (app_role(protocol), protocol.upper()))
    else:
        granted = str(claims.get("scp") or "").split()
        for protocol in protocols:
            if delegated_permission(protocol) not in granted:
                problems.append("delegated token lacks the %s scope needed for %s"
                                % (delegated_permission(protocol), protocol.upper()))
    return problems


_PERMISSION_HINT = {"imap": "IMAP.AccessAsUser.All (delegated) or IMAP.AccessAsApp (app-only)",
                    "pop": "POP.AccessAsUser.All (delegated) or POP.AccessAsApp (app-only)",
                    "smtp": "SMTP.Send (delegated) or SMTP.SendAsApp (app-only)"}


class UnusableToken(O365Error):
    """The token's own claims rule the protocol out; raised before anything is sent."""

    def __init__(self, protocol: str, problems: list) -> None:
        super().__init__("auth", "the token cannot work for %s: %s" % (protocol.upper(), "; ".join(problems)),
                         hint="Request %s for the Outlook resource; nothing was sent." % _PERMISSION_HINT[protocol])
        self.problems = problems


def require_usable(access_token: str, protocol: str, cloud: Cloud, tenant_id: Optional[str] = None) -> None:
    """Raise UnusableToken when the claims show the token cannot work for ``protocol``."""
    problems = diagnose(decode_claims(access_token), [protocol], cloud, tenant_id)
    if problems:
        raise UnusableToken(protocol, problems)
