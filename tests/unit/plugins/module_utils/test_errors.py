"""Error mapping: every known AADSTS code and Exchange reply lands in the right category with a hint."""
import pytest

from ansible_collections.mailops.o365.plugins.module_utils._errors import (
    CATEGORIES,
    RULES,
    O365Error,
    classify_reply,
    entra_error,
)


@pytest.mark.parametrize("code,needle", [
    ("90002", "tenant_id"), ("700016", "client_id"), ("7000215", "secret"), ("7000222", "expired"),
    ("70011", ".default"), ("65001", "consent"), ("50076", "device code"), ("50079", "MFA"),
    ("700082", "bootstrap_token"), ("70008", "bootstrap_token"),
])
def test_required_aadsts_codes(code, needle):
    err = entra_error({"error": "invalid_request", "error_description": "AADSTS%s: something.\r\nTrace ID: x" % code,
                       "error_codes": [int(code)]})
    assert err.category == "token" and err.code == "AADSTS" + code
    assert needle.lower() in err.hint.lower()
    assert "Trace ID" not in err.message  # first line only


def test_code_found_in_description_when_codes_missing():
    assert entra_error({"error_description": "AADSTS90002: Tenant 'x' not found."}).code == "AADSTS90002"


def test_unknown_entra_error_and_throttling():
    assert entra_error({"error": "server_error"}).category == "token"
    assert entra_error({"error": "temporarily_unavailable"}).category == "throttled"


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.source + ":" + r.pattern[:20])
def test_every_rule_example_classifies_to_its_own_category(rule):
    assert rule.category in CATEGORIES
    if rule.source == "entra":
        err = entra_error({"error_description": rule.example})
    else:
        err = classify_reply(rule.source, rule.example)
        assert err.server_reply == rule.example
    assert err.category == rule.category and err.hint


def test_smtp_disabled_is_its_own_category():
    err = classify_reply("smtp", "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.")
    assert err.category == "disabled" and "Set-CASMailbox" in err.hint


def test_unknown_reply_is_protocol_with_text_kept():
    err = classify_reply("imap", "A01 NO [CLIENTBUG] something odd")
    assert err.category == "protocol" and "something odd" in err.message


def test_unknown_smtp_throttle_reply():
    assert classify_reply("smtp", "451 4.7.500 Server busy, try again later (throttled)").category == "throttled"


def test_as_dict_shape_and_bad_category():
    assert set(O365Error("auth", "m", "h").as_dict()) == {"category", "message", "hint"}
    with pytest.raises(ValueError, match="unknown error category"):
        raise O365Error("nonsense", "m")
