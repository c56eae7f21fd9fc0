"""The client side of the production port's TLS, from the <PROD-TLS-*> settings.

The server is checked against <PROD-TLS-CA> (or the CA certificates inside a PKCS #12
file); host names are not checked, since HSMs are addressed by IP. The client key may be a
clear PKCS #1 / PKCS #8 PEM, an encrypted PKCS #8 PEM, or a PKCS #12 file, with
<PROD-TLS-KEY-PASS>. Every problem is a TlsConfigError that says which file and what.
"""
from __future__ import annotations

import datetime
import os
import secrets
import ssl
import tempfile
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12


class TlsConfigError(Exception):
    pass


@dataclass
class ClientTls:
    ca_files: list[str]
    cert_file: str | None = None
    key_file: str | None = None
    key_pass: str | None = None
    anonymous: bool = False


def _read(path: str, what: str) -> bytes:
    try:
        with open(os.path.expanduser(path), "rb") as f:
            return f.read()
    except OSError as e:
        raise TlsConfigError(f"{what} {path}: {e.strerror}") from None


def _certs(data: bytes, path: str) -> list[x509.Certificate]:
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as e:
        raise TlsConfigError(f"{path} is not a certificate: {e}") from None


def load_client_identity(cfg: ClientTls) -> tuple[Any, list[x509.Certificate], list[x509.Certificate]]:
    """(private key, certificate chain, CA certificates found in a PKCS #12 file)."""
    data = _read(cfg.key_file, "<PROD-TLS-KEY>")
    password = cfg.key_pass.encode() if cfg.key_pass else None
    if b"-----BEGIN" not in data:  # PKCS #12 (DER)
        try:
            key, cert, extra = pkcs12.load_key_and_certificates(data, password)
        except ValueError as e:
            raise TlsConfigError(f"<PROD-TLS-KEY> {cfg.key_file}: cannot open the PKCS #12 file "
                                 f"(wrong <PROD-TLS-KEY-PASS>?): {e}") from None
        if key is None or cert is None:
            raise TlsConfigError(f"<PROD-TLS-KEY> {cfg.key_file}: the PKCS #12 file lacks a key or certificate")
        return key, [cert], list(extra or [])
    try:
        key = serialization.load_pem_private_key(data, password)
    except TypeError:
        if password is None:
            raise TlsConfigError(f"<PROD-TLS-KEY> {cfg.key_file} is encrypted: set <PROD-TLS-KEY-PASS>") from None
        key = serialization.load_pem_private_key(data, None)  # clear key: the password is not needed
    except ValueError as e:
        raise TlsConfigError(f"<PROD-TLS-KEY> {cfg.key_file}: cannot read the key "
                             f"(wrong <PROD-TLS-KEY-PASS>?): {e}") from None
    if not cfg.cert_file:
        raise TlsConfigError(f"<PROD-TLS-KEY> {cfg.key_file} is a PEM key: <PROD-TLS-CERT> is needed too")
    chain = _certs(_read(cfg.cert_file, "<PROD-TLS-CERT>"), cfg.cert_file)
    return key, chain, []


def client_context(cfg: ClientTls) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    cas: list[x509.Certificate] = []
    for path in cfg.ca_files:
        cas += _certs(_read(path, "<PROD-TLS-CA>"), path)
    if not cfg.anonymous:
        if not cfg.key_file:
            raise TlsConfigError("mutual TLS needs <PROD-TLS-KEY> (or <PROD-TLS-ANONYMOUS> YES)")
        key, chain, extra = load_client_identity(cfg)
        now = datetime.datetime.now(datetime.timezone.utc)
        leaf = chain[0]
        if leaf.not_valid_after_utc < now:
            raise TlsConfigError(f"the client certificate {cfg.cert_file or cfg.key_file} expired on "
                                 f"{leaf.not_valid_after_utc:%Y-%m-%d}")
        if leaf.not_valid_before_utc > now:
            raise TlsConfigError(f"the client certificate {cfg.cert_file or cfg.key_file} is not valid yet")
        if leaf.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo) != \
                key.public_key().public_bytes(serialization.Encoding.DER,
                                              serialization.PublicFormat.SubjectPublicKeyInfo):
            raise TlsConfigError("the client certificate does not match <PROD-TLS-KEY>")
        if not cas:
            cas = extra
        _load_identity(ctx, key, chain)
    if not cas:
        raise TlsConfigError("no CA to check the HSM against: set <PROD-TLS-CA>")
    ctx.load_verify_locations(cadata="\n".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in cas))
    return ctx


def _load_identity(ctx: ssl.SSLContext, key: Any, chain: list[x509.Certificate]) -> None:
    password = secrets.token_hex(16).encode()
    pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain)
    pem += key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.BestAvailableEncryption(password))
    # ssl takes keys only from files: an encrypted copy, removed as soon as it is loaded.
    fd, path = tempfile.mkstemp(prefix="fxpkcs11-tls-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(pem)
        ctx.load_cert_chain(path, password=password)
    finally:
        os.unlink(path)
