"""The virtual Vectera Plus's rules as a PKCS #11 application sees them.

Each test has its own state directory and configuration, so each runs its PKCS #11 code in
child processes (python-pkcs11 in a fresh interpreter, environment from child_env, cwd "/").
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import textwrap

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fxpkcs11 import ck
from integration_fixtures import HERE, make_env, run_child
from support import LIB, PIN, ROOT, child_env
from vhsm.commands.catalog import whitelistable

try:
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # older cryptography
    TripleDES = algorithms.TripleDES


def kcv_aes(value: bytes) -> bytes:
    enc = Cipher(algorithms.AES(value), modes.ECB()).encryptor()
    return (enc.update(bytes(16)) + enc.finalize())[:3]


def state_files(state_dir: str) -> dict[str, bytes]:
    out = {}
    for root, _, files in os.walk(state_dir):
        for name in files:
            path = os.path.join(root, name)
            try:
                with open(path, "rb") as f:
                    out[os.path.relpath(path, state_dir)] = f.read()
            except FileNotFoundError:  # a -wal/-shm file removed meanwhile
                pass
    return out


# ------------------------------------------------------------------ persistence


def test_token_keys_persist_across_processes(tmp_path):
    env = make_env(str(tmp_path))
    first = run_child(env.cfg, """
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        with tok.open(rw=True, user_pin=PIN) as s:
            pub, priv = s.generate_keypair(KeyType.RSA, 2048, store=True, label="persist-rsa", id=b"\\x01")
            aes = s.generate_key(KeyType.AES, 256, store=True, label="persist-aes")
            ec_pub, ec_priv = s.generate_keypair(KeyType.EC, store=True, label="persist-ec",
                public_template={Attribute.EC_PARAMS: bytes.fromhex("06082a8648ce3d030107")})
            sig = priv.sign(b"before", mechanism=Mechanism.SHA256_RSA_PKCS)
            ct = aes.encrypt(bytes(32), mechanism=Mechanism.AES_ECB)
            out(modulus=pub[Attribute.MODULUS].hex(), exponent=pub[Attribute.PUBLIC_EXPONENT].hex(),
                kcv=aes[Attribute.CHECK_VALUE].hex(), ct=ct.hex(), sig=sig.hex(),
                point=ec_pub[Attribute.EC_POINT].hex(), handles=[priv.handle, aes.handle])
    """)
    second = run_child(env.cfg, """
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        with tok.open(rw=True, user_pin=PIN) as s:
            priv = s.get_key(object_class=ObjectClass.PRIVATE_KEY, label="persist-rsa")
            pub = s.get_key(object_class=ObjectClass.PUBLIC_KEY, label="persist-rsa", id=b"\\x01")
            aes = s.get_key(label="persist-aes", key_type=KeyType.AES)
            ec_pub = s.get_key(object_class=ObjectClass.PUBLIC_KEY, label="persist-ec")
            ec_priv = s.get_key(object_class=ObjectClass.PRIVATE_KEY, label="persist-ec")
            sig = priv.sign(b"after reload", mechanism=Mechanism.SHA256_RSA_PKCS)
            ecsig = ec_priv.sign(b"after reload", mechanism=Mechanism.ECDSA_SHA256)
            ct = aes.encrypt(bytes(32), mechanism=Mechanism.AES_ECB)
            out(modulus=pub[Attribute.MODULUS].hex(), priv_modulus=priv[Attribute.MODULUS].hex(),
                kcv=aes[Attribute.CHECK_VALUE].hex(), ct=ct.hex(), sig=sig.hex(), ecsig=ecsig.hex(),
                point=ec_pub[Attribute.EC_POINT].hex(), local=priv[Attribute.LOCAL],
                handles=[priv.handle, aes.handle])
    """)
    assert second["modulus"] == second["priv_modulus"] == first["modulus"]
    assert second["kcv"] == first["kcv"] and len(bytes.fromhex(first["kcv"])) == 3
    assert second["ct"] == first["ct"]  # the same AES key material came back
    assert second["point"] == first["point"]
    assert second["handles"] == first["handles"]  # handles are stable key table slots
    assert second["local"] is True
    key = rsa.RSAPublicNumbers(int(first["exponent"], 16), int(first["modulus"], 16)).public_key()
    key.verify(bytes.fromhex(first["sig"]), b"before", padding.PKCS1v15(), hashes.SHA256())
    key.verify(bytes.fromhex(second["sig"]), b"after reload", padding.PKCS1v15(), hashes.SHA256())
    raw_point = bytes.fromhex(first["point"])[2:]
    ec_key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw_point)
    sig = bytes.fromhex(second["ecsig"])
    ec_key.verify(encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")),
                  b"after reload", ec.ECDSA(hashes.SHA256()))


# ------------------------------------------------------------------ command whitelist


def test_denied_command_fails_and_logs_the_fix(tmp_path):
    commands = [c for c in whitelistable() if c != "GPAS"]
    env = make_env(str(tmp_path), commands=commands)
    result = run_child(env.cfg, """
        import ctypes
        from integration_fixtures import LowLevel
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        with tok.open(rw=True, user_pin=PIN) as s:
            pub, priv = s.generate_keypair(KeyType.RSA, 2048, label="denied")
            try:
                priv.sign(b"data", mechanism=Mechanism.SHA256_RSA_PKCS)
                error = None
            except pkcs11.PKCS11Error as e:
                error = type(e).__name__
            ll = LowLevel()
            rv = ll.init("Sign", s.handle, 0x40, priv.handle)
            # what the partition may still do
            ok = pub.verify(b"x", bytes(256), mechanism=Mechanism.SHA256_RSA_PKCS) is False
            out(error=error, rv=rv, ok=ok, label=tok.label)
    """)
    assert result["error"] == "FunctionFailed"
    assert result["rv"] == ck.CKR_FUNCTION_FAILED == 0x6
    assert result["ok"] is True and result["label"] == "Futurex"
    log = env.log_text()
    lines = [ln for ln in log.splitlines() if "GPAS" in ln and "--add-perm Excrypt:GPAS" in ln]
    assert lines, log
    assert "'App'" in lines[0]  # the role
    assert 'vhsm role modify --name "App" --add-perm Excrypt:GPAS' in log


def test_denied_information_commands_still_answer_token_info(tmp_path):
    env = make_env(str(tmp_path), commands=["GPKM", "GPKS", "GRSA", "GPAS"])  # no ECHO, HASH, PRMD
    result = run_child(env.cfg, """
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        out(label=tok.label, flags=int(tok.flags))
    """)
    assert result["label"] == "Futurex"
    need = ck.CKF_RNG | ck.CKF_LOGIN_REQUIRED | ck.CKF_TOKEN_INITIALIZED
    assert result["flags"] & need == need


# ------------------------------------------------------------------ partition isolation


def test_partition_isolation(tmp_path):
    env = make_env(str(tmp_path), partitions={"App": (0, 999), "B": (1000, 1999)}, identity=None)
    # no <CRYPTO-OPR>: the PIN names the identity (crypto1 is in App, b1 in B)
    b = run_child(env.cfg, """
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        with tok.open(rw=True, user_pin="b1:" + PIN) as s:
            pub, priv = s.generate_keypair(KeyType.RSA, 2048, store=True, label="b-rsa")
            aes = s.generate_key(KeyType.AES, 128, store=True, label="b-aes")
            data = s.create_object({Attribute.CLASS: ObjectClass.DATA, Attribute.TOKEN: True,
                                    Attribute.PRIVATE: False, Attribute.LABEL: "b-data", Attribute.VALUE: b"v"})
            out(handles={"pub": pub.handle, "priv": priv.handle, "aes": aes.handle, "data": data.handle})
    """)
    hb = b["handles"]
    assert all(1000 <= h - 1 <= 1999 for h in hb.values()), hb  # B's keys are in B's range
    a = run_child(env.cfg, f"""
        import ctypes
        from integration_fixtures import LowLevel
        hb = {hb!r}
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        ll = LowLevel()
        with tok.open(rw=True, user_pin="crypto1:" + PIN) as s:
            everything = [o.handle for o in s.get_objects()]
            by_label = [o.handle for lab in ("b-rsa", "b-aes", "b-data")
                        for o in s.get_objects({{Attribute.LABEL: lab}})]
            own = s.generate_key(KeyType.AES, 128, store=True, label="a-aes")
            rv_attr = ll.get_attribute(s.handle, hb["aes"], 0x3)[0]
            rv_data = ll.get_attribute(s.handle, hb["data"], 0x11)[0]
            rv_sign = ll.init("Sign", s.handle, 0x40, hb["priv"])
            rv_enc = ll.init("Encrypt", s.handle, 0x1081, hb["aes"])
            rv_verify = ll.init("Verify", s.handle, 0x40, hb["pub"])
            rv_destroy = ll.fn("C_DestroyObject")(ctypes.c_ulong(s.handle), ctypes.c_ulong(hb["aes"]))
            kek = s.generate_key(KeyType.AES, 256, label="a-kek")
            wrapped = ctypes.create_string_buffer(512)
            n = ctypes.c_ulong(512)
            m = ll.mechanism(0x2109)
            rv_wrap = ll.fn("C_WrapKey")(ctypes.c_ulong(s.handle), ctypes.byref(m), ctypes.c_ulong(kek.handle),
                                         ctypes.c_ulong(hb["aes"]), wrapped, ctypes.byref(n))
            out(everything=everything, by_label=by_label, own=own.handle, rv_attr=rv_attr, rv_data=rv_data,
                rv_sign=rv_sign, rv_enc=rv_enc, rv_verify=rv_verify, rv_destroy=rv_destroy, rv_wrap=rv_wrap)
    """)
    assert a["by_label"] == []
    assert not set(a["everything"]) & set(hb.values())
    assert 0 <= a["own"] - 1 <= 999
    assert a["rv_attr"] == ck.CKR_OBJECT_HANDLE_INVALID
    assert a["rv_data"] == ck.CKR_OBJECT_HANDLE_INVALID
    assert a["rv_destroy"] == ck.CKR_OBJECT_HANDLE_INVALID
    for name in ("rv_sign", "rv_enc", "rv_verify"):
        assert a[name] == ck.CKR_KEY_HANDLE_INVALID, (name, a[name])
    assert a["rv_wrap"] == ck.CKR_KEY_HANDLE_INVALID
    # B's keys are untouched and B does not see A's
    again = run_child(env.cfg, """
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        with tok.open(rw=True, user_pin="b1:" + PIN) as s:
            labels = sorted(o[Attribute.LABEL] for o in s.get_objects())
            priv = s.get_key(object_class=ObjectClass.PRIVATE_KEY, label="b-rsa")
            sig = priv.sign(b"still mine", mechanism=Mechanism.SHA256_RSA_PKCS)
            out(labels=labels, sig=len(sig))
    """)
    assert again["labels"] == ["b-aes", "b-data", "b-rsa", "b-rsa"]
    assert again["sig"] == 256


# ------------------------------------------------------------------ no key in clear on disk


CHILD_IMPORT = """
    import sys
    v = json.loads(sys.stdin.readline())
    h = {k: bytes.fromhex(x) for k, x in v.items()}
    tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
    with tok.open(rw=True, user_pin=PIN) as s:
        common = {Attribute.TOKEN: True, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False}
        def secret(kt, value, label):
            return s.create_object({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: kt,
                                    Attribute.VALUE: value, Attribute.LABEL: label, **common})
        aes = secret(KeyType.AES, h["aes"], "clear-aes")
        des = secret(KeyType.DES3, h["des3"], "clear-des3")
        gen = secret(KeyType.GENERIC_SECRET, h["generic"], "clear-generic")
        rsa_priv = s.create_object({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.RSA,
            Attribute.LABEL: "clear-rsa", Attribute.MODULUS: h["n"], Attribute.PUBLIC_EXPONENT: h["e"],
            Attribute.PRIVATE_EXPONENT: h["d"], Attribute.PRIME_1: h["p"], Attribute.PRIME_2: h["q"],
            Attribute.EXPONENT_1: h["dmp1"], Attribute.EXPONENT_2: h["dmq1"], Attribute.COEFFICIENT: h["iqmp"],
            Attribute.SIGN: True, **common})
        ec_priv = s.create_object({Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.EC,
            Attribute.LABEL: "clear-ec", Attribute.EC_PARAMS: bytes.fromhex("06082a8648ce3d030107"),
            Attribute.VALUE: h["ec"], Attribute.SIGN: True, **common})
        results = {
            "aes_kcv": aes[Attribute.CHECK_VALUE].hex(),
            "des_ct": des.encrypt(bytes(8), mechanism=Mechanism.DES3_ECB).hex(),
            "mac": gen.sign(b"m", mechanism=Mechanism.SHA256_HMAC).hex(),
            "rsa_sig": rsa_priv.sign(b"m", mechanism=Mechanism.SHA256_RSA_PKCS).hex(),
            "ec_sig": ec_priv.sign(b"m", mechanism=Mechanism.ECDSA_SHA256).hex(),
        }
        out(**results)
        sys.stdout.flush()
        sys.stdin.readline()  # the parent reads the state directory while we still run
"""


def test_no_key_value_in_clear_on_disk(tmp_path):
    env = make_env(str(tmp_path))
    rsa_key = rsa.generate_private_key(65537, 2048)
    rn = rsa_key.private_numbers()
    ec_key = ec.generate_private_key(ec.SECP256R1())

    def b(i: int, size: int | None = None) -> bytes:
        return i.to_bytes(size or (i.bit_length() + 7) // 8, "big")

    def parity(v: bytes) -> bytes:
        return bytes((x & 0xFE) | (bin(x & 0xFE).count("1") % 2 == 0) for x in v)
    values = {"aes": os.urandom(32), "des3": parity(os.urandom(24)), "generic": os.urandom(48),
              "n": b(rn.public_numbers.n), "e": b(rn.public_numbers.e), "d": b(rn.d), "p": b(rn.p),
              "q": b(rn.q), "dmp1": b(rn.dmp1), "dmq1": b(rn.dmq1), "iqmp": b(rn.iqmp),
              "ec": b(ec_key.private_numbers().private_value, 32)}
    secrets = {k: values[k] for k in ("aes", "des3", "generic", "d", "p", "q", "dmp1", "dmq1", "iqmp", "ec")}

    prelude_cmd = [sys.executable, "-c", _child_source(CHILD_IMPORT)]
    proc = subprocess.Popen(prelude_cmd, cwd="/", env=child_env(env.cfg), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        proc.stdin.write(json.dumps({k: v.hex() for k, v in values.items()}) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        assert line.startswith("{"), line + proc.stderr.read()
        results = json.loads(line)
        while_running = state_files(env.state)
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=60) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    after = state_files(env.state)

    # the keys were really stored and work
    assert bytes.fromhex(results["aes_kcv"]) == kcv_aes(values["aes"])
    enc = Cipher(TripleDES(values["des3"]), modes.ECB()).encryptor()
    assert bytes.fromhex(results["des_ct"]) == enc.update(bytes(8)) + enc.finalize()
    assert bytes.fromhex(results["mac"]) == hmac.new(values["generic"], b"m", "sha256").digest()
    rsa_key.public_key().verify(bytes.fromhex(results["rsa_sig"]), b"m", padding.PKCS1v15(), hashes.SHA256())
    assert any(name.startswith("vhsm.db") for name in after)
    assert any(name.startswith("secure" + os.sep) for name in after)

    for when, files in (("while running", while_running), ("after exit", after)):
        assert files
        for name, data in files.items():
            for what, secret in secrets.items():
                for form, needle in (("raw", secret), ("hex", secret.hex().encode()),
                                     ("HEX", secret.hex().upper().encode()),
                                     ("base64", base64.b64encode(secret)[:40])):
                    assert needle not in data, f"{what} ({form}) in clear in {name} {when}"


def _child_source(code: str) -> str:
    return textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {ROOT!r})
        sys.path.insert(0, {HERE!r})
        import pkcs11
        from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
        LIB = {LIB!r}
        PIN = {PIN!r}
        def out(**kw):
            print(json.dumps(kw), flush=True)
    """) + textwrap.dedent(code)


# ------------------------------------------------------------------ FTK


def test_no_ftk_loaded(tmp_path):
    env = make_env(str(tmp_path), ftk=False)
    result = run_child(env.cfg, """
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        label, flags = tok.label, int(tok.flags)
        with tok.open(rw=True, user_pin=PIN) as s:
            errors = {}
            for name, fn in (
                ("aes", lambda: s.generate_key(KeyType.AES, 128, store=True)),
                ("aes_session", lambda: s.generate_key(KeyType.AES, 128)),
                ("rsa", lambda: s.generate_keypair(KeyType.RSA, 2048, store=True)),
            ):
                try:
                    fn()
                    errors[name] = None
                except pkcs11.PKCS11Error as e:
                    errors[name] = type(e).__name__
            random_ok = len(s.generate_random(128)) == 16
        out(label=label, flags=flags, errors=errors, random_ok=random_ok)
    """)
    assert result["label"] == "Futurex"
    need = ck.CKF_RNG | ck.CKF_LOGIN_REQUIRED | ck.CKF_TOKEN_INITIALIZED
    assert result["flags"] & need == need
    assert result["errors"] == {"aes": "DeviceError", "aes_session": "DeviceError", "rsa": "DeviceError"}
    assert result["random_ok"] is True
    log = env.log_text()
    assert "no FTK is loaded" in log, log
    assert "majorkey" in log  # how to load one


# ------------------------------------------------------------------ key slot range full


def test_key_slot_range_full(tmp_path):
    env = make_env(str(tmp_path), partitions={"App": (0, 2)})
    result = run_child(env.cfg, """
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        with tok.open(rw=True, user_pin=PIN) as s:
            keys = [s.generate_key(KeyType.AES, 128, store=True, label=f"k{i}") for i in range(3)]
            try:
                s.generate_key(KeyType.AES, 128, store=True, label="k3")
                fourth = None
            except pkcs11.PKCS11Error as e:
                fourth = type(e).__name__
            try:
                s.create_object({Attribute.CLASS: ObjectClass.DATA, Attribute.TOKEN: True, Attribute.LABEL: "d"})
                data = None
            except pkcs11.PKCS11Error as e:
                data = type(e).__name__
            session_key = s.generate_key(KeyType.AES, 128, store=False).handle  # memory, not the key table
            keys[1].destroy()
            again = s.generate_key(KeyType.AES, 128, store=True, label="k1b").handle
            out(handles=[k.handle for k in keys], fourth=fourth, data=data, again=again,
                session_key=session_key > 3)
    """)
    assert sorted(result["handles"]) == [1, 2, 3]  # slots 0, 1, 2
    assert result["fourth"] == "DeviceMemory"
    assert result["data"] == "DeviceMemory"
    assert result["again"] == 2  # the freed slot 1 is used again
    assert result["session_key"] is True
    log = env.log_text()
    assert "key slot range (0,2) is full" in log, log
    assert "'App'" in log


# ------------------------------------------------------------------ two processes at once


CONCURRENT_CHILD = """
    import sys
    me = sys.argv[1]
    tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
    with tok.open(rw=True, user_pin=PIN) as s:
        out(step="ready")
        sys.stdin.readline()
        made = []
        for i in range(20):
            if i % 2:
                made.append(s.generate_key(KeyType.AES, 128, store=True, label=f"{me}-{i}").handle)
            else:
                made.append(s.create_object({Attribute.CLASS: ObjectClass.SECRET_KEY,
                    Attribute.KEY_TYPE: KeyType.GENERIC_SECRET, Attribute.TOKEN: True,
                    Attribute.VALUE: bytes([i + 1]) * 32, Attribute.LABEL: f"{me}-{i}"}).handle)
        out(step="created", made=made)
        sys.stdin.readline()
        seen = {o[Attribute.LABEL]: o.handle for o in s.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})}
        other = "B" if me == "A" else "A"
        kcv = s.get_key(label=f"{other}-2")[Attribute.CHECK_VALUE].hex()
        out(step="seen", seen=seen, kcv=kcv)
"""


def test_two_processes_share_the_key_table(tmp_path):
    env = make_env(str(tmp_path))
    source = _child_source(CONCURRENT_CHILD)
    procs = {me: subprocess.Popen([sys.executable, "-c", source, me], cwd="/", env=child_env(env.cfg),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for me in ("A", "B")}

    def step(me: str, name: str) -> dict:
        line = procs[me].stdout.readline()
        if not line.startswith("{"):
            procs[me].kill()
            raise AssertionError(f"{me}: {line!r}\n{procs[me].stderr.read()}")
        msg = json.loads(line)
        assert msg["step"] == name, msg
        return msg

    def go() -> None:
        for p in procs.values():
            p.stdin.write("go\n")
            p.stdin.flush()
    try:
        for me in procs:
            step(me, "ready")
        go()  # both create at the same time
        made = {me: step(me, "created")["made"] for me in procs}
        go()
        seen = {me: step(me, "seen") for me in procs}
        for me, p in procs.items():
            assert p.wait(timeout=60) == 0, p.stderr.read()
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
    all_handles = made["A"] + made["B"]
    assert len(all_handles) == 40 and len(set(all_handles)) == 40  # all slots distinct
    assert all(0 <= h - 1 <= 999 for h in all_handles)
    expected = {f"{me}-{i}": made[me][i] for me in ("A", "B") for i in range(20)}
    for me in ("A", "B"):
        assert seen[me]["seen"] == expected
        assert bytes.fromhex(seen[me]["kcv"]) == hashlib.sha1(bytes([3]) * 32).digest()[:3]
    # and a third process sees all 40
    final = run_child(env.cfg, """
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        with tok.open(user_pin=PIN) as s:
            out(n=len(list(s.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY}))))
    """)
    assert final["n"] == 40
