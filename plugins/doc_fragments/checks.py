# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # Options shared by the mailbox check modules (IMAP, POP3, SMTP AUTH).
    DOCUMENTATION = r"""
options:
  mailbox:
    description:
      - The mailbox to check, sent as the SASL XOAUTH2 C(user=). For a shared mailbox give the shared
        address with the delegate's token (set O(username) to the delegate).
      - Mutually exclusive with O(mailboxes); one of them is required.
    type: str
  mailboxes:
    description:
      - Fleet mode - a list of mailbox addresses, or of dicts with C(address) and per-mailbox overrides
        (C(host), C(port), C(security), C(username) and the protocol's own keys such as C(folder)).
      - Checked concurrently (O(max_workers)), with one token per tenant, app and scope for app-only
        access and one per user from the cache for delegated access. Results keep the input order.
    type: list
    elements: raw
  host:
    description:
      - Server to connect to. Defaults to the cloud's host (C(outlook.office365.com) in the public cloud).
    type: str
  port:
    description:
      - Port. Defaults by protocol and O(security) - IMAP 993/143, POP3 995/110, SMTP 465/587.
    type: int
  security:
    description:
      - V(tls) is implicit TLS; V(starttls) upgrades a plain connection before authenticating (never falls back).
      - Defaults to V(tls) for IMAP and POP3 and V(starttls) for SMTP, as Exchange Online serves them.
      - TLS 1.2 is the minimum; certificates are verified against O(ca_path) or the system store.
    type: str
    choices: [tls, starttls]
  max_workers:
    description:
      - Fleet concurrency (1-256). At most 3 connections are ever open to one mailbox.
    type: int
    default: 16
  fail_on_error:
    description:
      - Fail the task when the mailbox (or any mailbox of the fleet) failed. Every result is returned either way.
    type: bool
    default: true
"""
