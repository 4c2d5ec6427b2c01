import pytest

from shim.access import keys
from shim.errors import InvalidKey, InvalidParameter, NoAccess
from shim.models import KeyRecord

HMAC = b"k" * 32


def record_for(issued: keys.IssuedKey, **kw: object) -> KeyRecord:
    base = dict(
        id=issued.id,
        account="prod",
        label="t",
        digest=issued.digest,
        prefix=issued.prefix,
        created_at=0.0,
    )
    base.update(kw)
    return KeyRecord(**base)  # type: ignore[arg-type]


def test_key_shape_and_randomness() -> None:
    issued = keys.make_key(HMAC)
    assert issued.text.startswith("shk_") and len(issued.text) == keys.KEY_LEN == 44
    assert keys.looks_like_key(issued.text)
    assert keys.key_id_of(issued.text) == issued.id
    assert issued.prefix == "shk_" + issued.id
    assert issued.digest != issued.text and issued.text not in issued.digest
    assert len({keys.make_key(HMAC).text for _ in range(200)}) == 200
    # 24 base62 characters of secret: log2(62**24) > 142 bits
    assert keys.SECRET_LEN * 5.95 >= 128


def test_typo_is_told_apart_from_unknown() -> None:
    text = keys.make_key(HMAC).text
    typo = text[:20] + ("a" if text[20] != "a" else "b") + text[21:]
    with pytest.raises(InvalidKey, match="mistyped"):
        keys.key_id_of(typo)
    assert keys.key_id_of("0123456789abcdef0123456789abcdef") is None  # an old Keap key
    assert keys.key_id_of("") is None


def test_verify_states() -> None:
    issued = keys.make_key(HMAC)
    assert keys.verify(record_for(issued), HMAC, issued.text, now=10).id == issued.id
    with pytest.raises(InvalidKey, match=r"^Invalid Key$"):
        keys.verify(None, HMAC, issued.text, now=10)
    with pytest.raises(InvalidKey):
        keys.verify(record_for(issued), b"x" * 32, issued.text, now=10)  # other server secret
    with pytest.raises(InvalidKey, match="revoked"):
        keys.verify(record_for(issued, revoked_at=5.0), HMAC, issued.text, now=10)
    # revocation in the future (rotation overlap) is not yet in force
    keys.verify(record_for(issued, revoked_at=50.0), HMAC, issued.text, now=10)
    with pytest.raises(InvalidKey, match="expired"):
        keys.verify(record_for(issued, expires_at=10.0), HMAC, issued.text, now=10)


def test_allowlist() -> None:
    issued = keys.make_key(HMAC)
    rec = record_for(issued, allow=keys.validate_allow(["ContactService.*", "DataService.query"]))
    keys.check_method(rec, "ContactService.load")
    keys.check_method(rec, "DataService.query")
    with pytest.raises(NoAccess):
        keys.check_method(rec, "DataService.delete")
    keys.check_method(record_for(issued), "Anything.goes")
    with pytest.raises(InvalidParameter):
        keys.validate_allow(["rm -rf"])


def test_the_legacy_method_list_holds_every_method_the_simulator_serves() -> None:
    from shim.access.legacy_methods import METHODS, unknown_patterns
    from shim.simulator import services

    assert set(services._HANDLERS) <= METHODS
    assert unknown_patterns(["*", "DataService.*", "FunnelService.achieveGoal"]) == []
