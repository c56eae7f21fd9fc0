"""libfxpkcs11.so under GnuTLS's p11tool, p11-kit, OpenSSH's ssh-keygen and NSS, driven for real.

Each has a one-command example (examples/p11-kit/run.sh covers p11tool too, examples/ssh,
examples/nss) that checks its own steps; these tests run them against a fresh embedded vHSM
and against `vhsm serve`, and check the results independently where it matters (the SSH keys
against python-pkcs11's view of the same keys, the p11-kit module file against the module path).

p11-kit ignores user configuration in programs running as root; as root the p11-kit consumers
run as uid 1000 in a user namespace (`unshare --user --map-user=1000`), as the example does.
"""
from __future__ import annotations

import os
import re
import subprocess

import pytest

from integration_fixtures import make_env, run_child
from support import LIB, ROOT, build_library, child_env
from test_ecosystem_openssl import require, run_example, served_config

PROXY = "/usr/lib/x86_64-linux-gnu/p11-kit-proxy.so"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    cfg, server = served_config(str(tmp_path_factory.mktemp("served")))
    yield cfg, server
    server.stop()


# ------------------------------------------------------------------ p11tool and p11-kit

def test_p11tool_and_p11kit_example(tmp_path):
    require("p11tool", "p11-kit", "pkcs11-tool", files=(PROXY,))
    out = run_example("p11-kit", str(tmp_path), HOME=str(tmp_path / "home")).stdout
    # p11tool --provider --list-tokens / --list-all (public objects, then all after login)
    assert "Label: Futurex" in out and "Manufacturer: Futurex" in out and "Model: Vectera Plus" in out
    assert re.search(r"object=p11tool-[0-9a-f]+;type=public", out)
    assert re.search(r"object=p11tool-[0-9a-f]+;type=private", out)
    assert "Type: Private key (EC/ECDSA-SECP256R1)" in out
    # p11-kit list-modules, p11-kit-proxy.so and p11tool without --provider
    assert f"fxpkcs11: {LIB}" in out
    assert re.search(r"token label\s+: Futurex", out)
    assert re.search(r"^pkcs11:.*token=Futurex$", out, re.M)
    module = tmp_path / "config" / "pkcs11" / "modules" / "fxpkcs11.module"
    assert f"module: {LIB}\n" in module.read_text()
    assert not (tmp_path / "home" / ".config").exists()  # the example used its own XDG_CONFIG_HOME


def test_p11kit_install_user_scope(tmp_path):
    """install.sh writes ~/.config/pkcs11/modules/fxpkcs11.module (a temporary HOME here);
    p11-kit list-modules then shows the module and pkcs11-tool reaches the token via the proxy."""
    require("p11-kit", "pkcs11-tool", files=(PROXY,))
    build_library()
    env = make_env(str(tmp_path / "vhsm"))
    home = tmp_path / "home"
    home.mkdir()
    e = child_env(env.cfg, HOME=str(home))
    e.pop("XDG_CONFIG_HOME", None)
    inst = subprocess.run(["bash", os.path.join(ROOT, "examples", "p11-kit", "install.sh")], cwd="/", env=e,
                          capture_output=True, text=True, timeout=60)
    assert inst.returncode == 0, inst.stderr
    module = home / ".config" / "pkcs11" / "modules" / "fxpkcs11.module"
    assert inst.stdout.strip() == str(module)
    lines = [ln for ln in module.read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines == [f"module: {LIB}"]

    as_user = ["unshare", "--user", "--map-user=1000", "--map-group=1000"] if os.geteuid() == 0 else []
    mods = subprocess.run(as_user + ["p11-kit", "list-modules"], cwd="/", env=e, capture_output=True, text=True,
                          timeout=60)
    assert mods.returncode == 0, mods.stderr
    block = mods.stdout.split(f"fxpkcs11: {LIB}", 1)
    assert len(block) == 2, mods.stdout
    assert "library-manufacturer: Futurex" in block[1] and "token: Futurex" in block[1]
    slots = subprocess.run(as_user + ["pkcs11-tool", "--module", PROXY, "-L"], cwd="/", env=e,
                           capture_output=True, text=True, timeout=60)
    assert slots.returncode == 0, slots.stderr
    assert re.search(r"token label\s+: Futurex", slots.stdout), slots.stdout
    assert re.search(r"token model\s+: Vectera Plus", slots.stdout)


# ------------------------------------------------------------------ ssh-keygen -D

def test_ssh_keygen_lists_rsa_and_ec_keys(tmp_path):
    """Key pairs made with python-pkcs11 (public halves CKA_PRIVATE false); ssh-keygen -D lists
    them without a PIN exactly as cryptography encodes the public keys python-pkcs11 reads."""
    require("ssh-keygen")
    build_library()
    env = make_env(str(tmp_path / "vhsm"))
    r = run_child(env.cfg, """
        import base64
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec, rsa
        from pkcs11.util.ec import encode_named_curve_parameters
        token = pkcs11.lib(LIB).get_token(token_label="Futurex")
        keys = {}
        with token.open(rw=True, user_pin=PIN) as s:
            pub, _ = s.generate_keypair(KeyType.RSA, 2048, store=True, label="ssh-rsa-py", id=b"\\x21",
                                        public_template={Attribute.PRIVATE: False, Attribute.VERIFY: True})
            n = int.from_bytes(pub[Attribute.MODULUS], "big")
            e = int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big")
            keys["rsa"] = rsa.RSAPublicNumbers(e, n).public_key()
            params = s.create_domain_parameters(KeyType.EC, {
                Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
            pub, _ = params.generate_keypair(store=True, label="ssh-ec-py", id=b"\\x22",
                                             public_template={Attribute.PRIVATE: False, Attribute.VERIFY: True})
            point = pub[Attribute.EC_POINT]
            if point[0] == 0x04 and len(point) == 67:  # DER OCTET STRING around the point
                point = point[2:]
            keys["ec"] = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
            private_flags = [bool(o[Attribute.PRIVATE]) for o in s.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY})]
        out(private_flags=private_flags, **{k: v.public_bytes(serialization.Encoding.OpenSSH,
                                                              serialization.PublicFormat.OpenSSH).decode()
                                            for k, v in keys.items()})
    """)
    assert r["private_flags"] == [False, False]
    proc = subprocess.run(["ssh-keygen", "-D", LIB], cwd="/", env=child_env(env.cfg), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    listed = {" ".join(ln.split()[:2]): ln.split()[2:] for ln in proc.stdout.splitlines() if ln.strip()}
    assert r["rsa"].startswith("ssh-rsa ") and r["ec"].startswith("ecdsa-sha2-nistp256 ")
    assert listed.get(r["rsa"]) == ["ssh-rsa-py"], proc.stdout
    assert listed.get(r["ec"]) == ["ssh-ec-py"], proc.stdout
    assert len(listed) == 2


def test_ssh_example(tmp_path):
    require("ssh-keygen", "pkcs11-tool", "openssl")
    out = run_example("ssh", str(tmp_path)).stdout
    assert out.count("found: ") == 2
    assert re.search(r"^ssh-rsa AAAA\S+ ssh-rsa-[0-9a-f]+$", out, re.M)
    assert re.search(r"^ecdsa-sha2-nistp256 AAAA\S+ ssh-ec-[0-9a-f]+$", out, re.M)


# ------------------------------------------------------------------ NSS

def test_nss_example(tmp_path):
    require("modutil", "certutil", "pkcs11-tool", "openssl")
    out = run_example("nss", str(tmp_path)).stdout
    assert 'Module "Futurex" added to database.' in out
    assert f"Library file: {LIB}" in out and re.search(r"Token Name: Futurex\s", out)
    m = re.search(r"^Futurex:(nss-rsa-[0-9a-f]+)\s+u,u,u$", out, re.M)
    assert m, out
    assert re.search(rf"^<\s*0> rsa\s+[0-9a-f]+\s+{m.group(1)}$", out, re.M), out
    assert f'Subject: "CN={m.group(1)}"' in out


# ------------------------------------------------------------------ the same examples over the network

@pytest.mark.parametrize("example", ["p11-kit", "ssh", "nss"])
def test_tool_examples_against_vhsm_serve(example, served, tmp_path):
    require("p11tool", "p11-kit", "ssh-keygen", "modutil", "certutil", "pkcs11-tool", "openssl")
    cfg, server = served
    out = run_example(example, str(tmp_path), cfg, HOME=str(tmp_path / "home")).stdout
    marker = {"p11-kit": f"fxpkcs11: {LIB}", "ssh": "found: ecdsa-sha2-nistp256", "nss": "u,u,u"}[example]
    assert marker in out, out
    assert "connected (ProductionLink, client certificate)" in server.log_text()
