"""Tenant settings: every example validates; every violation is reported with its path and a plain sentence."""
from __future__ import annotations

import copy
import glob
import json
import os

import pytest
import yaml

from ansible_collections.mailops.o365.plugins.module_utils import _checks, _options
from ansible_collections.mailops.o365.plugins.module_utils._clouds import CLOUDS, DEFAULT_PORTS, PROTOCOLS
from ansible_collections.mailops.o365.plugins.module_utils._errors import CATEGORIES
from ansible_collections.mailops.o365.plugins.module_utils._settings import (
    SCHEMA_PATH,
    SettingsError,
    error_lines,
    load_schema,
    normalize,
    summary,
    validate_settings,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))))
EXAMPLES = sorted(glob.glob(os.path.join(ROOT, "docs", "examples", "*.yml")))
GUID = "3f2b9c1e-7a4d-4e8b-9c0a-1d2e3f4a5b6c"
APP_ONLY = ["IMAP.AccessAsApp", "POP.AccessAsApp", "SMTP.SendAsApp"]
CONSUMER = ("is a consumer (Outlook.com) account; Microsoft does not support OAuth2 IMAP, POP or SMTP AUTH "
            "for these with Exchange Online apps")


def base() -> dict:
    return {
        "name": "contoso",
        "tenant_id": "contoso.onmicrosoft.com",
        "app": {"client_id": GUID, "auth": "client_secret", "permissions": list(APP_ONLY)},
        "mailboxes": [{"address": "ops@contoso.com"}, {"address": "help@contoso.com"}],
    }


def lines(settings, **kwargs) -> list:
    result = validate_settings(settings, **kwargs)
    assert result["valid"] is (not result["errors"])
    return error_lines(result["errors"])


def with_(changes: dict, drop=()) -> dict:
    """base() with dotted-path changes ("app.auth": "cache", "mailboxes.0.address": "x") and removals."""
    data = base()
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    for dotted in drop:
        *parents, last = dotted.split(".")
        node = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[last]
    return data


# --- valid settings -----------------------------------------------------------------------------

def test_there_are_the_four_examples():
    names = sorted(os.path.basename(p) for p in EXAMPLES)
    for wanted in ("tenant-app-only.yml", "tenant-certificate.yml", "tenant-delegated.yml", "tenant-national-cloud.yml"):
        assert wanted in names


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_every_example_validates_without_warnings(path):
    with open(path, encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    result = validate_settings(data["mailops_o365_tenant"])
    assert result["errors"] == [] and result["warnings"] == [] and result["valid"]
    assert result["normalized"]["name"] == data["mailops_o365_tenant"]["name"]


@pytest.mark.parametrize("path", EXAMPLES, ids=os.path.basename)
def test_examples_never_inline_a_secret(path):
    with open(path, encoding="utf-8") as handle:
        app = yaml.safe_load(handle)["mailops_o365_tenant"]["app"]
    secret = app.get("client_secret")
    assert secret is None or (secret.strip().startswith("{{ vault_") and secret.strip().endswith("}}"))
    for key in app:
        assert key in ("client_id", "auth", "client_secret", "permissions", "username", "client_certificate_path") or key.endswith("_env")


def test_the_minimal_base_is_valid():
    assert lines(base()) == []


def test_all_examples_as_a_list_validate():
    tenants = []
    for path in EXAMPLES:
        with open(path, encoding="utf-8") as handle:
            tenants.append(yaml.safe_load(handle)["mailops_o365_tenant"])
    result = validate_settings(tenants)
    assert result["valid"], result["errors"]
    assert [t["name"] for t in result["normalized"]] == [t["name"] for t in tenants]


# --- the table of invalid settings --------------------------------------------------------------

T = "tenant"
INVALID = [
    ("bad-guid", with_({"app.client_id": "3f2b9c1e-7a4d-4e8b-9c0a-1d2e3f4a5b6"}),
     ["tenant.app.client_id: '3f2b9c1e-7a4d-4e8b-9c0a-1d2e3f4a5b6' is not a GUID"]),
    ("bad-tenant-domain", with_({"tenant_id": "contoso"}),
     ["tenant.tenant_id: 'contoso' is neither a GUID nor a domain name"]),
    ("bad-tenant-spaces", with_({"tenant_id": "contoso .com"}),
     ["tenant.tenant_id: 'contoso .com' is neither a GUID nor a domain name"]),
    ("bad-cloud", with_({"cloud": "mars"}),
     ["tenant.cloud: 'mars' is not a known cloud; use one of 'china', 'public', 'usdod', 'usgov'"]),
    ("port-0", with_({"endpoints.imap.port": 0}),
     ["tenant.endpoints.imap.port: must be between 1 and 65535 (got 0)"]),
    ("port-70000", with_({"endpoints.smtp.port": 70000}),
     ["tenant.endpoints.smtp.port: must be between 1 and 65535 (got 70000)"]),
    ("port-string", with_({"endpoints.pop.port": "995"}),
     ["tenant.endpoints.pop.port: must be an integer, not a string ('995')"]),
    ("port-bool", with_({"endpoints.pop.port": True}),
     ["tenant.endpoints.pop.port: must be an integer, not a boolean (true)"]),
    ("bad-security", with_({"endpoints.imap.security": "ssl"}),
     ["tenant.endpoints.imap.security: 'ssl' is not a security mode; use one of 'tls', 'starttls'"]),
    ("unknown-key", with_({"foo": 1}), ["tenant: unknown key 'foo'"]),
    ("unknown-key-suggestion", with_({"app.clientid": GUID}),
     ["tenant.app: unknown key 'clientid' (did you mean 'client_id'?)"]),
    ("missing-client-id", with_({}, drop=["app.client_id"]), ["tenant.app: 'client_id' is required"]),
    ("missing-everything", {}, ["tenant: 'app' is required", "tenant: 'mailboxes' is required",
                                "tenant: 'name' is required", "tenant: 'tenant_id' is required"]),
    ("bad-email", with_({"mailboxes.1.address": "bob@"}),
     ["tenant.mailboxes[1].address: 'bob@' is not an email address"]),
    ("duplicate-mailbox-case-insensitive", with_({"mailboxes.1.address": "OPS@Contoso.com"}),
     ["tenant.mailboxes[1].address: 'OPS@Contoso.com' is listed twice (also tenant.mailboxes[0])"]),
    ("consumer-domain", with_({"mailboxes.0.address": "bob@outlook.com"}),
     ["tenant.mailboxes[0].address: 'bob@outlook.com' " + CONSUMER]),
    ("consumer-country-variant", with_({"mailboxes.0.address": "bob@hotmail.co.uk", "mailboxes.1.address": "ann@outlook.fr"}),
     ["tenant.mailboxes[0].address: 'bob@hotmail.co.uk' " + CONSUMER,
      "tenant.mailboxes[1].address: 'ann@outlook.fr' " + CONSUMER]),
    ("protocol-without-permission", with_({"app.permissions": ["IMAP.AccessAsApp"], "mailboxes.1.protocols": ["imap", "pop"]}),
     ["tenant.mailboxes[1].protocols: 'pop' needs the POP.AccessAsApp permission (auth 'client_secret'), "
      "which app.permissions does not list"]),
    ("delegated-auth-with-app-only-permissions", with_({"app.auth": "cache", "app.username": "ops@contoso.com"}),
     ["tenant.app.permissions: grants none of IMAP.AccessAsUser.All, POP.AccessAsUser.All, SMTP.Send, "
      "which auth 'cache' (delegated) needs"]),
    ("latency-warn-not-below-crit", with_({"thresholds": {"latency_ms": {"warn": {"auth": 3000}, "crit": {"auth": 3000}}}}),
     ["tenant.thresholds.latency_ms.warn.auth: 3000 must be lower than crit.auth (3000)"]),
    ("latency-warn-above-default-crit", with_({"thresholds": {"latency_ms": {"warn": {"total": 20000}}}}),
     ["tenant.thresholds.latency_ms.warn.total: 20000 must be lower than crit.total (15000, the default)"]),
    ("mailflow-warn-not-below-crit", with_({"thresholds": {"mailflow_s": {"warn": 600, "crit": 300}}}),
     ["tenant.thresholds.mailflow_s.warn: 600 must be lower than crit (300)"]),
    ("refresh-token-without-env", with_({"app.auth": "refresh_token", "app.permissions": ["IMAP.AccessAsUser.All"]}),
     ["tenant.app: 'refresh_token_env' is required when auth is 'refresh_token'"]),
    ("certificate-without-path", with_({"app.auth": "client_certificate"}),
     ["tenant.app: 'client_certificate_path' is required when auth is 'client_certificate'"]),
    ("cache-without-username", with_({"app.auth": "cache", "app.permissions": ["IMAP.AccessAsUser.All", "SMTP.Send"]}),
     ["tenant.app: 'username' is required when auth is 'cache'"]),
    ("bad-auth", with_({"app.auth": "password"}),
     ["tenant.app.auth: 'password' is not allowed; use one of 'client_secret', 'client_certificate', 'refresh_token', "
      "'cache', 'access_token'"]),
    ("bad-report-format", with_({"reports": {"formats": ["json", "pdf"]}}),
     ["tenant.reports.formats[1]: 'pdf' is not a report format; use one of 'json', 'junit', 'html', 'prometheus'"]),
    ("empty-mailboxes", with_({"mailboxes": []}), ["tenant.mailboxes: must not be empty"]),
    ("mailboxes-not-a-list", with_({"mailboxes": "ops@contoso.com"}),
     ["tenant.mailboxes: must be a list, not a string ('ops@contoso.com')"]),
    ("mailbox-not-a-mapping", with_({"mailboxes.1": "help@contoso.com"}),
     ["tenant.mailboxes[1]: must be a mapping, not a string ('help@contoso.com')"]),
    ("settings-not-a-mapping", "contoso", ["tenant: must be a mapping, not a string ('contoso')"]),
    ("settings-none", None, ["tenant: no tenant settings given"]),
    ("wrong-types", with_({"name": 7, "mailflow": {"enabled": "yes"}, "app.permissions": "IMAP.AccessAsApp"}),
     ["tenant.app.permissions: must be a list, not a string ('IMAP.AccessAsApp')",
      "tenant.mailflow.enabled: must be true or false, not a string ('yes')",
      "tenant.name: must be a string, not an integer (7)"]),
    ("huge-string", with_({"mailboxes.0.address": "a" * 300 + "@contoso.com"}),
     ["tenant.mailboxes[0].address: '" + "a" * 80 + "... (312 characters) is longer than the limit of 254 characters"]),
    ("huge-name", with_({"name": "n" * 64}),
     ["tenant.name: '" + "n" * 64 + "' is longer than the limit of 63 characters"]),
    ("control-character-in-name", with_({"name": "cont\x00oso"}),
     ["tenant.name: 'cont\\x00oso' contains control characters"]),
    ("binary-name", with_({"name": b"contoso"}),
     ["tenant.name: must be a string, not bytes"]),
    ("uppercase-name", with_({"name": "Contoso"}),
     ["tenant.name: 'Contoso' is not a valid name (lowercase letters, digits, '_', '.', '-'; starting with a letter or digit; "
      "at most 63 characters)"]),
    ("crlf-in-address", with_({"mailboxes.0.address": "ops@contoso.com\r\nBcc: x@evil.example"}),
     ["tenant.mailboxes[0].address: 'ops@contoso.com\\r\\nBcc: x@evil.example' contains control characters"]),
    ("trailing-lf-in-address", with_({"alerts": {"recipients": ["ops@contoso.com\n"], "sender": "ops@contoso.com"}}),
     ["tenant.alerts.recipients[0]: 'ops@contoso.com\\n' contains control characters"]),
    ("crlf-in-subject-prefix", with_({"alerts": {"recipients": ["ops@contoso.com"], "sender": "ops@contoso.com",
                                                 "subject_prefix": "[x]\r\nBcc: y@evil.example"}}),
     ["tenant.alerts.subject_prefix: '[x]\\r\\nBcc: y@evil.example' contains control characters"]),
    ("literal-client-secret-never-echoed", with_({"app.client_secret": "hunter2-literal"}),
     ["tenant.app.client_secret: must be a Jinja expression referring to a vaulted variable (\"{{ vault_... }}\"), "
      "never a literal secret"]),
    ("secret-and-secret-env", with_({"app.client_secret": "{{ vault_x }}", "app.client_secret_env": "X"}),
     ["tenant.app.client_secret: give either client_secret or client_secret_env, not both"]),
    ("bad-env-name", with_({"app.client_secret_env": "1BAD-NAME"}),
     ["tenant.app.client_secret_env: '1BAD-NAME' is not an environment variable name"]),
    ("authority-not-https", with_({"authority_host": "http://login.microsoftonline.com"}),
     ["tenant.authority_host: 'http://login.microsoftonline.com' is not an https:// URL with a host and no path"]),
    ("mailflow-enabled-without-addresses", with_({"mailflow": {"enabled": True}}),
     ["tenant.mailflow: 'from' is required when enabled is true", "tenant.mailflow: 'to' is required when enabled is true"]),
    ("mailflow-without-smtp-permission", with_({"app.permissions": ["IMAP.AccessAsApp"],
                                                "mailflow": {"enabled": True, "from": "ops@contoso.com", "to": "help@contoso.com"}}),
     ["tenant.mailflow.from: the mail flow test sends over SMTP, which app.permissions does not cover for auth 'client_secret'"]),
    ("bad-expect", with_({"mailboxes.0.expect": "broken"}),
     ["tenant.mailboxes[0].expect: 'broken' is not ok or a failure category; use one of 'ok', 'token', 'connection', 'tls', "
      "'timeout', 'auth', 'disabled', 'throttled', 'protocol'"]),
    ("bad-permission-name", with_({"app.permissions": ["IMAP.AccessAsApp", "Mail.Read"]}),
     ["tenant.app.permissions[1]: 'Mail.Read' is not an Exchange Online IMAP/POP/SMTP permission; use one of "
      "'IMAP.AccessAsApp', 'POP.AccessAsApp', 'SMTP.SendAsApp', 'IMAP.AccessAsUser.All', 'POP.AccessAsUser.All', 'SMTP.Send'"]),
    ("duplicate-protocols", with_({"mailboxes.0.protocols": ["imap", "imap"]}),
     ["tenant.mailboxes[0].protocols: lists 'imap' more than once"]),
    ("empty-folder", with_({"mailboxes.0.folder": ""}), ["tenant.mailboxes[0].folder: must not be empty"]),
    ("consumer-tenant-domain", with_({"tenant_id": "live.com"}), ["tenant.tenant_id: 'live.com' " + CONSUMER]),
    ("many-errors-at-once", with_({"tenant_id": "x", "cloud": "moon", "endpoints.imap.port": 0, "mailboxes.1.address": "bob@"},
                                  drop=["app.client_id"]),
     ["tenant.app: 'client_id' is required",
      "tenant.cloud: 'moon' is not a known cloud; use one of 'china', 'public', 'usdod', 'usgov'",
      "tenant.endpoints.imap.port: must be between 1 and 65535 (got 0)",
      "tenant.mailboxes[1].address: 'bob@' is not an email address",
      "tenant.tenant_id: 'x' is neither a GUID nor a domain name"]),
]


@pytest.mark.parametrize("settings,expected", [(s, e) for _unused, s, e in INVALID], ids=[i for i, _unused, _unused in INVALID])
def test_invalid_settings_report_every_violation(settings, expected):
    assert lines(copy.deepcopy(settings)) == expected


def test_the_table_is_big_enough():
    assert len(INVALID) >= 25


def test_list_of_tenants_names_the_tenant_index():
    good = base()
    third = with_({"name": "fabrikam", "tenant_id": "fabrikam.com"})
    third["mailboxes"] += [{"address": "a@fabrikam.com"}, {"address": "b@fabrikam.com"}, {"address": "c@fabrikam.com"},
                           {"address": "bob@"}]
    second = with_({"name": "northwind", "tenant_id": "northwind.com", "endpoints.pop.port": 0})
    assert lines([good, second, third]) == [
        "tenants[1].endpoints.pop.port: must be between 1 and 65535 (got 0)",
        "tenants[2].mailboxes[5].address: 'bob@' is not an email address",
    ]


def test_duplicate_tenant_names_and_ids_in_a_list():
    other = with_({"tenant_id": "CONTOSO.onmicrosoft.com"})
    assert lines([base(), with_({"name": "other"}), other]) == [
        "tenants[1].tenant_id: 'contoso.onmicrosoft.com' is already used by tenants[0]",
        "tenants[2].name: 'contoso' is already used by tenants[0]",
        "tenants[2].tenant_id: 'CONTOSO.onmicrosoft.com' is already used by tenants[0]",
    ]


def test_empty_list_and_custom_prefix():
    assert lines([]) == ["tenants: must list at least one tenant"]
    assert lines(with_({"mailboxes.0.address": "bob@"}), path="tenant(contoso)") == [
        "tenant(contoso).mailboxes[0].address: 'bob@' is not an email address"]


def test_summary_lists_every_violation_on_its_own_line():
    result = validate_settings(with_({"cloud": "mars", "mailboxes.0.address": "bob@"}))
    text = summary(result)
    assert text.splitlines() == [
        "2 problems in the tenant settings:",
        "tenant.cloud: 'mars' is not a known cloud; use one of 'china', 'public', 'usdod', 'usgov'",
        "tenant.mailboxes[0].address: 'bob@' is not an email address",
    ]
    assert result["normalized"] is None


def test_a_literal_secret_never_appears_in_any_message():
    secret = "Sup3r-S3cret~value"
    for value in (secret, secret + "\r\n", secret * 100):
        result = validate_settings(with_({"app.client_secret": value}))
        assert secret not in json.dumps(result)
        assert not result["valid"]


# --- warnings -----------------------------------------------------------------------------------

def warnings_of(settings) -> list:
    result = validate_settings(settings)
    assert result["valid"], result["errors"]
    return error_lines(result["warnings"])


def test_mailflow_addresses_outside_the_mailboxes_are_warnings():
    settings = with_({"mailboxes.1.protocols": ["smtp"],
                      "mailflow": {"enabled": True, "from": "ext@contoso.com", "to": "help@contoso.com", "timeout_s": 300}})
    assert warnings_of(settings) == [
        "tenant.mailflow.from: 'ext@contoso.com' is not among this tenant's mailboxes, so its SMTP access is not checked first",
        "tenant.mailflow.timeout_s: 300 is not above thresholds.mailflow_s.crit (600): a slow message times out before it is critical",
        "tenant.mailflow.to: 'help@contoso.com' is listed in mailboxes without imap, so its IMAP access is not checked first",
    ]


def test_ignored_references_wrong_kind_permissions_and_odd_ports_are_warnings():
    settings = with_({"app.refresh_token_env": "RT", "app.permissions": APP_ONLY + ["SMTP.Send"],
                      "endpoints.imap": {"port": 143, "security": "tls"}, "mailboxes.0.protocols": ["smtp"],
                      "mailboxes.0.folder": "INBOX"})
    assert warnings_of(settings) == [
        "tenant.app.permissions[3]: 'SMTP.Send' is a delegated permission; auth 'client_secret' does not use it",
        "tenant.app.refresh_token_env: is ignored with auth 'client_secret'",
        "tenant.endpoints.imap.port: 143 is the usual starttls port, but security is 'tls'",
        "tenant.mailboxes[0].folder: is ignored: this mailbox is not checked over imap",
    ]


# --- defaults -----------------------------------------------------------------------------------

def test_normalized_fills_every_default():
    norm = validate_settings(with_({"cloud": "usgov", "app.permissions": ["IMAP.AccessAsApp", "SMTP.SendAsApp"],
                                    "thresholds": {"latency_ms": {"warn": {"auth": 1000}}}}))["normalized"]
    assert norm["authority_host"] == CLOUDS["usgov"].authority_host
    assert norm["ca_path"] is None
    assert norm["app"]["client_secret_env"] == "O365_CLIENT_SECRET"
    assert norm["endpoints"] == {
        "imap": {"host": "outlook.office365.us", "security": "tls", "port": 993},
        "pop": {"host": "outlook.office365.us", "security": "tls", "port": 995},
        "smtp": {"host": "smtp.office365.us", "security": "starttls", "port": 587},
    }
    assert norm["mailboxes"][0] == {"address": "ops@contoso.com", "protocols": ["imap", "smtp"], "folder": "INBOX", "expect": "ok"}
    assert norm["thresholds"]["latency_ms"]["warn"]["auth"] == 1000
    assert norm["thresholds"]["latency_ms"]["crit"]["total"] == 15000
    assert norm["thresholds"]["mailflow_s"] == {"warn": 120, "crit": 600}
    assert norm["mailflow"] == {"enabled": False, "timeout_s": 900}
    assert norm["alerts"] == {"recipients": [], "sender": None, "subject_prefix": "[mailops]"}
    assert norm["reports"] == {"directory": "reports", "formats": ["json"]}


def test_normalize_does_not_touch_its_input_and_tolerates_garbage():
    data = base()
    before = copy.deepcopy(data)
    normalize(data)
    assert data == before
    for garbage in (None, [], "x", {"app": [], "mailboxes": "x", "endpoints": 3, "thresholds": []}):
        normalize(garbage)


def test_starttls_port_and_access_token_env_defaults():
    norm = validate_settings(with_({"endpoints.imap.security": "starttls", "app.auth": "access_token"}))["normalized"]
    assert norm["endpoints"]["imap"]["port"] == DEFAULT_PORTS[("imap", "starttls")]
    assert norm["app"]["access_token_env"] == "O365_ACCESS_TOKEN"
    assert "client_secret_env" not in norm["app"]


# --- the schema stays in step with the code ------------------------------------------------------

def schema() -> dict:
    return load_schema()


def test_schema_is_draft_2020_12_and_describes_every_property():
    import jsonschema

    s = schema()
    jsonschema.Draft202012Validator.check_schema(s)
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert s["$id"] and s["title"] and s["description"]

    def walk(node, where):
        if isinstance(node, dict):
            for name, sub in (node.get("properties") or {}).items():
                assert sub.get("description"), "%s.%s has no description" % (where, name)
            for key, sub in node.items():
                if key not in ("if", "then"):  # conditions, not properties
                    walk(sub, "%s/%s" % (where, key))
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, "%s/%d" % (where, i))

    walk(s, "#")


def test_schema_reuses_the_projects_patterns_and_tables():
    s = schema()
    defs = s["$defs"]
    assert defs["guid"]["pattern"] == _options.GUID_RE.pattern
    assert defs["address"]["pattern"] == _checks.ADDRESS_RE.pattern
    assert s["properties"]["authority_host"]["pattern"] == _options.HOST_URL_RE.pattern
    assert [p["pattern"] for p in s["properties"]["tenant_id"]["anyOf"]] == [_options.GUID_RE.pattern, _options.DOMAIN_RE.pattern]
    assert sorted(s["properties"]["cloud"]["enum"]) == sorted(CLOUDS)
    mailbox = s["properties"]["mailboxes"]["items"]["properties"]
    assert mailbox["protocols"]["items"]["enum"] == list(PROTOCOLS)
    assert mailbox["expect"]["enum"] == ["ok"] + [c for c in CATEGORIES if c != "config"]
    assert s["properties"]["mailboxes"]["maxItems"] == _checks.MAX_FLEET
    assert sorted(s["properties"]["endpoints"]["properties"]) == sorted(PROTOCOLS)


def test_schema_defaults_match_the_normalized_defaults():
    s = schema()["properties"]
    norm = validate_settings(base())["normalized"]
    assert s["cloud"]["default"] == norm["cloud"]
    for level in ("warn", "crit"):
        assert s["thresholds"]["properties"]["latency_ms"]["properties"][level]["default"] == norm["thresholds"]["latency_ms"][level]
    for protocol in PROTOCOLS:
        assert s["endpoints"]["properties"][protocol]["properties"]["security"]["default"] == norm["endpoints"][protocol]["security"]
    assert s["mailflow"]["properties"]["timeout_s"]["default"] == norm["mailflow"]["timeout_s"]
    assert s["reports"]["properties"]["formats"]["default"] == norm["reports"]["formats"]


def test_schema_path_points_at_the_collection_file():
    assert os.path.samefile(SCHEMA_PATH, os.path.join(ROOT, "meta", "tenant_settings.schema.json"))


def test_missing_or_broken_schema_is_a_settings_error(tmp_path):
    with pytest.raises(SettingsError, match="cannot read the settings schema"):
        validate_settings(base(), schema_path=str(tmp_path / "missing.json"))
    with pytest.raises(SettingsError, match="not a valid JSON Schema"):
        validate_settings(base(), schema={"type": 12})
