"""Section 6 of the Vectera Plus / vSEC:CMS integration guide, replayed on the virtual HSM.

examples/vectera-setup.fxcli (6.1-6.6) and examples/vectera-tls.fxcli (the FXCLI part of
6.7.2) run as written through the `vhsm` console command; the OpenSSL client steps of 6.7.2
run with the real `openssl`. Then the result is checked the way an integrator would: the
certificates verify with the right EKUs, the TLS port shows the generated PKI, and through
PKCS #11 (identity crypto1, PIN safest) the vSEC:CMS partition can do what the guide enables
and nothing else, Transaction Processing is hardened, and the TLS CA key stays invisible.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fxpkcs11 import ck
from integration_fixtures import run_child
from support import ROOT, build_library, write_config

VHSM = os.path.join(ROOT, ".venv", "bin", "vhsm")
SETUP = os.path.join(ROOT, "examples", "vectera-setup.fxcli")
TLS = os.path.join(ROOT, "examples", "vectera-tls.fxcli")
# The passwords examples/vectera-setup.fxcli gives the two administrators.
ADMIN_LOGIN = "login user -u Admin1 -p Admin1-Pass\nlogin user -u Admin2 -p Admin2-Pass\n"

# Guide 6.5.1 and 6.5.2, as printed there.
GUIDE_TP = {"ECHO", "PRMD", "RAND", "HASH", "GPKM", "GPKS", "GPKR"}
GUIDE_VSEC = {"ECHO", "GPKM", "GPKS", "HASH", "GRSA", "LRSA", "GPKD", "GPKU", "GPSE", "TIME"}

# Guide 6.7.2 step 4, with the guide's backslash continuations.
CLIENT_SIGN = r"""
# Sign the client CSR under the root certificate that was created
x509 sign \
  --private-slot TlsCaKeyPair \
  --issuer TlsCa.pem \
  --csr ClientPki.csr \
  --eku Client --key-usage DigitalSignature --key-usage KeyAgreement \
  --dn 'O=Futurex\CN=Client' \
  --out SignedPki.pem
"""


# ------------------------------------------------------------------ helpers

def vhsm(state: str, *argv: str, cwd: str | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([VHSM, "--state", state, *argv], cwd=cwd or ROOT, input=stdin,
                          stdin=None if stdin is not None else subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=180)


def vhsm_ok(state: str, *argv: str, cwd: str | None = None) -> str:
    p = vhsm(state, *argv, cwd=cwd)
    assert p.returncode == 0, f"vhsm {' '.join(argv)} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout


def vhsm_json(state: str, *argv: str):
    return json.loads(vhsm_ok(state, "--output", "json", *argv))


def admin(state: str, folder: str, body: str, *, name: str = "admin.fxcli",
          cwd: str | None = None) -> subprocess.CompletedProcess:
    """Run `body` as a script after both administrators log in (dual control)."""
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write(ADMIN_LOGIN + textwrap.dedent(body))
    return vhsm(state, "-f", path, cwd=cwd)


def openssl(*argv: str, cwd: str) -> subprocess.CompletedProcess:
    exe = shutil.which("openssl")
    assert exe, "the openssl command is needed for guide section 6.7.2 (apt-get install openssl)"
    p = subprocess.run([exe, *argv], cwd=cwd, capture_output=True, text=True, timeout=120,
                       stdin=subprocess.DEVNULL)
    return p


def openssl_ok(*argv: str, cwd: str) -> str:
    p = openssl(*argv, cwd=cwd)
    assert p.returncode == 0, f"openssl {' '.join(argv)} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout + p.stderr


def load_cert(path: str) -> x509.Certificate:
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def ekus(cert: x509.Certificate) -> list:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def p11_config(folder: str, state: str) -> str:
    """fxpkcs11.cfg for the guide's identity (6.6): <CRYPTO-OPR> crypto1, PIN safest at C_Login."""
    return write_config(os.path.join(folder, "fxpkcs11.cfg"), state, identity="crypto1",
                        log_file=os.path.join(folder, "fxpkcs11.log"))


def setup_state(folder: str) -> str:
    os.makedirs(folder, exist_ok=True)
    state = os.path.join(folder, "state")
    out = vhsm_ok(state, "-f", SETUP)
    assert "identity crypto1 added to role vSEC_CMS" in out
    return state


# ------------------------------------------------------------------ the guide, replayed once

@pytest.fixture(scope="module")
def guide(tmp_path_factory) -> SimpleNamespace:
    """6.1-6.6, then 6.7.2 (FXCLI and OpenSSL steps) with the certificate files landing in
    the working directory, as the guide says FXCLI does without a path."""
    build_library()
    base = str(tmp_path_factory.mktemp("guide"))
    work = os.path.join(base, "tls")  # FXCLI's and OpenSSL's working directory
    os.makedirs(work)
    state = os.path.join(base, "state")
    setup = vhsm(state, "-f", SETUP)
    assert setup.returncode == 0, setup.stderr
    tls = vhsm(state, "-f", TLS, cwd=work)
    assert tls.returncode == 0, tls.stderr
    # 6.7.2 step 3: client key and CSR with OpenSSL (-subj instead of the interactive questions)
    openssl_ok("genrsa", "-out", "privatekey.pem", "2048", cwd=work)
    openssl_ok("req", "-new", "-key", "privatekey.pem", "-out", "ClientPki.csr", "-days", "365",
               "-subj", "/C=US/O=Example Corp/CN=vSEC CMS client", cwd=work)
    # step 4: the client CSR signed by the TLS CA in the HSM
    client = admin(state, base, CLIENT_SIGN, name="client-sign.fxcli", cwd=work)
    assert client.returncode == 0, client.stderr
    # step 5: the PKCS #12 file the library authenticates with
    openssl_ok("pkcs12", "-export", "-inkey", "privatekey.pem", "-in", "SignedPki.pem", "-certfile", "TlsCa.pem",
               "-out", "PKI.p12", "-passout", "pass:safest", cwd=work)
    return SimpleNamespace(base=base, work=work, state=state, cfg=p11_config(base, state),
                           setup_out=setup.stdout, tls_out=tls.stdout, client_out=client.stdout)


def test_scripts_run_as_written_and_files_land_in_the_working_directory(guide):
    for name in ("TlsCa.pem", "production.csr", "TlsProduction.pem", "privatekey.pem", "ClientPki.csr",
                 "SignedPki.pem", "PKI.p12"):
        assert os.path.isfile(os.path.join(guide.work, name)), name
    # nothing was written beside the scripts or into the repository
    for name in ("TlsCa.pem", "production.csr", "TlsProduction.pem", "SignedPki.pem"):
        assert not os.path.exists(os.path.join(ROOT, name))
        assert not os.path.exists(os.path.join(ROOT, "examples", name))
    assert "FTK loaded, KCV" in guide.setup_out
    assert "role vSEC_CMS added" in guide.setup_out
    assert "TlsCaKeyPair generated in slot" in guide.tls_out
    assert "TlsProduction.pem" in guide.tls_out
    assert "pki_source=Generated" in guide.tls_out and "anon=False" in guide.tls_out
    assert "CN=Client,O=Futurex" in guide.client_out and "SignedPki.pem" in guide.client_out
    verify = vhsm(guide.state, "audit", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    rows = vhsm_json(guide.state, "audit", "show")
    admin_rows = [r for r in rows if r["role"] == "Administrator"]
    assert admin_rows and all(r["result"] == "ok" for r in admin_rows)
    commands = {r["command"] for r in admin_rows}
    for c in ("login user", "user change-password", "majorkey random", "role modify", "role add", "identity add",
              "generate", "x509 sign", "tls-ports request", "tls-ports set", "network interface modify"):
        assert c in commands, c


def test_setup_gives_the_guides_partitions(guide):
    tp = vhsm_json(guide.state, "role", "show", "--name", "Anonymous")
    assert tp == vhsm_json(guide.state, "role", "show", "--name", "Transaction Processing")
    assert set(tp["commands"]) == GUIDE_TP and tp["perms"] == ["Keys"] and tp["key_ranges"] == []
    vsec = vhsm_json(guide.state, "role", "show", "--name", "vSEC_CMS")
    assert set(vsec["commands"]) == GUIDE_VSEC
    assert sorted(vsec["perms"]) == ["Keys:Authorized", "Keys:Import PKI", "Keys:No Usage Wrap"]
    assert vsec["key_ranges"] == [[0, 999]]
    idents = {i["name"]: i for i in vhsm_json(guide.state, "identity", "list")}
    assert idents["crypto1"]["role"] == "vSEC_CMS"
    assert not idents["Admin1"]["default_password"] and not idents["Admin2"]["default_password"]
    assert vhsm_json(guide.state, "majorkey", "status")["FTK"]["loaded"] is True
    # every command the guide enables is one `command list` knows, whitelisted per role
    listed = {row["command"]: row for row in vhsm_json(guide.state, "command", "list")}
    assert all(listed[c]["whitelist"] == "role" for c in GUIDE_TP | GUIDE_VSEC)


def test_transaction_processing_is_hardened(guide):
    text = vhsm_ok(guide.state, "role", "show", "--name", "Anonymous")
    assert "Name: Transaction Processing" in text
    assert "Permissions: Keys\n" in text  # no Keys:All Slots
    assert "Key ranges: none" in text
    assert "Commands: ECHO, GPKM, GPKR, GPKS, HASH, PRMD, RAND" in text
    # Before C_Login a connection is in Transaction Processing: the communication commands
    # answer, anything else is refused, and no key slot is reachable.
    r = run_child(guide.cfg, """
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        res = {"serial": tok.serial.decode() if isinstance(tok.serial, bytes) else tok.serial}
        with tok.open(rw=True) as s:
            res["random"] = len(s.generate_random(256))
            try:
                s.generate_key(KeyType.AES, 256, label="tp-key")
                res["generate"] = "ok"
            except pkcs11.PKCS11Error as e:
                res["generate"] = type(e).__name__
            res["objects"] = len(list(s.get_objects()))
        out(**res)
    """)
    assert r["serial"].startswith("VP")
    assert r["random"] == 32
    assert r["generate"] == "FunctionFailed"
    assert r["objects"] == 0


def test_certificates_verify_against_the_tls_ca_with_the_right_ekus(guide):
    w = guide.work
    assert "TlsProduction.pem: OK" in openssl_ok("verify", "-CAfile", "TlsCa.pem", "-purpose", "sslserver",
                                                 "TlsProduction.pem", cwd=w)
    assert "SignedPki.pem: OK" in openssl_ok("verify", "-CAfile", "TlsCa.pem", "-purpose", "sslclient",
                                             "SignedPki.pem", cwd=w)
    # each certificate is good for its own side only
    assert openssl("verify", "-CAfile", "TlsCa.pem", "-purpose", "sslclient", "TlsProduction.pem",
                   cwd=w).returncode != 0
    assert openssl("verify", "-CAfile", "TlsCa.pem", "-purpose", "sslserver", "SignedPki.pem",
                   cwd=w).returncode != 0

    ca = load_cert(os.path.join(w, "TlsCa.pem"))
    server = load_cert(os.path.join(w, "TlsProduction.pem"))
    client = load_cert(os.path.join(w, "SignedPki.pem"))
    root_name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Futurex"),
                           x509.NameAttribute(NameOID.COMMON_NAME, "Root")])
    assert ca.subject == ca.issuer == root_name
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca is True and bc.path_length == 0
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.digital_signature and ku.key_cert_sign

    assert server.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Production"
    assert client.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "Client"
    for cert, eku in ((server, ExtendedKeyUsageOID.SERVER_AUTH), (client, ExtendedKeyUsageOID.CLIENT_AUTH)):
        assert cert.issuer == root_name
        cert.verify_directly_issued_by(ca)
        assert ekus(cert) == [eku]
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert ku.digital_signature and ku.key_agreement and not ku.key_cert_sign

    # the client certificate is for the key OpenSSL made; the server's for the port's key pair
    with open(os.path.join(w, "privatekey.pem"), "rb") as f:
        client_key = serialization.load_pem_private_key(f.read(), None)
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert client.public_key().public_bytes(*spki) == client_key.public_key().public_bytes(*spki)
    with open(os.path.join(w, "production.csr"), "rb") as f:
        csr = x509.load_pem_x509_csr(f.read())
    assert server.public_key().public_bytes(*spki) == csr.public_key().public_bytes(*spki)


def test_pkcs12_bundle_opens_with_the_guides_password(guide):
    with open(os.path.join(guide.work, "PKI.p12"), "rb") as f:
        key, cert, extra = pkcs12.load_key_and_certificates(f.read(), b"safest")
    client = load_cert(os.path.join(guide.work, "SignedPki.pem"))
    ca = load_cert(os.path.join(guide.work, "TlsCa.pem"))
    assert cert == client and extra == [ca]
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert key.public_key().public_bytes(*spki) == client.public_key().public_bytes(*spki)


def test_tls_port_shows_the_generated_pki(guide):
    ports = vhsm_json(guide.state, "tls-ports", "list")
    assert ports == [{"port": "Excrypt Port", "enabled": True, "anon": False, "pki_source": "Generated",
                      "key_slot": ports[0]["key_slot"], "ca_certs": 1, "cert": True}]
    # the port's key pair and the TLS CA are device keys: the Administrator's, outside (0,999)
    table = {row["slot"]: row for row in vhsm_json(guide.state, "keytable", "list", "--owner", "Administrator")}
    assert ports[0]["key_slot"] in table
    ca_rows = [r for r in table.values() if r["label"] == "TlsCaKeyPair"]
    assert len(ca_rows) == 1 and ca_rows[0]["slot"] >= 1000 and ca_rows[0]["type"] == "CKK_RSA"
    assert all(r["owner"] == "Administrator" and r["kcv"] for r in table.values())


def test_vsec_cms_partition_through_pkcs11(guide):
    ca_slot = next(r["slot"] for r in vhsm_json(guide.state, "keytable", "list") if r["label"] == "TlsCaKeyPair")
    r = run_child(guide.cfg, f"""
        import ctypes
        from integration_fixtures import LowLevel
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        ll = LowLevel()
        res = {{}}
        with tok.open(rw=True, user_pin=PIN) as s:
            # GRSA is enabled (6.5.2)
            pub, priv = s.generate_keypair(KeyType.RSA, 2048, store=True, label="cms-signing", id=b"\\x07")
            res["modulus_bits"] = len(pub[Attribute.MODULUS]) * 8
            res["handles"] = [pub.handle, priv.handle]
            # RAND and GPAS are not
            try:
                s.generate_random(128)
                res["random"] = "ok"
            except pkcs11.PKCS11Error as e:
                res["random"] = type(e).__name__
            try:
                priv.sign(b"data", mechanism=Mechanism.SHA256_RSA_PKCS)
                res["sign"] = "ok"
            except pkcs11.PKCS11Error as e:
                res["sign"] = type(e).__name__
            buf = ctypes.create_string_buffer(16)
            res["random_rv"] = ll.dll.C_GenerateRandom(ctypes.c_ulong(s.handle), buf, ctypes.c_ulong(16))
            res["sign_rv"] = ll.init("Sign", s.handle, 0x40, priv.handle)
            # the TLS CA key (a device key in the Administrator's slots) is not there
            res["labels"] = sorted(str(o[Attribute.LABEL]) for o in s.get_objects())
            res["find_ca"] = ll.find(s.handle, {{0x3: b"TlsCaKeyPair"}})
            res["ca_by_handle"] = ll.get_attribute(s.handle, {ca_slot} + 1, 0x3)[0]
            res["ca_sign_rv"] = ll.init("Sign", s.handle, 0x40, {ca_slot} + 1)
        out(**res)
    """)
    assert r["modulus_bits"] == 2048
    assert r["random"] == "FunctionFailed" and r["sign"] == "FunctionFailed"
    assert r["random_rv"] == r["sign_rv"] == ck.CKR_FUNCTION_FAILED
    assert r["labels"] == ["cms-signing", "cms-signing"]
    assert r["find_ca"] == [ck.CKR_OK, []]
    assert r["ca_by_handle"] == ck.CKR_OBJECT_HANDLE_INVALID
    assert r["ca_sign_rv"] != ck.CKR_OK
    with open(os.path.join(guide.base, "fxpkcs11.log"), encoding="utf-8", errors="replace") as f:
        log = f.read()
    assert 'vhsm role modify --name "vSEC_CMS" --add-perm Excrypt:RAND' in log
    assert 'vhsm role modify --name "vSEC_CMS" --add-perm Excrypt:GPAS' in log
    # the key table shows the new pair in the partition's range, owned by it
    rows = [row for row in vhsm_json(guide.state, "keytable", "list", "--owner", "vSEC_CMS")
            if row["label"] == "cms-signing"]
    assert sorted(row["class"] for row in rows) == ["CKO_PRIVATE_KEY", "CKO_PUBLIC_KEY"]
    assert all(0 <= row["slot"] <= 999 and row["type"] == "CKK_RSA" and row["kcv"] for row in rows)
    assert sorted(row["slot"] + 1 for row in rows) == sorted(r["handles"])
    # every refusal is in the audit log, with the identity and the partition
    denied = vhsm_json(guide.state, "audit", "show", "--result", "denied", "--role", "vSEC_CMS")
    assert {"RAND", "GPAS"} <= {row["command"] for row in denied}
    assert all(row["identity"] == "crypto1" for row in denied)


# ------------------------------------------------------------------ 6.7.1 and live permission changes

def test_server_side_authentication_option_persists(tmp_path):
    """Guide 6.7.1: `tls-ports set -p "Excrypt Port" --anon`, instead of 6.7.2."""
    state = setup_state(str(tmp_path))
    before = vhsm_json(state, "tls-ports", "list")[0]
    assert before["anon"] is False and before["pki_source"] == "Futurex"
    p = admin(state, str(tmp_path), 'tls-ports set -p "Excrypt Port" --anon\n')
    assert p.returncode == 0, p.stderr
    after = vhsm_json(state, "tls-ports", "list")[0]  # a new process: read back from the state
    assert after == {**before, "anon": True}
    # and it takes both administrators
    path = tmp_path / "one-admin.fxcli"
    path.write_text('login user -u Admin1 -p Admin1-Pass\ntls-ports set -p "Excrypt Port" --no-anon\n')
    p = vhsm(state, "-f", str(path))
    assert p.returncode == 1 and "dual control" in p.stderr
    assert vhsm_json(state, "tls-ports", "list")[0]["anon"] is True


def test_permission_change_reaches_an_open_session(tmp_path):
    """An application keeps its session; `role modify` in another process applies to its
    next command, without reopening or logging in again."""
    build_library()
    state = setup_state(str(tmp_path))
    cfg = p11_config(str(tmp_path), state)
    script = tmp_path / "add-rand.fxcli"
    script.write_text(ADMIN_LOGIN + "role modify --name vSEC_CMS --add-perm Excrypt:RAND\n")
    r = run_child(cfg, f"""
        import subprocess
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        res = {{}}
        with tok.open(rw=True, user_pin=PIN) as s:
            try:
                s.generate_random(64)
                res["before"] = "ok"
            except pkcs11.PKCS11Error as e:
                res["before"] = type(e).__name__
            p = subprocess.run([{VHSM!r}, "--state", {state!r}, "-f", {str(script)!r}],
                               capture_output=True, text=True, stdin=subprocess.DEVNULL)
            res["admin_rc"], res["admin_out"] = p.returncode, p.stdout + p.stderr
            res["after"] = len(s.generate_random(64))
            res["session"] = s.handle
        out(**res)
    """)
    assert r["before"] == "FunctionFailed"
    assert r["admin_rc"] == 0, r["admin_out"]
    assert "role vSEC_CMS modified" in r["admin_out"]
    assert r["after"] == 8
    assert "RAND" in vhsm_json(state, "role", "show", "--name", "vSEC_CMS")["commands"]
