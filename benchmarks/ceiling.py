"""The ceiling: p11bench's crypto operations called directly on `cryptography` in a loop,
with the same data sizes, so the table can show what the PKCS #11 path adds per call.

Also the floor of a network round trip: a Python TLS 1.3 echo over loopback between two
processes, the least any over-TLS call can cost here, once with receives that block and
once polling first, as the library and `vhsm serve` do (docs/network.md).

    ceiling.py --seconds S [--ops a,b] > ceiling.json   (p11bench's --json shape)
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import select
import socket
import ssl
import tempfile
import time
from typing import Callable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.x509.oid import NameOID

DATA = b"\x5a" * 65536


def _rsa_sign() -> Callable[[], object]:
    key = rsa.generate_private_key(65537, 2048)
    return lambda: key.sign(DATA[:1024], padding.PKCS1v15(), hashes.SHA256())


def _rsa_verify() -> Callable[[], object]:
    key = rsa.generate_private_key(65537, 2048)
    sig = key.sign(DATA[:1024], padding.PKCS1v15(), hashes.SHA256())
    pub = key.public_key()
    return lambda: pub.verify(sig, DATA[:1024], padding.PKCS1v15(), hashes.SHA256())


def _ecdsa_sign() -> Callable[[], object]:
    key = ec.generate_private_key(ec.SECP256R1())
    return lambda: key.sign(DATA[:32], ec.ECDSA(hashes.SHA256()))


def _aes_cbc(n: int) -> Callable[[], object]:
    key, iv = os.urandom(32), bytes(16)

    def run() -> bytes:
        enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
        return enc.update(DATA[:n]) + enc.finalize()
    return run


def _hmac() -> Callable[[], object]:
    key = os.urandom(32)

    def run() -> bytes:
        h = hmac.HMAC(key, hashes.SHA256())
        h.update(DATA[:64])
        return h.finalize()
    return run


OPS: dict[str, Callable[[], Callable[[], object]]] = {
    "rsa2048-sign": _rsa_sign, "rsa2048-verify": _rsa_verify, "ecdsa-p256-sign": _ecdsa_sign,
    "aes256-cbc-16": lambda: _aes_cbc(16), "aes256-cbc-64k": lambda: _aes_cbc(65536),
    "hmac-sha256-64": _hmac,
}


def rate(fn: Callable[[], object], seconds: float) -> float:
    fn()
    n, t0 = 0, time.perf_counter()
    while True:
        for _ in range(16):
            fn()
        n += 16
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return n / elapsed


# ------------------------------------------------------------------ TLS round-trip floor

def _self_signed(folder: str) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = time.time()
    import datetime
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(datetime.datetime.fromtimestamp(now - 60))
            .not_valid_after(datetime.datetime.fromtimestamp(now + 3600)).sign(key, hashes.SHA256()))
    cpath, kpath = os.path.join(folder, "c.pem"), os.path.join(folder, "k.pem")
    with open(cpath, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(kpath, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cpath, kpath


POLL_S = 500e-6


def _recv(tls: ssl.SSLSocket, poll: bool) -> bytes:
    """A receive; with `poll`, the socket is polled for up to POLL_S before blocking."""
    if poll and not tls.pending():
        end = time.perf_counter() + POLL_S
        while not select.select([tls], [], [], 0)[0] and time.perf_counter() < end:
            pass
    return tls.recv(65536)


def _echo_server(listener: socket.socket, cert: str, key: str, poll: bool) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tls = ctx.wrap_socket(conn, server_side=True)
    while True:
        data = _recv(tls, poll)
        if not data:
            return
        tls.sendall(data)


def tls_round_trip(seconds: float, poll: bool = False) -> float:
    """Round trips per second of a 64-byte message over TLS between two Python processes,
    each blocking in its receive, or (`poll`) polling first as the library and server do."""
    with tempfile.TemporaryDirectory() as folder:
        cert, key = _self_signed(folder)
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        proc = multiprocessing.get_context("fork").Process(target=_echo_server, args=(listener, cert, key, poll))
        proc.start()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.load_verify_locations(cert)
        raw = socket.create_connection(listener.getsockname())
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        tls = ctx.wrap_socket(raw, server_hostname="localhost")
        msg = b"x" * 64
        try:
            return rate(lambda: (tls.sendall(msg), _recv(tls, poll)), seconds)
        finally:
            tls.close()
            proc.join(5)
            listener.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--ops", default="")
    a = ap.parse_args()
    wanted = [o for o in a.ops.split(",") if o] or list(OPS)
    ops = {op: rate(OPS[op](), a.seconds) for op in wanted if op in OPS}
    out = {"module": "cryptography (direct)", "threads": 1, "ops": ops,
           "tls_round_trip": tls_round_trip(a.seconds), "tls_round_trip_polling": tls_round_trip(a.seconds, True)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
