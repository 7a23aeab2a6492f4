# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Validate a message spec (the module's options) and build an ``EmailMessage`` from it.

Everything is checked before any network call, and every error names the option at fault
(``to[1]: ...``, ``messages[3].headers.X-Foo: ...``). Messages are built 7-bit clean (UTF-8
headers as RFC 2047 encoded words, bodies as quoted-printable or base64, IDN domains as
punycode), so they can be submitted to any server without 8BITMIME or SMTPUTF8.
Bcc addresses go to the envelope only, never into a header.
"""

from __future__ import annotations

import codecs
import email.policy
import email.utils
import mimetypes
import os
import re
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Any, Optional

from ansible_collections.mailops.o365.plugins.module_utils._errors import config_error

# 7bit keeps every part ASCII on the wire; the generator picks quoted-printable or base64.
POLICY = email.policy.default.clone(cte_type="7bit")
WIRE_POLICY = POLICY.clone(linesep="\r\n")

SPEC_KEYS = ("sender", "to", "cc", "bcc", "reply_to", "subject", "body", "subtype", "charset",
             "attach", "inline", "headers")
ADDRESS_LISTS = ("to", "cc", "bcc", "reply_to")
SUBTYPES = ("plain", "html")
MAX_HEADER_CHARS = 998       # RFC 5322 line limit, used as a sanity bound on unfolded values
MAX_LOCAL_PART = 64          # RFC 5321 4.5.3.1.1
MAX_DOMAIN = 253
MAX_ADDRESS = 254            # RFC 5321 path limit (256) less the angle brackets

# Set by the module's own options; extra headers must not silently override them.
STRUCTURAL_HEADERS = frozenset(("from", "to", "cc", "bcc", "reply-to", "subject", "message-id",
                                "date", "mime-version"))

_ATEXT = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
_HEADER_NAME = re.compile(r"^[\x21-\x39\x3b-\x7e]+$")   # printable ASCII except ':'
_ANGLE = re.compile(r"^(?P<name>.*?)\s*<(?P<addr>[^<>]*)>\s*$", re.DOTALL)
_CID = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.@-]{1,200}$")
# str.splitlines() (used inside the email package) also breaks on these.
_LINE_BREAKS = frozenset("\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


# ----------------------------------------------------------------------------- checks

def _check_text(field: str, value: Any, allow_empty: bool = True, limit: int = MAX_HEADER_CHARS) -> str:
    """A header-bound string: no line breaks (header injection), no control characters."""
    if not isinstance(value, str):
        raise config_error(field, f"must be a string, got {type(value).__name__}")
    if not allow_empty and not value.strip():
        raise config_error(field, "must not be empty")
    for char in value:
        if char in "\r\n":
            raise config_error(field, "must not contain CR or LF")
        if char in _LINE_BREAKS or (ord(char) < 32 and char != "\t") or char == "\x7f":
            raise config_error(field, f"must not contain the control character U+{ord(char):04X}")
    if len(value) > limit:
        raise config_error(field, f"is {len(value)} characters long, the limit is {limit}")
    return value


def _ascii_domain(field: str, original: str, domain: str) -> str:
    """The domain in ASCII (IDNA/punycode for international names), or a config error."""
    bad = config_error(field, f"{original!r} is not a valid email address (bad domain {domain!r})")
    if not domain or "." not in domain or domain.startswith(".") or domain.endswith(".") or ".." in domain:
        raise bad
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except (UnicodeError, ValueError):
        raise bad from None
    labels = ascii_domain.split(".")
    if len(ascii_domain) > MAX_DOMAIN or not all(_LABEL.match(label) for label in labels):
        raise bad
    if labels[-1].isdigit():
        raise bad    # an address literal or a bare IP is not supported here
    return ascii_domain.lower()


def _split_display(field: str, value: str) -> tuple[str, str]:
    """Split ``Name <addr>`` or ``addr`` into (display name, addr-spec)."""
    match = _ANGLE.match(value)
    if not match:
        if "<" in value or ">" in value:
            raise config_error(field, f"{value!r} is not a valid email address")
        return "", value.strip()
    name, addr = match.group("name").strip(), match.group("addr").strip()
    if len(name) >= 2 and name[0] == '"' and name[-1] == '"':
        name = re.sub(r'\\(.)', r'\1', name[1:-1])
    if "<" in name or ">" in name:
        raise config_error(field, f"{value!r} is not a valid email address (one address per entry)")
    return name, addr


def parse_address(field: str, value: Any) -> Address:
    """Strictly parse one ``addr`` or ``Name <addr>``; the domain comes back in ASCII."""
    text = _check_text(field, value, allow_empty=False)
    name, addr = _split_display(field, text)
    invalid = config_error(field, f"{text!r} is not a valid email address")
    if addr.count("@") != 1 or any(c.isspace() for c in addr):
        raise invalid
    local, domain = addr.split("@")
    if not local or not _ATEXT.match(local):
        if local and not local.isascii():
            raise config_error(field, f"{text!r}: non-ASCII local parts (SMTPUTF8) are not supported")
        raise invalid
    if len(local) > MAX_LOCAL_PART:
        raise config_error(field, f"{text!r}: the local part is longer than {MAX_LOCAL_PART} characters")
    ascii_domain = _ascii_domain(field, text, domain)
    if len(local) + 1 + len(ascii_domain) > MAX_ADDRESS:
        raise config_error(field, f"{text!r} is longer than {MAX_ADDRESS} characters")
    try:
        # A second opinion from the email package's RFC 5322 parser.
        return Address(display_name=name, username=local, domain=ascii_domain)
    except (ValueError, TypeError, IndexError):
        raise invalid from None


def _as_list(field: str, value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)):
        raise config_error(field, f"must be a list, got {type(value).__name__}")
    return list(value)


def _addresses(spec: dict, key: str, prefix: str) -> list[Address]:
    return [parse_address(f"{prefix}{key}[{i}]", item)
            for i, item in enumerate(_as_list(prefix + key, spec.get(key)))]


def _check_file(field: str, path: Any) -> str:
    if not isinstance(path, str) or not path:
        raise config_error(field, "must be a file path")
    if not os.path.exists(path):
        raise config_error(field, f"file {path} does not exist")
    if not os.path.isfile(path):
        raise config_error(field, f"{path} is not a regular file")
    if not os.access(path, os.R_OK):
        raise config_error(field, f"file {path} is not readable")
    return path


def _check_charset(field: str, charset: Any) -> str:
    text = _check_text(field, charset, allow_empty=False, limit=40)
    try:
        codecs.lookup(text)
    except LookupError:
        raise config_error(field, f"unknown charset {text!r}") from None
    return text


def _check_headers(spec: dict, prefix: str) -> dict:
    headers = spec.get("headers") or {}
    if not isinstance(headers, dict):
        raise config_error(prefix + "headers", "must be a dict of header names to values")
    out = {}
    for name, value in headers.items():
        field = f"{prefix}headers.{name}"
        _check_text(field, name, allow_empty=False, limit=76)
        if not _HEADER_NAME.match(name):
            raise config_error(field, "is not a valid header name (printable ASCII, no ':' or spaces)")
        lower = name.lower()
        if lower in STRUCTURAL_HEADERS or lower.startswith(("content-", "resent-")):
            raise config_error(field, "cannot be set through headers: it is built from the module's "
                               "options (sender, to, cc, bcc, reply_to, subject, body, attach)")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        _check_text(field, value)
        if lower == "sender":
            value = str(parse_address(field, value))
        out[name] = _check_header_value(field, name, value)
    return out


def _check_header_value(field: str, name: str, value: str) -> str:
    """Let the email package parse and fold it now, so a bad value fails as a config error."""
    try:
        header = POLICY.header_factory(name, value)
        POLICY.fold(name, value)
    except Exception:  # the header parser raises assorted errors on garbage
        raise config_error(field, f"{value!r} is not a valid value for this header") from None
    if header.defects:
        raise config_error(field, f"{value!r} is not a valid value for this header")
    return value


def _check_inline(spec: dict, prefix: str, body: str, subtype: str) -> list[tuple[str, str]]:
    items = _as_list(prefix + "inline", spec.get("inline"))
    if items and subtype != "html":
        raise config_error(prefix + "inline", "inline images need subtype: html")
    seen: set = set()
    out = []
    for i, item in enumerate(items):
        field = f"{prefix}inline[{i}]"
        if not isinstance(item, dict) or set(item) - {"path", "cid"}:
            raise config_error(field, "must be a dict with keys path and cid")
        path = _check_file(field + ".path", item.get("path"))
        cid = _check_text(field + ".cid", item.get("cid"), allow_empty=False, limit=200)
        if not _CID.match(cid):
            raise config_error(field + ".cid", f"{cid!r} is not a valid content id (no spaces, no <>)")
        if cid in seen:
            raise config_error(field + ".cid", f"{cid!r} is used twice")
        if ("cid:" + cid) not in body:
            raise config_error(field + ".cid", f"the HTML body never references cid:{cid}")
        seen.add(cid)
        out.append((path, cid))
    return out


# ----------------------------------------------------------------------------- validation

class _Checked(dict):
    """The validated, normalized spec (internal)."""


def _validate(spec: Any, prefix: str) -> _Checked:
    where = prefix[:-1] if prefix.endswith(".") else (prefix or "message")
    if not isinstance(spec, dict):
        raise config_error(where, "must be a dict of message options")
    unknown = sorted(str(k) for k in spec if k not in SPEC_KEYS)
    if unknown:
        raise config_error(prefix + unknown[0], "unknown option (expected one of " + ", ".join(SPEC_KEYS) + ")")
    if spec.get("sender") is None:
        raise config_error(prefix + "sender", "is required")
    out = _Checked(sender=parse_address(prefix + "sender", spec["sender"]))
    for key in ADDRESS_LISTS:
        out[key] = _addresses(spec, key, prefix)
    if not (out["to"] or out["cc"] or out["bcc"]):
        raise config_error(prefix + "to", "no recipients: set at least one of to, cc or bcc")
    subject = spec.get("subject")
    out["subject"] = _check_text(prefix + "subject", "" if subject is None else subject)
    out.update(_validate_body(spec, prefix))
    out["attach"] = [_check_file(f"{prefix}attach[{i}]", p)
                     for i, p in enumerate(_as_list(prefix + "attach", spec.get("attach")))]
    out["inline"] = _check_inline(spec, prefix, out["body"], out["subtype"])
    out["headers"] = _check_headers(spec, prefix)
    return out


def _validate_body(spec: dict, prefix: str) -> dict:
    body = spec.get("body")
    body = "" if body is None else body
    if not isinstance(body, str):
        raise config_error(prefix + "body", f"must be a string, got {type(body).__name__}")
    subtype = spec.get("subtype") or "plain"
    if subtype not in SUBTYPES:
        raise config_error(prefix + "subtype", f"must be one of plain, html (got {subtype!r})")
    charset = _check_charset(prefix + "charset", spec.get("charset") or "utf-8")
    try:
        body.encode(charset)
    except UnicodeError as exc:
        raise config_error(prefix + "body", f"cannot be encoded as {charset} ({exc.reason})") from None
    return {"body": body, "subtype": subtype, "charset": charset}


def validate_spec(spec: dict, field_prefix: str = "") -> None:
    """Raise ``config_error`` for the first problem in ``spec``; ``field_prefix`` e.g. ``messages[3].``."""
    _validate(spec, field_prefix)


# ----------------------------------------------------------------------------- building

def _content_type(path: str) -> tuple[str, str]:
    ctype, encoding = mimetypes.guess_type(path)
    # Compressed files (encoding set) and message/multipart types must not be sent as such.
    if ctype is None or encoding is not None or ctype.split("/")[0] in ("message", "multipart"):
        return "application", "octet-stream"
    maintype, subtype = ctype.split("/", 1)
    return maintype, subtype


def _read(field: str, path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as exc:
        raise config_error(field, f"cannot read {path}: {exc.strerror or exc}") from None


def _dedupe(addresses: list[Address]) -> list[str]:
    seen: set = set()
    out = []
    for addr in addresses:
        key = addr.addr_spec.lower()
        if key not in seen:
            seen.add(key)
            out.append(addr.addr_spec)
    return out


def build_message(spec: dict, message_id_domain: Optional[str] = None,
                  field_prefix: str = "") -> tuple[EmailMessage, list[str]]:
    """Validate ``spec`` and return ``(message, envelope recipients)`` (to + cc + bcc, deduplicated)."""
    checked = _validate(spec, field_prefix)
    msg = EmailMessage(policy=POLICY)
    msg["From"] = checked["sender"]
    for key, header in (("to", "To"), ("cc", "Cc"), ("reply_to", "Reply-To")):
        if checked[key]:
            msg[header] = tuple(checked[key])
    msg["Subject"] = checked["subject"]
    msg["Date"] = email.utils.formatdate(localtime=True)
    domain = message_id_domain or checked["sender"].domain
    # make_msgid() without a domain would call getfqdn(), a DNS lookup that can hang.
    msg["Message-ID"] = email.utils.make_msgid(domain=_ascii_domain("message_id_domain", domain, domain))
    for name, value in checked["headers"].items():
        msg[name] = value
    msg.set_content(checked["body"], subtype=checked["subtype"], charset=checked["charset"])
    for i, (path, cid) in enumerate(checked["inline"]):
        maintype, subtype = _content_type(path)
        msg.add_related(_read(f"{field_prefix}inline[{i}].path", path), maintype, subtype,
                        cid=f"<{cid}>", filename=os.path.basename(path), disposition="inline")
    for i, path in enumerate(checked["attach"]):
        maintype, subtype = _content_type(path)
        msg.add_attachment(_read(f"{field_prefix}attach[{i}]", path), maintype, subtype,
                           filename=os.path.basename(path))
    return msg, _dedupe(checked["to"] + checked["cc"] + checked["bcc"])


def message_bytes(msg: EmailMessage) -> bytes:
    """The message as it goes on the wire (CRLF line ends, before dot-stuffing)."""
    return msg.as_bytes(policy=WIRE_POLICY)


def message_size(msg: EmailMessage) -> int:
    """The size RFC 1870 asks for in ``MAIL FROM ... SIZE=``."""
    return len(message_bytes(msg))


def check_size(msg: EmailMessage, max_size: Optional[int], field_prefix: str = "") -> int:
    """Return the message size; raise a config error if it exceeds the server's SIZE limit."""
    size = message_size(msg)
    if max_size and size > max_size:
        raise config_error(field_prefix + "message", f"{size} bytes exceeds the server's size limit of {max_size} bytes "
                           "(attachments grow by a third when base64 encoded)")
    return size


def _header_list(msg: EmailMessage, name: str) -> list[str]:
    header = msg.get(name)
    if header is None:
        return []
    return [str(addr) for addr in getattr(header, "addresses", ())] or [str(header)]


def summarize(msg: EmailMessage, recipients: Optional[list[str]] = None) -> dict:
    """What would have been sent (check mode); bcc addresses are only counted."""
    to, cc = _header_list(msg, "To"), _header_list(msg, "Cc")
    visible = {a.addr_spec.lower() for name in ("To", "Cc") if msg.get(name) is not None
               for a in msg[name].addresses}
    bcc = [r for r in (recipients or []) if r.lower() not in visible]
    attachments, inline = [], []
    for part in msg.walk():
        disposition = part.get_content_disposition()
        if disposition == "attachment":
            attachments.append(part.get_filename())
        elif disposition == "inline" and part.get("Content-ID"):
            inline.append(str(part["Content-ID"]).strip("<>"))
    return {"from": str(msg["From"]), "to": to, "cc": cc, "bcc_count": len(bcc),
            "subject": str(msg["Subject"] or ""), "size": message_size(msg),
            "attachments": attachments, "inline": inline, "message_id": str(msg["Message-ID"]),
            "date": str(msg["Date"])}
