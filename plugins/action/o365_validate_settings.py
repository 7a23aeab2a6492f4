# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validate tenant settings on the controller (documentation: plugins/modules/o365_validate_settings.py)."""

from __future__ import annotations

import copy
import os

from ansible.plugins.action import ActionBase

from ansible_collections.mailops.o365.plugins.module_utils._settings import SettingsError, summary, validate_settings

try:  # ansible-core >= 2.19: decrypted vault values carry a VaultedValue tag through templating
    from ansible.parsing.vault import VaultHelper
except ImportError:  # pragma: no cover - older ansible-core
    VaultHelper = None

# The collection root, relative to this file: plugins/action/ -> ../../
DEFAULT_SCHEMA = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                              "meta", "tenant_settings.schema.json")
VAULTED = "{{ vaulted }}"

ARGUMENT_SPEC = dict(
    settings=dict(type="raw"),
    path=dict(type="str"),
    schema=dict(type="path"),
)


def _is_vaulted(value) -> bool:
    return VaultHelper is not None and VaultHelper.get_ciphertext(value, with_tags=False) is not None


def prepare_secrets(settings, prefix: str):
    """Task arguments arrive templated: a ``client_secret`` written as ``{{ vault_x }}`` is now the secret.

    A value that came from vault is replaced by a placeholder expression (so the schema accepts it and no
    secret travels further); anything else is left for the schema to reject as a literal. Returns the
    prepared copy and warnings (as ``{path, message}``).
    """
    warnings = []
    tenants = settings if isinstance(settings, list) else [settings]
    prepared = copy.deepcopy(tenants)
    for i, tenant in enumerate(prepared):
        app = tenant.get("app") if isinstance(tenant, dict) else None
        if not isinstance(app, dict) or not isinstance(app.get("client_secret"), str):
            continue
        value = app["client_secret"]
        if _is_vaulted(value):
            app["client_secret"] = VAULTED
        elif VaultHelper is None and "{{" not in value:
            app["client_secret"] = VAULTED
            where = "%s[%d]" % (prefix, i) if isinstance(settings, list) else prefix
            warnings.append({"path": where + ".app.client_secret",
                             "message": "ansible-core before 2.19 cannot tell whether this value came from vault; make sure it did"})
    return (prepared if isinstance(settings, list) else prepared[0]), warnings


def strip_secrets(normalized):
    """The normalized settings never carry a client secret (read it from the original variable)."""
    for tenant in normalized if isinstance(normalized, list) else [normalized]:
        if isinstance(tenant, dict) and isinstance(tenant.get("app"), dict):
            tenant["app"].pop("client_secret", None)
    return normalized


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False
    _supports_check_mode = True

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        del tmp
        args = self.validate_argument_spec(argument_spec=ARGUMENT_SPEC)[1]
        settings = args.get("settings")
        prefix = args.get("path") or ("tenants" if isinstance(settings, list) else "tenant")
        schema_path = args.get("schema") or DEFAULT_SCHEMA
        try:
            prepared, secret_warnings = prepare_secrets(settings, prefix)
            outcome = validate_settings(prepared, path=prefix, schema_path=schema_path)
        except SettingsError as err:
            result.update(failed=True, msg=str(err), valid=False, errors=[], warnings=[], normalized=None)
            return result
        warnings = secret_warnings + outcome["warnings"]
        result.update(
            changed=False,
            valid=outcome["valid"],
            errors=outcome["errors"],
            warnings=["%s: %s" % (w["path"], w["message"]) for w in warnings],
            normalized=strip_secrets(outcome["normalized"]) if outcome["normalized"] is not None else None,
        )
        if outcome["valid"]:
            count = len(settings) if isinstance(settings, list) else 1
            result["msg"] = "%d tenant%s valid" % (count, "" if count == 1 else "s")
        else:
            result["failed"] = True
            result["msg"] = summary(outcome)
        return result
