"""GPKX, general purpose key derive (C_DeriveKey).

The base key must allow CKA_DERIVE. The new object is a secret key of the template's key
type (generic secret when none) and length (CKA_VALUE_LEN, or the type's fixed length).
Attributes follow the spec: CKA_LOCAL false, no key generation mechanism, and
CKA_ALWAYS_SENSITIVE / CKA_NEVER_EXTRACTABLE only while every key that went into the value
had them. Mechanisms that mix secret keys' values directly (concatenation, XOR, encryption
of data, HKDF) also pass on the base keys' CKA_SENSITIVE true and CKA_EXTRACTABLE false.
"""
from __future__ import annotations

from typing import Any

from fxpkcs11 import ck
from vhsm.commands.keys import resolve, secret_attrs, store_new
from vhsm.crypto import derive as kdmech
from vhsm.crypto import keys as keymat
from vhsm.excrypt import DeviceError, Tag
from vhsm.objects import P11Object
from vhsm.p11 import attributes as rules

HKDF_BASE_TYPES = (ck.CKK_GENERIC_SECRET, ck.CKK_HKDF)
MECHANISMS = (kdmech.ECDH_MECHS | set(kdmech.ENCRYPT_DATA) | kdmech.CONCATENATE
              | {ck.CKM_DH_PKCS_DERIVE, ck.CKM_HKDF_DERIVE})


def _inconsistent(mech: int, what: str) -> DeviceError:
    return DeviceError(ck.CKR_KEY_TYPE_INCONSISTENT, f"{ck.name(mech, 'CKM_')} needs {what}")


def _length(kt: int, template: dict[int, Any]) -> int | None:
    n = template.pop(ck.CKA_VALUE_LEN, None)
    fixed = keymat.FIXED_SECRETS.get(kt)
    if fixed is not None:
        if n not in (None, fixed):
            raise DeviceError(ck.CKR_TEMPLATE_INCONSISTENT, f"{ck.name(kt, 'CKK_')} keys are {fixed} bytes")
        return fixed
    if n is not None and not 0 < n <= keymat.MAX_SECRET:
        raise DeviceError(ck.CKR_ATTRIBUTE_VALUE_INVALID, f"CKA_VALUE_LEN {n} is out of range")
    return n


def _cut(kt: int, material: bytes, length: int | None) -> bytes:
    value = material if length is None else material[:length]
    if kt in keymat.FIXED_SECRETS:
        value = keymat.des_parity(value)
    if not keymat.secret_length_ok(kt, len(value)):
        raise DeviceError(ck.CKR_TEMPLATE_INCOMPLETE if length is None else ck.CKR_ATTRIBUTE_VALUE_INVALID,
                          f"a derived {ck.name(kt, 'CKK_')} key cannot be {len(value)} bytes long"
                          + ("; give CKA_VALUE_LEN" if length is None else ""))
    return value


def _secret_base(base: P11Object, mech: int, types: tuple[int, ...] | None = None) -> int:
    kt = base.attrs.get(ck.CKA_KEY_TYPE)
    if base.cls != ck.CKO_SECRET_KEY or (types is not None and kt not in types):
        raise _inconsistent(mech, "a secret base key" if types is None else
                            "a base key of type " + " or ".join(ck.name(t, "CKK_") for t in types))
    return kt


def _other_secret(conn: Any, role: dict, ref: Any, mech: int) -> P11Object:
    obj = resolve(conn, role, ref, ck.CKR_MECHANISM_PARAM_INVALID)
    if obj.cls != ck.CKO_SECRET_KEY:
        raise DeviceError(ck.CKR_MECHANISM_PARAM_INVALID, f"{ck.name(mech, 'CKM_')}: the second key is not a secret key")
    return obj


def _material(conn: Any, role: dict, base: P11Object, mech: int, param: Any,
              length: int | None) -> tuple[bytes, list[P11Object], bool]:
    """(derived bytes, the other keys that went into them, pass sensitivity on?)"""
    if mech in kdmech.ECDH_MECHS or mech == ck.CKM_DH_PKCS_DERIVE:
        want = ck.CKK_EC if mech in kdmech.ECDH_MECHS else ck.CKK_DH
        if base.cls != ck.CKO_PRIVATE_KEY or base.attrs.get(ck.CKA_KEY_TYPE) != want:
            raise _inconsistent(mech, f"a {ck.name(want, 'CKK_')} private key")
        key = conn.objects.load(base)
        fn = kdmech.ecdh if want == ck.CKK_EC else kdmech.dh
        return fn(key, param, length), [], False
    if mech in kdmech.ENCRYPT_DATA:
        kt = _secret_base(base, mech)
        return kdmech.encrypt_data(mech, conn.objects.load(base), kt, param, length), [], True
    if mech in kdmech.CONCATENATE:
        _secret_base(base, mech)
        others: list[P11Object] = []
        other_value = None
        if mech == ck.CKM_CONCATENATE_BASE_AND_KEY:
            ref = param.get("key") if isinstance(param, dict) else None
            other = _other_secret(conn, role, ref, mech)
            others.append(other)
            other_value = conn.objects.load(other)
        return kdmech.concatenate(mech, conn.objects.load(base), param, other_value, length), others, True
    if mech == ck.CKM_HKDF_DERIVE:
        _secret_base(base, mech, HKDF_BASE_TYPES)
        others, salt = [], None
        if isinstance(param, dict) and param.get("extract") and param.get("salt_type") == ck.CKF_HKDF_SALT_KEY:
            salt_obj = _other_secret(conn, role, param.get("salt_key"), mech)
            others.append(salt_obj)
            salt = conn.objects.load(salt_obj)
        return kdmech.hkdf(param, conn.objects.load(base), salt, length), others, True
    raise DeviceError(ck.CKR_MECHANISM_INVALID, f"{ck.name(mech or 0, 'CKM_')} does not derive keys")


def _inherit(attrs: dict[int, Any], sources: list[P11Object], propagate: bool) -> None:
    if propagate:
        if any(s.attrs.get(ck.CKA_SENSITIVE) for s in sources):
            attrs[ck.CKA_SENSITIVE] = True
        if any(not s.attrs.get(ck.CKA_EXTRACTABLE, True) for s in sources):
            attrs[ck.CKA_EXTRACTABLE] = False
    attrs[ck.CKA_ALWAYS_SENSITIVE] = (all(s.attrs.get(ck.CKA_ALWAYS_SENSITIVE, False) for s in sources)
                                      and bool(attrs.get(ck.CKA_SENSITIVE)))
    attrs[ck.CKA_NEVER_EXTRACTABLE] = (all(s.attrs.get(ck.CKA_NEVER_EXTRACTABLE, False) for s in sources)
                                       and not attrs.get(ck.CKA_EXTRACTABLE, True))


def derive(conn: Any, role: dict, f: dict) -> dict:
    mech, param = f.get(Tag.MECHANISM), f.get(Tag.MECH_PARAM)
    if mech not in MECHANISMS:
        raise DeviceError(ck.CKR_MECHANISM_INVALID, f"{ck.name(mech or 0, 'CKM_')} does not derive keys")
    base = resolve(conn, role, f.get(Tag.OBJECT), ck.CKR_KEY_HANDLE_INVALID)
    if base.cls not in (ck.CKO_SECRET_KEY, ck.CKO_PRIVATE_KEY):
        raise DeviceError(ck.CKR_KEY_TYPE_INCONSISTENT, f"object {base.ref} cannot be a base key")
    rules.require_usage(base.attrs, ck.CKA_DERIVE, mech)
    template = dict(f.get(Tag.TEMPLATE) or {})
    if rules.object_class(template, ck.CKO_SECRET_KEY) != ck.CKO_SECRET_KEY:
        raise DeviceError(ck.CKR_TEMPLATE_INCONSISTENT, "C_DeriveKey makes secret keys")
    kt = template.get(ck.CKA_KEY_TYPE, ck.CKK_GENERIC_SECRET)
    rules.check_template(template, ck.CKO_SECRET_KEY, kt, generated=True)
    length = _length(kt, template)
    material, others, propagate = _material(conn, role, base, mech, param, length)
    value = _cut(kt, material, length)
    attrs = rules.complete(template, ck.CKO_SECRET_KEY, kt, local=False, mechanism=None)
    attrs.update(secret_attrs(kt, value, template))
    _inherit(attrs, [base, *others], propagate)
    obj = store_new(conn, role, f, attrs, value)
    return {Tag.OBJECT: obj.ref}


HANDLERS = {"GPKX": derive}
