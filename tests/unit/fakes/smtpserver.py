# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A scripted fake SMTP submission server on 127.0.0.1 for unit tests.

It speaks enough ESMTP for a submission client: EHLO (SIZE, STARTTLS, AUTH, 8BITMIME,
ENHANCEDSTATUSCODES), STARTTLS or implicit TLS with the throwaway certificate of
``mailserver.cert_dir()``, AUTH XOAUTH2 (two-step and initial response), MAIL, RCPT,
DATA (dot-unstuffed payloads are kept in ``messages``), RSET, NOOP and QUIT.

Replies are scripted per step name: ``GREETING``, ``EHLO``, ``STARTTLS``, ``AUTH`` (the
reply to a bare ``AUTH XOAUTH2``), ``AUTHDATA`` (the reply to the SASL string),
``AUTHEND`` (the reply to the empty line after an XOAUTH2 error challenge), ``MAIL``,
``RCPT``, ``DATA``, ``DATAEND`` (the reply after the payload), ``RSET``, ``QUIT``. A script
value is a reply string (multi-line with "\\n"), a list consumed one per use (the default
reply once empty), or a callable ``f(line) -> reply``. Two special replies: ``CLOSE`` drops
the connection, ``HANG`` stays silent until the server stops.

Everything the client sent is in ``log`` as ``(tls_active, line)``.
"""

from __future__ import annotations

import socket
import ssl
import threading
from typing import Any, Callable, Optional, Union

from ansible_collections.mailops.o365.tests.unit.fakes.mailserver import (  # noqa: F401 (re-exported)  # pylint: disable=unused-import
    _server_context,
    cert_dir,
    client_context,
    closed_port,
    untrusting_context,
)

CLOSE = "<close>"
HANG = "<hang>"

Script = Union[str, list, Callable[[str], str]]

DEFAULTS = {
    "GREETING": "220 fake.example ESMTP ready",
    "STARTTLS": "220 2.0.0 SMTP server ready",
    "AUTH": "334 ",
    "AUTHDATA": "235 2.7.0 Authentication successful",
    "AUTHEND": "535 5.7.3 Authentication unsuccessful [FAKE.example]",
    "MAIL": "250 2.1.0 Sender OK",
    "RCPT": "250 2.1.5 Recipient OK",
    "DATA": "354 Start mail input; end with <CRLF>.<CRLF>",
    "DATAEND": "250 2.0.0 OK queued as FAKE{n}",
    "RSET": "250 2.0.0 Resetting",
    "NOOP": "250 2.0.0 OK",
    "QUIT": "221 2.0.0 Service closing transmission channel",
}


VERBS = ("EHLO", "HELO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT", "VRFY")


def _upper_verb(line: str) -> str:
    verb, sep, rest = line.partition(" ")
    return verb.upper() + sep + rest if verb.upper() in VERBS else line


class FakeSmtpServer:
    """Threaded: every accepted connection is served on its own thread with the same script."""

    def __init__(self, script: Optional[dict] = None, *, starttls: bool = True, implicit_tls: bool = False,
                 auth: Optional[str] = "LOGIN XOAUTH2", auth_before_tls: bool = False,
                 size: Optional[int] = None, hang_seconds: float = 10.0) -> None:
        self.script = dict(script or {})
        self.starttls, self.implicit_tls = starttls, implicit_tls
        self.auth, self.auth_before_tls, self.size = auth, auth_before_tls, size
        self.hang_seconds = hang_seconds
        self.log: list[tuple[bool, str]] = []
        self.messages: list[bytes] = []
        self.errors: list[str] = []
        self.connections = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._conns: list[Any] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.host, self.port = self._listener.getsockname()[:2]
        self._accept_thread = threading.Thread(target=self._accept, daemon=True)
        self._accept_thread.start()

    def __enter__(self) -> FakeSmtpServer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ views

    @property
    def lines(self) -> list[str]:
        """What the client sent, with command verbs upper-cased (smtplib sends "mail FROM:")."""
        return [_upper_verb(line) for _tls, line in self.log]

    @property
    def verbs(self) -> list[str]:
        return [line.split(" ", 1)[0].upper() for line in self.lines if line]

    def count(self, verb: str) -> int:
        return self.verbs.count(verb.upper())

    def clear_lines(self) -> list[str]:
        """What the client sent before TLS was active."""
        return [_upper_verb(line) for tls, line in self.log if not tls]

    # ------------------------------------------------------------------ plumbing

    def stop(self) -> None:
        self._stop.set()
        self._listener.close()
        with self._lock:
            for conn in self._conns:
                try:
                    conn.close()
                except OSError:
                    pass
        for thread in [self._accept_thread, *self._threads]:
            thread.join(timeout=5)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _addr = self._listener.accept()
            except (socket.timeout, OSError):
                continue
            conn.settimeout(self.hang_seconds)
            self.connections += 1
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._lock:
                self._conns.append(conn)
                self._threads.append(thread)
            thread.start()

    def _next(self, step: str, line: str) -> str:
        entry: Script = self.script.get(step, DEFAULTS.get(step, "500 5.5.2 unrecognized command"))
        if callable(entry):
            reply = entry(line)
        elif isinstance(entry, list):
            reply = entry.pop(0) if entry else DEFAULTS.get(step, "500 5.5.2 unrecognized command")
        else:
            reply = entry
        return reply.replace("{n}", str(len(self.messages)))

    def _send(self, conn: Any, reply: str) -> bool:
        """Send a reply; False when the script says to close or hang (the connection ends)."""
        if reply == CLOSE:
            return False
        if reply == HANG:
            self._stop.wait(self.hang_seconds)
            return False
        conn.sendall("".join(line + "\r\n" for line in reply.split("\n")).encode("utf-8"))
        return True

    def _ehlo(self, tls: bool) -> str:
        if "EHLO" in self.script:
            return self._next("EHLO", "")
        lines = ["fake.example greets you"]
        if self.size is not None:
            lines.append("SIZE %d" % self.size)
        if self.starttls and not tls:
            lines.append("STARTTLS")
        if self.auth is not None and (tls or self.auth_before_tls):
            lines.append("AUTH " + self.auth)
        lines += ["8BITMIME", "ENHANCEDSTATUSCODES"]
        return "\n".join("250%s%s" % ("-" if i < len(lines) - 1 else " ", text) for i, text in enumerate(lines))

    def _serve(self, conn: Any) -> None:
        session = _Session(self, conn)
        try:
            session.run()
        except (OSError, ssl.SSLError, ValueError) as exc:
            if not self._stop.is_set():
                self.errors.append("%s: %s" % (type(exc).__name__, exc))
        finally:
            session.close()


class _Session:
    """One connection's state machine."""

    def __init__(self, server: FakeSmtpServer, conn: Any) -> None:
        self.server, self.conn, self.tls = server, conn, False
        self.reader: Any = None

    def close(self) -> None:
        """Drop the connection for real: a makefile() reader would otherwise keep it open."""
        for thing in (self.reader, self.conn):
            try:
                if thing is self.conn:
                    thing.shutdown(socket.SHUT_RDWR)
                if thing is not None:
                    thing.close()
            except OSError:
                pass

    def readline(self) -> Optional[str]:
        raw = self.reader.readline(70000)
        if not raw:
            return None
        line = raw.rstrip(b"\r\n").decode("latin-1")
        self.server.log.append((self.tls, line))
        return line

    def start_tls(self) -> None:
        self.conn = _server_context().wrap_socket(self.conn, server_side=True)
        with self.server._lock:
            self.server._conns.append(self.conn)
        self.reader = self.conn.makefile("rb")
        self.tls = True

    def run(self) -> None:
        if self.server.implicit_tls:
            self.start_tls()
        else:
            self.reader = self.conn.makefile("rb")
        if not self.server._send(self.conn, self.server._next("GREETING", "")):
            return
        while True:
            line = self.readline()
            if line is None:
                return
            verb = line.split(" ", 1)[0].upper()
            handler = getattr(self, "do_" + verb, None)
            reply = handler(line) if handler else self.server._next(verb, line)
            if reply is None:
                continue
            if not self.server._send(self.conn, reply) or verb == "QUIT":
                return
            if verb == "STARTTLS" and reply.startswith("220"):
                self.start_tls()

    def do_EHLO(self, line: str) -> str:
        return self.server._ehlo(self.tls)

    def do_AUTH(self, line: str) -> Optional[str]:
        parts = line.split()
        if len(parts) < 3:
            reply = self.server._next("AUTH", line)
            if not reply.startswith("334"):
                return reply
            if not self.server._send(self.conn, reply):
                return CLOSE
            data = self.readline()
            if data is None:
                return CLOSE
        else:
            data = parts[2]
        reply = self.server._next("AUTHDATA", data)
        if reply.startswith("334"):
            if not self.server._send(self.conn, reply):
                return CLOSE
            if self.readline() is None:
                return CLOSE
            return self.server._next("AUTHEND", "")
        return reply

    def do_DATA(self, line: str) -> Optional[str]:
        reply = self.server._next("DATA", line)
        if not reply.startswith("354"):
            return reply
        if not self.server._send(self.conn, reply):
            return CLOSE
        chunks = []
        while True:
            raw = self.reader.readline(70000)
            if not raw:
                return CLOSE
            if raw == b".\r\n":
                break
            chunks.append(raw[1:] if raw.startswith(b".") else raw)
        self.server.messages.append(b"".join(chunks))
        self.server.log.append((self.tls, "<data %d bytes>" % len(self.server.messages[-1])))
        return self.server._next("DATAEND", "")
