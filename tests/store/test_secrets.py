"""SecretBox and master-key handling: roundtrips, and every way a sealed value must not open."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shim.store.secrets import (
    DecryptError,
    OtherKey,
    SecretBox,
    decode_master_key,
    encode_master_key,
    generate_master_key,
    key_id_of,
    rewrap,
)

CTX = "account:prod:client_secret"


@pytest.fixture
def box() -> SecretBox:
    return SecretBox(generate_master_key())


def test_roundtrip_and_format(box: SecretBox) -> None:
    token = box.seal("s3cr3t-ü", context=CTX)
    assert token.startswith(f"v2:{box.key_id}:") and len(box.key_id) == 12
    assert "s3cr3t" not in token
    base64.urlsafe_b64decode(token.split(":")[2])  # printable, urlsafe text
    assert box.open(token, context=CTX) == "s3cr3t-ü"
    assert box.open(box.seal("", context=CTX), context=CTX) == ""


def test_random_nonce_makes_every_seal_different(box: SecretBox) -> None:
    assert box.seal("same", context=CTX) != box.seal("same", context=CTX)


@pytest.mark.slow
@given(plaintext=st.text(), context=st.text())
def test_roundtrip_property(plaintext: str, context: str) -> None:
    box = SecretBox(b"k" * 32)
    assert box.open(box.seal(plaintext, context=context), context=context) == plaintext


def test_wrong_context_fails(box: SecretBox) -> None:
    token = box.seal("secret-value", context="chain:prod:refresh_token")
    with pytest.raises(DecryptError) as info:
        box.open(token, context="chain:dev:refresh_token")
    assert "secret-value" not in str(info.value)


def test_a_value_names_its_key_and_v1_values_still_open(box: SecretBox) -> None:
    other = SecretBox(generate_master_key())
    token = other.seal("secret-value", context=CTX)
    assert key_id_of(token) == other.key_id != box.key_id
    with pytest.raises(OtherKey) as info:
        box.open(token, context=CTX)
    assert info.value.key_id == other.key_id and "secret-value" not in str(info.value)
    old_format = "v1:" + token[16:]  # what earlier versions wrote: no key id
    assert key_id_of(old_format) is None
    assert other.open(old_format, context=CTX) == "secret-value"


def test_wrong_key_fails(box: SecretBox) -> None:
    token = box.seal("secret-value", context=CTX)
    with pytest.raises(DecryptError):
        SecretBox(generate_master_key()).open(token, context=CTX)


def test_every_single_byte_flip_is_detected(box: SecretBox) -> None:
    token = box.seal("secret", context=CTX)
    head, body = token[:16], token[16:]
    raw = bytearray(base64.urlsafe_b64decode(body))
    for i in range(len(raw)):
        flipped = bytearray(raw)
        flipped[i] ^= 0x01
        with pytest.raises(DecryptError):
            box.open(head + base64.urlsafe_b64encode(bytes(flipped)).decode(), context=CTX)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-8],  # truncated
        lambda t: "v1:" + base64.urlsafe_b64encode(b"short").decode(),  # shorter than a tag
        lambda t: "v3:" + t[3:],  # unknown version
        lambda t: "v2:" + t[16:],  # no key id
        lambda t: t[3:],  # no prefix
        lambda t: t[:10] + "!" + t[11:],  # not base64
        lambda t: "",
    ],
)
def test_malformed_tokens_raise_decrypt_error(box: SecretBox, mangle: object) -> None:
    token = box.seal("secret", context=CTX)
    with pytest.raises(DecryptError):
        box.open(mangle(token), context=CTX)  # type: ignore[operator]


def test_derive_is_deterministic_and_label_separated() -> None:
    key = generate_master_key()
    a, b = SecretBox(key), SecretBox(key)
    assert len(a.derive("key-hmac")) == 32
    assert a.derive("key-hmac") == b.derive("key-hmac")
    assert a.derive("key-hmac") != a.derive("other")
    assert a.derive("key-hmac") != SecretBox(generate_master_key()).derive("key-hmac")
    assert a.derive("key-hmac") != key
    with pytest.raises(ValueError):
        a.derive("")


def test_box_rejects_bad_master_key() -> None:
    for bad in (b"", b"x" * 31, b"x" * 33):
        with pytest.raises(ValueError):
            SecretBox(bad)


def test_repr_hides_key() -> None:
    key = generate_master_key()
    assert key.hex() not in repr(SecretBox(key))
    assert "hidden" in repr(SecretBox(key))


def test_master_key_text_roundtrip() -> None:
    key = generate_master_key()
    text = encode_master_key(key)
    assert decode_master_key(text) == key
    assert decode_master_key(f"  {text}\n") == key  # key file with a trailing newline
    assert decode_master_key(text.rstrip("=")) == key  # padding dropped by a copy-paste
    assert generate_master_key() != key


@pytest.mark.parametrize(
    "text",
    ["", "not base64 at all!", base64.urlsafe_b64encode(b"x" * 16).decode(), "A" * 100],
)
def test_decode_master_key_rejects_with_clear_message(text: str) -> None:
    with pytest.raises(ValueError, match="master key") as info:
        decode_master_key(text)
    if text:
        assert text not in str(info.value)


def test_encode_master_key_rejects_wrong_length() -> None:
    with pytest.raises(ValueError):
        encode_master_key(b"short")


def test_rewrap_moves_a_value_to_the_new_key() -> None:
    old, new = SecretBox(generate_master_key()), SecretBox(generate_master_key())
    token = old.seal("refresh-token", context=CTX)
    moved = rewrap(token, context=CTX, old=old, new=new)
    assert new.open(moved, context=CTX) == "refresh-token"
    with pytest.raises(DecryptError):
        old.open(moved, context=CTX)
    with pytest.raises(DecryptError):
        rewrap(token, context="account:dev:client_secret", old=old, new=new)
