"""PKCS #11 behaviour of libfxpkcs11.so through python-pkcs11, in this process.

Results are checked independently with `cryptography`, `hashlib` and `hmac`; what
python-pkcs11 does not expose (C_GetSessionInfo, exact CKRs of the operation state machine,
length queries) is called directly through LowLevel (the same loaded library).
"""
from __future__ import annotations

import ctypes
import hashlib
import hmac
import os

import pkcs11
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa, utils
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives import padding as sympad
from cryptography.hazmat.primitives.keywrap import (aes_key_unwrap, aes_key_unwrap_with_padding, aes_key_wrap,
                                                    aes_key_wrap_with_padding)
from pkcs11 import MGF, Attribute, GCMParams, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as E

from fxpkcs11 import ck, mechs
from integration_fixtures import (CK_UNAVAILABLE_INFORMATION, LowLevel, p11_env, pss_params,  # noqa: F401
                                  run_child, use_config)
from integration_fixtures import logged_in_session
from support import PIN

try:
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # older cryptography
    TripleDES = algorithms.TripleDES

# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def lib(p11_env):
    return use_config(p11_env.cfg)


@pytest.fixture(scope="module")
def token(lib):
    return lib.get_token(token_label="Futurex")


@pytest.fixture(scope="module")
def session(token):
    yield from logged_in_session(token)


@pytest.fixture(scope="module")
def ll(lib):
    return LowLevel()


@pytest.fixture
def logged_in(session, ll):
    """Leave the token logged in whatever a test did to the login state."""
    yield
    ll.login(session.handle, PIN)  # CKR_USER_ALREADY_LOGGED_IN when it still is


def uniq(prefix: str) -> str:
    return f"{prefix}-{os.urandom(4).hex()}"


def secret_key(session, key_type, value: bytes, extra: dict | None = None):
    attrs = {Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: key_type, Attribute.VALUE: value,
             Attribute.TOKEN: False, Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True,
             Attribute.ENCRYPT: True, Attribute.DECRYPT: True, Attribute.SIGN: True, Attribute.VERIFY: True,
             Attribute.WRAP: True, Attribute.UNWRAP: True, Attribute.LABEL: uniq("imported")}
    attrs.update(extra or {})
    return session.create_object(attrs)


def des3_value() -> bytes:
    def parity(b: int) -> int:
        b &= 0xFE
        return b | (bin(b).count("1") % 2 == 0)
    return bytes(parity(b) for b in os.urandom(24))


def rsa_public(pub) -> rsa.RSAPublicKey:
    n = int.from_bytes(pub[Attribute.MODULUS], "big")
    e = int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big")
    return rsa.RSAPublicNumbers(e, n).public_key()


def kcv_aes(value: bytes) -> bytes:
    enc = Cipher(algorithms.AES(value), modes.ECB()).encryptor()
    return (enc.update(bytes(16)) + enc.finalize())[:3]


def kcv_des3(value: bytes) -> bytes:
    enc = Cipher(TripleDES(value), modes.ECB()).encryptor()
    return (enc.update(bytes(8)) + enc.finalize())[:3]


SHA = {Mechanism.SHA_1: hashes.SHA1, Mechanism.SHA224: hashes.SHA224, Mechanism.SHA256: hashes.SHA256,
       Mechanism.SHA384: hashes.SHA384, Mechanism.SHA512: hashes.SHA512}
MGF_FOR = {Mechanism.SHA_1: MGF.SHA1, Mechanism.SHA224: MGF.SHA224, Mechanism.SHA256: MGF.SHA256,
           Mechanism.SHA384: MGF.SHA384, Mechanism.SHA512: MGF.SHA512}
DIGEST_INFO = {
    "sha1": bytes.fromhex("3021300906052b0e03021a05000414"),
    "sha224": bytes.fromhex("302d300d06096086480165030402040500041c"),
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
CKR_OK = 0


# ------------------------------------------------------------------ info, slot, token, mechanisms


def test_library_info(lib):
    assert lib.manufacturer_id == "Futurex"
    assert lib.cryptoki_version == (2, 40)


def test_slot_and_token(lib, token):
    slots = lib.get_slots()
    assert [s.slot_id for s in slots] == [0]
    assert slots[0].manufacturer_id == "Futurex"
    assert slots[0].flags & pkcs11.SlotFlag.TOKEN_PRESENT
    assert token.label == "Futurex"
    assert token.manufacturer_id == "Futurex"
    assert token.model == "Vectera Plus"
    assert token.serial
    for flag in (pkcs11.TokenFlag.LOGIN_REQUIRED, pkcs11.TokenFlag.RNG, pkcs11.TokenFlag.TOKEN_INITIALIZED):
        assert token.flags & flag, flag
    assert not token.flags & pkcs11.TokenFlag.WRITE_PROTECTED


def test_mechanism_list_is_the_registry(token):
    got = {int(m) for m in token.slot.get_mechanisms()}
    assert got == set(mechs.MECHANISM_LIST)
    assert 0x210B in got  # CKM_AES_KEY_WRAP_KWP


def test_mechanism_info_is_the_registry(token):
    for code, mech in mechs.REGISTRY.items():
        info = token.slot.get_mechanism_info(code)
        assert (info.min_key_length, info.max_key_length) == (mech.min_size, mech.max_size), hex(code)
        assert int(info.flags) == mech.flags, hex(code)
    info = token.slot.get_mechanism_info(Mechanism.SHA256_RSA_PKCS)
    assert info.flags & pkcs11.MechanismFlag.SIGN and info.flags & pkcs11.MechanismFlag.VERIFY
    assert (info.min_key_length, info.max_key_length) == (1024, 8192)
    with pytest.raises(E.MechanismInvalid):
        token.slot.get_mechanism_info(Mechanism.MD5_RSA_PKCS)


# ------------------------------------------------------------------ sessions and login


def test_session_states_and_login(token, session, ll, logged_in):
    rv, info = ll.session_info(session.handle)
    assert rv == CKR_OK
    assert (info.state, info.flags) == (ck.CKS_RW_USER_FUNCTIONS, ck.CKF_SERIAL_SESSION | ck.CKF_RW_SESSION)
    assert info.slotID == 0
    rv, ro = ll.open_session(rw=False)
    assert rv == CKR_OK
    rv, rw = ll.open_session(rw=True)
    assert rv == CKR_OK
    try:
        assert ll.session_info(ro)[1].state == ck.CKS_RO_USER_FUNCTIONS
        assert ll.session_info(ro)[1].flags == ck.CKF_SERIAL_SESSION
        assert ll.session_info(rw)[1].state == ck.CKS_RW_USER_FUNCTIONS
        # logout is per token: every session becomes public
        assert ll.logout(ro) == CKR_OK
        assert ll.session_info(ro)[1].state == ck.CKS_RO_PUBLIC_SESSION
        assert ll.session_info(rw)[1].state == ck.CKS_RW_PUBLIC_SESSION
        assert ll.session_info(session.handle)[1].state == ck.CKS_RW_PUBLIC_SESSION
        assert ll.logout(rw) == ck.CKR_USER_NOT_LOGGED_IN
        assert ll.login(rw, "wrong-pin") == ck.CKR_PIN_INCORRECT
        assert ll.session_info(rw)[1].state == ck.CKS_RW_PUBLIC_SESSION
        assert ll.login(rw, PIN, user=0) == ck.CKR_SESSION_READ_ONLY_EXISTS  # CKU_SO: not beside a R/O session
        assert ll.login(rw, PIN, user=7) == ck.CKR_USER_TYPE_INVALID
        assert ll.login(ro, PIN) == CKR_OK
        assert ll.session_info(rw)[1].state == ck.CKS_RW_USER_FUNCTIONS
        assert ll.session_info(ro)[1].state == ck.CKS_RO_USER_FUNCTIONS
        assert ll.login(rw, PIN) == ck.CKR_USER_ALREADY_LOGGED_IN
    finally:
        assert ll.close_session(ro) == CKR_OK
        assert ll.close_session(rw) == CKR_OK
    assert ll.session_info(ro)[0] == ck.CKR_SESSION_HANDLE_INVALID
    assert ll.session_info(session.handle)[1].state == ck.CKS_RW_USER_FUNCTIONS


def test_wrong_pin_is_pin_incorrect(token, session, ll, logged_in):
    assert ll.logout(session.handle) == CKR_OK
    with pytest.raises(E.PinIncorrect):
        token.open(user_pin="not-the-pin")
    with pytest.raises(E.PinIncorrect):
        token.open(user_pin="crypto1:" + PIN)  # the identity comes from <CRYPTO-OPR>
    assert ll.login(session.handle, PIN) == CKR_OK
    info = token.slot.get_token()  # token info still answers
    assert info.label == "Futurex"


def test_token_info_fields_and_session_counts(token, session, ll):
    rv, before = ll.token_info()
    assert rv == CKR_OK
    assert before.label == b"Futurex".ljust(32)
    assert before.model == b"Vectera Plus".ljust(16)
    need = ck.CKF_RNG | ck.CKF_LOGIN_REQUIRED | ck.CKF_TOKEN_INITIALIZED
    assert before.flags & need == need
    assert (before.ulMinPinLen, before.ulMaxPinLen) == (4, 64)
    extra_ro = token.open()
    extra_rw = token.open(rw=True)
    try:
        after = ll.token_info()[1]
        assert after.ulSessionCount == before.ulSessionCount + 2
        assert after.ulRwSessionCount == before.ulRwSessionCount + 1
    finally:
        extra_ro.close()
        extra_rw.close()
    assert ll.token_info()[1].ulSessionCount == before.ulSessionCount
    assert ll.token_info(7)[0] == ck.CKR_SLOT_ID_INVALID


def test_private_objects_hidden_before_login(p11_env, token, session, ll, logged_in):
    label = uniq("private-data")
    priv = session.create_object({Attribute.CLASS: ObjectClass.DATA, Attribute.TOKEN: True, Attribute.PRIVATE: True,
                                  Attribute.LABEL: label, Attribute.VALUE: b"classified",
                                  Attribute.APPLICATION: "tests"})
    pub = session.create_object({Attribute.CLASS: ObjectClass.DATA, Attribute.TOKEN: True,
                                 Attribute.PRIVATE: False, Attribute.LABEL: label + "-public",
                                 Attribute.VALUE: b"open"})
    try:
        # a fresh process, public session: no login
        child = run_child(p11_env.cfg, f"""
            lib = pkcs11.lib(LIB)
            tok = lib.get_token(token_label="Futurex")
            with tok.open() as s:
                hidden = len(list(s.get_objects({{Attribute.LABEL: {label!r}}})))
                shown = len(list(s.get_objects({{Attribute.LABEL: {label + '-public'!r}}})))
            with tok.open(user_pin=PIN) as s:
                after = len(list(s.get_objects({{Attribute.LABEL: {label!r}}})))
            out(hidden=hidden, shown=shown, after=after)
        """)
        assert (child["hidden"], child["shown"], child["after"]) == (0, 1, 1)
        # this process after logout
        assert ll.logout(session.handle) == CKR_OK
        public = token.open()
        try:
            assert list(public.get_objects({Attribute.LABEL: label})) == []
            assert len(list(public.get_objects({Attribute.LABEL: label + "-public"}))) == 1
            rv, _ = ll.get_attribute(public.handle, priv.handle, ck.CKA_VALUE)
            assert rv == ck.CKR_OBJECT_HANDLE_INVALID
            # a private object cannot be created without a login either
            with pytest.raises(E.UserNotLoggedIn):
                public.create_object({Attribute.CLASS: ObjectClass.DATA, Attribute.PRIVATE: True,
                                      Attribute.LABEL: "nope"})
            assert ll.login(public.handle, PIN) == CKR_OK
            assert len(list(public.get_objects({Attribute.LABEL: label}))) == 1
        finally:
            public.close()
    finally:
        priv.destroy()
        pub.destroy()


# ------------------------------------------------------------------ objects


def test_create_get_set_destroy(session, ll):
    label = uniq("data")
    obj = session.create_object({Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: label,
                                 Attribute.VALUE: b"\x00payload\xff", Attribute.APPLICATION: "app",
                                 Attribute.OBJECT_ID: b"\x06\x03\x2a\x03\x04"})
    got = obj.get_attributes([Attribute.CLASS, Attribute.LABEL, Attribute.VALUE, Attribute.APPLICATION,
                              Attribute.TOKEN, Attribute.PRIVATE, Attribute.MODIFIABLE])
    assert got == {Attribute.CLASS: ObjectClass.DATA, Attribute.LABEL: label, Attribute.VALUE: b"\x00payload\xff",
                   Attribute.APPLICATION: "app", Attribute.TOKEN: False, Attribute.PRIVATE: False,
                   Attribute.MODIFIABLE: True}
    obj[Attribute.LABEL] = label + "-renamed"
    assert obj[Attribute.LABEL] == label + "-renamed"
    assert list(session.get_objects({Attribute.LABEL: label})) == []
    assert len(list(session.get_objects({Attribute.LABEL: label + "-renamed"}))) == 1
    with pytest.raises(E.AttributeReadOnly):
        obj[Attribute.CLASS] = ObjectClass.CERTIFICATE
    with pytest.raises(E.AttributeTypeInvalid):
        obj[Attribute.MODULUS]
    rv, _ = ll.get_attribute(session.handle, obj.handle, ck.CKA_MODULUS)
    assert rv == ck.CKR_ATTRIBUTE_TYPE_INVALID
    handle = obj.handle
    obj.destroy()
    rv, _ = ll.get_attribute(session.handle, handle, ck.CKA_LABEL)
    assert rv == ck.CKR_OBJECT_HANDLE_INVALID
    with pytest.raises(E.ObjectHandleInvalid):
        obj.destroy()


def test_create_object_template_errors(session):
    with pytest.raises(E.TemplateIncomplete):
        session.create_object({Attribute.LABEL: "no class"})
    with pytest.raises(E.TemplateIncomplete):
        session.create_object({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES})
    with pytest.raises((E.AttributeValueInvalid, E.TemplateInconsistent)):
        secret_key(session, KeyType.AES, os.urandom(15))
    with pytest.raises(E.AttributeReadOnly):
        secret_key(session, KeyType.AES, os.urandom(16), {Attribute.LOCAL: True})


def test_find_with_several_attributes(session):
    label = uniq("find")
    a1 = secret_key(session, KeyType.AES, os.urandom(16), {Attribute.LABEL: label, Attribute.ID: b"\x01"})
    a2 = secret_key(session, KeyType.AES, os.urandom(32), {Attribute.LABEL: label, Attribute.ID: b"\x02"})
    g1 = secret_key(session, KeyType.GENERIC_SECRET, os.urandom(16), {Attribute.LABEL: label, Attribute.ID: b"\x01"})
    other = secret_key(session, KeyType.AES, os.urandom(16), {Attribute.LABEL: label + "x", Attribute.ID: b"\x01"})
    try:
        def handles(tmpl):
            return sorted(o.handle for o in session.get_objects(tmpl))
        assert handles({Attribute.LABEL: label}) == sorted([a1.handle, a2.handle, g1.handle])
        assert handles({Attribute.LABEL: label, Attribute.ID: b"\x01"}) == sorted([a1.handle, g1.handle])
        assert handles({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.LABEL: label, Attribute.ID: b"\x01",
                        Attribute.KEY_TYPE: KeyType.AES}) == [a1.handle]
        assert handles({Attribute.LABEL: label, Attribute.KEY_TYPE: KeyType.AES,
                        Attribute.VALUE_LEN: 32}) == [a2.handle]
        assert handles({Attribute.LABEL: label, Attribute.CLASS: ObjectClass.PRIVATE_KEY}) == []
        assert other.handle in handles({Attribute.ID: b"\x01", Attribute.LABEL: label + "x"})
        key = session.get_key(label=label, id=b"\x02")
        assert key.handle == a2.handle
        with pytest.raises(E.MultipleObjectsReturned):
            session.get_key(label=label, key_type=KeyType.AES)
        with pytest.raises(E.NoSuchKey):
            session.get_key(label=uniq("absent"))
    finally:
        for o in (a1, a2, g1, other):
            o.destroy()


def test_find_state_machine(session, ll):
    rv, _ = ll.find(session.handle, {})
    assert rv == CKR_OK
    assert ll.dll.C_FindObjectsFinal(ctypes.c_ulong(session.handle)) == ck.CKR_OPERATION_NOT_INITIALIZED
    assert ll.dll.C_FindObjectsInit(ctypes.c_ulong(session.handle), None, ctypes.c_ulong(0)) == CKR_OK
    assert ll.dll.C_FindObjectsInit(ctypes.c_ulong(session.handle), None, ctypes.c_ulong(0)) == \
        ck.CKR_OPERATION_ACTIVE
    assert ll.dll.C_FindObjectsFinal(ctypes.c_ulong(session.handle)) == CKR_OK


def test_token_and_session_objects(p11_env, token, session):
    label = uniq("lifetime")
    other = token.open(rw=True)
    tok = other.create_object({Attribute.CLASS: ObjectClass.DATA, Attribute.TOKEN: True,
                               Attribute.LABEL: label + "-token", Attribute.VALUE: b"t"})
    other.create_object({Attribute.CLASS: ObjectClass.DATA, Attribute.TOKEN: False,
                         Attribute.LABEL: label + "-session", Attribute.VALUE: b"s"})
    gen = other.generate_key(KeyType.AES, 128, label=label + "-session-key")
    assert gen[Attribute.TOKEN] is False
    assert len(list(session.get_objects({Attribute.LABEL: label + "-session"}))) == 1
    assert len(list(session.get_objects({Attribute.LABEL: label + "-token"}))) == 1
    other.close()
    # the session objects went with their session; the token object stays
    assert list(session.get_objects({Attribute.LABEL: label + "-session"})) == []
    assert list(session.get_objects({Attribute.LABEL: label + "-session-key"})) == []
    found = list(session.get_objects({Attribute.LABEL: label + "-token"}))
    assert len(found) == 1 and found[0][Attribute.TOKEN] is True
    child = run_child(p11_env.cfg, f"""
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        with tok.open() as s:
            out(n=len(list(s.get_objects({{Attribute.LABEL: {label + '-token'!r}}}))))
    """)
    assert child["n"] == 1
    found[0].destroy()


def test_read_only_session_cannot_write_token_objects(token, session):
    ro = token.open()
    try:
        with pytest.raises(E.SessionReadOnly):
            ro.create_object({Attribute.CLASS: ObjectClass.DATA, Attribute.TOKEN: True, Attribute.LABEL: "ro"})
        obj = ro.create_object({Attribute.CLASS: ObjectClass.DATA, Attribute.TOKEN: False, Attribute.LABEL: "ro"})
        obj.destroy()
    finally:
        ro.close()


# ------------------------------------------------------------------ RSA


@pytest.fixture(scope="module")
def rsa2048(session):
    pub, priv = session.generate_keypair(KeyType.RSA, 2048, label=uniq("rsa2048"))
    return pub, priv


def test_rsa_keygen_attributes(rsa2048, session, ll):
    pub, priv = rsa2048
    assert pub[Attribute.MODULUS_BITS] == 2048
    assert len(pub[Attribute.MODULUS]) == 256
    assert pub[Attribute.PUBLIC_EXPONENT].lstrip(b"\x00") == b"\x01\x00\x01"
    assert priv[Attribute.MODULUS] == pub[Attribute.MODULUS]
    assert priv[Attribute.KEY_TYPE] == KeyType.RSA
    assert priv[Attribute.LOCAL] is True and pub[Attribute.LOCAL] is True
    assert priv[Attribute.KEY_GEN_MECHANISM] == Mechanism.RSA_PKCS_KEY_PAIR_GEN
    assert pub[Attribute.KEY_GEN_MECHANISM] == Mechanism.RSA_PKCS_KEY_PAIR_GEN
    assert priv[Attribute.ALWAYS_SENSITIVE] is True
    assert priv[Attribute.NEVER_EXTRACTABLE] is True
    for secret in (Attribute.PRIVATE_EXPONENT, Attribute.PRIME_1, Attribute.PRIME_2, Attribute.COEFFICIENT):
        with pytest.raises(E.AttributeSensitive):
            priv[secret]
    rsa_public(pub)  # a valid key


def test_rsa_pkcs_raw_digest_info(rsa2048):
    pub, priv = rsa2048
    key = rsa_public(pub)
    for name in ("sha1", "sha256", "sha512"):
        data = os.urandom(100)
        di = DIGEST_INFO[name] + hashlib.new(name, data).digest()
        sig = priv.sign(di, mechanism=Mechanism.RSA_PKCS)
        assert len(sig) == 256
        key.verify(sig, data, padding.PKCS1v15(), getattr(hashes, name.upper())())
        assert pub.verify(di, sig, mechanism=Mechanism.RSA_PKCS)
        assert not pub.verify(di[:-1] + bytes([di[-1] ^ 1]), sig, mechanism=Mechanism.RSA_PKCS)
    # raw input that is no DigestInfo: recover it with the public key
    raw = b"not a digest info, just bytes"
    sig = priv.sign(raw, mechanism=Mechanism.RSA_PKCS)
    assert key.recover_data_from_signature(sig, padding.PKCS1v15(), None) == raw
    assert pub.verify(raw, sig, mechanism=Mechanism.RSA_PKCS)
    with pytest.raises(E.DataLenRange):
        priv.sign(bytes(246), mechanism=Mechanism.RSA_PKCS)


@pytest.mark.parametrize("mech,alg", [
    (Mechanism.SHA1_RSA_PKCS, hashes.SHA1), (Mechanism.SHA224_RSA_PKCS, hashes.SHA224),
    (Mechanism.SHA256_RSA_PKCS, hashes.SHA256), (Mechanism.SHA384_RSA_PKCS, hashes.SHA384),
    (Mechanism.SHA512_RSA_PKCS, hashes.SHA512)])
def test_rsa_pkcs_hashed(rsa2048, mech, alg):
    pub, priv = rsa2048
    data = os.urandom(333)
    sig = priv.sign(data, mechanism=mech)
    rsa_public(pub).verify(sig, data, padding.PKCS1v15(), alg())
    assert pub.verify(data, sig, mechanism=mech)
    assert not pub.verify(data + b"x", sig, mechanism=mech)
    # multi-part gives the same deterministic signature
    chunks = [data[:1], data[1:100], data[100:]]
    assert priv.sign(iter(chunks), mechanism=mech) == sig
    assert pub.verify(iter(chunks), sig, mechanism=mech)


@pytest.mark.parametrize("hash_mech", list(SHA))
def test_rsa_pss_hashed(rsa2048, hash_mech):
    pub, priv = rsa2048
    mech = {Mechanism.SHA_1: Mechanism.SHA1_RSA_PKCS_PSS, Mechanism.SHA224: Mechanism.SHA224_RSA_PKCS_PSS,
            Mechanism.SHA256: Mechanism.SHA256_RSA_PKCS_PSS, Mechanism.SHA384: Mechanism.SHA384_RSA_PKCS_PSS,
            Mechanism.SHA512: Mechanism.SHA512_RSA_PKCS_PSS}[hash_mech]
    alg = SHA[hash_mech]
    param = (hash_mech, MGF_FOR[hash_mech], alg.digest_size)
    data = os.urandom(200)
    sig = priv.sign(data, mechanism=mech, mechanism_param=param)
    rsa_public(pub).verify(sig, data, padding.PSS(padding.MGF1(alg()), alg.digest_size), alg())
    assert pub.verify(data, sig, mechanism=mech, mechanism_param=param)
    assert not pub.verify(b"other" + data, sig, mechanism=mech, mechanism_param=param)


def test_rsa_pss_raw(rsa2048):
    pub, priv = rsa2048
    data = os.urandom(64)
    digest = hashlib.sha256(data).digest()
    param = (Mechanism.SHA256, MGF.SHA256, 32)
    sig = priv.sign(digest, mechanism=Mechanism.RSA_PKCS_PSS, mechanism_param=param)
    rsa_public(pub).verify(sig, data, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    rsa_public(pub).verify(sig, digest, padding.PSS(padding.MGF1(hashes.SHA256()), 32),
                           utils.Prehashed(hashes.SHA256()))
    assert pub.verify(digest, sig, mechanism=Mechanism.RSA_PKCS_PSS, mechanism_param=param)
    with pytest.raises(E.MechanismParamInvalid):
        priv.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS_PSS, mechanism_param=(Mechanism.SHA_1, MGF.SHA1, 20))


@pytest.mark.parametrize("param", [None, (Mechanism.SHA256, MGF.SHA256, None), (Mechanism.SHA384, MGF.SHA1, None)])
def test_rsa_oaep(rsa2048, param):
    pub, priv = rsa2048
    data = os.urandom(32)
    ct = pub.encrypt(data, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=param)
    assert len(ct) == 256
    assert priv.decrypt(ct, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=param) == data
    h, mgf = {None: (hashes.SHA1, hashes.SHA1)}.get(param) or (
        SHA[param[0]], {MGF.SHA1: hashes.SHA1, MGF.SHA256: hashes.SHA256}[param[1]])
    ct2 = rsa_public(pub).encrypt(data, padding.OAEP(padding.MGF1(mgf()), h(), None))
    assert priv.decrypt(ct2, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=param) == data


def test_rsa_pkcs_encrypt_decrypt(rsa2048):
    pub, priv = rsa2048
    data = os.urandom(100)
    ct = pub.encrypt(data, mechanism=Mechanism.RSA_PKCS)
    assert priv.decrypt(ct, mechanism=Mechanism.RSA_PKCS) == data
    ct2 = rsa_public(pub).encrypt(data, padding.PKCS1v15())
    assert priv.decrypt(ct2, mechanism=Mechanism.RSA_PKCS) == data
    with pytest.raises(E.DataLenRange):
        pub.encrypt(bytes(246), mechanism=Mechanism.RSA_PKCS)
    with pytest.raises(E.EncryptedDataLenRange):
        priv.decrypt(ct[:-1], mechanism=Mechanism.RSA_PKCS)


@pytest.mark.parametrize("bits", [3072, 4096])
def test_rsa_large_keys(session, bits):
    pub, priv = session.generate_keypair(KeyType.RSA, bits, label=uniq(f"rsa{bits}"))
    assert pub[Attribute.MODULUS_BITS] == bits
    assert len(pub[Attribute.MODULUS]) == bits // 8
    data = b"large key"
    sig = priv.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS)
    rsa_public(pub).verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
    ct = pub.encrypt(data, mechanism=Mechanism.RSA_PKCS_OAEP)
    assert priv.decrypt(ct, mechanism=Mechanism.RSA_PKCS_OAEP) == data


def test_rsa_key_size_limits(session):
    with pytest.raises((E.KeySizeRange, E.TemplateInconsistent, E.AttributeValueInvalid)):
        session.generate_keypair(KeyType.RSA, 1024)


def test_imported_rsa_private_key(session):
    key = rsa.generate_private_key(65537, 2048)
    n = key.private_numbers()

    def b(i: int) -> bytes:
        return i.to_bytes((i.bit_length() + 7) // 8, "big")
    priv = session.create_object({
        Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.KEY_TYPE: KeyType.RSA, Attribute.TOKEN: False,
        Attribute.SIGN: True, Attribute.DECRYPT: True,
        Attribute.MODULUS: b(n.public_numbers.n), Attribute.PUBLIC_EXPONENT: b(n.public_numbers.e),
        Attribute.PRIVATE_EXPONENT: b(n.d), Attribute.PRIME_1: b(n.p), Attribute.PRIME_2: b(n.q),
        Attribute.EXPONENT_1: b(n.dmp1), Attribute.EXPONENT_2: b(n.dmq1), Attribute.COEFFICIENT: b(n.iqmp)})
    sig = priv.sign(b"imported", mechanism=Mechanism.SHA256_RSA_PKCS)
    key.public_key().verify(sig, b"imported", padding.PKCS1v15(), hashes.SHA256())
    assert priv[Attribute.LOCAL] is False
    with pytest.raises(E.AttributeSensitive):
        priv[Attribute.PRIVATE_EXPONENT]
    priv.destroy()


# ------------------------------------------------------------------ EC

CURVES = [
    ("P-256", bytes.fromhex("06082a8648ce3d030107"), ec.SECP256R1, 32),
    ("P-384", bytes.fromhex("06052b81040022"), ec.SECP384R1, 48),
    ("P-521", bytes.fromhex("06052b81040023"), ec.SECP521R1, 66),
]


def ec_public(pub, curve) -> ec.EllipticCurvePublicKey:
    point = pub[Attribute.EC_POINT]
    assert point[0] == 0x04  # DER OCTET STRING
    if point[1] & 0x80:
        raw = point[2 + (point[1] & 0x7F):]
    else:
        raw = point[2:]
    assert raw[0] == 0x04 and len(raw) == 1 + 2 * ((curve.key_size + 7) // 8)
    return ec.EllipticCurvePublicKey.from_encoded_point(curve, raw)


def rs_to_der(sig: bytes) -> bytes:
    half = len(sig) // 2
    return utils.encode_dss_signature(int.from_bytes(sig[:half], "big"), int.from_bytes(sig[half:], "big"))


@pytest.fixture(scope="module", params=CURVES, ids=[c[0] for c in CURVES])
def ec_pair(request, session):
    name, params, curve_cls, size = request.param
    pub, priv = session.generate_keypair(KeyType.EC, public_template={Attribute.EC_PARAMS: params},
                                         label=uniq("ec"))
    return pub, priv, curve_cls(), size


def test_ec_keygen(ec_pair):
    pub, priv, curve, size = ec_pair
    assert pub[Attribute.KEY_TYPE] == KeyType.EC
    assert priv[Attribute.EC_PARAMS] == pub[Attribute.EC_PARAMS]
    assert priv[Attribute.LOCAL] is True
    assert priv[Attribute.KEY_GEN_MECHANISM] == Mechanism.EC_KEY_PAIR_GEN
    with pytest.raises(E.AttributeSensitive):
        priv[Attribute.VALUE]
    ec_public(pub, curve)


def test_ecdsa_raw(ec_pair):
    pub, priv, curve, size = ec_pair
    key = ec_public(pub, curve)
    for alg in (hashes.SHA1, hashes.SHA256, hashes.SHA384, hashes.SHA512):
        data = os.urandom(50)
        h = hashes.Hash(alg())
        h.update(data)
        digest = h.finalize()
        sig = priv.sign(digest, mechanism=Mechanism.ECDSA)
        assert len(sig) == 2 * size
        key.verify(rs_to_der(sig), digest, ec.ECDSA(utils.Prehashed(alg())))
        assert pub.verify(digest, sig, mechanism=Mechanism.ECDSA)
        assert not pub.verify(bytes(len(digest)), sig, mechanism=Mechanism.ECDSA)
    bad = bytearray(sig)
    bad[-1] ^= 1
    assert not pub.verify(digest, bytes(bad), mechanism=Mechanism.ECDSA)


@pytest.mark.parametrize("mech,alg", [
    (Mechanism.ECDSA_SHA1, hashes.SHA1), (Mechanism.ECDSA_SHA224, hashes.SHA224),
    (Mechanism.ECDSA_SHA256, hashes.SHA256), (Mechanism.ECDSA_SHA384, hashes.SHA384),
    (Mechanism.ECDSA_SHA512, hashes.SHA512)])
def test_ecdsa_hashed(ec_pair, mech, alg):
    pub, priv, curve, size = ec_pair
    data = os.urandom(500)
    sig = priv.sign(data, mechanism=mech)
    assert len(sig) == 2 * size
    ec_public(pub, curve).verify(rs_to_der(sig), data, ec.ECDSA(alg()))
    assert pub.verify(data, sig, mechanism=mech)
    sig2 = priv.sign(iter([data[:7], data[7:]]), mechanism=mech)
    ec_public(pub, curve).verify(rs_to_der(sig2), data, ec.ECDSA(alg()))


def test_ecdsa_verifies_foreign_signature(session):
    key = ec.generate_private_key(ec.SECP256R1())
    point = key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    pub = session.create_object({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.EC,
                                 Attribute.EC_PARAMS: CURVES[0][1], Attribute.EC_POINT: b"\x04\x41" + point,
                                 Attribute.VERIFY: True, Attribute.TOKEN: False})
    data = b"signed elsewhere"
    r, s = utils.decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    assert pub.verify(data, sig, mechanism=Mechanism.ECDSA_SHA256)
    assert not pub.verify(data + b"!", sig, mechanism=Mechanism.ECDSA_SHA256)
    pub.destroy()


def test_rsa_verifies_foreign_signature(session):
    key = rsa.generate_private_key(65537, 2048)
    n = key.public_key().public_numbers()
    pub = session.create_object({Attribute.CLASS: ObjectClass.PUBLIC_KEY, Attribute.KEY_TYPE: KeyType.RSA,
                                 Attribute.MODULUS: n.n.to_bytes(256, "big"),
                                 Attribute.PUBLIC_EXPONENT: b"\x01\x00\x01", Attribute.VERIFY: True,
                                 Attribute.ENCRYPT: True, Attribute.TOKEN: False})
    data = b"signed elsewhere"
    sig = key.sign(data, padding.PKCS1v15(), hashes.SHA384())
    assert pub.verify(data, sig, mechanism=Mechanism.SHA384_RSA_PKCS)
    pss = key.sign(data, padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    assert pub.verify(data, pss, mechanism=Mechanism.SHA256_RSA_PKCS_PSS,
                      mechanism_param=(Mechanism.SHA256, MGF.SHA256, 32))
    ct = pub.encrypt(b"to the outside", mechanism=Mechanism.RSA_PKCS_OAEP,
                     mechanism_param=(Mechanism.SHA256, MGF.SHA256, None))
    assert key.decrypt(ct, padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None)) == b"to the outside"
    assert pub[Attribute.MODULUS_BITS] == 2048
    pub.destroy()


# ------------------------------------------------------------------ AES


@pytest.mark.parametrize("bits", [128, 192, 256])
def test_aes_generate(session, bits):
    key = session.generate_key(KeyType.AES, bits, template={Attribute.SENSITIVE: False,
                                                            Attribute.EXTRACTABLE: True})
    value = key[Attribute.VALUE]
    assert len(value) == bits // 8 == key[Attribute.VALUE_LEN]
    assert key[Attribute.CHECK_VALUE] == kcv_aes(value)
    assert key[Attribute.LOCAL] is True
    assert key[Attribute.KEY_GEN_MECHANISM] == Mechanism.AES_KEY_GEN
    data = os.urandom(64)
    iv = os.urandom(16)
    ct = key.encrypt(data, mechanism=Mechanism.AES_CBC, mechanism_param=iv)
    dec = Cipher(algorithms.AES(value), modes.CBC(iv)).decryptor()
    assert dec.update(ct) + dec.finalize() == data


def test_aes_bad_length(session):
    with pytest.raises((E.KeySizeRange, E.TemplateInconsistent, E.AttributeValueInvalid)):
        session.generate_key(KeyType.AES, 100)


@pytest.fixture(scope="module", params=[16, 24, 32], ids=["aes128", "aes192", "aes256"])
def aes_known(request, session):
    value = os.urandom(request.param)
    return secret_key(session, KeyType.AES, value), value


def _cipher(value: bytes, mech, iv: bytes | None):
    mode = modes.ECB() if mech == Mechanism.AES_ECB else modes.CBC(iv)
    return Cipher(algorithms.AES(value), mode)


@pytest.mark.parametrize("mech", [Mechanism.AES_ECB, Mechanism.AES_CBC, Mechanism.AES_CBC_PAD])
def test_aes_block_modes(aes_known, mech):
    key, value = aes_known
    iv = None if mech == Mechanism.AES_ECB else os.urandom(16)
    data = os.urandom(80 if mech != Mechanism.AES_CBC_PAD else 77)
    ct = key.encrypt(data, mechanism=mech, mechanism_param=iv)
    plain = data
    if mech == Mechanism.AES_CBC_PAD:
        p = sympad.PKCS7(128).padder()
        plain = p.update(data) + p.finalize()
    enc = _cipher(value, mech, iv).encryptor()
    assert ct == enc.update(plain) + enc.finalize()
    assert key.decrypt(ct, mechanism=mech, mechanism_param=iv) == data
    # multi-part, with chunk sizes that do not follow the block size
    chunks = [data[:5], data[5:22], data[22:23], data[23:]]
    assert b"".join(key.encrypt(iter(chunks), mechanism=mech, mechanism_param=iv)) == ct
    ct_chunks = [ct[:3], ct[3:40], ct[40:]]
    assert b"".join(key.decrypt(iter(ct_chunks), mechanism=mech, mechanism_param=iv)) == data


def test_aes_block_errors(aes_known):
    key, _ = aes_known
    with pytest.raises(E.DataLenRange):
        key.encrypt(bytes(15), mechanism=Mechanism.AES_ECB)
    with pytest.raises(E.MechanismParamInvalid):
        key.encrypt(bytes(16), mechanism=Mechanism.AES_CBC, mechanism_param=bytes(8))
    with pytest.raises(E.EncryptedDataLenRange):
        key.decrypt(os.urandom(31), mechanism=Mechanism.AES_CBC_PAD, mechanism_param=bytes(16))


@pytest.mark.parametrize("aad,tag_bits", [(None, 128), (b"header", 96)])
def test_aes_gcm(aes_known, aad, tag_bits):
    key, value = aes_known
    nonce = os.urandom(12)
    data = os.urandom(70)
    param = GCMParams(nonce, aad, tag_bits)
    ct = key.encrypt(data, mechanism=Mechanism.AES_GCM, mechanism_param=param)
    assert len(ct) == len(data) + tag_bits // 8
    enc = Cipher(algorithms.AES(value), modes.GCM(nonce)).encryptor()
    if aad:
        enc.authenticate_additional_data(aad)
    expected = enc.update(data) + enc.finalize()
    assert ct == expected + enc.tag[: tag_bits // 8]
    assert key.decrypt(ct, mechanism=Mechanism.AES_GCM, mechanism_param=param) == data
    if tag_bits == 128:
        foreign = AESGCM(value).encrypt(nonce, data, aad)
        assert key.decrypt(foreign, mechanism=Mechanism.AES_GCM, mechanism_param=param) == data
    # multi-part both ways
    assert b"".join(key.encrypt(iter([data[:9], data[9:]]), mechanism=Mechanism.AES_GCM,
                                mechanism_param=param)) == ct
    assert b"".join(key.decrypt(iter([ct[:20], ct[20:]]), mechanism=Mechanism.AES_GCM,
                                mechanism_param=param)) == data
    tampered = ct[:-1] + bytes([ct[-1] ^ 1])
    with pytest.raises(E.EncryptedDataInvalid):
        key.decrypt(tampered, mechanism=Mechanism.AES_GCM, mechanism_param=param)


def test_aes_decrypt_foreign_ciphertext(aes_known):
    key, value = aes_known
    iv = os.urandom(16)
    data = os.urandom(100)
    p = sympad.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(value), modes.CBC(iv)).encryptor()
    ct = enc.update(p.update(data) + p.finalize()) + enc.finalize()
    assert key.decrypt(ct, mechanism=Mechanism.AES_CBC_PAD, mechanism_param=iv) == data


# ------------------------------------------------------------------ DES3, HMAC


def test_des3_generate(session):
    key = session.generate_key(KeyType.DES3, template={Attribute.SENSITIVE: False})
    value = key[Attribute.VALUE]
    assert len(value) == 24
    assert all(bin(b).count("1") % 2 == 1 for b in value)  # odd parity
    assert key[Attribute.CHECK_VALUE] == kcv_des3(value)
    assert key[Attribute.KEY_GEN_MECHANISM] == Mechanism.DES3_KEY_GEN
    data = os.urandom(24)
    ct = key.encrypt(data, mechanism=Mechanism.DES3_ECB)
    enc = Cipher(TripleDES(value), modes.ECB()).encryptor()
    assert ct == enc.update(data) + enc.finalize()


@pytest.mark.parametrize("mech", [Mechanism.DES3_ECB, Mechanism.DES3_CBC])
def test_des3_modes(session, mech):
    value = des3_value()
    key = secret_key(session, KeyType.DES3, value)
    assert key[Attribute.CHECK_VALUE] == kcv_des3(value)
    iv = os.urandom(8) if mech == Mechanism.DES3_CBC else None
    data = os.urandom(40)
    ct = key.encrypt(data, mechanism=mech, mechanism_param=iv)
    enc = Cipher(TripleDES(value), modes.ECB() if iv is None else modes.CBC(iv)).encryptor()
    assert ct == enc.update(data) + enc.finalize()
    assert key.decrypt(ct, mechanism=mech, mechanism_param=iv) == data
    assert b"".join(key.encrypt(iter([data[:3], data[3:]]), mechanism=mech, mechanism_param=iv)) == ct
    key.destroy()


@pytest.mark.parametrize("mech,name", [(Mechanism.SHA_1_HMAC, "sha1"), (Mechanism.SHA256_HMAC, "sha256"),
                                       (Mechanism.SHA384_HMAC, "sha384"), (Mechanism.SHA512_HMAC, "sha512")])
def test_hmac(session, mech, name):
    value = os.urandom(40)
    key = secret_key(session, KeyType.GENERIC_SECRET, value)
    assert key[Attribute.VALUE_LEN] == 40
    data = os.urandom(300)
    mac = key.sign(data, mechanism=mech)
    assert mac == hmac.new(value, data, name).digest()
    assert key.verify(data, mac, mechanism=mech)
    assert not key.verify(data, bytes(len(mac)), mechanism=mech)
    assert key.sign(iter([data[:100], data[100:]]), mechanism=mech) == mac
    assert key.verify(iter([data[:1], data[1:]]), mac, mechanism=mech)
    key.destroy()


def test_generic_secret_generate_and_hmac(session):
    key = session.generate_key(KeyType.GENERIC_SECRET, 256, capabilities=pkcs11.MechanismFlag.SIGN
                               | pkcs11.MechanismFlag.VERIFY, template={Attribute.SENSITIVE: False})
    value = key[Attribute.VALUE]
    assert len(value) == 32
    assert key.sign(b"abc", mechanism=Mechanism.SHA256_HMAC) == hmac.new(value, b"abc", "sha256").digest()
    with pytest.raises(E.KeyTypeInconsistent):
        aes = secret_key(session, KeyType.AES, os.urandom(16))
        aes.sign(b"abc", mechanism=Mechanism.SHA256_HMAC)


# ------------------------------------------------------------------ digests and random


@pytest.mark.parametrize("mech,name", [(Mechanism.SHA_1, "sha1"), (Mechanism.SHA224, "sha224"),
                                       (Mechanism.SHA256, "sha256"), (Mechanism.SHA384, "sha384"),
                                       (Mechanism.SHA512, "sha512")])
def test_digest(session, mech, name):
    data = os.urandom(1000)
    assert session.digest(data, mechanism=mech) == hashlib.new(name, data).digest()
    assert session.digest(b"", mechanism=mech) == hashlib.new(name).digest()
    chunks = [data[:1], data[1:500], b"", data[500:]]
    assert session.digest(iter(chunks), mechanism=mech) == hashlib.new(name, data).digest()


def test_digest_invalid_mechanism(session):
    with pytest.raises(E.MechanismInvalid):
        session.digest(b"x", mechanism=Mechanism.MD5_RSA_PKCS)


def test_random(session):
    for n in (1, 16, 1000, (1 << 20) + 7):
        r = session.generate_random(n * 8)
        assert len(r) == n
    assert session.generate_random(256) != session.generate_random(256)
    big = session.generate_random(((1 << 20) + 7) * 8)
    assert big.count(0) < len(big) // 100  # not a zero buffer
    session.seed_random(b"some extra entropy")


# ------------------------------------------------------------------ wrap / unwrap


def test_wrap_under_rsa_pkcs(rsa2048, session):
    pub, priv = rsa2048
    value = os.urandom(32)
    key = secret_key(session, KeyType.AES, value)
    wrapped = pub.wrap_key(key, mechanism=Mechanism.RSA_PKCS)
    assert len(wrapped) == 256
    new = priv.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, wrapped, mechanism=Mechanism.RSA_PKCS,
                          template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    assert new[Attribute.CHECK_VALUE] == kcv_aes(value)
    assert new[Attribute.VALUE] == value
    assert new[Attribute.LOCAL] is False
    # a key wrapped outside the token unwraps inside
    other = os.urandom(16)
    blob = rsa_public(pub).encrypt(other, padding.PKCS1v15())
    new2 = priv.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, blob, mechanism=Mechanism.RSA_PKCS)
    assert new2[Attribute.CHECK_VALUE] == kcv_aes(other)
    assert new2[Attribute.VALUE_LEN] == 16


def test_wrap_under_rsa_oaep(rsa2048, session):
    pub, priv = rsa2048
    param = (Mechanism.SHA256, MGF.SHA256, None)
    value = os.urandom(24)
    key = secret_key(session, KeyType.AES, value)
    wrapped = pub.wrap_key(key, mechanism=Mechanism.RSA_PKCS_OAEP, mechanism_param=param)
    new = priv.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, wrapped, mechanism=Mechanism.RSA_PKCS_OAEP,
                          mechanism_param=param)
    assert new[Attribute.CHECK_VALUE] == kcv_aes(value)
    data = os.urandom(32)
    assert new.decrypt(key.encrypt(data, mechanism=Mechanism.AES_ECB), mechanism=Mechanism.AES_ECB) == data
    blob = rsa_public(pub).encrypt(value, padding.OAEP(padding.MGF1(hashes.SHA256()), hashes.SHA256(), None))
    new2 = priv.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, blob, mechanism=Mechanism.RSA_PKCS_OAEP,
                           mechanism_param=param)
    assert new2[Attribute.CHECK_VALUE] == kcv_aes(value)
    with pytest.raises(E.WrappedKeyInvalid):
        priv.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, os.urandom(256), mechanism=Mechanism.RSA_PKCS_OAEP,
                        mechanism_param=param)


def test_wrap_under_aes_key_wrap(session):
    kek_value, value = os.urandom(32), os.urandom(24)
    kek = secret_key(session, KeyType.AES, kek_value)
    key = secret_key(session, KeyType.AES, value)
    wrapped = kek.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP)
    assert wrapped == aes_key_wrap(kek_value, value)
    assert aes_key_unwrap(kek_value, wrapped) == value
    new = kek.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, wrapped, mechanism=Mechanism.AES_KEY_WRAP)
    assert new[Attribute.CHECK_VALUE] == kcv_aes(value)
    foreign_value = os.urandom(16)
    new2 = kek.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, aes_key_wrap(kek_value, foreign_value),
                          mechanism=Mechanism.AES_KEY_WRAP)
    assert new2[Attribute.CHECK_VALUE] == kcv_aes(foreign_value)
    with pytest.raises(E.WrappedKeyInvalid):
        kek.unwrap_key(ObjectClass.SECRET_KEY, KeyType.AES, os.urandom(32), mechanism=Mechanism.AES_KEY_WRAP)


def test_wrap_under_aes_key_wrap_kwp(session):
    assert int(Mechanism.AES_KEY_WRAP_KWP) == 0x210B
    kek_value = os.urandom(16)
    kek = secret_key(session, KeyType.AES, kek_value)
    value = os.urandom(20)  # not a multiple of 8: only the padded variant wraps it
    key = secret_key(session, KeyType.GENERIC_SECRET, value)
    wrapped = kek.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP_KWP)
    assert wrapped == aes_key_wrap_with_padding(kek_value, value)
    assert aes_key_unwrap_with_padding(kek_value, wrapped) == value
    new = kek.unwrap_key(ObjectClass.SECRET_KEY, KeyType.GENERIC_SECRET, wrapped,
                         mechanism=Mechanism.AES_KEY_WRAP_KWP,
                         template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    assert new[Attribute.VALUE] == value
    with pytest.raises(E.KeySizeRange):
        kek.wrap_key(key, mechanism=Mechanism.AES_KEY_WRAP)


def test_wrap_refuses_unextractable(session):
    kek = secret_key(session, KeyType.AES, os.urandom(16))
    locked = session.generate_key(KeyType.AES, 128, template={Attribute.EXTRACTABLE: False})
    with pytest.raises(E.KeyUnextractable):
        kek.wrap_key(locked, mechanism=Mechanism.AES_KEY_WRAP)


# ------------------------------------------------------------------ operation state machine


def test_length_query_and_buffer_too_small_keep_the_operation(rsa2048, session, ll):
    pub, priv = rsa2048
    h = session.handle
    data = b"state machine"
    assert ll.init("Sign", h, ck.CKM_SHA256_RSA_PKCS, priv.handle) == CKR_OK
    rv, n, _ = ll.output_call("C_Sign", h, data, None)
    assert (rv, n) == (CKR_OK, 256)
    rv, n, _ = ll.output_call("C_Sign", h, data, 10)
    assert (rv, n) == (ck.CKR_BUFFER_TOO_SMALL, 256)
    rv, n, sig = ll.output_call("C_Sign", h, data, 256)
    assert (rv, n) == (CKR_OK, 256)
    rsa_public(pub).verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
    # success ended it
    rv, _, _ = ll.output_call("C_Sign", h, data, 256)
    assert rv == ck.CKR_OPERATION_NOT_INITIALIZED


def test_length_query_multi_part(aes_known, session, ll):
    key, value = aes_known
    h = session.handle
    iv = os.urandom(16)
    data = os.urandom(40)
    assert ll.init("Encrypt", h, ck.CKM_AES_CBC_PAD, key.handle, iv) == CKR_OK
    rv, n, _ = ll.output_call("C_EncryptUpdate", h, data, None)
    assert (rv, n) == (CKR_OK, 32)
    rv, n, _ = ll.output_call("C_EncryptUpdate", h, data, 1)
    assert (rv, n) == (ck.CKR_BUFFER_TOO_SMALL, 32)
    rv, n, part1 = ll.output_call("C_EncryptUpdate", h, data, 64)
    assert (rv, n) == (CKR_OK, 32)
    rv, n, _ = ll.output_call("C_EncryptFinal", h, None, None)
    assert (rv, n) == (CKR_OK, 16)
    rv, n, _ = ll.output_call("C_EncryptFinal", h, None, 15)
    assert (rv, n) == (ck.CKR_BUFFER_TOO_SMALL, 16)
    rv, n, part2 = ll.output_call("C_EncryptFinal", h, None, 16)
    assert (rv, n) == (CKR_OK, 16)
    p = sympad.PKCS7(128).padder()
    enc = Cipher(algorithms.AES(value), modes.CBC(iv)).encryptor()
    assert part1 + part2 == enc.update(p.update(data) + p.finalize()) + enc.finalize()
    assert ll.output_call("C_EncryptFinal", h, None, 16)[0] == ck.CKR_OPERATION_NOT_INITIALIZED


def test_single_part_length_query_encrypt(aes_known, session, ll):
    key, value = aes_known
    h = session.handle
    data = os.urandom(48)
    assert ll.init("Encrypt", h, ck.CKM_AES_ECB, key.handle) == CKR_OK
    rv, n, _ = ll.output_call("C_Encrypt", h, data, None)
    assert (rv, n) == (CKR_OK, 48)
    rv, n, ct = ll.output_call("C_Encrypt", h, data, 48)
    assert rv == CKR_OK
    enc = Cipher(algorithms.AES(value), modes.ECB()).encryptor()
    assert ct == enc.update(data) + enc.finalize()


def test_errors_end_the_operation(rsa2048, aes_known, session, ll):
    pub, priv = rsa2048
    key, _ = aes_known
    h = session.handle
    sig = priv.sign(b"data", mechanism=Mechanism.SHA256_RSA_PKCS)
    assert ll.init("Verify", h, ck.CKM_SHA256_RSA_PKCS, pub.handle) == CKR_OK
    assert ll.verify(h, b"other data", sig) == ck.CKR_SIGNATURE_INVALID
    assert ll.verify(h, b"data", sig) == ck.CKR_OPERATION_NOT_INITIALIZED
    assert ll.init("Verify", h, ck.CKM_SHA256_RSA_PKCS, pub.handle) == CKR_OK
    assert ll.verify(h, b"data", sig[:-1]) == ck.CKR_SIGNATURE_LEN_RANGE
    assert ll.verify(h, b"data", sig) == ck.CKR_OPERATION_NOT_INITIALIZED
    assert ll.init("Verify", h, ck.CKM_SHA256_RSA_PKCS, pub.handle) == CKR_OK
    assert ll.verify(h, b"data", sig) == CKR_OK
    assert ll.verify(h, b"data", sig) == ck.CKR_OPERATION_NOT_INITIALIZED
    # a data length error ends an encryption
    assert ll.init("Encrypt", h, ck.CKM_AES_ECB, key.handle) == CKR_OK
    assert ll.output_call("C_Encrypt", h, bytes(15), 64)[0] == ck.CKR_DATA_LEN_RANGE
    assert ll.output_call("C_Encrypt", h, bytes(16), 64)[0] == ck.CKR_OPERATION_NOT_INITIALIZED
    # multi-part verify failing at final
    assert ll.init("Verify", h, ck.CKM_SHA256_RSA_PKCS, pub.handle) == CKR_OK
    assert ll.update("C_VerifyUpdate", h, b"da") == CKR_OK
    assert ll.update("C_VerifyUpdate", h, b"tX") == CKR_OK
    assert ll.fn("C_VerifyFinal")(ctypes.c_ulong(h), sig, ctypes.c_ulong(len(sig))) == ck.CKR_SIGNATURE_INVALID
    assert ll.update("C_VerifyUpdate", h, b"data") == ck.CKR_OPERATION_NOT_INITIALIZED


def test_repeated_init_is_operation_active(rsa2048, aes_known, session, ll):
    pub, priv = rsa2048
    key, _ = aes_known
    h = session.handle
    assert ll.init("Sign", h, ck.CKM_SHA256_RSA_PKCS, priv.handle) == CKR_OK
    assert ll.init("Sign", h, ck.CKM_SHA256_RSA_PKCS, priv.handle) == ck.CKR_OPERATION_ACTIVE
    # the first operation is still there and works
    rv, n, sig = ll.output_call("C_Sign", h, b"x", 512)
    assert rv == CKR_OK and n == 256
    assert ll.init("Encrypt", h, ck.CKM_AES_ECB, key.handle) == CKR_OK
    assert ll.init("Encrypt", h, ck.CKM_AES_CBC, key.handle, bytes(16)) == ck.CKR_OPERATION_ACTIVE
    # mixing single- and multi-part is refused
    assert ll.output_call("C_EncryptUpdate", h, bytes(16), 64)[0] == CKR_OK
    assert ll.output_call("C_Encrypt", h, bytes(16), 64)[0] == ck.CKR_OPERATION_ACTIVE
    assert ll.output_call("C_EncryptFinal", h, None, 64)[0] == CKR_OK


def test_digest_state_machine(session, ll):
    h = session.handle
    m = ll.mechanism(ck.CKM_SHA256)
    assert ll.dll.C_DigestInit(ctypes.c_ulong(h), ctypes.byref(m)) == CKR_OK
    assert ll.dll.C_DigestInit(ctypes.c_ulong(h), ctypes.byref(m)) == ck.CKR_OPERATION_ACTIVE
    rv, n, _ = ll.output_call("C_Digest", h, b"abc", None)
    assert (rv, n) == (CKR_OK, 32)
    rv, n, _ = ll.output_call("C_Digest", h, b"abc", 31)
    assert (rv, n) == (ck.CKR_BUFFER_TOO_SMALL, 32)
    rv, n, d = ll.output_call("C_Digest", h, b"abc", 32)
    assert rv == CKR_OK and d == hashlib.sha256(b"abc").digest()
    assert ll.output_call("C_Digest", h, b"abc", 32)[0] == ck.CKR_OPERATION_NOT_INITIALIZED


def test_usage_flag_off_is_key_function_not_permitted(session, ll):
    key = session.generate_key(KeyType.AES, 128, template={Attribute.ENCRYPT: False})
    assert ll.init("Encrypt", session.handle, ck.CKM_AES_ECB, key.handle) == ck.CKR_KEY_FUNCTION_NOT_PERMITTED
    # nothing is left active by the refused init
    assert ll.init("Decrypt", session.handle, ck.CKM_AES_ECB, key.handle) == CKR_OK
    assert ll.output_call("C_Decrypt", session.handle, bytes(16), 16)[0] == CKR_OK
    key2 = session.generate_key(KeyType.AES, 128)
    assert key2.encrypt(bytes(16), mechanism=Mechanism.AES_ECB)
    key2[Attribute.ENCRYPT] = False
    with pytest.raises(E.PKCS11Error, match="0x68"):  # python-pkcs11 has no class for this CKR
        key2.encrypt(bytes(16), mechanism=Mechanism.AES_ECB)
    hm = session.generate_key(KeyType.GENERIC_SECRET, 128, capabilities=pkcs11.MechanismFlag.VERIFY)
    assert ll.init("Sign", session.handle, ck.CKM_SHA256_HMAC, hm.handle) == ck.CKR_KEY_FUNCTION_NOT_PERMITTED
    pub, priv = session.generate_keypair(KeyType.RSA, 2048, private_template={Attribute.SIGN: False})
    assert priv[Attribute.SIGN] is False
    assert ll.init("Sign", session.handle, ck.CKM_SHA256_RSA_PKCS, priv.handle) == ck.CKR_KEY_FUNCTION_NOT_PERMITTED
    assert ll.init("Decrypt", session.handle, ck.CKM_RSA_PKCS, priv.handle) == CKR_OK
    assert ll.output_call("C_Decrypt", session.handle, pub.encrypt(b"ok", mechanism=Mechanism.RSA_PKCS),
                          512)[2] == b"ok"


def test_wrong_key_for_mechanism(rsa2048, aes_known, session, ll):
    pub, priv = rsa2048
    key, _ = aes_known
    assert ll.init("Sign", session.handle, ck.CKM_SHA256_RSA_PKCS, key.handle) == ck.CKR_KEY_TYPE_INCONSISTENT
    assert ll.init("Encrypt", session.handle, ck.CKM_AES_ECB, pub.handle) == ck.CKR_KEY_TYPE_INCONSISTENT
    assert ll.init("Sign", session.handle, ck.CKM_SHA256_RSA_PKCS, 0) in (ck.CKR_KEY_HANDLE_INVALID,
                                                                          ck.CKR_OBJECT_HANDLE_INVALID)
    assert ll.init("Sign", session.handle, ck.CKM_SHA256_RSA_PKCS, 0x7FFF0000) == ck.CKR_KEY_HANDLE_INVALID
    # mechanism parameters are read as the registry says
    good = pss_params(ck.CKM_SHA256, ck.CKG_MGF1_SHA256, 32)
    assert ll.init("Sign", session.handle, ck.CKM_RSA_PKCS_PSS, priv.handle, good[:-1]) == \
        ck.CKR_MECHANISM_PARAM_INVALID
    assert ll.init("Sign", session.handle, ck.CKM_RSA_PKCS_PSS, priv.handle) == ck.CKR_MECHANISM_PARAM_INVALID
    assert ll.init("Sign", session.handle, ck.CKM_SHA256_RSA_PKCS, priv.handle, b"\x00") == \
        ck.CKR_MECHANISM_PARAM_INVALID
    assert ll.init("Sign", session.handle, ck.CKM_RSA_PKCS_PSS, priv.handle, good) == CKR_OK
    digest = hashlib.sha256(b"pss").digest()
    rv, n, sig = ll.output_call("C_Sign", session.handle, digest, 256)
    assert rv == CKR_OK
    rsa_public(pub).verify(sig, b"pss", padding.PSS(padding.MGF1(hashes.SHA256()), 32), hashes.SHA256())
    assert ll.init("Encrypt", session.handle, ck.CKM_AES_GCM, key.handle, b"short") == \
        ck.CKR_MECHANISM_PARAM_INVALID
    assert ll.init("Sign", session.handle, 0x80001234, priv.handle) == ck.CKR_MECHANISM_INVALID


# ------------------------------------------------------------------ check value and attribute rules


def test_check_value_of_imported_keys(session):
    aes_value = os.urandom(32)
    aes = secret_key(session, KeyType.AES, aes_value)
    assert aes[Attribute.CHECK_VALUE] == kcv_aes(aes_value)
    assert len(aes[Attribute.CHECK_VALUE]) == 3
    des_value = des3_value()
    des = secret_key(session, KeyType.DES3, des_value)
    assert des[Attribute.CHECK_VALUE] == kcv_des3(des_value)
    # a matching check value is accepted at import, a wrong one refused
    ok = secret_key(session, KeyType.AES, aes_value, {Attribute.CHECK_VALUE: kcv_aes(aes_value)})
    assert ok[Attribute.CHECK_VALUE] == kcv_aes(aes_value)
    with pytest.raises(E.AttributeValueInvalid):
        secret_key(session, KeyType.AES, aes_value, {Attribute.CHECK_VALUE: b"\x00\x00\x00"})
    with pytest.raises(E.AttributeReadOnly):
        aes[Attribute.CHECK_VALUE] = b"\x01\x02\x03"
    sensitive = session.generate_key(KeyType.AES, 256, template={Attribute.SENSITIVE: True})
    assert len(sensitive[Attribute.CHECK_VALUE]) == 3  # readable even when the value is not


def test_sensitive_and_unextractable_values_hidden(session, ll):
    sens = session.generate_key(KeyType.AES, 128, template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: True})
    with pytest.raises(E.AttributeSensitive):
        sens[Attribute.VALUE]
    rv, _ = ll.get_attribute(session.handle, sens.handle, ck.CKA_VALUE)
    assert rv == ck.CKR_ATTRIBUTE_SENSITIVE
    unext = session.generate_key(KeyType.AES, 128, template={Attribute.SENSITIVE: False,
                                                             Attribute.EXTRACTABLE: False})
    with pytest.raises(E.AttributeSensitive):
        unext[Attribute.VALUE]
    imported = secret_key(session, KeyType.AES, os.urandom(16), {Attribute.SENSITIVE: True})
    with pytest.raises(E.AttributeSensitive):
        imported[Attribute.VALUE]
    # the other attributes of the same template still answer
    got = sens.get_attributes([Attribute.LABEL, Attribute.VALUE_LEN])
    assert got[Attribute.VALUE_LEN] == 16


def test_one_way_attributes(session):
    key = session.generate_key(KeyType.AES, 128, template={Attribute.SENSITIVE: False, Attribute.EXTRACTABLE: True})
    assert key[Attribute.ALWAYS_SENSITIVE] is False and key[Attribute.NEVER_EXTRACTABLE] is False
    key[Attribute.SENSITIVE] = True
    assert key[Attribute.SENSITIVE] is True
    with pytest.raises(E.AttributeReadOnly):
        key[Attribute.SENSITIVE] = False
    assert key[Attribute.SENSITIVE] is True
    key[Attribute.EXTRACTABLE] = False
    with pytest.raises(E.AttributeReadOnly):
        key[Attribute.EXTRACTABLE] = True
    assert key[Attribute.EXTRACTABLE] is False
    # they were not always so
    assert key[Attribute.ALWAYS_SENSITIVE] is False
    assert key[Attribute.NEVER_EXTRACTABLE] is False
    with pytest.raises(E.AttributeReadOnly):
        key[Attribute.ALWAYS_SENSITIVE] = True
    with pytest.raises(E.AttributeReadOnly):
        key[Attribute.LOCAL] = False


def test_local_and_key_gen_mechanism(session, ll):
    gen = session.generate_key(KeyType.AES, 256, template={Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False})
    assert gen[Attribute.LOCAL] is True
    assert gen[Attribute.KEY_GEN_MECHANISM] == Mechanism.AES_KEY_GEN
    assert gen[Attribute.ALWAYS_SENSITIVE] is True
    assert gen[Attribute.NEVER_EXTRACTABLE] is True
    imp = secret_key(session, KeyType.AES, os.urandom(32), {Attribute.SENSITIVE: True,
                                                               Attribute.EXTRACTABLE: False})
    assert imp[Attribute.LOCAL] is False
    assert imp[Attribute.ALWAYS_SENSITIVE] is False
    assert imp[Attribute.NEVER_EXTRACTABLE] is False
    rv, mech = ll.get_ulong(session.handle, imp.handle, ck.CKA_KEY_GEN_MECHANISM)
    assert (rv, mech) == (CKR_OK, CK_UNAVAILABLE_INFORMATION)
    rv, mech = ll.get_ulong(session.handle, gen.handle, ck.CKA_KEY_GEN_MECHANISM)
    assert (rv, mech) == (CKR_OK, ck.CKM_AES_KEY_GEN)
    gs = session.generate_key(KeyType.GENERIC_SECRET, 160)
    assert ll.get_ulong(session.handle, gs.handle, ck.CKA_KEY_GEN_MECHANISM)[1] == ck.CKM_GENERIC_SECRET_KEY_GEN
    # only the device sets them
    with pytest.raises(E.AttributeReadOnly):
        session.generate_key(KeyType.AES, 128, template={Attribute.KEY_GEN_MECHANISM: Mechanism.AES_KEY_GEN})


def test_token_key_attributes_persist_changes(session):
    key = session.generate_key(KeyType.AES, 128, store=True, label=uniq("tok-attr"),
                               template={Attribute.SENSITIVE: False})
    try:
        key[Attribute.LABEL] = "renamed-token-key"
        key[Attribute.SENSITIVE] = True
        found = session.get_key(label="renamed-token-key", key_type=KeyType.AES)
        assert found[Attribute.SENSITIVE] is True
        with pytest.raises(E.AttributeSensitive):
            found[Attribute.VALUE]
        data = bytes(16)
        assert found.decrypt(key.encrypt(data, mechanism=Mechanism.AES_ECB), mechanism=Mechanism.AES_ECB) == data
    finally:
        key.destroy()
