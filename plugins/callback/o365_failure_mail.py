# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: o365_failure_mail
type: notification
short_description: Mail the failed tasks and unreachable hosts of a playbook run through Exchange Online (OAuth2)
version_added: 0.1.0
description:
  - At the end of a playbook run with failed tasks or unreachable hosts, sends B(one) mail listing them - host,
    play, task and the failure message (truncated). Nothing is sent when nothing failed; failures that were
    ignored (C(ignore_errors)) or rescued by a block are not failures of the run.
  - Mail goes out over SMTP AUTH C(XOAUTH2) through the collection's own sending core (the one
    M(mailops.o365.o365_smtp_send) uses), with the token from the same token core and cache.
  - The authentication options read the B(same) environment variables as the modules (E(O365_TENANT_ID),
    E(O365_CLIENT_ID), E(O365_CLIENT_SECRET)...), so one credential injection (for example an AWX credential)
    serves both.
  - Secrets never reach the mail or the screen - results of C(no_log) tasks are replaced by
    the words "output hidden (no_log)", and the configured secrets and anything shaped like a token (JWTs, XOAUTH2
    strings, C(Bearer) values) are removed from the body.
  - A failure to send is shown as a warning; it never fails or stops the play.
author:
  - mailops.o365 maintainers (@mailops)
requirements:
  - Enable it with C(callbacks_enabled = mailops.o365.o365_failure_mail) in C(ansible.cfg) or
    E(ANSIBLE_CALLBACKS_ENABLED).
  - The C(msal) Python library on the controller, unless O(access_token) is given.
options:
  sender:
    description:
      - The From address; it is also the mailbox that authenticates (the SASL C(user=)).
      - Required; without it a warning is shown and nothing is sent.
    type: str
    ini:
      - section: callback_o365_failure_mail
        key: sender
    env:
      - name: O365_FAILURE_MAIL_SENDER
  to:
    description:
      - Recipients (a comma-separated list in the environment or C(ansible.cfg)).
      - Required; without it a warning is shown and nothing is sent.
    type: list
    elements: str
    ini:
      - section: callback_o365_failure_mail
        key: to
    env:
      - name: O365_FAILURE_MAIL_TO
  subject_prefix:
    description: Start of the subject; the playbook name and the counts follow.
    type: str
    default: "[ansible failure]"
    ini:
      - section: callback_o365_failure_mail
        key: subject_prefix
    env:
      - name: O365_FAILURE_MAIL_SUBJECT_PREFIX
  host:
    description: SMTP server. Defaults to the cloud's (C(smtp.office365.com) in the public cloud).
    type: str
    ini:
      - section: callback_o365_failure_mail
        key: host
    env:
      - name: O365_FAILURE_MAIL_HOST
  port:
    description: SMTP port. Defaults to 587 for V(starttls) and 465 for V(tls).
    type: int
    ini:
      - section: callback_o365_failure_mail
        key: port
    env:
      - name: O365_FAILURE_MAIL_PORT
  security:
    description: V(starttls) (mandatory upgrade, never a plaintext fallback) or V(tls) (implicit TLS).
    type: str
    choices: [starttls, tls]
    default: starttls
    ini:
      - section: callback_o365_failure_mail
        key: security
    env:
      - name: O365_FAILURE_MAIL_SECURITY
  max_message_chars:
    description: Each failure message is cut to this many characters.
    type: int
    default: 500
    ini:
      - section: callback_o365_failure_mail
        key: max_message_chars
    env:
      - name: O365_FAILURE_MAIL_MAX_MESSAGE_CHARS
  max_failures:
    description: At most this many failures are listed; the rest are counted.
    type: int
    default: 100
    ini:
      - section: callback_o365_failure_mail
        key: max_failures
    env:
      - name: O365_FAILURE_MAIL_MAX_FAILURES
  tenant_id:
    description: Directory (tenant) id or verified domain, as the modules' O(mailops.o365.o365_smtp_send#module:tenant_id).
    type: str
    ini:
      - section: callback_o365_failure_mail
        key: tenant_id
    env:
      - name: O365_TENANT_ID
  client_id:
    description: Application (client) id.
    type: str
    ini:
      - section: callback_o365_failure_mail
        key: client_id
    env:
      - name: O365_CLIENT_ID
  client_secret:
    description: Client secret of the app (app-only token). Prefer the environment to C(ansible.cfg).
    type: str
    ini:
      - section: callback_o365_failure_mail
        key: client_secret
    env:
      - name: O365_CLIENT_SECRET
  client_certificate_path:
    description: PEM file with the app's private key and certificate.
    type: path
    ini:
      - section: callback_o365_failure_mail
        key: client_certificate_path
    env:
      - name: O365_CLIENT_CERTIFICATE_PATH
  client_certificate_password:
    description: Password of the private key in O(client_certificate_path).
    type: str
    ini:
      - section: callback_o365_failure_mail
        key: client_certificate_password
    env:
      - name: O365_CLIENT_CERTIFICATE_PASSWORD
  refresh_token:
    description: A refresh token for delegated access (the sender's).
    type: str
    env:
      - name: O365_REFRESH_TOKEN
  access_token:
    description: An access token to use as is.
    type: str
    env:
      - name: O365_ACCESS_TOKEN
  username:
    description: The user whose cached delegated token to use. Defaults to O(sender).
    type: str
    ini:
      - section: callback_o365_failure_mail
        key: username
    env:
      - name: O365_USERNAME
  cloud:
    description: Microsoft cloud.
    type: str
    choices: [china, public, usdod, usgov]
    ini:
      - section: callback_o365_failure_mail
        key: cloud
    env:
      - name: O365_CLOUD
  authority_host:
    description: Override of the authority host, an C(https://) URL without path.
    type: str
    ini:
      - section: callback_o365_failure_mail
        key: authority_host
    env:
      - name: O365_AUTHORITY_HOST
  token_cache_path:
    description: File of the persisted token cache (shared with the modules on the controller).
    type: path
    ini:
      - section: callback_o365_failure_mail
        key: token_cache_path
    env:
      - name: O365_TOKEN_CACHE_PATH
  ca_path:
    description: CA bundle to verify the token endpoint and the SMTP server.
    type: path
    ini:
      - section: callback_o365_failure_mail
        key: ca_path
    env:
      - name: O365_CA_PATH
  timeout:
    description: Seconds allowed for each network operation.
    type: float
    default: 30
    ini:
      - section: callback_o365_failure_mail
        key: timeout
    env:
      - name: O365_FAILURE_MAIL_TIMEOUT
notes:
  - Callback options are read when the plugin loads, before inventory, so they come from C(ansible.cfg) and
    the environment only, not from inventory or play variables.
  - The identity needs C(SMTP.SendAsApp) (app-only) or C(SMTP.Send) (delegated) and SMTP AUTH enabled for
    O(sender).
seealso:
  - module: mailops.o365.o365_smtp_send
"""

EXAMPLES = r"""
# ansible.cfg
# [defaults]
# callbacks_enabled = mailops.o365.o365_failure_mail
#
# [callback_o365_failure_mail]
# sender = ansible@contoso.com
# to = oncall@contoso.com, ops-lead@contoso.com
# subject_prefix = [prod deploy]
#
# and the credentials in the environment, shared with the modules:
#   O365_TENANT_ID=contoso.onmicrosoft.com O365_CLIENT_ID=... O365_CLIENT_SECRET=... ansible-playbook site.yml
"""

# Imports follow DOCUMENTATION/EXAMPLES, as validate-modules requires (ruff.toml exempts only plugins/modules).
import os
import re
import socket
from typing import Iterable, List, Optional

from ansible.plugins.callback import CallbackBase

from ansible_collections.mailops.o365.plugins.module_utils._errors import O365Error
from ansible_collections.mailops.o365.plugins.module_utils._options import AuthSettings
from ansible_collections.mailops.o365.plugins.module_utils._send import Prepared, SmtpSender

NO_LOG_TEXT = "output hidden (no_log)"
REDACTED = "[redacted]"
SECRET_OPTIONS = ("client_secret", "client_certificate_password", "refresh_token", "access_token")
AUTH_OPTIONS = ("tenant_id", "client_id", "client_secret", "client_certificate_path", "client_certificate_password",
                "refresh_token", "access_token", "username", "cloud", "authority_host", "token_cache_path",
                "ca_path", "timeout")
# Token-shaped strings, whoever's they are: JWTs, base64 XOAUTH2 ("user=..."), bearer values.
_TOKENISH = (
    re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    re.compile(r"dXNlcj[0-9A-Za-z+/]{16,}={0,2}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"(?i)(auth=bearer\s*)[^\s\x01]+"),
)
_MIN_SECRET = 4   # shorter "secrets" would blank out innocent words


def scrub(text: str, secrets: Iterable[Optional[str]]) -> str:
    """Drop every known secret value and every token-shaped string from ``text``."""
    for secret in sorted((s for s in secrets if s and len(s) >= _MIN_SECRET), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    for pattern in _TOKENISH:
        text = pattern.sub(lambda m: (m.group(1) if m.groups() else "") + REDACTED, text)
    return text


def failure_text(result: dict, no_log: bool, limit: int) -> str:
    """The failure message of a task result, one paragraph, cut to ``limit`` characters."""
    if no_log or result.get("_ansible_no_log") or "censored" in result:
        return NO_LOG_TEXT
    parts = [str(result.get("msg") or result.get("reason") or "").strip()]
    error = result.get("error")
    if isinstance(error, dict) and error.get("category"):
        parts.append("(category: %s)" % error["category"])
    for key in ("stderr", "module_stderr"):
        if result.get(key):
            parts.append("%s: %s" % (key, str(result[key]).strip()))
    if result.get("rc") not in (None, 0):
        parts.append("rc=%s" % result["rc"])
    text = " ".join(p for p in parts if p) or "failed (no message)"
    return text if len(text) <= limit else text[:max(limit - 3, 0)] + "..."


def compose(playbook: str, entries: List[dict], counts: dict, max_failures: int) -> str:
    """The plain-text body: one block per failure, then the per-host recap."""
    lines = ["Playbook %s on %s finished with %d failed task(s) and %d unreachable host(s)."
             % (playbook, socket.gethostname(), counts["failed"], counts["unreachable"]), ""]
    for entry in entries[:max_failures]:
        lines.append("[%s] host: %s" % (entry["kind"], entry["host"]))
        lines.append("  play: %s" % entry["play"])
        lines.append("  task: %s" % entry["task"])
        lines.append("  message: %s" % entry["message"])
        lines.append("")
    if len(entries) > max_failures:
        lines.append("... and %d more not listed." % (len(entries) - max_failures))
        lines.append("")
    lines.append("Recap:")
    for host, summary in sorted(counts["hosts"].items()):
        lines.append("  %s: %s" % (host, ", ".join("%s=%d" % kv for kv in sorted(summary.items()) if kv[1]) or "nothing ran"))
    return "\n".join(lines) + "\n"


def _result_parts(result) -> tuple:
    """(host name, task, result dict) on ansible-core 2.19 (public names) and earlier (underscored)."""
    host = getattr(result, "host", None) or result._host
    task = getattr(result, "task", None) or result._task
    data = getattr(result, "result", None)
    if data is None:
        data = result._result
    return host.get_name(), task, data


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "mailops.o365.o365_failure_mail"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, display=None) -> None:
        super().__init__(display=display)
        self.playbook = "playbook"
        self.play = ""
        self.entries: List[dict] = []

    # -- events ------------------------------------------------------------------------------

    def v2_playbook_on_start(self, playbook) -> None:
        self.playbook = os.path.basename(str(getattr(playbook, "_file_name", None) or "playbook"))

    def v2_playbook_on_play_start(self, play) -> None:
        self.play = str(play.get_name()).strip()

    def v2_runner_on_failed(self, result, ignore_errors: bool = False) -> None:
        if not ignore_errors:
            self._record("FAILED", result)

    def v2_runner_on_unreachable(self, result) -> None:
        self._record("UNREACHABLE", result)

    def v2_playbook_on_stats(self, stats) -> None:
        hosts = {h: stats.summarize(h) for h in sorted(stats.processed)}
        # Rescued failures are not counted as failures by Ansible; keep only hosts the run really failed.
        failed = {h for h, s in hosts.items() if s.get("failures")}
        dark = {h for h, s in hosts.items() if s.get("unreachable")}
        entries = [e for e in self.entries if e["host"] in (failed if e["kind"] == "FAILED" else dark)]
        if not entries:
            return
        counts = {"failed": sum(1 for e in entries if e["kind"] == "FAILED"),
                  "unreachable": len({e["host"] for e in entries if e["kind"] == "UNREACHABLE"}),
                  "hosts": {h: {k: v for k, v in s.items() if isinstance(v, int)} for h, s in hosts.items()}}
        self._send(entries, counts)

    # -- helpers -----------------------------------------------------------------------------

    def _record(self, kind: str, result) -> None:
        try:
            host, task, data = _result_parts(result)
            no_log = bool(getattr(task, "no_log", False))
            self.entries.append({"kind": kind, "host": host, "play": self.play, "task": str(task.get_name()).strip(),
                                 "message": failure_text(data, no_log, self._limit())})
        except Exception as exc:  # noqa: BLE001 - a notification must never break the run
            self._display.warning("o365_failure_mail: could not record a failure (%s)" % type(exc).__name__)

    def _limit(self) -> int:
        return max(int(self.get_option("max_message_chars") or 500), 20)

    def _secrets(self) -> list:
        return [self.get_option(name) for name in SECRET_OPTIONS]

    def _send(self, entries: List[dict], counts: dict) -> None:
        secrets = self._secrets()
        try:
            self._deliver(entries, counts, secrets)
        except O365Error as err:
            self._display.warning("o365_failure_mail: the failure mail was not sent: %s%s"
                                  % (scrub(err.message, secrets), (" Hint: " + scrub(err.hint, secrets)) if err.hint else ""))
        except Exception as exc:  # noqa: BLE001 - never crash the play; the text may hold anything, so scrub it
            self._display.warning("o365_failure_mail: the failure mail was not sent: %s: %s"
                                  % (type(exc).__name__, scrub(str(exc), secrets)[:300]))

    def _deliver(self, entries: List[dict], counts: dict, secrets: list) -> None:
        sender = self.get_option("sender")
        params = {name: self.get_option(name) for name in AUTH_OPTIONS}
        params["username"] = params["username"] or sender
        settings = AuthSettings.from_params(params)
        subject = "%s %s: %d failed, %d unreachable" % (
            self.get_option("subject_prefix"), self.playbook, counts["failed"], counts["unreachable"])
        body = scrub(compose(self.playbook, entries, counts, int(self.get_option("max_failures") or 100)), secrets)
        item = Prepared(None, {"sender": sender, "to": list(self.get_option("to") or []), "subject": scrub(subject, secrets),
                               "body": body, "headers": {"Auto-Submitted": "auto-generated"}}, None)
        smtp = SmtpSender(settings, item.sender, self.get_option("host"), self.get_option("port"),
                          self.get_option("security") or "starttls", None, self._display.warning)
        try:
            smtp.open()
            outcome = smtp.send_all([item])[0]
        finally:
            smtp.close()
        if outcome["delivery"] != "accepted":
            error = outcome.get("error") or {}
            raise O365Error(error.get("category") or "protocol", "%s (%s)" % (error.get("message") or "not accepted",
                                                                              outcome["delivery"]))
        self._display.display("o365_failure_mail: failure report %s sent to %s"
                              % (outcome["message_id"], ", ".join(outcome["accepted"])))
