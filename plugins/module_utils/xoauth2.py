# -*- coding: utf-8 -*-
# Copyright: mailops.o365 contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""SASL XOAUTH2 codec, exactly as Microsoft's IMAP/POP/SMTP OAuth page defines it.

    base64("user=" + user + "^Aauth=Bearer " + token + "^A^A")     (^A is 0x01)

Standard library only and no imports from the collection, so it can be used on its own.
Error messages name the field at fault but never echo a token.
"""

from __future__ import annotations

import base64
import binascii

_SEP = "\x01"
_FORBIDDEN = (("\x01", "a \\x01 (^A) character"), ("\r", "a carriage return"), ("\n", "a line feed"))


def _check(field: str, value: str) -> None:
    if not isinstance(value, str):
        raise ValueError("%s must be a string" % field)
    if not value:
        raise ValueError("%s must not be empty" % field)
    for char, name in _FORBIDDEN:
        if char in value:
            raise ValueError("%s must not contain %s" % (field, name))


def encode_xoauth2(user: str, access_token: str) -> str:
    """Return the base64 SASL XOAUTH2 initial response for ``user`` and ``access_token``."""
    _check("user", user)
    _check("access_token", access_token)
    raw = "user=%s%sauth=Bearer %s%s%s" % (user, _SEP, access_token, _SEP, _SEP)
    return base64.b64encode(raw.encode("utf-8")).decode("ascii")


def decode_xoauth2(b64: str) -> tuple[str, str]:
    """Parse a base64 SASL XOAUTH2 string back into ``(user, access_token)``.

    Raises ValueError for anything that is not a well-formed XOAUTH2 string (a transcript folded
    over several lines must be joined first: CR and LF are rejected like in the encoder).
    """
    _check("xoauth2 string", b64)
    try:
        raw = base64.b64decode(b64, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise ValueError("xoauth2 string is not valid base64 of UTF-8 text") from None
    if not raw.endswith(_SEP * 2):
        raise ValueError("xoauth2 string must end with two \\x01 characters")
    fields = raw[:-2].split(_SEP)
    if len(fields) != 2:
        raise ValueError("xoauth2 string must hold exactly the user and auth fields")
    user_field, auth_field = fields
    if not user_field.startswith("user="):
        raise ValueError("xoauth2 string must start with 'user='")
    if not auth_field.startswith("auth=Bearer "):
        raise ValueError("xoauth2 auth field must start with 'auth=Bearer '")
    user = user_field[len("user="):]
    token = auth_field[len("auth=Bearer "):]
    _check("user", user)
    _check("access_token", token)
    return user, token
