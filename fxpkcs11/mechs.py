"""The one mechanism registry: what each mechanism does, its key sizes, its parameter
kind, and which Excrypt command carries each of its operations.

C_GetMechanismList and C_GetMechanismInfo answer from here, and the provider picks the
command for an operation from here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fxpkcs11 import ck

F = ck  # brevity in the table below
EC_FLAGS = ck.CKF_EC_F_P | ck.CKF_EC_NAMEDCURVE | ck.CKF_EC_UNCOMPRESS


@dataclass(frozen=True)
class Mechanism:
    code: int
    min_size: int
    max_size: int
    flags: int
    param: str = "none"                 # how the C parameter is read (see abi/params.py)
    commands: dict[str, str] = field(default_factory=dict)  # operation -> Excrypt command

    def command(self, op: str) -> str | None:
        return self.commands.get(op)


def _m(code: int, lo: int, hi: int, flags: int, param: str = "none", **commands: str) -> Mechanism:
    return Mechanism(code, lo, hi, flags, param, commands)


RSA = (2048, 4096)
_SIGN_RSA = dict(sign="GPAS", verify="GPAV")
_HASHED_RSA = [ck.CKM_SHA1_RSA_PKCS, ck.CKM_SHA224_RSA_PKCS, ck.CKM_SHA256_RSA_PKCS, ck.CKM_SHA384_RSA_PKCS,
               ck.CKM_SHA512_RSA_PKCS]
_HASHED_PSS = [ck.CKM_SHA1_RSA_PKCS_PSS, ck.CKM_SHA224_RSA_PKCS_PSS, ck.CKM_SHA256_RSA_PKCS_PSS,
               ck.CKM_SHA384_RSA_PKCS_PSS, ck.CKM_SHA512_RSA_PKCS_PSS]
_HASHED_ECDSA = [ck.CKM_ECDSA_SHA1, ck.CKM_ECDSA_SHA224, ck.CKM_ECDSA_SHA256, ck.CKM_ECDSA_SHA384,
                 ck.CKM_ECDSA_SHA512]
_HMAC = [ck.CKM_SHA_1_HMAC, ck.CKM_SHA224_HMAC, ck.CKM_SHA256_HMAC, ck.CKM_SHA384_HMAC, ck.CKM_SHA512_HMAC]
DIGESTS = {ck.CKM_SHA_1: "sha1", ck.CKM_SHA224: "sha224", ck.CKM_SHA256: "sha256", ck.CKM_SHA384: "sha384",
           ck.CKM_SHA512: "sha512"}
SV = F.CKF_SIGN | F.CKF_VERIFY
ED = F.CKF_ENCRYPT | F.CKF_DECRYPT
WU = F.CKF_WRAP | F.CKF_UNWRAP

_TABLE = [
    _m(ck.CKM_RSA_PKCS_KEY_PAIR_GEN, *RSA, F.CKF_GENERATE_KEY_PAIR, generate_pair="GRSA"),
    _m(ck.CKM_RSA_PKCS, *RSA, ED | SV | WU, encrypt="GPAE", decrypt="GPAD", wrap="GPKW", unwrap="GPKU",
       **_SIGN_RSA),
    _m(ck.CKM_RSA_X_509, *RSA, ED | SV, encrypt="GPAE", decrypt="GPAD", **_SIGN_RSA),
    _m(ck.CKM_RSA_PKCS_OAEP, *RSA, ED | WU, "oaep", encrypt="GPAE", decrypt="GPAD", wrap="GPKW", unwrap="GPKU"),
    _m(ck.CKM_RSA_PKCS_PSS, *RSA, SV, "pss", **_SIGN_RSA),
    *[_m(c, *RSA, SV, **_SIGN_RSA) for c in _HASHED_RSA],
    *[_m(c, *RSA, SV, "pss", **_SIGN_RSA) for c in _HASHED_PSS],
    _m(ck.CKM_EC_KEY_PAIR_GEN, 256, 521, F.CKF_GENERATE_KEY_PAIR | EC_FLAGS, generate_pair="GECC"),
    _m(ck.CKM_ECDSA, 256, 521, SV | EC_FLAGS, **_SIGN_RSA),
    *[_m(c, 256, 521, SV | EC_FLAGS, **_SIGN_RSA) for c in _HASHED_ECDSA],
    _m(ck.CKM_AES_KEY_GEN, 16, 32, F.CKF_GENERATE, generate="GPGS"),
    _m(ck.CKM_AES_ECB, 16, 32, ED, encrypt="GPSE", decrypt="GPSD"),
    _m(ck.CKM_AES_CBC, 16, 32, ED, "iv16", encrypt="GPSE", decrypt="GPSD"),
    _m(ck.CKM_AES_CBC_PAD, 16, 32, ED, "iv16", encrypt="GPSE", decrypt="GPSD"),
    _m(ck.CKM_AES_GCM, 16, 32, ED, "gcm", encrypt="GPSE", decrypt="GPSD"),
    _m(ck.CKM_AES_KEY_WRAP, 16, 32, WU, "optional_iv", wrap="GPKW", unwrap="GPKU"),
    _m(ck.CKM_AES_KEY_WRAP_PAD, 16, 32, WU, "optional_iv", wrap="GPKW", unwrap="GPKU"),
    _m(ck.CKM_AES_KEY_WRAP_KWP, 16, 32, WU, "optional_iv", wrap="GPKW", unwrap="GPKU"),
    _m(ck.CKM_DES3_KEY_GEN, 24, 24, F.CKF_GENERATE, generate="GPGS"),
    _m(ck.CKM_DES3_ECB, 24, 24, ED, encrypt="GPSE", decrypt="GPSD"),
    _m(ck.CKM_DES3_CBC, 24, 24, ED, "iv8", encrypt="GPSE", decrypt="GPSD"),
    _m(ck.CKM_GENERIC_SECRET_KEY_GEN, 1, 512, F.CKF_GENERATE, generate="GPGS"),
    *[_m(c, 1, 512, SV, sign="GPMC", verify="GPMV") for c in _HMAC],
    *[_m(c, 0, 0, F.CKF_DIGEST) for c in DIGESTS],
]

REGISTRY: dict[int, Mechanism] = {m.code: m for m in _TABLE}
MECHANISM_LIST: tuple[int, ...] = tuple(sorted(REGISTRY))


def get(code: int) -> Mechanism | None:
    return REGISTRY.get(code)
