#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: o365_mailflow_check
short_description: Measure end-to-end mail flow with a canary sent over SMTP XOAUTH2 and found over IMAP
version_added: 0.1.0
description:
  - Sends one uniquely tagged canary message from O(sender_mailbox) over SMTP AUTH C(XOAUTH2), polls
    O(recipient_mailbox) over IMAP C(XOAUTH2) until it arrives or O(crit_s) passes, and reports the delivery
    latency against O(warn_s) and O(crit_s) as RV(status).
  - The canary carries a C(X-Mailops-Canary) header and a C([mailops canary]) subject with a unique id.
    Afterwards it is deleted (O(cleanup)), together with canaries this sender left in the folder on earlier
    runs that are older than O(crit_s) (they were lost or arrived late); younger ones may belong to a probe
    running at the same time and are left alone.
  - The recipient's IMAP login is checked, and the leftovers looked up, before anything is sent, so a canary is
    only sent when it can be found and deleted. The canary is never sent twice - once the server may have
    the message data, it is not sent again.
  - Polling backs off from one second up to O(poll_interval_s). Every IMAP session is bounded, and the whole
    polling phase ends within O(crit_s) plus O(timeout).
  - For an app-only identity one token (cached in O(token_cache_path)) serves both mailboxes; delegated
    tokens are asked for per mailbox (O(sender_mailbox) for SMTP, O(recipient_mailbox) for IMAP).
author:
  - mailops.o365 maintainers (@mailops)
extends_documentation_fragment:
  - mailops.o365.attributes
  - mailops.o365.auth
attributes:
  check_mode:
    support: full
    details: Validates the options, logs in to the recipient over IMAP (and counts the stale canaries in RV(stale_found))
      and to the sender over SMTP, so a check run proves both credentials. Nothing is sent or deleted.
  diff_mode:
    support: none
options:
  sender_mailbox:
    description:
      - The mailbox that sends the canary; its token authenticates SMTP (the SASL C(user=)) and it is the From address.
    type: str
    required: true
  recipient_mailbox:
    description:
      - The mailbox the canary is sent to; its token authenticates IMAP. It may be the same as O(sender_mailbox).
    type: str
    required: true
  smtp_host:
    description: SMTP submission server. Defaults to the cloud's (C(smtp.office365.com) in the public cloud).
    type: str
  smtp_port:
    description: SMTP port. Defaults to 587 for O(smtp_security=starttls) and 465 for O(smtp_security=tls).
    type: int
  smtp_security:
    description: V(starttls) (mandatory upgrade, never a plaintext fallback) or V(tls) (implicit TLS).
    type: str
    choices: [starttls, tls]
    default: starttls
  imap_host:
    description: IMAP server. Defaults to the cloud's (C(outlook.office365.com) in the public cloud).
    type: str
  imap_port:
    description: IMAP port. Defaults to 993 for O(imap_security=tls) and 143 for O(imap_security=starttls).
    type: int
  imap_security:
    description: V(tls) (implicit TLS) or V(starttls).
    type: str
    choices: [tls, starttls]
    default: tls
  folder:
    description:
      - The recipient's folder to poll and clean up. A canary delivered to another folder (for example Junk)
        is reported as C(lost).
    type: str
    default: INBOX
  warn_s:
    description: Latency in seconds from which RV(status) is C(warn).
    type: float
    default: 60
  crit_s:
    description:
      - Latency in seconds from which RV(status) is C(crit); also the polling deadline. A canary not found by
        then is C(lost), and canaries older than this are stale and deleted by later runs.
      - Must be at least O(warn_s).
    type: float
    default: 300
  poll_interval_s:
    description: The longest wait between two polls; the first poll comes after one second, then the wait doubles up to this.
    type: float
    default: 5
  cleanup:
    description: Delete this canary after it arrived, and the stale canaries of earlier runs.
    type: bool
    default: true
  fail_on:
    description:
      - When the task fails. V(crit) - on C(crit) and C(lost). V(warn) - also on C(warn). V(never) - never for a
        measurement, so monitoring can read RV(status).
      - C(error) (a configuration, token, login or send failure - nothing was measured) always fails the task.
    type: str
    choices: [crit, warn, never]
    default: crit
  ehlohost:
    description: Name to send in EHLO. Defaults to an address literal of the local address.
    type: str
notes:
  - The identity needs C(SMTP.Send) and C(IMAP.AccessAsUser.All) (delegated), or C(SMTP.SendAsApp) and
    C(IMAP.AccessAsApp) with the service principal granted both mailboxes (app-only). SMTP AUTH must be
    enabled for O(sender_mailbox) and IMAP for O(recipient_mailbox).
  - The latency is measured from the server accepting the canary to the poll that found it, so its resolution
    is the polling interval at that moment.
seealso:
  - module: mailops.o365.o365_smtp_send
  - module: mailops.o365.o365_imap_check
"""

EXAMPLES = r"""
- name: Probe mail flow between two mailboxes (app-only token from the O365_* environment)
  mailops.o365.o365_mailflow_check:
    sender_mailbox: probe-out@contoso.com
    recipient_mailbox: probe-in@contoso.com
  register: flow

- name: Tighter thresholds, report to monitoring without failing the play
  mailops.o365.o365_mailflow_check:
    tenant_id: contoso.onmicrosoft.com
    client_id: 6731de76-14a6-49ae-97bc-6eba6914391e
    client_certificate_path: /etc/mailops/app.pem
    sender_mailbox: probe-out@contoso.com
    recipient_mailbox: probe-in@contoso.com
    warn_s: 30
    crit_s: 120
    poll_interval_s: 10
    fail_on: never
  register: flow

- name: Push the result to monitoring
  ansible.builtin.uri:
    url: https://monitoring.contoso.com/api/mailflow
    method: POST
    body_format: json
    body:
      status: "{{ flow.status }}"
      latency_s: "{{ flow.latency_s }}"

- name: Prove both logins without sending anything
  mailops.o365.o365_mailflow_check:
    sender_mailbox: probe-out@contoso.com
    recipient_mailbox: probe-in@contoso.com
  check_mode: true
"""

RETURN = r"""
ok:
  description: Whether the canary arrived within O(warn_s) (in check mode - whether both logins worked).
  returned: always
  type: bool
status:
  description:
    - C(ok) below O(warn_s), C(warn) below O(crit_s), C(crit) at or above it, C(lost) when the canary was not
      found by the deadline, C(error) when nothing could be measured (see RV(error)).
  returned: always
  type: str
  sample: ok
latency_s:
  description: Seconds from the server accepting the canary to the poll that found it.
  returned: always (null when not found)
  type: float
  sample: 2.417
canary_id:
  description: The canary's id, in its C(X-Mailops-Canary) header and subject.
  returned: always
  type: str
  sample: canary-1718000000-3f9a1c2b7d4e
message_id:
  description: Message-ID of the canary.
  returned: always (null when nothing was sent)
  type: str
  sample: "<171800.1234.5678@contoso.com>"
sent_at:
  description: When the server accepted the canary (ISO 8601, UTC).
  returned: always (null when nothing was sent)
  type: str
  sample: "2024-06-10T06:13:20Z"
received_at:
  description: When the poll found the canary (ISO 8601, UTC).
  returned: always (null when not found)
  type: str
  sample: "2024-06-10T06:13:22Z"
polls:
  description: How many times the folder was searched.
  returned: always
  type: int
stale_found:
  description: Canaries of earlier runs of this sender older than O(crit_s) found in the folder.
  returned: always
  type: int
stale_removed:
  description: How many of them were deleted.
  returned: always
  type: int
removed:
  description: Whether this run's canary was deleted.
  returned: always
  type: bool
timings:
  description: Milliseconds per phase - C(login) (IMAP and SMTP, leftovers lookup), C(send), C(poll), C(cleanup).
  returned: always
  type: dict
  sample: {"login": 180.2, "send": 95.0, "poll": 2417.3, "cleanup": 60.1}
error:
  description: The classified failure when RV(status) is C(error).
  returned: when RV(status) is C(error)
  type: dict
  contains:
    category:
      description: One of C(config), C(token), C(connection), C(tls), C(timeout), C(auth), C(disabled), C(throttled), C(protocol).
      type: str
    message:
      description: What happened, with the server's own text.
      type: str
    hint:
      description: The Exchange or Entra ID fix.
      type: str
    server_reply:
      description: The server's reply, verbatim.
      type: str
"""

from ansible_collections.mailops.o365.plugins.module_utils._mailflow import MailflowProbe, ProbeConfig, should_fail
from ansible_collections.mailops.o365.plugins.module_utils._module import O365Module


def main() -> None:
    module = O365Module(
        argument_spec=dict(
            sender_mailbox=dict(type="str", required=True),
            recipient_mailbox=dict(type="str", required=True),
            smtp_host=dict(type="str"),
            smtp_port=dict(type="int"),
            smtp_security=dict(type="str", default="starttls", choices=["starttls", "tls"]),
            imap_host=dict(type="str"),
            imap_port=dict(type="int"),
            imap_security=dict(type="str", default="tls", choices=["tls", "starttls"]),
            folder=dict(type="str", default="INBOX"),
            warn_s=dict(type="float", default=60.0),
            crit_s=dict(type="float", default=300.0),
            poll_interval_s=dict(type="float", default=5.0),
            cleanup=dict(type="bool", default=True),
            fail_on=dict(type="str", default="crit", choices=["crit", "warn", "never"]),
            ehlohost=dict(type="str"),
        ),
        supports_check_mode=True,
    )
    module.run(lambda: probe(module))


def probe(module: O365Module) -> dict:
    config = ProbeConfig.from_params(module.params, module.settings.cloud)
    result = MailflowProbe(module.settings, config, module.warn).run(module.check_mode)
    if should_fail(result["status"], config.fail_on):
        module.fail_json(msg=message(result, config), **result)
    result["msg"] = message(result, config)
    return result


def message(result: dict, config: ProbeConfig) -> str:
    status = result["status"]
    if status == "error":
        return "mail flow %s -> %s not measured: %s" % (config.sender, config.recipient, result["error"]["message"])
    if status == "lost":
        return "canary %s not found in %s of %s within %ss" % (
            result["canary_id"], config.folder, config.recipient, config.crit_s)
    if result["latency_s"] is None:
        return "both logins work; nothing sent (check mode)"
    return "mail flow %s: %.3fs (warn %ss, crit %ss)" % (status, result["latency_s"], config.warn_s, config.crit_s)


if __name__ == "__main__":
    main()
