"""Fault-injection matrix: every fault ends in the right category, within timeout (+ margin, measured),
with no duplicate send (DATA commands counted at the fake) and, in fleet mode, exactly one result per
mailbox, in order. Named test_faults.py: it stops and restarts lab services (run last, lab put back)."""
from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

from ansible_collections.mailops.o365.tests.unit.fakes import mailserver  # the module FakeSmtpServer uses
from tests.integration import support
from tests.reliability.relsupport import closed_port, run_module
from tests.unit.fakes.smtpserver import CLOSE, HANG, FakeSmtpServer

pytestmark = pytest.mark.lab

TIMEOUT = 3.0
MARGIN = 10.0           # module start-up (Ansible imports) on a loaded 2-core machine
FLEET = 20
FAULTED = (1, 6, 11, 16)


# ----------------------------------------------------------------------------- certificates

def _pki(directory: str) -> dict:
    """A test CA, and leaves: good (127.0.0.1), expired, wrong host name; plus an untrusted self-signed one."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(subject, key, issuer, issuer_key, start, end, sans, ca=False):
        builder = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(start).not_valid_after(end)
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def write(label, certificate, key):
        path = os.path.join(directory, label + ".pem")
        with open(path, "wb") as handle:
            handle.write(certificate.public_bytes(serialization.Encoding.PEM))
            handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        return path

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = cert("reliability test CA", ca_key, "reliability test CA", ca_key, now - datetime.timedelta(days=1),
              now + datetime.timedelta(days=1), None, ca=True)
    local = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    out = {}
    for label, start, end, sans in (
            ("good", now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1), local),
            ("expired", now - datetime.timedelta(days=10), now - datetime.timedelta(days=1), local),
            ("wronghost", now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1),
             [x509.DNSName("mail.other.example")])):
        key = ec.generate_private_key(ec.SECP256R1())
        out[label] = write(label, cert(label, key, "reliability test CA", ca_key, start, end, sans), key)
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    out["untrusted"] = write("untrusted", cert("rogue", rogue_key, "rogue", rogue_key, now - datetime.timedelta(hours=1),
                                               now + datetime.timedelta(days=1), local, ca=True), rogue_key)
    # The bundle the runs trust: the lab CA, this test CA and the unit fakes' self-signed certificate.
    bundle = os.path.join(directory, "bundle.pem")
    with open(bundle, "wb") as handle:
        for path in (support.lab_env()["O365_CA_PATH"], str(mailserver.cert_dir() / "cert.pem")):
            handle.write(open(path, "rb").read())
        handle.write(ca.public_bytes(serialization.Encoding.PEM))
    out["bundle"] = bundle
    return out


def server_context(pem: str, max_version=None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pem)
    if max_version is not None:
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.maximum_version = max_version
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    return ctx


# ----------------------------------------------------------------------------- a scripted IMAP server

class ImapFault:
    """Threaded 127.0.0.1 server; ``mode`` picks the fault. Many connections at once (fleet)."""

    def __init__(self, mode: str, tls: ssl.SSLContext | None = None) -> None:
        self.mode, self.tls = mode, tls
        self.connections = 0
        self._stop = threading.Event()
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self._sock.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _unused = self._sock.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _hang(self) -> None:
        self._stop.wait(30)

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(30)
        try:
            if self.mode == "silent":
                return self._hang()
            if self.tls is not None:
                try:
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    return None
            reader = conn.makefile("rb")
            if self.mode == "bye":
                conn.sendall(b"* BYE [UNAVAILABLE] Server shutting down\r\n")
                return None
            conn.sendall(b"* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2 SASL-IR] fake ready\r\n")
            line = reader.readline(100000)
            tag = line.split(b" ", 1)[0] if line else b"A001"
            if self.mode == "drop_auth":
                return None
            if self.mode == "hang_auth":
                return self._hang()
            if self.mode == "limit":
                conn.sendall(tag + b" NO [LIMIT] Too many concurrent connections\r\n")
                reader.readline(1000)
            return None
        finally:
            try:
                conn.close()
            except OSError:
                pass


# ----------------------------------------------------------------------------- helpers

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return _pki(str(tmp_path_factory.mktemp("fault-pki")))


@pytest.fixture(scope="module")
def token():
    return support.mint("app", support.lab_env()["LAB_MAILBOX"])


def fleet_args(env: dict, fault_port: int, security: str = "tls", fault_security: str | None = None,
               protocol_port: str = "LAB_IMAP_PORT") -> tuple[list, dict]:
    mailboxes = ["fleet%04d@contoso.test" % (i + 1) for i in range(FLEET)]
    entries = []
    for i, address in enumerate(mailboxes):
        if i in FAULTED:
            entries.append({"address": address, "host": "127.0.0.1", "port": fault_port,
                            "security": fault_security or security})
        else:
            entries.append(address)
    args = {"mailboxes": entries, "host": env["LAB_HOST"], "port": int(env[protocol_port]), "security": security,
            "timeout": TIMEOUT, "max_workers": 16, "fail_on_error": False}
    return mailboxes, args


def assert_fleet(out: dict, mailboxes: list, category: str, seconds: float, timeout: float = TIMEOUT) -> None:
    results = out["results"]
    assert [r["mailbox"] for r in results] == mailboxes, "lost, duplicated or reordered results"
    for i, result in enumerate(results):
        if i in FAULTED:
            assert not result["ok"] and result["error"]["category"] == category, (i, result)
            total = (result.get("timings") or {}).get("total")
            assert total is None or total <= (2 * timeout + 1.5) * 1000, (i, result["timings"])
        else:
            assert result["ok"], (i, result)
    assert out["summary"]["total"] == FLEET and out["summary"]["failed"] == len(FAULTED)
    assert out["summary"]["by_category"] == {category: len(FAULTED)}
    assert seconds < 2 * timeout + MARGIN, "fleet run took %.1fs" % seconds


def env_for(pki: dict, token: str, **extra) -> dict:
    env = support.module_env({"O365_CA_PATH": pki["bundle"], "O365_ACCESS_TOKEN": token})
    env.update(extra)
    return env


# ----------------------------------------------------------------------------- mail-side faults (fleet)

IMAP_FAULTS = [
    # (id, server mode, TLS certificate label / max version, expected category)
    ("tcp-accept-then-silent", "silent", None, None, "timeout"),
    ("drop-mid-auth", "drop_auth", "good", None, "connection"),
    ("hang-mid-auth", "hang_auth", "good", None, "timeout"),
    ("imap-NO-LIMIT-throttled", "limit", "good", None, "throttled"),
    ("bye-unavailable-at-greeting", "bye", "good", None, "throttled"),
    ("tls-1.1-only-server", "limit", "good", "TLSv1_1", "tls"),
    ("tls-1.0-only-server", "limit", "good", "TLSv1", "tls"),
    ("untrusted-certificate", "limit", "untrusted", None, "tls"),
    ("expired-certificate", "limit", "expired", None, "tls"),
    ("wrong-host-name", "limit", "wronghost", None, "tls"),
]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("case", IMAP_FAULTS, ids=[c[0] for c in IMAP_FAULTS])
def test_imap_fleet_fault(case, pki, token):
    _unused, mode, cert, max_version, category = case
    tls = server_context(pki[cert], getattr(ssl.TLSVersion, max_version) if max_version else None) if cert else None
    server = ImapFault(mode, tls)
    try:
        env = support.lab_env()
        mailboxes, args = fleet_args(env, server.port)
        rc, out, seconds = run_module("o365_imap_check", args, env=env_for(pki, token), timeout=120)
    finally:
        server.close()
    assert rc == 0, out
    assert_fleet(out, mailboxes, category, seconds)
    if category == "tls":
        wrong = [r["error"]["message"] for i, r in enumerate(out["results"]) if i in FAULTED]
        expect = {"wronghost": "match", "expired": "expired", "untrusted": "certificate",
                  "good": "ersion"}[cert]
        assert all(expect in w.lower() or expect in w for w in wrong), wrong


def test_closed_port_in_fleet(pki, token):
    env = support.lab_env()
    mailboxes, args = fleet_args(env, closed_port())
    rc, out, seconds = run_module("o365_imap_check", args, env=env_for(pki, token), timeout=120)
    assert_fleet(out, mailboxes, "connection", seconds)


def test_pop_silent_server_in_fleet(pki, token):
    server = ImapFault("silent")
    try:
        env = support.lab_env()
        mailboxes, args = fleet_args(env, server.port, protocol_port="LAB_POP_PORT")
        rc, out, seconds = run_module("o365_pop_check", args, env=env_for(pki, token), timeout=120)
    finally:
        server.close()
    assert_fleet(out, mailboxes, "timeout", seconds)


SMTP_CHECK_FAULTS = [
    ("smtp-421-at-greeting", {"GREETING": "421 4.3.2 Service not available"}, "throttled"),
    ("smtp-432-throttled-at-auth", {"AUTHDATA": "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded"},
     "throttled"),
    ("smtp-silent-after-ehlo", {"STARTTLS": HANG}, "timeout"),
]


@pytest.mark.parametrize("case", SMTP_CHECK_FAULTS, ids=[c[0] for c in SMTP_CHECK_FAULTS])
def test_smtp_check_fleet_fault(case, pki, token):
    _unused, script, category = case
    with FakeSmtpServer(script, auth="XOAUTH2", hang_seconds=TIMEOUT * 3) as server:
        env = support.lab_env()
        mailboxes, args = fleet_args(env, server.port, security="starttls", protocol_port="LAB_SMTP_PORT")
        rc, out, seconds = run_module("o365_smtp_check", args, env=env_for(pki, token), timeout=120)
        assert server.count("DATA") == 0
    assert_fleet(out, mailboxes, category, seconds)


# ----------------------------------------------------------------------------- sending faults (DATA counted)

SEND_FAULTS = [
    # (id, script, category, delivery of message 1, DATA commands at the fake)
    ("rcpt-451-temporary", {"RCPT": "451 4.3.2 Temporary failure"}, None, "not_sent", 0),
    ("rcpt-550-unknown", {"RCPT": "550 5.1.10 RESOLVER.ADR.RecipientNotFound"}, None, "refused", 0),
    ("mail-432-throttled", {"MAIL": "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded"}, "throttled",
     "not_sent", 0),
    ("after-data-451", {"DATAEND": "451 4.7.500 Server busy, try again later"}, None, "not_sent", 1),
    ("after-data-554", {"DATAEND": "554 5.6.0 Corrupt message content"}, None, "refused", 1),
    ("drop-after-data", {"DATAEND": CLOSE}, "connection", "unknown", 1),
    ("silent-after-data", {"DATAEND": HANG}, "timeout", "unknown", 1),
]


@pytest.mark.parametrize("case", SEND_FAULTS, ids=[c[0] for c in SEND_FAULTS])
def test_send_fault_no_duplicate(case, pki, token):
    name, script, category, delivery, datas = case
    with FakeSmtpServer(script, auth="XOAUTH2", hang_seconds=TIMEOUT * 4) as server:
        args = {"sender": "adele@contoso.test", "host": "127.0.0.1", "port": server.port, "timeout": TIMEOUT,
                "messages": [{"to": ["bob@contoso.test"], "subject": "m%d" % i, "body": "b"} for i in range(3)],
                "max_per_minute": 10000}
        rc, out, seconds = run_module("o365_smtp_send", args, env=env_for(pki, token), timeout=120)
        data_commands = server.count("DATA")
        results = out.get("results") or []
    assert rc != 0 and len(results) == 3, out
    assert [r["index"] for r in results] == [0, 1, 2]
    assert results[0]["delivery"] == delivery, results[0]
    if category:
        assert results[0]["error"]["category"] == category, results[0]
    # No message is sent twice: DATA at most once per message, and never again after an unknown outcome.
    per_message = datas if delivery == "unknown" else datas * 3
    assert data_commands == per_message, (data_commands, server.verbs())
    if delivery == "unknown":
        assert all(r["delivery"] == "not_sent" and "not attempted" in r["error"]["message"] for r in results[1:])
    # Retries of temporary failures are bounded too (3 attempts with backoff, per message).
    assert seconds < 3 * (TIMEOUT + 7) + MARGIN, seconds


# ----------------------------------------------------------------------------- IdP faults (lab knobs)

def _idp_fleet(env_extra: dict, cache: str) -> tuple[int, dict, float]:
    env = support.module_env({"O365_TOKEN_CACHE_PATH": cache})
    env.update(env_extra)
    mailboxes = ["fleet%04d@contoso.test" % (i + 1) for i in range(FLEET)]
    args = {"mailboxes": mailboxes, "host": support.lab_env()["LAB_HOST"], "port": int(support.lab_env()["LAB_IMAP_PORT"]),
            "timeout": TIMEOUT, "fail_on_error": False}
    rc, out, seconds = run_module("o365_imap_check", args, env=env, timeout=120)
    assert [r["mailbox"] for r in out["results"]] == mailboxes
    return rc, out, seconds


IDP_FAULTS = [
    # (id, fault, expected category or None for recovered, minimum seconds)
    ("idp-429-retry-after-recovers", {"endpoint": "token", "status": 429, "retry_after": 1, "count": 1}, None, 1.0),
    ("idp-429-persistent", {"endpoint": "token", "status": 429, "retry_after": 1, "count": 50}, "throttled", 0),
    ("idp-500-persistent", {"endpoint": "token", "status": 500, "count": 50}, "token", 0),
    ("idp-slow-beyond-timeout", {"endpoint": "token", "delay": TIMEOUT + 3, "count": 50}, "token", TIMEOUT - 0.5),
    ("idp-discovery-503", {"endpoint": "discovery", "status": 503, "count": 50}, "token", 0),
]


@pytest.mark.parametrize("case", IDP_FAULTS, ids=[c[0] for c in IDP_FAULTS])
def test_idp_fault(case, lab_clean, tmp_path):
    _unused, fault, category, minimum = case
    support.lab_call("POST", "/faults", fault)
    try:
        rc, out, seconds = _idp_fleet({}, str(tmp_path / "cache.json"))
    finally:
        support.lab_call("POST", "/faults/clear")
    results = out["results"]
    if category is None:
        assert all(r["ok"] for r in results), out["summary"]
    else:
        assert {r["error"]["category"] for r in results} == {category}, out["summary"]
        assert out["summary"]["by_category"] == {category: FLEET}
    assert minimum <= seconds < TIMEOUT + MARGIN, seconds


def _labctl(*args: str) -> None:
    subprocess.run([sys.executable, os.path.join(support.ROOT, "tests", "lab", "labctl.py"), *args],
                   check=True, timeout=120, capture_output=True)


def test_idp_down(lab, tmp_path):
    _labctl("stop-idp")
    try:
        rc, out, seconds = _idp_fleet({}, str(tmp_path / "cache.json"))
    finally:
        _labctl("start-idp")
    assert out["summary"]["by_category"] == {"token": FLEET}
    assert "cannot reach Entra ID" in out["results"][0]["error"]["message"]
    assert seconds < TIMEOUT + MARGIN


def test_mail_listener_down(lab, pki, token):
    env = support.lab_env()
    _labctl("stop-listener", "imap")       # the STARTTLS port; implicit TLS keeps running
    try:
        mailboxes, args = fleet_args(env, int(env["LAB_IMAP_STARTTLS_PORT"]), fault_security="starttls")
        rc, out, seconds = run_module("o365_imap_check", args, env=env_for(pki, token), timeout=120)
    finally:
        _labctl("start-listener", "imap")
    assert_fleet(out, mailboxes, "connection", seconds)


def test_lab_is_back(lab):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if subprocess.run([sys.executable, os.path.join(support.ROOT, "tests", "lab", "labctl.py"), "status"],
                          capture_output=True, timeout=60, check=False).returncode == 0:
            return
        time.sleep(0.5)
    pytest.fail("the lab did not come back after the fault tests")


def test_matrix_size():
    assert len(IMAP_FAULTS) + 2 + len(SMTP_CHECK_FAULTS) + len(SEND_FAULTS) + len(IDP_FAULTS) + 2 >= 20
