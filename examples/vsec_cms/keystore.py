"""The guide's use case (sections 8 and 9) as a vSEC:CMS-style program drives it through
PKCS #11: check the connection, add a service key store (two RSA-2048 wrapping key pairs,
two DES3 master keys brought in wrapped under them, the private wrapping keys removed), then
use the master keys for 3DES encryption as a CMS does when it diversifies card keys.

    python examples/vsec_cms/keystore.py [--module PATH] [--slot 0] --pin PIN

Prints one JSON line: the handles, labels and KCVs of the four objects left on the HSM.
It needs only the guide's vSEC:CMS command list (ECHO GPKM GPKS HASH GRSA LRSA GPKD GPKU GPSE
TIME): C_GenerateKeyPair is GRSA, C_UnwrapKey GPKU, C_DestroyObject GPKD, C_Encrypt GPSE,
C_FindObjects GPKM and C_GetAttributeValue GPKS.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pkcs11
from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, modes
from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass

MASTER_KEYS = (("CMS MK0", b"VSEC0000"), ("CMS MK1", b"VSEC0001"))


def default_module() -> str:
    out = subprocess.run([sys.executable, "-m", "fxpkcs11", "module-path"], capture_output=True, text=True,
                         check=True)
    return out.stdout.strip()


def check_connection(lib: pkcs11.lib, slot: int, pin: str) -> pkcs11.Session:
    """vSEC:CMS "Check connection": initialise, take the slot, log in."""
    token = next(s for s in lib.get_slots() if s.slot_id == slot).get_token()
    return token.open(rw=True, user_pin=pin)


def import_master_key(session: pkcs11.Session, label: str, key_id: bytes, value: bytes) -> pkcs11.SecretKey:
    """One wrapping key pair on the HSM; the CMS wraps its master key in software under the
    public half, the HSM unwraps it, and the private half is removed."""
    pub, priv = session.generate_keypair(
        KeyType.RSA, 2048, store=True,
        public_template={Attribute.PRIVATE: True, Attribute.WRAP: True, Attribute.ENCRYPT: False,
                         Attribute.VERIFY: False, Attribute.VERIFY_RECOVER: False, Attribute.LABEL: "",
                         Attribute.MODIFIABLE: True},
        private_template={Attribute.UNWRAP: True, Attribute.DECRYPT: False, Attribute.SIGN: False,
                          Attribute.SIGN_RECOVER: False})
    n = int.from_bytes(pub[Attribute.MODULUS], "big")
    e = int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big")
    wrapped = rsa.RSAPublicNumbers(e, n).public_key().encrypt(value, padding.PKCS1v15())
    key = priv.unwrap_key(ObjectClass.SECRET_KEY, KeyType.DES3, wrapped, mechanism=Mechanism.RSA_PKCS,
                          label=label, id=key_id, store=True,
                          template={Attribute.PRIVATE: True, Attribute.SENSITIVE: False,
                                    Attribute.EXTRACTABLE: True, Attribute.ENCRYPT: True,
                                    Attribute.DECRYPT: True, Attribute.WRAP: False, Attribute.UNWRAP: False,
                                    Attribute.SIGN: False, Attribute.VERIFY: False, Attribute.MODIFIABLE: True})
    priv.destroy()
    return key


def diversify(session: pkcs11.Session, master: pkcs11.SecretKey, card_serial: bytes) -> bytes:
    """A card key from a master key: 3DES-ECB of the card's serial, as CMS products do."""
    block = card_serial.ljust(16, b"\x00")[:16]
    return master.encrypt(block, mechanism=Mechanism.DES3_ECB)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--module")
    ap.add_argument("--slot", type=int, default=0)
    ap.add_argument("--pin", required=True)
    a = ap.parse_args()
    lib = pkcs11.lib(a.module or default_module())
    session = check_connection(lib, a.slot, a.pin)
    with session:
        values = [os.urandom(24) for _ in MASTER_KEYS]
        keys = [import_master_key(session, label, key_id, value)
                for (label, key_id), value in zip(MASTER_KEYS, values)]
        card = b"\x04\x5a\x11\x22\x33\x44\x55\x66"
        for key, value in zip(keys, values):
            expected = Cipher(TripleDES(value), modes.ECB()).encryptor().update(card.ljust(16, b"\x00"))
            if diversify(session, key, card) != expected:
                print("3DES with the master key in the HSM differs from software", file=sys.stderr)
                return 1
        left = []
        for o in list(session.get_objects()):
            entry = {"handle": o.handle, "class": int(o[Attribute.CLASS]), "label": o[Attribute.LABEL]}
            if o[Attribute.CLASS] == ObjectClass.PUBLIC_KEY:
                entry["modulus"] = o[Attribute.MODULUS].hex()
                entry["exponent"] = o[Attribute.PUBLIC_EXPONENT].hex()
            left.append(entry)
        print(json.dumps({"objects": left, "kcv_sources": [v.hex() for v in values]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
