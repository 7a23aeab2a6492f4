#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: o365_smtp_check
short_description: Check that Exchange Online mailboxes can authenticate to SMTP AUTH with OAuth2 (SASL XOAUTH2)
version_added: 0.1.0
description:
  - Connects to SMTP submission (STARTTLS on 587 or implicit TLS on 465), authenticates with C(AUTH XOAUTH2)
    and quits. Nothing is sent; it proves the mailbox can send (SMTP AUTH enabled, token accepted).
  - Every phase is timed; the server's own failure text is kept and classified (C(5.7.139) SMTP AUTH disabled,
    C(5.7.3) token/mailbox mismatch...), with the Exchange fix as a hint.
  - One mailbox with O(mailbox), or a fleet with O(mailboxes), checked concurrently; at most 3 connections per
    mailbox, Exchange Online's limit. To send mail use M(mailops.o365.o365_smtp_send).
author:
  - mailops.o365 maintainers (@mailops)
extends_documentation_fragment:
  - mailops.o365.attributes
  - mailops.o365.auth
  - mailops.o365.checks
attributes:
  check_mode:
    support: full
    details: Nothing is ever sent, so check mode runs the real check.
  diff_mode:
    support: none
options:
  ehlohost:
    description: Name to send in EHLO. Defaults to an address literal of the local address. A fleet entry may override it.
    type: str
"""

EXAMPLES = r"""
- name: Check that the alert mailbox can authenticate to SMTP AUTH
  mailops.o365.o365_smtp_check:
    tenant_id: contoso.onmicrosoft.com
    client_id: 6731de76-14a6-49ae-97bc-6eba6914391e
    client_certificate_path: /etc/mailops/app.pem
    mailbox: alerts@contoso.com
  register: smtp

- name: Delegated token from the cache
  mailops.o365.o365_smtp_check:
    tenant_id: contoso.onmicrosoft.com
    client_id: 6731de76-14a6-49ae-97bc-6eba6914391e
    flow: cache
    username: adele@contoso.com
    mailbox: adele@contoso.com

- name: Fleet check of SMTP AUTH, without failing the play
  mailops.o365.o365_smtp_check:
    mailboxes: "{{ tenant_mailboxes }}"
    fail_on_error: false
  register: fleet
"""

RETURN = r"""
mailbox:
  description: The mailbox checked (single-mailbox mode).
  returned: single mailbox
  type: str
ok:
  description: Whether AUTH XOAUTH2 succeeded.
  returned: single mailbox
  type: bool
authenticated:
  description: Whether AUTH XOAUTH2 succeeded.
  returned: single mailbox
  type: bool
capabilities:
  description: ESMTP extensions from EHLO after TLS.
  returned: single mailbox
  type: list
  elements: str
  sample: ["AUTH XOAUTH2", "SIZE 36700160", "PIPELINING"]
max_size:
  description: The message size limit the server advertised (SIZE), in bytes.
  returned: when authenticated
  type: int
server_greeting:
  description: The server's greeting line.
  returned: single mailbox
  type: str
timings:
  description: Milliseconds per phase, measured with a monotonic clock - C(connect), C(greeting), C(tls), C(command) (EHLO), C(auth), C(total).
  returned: single mailbox
  type: dict
problems:
  description: Why the token cannot work for SMTP, when that was found before connecting.
  returned: when the token's claims rule it out
  type: list
  elements: str
error:
  description: The classified failure.
  returned: when the check failed
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
results:
  description: Fleet mode - one result per mailbox, in input order, each with the keys above.
  returned: fleet mode
  type: list
  elements: dict
summary:
  description: Fleet mode - C(total), C(ok), C(failed), C(by_category) and C(latency_ms) (C(min), C(median), C(p95), C(max)).
  returned: fleet mode
  type: dict
"""

from ansible_collections.mailops.o365.plugins.module_utils._checks import CHECK_ARGUMENT_SPEC, CHECK_MUTUALLY_EXCLUSIVE, CHECK_REQUIRED_ONE_OF, run_checks
from ansible_collections.mailops.o365.plugins.module_utils._errors import config_error
from ansible_collections.mailops.o365.plugins.module_utils._module import O365Module
from ansible_collections.mailops.o365.plugins.module_utils._send import check_smtp
from ansible_collections.mailops.o365.plugins.module_utils._smtp import EHLOHOST_RE


def probe(target: dict, sasl: str, context, timeout: float) -> dict:
    return check_smtp(target["host"], target["port"], target["security"], target["mailbox"], sasl, context, timeout,
                      target.get("ehlohost"))


def validate(target: dict, where) -> None:
    """ehlohost is checked with the other options, before any token is asked for."""
    ehlohost = target.get("ehlohost")
    if ehlohost is not None and not (isinstance(ehlohost, str) and EHLOHOST_RE.match(ehlohost)):
        raise config_error(where("ehlohost"), "must be a host name or address literal without spaces")


def main() -> None:
    module = O365Module(
        argument_spec=dict(CHECK_ARGUMENT_SPEC, ehlohost=dict(type="str")),
        mutually_exclusive=CHECK_MUTUALLY_EXCLUSIVE,
        required_one_of=CHECK_REQUIRED_ONE_OF,
        supports_check_mode=True,
    )
    module.run(lambda: run_checks(module, "smtp", probe, extra_keys=("ehlohost",), validate=validate))


if __name__ == "__main__":
    main()
