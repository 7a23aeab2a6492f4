# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The shared authentication and transport options of every mailops.o365 module.
    DOCUMENTATION = r"""
options:
  tenant_id:
    description:
      - Directory (tenant) id as a GUID, or one of the tenant's verified domain names.
      - V(organizations) and V(common) are accepted for delegated flows.
      - Falls back to the E(O365_TENANT_ID) environment variable.
    type: str
  client_id:
    description:
      - Application (client) id of the Entra ID app registration, a GUID.
      - Falls back to E(O365_CLIENT_ID).
    type: str
  client_secret:
    description:
      - Client secret of a confidential app. With it (and no O(refresh_token)) the client credentials
        flow gets an app-only token.
      - Mutually exclusive with O(client_certificate_path).
      - Falls back to E(O365_CLIENT_SECRET).
    type: str
  client_certificate_path:
    description:
      - PEM file holding the app's private key and its certificate. The thumbprint is computed from the
        certificate. Selects the client credentials flow with a certificate.
      - Falls back to E(O365_CLIENT_CERTIFICATE_PATH).
    type: path
  client_certificate_password:
    description:
      - Password of the encrypted private key in O(client_certificate_path).
      - Falls back to E(O365_CLIENT_CERTIFICATE_PASSWORD).
    type: str
  refresh_token:
    description:
      - A refresh token for delegated access (for example from P(mailops.o365.o365_token#module)'s device code flow).
        The rotated refresh token is stored in the token cache.
      - Falls back to E(O365_REFRESH_TOKEN).
    type: str
  access_token:
    description:
      - An access token to use as is. No token request is made and msal is not even imported.
      - Falls back to E(O365_ACCESS_TOKEN).
    type: str
  username:
    description:
      - The user (UPN) whose delegated token to use from the token cache, and the login hint of the
        interactive flows. The check modules default it to the mailbox.
      - Falls back to E(O365_USERNAME).
    type: str
  cloud:
    description:
      - Microsoft cloud. Sets the authority, the token resource and the default mail hosts.
      - Falls back to E(O365_CLOUD); V(public) when unset.
    type: str
    choices: [china, public, usdod, usgov]
  authority_host:
    description:
      - Override of the authority host, an C(https://) URL without path (private endpoints, the lab).
      - Falls back to E(O365_AUTHORITY_HOST).
    type: str
  token_cache_path:
    description:
      - File of the persisted msal token cache, written atomically with mode 0600 under a lock.
      - Defaults to C(~/.cache/mailops.o365/token_cache.json) (honours E(XDG_CACHE_HOME)).
      - Falls back to E(O365_TOKEN_CACHE_PATH).
    type: path
  ca_path:
    description:
      - CA bundle used to verify every TLS peer (the token endpoint and the mail servers). It replaces the
        system trust store; for a TLS-inspecting proxy give a bundle with the proxy's CA (and the public CAs
        if some peers are not behind the proxy).
      - Falls back to E(O365_CA_PATH); the system trust store when unset.
    type: path
  validate_certs:
    description:
      - Verify certificates and host names. Only set to V(false) for a throwaway test; a warning is shown.
    type: bool
    default: true
  timeout:
    description:
      - Seconds allowed for each network operation and for token retries (Retry-After is honoured within it).
    type: float
    default: 30
  flow:
    description:
      - How to get the token. V(auto) picks, in this order, O(access_token), O(refresh_token),
        O(client_certificate_path), O(client_secret), then a cached token of O(username).
      - V(device_code) and V(auth_code) are two-phase flows of P(mailops.o365.o365_token#module).
    type: str
    default: auto
    choices: [auto, access_token, client_secret, client_certificate, refresh_token, cache, device_code, auth_code]
  scopes:
    description:
      - Scopes to request instead of those derived from the protocols and the flow.
      - Delegated scopes are C(https://outlook.office.com/IMAP.AccessAsUser.All), C(.../POP.AccessAsUser.All)
        and C(.../SMTP.Send); app-only is C(https://outlook.office365.com/.default).
    type: list
    elements: str
notes:
  - Options can be set once for a play with C(module_defaults) and the action group C(group/mailops.o365.o365).
  - Requires the C(msal) Python library on the host running the module unless O(access_token) is given.
"""
