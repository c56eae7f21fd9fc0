"""TLS for the device's ports, as `tls-ports` configured it.

- "Futurex" PKI (the default): a CA and server certificate the device made itself, kept in
  secure memory like the real device's factory certificates.
- "Generated" PKI: the key pair `tls-ports request` made (in the key table, under the FTK)
  with the certificate and CA chain `tls-ports set --cert/--ca` loaded.
Mutual authentication unless the port allows anonymous clients; TLS 1.2 at least.
"""
from __future__ import annotations

import json
import os
import secrets
import socket
import ssl
import tempfile
from typing import Any

from cryptography.hazmat.primitives import serialization

from vhsm import pki

FUTUREX_BLOB = "tls-futurex"


class TlsSetupError(Exception):
    pass


def futurex_pki(device: Any) -> dict:
    """The device's own CA and server certificate for its ports, made on first use."""
    raw = device.secure.load_blob(FUTUREX_BLOB)
    if raw is not None:
        return json.loads(raw)
    ca_key = pki.new_key("ECC", 256)
    serial = device.serial
    ca = pki.sign(signer=ca_key, subject=pki.parse_dn(f"O=Futurex\\CN=Vectera Plus {serial} CA"),
                  public_key=ca_key.public_key(), issuer=None, ca=True, pathlen=0,
                  key_usage=["KeyCertSign", "CrlSign", "DigitalSignature"], days=3650)
    key = pki.new_key("ECC", 256)
    names = sorted({"localhost", "127.0.0.1", "::1", socket.gethostname()})
    cert = pki.sign(signer=ca_key, subject=pki.parse_dn(f"O=Futurex\\CN=Vectera Plus {serial}"),
                    public_key=key.public_key(), issuer=ca, key_usage=["DigitalSignature", "KeyAgreement"],
                    eku=["Server"], san=names, days=3650)
    doc = {"ca": pki.pem(ca).decode(), "cert": pki.pem(cert).decode(), "key": _key_pem(key).decode(),
           "ca_key": _key_pem(ca_key).decode()}
    device.secure.store_blob(FUTUREX_BLOB, json.dumps(doc).encode())
    return doc


def _key_pem(key: Any, password: bytes | None = None) -> bytes:
    enc = serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)


def port_pki(session: Any, name: str) -> tuple[Any, str, list[str], dict]:
    """(private key, certificate chain PEM, CA PEMs, settings) for a port."""
    settings = session.tls_settings(name)
    if settings["pki_source"] == "Generated":
        if settings.get("key_slot") is None or not settings.get("cert") or not settings.get("ca"):
            raise TlsSetupError(f"{name}: the Generated PKI is incomplete (tls-ports request, x509 sign, "
                                "tls-ports set --cert --ca)")
        try:
            _, key = session._device_key(str(settings["key_slot"]))
        except Exception as e:
            raise TlsSetupError(f"{name}: the port's key cannot be used: {e}") from None
        return key, settings["cert"], list(settings["ca"]), settings
    doc = futurex_pki(session.device)
    key = serialization.load_pem_private_key(doc["key"].encode(), None)
    return key, doc["cert"], [doc["ca"]], settings


def server_context(key: Any, chain_pem: str, ca_pems: list[str], *, require_client: bool,
                   scratch_dir: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    password = secrets.token_hex(16).encode()
    # ssl loads keys only from files: hand it an encrypted copy that lives for one call.
    fd, path = tempfile.mkstemp(prefix=".tls-", dir=scratch_dir)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(chain_pem.encode() + b"\n" + _key_pem(key, password))
        ctx.load_cert_chain(path, password=password)
    finally:
        os.unlink(path)
    ctx.load_verify_locations(cadata="\n".join(ca_pems))
    ctx.verify_mode = ssl.CERT_REQUIRED if require_client else ssl.CERT_OPTIONAL
    return ctx
