"""SASL XOAUTH2 codec: the seed's examples are the test vectors."""
import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.mailops.o365.plugins.module_utils.xoauth2 import decode_xoauth2, encode_xoauth2

# From Microsoft's page (shared/seeds/ms-oauth-imap-pop-smtp.en.md), line breaks removed.
SEED_CONTOSO = ("dXNlcj10ZXN0QGNvbnRvc28ub25taWNyb3NvZnQuY29tAWF1dGg9QmVhcmVy"
                "IEV3QkFBbDNCQUFVRkZwVUFvN0ozVmUwYmpMQldaV0NjbFJDM0VvQUEBAQ==")
SEED_TRANSCRIPT = ("dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJo"
                   "ZG1semRHRXVZMjl0Q2cBAQ==")
# The POP/SMTP transcripts split the same string over three lines.
SEED_FOLDED = "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlY\nXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJoZG1semRHRXVZMj\nl0Q2cBAQ==\n"


def test_seed_contoso_vector_byte_for_byte():
    assert encode_xoauth2("test@contoso.onmicrosoft.com", "EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA") == SEED_CONTOSO


def test_seed_transcript_vector_round_trips():
    user, token = decode_xoauth2(SEED_TRANSCRIPT)
    assert (user, token) == ("someuser@example.com", "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg")
    assert encode_xoauth2(user, token) == SEED_TRANSCRIPT


def test_folded_transcript_decodes_once_joined():
    with pytest.raises(ValueError, match="line feed"):
        decode_xoauth2(SEED_FOLDED)
    assert decode_xoauth2("".join(SEED_FOLDED.split()))[0] == "someuser@example.com"


def test_truncated_pop_failure_example_is_rejected():
    # The seed's POP failure transcript ends in "l0Q2cBAQ=" (one '=' short): not valid base64.
    with pytest.raises(ValueError, match="base64"):
        decode_xoauth2(SEED_TRANSCRIPT[:-1])


@pytest.mark.parametrize("user,token,field,what", [
    ("", "tok", "user", "empty"),
    ("a@b.c", "", "access_token", "empty"),
    ("a\x01@b.c", "tok", "user", r"\\x01"),
    ("a@b.c", "to\x01k", "access_token", r"\\x01"),
    ("a@b.c\r", "tok", "user", "carriage return"),
    ("a@b.c", "tok\n", "access_token", "line feed"),
])
def test_encode_rejects_bad_values_naming_the_field(user, token, field, what):
    with pytest.raises(ValueError, match=field + ".*" + what) as info:
        encode_xoauth2(user, token)
    assert "tok" not in str(info.value).replace("access_token", "")


@pytest.mark.parametrize("raw,what", [
    (b"user=a@b.c\x01auth=Bearer t\x01", "two"),
    (b"usr=a@b.c\x01auth=Bearer t\x01\x01", "user="),
    (b"user=a@b.c\x01auth=Basic t\x01\x01", "Bearer"),
    (b"user=\x01auth=Bearer t\x01\x01", "user must not be empty"),
    (b"user=a@b.c\x01auth=Bearer \x01\x01", "access_token must not be empty"),
    (b"user=a@b.c\x01x=1\x01auth=Bearer t\x01\x01", "exactly"),
])
def test_decode_rejects_malformed(raw, what):
    with pytest.raises(ValueError, match=what):
        decode_xoauth2(base64.b64encode(raw).decode())


def test_decode_rejects_empty_and_non_utf8():
    with pytest.raises(ValueError, match="empty"):
        decode_xoauth2("")
    with pytest.raises(ValueError, match="UTF-8"):
        decode_xoauth2(base64.b64encode(b"\xff\xfe").decode())


_safe_text = st.text(st.characters(blacklist_characters="\x01\r\n", blacklist_categories=("Cs",)), min_size=1)


@given(user=_safe_text, token=_safe_text)
def test_round_trip_property(user, token):
    assert decode_xoauth2(encode_xoauth2(user, token)) == (user, token)


@given(st.text())
def test_decode_only_raises_value_error(data):
    try:
        decode_xoauth2(data)
    except ValueError:
        pass
