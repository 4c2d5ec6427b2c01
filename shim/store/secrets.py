"""Secrets at rest: sealing and opening the secrets the store keeps, under the master key.

One of the two modules that import ``cryptography``; the other is :mod:`shim.tls.ca` (the
local CA for ``shim tls init``). Keeping every cipher decision for data at rest here means one
file to review and one place to change when a format version ``v2`` is needed. Everything else
sees ``SecretBox.seal``/``open`` on text.

Format of a sealed value: ``"v2:" + key id + ":" + urlsafe_b64(nonce(12) + AES-256-GCM
ciphertext+tag)``. The key id (:attr:`SecretBox.key_id`, 12 hex digits derived from the master
key, not secret) names the master key a value was sealed under, so a process holding another
key can tell "sealed under a newer key: reload it" from "tampered" (:class:`OtherKey`).
``"v1:"`` values (the same without a key id) still open.

- The AES key is not the master key itself but an HKDF-SHA256 subkey (info ``keyshim seal v1``),
  so the same master key could feed other purposes through :meth:`SecretBox.derive` without
  reusing key material. Nothing in keyshim derives from it today: the HMAC key of local keys is
  a random server secret kept sealed in the store (``Store.server_secret("key-hmac")``), so
  rotating the master key re-encrypts it instead of invalidating every local key.
- The nonce is random per seal. With 96-bit nonces the collision risk stays negligible far
  beyond the number of tokens keyshim will ever write under one master key.
- ``context`` is authenticated as associated data. Callers pass the row identity and column
  (``"chain:prod:refresh_token"``) so a ciphertext copied into another row or column fails to
  open instead of silently handing one account's token to another.
"""

from __future__ import annotations

import base64
import binascii
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "MASTER_KEY_BYTES",
    "DecryptError",
    "OtherKey",
    "SecretBox",
    "decode_master_key",
    "encode_master_key",
    "generate_master_key",
    "key_id_of",
    "rewrap",
]

MASTER_KEY_BYTES = 32
_NONCE_BYTES = 12
_TAG_BYTES = 16
_PREFIX = "v2:"
_OLD_PREFIX = "v1:"
_KEY_ID_INFO = b"keyshim key id v1"
_KEY_ID_HEX = 12
_SEAL_INFO = b"keyshim seal v1"
_DERIVE_INFO = b"keyshim derive v1:"


class DecryptError(Exception):
    """A sealed value did not open: tampered, truncated, wrong master key or wrong context.

    The message names the context (a row identity, not a secret) and never the value itself.
    """


class OtherKey(DecryptError):
    """The value names another master key than this box's (``key_id``): after a rotation, the
    new key; a process holding the old one must load the new key (or be restarted)."""

    def __init__(self, message: str, key_id: str) -> None:
        super().__init__(message)
        self.key_id = key_id


def key_id_of(token: str) -> str | None:
    """The key id a sealed value names (None: a ``v1:`` value, or not a sealed value)."""
    if (
        token.startswith(_PREFIX)
        and token[len(_PREFIX) + _KEY_ID_HEX : len(_PREFIX) + _KEY_ID_HEX + 1] == ":"
    ):
        return token[len(_PREFIX) : len(_PREFIX) + _KEY_ID_HEX]
    return None


def _hkdf(master_key: bytes, info: bytes) -> bytes:
    # No salt: the master key is already uniformly random, so HKDF-Expand with a distinct
    # ``info`` per purpose is all the separation needed (RFC 5869, section 3.1).
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master_key)


def _check_master_key(master_key: bytes) -> None:
    if not isinstance(master_key, bytes) or len(master_key) != MASTER_KEY_BYTES:
        raise ValueError(f"the master key must be exactly {MASTER_KEY_BYTES} bytes")


class SecretBox:
    """Seals and opens text under one master key.

    Holds the master key in memory only for :meth:`derive`; it is never included in ``repr`` or
    in any exception.
    """

    __slots__ = ("_aead", "_master", "key_id")

    def __init__(self, master_key: bytes) -> None:
        _check_master_key(master_key)
        self._master = master_key
        self._aead = AESGCM(_hkdf(master_key, _SEAL_INFO))
        #: Names this master key in every value it seals (not secret: an HKDF output).
        self.key_id = _hkdf(master_key, _KEY_ID_INFO).hex()[:_KEY_ID_HEX]

    def __repr__(self) -> str:
        return "SecretBox(<hidden>)"

    def seal(self, plaintext: str, *, context: str) -> str:
        """Encrypt ``plaintext`` bound to ``context``; returns printable ``v2:KEYID:...`` text."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode("utf-8"), context.encode("utf-8"))
        body = base64.urlsafe_b64encode(nonce + sealed).decode("ascii")
        return f"{_PREFIX}{self.key_id}:{body}"

    def open(self, token: str, *, context: str) -> str:
        """Decrypt a value made by :meth:`seal` with the same master key and ``context``.

        Raises :class:`DecryptError` for anything else, including malformed input, so callers
        need to handle exactly one exception type.
        """
        if token.startswith(_PREFIX):
            key_id = key_id_of(token)
            if key_id is None:
                raise DecryptError(f"sealed value for {context!r} has an unknown format")
            if key_id != self.key_id:
                raise OtherKey(
                    f"sealed value for {context!r} is sealed under master key {key_id}, "
                    f"not this process's {self.key_id} (rotated: load the new key or restart)",
                    key_id,
                )
            text = token[len(_PREFIX) + _KEY_ID_HEX + 1 :]
        elif token.startswith(_OLD_PREFIX):
            text = token[len(_OLD_PREFIX) :]
        else:
            raise DecryptError(f"sealed value for {context!r} has an unknown format")
        try:
            raw = base64.b64decode(text, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise DecryptError(f"sealed value for {context!r} is not valid base64") from None
        if len(raw) < _NONCE_BYTES + _TAG_BYTES:
            raise DecryptError(f"sealed value for {context!r} is truncated")
        nonce, sealed = raw[:_NONCE_BYTES], raw[_NONCE_BYTES:]
        try:
            plain = self._aead.decrypt(nonce, sealed, context.encode("utf-8"))
        except InvalidTag:
            raise DecryptError(
                f"sealed value for {context!r} does not open: wrong master key, "
                "tampered data, or a value moved from another row"
            ) from None
        try:
            return plain.decode("utf-8")
        except UnicodeDecodeError:  # only reachable if someone sealed non-UTF-8 by hand
            raise DecryptError(f"sealed value for {context!r} is not UTF-8 text") from None

    def derive(self, label: str) -> bytes:
        """A 32-byte subkey for ``label``, independent of the seal key.

        Deterministic, so every process with the same master key derives the same subkey. Not
        used for the HMAC key of local keys (a sealed random server secret; see the module
        docstring): a derived key would change with every master-key rotation.
        """
        if not label:
            raise ValueError("derive() needs a non-empty label")
        return _hkdf(self._master, _DERIVE_INFO + label.encode("utf-8"))


def generate_master_key() -> bytes:
    """A fresh random master key from the OS CSPRNG."""
    return secrets.token_bytes(MASTER_KEY_BYTES)


def encode_master_key(key: bytes) -> str:
    """Text form for ``SHIM_SECRET_KEY`` and the key file: urlsafe base64 of 32 bytes."""
    _check_master_key(key)
    return base64.urlsafe_b64encode(key).decode("ascii")


def decode_master_key(text: str) -> bytes:
    """Parse the text form; surrounding whitespace (a key file's newline) and missing ``=``
    padding are accepted. The ValueError never quotes the input, which is the secret itself.
    """
    cleaned = text.strip()
    cleaned += "=" * (-len(cleaned) % 4)
    try:
        key = base64.b64decode(cleaned, altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "the master key (SHIM_SECRET_KEY or key file) is not urlsafe base64"
        ) from None
    if len(key) != MASTER_KEY_BYTES:
        raise ValueError(
            f"the master key (SHIM_SECRET_KEY or key file) must decode to {MASTER_KEY_BYTES} "
            f"bytes, got {len(key)}"
        )
    return key


def rewrap(token: str, *, context: str, old: SecretBox, new: SecretBox) -> str:
    """Re-encrypt one sealed value from ``old`` to ``new`` (master-key rotation)."""
    return new.seal(old.open(token, context=context), context=context)
