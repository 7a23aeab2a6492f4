#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a documentation stub: the work is done by the action plugin of the same name, on the controller.

from __future__ import annotations

DOCUMENTATION = r"""
module: o365_validate_settings
short_description: Validate mailops.o365 tenant settings on the controller and list every violation
version_added: 0.1.0
description:
  - Validates one tenant's settings (the C(mailops_o365_tenant) variable) or a list of tenants against the
    collection's JSON Schema C(meta/tenant_settings.schema.json), then checks what the schema cannot
    express - duplicate mailboxes and tenants, protocols the app's permissions do not cover, consumer
    (Outlook.com, Hotmail, Live, MSN) accounts, warn thresholds not below crit, mail flow settings,
    and the references each C(app.auth) needs.
  - Runs on the controller only (an action plugin); nothing is sent over the network and the managed
    hosts need no Python packages. The controller needs the Python package C(jsonschema).
  - "Every violation is reported, not only the first, each with its path and a sentence, for example
    C(tenants[2].mailboxes[5].address: 'bob@' is not an email address). The task fails when any is found."
  - Returns the RV(normalized) settings with every default filled in, so later tasks can rely on them.
  - C(app.client_secret) may only be a Jinja expression that refers to a vaulted variable
    (on ansible-core 2.19 and later the plugin checks that the templated value came from vault). It is
    never quoted in messages and never returned.
author:
  - mailops.o365 maintainers (@mailops)
extends_documentation_fragment:
  - mailops.o365.attributes
attributes:
  action:
    description: Indicates this has a corresponding action plugin so some parts of the options can be executed on the controller.
    support: full
  check_mode:
    support: full
    details: Validation changes nothing; the task runs the same in check mode.
  diff_mode:
    support: none
options:
  settings:
    description:
      - The tenant settings - one tenant (a dict) or a list of tenants.
      - See C(meta/tenant_settings.schema.json) and C(docs/examples/) in the collection for every key.
      - When missing or null, the task fails with C(no tenant settings given).
    type: raw
  path:
    description:
      - Prefix of the paths in messages.
      - "Default V(tenant) for a dict and V(tenants) for a list, so messages read
        C(tenants[2].mailboxes[5].address: ...)."
    type: str
  schema:
    description:
      - A JSON Schema file to validate against instead of the collection's C(meta/tenant_settings.schema.json).
      - The semantic checks still apply.
    type: path
requirements:
  - jsonschema >= 4.18 (on the controller)
notes:
  - The defaults filled into RV(normalized) - cloud V(public); authority, hosts and ports from the cloud
    table (IMAP and POP implicit TLS on 993/995, SMTP STARTTLS on 587); C(client_secret_env=O365_CLIENT_SECRET)
    for C(auth=client_secret) without C(client_secret); C(access_token_env=O365_ACCESS_TOKEN) for
    C(auth=access_token); a mailbox's C(protocols) default to every protocol the app's permissions cover
    for its auth, C(folder) to C(INBOX) when IMAP is checked, C(expect) to C(ok); latency thresholds per
    phase, C(mailflow_s) warn 120 / crit 600, mail flow disabled with a 900 s timeout, alert subject
    prefix C([mailops]), reports in C(reports) as C(json).
  - Mail flow addresses that are not among the tenant's mailboxes (or are listed without the protocol the
    mail flow test uses) are warnings, not errors; a mail flow test the app's permissions cannot perform
    is an error.
seealso:
  - name: Authenticate an IMAP, POP or SMTP connection using OAuth
    description: Microsoft's description of OAuth2 for IMAP, POP and SMTP AUTH, and its limits.
    link: https://learn.microsoft.com/en-us/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth
"""

EXAMPLES = r"""
- name: Validate this host's tenant
  mailops.o365.o365_validate_settings:
    settings: "{{ mailops_o365_tenant }}"
  register: tenant_check

- name: Validate a list of tenants; messages read tenants[2].mailboxes[5].address ...
  mailops.o365.o365_validate_settings:
    settings: "{{ mailops_o365_tenants }}"

- name: Validate without failing, then report
  mailops.o365.o365_validate_settings:
    settings: "{{ mailops_o365_tenant }}"
    path: "tenant({{ inventory_hostname }})"
  register: tenant_check
  failed_when: false

- name: Show every violation
  ansible.builtin.debug:
    msg: "{{ tenant_check.errors | map(attribute='path') | zip(tenant_check.errors | map(attribute='message')) | map('join', ': ') }}"
  when: not tenant_check.valid
"""

RETURN = r"""
valid:
  description: Whether the settings passed every check.
  returned: always
  type: bool
  sample: false
errors:
  description: Every violation, sorted by path.
  returned: always
  type: list
  elements: dict
  contains:
    path:
      description: Where, as a path into the settings.
      type: str
      sample: tenants[2].mailboxes[5].address
    message:
      description: What is wrong, as a sentence.
      type: str
      sample: "'bob@' is not an email address"
  sample:
    - path: tenant.mailboxes[0].address
      message: "'bob@' is not an email address"
warnings:
  description:
    - "Things that work but look wrong, as C(path: sentence) strings (also shown as Ansible warnings)."
  returned: always
  type: list
  elements: str
  sample:
    - "tenant.mailflow.to: 'x@contoso.com' is not among this tenant's mailboxes, so its IMAP access is not checked first"
normalized:
  description:
    - The settings with every default filled in (a dict, or a list for a list of tenants); null when invalid.
    - Never contains C(app.client_secret); read it from the original variable.
  returned: always
  type: raw
  sample:
    name: contoso
    cloud: public
    endpoints:
      imap: {host: outlook.office365.com, port: 993, security: tls}
msg:
  description: A summary; when invalid, the count and every violation on its own line.
  returned: always
  type: str
  sample: "1 tenant valid"
"""
