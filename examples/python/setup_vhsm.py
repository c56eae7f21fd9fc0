"""A fresh vHSM for the examples, and an fxpkcs11.cfg pointing at it.

    .venv/bin/python examples/python/setup_vhsm.py DIR
        # prints DIR/fxpkcs11.cfg: the embedded vHSM (state DIR/state)
    .venv/bin/python examples/python/setup_vhsm.py --network 127.0.0.1:9100 DIR
        # prints DIR/fxpkcs11-net.cfg: the same state served by
        #   .venv/bin/vhsm --state DIR/state serve --port 9100
        # with mutual TLS (a client key, and its certificate from the device's Futurex CA)

The device gets a fresh FTK, an application partition `Examples` (key range 0..999, every
Excrypt command the library sends whitelisted) and the crypto operator `crypto1` whose
password `safest` is the PIN. The examples' run.sh scripts call this when they are given no
fxpkcs11.cfg (the embedded default); given one, they use it as it is (e.g. one whose
<ADDRESS> names a `vhsm serve` server).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

from vhsm.commands.catalog import whitelistable  # noqa: E402
from vhsm.device import VirtualHSM  # noqa: E402
from vhsm.majorkeys import generate_ftk  # noqa: E402
from vhsm.passwords import hash_password  # noqa: E402

PARTITION, IDENTITY, PASSWORD = "Examples", "crypto1", "safest"


def setup(folder: str) -> str:
    folder = os.path.abspath(folder)
    state = os.path.join(folder, "state")
    os.makedirs(folder, exist_ok=True)
    dev = VirtualHSM(state)
    try:
        dev.load_ftk(generate_ftk())
        dev.store.put_role({"name": PARTITION, "kind": "application", "perms": ["Keys", "Keys:Authorized"],
                            "key_ranges": [(0, 999)], "commands": list(whitelistable()), "settings": {}})
        dev.store.put_identity({"name": IDENTITY, "role": PARTITION, "password_hash": hash_password(PASSWORD),
                                "flags": {}, "failed_logins": 0})
    finally:
        dev.close()
    cfg = os.path.join(folder, "fxpkcs11.cfg")
    with open(cfg, "w") as f:
        f.write(f"""# Written by examples/python/setup_vhsm.py: one slot on an embedded virtual HSM.
<HSM>
  <SLOT>        0           </SLOT>
  <LABEL>       Futurex     </LABEL>
  <CRYPTO-OPR>  {IDENTITY}  </CRYPTO-OPR>
  <VHSM-STATE>  {state}     </VHSM-STATE>
</HSM>
<LOG-MODE> INFO </LOG-MODE>
<LOG-FILE> {os.path.join(folder, "fxpkcs11.log")} </LOG-FILE>
""")
    return cfg


def network_config(folder: str, address: str) -> str:
    """A client identity from the device's Futurex PKI (two factory administrators log in, as
    `tls-ports` requires) and an fxpkcs11.cfg that reaches `vhsm serve` at `address`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = os.path.abspath(folder)
    pki = os.path.join(folder, "pki")
    os.makedirs(pki, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fxpkcs11 examples")]))
           .sign(key, hashes.SHA256()))
    paths = {n: os.path.join(pki, n) for n in ("client.key", "client.csr", "client.pem", "ca.pem", "pki.fxcli")}
    with open(paths["client.key"], "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    os.chmod(paths["client.key"], 0o600)
    with open(paths["client.csr"], "wb") as f:
        f.write(csr.public_bytes(serialization.Encoding.PEM))
    with open(paths["pki.fxcli"], "w") as f:
        f.write("login user -u Admin1 -p safest\nlogin user -u Admin2 -p safest\n"
                f'tls-ports export -p "Excrypt Port" --ca-out {paths["ca.pem"]}\n'
                f'tls-ports client-cert -p "Excrypt Port" --csr {paths["client.csr"]} --out {paths["client.pem"]}\n')
    vhsm = os.path.join(os.path.dirname(sys.executable), "vhsm")
    subprocess.run([vhsm, "--state", os.path.join(folder, "state"), "-f", paths["pki.fxcli"]], check=True,
                   stdout=subprocess.DEVNULL)
    cfg = os.path.join(folder, "fxpkcs11-net.cfg")
    with open(cfg, "w") as f:
        f.write(f"""# Written by examples/python/setup_vhsm.py: one slot on `vhsm serve` at {address}.
<HSM>
  <SLOT>           0           </SLOT>
  <LABEL>          Futurex     </LABEL>
  <CRYPTO-OPR>     {IDENTITY}  </CRYPTO-OPR>
  <ADDRESS>        {address}   </ADDRESS>
  <PROD-TLS-CA>    {paths["ca.pem"]} </PROD-TLS-CA>
  <PROD-TLS-CERT>  {paths["client.pem"]} </PROD-TLS-CERT>
  <PROD-TLS-KEY>   {paths["client.key"]} </PROD-TLS-KEY>
</HSM>
<LOG-MODE> INFO </LOG-MODE>
<LOG-FILE> {os.path.join(folder, "fxpkcs11-net.log")} </LOG-FILE>
""")
    return cfg


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="a fresh vHSM for the examples and its fxpkcs11.cfg")
    ap.add_argument("--network", metavar="HOST:PORT", help="also write fxpkcs11-net.cfg for `vhsm serve` there")
    ap.add_argument("dir")
    a = ap.parse_args()
    cfg = setup(a.dir)
    print(network_config(a.dir, a.network) if a.network else cfg)
