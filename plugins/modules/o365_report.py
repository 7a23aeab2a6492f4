#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

# This is a documentation stub: the work is done by the action plugin of the same name, on the controller.

from __future__ import annotations

DOCUMENTATION = r"""
module: o365_report
short_description: Judge mailbox reachability results and write JSON, JUnit, HTML and Prometheus reports
version_added: 0.1.0
description:
  - Takes the fleet results of M(mailops.o365.o365_imap_check), M(mailops.o365.o365_pop_check) and
    M(mailops.o365.o365_smtp_check) for one tenant, and optionally the result of
    M(mailops.o365.o365_mailflow_check), and gives every mailbox x protocol a status - V(ok), V(expected)
    (failed with exactly the category the mailbox's C(expect) names, which counts as passing), V(warn) or
    V(crit) (a phase of the probe at or above its C(thresholds.latency_ms) limit), or V(fail) (no answer,
    another failure than the expected one, or an answer where a failure was expected).
  - Writes the reports into O(directory) - C(report.json) (complete, machine-readable), C(junit.xml)
    (one testcase per mailbox x protocol, plus one for the mail flow test), C(index.html) (one
    self-contained page, no network access, latency bars per phase, errors with their fix) and
    C(mailops_o365.prom) for node_exporter's textfile collector. Every file is written atomically
    (a temporary file in the same directory, then renamed).
  - Aggregate mode - give O(tenants), the RV(tenant) results of single-tenant runs (for example collected
    from C(hostvars) in a final C(run_once) play), to write combined reports listing every tenant.
  - Runs on the controller only (an action plugin); nothing is sent over the network.
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
    details: In check mode the results are judged and returned, and no file is written.
  diff_mode:
    support: none
options:
  tenant:
    description:
      - The tenant's normalized settings (C(mailops_o365_tenant_settings) from the C(mailops.o365.tenant_config)
        role) - C(name), C(mailboxes) (C(address), C(protocols), C(expect)), C(thresholds), C(mailflow).
      - Single-tenant mode. Mutually exclusive with O(tenants); one of them is required.
    type: dict
  results:
    description:
      - The registered fleet results per protocol - a dict with keys V(imap), V(pop), V(smtp), each the
        registered result of the fleet task (or its C(results) list). Results are matched to the
        mailboxes by address; a mailbox x protocol without a result is a V(fail) (or gets O(error)).
      - A skipped task counts as not run.
    type: dict
    default: {}
  mailflow:
    description:
      - The registered result of M(mailops.o365.o365_mailflow_check) (its C(status) V(ok), V(warn), V(crit),
        V(lost) or V(error), and C(latency_s)); only used when the tenant's C(mailflow.enabled) is true.
      - V(lost) and V(error) are V(fail). Missing while mail flow is enabled is a V(fail).
    type: dict
  error:
    description:
      - A tenant-level failure, C({category, message, hint}) - typically the token could not be obtained,
        so no check ran. Every mailbox x protocol without a result gets it, and the tenant fails.
    type: dict
  tenants:
    description:
      - Aggregate mode - a list of RV(tenant) values returned by single-tenant runs of this action.
    type: list
    elements: dict
  missing:
    description:
      - Aggregate mode - names of tenants that produced no report (they failed before their checks
        finished); they are listed as failed.
    type: list
    elements: str
    default: []
  directory:
    description:
      - Directory to write the reports into; created when missing. A relative path is relative to the
        controller's current directory.
    type: path
    required: true
  formats:
    description:
      - Which reports to write.
    type: list
    elements: str
    choices: [json, junit, html, prometheus]
    default: [json, junit, html, prometheus]
  fail_on:
    description:
      - Which statuses make the RV(verdict) V(failed) - V(crit) (the default) fails on V(fail) and V(crit);
        V(warn) also on V(warn); V(never) always passes. Expected failures always pass.
      - The JUnit report marks the same statuses as failures (V(never) marks V(fail) and V(crit)).
    type: str
    choices: [crit, warn, never]
    default: crit
notes:
  - The task never fails because of what the results say; it returns the RV(verdict) and the caller decides
    (the C(mailops.o365.mailbox_reachability) role fails the tenant after the reports and the alert).
  - "The Prometheus file holds C(mailops_o365_check_up{tenant,mailbox,protocol}),
    C(mailops_o365_check_severity{tenant,mailbox,protocol}), C(mailops_o365_check_latency_ms{tenant,mailbox,protocol,phase}),
    C(mailops_o365_mailflow_up{tenant}), C(mailops_o365_mailflow_latency_seconds{tenant}), C(mailops_o365_tenant_up{tenant})
    and C(mailops_o365_last_run_timestamp_seconds). Point node_exporter's C(--collector.textfile.directory) at
    one directory only (the collector does not recurse), so the same series is never exposed twice."
seealso:
  - module: mailops.o365.o365_imap_check
  - module: mailops.o365.o365_pop_check
  - module: mailops.o365.o365_smtp_check
"""

EXAMPLES = r"""
- name: Write this tenant's reports
  mailops.o365.o365_report:
    tenant: "{{ mailops_o365_tenant_settings }}"
    results:
      imap: "{{ imap_fleet }}"
      pop: "{{ pop_fleet }}"
      smtp: "{{ smtp_fleet }}"
    mailflow: "{{ mailflow_result | default(omit) }}"
    directory: "reports/{{ mailops_o365_tenant_settings.name }}"
    formats: [json, junit, html, prometheus]
  register: report

- name: Combined reports for every tenant of the play
  mailops.o365.o365_report:
    tenants: "{{ ansible_play_hosts_all | map('extract', hostvars, ['report', 'tenant']) | select('defined') | list }}"
    directory: reports
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
paths:
  description: The files written, by format (empty in check mode).
  returned: success
  type: dict
  sample: {json: /srv/reports/contoso/report.json, html: /srv/reports/contoso/index.html}
directory:
  description: The absolute directory of the reports.
  returned: success
  type: str
counts:
  description:
    - Mailbox x protocol rows by status; C(total) is C(ok + expected_failures + warn + crit + fail).
      The mail flow test is not counted here (see C(mailflow) in RV(tenant)).
  returned: success
  type: dict
  sample: {total: 12, ok: 9, expected_failures: 1, warn: 1, crit: 0, fail: 1, tenants: 1, tenants_failed: 1}
verdict:
  description: V(passed) or V(failed), by O(fail_on).
  returned: success
  type: str
  sample: failed
worst:
  description: The worst status seen - V(ok), V(warn), V(crit) or V(fail) (expected failures count as V(ok)).
  returned: success
  type: str
lines:
  description: One concise line per mailbox x protocol (and per mail flow test), for the job output.
  returned: success
  type: list
  elements: str
  sample: ["OK       contoso adele@contoso.test imap 41 ms", "FAIL     contoso ghost@contoso.test imap 30 ms - [auth] ..."]
failures:
  description: The lines of the rows that make the verdict fail (for an alert mail).
  returned: success
  type: list
  elements: str
tenant:
  description:
    - Single-tenant mode - the evaluated tenant - C(name), C(verdict), C(worst), C(counts), C(error),
      C(mailflow) (C(status), C(latency_s), C(from), C(to), C(message)) and C(checks), one per mailbox x protocol
      with C(mailbox), C(protocol), C(expect), C(status), C(category), C(message), C(hint), C(server_reply),
      C(timings) (ms per phase) and C(breaches) (C(phase), C(value_ms), C(level), C(threshold_ms)).
    - Give these to O(tenants) to write combined reports.
  returned: when O(tenant) was given
  type: dict
tenants:
  description: Aggregate mode - per tenant C(name), C(verdict), C(worst) and C(counts).
  returned: when O(tenants) was given
  type: list
  elements: dict
"""
