# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small, exact POP3 probe client for SASL XOAUTH2 (RFC 1939, 2449 CAPA, 2595 STLS, 5034 AUTH).

poplib has no AUTH, hence this client. ``AUTH XOAUTH2`` and the base64 string go on two
lines, as Microsoft documents for Exchange (servers that take an initial response accept
this form too). A STAT after the login proves the mailbox is usable.

CAPA is an extension: a server that refuses it is still tried with AUTH. When CAPA does
list SASL mechanisms without XOAUTH2, the check fails ``disabled`` without sending the token.

Server and network failures never raise: the result carries ``ok: false`` and the
classified error. Only bad arguments raise O365Error("config").
"""

from __future__ import annotations

import re
import ssl

from ansible_collections.mailops.o365.plugins.module_utils._errors import (
    O365Error,
    classify_reply,
)
from ansible_collections.mailops.o365.plugins.module_utils._imap import parse_xoauth2_error
from ansible_collections.mailops.o365.plugins.module_utils._wire import (
    Wire,
    check_common,
    clip,
    new_result,
    redact,
    secrets_of,
)

MAX_CAPA_LINES = 1000
QUIT_TIMEOUT = 2.0
_NUMBER = re.compile(r"[0-9]{1,20}")
# RFC 2449/3206 response codes that say what kind of refusal it was, when RULES do not.
_CODE_CATEGORY = {"AUTH": "auth", "SYS/TEMP": "throttled", "IN-USE": "throttled", "LOGIN-DELAY": "throttled"}
# After these refusals the session is still in step, so QUIT is worth sending.
_POLITE_AFTER = ("auth", "disabled", "throttled")


# ----------------------------------------------------------------------------- parsers

def parse_pop_status(line: str) -> tuple[bool, str]:
    """``+OK text`` -> (True, "text"); ``-ERR text`` -> (False, "text"); else ValueError."""
    if not isinstance(line, str):
        raise ValueError("POP3 reply must be text")
    for prefix, ok in (("+OK", True), ("-ERR", False)):
        if line[:len(prefix)].upper() == prefix and (len(line) == len(prefix) or line[len(prefix)] == " "):
            return ok, line[len(prefix) + 1:]
    raise ValueError(f"malformed POP3 reply: {clip(line, 80)!r}")


def parse_capa(lines: list[str]) -> list[str]:
    """CAPA body lines (already dot-unstuffed, terminator removed) -> capability lines."""
    if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
        raise ValueError("CAPA body must be a list of strings")
    return [" ".join(line.split()) for line in lines if line.strip()]


def parse_stat(text: str) -> tuple[int, int]:
    """The text of ``+OK 3 4711`` -> (3, 4711)."""
    if not isinstance(text, str):
        raise ValueError("STAT text must be a string")
    parts = text.split()
    if len(parts) < 2 or not _NUMBER.fullmatch(parts[0]) or not _NUMBER.fullmatch(parts[1]):
        raise ValueError(f"malformed STAT reply: {clip(text, 80)!r}")
    return int(parts[0]), int(parts[1])


def sasl_mechanisms(capabilities: list[str]) -> list[str] | None:
    """Mechanisms of the ``SASL ...`` capability line, or None if CAPA did not list one."""
    for line in parse_capa(capabilities):
        words = line.split()
        if words and words[0].upper() == "SASL":
            return [w.upper() for w in words[1:]]
    return None


def unstuff(line: str) -> str:
    """RFC 1939 byte-stuffing: a body line starting with ".." stands for "."."""
    if not isinstance(line, str):
        raise ValueError("POP3 line must be text")
    return line[1:] if line.startswith("..") else line


# ----------------------------------------------------------------------------- session

class _Session:
    def __init__(self, wire: Wire) -> None:
        self.wire = wire
        self.capabilities: list[str] = []
        self.capa_ok = False
        self.greeting: str | None = None

    def read(self) -> str:
        return self.wire.readline().decode("utf-8", "replace")

    def status(self) -> tuple[bool, str, str]:
        """Read a status line: (ok, text, the whole line)."""
        line = self.read()
        try:
            ok, text = parse_pop_status(line)
        except ValueError:
            raise self.protocol(f"sent a malformed reply: {clip(line)!r}") from None
        return ok, text, line

    def command(self, text: str) -> tuple[bool, str, str]:
        self.wire.send_line(text)
        return self.status()

    def protocol(self, what: str) -> O365Error:
        return O365Error("protocol", f"POP3 server {self.wire.where} {what} during {self.wire.phase}")

    def open(self, security: str) -> None:
        implicit = security == "tls"
        self.wire.connect(implicit_tls=implicit)
        with self.wire.timed("greeting"):
            ok, _unused, line = self.status()
            self.greeting = clip(line, 500)
            if not ok:
                raise _refusal(line, "greeting", default="connection")
            if not implicit:
                self.capa()
        if not implicit:
            with self.wire.timed("tls"):
                self.stls()
        with self.wire.timed("greeting"):
            self.capa()

    def capa(self) -> None:
        """CAPA (multi-line); a refusal just means an RFC 1939-only server."""
        ok, _unused, _unused = self.command("CAPA")
        self.capa_ok = ok
        self.capabilities = parse_capa(self._multiline()) if ok else []

    def _multiline(self) -> list[str]:
        lines = []
        for _unused in range(MAX_CAPA_LINES):
            line = self.read()
            if line == ".":
                return lines
            lines.append(unstuff(line))
        raise self.protocol("sent a CAPA list without an end")

    def stls(self) -> None:
        if self.capa_ok and not any(c.upper() == "STLS" for c in self.capabilities):
            raise O365Error("tls", f"POP3 server {self.wire.where} does not offer STLS "
                                   f"(capabilities: {', '.join(self.capabilities) or 'none'})",
                            hint="Use security: tls on the implicit TLS port (995) instead.")
        ok, _unused, line = self.command("STLS")
        if not ok:
            raise _refusal(line, "STLS", default="tls")
        self.capabilities, self.capa_ok = [], False  # pre-TLS answers may have been forged
        self.wire.start_tls()

    def authenticate(self, sasl: str) -> None:
        mechanisms = sasl_mechanisms(self.capabilities)
        if mechanisms is not None and "XOAUTH2" not in mechanisms:
            raise O365Error("disabled", f"POP3 server {self.wire.where} does not offer SASL XOAUTH2 "
                                        f"(it offers: {' '.join(mechanisms) or 'no SASL mechanisms'})",
                            hint="OAuth2 may be disabled for POP on this server, or this is not "
                                 "the service's POP endpoint.")
        self.wire.send_line("AUTH XOAUTH2")
        line = self.read()
        if not line.startswith("+") or line.upper().startswith("+OK"):
            raise self._auth_reply(line, "AUTH XOAUTH2")  # refused before the credentials
        self.wire.send_line(sasl)
        line = self.read()
        detail: dict[str, str] = {}
        for answer in ("", "*"):
            if not line.startswith("+") or line.upper().startswith("+OK"):
                break
            # XOAUTH2 error challenge: an empty response gets the server's own -ERR (as with IMAP
            # and SMTP); if it challenges again, cancel the exchange (RFC 5034).
            detail = detail or _safe_detail(line[2:])
            self.wire.send_line(answer)
            line = self.read()
        ok, _unused, _unused = self._parsed(line)
        if not ok:
            raise _with_detail(self._auth_reply(line, "AUTH"), detail)

    def _auth_reply(self, line: str, what: str) -> O365Error:
        ok, _unused, _unused = self._parsed(line)
        if ok:
            raise self.protocol(f"answered {what} with +OK before the credentials")
        return _refusal(line, what, default="auth")

    def _parsed(self, line: str) -> tuple[bool, str, str]:
        try:
            ok, text = parse_pop_status(line)
        except ValueError:
            raise self.protocol(f"sent a malformed reply: {clip(line)!r}") from None
        return ok, text, line

    def stat(self, result: dict) -> None:
        ok, text, line = self.command("STAT")
        if not ok:
            raise _refusal(line, "STAT", after_login=True)
        try:
            result["messages"], result["size"] = parse_stat(text)
        except ValueError:
            raise self.protocol(f"sent a malformed STAT reply: {clip(line)!r}") from None

    def quit(self) -> None:
        """Best effort, bounded by a short timeout, never raising."""
        self.wire.timeout = min(self.wire.timeout, QUIT_TIMEOUT)
        try:
            self.command("QUIT")
        except O365Error:
            pass


# ----------------------------------------------------------------------------- helpers

def _refusal(line: str, what: str, default: str = "protocol", after_login: bool = False) -> O365Error:
    """Classify -ERR, keeping the server's own words; RFC 2449 codes refine the default."""
    text = line.strip()
    code = re.match(r"-ERR \[([^\]]+)\]", text, re.IGNORECASE)
    if code and code.group(1).upper() in _CODE_CATEGORY:
        default = _CODE_CATEGORY[code.group(1).upper()]
    err = classify_reply("pop", text, default=default)
    if after_login:
        prefix = f"POP3 {what} was refused after a successful AUTH, so the login does not give access to the mailbox"
    else:
        prefix = f"POP3 {what} refused"
    return O365Error(err.category, f"{prefix}: {err.server_reply}", hint=err.hint,
                     server_reply=err.server_reply, code=err.code)


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


def check_pop(host: str, port: int, security: str, user: str, sasl: str, context: ssl.SSLContext,
              timeout: float) -> dict:
    """Log in with XOAUTH2 and prove the maildrop is usable (STAT).

    Result: ok, authenticated, capabilities (CAPA lines), server_greeting, timings,
    messages and size (STAT), and ``error`` (O365Error.as_dict()) when ok is false.
    ``user`` only names the mailbox in messages; the identity is the one inside ``sasl``.
    """
    check_common(host, port, security, sasl, context, timeout)
    result = new_result()
    result.update(messages=None, size=None)
    wire = Wire(host, port, timeout, context, "POP3")
    session = _Session(wire)
    with wire:
        try:
            session.open(security)
            with wire.timed("auth"):
                session.authenticate(sasl)
            result["authenticated"] = True
            with wire.timed("command"):
                session.stat(result)
            result["ok"] = True
        except O365Error as err:
            result["error"] = err.as_dict()
        result["capabilities"] = list(session.capabilities)
        result["server_greeting"] = session.greeting
        if result["ok"] or result["error"]["category"] in _POLITE_AFTER:
            session.quit()
    result["timings"] = wire.timings
    error = result.get("error")
    if error and isinstance(user, str) and user and error["category"] in ("auth", "disabled"):
        error["message"] = f"{error['message']} (user {user})"
    return redact(result, secrets_of(sasl))
