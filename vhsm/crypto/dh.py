"""PKCS #3 Diffie-Hellman keys, computed with Python integers.

`cryptography` refuses finite-field groups it cannot validate (and deprecates FFDH), while
PKCS #11 applications bring any prime and base (the python-pkcs11 suite uses a 2044-bit
prime), so the device does the arithmetic itself. Keys are stored as PKCS #8 with the
dhKeyAgreement OID (1.2.840.113549.1.3.1), the form OpenSSL writes.
"""
from __future__ import annotations

import secrets
import warnings
from dataclasses import dataclass

from vhsm.crypto import der

DH_OID = bytes.fromhex("06092a864886f70d010301")
MIN_BITS, MAX_BITS = 1024, 8192


def _algorithm(p: int, g: int) -> bytes:
    return der.sequence(DH_OID, der.sequence(der.integer(p), der.integer(g)))


def check_group(p: int, g: int) -> None:
    if not MIN_BITS <= p.bit_length() <= MAX_BITS or p % 2 == 0:
        raise ValueError(f"DH prime must be odd and {MIN_BITS} to {MAX_BITS} bits")
    if not 1 < g < p - 1:
        raise ValueError("DH base must be between 2 and p - 2")


@dataclass(frozen=True)
class DHPublicKey:
    p: int
    g: int
    y: int

    @property
    def key_size(self) -> int:
        return self.p.bit_length()

    def public_der(self) -> bytes:
        """SubjectPublicKeyInfo."""
        return der.sequence(_algorithm(self.p, self.g), der.bit_string(der.integer(self.y)))


@dataclass(frozen=True)
class DHPrivateKey:
    p: int
    g: int
    x: int

    @property
    def key_size(self) -> int:
        return self.p.bit_length()

    def public_key(self) -> DHPublicKey:
        return DHPublicKey(self.p, self.g, pow(self.g, self.x, self.p))

    def private_der(self) -> bytes:
        """PKCS #8 PrivateKeyInfo."""
        return der.sequence(der.integer(0), _algorithm(self.p, self.g), der.octet_string(der.integer(self.x)))

    def exchange(self, peer_y: int) -> bytes:
        """The shared secret y^x mod p as an octet string as long as the prime (PKCS #3)."""
        if not 1 < peer_y < self.p - 1:
            raise ValueError("the other party's public value is out of range")
        z = pow(peer_y, self.x, self.p)
        return z.to_bytes((self.p.bit_length() + 7) // 8, "big")


def is_dh_der(data: bytes) -> bool:
    return DH_OID in data[:40]


def load_private(data: bytes) -> DHPrivateKey:
    _, body, _ = der.read(data)
    version, alg, key = der.items(body)[:3]
    if der.to_int(der.expect(der.INTEGER, version)) != 0:
        raise der.DERError("unknown PKCS #8 version")
    oid, params = der.items(der.expect(der.SEQUENCE, alg))[:2]
    if der.tlv(*oid) != DH_OID:
        raise der.DERError("not a dhKeyAgreement key")
    p, g = (der.to_int(der.expect(der.INTEGER, e)) for e in der.items(der.expect(der.SEQUENCE, params))[:2])
    x = der.to_int(der.expect(der.INTEGER, der.read(der.expect(der.OCTET_STRING, key))[:2]))
    check_group(p, g)
    return DHPrivateKey(p, g, x)


def new_private(p: int, g: int, value_bits: int | None = None) -> DHPrivateKey:
    check_group(p, g)
    if value_bits:
        if not 2 <= value_bits < p.bit_length():
            raise ValueError(f"CKA_VALUE_BITS must be 2 to {p.bit_length() - 1}")
        x = secrets.randbits(value_bits - 1) | (1 << (value_bits - 1))
    else:
        x = 2 + secrets.randbelow(p - 3)  # 2 .. p-2
    return DHPrivateKey(p, g, x)


def new_parameters(bits: int) -> tuple[int, int]:
    """A safe prime of `bits` bits and generator 2 (slow for large sizes)."""
    if not MIN_BITS <= bits <= 4096:
        raise ValueError(f"DH parameters are generated with {MIN_BITS} to 4096-bit primes")
    from cryptography.hazmat.primitives.asymmetric import dh as _dh
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FFDH is deprecated in cryptography; the numbers are fine
        numbers = _dh.generate_parameters(2, bits).parameter_numbers()
    return numbers.p, numbers.g
