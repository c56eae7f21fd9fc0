"""The device side of the token and PIN functions: LOGI user types, the lockout and its
audit, PRMD's PIN state, GPUI / GPUC / GPTI, context-specific logins (CKA_ALWAYS_AUTHENTICATE),
the device settings, and the rules of vhsm/p11/objectrules.py and certificates.py."""
from __future__ import annotations

import datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fxpkcs11 import ck
from vhsm import settings
from vhsm.commands.catalog import whitelistable
from vhsm.device import VirtualHSM
from vhsm.excrypt import DeviceError, Phase, Tag
from vhsm.majorkeys import generate_ftk
from vhsm.p11 import certificates, objectrules
from vhsm.passwords import hash_password

from test_policy import PIN, add_partition, run

SO, SO_PIN = "app-so", "so-password"


@pytest.fixture
def dev(tmp_path):
    d = VirtualHSM(str(tmp_path / "state"))
    d.load_ftk(generate_ftk())
    add_partition(d, "App", [(0, 99)], whitelistable(), identity="app1")
    add_partition(d, "Other", [(100, 199)], whitelistable(), identity="other1")
    d.store.put_identity({"name": SO, "role": "App", "password_hash": hash_password(SO_PIN),
                          "flags": {"security_officer": True}, "failed_logins": 0})
    yield d
    d.close()


def logi(conn, name, password, user_type=None, **extra):
    fields = {"USER": name, "PASSWORD": password, **extra}
    if user_type is not None:
        fields["USER_TYPE"] = user_type
    return run(conn, "LOGI", **fields)


def aes(conn, value=bytes(range(16)), **extra):
    t = {ck.CKA_CLASS: ck.CKO_SECRET_KEY, ck.CKA_KEY_TYPE: ck.CKK_AES, ck.CKA_VALUE: value, ck.CKA_TOKEN: True}
    t.update(extra)
    r = run(conn, "GPKL", TEMPLATE=t, READ_WRITE=True, SESSION=1)
    assert r.ok, r.error_text
    return r.fields[Tag.OBJECT]


# ------------------------------------------------------------------ logins and lockout

def test_user_types(dev):
    c = dev.connect()
    assert logi(c, SO, SO_PIN, ck.CKU_USER).reason == ck.CKR_PIN_INCORRECT  # an SO is not a user
    assert logi(c, "app1", PIN, ck.CKU_SO).reason == ck.CKR_PIN_INCORRECT  # nor a user an SO
    assert logi(c, "app1", PIN, 42).reason == ck.CKR_USER_TYPE_INVALID
    r = logi(c, SO, SO_PIN, ck.CKU_SO)
    assert r.ok and r.fields[Tag.USER_TYPE] == ck.CKU_SO and c.so and not c.logged_in
    assert logi(c, "app1", PIN, ck.CKU_USER).reason == ck.CKR_USER_ANOTHER_ALREADY_LOGGED_IN
    assert logi(c, SO, SO_PIN, ck.CKU_SO).reason == ck.CKR_USER_ALREADY_LOGGED_IN
    assert run(c, "LOGO").ok and not c.so
    # without a user type (a network re-login) the identity says which it is
    r = logi(c, SO, SO_PIN)
    assert r.ok and r.fields[Tag.USER_TYPE] == ck.CKU_SO
    run(c, "LOGO")
    r = logi(c, "app1", PIN)
    assert r.ok and r.fields[Tag.USER_TYPE] == ck.CKU_USER and c.logged_in


def test_lockout_after_the_device_limit(dev):
    settings.put(dev.store, "max-login-failures", 3)
    c = dev.connect()
    for i in range(1, 4):
        r = logi(c, "app1", "wrong")
        assert r.reason == ck.CKR_PIN_INCORRECT
        assert dev.store.get_identity("app1")["failed_logins"] == i
    assert logi(c, "app1", PIN).reason == ck.CKR_PIN_LOCKED
    assert logi(c, "other1", PIN).ok  # other identities are not affected
    rows = [r for r in dev.store.audit_rows() if r["command"] == "LOGI" and r["identity"] == "app1"]
    assert [r["result"] for r in rows] == ["refused"] * 4
    assert "locked" in rows[2]["text"] and "locked" in rows[3]["text"]
    from vhsm.admin import AdminSession
    s = AdminSession(dev)
    s.login("Admin1", "safest")
    s.login("Admin2", "safest")
    assert "unlocked" in s.unlock_identity("app1").text
    run(c, "LOGO")
    assert logi(c, "app1", PIN).ok


def test_a_good_login_clears_the_count(dev):
    c = dev.connect()
    assert logi(c, "app1", "wrong").reason == ck.CKR_PIN_INCORRECT
    assert logi(c, "app1", PIN).ok
    assert dev.store.get_identity("app1")["failed_logins"] == 0


def test_restrictions_report_pin_state(dev):
    settings.put(dev.store, "max-login-failures", 5)
    c = dev.connect()
    logi(c, "app1", "wrong")
    logi(c, SO, "wrong", ck.CKU_SO)
    logi(c, SO, "wrong", ck.CKU_SO)
    r = run(c, "PRMD", USER="app1", SO_USER=SO)
    f = r.fields
    assert f[Tag.MAX_FAILURES] == 5 and f[Tag.USER_FAILURES] == 1 and f[Tag.SO_FAILURES] == 2
    assert f[Tag.SO_EXISTS] and f[Tag.USER_PIN_SET] and Tag.TOKEN_LABEL not in f
    assert f[Tag.MIN_PIN] == 4 and f[Tag.MAX_PIN] == 64
    r = run(c, "PRMD", USER="nobody", SO_USER="app1")  # app1 is no SO
    assert not r.fields[Tag.IDENTITY_EXISTS] and Tag.SO_EXISTS not in r.fields


# ------------------------------------------------------------------ GPUI, GPUC, GPTI

def test_init_pin_by_the_security_officer(dev):
    c = dev.connect()
    assert run(c, "GPUI", USER="app1", PASSWORD="fresh-pin").reason == ck.CKR_USER_NOT_LOGGED_IN
    assert logi(c, "app1", PIN).ok
    assert run(c, "GPUI", USER="app1", PASSWORD="fresh-pin").reason == ck.CKR_USER_NOT_LOGGED_IN
    run(c, "LOGO")
    assert logi(c, SO, SO_PIN, ck.CKU_SO).ok
    assert run(c, "GPUI", USER="app1", PASSWORD="abc").reason == ck.CKR_PIN_LEN_RANGE
    assert run(c, "GPUI", USER="app1", PASSWORD="x" * 65).reason == ck.CKR_PIN_LEN_RANGE
    assert run(c, "GPUI", USER="other1", PASSWORD="fresh-pin").reason == ck.CKR_FUNCTION_FAILED  # not its partition
    assert run(c, "GPUI", USER=SO, PASSWORD="fresh-pin").reason == ck.CKR_FUNCTION_FAILED
    assert run(c, "GPUI", USER="app1", PASSWORD="fresh-pin").ok
    run(c, "LOGO")
    assert logi(c, "app1", PIN).reason == ck.CKR_PIN_INCORRECT
    assert logi(c, "app1", "fresh-pin").ok


def test_set_pin_changes_only_the_own_password(dev):
    c = dev.connect()
    assert logi(c, "app1", PIN).ok
    assert run(c, "GPUC", USER="other1", PASSWORD=PIN, NEW_PASSWORD="new-pin1").reason == ck.CKR_PIN_INCORRECT
    assert run(c, "GPUC", PASSWORD="wrong", NEW_PASSWORD="new-pin1").reason == ck.CKR_PIN_INCORRECT
    assert dev.store.get_identity("app1")["failed_logins"] == 1
    assert run(c, "GPUC", PASSWORD=PIN, NEW_PASSWORD="ab").reason == ck.CKR_PIN_LEN_RANGE
    assert run(c, "GPUC", PASSWORD=PIN, NEW_PASSWORD="new-pin1").ok
    run(c, "LOGO")
    assert logi(c, "app1", "new-pin1").ok
    run(c, "LOGO")
    # not logged in: the named user's PIN, the old one given
    assert run(c, "GPUC", USER="app1", PASSWORD="new-pin1", NEW_PASSWORD="third-pin").ok
    assert run(c, "GPUC", USER=SO, PASSWORD=SO_PIN, NEW_PASSWORD="x-pin-so").reason == ck.CKR_USER_NOT_LOGGED_IN
    assert run(c, "GPUC", USER="Admin1", PASSWORD="safest", NEW_PASSWORD="x-pin-ad").reason == ck.CKR_PIN_INCORRECT
    assert logi(c, SO, SO_PIN, ck.CKU_SO).ok
    assert run(c, "GPUC", PASSWORD=SO_PIN, NEW_PASSWORD="so-second").ok


def test_init_token_empties_only_its_partition(dev):
    user = dev.connect()
    assert logi(user, "app1", PIN).ok
    mine = [aes(user, label_value) for label_value in (bytes(16), bytes(range(16)))]
    other = dev.connect()
    assert logi(other, "other1", PIN).ok
    theirs = aes(other)
    so = dev.connect()
    assert run(so, "GPTI", TOKEN_LABEL="x").reason == ck.CKR_USER_NOT_LOGGED_IN
    assert logi(so, SO, SO_PIN, ck.CKU_SO).ok
    assert run(so, "GPTI", TOKEN_LABEL="x" * 33).reason == ck.CKR_ARGUMENTS_BAD
    r = run(so, "GPTI", TOKEN_LABEL="Fresh Token  ")
    assert r.ok and r.fields[Tag.DELETED] == 2
    assert all(dev.store.get_key(ref) is None for ref in mine)
    assert dev.store.get_key(theirs) is not None
    assert dev.store.get_role("App")["settings"]["token_label"] == "Fresh Token"
    info = run(so, "PRMD", USER="app1", SO_USER=SO).fields
    assert info[Tag.TOKEN_LABEL] == "Fresh Token" and info[Tag.USER_PIN_SET] is False
    fresh = dev.connect()
    assert logi(fresh, "app1", PIN).reason == ck.CKR_USER_PIN_NOT_INITIALIZED
    assert logi(fresh, "other1", PIN).ok  # the other partition's users are untouched
    assert run(so, "GPUI", USER="app1", PASSWORD="after-init").ok
    assert logi(dev.connect(), "app1", "after-init").ok


# ------------------------------------------------------------------ CKA_ALWAYS_AUTHENTICATE

def test_context_specific_login_is_enforced_by_the_device(dev):
    c = dev.connect()
    assert logi(c, "app1", PIN).ok
    r = run(c, "GRSA", MECHANISM=ck.CKM_RSA_PKCS_KEY_PAIR_GEN, PUBLIC_TEMPLATE={ck.CKA_MODULUS_BITS: 2048},
            PRIVATE_TEMPLATE={ck.CKA_ALWAYS_AUTHENTICATE: True}, READ_WRITE=True, SESSION=1)
    assert r.ok, r.error_text
    priv = r.fields[Tag.PRIVATE_OBJECT]

    def start():
        r = run(c, "GPAS", OBJECT=priv, MECHANISM=ck.CKM_SHA256_RSA_PKCS, SESSION=1)
        assert r.ok, r.error_text
        return r.fields[Tag.CONTEXT]
    cid = start()
    r = run(c, "GPAS", CONTEXT=cid, PHASE=Phase.FINAL, DATA=b"data")
    assert r.reason == ck.CKR_USER_NOT_LOGGED_IN
    assert run(c, "GPAS", CONTEXT=cid, PHASE=Phase.FINAL, DATA=b"data").reason == ck.CKR_OPERATION_NOT_INITIALIZED
    cid = start()
    assert logi(c, "app1", "wrong", ck.CKU_CONTEXT_SPECIFIC, CONTEXT=cid).reason == ck.CKR_PIN_INCORRECT
    assert logi(c, "app1", PIN, ck.CKU_CONTEXT_SPECIFIC, CONTEXT=999999).reason == ck.CKR_OPERATION_NOT_INITIALIZED
    assert logi(c, "other1", PIN, ck.CKU_CONTEXT_SPECIFIC, CONTEXT=cid).reason == ck.CKR_PIN_INCORRECT
    assert logi(c, "app1", PIN, ck.CKU_CONTEXT_SPECIFIC, CONTEXT=cid).ok
    assert run(c, "GPAS", CONTEXT=cid, PHASE=Phase.UPDATE, DATA=b"da").ok
    assert run(c, "GPAS", CONTEXT=cid, PHASE=Phase.FINAL, DATA=b"ta").ok
    # a context-specific login needs a logged-in user
    assert logi(dev.connect(), "app1", PIN, ck.CKU_CONTEXT_SPECIFIC, CONTEXT=cid).reason == ck.CKR_USER_NOT_LOGGED_IN


# ------------------------------------------------------------------ settings

def test_settings_defaults_ranges_and_storage(dev):
    assert settings.current(dev.store) == {"max-login-failures": 10, "rsa-min-bits": 2048}
    with pytest.raises(ValueError):
        settings.parse("rsa-min-bits", "512")
    with pytest.raises(ValueError):
        settings.parse("max-login-failures", "0")
    with pytest.raises(ValueError):
        settings.parse("max-login-failures", "ten")
    with pytest.raises(ValueError):
        settings.parse("no-such", "1")
    settings.put(dev.store, "rsa-min-bits", "1024")
    assert settings.rsa_min_bits(dev.store) == 1024
    dev.store.set_meta("setting:rsa-min-bits", "garbage")
    assert settings.rsa_min_bits(dev.store) == 2048


def test_rsa_min_bits_setting_reaches_key_generation(dev):
    c = dev.connect()
    assert logi(c, "app1", PIN).ok

    def gen(bits):
        return run(c, "GRSA", MECHANISM=ck.CKM_RSA_PKCS_KEY_PAIR_GEN, PUBLIC_TEMPLATE={ck.CKA_MODULUS_BITS: bits},
                   PRIVATE_TEMPLATE={}, SESSION=1)
    assert gen(1024).reason == ck.CKR_KEY_SIZE_RANGE
    settings.put(dev.store, "rsa-min-bits", 1024)
    assert gen(1024).ok


# ------------------------------------------------------------------ object rules

class Obj:
    def __init__(self, **attrs):
        self.attrs = {getattr(ck, "CKA_" + k): v for k, v in attrs.items()}


def test_dates():
    objectrules.check_dates({ck.CKA_START_DATE: b"20240101", ck.CKA_END_DATE: b""})
    objectrules.check_dates({ck.CKA_START_DATE: b"20240101", ck.CKA_END_DATE: b"20240101"})
    for bad in (b"20241301", b"20240230", b"2024010", b"abcdefgh"):
        with pytest.raises(DeviceError) as e:
            objectrules.check_dates({ck.CKA_START_DATE: bad})
        assert e.value.reason == ck.CKR_ATTRIBUTE_VALUE_INVALID
    with pytest.raises(DeviceError) as e:
        objectrules.check_dates({ck.CKA_START_DATE: b"20250101", ck.CKA_END_DATE: b"20240101"})
    assert e.value.reason == ck.CKR_TEMPLATE_INCONSISTENT


def test_wrap_policy_rules():
    key = Obj(CLASS=ck.CKO_SECRET_KEY, SENSITIVE=True)
    plain = Obj(CLASS=ck.CKO_SECRET_KEY, SENSITIVE=False)
    decrypting = Obj(CLASS=ck.CKO_SECRET_KEY, WRAP=True, DECRYPT=True, ALWAYS_SENSITIVE=True)
    known = Obj(CLASS=ck.CKO_SECRET_KEY, WRAP=True, DECRYPT=False, ALWAYS_SENSITIVE=False)
    good = Obj(CLASS=ck.CKO_SECRET_KEY, WRAP=True, DECRYPT=False, ALWAYS_SENSITIVE=True)
    trusted = Obj(CLASS=ck.CKO_SECRET_KEY, WRAP=True, DECRYPT=False, TRUSTED=True)
    public = Obj(CLASS=ck.CKO_PUBLIC_KEY, WRAP=True)
    trusted_public = Obj(CLASS=ck.CKO_PUBLIC_KEY, WRAP=True, TRUSTED=True)
    for w in (decrypting, known, public):
        with pytest.raises(DeviceError) as e:
            objectrules.check_wrap(None, w, key)
        assert e.value.reason == ck.CKR_KEY_NOT_WRAPPABLE
        objectrules.check_wrap(None, w, plain)  # non-sensitive keys: no restriction
    for w in (good, trusted, trusted_public):
        objectrules.check_wrap(None, w, key)
    templated = Obj(CLASS=ck.CKO_SECRET_KEY, WRAP_TEMPLATE={ck.CKA_KEY_TYPE: ck.CKK_AES})
    with pytest.raises(DeviceError) as e:
        objectrules.check_wrap(None, templated, Obj(CLASS=ck.CKO_SECRET_KEY, KEY_TYPE=ck.CKK_DES3))
    assert e.value.reason == ck.CKR_KEY_NOT_WRAPPABLE
    objectrules.check_wrap(None, templated, Obj(CLASS=ck.CKO_SECRET_KEY, KEY_TYPE=ck.CKK_AES))


def test_unwrap_template_rules():
    plain = Obj(CLASS=ck.CKO_SECRET_KEY, WRAP=True, UNWRAP=True, DECRYPT=True)
    assert objectrules.unwrap_template(plain, {ck.CKA_SENSITIVE: False}) == {ck.CKA_SENSITIVE: False}
    guarded = Obj(CLASS=ck.CKO_SECRET_KEY, UNWRAP=True,
                  UNWRAP_TEMPLATE={ck.CKA_SENSITIVE: True, ck.CKA_EXTRACTABLE: False})
    assert objectrules.unwrap_template(guarded, {ck.CKA_LABEL: "x"}) == {
        ck.CKA_LABEL: "x", ck.CKA_SENSITIVE: True, ck.CKA_EXTRACTABLE: False}
    with pytest.raises(DeviceError) as e:
        objectrules.unwrap_template(guarded, {ck.CKA_SENSITIVE: False})
    assert e.value.reason == ck.CKR_TEMPLATE_INCONSISTENT
    # a key that may wrap sensitive keys unwraps only into sensitive keys
    wrapper = Obj(CLASS=ck.CKO_SECRET_KEY, WRAP=True, UNWRAP=True, DECRYPT=False, ALWAYS_SENSITIVE=True)
    assert objectrules.unwrap_template(wrapper, {})[ck.CKA_SENSITIVE] is True
    with pytest.raises(DeviceError):
        objectrules.unwrap_template(wrapper, {ck.CKA_SENSITIVE: False})


def test_change_rules():
    class Conn:
        so = False
    wrapper = {ck.CKA_CLASS: ck.CKO_SECRET_KEY, ck.CKA_WRAP: True, ck.CKA_DECRYPT: False}
    with pytest.raises(DeviceError) as e:
        objectrules.check_change(Conn(), wrapper, {ck.CKA_DECRYPT: True})
    assert e.value.reason == ck.CKR_TEMPLATE_INCONSISTENT
    objectrules.check_change(Conn(), wrapper, {ck.CKA_WRAP: False, ck.CKA_DECRYPT: True})
    both = {ck.CKA_CLASS: ck.CKO_SECRET_KEY, ck.CKA_WRAP: True, ck.CKA_DECRYPT: True}
    objectrules.check_change(Conn(), both, {ck.CKA_LABEL: "born with both: may keep them"})
    cert = {ck.CKA_CLASS: ck.CKO_CERTIFICATE, ck.CKA_SUBJECT: b"a"}
    with pytest.raises(DeviceError) as e:
        objectrules.check_change(Conn(), cert, {ck.CKA_SUBJECT: b"b"})
    assert e.value.reason == ck.CKR_ATTRIBUTE_READ_ONLY
    with pytest.raises(DeviceError) as e:
        objectrules.check_new(Conn(), {ck.CKA_TRUSTED: True})
    assert e.value.reason == ck.CKR_ATTRIBUTE_READ_ONLY
    Conn.so = True
    objectrules.check_new(Conn(), {ck.CKA_TRUSTED: True})


def make_cert(serial: int = 0x1234567890) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")])
    issuer = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer")])
    now = datetime.datetime(2024, 1, 2, tzinfo=datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer).public_key(key.public_key())
            .serial_number(serial).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=30))
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.DER)


def test_certificate_attributes_follow_the_value():
    der = make_cert()
    cert = x509.load_der_x509_certificate(der)
    t = {ck.CKA_CERTIFICATE_TYPE: ck.CKC_X_509, ck.CKA_VALUE: der}
    a = certificates.x509_attrs(t)
    assert a[ck.CKA_SUBJECT] == cert.subject.public_bytes()
    assert a[ck.CKA_ISSUER] == cert.issuer.public_bytes()
    assert a[ck.CKA_SERIAL_NUMBER] == bytes.fromhex("02051234567890")
    assert a[ck.CKA_START_DATE] == b"20240102" and a[ck.CKA_END_DATE] == b"20240201"
    assert a[ck.CKA_PUBLIC_KEY_INFO] == cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    for attr, wrong in ((ck.CKA_SUBJECT, cert.issuer.public_bytes()), (ck.CKA_SERIAL_NUMBER, b"\x02\x01\x01"),
                        (ck.CKA_ISSUER, cert.subject.public_bytes())):
        with pytest.raises(DeviceError) as e:
            certificates.x509_attrs({**t, attr: wrong})
        assert e.value.reason == ck.CKR_TEMPLATE_INCONSISTENT
    with pytest.raises(DeviceError) as e:
        certificates.x509_attrs({ck.CKA_VALUE: der})
    assert e.value.reason == ck.CKR_TEMPLATE_INCOMPLETE
    with pytest.raises(DeviceError) as e:
        certificates.x509_attrs({ck.CKA_CERTIFICATE_TYPE: ck.CKC_X_509})
    assert e.value.reason == ck.CKR_TEMPLATE_INCOMPLETE
    with pytest.raises(DeviceError) as e:
        certificates.x509_attrs({**t, ck.CKA_VALUE: b"not a certificate"})
    assert e.value.reason == ck.CKR_ATTRIBUTE_VALUE_INVALID
    with pytest.raises(DeviceError) as e:
        certificates.x509_attrs({**t, ck.CKA_CERTIFICATE_TYPE: ck.CKC_WTLS})
    assert e.value.reason == ck.CKR_ATTRIBUTE_VALUE_INVALID


def test_parallel_wrong_pins_each_count(dev):
    import threading
    settings.put(dev.store, "max-login-failures", 50)
    results = []

    def attempt():
        results.append(logi(dev.connect(), "app1", "wrong").reason)
    threads = [threading.Thread(target=attempt) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [ck.CKR_PIN_INCORRECT] * 8
    assert dev.store.get_identity("app1")["failed_logins"] == 8
