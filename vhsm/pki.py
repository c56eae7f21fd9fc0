"""Certificates the device makes and signs: FXCLI's `x509 sign`, the TLS port's CSR and the
device-generated ("Futurex") CA and server certificate of the production port.

Private keys used here live in the key table under the FTK, owned by the Administrator role.
"""
from __future__ import annotations

import datetime
import ipaddress
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DN_ATTRS = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME, "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
            "C": NameOID.COUNTRY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME, "L": NameOID.LOCALITY_NAME,
            "E": NameOID.EMAIL_ADDRESS, "SERIALNUMBER": NameOID.SERIAL_NUMBER}
KEY_USAGES = ("DigitalSignature", "NonRepudiation", "KeyEncipherment", "DataEncipherment", "KeyAgreement",
              "KeyCertSign", "CrlSign")
EKUS = {"server": ExtendedKeyUsageOID.SERVER_AUTH, "client": ExtendedKeyUsageOID.CLIENT_AUTH,
        "codesigning": ExtendedKeyUsageOID.CODE_SIGNING, "email": ExtendedKeyUsageOID.EMAIL_PROTECTION}


class PkiError(ValueError):
    pass


def parse_dn(text: str) -> x509.Name:
    """FXCLI writes distinguished names as 'O=Futurex\\CN=Root' (backslash between RDNs);
    commas and slashes are accepted too."""
    parts = [p for p in text.replace("/", "\\").replace(",", "\\").split("\\") if p.strip()]
    if not parts:
        raise PkiError(f"empty distinguished name {text!r}")
    rdns = []
    for part in parts:
        key, sep, value = part.partition("=")
        oid = DN_ATTRS.get(key.strip().upper())
        if not sep or oid is None or not value.strip():
            raise PkiError(f"{part!r} in {text!r} is not NAME=value with NAME one of {', '.join(DN_ATTRS)}")
        rdns.append(x509.NameAttribute(oid, value.strip()))
    return x509.Name(rdns)


def _key_usage(names: list[str]) -> x509.KeyUsage:
    want = set()
    for n in names:
        match = [k for k in KEY_USAGES if k.lower() == n.lower()]
        if not match:
            raise PkiError(f"unknown key usage {n!r}; known: {', '.join(KEY_USAGES)}")
        want.add(match[0])
    flag = {k: k in want for k in KEY_USAGES}
    return x509.KeyUsage(digital_signature=flag["DigitalSignature"], content_commitment=flag["NonRepudiation"],
                         key_encipherment=flag["KeyEncipherment"], data_encipherment=flag["DataEncipherment"],
                         key_agreement=flag["KeyAgreement"], key_cert_sign=flag["KeyCertSign"],
                         crl_sign=flag["CrlSign"], encipher_only=False, decipher_only=False)


def _ekus(names: list[str]) -> x509.ExtendedKeyUsage:
    oids = []
    for n in names:
        oid = EKUS.get(n.lower())
        if oid is None:
            raise PkiError(f"unknown extended key usage {n!r}; known: Server, Client, CodeSigning, Email")
        oids.append(oid)
    return x509.ExtendedKeyUsage(oids)


def _sans(names: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return out


def sign(*, signer: Any, subject: x509.Name, public_key: Any, issuer: x509.Certificate | None,
         ca: bool = False, pathlen: int | None = None, key_usage: list[str] = (), eku: list[str] = (),
         san: list[str] = (), days: int = 365) -> x509.Certificate:
    """A certificate for public_key, signed by `signer` (self-signed when issuer is None)."""
    if issuer is not None and issuer.public_key().public_numbers() != signer.public_key().public_numbers():
        raise PkiError("the issuer certificate does not belong to the signing key (--private-slot)")
    now = datetime.datetime.now(datetime.timezone.utc)
    issuer_name = issuer.subject if issuer is not None else subject
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name).public_key(public_key)
         .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=pathlen if ca else None), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()), critical=False))
    if key_usage:
        b = b.add_extension(_key_usage(list(key_usage)), critical=True)
    if eku:
        b = b.add_extension(_ekus(list(eku)), critical=False)
    if san:
        b = b.add_extension(x509.SubjectAlternativeName(_sans(list(san))), critical=False)
    return b.sign(signer, hashes.SHA256())


def new_key(algo: str, bits: int | None = None) -> Any:
    algo = algo.upper()
    if algo == "RSA":
        bits = bits or 2048
        if bits not in (2048, 3072, 4096):
            raise PkiError(f"RSA keys are 2048, 3072 or 4096 bits, not {bits}")
        return rsa.generate_private_key(65537, bits)
    if algo in ("ECC", "EC", "ECDSA"):
        curves = {None: ec.SECP256R1(), 256: ec.SECP256R1(), 384: ec.SECP384R1(), 521: ec.SECP521R1()}
        if bits not in curves:
            raise PkiError(f"EC keys are 256, 384 or 521 bits, not {bits}")
        return ec.generate_private_key(curves[bits])
    raise PkiError(f"unknown algorithm {algo!r}; use RSA or ECC")


def csr(key: Any, subject: x509.Name) -> x509.CertificateSigningRequest:
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())


def load_csr(data: bytes) -> x509.CertificateSigningRequest:
    try:
        req = (x509.load_pem_x509_csr(data) if b"-----BEGIN" in data else x509.load_der_x509_csr(data))
    except ValueError as e:
        raise PkiError(f"not a certificate signing request: {e}") from None
    if not req.is_signature_valid:
        raise PkiError("the CSR's signature does not verify")
    return req


def load_certs(data: bytes) -> list[x509.Certificate]:
    try:
        certs = (x509.load_pem_x509_certificates(data) if b"-----BEGIN" in data
                 else [x509.load_der_x509_certificate(data)])
    except ValueError as e:
        raise PkiError(f"not a certificate: {e}") from None
    return certs


def pem(cert: x509.Certificate | x509.CertificateSigningRequest) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def same_key(a: Any, b: Any) -> bool:
    der = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return a.public_bytes(*der) == b.public_bytes(*der)
