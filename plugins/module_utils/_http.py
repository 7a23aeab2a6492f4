# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The HTTP client msal uses: our CA settings on every request, bounded retries.

``requests`` lets REQUESTS_CA_BUNDLE override a session's ``verify``, so ``verify`` is passed on
every request instead; proxies from the environment keep working. 429 and 5xx are retried with
backoff that honours Retry-After, all within the task's ``timeout``.
"""

from __future__ import annotations

import time
from typing import Optional

try:
    import requests
except ImportError:  # reported by the cache, which imports msal (that needs requests) first
    requests = None

from ansible_collections.mailops.o365.plugins.module_utils._errors import O365Error
from ansible_collections.mailops.o365.plugins.module_utils._options import AuthSettings

RETRY_STATUSES = (429, 500, 502, 503, 504)
MAX_ATTEMPTS = 5


class MsalHttpClient:
    def __init__(self, s: AuthSettings, sleep=time.sleep, clock=time.monotonic) -> None:
        self._session = requests.Session()
        self._verify = (s.ca_path or True) if s.validate_certs else False
        self._timeout = s.timeout
        self._deadline = clock() + s.timeout
        self._sleep = sleep
        self._clock = clock
        # msal hides discovery failures behind a generic ValueError; keep Entra ID's own answer.
        self.last_error: Optional[dict] = None

    def post(self, url: str, **kwargs):
        return self._send("POST", url, **kwargs)

    def get(self, url: str, **kwargs):
        return self._send("GET", url, **kwargs)

    def close(self) -> None:
        self._session.close()

    def _send(self, method: str, url: str, **kwargs):
        kwargs.pop("verify", None)
        kwargs.pop("timeout", None)
        attempt = 0
        while True:
            attempt += 1
            remaining = self._deadline - self._clock()
            if remaining <= 0:
                raise O365Error("token", "Entra ID did not answer within timeout=%ss (%s)" % (self._timeout, _where(url)))
            try:
                response = self._session.request(method, url, verify=self._verify, timeout=remaining, **kwargs)
            except requests.exceptions.SSLError as exc:
                raise O365Error("tls", "TLS check of %s failed: %s" % (_where(url), _first_reason(exc)),
                                hint="Set ca_path to the CA bundle that signs the authority's certificate.") from None
            except requests.exceptions.Timeout:
                raise O365Error("token", "Entra ID did not answer within timeout=%ss (%s)"
                                % (self._timeout, _where(url))) from None
            except requests.exceptions.RequestException as exc:
                raise O365Error("token", "cannot reach Entra ID at %s: %s" % (_where(url), _first_reason(exc)),
                                hint="Check authority_host, DNS, proxy settings (HTTPS_PROXY) and firewalls.") from None
            delay = self._retry_delay(response, attempt)
            if delay is None:
                self._note_error(response)
                return response
            self._sleep(delay)

    def _note_error(self, response) -> None:
        if response.status_code < 400:
            return
        try:
            body = response.json()
        except ValueError:
            return
        if isinstance(body, dict) and ("error" in body or "error_codes" in body):
            self.last_error = body

    def _retry_delay(self, response, attempt: int) -> Optional[float]:
        """Seconds to wait before retrying, or None to hand the response to msal."""
        if response.status_code not in RETRY_STATUSES or attempt >= MAX_ATTEMPTS:
            return None
        delay = min(2.0 ** (attempt - 1) * 0.5, 8.0)
        retry_after = response.headers.get("Retry-After", "")
        if retry_after.strip().isdigit():
            delay = float(retry_after.strip())
        if self._clock() + delay >= self._deadline:
            return None  # no time left to wait: let the caller report this answer
        return delay


def _where(url: str) -> str:
    return url.split("?", 1)[0]


def _first_reason(exc: Exception) -> str:
    text = str(exc)
    return text if len(text) < 300 else text[:300] + "..."
