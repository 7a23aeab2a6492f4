# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Message spec validation and building, parsed back with the email package."""

from __future__ import annotations

import email
import email.policy
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.mailops.o365.plugins.module_utils._errors import O365Error
from ansible_collections.mailops.o365.plugins.module_utils._message import (
    build_message,
    check_size,
    message_bytes,
    message_size,
    parse_address,
    summarize,
    validate_spec,
)

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
PDF = b"%PDF-1.4\n" + os.urandom(3000)


def spec(**kwargs) -> dict:
    base = {"sender": "sender@example.com", "to": ["alice@example.com"], "subject": "hi", "body": "hello"}
    base.update(kwargs)
    return base


def parse(msg) -> email.message.EmailMessage:
    return email.message_from_bytes(message_bytes(msg), policy=email.policy.default)


def config_error(s: dict, prefix: str = "") -> str:
    with pytest.raises(O365Error) as caught:
        validate_spec(s, prefix)
    assert caught.value.category == "config"
    return caught.value.message


@pytest.fixture
def files(tmp_path):
    (tmp_path / "logo.png").write_bytes(PNG)
    (tmp_path / "report.pdf").write_bytes(PDF)
    (tmp_path / "données.csv").write_text("a;b\n1;2\n", encoding="utf-8")
    return tmp_path


# ----------------------------------------------------------------------------- building

def test_multipart_round_trip(files):
    html = '<p>Grüße <img src="cid:logo"></p>'
    msg, rcpts = build_message(spec(body=html, subtype="html",
                                    attach=[str(files / "report.pdf"), str(files / "données.csv")],
                                    inline=[{"path": str(files / "logo.png"), "cid": "logo"}]))
    wire = message_bytes(msg)
    assert wire.isascii() and b"\r\n" in wire and b"\n" not in wire.replace(b"\r\n", b"")
    back = parse(msg)
    assert back.get_content_type() == "multipart/mixed"
    related, pdf, csv = back.iter_parts()
    assert related.get_content_type() == "multipart/related"
    body, image = related.iter_parts()
    assert body.get_content_type() == "text/html" and body.get_content().replace("\r\n", "\n") == html + "\n"
    assert image.get_content_type() == "image/png" and image["Content-ID"] == "<logo>"
    assert image.get_content() == PNG and image.get_content_disposition() == "inline"
    assert pdf.get_filename() == "report.pdf" and pdf.get_content_type() == "application/pdf"
    assert pdf.get_content() == PDF
    assert csv.get_filename() == "données.csv" and csv.get_payload(decode=True) == b"a;b\n1;2\n"
    assert rcpts == ["alice@example.com"]
    summary = summarize(msg, rcpts)
    assert summary["attachments"] == ["report.pdf", "données.csv"] and summary["inline"] == ["logo"]
    assert summary["size"] == len(wire) == message_size(msg)


def test_utf8_headers_and_idn(files):
    msg, rcpts = build_message(spec(sender="Jürgen Müller <j@bücher.example>",
                                    to=['"Doe, Jane" <jane@example.com>', "Zoë <zoe@xn--mnchen-3ya.de>"],
                                    subject="Grüße aus Köln – 東京", body="Schöne Grüße\n"))
    wire = message_bytes(msg)
    assert wire.isascii()
    back = parse(msg)
    assert back["Subject"] == "Grüße aus Köln – 東京"
    assert back["From"].addresses[0].display_name == "Jürgen Müller"
    assert back["From"].addresses[0].addr_spec == "j@xn--bcher-kva.example"
    assert [a.display_name for a in back["To"].addresses] == ["Doe, Jane", "Zoë"]
    assert back.get_content().replace("\r\n", "\n") == "Schöne Grüße\n"
    assert rcpts == ["jane@example.com", "zoe@xn--mnchen-3ya.de"]
    assert back["Message-ID"].endswith("@xn--bcher-kva.example>") and back["Date"]


def test_bcc_only_in_envelope():
    msg, rcpts = build_message(spec(cc=["Bob <bob@example.com>"], bcc=["secret@example.com", "ALICE@example.com"],
                                    reply_to="replies@example.com"))
    wire = message_bytes(msg)
    assert b"secret" not in wire and b"Bcc" not in wire and b"bcc" not in wire.lower()
    assert rcpts == ["alice@example.com", "bob@example.com", "secret@example.com"]
    back = parse(msg)
    assert back["Reply-To"] == "replies@example.com" and back["Cc"] == "Bob <bob@example.com>"
    summary = summarize(msg, rcpts)
    assert summary["bcc_count"] == 1 and summary["to"] == ["alice@example.com"]
    assert summary["cc"] == ["Bob <bob@example.com>"] and summary["message_id"] == msg["Message-ID"]


def test_message_id_domain_and_extra_headers():
    msg, _unused = build_message(spec(headers={"X-Ticket": "INC-1", "X-Note": "déjà vu", "Sender": "ops@example.com",
                                               "X-Priority": 3}), message_id_domain="mail.example.org")
    back = parse(msg)
    assert back["Message-ID"].endswith("@mail.example.org>")
    assert back["X-Ticket"] == "INC-1" and back["X-Note"] == "déjà vu" and back["X-Priority"] == "3"


def test_charset_and_plain_body():
    msg, _unused = build_message(spec(body="Ça va ?\n", charset="iso-8859-1"))
    back = parse(msg)
    assert back.get_content_charset() == "iso-8859-1" and back.get_content().replace("\r\n", "\n") == "Ça va ?\n"


def test_check_size():
    msg, _unused = build_message(spec(body="x" * 5000))
    assert check_size(msg, None) == message_size(msg)
    with pytest.raises(O365Error) as caught:
        check_size(msg, 1000, "messages[2].")
    assert caught.value.category == "config" and caught.value.message.startswith("messages[2].message:")


# ----------------------------------------------------------------------------- injection

@pytest.mark.parametrize("overrides,field", [
    ({"subject": "hi\r\nBcc: victim@example.com"}, "subject"),
    ({"subject": "hi\nX-Evil: 1"}, "subject"),
    ({"to": ["alice@example.com", "bob@example.com\r\nBcc: victim@example.com"]}, "to[1]"),
    ({"to": ["Bob\n <bob@example.com>"]}, "to[0]"),
    ({"reply_to": "a@example.com\rBcc: b@example.com"}, "reply_to[0]"),
    ({"headers": {"X-Foo": "bar\r\nBcc: victim@example.com"}}, "headers.X-Foo"),
    ({"headers": {"X-Foo\r\nBcc": "x"}}, "headers.X-Foo\r\nBcc"),
    ({"sender": "me@example.com\nBcc: x@example.com"}, "sender"),
    ({"cc": ["c@example.com\u2028Bcc: x@example.com"]}, "cc[0]"),
    ({"subject": "vertical\x0btab"}, "subject"),
])
def test_header_injection_rejected(overrides, field):
    message = config_error(spec(**overrides))
    assert message.startswith(field + ":")
    assert "CR or LF" in message or "control character" in message


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("overrides,expected", [
    ({"to": ["alice@example.com", "bob@"]}, "to[1]: 'bob@' is not a valid email address"),
    ({"to": ["a b@example.com"]}, "to[0]: 'a b@example.com' is not a valid email address"),
    ({"to": ["a@@example.com"]}, "to[0]:"),
    ({"to": ["@example.com"]}, "to[0]:"),
    ({"to": ["alice@localhost"]}, "to[0]:"),
    ({"to": ["alice@exa mple.com"]}, "to[0]:"),
    ({"to": ["alice@-bad.example"]}, "to[0]:"),
    ({"to": ["alice@[192.0.2.1]"]}, "to[0]:"),
    ({"to": ["a..b@example.com"]}, "to[0]:"),
    ({"to": ["Ann <a@example.com>, Bob <b@example.com>"]}, "to[0]:"),
    ({"to": ["ü@example.com"]}, "to[0]: 'ü@example.com': non-ASCII local parts"),
    ({"to": ["x" * 65 + "@example.com"]}, "to[0]:"),
    ({"to": [42]}, "to[0]: must be a string"),
    ({"to": {"a": 1}}, "to: must be a list"),
    ({"to": [], "cc": [], "bcc": []}, "to: no recipients"),
    ({"sender": None}, "sender: is required"),
    ({"sender": "nobody"}, "sender:"),
    ({"subtype": "markdown"}, "subtype: must be one of plain, html"),
    ({"subject": "x" * 999}, "subject: is 999 characters long"),
    ({"charset": "klingon"}, "charset: unknown charset"),
    ({"body": "€uro", "charset": "ascii"}, "body: cannot be encoded as ascii"),
    ({"body": 7}, "body: must be a string"),
    ({"attach": ["/nonexistent/x.pdf"]}, "attach[0]: file /nonexistent/x.pdf does not exist"),
    ({"attach": ["/"]}, "attach[0]: / is not a regular file"),
    ({"headers": {"From": "x@example.com"}}, "headers.From: cannot be set through headers"),
    ({"headers": {"bcc": "x@example.com"}}, "headers.bcc: cannot be set"),
    ({"headers": {"Message-ID": "<x@y>"}}, "headers.Message-ID: cannot be set"),
    ({"headers": {"Content-Type": "text/html"}}, "headers.Content-Type: cannot be set"),
    ({"headers": {"MIME-Version": "2.0"}}, "headers.MIME-Version: cannot be set"),
    ({"headers": {"Bad Name": "x"}}, "headers.Bad Name: is not a valid header name"),
    ({"headers": {"Sender": "not an address"}}, "headers.Sender: 'not an address' is not a valid email address"),
    ({"headers": {"Resent-Bcc": "x@example.com"}}, "headers.Resent-Bcc: cannot be set"),
    ({"headers": {"Orig-Date": "<@"}}, "headers.Orig-Date: '<@' is not a valid value"),
    ({"headers": ["X-A: b"]}, "headers: must be a dict"),
    ({"bogus": 1}, "bogus: unknown option"),
    ({"inline": [{"path": "/etc/hostname", "cid": "x"}]}, "inline: inline images need subtype: html"),
])
def test_bad_input(overrides, expected):
    assert config_error(spec(**overrides)).startswith(expected)


def test_inline_problems(files):
    png = str(files / "logo.png")
    html = {"subtype": "html", "body": '<img src="cid:logo">'}
    assert config_error(spec(inline=[{"path": png, "cid": "other"}], **html)).startswith(
        "inline[0].cid: the HTML body never references cid:other")
    assert config_error(spec(inline=[{"path": png, "cid": "lo go"}], **html)).startswith("inline[0].cid:")
    assert config_error(spec(inline=[{"path": png, "cid": "logo"}, {"path": png, "cid": "logo"}],
                             **html)).startswith("inline[1].cid: 'logo' is used twice")
    assert config_error(spec(inline=[{"path": str(files / "nope.png"), "cid": "logo"}], **html)).startswith(
        "inline[0].path: file")
    assert config_error(spec(inline=["logo.png"], **html)).startswith("inline[0]: must be a dict")


def test_unreadable_attachment(files, monkeypatch):
    monkeypatch.setattr(os, "access", lambda path, mode: False)   # root can read anything
    assert config_error(spec(attach=[str(files / "report.pdf")])).startswith("attach[0]: file")


def test_field_prefix_in_batch_mode():
    assert config_error(spec(to=["bob@"]), "messages[3].").startswith("messages[3].to[0]: 'bob@'")
    assert config_error("not a dict", "messages[3].").startswith("messages[3]: must be a dict")
    with pytest.raises(O365Error) as caught:
        build_message(spec(subject="a\nb"), field_prefix="messages[0].")
    assert caught.value.message.startswith("messages[0].subject:")


def test_parse_address_accepts():
    assert parse_address("to", "Ann <ann@example.com>").display_name == "Ann"
    assert parse_address("to", '"O\'Neil, \\"Jr\\"" <x@example.com>').display_name == 'O\'Neil, "Jr"'
    assert parse_address("to", "<x@example.com>").addr_spec == "x@example.com"
    assert parse_address("to", "x+tag@Sub.Example.COM").addr_spec == "x+tag@sub.example.com"


# ----------------------------------------------------------------------------- properties

FIELDS = st.sampled_from(["sender", "to", "cc", "bcc", "reply_to", "subject", "body", "subtype", "charset",
                          "attach", "headers", "inline"])
VALUES = st.one_of(st.text(max_size=80), st.lists(st.text(max_size=40), max_size=3),
                   st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=2),
                   st.none(), st.integers(), st.booleans())


@given(st.dictionaries(FIELDS, VALUES, max_size=6))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_validate_spec_only_raises_config_errors(data):
    try:
        validate_spec(data)
    except O365Error as exc:
        assert exc.category == "config" and ":" in exc.message


@given(st.text(max_size=120))
@settings(max_examples=400, deadline=None)
def test_address_parser_only_raises_config_errors(text):
    try:
        address = parse_address("to[0]", text)
    except O365Error as exc:
        assert exc.category == "config" and exc.message.startswith("to[0]:")
        return
    assert address.addr_spec.isascii() and "\n" not in str(address)


@given(st.text(max_size=300), st.text(max_size=60), st.text(max_size=200))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_built_messages_are_clean(subject, name, header):
    try:
        msg, _unused = build_message(spec(subject=subject, sender=[name + " <s@example.com>"][0],
                                          headers={"X-Test": header}, body=subject))
    except O365Error as exc:
        assert exc.category == "config"
        return
    wire = message_bytes(msg)
    assert wire.isascii()
    assert all(len(line) <= 998 for line in wire.split(b"\r\n"))
    back = email.message_from_bytes(wire, policy=email.policy.default)
    assert sorted(back.keys()) == sorted(msg.keys())     # nothing injected, nothing lost
    assert "Bcc" not in back
