# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SMTP submission with SASL XOAUTH2 (RFC 5321, 3207, 4954, 1870, 2034), built on ``smtplib``.

``SmtpSession`` opens a connection that is always encrypted (STARTTLS is mandatory unless
``security == "tls"``; there is no plaintext fallback), authenticates with XOAUTH2 and sends
messages. Every failure becomes an ``O365Error``; a failed ``send`` raises ``SendError``,
whose ``result["delivery"]`` tells the caller whether the message may have gone out:

* ``accepted``: the server took it (possibly with some recipients refused);
* ``refused``: the server refused it for good (5xx); sending it again will not help;
* ``not_sent``: it certainly did not go out (4xx, or a failure before the message data);
* ``unknown``: the connection failed after the message data was sent: it may have been
  delivered, so it is never sent again automatically.

The SASL string is only passed through: it is never stored, logged or put in an error, and
any server reply that echoes part of it is redacted.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import re
import smtplib
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from email.message import EmailMessage
from typing import Any, NamedTuple, Optional

from ansible_collections.mailops.o365.plugins.module_utils._errors import O365Error, classify_reply, config_error
from ansible_collections.mailops.o365.plugins.module_utils._message import message_bytes, parse_address
from ansible_collections.mailops.o365.plugins.module_utils._tls import tls_error
from ansible_collections.mailops.o365.plugins.module_utils.xoauth2 import decode_xoauth2

SECURITY = ("starttls", "tls")
MAX_REPLY_LINE = 8192        # as smtplib's _MAXLINE; RFC 5321 allows 512
MAX_REPLY_LINES = 1000       # an endless multi-line reply is a broken or hostile server
MAX_SASL = 16384             # RFC 4954 asks servers for 12288 octets per line
_BASE64 = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")
_SECRETISH = re.compile(r"[A-Za-z0-9+/=._~-]{12,}")
EHLOHOST_RE = re.compile(r"^[\x21-\x7e]{1,255}$")


def _ms(start: float) -> int:
    return int(round((time.monotonic() - start) * 1000))


# ----------------------------------------------------------------------------- replies

class ReplyError(ValueError):
    """A reply that does not follow RFC 5321 4.2; the only error ``parse_reply`` raises."""


class Reply(NamedTuple):
    code: int
    enhanced: Optional[str]          # RFC 2034/3463 status code such as "5.7.3", when present
    lines: tuple[str, ...]        # each line's text after the code and separator

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def __str__(self) -> str:
        text = " ".join(line for line in self.lines if line)
        return f"{self.code} {text}" if text else str(self.code)


def parse_reply_line(raw: bytes) -> tuple[int, bool, str]:
    """Parse one reply line into ``(code, is_last, text)``."""
    if not isinstance(raw, (bytes, bytearray)):
        raise ReplyError("reply line must be bytes")
    line = bytes(raw)
    if line.endswith(b"\r\n"):
        line = line[:-2]
    elif line.endswith(b"\n"):
        line = line[:-1]
    if len(line) > MAX_REPLY_LINE:
        raise ReplyError("reply line longer than %d octets" % MAX_REPLY_LINE)
    head = line[:3]
    if len(head) < 3 or not head.isdigit() or head[:1] not in b"2345":
        raise ReplyError("reply does not start with a 2xx-5xx code: %r" % line[:40])
    sep = line[3:4]
    if sep not in (b"", b" ", b"-"):
        raise ReplyError("bad separator after reply code: %r" % line[:40])
    return int(head), sep != b"-", line[4:].decode("utf-8", "replace")


def parse_reply(raw_lines: Sequence[bytes]) -> Reply:
    """Parse a complete (possibly multi-line) reply; raises only ``ReplyError``."""
    if not raw_lines:
        raise ReplyError("empty reply")
    if len(raw_lines) > MAX_REPLY_LINES:
        raise ReplyError("reply has more than %d lines" % MAX_REPLY_LINES)
    code: Optional[int] = None
    texts: list = []
    for index, raw in enumerate(raw_lines):
        line_code, last, text = parse_reply_line(raw)
        if code is not None and line_code != code:
            raise ReplyError("reply codes differ between lines (%s, %s)" % (code, line_code))
        if last != (index == len(raw_lines) - 1):
            raise ReplyError("continuation marker on the wrong line of a reply")
        code = line_code
        texts.append(text)
    match = _ENHANCED.match(texts[0])
    enhanced = match.group(0) if match and match.group(1) == str(code)[0] else None
    return Reply(code, enhanced, tuple(texts))


# ----------------------------------------------------------------------------- smtplib

class _Client(smtplib.SMTP):
    """smtplib with strict reply parsing, raw socket errors and connect/greeting timings."""

    timings: dict
    stage = "connect"
    last_reply: Optional[Reply] = None

    def set_debuglevel(self, debuglevel: Any) -> None:
        # smtplib's debug output prints every line sent, the SASL string included.
        self.debuglevel = 0

    def _tcp(self, host: str, port: int, timeout: float) -> socket.socket:
        self.stage = "connect"
        start = time.monotonic()
        sock = smtplib.SMTP._get_socket(self, host, port, timeout)
        self.timings["connect"] = _ms(start)
        return sock

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = self._tcp(host, port, timeout)
        self.stage = "greeting"
        return sock

    def getreply(self) -> tuple[int, bytes]:
        if self.sock is None:
            raise smtplib.SMTPServerDisconnected("not connected")
        if self.file is None:
            self.file = self.sock.makefile("rb")
        lines: list[bytes] = []
        try:
            while True:
                line = self.file.readline(MAX_REPLY_LINE + 1)
                if not line:
                    raise smtplib.SMTPServerDisconnected("connection closed by the server")
                lines.append(line)
                if len(line) > MAX_REPLY_LINE or len(lines) > MAX_REPLY_LINES or line[3:4] != b"-":
                    break
            reply = parse_reply(lines)
        except BaseException:
            self.close()       # unlike smtplib, keep the original error (timeout, ssl, reset)
            raise
        self.last_reply = reply
        return reply.code, reply.text.encode("utf-8")

    def reply(self, code: int, text: bytes) -> Reply:
        """The parsed form of what ``getreply`` just returned."""
        return self.last_reply or Reply(code, None, (text.decode("utf-8", "replace"),))


class _ImplicitClient(_Client, smtplib.SMTP_SSL):
    """Implicit TLS (port 465): the handshake is timed separately from the TCP connect."""

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        sock = self._tcp(host, port, timeout)
        self.stage = "tls"
        start = time.monotonic()
        try:
            sock = self.context.wrap_socket(sock, server_hostname=self._host)
        except BaseException:
            sock.close()
            raise
        self.timings["tls"] = _ms(start)
        self.stage = "greeting"
        return sock


# ----------------------------------------------------------------------------- errors

class SendError(O365Error):
    """A failed send; ``result`` has the keys of a send result, ``delivery`` included."""

    def __init__(self, error: O365Error, result: dict) -> None:
        super().__init__(error.category, error.message, hint=error.hint,
                         server_reply=error.server_reply, code=error.code)
        self.result = result

    @property
    def delivery(self) -> str:
        return self.result["delivery"]

    def as_dict(self) -> dict:
        out = super().as_dict()
        out["delivery"] = self.delivery
        return out


def redact(text: Optional[str], secret: str) -> Optional[str]:
    """Replace any run of the secret (or its decoded token) that a server echoed back."""
    if not text or not secret:
        return text
    secrets = [secret]
    with contextlib.suppress(ValueError):
        secrets.append(decode_xoauth2(secret)[1])    # the bearer token itself

    def _hide(match: re.Match) -> str:
        return "[redacted]" if any(match.group(0) in s for s in secrets) else match.group(0)
    return _SECRETISH.sub(_hide, text)


def _amend(exc: O365Error, extra: str) -> O365Error:
    """The same error with ``extra`` appended to its message."""
    return O365Error(exc.category, exc.message + extra, hint=exc.hint, server_reply=exc.server_reply,
                     code=exc.code)


def _redacted(exc: O365Error, secret: str) -> O365Error:
    return O365Error(exc.category, redact(exc.message, secret) or "", hint=redact(exc.hint, secret),
                     server_reply=redact(exc.server_reply, secret), code=exc.code)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen = 0
    current: Optional[BaseException] = exc
    while current is not None and seen < 10:
        yield current
        seen += 1
        current = current.__cause__ or current.__context__


def _xoauth2_error(reply: Reply) -> str:
    """Summarize the base64 JSON of an XOAUTH2 error challenge (status, schemes, scope)."""
    try:
        data = json.loads(base64.b64decode(reply.text.strip()[:4096], validate=True))
    except (binascii.Error, ValueError, TypeError, RecursionError):
        return ""
    if not isinstance(data, dict):
        return ""
    parts = ["%s=%s" % (key, str(data[key])[:200]) for key in ("status", "schemes", "scope") if key in data]
    return " (XOAUTH2 error: %s)" % ", ".join(parts) if parts else ""


# ----------------------------------------------------------------------------- pacing

class Pacer:
    """At most ``max_per_minute`` sends in any sliding 60 s window; waits instead of failing
    (Exchange Online accepts 30 messages a minute per mailbox and delays the rest)."""

    def __init__(self, max_per_minute: int = 30, window: float = 60.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Any] = time.sleep) -> None:
        if int(max_per_minute) < 1:
            raise config_error("max_per_minute", "must be at least 1")
        self.limit = int(max_per_minute)
        self.window = float(window)
        self.clock = clock
        self.sleep = sleep
        self.sent: deque = deque()

    def wait(self) -> float:
        """Block until one more send fits the window, record it, return the seconds waited."""
        waited = 0.0
        while True:
            now = self.clock()
            while self.sent and now - self.sent[0] >= self.window:
                self.sent.popleft()
            if len(self.sent) < self.limit:
                self.sent.append(now)
                return waited
            delay = self.sent[0] + self.window - now
            self.sleep(delay)
            waited += delay


# ----------------------------------------------------------------------------- session

class SmtpSession:
    """One SMTP connection: ``open()``, ``authenticate()``, ``send()`` any number of times, ``quit()``.

    Check mode calls only ``open()`` and ``authenticate()``. ``initial_response`` chooses how
    the SASL string is sent: False (default) sends ``AUTH XOAUTH2``, waits for the empty
    ``334`` and sends the string on its own line, as Microsoft documents for Exchange Online
    and as every XOAUTH2 server accepts; it also keeps the long token (often 2-3 KB) off the
    command line, whose limit some servers keep near 512 octets. True sends
    ``AUTH XOAUTH2 <b64>`` (RFC 4954 initial response) and saves one round trip.
    """

    def __init__(self, host: str, port: int, security: str = "starttls",
                 context: Optional[ssl.SSLContext] = None, timeout: float = 30.0,
                 ehlohost: Optional[str] = None, *, initial_response: bool = False,
                 max_attempts: int = 3, backoff: float = 2.0, retry_deadline: float = 60.0,
                 data_timeout: Optional[float] = None,
                 sleep: Callable[[float], Any] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._check_args(host, port, security, context, timeout, ehlohost)
        self.host, self.port, self.security = host, int(port), security
        self.context, self.timeout, self.ehlohost = context, float(timeout), ehlohost
        self.initial_response = bool(initial_response)
        self.max_attempts = max(1, int(max_attempts))
        self.backoff, self.retry_deadline = float(backoff), float(retry_deadline)
        self.data_timeout = float(data_timeout) if data_timeout else self.timeout
        self.sleep, self.clock = sleep, clock
        self.timings: dict = {}
        self.server_greeting: Optional[str] = None
        self.esmtp_features: dict = {}
        self.max_size: Optional[int] = None
        self.authenticated = False
        self.tls_version: Optional[str] = None
        self.tls_cipher: Optional[str] = None
        self._client: Optional[_Client] = None
        self._started: Optional[float] = None

    @staticmethod
    def _check_args(host: Any, port: Any, security: Any, context: Any, timeout: Any, ehlohost: Any) -> None:
        if not isinstance(host, str) or not host or any(c.isspace() for c in host):
            raise config_error("host", "must be a host name or address")
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise config_error("port", "must be an integer between 1 and 65535")
        if security not in SECURITY:
            raise config_error("security", "must be one of starttls, tls (got %r)" % (security,))
        if not isinstance(context, ssl.SSLContext):
            raise config_error("context", "an ssl.SSLContext is required (see _tls.client_context)")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise config_error("timeout", "must be a positive number of seconds")
        if ehlohost is not None and (not isinstance(ehlohost, str) or not EHLOHOST_RE.match(ehlohost)):
            raise config_error("ehlohost", "must be a host name or address literal without spaces")

    def __repr__(self) -> str:
        return "SmtpSession(%s:%d, security=%s, authenticated=%s)" % (
            self.host, self.port, self.security, self.authenticated)

    def __enter__(self) -> SmtpSession:
        return self.open()

    def __exit__(self, *exc_info: Any) -> None:
        self.quit()

    @property
    def where(self) -> str:
        return "%s:%d" % (self.host, self.port)

    @property
    def tls_active(self) -> bool:
        return self._client is not None and isinstance(self._client.sock, ssl.SSLSocket)

    # ------------------------------------------------------------------ error mapping

    @contextlib.contextmanager
    def _phase(self, phase: str) -> Iterator[None]:
        try:
            yield
        except O365Error:
            raise
        except Exception as exc:
            raise self._convert(exc, phase) from None

    def _convert(self, exc: BaseException, phase: str) -> O365Error:
        chain = list(_chain(exc))
        if any(isinstance(e, (socket.timeout, TimeoutError)) for e in chain):  # distinct before 3.10
            return O365Error("timeout", "SMTP %s did not answer within %gs during %s" % (
                self.where, self.timeout if phase != "data" else self.data_timeout, phase),
                hint="Check that the host and port are reachable (firewalls often drop port 25/587), "
                     "or raise timeout.")
        ssl_exc = next((e for e in chain if isinstance(e, ssl.SSLError)), None)
        # A TLS-level EOF after the handshake is just a closed connection.
        eof = isinstance(ssl_exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError))
        if ssl_exc is not None and (phase == "tls" or not eof):
            return tls_error(ssl_exc, self.host)
        if isinstance(exc, ReplyError):
            return O365Error("protocol", "SMTP %s sent a malformed reply during %s: %s" % (self.where, phase, exc))
        if isinstance(exc, smtplib.SMTPResponseException):
            text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
            return classify_reply("smtp", "%s %s" % (exc.smtp_code, text))
        if isinstance(exc, socket.gaierror):
            return O365Error("connection", "cannot resolve SMTP host %s: %s" % (self.host, exc.strerror or exc))
        if isinstance(exc, (OSError, EOFError, smtplib.SMTPException)):
            return O365Error("connection", "SMTP connection to %s failed during %s: %s" % (self.where, phase, exc))
        return O365Error("protocol", "SMTP %s: unexpected %s during %s" % (self.where, type(exc).__name__, phase))

    def _reply_error(self, reply: Reply | str, default: str = "protocol") -> O365Error:
        return classify_reply("smtp", str(reply), default=default)

    # ------------------------------------------------------------------ open

    def _new_client(self) -> _Client:
        # A placeholder EHLO name: smtplib would otherwise call getfqdn(), a DNS lookup that can hang.
        if self.security == "tls":
            client: _Client = _ImplicitClient(local_hostname="localhost", timeout=self.timeout,
                                              context=self.context)
        else:
            client = _Client(local_hostname="localhost", timeout=self.timeout)
        client._host = self.host   # smtplib sets it only when __init__ connects; used for SNI and checks
        client.timings = self.timings
        return client

    def open(self) -> SmtpSession:
        """Connect, read the greeting, EHLO, STARTTLS (unless implicit TLS), EHLO again."""
        if self._client is not None:
            return self
        self._started = time.monotonic()
        self._client = client = self._new_client()
        try:
            self._greet(client)
            self._ehlo(client)
            if self.security == "starttls":
                self._starttls(client)
                self._ehlo(client)
        except BaseException:
            self._close()
            raise
        sock = client.sock
        if isinstance(sock, ssl.SSLSocket):    # kept for info() after the connection is gone
            self.tls_version, self.tls_cipher = sock.version(), (sock.cipher() or (None,))[0]
        return self

    def _greet(self, client: _Client) -> None:
        start = time.monotonic()
        try:
            code, text = client.connect(self.host, self.port)
        except Exception as exc:
            raise self._convert(exc, client.stage) from None
        connected = self.timings.get("connect", 0) + self.timings.get("tls", 0)
        self.timings["greeting"] = max(0, _ms(start) - connected)
        reply = client.reply(code, text)
        self.server_greeting = str(reply)
        if code != 220:
            raise self._reply_error(reply, default="connection")
        if self.ehlohost:
            client.local_hostname = self.ehlohost
        else:
            client.local_hostname = _address_literal(client.sock.getsockname()[0])

    def _ehlo(self, client: _Client) -> None:
        start = time.monotonic()
        with self._phase("ehlo"):
            code, text = client.ehlo()
        self.timings["ehlo"] = self.timings.get("ehlo", 0) + _ms(start)
        if code != 250:
            raise self._reply_error(client.reply(code, text))
        self.esmtp_features = dict(client.esmtp_features)
        size = self.esmtp_features.get("size", "").strip()
        self.max_size = int(size) if size.isdigit() and int(size) > 0 else None

    def _starttls(self, client: _Client) -> None:
        if not client.has_extn("starttls"):
            raise O365Error("tls", "SMTP %s does not offer STARTTLS (EHLO advertised: %s); refusing to "
                            "continue without encryption" % (self.where, _feature_names(client)),
                            hint="Use the server's submission port (587) with STARTTLS, or security: tls "
                                 "for implicit TLS (465). A proxy that strips STARTTLS is an attack.")
        start = time.monotonic()
        try:
            client.starttls(context=self.context)
        except smtplib.SMTPResponseException as exc:
            reply = client.reply(exc.smtp_code, exc.smtp_error)
            raise O365Error("tls", "SMTP %s refused STARTTLS: %s" % (self.where, reply),
                            server_reply=str(reply)) from None
        except Exception as exc:
            raise self._convert(exc, "tls") from None
        self.timings["tls"] = _ms(start)

    # ------------------------------------------------------------------ authenticate

    def _client_for(self, phase: str) -> _Client:
        if self._client is None or self._client.sock is None:
            raise O365Error("connection", "SMTP %s: not connected (%s needs open())" % (self.where, phase))
        return self._client

    def _check_mechanism(self, client: _Client) -> None:
        auth = client.esmtp_features.get("auth")
        if auth is None:
            raise O365Error("disabled", "SMTP %s does not offer AUTH (EHLO advertised: %s)" % (
                self.where, _feature_names(client)),
                hint="This port accepts no authenticated submission: use smtp.office365.com:587 for "
                     "Exchange Online, or the server's submission port.")
        mechanisms = auth.upper().split()
        if "XOAUTH2" not in mechanisms:
            raise O365Error("auth", "SMTP %s offers AUTH %s but not XOAUTH2" % (
                self.where, " ".join(mechanisms) or "(no mechanisms)"),
                hint="The server does not accept OAuth2 tokens: check host and port.")

    def authenticate(self, sasl_b64: str, initial_response: Optional[bool] = None) -> dict:
        """AUTH XOAUTH2 with a base64 SASL string (see ``xoauth2.encode_xoauth2``)."""
        client = self._client_for("authenticate")
        if not self.tls_active:
            raise O365Error("tls", "refusing to send credentials to %s over an unencrypted connection" % self.where)
        if not isinstance(sasl_b64, str) or len(sasl_b64) > MAX_SASL or not _BASE64.match(sasl_b64):
            raise config_error("xoauth2", "must be a single-line base64 SASL XOAUTH2 string (value not shown)")
        self._check_mechanism(client)
        use_ir = self.initial_response if initial_response is None else bool(initial_response)
        start = time.monotonic()
        try:
            with self._phase("auth"):
                reply, challenge = self._auth_exchange(client, sasl_b64, use_ir)
        except O365Error as exc:
            self._close()
            raise _redacted(exc, sasl_b64) from None
        finally:
            self.timings["auth"] = _ms(start)
        if reply.code != 235:
            error = _amend(self._reply_error(reply, default="auth"), challenge)
            self.quit()
            raise _redacted(error, sasl_b64)
        self.authenticated = True
        return {"server_response": redact(str(reply), sasl_b64), "mechanism": "XOAUTH2",
                "initial_response": use_ir, "timings": {"auth": self.timings["auth"]}}

    @staticmethod
    def _auth_exchange(client: _Client, sasl: str, use_ir: bool) -> tuple[Reply, str]:
        if use_ir:
            code, text = client.docmd("AUTH", "XOAUTH2 " + sasl)
        else:
            code, text = client.docmd("AUTH", "XOAUTH2")
            if code != 334:
                return client.reply(code, text), ""
            code, text = client.docmd(sasl)
        challenge = ""
        if code == 334:
            # XOAUTH2 error challenge (base64 JSON): answer with an empty line to get the final reply.
            challenge = _xoauth2_error(client.reply(code, text))
            code, text = client.docmd("")
        return client.reply(code, text), challenge

    # ------------------------------------------------------------------ send

    def send(self, message: EmailMessage, envelope_from: str, recipients: list[str]) -> dict:
        """Submit one message; see the module docstring for ``delivery``. Raises ``SendError``."""
        start = time.monotonic()
        result = {"delivery": "not_sent", "accepted": [], "refused": {}, "server_response": None,
                  "message_id": str(message.get("Message-ID") or "") or None, "attempts": 0,
                  "size": None, "timings": {}}
        try:
            data = _wire_data(message)
            result["size"] = len(data)
            sender, rcpts = self._envelope_args(envelope_from, recipients)
            if self.max_size and len(data) > self.max_size:
                raise config_error("message", "%d bytes exceeds the server's size limit of %d bytes" % (
                    len(data), self.max_size))
            client = self._client_for("send")
            return self._deliver(client, data, sender, rcpts, result)
        except SendError:
            raise
        except O365Error as exc:
            raise SendError(exc, result) from None
        finally:
            result["timings"]["send"] = _ms(start)

    @staticmethod
    def _envelope_args(envelope_from: str, recipients: list[str]) -> tuple[str, list[str]]:
        sender = parse_address("envelope_from", envelope_from).addr_spec
        if not isinstance(recipients, (list, tuple)) or not recipients:
            raise config_error("recipients", "no recipients")
        seen, rcpts = set(), []
        for i, rcpt in enumerate(recipients):
            addr = parse_address("recipients[%d]" % i, rcpt).addr_spec
            if addr.lower() not in seen:
                seen.add(addr.lower())
                rcpts.append(addr)
        return sender, rcpts

    def _deliver(self, client: _Client, data: bytes, sender: str, rcpts: list[str], result: dict) -> dict:
        deadline = self.clock() + self.retry_deadline
        pending = rcpts
        for attempt in range(1, self.max_attempts + 1):
            result["attempts"] = attempt
            delay = min(self.backoff * 2 ** (attempt - 1), 30.0)
            can_retry = attempt < self.max_attempts and self.clock() + delay <= deadline
            transient, accepted, temp = self._envelope(client, sender, pending, len(data), result)
            if transient is None and temp and not can_retry:
                result["refused"].update(temp)    # out of retries: report them, send to the rest
                temp = {}
            if transient is None and not temp:
                if not accepted:
                    self._rset(client, quiet=True)
                    raise self._all_refused(result)
                transient = self._data_command(client, result)
                if transient is None:
                    return self._payload(client, data, accepted, result)
            if transient is not None and not can_retry:
                self._rset(client, quiet=True)    # leave the session usable for the next message
                raise SendError(self._reply_error(transient), result)
            self._rset(client)
            self.sleep(delay)
            pending = [r for r in pending if r not in result["refused"]]
        raise AssertionError("unreachable")   # pragma: no cover

    def _command(self, client: _Client, phase: str, call: Callable[[], tuple[int, bytes]],
                 result: dict) -> Reply:
        try:
            with self._phase(phase):
                code, text = call()
        except O365Error as exc:
            raise SendError(exc, result) from None
        reply = client.reply(code, text)
        if code == 421:   # the server is closing the connection (RFC 5321 3.8)
            self._close()
            raise SendError(self._reply_error(reply, default="connection"), result)
        return reply

    def _envelope(self, client: _Client, sender: str, rcpts: list[str], size: int,
                  result: dict) -> tuple[Optional[Reply], list[str], dict]:
        """MAIL FROM and RCPT TO: (transient MAIL reply, accepted, {rcpt: 4xx reply})."""
        options = ["SIZE=%d" % size] if "size" in client.esmtp_features else []
        reply = self._command(client, "mail", lambda: client.mail(sender, options), result)
        if 400 <= reply.code < 500:
            return reply, [], {}
        if reply.code != 250:
            self._rset(client, quiet=True)
            result["delivery"] = "refused"
            raise SendError(self._reply_error(reply), result)
        accepted: list[str] = []
        temp: dict[str, str] = {}
        for rcpt in rcpts:
            reply = self._command(client, "rcpt", lambda rcpt=rcpt: client.rcpt(rcpt), result)
            if reply.code in (250, 251):
                accepted.append(rcpt)
            elif 400 <= reply.code < 500:
                temp[rcpt] = str(reply)
            else:
                result["refused"][rcpt] = str(reply)
        return None, accepted, temp

    def _all_refused(self, result: dict) -> SendError:
        texts = list(result["refused"].values())
        result["delivery"] = "not_sent" if any(str(t)[:1] == "4" for t in texts) else "refused"
        error = classify_reply("smtp", str(texts[0]))
        message = "SMTP %s refused every recipient: %s" % (self.where, "; ".join(
            "%s: %s" % (k, v) for k, v in result["refused"].items()))
        return SendError(O365Error(error.category, message, hint=error.hint, server_reply=error.server_reply),
                         result)

    def _data_command(self, client: _Client, result: dict) -> Optional[Reply]:
        reply = self._command(client, "data", lambda: client.docmd("DATA"), result)
        if reply.code == 354:
            return None
        if 400 <= reply.code < 500:
            return reply
        self._rset(client, quiet=True)
        result["delivery"] = "refused"
        raise SendError(self._reply_error(reply), result)

    def _payload(self, client: _Client, data: bytes, accepted: list[str], result: dict) -> dict:
        result["delivery"] = "unknown"   # from the first byte on, a failure may hide a delivery
        try:
            with self._phase("data"):
                client.sock.settimeout(self.data_timeout)
                client.send(_dot_stuff(data))
                code, text = client.getreply()
                client.sock.settimeout(self.timeout)
        except O365Error as exc:
            self._close()
            raise SendError(_amend(exc, "; the message data was sent but no final reply came: it may "
                                   "have been delivered, so it is not sent again"), result) from None
        reply = client.reply(code, text)
        result["server_response"] = str(reply)
        if 200 <= reply.code < 300:
            result.update(delivery="accepted", accepted=accepted)
            return result
        result["delivery"] = "refused" if reply.code >= 500 else "not_sent"
        raise SendError(self._reply_error(reply), result)

    def _rset(self, client: _Client, quiet: bool = False) -> None:
        try:
            with self._phase("rset"):
                code, text = client.rset()
            if code != 250:
                raise self._reply_error(client.reply(code, text))
        except O365Error:
            self._close()
            if not quiet:
                raise

    # ------------------------------------------------------------------ info and quit

    def info(self) -> dict:
        """What the server told us, for results and check mode."""
        auth = self.esmtp_features.get("auth")
        return {"host": self.host, "port": self.port, "security": self.security,
                "server_greeting": self.server_greeting, "esmtp_features": dict(self.esmtp_features),
                "auth_mechanisms": auth.upper().split() if auth else [], "max_size": self.max_size,
                "tls_version": self.tls_version, "tls_cipher": self.tls_cipher,
                "authenticated": self.authenticated, "timings": dict(self.timings)}

    def _close(self) -> None:
        client, self._client = self._client, None    # a later open() starts afresh
        if client is not None:
            with contextlib.suppress(Exception):
                client.close()
        if self._started is not None:
            self.timings["total"] = _ms(self._started)

    def quit(self) -> None:
        """Best-effort QUIT, then close; never raises."""
        client = self._client
        if client is not None and client.sock is not None:
            with contextlib.suppress(Exception):
                client.sock.settimeout(min(self.timeout, 5.0))    # do not hang on a dead server
                client.quit()
        self._close()


def _feature_names(client: _Client) -> str:
    return ", ".join(sorted(k.upper() for k in client.esmtp_features)) or "nothing"


def _address_literal(ip: str) -> str:
    """An RFC 5321 address literal for EHLO when no name was given."""
    return "[IPv6:%s]" % ip if ":" in ip else "[%s]" % ip


def _wire_data(message: EmailMessage) -> bytes:
    data = re.sub(rb"\r\n|\r|\n", b"\r\n", message_bytes(message))
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def _dot_stuff(data: bytes) -> bytes:
    """RFC 5321 4.5.2 transparency, then the end-of-data line."""
    return re.sub(rb"(?m)^\.", b"..", data) + b".\r\n"
