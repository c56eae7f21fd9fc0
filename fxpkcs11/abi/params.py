"""CK_MECHANISM -> (mechanism, parameter) with the parameter read as the registry says."""
from __future__ import annotations

from typing import Any, Callable

from fxpkcs11 import ck, mechs
from fxpkcs11.abi import marshal as m
from fxpkcs11.abi.objects import ref
from fxpkcs11.errors import CKRError


def _invalid(text: str) -> CKRError:
    return CKRError(ck.CKR_MECHANISM_PARAM_INVALID, text)


def _struct(p: Any, n: int, ctype: str) -> Any:
    if p == m.NULL or n != m.ffi.sizeof(ctype):
        raise _invalid(f"parameter must be a {ctype}")
    return m.ffi.cast(ctype + " *", p)


def _none(p: Any, n: int) -> None:
    if n:
        raise _invalid("this mechanism takes no parameter")
    return None


def _iv(size: int) -> Callable[[Any, int], bytes]:
    def read(p: Any, n: int) -> bytes:
        if n != size or p == m.NULL:
            raise _invalid(f"IV must be {size} bytes")
        return m.ffi.buffer(p, n)[:]
    return read


def _optional_iv(p: Any, n: int) -> bytes | None:
    return None if (p == m.NULL or not n) else _bytes_of(p, n, "IV")


def _bytes_of(p: Any, n: int, what: str) -> bytes:
    if not n:
        return b""
    if p == m.NULL:
        raise _invalid(f"{what} is null with length {n}")
    if n > 1 << 20:
        raise _invalid(f"{what} length {n} is absurd")
    return m.ffi.buffer(p, n)[:]


def _gcm(p: Any, n: int) -> dict:
    g = _struct(p, n, "CK_GCM_PARAMS")[0]
    return {"iv": _bytes_of(g.pIv, g.ulIvLen, "GCM IV"), "aad": _bytes_of(g.pAAD, g.ulAADLen, "GCM AAD"),
            "tag_bits": g.ulTagBits}


def _oaep(p: Any, n: int) -> dict:
    o = _struct(p, n, "CK_RSA_PKCS_OAEP_PARAMS")[0]
    label = b""
    if o.source == ck.CKZ_DATA_SPECIFIED:
        label = _bytes_of(o.pSourceData, o.ulSourceDataLen, "OAEP source data")
    elif o.source != 0 or o.ulSourceDataLen:
        raise _invalid("OAEP source must be CKZ_DATA_SPECIFIED")
    return {"hash": o.hashAlg, "mgf": o.mgf, "label": label}


def _pss(p: Any, n: int) -> dict:
    s = _struct(p, n, "CK_RSA_PKCS_PSS_PARAMS")[0]
    return {"hash": s.hashAlg, "mgf": s.mgf, "salt": s.sLen}


def _ulong(p: Any, n: int) -> int:
    return _struct(p, n, "CK_ULONG")[0]


def _array(field: Any, size: int) -> bytes:
    return m.ffi.buffer(field, size)[:]


def _ctr(p: Any, n: int) -> dict:
    c = _struct(p, n, "CK_AES_CTR_PARAMS")[0]
    return {"bits": c.ulCounterBits, "cb": _array(c.cb, 16)}


def _eddsa(p: Any, n: int) -> dict | None:
    if p == m.NULL and not n:
        return None  # pure EdDSA
    e = _struct(p, n, "CK_EDDSA_PARAMS")[0]
    return {"ph": bool(e.phFlag), "context": _bytes_of(e.pContextData, e.ulContextDataLen, "EdDSA context")}


def _ecdh(p: Any, n: int) -> dict:
    e = _struct(p, n, "CK_ECDH1_DERIVE_PARAMS")[0]
    public = _bytes_of(e.pPublicData, e.ulPublicDataLen, "ECDH public data")
    if not public:
        raise _invalid("ECDH needs the other party's public key")
    return {"kdf": e.kdf, "shared": _bytes_of(e.pSharedData, e.ulSharedDataLen, "ECDH shared data"),
            "public": public}


def _data(p: Any, n: int) -> bytes:
    if not n or p == m.NULL:
        raise _invalid("this mechanism needs parameter bytes")
    return _bytes_of(p, n, "parameter")


def _string_data(p: Any, n: int) -> bytes:
    s = _struct(p, n, "CK_KEY_DERIVATION_STRING_DATA")[0]
    return _bytes_of(s.pData, s.ulLen, "derivation data")


def _cbc_data(ctype: str, block: int) -> Callable[[Any, int], dict]:
    def read(p: Any, n: int) -> dict:
        c = _struct(p, n, ctype)[0]
        return {"iv": _array(c.iv, block), "data": _bytes_of(c.pData, c.length, "derivation data")}
    return read


def _handle_ref(h: int, what: str) -> int:
    if h == ck.CK_INVALID_HANDLE:
        raise _invalid(f"{what} is not a valid object handle")
    return ref(h)


def _key_handle(p: Any, n: int) -> dict:
    return {"key": _handle_ref(_struct(p, n, "CK_OBJECT_HANDLE")[0], "the second key")}


def _hkdf(p: Any, n: int) -> dict:
    h = _struct(p, n, "CK_HKDF_PARAMS")[0]
    out = {"extract": bool(h.bExtract), "expand": bool(h.bExpand), "prf": h.prfHashMechanism,
           "salt_type": h.ulSaltType, "salt": b"", "salt_key": None,
           "info": _bytes_of(h.pInfo, h.ulInfoLen, "HKDF info")}
    if h.bExtract and h.ulSaltType == ck.CKF_HKDF_SALT_DATA:
        out["salt"] = _bytes_of(h.pSalt, h.ulSaltLen, "HKDF salt")
    elif h.bExtract and h.ulSaltType == ck.CKF_HKDF_SALT_KEY:
        out["salt_key"] = _handle_ref(h.hSaltKey, "hSaltKey")
    return out


READERS: dict[str, Callable[[Any, int], Any]] = {
    "none": _none, "iv16": _iv(16), "iv8": _iv(8), "optional_iv": _optional_iv, "gcm": _gcm,
    "oaep": _oaep, "pss": _pss, "mac_general": _ulong, "ctr": _ctr, "eddsa": _eddsa, "ecdh": _ecdh,
    "bytes": _data, "string_data": _string_data,
    "aes_cbc_data": _cbc_data("CK_AES_CBC_ENCRYPT_DATA_PARAMS", 16),
    "des_cbc_data": _cbc_data("CK_DES_CBC_ENCRYPT_DATA_PARAMS", 8),
    "key_handle": _key_handle, "hkdf": _hkdf,
}


def read_mechanism(pmech: Any, op: str) -> tuple[mechs.Mechanism, Any]:
    if pmech == m.NULL:
        raise m.bad("mechanism pointer is null")
    mp = pmech[0]
    mech = mechs.get(mp.mechanism)
    # The mechanism is judged before its parameter is read: the parameter of a mechanism the
    # call cannot use is no concern of the call's (and its pointers are never followed).
    usable = mech is not None and (not op or (mech.code in mechs.DIGESTS if op == "digest"
                                               else mech.command(op) is not None))
    if not usable:
        raise CKRError(ck.CKR_MECHANISM_INVALID, f"{ck.name(mp.mechanism, 'CKM_')} cannot {op}")
    return mech, READERS[mech.param](mp.pParameter, mp.ulParameterLen)
