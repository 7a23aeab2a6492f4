# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A line-oriented client connection shared by the IMAP and POP3 probes.

Probes run by the thousand in a thread pool, so a ``Wire`` holds all of its state, every
read has a deadline (a server dribbling one byte at a time cannot hold a line open longer
than ``timeout``), and every socket failure becomes a classified ``O365Error`` naming the
phase. A ``Wire`` never remembers what it sent, so no secret can leak through it.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from ansible_collections.mailops.o365.plugins.module_utils._errors import (
    O365Error,
    config_error,
)
from ansible_collections.mailops.o365.plugins.module_utils._tls import tls_error
from ansible_collections.mailops.o365.plugins.module_utils.xoauth2 import decode_xoauth2

MAX_LINE = 64 * 1024
MAX_LITERAL = 1024 * 1024
PHASES = ("connect", "tls", "greeting", "auth", "command")
REDACTED = "<redacted>"
_RECV_SIZE = 16384
# Closing alerts and EOFs from ssl mean "the peer went away", not "TLS is misconfigured".
_SSL_CLOSED = (ssl.SSLZeroReturnError, ssl.SSLEOFError)


class Wire:
    """One TCP (optionally TLS) connection with bounded, timed, line-oriented I/O."""

    def __init__(self, host: str, port: int, timeout: float,
                 context: ssl.SSLContext | None, protocol: str) -> None:
        self.host = host
        self.port = port
        self.timeout = float(timeout)
        self.context = context
        self.protocol = protocol
        self.phase = "connect"
        self.secure = False
        self._sock: socket.socket | None = None
        self._buf = bytearray()
        self._spent: dict = {}
        self._started = time.monotonic()
        self._ended: float | None = None

    def __repr__(self) -> str:
        return f"Wire({self.protocol} {self.where} phase={self.phase} tls={self.secure})"

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def timings(self) -> dict:
        """Milliseconds per phase reached, plus ``total`` (frozen when the wire closes)."""
        out = {name: round(self._spent[name] * 1000, 1) for name in PHASES if name in self._spent}
        end = self._ended if self._ended is not None else time.monotonic()
        out["total"] = round((end - self._started) * 1000, 1)
        return out

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Account the time spent inside the block to ``phase``; errors inside name it."""
        self.phase = phase
        start = time.monotonic()
        try:
            yield
        finally:
            self._spent[phase] = self._spent.get(phase, 0.0) + time.monotonic() - start

    def connect(self, implicit_tls: bool) -> None:
        with self.timed("connect"):
            try:
                self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            except (OSError, ValueError) as exc:
                raise self.error(exc) from None
        if implicit_tls:
            with self.timed("tls"):
                self.start_tls()

    def start_tls(self) -> None:
        """Upgrade to TLS; the caller times it (STARTTLS exchange plus handshake)."""
        if self._buf:
            # Bytes queued before the handshake would be trusted as if they came over TLS.
            raise O365Error("protocol", f"{self.protocol} server {self.where} sent data after the TLS upgrade "
                            "was agreed (possible STARTTLS injection); giving up")
        if self.context is None:
            raise O365Error("config", "context: an ssl.SSLContext is required for TLS")
        sock = self._require()
        try:
            sock.settimeout(self.timeout)
            self._sock = self.context.wrap_socket(sock, server_hostname=self.host)
        except (OSError, ValueError) as exc:
            raise self.error(exc) from None
        self.secure = True

    def readline(self, max_line: int = MAX_LINE) -> bytes:
        """One line without its CRLF (a bare LF is accepted), read within ``timeout``."""
        deadline = time.monotonic() + self.timeout
        scanned = 0
        while True:
            idx = self._buf.find(b"\n", scanned)
            if idx >= 0:
                if idx > max_line:
                    raise self._too_long(max_line)
                line = bytes(self._buf[:idx])
                del self._buf[:idx + 1]
                return line[:-1] if line.endswith(b"\r") else line
            if len(self._buf) > max_line:
                raise self._too_long(max_line)
            scanned = len(self._buf)
            self._fill(deadline)

    def read_exact(self, size: int, limit: int = MAX_LITERAL) -> bytes:
        """Exactly ``size`` bytes (an IMAP literal), read within ``timeout``."""
        if size < 0 or size > limit:
            raise O365Error("protocol", f"{self.protocol} server {self.where} announced {size} bytes "
                            f"during {self.phase} (limit {limit})")
        deadline = time.monotonic() + self.timeout
        while len(self._buf) < size:
            self._fill(deadline)
        data = bytes(self._buf[:size])
        del self._buf[:size]
        return data

    def send_line(self, line: str | bytes) -> None:
        data = line.encode("utf-8") if isinstance(line, str) else bytes(line)
        if b"\r" in data or b"\n" in data:
            # Never echo the line: it may be the SASL string.
            raise O365Error("config", f"refusing to send a {self.protocol} line containing CR or LF")
        sock = self._require()
        try:
            sock.settimeout(self.timeout)
            sock.sendall(data + b"\r\n")
        except (OSError, ValueError) as exc:
            raise self.error(exc) from None

    def close(self) -> None:
        if self._ended is None:
            self._ended = time.monotonic()
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    def error(self, exc: BaseException) -> O365Error:
        """Map a socket/ssl exception to a classified error naming host:port and phase."""
        prefix = f"{self.protocol} server {self.where}"
        if isinstance(exc, TimeoutError):
            return O365Error("timeout", f"{prefix} did not answer within {self.timeout:g} s during {self.phase}",
                             hint="Check that the host and port are reachable (firewall, proxy) "
                                  "or raise timeout for a slow server.")
        if isinstance(exc, ssl.CertificateError) or (
                isinstance(exc, ssl.SSLError) and (self.phase == "tls" or not isinstance(exc, _SSL_CLOSED))):
            return self._tls(exc)
        if isinstance(exc, _SSL_CLOSED):
            return self.closed()
        if isinstance(exc, ConnectionRefusedError):
            return O365Error("connection", f"{prefix} refused the connection during {self.phase}",
                             hint="Nothing listens on this port, or a firewall rejects it: check host and port.")
        if isinstance(exc, socket.gaierror):
            return O365Error("connection", f"{prefix}: cannot resolve host name during {self.phase}: "
                             f"{exc.strerror or exc}")
        if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            return O365Error("connection", f"{prefix}: connection reset by server during {self.phase}")
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return O365Error("connection", f"{prefix}: connection failed during {self.phase}: {reason}")

    def closed(self) -> O365Error:
        return O365Error("connection", f"{self.protocol} server {self.where}: connection closed by server "
                         f"during {self.phase}")

    def _tls(self, exc: BaseException) -> O365Error:
        err = tls_error(exc, self.host)
        if "WRONG_VERSION_NUMBER" in str(exc):
            # The classic symptom of speaking TLS to a plain-text (STARTTLS) port.
            err.hint = (f"The server did not answer with TLS: port {self.port} may expect security: "
                        "starttls (or implicit TLS on another port).")
        return err

    def _too_long(self, limit: int) -> O365Error:
        return O365Error("protocol", f"{self.protocol} server {self.where} sent a line longer than {limit} bytes "
                         f"during {self.phase}")

    def _require(self) -> socket.socket:
        if self._sock is None:
            raise O365Error("connection", f"{self.protocol} server {self.where}: not connected (during {self.phase})")
        return self._sock

    def _fill(self, deadline: float) -> None:
        sock = self._require()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise self.error(TimeoutError("timed out"))
        try:
            sock.settimeout(remaining)
            data = sock.recv(_RECV_SIZE)
        except (OSError, ValueError) as exc:
            raise self.error(exc) from None
        if not data:
            raise self.closed()
        self._buf += data


def secrets_of(sasl: str) -> list:
    """The strings that must never appear in results: the SASL string and the token inside it."""
    found = [sasl]
    try:
        found.append(decode_xoauth2(sasl)[1])
    except (ValueError, TypeError):
        pass
    # Very short strings would mangle innocent text; real tokens are long.
    return [s for s in found if isinstance(s, str) and len(s) >= 8]


def redact(value: Any, secrets: Iterable[str]) -> Any:
    """Deep copy of ``value`` with every secret replaced (defence in depth: servers may echo)."""
    secrets = list(secrets)
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: redact(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact(v, secrets) for v in value)
    return value


def new_result() -> dict:
    return {"ok": False, "authenticated": False, "capabilities": [], "server_greeting": None, "timings": {}}


def clip(text: str, limit: int = 200) -> str:
    """Server text for messages, shortened so one bad line cannot flood a report."""
    return text if len(text) <= limit else text[:limit] + "..."


def check_common(host: str, port: int, security: str, sasl: str,
                 context: ssl.SSLContext, timeout: float) -> None:
    """Raise O365Error("config") for arguments no network call can fix."""
    if not isinstance(host, str) or not host or any(c in host for c in "\r\n\x00 /"):
        raise config_error("host", "must be a host name or address")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise config_error("port", "must be an integer between 1 and 65535")
    if security not in ("tls", "starttls"):
        raise config_error("security", "must be 'tls' or 'starttls'")
    if not isinstance(sasl, str) or not sasl or any(c in sasl for c in "\r\n\x00 "):
        raise config_error("sasl", "must be the base64 XOAUTH2 string on one line")
    if not isinstance(context, ssl.SSLContext):
        raise config_error("context", "must be an ssl.SSLContext (use _tls.client_context)")
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
        raise config_error("timeout", "must be a number of seconds between 0 and 3600")
