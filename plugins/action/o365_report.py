# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Controller-side action: judge reachability results and write JSON, JUnit, HTML and Prometheus reports."""

from __future__ import annotations

import os

from ansible.plugins.action import ActionBase

from ansible_collections.mailops.o365.plugins.module_utils._reports import (
    FAIL_ON,
    FORMATS,
    ReportError,
    build_report,
    evaluate_tenant,
    failing,
    lines,
    write_reports,
)

ARGUMENT_SPEC = dict(
    tenant=dict(type="dict"),
    results=dict(type="dict", default={}),
    mailflow=dict(type="dict"),
    error=dict(type="dict"),
    tenants=dict(type="list", elements="dict"),
    missing=dict(type="list", elements="str", default=[]),
    directory=dict(type="path", required=True),
    formats=dict(type="list", elements="str", default=list(FORMATS), choices=list(FORMATS)),
    fail_on=dict(type="str", default="crit", choices=list(FAIL_ON)),
)


def _plain(value):
    """Ansible's tagged/lazy containers as plain Python data (JSON round trip semantics)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        _unused, args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC,
                                                    mutually_exclusive=[("tenant", "tenants")],
                                                    required_one_of=[("tenant", "tenants")])
        args = _plain(args)
        try:
            if args.get("tenant") is not None:
                tenants = [evaluate_tenant(args["tenant"], args["results"], args.get("mailflow"), args.get("error"),
                                           args["fail_on"])]
            else:
                tenants = args["tenants"]
                for i, tenant in enumerate(tenants):
                    if not isinstance(tenant.get("name"), str) or not isinstance(tenant.get("checks"), list):
                        raise ReportError("tenants[%d] is not an evaluated tenant (the 'tenant' returned by a "
                                          "single-tenant run of this action)" % i)
            report = build_report(tenants, args["fail_on"], missing=args["missing"])
            directory = os.path.abspath(os.path.expanduser(args["directory"]))
            paths = {} if self._task.check_mode else write_reports(report, directory, args["formats"])
        except ReportError as err:
            result.update(failed=True, msg=str(err))
            return result
        except OSError as err:
            result.update(failed=True, msg="cannot write the reports in %s: %s" % (args["directory"], err))
            return result
        result.update(
            changed=bool(paths),
            paths=paths,
            directory=directory,
            counts=report["counts"],
            verdict=report["verdict"],
            worst=report["worst"],
            lines=lines(report),
            failures=failing(report),
            msg="%s: %d checks, %d ok, %d expected failures, %d warn, %d crit, %d fail"
                % (report["verdict"], report["counts"]["total"], report["counts"]["ok"],
                   report["counts"]["expected_failures"], report["counts"]["warn"], report["counts"]["crit"],
                   report["counts"]["fail"]),
        )
        if args.get("tenant") is not None:
            result["tenant"] = report["tenants"][0]
        else:
            result["tenants"] = [{"name": t["name"], "verdict": t["verdict"], "worst": t["worst"], "counts": t["counts"]}
                                 for t in report["tenants"]]
        return result
