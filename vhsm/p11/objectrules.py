"""Object rules beyond single attributes: dates, who may set CKA_TRUSTED, certificates'
fixed fields, and the wrapping policy that blocks the known key-extraction attacks.

vhsm/commands/keys.py calls these at its chokepoints: every new object (create, generate,
unwrap, copy) passes `check_new`, every C_SetAttributeValue `check_change`, every C_WrapKey
`check_wrap` and every C_UnwrapKey `unwrap_template`. docs/device.md states the rules.
"""
from __future__ import annotations

import datetime
from typing import Any

from fxpkcs11 import ck
from vhsm.excrypt import DeviceError

DATES = (ck.CKA_START_DATE, ck.CKA_END_DATE)
# A certificate's identity fields must stay consistent with its CKA_VALUE.
CERTIFICATE_FIXED = {ck.CKA_SUBJECT, ck.CKA_ISSUER, ck.CKA_SERIAL_NUMBER, ck.CKA_VALUE,
                     ck.CKA_CERTIFICATE_TYPE, ck.CKA_URL}
# Usage attributes that may not be turned on together after creation (wrap-then-decrypt).
EXCLUSIVE = ((ck.CKA_WRAP, ck.CKA_DECRYPT),)


def _date(t: int, raw: Any) -> datetime.date | None:
    if raw in (None, b"", ""):
        return None
    try:
        text = bytes(raw).decode("ascii")
        if len(text) != 8 or not text.isdigit():
            raise ValueError
        return datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except (ValueError, TypeError):
        raise DeviceError(ck.CKR_ATTRIBUTE_VALUE_INVALID,
                          f"{ck.name(t, 'CKA_')} is not a CK_DATE (YYYYMMDD, a real date)") from None


def check_dates(attrs: dict[int, Any]) -> None:
    """CKA_START_DATE and CKA_END_DATE: empty or a real date, and the end not before the start.
    (The spec makes them informational: a key is not refused outside its dates.)"""
    start = _date(ck.CKA_START_DATE, attrs.get(ck.CKA_START_DATE))
    end = _date(ck.CKA_END_DATE, attrs.get(ck.CKA_END_DATE))
    if start and end and end < start:
        raise DeviceError(ck.CKR_TEMPLATE_INCONSISTENT, "CKA_END_DATE is before CKA_START_DATE")


def check_new(conn: Any, attrs: dict[int, Any]) -> None:
    check_dates(attrs)
    if attrs.get(ck.CKA_TRUSTED) and not getattr(conn, "so", False):
        raise DeviceError(ck.CKR_ATTRIBUTE_READ_ONLY, "only the security officer can set CKA_TRUSTED")


def check_change(conn: Any, attrs: dict[int, Any], changes: dict[int, Any]) -> None:
    """Rules for C_SetAttributeValue (and the changes of C_CopyObject) besides the
    per-attribute ones in vhsm/p11/attributes.py."""
    if attrs.get(ck.CKA_CLASS) == ck.CKO_CERTIFICATE:
        for t, v in changes.items():
            if t in CERTIFICATE_FIXED and attrs.get(t) != v:
                raise DeviceError(ck.CKR_ATTRIBUTE_READ_ONLY,
                                  f"{ck.name(t, 'CKA_')} of a certificate follows its CKA_VALUE and cannot change")
    if any(t in changes for t in DATES):
        check_dates({**attrs, **changes})
    for a, b in EXCLUSIVE:
        after_a, after_b = changes.get(a, attrs.get(a)), changes.get(b, attrs.get(b))
        turned_on = (after_a and not attrs.get(a)) or (after_b and not attrs.get(b))
        if after_a and after_b and turned_on:
            raise DeviceError(ck.CKR_TEMPLATE_INCONSISTENT,
                              f"{ck.name(a, 'CKA_')} and {ck.name(b, 'CKA_')} cannot be turned on together: "
                              "a key that wraps must not also decrypt what it wrapped")


# ------------------------------------------------------------------ wrapping policy

def may_wrap_sensitive(wkey: Any) -> bool:
    """Whether a wrapping key may wrap sensitive keys: the SO trusts it, or it is a secret
    key whose value never existed outside the device (generated sensitive: CKA_ALWAYS_SENSITIVE)
    and that cannot decrypt (so the wrapped blob is never turned into clear key bytes)."""
    a = wkey.attrs
    if a.get(ck.CKA_CLASS) == ck.CKO_SECRET_KEY and a.get(ck.CKA_DECRYPT):
        return False
    if a.get(ck.CKA_TRUSTED):
        return True
    return a.get(ck.CKA_CLASS) == ck.CKO_SECRET_KEY and bool(a.get(ck.CKA_ALWAYS_SENSITIVE))


def matches_template(attrs: dict[int, Any], template: dict[int, Any]) -> bool:
    return all(attrs.get(t) == v for t, v in template.items())


def check_wrap(conn: Any, wkey: Any, key: Any) -> None:
    wrap_template = wkey.attrs.get(ck.CKA_WRAP_TEMPLATE)
    if wrap_template and not matches_template(key.attrs, wrap_template):
        raise DeviceError(ck.CKR_KEY_NOT_WRAPPABLE, "the key does not match the wrapping key's CKA_WRAP_TEMPLATE")
    if key.attrs.get(ck.CKA_SENSITIVE) and not may_wrap_sensitive(wkey):
        if wkey.attrs.get(ck.CKA_CLASS) == ck.CKO_SECRET_KEY and wkey.attrs.get(ck.CKA_DECRYPT):
            why = "the wrapping key also has CKA_DECRYPT (it could decrypt the wrapped key)"
        elif wkey.attrs.get(ck.CKA_CLASS) == ck.CKO_SECRET_KEY:
            why = "the wrapping key's value was known outside the device (CKA_ALWAYS_SENSITIVE is false)"
        else:
            why = "a public wrapping key must be CKA_TRUSTED (set by the security officer)"
        raise DeviceError(ck.CKR_KEY_NOT_WRAPPABLE, f"a sensitive key cannot be wrapped here: {why}")


def unwrap_template(ukey: Any, template: dict[int, Any]) -> dict[int, Any]:
    """The new key's template with the unwrapping key's CKA_UNWRAP_TEMPLATE applied; a key
    that may wrap sensitive keys unwraps only into sensitive keys (else unwrapping would
    re-import a wrapped sensitive key in the clear)."""
    out = dict(template)
    forced = dict(ukey.attrs.get(ck.CKA_UNWRAP_TEMPLATE) or {})
    if ukey.attrs.get(ck.CKA_WRAP) and may_wrap_sensitive(ukey):
        forced.setdefault(ck.CKA_SENSITIVE, True)
    for t, v in forced.items():
        if t in out and out[t] != v:
            raise DeviceError(ck.CKR_TEMPLATE_INCONSISTENT,
                              f"{ck.name(t, 'CKA_')} conflicts with the unwrapping key's CKA_UNWRAP_TEMPLATE")
        out[t] = v
    return out
