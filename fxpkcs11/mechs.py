"""The one mechanism registry: what each mechanism does, its key sizes, its parameter
kind, and which Excrypt command carries each of its operations.

C_GetMechanismList and C_GetMechanismInfo answer from here, and the provider picks the
command for an operation from here. Key sizes follow the spec's units: bits for RSA, DSA,
DH and the curves; bytes for AES, DES and the other secret keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fxpkcs11 import ck

F = ck  # brevity in the table below
EC_FLAGS = ck.CKF_EC_F_P | ck.CKF_EC_NAMEDCURVE | ck.CKF_EC_UNCOMPRESS
EDWARDS_FLAGS = ck.CKF_EC_F_P | ck.CKF_EC_NAMEDCURVE | ck.CKF_EC_CURVENAME


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


RSA = (1024, 8192)
EC = (192, 521)          # field sizes: P-192 up to P-521 (secp256k1 too)
EDWARDS = (255, 448)     # Ed25519, Ed448
DSA = (1024, 3072)
DH = (1024, 8192)
DH_GEN = (1024, 4096)    # parameter generation finds safe primes: slow above 2048 bits
AES = (16, 32)
DES3 = (16, 24)          # DES2 and DES3 keys
SECRET = (1, 512)

SV = F.CKF_SIGN | F.CKF_VERIFY
ED = F.CKF_ENCRYPT | F.CKF_DECRYPT
WU = F.CKF_WRAP | F.CKF_UNWRAP
DV = F.CKF_DERIVE
_SIGN = dict(sign="GPAS", verify="GPAV")
_MAC = dict(sign="GPMC", verify="GPMV")
_SYM = dict(encrypt="GPSE", decrypt="GPSD")
_WRAP = dict(wrap="GPKW", unwrap="GPKU")
_DERIVE = dict(derive="GPKX")

_HASHED_RSA = [ck.CKM_SHA1_RSA_PKCS, ck.CKM_SHA224_RSA_PKCS, ck.CKM_SHA256_RSA_PKCS, ck.CKM_SHA384_RSA_PKCS,
               ck.CKM_SHA512_RSA_PKCS]
_HASHED_PSS = [ck.CKM_SHA1_RSA_PKCS_PSS, ck.CKM_SHA224_RSA_PKCS_PSS, ck.CKM_SHA256_RSA_PKCS_PSS,
               ck.CKM_SHA384_RSA_PKCS_PSS, ck.CKM_SHA512_RSA_PKCS_PSS]
_HASHED_ECDSA = [ck.CKM_ECDSA_SHA1, ck.CKM_ECDSA_SHA224, ck.CKM_ECDSA_SHA256, ck.CKM_ECDSA_SHA384,
                 ck.CKM_ECDSA_SHA512]
_HASHED_DSA = [ck.CKM_DSA_SHA1, ck.CKM_DSA_SHA224, ck.CKM_DSA_SHA256, ck.CKM_DSA_SHA384, ck.CKM_DSA_SHA512]
_HMAC = [ck.CKM_SHA_1_HMAC, ck.CKM_SHA224_HMAC, ck.CKM_SHA256_HMAC, ck.CKM_SHA384_HMAC, ck.CKM_SHA512_HMAC,
         ck.CKM_SHA3_224_HMAC, ck.CKM_SHA3_256_HMAC, ck.CKM_SHA3_384_HMAC, ck.CKM_SHA3_512_HMAC]
_HMAC_GENERAL = [ck.CKM_SHA_1_HMAC_GENERAL, ck.CKM_SHA224_HMAC_GENERAL, ck.CKM_SHA256_HMAC_GENERAL,
                 ck.CKM_SHA384_HMAC_GENERAL, ck.CKM_SHA512_HMAC_GENERAL, ck.CKM_SHA3_224_HMAC_GENERAL,
                 ck.CKM_SHA3_256_HMAC_GENERAL, ck.CKM_SHA3_384_HMAC_GENERAL, ck.CKM_SHA3_512_HMAC_GENERAL]
_SECRET_KEYGEN = [ck.CKM_GENERIC_SECRET_KEY_GEN, ck.CKM_HKDF_KEY_GEN, ck.CKM_SHA_1_KEY_GEN, ck.CKM_SHA224_KEY_GEN,
                  ck.CKM_SHA256_KEY_GEN, ck.CKM_SHA384_KEY_GEN, ck.CKM_SHA512_KEY_GEN, ck.CKM_SHA3_224_KEY_GEN,
                  ck.CKM_SHA3_256_KEY_GEN, ck.CKM_SHA3_384_KEY_GEN, ck.CKM_SHA3_512_KEY_GEN]
# Digests run in the provider (they touch no key): mechanism -> hashlib name.
# MD5 is offered for compatibility only (docs/device.md says so).
DIGESTS = {ck.CKM_SHA_1: "sha1", ck.CKM_SHA224: "sha224", ck.CKM_SHA256: "sha256", ck.CKM_SHA384: "sha384",
           ck.CKM_SHA512: "sha512", ck.CKM_SHA3_224: "sha3_224", ck.CKM_SHA3_256: "sha3_256",
           ck.CKM_SHA3_384: "sha3_384", ck.CKM_SHA3_512: "sha3_512", ck.CKM_MD5: "md5"}

RECOVER = F.CKF_SIGN_RECOVER | F.CKF_VERIFY_RECOVER
_RECOVER = dict(sign_recover="GPSR", verify_recover="GPVR")

_TABLE = [
    # RSA
    _m(ck.CKM_RSA_PKCS_KEY_PAIR_GEN, *RSA, F.CKF_GENERATE_KEY_PAIR, generate_pair="GRSA"),
    _m(ck.CKM_RSA_PKCS, *RSA, ED | SV | WU | RECOVER, encrypt="GPAE", decrypt="GPAD", **_WRAP, **_SIGN,
       **_RECOVER),
    _m(ck.CKM_RSA_X_509, *RSA, ED | SV | RECOVER, encrypt="GPAE", decrypt="GPAD", **_SIGN, **_RECOVER),
    _m(ck.CKM_RSA_PKCS_OAEP, *RSA, ED | WU, "oaep", encrypt="GPAE", decrypt="GPAD", **_WRAP),
    _m(ck.CKM_RSA_PKCS_PSS, *RSA, SV, "pss", **_SIGN),
    *[_m(c, *RSA, SV, **_SIGN) for c in _HASHED_RSA],
    *[_m(c, *RSA, SV, "pss", **_SIGN) for c in _HASHED_PSS],
    # EC: ECDSA and ECDH
    _m(ck.CKM_EC_KEY_PAIR_GEN, *EC, F.CKF_GENERATE_KEY_PAIR | EC_FLAGS, generate_pair="GECC"),
    _m(ck.CKM_ECDSA, *EC, SV | EC_FLAGS, **_SIGN),
    *[_m(c, *EC, SV | EC_FLAGS, **_SIGN) for c in _HASHED_ECDSA],
    _m(ck.CKM_ECDH1_DERIVE, *EC, DV | EC_FLAGS, "ecdh", **_DERIVE),
    _m(ck.CKM_ECDH1_COFACTOR_DERIVE, *EC, DV | EC_FLAGS, "ecdh", **_DERIVE),
    # EdDSA
    _m(ck.CKM_EC_EDWARDS_KEY_PAIR_GEN, *EDWARDS, F.CKF_GENERATE_KEY_PAIR | EDWARDS_FLAGS, generate_pair="GECC"),
    _m(ck.CKM_EDDSA, *EDWARDS, SV | EDWARDS_FLAGS, "eddsa", **_SIGN),
    # DSA
    _m(ck.CKM_DSA_PARAMETER_GEN, *DSA, F.CKF_GENERATE, generate="GPDP"),
    _m(ck.CKM_DSA_KEY_PAIR_GEN, *DSA, F.CKF_GENERATE_KEY_PAIR, generate_pair="GDSA"),
    _m(ck.CKM_DSA, *DSA, SV, **_SIGN),
    *[_m(c, *DSA, SV, **_SIGN) for c in _HASHED_DSA],
    # Diffie-Hellman (PKCS #3)
    _m(ck.CKM_DH_PKCS_PARAMETER_GEN, *DH_GEN, F.CKF_GENERATE, generate="GPDP"),
    _m(ck.CKM_DH_PKCS_KEY_PAIR_GEN, *DH, F.CKF_GENERATE_KEY_PAIR, generate_pair="GDHK"),
    _m(ck.CKM_DH_PKCS_DERIVE, *DH, DV, "bytes", **_DERIVE),
    # AES
    _m(ck.CKM_AES_KEY_GEN, *AES, F.CKF_GENERATE, generate="GPGS"),
    _m(ck.CKM_AES_ECB, *AES, ED | WU, **_SYM, **_WRAP),
    _m(ck.CKM_AES_CBC, *AES, ED | WU, "iv16", **_SYM, **_WRAP),
    _m(ck.CKM_AES_CBC_PAD, *AES, ED | WU, "iv16", **_SYM, **_WRAP),
    _m(ck.CKM_AES_CTR, *AES, ED, "ctr", **_SYM),
    _m(ck.CKM_AES_GCM, *AES, ED, "gcm", **_SYM),
    _m(ck.CKM_AES_KEY_WRAP, *AES, WU, "optional_iv", **_WRAP),
    _m(ck.CKM_AES_KEY_WRAP_PAD, *AES, WU, "optional_iv", **_WRAP),
    _m(ck.CKM_AES_KEY_WRAP_KWP, *AES, WU, "optional_iv", **_WRAP),
    _m(ck.CKM_AES_MAC, *AES, SV, **_MAC),
    _m(ck.CKM_AES_MAC_GENERAL, *AES, SV, "mac_general", **_MAC),
    _m(ck.CKM_AES_CMAC, *AES, SV, **_MAC),
    _m(ck.CKM_AES_CMAC_GENERAL, *AES, SV, "mac_general", **_MAC),
    _m(ck.CKM_AES_ECB_ENCRYPT_DATA, *AES, DV, "string_data", **_DERIVE),
    _m(ck.CKM_AES_CBC_ENCRYPT_DATA, *AES, DV, "aes_cbc_data", **_DERIVE),
    # Triple DES (two- and three-key)
    _m(ck.CKM_DES2_KEY_GEN, 16, 16, F.CKF_GENERATE, generate="GPGS"),
    _m(ck.CKM_DES3_KEY_GEN, 24, 24, F.CKF_GENERATE, generate="GPGS"),
    _m(ck.CKM_DES3_ECB, *DES3, ED | WU, **_SYM, **_WRAP),
    _m(ck.CKM_DES3_CBC, *DES3, ED | WU, "iv8", **_SYM, **_WRAP),
    _m(ck.CKM_DES3_CBC_PAD, *DES3, ED | WU, "iv8", **_SYM, **_WRAP),
    _m(ck.CKM_DES3_MAC, *DES3, SV, **_MAC),
    _m(ck.CKM_DES3_MAC_GENERAL, *DES3, SV, "mac_general", **_MAC),
    _m(ck.CKM_DES3_CMAC, *DES3, SV, **_MAC),
    _m(ck.CKM_DES3_CMAC_GENERAL, *DES3, SV, "mac_general", **_MAC),
    _m(ck.CKM_DES3_ECB_ENCRYPT_DATA, *DES3, DV, "string_data", **_DERIVE),
    _m(ck.CKM_DES3_CBC_ENCRYPT_DATA, *DES3, DV, "des_cbc_data", **_DERIVE),
    # Generic secrets, HMAC, HKDF, derivation by concatenation
    *[_m(c, *SECRET, F.CKF_GENERATE, generate="GPGS") for c in _SECRET_KEYGEN],
    *[_m(c, *SECRET, SV, **_MAC) for c in _HMAC],
    *[_m(c, *SECRET, SV, "mac_general", **_MAC) for c in _HMAC_GENERAL],
    _m(ck.CKM_HKDF_DERIVE, *SECRET, DV, "hkdf", **_DERIVE),
    _m(ck.CKM_CONCATENATE_BASE_AND_KEY, *SECRET, DV, "key_handle", **_DERIVE),
    _m(ck.CKM_CONCATENATE_BASE_AND_DATA, *SECRET, DV, "string_data", **_DERIVE),
    _m(ck.CKM_CONCATENATE_DATA_AND_BASE, *SECRET, DV, "string_data", **_DERIVE),
    _m(ck.CKM_XOR_BASE_AND_DATA, *SECRET, DV, "string_data", **_DERIVE),
    # Digests
    *[_m(c, 0, 0, F.CKF_DIGEST) for c in DIGESTS],
]

REGISTRY: dict[int, Mechanism] = {m.code: m for m in _TABLE}
assert len(REGISTRY) == len(_TABLE), "a mechanism is listed twice"
MECHANISM_LIST: tuple[int, ...] = tuple(sorted(REGISTRY))


def get(code: int) -> Mechanism | None:
    return REGISTRY.get(code)


def commands() -> set[str]:
    """Every Excrypt command some mechanism's operation is carried by."""
    return {c for m in _TABLE for c in m.commands.values()}
