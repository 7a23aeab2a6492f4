# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one place TLS client contexts are made: TLS 1.2 minimum, certificates and host names
verified unless the user explicitly set ``validate_certs: false``."""

from __future__ import annotations

import ssl
from typing import Optional

from ansible_collections.mailops.o365.plugins.module_utils._errors import O365Error

_CACHE: dict = {}

INSECURE_WARNING = ("validate_certs is false: the server's certificate and host name are not checked, "
                    "so the token can be stolen by anyone on the path. Use ca_path instead.")


def client_context(ca_path: Optional[str] = None, validate_certs: bool = True) -> ssl.SSLContext:
    """A shared client context per (ca_path, validate_certs); contexts are thread-safe to share."""
    key = (ca_path, bool(validate_certs))
    ctx = _CACHE.get(key)
    if ctx is None:
        # ca_path replaces the system store, as it does for the token endpoint (requests' verify=)
        # and in Ansible's own modules; loading the system store as well costs ~50 ms per task.
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca_path or None)
        except (OSError, ssl.SSLError) as exc:
            raise O365Error("config", "ca_path: cannot load CA bundle %s: %s" % (ca_path, exc)) from None
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if not validate_certs:
            # Only reached when the user asked for it; callers emit INSECURE_WARNING.
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        _CACHE[key] = ctx
    return ctx


def tls_error(exc: BaseException, host: str) -> O365Error:
    """Turn an ssl exception into a classified error with a useful hint."""
    text = str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in text:
        reason = getattr(exc, "verify_message", None) or text
        if "hostname" in reason.lower() or "match" in reason.lower():
            hint = "The certificate is not valid for %s: use the service's real host name." % host
        elif "expired" in reason.lower():
            hint = "The server's certificate has expired."
        else:
            hint = ("The server's certificate is not trusted: set ca_path to the CA bundle that signed it "
                    "(a TLS-inspecting proxy needs its CA here).")
        return O365Error("tls", "TLS certificate check failed for %s: %s" % (host, reason), hint=hint)
    if "VERSION" in text.upper() or "PROTOCOL" in text.upper():
        return O365Error("tls", "TLS handshake with %s failed: %s" % (host, text),
                         hint="The server does not offer TLS 1.2 or later.")
    return O365Error("tls", "TLS handshake with %s failed: %s" % (host, text))
