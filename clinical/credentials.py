"""Reviewer credentials: scrypt hashes (hashlib), constant-time verification.

Stored form: ``scrypt$<n>$<r>$<p>$<salt hex>$<hash hex>``. Parameters are kept in the string so they can
be raised later without invalidating existing hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SCRYPT_N, SCRYPT_R, SCRYPT_P, DKLEN = 2**14, 8, 1, 32
MIN_LENGTH = 8
_DUMMY = None  # a hash to check against when the reviewer is unknown (same cost, no user enumeration)


def _derive(secret: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(secret.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=DKLEN, maxmem=64 * 1024 * 1024)


def check_strength(secret: str) -> None:
    """Raise ValueError (one sentence) when a new credential is too weak to accept."""
    if len(secret) < MIN_LENGTH:
        raise ValueError(f"A credential must be at least {MIN_LENGTH} characters long.")


def hash_credential(secret: str) -> str:
    """scrypt hash of ``secret`` with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = _derive(secret, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_credential(secret: str, stored: str | None) -> bool:
    """True when ``secret`` matches ``stored``; False for a missing or malformed hash (after the same work)."""
    global _DUMMY
    if not stored:
        _DUMMY = _DUMMY or hash_credential("not-a-real-credential")
        stored, force_false = _DUMMY, True
    else:
        force_false = False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        actual = _derive(secret, bytes.fromhex(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, bytes.fromhex(digest)) and not force_false


def new_token() -> str:
    """A random session token (kept server-side in the UI state)."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """What the database keeps of a session token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
