# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small, exact IMAP4rev1/IMAP4rev2 probe client for SASL XOAUTH2 (RFC 3501/9051, 4959, 7628).

imaplib cannot send the SASL initial response on the AUTHENTICATE line and has no phase
timings, hence this client. It proves more than the login: Exchange can accept
AUTHENTICATE and still refuse every mailbox command ("BAD User is authenticated but not
connected."), so a check always runs STATUS and EXAMINE on a folder afterwards.

STATUS runs before EXAMINE because RFC 3501 advises against STATUS on the selected mailbox,
and EXAMINE's ``[UNSEEN n]`` is the first unseen message's number, not a count.

Server and network failures never raise: the result carries ``ok: false`` and the
classified error. Only bad arguments raise O365Error("config").
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import ssl
from collections.abc import Callable, Iterable
from email.header import decode_header, make_header
from typing import NamedTuple

from ansible_collections.mailops.o365.plugins.module_utils._errors import (
    O365Error,
    classify_reply,
    config_error,
)
from ansible_collections.mailops.o365.plugins.module_utils._wire import (
    MAX_LINE,
    Wire,
    check_common,
    clip,
    new_result,
    redact,
    secrets_of,
)

MAX_SEARCH_LINE = 8 * 1024 * 1024   # a SEARCH answer lists every match on one line
MAX_RESPONSES = 100000              # untagged lines per command, against endless floods
LOGOUT_TIMEOUT = 2.0                # LOGOUT is courtesy; never wait long for it
HEADER_FIELDS = ("SUBJECT", "FROM", "DATE", "MESSAGE-ID")
# After these refusals the session is still in step, so LOGOUT is worth sending.
_POLITE_AFTER = ("auth", "disabled", "throttled")

_TAG = re.compile(r"[!#$&'+,\-./0-9:;<=>?@A-Z^_`a-z|~]+")
_NUMBER = re.compile(r"[0-9]{1,20}")
_LITERAL = re.compile(rb"\{([0-9]{1,12})\+?\}$")
# RFC 5530 response codes that say what kind of refusal it was, when RULES do not.
_CODE_CATEGORY = {"AUTHENTICATIONFAILED": "auth", "AUTHORIZATIONFAILED": "auth", "EXPIRED": "auth",
                  "LIMIT": "throttled"}


class ImapLine(NamedTuple):
    """One server response: tag is "+", "*" or the command tag; keyword is upper-case."""
    tag: str
    keyword: str
    number: int | None
    text: str


# ----------------------------------------------------------------------------- parsers

def parse_imap_response_line(line: str) -> ImapLine:
    """Split a response line; raises ValueError if it is not one."""
    if not isinstance(line, str):
        raise ValueError("IMAP response must be text")
    if line == "+" or line.startswith("+ "):
        return ImapLine("+", "", None, line[2:])
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError(f"malformed IMAP response: {clip(line, 80)!r}")
    tag, first = parts[0], parts[1]
    rest = parts[2] if len(parts) > 2 else ""
    if tag == "*":
        if _NUMBER.fullmatch(first):
            keyword, _unused, text = rest.partition(" ")
            if not keyword:
                raise ValueError(f"malformed IMAP response: {clip(line, 80)!r}")
            return ImapLine("*", keyword.upper(), int(first), text)
        return ImapLine("*", first.upper(), None, rest)
    if not _TAG.fullmatch(tag) or first.upper() not in ("OK", "NO", "BAD"):
        raise ValueError(f"malformed IMAP response: {clip(line, 80)!r}")
    return ImapLine(tag, first.upper(), None, rest)


def parse_response_code(text: str) -> tuple[str, str] | None:
    """``[CODE args] text`` -> ("CODE", "args"); None without a code; ValueError if unclosed."""
    if not isinstance(text, str):
        raise ValueError("response text must be a string")
    if not text.startswith("["):
        return None
    end = text.find("]")
    if end < 0:
        raise ValueError("unterminated response code")
    name, _unused, args = text[1:end].partition(" ")
    return name.upper(), args


def parse_capability(text: str) -> list[str]:
    """Capability atoms from ``* CAPABILITY ...`` (after the keyword) or a [CAPABILITY ...] code."""
    if not isinstance(text, str):
        raise ValueError("capability text must be a string")
    return text.split()


def parse_status(text: str) -> dict[str, int]:
    """``mailbox (MESSAGES 3 UNSEEN 1)`` -> {"MESSAGES": 3, "UNSEEN": 1}."""
    if not isinstance(text, str):
        raise ValueError("STATUS text must be a string")
    body = text.rstrip()
    start = body.rfind("(")
    if start < 0 or not body.endswith(")"):
        raise ValueError("STATUS response has no attribute list")
    items = body[start + 1:-1].split()
    if len(items) % 2:
        raise ValueError("STATUS attribute list is not name/value pairs")
    out = {}
    for name, value in zip(items[::2], items[1::2]):
        if not _NUMBER.fullmatch(value):
            raise ValueError(f"STATUS {clip(name, 40)} is not a number")
        out[name.upper()] = int(value)
    return out


def parse_search(text: str) -> list[int]:
    """Numbers of ``* SEARCH 1 4 9`` (after the keyword); a CONDSTORE "(MODSEQ n)" is ignored."""
    if not isinstance(text, str):
        raise ValueError("SEARCH text must be a string")
    numbers = []
    for atom in text.split("(", 1)[0].split():
        if not _NUMBER.fullmatch(atom):
            raise ValueError(f"SEARCH result {clip(atom, 40)!r} is not a number")
        numbers.append(int(atom))
    return numbers


def parse_xoauth2_error(challenge: str) -> dict[str, str]:
    """The JSON status in an XOAUTH2 error challenge (base64 of {"status": ...})."""
    if not isinstance(challenge, str) or len(challenge) > 8192:
        raise ValueError("XOAUTH2 challenge must be a short string")
    try:
        data = json.loads(base64.b64decode(challenge.strip(), validate=True).decode("utf-8"))
    except (binascii.Error, ValueError, RecursionError):
        raise ValueError("XOAUTH2 challenge is not base64 JSON") from None
    if not isinstance(data, dict):
        raise ValueError("XOAUTH2 challenge is not a JSON object")
    return {key: clip(str(data[key]), 200) for key in ("status", "schemes", "scope") if key in data}


def parse_header_block(data: bytes) -> dict[str, str]:
    """RFC 5322 header fields of a FETCH literal -> {lower-case name: decoded value}."""
    if not isinstance(data, (bytes, bytearray)):
        raise ValueError("header block must be bytes")
    fields: dict[str, str] = {}
    unfolded = re.sub(r"\r?\n[ \t]+", " ", bytes(data).decode("utf-8", "replace"))
    for line in unfolded.splitlines():
        name, sep, value = line.partition(":")
        if sep and name and " " not in name:
            fields.setdefault(name.strip().lower(), _decode_words(value.strip()))
    return fields


def _decode_words(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except Exception:  # noqa: BLE001 - email.header raises many kinds on junk; raw text is fine
        return value


# ----------------------------------------------------------------------------- encoders

def encode_mailbox(name: str) -> str:
    """Modified UTF-7 (RFC 3501 5.1.3) for non-ASCII mailbox names."""
    out, pending = [], []

    def flush() -> None:
        if pending:
            raw = "".join(pending).encode("utf-16-be")
            out.append("&" + base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",") + "-")
            pending.clear()

    for char in name:
        if "\x20" <= char <= "\x7e":
            flush()
            out.append("&-" if char == "&" else char)
        else:
            pending.append(char)
    flush()
    return "".join(out)


def decode_mailbox(name: str) -> str:
    """Inverse of encode_mailbox; raises ValueError for malformed modified UTF-7."""
    def repl(match: re.Match) -> str:
        body = match.group(1)
        if not body:
            return "&"
        padded = body.replace(",", "/") + "=" * (-len(body) % 4)
        try:
            return base64.b64decode(padded, validate=True).decode("utf-16-be")
        except (binascii.Error, ValueError):
            raise ValueError("malformed modified UTF-7") from None
    if not isinstance(name, str):
        raise ValueError("mailbox name must be a string")
    return re.sub(r"&([A-Za-z0-9+,]*)-", repl, name)


def quote(text: str) -> str:
    """An IMAP quoted string (the caller has ruled out CR, LF and NUL)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def uid_set(uids: Iterable[int]) -> str:
    """Compact sequence set: [1, 2, 3, 7] -> "1:3,7"."""
    ordered = sorted(set(uids))
    ranges: list[list[int]] = []
    for uid in ordered:
        if ranges and uid == ranges[-1][1] + 1:
            ranges[-1][1] = uid
        else:
            ranges.append([uid, uid])
    return ",".join(str(a) if a == b else f"{a}:{b}" for a, b in ranges)


# ----------------------------------------------------------------------------- session

class _Session:
    """One IMAP conversation over a Wire: tags, untagged bookkeeping, literals."""

    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.capabilities: list[str] = []
        self.greeting: str | None = None
        self._tag = 0
        self._closing = False

    def has(self, capability: str) -> bool:
        return capability.upper() in {c.upper() for c in self.capabilities}

    def read(self, max_line: int = MAX_LINE) -> tuple[ImapLine, list[bytes]]:
        text, literals = self._read_raw(max_line)
        try:
            line = parse_imap_response_line(text)
        except ValueError:
            raise self.protocol(f"sent a malformed line: {clip(text)!r}") from None
        self._note(line)
        return line, literals

    def command(self, text: str, max_line: int = MAX_LINE) -> tuple[ImapLine, list]:
        """Send a command; return its tagged reply and the untagged (line, literals) on the way."""
        tag = self._next_tag()
        self.wire.send_line(f"{tag} {text}")
        untagged = []
        for _unused in range(MAX_RESPONSES):
            line, literals = self.read(max_line)
            if line.tag == tag:
                return line, untagged
            if line.tag != "*":
                raise self.protocol(f"sent an unexpected {'continuation' if line.tag == '+' else 'tag'} "
                                    f"to {text.split(' ', 1)[0]}")
            untagged.append((line, literals))
        raise self.protocol("sent too many responses")

    def protocol(self, what: str) -> O365Error:
        return O365Error("protocol", f"IMAP server {self.wire.where} {what} during {self.wire.phase}")

    def _next_tag(self) -> str:
        self._tag += 1
        return f"A{self._tag:03d}"

    def _read_raw(self, max_line: int) -> tuple[str, list[bytes]]:
        """A logical response: lines ending in {n} carry n literal bytes and continue after them."""
        parts, literals = [], []
        while True:
            raw = self.wire.readline(max_line)
            parts.append(raw)
            match = _LITERAL.search(raw) if parts[0].startswith(b"* ") else None
            if not match:
                return b"".join(parts).decode("utf-8", "replace"), literals
            if len(literals) >= MAX_RESPONSES:
                raise self.protocol("sent too many literals in one response")
            literals.append(self.wire.read_exact(int(match.group(1))))

    def _note(self, line: ImapLine) -> None:
        """Track what untagged data and response codes tell us, whenever they arrive."""
        if line.tag == "+":
            return
        if line.tag == "*" and line.keyword == "CAPABILITY":
            self.capabilities = parse_capability(line.text)
        elif line.tag == "*" and line.keyword == "BYE" and not self._closing:
            raise _context(classify_reply("imap", f"BYE {line.text}", default="connection"),
                           f"IMAP server {self.wire.where} closed the session during {self.wire.phase}")
        if line.keyword in ("OK", "NO", "BAD", "PREAUTH"):
            code = _code(line.text)
            if code and code[0] == "CAPABILITY":
                self.capabilities = parse_capability(code[1])

    # ------------------------------------------------------------------ steps

    def open(self, security: str) -> None:
        implicit = security == "tls"
        self.wire.connect(implicit_tls=implicit)
        with self.wire.timed("greeting"):
            self._greeting()
            if not implicit and not self.capabilities:
                self._capability()
        if not implicit:
            with self.wire.timed("tls"):
                self._starttls()
        if not implicit or not self.capabilities:
            with self.wire.timed("greeting"):
                self._capability()

    def _greeting(self) -> None:
        text, _unused = self._read_raw(MAX_LINE)
        self.greeting = clip(text, 500)  # kept even when it is a BYE
        try:
            line = parse_imap_response_line(text)
        except ValueError:
            raise self.protocol(f"sent a malformed greeting: {clip(text)!r}") from None
        self._note(line)
        if line.tag != "*" or line.keyword not in ("OK", "PREAUTH"):
            raise self.protocol(f"did not greet with * OK: {self.greeting!r}")
        if line.keyword == "PREAUTH":
            raise self.protocol("pre-authenticated the connection, so the token cannot be tested")

    def _capability(self) -> None:
        line, _unused = self.command("CAPABILITY")
        if line.keyword != "OK":
            raise _refusal(line, "CAPABILITY")

    def _starttls(self) -> None:
        if not self.has("STARTTLS"):
            raise O365Error("tls", f"IMAP server {self.wire.where} does not offer STARTTLS "
                                   f"(capabilities: {' '.join(self.capabilities) or 'none'})",
                            hint="Use security: tls on the implicit TLS port (993) instead.")
        line, _unused = self.command("STARTTLS")
        if line.keyword != "OK":
            raise _refusal(line, "STARTTLS", default="tls")
        self.capabilities = []  # pre-TLS capabilities may have been forged; RFC 3501 6.2.1
        self.wire.start_tls()

    def authenticate(self, sasl: str) -> None:
        if not self.has("AUTH=XOAUTH2"):
            auths = [c for c in self.capabilities if c.upper().startswith("AUTH=")]
            raise O365Error("disabled", f"IMAP server {self.wire.where} does not advertise AUTH=XOAUTH2 "
                                        f"(it offers: {' '.join(auths) or 'no SASL mechanisms'}; "
                                        f"capabilities: {' '.join(self.capabilities) or 'none'})",
                            hint="OAuth2 may be disabled for IMAP on this server, or this is not "
                                 "the service's IMAP endpoint.")
        tag = self._next_tag()
        initial = self.has("SASL-IR")
        self.wire.send_line(f"{tag} AUTHENTICATE XOAUTH2 {sasl}" if initial else f"{tag} AUTHENTICATE XOAUTH2")
        self._auth_loop(tag, sasl, sent=initial)

    def _auth_loop(self, tag: str, sasl: str, sent: bool) -> None:
        detail: dict[str, str] = {}
        challenges = 0
        for _unused in range(MAX_RESPONSES):
            line, _unused = self.read()
            if line.tag == tag:
                if line.keyword == "OK":
                    return
                raise _with_detail(_refusal(line, "AUTHENTICATE",
                                            default="auth" if line.keyword == "NO" else "protocol"), detail)
            if line.tag == "+" and not sent:
                self.wire.send_line(sasl)
                sent = True
            elif line.tag == "+":
                # RFC 7628 style error challenge: answer empty to get the tagged NO; cancel if repeated.
                challenges += 1
                if challenges > 2:
                    raise self.protocol("kept sending AUTHENTICATE challenges")
                detail = detail or _safe_detail(line.text)
                self.wire.send_line("" if challenges == 1 else "*")
            elif line.tag != "*":
                raise self.protocol("answered AUTHENTICATE with another tag")
        raise self.protocol("sent too many responses to AUTHENTICATE")

    def mailbox_command(self, text: str, max_line: int = MAX_LINE) -> list:
        """A post-login command; a refusal here means the login did not really work."""
        line, untagged = self.command(text, max_line)
        if line.keyword != "OK":
            raise _refusal(line, text.split(" (", 1)[0], after_login=True)
        return untagged

    def logout(self) -> None:
        """Best effort: a polite LOGOUT, bounded by a short timeout, never raising."""
        self._closing = True
        self.wire.timeout = min(self.wire.timeout, LOGOUT_TIMEOUT)
        try:
            self.command("LOGOUT")
        except O365Error:
            pass


# ----------------------------------------------------------------------------- helpers

def _code(text: str) -> tuple[str, str] | None:
    try:
        return parse_response_code(text)
    except ValueError:
        return None


def _context(err: O365Error, message: str) -> O365Error:
    return O365Error(err.category, f"{message}: {err.server_reply or err.message}", hint=err.hint,
                     server_reply=err.server_reply, code=err.code)


def _refusal(line: ImapLine, what: str, default: str = "protocol", after_login: bool = False) -> O365Error:
    """Classify a tagged NO/BAD, keeping the server's own words ("NO AUTHENTICATE failed.")."""
    code = _code(line.text)
    if code and code[0] in _CODE_CATEGORY and default == "protocol":
        default = _CODE_CATEGORY[code[0]]
    err = classify_reply("imap", f"{line.keyword} {line.text}".strip(), default=default)
    if after_login:
        return _context(err, f"IMAP {what} was refused after a successful AUTHENTICATE, "
                             "so the login does not give access to the mailbox")
    return _context(err, f"IMAP {what} refused")


def _safe_detail(challenge: str) -> dict[str, str]:
    try:
        return parse_xoauth2_error(challenge)
    except ValueError:
        return {}


def _with_detail(err: O365Error, detail: dict[str, str]) -> O365Error:
    if not detail:
        return err
    text = ", ".join(f"{k}={v}" for k, v in detail.items())
    return O365Error(err.category, f"{err.message} (XOAUTH2 error: {text})", hint=err.hint,
                     server_reply=err.server_reply, code=err.code)


def validate_folder(folder: str, field: str = "folder") -> str:
    """Raise O365Error("config") naming ``field`` unless ``folder`` can be sent; return it."""
    if not isinstance(folder, str) or not folder or any(c in folder for c in "\r\n\x00"):
        raise config_error(field, "must be a non-empty mailbox name without CR, LF or NUL")
    return folder


def validate_search(search: str, field: str = "search") -> str:
    """Raw SEARCH criteria go on the command line, so nothing may break out of it."""
    if not isinstance(search, str) or not search.strip():
        raise config_error(field, "must be non-empty IMAP SEARCH criteria")
    if any(c in search for c in "\r\n\x00"):
        raise config_error(field, "must not contain CR, LF or NUL")
    if not search.isascii():
        raise config_error(field, "must be ASCII (non-ASCII criteria would need literals, not supported)")
    if re.search(r"\{[0-9]+\+?\}\s*$", search):
        raise config_error(field, "must not end with a literal announcement {n}")
    return search.strip()


def _mailbox_arg(folder: str) -> str:
    return quote(encode_mailbox(validate_folder(folder)))


def _check_uids(uids: list[int]) -> list[int]:
    if not isinstance(uids, (list, tuple)) or not uids or not all(
            isinstance(u, int) and not isinstance(u, bool) and 0 < u < 2 ** 32 for u in uids):
        raise config_error("uids", "must be a non-empty list of message UIDs (1 to 4294967295)")
    return list(uids)


def _mailbox_info(untagged: list, result: dict) -> None:
    for line, _unused in untagged:
        if line.keyword == "EXISTS" and line.number is not None:
            result["messages"] = line.number
        code = _code(line.text) if line.keyword == "OK" else None
        if code and code[0] == "UIDVALIDITY" and _NUMBER.fullmatch(code[1].strip()):
            result["uidvalidity"] = int(code[1])


def _parsed(session: _Session, parser: Callable, text: str, what: str) -> object:
    try:
        return parser(text)
    except ValueError:
        raise session.protocol(f"sent a malformed {what} response: {clip(text)!r}") from None


def _untagged_data(session: _Session, untagged: list, keyword: str, parser: Callable) -> list:
    return [_parsed(session, parser, line.text, keyword) for line, _unused in untagged if line.keyword == keyword]


# ----------------------------------------------------------------------------- runner

def _run(host: str, port: int, security: str, sasl: str, context: ssl.SSLContext, timeout: float,
         body: Callable[[_Session, dict], None]) -> dict:
    """Connect, authenticate, run ``body`` and LOGOUT; all failures land in the result."""
    result = new_result()
    wire = Wire(host, port, timeout, context, "IMAP")
    session = _Session(wire)
    advertised: list = []
    with wire:
        try:
            session.open(security)
            # What the server offers before login (AUTH=, SASL-IR) is what diagnoses auth problems;
            # the list it sends after login drops the AUTH= entries.
            advertised = list(session.capabilities)
            with wire.timed("auth"):
                session.authenticate(sasl)
            result["authenticated"] = True
            with wire.timed("command"):
                body(session, result)
            result["ok"] = True
        except O365Error as err:
            result["error"] = err.as_dict()
        result["capabilities"] = advertised or list(session.capabilities)
        result["server_greeting"] = session.greeting
        if result["ok"] or result["error"]["category"] in _POLITE_AFTER:
            session.logout()
    result["timings"] = wire.timings
    return redact(result, secrets_of(sasl))


def check_imap(host: str, port: int, security: str, user: str, sasl: str, context: ssl.SSLContext,
               timeout: float, folder: str = "INBOX", search: str | None = None) -> dict:
    """Log in with XOAUTH2 and prove the mailbox is usable (STATUS, EXAMINE, optional UID SEARCH).

    Result: ok, authenticated, capabilities, server_greeting, timings, messages (EXISTS),
    unseen (STATUS count), uidvalidity, and with ``search`` search_matches and search_uids;
    ``error`` (O365Error.as_dict()) when ok is false. ``user`` only names the mailbox in
    messages; the identity that logs in is the one inside ``sasl``.
    """
    check_common(host, port, security, sasl, context, timeout)
    mailbox = _mailbox_arg(folder)
    criteria = validate_search(search) if search is not None else None

    def body(session: _Session, result: dict) -> None:
        untagged = session.mailbox_command(f"STATUS {mailbox} (MESSAGES UNSEEN UIDVALIDITY)")
        for status in _untagged_data(session, untagged, "STATUS", parse_status):
            result["unseen"] = status.get("UNSEEN")
            result.setdefault("uidvalidity", status.get("UIDVALIDITY"))
        _mailbox_info(session.mailbox_command(f"EXAMINE {mailbox}"), result)
        if criteria is not None:
            untagged = session.mailbox_command(f"UID SEARCH {criteria}", MAX_SEARCH_LINE)
            uids = [u for found in _untagged_data(session, untagged, "SEARCH", parse_search) for u in found]
            result["search_uids"] = uids
            result["search_matches"] = len(uids)

    result = _run(host, port, security, sasl, context, timeout, body)
    for key in ("messages", "unseen", "uidvalidity"):
        result.setdefault(key, None)
    if criteria is not None:
        result.setdefault("search_matches", None)
        result.setdefault("search_uids", [])
    _name_user(result, user)
    return result


def imap_fetch_headers(host: str, port: int, security: str, user: str, sasl: str, context: ssl.SSLContext,
                       timeout: float, folder: str, uids: list[int]) -> dict:
    """Read-only (EXAMINE, BODY.PEEK) header fetch: result ``headers`` = [{uid, subject, from, ...}]."""
    check_common(host, port, security, sasl, context, timeout)
    mailbox, wanted = _mailbox_arg(folder), _check_uids(uids)

    def body(session: _Session, result: dict) -> None:
        _mailbox_info(session.mailbox_command(f"EXAMINE {mailbox}"), result)
        untagged = session.mailbox_command(
            f"UID FETCH {uid_set(wanted)} (UID BODY.PEEK[HEADER.FIELDS ({' '.join(HEADER_FIELDS)})])")
        result["headers"] = [_fetched(session, line, literals) for line, literals in untagged
                             if line.keyword == "FETCH"]

    result = _run(host, port, security, sasl, context, timeout, body)
    result.setdefault("headers", [])
    _name_user(result, user)
    return result


def _fetched(session: _Session, line: ImapLine, literals: list[bytes]) -> dict:
    match = re.search(r"\bUID ([0-9]{1,10})\b", line.text)
    if not match:
        raise session.protocol(f"sent a FETCH response without UID: {clip(line.text)!r}")
    headers = parse_header_block(literals[0]) if literals else {}
    return {"uid": int(match.group(1)), **{f.lower(): headers.get(f.lower()) for f in HEADER_FIELDS}}


def imap_delete_uids(host: str, port: int, security: str, user: str, sasl: str, context: ssl.SSLContext,
                     timeout: float, folder: str, uids: list[int], uidvalidity: int | None = None) -> dict:
    """Delete messages by UID (SELECT, UID STORE +FLAGS.SILENT (\\Deleted), UID EXPUNGE).

    With UIDPLUS only the given UIDs are expunged; without it plain EXPUNGE also removes
    anything else already flagged \\Deleted in the folder. ``uidvalidity`` (from the search)
    guards against deleting the wrong messages after the folder was rebuilt.
    Result adds ``expunged`` (EXPUNGE responses seen) and ``uidvalidity``.
    """
    check_common(host, port, security, sasl, context, timeout)
    mailbox, wanted = _mailbox_arg(folder), _check_uids(uids)

    def body(session: _Session, result: dict) -> None:
        _mailbox_info(session.mailbox_command(f"SELECT {mailbox}"), result)
        if uidvalidity is not None and result.get("uidvalidity") != uidvalidity:
            raise O365Error("protocol", f"UIDVALIDITY of {folder} changed ({uidvalidity} -> "
                                        f"{result.get('uidvalidity')}); not deleting anything")
        session.mailbox_command(f"UID STORE {uid_set(wanted)} +FLAGS.SILENT (\\Deleted)")
        expunge = f"UID EXPUNGE {uid_set(wanted)}" if session.has("UIDPLUS") else "EXPUNGE"
        untagged = session.mailbox_command(expunge)
        result["expunged"] = sum(1 for line, _unused in untagged if line.keyword == "EXPUNGE")

    result = _run(host, port, security, sasl, context, timeout, body)
    result.setdefault("expunged", 0)
    _name_user(result, user)
    return result


def _name_user(result: dict, user: str) -> None:
    """Say whose mailbox failed; the user name is not a secret, the token is."""
    error = result.get("error")
    if error and isinstance(user, str) and user and error["category"] in ("auth", "disabled"):
        error["message"] = f"{error['message']} (user {user})"
