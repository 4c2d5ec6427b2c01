"""The admin password, kept only as a slow hash (scrypt from the standard library).

scrypt is memory-hard, so a stolen database does not give the password away to a GPU farm;
the cost parameters travel inside the hash, so they can be raised later without breaking
logins with an older hash.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

#: scrypt cost: 2**15 x 8 x 1 takes ~0.1 s and 32 MiB, slow enough to make guessing dear.
N, R, P = 2**15, 8, 1
MIN_LENGTH = 10
_MAXMEM = 64 * 1024 * 1024


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_password(password: str, *, n: int = N, r: int = R, p: int = P) -> str:
    """``scrypt$N$r$p$salt$hash``: what the store keeps instead of the password."""
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (compared in constant time)."""
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_MAXMEM,
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(got, expected)


def check_strength(password: str) -> str | None:
    """Why ``password`` is refused, or None. Length is the one rule that matters here."""
    if len(password) < MIN_LENGTH:
        return f"the admin password needs at least {MIN_LENGTH} characters"
    return None


def fingerprint(stored: str) -> str:
    """A short tag of the hash, put in sessions so a new password ends every old session."""
    return hashlib.sha256(stored.encode()).hexdigest()[:16]
