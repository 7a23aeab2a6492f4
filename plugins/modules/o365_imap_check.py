#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: o365_imap_check
short_description: Check that Exchange Online mailboxes answer over IMAP with OAuth2 (SASL XOAUTH2)
version_added: 0.1.0
description:
  - Connects over IMAP (implicit TLS or STARTTLS), authenticates with C(AUTHENTICATE XOAUTH2) (initial response
    on the same line when the server offers C(SASL-IR)), then runs read-only C(STATUS) and C(EXAMINE) on a folder,
    because Exchange can accept a login for a token that does not match the mailbox and only refuse the next
    command (C(User is authenticated but not connected)).
  - Every phase is timed; the server's own failure text is kept and classified, with the Exchange fix as a hint.
  - One mailbox with O(mailbox), or a fleet of thousands with O(mailboxes), checked concurrently with one token
    per tenant, app and scope.
  - Read-only; check mode runs the same checks.
author:
  - mailops.o365 maintainers (@mailops)
extends_documentation_fragment:
  - mailops.o365.attributes
  - mailops.o365.auth
  - mailops.o365.checks
attributes:
  check_mode:
    support: full
    details: The module only reads (EXAMINE is read-only), so check mode runs the real check.
  diff_mode:
    support: none
options:
  folder:
    description:
      - Folder to examine (non-ASCII names are sent in modified UTF-7). A fleet entry may override it.
    type: str
    default: INBOX
  search:
    description:
      - Optional IMAP SEARCH criteria (ASCII), for example C(SUBJECT "nightly report"). The number of matches is
        returned as RV(search_matches).
    type: str
"""

EXAMPLES = r"""
- name: Check one mailbox with an app-only token (secret from the environment, O365_CLIENT_SECRET)
  mailops.o365.o365_imap_check:
    tenant_id: contoso.onmicrosoft.com
    client_id: 6731de76-14a6-49ae-97bc-6eba6914391e
    mailbox: helpdesk@contoso.com
  register: imap

- name: Shared mailbox with a delegate's cached token (bootstrapped with the device code flow)
  mailops.o365.o365_imap_check:
    tenant_id: contoso.onmicrosoft.com
    client_id: 6731de76-14a6-49ae-97bc-6eba6914391e
    flow: cache
    username: adele@contoso.com
    mailbox: support@contoso.com
    search: 'UNSEEN SUBJECT "urgent"'

- name: Fleet check - every mailbox of the tenant, 32 at a time, report without failing the play
  mailops.o365.o365_imap_check:
    tenant_id: contoso.onmicrosoft.com
    client_id: 6731de76-14a6-49ae-97bc-6eba6914391e
    mailboxes: "{{ tenant_mailboxes }}"
    max_workers: 32
    fail_on_error: false
  register: fleet

- name: Per-mailbox overrides in a fleet
  mailops.o365.o365_imap_check:
    mailboxes:
      - alice@contoso.com
      - address: archive@contoso.com
        folder: Archive
      - address: legacy@contoso.com
        security: starttls
  register: fleet

- name: Auth options once for the play
  module_defaults:
    group/mailops.o365.o365:
      tenant_id: contoso.onmicrosoft.com
      client_id: 6731de76-14a6-49ae-97bc-6eba6914391e
      client_certificate_path: /etc/mailops/app.pem
  block:
    - name: IMAP
      mailops.o365.o365_imap_check:
        mailbox: helpdesk@contoso.com
"""

RETURN = r"""
mailbox:
  description: The mailbox checked (single-mailbox mode).
  returned: single mailbox
  type: str
ok:
  description: Whether the mailbox answered - authenticated and the folder command succeeded.
  returned: single mailbox
  type: bool
authenticated:
  description: Whether AUTHENTICATE succeeded (it can be true while RV(ok) is false - see the description).
  returned: single mailbox
  type: bool
capabilities:
  description: Capabilities the server advertised (after TLS).
  returned: single mailbox
  type: list
  elements: str
  sample: ["IMAP4rev1", "SASL-IR", "AUTH=XOAUTH2"]
server_greeting:
  description: The server's greeting line.
  returned: single mailbox
  type: str
  sample: "* OK The Microsoft Exchange IMAP4 service is ready."
timings:
  description: Milliseconds per phase, measured with a monotonic clock - C(connect), C(tls), C(greeting), C(auth), C(command), C(total).
  returned: single mailbox
  type: dict
  sample: {"connect": 2.1, "tls": 9.8, "greeting": 0.4, "auth": 12.0, "command": 3.3, "total": 28.0}
messages:
  description: Number of messages in the folder (EXISTS).
  returned: single mailbox, when the folder was examined
  type: int
unseen:
  description: Number of unseen messages in the folder (STATUS UNSEEN).
  returned: single mailbox, when the folder was examined
  type: int
uidvalidity:
  description: The folder's UIDVALIDITY.
  returned: single mailbox, when the folder was examined
  type: int
search_matches:
  description: Number of messages matching O(search).
  returned: when O(search) was given
  type: int
problems:
  description: Why the token cannot work for IMAP, when that was found before connecting.
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
  description:
    - Fleet mode - C(total), C(ok), C(failed), C(by_category) (failures per category) and C(latency_ms)
      (C(min), C(median), C(p95), C(max) of the total time).
  returned: fleet mode
  type: dict
  sample: {"total": 200, "ok": 197, "failed": 3, "by_category": {"auth": 2, "disabled": 1},
           "latency_ms": {"min": 20.1, "median": 31.7, "p95": 55.0, "max": 80.2}}
"""

from ansible_collections.mailops.o365.plugins.module_utils._checks import CHECK_ARGUMENT_SPEC, CHECK_MUTUALLY_EXCLUSIVE, CHECK_REQUIRED_ONE_OF, run_checks
from ansible_collections.mailops.o365.plugins.module_utils._imap import check_imap, validate_folder, validate_search
from ansible_collections.mailops.o365.plugins.module_utils._module import O365Module


def probe(target: dict, sasl: str, context, timeout: float) -> dict:
    return check_imap(target["host"], target["port"], target["security"], target["mailbox"], sasl, context, timeout,
                      folder=target["folder"], search=target["search"])


def main() -> None:
    module = O365Module(
        argument_spec=dict(CHECK_ARGUMENT_SPEC, folder=dict(type="str", default="INBOX"), search=dict(type="str")),
        mutually_exclusive=CHECK_MUTUALLY_EXCLUSIVE,
        required_one_of=CHECK_REQUIRED_ONE_OF,
        supports_check_mode=True,
    )

    module.run(lambda: run_checks(module, "imap", probe, extra_keys=("folder", "search"), validate=validate))


def validate(target: dict, name) -> None:
    """Folder and search of every mailbox, checked before the first connection."""
    validate_folder(target["folder"], name("folder"))
    if target.get("search") is not None:
        validate_search(target["search"], name("search"))


if __name__ == "__main__":
    main()
