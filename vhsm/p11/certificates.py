"""X.509 certificate objects: the device reads CKA_VALUE and keeps the other fields true to it.

CKA_SUBJECT, CKA_ISSUER and CKA_SERIAL_NUMBER (DER, as PKCS #11 defines them) are filled
from the certificate; values given in the template must equal them. CKA_PUBLIC_KEY_INFO is
the certificate's SubjectPublicKeyInfo, CKA_CHECK_VALUE the first three bytes of the SHA-1 of
CKA_VALUE, and the dates default to the validity period.
"""
from __future__ import annotations

import hashlib
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fxpkcs11 import ck
from vhsm.excrypt import DeviceError


def der_integer(n: int) -> bytes:
    body = n.to_bytes(((n if n >= 0 else ~n).bit_length() // 8) + 1, "big", signed=True)
    return b"\x02" + der_length(len(body)) + body


def der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _ck_date(d: Any) -> bytes:
    return d.strftime("%Y%m%d").encode("ascii")


def x509_attrs(template: dict[int, Any]) -> dict[int, Any]:
    """The attributes the device sets or checks for a new certificate object."""
    ctype = template.get(ck.CKA_CERTIFICATE_TYPE)
    if ctype is None:
        raise DeviceError(ck.CKR_TEMPLATE_INCOMPLETE, "a certificate template needs CKA_CERTIFICATE_TYPE")
    if ctype != ck.CKC_X_509:
        raise DeviceError(ck.CKR_ATTRIBUTE_VALUE_INVALID,
                          f"certificate type {ctype} is not stored here; only CKC_X_509 certificates are")
    value = template.get(ck.CKA_VALUE) or b""
    if not value:
        if template.get(ck.CKA_URL) and template.get(ck.CKA_SUBJECT):
            return {}  # a certificate kept elsewhere: only its URL and subject are known
        raise DeviceError(ck.CKR_TEMPLATE_INCOMPLETE, "an X.509 certificate needs CKA_VALUE (or CKA_URL and "
                                                      "CKA_SUBJECT)")
    try:
        cert = x509.load_der_x509_certificate(bytes(value))
        spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo)
    except (ValueError, TypeError):
        raise DeviceError(ck.CKR_ATTRIBUTE_VALUE_INVALID, "CKA_VALUE is not a DER X.509 certificate") from None
    except Exception:  # unsupported public key algorithm: the certificate is still stored
        spki = b""
    derived = {ck.CKA_SUBJECT: cert.subject.public_bytes(), ck.CKA_ISSUER: cert.issuer.public_bytes(),
               ck.CKA_SERIAL_NUMBER: der_integer(cert.serial_number)}
    for t, v in derived.items():
        given = template.get(t)
        if given not in (None, b"") and bytes(given) != v:
            raise DeviceError(ck.CKR_TEMPLATE_INCONSISTENT, f"{ck.name(t, 'CKA_')} does not match the certificate")
    out: dict[int, Any] = dict(derived)
    out[ck.CKA_CHECK_VALUE] = hashlib.sha1(bytes(value)).digest()[:3]
    given_check = template.get(ck.CKA_CHECK_VALUE)
    if given_check not in (None, b"") and given_check != out[ck.CKA_CHECK_VALUE]:
        raise DeviceError(ck.CKR_ATTRIBUTE_VALUE_INVALID, "CKA_CHECK_VALUE does not match the certificate")
    if spki:
        out[ck.CKA_PUBLIC_KEY_INFO] = spki
    if not template.get(ck.CKA_START_DATE):
        out[ck.CKA_START_DATE] = _ck_date(cert.not_valid_before_utc)
    if not template.get(ck.CKA_END_DATE):
        out[ck.CKA_END_DATE] = _ck_date(cert.not_valid_after_utc)
    return out
