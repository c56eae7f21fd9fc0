"""The state on a full disk: the call that does not fit fails with CKR_DEVICE_MEMORY and a log
line saying the disk is full, never CKR_OK for a key that was not stored, and never half a key
pair; once space is freed the same process and a new one go on, and every earlier key works.

The disk is a small tmpfs mounted for the test (the test runs as root); where mounting is
refused, an ext4 image on a loop device; where both are refused, the test is skipped.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess

import pytest

from integration_fixtures import make_env
from net_support import Child
from support import build_library

DISK_MB = 8
LEFT_FREE = 600 * 1024  # what the filler leaves: a few dozen keys


@contextlib.contextmanager
def small_disk(path: str):
    """A mounted small file system at `path`: tmpfs, else an ext4 image on a loop device."""
    os.makedirs(path, exist_ok=True)
    how = None
    if shutil.which("mount"):
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m,mode=0700", "tmpfs", path],
                           capture_output=True, text=True)
        if p.returncode == 0:
            how = "tmpfs"
        elif shutil.which("mkfs.ext4"):
            image = path + ".img"
            with open(image, "wb") as f:
                f.truncate(DISK_MB * 4 << 20)
            subprocess.run(["mkfs.ext4", "-q", "-F", image], capture_output=True)
            p = subprocess.run(["mount", "-o", "loop", image, path], capture_output=True, text=True)
            how = "loop" if p.returncode == 0 else None
    if how is None:
        pytest.skip("cannot mount a small file system here (needs root): " + p.stderr.strip())
    try:
        yield how
    finally:
        subprocess.run(["umount", "-l", path], capture_output=True)


def fill(path: str, leave: int) -> str:
    """A filler file that leaves about `leave` bytes free on the file system of `path`."""
    filler = os.path.join(path, "filler")
    st = os.statvfs(path)
    size = max(0, st.f_bavail * st.f_frsize - leave)
    with open(filler, "wb") as f:
        for _ in range(size // (1 << 20)):
            f.write(bytes(1 << 20))
        f.write(bytes(size % (1 << 20)))
    return filler


FILLER_CHILD = """
from pkcs11 import Attribute, KeyType, Mechanism
from pkcs11.util.ec import encode_named_curve_parameters
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

lib = pkcs11.lib(LIB)
tok = lib.get_token(token_label="Futurex")
s = tok.open(rw=True, user_pin=PIN)
params = s.create_domain_parameters(KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")},
                                    local=True)
def kcv(k):
    return k.encrypt(bytes(16), mechanism=Mechanism.AES_ECB)[:3].hex()
def signs(priv, point):
    sig = priv.sign(b"d", mechanism=Mechanism.ECDSA_SHA256)
    pub = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point[2:])
    pub.verify(encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")), b"d",
               ec.ECDSA(hashes.SHA256()))
    return True
def check(made):
    bad = []
    for label, (kind, fp) in made.items():
        found = list(s.get_objects({Attribute.LABEL: label}))
        if kind == "aes":
            if len(found) != 1 or kcv(found[0]) != fp:
                bad.append(label)
        else:
            priv = [o for o in found if o.object_class == pkcs11.ObjectClass.PRIVATE_KEY]
            pubs = [o for o in found if o.object_class == pkcs11.ObjectClass.PUBLIC_KEY]
            if len(priv) != 1 or len(pubs) != 1 or bytes(pubs[0][Attribute.EC_POINT]).hex() != fp \\
                    or not signs(priv[0], bytes.fromhex(fp)):
                bad.append(label)
    return bad

made, failure, i = {}, None, 0
while failure is None and i < 2000:
    i += 1
    label = f"k{i}"
    try:
        if i % 2:
            k = s.generate_key(KeyType.AES, 256, label=label, store=True)
            made[label] = ("aes", kcv(k))
        else:
            pub, priv = params.generate_keypair(store=True, label=label)
            made[label] = ("ec", bytes(pub[Attribute.EC_POINT]).hex())
    except pkcs11.PKCS11Error as e:
        failure = (label, type(e).__name__)
# a label change on the full disk either happens or fails with a clear CKR
first = next(iter(made))
try:
    next(iter(s.get_objects({Attribute.LABEL: first})))[Attribute.LABEL] = first + "-renamed"
    renamed = "ok"
except pkcs11.PKCS11Error as e:
    renamed = type(e).__name__
if renamed == "ok":
    made[first + "-renamed"] = made.pop(first)
objects = len(list(s.get_objects()))
step("full", made=made, failure=failure, renamed=renamed, objects=objects,
     expected=sum(1 if v[0] == "aes" else 2 for v in made.values()))
command()  # the filler is gone
bad = check(made)
k = s.generate_key(KeyType.AES, 256, label="after", store=True)
made["after"] = ("aes", kcv(k))
step("freed", bad=bad, objects=len(list(s.get_objects())))
"""



@pytest.fixture(scope="module", autouse=True)
def _lib():
    build_library()


def test_full_disk_fails_cleanly_and_recovers(tmp_path):
    disk = str(tmp_path / "disk")
    with small_disk(disk) as how:
        env = make_env(str(tmp_path / "p11"), state_dir=os.path.join(disk, "state"))  # log stays off the disk
        filler = fill(disk, LEFT_FREE)
        child = Child(env.cfg, FILLER_CHILD)
        try:
            full = child.expect("full", timeout=120)
            label, ckr = full["failure"] or (None, None)
            assert label is not None, f"{how}: the disk never filled ({len(full['made'])} keys)"
            assert ckr == "DeviceMemory", full["failure"]
            assert len(full["made"]) >= 2
            # never CKR_OK for a key that was not stored, never half a key pair left behind
            assert full["objects"] == full["expected"], full
            assert full["renamed"] in ("ok", "DeviceMemory"), full["renamed"]
            log = env.log_text()
            assert "CKR_DEVICE_MEMORY" in log and "the disk is full" in log and "disk full" in log, log[-2000:]
            os.unlink(filler)
            child.send()
            freed = child.expect("freed", timeout=120)
            assert freed["bad"] == []
            assert freed["objects"] == full["expected"] + 1
            assert child.wait(30) == 0
        finally:
            child.close()
        # a new process opens the state and finds every key
        made = dict(full["made"])
        made["after"] = None
        from integration_fixtures import run_child
        r = run_child(env.cfg, """
            from pkcs11 import Attribute
            s = pkcs11.lib(LIB).get_token(token_label="Futurex").open(rw=True, user_pin=PIN)
            out(labels=sorted({o[Attribute.LABEL] for o in s.get_objects()}))
        """)
        assert r["labels"] == sorted(made)
        p = subprocess.run([os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venv",
                            "bin", "vhsm"), "--state", os.path.join(disk, "state"), "audit", "verify"],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
