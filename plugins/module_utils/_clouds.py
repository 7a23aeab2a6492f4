# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one table of Microsoft clouds: authority, token resources and mail hosts.

Public documentation of the GCC High / DoD / 21Vianet mail hosts is thin and sources disagree,
so every value here can be overridden per task (``authority_host``, ``host``, ``scopes``).
"""

from __future__ import annotations

from typing import Iterable, NamedTuple

PROTOCOLS = ("imap", "pop", "smtp")


class Cloud(NamedTuple):
    name: str
    authority_host: str
    delegated_resource: str   # audience of delegated tokens (scope root)
    app_resource: str         # audience of app-only tokens (client credentials)
    imap_host: str
    pop_host: str
    smtp_host: str

    def host_for(self, protocol: str) -> str:
        return {"imap": self.imap_host, "pop": self.pop_host, "smtp": self.smtp_host}[protocol]


CLOUDS = {
    "public": Cloud("public", "https://login.microsoftonline.com", "https://outlook.office.com",
                    "https://outlook.office365.com", "outlook.office365.com", "outlook.office365.com",
                    "smtp.office365.com"),
    "usgov": Cloud("usgov", "https://login.microsoftonline.us", "https://outlook.office365.us",
                   "https://outlook.office365.us", "outlook.office365.us", "outlook.office365.us",
                   "smtp.office365.us"),
    "usdod": Cloud("usdod", "https://login.microsoftonline.us", "https://outlook-dod.office365.us",
                   "https://outlook-dod.office365.us", "outlook-dod.office365.us", "outlook-dod.office365.us",
                   "outlook-dod.office365.us"),
    "china": Cloud("china", "https://login.partner.microsoftonline.cn", "https://partner.outlook.cn",
                   "https://partner.outlook.cn", "partner.outlook.cn", "partner.outlook.cn",
                   "smtp.partner.outlook.cn"),
}

DEFAULT_PORTS = {
    ("imap", "tls"): 993, ("imap", "starttls"): 143,
    ("pop", "tls"): 995, ("pop", "starttls"): 110,
    ("smtp", "tls"): 465, ("smtp", "starttls"): 587,
}

# Exchange Online's app id: some tokens carry it as `aud` instead of the URL.
EXCHANGE_APP_ID = "00000002-0000-0ff1-ce00-000000000000"

_DELEGATED_PERMISSION = {"imap": "IMAP.AccessAsUser.All", "pop": "POP.AccessAsUser.All", "smtp": "SMTP.Send"}
_APP_ROLE = {"imap": "IMAP.AccessAsApp", "pop": "POP.AccessAsApp", "smtp": "SMTP.SendAsApp"}


def get_cloud(name: str) -> Cloud:
    return CLOUDS[name]


def delegated_permission(protocol: str) -> str:
    return _DELEGATED_PERMISSION[protocol]


def app_role(protocol: str) -> str:
    return _APP_ROLE[protocol]


def scopes_for(cloud: Cloud, protocols: Iterable[str], app_only: bool) -> list:
    """Scopes to request. msal adds offline_access itself and rejects it in a scope list."""
    if app_only:
        return [cloud.app_resource + "/.default"]
    return ["%s/%s" % (cloud.delegated_resource, _DELEGATED_PERMISSION[p]) for p in PROTOCOLS if p in protocols]


def accepted_audiences(cloud: Cloud) -> set:
    return {cloud.delegated_resource, cloud.app_resource, EXCHANGE_APP_ID,
            cloud.delegated_resource + "/", cloud.app_resource + "/"}
