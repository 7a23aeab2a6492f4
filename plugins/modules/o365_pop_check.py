#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: o365_pop_check
short_description: Check that Exchange Online mailboxes answer over POP3 with OAuth2 (SASL XOAUTH2)
version_added: 0.1.0
description:
  - Connects over POP3 (implicit TLS or STLS), reads C(CAPA), authenticates with C(AUTH XOAUTH2) and the base64
    line after the server's C(+) (bare C(+) and C(+ ) both occur), then runs C(STAT) to prove the mailbox is usable.
  - Every phase is timed; the server's own failure text is kept and classified, with the Exchange fix as a hint.
  - One mailbox with O(mailbox), or a fleet with O(mailboxes), checked concurrently with one token per tenant,
    app and scope.
  - Read-only (C(STAT) and C(QUIT) only; nothing is retrieved or deleted); check mode runs the same checks.
author:
  - mailops.o365 maintainers (@mailops)
extends_documentation_fragment:
  - mailops.o365.attributes
  - mailops.o365.auth
  - mailops.o365.checks
attributes:
  check_mode:
    support: full
    details: The module only reads, so check mode runs the real check.
  diff_mode:
    support: none
"""

EXAMPLES = r"""
- name: Check one mailbox over POP3 with an app-only certificate credential
  mailops.o365.o365_pop_check:
    tenant_id: contoso.onmicrosoft.com
    client_id: 6731de76-14a6-49ae-97bc-6eba6914391e
    client_certificate_path: /etc/mailops/app.pem
    mailbox: scanner@contoso.com
  register: pop

- name: Shared mailbox with a delegate's cached token
  mailops.o365.o365_pop_check:
    tenant_id: contoso.onmicrosoft.com
    client_id: 6731de76-14a6-49ae-97bc-6eba6914391e
    flow: cache
    username: adele@contoso.com
    mailbox: support@contoso.com

- name: Fleet check over STLS on port 110, without failing the play
  mailops.o365.o365_pop_check:
    mailboxes: "{{ tenant_mailboxes }}"
    security: starttls
    fail_on_error: false
  register: fleet
"""

RETURN = r"""
mailbox:
  description: The mailbox checked (single-mailbox mode).
  returned: single mailbox
  type: str
ok:
  description: Whether the mailbox answered - authenticated and STAT succeeded.
  returned: single mailbox
  type: bool
authenticated:
  description: Whether AUTH XOAUTH2 succeeded.
  returned: single mailbox
  type: bool
capabilities:
  description: Capabilities from CAPA (after TLS).
  returned: single mailbox
  type: list
  elements: str
  sample: ["USER", "SASL XOAUTH2", "UIDL"]
server_greeting:
  description: The server's greeting line.
  returned: single mailbox
  type: str
timings:
  description: Milliseconds per phase, measured with a monotonic clock - C(connect), C(tls), C(greeting), C(auth), C(command), C(total).
  returned: single mailbox
  type: dict
messages:
  description: Number of messages (STAT).
  returned: single mailbox, when STAT succeeded
  type: int
size:
  description: Total size in octets (STAT).
  returned: single mailbox, when STAT succeeded
  type: int
problems:
  description: Why the token cannot work for POP, when that was found before connecting.
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
from ansible_collections.mailops.o365.plugins.module_utils._module import O365Module
from ansible_collections.mailops.o365.plugins.module_utils._pop import check_pop


def probe(target: dict, sasl: str, context, timeout: float) -> dict:
    return check_pop(target["host"], target["port"], target["security"], target["mailbox"], sasl, context, timeout)


def main() -> None:
    module = O365Module(
        argument_spec=dict(CHECK_ARGUMENT_SPEC),
        mutually_exclusive=CHECK_MUTUALLY_EXCLUSIVE,
        required_one_of=CHECK_REQUIRED_ONE_OF,
        supports_check_mode=True,
    )
    module.run(lambda: run_checks(module, "pop", probe))


if __name__ == "__main__":
    main()
