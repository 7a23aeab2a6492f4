"""The o365_validate_settings action plugin, called directly with a fake task (no play, no network)."""
from __future__ import annotations

import copy
import json
from unittest import mock

import pytest

from ansible_collections.mailops.o365.plugins.action import o365_validate_settings as plugin

GUID = "3f2b9c1e-7a4d-4e8b-9c0a-1d2e3f4a5b6c"
SECRET = "s3cr3t-never-shown"


def tenant(**over) -> dict:
    data = {"name": "contoso", "tenant_id": "contoso.com",
            "app": {"client_id": GUID, "auth": "client_secret", "permissions": ["IMAP.AccessAsApp", "SMTP.SendAsApp"]},
            "mailboxes": [{"address": "ops@contoso.com"}]}
    data.update(over)
    return data


def run(args: dict) -> dict:
    task = mock.MagicMock()
    task.args = args
    task.async_val = 0
    task.check_mode = False
    task.action = "mailops.o365.o365_validate_settings"
    action = plugin.ActionModule(task, mock.MagicMock(), mock.MagicMock(), loader=None, templar=None, shared_loader_obj=None)
    return action.run(task_vars={})


def test_valid_tenant_returns_normalized_settings():
    result = run({"settings": tenant()})
    assert result["valid"] is True and not result.get("failed")
    assert result["errors"] == [] and result["warnings"] == []
    assert result["normalized"]["endpoints"]["imap"]["port"] == 993
    assert result["normalized"]["mailboxes"][0]["protocols"] == ["imap", "smtp"]
    assert result["msg"] == "1 tenant valid"
    assert result["changed"] is False


def test_invalid_tenant_fails_listing_every_violation():
    bad = tenant(cloud="mars", mailboxes=[{"address": "bob@"}, {"address": "x@contoso.com", "protocols": ["pop"]}])
    result = run({"settings": bad})
    assert result["failed"] is True and result["valid"] is False and result["normalized"] is None
    assert result["errors"] == [
        {"path": "tenant.cloud", "message": "'mars' is not a known cloud; use one of 'china', 'public', 'usdod', 'usgov'"},
        {"path": "tenant.mailboxes[0].address", "message": "'bob@' is not an email address"},
        {"path": "tenant.mailboxes[1].protocols",
         "message": "'pop' needs the POP.AccessAsApp permission (auth 'client_secret'), which app.permissions does not list"},
    ]
    assert result["msg"].splitlines() == [
        "3 problems in the tenant settings:",
        "tenant.cloud: 'mars' is not a known cloud; use one of 'china', 'public', 'usdod', 'usgov'",
        "tenant.mailboxes[0].address: 'bob@' is not an email address",
        "tenant.mailboxes[1].protocols: 'pop' needs the POP.AccessAsApp permission (auth 'client_secret'), "
        "which app.permissions does not list",
    ]


def test_list_uses_tenants_prefix_and_custom_path():
    third = tenant(name="c", tenant_id="c.example.com", mailboxes=[
        {"address": "%d@c.example.com" % i} for i in range(5)] + [{"address": "bob@"}])
    result = run({"settings": [tenant(), tenant(name="b", tenant_id="b.example.com"), third]})
    assert [e["path"] + ": " + e["message"] for e in result["errors"]] == [
        "tenants[2].mailboxes[5].address: 'bob@' is not an email address"]
    result = run({"settings": tenant(cloud="x"), "path": "tenant(contoso)"})
    assert result["errors"][0]["path"] == "tenant(contoso).cloud"


def test_missing_settings_fail_plainly():
    result = run({})
    assert result["failed"] and result["errors"] == [{"path": "tenant", "message": "no tenant settings given"}]


def test_warnings_are_path_sentences():
    result = run({"settings": tenant(mailflow={"enabled": True, "from": "ops@contoso.com", "to": "in@contoso.com"})})
    assert result["valid"]
    assert result["warnings"] == [
        "tenant.mailflow.to: 'in@contoso.com' is not among this tenant's mailboxes, so its IMAP access is not checked first"]


def test_schema_override_and_unreadable_schema(tmp_path):
    permissive = tmp_path / "schema.json"
    permissive.write_text(json.dumps({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"}))
    assert run({"settings": {"anything": 1}, "schema": str(permissive)})["valid"] is True
    result = run({"settings": tenant(), "schema": str(tmp_path / "missing.json")})
    assert result["failed"] and "cannot read the settings schema" in result["msg"]


def test_default_schema_is_the_collection_file():
    assert plugin.DEFAULT_SCHEMA.endswith("meta/tenant_settings.schema.json")
    with open(plugin.DEFAULT_SCHEMA, encoding="utf-8") as handle:
        assert json.load(handle)["title"]


def test_literal_client_secret_is_rejected_and_never_echoed():
    result = run({"settings": tenant(app=dict(tenant()["app"], client_secret=SECRET))})
    assert result["failed"]
    assert SECRET not in json.dumps(result)
    assert result["errors"][0]["path"] == "tenant.app.client_secret"


def test_vaulted_client_secret_is_accepted_and_dropped_from_normalized():
    if plugin.VaultHelper is None:
        pytest.skip("ansible-core < 2.19 has no data tags")
    from ansible.parsing.vault import EncryptedString, VaultLib, VaultSecret

    secret = VaultSecret(b"pw")
    vault = VaultLib([("default", secret)])
    ciphertext = vault.encrypt(SECRET, secret).decode()
    with mock.patch("ansible.parsing.vault.VaultSecretsContext.current") as current:
        current.return_value.secrets = [("default", secret)]
        value = EncryptedString(ciphertext=ciphertext)
        try:
            plain = value._decrypt()
        except Exception as err:  # pragma: no cover - internal API moved
            pytest.skip("cannot decrypt in a unit test here: %s" % err)
    assert plugin._is_vaulted(plain)
    settings = tenant(app=dict(tenant()["app"], client_secret=plain))
    original = copy.deepcopy(settings)
    result = run({"settings": settings})
    assert result["valid"], result["errors"]
    assert "client_secret" not in result["normalized"]["app"]
    assert SECRET not in json.dumps(result)
    assert settings == original


def test_jinja_expression_is_accepted_untemplated():
    result = run({"settings": tenant(app=dict(tenant()["app"], client_secret="{{ vault_x }}"))})
    assert result["valid"]
    assert "client_secret" not in result["normalized"]["app"]
