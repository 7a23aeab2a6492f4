# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A scripted fake IMAP/POP3 server on 127.0.0.1 for unit tests.

A script is a list of steps played in order on one accepted connection:

    ("S", "* OK ready")          send a line (CRLF added); ``{tag}`` is the last client tag
    ("C", r"\\S+ CAPABILITY")    read one client line; it must fully match the regex
    ("RAW", b"bytes")            send bytes as they are (literals, missing CRLF, junk)
    ("TLS",)                     wrap the connection in TLS (STARTTLS or implicit TLS)
    ("HANG", seconds)            stay silent (a server that accepts and never answers)
    ("CLOSE",)                   close the connection now

Seed transcripts can be pasted almost verbatim: ``transcript()`` turns "S: ..." / "C: ..."
lines into steps. Mismatches are recorded in ``errors`` (the test asserts it is empty) and
the server then closes the connection, so a wrong client fails fast instead of hanging.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import socket
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any

_CERT_DIR: str | None = None
_LOCK = threading.Lock()


def _make_cert(directory: Path) -> None:
    """A throwaway self-signed EC certificate for localhost / 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake mail server")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def cert_dir() -> Path:
    global _CERT_DIR  # one certificate per test session is enough
    with _LOCK:
        if _CERT_DIR is None:
            path = tempfile.mkdtemp(prefix="fake-mailserver-")
            _make_cert(Path(path))
            _CERT_DIR = path
    return Path(_CERT_DIR)


def client_context() -> ssl.SSLContext:
    """A client context that trusts only the fake server's certificate."""
    ctx = ssl.create_default_context(cafile=str(cert_dir() / "cert.pem"))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def untrusting_context() -> ssl.SSLContext:
    """A client context that trusts nothing, to provoke certificate errors."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _server_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert_dir() / "cert.pem"), str(cert_dir() / "key.pem"))
    return ctx


def transcript(text: str) -> list:
    """Turn "S: ..." / "C: ..." lines into steps; C lines are regexes, S lines are literal."""
    steps = []
    for raw in text.strip().splitlines():
        line = raw.strip()
        if line.startswith("S:"):
            steps.append(("S", line[2:].strip()))
        elif line.startswith("C:"):
            steps.append(("C", line[2:].strip()))
    return steps


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


class FakeMailServer:
    """Plays one script on one connection; use as a context manager."""

    def __init__(self, steps: list, implicit_tls: bool = False, step_timeout: float = 5.0) -> None:
        self.steps = list(steps)
        self.implicit_tls = implicit_tls
        self.step_timeout = step_timeout
        self.received: list = []
        self.errors: list = []
        self.done = threading.Event()
        self._stop = threading.Event()
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(1)
        self._listener.settimeout(step_timeout)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._tag = ""

    def __enter__(self) -> FakeMailServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()  # cut HANG steps short so tests end quickly
        self._listener.close()
        self._thread.join(self.step_timeout + 5)

    def wait(self, timeout: float = 5.0) -> bool:
        return self.done.wait(timeout)

    def _serve(self) -> None:
        conn: Any = None
        try:
            conn, _unused = self._listener.accept()
            conn.settimeout(self.step_timeout)
            if self.implicit_tls:
                conn = _server_context().wrap_socket(conn, server_side=True)
            reader = _Reader(conn)
            for step in self.steps:
                conn, reader = self._play(step, conn, reader)
                if conn is None:
                    break
        except (OSError, ValueError) as exc:
            self.errors.append(f"server: {type(exc).__name__}: {exc}")
        finally:
            if conn is not None:
                conn.close()
            self.done.set()

    def _play(self, step: tuple, conn: Any, reader: _Reader) -> tuple:
        kind = step[0]
        if kind == "S":
            conn.sendall(step[1].replace("{tag}", self._tag).encode("utf-8") + b"\r\n")
        elif kind == "RAW":
            conn.sendall(step[1])
        elif kind == "C":
            line = reader.readline()
            self.received.append(line)
            if line is None or not re.fullmatch(step[1], line):
                self.errors.append(f"expected {step[1]!r}, got {line!r}")
                conn.close()
                return None, reader
            if " " in line:  # a command line: remember its tag (SASL lines have no space)
                self._tag = line.split(" ", 1)[0]
        elif kind == "TLS":
            conn = _server_context().wrap_socket(conn, server_side=True)
            reader = _Reader(conn)
        elif kind == "HANG":
            self._stop.wait(step[1])
        elif kind == "CLOSE":
            conn.close()
            return None, reader
        return conn, reader


class _Reader:
    """Line reader over a socket; unread bytes stay with it (lost on TLS upgrade, as they should)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.buf = b""

    def readline(self) -> str | None:
        while b"\n" not in self.buf:
            data = self.conn.recv(65536)
            if not data:
                return None
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.rstrip(b"\r").decode("utf-8", "replace")
