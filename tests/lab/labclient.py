"""Small Python API over the local M365 lab, for tests, demos and benchmarks.

    from tests.lab.labclient import Lab      # or: sys.path.insert(0, "tests/lab")
    lab = Lab.load(repo_root)
    token = lab.mint("app", "adele@contoso.test")
    lab.read_mailbox("bob@contoso.test")

Only talks to 127.0.0.1. Uses the lab CA explicitly and ignores proxy / CA
environment variables (REQUESTS_CA_BUNDLE would otherwise override `verify`).
"""
from __future__ import annotations

import base64
import email
import imaplib
import json
import os
import smtplib
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent


class LabNotRunning(RuntimeError):
    pass


def xoauth2(user: str, token: str) -> bytes:
    """The raw (not base64) SASL XOAUTH2 initial response."""
    return f"user={user}\x01auth=Bearer {token}\x01\x01".encode()


def read_env(path) -> dict:
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                k, v = line.split("=", 1)
                env[k] = v
    return env


@dataclass
class Lab:
    repo_root: Path
    env: dict
    identities: dict = field(repr=False)

    # -- loading -----------------------------------------------------------
    @classmethod
    def load(cls, repo_root=None) -> Lab:
        repo_root = Path(repo_root or HERE.parent.parent).resolve()
        state = Path(os.environ.get("LAB_STATE_DIR") or repo_root / ".lab")
        env_path = state / "env"
        if not env_path.exists():
            raise LabNotRunning(f"{env_path} missing: run make lab-up "
                                "(.venv/bin/python tests/lab/labctl.py up)")
        env = read_env(env_path)
        with open(env["LAB_IDENTITIES"]) as f:
            identities = json.load(f)
        lab = cls(repo_root, env, identities)
        if not lab.healthy():
            raise LabNotRunning("lab mock IdP does not answer: run make lab-up "
                                "(.venv/bin/python tests/lab/labctl.py up)")
        return lab

    # -- basics --------------------------------------------------------------
    @property
    def host(self) -> str:
        return self.env["LAB_HOST"]

    @property
    def ca_path(self) -> str:
        return self.env["O365_CA_PATH"]

    @property
    def tenant_id(self) -> str:
        return self.env["O365_TENANT_ID"]

    def port(self, name: str) -> int:
        """name: imap, imap_starttls, pop, pop_starttls, smtp, smtps, idp."""
        key = {"imap": "LAB_IMAP_PORT", "imaps": "LAB_IMAP_PORT",
               "imap_starttls": "LAB_IMAP_STARTTLS_PORT", "pop": "LAB_POP_PORT",
               "pop3": "LAB_POP_PORT", "pop_starttls": "LAB_POP_STARTTLS_PORT",
               "smtp": "LAB_SMTP_PORT", "smtps": "LAB_SMTPS_PORT",
               "idp": "LAB_IDP_PORT"}[name]
        return int(self.env[key])

    def authority(self, tenant=None) -> str:
        return f"{self.env['O365_AUTHORITY_HOST']}/{tenant or self.tenant_id}"

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_path)

    def http_session(self):
        """A requests.Session that verifies with the lab CA and ignores env settings."""
        import requests
        s = requests.Session()
        s.trust_env = False
        s.verify = self.ca_path
        return s

    def msal_kwargs(self, tenant=None) -> dict:
        """Keyword arguments for msal.ClientApplication subclasses."""
        return {"authority": self.authority(tenant), "instance_discovery": False,
                "http_client": self.http_session(), "validate_authority": False}

    def tenant(self, ref=None) -> dict:
        ref = (ref or self.tenant_id).lower()
        for t in self.identities["tenants"]:
            if ref in (t["id"], t["domain"]):
                return t
        raise KeyError(ref)

    def app(self, name, tenant=None) -> dict:
        for a in self.tenant(tenant)["apps"]:
            if a["name"] == name or a["client_id"] == name:
                return a
        raise KeyError(name)

    def fleet(self, n=None) -> list:
        size = int(self.env["LAB_FLEET_SIZE"])
        n = size if n is None else min(n, size)
        return [f"{self.env['LAB_FLEET_PREFIX']}{i:04d}@{self.env['LAB_DOMAIN']}"
                for i in range(1, n + 1)]

    # -- control surface -------------------------------------------------------
    def _call(self, method, path, body=None, timeout=10):
        url = f"{self.env['LAB_CONTROL_URL']}/{path.lstrip('/')}"
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        req = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                             urllib.request.HTTPSHandler(context=self.ssl_context()))
        try:
            with opener.open(req, timeout=timeout) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"lab control {method} {path}: {e.code} {e.read()[:300]!r}") from None

    def healthy(self) -> bool:
        try:
            return self._call("GET", "health", timeout=3).get("status") == "ok"
        except (OSError, RuntimeError):
            return False

    def mint(self, kind="app", user=None, claims=None, sign_with_other_key=False,
             lifetime=None, client_id=None, tenant=None) -> str:
        body = {"kind": kind, "user": user, "claims": claims or {},
                "sign_with_other_key": sign_with_other_key}
        if lifetime is not None:
            body["lifetime"] = lifetime
        if client_id:
            body["client_id"] = client_id
        if tenant:
            body["tenant"] = tenant
        return self._call("POST", "mint", body)["access_token"]

    def fault(self, endpoint="token", status=None, retry_after=None, delay=0, count=1) -> dict:
        return self._call("POST", "faults", {"endpoint": endpoint, "status": status,
                                             "retry_after": retry_after, "delay": delay,
                                             "count": count})

    def clear_faults(self):
        return self._call("POST", "faults/clear")

    def counters(self) -> dict:
        return self._call("GET", "counters")

    def reset_counters(self):
        return self._call("POST", "counters/reset")

    def approve_device(self, user_code, user):
        return self._call("POST", "device/approve", {"user_code": user_code, "user": user})

    def expire_refresh_tokens(self, user=None, refresh_token=None) -> int:
        return self._call("POST", "refresh_tokens/expire",
                          {"user": user, "refresh_token": refresh_token})["expired"]

    def settings(self, **kw) -> dict:
        """at_lifetime, rt_lifetime, dc_interval (seconds)."""
        return self._call("POST", "settings", kw)

    # -- services ------------------------------------------------------------------
    def _labctl(self, *args, timeout=60):
        r = subprocess.run([sys.executable, str(HERE / "labctl.py"), *args],
                           cwd=str(self.repo_root), capture_output=True, text=True,
                           timeout=timeout, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"labctl {' '.join(args)} failed: {r.stdout}{r.stderr}")
        return r.stdout

    def stop_service(self, name):
        """name: idp | dovecot | postfix. Ports refuse connections afterwards."""
        self._labctl(f"stop-{name}")

    def start_service(self, name):
        self._labctl(f"start-{name}")

    def stop_listener(self, name):
        """Close one port (imaps, imap, pop3s, pop3, smtp, smtps); the rest keeps running.
        imap/pop3 are the STARTTLS ports, smtp is submission STARTTLS."""
        self._labctl("stop-listener", name)

    def start_listener(self, name):
        self._labctl("start-listener", name)

    # -- mail ------------------------------------------------------------------------
    def imap_login(self, user, token=None, starttls=False, timeout=10) -> imaplib.IMAP4:
        token = token or self.mint("app", user)
        ctx = self.ssl_context()
        if starttls:
            c = imaplib.IMAP4(self.host, self.port("imap_starttls"), timeout=timeout)
            c.starttls(ssl_context=ctx)
        else:
            c = imaplib.IMAP4_SSL(self.host, self.port("imap"), ssl_context=ctx, timeout=timeout)
        calls = [0]

        def auth(_challenge):
            calls[0] += 1
            # on failure Dovecot sends a JSON error challenge: answer empty to get the NO
            return xoauth2(user, token) if calls[0] == 1 else b""

        try:
            c.authenticate("XOAUTH2", auth)
        except Exception:
            try:
                c.shutdown()
            except Exception:  # noqa: BLE001
                pass
            raise
        return c

    def read_mailbox(self, user, folder="INBOX", search="ALL", token=None, timeout=10,
                     wait_for=None, wait_timeout=10.0) -> list:
        """Messages in `folder` as email.message.Message objects (oldest first).

        wait_for: optional predicate(list) -> bool; re-reads (bounded) until true,
        e.g. wait_for=lambda msgs: any(m["Subject"] == subj for m in msgs).
        """
        deadline = time.monotonic() + wait_timeout
        while True:
            c = self.imap_login(user, token=token, timeout=timeout)
            try:
                c.select(folder, readonly=True)
                typ, data = c.search(None, search)
                msgs = []
                for num in (data[0] or b"").split():
                    typ, parts = c.fetch(num, "(BODY.PEEK[])")
                    for p in parts:
                        if isinstance(p, tuple):
                            msgs.append(email.message_from_bytes(p[1]))
            finally:
                try:
                    c.logout()
                except Exception:  # noqa: BLE001
                    pass
            if wait_for is None or wait_for(msgs) or time.monotonic() > deadline:
                return msgs
            time.sleep(0.1)

    def purge_mailbox(self, user, folder="INBOX", token=None, timeout=10) -> int:
        """Delete every message in `folder`; returns how many were removed."""
        c = self.imap_login(user, token=token, timeout=timeout)
        try:
            typ, data = c.select(folder)
            n = int(data[0] or 0)
            if n:
                c.store("1:*", "+FLAGS.SILENT", r"(\Deleted)")
                c.expunge()
            return n
        finally:
            try:
                c.logout()
            except Exception:  # noqa: BLE001
                pass

    def send_mail(self, user, to, subject="lab test", body="hello from the lab",
                  token=None, sender=None, implicit_tls=False, timeout=10):
        """Submit a message over SMTP AUTH XOAUTH2 (app token by default)."""
        token = token or self.mint("app", user)
        ctx = self.ssl_context()
        if implicit_tls:
            s = smtplib.SMTP_SSL(self.host, self.port("smtps"), context=ctx, timeout=timeout)
        else:
            s = smtplib.SMTP(self.host, self.port("smtp"), timeout=timeout)
            s.starttls(context=ctx)
        try:
            s.ehlo()
            code, resp = s.docmd("AUTH", "XOAUTH2 " + base64.b64encode(xoauth2(user, token)).decode())
            if code == 334:
                code, resp = s.docmd("")
            if code != 235:
                raise smtplib.SMTPAuthenticationError(code, resp)
            sender = sender or user
            to = [to] if isinstance(to, str) else list(to)
            msg = (f"From: {sender}\r\nTo: {', '.join(to)}\r\nSubject: {subject}\r\n"
                   f"Message-ID: <{time.time_ns()}@lab.test>\r\n\r\n{body}\r\n")
            s.sendmail(sender, to, msg.encode())
        finally:
            try:
                s.quit()
            except Exception:  # noqa: BLE001
                pass
