"""Fresh access keys: the id (20 characters ``[A-Z0-9]``, as S3's, starting ``RK``) and the secret (40
characters of ``[A-Za-z0-9+/]``, 238 bits), made with ``secrets``."""

from __future__ import annotations

import secrets
import string

ACCESS_KEY_LENGTH = 20
SECRET_KEY_LENGTH = 40
_ID_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"


def new_access_key() -> str:
    return "RK" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(ACCESS_KEY_LENGTH - 2))


def new_secret_key() -> str:
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(SECRET_KEY_LENGTH))
