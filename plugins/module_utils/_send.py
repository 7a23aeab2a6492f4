# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Sending mail over SMTP AUTH XOAUTH2: what o365_smtp_send, the mail-flow probe and the
failure-mail callback share.

Every message is built and validated before the first connection; one authenticated connection
carries a whole batch, paced to Exchange Online's 30 messages a minute; a message whose data
the server may have received is never sent again.
"""

from __future__ import annotations

from typing import Callable, List, Optional

from ansible_collections.mailops.o365.plugins.module_utils._claims import require_usable
from ansible_collections.mailops.o365.plugins.module_utils._clouds import DEFAULT_PORTS, get_cloud
from ansible_collections.mailops.o365.plugins.module_utils._errors import O365Error
from ansible_collections.mailops.o365.plugins.module_utils._message import SPEC_KEYS, build_message, check_size, parse_address
from ansible_collections.mailops.o365.plugins.module_utils._smtp import Pacer, SendError, SmtpSession
from ansible_collections.mailops.o365.plugins.module_utils._tls import client_context
from ansible_collections.mailops.o365.plugins.module_utils._token import acquire_token
from ansible_collections.mailops.o365.plugins.module_utils.xoauth2 import encode_xoauth2

# Errors after which the connection cannot carry the rest of a batch.
_SESSION_LOST = ("connection", "timeout", "tls")


class Prepared:
    """A validated, built message: the EmailMessage, its envelope and where it came from."""

    def __init__(self, index: Optional[int], spec: dict, message_id_domain: Optional[str]) -> None:
        self.index = index
        self.prefix = "" if index is None else "messages[%d]." % index
        self.message, self.recipients = build_message(spec, message_id_domain, self.prefix)
        self.sender = parse_address(self.prefix + "sender", spec["sender"]).addr_spec

    def result(self, **extra) -> dict:
        out = {"message_id": str(self.message["Message-ID"]), "delivery": "not_sent", "accepted": [], "refused": {},
               "server_response": None, "timings": {}}
        if self.index is not None:
            out["index"] = self.index
        out.update(extra)
        return out


def prepare(specs: List[dict], message_id_domain: Optional[str], batch: bool) -> List[Prepared]:
    """Build every message (reads attachments) before anything touches the network."""
    return [Prepared(i if batch else None, spec, message_id_domain) for i, spec in enumerate(specs)]


def merge_specs(params: dict) -> tuple:
    """The message specs of a task: one from the top-level options, or ``messages`` (batch),
    each inheriting the top-level options it does not set itself."""
    defaults = {k: params.get(k) for k in SPEC_KEYS if params.get(k) is not None}
    if not params.get("messages"):
        return [defaults], False
    specs = []
    for entry in params["messages"]:  # the argument spec guarantees dicts
        spec = dict(defaults)
        spec.update({k: v for k, v in entry.items() if v is not None})
        specs.append(spec)
    return specs, True


class SmtpSender:
    """One authenticated connection for one mailbox."""

    def __init__(self, settings, mailbox: str, host: Optional[str], port: Optional[int], security: str,
                 ehlohost: Optional[str], warn: Callable[[str], None], max_per_minute: int = 30) -> None:
        cloud = get_cloud(settings.cloud)
        self.settings = settings
        self.mailbox = mailbox
        self.host = host or cloud.smtp_host
        self.port = port if port is not None else DEFAULT_PORTS[("smtp", security)]
        self.security = security
        self.ehlohost = ehlohost
        # A bad endpoint fails now, before a token is asked for (no network call for bad input).
        SmtpSession._check_args(self.host, self.port, security, client_context(settings.ca_path, settings.validate_certs),
                                settings.timeout, ehlohost)
        self.warn = warn
        self.pacer = Pacer(max_per_minute=max_per_minute)
        self.session: Optional[SmtpSession] = None

    def _token(self, fresh: bool = False):
        token = acquire_token(self.settings, ["smtp"], username=self.mailbox, warn=self.warn, fresh=fresh)
        require_usable(token.access_token, "smtp", get_cloud(self.settings.cloud), self.settings.tenant_id)
        return token

    def open(self) -> SmtpSession:
        token = self._token()
        try:
            return self._login(token)
        except O365Error as err:
            if err.category != "auth" or token.source != "cache":
                raise
        # A cached token was refused: permissions may have changed since it was issued.
        return self._login(self._token(fresh=True))

    def _login(self, token) -> SmtpSession:
        context = client_context(self.settings.ca_path, self.settings.validate_certs)
        self.session = SmtpSession(self.host, self.port, self.security, context, self.settings.timeout, self.ehlohost)
        self.session.open()
        self.session.authenticate(encode_xoauth2(self.mailbox, token.access_token))
        return self.session

    def send_all(self, prepared: List[Prepared]) -> List[dict]:
        """Send every message in order; once the connection is lost the rest are reported not sent."""
        for item in prepared:
            check_size(item.message, self.session.max_size, item.prefix)  # nothing half-sent over SIZE
        results, lost = [], None
        for item in prepared:
            if lost is not None:
                results.append(item.result(error=O365Error(lost.category, "not attempted: the connection was lost "
                                                           "on an earlier message (%s)" % lost.message).as_dict()))
                continue
            self.pacer.wait()
            try:
                results.append(item.result(**self.session.send(item.message, item.sender, item.recipients)))
            except SendError as err:
                results.append(item.result(**dict(err.result, error=err.as_dict())))
                if err.category in _SESSION_LOST or err.delivery == "unknown":
                    lost = err
        return results

    def close(self) -> None:
        if self.session is not None:
            self.session.quit()


def check_smtp(host: str, port: int, security: str, user: str, sasl: str, context, timeout: float,
               ehlohost: Optional[str] = None) -> dict:
    """SMTP AUTH reachability probe: connect, STARTTLS, AUTH XOAUTH2, QUIT; nothing is sent.

    Same result shape as the IMAP and POP probes; failures come back classified, never raised.
    """
    session = SmtpSession(host, port, security, context, timeout, ehlohost)
    result = {"ok": False, "authenticated": False, "capabilities": [], "server_greeting": None, "timings": {}}
    try:
        session.open()
        result["capabilities"] = sorted(k.upper() + ((" " + v) if v else "") for k, v in session.esmtp_features.items())
        session.authenticate(sasl)
        result["authenticated"] = result["ok"] = True
        result["max_size"] = session.max_size
    except O365Error as err:
        result["error"] = err.as_dict()
    finally:
        session.quit()
        result["server_greeting"] = session.server_greeting
        result["timings"] = {("command" if k == "ehlo" else k): v for k, v in session.timings.items()}
    return result
