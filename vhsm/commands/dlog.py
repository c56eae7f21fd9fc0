"""Discrete-logarithm keys: DSA and PKCS #3 Diffie-Hellman.

GPDP generates domain parameters (CKM_DSA_PARAMETER_GEN, CKM_DH_PKCS_PARAMETER_GEN) as a
CKO_DOMAIN_PARAMETERS object; GDSA and GDHK generate key pairs from the domain parameters
in the public template; LDSA and LDHK load keys and domain parameters (C_CreateObject).
"""
from __future__ import annotations

from typing import Any

from fxpkcs11 import ck
from vhsm.commands.keys import check_writable, load_object, store_new
from vhsm.crypto import keys as keymat
from vhsm.excrypt import DeviceError, Tag
from vhsm.p11 import attributes as rules

PAIR_MECHS = {"GDSA": (ck.CKM_DSA_KEY_PAIR_GEN, ck.CKK_DSA), "GDHK": (ck.CKM_DH_PKCS_KEY_PAIR_GEN, ck.CKK_DH)}
PARAMETER_MECHS = {ck.CKM_DSA_PARAMETER_GEN: ck.CKK_DSA, ck.CKM_DH_PKCS_PARAMETER_GEN: ck.CKK_DH}
DOMAIN = ck.CKO_DOMAIN_PARAMETERS


def _int(t: dict[int, Any], a: int, where: str) -> int:
    v = t.get(a)
    if not v:
        raise DeviceError(ck.CKR_TEMPLATE_INCOMPLETE, f"{where} has no {ck.name(a, 'CKA_')}")
    return int.from_bytes(v, "big")


def domain_values(kt: int, p: int, q: int | None, g: int) -> dict[int, Any]:
    out = {ck.CKA_PRIME: keymat.int_bytes(p), ck.CKA_BASE: keymat.int_bytes(g), ck.CKA_PRIME_BITS: p.bit_length()}
    if kt == ck.CKK_DSA and q is not None:
        out[ck.CKA_SUBPRIME] = keymat.int_bytes(q)
        out[ck.CKA_SUBPRIME_BITS] = q.bit_length()
    return out


def generate_parameters(conn: Any, role: dict, f: dict) -> dict:
    mech = f.get(Tag.MECHANISM)
    kt = PARAMETER_MECHS.get(mech)
    if kt is None:
        raise DeviceError(ck.CKR_MECHANISM_INVALID, f"{ck.name(mech or 0, 'CKM_')} does not generate domain parameters")
    template = dict(f.get(Tag.TEMPLATE) or {})
    if rules.object_class(template, DOMAIN) != DOMAIN:
        raise DeviceError(ck.CKR_TEMPLATE_INCONSISTENT, "parameter generation makes CKO_DOMAIN_PARAMETERS")
    rules.check_template(template, DOMAIN, kt, generated=True)
    for a in (ck.CKA_PRIME, ck.CKA_SUBPRIME, ck.CKA_BASE):
        if a in template:
            raise DeviceError(ck.CKR_TEMPLATE_INCONSISTENT, f"{ck.name(a, 'CKA_')} is what the device generates")
    bits = template.pop(ck.CKA_PRIME_BITS, None)
    if not bits:
        raise DeviceError(ck.CKR_TEMPLATE_INCOMPLETE, "parameter generation needs CKA_PRIME_BITS")
    want_q = template.pop(ck.CKA_SUBPRIME_BITS, None)
    if kt == ck.CKK_DSA:
        p, q, g = keymat.new_dsa_parameters(bits)
        if want_q not in (None, q.bit_length()):
            raise DeviceError(ck.CKR_TEMPLATE_INCONSISTENT,
                              f"DSA parameters of {bits} bits have a {q.bit_length()}-bit subprime here")
    else:
        if want_q is not None:
            raise DeviceError(ck.CKR_ATTRIBUTE_TYPE_INVALID, "PKCS #3 DH parameters have no subprime")
        (p, g), q = keymat.new_dh_parameters(bits), None
    attrs = rules.complete(template, DOMAIN, kt, local=True, mechanism=mech)
    attrs.update(domain_values(kt, p, q, g))
    obj = store_new(conn, role, f, attrs, None)
    return {Tag.OBJECT: obj.ref}


def generate_pair(conn: Any, role: dict, f: dict, code: str) -> dict:
    mech_ok, kt = PAIR_MECHS[code]
    mech = f.get(Tag.MECHANISM)
    if mech != mech_ok:
        raise DeviceError(ck.CKR_MECHANISM_INVALID, f"{code} generates with {ck.name(mech_ok, 'CKM_')}")
    pub_t = dict(f.get(Tag.PUBLIC_TEMPLATE) or {})
    priv_t = dict(f.get(Tag.PRIVATE_TEMPLATE) or {})
    rules.check_template(pub_t, ck.CKO_PUBLIC_KEY, kt, generated=True)
    rules.check_template(priv_t, ck.CKO_PRIVATE_KEY, kt, generated=True)
    if ck.CKA_VALUE in pub_t or ck.CKA_VALUE in priv_t:
        raise DeviceError(ck.CKR_TEMPLATE_INCONSISTENT, "CKA_VALUE is generated")
    p = _int(pub_t, ck.CKA_PRIME, "the public template")
    g = _int(pub_t, ck.CKA_BASE, "the public template")
    if kt == ck.CKK_DSA:
        key = keymat.new_dsa(p, _int(pub_t, ck.CKA_SUBPRIME, "the public template"), g)
    else:
        key = keymat.new_dh(p, g, priv_t.pop(ck.CKA_VALUE_BITS, None))
    pub = key.public_key()
    public = keymat.public_attrs(pub)
    pub_attrs = rules.complete(pub_t, ck.CKO_PUBLIC_KEY, kt, local=True, mechanism=mech)
    pub_attrs.update(public)
    pub_attrs.update(keymat.public_value_attrs(pub))
    pub_attrs[ck.CKA_PUBLIC_KEY_INFO] = keymat.public_key_info(pub)
    priv_attrs = rules.complete(priv_t, ck.CKO_PRIVATE_KEY, kt, local=True, mechanism=mech)
    priv_attrs.update(public)
    priv_attrs[ck.CKA_PUBLIC_KEY_INFO] = pub_attrs[ck.CKA_PUBLIC_KEY_INFO]
    if kt == ck.CKK_DH:
        priv_attrs[ck.CKA_VALUE_BITS] = key.x.bit_length()
    check_writable(conn, f, pub_attrs)
    check_writable(conn, f, priv_attrs)
    pub_obj = store_new(conn, role, f, pub_attrs, None)
    try:
        priv_obj = store_new(conn, role, f, priv_attrs, keymat.private_der(key))
    except DeviceError:
        conn.objects.destroy(pub_obj)
        raise
    return {Tag.PUBLIC_OBJECT: pub_obj.ref, Tag.PRIVATE_OBJECT: priv_obj.ref}


def load_domain(conn: Any, role: dict, f: dict, kt: int) -> dict:
    template = dict(f.get(Tag.TEMPLATE) or {})
    rules.check_template(template, DOMAIN, kt, generated=False)
    for a in (ck.CKA_PRIME_BITS, ck.CKA_SUBPRIME_BITS):
        if a in template:
            raise DeviceError(ck.CKR_ATTRIBUTE_READ_ONLY, f"{ck.name(a, 'CKA_')} is set by the device")
    p, g = _int(template, ck.CKA_PRIME, "the template"), _int(template, ck.CKA_BASE, "the template")
    q = _int(template, ck.CKA_SUBPRIME, "the template") if kt == ck.CKK_DSA else None
    if kt == ck.CKK_DSA:
        keymat.check_dsa_sizes(p, q)
    elif ck.CKA_SUBPRIME in template:
        raise DeviceError(ck.CKR_ATTRIBUTE_TYPE_INVALID, "PKCS #3 DH parameters have no subprime")
    attrs = rules.complete(template, DOMAIN, kt, local=False, mechanism=None)
    attrs.update(domain_values(kt, p, q, g))
    obj = store_new(conn, role, f, attrs, None)
    return {Tag.OBJECT: obj.ref}


def load(conn: Any, role: dict, f: dict, code: str) -> dict:
    template = f.get(Tag.TEMPLATE) or {}
    kt = ck.CKK_DSA if code == "LDSA" else ck.CKK_DH
    if template.get(ck.CKA_CLASS) == DOMAIN:
        if template.get(ck.CKA_KEY_TYPE) != kt:
            raise DeviceError(ck.CKR_TEMPLATE_INCONSISTENT, f"{code} cannot store this kind of object")
        return load_domain(conn, role, f, kt)
    return load_object(conn, role, f, code)


HANDLERS = {
    "GPDP": generate_parameters,
    "GDSA": lambda c, r, f: generate_pair(c, r, f, "GDSA"),
    "GDHK": lambda c, r, f: generate_pair(c, r, f, "GDHK"),
    "LDSA": lambda c, r, f: load(c, r, f, "LDSA"),
    "LDHK": lambda c, r, f: load(c, r, f, "LDHK"),
}
