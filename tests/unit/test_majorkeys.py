import os
import stat

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from vhsm.majorkeys import MajorKey, SecureMemory, WrapError, generate_ftk, kcv_of_secret

FIXED = bytes(range(32))


def test_key_length_checked():
    for bad in (b"", bytes(16), bytes(31), bytes(33)):
        with pytest.raises(ValueError):
            MajorKey(bad)


def test_kcv_known_answer():
    enc = Cipher(algorithms.AES(FIXED), modes.ECB()).encryptor()
    expected = (enc.update(bytes(16)) + enc.finalize())[:2].hex().upper()
    kcv = MajorKey(FIXED).kcv
    assert kcv == expected
    assert len(kcv) == 4 and kcv == kcv.upper()


def test_repr_hides_key():
    key = MajorKey(FIXED)
    for text in (repr(key), str(key)):
        assert FIXED.hex() not in text.lower()
        assert key.kcv in text


def test_wrap_roundtrip_and_format():
    key = generate_ftk()
    blob = key.wrap(b"secret key bytes", b"slot=1")
    assert blob[0] == 1 and len(blob) == 1 + 12 + 16 + 16
    assert b"secret key bytes" not in blob
    assert key.unwrap(blob, b"slot=1") == b"secret key bytes"
    assert key.wrap(b"x", b"a") != key.wrap(b"x", b"a")  # fresh nonce each time
    assert key.unwrap(key.wrap(b"", b""), b"") == b""


def test_unwrap_failures():
    key = generate_ftk()
    blob = key.wrap(b"secret", b"slot=1")
    with pytest.raises(WrapError):
        key.unwrap(blob, b"slot=2")
    with pytest.raises(WrapError):
        generate_ftk().unwrap(blob, b"slot=1")
    for i in range(len(blob)):
        tampered = bytearray(blob)
        tampered[i] ^= 0x01
        with pytest.raises(WrapError):
            key.unwrap(bytes(tampered), b"slot=1")
    with pytest.raises(WrapError):
        key.unwrap(blob[:20], b"slot=1")
    with pytest.raises(WrapError):
        key.unwrap(b"\x02" + blob[1:], b"slot=1")
    assert issubclass(WrapError, ValueError)


def test_des3_kcv_known_answer():
    # 3FD5 checked against OpenSSL (`openssl enc -des-ede3 -nopad`) and an
    # independent pure-Python DES implementation.
    key = bytes.fromhex("0123456789ABCDEFFEDCBA987654321089ABCDEF01234567")
    assert kcv_of_secret("DES3", key) == "3FD5"


def test_des2_kcv_expands_k1k2k1():
    k2 = bytes.fromhex("0123456789ABCDEFFEDCBA9876543210")
    # the widely published check value of this test key is 08D7B4
    assert kcv_of_secret("DES2", k2) == "08D7"
    assert kcv_of_secret("DES3", k2 + k2[:8]) == "08D7"


def test_aes_and_generic_kcv():
    enc = Cipher(algorithms.AES(bytes(16)), modes.ECB()).encryptor()
    assert kcv_of_secret("AES", bytes(16)) == enc.update(bytes(16))[:2].hex().upper()
    assert kcv_of_secret("AES", FIXED) == MajorKey(FIXED).kcv
    import hashlib
    assert kcv_of_secret("GENERIC", b"hmac-key") == hashlib.sha256(b"hmac-key").digest()[:2].hex().upper()
    with pytest.raises(ValueError):
        kcv_of_secret("AES", bytes(15))


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_secure_memory_roundtrip_and_modes(tmp_path):
    mem = SecureMemory(str(tmp_path))
    assert mem.load_ftk() is None
    ftk = generate_ftk()
    mem.store_ftk(ftk)
    secure = tmp_path / "secure"
    assert _mode(secure) == 0o700
    assert _mode(secure / "device.key") == 0o600
    assert _mode(secure / "ftk.bin") == 0o600
    assert ftk.key_bytes() not in (secure / "ftk.bin").read_bytes()
    assert not [p for p in os.listdir(secure) if p.startswith(".tmp")]

    loaded = SecureMemory(str(tmp_path)).load_ftk()  # a fresh instance reads the files
    assert loaded is not None and loaded.kcv == ftk.kcv
    assert loaded.unwrap(ftk.wrap(b"k", b"a"), b"a") == b"k"

    device = (secure / "device.key").read_bytes()
    mem.store_ftk(generate_ftk())  # replacing the FTK keeps the device key
    assert (secure / "device.key").read_bytes() == device

    mem.store_ftk(None)
    assert not (secure / "ftk.bin").exists()
    assert SecureMemory(str(tmp_path)).load_ftk() is None


def test_secure_memory_corruption_detected(tmp_path):
    mem = SecureMemory(str(tmp_path))
    mem.store_ftk(generate_ftk())
    path = tmp_path / "secure" / "ftk.bin"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WrapError, match="ftk.bin"):
        SecureMemory(str(tmp_path)).load_ftk()
    path.write_bytes(b"short")
    with pytest.raises(WrapError, match="ftk.bin"):
        SecureMemory(str(tmp_path)).load_ftk()


def test_secure_memory_wrong_device_key(tmp_path):
    SecureMemory(str(tmp_path)).store_ftk(generate_ftk())
    (tmp_path / "secure" / "device.key").write_bytes(os.urandom(32))
    with pytest.raises(WrapError, match="ftk.bin"):
        SecureMemory(str(tmp_path)).load_ftk()
    (tmp_path / "secure" / "device.key").unlink()
    with pytest.raises(WrapError, match="device.key"):
        SecureMemory(str(tmp_path)).load_ftk()
