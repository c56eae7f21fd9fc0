"""Usage letters for key listings (PKCS11Manager, `vhsm keytable list`), one per PKCS #11
usage attribute that is true: E encrypt, D decrypt, S sign, V verify, R sign-recover,
C verify-recover, W wrap, U unwrap, X derive."""
from __future__ import annotations

from typing import Any

from fxpkcs11 import ck

LETTERS: tuple[tuple[str, int], ...] = (
    ("E", ck.CKA_ENCRYPT), ("D", ck.CKA_DECRYPT), ("S", ck.CKA_SIGN), ("V", ck.CKA_VERIFY),
    ("R", ck.CKA_SIGN_RECOVER), ("C", ck.CKA_VERIFY_RECOVER), ("W", ck.CKA_WRAP), ("U", ck.CKA_UNWRAP),
    ("X", ck.CKA_DERIVE),
)


def usage_letters(attrs: dict[int, Any]) -> str:
    return "".join(letter for letter, attr in LETTERS if attrs.get(attr))
