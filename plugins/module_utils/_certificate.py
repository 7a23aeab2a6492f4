# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Client certificate credential: one PEM file holding the private key and the certificate."""

from __future__ import annotations

import hashlib
import re
from typing import Optional

from ansible_collections.mailops.o365.plugins.module_utils._errors import config_error

_CERT_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
_KEY_BLOCK = re.compile(rb"-----BEGIN (?:ENCRYPTED |RSA |EC )?PRIVATE KEY-----.+?-----END (?:ENCRYPTED |RSA |EC )?PRIVATE KEY-----", re.S)


def load_client_certificate(path: str, password: Optional[str]) -> dict:
    """msal's client_credential dict: unencrypted key, the certificate's SHA-1 thumbprint."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    try:
        with open(path, "rb") as handle:
            data = handle.read()
    except OSError as exc:
        raise config_error("client_certificate_path", "cannot read %s: %s" % (path, exc.strerror)) from None
    cert_match, key_match = _CERT_BLOCK.search(data), _KEY_BLOCK.search(data)
    if not cert_match:
        raise config_error("client_certificate_path", "%s holds no PEM certificate" % path)
    if not key_match:
        raise config_error("client_certificate_path", "%s holds no PEM private key (the file needs both the "
                           "key and the certificate)" % path)
    secret = password.encode("utf-8") if password else None
    try:
        key = serialization.load_pem_private_key(key_match.group(0), password=secret)
    except TypeError:
        field = "client_certificate_password"
        raise config_error(field, "the private key is encrypted: give its password" if secret is None
                           else "was given but the private key is not encrypted") from None
    except ValueError:
        raise config_error("client_certificate_password" if secret else "client_certificate_path",
                           "cannot decrypt or parse the private key (wrong password?)") from None
    cert = x509.load_pem_x509_certificate(cert_match.group(0))
    der = cert.public_bytes(serialization.Encoding.DER)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode("ascii")
    return {"private_key": key_pem, "thumbprint": hashlib.sha1(der, usedforsecurity=False).hexdigest()}  # x5t is SHA-1 by spec
