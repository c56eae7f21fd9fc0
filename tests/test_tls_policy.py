"""The TLS policy of the production port, checked from the server's side with raw clients.

The library refuses bad client files before it connects (test_network.py::
test_bad_client_files_are_refused_with_a_reason) and checks the server against <PROD-TLS-CA>
(test_network.py::test_server_certificate_is_checked_against_prod_tls_ca); TLS 1.1 is refused
in test_network.py::test_tls_1_1_is_refused. Here a client that does not use the library
tries what the library would not: no certificate, another CA's, an expired one from the
device's own CA, a key that does not match, TLS 1.0 and 1.1.
"""
from __future__ import annotations

import datetime
import json
import os
import socket
import ssl
import warnings
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from net_support import (RawTls, ServerProcess, fields, issue_cert, make_client_identity, make_net_state, make_test_ca,
                         openssl, tls_context, vhsm, wait_until)
from support import build_library


@pytest.fixture(scope="module")
def net(tmp_path_factory) -> SimpleNamespace:
    build_library()
    base = str(tmp_path_factory.mktemp("tlspolicy"))
    state = os.path.join(base, "state")
    make_net_state(state)
    ident = make_client_identity(state, os.path.join(base, "pki"))
    server = ServerProcess(state, base, name="tls", args=("--handshake-timeout", "3"))
    server.start()
    yield SimpleNamespace(base=base, state=state, ident=ident, server=server)
    server.stop()


def refused(net, ctx: ssl.SSLContext) -> str:
    """Connect with `ctx` and send ECHO: the handshake or the first read must fail. Returns
    the server's log line for this connection."""
    raw = socket.create_connection(("127.0.0.1", net.server.port), timeout=10)
    peer = f"127.0.0.1:{raw.getsockname()[1]}"
    try:
        tls = ctx.wrap_socket(raw)
        tls.settimeout(10)
        tls.sendall(b"[AOECHO;]")
        data = tls.recv(4096)
        assert b"ANY" not in data, data
    except (ssl.SSLError, ConnectionError):
        pass
    finally:
        raw.close()

    def line():
        for text in net.server.log_text().splitlines():
            if peer in text and "TLS handshake failed" in text:
                return text
        return None
    found = wait_until(line, 10, what=f"a refused handshake from {peer}")
    assert f"{peer}: connected" not in net.server.log_text()
    return found


def device_ca_cert(net, name: str, not_before: datetime.datetime, not_after: datetime.datetime) -> tuple[str, str]:
    """A client certificate signed by the device's own Futurex CA with the dates given."""
    from vhsm.device import VirtualHSM
    from vhsm.tlsports import futurex_pki
    dev = VirtualHSM(net.state)
    try:
        doc = futurex_pki(dev)
    finally:
        dev.close()
    ca = x509.load_pem_x509_certificate(doc["ca"].encode())
    ca_key = serialization.load_pem_private_key(doc["ca_key"].encode(), None)
    return issue_cert(net.base, name, ca_key, ca.subject, not_before=not_before, not_after=not_after)


def test_mutual_authentication_is_the_default(net):
    ports = json.loads(vhsm(net.state, "--output", "json", "tls-ports", "list").stdout)
    prod = [p for p in (ports if isinstance(ports, list) else ports.get("ports", [])) if "Excrypt" in json.dumps(p)]
    assert prod and all(not p.get("anon") for p in prod), ports
    line = refused(net, tls_context(ca=net.ident.ca))
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in line or "certificate required" in line.lower(), line
    c = RawTls(net.server.port, net.ident)  # the control: the right certificate is let in
    try:
        assert fields(c.call("[AOECHO;]"))["AN"] == "Y"
    finally:
        c.close()


def test_client_certificate_from_another_ca(net, tmp_path):
    ca = make_test_ca(str(tmp_path / "ca"))
    cert, key = ca.issue("stranger")
    line = refused(net, tls_context(ca=net.ident.ca, cert=cert, key=key))
    assert "certificate verify failed" in line or "unknown ca" in line.lower(), line


def test_expired_certificate_from_the_device_ca(net):
    now = datetime.datetime.now(datetime.timezone.utc)
    cert, key = device_ca_cert(net, "expired", now - datetime.timedelta(days=400), now - datetime.timedelta(days=1))
    line = refused(net, tls_context(ca=net.ident.ca, cert=cert, key=key))
    assert "certificate has expired" in line or "certificate verify failed" in line, line
    # the same CA, valid dates: let in (the refusal was for the dates)
    good, good_key = device_ca_cert(net, "fresh", now - datetime.timedelta(days=1), now + datetime.timedelta(days=1))
    c = RawTls(net.server.port, ctx=tls_context(ca=net.ident.ca, cert=good, key=good_key))
    try:
        assert fields(c.call("[AOECHO;]"))["AN"] == "Y"
    finally:
        c.close()


def test_certificate_whose_key_does_not_match(net, tmp_path):
    other_key = str(tmp_path / "other.key")
    openssl("genrsa", "-traditional", "-out", other_key, "2048", cwd=str(tmp_path))
    # no TLS stack presents a certificate without proving it holds the key: OpenSSL refuses
    # the pair when it is loaded, in Python and in s_client alike
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with pytest.raises(ssl.SSLError, match="(?i)key values mismatch"):
        ctx.load_cert_chain(net.ident.cert, other_key)
    before = len(net.server.log_text())
    p = openssl("s_client", "-connect", net.server.address, "-CAfile", net.ident.ca, "-cert", net.ident.cert,
                "-key", other_key, cwd=str(tmp_path), check=False)
    assert p.returncode != 0 and "key values mismatch" in (p.stdout + p.stderr).lower(), p.stderr[-500:]
    assert "connected (ProductionLink" not in net.server.log_text()[before:]


@pytest.mark.parametrize("version", ["TLSv1", "TLSv1_1"])
def test_tls_below_1_2_is_refused(net, version):
    i = net.ident
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = tls_context(i)
        ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    raw = socket.create_connection(("127.0.0.1", net.server.port), timeout=10)
    peer = f"127.0.0.1:{raw.getsockname()[1]}"
    try:
        with pytest.raises(ssl.SSLError) as err:
            ctx.wrap_socket(raw)
    finally:
        raw.close()
    text = str(err.value)
    if "NO_PROTOCOLS_AVAILABLE" in text.upper():
        # the local OpenSSL would not even offer it; s_client at security level 0 does
        flag = "-tls1" if version == "TLSv1" else "-tls1_1"
        p = openssl("s_client", "-connect", net.server.address, "-CAfile", i.ca, "-cert", i.cert, "-key", i.key,
                    flag, "-cipher", "DEFAULT@SECLEVEL=0", cwd=net.base, check=False)
        assert p.returncode != 0 and "alert protocol version" in p.stdout + p.stderr, p.stderr[-400:]
    else:
        assert "PROTOCOL_VERSION" in text.upper() or "protocol version" in text, text
        line = wait_until(lambda: next((x for x in net.server.log_text().splitlines() if peer in x), None), 10,
                          what="the server's log line")
        assert "UNSUPPORTED_PROTOCOL" in line or "version" in line.lower(), line
