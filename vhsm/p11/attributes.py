"""PKCS #11 object attribute rules, as data, enforced by the device.

The device is the trust boundary, so the rules that keep keys safe (sensitive and
extractable are one-way, private components never leave, read-only attributes stay) live
here and nowhere else. The provider only marshals values.
"""
from __future__ import annotations

from typing import Any

from fxpkcs11 import ck
from vhsm.excrypt import DeviceError

UNAVAILABLE = ck.CK_UNAVAILABLE_INFORMATION

COMMON = {ck.CKA_CLASS, ck.CKA_TOKEN, ck.CKA_PRIVATE, ck.CKA_MODIFIABLE, ck.CKA_LABEL,
          ck.CKA_COPYABLE, ck.CKA_DESTROYABLE, ck.CKA_UNIQUE_ID}
KEY_COMMON = COMMON | {ck.CKA_KEY_TYPE, ck.CKA_ID, ck.CKA_START_DATE, ck.CKA_END_DATE, ck.CKA_DERIVE,
                       ck.CKA_LOCAL, ck.CKA_KEY_GEN_MECHANISM, ck.CKA_ALLOWED_MECHANISMS}
PUBLIC_COMMON = KEY_COMMON | {ck.CKA_SUBJECT, ck.CKA_ENCRYPT, ck.CKA_VERIFY, ck.CKA_VERIFY_RECOVER,
                              ck.CKA_WRAP, ck.CKA_TRUSTED, ck.CKA_WRAP_TEMPLATE, ck.CKA_PUBLIC_KEY_INFO}
PRIVATE_COMMON = KEY_COMMON | {ck.CKA_SUBJECT, ck.CKA_SENSITIVE, ck.CKA_DECRYPT, ck.CKA_SIGN,
                               ck.CKA_SIGN_RECOVER, ck.CKA_UNWRAP, ck.CKA_EXTRACTABLE,
                               ck.CKA_ALWAYS_SENSITIVE, ck.CKA_NEVER_EXTRACTABLE, ck.CKA_WRAP_WITH_TRUSTED,
                               ck.CKA_UNWRAP_TEMPLATE, ck.CKA_ALWAYS_AUTHENTICATE, ck.CKA_PUBLIC_KEY_INFO}
SECRET_COMMON = KEY_COMMON | {ck.CKA_SENSITIVE, ck.CKA_ENCRYPT, ck.CKA_DECRYPT, ck.CKA_SIGN, ck.CKA_VERIFY,
                              ck.CKA_WRAP, ck.CKA_UNWRAP, ck.CKA_EXTRACTABLE, ck.CKA_ALWAYS_SENSITIVE,
                              ck.CKA_NEVER_EXTRACTABLE, ck.CKA_CHECK_VALUE, ck.CKA_WRAP_WITH_TRUSTED,
                              ck.CKA_TRUSTED, ck.CKA_WRAP_TEMPLATE, ck.CKA_UNWRAP_TEMPLATE, ck.CKA_VALUE,
                              ck.CKA_VALUE_LEN}

RSA_PUBLIC = {ck.CKA_MODULUS, ck.CKA_MODULUS_BITS, ck.CKA_PUBLIC_EXPONENT}
RSA_PRIVATE_SECRET = {ck.CKA_PRIVATE_EXPONENT, ck.CKA_PRIME_1, ck.CKA_PRIME_2, ck.CKA_EXPONENT_1,
                      ck.CKA_EXPONENT_2, ck.CKA_COEFFICIENT}
EC_PUBLIC = {ck.CKA_EC_PARAMS, ck.CKA_EC_POINT}
DSA_DOMAIN = {ck.CKA_PRIME, ck.CKA_SUBPRIME, ck.CKA_BASE}
DH_DOMAIN = {ck.CKA_PRIME, ck.CKA_BASE}
DOMAIN_COMMON = COMMON | {ck.CKA_KEY_TYPE, ck.CKA_LOCAL}

ALLOWED: dict[tuple[int, int | None], set[int]] = {
    (ck.CKO_DATA, None): COMMON | {ck.CKA_APPLICATION, ck.CKA_OBJECT_ID, ck.CKA_VALUE},
    (ck.CKO_CERTIFICATE, None): COMMON | {ck.CKA_CERTIFICATE_TYPE, ck.CKA_TRUSTED, ck.CKA_CERTIFICATE_CATEGORY,
                                          ck.CKA_CHECK_VALUE, ck.CKA_START_DATE, ck.CKA_END_DATE,
                                          ck.CKA_PUBLIC_KEY_INFO, ck.CKA_SUBJECT, ck.CKA_ID, ck.CKA_ISSUER,
                                          ck.CKA_SERIAL_NUMBER, ck.CKA_VALUE, ck.CKA_URL,
                                          ck.CKA_HASH_OF_SUBJECT_PUBLIC_KEY, ck.CKA_HASH_OF_ISSUER_PUBLIC_KEY,
                                          ck.CKA_JAVA_MIDP_SECURITY_DOMAIN, ck.CKA_NAME_HASH_ALGORITHM},
    (ck.CKO_PUBLIC_KEY, ck.CKK_RSA): PUBLIC_COMMON | RSA_PUBLIC,
    (ck.CKO_PRIVATE_KEY, ck.CKK_RSA): PRIVATE_COMMON | RSA_PUBLIC | RSA_PRIVATE_SECRET,
    (ck.CKO_PUBLIC_KEY, ck.CKK_EC): PUBLIC_COMMON | EC_PUBLIC,
    (ck.CKO_PRIVATE_KEY, ck.CKK_EC): PRIVATE_COMMON | {ck.CKA_EC_PARAMS, ck.CKA_VALUE, ck.CKA_EC_POINT},
    (ck.CKO_SECRET_KEY, ck.CKK_AES): SECRET_COMMON,
    (ck.CKO_SECRET_KEY, ck.CKK_DES3): SECRET_COMMON,
    (ck.CKO_SECRET_KEY, ck.CKK_DES2): SECRET_COMMON,
    (ck.CKO_SECRET_KEY, ck.CKK_GENERIC_SECRET): SECRET_COMMON,
    **{(ck.CKO_SECRET_KEY, kt): SECRET_COMMON for kt in (
        ck.CKK_HKDF, ck.CKK_SHA_1_HMAC, ck.CKK_SHA224_HMAC, ck.CKK_SHA256_HMAC, ck.CKK_SHA384_HMAC,
        ck.CKK_SHA512_HMAC, ck.CKK_SHA3_224_HMAC, ck.CKK_SHA3_256_HMAC, ck.CKK_SHA3_384_HMAC, ck.CKK_SHA3_512_HMAC)},
    (ck.CKO_PUBLIC_KEY, ck.CKK_EC_EDWARDS): PUBLIC_COMMON | EC_PUBLIC,
    (ck.CKO_PRIVATE_KEY, ck.CKK_EC_EDWARDS): PRIVATE_COMMON | {ck.CKA_EC_PARAMS, ck.CKA_VALUE, ck.CKA_EC_POINT},
    (ck.CKO_PUBLIC_KEY, ck.CKK_DSA): PUBLIC_COMMON | DSA_DOMAIN | {ck.CKA_VALUE},
    (ck.CKO_PRIVATE_KEY, ck.CKK_DSA): PRIVATE_COMMON | DSA_DOMAIN | {ck.CKA_VALUE},
    (ck.CKO_PUBLIC_KEY, ck.CKK_DH): PUBLIC_COMMON | DH_DOMAIN | {ck.CKA_VALUE},
    (ck.CKO_PRIVATE_KEY, ck.CKK_DH): PRIVATE_COMMON | DH_DOMAIN | {ck.CKA_VALUE, ck.CKA_VALUE_BITS},
    (ck.CKO_DOMAIN_PARAMETERS, ck.CKK_DSA): DOMAIN_COMMON | DSA_DOMAIN | {ck.CKA_PRIME_BITS, ck.CKA_SUBPRIME_BITS},
    (ck.CKO_DOMAIN_PARAMETERS, ck.CKK_DH): DOMAIN_COMMON | DH_DOMAIN | {ck.CKA_PRIME_BITS},
}

# Attributes whose clear values are secret: never stored in clear, never in `attrs`.
SECRET_ATTRS = {
    ck.CKO_SECRET_KEY: {ck.CKA_VALUE},
    ck.CKO_PRIVATE_KEY: RSA_PRIVATE_SECRET | {ck.CKA_VALUE},
}

# Set by the device only: a template may not carry them.
DEVICE_SET = {ck.CKA_LOCAL, ck.CKA_ALWAYS_SENSITIVE, ck.CKA_NEVER_EXTRACTABLE, ck.CKA_KEY_GEN_MECHANISM,
              ck.CKA_UNIQUE_ID, ck.CKA_PUBLIC_KEY_INFO}
# May not be changed by C_SetAttributeValue (some of them can be changed by a copy).
FIXED_AFTER_CREATE = DEVICE_SET | {
    ck.CKA_CLASS, ck.CKA_KEY_TYPE, ck.CKA_TOKEN, ck.CKA_PRIVATE, ck.CKA_MODIFIABLE, ck.CKA_COPYABLE,
    ck.CKA_VALUE, ck.CKA_VALUE_LEN, ck.CKA_MODULUS, ck.CKA_MODULUS_BITS, ck.CKA_PUBLIC_EXPONENT,
    ck.CKA_EC_PARAMS, ck.CKA_EC_POINT, ck.CKA_CHECK_VALUE, ck.CKA_CERTIFICATE_TYPE,
    ck.CKA_WRAP_TEMPLATE, ck.CKA_UNWRAP_TEMPLATE, ck.CKA_ALWAYS_AUTHENTICATE, ck.CKA_APPLICATION,
    ck.CKA_OBJECT_ID, ck.CKA_ISSUER, ck.CKA_SERIAL_NUMBER,
} | RSA_PRIVATE_SECRET | DSA_DOMAIN | {ck.CKA_PRIME_BITS, ck.CKA_SUBPRIME_BITS, ck.CKA_VALUE_BITS}
# Attributes that may only move one way: attribute -> the only value it may be set to.
ONE_WAY = {ck.CKA_SENSITIVE: True, ck.CKA_EXTRACTABLE: False, ck.CKA_WRAP_WITH_TRUSTED: True}

USAGE_DEFAULTS = {
    ck.CKO_PUBLIC_KEY: {ck.CKA_ENCRYPT: True, ck.CKA_VERIFY: True, ck.CKA_VERIFY_RECOVER: True,
                        ck.CKA_WRAP: True, ck.CKA_DERIVE: False, ck.CKA_TRUSTED: False},
    ck.CKO_PRIVATE_KEY: {ck.CKA_DECRYPT: True, ck.CKA_SIGN: True, ck.CKA_SIGN_RECOVER: True,
                         ck.CKA_UNWRAP: True, ck.CKA_DERIVE: False, ck.CKA_SENSITIVE: True,
                         ck.CKA_EXTRACTABLE: False, ck.CKA_WRAP_WITH_TRUSTED: False,
                         ck.CKA_ALWAYS_AUTHENTICATE: False},
    ck.CKO_SECRET_KEY: {ck.CKA_ENCRYPT: True, ck.CKA_DECRYPT: True, ck.CKA_SIGN: True, ck.CKA_VERIFY: True,
                        ck.CKA_WRAP: True, ck.CKA_UNWRAP: True, ck.CKA_DERIVE: False, ck.CKA_SENSITIVE: False,
                        ck.CKA_EXTRACTABLE: True, ck.CKA_WRAP_WITH_TRUSTED: False, ck.CKA_TRUSTED: False},
}


def fail(reason: int, text: str) -> DeviceError:
    return DeviceError(reason, text)


def object_class(template: dict[int, Any], default: int | None = None) -> int:
    cls = template.get(ck.CKA_CLASS, default)
    if cls is None:
        raise fail(ck.CKR_TEMPLATE_INCOMPLETE, "template has no CKA_CLASS")
    return cls


def allowed_for(cls: int, key_type: int | None) -> set[int]:
    if cls in (ck.CKO_DATA, ck.CKO_CERTIFICATE):
        return ALLOWED[(cls, None)]
    try:
        return ALLOWED[(cls, key_type)]
    except KeyError:
        raise fail(ck.CKR_TEMPLATE_INCONSISTENT if cls in USAGE_DEFAULTS else ck.CKR_ATTRIBUTE_VALUE_INVALID,
                   f"object class {ck.name(cls, 'CKO_')} with key type {ck.name(key_type or 0, 'CKK_')} "
                   "is not supported") from None


def check_template(template: dict[int, Any], cls: int, key_type: int | None, *, generated: bool) -> None:
    allowed = allowed_for(cls, key_type)
    for t in template:
        if t not in allowed:
            raise fail(ck.CKR_ATTRIBUTE_TYPE_INVALID,
                       f"attribute {ck.name(t, 'CKA_')} is not valid for {ck.name(cls, 'CKO_')}")
        if t in DEVICE_SET:
            raise fail(ck.CKR_ATTRIBUTE_READ_ONLY, f"attribute {ck.name(t, 'CKA_')} is set by the device")
    if template.get(ck.CKA_CLASS, cls) != cls:
        raise fail(ck.CKR_TEMPLATE_INCONSISTENT, "CKA_CLASS does not match the operation")
    if key_type is not None and template.get(ck.CKA_KEY_TYPE, key_type) != key_type:
        raise fail(ck.CKR_TEMPLATE_INCONSISTENT, "CKA_KEY_TYPE does not match the mechanism")
    if generated and cls == ck.CKO_SECRET_KEY and ck.CKA_VALUE in template:
        raise fail(ck.CKR_TEMPLATE_INCONSISTENT, "CKA_VALUE may not be given for a generated key")


def complete(template: dict[int, Any], cls: int, key_type: int | None, *, local: bool,
             mechanism: int | None) -> dict[int, Any]:
    """The full attribute set of a new object: defaults, then the template, then the
    attributes only the device sets."""
    attrs: dict[int, Any] = {ck.CKA_CLASS: cls, ck.CKA_TOKEN: False,
                             ck.CKA_PRIVATE: cls in (ck.CKO_PRIVATE_KEY, ck.CKO_SECRET_KEY),
                             ck.CKA_MODIFIABLE: True, ck.CKA_COPYABLE: True, ck.CKA_DESTROYABLE: True,
                             ck.CKA_LABEL: ""}
    if cls == ck.CKO_DATA:
        attrs.update({ck.CKA_APPLICATION: "", ck.CKA_OBJECT_ID: b"", ck.CKA_VALUE: b""})
    elif cls == ck.CKO_CERTIFICATE:
        attrs.update({ck.CKA_CERTIFICATE_TYPE: ck.CKC_X_509, ck.CKA_TRUSTED: False, ck.CKA_ID: b"",
                      ck.CKA_CERTIFICATE_CATEGORY: 0, ck.CKA_SUBJECT: b"", ck.CKA_ISSUER: b"",
                      ck.CKA_SERIAL_NUMBER: b"", ck.CKA_START_DATE: b"", ck.CKA_END_DATE: b""})
    elif cls == ck.CKO_DOMAIN_PARAMETERS:
        attrs[ck.CKA_KEY_TYPE] = key_type
    else:
        attrs.update({ck.CKA_KEY_TYPE: key_type, ck.CKA_ID: b"", ck.CKA_START_DATE: b"",
                      ck.CKA_END_DATE: b""})
        attrs.update(USAGE_DEFAULTS[cls])
        if cls in (ck.CKO_PUBLIC_KEY, ck.CKO_PRIVATE_KEY):
            attrs[ck.CKA_SUBJECT] = b""
    attrs.update(template)
    if cls in SECRET_ATTRS:
        for t in SECRET_ATTRS[cls]:
            attrs.pop(t, None)
        attrs[ck.CKA_LOCAL] = local
        attrs[ck.CKA_KEY_GEN_MECHANISM] = mechanism if (local and mechanism is not None) else UNAVAILABLE
        attrs[ck.CKA_ALWAYS_SENSITIVE] = bool(attrs[ck.CKA_SENSITIVE]) and local
        attrs[ck.CKA_NEVER_EXTRACTABLE] = (not attrs[ck.CKA_EXTRACTABLE]) and local
    elif cls == ck.CKO_PUBLIC_KEY:
        attrs[ck.CKA_LOCAL] = local
        attrs[ck.CKA_KEY_GEN_MECHANISM] = mechanism if (local and mechanism is not None) else UNAVAILABLE
    elif cls == ck.CKO_DOMAIN_PARAMETERS:
        attrs[ck.CKA_LOCAL] = local
    return attrs


def check_set(attrs: dict[int, Any], changes: dict[int, Any], *, is_so: bool = False) -> None:
    """Refuse a C_SetAttributeValue that the rules do not allow."""
    cls = attrs[ck.CKA_CLASS]
    allowed = allowed_for(cls, attrs.get(ck.CKA_KEY_TYPE))
    if not attrs.get(ck.CKA_MODIFIABLE, True):
        raise fail(ck.CKR_ACTION_PROHIBITED, "object is not modifiable (CKA_MODIFIABLE is false)")
    for t, v in changes.items():
        if t not in allowed:
            raise fail(ck.CKR_ATTRIBUTE_TYPE_INVALID, f"attribute {ck.name(t, 'CKA_')} is not valid here")
        if t in FIXED_AFTER_CREATE:
            if attrs.get(t) == v and t in (ck.CKA_TOKEN, ck.CKA_PRIVATE, ck.CKA_MODIFIABLE, ck.CKA_CLASS,
                                           ck.CKA_KEY_TYPE):
                continue
            raise fail(ck.CKR_ATTRIBUTE_READ_ONLY, f"attribute {ck.name(t, 'CKA_')} cannot be changed")
        if t in ONE_WAY and v != ONE_WAY[t] and attrs.get(t) == ONE_WAY[t]:
            raise fail(ck.CKR_ATTRIBUTE_READ_ONLY, f"attribute {ck.name(t, 'CKA_')} cannot be reverted")
        if t == ck.CKA_TRUSTED and v and not is_so:
            raise fail(ck.CKR_ATTRIBUTE_READ_ONLY, "only the security officer can set CKA_TRUSTED")
        if t == ck.CKA_COPYABLE and v and not attrs.get(t, True):
            raise fail(ck.CKR_ATTRIBUTE_READ_ONLY, "CKA_COPYABLE cannot be set back to true")


def is_hidden_secret(attrs: dict[int, Any], t: int) -> bool:
    """True when attribute t of this object must be answered CKR_ATTRIBUTE_SENSITIVE."""
    cls = attrs[ck.CKA_CLASS]
    if t not in SECRET_ATTRS.get(cls, ()):
        return False
    return bool(attrs.get(ck.CKA_SENSITIVE)) or not attrs.get(ck.CKA_EXTRACTABLE, False)


def matches(attrs: dict[int, Any], criteria: dict[int, Any]) -> bool:
    for t, v in criteria.items():
        if attrs.get(t, _MISSING) != v:
            return False
    return True


_MISSING = object()


def require_usage(attrs: dict[int, Any], usage: int, mechanism: int) -> None:
    if not attrs.get(usage, False):
        raise fail(ck.CKR_KEY_FUNCTION_NOT_PERMITTED,
                   f"key does not allow {ck.name(usage, 'CKA_')} (attribute is false)")
    allowed = attrs.get(ck.CKA_ALLOWED_MECHANISMS)
    if allowed and mechanism not in allowed:
        raise fail(ck.CKR_MECHANISM_INVALID, f"{ck.name(mechanism, 'CKM_')} is not in CKA_ALLOWED_MECHANISMS")
