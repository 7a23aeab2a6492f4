#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: o365_smtp_send
short_description: Send mail through Exchange Online SMTP AUTH with OAuth2 (SASL XOAUTH2)
version_added: 0.1.0
description:
  - Sends mail over SMTP submission with C(AUTH XOAUTH2) - STARTTLS on port 587 (Exchange Online's way) or
    implicit TLS on 465. STARTTLS is mandatory; there is never a plaintext fallback and credentials are never
    sent unencrypted. Certificates are verified.
  - Everything M(community.general.mail) does (to, cc, bcc, reply-to, HTML, attachments, custom headers, charset)
    plus inline images, OAuth2, check mode, documented returns and batch mode (O(messages)) over one
    authenticated connection, paced to Exchange Online's 30 messages a minute.
  - Every message is built and validated before connecting (addresses, header injection, attachments); with
    the server's advertised C(SIZE) checked before the first C(MAIL FROM), so nothing is half-sent.
  - Transient C(4xx) replies before the message data are retried with backoff; once the server may have the
    message data it is never sent again, so an alert is never duplicated. RV(delivery) tells what happened.
author:
  - mailops.o365 maintainers (@mailops)
extends_documentation_fragment:
  - mailops.o365.attributes
  - mailops.o365.auth
attributes:
  check_mode:
    support: full
    details: Builds and validates every message, connects and authenticates (so a check run proves the credentials), sends nothing and returns RV(would_send).
  diff_mode:
    support: none
options:
  sender:
    description:
      - The From address, optionally with a display name (C(Alerts <alerts@contoso.com>)).
      - Required, at the top level or in every entry of O(messages).
    type: str
    aliases: [from]
  mailbox:
    description:
      - The mailbox that authenticates (the SASL C(user=)). Defaults to the sender's address. Sending as
        another address needs the SendAs right.
    type: str
  to:
    description: Recipients. At least one of O(to), O(cc) or O(bcc) is required.
    type: list
    elements: str
  cc:
    description: Carbon-copy recipients.
    type: list
    elements: str
  bcc:
    description: Blind carbon-copy recipients. They receive the message but never appear in its headers.
    type: list
    elements: str
  reply_to:
    description: Reply-To addresses.
    type: list
    elements: str
  subject:
    description: Subject (UTF-8 welcome).
    type: str
    default: ""
  body:
    description: Body text, or HTML when O(subtype=html).
    type: str
    default: ""
  subtype:
    description: Body type.
    type: str
    choices: [plain, html]
    default: plain
  charset:
    description: Character set of the body.
    type: str
    default: utf-8
  attach:
    description: Files to attach; content types are guessed from the file names.
    type: list
    elements: path
    default: []
  inline:
    description:
      - Images for an HTML body, each a dict with C(path) and C(cid); reference them as C(<img src="cid:logo">).
    type: list
    elements: dict
    default: []
  headers:
    description:
      - Extra headers as a dict (C(X-Priority), C(X-Alert-Id)...). Structural headers (From, To, Subject,
        Message-ID...) are set by their options and cannot be overridden here. CR and LF are refused.
    type: dict
    default: {}
  message_id_domain:
    description: Domain of the generated Message-ID. Defaults to the sender's domain.
    type: str
  messages:
    description:
      - Batch mode - a list of messages, each a dict with any of O(sender), O(to), O(cc), O(bcc),
        O(reply_to), O(subject), O(body), O(subtype), O(charset), O(attach), O(inline), O(headers).
        Options given at the top level are the defaults of every message.
      - All are sent over one authenticated connection, at most O(max_per_minute) a minute (paced, not failed).
    type: list
    elements: dict
  host:
    description: SMTP server. Defaults to the cloud's (C(smtp.office365.com) in the public cloud).
    type: str
  port:
    description: Port. Defaults to 587 for O(security=starttls) and 465 for O(security=tls).
    type: int
  security:
    description: V(starttls) (mandatory upgrade, never a plaintext fallback) or V(tls) (implicit TLS).
    type: str
    choices: [starttls, tls]
    default: starttls
  ehlohost:
    description: Name to send in EHLO. Defaults to an address literal of the local address.
    type: str
  fail_on_refused:
    description: Fail the task when some recipients were refused while others accepted the message.
    type: bool
    default: true
  max_per_minute:
    description: Pacing of batch mode; Exchange Online accepts 30 messages a minute per mailbox.
    type: int
    default: 30
notes:
  - The app needs C(SMTP.Send) (delegated) or C(SMTP.SendAsApp) (app-only, with the service principal
    registered in Exchange), and SMTP AUTH must be enabled for the mailbox
    (C(Set-CASMailbox -SmtpClientAuthenticationDisabled $false)).
seealso:
  - module: community.general.mail
    description: The basic-auth module this one replaces.
"""

EXAMPLES = r"""
- name: Alert from a playbook (app-only token from the O365_* environment)
  mailops.o365.o365_smtp_send:
    sender: Ops Alerts <alerts@contoso.com>
    to: [oncall@contoso.com]
    subject: "Backup failed on {{ inventory_hostname }}"
    body: "{{ backup_result.stderr | default('no output') }}"
    headers:
      X-Priority: "1"

- name: HTML report with an attachment and an inline logo
  mailops.o365.o365_smtp_send:
    tenant_id: contoso.onmicrosoft.com
    client_id: 6731de76-14a6-49ae-97bc-6eba6914391e
    client_certificate_path: /etc/mailops/app.pem
    sender: reports@contoso.com
    to: [team@contoso.com]
    cc: [manager@contoso.com]
    bcc: [archive@contoso.com]
    subject: Weekly mail health report
    subtype: html
    body: '<img src="cid:logo"><p>See the attached report.</p>'
    inline:
      - path: files/logo.png
        cid: logo
    attach:
      - /var/reports/mail-health.html

- name: Batch - one connection for many messages, paced to 30 a minute
  mailops.o365.o365_smtp_send:
    sender: alerts@contoso.com
    subject: Disk space warning
    messages:
      - to: [web-team@contoso.com]
        body: web01 is at 95%
      - to: [db-team@contoso.com]
        body: db01 is at 91%

- name: Set the auth options once with module_defaults
  module_defaults:
    group/mailops.o365.o365:
      tenant_id: contoso.onmicrosoft.com
      client_id: 6731de76-14a6-49ae-97bc-6eba6914391e
      client_secret: "{{ vault_o365_client_secret }}"
  block:
    - name: Send
      mailops.o365.o365_smtp_send:
        sender: alerts@contoso.com
        to: [oncall@contoso.com]
        subject: Hello
        body: Sent with OAuth2.

- name: Prove the credentials without sending (check mode)
  mailops.o365.o365_smtp_send:
    sender: alerts@contoso.com
    to: [oncall@contoso.com]
    subject: test
  check_mode: true
"""

RETURN = r"""
message_id:
  description: Message-ID of the message.
  returned: single message
  type: str
  sample: "<172345.1234.5678@contoso.com>"
delivery:
  description:
    - What happened to the message - C(accepted), C(refused), C(not_sent) or C(unknown) (the connection failed
      after the server may have received the data; it is not sent again to avoid a duplicate).
  returned: single message
  type: str
accepted:
  description: Recipients the server accepted.
  returned: single message
  type: list
  elements: str
refused:
  description: Recipients the server refused, with its reply.
  returned: single message
  type: dict
  sample: {"nobody@contoso.com": "550 5.1.10 RESOLVER.ADR.RecipientNotFound"}
server_response:
  description: The server's final reply to the message data.
  returned: single message, when sent
  type: str
  sample: "250 2.0.0 OK <...> [Hostname=...]"
timings:
  description: Milliseconds per phase - C(connect), C(greeting), C(tls), C(ehlo), C(auth), C(send), C(total).
  returned: always, when a connection was made
  type: dict
results:
  description: Batch mode - one result per message in order, each with the keys above and C(index).
  returned: batch mode
  type: list
  elements: dict
summary:
  description: Batch mode - counts C(total), C(accepted), C(failed), C(not_sent).
  returned: batch mode
  type: dict
would_send:
  description: Check mode - what would have been sent (from, to, cc, bcc_count, subject, size, attachments, message_id).
  returned: check mode
  type: list
  elements: dict
server_greeting:
  description: The server's greeting.
  returned: when connected
  type: str
error:
  description: The classified failure (C(category), C(message), C(hint), C(server_reply), C(delivery)).
  returned: failure
  type: dict
"""

from ansible_collections.mailops.o365.plugins.module_utils._errors import config_error
from ansible_collections.mailops.o365.plugins.module_utils._message import parse_address, summarize
from ansible_collections.mailops.o365.plugins.module_utils._module import O365Module
from ansible_collections.mailops.o365.plugins.module_utils._send import SmtpSender, merge_specs, prepare


def main() -> None:
    module = O365Module(
        argument_spec=dict(
            sender=dict(type="str", aliases=["from"]),
            mailbox=dict(type="str"),
            to=dict(type="list", elements="str"),
            cc=dict(type="list", elements="str"),
            bcc=dict(type="list", elements="str"),
            reply_to=dict(type="list", elements="str"),
            subject=dict(type="str", default=""),
            body=dict(type="str", default=""),
            subtype=dict(type="str", default="plain", choices=["plain", "html"]),
            charset=dict(type="str", default="utf-8"),
            attach=dict(type="list", elements="path", default=[]),
            inline=dict(type="list", elements="dict", default=[]),
            headers=dict(type="dict", default={}),
            message_id_domain=dict(type="str"),
            messages=dict(type="list", elements="dict"),
            host=dict(type="str"),
            port=dict(type="int"),
            security=dict(type="str", default="starttls", choices=["starttls", "tls"]),
            ehlohost=dict(type="str"),
            fail_on_refused=dict(type="bool", default=True),
            max_per_minute=dict(type="int", default=30),
        ),
        supports_check_mode=True,
    )
    module.run(lambda: send(module))


def send(module: O365Module) -> dict:
    p = module.params
    settings = module.settings
    if not 1 <= p["max_per_minute"] <= 10000:
        raise config_error("max_per_minute", "must be between 1 and 10000")
    specs, batch = merge_specs(p)
    prepared = prepare(specs, p["message_id_domain"], batch)
    mailbox = parse_address("mailbox", p["mailbox"] or prepared[0].sender).addr_spec
    sender = SmtpSender(settings, mailbox, p["host"], p["port"], p["security"], p["ehlohost"], module.warn,
                        p["max_per_minute"])
    try:
        session = sender.open()
        if module.check_mode:
            would = [summarize(item.message, item.recipients) for item in prepared]
            return dict(changed=False, would_send=would, server_greeting=session.server_greeting,
                        timings=dict(session.timings))
        results = sender.send_all(prepared)
    finally:
        sender.close()
    return shape(module, results, batch, session)


def shape(module: O365Module, results: list, batch: bool, session) -> dict:
    accepted = [r for r in results if r["delivery"] == "accepted"]
    out = dict(changed=bool(accepted), server_greeting=session.server_greeting)
    if batch:
        out.update(results=results, summary={"total": len(results), "accepted": len(accepted),
                                             "failed": sum(1 for r in results if r["delivery"] in ("refused", "unknown")),
                                             "not_sent": sum(1 for r in results if r["delivery"] == "not_sent")})
    else:
        out.update(results[0])
        out["timings"] = dict(session.timings, **results[0].get("timings", {}))
    failed = [r for r in results if r["delivery"] != "accepted"]
    partial = [r for r in accepted if r["refused"]]
    if failed:
        first = failed[0].get("error") or {}
        out["error"] = first
        module.fail_json(msg="%d of %d messages not accepted: %s" % (len(failed), len(results), first.get("message")), **out)
    if partial and module.params["fail_on_refused"]:
        module.fail_json(msg="some recipients were refused: %s" % ", ".join(sorted(partial[0]["refused"])), **out)
    return out


if __name__ == "__main__":
    main()
