#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: o365_token
short_description: Get an OAuth2 access token for Exchange Online IMAP, POP and SMTP from Entra ID
version_added: 0.1.0
description:
  - Gets an access token for Exchange Online IMAP, POP3 and SMTP AUTH (SASL XOAUTH2) with the flow that
    fits - client credentials (secret or certificate, app-only), refresh token (delegated), or the
    two-phase device code and authorization code (PKCE) flows for bootstrapping a refresh token.
  - Tokens are kept in a persisted msal token cache, so a play of many tasks asks Entra ID once; a cached,
    unexpired token is returned without any network call (RV(source=cache)).
  - Decodes the token's claims (without checking the signature, for diagnosis) and lists the
    RV(problems) that would make IMAP, POP or SMTP refuse it.
  - Register the result with C(no_log=true), since the access token is in it.
author:
  - mailops.o365 maintainers (@mailops)
extends_documentation_fragment:
  - mailops.o365.attributes
  - mailops.o365.auth
attributes:
  check_mode:
    support: full
    details: Getting a token changes nothing in the tenant; the task runs the same in check mode.
  diff_mode:
    support: none
options:
  protocols:
    description:
      - The protocols the token is for; they decide the delegated scopes and the claims diagnosis.
    type: list
    elements: str
    choices: [imap, pop, smtp]
    default: [imap, pop, smtp]
  flow_state:
    description:
      - Phase two of O(flow=device_code) or O(flow=auth_code) - the RV(flow_state) returned by phase one.
      - Without it, those flows run phase one and return what the person must do.
    type: dict
  auth_response:
    description:
      - Phase two of O(flow=auth_code) - the full URL the browser was redirected to after sign-in.
    type: str
  redirect_uri:
    description:
      - Redirect URI registered on the app for O(flow=auth_code).
    type: str
    default: http://localhost
notes:
  - Client credentials tokens for IMAP/POP/SMTP need the app's service principal registered in Exchange
    (C(New-ServicePrincipal)) and mailbox permissions (C(Add-MailboxPermission)); see the user guide.
seealso:
  - name: Authenticate an IMAP, POP or SMTP connection using OAuth
    description: Microsoft's description of SASL XOAUTH2 for Exchange Online.
    link: https://learn.microsoft.com/exchange/client-developer/legacy-protocols/how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth
"""

EXAMPLES = r"""
- name: App-only token for IMAP and SMTP (client credentials with a secret from the environment)
  mailops.o365.o365_token:
    tenant_id: contoso.onmicrosoft.com
    client_id: 6731de76-14a6-49ae-97bc-6eba6914391e
    client_secret: "{{ lookup('ansible.builtin.env', 'O365_CLIENT_SECRET') }}"
    protocols: [imap, smtp]
  register: token
  no_log: true

- name: App-only token with a certificate
  mailops.o365.o365_token:
    tenant_id: 72f988bf-86f1-41af-91ab-2d7cd011db47
    client_id: 6731de76-14a6-49ae-97bc-6eba6914391e
    client_certificate_path: /etc/mailops/app.pem
  register: token
  no_log: true

- name: Delegated token from a refresh token; the rotated one goes into the cache
  mailops.o365.o365_token:
    tenant_id: contoso.onmicrosoft.com
    client_id: 6731de76-14a6-49ae-97bc-6eba6914391e
    refresh_token: "{{ vault_refresh_token }}"
    username: alerts@contoso.onmicrosoft.com
    protocols: [smtp]
  register: token
  no_log: true

- name: Device code flow, phase one - show the person what to do
  mailops.o365.o365_token:
    flow: device_code
    tenant_id: contoso.onmicrosoft.com
    client_id: 6731de76-14a6-49ae-97bc-6eba6914391e
  register: device

- name: Tell the person
  ansible.builtin.pause:
    prompt: "{{ device.message }} - press Enter when done"

- name: Device code flow, phase two - the refresh token lands in the cache
  mailops.o365.o365_token:
    flow: device_code
    tenant_id: contoso.onmicrosoft.com
    client_id: 6731de76-14a6-49ae-97bc-6eba6914391e
    flow_state: "{{ device.flow_state }}"
  no_log: true

- name: Later runs use the cached refresh token of that user
  mailops.o365.o365_token:
    flow: cache
    tenant_id: contoso.onmicrosoft.com
    client_id: 6731de76-14a6-49ae-97bc-6eba6914391e
    username: alerts@contoso.onmicrosoft.com
  register: token
  no_log: true

- name: Diagnose a token someone handed you
  mailops.o365.o365_token:
    access_token: "{{ suspicious_token }}"
    protocols: [imap]
  register: diagnosis
  no_log: true
"""

RETURN = r"""
access_token:
  description:
    - The access token. Register with C(no_log) and never print it.
    - When the token was given in O(access_token) (diagnosis only), Ansible masks this value as it equals a C(no_log) option.
  returned: when a token was obtained
  type: str
token_type:
  description: Token type, C(Bearer).
  returned: when a token was obtained
  type: str
  sample: Bearer
expires_on:
  description: Expiry as seconds since the epoch (from the token endpoint, or the C(exp) claim).
  returned: when a token was obtained and its expiry is known
  type: int
  sample: 1798765432
expires_at:
  description: Expiry as an ISO 8601 UTC time.
  returned: when a token was obtained and its expiry is known
  type: str
  sample: "2026-12-31T23:59:59Z"
scopes:
  description: Scopes granted (or requested, when the endpoint did not say).
  returned: when a token was obtained
  type: list
  elements: str
  sample: ["https://outlook.office365.com/.default"]
source:
  description: Where the token came from - C(cache) (no network call), C(network) or C(given).
  returned: when a token was obtained
  type: str
  sample: cache
flow:
  description: The flow that was used (what O(flow=auto) resolved to).
  returned: always
  type: str
  sample: client_secret
account:
  description: The user of a delegated token.
  returned: when known
  type: str
claims:
  description:
    - Claims decoded from the JWT (signature not checked) - C(aud), C(iss), C(tid), C(appid), C(azp), C(idtyp),
      C(scp) or C(roles), C(upn), C(unique_name), C(email), C(oid), C(exp) and C(expires_at).
    - Empty for an opaque (non-JWT) token.
  returned: when a token was obtained
  type: dict
problems:
  description: Why the token cannot work for the protocols asked (wrong audience, missing scope or role, expired, tenant mismatch).
  returned: when a token was obtained
  type: list
  elements: str
  sample: ["delegated token lacks the SMTP.Send scope needed for SMTP"]
pending:
  description: True when phase one of a two-phase flow ran; finish it by passing RV(flow_state) back.
  returned: always
  type: bool
user_code:
  description: Device code flow phase one - the code the person enters.
  returned: phase one of O(flow=device_code)
  type: str
verification_uri:
  description: Device code flow phase one - where the person enters the code.
  returned: phase one of O(flow=device_code)
  type: str
message:
  description: Device code flow phase one - Entra ID's instruction text for the person.
  returned: phase one of O(flow=device_code)
  type: str
auth_uri:
  description: Authorization code flow phase one - the URL the person opens to sign in.
  returned: phase one of O(flow=auth_code)
  type: str
flow_state:
  description: Phase one - the state to pass back as O(flow_state) in phase two. Treat it as sensitive.
  returned: phase one of a two-phase flow
  type: dict
error:
  description: On failure, the classified error.
  returned: failure
  type: dict
  contains:
    category:
      description: One of C(config), C(token), C(connection), C(tls), C(timeout), C(auth), C(disabled), C(throttled), C(protocol).
      type: str
    message:
      description: What went wrong.
      type: str
    hint:
      description: The Entra ID or Exchange fix.
      type: str
"""

from ansible_collections.mailops.o365.plugins.module_utils._claims import decode_claims, diagnose, iso_time, summarize
from ansible_collections.mailops.o365.plugins.module_utils._clouds import PROTOCOLS, get_cloud
from ansible_collections.mailops.o365.plugins.module_utils._module import O365Module


def main() -> None:
    module = O365Module(
        argument_spec=dict(
            protocols=dict(type="list", elements="str", choices=list(PROTOCOLS), default=list(PROTOCOLS)),
            flow_state=dict(type="dict", no_log=False),
            auth_response=dict(type="str", no_log=True),
            redirect_uri=dict(type="str", default="http://localhost"),
        ),
        supports_check_mode=True,
    )
    module.run(lambda: get_token(module))


def get_token(module: O365Module) -> dict:
    protocols = module.params["protocols"]
    outcome = module.acquire_token(protocols, flow_state=module.params["flow_state"],
                                   auth_response=module.params["auth_response"],
                                   redirect_uri=module.params["redirect_uri"])
    if not hasattr(outcome, "access_token"):  # phase one of a two-phase flow
        return dict(changed=False, pending=True, flow=outcome.flow, flow_state=outcome.state, **outcome.instructions)
    claims = decode_claims(outcome.access_token)
    expires_on = outcome.expires_on or (claims or {}).get("exp")
    result = dict(changed=False, pending=False, access_token=outcome.access_token, token_type=outcome.token_type,
                  scopes=outcome.scopes, source=outcome.source, flow=outcome.flow, account=outcome.account,
                  claims=summarize(claims),
                  problems=diagnose(claims, protocols, get_cloud(module.settings.cloud), module.settings.tenant_id))
    if expires_on:
        result.update(expires_on=int(expires_on), expires_at=iso_time(expires_on))
    return result


if __name__ == "__main__":
    main()
