"""Property tests: every public parser of server input, on any input, raises only its documented error.

The complete inventory (a test below fails when a new public parser appears without a property here):

* xoauth2:  encode_xoauth2, decode_xoauth2                              -> ValueError
* _imap:    parse_imap_response_line, parse_response_code, parse_capability, parse_status, parse_search,
            parse_xoauth2_error, decode_mailbox                          -> ValueError
            parse_header_block (bytes)                                   -> never raises
            encode_mailbox / quote / uid_set                              -> encoders, round trips
* _pop:     parse_pop_status, parse_capa, parse_stat, sasl_mechanisms, unstuff -> ValueError
* _smtp:    parse_reply_line, parse_reply (+ the enhanced status code)   -> ReplyError (a ValueError)
* _claims:  decode_claims -> never raises (None or dict); diagnose/summarize/require_usable on any claims
            -> a list / dict / UnusableToken only
* _errors:  classify_reply, entra_error -> never raise, always a known category
"""
from __future__ import annotations

import base64
import json
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.mailops.o365.plugins.module_utils import _claims, _errors, _imap, _pop, _smtp, xoauth2
from ansible_collections.mailops.o365.plugins.module_utils._clouds import CLOUDS, PROTOCOLS

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Text with the characters servers and attackers like: controls, CR/LF, ^A, brackets, parens, non-ASCII.
SPICY = st.sampled_from(list("\x00\x01\r\n\t ()[]{}+*\"\\&-,=.:;@<>~") + ["\u00e9", "\u20ac", "\U0001F600", "\ud800"])
TEXT = st.one_of(st.text(), st.text(alphabet=st.one_of(SPICY, st.characters()), max_size=200))
BYTES = st.one_of(st.binary(max_size=300), TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")))
ANYTHING = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), TEXT, BYTES,
                     st.lists(TEXT, max_size=5), st.dictionaries(TEXT, TEXT, max_size=3))
JSON = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), TEXT),
                    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
                    max_leaves=12)


def only(errors, func, *args):
    """Call ``func``; return its value, or None when it raised one of the documented ``errors``."""
    try:
        return func(*args)
    except errors:
        return None


# ----------------------------------------------------------------------------- XOAUTH2

@FUZZ
@given(ANYTHING, ANYTHING)
def test_encode_xoauth2_any_input(user, token):
    out = only(ValueError, xoauth2.encode_xoauth2, user, token)
    if out is not None:
        assert re.fullmatch(r"[A-Za-z0-9+/]+={0,2}", out)
        assert xoauth2.decode_xoauth2(out) == (user, token)


@FUZZ
@given(st.one_of(ANYTHING, BYTES.map(lambda b: base64.b64encode(b).decode())))
def test_decode_xoauth2_any_input(value):
    out = only(ValueError, xoauth2.decode_xoauth2, value)
    if out is not None:
        user, token = out
        assert user and token and not any(c in user + token for c in "\x01\r\n")


_FIELD = st.text(min_size=1).filter(lambda t: not any(c in t for c in "\x01\r\n"))


@FUZZ
@given(_FIELD.filter(lambda t: "\ud800" not in t), _FIELD.filter(lambda t: "\ud800" not in t))
def test_xoauth2_round_trip(user, token):
    assume_encodable = all(not (0xD800 <= ord(c) <= 0xDFFF) for c in user + token)
    if assume_encodable:
        assert xoauth2.decode_xoauth2(xoauth2.encode_xoauth2(user, token)) == (user, token)


# ----------------------------------------------------------------------------- IMAP

@FUZZ
@given(st.one_of(ANYTHING, st.builds(lambda a, b: a + " " + b, st.sampled_from(["*", "+", "A001", "*  3"]), TEXT)))
def test_parse_imap_response_line(line):
    out = only(ValueError, _imap.parse_imap_response_line, line)
    if out is not None:
        assert out.tag in ("+", "*") or out.keyword in ("OK", "NO", "BAD")
        assert out.number is None or out.number >= 0


@FUZZ
@given(st.one_of(ANYTHING, TEXT.map(lambda t: "[" + t)))
def test_parse_response_code(text):
    out = only(ValueError, _imap.parse_response_code, text)
    assert out is None or (isinstance(out, tuple) and out[0] == out[0].upper())


@FUZZ
@given(ANYTHING)
def test_parse_capability(text):
    out = only(ValueError, _imap.parse_capability, text)
    assert out is None or all(isinstance(c, str) and c for c in out)


@FUZZ
@given(st.one_of(ANYTHING, st.builds(lambda a, b: "INBOX (%s %s)" % (a, b), TEXT, TEXT),
                 st.lists(st.tuples(st.sampled_from(["MESSAGES", "UNSEEN", "UIDNEXT"]), st.integers(-5, 10 ** 25)),
                          max_size=4).map(lambda kv: "INBOX (%s)" % " ".join("%s %s" % p for p in kv))))
def test_parse_status(text):
    out = only(ValueError, _imap.parse_status, text)
    assert out is None or all(isinstance(v, int) and v >= 0 for v in out.values())


@FUZZ
@given(st.one_of(ANYTHING, st.lists(st.integers(-3, 10 ** 22), max_size=8).map(lambda n: " ".join(map(str, n)))))
def test_parse_search(text):
    out = only(ValueError, _imap.parse_search, text)
    assert out is None or all(isinstance(n, int) and n >= 0 for n in out)


@FUZZ
@given(st.one_of(ANYTHING, JSON.map(lambda j: base64.b64encode(json.dumps(j).encode()).decode()),
                 st.just(base64.b64encode(b"[" * 5000 + b"]" * 5000).decode()[:8000])))
def test_parse_xoauth2_error(challenge):
    out = only(ValueError, _imap.parse_xoauth2_error, challenge)
    assert out is None or (set(out) <= {"status", "schemes", "scope"} and all(len(v) <= 203 for v in out.values()))


@FUZZ
@given(st.one_of(BYTES, ANYTHING))
def test_parse_header_block(data):
    out = only(ValueError, _imap.parse_header_block, data)
    if isinstance(data, (bytes, bytearray)):
        assert isinstance(out, dict)
        assert all(k == k.lower() and isinstance(v, str) for k, v in out.items())


@FUZZ
@given(st.one_of(ANYTHING, TEXT.map(lambda t: "&" + t + "-")))
def test_decode_mailbox(name):
    out = only(ValueError, _imap.decode_mailbox, name)
    assert out is None or isinstance(out, str)


@FUZZ
@given(st.text().filter(lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t)))
def test_mailbox_name_round_trip(name):
    encoded = _imap.encode_mailbox(name)
    assert encoded.isascii()
    assert _imap.decode_mailbox(encoded) == name


@FUZZ
@given(st.text().filter(lambda t: not any(c in t for c in "\r\n\x00")))
def test_quote_is_one_imap_string(text):
    quoted = _imap.quote(text)
    assert quoted.startswith('"') and quoted.endswith('"')
    assert re.fullmatch(r'"(?:[^"\\]|\\.)*"', quoted, re.S)


@FUZZ
@given(st.lists(st.integers(1, 2 ** 32 - 1), min_size=1, max_size=50))
def test_uid_set_covers_exactly_the_uids(uids):
    covered = set()
    for part in _imap.uid_set(uids).split(","):
        low, _unused, high = part.partition(":")
        covered.update(range(int(low), int(high or low) + 1))
    assert covered == set(uids)


# ----------------------------------------------------------------------------- POP3

@FUZZ
@given(st.one_of(ANYTHING, st.builds(lambda a, b: a + b, st.sampled_from(["+OK", "-ERR", "+ok ", "-err", "+OKAY"]), TEXT)))
def test_parse_pop_status(line):
    out = only(ValueError, _pop.parse_pop_status, line)
    assert out is None or (isinstance(out[0], bool) and isinstance(out[1], str))


@FUZZ
@given(st.one_of(ANYTHING, st.lists(TEXT, max_size=8), st.lists(ANYTHING, max_size=3)))
def test_parse_capa_and_sasl_mechanisms(lines):
    out = only(ValueError, _pop.parse_capa, lines)
    assert out is None or all(isinstance(c, str) and c.strip() for c in out)
    mechanisms = only(ValueError, _pop.sasl_mechanisms, lines)
    assert mechanisms is None or all(m == m.upper() for m in mechanisms)


@FUZZ
@given(st.one_of(ANYTHING, st.builds(lambda a, b, c: "%s %s%s" % (a, b, c), st.integers(-5, 10 ** 22),
                                     st.integers(-5, 10 ** 22), TEXT)))
def test_parse_stat(text):
    out = only(ValueError, _pop.parse_stat, text)
    assert out is None or (out[0] >= 0 and out[1] >= 0)


@FUZZ
@given(ANYTHING)
def test_unstuff(line):
    out = only(ValueError, _pop.unstuff, line)
    assert out is None or isinstance(out, str)


# ----------------------------------------------------------------------------- SMTP

REPLY_LINE = st.builds(lambda code, sep, text: ("%s%s%s\r\n" % (code, sep, text)).encode("utf-8", "surrogatepass"),
                       st.one_of(st.integers(100, 699), st.sampled_from(["25", "2500", "abc", ""])),
                       st.sampled_from([" ", "-", "", "x"]),
                       st.one_of(TEXT, st.builds(lambda a, b, c, t: "%d.%d.%d %s" % (a, b, c, t),
                                                 st.integers(0, 9), st.integers(0, 1000), st.integers(0, 1000), TEXT)))


@FUZZ
@given(st.one_of(REPLY_LINE, BYTES, ANYTHING))
def test_parse_reply_line(raw):
    out = only(_smtp.ReplyError, _smtp.parse_reply_line, raw)
    assert out is None or (200 <= out[0] <= 599 and isinstance(out[1], bool))


@FUZZ
@given(st.one_of(st.lists(REPLY_LINE, max_size=6), st.lists(BYTES, max_size=4), st.just([b"250-x\r\n"] * 1001)))
def test_parse_reply_and_enhanced_status(lines):
    out = only(_smtp.ReplyError, _smtp.parse_reply, lines)
    if out is not None:
        assert 200 <= out.code <= 599 and len(out.lines) == len(lines)
        if out.enhanced is not None:
            klass, subject, detail = out.enhanced.split(".")
            assert klass == str(out.code)[0] and len(subject) <= 3 and len(detail) <= 3
        assert isinstance(str(out), str)


def test_reply_error_is_a_value_error():
    assert issubclass(_smtp.ReplyError, ValueError)


# ----------------------------------------------------------------------------- claims

def _jwt(payload) -> str:
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")
    return "eyJhbGciOiJSUzI1NiJ9.%s.c2ln" % body


@FUZZ
@given(st.one_of(ANYTHING, TEXT.map(lambda t: "a.%s.c" % t), JSON.map(_jwt)))
def test_decode_claims_never_raises(token):
    out = _claims.decode_claims(token)
    assert out is None or isinstance(out, dict)


CLAIMS = st.one_of(
    st.dictionaries(st.sampled_from(["aud", "tid", "exp", "idtyp", "roles", "scp", "upn", "oid", "appid", "iss"]),
                    JSON, max_size=8),
    st.fixed_dictionaries({"aud": st.one_of(JSON, st.lists(st.sampled_from(["https://outlook.office365.com", "x"]))),
                           "tid": JSON, "exp": JSON, "roles": JSON, "scp": JSON, "idtyp": JSON}))


@FUZZ
@given(CLAIMS, st.sampled_from(sorted(CLOUDS)), st.one_of(st.none(), st.just("0c0a5a1e-5e57-4c3b-9b1d-1ab000000001")))
def test_claims_diagnosis_on_any_claims(claims, cloud, tenant):
    problems = _claims.diagnose(claims, list(PROTOCOLS), CLOUDS[cloud], tenant)
    assert isinstance(problems, list) and all(isinstance(p, str) for p in problems)
    assert isinstance(_claims.summarize(claims), dict)
    user = _claims.token_user(claims)
    assert user is None or isinstance(user, str)
    try:
        _claims.require_usable(_jwt(claims), "imap", CLOUDS[cloud], tenant)
    except _claims.UnusableToken as err:
        assert err.category == "auth" and err.problems


# ----------------------------------------------------------------------------- classifiers

@FUZZ
@given(st.sampled_from(["imap", "pop", "smtp", "other"]), st.one_of(TEXT, st.none()),
       st.sampled_from(list(_errors.CATEGORIES)))
def test_classify_reply_never_raises(protocol, reply, default):
    err = _errors.classify_reply(protocol, reply, default=default)
    assert isinstance(err, _errors.O365Error) and err.category in _errors.CATEGORIES
    assert isinstance(err.as_dict(), dict)


ENTRA = st.one_of(
    st.dictionaries(st.sampled_from(["error", "error_description", "error_codes", "suberror", "correlation_id"]),
                    JSON, max_size=5),
    st.fixed_dictionaries({"error": TEXT, "error_description": st.builds(lambda c, t: "AADSTS%d: %s" % (c, t),
                                                                         st.integers(0, 10 ** 8), TEXT),
                           "error_codes": st.lists(st.one_of(st.integers(), TEXT), max_size=3)}))


@FUZZ
@given(ENTRA, st.one_of(st.none(), st.sampled_from([400, 401, 429, 500, 503])))
def test_entra_error_never_raises(error, status):
    err = _errors.entra_error(error, status)
    assert isinstance(err, _errors.O365Error) and err.category in _errors.CATEGORIES
    assert isinstance(err.message, str) and "\n" not in err.message


# ----------------------------------------------------------------------------- inventory

COVERED = {
    xoauth2: {"encode_xoauth2", "decode_xoauth2"},
    _imap: {"parse_imap_response_line", "parse_response_code", "parse_capability", "parse_status", "parse_search",
            "parse_xoauth2_error", "parse_header_block", "encode_mailbox", "decode_mailbox", "quote", "uid_set"},
    _pop: {"parse_pop_status", "parse_capa", "parse_stat", "sasl_mechanisms", "unstuff"},
    _smtp: {"parse_reply_line", "parse_reply"},
    _claims: {"decode_claims"},
    _errors: {"classify_reply", "entra_error"},
}


def test_inventory_is_complete():
    """A new public parse_*/decode_* function must get a property in this file."""
    for module, names in COVERED.items():
        public = {n for n in dir(module) if re.match(r"(parse|decode|unstuff|sasl_|encode|classify|entra_)", n)
                  and callable(getattr(module, n)) and getattr(getattr(module, n), "__module__", "") == module.__name__}
        assert public <= names, "%s: no property test for %s" % (module.__name__, sorted(public - names))
