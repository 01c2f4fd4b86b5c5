"""Secrets that people or emails carry (links, binding cookies, recovery codes, keys):
at least 128 bits from ``secrets``, stored only as SHA-256 hashes, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

TOKEN_BYTES = 32  # 256 bits; the floor is 128


def new_token() -> tuple[str, str]:
    """A fresh URL-safe token and the hash to store for it."""
    token = secrets.token_urlsafe(TOKEN_BYTES)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    """The stored form of ``token`` (SHA-256 hex). High-entropy tokens need no salt or
    slow hash: guessing 2**256 values is the protection."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def matches(token: str | None, stored_hash: str | None) -> bool:
    """Whether ``token`` hashes to ``stored_hash``, in constant time."""
    if not token or not stored_hash:
        return False
    return hmac.compare_digest(hash_token(token), stored_hash)


def plausible(token: str | None) -> bool:
    """Cheap shape check before any database work: URL-safe and of a sane length."""
    return bool(token) and 16 <= len(token) <= 128 and all(c.isalnum() or c in "-_" for c in token)
