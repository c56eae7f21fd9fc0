import pytest

from vhsm.passwords import hash_password, needs_rehash, verify_password


def test_hash_format_and_verify():
    stored = hash_password("Safest-1234")
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", str(2**14), "8", "1")
    assert len(bytes.fromhex(salt)) == 16 and len(bytes.fromhex(digest)) == 32
    assert verify_password("Safest-1234", stored)
    assert not verify_password("safest-1234", stored)
    assert not verify_password("", stored)


def test_salted_and_does_not_contain_password():
    pw = "abcdef0123"
    a, b = hash_password(pw), hash_password(pw)
    assert a != b
    for stored in (a, b):
        assert pw not in stored
        assert pw.encode().hex() not in stored


def test_unicode_password():
    stored = hash_password("pässwörd✓")
    assert verify_password("pässwörd✓", stored)
    assert not verify_password("password", stored)


@pytest.mark.parametrize("stored", [
    "", "scrypt", "plain-text", "scrypt$16384$8$1$zz$00", "bcrypt$16384$8$1$00$00",
    "scrypt$16384$8$1$" + "00" * 16,  # missing hash
    "scrypt$16383$8$1$" + "00" * 16 + "$" + "00" * 32,  # n not a power of two
    "scrypt$0$8$1$" + "00" * 16 + "$" + "00" * 32,
    "scrypt$16384$-8$1$" + "00" * 16 + "$" + "00" * 32,
    "scrypt$16384$8$1$$" + "00" * 32,  # empty salt
    "scrypt$" + str(2**40) + "$8$1$" + "00" * 16 + "$" + "00" * 32,  # absurd cost
    "scrypt$16384$8$1$" + "00" * 16 + "$" + "00" * 32 + "$extra",
    None, 12345, b"scrypt$16384$8$1$00$00",
])
def test_malformed_stored_is_false(stored):
    assert verify_password("x", stored) is False
    assert needs_rehash(stored) is True


def test_non_str_password_is_false():
    assert verify_password(None, hash_password("x")) is False  # type: ignore[arg-type]


def test_needs_rehash():
    assert not needs_rehash(hash_password("x"))
    weak = "scrypt$1024$8$1$" + "00" * 16 + "$" + "00" * 32
    assert needs_rehash(weak)
    # weaker but well-formed hashes still verify, so they can be upgraded at login
    import hashlib
    salt = bytes(range(16))
    digest = hashlib.scrypt(b"pw", salt=salt, n=1024, r=8, p=1, dklen=32)
    old = f"scrypt$1024$8$1${salt.hex()}${digest.hex()}"
    assert verify_password("pw", old) and needs_rehash(old)
