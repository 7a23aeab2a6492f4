"""Bad input fails before any network call, naming the option and never echoing a secret."""
import os

import pytest

from ansible_collections.mailops.o365.plugins.module_utils._errors import O365Error
from ansible_collections.mailops.o365.plugins.module_utils._options import AuthSettings, default_cache_path
from ansible_collections.mailops.o365.plugins.module_utils._token import acquire_token, resolve_flow

GUID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
SECRET = "s3cr3t-Value~that-must-not-leak"


def settings(tmp_path, **over):
    params = dict(tenant_id="contoso.onmicrosoft.com", client_id=GUID, client_secret=SECRET,
                  token_cache_path=str(tmp_path / "cache.json"))
    params.update(over)
    return AuthSettings.from_params(params)


def expect_config_error(field, tmp_path, **over):
    with pytest.raises(O365Error) as info:
        s = settings(tmp_path, **over)
        acquire_token(s, ["imap"])  # certificate problems surface here, still before the network
    err = info.value
    assert err.category == "config"
    assert err.message.startswith(field + ":"), err.message
    assert SECRET not in err.message and "hunter2" not in err.message
    return err


@pytest.mark.parametrize("tenant", ["not a tenant", "contoso", "-bad-.com", "a" * 300, "contoso.com/evil", ""])
def test_tenant_id_neither_guid_nor_domain(tmp_path, tenant):
    if tenant == "":
        expect_config_error("tenant_id", tmp_path, tenant_id=None)
    else:
        expect_config_error("tenant_id", tmp_path, tenant_id=tenant)


@pytest.mark.parametrize("client", ["my-app", "3f2504e0-4f89-11d3-9a0c", GUID + "0", "{%s}" % GUID])
def test_client_id_not_a_guid(tmp_path, client):
    expect_config_error("client_id", tmp_path, client_id=client)


def test_secret_and_certificate_both_given(tmp_path):
    cert = tmp_path / "app.pem"
    cert.write_text("x")
    err = expect_config_error("client_secret", tmp_path, client_certificate_path=str(cert))
    assert "mutually exclusive" in err.message


def test_certificate_file_missing(tmp_path):
    expect_config_error("client_certificate_path", tmp_path, client_secret=None,
                        client_certificate_path=str(tmp_path / "missing.pem"))


def _write_cert(path, password=None, with_key=True):
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "app")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    enc = serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    data = cert.public_bytes(serialization.Encoding.PEM)
    if with_key:
        data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc) + data
    path.write_bytes(data)
    return str(path)


def test_certificate_without_private_key(tmp_path):
    path = _write_cert(tmp_path / "cert.pem", with_key=False)
    err = expect_config_error("client_certificate_path", tmp_path, client_secret=None, client_certificate_path=path)
    assert "private key" in err.message


def test_certificate_wrong_password(tmp_path):
    path = _write_cert(tmp_path / "enc.pem", password="right-one")
    expect_config_error("client_certificate_password", tmp_path, client_secret=None,
                        client_certificate_path=path, client_certificate_password="hunter2")


def test_certificate_encrypted_without_password(tmp_path):
    path = _write_cert(tmp_path / "enc.pem", password="right-one")
    expect_config_error("client_certificate_password", tmp_path, client_secret=None, client_certificate_path=path)


def test_certificate_loads_with_right_password(tmp_path):
    from ansible_collections.mailops.o365.plugins.module_utils._certificate import load_client_certificate

    cred = load_client_certificate(_write_cert(tmp_path / "enc.pem", password="right-one"), "right-one")
    assert len(cred["thumbprint"]) == 40 and "ENCRYPTED" not in cred["private_key"]


def test_unknown_cloud(tmp_path):
    err = expect_config_error("cloud", tmp_path, cloud="moon")
    assert "public" in err.message


def test_cache_directory_not_writable(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # a file where a directory should be: unwritable even for root
    expect_config_error("token_cache_path", tmp_path, token_cache_path=str(blocker / "sub" / "cache.json"))


def test_cache_path_is_a_directory(tmp_path):
    expect_config_error("token_cache_path", tmp_path, token_cache_path=str(tmp_path))


@pytest.mark.parametrize("host", ["http://login.example.com", "login.example.com", "https://login.example.com/path",
                                  "https://", "ftp://x"])
def test_authority_host_not_https(tmp_path, host):
    expect_config_error("authority_host", tmp_path, authority_host=host)


def test_missing_ids_for_network_flows(tmp_path):
    expect_config_error("client_id", tmp_path, client_id=None)


def test_secret_with_control_characters(tmp_path):
    err = expect_config_error("client_secret", tmp_path, client_secret=SECRET + "\r\n")
    assert SECRET not in err.message


@pytest.mark.parametrize("timeout", [0, -1, 100000])
def test_timeout_out_of_range(tmp_path, timeout):
    expect_config_error("timeout", tmp_path, timeout=timeout)


def test_reserved_scope(tmp_path):
    expect_config_error("scopes[0]", tmp_path, scopes=["offline_access"])


def test_no_credential_at_all(tmp_path):
    s = settings(tmp_path, client_secret=None)
    with pytest.raises(O365Error, match="^flow:"):
        resolve_flow(s)


def test_access_token_needs_no_ids_and_no_msal(tmp_path):
    s = AuthSettings.from_params({"access_token": "abc", "token_cache_path": "/nonexistent/dir/x.json"})
    result = acquire_token(s, ["imap"])
    assert (result.access_token, result.source, result.flow) == ("abc", "given", "access_token")


@pytest.mark.parametrize("given,expected", [
    ({"access_token": "a"}, "access_token"),
    ({"refresh_token": "r"}, "refresh_token"),
    ({"client_secret": "s"}, "client_secret"),
    ({"username": "u@x.test", "client_secret": None}, "cache"),
])
def test_auto_flow_resolution(tmp_path, given, expected):
    over = {"client_secret": None}
    over.update(given)
    assert resolve_flow(settings(tmp_path, **over)) == expected


def test_default_cache_path_honours_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_path() == os.path.join(str(tmp_path), "mailops.o365", "token_cache.json")


@pytest.mark.parametrize("field,value", [("tenant_id", "contoso.com\n"), ("client_id", GUID + "\n"),
                                         ("authority_host", "https://login.example.com\n")])
def test_trailing_newline_is_rejected(tmp_path, field, value):
    expect_config_error(field, tmp_path, **{field: value})
