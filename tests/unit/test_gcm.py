"""The device's own GCM (any IV length) against the crypto library where both apply, and the
counter wrapping only its low 32 bits."""
import os

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from vhsm.crypto import gcm


@pytest.mark.parametrize("iv_len", [8, 12, 13, 16, 60, 128])
@pytest.mark.parametrize("data_len", [0, 5, 16, 33])
def test_matches_the_library(iv_len, data_len):
    key, iv, aad, data = os.urandom(32), os.urandom(iv_len), os.urandom(7), os.urandom(data_len)
    enc = Cipher(algorithms.AES(key), modes.GCM(iv)).encryptor()
    enc.authenticate_additional_data(aad)
    ref = enc.update(data) + enc.finalize() + enc.tag
    mine = gcm.encrypt(key, iv, aad, data, 16)
    assert mine == ref
    assert gcm.decrypt(key, iv, aad, mine, 16) == data
    assert gcm.decrypt(key, iv, aad, mine[:-1] + bytes([mine[-1] ^ 1]), 16) is None


def test_counter_wraps_in_its_low_32_bits():
    key, data = os.urandom(16), os.urandom(64)
    j0 = os.urandom(12) + (0xFFFFFFFE).to_bytes(4, "big")
    stream, low = b"", 0xFFFFFFFE
    for _ in range(4):
        low = (low + 1) & 0xFFFFFFFF
        stream += Cipher(algorithms.AES(key), modes.ECB()).encryptor().update(j0[:12] + low.to_bytes(4, "big"))
    assert gcm._gctr(key, j0, data) == bytes(a ^ b for a, b in zip(data, stream))
