# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""AnsibleModule for this collection: merges the shared auth options, turns O365Error into fail_json."""

from __future__ import annotations

from typing import Callable, Iterable, Optional

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.mailops.o365.plugins.module_utils._errors import O365Error
from ansible_collections.mailops.o365.plugins.module_utils._options import AUTH_ARGUMENT_SPEC, AuthSettings
from ansible_collections.mailops.o365.plugins.module_utils._tls import INSECURE_WARNING


class O365Module(AnsibleModule):
    def __init__(self, argument_spec: Optional[dict] = None, **kwargs) -> None:
        spec = dict(AUTH_ARGUMENT_SPEC)
        spec.update(argument_spec or {})
        super().__init__(argument_spec=spec, **kwargs)
        self._settings: Optional[AuthSettings] = None

    @property
    def settings(self) -> AuthSettings:
        """The validated auth settings; bad input fails the task here, before any network call."""
        if self._settings is None:
            try:
                self._settings = AuthSettings.from_params(self.params)
            except O365Error as err:
                self.fail_error(err)
            if not self._settings.validate_certs:
                self.warn(INSECURE_WARNING)
        return self._settings

    def acquire_token(self, protocols: Iterable[str], **kwargs):
        from ansible_collections.mailops.o365.plugins.module_utils._token import acquire_token

        return acquire_token(self.settings, list(protocols), warn=self.warn, **kwargs)

    def fail_error(self, err: O365Error, **result) -> None:
        result.setdefault("changed", False)
        self.fail_json(msg=err.message, error=err.as_dict(), **result)

    def run(self, main: Callable[[], dict]) -> None:
        """Run the module body; any O365Error becomes a classified failure."""
        try:
            result = main()
        except O365Error as err:
            self.fail_error(err)
        self.exit_json(**result)
