"""TLS defaults, audited: TLS 1.2 minimum, certificates and host names verified, and no unverified
context anywhere in plugins/ except the one documented ``validate_certs: false`` branch in _tls.py."""
from __future__ import annotations

import os
import re
import ssl
import threading
import time

import pytest

from ansible_collections.mailops.o365.plugins.module_utils import _tls
from ansible_collections.mailops.o365.plugins.module_utils._errors import O365Error
from ansible_collections.mailops.o365.plugins.module_utils._http import MsalHttpClient
from ansible_collections.mailops.o365.plugins.module_utils._options import AuthSettings
from tests.unit.fakes import mailserver

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLUGINS = os.path.join(ROOT, "plugins")

# Anything that weakens TLS. Each hit must be on the allow list below.
WEAK_PATTERNS = [
    r"CERT_NONE", r"CERT_OPTIONAL", r"check_hostname\s*=\s*False", r"_create_unverified_context",
    r"_create_stdlib_context", r"verify\s*=\s*False", r"verify_mode\s*=", r"PROTOCOL_TLSv1\b",
    r"PROTOCOL_TLSv1_1", r"PROTOCOL_SSLv2", r"PROTOCOL_SSLv3", r"PROTOCOL_SSLv23", r"TLSVersion\.TLSv1\b",
    r"TLSVersion\.TLSv1_1", r"TLSVersion\.SSLv3", r"TLSVersion\.MINIMUM_SUPPORTED", r"OP_NO_TLSv1_2",
    r"OP_NO_TLSv1_3", r"set_ciphers\(", r"ssl\.wrap_socket\(", r"SSLContext\(", r"disable_warnings",
    r"InsecureRequestWarning", r"PYTHONHTTPSVERIFY", r"CURL_CA_BUNDLE\s*=\s*['\"]{2}",
    r"server_hostname\s*=\s*None", r"set_default_verify_paths\(\)\s*$",
]
# (file relative to plugins/, exact stripped line): the documented validate_certs: false branch.
ALLOWED = {
    ("module_utils/_tls.py", "ctx.check_hostname = False"),
    ("module_utils/_tls.py", "ctx.verify_mode = ssl.CERT_NONE"),
}


def _plugin_sources():
    for dirpath, _unused, files in os.walk(PLUGINS):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                yield os.path.relpath(path, PLUGINS), open(path, encoding="utf-8").read()


def test_no_unverified_tls_anywhere_in_plugins():
    hits = []
    for rel, text in _plugin_sources():
        for number, line in enumerate(text.splitlines(), 1):
            code = line.split("#", 1)[0]
            for pattern in WEAK_PATTERNS:
                if re.search(pattern, code) and (rel, code.strip()) not in ALLOWED:
                    hits.append("%s:%d: %s" % (rel, number, line.strip()))
    assert hits == [], "TLS weakened outside the documented validate_certs branch:\n" + "\n".join(hits)


def test_the_allowed_weakening_is_only_under_validate_certs_false():
    text = open(os.path.join(PLUGINS, "module_utils", "_tls.py"), encoding="utf-8").read()
    block = re.search(r"if not validate_certs:\n(?P<body>(?:\s+#.*\n)?(?:\s+ctx\..*\n)+)", text)
    assert block, "the validate_certs: false branch moved; re-audit _tls.py"
    assert "ctx.check_hostname = False" in block.group("body") and "ssl.CERT_NONE" in block.group("body")
    assert text.count("CERT_NONE") == 1 and text.count("check_hostname = False") == 1


def test_every_wrap_socket_passes_the_server_hostname():
    for rel, text in _plugin_sources():
        for line in text.splitlines():
            if "wrap_socket(" in line and not line.strip().startswith("#"):
                assert "server_hostname=" in line, "%s: %s" % (rel, line.strip())


def test_every_tls_context_comes_from_client_context():
    """The mail paths build their contexts with _tls.client_context (no private ssl setup)."""
    users = [rel for rel, text in _plugin_sources() if "client_context(" in text and rel != "module_utils/_tls.py"]
    assert {"module_utils/_checks.py", "module_utils/_send.py", "module_utils/_mailflow.py"} <= set(users)
    for rel, text in _plugin_sources():
        if rel != "module_utils/_tls.py":
            assert "create_default_context" not in text, rel


@pytest.fixture(autouse=True)
def _fresh_cache():
    _tls._CACHE.clear()
    yield
    _tls._CACHE.clear()


def test_client_context_defaults():
    ctx = _tls.client_context()
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    assert ctx.check_hostname is True
    assert ctx.protocol == ssl.PROTOCOL_TLS_CLIENT
    assert not ctx.options & ssl.OP_NO_TLSv1_2 and not ctx.options & ssl.OP_NO_TLSv1_3


def test_client_context_with_ca_path_keeps_the_defaults():
    ctx = _tls.client_context(str(mailserver.cert_dir() / "cert.pem"))
    assert (ctx.minimum_version, ctx.verify_mode, ctx.check_hostname) == (ssl.TLSVersion.TLSv1_2, ssl.CERT_REQUIRED, True)


def test_validate_certs_false_is_its_own_context_and_does_not_poison_the_default():
    insecure = _tls.client_context(None, validate_certs=False)
    secure = _tls.client_context(None, validate_certs=True)
    assert insecure is not secure
    assert (insecure.verify_mode, insecure.check_hostname) == (ssl.CERT_NONE, False)
    assert insecure.minimum_version == ssl.TLSVersion.TLSv1_2  # still no old protocols
    assert (secure.verify_mode, secure.check_hostname) == (ssl.CERT_REQUIRED, True)


def test_bad_ca_path_is_a_config_error():
    with pytest.raises(O365Error) as info:
        _tls.client_context("/nonexistent/ca.pem")
    assert info.value.category == "config" and "ca_path" in info.value.message


def _settings(**kw):
    base = dict(tenant_id="contoso.test", client_id="0c0a5a1e-a990-4a11-8000-00000000a001", client_secret="s",
                token_cache_path="/tmp/mailops-o365-tls-audit/cache.json")
    base.update(kw)
    return AuthSettings.from_params(base)


def test_http_client_verifies_by_default_and_uses_ca_path():
    ca = str(mailserver.cert_dir() / "cert.pem")
    assert MsalHttpClient(_settings())._verify is True
    assert MsalHttpClient(_settings(ca_path=ca))._verify == ca
    assert MsalHttpClient(_settings(validate_certs=False))._verify is False  # only when asked


def test_http_client_passes_verify_on_every_request(monkeypatch):
    """verify is forced per request, so a caller's verify=False (or REQUESTS_CA_BUNDLE) cannot win."""
    seen = []

    class Response:
        status_code = 200
        headers: dict = {}

        def json(self):
            return {}

    client = MsalHttpClient(_settings())
    monkeypatch.setattr(client._session, "request", lambda method, url, **kw: seen.append(kw) or Response())
    client.get("https://login.example/x", verify=False)
    client.post("https://login.example/y", verify=False, data={})
    assert [kw["verify"] for kw in seen] == [True, True]


def _serve_once(context: ssl.SSLContext, port_box: list, done: threading.Event) -> None:
    import socket
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(5)
    port_box.append(srv.getsockname()[1])
    try:
        conn, _unused = srv.accept()
        conn.settimeout(5)
        try:
            with context.wrap_socket(conn, server_side=True):
                pass
        except (ssl.SSLError, OSError):
            pass
    except OSError:
        pass
    finally:
        srv.close()
        done.set()


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, hostname: str) -> None:
    import socket
    port_box: list = []
    done = threading.Event()
    thread = threading.Thread(target=_serve_once, args=(server_ctx, port_box, done), daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while not port_box and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        with socket.create_connection(("127.0.0.1", port_box[0]), timeout=5) as sock:
            with client_ctx.wrap_socket(sock, server_hostname=hostname):
                pass
    finally:
        done.wait(5)


def _server_context(max_version=None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(mailserver.cert_dir() / "cert.pem"), str(mailserver.cert_dir() / "key.pem"))
    if max_version is not None:
        ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        ctx.maximum_version = max_version
    return ctx


def test_behaviour_host_name_is_checked():
    ctx = _tls.client_context(str(mailserver.cert_dir() / "cert.pem"))
    _handshake(_server_context(), ctx, "127.0.0.1")  # the certificate's own name works
    with pytest.raises(ssl.SSLCertVerificationError, match="match|mismatch"):
        _handshake(_server_context(), ctx, "outlook.office365.com")


def test_behaviour_untrusted_certificate_is_refused():
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(_server_context(), _tls.client_context(), "127.0.0.1")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_behaviour_tls_1_0_and_1_1_servers_are_refused(version):
    ca = str(mailserver.cert_dir() / "cert.pem")
    try:
        server = _server_context(getattr(ssl.TLSVersion, version))
        server.set_ciphers("ALL:@SECLEVEL=0")
        # Prove the old protocol really works here: a permissive client completes the handshake.
        permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        permissive.load_verify_locations(ca)
        permissive.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
        permissive.set_ciphers("ALL:@SECLEVEL=0")
        _handshake(server, permissive, "127.0.0.1")
    except (ssl.SSLError, ValueError, OSError) as exc:  # pragma: no cover - OpenSSL built without it
        pytest.skip("local OpenSSL cannot speak %s: %s" % (version, exc))
    with pytest.raises(ssl.SSLError, match="VERSION|version"):
        _handshake(server, _tls.client_context(ca), "127.0.0.1")
