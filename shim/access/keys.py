"""Local legacy-style keys: make them, recognise them, check them. Pure: no I/O, no clock.

A key looks like ``shk_`` + 10-character id + 24-character secret + 6-character checksum, all
base62, 44 characters in all. The prefix lets secret scanners find leaked keys; the id lets the
store find the record in O(1) whatever the number of keys; the secret carries 142 bits of
randomness; the CRC-32 checksum tells a typo (``[InvalidKey]`` "looks mistyped") apart from a
revoked or unknown key. Only an HMAC-SHA-256 of the whole key, under a server secret, is stored,
and it is compared in constant time.

Like datasette's token checks: text that is not a keyshim key at all gives ``None`` (the caller
decides: the old key-less ``DataService.echo`` form is allowed), a keyshim key that is known but
bad raises ``InvalidKey``.
"""

from __future__ import annotations

import binascii
import fnmatch
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shim.errors import InvalidKey, InvalidParameter, NoAccess
from shim.models import KeyRecord

PREFIX = "shk_"
ID_LEN = 10
SECRET_LEN = 24
CHECK_LEN = 6
KEY_LEN = len(PREFIX) + ID_LEN + SECRET_LEN + CHECK_LEN
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_KEY_RE = re.compile(rf"shk_[0-9A-Za-z]{{{ID_LEN + SECRET_LEN + CHECK_LEN}}}")
_ALLOW_RE = re.compile(r"[A-Za-z0-9_*?\[\]!]+(\.[A-Za-z0-9_*?\[\]!]+)?")


@dataclass(frozen=True)
class IssuedKey:
    """A freshly made key: ``text`` is shown once and never stored."""

    text: str
    id: str
    digest: str
    prefix: str


def _b62(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 62)
        out.append(_ALPHABET[r])
    return "".join(reversed(out))


def _random_b62(width: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(width))


def _checksum(body: str) -> str:
    return _b62(binascii.crc32(body.encode("ascii")), CHECK_LEN)


def digest(hmac_key: bytes, text: str) -> str:
    """The stored form of a key: HMAC-SHA-256 under the server secret, hex."""
    return hmac.new(hmac_key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def make_key(hmac_key: bytes, *, random_b62: Callable[[int], str] = _random_b62) -> IssuedKey:
    """Make a new key. ``random_b62`` is injectable only so tests can be deterministic."""
    key_id = random_b62(ID_LEN)
    body = PREFIX + key_id + random_b62(SECRET_LEN)
    text = body + _checksum(body)
    return IssuedKey(text=text, id=key_id, digest=digest(hmac_key, text), prefix=PREFIX + key_id)


def looks_like_key(text: str) -> bool:
    """True when ``text`` has the shape of a keyshim key (checksum not checked)."""
    return len(text) == KEY_LEN and _KEY_RE.fullmatch(text) is not None


def id_given(text: str) -> str:
    """The key id in what a user typed: the id, the ``shk_…`` prefix ``key list`` shows, or
    the whole key."""
    text = text.strip().rstrip("…").rstrip(".")
    if looks_like_key(text):
        return text[len(PREFIX) : len(PREFIX) + ID_LEN]
    return text.removeprefix(PREFIX)


def key_id_of(text: str) -> str | None:
    """The record id inside a presented key; ``None`` if it is not a keyshim key at all.

    Raises ``InvalidKey`` when it has the shape of one but the checksum fails: a typo.
    """
    if not looks_like_key(text):
        return None
    body, check = text[:-CHECK_LEN], text[-CHECK_LEN:]
    if not hmac.compare_digest(_checksum(body), check):
        raise InvalidKey("Invalid Key (checksum mismatch: the key looks mistyped)")
    return text[len(PREFIX) : len(PREFIX) + ID_LEN]


def matches(record: KeyRecord, hmac_key: bytes, text: str) -> bool:
    """True when ``text`` is the key ``record`` was issued as (whatever its state)."""
    return hmac.compare_digest(record.digest, digest(hmac_key, text))


def verify(record: KeyRecord | None, hmac_key: bytes, text: str, now: float) -> KeyRecord:
    """Check a presented key against its record; return the record or raise InvalidKey."""
    if record is None or not hmac.compare_digest(record.digest, digest(hmac_key, text)):
        raise InvalidKey()
    if record.revoked_at is not None and record.revoked_at <= now:
        raise InvalidKey("Invalid Key (revoked)")
    if record.expires_at is not None and record.expires_at <= now:
        raise InvalidKey("Invalid Key (expired)")
    return record


def check_method(record: KeyRecord, method: str) -> None:
    """Raise NoAccess unless the key's allowlist (empty = everything) admits ``method``."""
    if record.allow and not any(fnmatch.fnmatchcase(method, p) for p in record.allow):
        raise NoAccess(f"Key {record.prefix} may not call {method}")


def validate_allow(patterns: Sequence[str]) -> tuple[str, ...]:
    """Check allowlist globs given at issue time (``ContactService.*``, ``DataService.query``)."""
    for p in patterns:
        if not _ALLOW_RE.fullmatch(p):
            raise InvalidParameter(f"not a method pattern: {p!r} (try ContactService.*)")
    return tuple(patterns)
