"""The guide's vSEC:CMS use case: a partition configured with exactly the guide's FXCLI
command list runs the key store flow, and PKCS11Manager lists the four objects as section 9.3
shows them, with KCVs that match values computed independently in software."""
from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, modes

from support import ROOT, child_env, write_config

VHSM = os.path.join(ROOT, ".venv", "bin", "vhsm")
PY = os.path.join(ROOT, ".venv", "bin", "python")
MANAGER = os.path.join(ROOT, ".venv", "bin", "PKCS11Manager")
GUIDE_COMMANDS = ["ECHO", "GPKD", "GPKM", "GPKS", "GPKU", "GPSE", "GRSA", "HASH", "LRSA", "TIME"]


def test_vsec_cms_key_store_on_the_guides_partition(tmp_path):
    state = str(tmp_path / "state")
    subprocess.run([VHSM, "--state", state, "-f", os.path.join(ROOT, "examples", "vectera-setup.fxcli")],
                   check=True, capture_output=True)
    role = json.loads(subprocess.run([VHSM, "--state", state, "--output", "json", "role", "show", "--name",
                                      "vSEC_CMS"], check=True, capture_output=True, text=True).stdout)
    assert role["commands"] == GUIDE_COMMANDS  # nothing added to the guide's list

    cfg = write_config(str(tmp_path / "fx.cfg"), state)
    run = subprocess.run([PY, os.path.join(ROOT, "examples", "vsec_cms", "keystore.py"), "--pin", "safest"],
                         env=child_env(cfg), cwd="/", capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert [(o["handle"], o["class"], o["label"]) for o in result["objects"]] == [
        (2, 2, ""), (3, 4, "CMS MK0"), (4, 2, ""), (5, 4, "CMS MK1")]

    listing = subprocess.run([MANAGER], input="8\n1\nsafest\n3\n1\n0\n", env=child_env(cfg), cwd="/",
                             capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stderr
    text = listing.stdout[listing.stdout.index("Total number of found objects"):]
    text = text[:text.index("Main Menu")]
    head, *objects = re.split(r"\n(?=Object ID: )", text.strip())
    assert head == "Total number of found objects: 4" and len(objects) == 4

    pubs = [o for o in result["objects"] if o["class"] == 2]
    secrets = result["kcv_sources"]

    def public_kcv(o: dict) -> str:
        key = rsa.RSAPublicNumbers(int(o["exponent"], 16), int(o["modulus"], 16)).public_key()
        spki = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return hashlib.sha256(spki).hexdigest()[:4].upper()

    def des3_kcv(hexkey: str) -> str:
        enc = Cipher(TripleDES(bytes.fromhex(hexkey)), modes.ECB()).encryptor()
        return (enc.update(bytes(8)) + enc.finalize())[:2].hex().upper()

    expected = [
        ("2", "1", "CKO_PUBLIC_KEY", None, None, None, public_kcv(pubs[0]), "W"),
        ("3", "2", "CKO_SECRET_KEY", "DES3", "CMS MK0", "VSEC0000", des3_kcv(secrets[0]), "ED"),
        ("4", "3", "CKO_PUBLIC_KEY", None, None, None, public_kcv(pubs[1]), "W"),
        ("5", "4", "CKO_SECRET_KEY", "DES3", "CMS MK1", "VSEC0001", des3_kcv(secrets[1]), "ED"),
    ]
    for block, (oid, slot, cls, ktype, label, kid, kcv, usage) in zip(objects, expected):
        lines = dict(line.strip().split(": ", 1) for line in block.splitlines())
        assert lines["Object ID"] == oid and lines["Internal ID"] == oid
        assert lines["Excrypt Board Slot"] == slot
        assert lines["Class"] == cls
        assert (lines["Token"], lines["Private"], lines["Sensitive"], lines["Modifiable"]) == ("Yes", "Yes", "No",
                                                                                             "Yes")
        assert lines.get("Key Type") == ktype
        assert lines.get("Label") == label and lines.get("ID") == kid
        assert lines["KCV"] == kcv
        assert lines["Usage"] == usage
        if cls == "CKO_SECRET_KEY":
            assert (lines["Value Len"], lines["Value Bits"]) == ("24", "192")
        else:
            assert lines["Modulus Bits"] == "2048"
