"""Key table commands: generate, load, find, get/set settings, delete, wrap and unwrap."""
from __future__ import annotations

import hashlib
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fxpkcs11 import ck
from vhsm import factory, policy
from vhsm import settings as device_settings
from vhsm.commands.catalog import load_command
from vhsm.crypto import keys as keymat
from vhsm.crypto import mechanisms as mechs
from vhsm.excrypt import DeviceError, Tag
from vhsm.objects import P11Object, object_size
from vhsm.p11 import attributes as rules
from vhsm.p11 import objectrules

SECRET_KEYGEN = {ck.CKM_AES_KEY_GEN: ck.CKK_AES, ck.CKM_DES3_KEY_GEN: ck.CKK_DES3,
                 ck.CKM_DES2_KEY_GEN: ck.CKK_DES2, ck.CKM_GENERIC_SECRET_KEY_GEN: ck.CKK_GENERIC_SECRET,
                 **keymat.MORE_SECRET_KEYGEN}
# ------------------------------------------------------------------ access helpers

def visible(conn: Any, role: dict, obj: P11Object) -> bool:
    if obj.attrs.get(ck.CKA_PRIVATE) and not conn.logged_in:
        return False
    return policy.may_use(role, obj.ref, obj.owner) if obj.is_token else True


def resolve(conn: Any, role: dict, ref: Any, reason: int = ck.CKR_OBJECT_HANDLE_INVALID) -> P11Object:
    obj = conn.objects.get(ref) if isinstance(ref, int) and ref >= 0 else None
    if obj is None or not visible(conn, role, obj):
        raise DeviceError(reason, f"no object {ref} visible to role {role['name']!r}")
    conn.last_resolved = obj  # vhsm/contextauth.py reads the key an operation started with
    return obj


def check_writable(conn: Any, f: dict, attrs: dict[int, Any]) -> None:
    if attrs.get(ck.CKA_TOKEN) and not f.get(Tag.READ_WRITE):
        raise DeviceError(ck.CKR_SESSION_READ_ONLY, "token objects need a read/write session")
    if attrs.get(ck.CKA_PRIVATE) and not conn.logged_in:
        raise DeviceError(ck.CKR_USER_NOT_LOGGED_IN, "private objects need a logged-in user")


def check_value(key_type: int, value: bytes) -> bytes:
    """CKA_CHECK_VALUE of a secret key: the first three bytes of a zero block encrypted."""
    if key_type == ck.CKK_AES:
        enc = Cipher(algorithms.AES(value), modes.ECB()).encryptor()
        return (enc.update(bytes(16)) + enc.finalize())[:3]
    if key_type in (ck.CKK_DES3, ck.CKK_DES2):
        enc = Cipher(mechs.TripleDES(value), modes.ECB()).encryptor()
        return (enc.update(bytes(8)) + enc.finalize())[:3]
    return hashlib.sha1(value).digest()[:3]


def secret_attrs(key_type: int, value: bytes, template: dict[int, Any]) -> dict[int, Any]:
    extra = {ck.CKA_CHECK_VALUE: check_value(key_type, value)}
    given = template.get(ck.CKA_CHECK_VALUE)
    if given is not None and given not in (b"", extra[ck.CKA_CHECK_VALUE]):
        raise DeviceError(ck.CKR_ATTRIBUTE_VALUE_INVALID, "CKA_CHECK_VALUE does not match the key")
    if key_type == ck.CKK_AES or key_type in keymat.VARIABLE_SECRETS:
        extra[ck.CKA_VALUE_LEN] = len(value)
    return extra


def store_new(conn: Any, role: dict, f: dict, attrs: dict[int, Any], secret: bytes | None) -> P11Object:
    check_writable(conn, f, attrs)
    objectrules.check_new(conn, attrs)
    return conn.objects.create(attrs, secret, role["name"], policy.slot_ranges(role), f.get(Tag.SESSION, 0))


# ------------------------------------------------------------------ create / generate

def load_object(conn: Any, role: dict, f: dict, code: str) -> dict:
    template = dict(f.get(Tag.TEMPLATE) or {})
    cls = rules.object_class(template)
    kt = template.get(ck.CKA_KEY_TYPE)
    if cls not in (ck.CKO_DATA, ck.CKO_CERTIFICATE) and kt is None:
        raise DeviceError(ck.CKR_TEMPLATE_INCOMPLETE, "key template has no CKA_KEY_TYPE")
    if load_command(cls, kt) != code:
        raise DeviceError(ck.CKR_TEMPLATE_INCONSISTENT, f"{code} cannot store this kind of object")
    rules.check_template(template, cls, kt, generated=False)
    secret: bytes | None = None
    extra: dict[int, Any] = {}
    if cls == ck.CKO_SECRET_KEY:
        secret = template.get(ck.CKA_VALUE)
        if not secret:
            raise DeviceError(ck.CKR_TEMPLATE_INCOMPLETE, "secret key template has no CKA_VALUE")
        keymat.check_secret_value(kt, secret)
        given_len = template.pop(ck.CKA_VALUE_LEN, None)
        if given_len not in (None, len(secret)):
            raise DeviceError(ck.CKR_TEMPLATE_INCONSISTENT, "CKA_VALUE_LEN does not match CKA_VALUE")
        extra = secret_attrs(kt, secret, template)
    elif cls == ck.CKO_PRIVATE_KEY:
        key = keymat.private_from_template(kt, template)
        secret = keymat.private_der(key)
        extra = public_attrs_of(key.public_key())
        extra.pop(ck.CKA_EC_POINT, None) if ck.CKA_EC_POINT not in template else None
    elif cls == ck.CKO_PUBLIC_KEY:
        pub = keymat.public_from_attrs(template)
        extra = {ck.CKA_PUBLIC_KEY_INFO: keymat.public_key_info(pub), **keymat.canonical_point_attrs(pub)}
        if kt == ck.CKK_RSA:
            extra[ck.CKA_MODULUS_BITS] = pub.key_size
        if ck.CKA_MODULUS_BITS in template and template[ck.CKA_MODULUS_BITS] != pub.key_size:
            raise DeviceError(ck.CKR_TEMPLATE_INCONSISTENT, "CKA_MODULUS_BITS does not match CKA_MODULUS")
    elif cls == ck.CKO_CERTIFICATE:
        from vhsm.p11 import certificates  # x509 parsing: loaded at the first certificate, not at start
        extra = certificates.x509_attrs(template)
    attrs = rules.complete(template, cls, kt, local=False, mechanism=None)
    attrs.update(extra)
    obj = store_new(conn, role, f, attrs, secret)
    return {Tag.OBJECT: obj.ref}


def public_attrs_of(pub: Any) -> dict[int, Any]:
    out = keymat.public_attrs(pub)
    out[ck.CKA_PUBLIC_KEY_INFO] = keymat.public_key_info(pub)
    return out


def generate_secret(conn: Any, role: dict, f: dict) -> dict:
    mech = f.get(Tag.MECHANISM)
    kt = SECRET_KEYGEN.get(mech)
    if kt is None:
        raise DeviceError(ck.CKR_MECHANISM_INVALID, f"{ck.name(mech or 0, 'CKM_')} does not generate secret keys")
    template = dict(f.get(Tag.TEMPLATE) or {})
    rules.check_template(template, ck.CKO_SECRET_KEY, kt, generated=True)
    length = template.pop(ck.CKA_VALUE_LEN, None)
    if kt in (ck.CKK_DES3, ck.CKK_DES2) and length not in (None, 24 if kt == ck.CKK_DES3 else 16):
        raise DeviceError(ck.CKR_TEMPLATE_INCONSISTENT, "CKA_VALUE_LEN is fixed for DES keys")
    value = keymat.new_secret(kt, length)
    attrs = rules.complete(template, ck.CKO_SECRET_KEY, kt, local=True, mechanism=mech)
    attrs.update(secret_attrs(kt, value, template))
    obj = store_new(conn, role, f, attrs, value)
    return {Tag.OBJECT: obj.ref}


def generate_pair(conn: Any, role: dict, f: dict, code: str) -> dict:
    mech = f.get(Tag.MECHANISM)
    pub_t = dict(f.get(Tag.PUBLIC_TEMPLATE) or {})
    priv_t = dict(f.get(Tag.PRIVATE_TEMPLATE) or {})
    if code == "GRSA":
        if mech != ck.CKM_RSA_PKCS_KEY_PAIR_GEN:
            raise DeviceError(ck.CKR_MECHANISM_INVALID, "GRSA generates with CKM_RSA_PKCS_KEY_PAIR_GEN")
        kt = ck.CKK_RSA
        rules.check_template(pub_t, ck.CKO_PUBLIC_KEY, kt, generated=True)
        rules.check_template(priv_t, ck.CKO_PRIVATE_KEY, kt, generated=True)
        bits = pub_t.pop(ck.CKA_MODULUS_BITS, None)
        if bits is None:
            raise DeviceError(ck.CKR_TEMPLATE_INCOMPLETE, "public template has no CKA_MODULUS_BITS")
        exponent = int.from_bytes(pub_t.pop(ck.CKA_PUBLIC_EXPONENT, b"\x01\x00\x01") or b"\x00", "big")
        key = keymat.new_rsa(bits, exponent, device_settings.rsa_min_bits(conn.device.store))
    else:
        if mech not in (ck.CKM_EC_KEY_PAIR_GEN, ck.CKM_EC_EDWARDS_KEY_PAIR_GEN):
            raise DeviceError(ck.CKR_MECHANISM_INVALID,
                              "GECC generates with CKM_EC_KEY_PAIR_GEN or CKM_EC_EDWARDS_KEY_PAIR_GEN")
        kt = ck.CKK_EC if mech == ck.CKM_EC_KEY_PAIR_GEN else ck.CKK_EC_EDWARDS
        rules.check_template(pub_t, ck.CKO_PUBLIC_KEY, kt, generated=True)
        rules.check_template(priv_t, ck.CKO_PRIVATE_KEY, kt, generated=True)
        params = pub_t.pop(ck.CKA_EC_PARAMS, None) or priv_t.pop(ck.CKA_EC_PARAMS, None)
        if params is None:
            raise DeviceError(ck.CKR_TEMPLATE_INCOMPLETE, "public template has no CKA_EC_PARAMS")
        key = keymat.new_ec_key(kt, params)
    public = public_attrs_of(key.public_key())
    pub_attrs = rules.complete(pub_t, ck.CKO_PUBLIC_KEY, kt, local=True, mechanism=mech)
    pub_attrs.update(public)
    priv_attrs = rules.complete(priv_t, ck.CKO_PRIVATE_KEY, kt, local=True, mechanism=mech)
    priv_attrs.update(public)
    priv_attrs.pop(ck.CKA_EC_POINT, None)
    check_writable(conn, f, pub_attrs)
    check_writable(conn, f, priv_attrs)
    # The private half takes the first free slot, as on the device: an application that
    # deletes its private wrapping keys (vSEC:CMS) leaves its public keys where the guide shows.
    # Both halves are stored in one transaction: a failure leaves neither behind.
    objectrules.check_new(conn, priv_attrs)
    objectrules.check_new(conn, pub_attrs)
    priv, pub = conn.objects.create_all([(priv_attrs, keymat.private_der(key)), (pub_attrs, None)], role["name"],
                                        policy.slot_ranges(role), f.get(Tag.SESSION, 0))
    return {Tag.PUBLIC_OBJECT: pub.ref, Tag.PRIVATE_OBJECT: priv.ref}


# ------------------------------------------------------------------ find / settings / delete

def find(conn: Any, role: dict, f: dict) -> dict:
    crit = f.get(Tag.TEMPLATE) or {}
    label = crit.get(ck.CKA_LABEL)
    owner = None if factory.ALL_SLOTS in role["perms"] else role["name"]

    def indexed(v: Any) -> Any:  # a CK_ULONG above SQLite's INTEGER is no stored value: filter below
        return v if not isinstance(v, int) or v < 1 << 63 else None
    recs = conn.device.store.find_keys(owner, cls=indexed(crit.get(ck.CKA_CLASS)),
                                       label=label if isinstance(label, str) else None,
                                       key_id=crit.get(ck.CKA_ID), key_type=indexed(crit.get(ck.CKA_KEY_TYPE)))
    private_ok = conn.logged_in
    out = []
    for rec in recs:
        if (policy.may_use(role, rec.slot, rec.owner) and (private_ok or not rec.attrs.get(ck.CKA_PRIVATE))
                and rules.matches(rec.attrs, crit)):
            out.append(rec.slot)
    for obj in list(conn.objects.session_objects.values()):
        if (private_ok or not obj.attrs.get(ck.CKA_PRIVATE)) and rules.matches(obj.attrs, crit):
            out.append(obj.ref)
    return {Tag.OBJECTS: out}


def settings(conn: Any, role: dict, f: dict) -> dict:
    obj = resolve(conn, role, f.get(Tag.OBJECT))
    if f.get(Tag.OBJECT_SIZE):
        return {Tag.OBJECT_SIZE: object_size(obj)}
    changes = f.get(Tag.TEMPLATE)
    if changes:
        return _set(conn, role, f, obj, changes)
    values = []
    for t in f.get(Tag.ATTR_TYPES) or ():
        values.append(_get(conn, obj, t))
    return {Tag.ATTR_VALUES: values}


def read_settings(conn: Any, role: dict, f: dict) -> dict:
    if f.get(Tag.TEMPLATE):
        raise DeviceError(policy.DENIED, "GPKR only reads key settings; changing them needs GPKS")
    return settings(conn, role, f)


def _get(conn: Any, obj: P11Object, t: int) -> tuple[int, Any]:
    if rules.is_hidden_secret(obj.attrs, t):
        return (ck.CKR_ATTRIBUTE_SENSITIVE, None)
    if t in obj.attrs:
        return (0, obj.attrs[t])
    if t in rules.SECRET_ATTRS.get(obj.cls, ()):
        mat = conn.objects.load(obj)
        if obj.cls == ck.CKO_SECRET_KEY:
            return (0, mat)
        try:
            return (0, keymat.private_component(mat, t))
        except DeviceError as e:
            return (e.reason, None)
    return (ck.CKR_ATTRIBUTE_TYPE_INVALID, None)


def _set(conn: Any, role: dict, f: dict, obj: P11Object, changes: dict[int, Any]) -> dict:
    check_writable(conn, f, obj.attrs)
    rules.check_set(obj.attrs, changes, is_so=conn.so)
    objectrules.check_change(conn, obj.attrs, changes)
    attrs = dict(obj.attrs)
    attrs.update(changes)
    conn.objects.update(obj, attrs)
    return {}


def delete(conn: Any, role: dict, f: dict) -> dict:
    obj = resolve(conn, role, f.get(Tag.OBJECT))
    check_writable(conn, f, obj.attrs)
    if not obj.attrs.get(ck.CKA_DESTROYABLE, True):
        raise DeviceError(ck.CKR_ACTION_PROHIBITED, "object is not destroyable (CKA_DESTROYABLE is false)")
    conn.objects.destroy(obj)
    return {}


# ------------------------------------------------------------------ wrap / unwrap

def wrap(conn: Any, role: dict, f: dict) -> dict:
    mech, param = f.get(Tag.MECHANISM), f.get(Tag.MECH_PARAM)
    wkey = resolve(conn, role, f.get(Tag.WRAPPING_KEY), ck.CKR_WRAPPING_KEY_HANDLE_INVALID)
    key = resolve(conn, role, f.get(Tag.OBJECT), ck.CKR_KEY_HANDLE_INVALID)
    if key.cls not in (ck.CKO_SECRET_KEY, ck.CKO_PRIVATE_KEY):
        raise DeviceError(ck.CKR_KEY_NOT_WRAPPABLE, "only secret and private keys can be wrapped")
    if not key.attrs.get(ck.CKA_EXTRACTABLE):
        raise DeviceError(ck.CKR_KEY_UNEXTRACTABLE, "key is not extractable (CKA_EXTRACTABLE is false)")
    if key.attrs.get(ck.CKA_WRAP_WITH_TRUSTED) and not wkey.attrs.get(ck.CKA_TRUSTED):
        raise DeviceError(ck.CKR_KEY_NOT_WRAPPABLE, "key may only be wrapped by a trusted key")
    rules.require_usage(wkey.attrs, ck.CKA_WRAP, mech)
    objectrules.check_wrap(conn, wkey, key)
    mat = conn.objects.load(key)
    data = mat if key.cls == ck.CKO_SECRET_KEY else keymat.private_der(mat)
    wkt = wkey.attrs.get(ck.CKA_KEY_TYPE)
    if mech in mechs.RSA_CIPHER_MECHS and mech != ck.CKM_RSA_X_509:
        if wkey.cls != ck.CKO_PUBLIC_KEY or wkt != ck.CKK_RSA:
            raise DeviceError(ck.CKR_WRAPPING_KEY_TYPE_INCONSISTENT, "RSA wrapping needs an RSA public key")
        if key.cls != ck.CKO_SECRET_KEY:
            raise DeviceError(ck.CKR_KEY_NOT_WRAPPABLE, "RSA wraps secret keys only")
        out = mechs.rsa_encrypt(mech, param, conn.objects.public_key(wkey), data)
    elif mech in mechs.AES_WRAP_MECHS:
        if wkey.cls != ck.CKO_SECRET_KEY or wkt != ck.CKK_AES:
            raise DeviceError(ck.CKR_WRAPPING_KEY_TYPE_INCONSISTENT, "AES key wrap needs an AES wrapping key")
        out = mechs.aes_wrap(mech, param, conn.objects.load(wkey), data)
    elif mech in mechs.BLOCK_WRAP_MECHS:
        if wkey.cls != ck.CKO_SECRET_KEY:
            raise DeviceError(ck.CKR_WRAPPING_KEY_TYPE_INCONSISTENT, "block cipher wrapping needs a secret key")
        out = mechs.block_wrap(mech, param, conn.objects.load(wkey), wkt, data)
    else:
        raise DeviceError(ck.CKR_MECHANISM_INVALID, f"{ck.name(mech or 0, 'CKM_')} cannot wrap keys")
    return {Tag.WRAPPED: out}


def unwrap(conn: Any, role: dict, f: dict) -> dict:
    mech, param = f.get(Tag.MECHANISM), f.get(Tag.MECH_PARAM)
    ukey = resolve(conn, role, f.get(Tag.WRAPPING_KEY), ck.CKR_UNWRAPPING_KEY_HANDLE_INVALID)
    rules.require_usage(ukey.attrs, ck.CKA_UNWRAP, mech)
    blob = f.get(Tag.WRAPPED) or b""
    ukt = ukey.attrs.get(ck.CKA_KEY_TYPE)
    if mech in mechs.RSA_CIPHER_MECHS and mech != ck.CKM_RSA_X_509:
        if ukey.cls != ck.CKO_PRIVATE_KEY or ukt != ck.CKK_RSA:
            raise DeviceError(ck.CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT, "RSA unwrapping needs an RSA private key")
        try:
            clear = mechs.rsa_decrypt(mech, param, conn.objects.load(ukey), blob)
        except DeviceError as e:
            raise DeviceError(ck.CKR_WRAPPED_KEY_INVALID if e.reason == ck.CKR_ENCRYPTED_DATA_INVALID
                              else ck.CKR_WRAPPED_KEY_LEN_RANGE if e.reason == ck.CKR_ENCRYPTED_DATA_LEN_RANGE
                              else e.reason, e.text) from None
    elif mech in mechs.AES_WRAP_MECHS:
        if ukey.cls != ck.CKO_SECRET_KEY or ukt != ck.CKK_AES:
            raise DeviceError(ck.CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT, "AES key unwrap needs an AES key")
        clear = mechs.aes_unwrap(mech, param, conn.objects.load(ukey), blob)
    elif mech in mechs.BLOCK_WRAP_MECHS:
        if ukey.cls != ck.CKO_SECRET_KEY:
            raise DeviceError(ck.CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT, "block cipher unwrapping needs a secret key")
        clear = mechs.block_unwrap(mech, param, conn.objects.load(ukey), ukt, blob)
    else:
        raise DeviceError(ck.CKR_MECHANISM_INVALID, f"{ck.name(mech or 0, 'CKM_')} cannot unwrap keys")
    template = objectrules.unwrap_template(ukey, dict(f.get(Tag.TEMPLATE) or {}))
    cls = rules.object_class(template)
    kt = template.get(ck.CKA_KEY_TYPE)
    if kt is None:
        raise DeviceError(ck.CKR_TEMPLATE_INCOMPLETE, "unwrap template has no CKA_KEY_TYPE")
    rules.check_template(template, cls, kt, generated=True)
    if cls == ck.CKO_SECRET_KEY:
        want = template.pop(ck.CKA_VALUE_LEN, None)
        if want is not None and want != len(clear):
            if want > len(clear):
                raise DeviceError(ck.CKR_TEMPLATE_INCONSISTENT, "CKA_VALUE_LEN is longer than the unwrapped key")
            clear = clear[:want]
        keymat.check_secret_value(kt, clear)
        extra = secret_attrs(kt, clear, template)
        secret = clear
    elif cls == ck.CKO_PRIVATE_KEY:
        try:
            key = keymat.load_private(clear)
        except ValueError:
            raise DeviceError(ck.CKR_WRAPPED_KEY_INVALID, "unwrapped data is not a PKCS #8 private key") from None
        if keymat.key_type_of(key) != kt:
            raise DeviceError(ck.CKR_TEMPLATE_INCONSISTENT, "CKA_KEY_TYPE does not match the unwrapped key")
        extra = public_attrs_of(key.public_key())
        extra.pop(ck.CKA_EC_POINT, None)
        secret = keymat.private_der(key)
    else:
        raise DeviceError(ck.CKR_TEMPLATE_INCONSISTENT, "only secret and private keys can be unwrapped")
    attrs = rules.complete(template, cls, kt, local=False, mechanism=None)
    attrs.update(extra)
    obj = store_new(conn, role, f, attrs, secret)
    return {Tag.OBJECT: obj.ref}


HANDLERS = {
    "GPGS": generate_secret,
    "GRSA": lambda c, r, f: generate_pair(c, r, f, "GRSA"),
    "GECC": lambda c, r, f: generate_pair(c, r, f, "GECC"),
    "LRSA": lambda c, r, f: load_object(c, r, f, "LRSA"),
    "LECC": lambda c, r, f: load_object(c, r, f, "LECC"),
    "GPKL": lambda c, r, f: load_object(c, r, f, "GPKL"),
    "GPDO": lambda c, r, f: load_object(c, r, f, "GPDO"),
    "GPKM": find,
    "GPKS": settings,
    "GPKR": read_settings,
    "GPKD": delete,
    "GPKW": wrap,
    "GPKU": unwrap,
}
