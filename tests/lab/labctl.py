"""Control the local Microsoft 365 lab (mock Entra ID + Dovecot + Postfix).

Usage (from the repo root):
    .venv/bin/python tests/lab/labctl.py up|down|status|restart|clean|ps
    .venv/bin/python tests/lab/labctl.py stop-SERVICE|start-SERVICE   (idp, dovecot, postfix)
    .venv/bin/python tests/lab/labctl.py stop-listener|start-listener NAME
                                   (imaps, imap, pop3s, pop3, smtp, smtps)

Everything lives under .lab/ (LAB_STATE_DIR overrides) and binds 127.0.0.1 only.
"""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import itertools
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
LAB_NS = uuid.UUID("6f1d2c4e-0000-4000-8000-00000000cafe")
HOST = "127.0.0.1"

PORTS = {  # env var -> default
    "LAB_IDP_PORT": 18443,
    "LAB_IMAP_PORT": 19930,
    "LAB_IMAP_STARTTLS_PORT": 11430,
    "LAB_POP_PORT": 19950,
    "LAB_POP_STARTTLS_PORT": 11100,
    "LAB_SMTP_PORT": 15870,
    "LAB_SMTPS_PORT": 14650,
}
SERVICE_PORTS = {
    "idp": ["LAB_IDP_PORT"],
    "dovecot": ["LAB_IMAP_PORT", "LAB_IMAP_STARTTLS_PORT", "LAB_POP_PORT", "LAB_POP_STARTTLS_PORT"],
    "postfix": ["LAB_SMTP_PORT", "LAB_SMTPS_PORT"],
}
SCOPES = ["IMAP.AccessAsUser.All", "POP.AccessAsUser.All", "SMTP.Send"]
ROLES = ["IMAP.AccessAsApp", "POP.AccessAsApp", "SMTP.SendAsApp"]
SERVICE_GRANT = {"imap": ("IMAP.AccessAsUser.All", "IMAP.AccessAsApp"),
                 "pop3": ("POP.AccessAsUser.All", "POP.AccessAsApp"),
                 "smtp": ("SMTP.Send", "SMTP.SendAsApp")}
LISTENERS = {  # name -> (service, port env var)
    "imaps": ("dovecot", "LAB_IMAP_PORT"), "imap": ("dovecot", "LAB_IMAP_STARTTLS_PORT"),
    "pop3s": ("dovecot", "LAB_POP_PORT"), "pop3": ("dovecot", "LAB_POP_STARTTLS_PORT"),
    "smtp": ("postfix", "LAB_SMTP_PORT"), "smtps": ("postfix", "LAB_SMTPS_PORT"),
}
MAIL_USER = "mail"          # owner of the maildirs (uid 8 on Debian)
SMTP_DISABLED_TEXT = ("5.7.139 Authentication unsuccessful, SmtpClientAuthentication is "
                      "disabled for the Tenant.")
PLAIN_MECHANISMS = "plain login"   # password SASL, offered next to xoauth2 (as Exchange does)


def state_dir() -> Path:
    return Path(os.environ.get("LAB_STATE_DIR") or (REPO / ".lab")).resolve()


def ports() -> dict:
    return {k: int(os.environ.get(k, v)) for k, v in PORTS.items()}


def log(msg):
    print(f"labctl: {msg}", flush=True)


# ---------------------------------------------------------------------------
# identities
# ---------------------------------------------------------------------------
def guid(*parts) -> str:
    return str(uuid.uuid5(LAB_NS, "/".join(parts)))


def resolve_identities() -> dict:
    with open(HERE / "identities.yml") as f:
        spec = yaml.safe_load(f)
    fleet = spec.get("fleet", {})
    fleet_prefix = os.environ.get("LAB_FLEET_PREFIX", fleet.get("prefix", "fleet"))
    fleet_size = int(os.environ.get("LAB_FLEET_SIZE", fleet.get("size", 5000)))
    tenants = []
    main_id = None
    for t in spec["tenants"]:
        t = json.loads(json.dumps(t))
        t.setdefault("display_name", t["domain"])
        for m in t["mailboxes"]:
            m["address"] = m["address"].lower()
            m["oid"] = guid("user", m["address"])
        if fleet.get("tenant", "") == t["domain"]:
            t["mailboxes"].extend(
                {"address": f"{fleet_prefix}{i:04d}@{t['domain']}", "oid": guid("user", fleet_prefix, str(i)),
                 "fleet": True}
                for i in range(1, fleet_size + 1))
        for a in t["apps"]:
            a["sp_object_id"] = guid("sp", a["client_id"])
        if t.get("main"):
            main_id = t["id"]
        tenants.append(t)
    et = spec.get("extra_tenants", {})
    for n in range(1, int(et.get("count", 0)) + 1):
        domain = et.get("domain", "tenant{n:02d}.test").format(n=n)
        tid = guid("tenant", domain)
        t = {"domain": domain, "id": tid, "display_name": f"Lab tenant {n:02d}", "generated": True,
             "mailboxes": [{"address": f"{et.get('mailbox_prefix', 'user')}{i:03d}@{domain}",
                            "oid": guid("user", domain, str(i))}
                           for i in range(1, int(et.get("mailboxes", 100)) + 1)],
             "apps": [{"name": f"app-{domain}", "client_id": guid("app", domain), "kind": "app",
                       "secret": "lab~" + hmac.new(b"mailops-lab", domain.encode(),
                                                   hashlib.sha256).hexdigest()[:32],
                       "roles": list(ROLES), "mailboxes": "all",
                       "sp_object_id": guid("sp", domain)}]}
        tenants.append(t)
    return {"main_tenant": main_id, "fleet_prefix": fleet_prefix, "fleet_size": fleet_size,
            "settings": spec.get("settings", {}), "tenants": tenants}


def app_mailboxes(tenant, app):
    if app.get("mailboxes") == "all":
        return [m["address"] for m in tenant["mailboxes"]]
    return [a.lower() for a in app.get("mailboxes") or []]


# ---------------------------------------------------------------------------
# PKI
# ---------------------------------------------------------------------------
def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mailops lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, data, mode=0o644):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _pem_key(key, password=None):
    enc = (serialization.BestAvailableEncryption(password.encode()) if password
           else serialization.NoEncryption())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def ensure_pki(lab: Path, identities: dict):
    pki = lab / "pki"
    idp = lab / "idp"
    now = dt.datetime.now(dt.timezone.utc)
    if not (pki / "ca.pem").exists():
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (x509.CertificateBuilder().subject_name(_name("mailops lab CA"))
              .issuer_name(_name("mailops lab CA")).public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(days=1))
              .not_valid_after(now + dt.timedelta(days=3650))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                             critical=True)
              .sign(ca_key, hashes.SHA256()))
        srv_key = ec.generate_private_key(ec.SECP256R1())
        import ipaddress
        srv = (x509.CertificateBuilder().subject_name(_name("127.0.0.1"))
               .issuer_name(ca.subject).public_key(srv_key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=1))
               .not_valid_after(now + dt.timedelta(days=825))
               .add_extension(x509.SubjectAlternativeName([
                   x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                   x509.DNSName("localhost")]), critical=False)
               .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                              critical=False)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .sign(ca_key, hashes.SHA256()))
        ca_pem = ca.public_bytes(serialization.Encoding.PEM)
        srv_pem = srv.public_bytes(serialization.Encoding.PEM)
        _write(pki / "ca.key", _pem_key(ca_key), 0o600)
        _write(pki / "server.key", _pem_key(srv_key), 0o600)
        _write(pki / "server.pem", srv_pem)
        _write(pki / "server-chain.pem", srv_pem + ca_pem)
        _write(pki / "ca.pem", ca_pem)
    if not (idp / "signing-key.pem").exists():
        for name in ("signing-key.pem", "other-key.pem"):
            k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            _write(idp / name, _pem_key(k), 0o600)
        k = serialization.load_pem_private_key((idp / "signing-key.pem").read_bytes(), None)
        der = k.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
        kid = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()
        _write(idp / "kid", kid + "\n")
    # app certificates
    for t in identities["tenants"]:
        for app in t["apps"]:
            if not app.get("certificate"):
                continue
            base = pki / f"app-{app['name']}"
            if not (base.with_suffix(".pem")).exists():
                key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                cert = (x509.CertificateBuilder().subject_name(_name(app["name"]))
                        .issuer_name(_name(app["name"])).public_key(key.public_key())
                        .serial_number(x509.random_serial_number())
                        .not_valid_before(now - dt.timedelta(days=1))
                        .not_valid_after(now + dt.timedelta(days=730))
                        .sign(key, hashes.SHA256()))
                cpem = cert.public_bytes(serialization.Encoding.PEM)
                pw = app.get("cert_password", "lab")
                _write(base.with_suffix(".pem"), _pem_key(key) + cpem, 0o600)
                _write(base.with_suffix(".enc.pem"), _pem_key(key, pw) + cpem, 0o600)
                _write(base.with_suffix(".pfx"), pkcs12.serialize_key_and_certificates(
                    app["name"].encode(), key, cert, None,
                    serialization.BestAvailableEncryption(pw.encode())), 0o600)
                _write(base.with_suffix(".crt"), cpem)
            cert = x509.load_pem_x509_certificate(base.with_suffix(".crt").read_bytes())
            der = cert.public_bytes(serialization.Encoding.DER)
            app["cert_pem"] = cert.public_bytes(serialization.Encoding.PEM).decode()
            app["cert_thumbprint"] = hashlib.sha1(der).hexdigest().upper()
            app["cert_x5t"] = base64.urlsafe_b64encode(hashlib.sha1(der).digest()).rstrip(b"=").decode()
            app["cert_x5t_s256"] = base64.urlsafe_b64encode(
                hashlib.sha256(der).digest()).rstrip(b"=").decode()
            app["cert_path"] = str(base.with_suffix(".pem"))
            app["cert_path_encrypted"] = str(base.with_suffix(".enc.pem"))
            app["cert_pfx_path"] = str(base.with_suffix(".pfx"))
            app["cert_password"] = app.get("cert_password", "lab")


# ---------------------------------------------------------------------------
# SMTP password login (one benchmark mailbox, `smtp_password: generated`)
# ---------------------------------------------------------------------------
def plain_mailboxes(ids: dict) -> list:
    """Mailboxes with an SMTP password (identities.yml `smtp_password: generated`): at most one."""
    out = [m for t in ids["tenants"] for m in t["mailboxes"] if m.get("smtp_password")]
    if len(out) > 1:
        raise SystemExit("identities.yml: only one mailbox may have smtp_password "
                         f"({', '.join(m['address'] for m in out)})")
    return out


def ensure_plain_passwords(lab: Path, ids: dict):
    """Generate (once per state dir, kept in <lab>/plain-passwords.json, 0600) the password of
    the SMTP password mailbox and store it in the resolved identities (`smtp_password`)."""
    path = lab / "plain-passwords.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    for m in plain_mailboxes(ids):
        if not isinstance(known.get(m["address"]), str):
            known[m["address"]] = "lab-" + secrets.token_urlsafe(18)
        m["smtp_password"] = known[m["address"]]
    _write(path, json.dumps(known, indent=1) + "\n", 0o600)


def _ssha512(password: str) -> str:
    salt = secrets.token_bytes(8)
    digest = hashlib.sha512(password.encode() + salt).digest()
    return "{SSHA512}" + base64.b64encode(digest + salt).decode()


# ---------------------------------------------------------------------------
# Dovecot
# ---------------------------------------------------------------------------
def _perms(items):
    """Every ordering of every non-empty subset, space-joined (scp) / flattened (roles)."""
    out = []
    for r in range(1, len(items) + 1):
        for combo in itertools.permutations(items, r):
            out.append(combo)
    return out


def disabled_listeners(lab: Path) -> set:
    f = lab / "disabled-listeners"
    return set(f.read_text().split()) if f.exists() else set()


def gen_dovecot(lab: Path, ids: dict, p: dict):
    off = disabled_listeners(lab)
    # port 0 disables a Dovecot inet_listener (stop-listener knob)
    lp = {k: (0 if any(n in off and LISTENERS[n][1] == k for n in LISTENERS) else v)
          for k, v in p.items()}
    d = lab / "dovecot"
    for sub in ("run", "state", "keys"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    mail = lab / "mail"
    mail.mkdir(exist_ok=True)
    import pwd
    pw = pwd.getpwnam(MAIL_USER)
    os.chown(mail, pw.pw_uid, pw.pw_gid)
    os.chmod(mail, 0o770)
    # JWT verification keys: <azp or default>/RS256/<kid>
    kid = (lab / "idp" / "kid").read_text().strip()
    key = serialization.load_pem_private_key((lab / "idp" / "signing-key.pem").read_bytes(), None)
    pub = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    azps = ["default"] + [a["client_id"] for t in ids["tenants"] for a in t["apps"]]
    for azp in azps:
        _write(d / "keys" / azp / "RS256" / kid, pub)
    users, access, deny = [], ["delegated"], {"imap": [], "pop3": [], "smtp": [], "submission": []}
    for t in ids["tenants"]:
        for m in t["mailboxes"]:
            a = m["address"]
            local, dom = a.split("@")
            users.append(f"{a}::{pw.pw_uid}:{pw.pw_gid}::{mail}/{dom}/{local}::")
            for svc in m.get("disabled", []):
                deny[svc].append(f"{svc}/{a}::::::")
            for delegate in m.get("full_access", []):
                access.append(f"fullaccess/{delegate.lower()}/{a}")
        for app in t["apps"]:
            if app.get("kind") == "app":
                access.extend(f"{app['client_id']}/{mb}" for mb in app_mailboxes(t, app))
    _write(d / "users", "\n".join(users) + "\n")
    # SMTP password login: keyed "<service>/<user>", so only service smtp (Postfix) finds it
    plain = [f"smtp/{m['address']}:{_ssha512(m['smtp_password'])}::::::"
             for m in plain_mailboxes(ids) if isinstance(m.get("smtp_password"), str)]
    _write(d / "plain-smtp", "".join(f"{x}\n" for x in plain), 0o640)
    import grp
    os.chown(d / "plain-smtp", 0, grp.getgrnam("dovecot").gr_gid)  # the auth process reads it
    _write(d / "access", "\n".join(f"{x}::::::" for x in access) + "\n")
    for svc, lines in deny.items():
        _write(d / f"deny-{svc}", "\n".join(lines) + ("\n" if lines else ""))
    # per-protocol grants: the scp (delegated) or roles (app) value must carry the protocol
    scp_sets = _perms(SCOPES)
    role_sets = _perms(ROLES)
    for svc, (scope, role) in SERVICE_GRANT.items():
        lines = [" ".join(c) for c in scp_sets if scope in c]
        # Dovecot 2.3 flattens a JSON array claim (roles) by joining with TAB
        lines += ["\t".join(c) for c in role_sets if role in c]
        lines = list(dict.fromkeys(lines))
        _write(d / f"grants-{svc}", "".join(f"{x}::::::\n" for x in lines))
    issuers = " ".join(f"https://sts.windows.net/{t['id']}/" for t in ids["tenants"])
    common = (f"introspection_mode = local\n"
              f"local_validation_key_dict = fs:posix:prefix={d}/keys/\n"
              f"issuers = {issuers}\n")
    _write(d / "oauth2-delegated.conf.ext", common +
           "client_id = https://outlook.office.com\n"
           "username_attribute = upn\n"
           "active_attribute = idtyp\nactive_value = user\n"
           "pass_attrs = lab_grant=%{oauth2:scp} lab_access=delegated\n")
    _write(d / "oauth2-delegated-fullaccess.conf.ext", common +
           "client_id = https://outlook.office.com\n"
           "username_attribute = idtyp\nusername_format = user\n"
           "active_attribute = idtyp\nactive_value = user\n"
           "pass_attrs = lab_grant=%{oauth2:scp} lab_access=fullaccess/%{oauth2:upn}/%Lu\n")
    _write(d / "oauth2-app.conf.ext", common +
           "client_id = https://outlook.office365.com\n"
           "username_attribute = idtyp\nusername_format = app\n"
           "active_attribute = idtyp\nactive_value = app\n"
           "pass_attrs = lab_grant=%{oauth2:roles} lab_access=%{oauth2:appid}/%Lu\n")
    pki = lab / "pki"
    # 1. per-mailbox protocol switches (Set-CASMailbox -ImapEnabled $false ...): one deny
    # passdb per protocol, keyed "<service>/<user>", so each can carry its own reply text
    deny_passdbs = "".join(f"""passdb {{
  driver = passwd-file
  args = username_format=%s/%Lu {d}/deny-{svc}
  deny = yes
  override_fields = reason=%{{env:LAB_DENY_REASON_{svc.upper()}}}
}}
""" for svc in ("imap", "pop3", "smtp"))
    conf = f"""# generated by tests/lab/labctl.py -- do not edit
instance_name = {instance_name(lab)}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
protocols = imap pop3 lmtp
listen = 127.0.0.1
default_internal_user = dovecot
default_internal_group = dovecot
default_login_user = dovenull
first_valid_uid = {pw.pw_uid}
last_valid_uid = {pw.pw_uid}
first_valid_gid = {pw.pw_gid}
mail_location = maildir:~/Maildir
mail_privileged_group =
ssl = yes
ssl_cert = <{pki}/server-chain.pem
ssl_key = <{pki}/server.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = xoauth2 {PLAIN_MECHANISMS}
auth_failure_delay = 0
auth_cache_size = 0
auth_verbose = yes
auth_debug = no
auth_debug_passwords = no
auth_username_format = %Lu
mail_max_userip_connections = 100000
mailbox_list_index = no
import_environment = TZ LAB_DENY_REASON_SMTP LAB_DENY_REASON_IMAP LAB_DENY_REASON_POP3

protocol imap {{
  login_greeting = The Microsoft Exchange IMAP4 service is ready.
  mail_max_userip_connections = 100000
}}
protocol pop3 {{
  login_greeting = The Microsoft Exchange POP3 service is ready.
  mail_max_userip_connections = 100000
  pop3_uidl_format = %08Xu%08Xv
}}
protocol lmtp {{
  auth_username_format = %Lu
}}

service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {lp['LAB_IMAP_STARTTLS_PORT']}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {lp['LAB_IMAP_PORT']}
    ssl = yes
  }}
  service_count = 0
  process_min_avail = 2
  process_limit = 8
  client_limit = 1000
  vsz_limit = 512M
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {lp['LAB_POP_STARTTLS_PORT']}
  }}
  inet_listener pop3s {{
    address = 127.0.0.1
    port = {lp['LAB_POP_PORT']}
    ssl = yes
  }}
  service_count = 0
  process_min_avail = 2
  process_limit = 8
  client_limit = 1000
  vsz_limit = 512M
}}
service imap {{
  process_limit = 2048
}}
service pop3 {{
  process_limit = 2048
}}
service lmtp {{
  unix_listener lmtp {{
    mode = 0666
  }}
}}
service auth {{
  unix_listener auth-client {{
    mode = 0600
  }}
  unix_listener auth-postfix {{
    mode = 0666
  }}
  client_limit = 4096
}}
# no auth penalty for failed logins (2..15 s per failure from 127.0.0.1 would
# slow tests): the auth process cannot open anvil's penalty socket -> disabled
service anvil {{
  client_limit = 4096
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}

# 1. per-mailbox protocol switches (Set-CASMailbox -ImapEnabled $false ...)
{deny_passdbs}
# 1b. password (PLAIN/LOGIN) logins: only the smtp/<user> keys of plain-smtp (one benchmark
#     mailbox, service smtp = Postfix only). Terminal for these mechanisms: any other user or
#     service (imap, pop3) fails here and never reaches the lookup-only passdbs 4-6. Skipped
#     for XOAUTH2, which the oauth2 passdbs below validate exactly as before.
passdb {{
  driver = passwd-file
  mechanisms = {PLAIN_MECHANISMS}
  args = username_format=%s/%Lu {d}/plain-smtp
  result_success = return-ok
  result_failure = return-fail
  result_internalfail = return-fail
}}
# 2. delegated tokens: signature, aud=https://outlook.office.com, iss, exp, upn == user
passdb {{
  driver = oauth2
  mechanisms = xoauth2
  args = {d}/oauth2-delegated.conf.ext
  result_success = continue-ok
  result_failure = continue
  result_internalfail = continue
}}
# 2b. delegated token of a delegate opening a mailbox it has FullAccess on
#     (user=support@..., token of adele): checked against `access` in step 6
passdb {{
  driver = oauth2
  mechanisms = xoauth2
  args = {d}/oauth2-delegated-fullaccess.conf.ext
  skip = authenticated
  result_success = continue-ok
  result_failure = continue
  result_internalfail = continue
}}
# 3. app-only tokens: signature, aud=https://outlook.office365.com, iss, exp, idtyp=app
passdb {{
  driver = oauth2
  mechanisms = xoauth2
  args = {d}/oauth2-app.conf.ext
  skip = authenticated
  result_success = continue-ok
  result_failure = return-fail
  result_internalfail = return-fail
}}
# 4. the mailbox must exist (lookup only: earlier passdb already verified the token)
passdb {{
  driver = passwd-file
  args = {d}/users
  result_success = continue-ok
  result_failure = return-fail
  result_internalfail = return-fail
}}
# 5. the token's scp/roles must carry this protocol (IMAP/POP/SMTP)
passdb {{
  driver = passwd-file
  args = username_format=%{{passdb:lab_grant}} {d}/grants-%s
  result_success = continue-ok
  result_failure = return-fail
  result_internalfail = return-fail
}}
# 6. app-only: the app's service principal needs FullAccess on the mailbox
passdb {{
  driver = passwd-file
  args = username_format=%{{passdb:lab_access}} {d}/access
  result_success = return-ok
  result_failure = return-fail
  result_internalfail = return-fail
}}
userdb {{
  driver = passwd-file
  args = {d}/users
}}
"""
    _write(d / "dovecot.conf", conf)


# ---------------------------------------------------------------------------
# Postfix
# ---------------------------------------------------------------------------
def gen_postfix(lab: Path, ids: dict, p: dict):
    d = lab / "postfix"           # config (root-owned, as postfix-script expects)
    q = lab / "postfix-queue"     # queue and data outside the config directory
    data = lab / "postfix-data"
    d.mkdir(parents=True, exist_ok=True)
    q.mkdir(exist_ok=True)
    data.mkdir(exist_ok=True)
    import pwd
    pf = pwd.getpwnam("postfix")
    os.chown(data, pf.pw_uid, pf.pw_gid)
    domains = [t["domain"] for t in ids["tenants"]]
    vmail = []
    for t in ids["tenants"]:
        for m in t["mailboxes"]:
            vmail.append(f"{m['address']} OK")
    _write(d / "vmailbox", "\n".join(vmail) + "\n")
    # each login may send only as itself (app-only logins are the mailbox itself)
    logins = [f"{m['address']} {m['address']}" for t in ids["tenants"] for m in t["mailboxes"]]
    _write(d / "sender_login", "\n".join(logins) + "\n")
    dv = lab / "dovecot" / "run"
    pki = lab / "pki"
    main = f"""# generated by tests/lab/labctl.py -- do not edit
compatibility_level = 3.6
queue_directory = {q}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
myhostname = smtp.contoso.test
mydomain = contoso.test
myorigin = contoso.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.1/32
relayhost =
default_transport = error:lab never relays
relay_transport = error:lab never relays
relay_domains =
local_transport = error:no local delivery
virtual_mailbox_domains = {' '.join(domains)}
virtual_mailbox_maps = texthash:{d}/vmailbox
virtual_transport = lmtp:unix:{dv}/lmtp
alias_maps =
alias_database =
smtpd_banner = $myhostname Microsoft ESMTP MAIL Service ready
biff = no
append_dot_mydomain = no
line_length_limit = 16384
message_size_limit = 36700160
mailbox_size_limit = 0
smtpd_tls_cert_file = {pki}/server-chain.pem
smtpd_tls_key_file = {pki}/server.key
smtpd_tls_security_level = encrypt
smtpd_tls_auth_only = yes
smtpd_tls_loglevel = 0
smtpd_tls_mandatory_protocols = >=TLSv1.2
smtpd_tls_protocols = >=TLSv1.2
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {dv}/auth-postfix
smtpd_sasl_security_options = noanonymous
smtpd_sasl_tls_security_options = noanonymous
smtpd_sasl_authenticated_header = no
broken_sasl_auth_clients = no
smtpd_sender_login_maps = texthash:{d}/sender_login
smtpd_client_restrictions = permit_sasl_authenticated, check_client_access static:{{530 5.7.57 Client not authenticated to send mail.}}
smtpd_helo_restrictions =
smtpd_sender_restrictions = reject_sender_login_mismatch, permit_sasl_authenticated, reject
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = reject_non_fqdn_recipient, reject_unlisted_recipient, reject_unauth_destination, permit_sasl_authenticated, reject
smtpd_reject_unlisted_recipient = yes
smtpd_client_connection_rate_limit = 0
smtpd_client_connection_count_limit = 0
anvil_rate_time_unit = 60s
smtpd_soft_error_limit = 1000
smtpd_hard_error_limit = 1000
smtpd_error_sleep_time = 0
smtpd_junk_command_limit = 1000
smtpd_delay_reject = yes
disable_vrfy_command = yes
lmtp_destination_concurrency_limit = 8
maillog_file = {q}/postfix.log
maillog_file_prefixes = {q}
shlib_directory = /usr/lib/postfix
daemon_directory = /usr/lib/postfix/sbin
command_directory = /usr/sbin
meta_directory = /etc/postfix
"""
    _write(d / "main.cf", main)
    off = disabled_listeners(lab)
    listeners = ""
    if "smtp" not in off:
        listeners += (f"127.0.0.1:{p['LAB_SMTP_PORT']} inet n - n - 100 smtpd\n"
                      "  -o syslog_name=postfix/submission\n")
    if "smtps" not in off:
        listeners += (f"127.0.0.1:{p['LAB_SMTPS_PORT']} inet n - n - 100 smtpd\n"
                      "  -o syslog_name=postfix/submissions\n  -o smtpd_tls_wrappermode=yes\n")
    master = f"""# generated by tests/lab/labctl.py -- do not edit
{listeners}pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       error
virtual   unix  -       n       n       -       -       error
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""
    _write(d / "master.cf", master)


# ---------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------
def port_open(port, timeout=0.3):
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_ports(ports_list, up=True, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(port_open(pt) == up for pt in ports_list):
            return True
        time.sleep(0.05)
    return False


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # zombie?
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _read_pid(path: Path):
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _descendants(pid):
    out, todo = [], [pid]
    while todo:
        cur = todo.pop()
        try:
            kids = Path(f"/proc/{cur}/task/{cur}/children").read_text().split()
        except OSError:
            kids = []
        for k in kids:
            out.append(int(k))
            todo.append(int(k))
    return out


def _kill_tree(pid, grace=1.0, timeout=5.0):
    """SIGTERM pid; after `grace` SIGKILL leftover descendants (a Dovecot login
    process in high-performance mode can ignore the master's shutdown), then pid."""
    if pid is None or not _pid_alive(pid):
        return
    tree = [pid] + _descendants(pid)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass

    def wait(pids, secs):
        deadline = time.monotonic() + secs
        while time.monotonic() < deadline and any(_pid_alive(x) for x in pids):
            time.sleep(0.02)

    wait(tree, grace)
    for x in reversed(tree[1:] + _descendants(pid)):
        if _pid_alive(x):
            try:
                os.kill(x, signal.SIGKILL)
            except ProcessLookupError:
                pass
    wait(tree, timeout)
    for x in tree:
        if _pid_alive(x):
            try:
                os.kill(x, signal.SIGKILL)
            except ProcessLookupError:
                pass
    wait(tree, 2.0)


def instance_name(lab: Path) -> str:
    """Dovecot's process-title prefix, unique per state dir so two labs never claim each other's processes."""
    return "mailops-lab-" + hashlib.sha256(str(lab).encode()).hexdigest()[:8]


def lab_processes(lab: Path) -> list:
    """(pid, cmdline) of every live process belonging to this lab: cmdline naming the
    state dir or the Dovecot instance, or a Postfix process with MAIL_CONFIG there."""
    out = []
    labs = str(lab)
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        pid = int(entry)
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        mine = labs in cmd and ("mock_entra" in cmd or "dovecot" in cmd or "postfix" in cmd)
        mine = mine or f"dovecot-{instance_name(lab)}/" in cmd
        if not mine:
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes()
                mine = f"MAIL_CONFIG={labs}/postfix".encode() in env.split(b"\0")
            except OSError:
                pass
        if mine and _pid_alive(pid):
            out.append((pid, cmd.strip()))
    return out


def idp_pidfile(lab):
    return lab / "idp" / "pid"


def dovecot_pidfile(lab):
    return lab / "dovecot" / "run" / "master.pid"


def postfix_pidfile(lab):
    return lab / "postfix-queue" / "pid" / "master.pid"


PIDFILES = {"idp": idp_pidfile, "dovecot": dovecot_pidfile, "postfix": postfix_pidfile}


def service_running(lab, name):
    pid = _read_pid(PIDFILES[name](lab))
    return pid is not None and _pid_alive(pid)


def start_idp(lab, p):
    if service_running(lab, "idp"):
        return
    logf = open(lab / "idp" / "mock_entra.log", "ab")
    env = dict(os.environ, LAB_IDP_PORT=str(p["LAB_IDP_PORT"]))
    proc = subprocess.Popen([sys.executable, str(HERE / "mock_entra.py"), "--state", str(lab),
                             "--port", str(p["LAB_IDP_PORT"])],
                            stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=env, cwd=str(lab))
    _write(idp_pidfile(lab), f"{proc.pid}\n")


def start_dovecot(lab, p):
    if service_running(lab, "dovecot"):
        return
    # the penalty listener is disabled (mode 0); a stale socket from an older config
    # would make the auth process retry connecting for 5 s at startup
    try:
        (lab / "dovecot" / "run" / "anvil-auth-penalty").unlink()
    except OSError:
        pass
    errf = lab / "dovecot" / "start.err"
    with open(errf, "wb") as err:
        env = dict(os.environ, LAB_DENY_REASON_SMTP=SMTP_DISABLED_TEXT,
                   LAB_DENY_REASON_IMAP="AUTHENTICATE failed.",
                   LAB_DENY_REASON_POP3="Authentication failure: unknown user name or bad "
                                        "password.")
        r = subprocess.run(["dovecot", "-c", str(lab / "dovecot" / "dovecot.conf")],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                           timeout=20, env=env, check=False)
    if r.returncode != 0:
        raise SystemExit(f"dovecot failed to start: {errf.read_text().strip()} "
                         f"(see {lab}/dovecot/dovecot.log)")


def start_postfix(lab, p):
    if service_running(lab, "postfix"):
        return
    errf = lab / "postfix" / "start.err"
    with open(errf, "wb") as err:
        r = subprocess.run(["postfix", "-c", str(lab / "postfix"), "start"],
                           stdin=subprocess.DEVNULL, stdout=err, stderr=err, timeout=30, check=False)
    if r.returncode != 0:
        raise SystemExit(f"postfix failed to start: {errf.read_text().strip()}")


def stop_service(lab, name):
    pidfile = PIDFILES[name](lab)
    pid = _read_pid(pidfile)
    if name == "postfix" and pid and _pid_alive(pid):
        subprocess.run(["postfix", "-c", str(lab / "postfix"), "stop"],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=20, check=False)
    _kill_tree(pid)
    try:  # a zombie awaiting reaping by init would look "running" to dovecot/postfix
        pidfile.unlink()
    except OSError:
        pass


START = {"idp": start_idp, "dovecot": start_dovecot, "postfix": start_postfix}


def write_env(lab: Path, ids: dict, p: dict):
    main = next(t for t in ids["tenants"] if t["id"] == ids["main_tenant"])
    apps = {a["name"]: a for a in main["apps"]}
    disabled = {}
    for m in main["mailboxes"]:
        for svc in m.get("disabled", []):
            disabled[svc] = m["address"]
    shared = next(m["address"] for m in main["mailboxes"] if m.get("shared"))
    plain = plain_mailboxes(ids)
    mfa = next(m["address"] for m in main["mailboxes"] if m.get("mfa_required"))
    base = f"https://{HOST}:{p['LAB_IDP_PORT']}"
    env = {
        "O365_AUTHORITY_HOST": base,
        "O365_CA_PATH": str(lab / "pki" / "ca.pem"),
        "O365_TENANT_ID": main["id"],
        "O365_CLIENT_ID": apps["app-all"]["client_id"],
        "O365_CLIENT_SECRET": apps["app-all"]["secret"],
        "LAB_CA_PATH": str(lab / "pki" / "ca.pem"),
        "LAB_CERT_CLIENT_ID": apps["app-cert"]["client_id"],
        "LAB_CERT_PATH": apps["app-cert"]["cert_path"],
        "LAB_CERT_PATH_ENCRYPTED": apps["app-cert"]["cert_path_encrypted"],
        "LAB_CERT_PFX_PATH": apps["app-cert"]["cert_pfx_path"],
        "LAB_CERT_PASSWORD": apps["app-cert"]["cert_password"],
        "LAB_CERT_THUMBPRINT": apps["app-cert"]["cert_thumbprint"],
        "LAB_PUBLIC_CLIENT_ID": apps["public"]["client_id"],
        "LAB_PUBLIC_IMAP_ONLY_CLIENT_ID": apps["public-imap-only"]["client_id"],
        "LAB_APP_EXPIRED_CLIENT_ID": apps["app-expired"]["client_id"],
        "LAB_APP_EXPIRED_SECRET": apps["app-expired"]["secret"],
        "LAB_APP_LIMITED_CLIENT_ID": apps["app-limited"]["client_id"],
        "LAB_APP_LIMITED_SECRET": apps["app-limited"]["secret"],
        "LAB_APP_LIMITED_MAILBOXES": ",".join(app_mailboxes(main, apps["app-limited"])),
        "LAB_HOST": HOST,
        "LAB_IDP_PORT": p["LAB_IDP_PORT"],
        "LAB_IMAP_PORT": p["LAB_IMAP_PORT"],
        "LAB_IMAP_STARTTLS_PORT": p["LAB_IMAP_STARTTLS_PORT"],
        "LAB_POP_PORT": p["LAB_POP_PORT"],
        "LAB_POP_STARTTLS_PORT": p["LAB_POP_STARTTLS_PORT"],
        "LAB_SMTP_PORT": p["LAB_SMTP_PORT"],
        "LAB_SMTPS_PORT": p["LAB_SMTPS_PORT"],
        "LAB_MAILBOX": "adele@contoso.test",
        "LAB_MAILBOX_2": "bob@contoso.test",
        "LAB_SHARED_MAILBOX": shared,
        "LAB_MFA_MAILBOX": mfa,
        "LAB_DOMAIN": main["domain"],
        "LAB_TENANT_DOMAIN": main["domain"],
        "LAB_MINT_URL": f"{base}/_lab/mint",
        "LAB_CONTROL_URL": f"{base}/_lab",
        "LAB_FLEET_PREFIX": ids["fleet_prefix"],
        "LAB_FLEET_SIZE": ids["fleet_size"],
        "LAB_MAILBOX_IMAP_DISABLED": disabled.get("imap", ""),
        "LAB_MAILBOX_POP_DISABLED": disabled.get("pop3", ""),
        "LAB_MAILBOX_SMTP_DISABLED": disabled.get("smtp", ""),
        "LAB_PLAIN_USER": plain[0]["address"] if plain else "",
        "LAB_PLAIN_PASSWORD": plain[0]["smtp_password"] if plain else "",
        "LAB_EXTRA_TENANTS": ",".join(t["domain"] for t in ids["tenants"] if t.get("generated")),
        "LAB_STATE_DIR": str(lab),
        "LAB_IDENTITIES": str(lab / "identities.json"),
    }
    for k, v in env.items():
        assert " " not in str(v) and "'" not in str(v) and '"' not in str(v), k
    _write(lab / "env", "".join(f"{k}={v}\n" for k, v in env.items()), 0o600)
    return env


def cmd_up():
    t0 = time.monotonic()
    lab = state_dir()
    p = ports()
    lab.mkdir(parents=True, exist_ok=True)
    if all(service_running(lab, s) for s in START) and (lab / "env").exists():
        for name in sorted(disabled_listeners(lab)):  # `up` reopens stopped listeners
            cmd_listener("start", name)
        log("already running")
        return 0
    for sub in ("idp", "pki"):
        (lab / sub).mkdir(exist_ok=True)
    os.chmod(lab, 0o755)
    ids = resolve_identities()
    if not any(service_running(lab, x) for x in ("dovecot", "postfix")):
        try:  # a fresh `up` opens every listener again
            (lab / "disabled-listeners").unlink()
        except OSError:
            pass
    ensure_pki(lab, ids)
    ensure_plain_passwords(lab, ids)
    _write(lab / "identities.json", json.dumps(ids, indent=1), 0o600)
    if not service_running(lab, "dovecot"):
        gen_dovecot(lab, ids, p)
    if not service_running(lab, "postfix"):
        gen_postfix(lab, ids, p)
    for name in ("idp", "dovecot", "postfix"):
        START[name](lab, p)
    allp = [p[k] for v in SERVICE_PORTS.values() for k in v]
    if not wait_ports(allp, up=True, timeout=20):
        missing = [k for v in SERVICE_PORTS.values() for k in v if not port_open(p[k])]
        raise SystemExit(f"lab did not come up, closed ports: {missing} (logs under {lab})")
    _wait_idp_health(lab, p)
    write_env(lab, ids, p)
    log(f"up in {time.monotonic() - t0:.1f}s; env: {lab / 'env'}")
    return 0


def _wait_idp_health(lab, p, timeout=10):
    ctx = ssl.create_default_context(cafile=str(lab / "pki" / "ca.pem"))
    deadline = time.monotonic() + timeout
    import urllib.request
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"https://{HOST}:{p['LAB_IDP_PORT']}/_lab/health",
                                        context=ctx, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("mock IdP did not answer /_lab/health")


def cmd_down():
    lab = state_dir()
    p = ports()
    for name in ("postfix", "dovecot", "idp"):
        stop_service(lab, name)
    for pid, _unused in lab_processes(lab):  # stragglers (e.g. a crashed master's children)
        _kill_tree(pid, grace=0.5, timeout=2)
    left = lab_processes(lab)
    if left:
        log(f"warning: processes left behind: {left}")
    allp = [p[k] for v in SERVICE_PORTS.values() for k in v]
    if not wait_ports(allp, up=False, timeout=10):
        log("warning: some lab ports still answer")
    log("down")
    return 0


def cmd_status():
    lab = state_dir()
    p = ports()
    ok = True
    for name, keys in SERVICE_PORTS.items():
        running = service_running(lab, name)
        states = {k: port_open(p[k]) for k in keys}
        ok = ok and running and all(states.values())
        print(f"{name:8s} {'running' if running else 'stopped':8s} " +
              " ".join(f"{k}={p[k]}:{'open' if v else 'closed'}" for k, v in states.items()))
    print("lab: " + ("up" if ok else "down"))
    return 0 if ok else 1


def cmd_clean():
    cmd_down()
    lab = state_dir()
    if lab.exists() and lab.name == ".lab" or os.environ.get("LAB_STATE_DIR"):
        shutil.rmtree(lab, ignore_errors=True)
    log(f"removed {lab}")
    return 0


def cmd_service(action, name):
    lab = state_dir()
    p = ports()
    if name not in START:
        raise SystemExit(f"unknown service {name} (idp, dovecot, postfix)")
    if action == "stop":
        stop_service(lab, name)
        wait_ports([p[k] for k in SERVICE_PORTS[name]], up=False, timeout=10)
    else:
        START[name](lab, p)
        if not wait_ports([p[k] for k in SERVICE_PORTS[name]], up=True, timeout=15):
            raise SystemExit(f"{name} did not come up")
        if name == "idp":
            _wait_idp_health(lab, p)
    return 0


def _lock():
    """Serialize labctl invocations (two test sessions running `up` at once)."""
    import fcntl
    lab = state_dir()
    lab.mkdir(parents=True, exist_ok=True)
    fh = open(lab / ".labctl.lock", "w")
    deadline = time.monotonic() + 120
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fh
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise SystemExit("labctl: another labctl holds the lock for 120 s") from None
            time.sleep(0.1)


def cmd_listener(action, name):
    """stop-listener/start-listener NAME: close or reopen one port, the rest keeps running."""
    if name not in LISTENERS:
        raise SystemExit(f"unknown listener {name} ({', '.join(LISTENERS)})")
    lab = state_dir()
    p = ports()
    service, key = LISTENERS[name]
    off = disabled_listeners(lab)
    off = (off | {name}) if action == "stop" else (off - {name})
    _write(lab / "disabled-listeners", "".join(f"{x}\n" for x in sorted(off)))
    with open(lab / "identities.json") as f:
        ids = json.load(f)
    if service == "dovecot":
        gen_dovecot(lab, ids, p)
        if service_running(lab, "dovecot"):
            os.kill(_read_pid(dovecot_pidfile(lab)), signal.SIGHUP)
    else:
        gen_postfix(lab, ids, p)
        if service_running(lab, "postfix"):
            subprocess.run(["postfix", "-c", str(lab / "postfix"), "reload"],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=20, check=False)
    if service_running(lab, service) and not wait_ports([p[key]], up=(action == "start"),
                                                        timeout=15):
        raise SystemExit(f"listener {name} did not {action}")
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print(__doc__)
        return 2
    cmd = argv[0]
    if cmd not in ("status", "ps"):
        _lock_handle = _lock()  # noqa: F841  (held until exit)
    if cmd == "up":
        return cmd_up()
    if cmd == "down":
        return cmd_down()
    if cmd == "status":
        return cmd_status()
    if cmd == "restart":
        cmd_down()
        return cmd_up()
    if cmd == "ps":
        for pid, c in lab_processes(state_dir()):
            print(pid, c)
        return 0
    if cmd == "clean":
        return cmd_clean()
    if cmd in ("stop-listener", "start-listener") and len(argv) == 2:
        return cmd_listener(cmd.split("-")[0], argv[1])
    if cmd.startswith(("stop-", "start-")):
        action, _unused, name = cmd.partition("-")
        return cmd_service(action, name)
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
