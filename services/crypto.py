"""Encryption of stored secrets (LDAP bind and SMTP passwords, later TOTP secrets).

The key is derived from the application's secret key with HKDF, so rotating the secret
key means re-entering stored secrets. ``configure`` is called once by ``create_app``.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_fernet: Fernet | None = None


class SecretUnreadable(Exception):
    """A stored secret cannot be decrypted (the secret key changed?)."""


def derive_key(secret_key: str) -> bytes:
    """The Fernet key for ``secret_key``."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"gatehouse", info=b"stored-secrets v1")
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode("utf-8")))


def configure(secret_key: str) -> None:
    """Set the key used by ``encrypt`` and ``decrypt``."""
    global _fernet
    _fernet = Fernet(derive_key(secret_key))


def _require() -> Fernet:
    if _fernet is None:
        raise RuntimeError("services.crypto.configure() has not been called")
    return _fernet


def encrypt(plaintext: str) -> str:
    """Encrypt a secret for storage."""
    return _require().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    """Decrypt a stored secret; SecretUnreadable when the key does not fit."""
    try:
        return _require().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, ValueError):
        raise SecretUnreadable(
            "a stored secret cannot be decrypted: was GATEHOUSE_SECRET_KEY changed? enter the secret again"
        ) from None


def store_secret(row, name: str, value: str | None, *, ref: str | None = None) -> None:
    """Set the write-only secret ``name`` of a model row (columns ``<name>_encrypted`` and
    ``<name>_ref``): ``""`` removes it, None keeps it, anything else is stored encrypted
    (with the ``env:NAME`` reference it came from, if any)."""
    if value is None:
        return
    setattr(row, f"{name}_encrypted", encrypt(value) if value else None)
    setattr(row, f"{name}_ref", ref if value else None)
