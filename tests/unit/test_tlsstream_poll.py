"""The receive's short poll before blocking (vhsm/tlsstream.py): when it polls, when it does
not, and that a receive still gets its bytes either way."""
from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from vhsm import tlsstream
from vhsm.tlsstream import TlsStream


@pytest.fixture(scope="module")
def contexts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .sign(key, hashes.SHA256()))
    (folder / "c.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "k.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(folder / "c.pem", folder / "k.pem")
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(folder / "c.pem")
    return server, client


@pytest.fixture
def pair(contexts):
    a, b = socket.socketpair()
    srv = TlsStream(a, contexts[0], server_side=True, timeout=5)
    cli = TlsStream(b, contexts[1], server_side=False, server_hostname="localhost", timeout=5)
    t = threading.Thread(target=srv.handshake)
    t.start()
    cli.handshake()
    t.join()
    yield srv, cli
    srv.close()
    cli.close()


@pytest.fixture(autouse=True)
def budget(monkeypatch):
    monkeypatch.setattr(tlsstream, "_quiet_until", 0.0)
    monkeypatch.setattr(tlsstream, "SPIN_S", 0.02)
    monkeypatch.setattr(tlsstream, "_PREEMPTED_S", 10.0)  # a loaded test machine preempts at will


def forget_other_streams(monkeypatch) -> None:
    """The handshakes of a pair count as both streams being busy: start from a quiet board."""
    monkeypatch.setattr(tlsstream, "_board", bytearray(tlsstream._BOARD.size))


def test_a_reply_that_comes_while_polling_is_read_without_blocking(pair, monkeypatch):
    srv, cli = pair
    cli.sendall(b"first")
    assert srv.recv("cmd") == b"first"
    forget_other_streams(monkeypatch)
    threading.Timer(0.005, cli.sendall, args=(b"late",)).start()
    start = time.perf_counter()
    assert srv._poll(start, "cmd") is not None  # the bytes came within the 20 ms poll
    assert srv._waits["cmd"] >= 0


def test_polling_gives_up_after_its_budget_and_the_receive_still_blocks_for_the_bytes(pair, monkeypatch):
    srv, cli = pair
    forget_other_streams(monkeypatch)
    start = time.perf_counter()
    assert srv._poll(start, None) is None
    assert 0.015 < time.perf_counter() - start < 0.5
    threading.Timer(0.05, cli.sendall, args=(b"after",)).start()
    assert srv.recv() == b"after"


def test_no_polling_while_another_stream_is_busy(pair, contexts, monkeypatch):
    srv, cli = pair
    forget_other_streams(monkeypatch)
    other_a, other_b = socket.socketpair()
    other = TlsStream(other_a, contexts[0], server_side=True, timeout=5)
    try:
        tlsstream._BOARD.pack_into(tlsstream._board, 0, other._key, time.perf_counter(), 0, 0.0)  # began one just now
        start = time.perf_counter()
        assert srv._poll(start, None) is None
        assert time.perf_counter() - start < 0.01  # refused at once, not after the budget
    finally:
        other.close()
        other_b.close()


def test_no_polling_for_what_recently_took_longer_than_the_budget(pair, monkeypatch):
    srv, _ = pair
    forget_other_streams(monkeypatch)
    srv._waits["slow"] = 1.0
    srv._receives = 1
    start = time.perf_counter()
    assert srv._poll(start, "slow") is None
    assert time.perf_counter() - start < 0.01


def test_zero_turns_polling_off_and_a_bad_setting_keeps_the_default(pair, monkeypatch):
    srv, _ = pair
    forget_other_streams(monkeypatch)
    monkeypatch.setattr(tlsstream, "SPIN_S", 0.0)
    start = time.perf_counter()
    assert srv._poll(start, None) is None and time.perf_counter() - start < 0.01
    assert tlsstream._spin_setting("0") == 0.0
    assert tlsstream._spin_setting("750") == 750e-6
    assert tlsstream._spin_setting("fast") == tlsstream._spin_setting(None) == 500e-6
    assert tlsstream._spin_setting("-5") == 0.0
