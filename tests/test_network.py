"""The network HSM: `vhsm serve` on loopback with real TLS, and libfxpkcs11.so connecting to it.

One shared state and server (module scope) carry the tests that do not disturb it; tests that
stop, kill, pause or reconfigure a server start their own (on the shared state when they only
need a second server, on a new state when they change settings). Clients run in child
processes, with their own fxpkcs11.cfg.
"""
from __future__ import annotations

import os
import re
import select
import signal
import socket
import ssl
import subprocess
import time
import warnings
from types import SimpleNamespace

import pytest

from fxpkcs11 import ck
from integration_fixtures import run_child
from net_support import (ROOT, RawTls, ServerProcess, config_log, fields, hsm_block, identity_config,
                         make_client_identity, make_net_state, make_test_ca, openssl, pid_alive, read_text,
                         vhsm, vhsm_script, wait_until, write_net_config)
from support import build_library
from vhsm import wire
from vhsm.excrypt import Command, Tag

SETUP = os.path.join(ROOT, "examples", "vectera-setup.fxcli")
DEMO = os.path.join(ROOT, "examples", "demo-partition.fxcli")
TLS_SCRIPT = os.path.join(ROOT, "examples", "vectera-tls.fxcli")
GUIDE_ADMINS = (("Admin1", "Admin1-Pass"), ("Admin2", "Admin2-Pass"))
MAX_MESSAGE = 32768

# python-pkcs11 work over the network: key pair, sign, verify (also checked outside the HSM).
WORK = """
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
tok = pkcs11.lib(LIB).get_token(token_label=LABEL)
with tok.open(rw=True, user_pin=PIN) as s:
    pub, priv = s.generate_keypair(KeyType.RSA, 2048)
    data = b"signed over the network"
    sig = priv.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS)
    ok = pub.verify(data, sig, mechanism=Mechanism.SHA256_RSA_PKCS)
    n = int.from_bytes(pub[Attribute.MODULUS], "big")
    e = int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big")
    rsa.RSAPublicNumbers(e, n).public_key().verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
    serial = tok.serial.decode() if isinstance(tok.serial, bytes) else tok.serial
    out(verified=ok, bits=n.bit_length(), random=len(s.generate_random(128)) if RANDOM else None, serial=serial)
"""


def work(cfg: str, label: str = "Futurex", timeout: float = 90, random: bool = True) -> dict:
    r = run_child(cfg, f"LABEL = {label!r}\nRANDOM = {random!r}\n" + WORK, timeout=timeout)
    assert r["verified"] is True and r["bits"] == 2048 and r["random"] == (16 if random else None), r
    return r


def probe(configs: list[str], *, login: bool = True) -> list[dict]:
    """Raw CKRs of C_Initialize .. C_Finalize for each configuration, in one child process."""
    r = run_child(configs[0], f"""
        from net_support import probe
        out(results=probe({configs!r}, login={login!r}))
    """, timeout=120)
    return r["results"]


def wait_log(server: ServerProcess, *needles: str, timeout: float = 10) -> str:
    """The server log once it has a line containing every needle."""
    def found():
        for line in server.log_text().splitlines():
            if all(n in line for n in needles):
                return line
        return None
    return wait_until(found, timeout, what=f"server log line with {needles}")


def log_has(path: str, pattern: str) -> bool:
    return re.search(pattern, read_text(path), re.IGNORECASE) is not None


def echo_ok(server: ServerProcess, ident) -> None:
    c = RawTls(server.port, ident)
    try:
        f = fields(c.call("[AOECHO;AGstill-here;]"))
        assert f["AN"] == "Y" and f["AG"] == "still-here", f
    finally:
        c.close()


def encode(code: str, **tags) -> str:
    return wire.encode_command(Command(code, tags)).decode()


# ------------------------------------------------------------------ fixtures

@pytest.fixture(scope="module")
def net(tmp_path_factory) -> SimpleNamespace:
    """A configured state, a Futurex-PKI client identity and a server (all module-wide)."""
    build_library()
    base = str(tmp_path_factory.mktemp("net"))
    state = os.path.join(base, "state")
    make_net_state(state)
    ident = make_client_identity(state, os.path.join(base, "pki"))
    server = ServerProcess(state, base, name="shared",
                           args=("--handshake-timeout", "2", "--max-message", str(MAX_MESSAGE)))
    server.start()
    cfg = identity_config(os.path.join(base, "fxpkcs11.cfg"), server, ident)
    yield SimpleNamespace(base=base, state=state, ident=ident, server=server, cfg=cfg, log=config_log(cfg))
    server.stop()


@pytest.fixture(scope="module")
def other(tmp_path_factory) -> SimpleNamespace:
    """A second device: its own state, its own Futurex CA and client identity, its own server."""
    base = str(tmp_path_factory.mktemp("other"))
    state = os.path.join(base, "state")
    make_net_state(state)
    ident = make_client_identity(state, os.path.join(base, "pki"), name="other-client")
    server = ServerProcess(state, base, name="other")
    server.start()
    yield SimpleNamespace(base=base, state=state, ident=ident, server=server)
    server.stop()


class Servers:
    """Servers a test starts; all stopped (SIGTERM, then SIGKILL) at teardown."""

    def __init__(self) -> None:
        self.all: list[ServerProcess] = []

    def new(self, state: str, folder: str, **kw) -> ServerProcess:
        s = ServerProcess(state, folder, **kw)
        self.all.append(s)
        return s


@pytest.fixture
def servers():
    s = Servers()
    yield s
    for srv in s.all:
        srv.stop()


# ------------------------------------------------------------------ server

def test_mutual_tls_keygen_sign_verify(net):
    r = work(net.cfg)
    assert r["serial"].startswith("VP")
    log = net.server.log_text()
    assert "connected (ProductionLink, client certificate)" in log


def test_sigterm_lets_the_command_in_flight_finish(net, tmp_path, servers, children):
    srv = servers.new(net.state, str(tmp_path), name="sigterm")
    srv.start()
    cfg = identity_config(str(tmp_path / "fx.cfg"), srv, net.ident)
    # one C_GenerateKeyPair is one Excrypt command (GRSA): what is in flight is clear
    child = children(cfg, """
        import ctypes
        from integration_fixtures import CK_ATTRIBUTE, CK_MECHANISM, LowLevel, ulong_bytes
        ll = LowLevel()
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        s = tok.open(rw=True)
        assert ll.login(s.handle, PIN) == 0
        bits = ctypes.create_string_buffer(ulong_bytes(4096), len(ulong_bytes(4096)))
        pub = (CK_ATTRIBUTE * 1)(CK_ATTRIBUTE(0x121, ctypes.cast(bits, ctypes.c_void_p), len(bits.raw)))
        mech = CK_MECHANISM(0, None, 0)  # CKM_RSA_PKCS_KEY_PAIR_GEN
        hpub, hpriv = ctypes.c_ulong(), ctypes.c_ulong()
        step("ready")
        for i in range(40):
            t0 = time.time()
            rv = ll.dll.C_GenerateKeyPair(ctypes.c_ulong(s.handle), ctypes.byref(mech), pub, ctypes.c_ulong(1),
                                          None, ctypes.c_ulong(0), ctypes.byref(hpub), ctypes.byref(hpriv))
            step("gen", i=i, start=t0, end=time.time(), rv=rv)
            if rv:
                break
        step("done")
    """)
    child.expect("ready")
    child.expect("gen", timeout=60)
    time.sleep(0.3)  # the next RSA-4096 generation is under way
    signalled = time.time()
    srv.signal(signal.SIGTERM)
    assert srv.wait(30) == 0, srv.new_log()
    child.expect("done", timeout=60)  # the client is not left hanging
    assert child.wait(30) == 0
    gens = [m for m in child.lines if m.get("step") == "gen"]
    # every call got an answer: its reply, until the connection closed (CKR_DEVICE_ERROR)
    assert all(g["rv"] == ck.CKR_OK for g in gens[:-1]) and gens[-1]["rv"] == ck.CKR_DEVICE_ERROR, gens
    spanning = [g for g in gens if g["start"] < signalled <= g["end"]]
    assert len(spanning) <= 1, gens  # none if the signal fell between two calls
    for g in spanning:
        if signalled - g["start"] >= 0.2:  # surely on the server when the signal came: it completes
            assert g["rv"] == ck.CKR_OK, gens
    log = srv.new_log()
    assert "signal 15: stopping" in log and log.rstrip().endswith("stopped")


def test_detach_with_pid_file(net, tmp_path, servers):
    srv = servers.new(net.state, str(tmp_path), name="detached")
    pid = srv.start_detached()
    assert pid != os.getpid() and pid_alive(pid)
    assert os.path.isfile(srv.pid_file)
    echo_ok(srv, net.ident)
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not os.path.exists(srv.pid_file), 20, what="the pid file to go")
    wait_until(lambda: not pid_alive(pid), 20, what="the daemon to exit")
    assert "stopped" in srv.new_log()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", srv.port), timeout=2).close()


def test_two_clients_sign_at_the_same_time(net, children):
    code = """
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        with tok.open(rw=True, user_pin=PIN) as s:
            pub, priv = s.generate_keypair(KeyType.RSA, 2048)
            n = int.from_bytes(pub[Attribute.MODULUS], "big")
            e = int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big")
            verifier = rsa.RSAPublicNumbers(e, n).public_key()
            step("ready")
            command()
            t0, bad, count = time.time(), 0, 0
            for i in range(3000):  # for a second at least, so that the two surely overlap
                data = f"{os.getpid()} message {i}".encode()
                sig = priv.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS)
                try:
                    verifier.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
                except Exception:
                    bad += 1
                count += 1
                if count >= 20 and time.time() - t0 >= 1.0:
                    break
            step("done", count=count, bad=bad, start=t0, end=time.time())
    """
    a, b = children(net.cfg, code), children(net.cfg, code)
    a.expect("ready")
    b.expect("ready")
    a.send()
    b.send()
    ra, rb = a.expect("done"), b.expect("done")
    assert a.wait() == 0 and b.wait() == 0
    assert ra["bad"] == rb["bad"] == 0 and ra["count"] >= 20 and rb["count"] >= 20
    assert ra["start"] < rb["end"] and rb["start"] < ra["end"], (ra, rb)  # they overlapped


def test_stalled_clients_do_not_hold_up_a_working_one(net, tmp_path, servers):
    srv = servers.new(net.state, str(tmp_path), name="stall",
                      args=("--handshake-timeout", "60", "--idle-timeout", "60"))
    srv.start()
    silent = socket.create_connection(("127.0.0.1", srv.port), timeout=5)  # never starts TLS
    half = RawTls(srv.port, net.ident)
    half.send("[AOECHO;AGhal")  # half a frame
    try:
        t0 = time.monotonic()
        work(identity_config(str(tmp_path / "fx.cfg"), srv, net.ident), timeout=60)
        assert time.monotonic() - t0 < 30
        # both are still there, neither answered nor dropped
        silent.settimeout(0.3)
        with pytest.raises(socket.timeout):
            silent.recv(1)
        assert not half.closed_by_server(timeout=0.3)
        f = fields(half.call("lo;]"))  # and the half frame completes
        assert f["AN"] == "Y" and f["AG"] == "hallo"
    finally:
        silent.close()
        half.close()


def test_idle_timeout_drops_an_idle_connection(net, tmp_path, servers):
    srv = servers.new(net.state, str(tmp_path), name="idle", args=("--idle-timeout", "1"))
    srv.start()
    idle, busy = RawTls(srv.port, net.ident), RawTls(srv.port, net.ident)
    try:
        assert fields(idle.call("[AOECHO;]"))["AN"] == "Y"
        t0 = time.monotonic()
        for _ in range(8):  # the busy one keeps talking for about 2 s
            assert fields(busy.call("[AOECHO;]"))["AN"] == "Y"
            time.sleep(0.25)
        assert idle.closed_by_server(timeout=5)
        assert time.monotonic() - t0 < 6
        assert fields(busy.call("[AOECHO;]"))["AN"] == "Y"
        wait_log(srv, idle.peer, "idle for 1 s, closing")
    finally:
        idle.close()
        busy.close()


# ------------------------------------------------------------------ the wire

def test_openssl_s_client_echo(net):
    i = net.ident
    p = subprocess.Popen(["openssl", "s_client", "-quiet", "-no_ign_eof", "-connect", net.server.address,
                          "-CAfile", i.ca, "-cert", i.cert, "-key", i.key],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        p.stdin.write(b"[AOECHO;]\n")
        p.stdin.flush()
        got, deadline = b"", time.monotonic() + 15
        while b"]" not in got and time.monotonic() < deadline:
            ready, _, _ = select.select([p.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(p.stdout.fileno(), 4096)
                if not chunk:
                    break
                got += chunk
        p.stdin.close()
        p.wait(15)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    text = got.decode()
    assert text.startswith("[AOECHO;AN"), text
    f = fields(text)
    assert f["AN"] == "Y" and f["BC"] == "7.2.1.0-vHSM", text


def _unterminated(c: RawTls):
    c.send("[AOECHO;AGnever-ends")
    # Give the server time to read it: closing at once, with the server's session tickets
    # unread, makes the kernel reset the connection and drop what the server had not read.
    time.sleep(0.3)
    c.close()
    return None, "unfinished frame"


def _bad_tag(c: RawTls):
    return c.call("[AOECHO;a1x;]"), "bad field"


def _unknown_tag(c: RawTls):
    return c.call("[AOECHO;QQ1;]"), "unknown tag 'QQ'"


def _odd_hex(c: RawTls):
    return c.call("[AOGPKR;OB1;DAabc;]"), "bad value for tag DA"


def _oversized_unfinished(c: RawTls):
    c.send("[AOECHO;AG" + "A" * (MAX_MESSAGE + 1000))
    return c.reply(), f"longer than {MAX_MESSAGE} bytes"


def _oversized_frame(c: RawTls):
    c.send("[AOECHO;AG" + "A" * (MAX_MESSAGE + 1000) + ";]")
    return c.reply(), f"longer than {MAX_MESSAGE} bytes"


def _garbage(c: RawTls):
    c.send(b"\x00\xffGET / HTTP/1.0\r\n\r\n")
    return c.reply(), "garbage before a frame"


MALFORMED = {"unterminated then closed": (_unterminated, False), "bad tag": (_bad_tag, True),
             "unknown tag": (_unknown_tag, True), "odd hex": (_odd_hex, True),
             "oversized, unfinished": (_oversized_unfinished, False),
             "oversized, whole frame": (_oversized_frame, False), "garbage": (_garbage, False)}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_frames(net, case):
    action, stays_open = MALFORMED[case]
    c = RawTls(net.server.port, net.ident)
    try:
        reply, text = action(c)
        if reply is not None:
            f = fields(reply)
            assert f["AN"] == "N" and text in f["BB"], reply[:300]
            if stays_open:  # a frame that only failed to decode: the connection goes on
                assert fields(c.call("[AOECHO;AGnext;]"))["AG"] == "next"
            else:
                assert c.closed_by_server(timeout=5)
        wait_log(net.server, c.peer, text)
    finally:
        c.close()
    assert net.server.alive()
    echo_ok(net.server, net.ident)
    assert probe([net.cfg])[0]["random"] == ck.CKR_OK


@pytest.mark.parametrize("hello", [b"\x16\x03\x01\x00\xc8\x01\x00\x00\xc4\x03\x03", b""],
                         ids=["partial ClientHello", "nothing"])
def test_handshake_that_never_completes_is_dropped(net, hello):
    s = socket.create_connection(("127.0.0.1", net.server.port), timeout=10)
    peer = f"127.0.0.1:{s.getsockname()[1]}"
    try:
        s.sendall(hello)
        t0 = time.monotonic()
        s.settimeout(10)
        try:
            assert s.recv(100) == b""  # closed by the server after --handshake-timeout 2
        except ConnectionResetError:
            pass
        assert 1.5 < time.monotonic() - t0 < 8
    finally:
        s.close()
    wait_log(net.server, peer, "TLS handshake failed", "timed out")
    echo_ok(net.server, net.ident)
    assert probe([net.cfg])[0]["random"] == ck.CKR_OK


def test_plain_text_on_the_tls_port_is_refused(net):
    s = socket.create_connection(("127.0.0.1", net.server.port), timeout=10)
    peer = f"127.0.0.1:{s.getsockname()[1]}"
    try:
        s.sendall(b"[AOECHO;]")
        s.settimeout(10)
        data = s.recv(100)  # a TLS alert or nothing, then the end
        assert b"ANY" not in data
    except ConnectionResetError:
        pass
    finally:
        s.close()
    wait_log(net.server, peer, "TLS handshake failed")


def test_admin_commands_are_refused_on_the_production_port(net):
    before = vhsm(net.state, "--output", "json", "tls-ports", "list").stdout
    c = RawTls(net.server.port, net.ident)
    try:
        for frame in (encode("ADMN", MT="device_info"),
                      encode("ADMN", MT="login", AA={"name": "Admin1", "password": "safest"}),
                      encode("ADMN", MT="tls_set", AA={"port": "Excrypt Port", "anon": True})):
            f = fields(c.call(frame))
            assert f["AO"] == "ADMN" and f["AN"] == "N", f
            assert "not accepted on the production port" in f["BB"]
        assert fields(c.call("[AOECHO;]"))["AN"] == "Y"  # the connection goes on
    finally:
        c.close()
    assert vhsm(net.state, "--output", "json", "tls-ports", "list").stdout == before
    # the management port is where they belong
    m = RawTls(net.server.admin_port, net.ident)
    try:
        r = wire.decode_reply(m.call(encode("ADMN", MT="device_info")).encode())
        assert r.ok and r.fields[Tag.ADMIN_RESULT]["serial"].startswith("VP")
    finally:
        m.close()


# ------------------------------------------------------------------ TLS

def test_client_without_a_certificate_is_refused(net, tmp_path):
    anon = write_net_config(str(tmp_path / "anon.cfg"), hsm_block(net.server.address, anonymous=True,
                                                                  ca=[net.ident.ca]))
    bare = write_net_config(str(tmp_path / "bare.cfg"), hsm_block(net.server.address, ca=[net.ident.ca]))
    r_anon, r_bare = probe([anon, bare])
    assert r_anon["init"] == ck.CKR_OK and r_anon["open"] == ck.CKR_DEVICE_ERROR, r_anon
    assert log_has(config_log(anon), r"ERROR HSM 127\.0\.0\.1:\d+ unavailable.*certificate required")
    wait_log(net.server, "TLS handshake failed", "PEER_DID_NOT_RETURN_A_CERTIFICATE")
    # without <PROD-TLS-ANONYMOUS> YES the library does not even try
    assert r_bare["open"] == ck.CKR_DEVICE_ERROR
    assert log_has(config_log(bare), r"ERROR .*mutual TLS needs <PROD-TLS-KEY>")


def test_client_certificate_from_another_ca_is_refused(net, other, tmp_path):
    o = other.ident
    cfg = write_net_config(str(tmp_path / "fx.cfg"), hsm_block(net.server.address, ca=[net.ident.ca],
                                                               cert=o.cert, key=o.key))
    r = probe([cfg])[0]
    assert r["open"] == ck.CKR_DEVICE_ERROR, r
    assert log_has(config_log(cfg), r"unavailable.*unknown ca")
    wait_log(net.server, "TLS handshake failed", "certificate verify failed")


def test_server_certificate_is_checked_against_prod_tls_ca(net, other, tmp_path):
    cfg = write_net_config(str(tmp_path / "fx.cfg"), hsm_block(net.server.address, ca=[other.ident.ca],
                                                               cert=net.ident.cert, key=net.ident.key))
    r = probe([cfg])[0]
    assert r["open"] == ck.CKR_DEVICE_ERROR, r
    assert log_has(config_log(cfg), r"unavailable.*certificate verify failed")


def test_anonymous_mode_switched_on_a_running_server(tmp_path, servers):
    state = str(tmp_path / "state")
    make_net_state(state)
    ident = make_client_identity(state, str(tmp_path / "pki"))
    srv = servers.new(state, str(tmp_path), name="anon")
    srv.start()
    pid = srv.pid
    anon = write_net_config(str(tmp_path / "anon.cfg"), hsm_block(srv.address, anonymous=True, ca=[ident.ca]))
    mutual = identity_config(str(tmp_path / "mutual.cfg"), srv, ident)
    assert probe([anon])[0]["open"] == ck.CKR_DEVICE_ERROR

    vhsm_script(state, str(tmp_path), 'tls-ports set -p "Excrypt Port" --anon\n')
    r_anon, r_mutual = probe([anon, mutual])
    for r in (r_anon, r_mutual):
        assert (r["open"], r["login"], r["random"]) == (ck.CKR_OK, ck.CKR_OK, ck.CKR_OK), r
    work(anon)
    wait_log(srv, "connected (ProductionLink, anonymous)")

    vhsm_script(state, str(tmp_path), 'tls-ports set -p "Excrypt Port" --no-anon\n', name="no-anon.fxcli")
    r_anon, r_mutual = probe([anon, mutual])
    assert r_anon["open"] == ck.CKR_DEVICE_ERROR and r_mutual["random"] == ck.CKR_OK
    assert srv.alive() and srv.pid == pid  # never restarted


def test_three_client_key_formats(net, tmp_path):
    i = net.ident
    p8 = i.pkcs8("p8-pass")
    p12 = i.pkcs12("p12-pass")
    assert read_text(i.key).startswith("-----BEGIN RSA PRIVATE KEY-----")  # PKCS #1
    assert read_text(p8).startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")  # PKCS #8, encrypted
    addr = net.server.address
    cfgs = [
        write_net_config(str(tmp_path / "pkcs1.cfg"), hsm_block(addr, ca=[i.ca], cert=i.cert, key=i.key)),
        write_net_config(str(tmp_path / "pkcs8.cfg"), hsm_block(addr, ca=[i.ca], cert=i.cert, key=p8,
                                                                 key_pass="p8-pass")),
        write_net_config(str(tmp_path / "pkcs12.cfg"), hsm_block(addr, key=p12, key_pass="p12-pass")),
    ]
    for r in probe(cfgs):
        assert (r["init"], r["open"], r["login"], r["random"]) == (0, 0, 0, 0), r
    work(cfgs[2])


def test_bad_client_files_are_refused_with_a_reason(net, tmp_path):
    import datetime
    i = net.ident
    addr = net.server.address
    p8 = i.pkcs8("right")
    p12 = i.pkcs12("right")
    ca = make_test_ca(str(tmp_path / "ca"))
    now = datetime.datetime.now(datetime.timezone.utc)
    old_cert, old_key = ca.issue("expired", not_before=now - datetime.timedelta(days=400),
                                 not_after=now - datetime.timedelta(days=35))
    new_cert, new_key = ca.issue("future", not_before=now + datetime.timedelta(days=10))
    missing = str(tmp_path / "nowhere" / "client.key")
    cases = {
        "pkcs8-wrong-pass": (dict(ca=[i.ca], cert=i.cert, key=p8, key_pass="wrong"),
                             r"cannot read the key \(wrong <PROD-TLS-KEY-PASS>\?\)"),
        "pkcs8-no-pass": (dict(ca=[i.ca], cert=i.cert, key=p8), r"is encrypted: set <PROD-TLS-KEY-PASS>"),
        "pkcs12-wrong-pass": (dict(key=p12, key_pass="wrong"),
                              r"cannot open the PKCS #12 file \(wrong <PROD-TLS-KEY-PASS>\?\)"),
        "missing-key": (dict(ca=[i.ca], cert=i.cert, key=missing),
                        rf"<PROD-TLS-KEY> {re.escape(missing)}: No such file"),
        "missing-cert": (dict(ca=[i.ca], cert=missing, key=i.key), r"<PROD-TLS-CERT> .*: No such file"),
        "missing-ca": (dict(ca=[missing], cert=i.cert, key=i.key), r"<PROD-TLS-CA> .*: No such file"),
        "expired": (dict(ca=[i.ca], cert=old_cert, key=old_key), r"client certificate .*expired on"),
        "not-yet-valid": (dict(ca=[i.ca], cert=new_cert, key=new_key), r"client certificate .* is not valid yet"),
        "key-cert-mismatch": (dict(ca=[i.ca], cert=i.cert, key=old_key), r"does not match <PROD-TLS-KEY>"),
    }
    cfgs = {}
    for name, (kw, _) in cases.items():
        # the default log mode (ERROR) must show why
        cfgs[name] = write_net_config(str(tmp_path / f"{name}.cfg"), hsm_block(addr, **kw), log_mode="ERROR")
    before = len(net.server.log_text())
    results = dict(zip(cases, probe(list(cfgs.values()))))
    for name, (kw, pattern) in cases.items():
        r = results[name]
        assert r["init"] == ck.CKR_OK and r["open"] == ck.CKR_DEVICE_ERROR, (name, r)
        text = read_text(config_log(cfgs[name]))
        assert re.search(r"ERROR .*" + pattern, text), (name, text)
    # refused by the library before connecting: the server never heard of them
    assert "ProductionLink" not in net.server.log_text()[before:]


def test_tls_1_1_is_refused(net):
    port = net.server.port
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    peer = f"127.0.0.1:{s.getsockname()[1]}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError, match="(?i)protocol version"):
        ctx.wrap_socket(s)
    s.close()
    wait_log(net.server, peer, "TLS handshake failed", "UNSUPPORTED_PROTOCOL")
    i = net.ident
    common = ["s_client", "-connect", net.server.address, "-CAfile", i.ca, "-cert", i.cert, "-key", i.key]
    old = openssl(*common, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", cwd=net.base, check=False)
    assert old.returncode != 0 and "alert protocol version" in old.stdout + old.stderr
    tls12 = openssl(*common, "-tls1_2", cwd=net.base, check=False)
    assert tls12.returncode == 0 and "Protocol  : TLSv1.2" in tls12.stdout


# ------------------------------------------------------------------ guide 6.7.2 and 7

def test_guide_6_7_2_then_pkcs11_over_mutual_tls(tmp_path, servers):
    base, w = str(tmp_path), str(tmp_path / "tls")
    os.makedirs(w)
    state = os.path.join(base, "state")
    vhsm(state, "-f", SETUP)                    # 6.1 - 6.6
    vhsm(state, "-f", DEMO)                     # GPAS / GPAV for signing and verifying
    vhsm(state, "-f", TLS_SCRIPT, cwd=w)        # 6.7.2 step 2, files land in the working directory
    openssl("genrsa", "-out", "privatekey.pem", "2048", cwd=w)  # step 3
    openssl("req", "-new", "-key", "privatekey.pem", "-out", "ClientPki.csr", "-days", "365",
            "-subj", "/C=US/O=Example Corp/CN=vSEC CMS client", cwd=w)
    vhsm_script(state, base, r"""
        x509 sign \
          --private-slot TlsCaKeyPair \
          --issuer TlsCa.pem \
          --csr ClientPki.csr \
          --eku Client --key-usage DigitalSignature --key-usage KeyAgreement \
          --dn 'O=Futurex\CN=Client' \
          --out SignedPki.pem
    """, name="client-sign.fxcli", cwd=w, admins=GUIDE_ADMINS)  # step 4
    openssl("pkcs12", "-export", "-inkey", "privatekey.pem", "-in", "SignedPki.pem", "-certfile", "TlsCa.pem",
            "-out", "PKI.p12", "-passout", "pass:safest", cwd=w)  # step 5
    srv = servers.new(state, base, name="guide")
    srv.start()
    # section 7, as printed (with our address and port)
    cfg = os.path.join(base, "fxpkcs11.cfg")
    write_net_config(cfg, f"""<HSM>
# Which PKCS11 slot
<SLOT>          0          </SLOT>
<LABEL>         Futurex   </LABEL>

# HSM crypto operator user name
<CRYPTO-OPR>    crypto1 </CRYPTO-OPR>
# Automatically login on session open
#<CRYPTO-OPR-PASS> [identity_password] </CRYPTO-OPR-PASS>

# Connection information
<ADDRESS>       127.0.0.1   </ADDRESS>
<PROD-PORT>    {srv.port}        </PROD-PORT>
<PROD-TLS-ENABLED> YES      </PROD-TLS-ENABLED>
<PROD-TLS-ANONYMOUS> NO    </PROD-TLS-ANONYMOUS>
# <PROD-TLS-CA> /home/user/tls/root.pem </PROD-TLS-CA>
<PROD-TLS-KEY> {w}/PKI.p12 </PROD-TLS-KEY>
<PROD-TLS-KEY-PASS> safest </PROD-TLS-KEY-PASS>

# YES = This is communicating through a Guardian
<FX-LOAD-BALANCE> NO      </FX-LOAD-BALANCE>
</HSM>""")
    work(cfg, random=False)  # the guide's partition does not whitelist RAND
    # the port presented the Generated PKI: TlsProduction.pem under TlsCa.pem
    c = RawTls(srv.port, ctx=_ctx(ca=os.path.join(w, "TlsCa.pem"), cert=os.path.join(w, "SignedPki.pem"),
                                  key=os.path.join(w, "privatekey.pem")))
    try:
        subject = dict(x[0] for x in c.sock.getpeercert()["subject"])
        assert subject == {"organizationName": "Futurex", "commonName": "Production"}
        assert fields(c.call("[AOECHO;]"))["AN"] == "Y"
    finally:
        c.close()
    # the device-made Futurex CA is no longer what the port shows
    with pytest.raises(ssl.SSLError):
        RawTls(srv.port, ctx=_ctx(ca=_futurex_ca(state, base)))


def _ctx(*, ca: str, cert: str | None = None, key: str | None = None) -> ssl.SSLContext:
    from net_support import tls_context
    return tls_context(ca=ca, cert=cert, key=key)


def _futurex_ca(state: str, folder: str) -> str:
    """The device's own CA (what `tls-ports export` gives while the PKI is Futurex)."""
    import json
    from vhsm.device import VirtualHSM
    from vhsm.tlsports import FUTUREX_BLOB, futurex_pki
    dev = VirtualHSM(state)
    try:
        raw = dev.secure.load_blob(FUTUREX_BLOB)
        pem = json.loads(raw)["ca"] if raw else futurex_pki(dev)["ca"]
    finally:
        dev.close()
    path = os.path.join(folder, "futurex-ca.pem")
    with open(path, "w") as f:
        f.write(pem)
    return path


# ------------------------------------------------------------------ sessions

def test_login_and_logout_move_the_connection(net):
    r = run_child(net.cfg, """
        import os
        from integration_fixtures import LowLevel
        import fxpkcs11.state as fxstate
        from vhsm.excrypt import Tag
        ll = LowLevel()
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        res = {}
        with tok.open(rw=True) as s:
            chan = fxstate.lib.sessions[s.handle].channel
            who = lambda: chan.call("PRMD", {Tag.USER: ""})[Tag.LOGGED_IN]
            label = "private-%d" % os.getpid()
            find = lambda: len(list(s.get_objects({Attribute.LABEL: label})))
            res["before"] = who()
            res["login"] = ll.login(s.handle, PIN)
            res["during"] = who()
            key = s.generate_key(KeyType.AES, 256, label=label, store=True, template={Attribute.PRIVATE: True})
            res["found_in"] = find()
            res["logout"] = ll.logout(s.handle)
            res["after"] = who()
            res["found_out"] = find()
            res["state_out"] = ll.session_info(s.handle)[1].state
            res["login2"] = ll.login(s.handle, PIN)
            res["found_again"] = find()
            key.destroy()
            ll.logout(s.handle)
        out(**res)
    """)
    assert r["before"] == "" and r["during"] == "crypto1" and r["after"] == ""
    assert r["login"] == r["logout"] == r["login2"] == ck.CKR_OK
    assert (r["found_in"], r["found_out"], r["found_again"]) == (1, 0, 1)
    assert r["state_out"] == ck.CKS_RW_PUBLIC_SESSION


def test_crypto_opr_pass_logs_in_over_the_network(net, tmp_path):
    cfg = identity_config(str(tmp_path / "auto.cfg"), net.server, net.ident, auto_login="safest")
    r = run_child(cfg, """
        from integration_fixtures import LowLevel
        import fxpkcs11.state as fxstate
        from vhsm.excrypt import Tag
        ll = LowLevel()
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        with tok.open(rw=True) as s:
            chan = fxstate.lib.sessions[s.handle].channel
            key = s.generate_key(KeyType.AES, 128, store=False, template={Attribute.PRIVATE: True})
            out(state=ll.session_info(s.handle)[1].state, login=ll.login(s.handle, PIN),
                who=chan.call("PRMD", {Tag.USER: ""})[Tag.LOGGED_IN])
    """)
    assert r["state"] == ck.CKS_RW_USER_FUNCTIONS
    assert r["login"] == ck.CKR_USER_ALREADY_LOGGED_IN
    assert r["who"] == "crypto1"


def test_session_objects_end_with_their_session_and_their_process(net, children):
    child = children(net.cfg, """
        from integration_fixtures import LowLevel
        import fxpkcs11.state as fxstate
        ll = LowLevel()
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        s1, s2 = tok.open(rw=True), tok.open(rw=True)
        assert ll.login(s1.handle, PIN) == 0
        count = lambda s, label: len(list(s.get_objects({Attribute.LABEL: label})))
        k1 = s1.generate_key(KeyType.AES, 256, label="first-session-key", store=False)
        seen = count(s2, "first-session-key")  # session objects belong to the application
        s1.close()
        gone = count(s2, "first-session-key")
        k2 = s2.generate_key(KeyType.AES, 256, label="second-session-key", store=False)
        ep = fxstate.lib.tokens[0].transport.endpoints[0]
        step("ready", seen=seen, gone=gone, app=ep.app_id, first=k1.handle - 1, second=k2.handle - 1)
        command()
    """)
    m = child.expect("ready")
    assert m["seen"] == 1 and m["gone"] == 0
    assert m["first"] >= 0x40000000 and m["second"] >= 0x40000000
    label_of = encode("GPKR", OB=m["second"], AT=[ck.CKA_LABEL])

    # the same client certificate can join the application while it lives
    c = RawTls(net.server.port, net.ident)
    try:
        assert fields(c.call(f"[AOAPPJ;AI{m['app']};]"))["AN"] == "Y"
        r = wire.decode_reply(c.call(label_of).encode())
        assert r.ok and r.fields[Tag.ATTR_VALUES] == [[0, "second-session-key"]], r.fields
        r = wire.decode_reply(c.call(encode("GPKR", OB=m["first"], AT=[ck.CKA_LABEL])).encode())
        assert not r.ok and r.reason == ck.CKR_OBJECT_HANDLE_INVALID  # gone with its session
    finally:
        c.close()

    child.kill()  # SIGKILL: no C_CloseSession, no C_Finalize

    def application_gone() -> bool:
        c = RawTls(net.server.port, net.ident)
        try:
            f = fields(c.call(f"[AOAPPJ;AI{m['app']};]"))
            return f["AN"] == "N" and "no such application" in f["BB"]
        finally:
            c.close()
    wait_until(application_gone, 15, interval=0.2, what="the dead client's application to end")
    # nothing reaches its objects by guessing numbers either
    c = RawTls(net.server.port, net.ident)
    try:
        for ref in range(0x40000000, 0x40000000 + 64):
            r = wire.decode_reply(c.call(encode("GPKR", OB=ref, AT=[ck.CKA_LABEL])).encode())
            assert not r.ok, (hex(ref), r.fields)
    finally:
        c.close()
    r = run_child(net.cfg, """
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        with tok.open(rw=True, user_pin=PIN) as s:
            out(found=len(list(s.get_objects({Attribute.LABEL: "second-session-key"}))))
    """)
    assert r["found"] == 0


# ------------------------------------------------------------------ failures

def test_server_killed_and_restarted(net, tmp_path, servers, children):
    srv = servers.new(net.state, str(tmp_path), name="restart")
    srv.start()
    cfg = identity_config(str(tmp_path / "fx.cfg"), srv, net.ident, connect_timeout=3, reply_timeout=10)
    child = children(cfg, """
        from integration_fixtures import LowLevel
        import fxpkcs11.state as fxstate
        from vhsm.excrypt import Tag
        ll = LowLevel()
        def attempt(fn):
            try:
                fn()
                return "ok"
            except pkcs11.PKCS11Error as e:
                return errname(e)
        sign = lambda k: k.sign(b"data", mechanism=Mechanism.SHA256_RSA_PKCS)
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        s = tok.open(rw=True)
        assert ll.login(s.handle, PIN) == 0
        pub, priv = s.generate_keypair(KeyType.RSA, 2048)
        sign(priv)
        spare = [tok.open(rw=True) for _ in range(3)]
        for x in spare:
            x.close()  # their links wait in the library for the next sessions
        step("ready", pid=os.getpid())
        command()
        step("down", old=attempt(lambda: sign(priv)), new=attempt(lambda: tok.open(rw=True)),
             state=ll.session_info(s.handle)[1].state)
        command()
        res = {"pid": os.getpid(), "token_info": ll.token_info(0)[0]}
        s2 = tok.open(rw=True)  # at once, no C_Login: the library logs in again with the PIN it kept
        res["who"] = fxstate.lib.sessions[s2.handle].channel.call("PRMD", {Tag.USER: ""})[Tag.LOGGED_IN]
        pub2, priv2 = s2.generate_keypair(KeyType.RSA, 2048, private_template={Attribute.PRIVATE: True})
        res["sign_new"] = attempt(lambda: sign(priv2))
        res["old_after"] = attempt(lambda: sign(priv))
        res["state"] = ll.session_info(s2.handle)[1].state
        step("back", **res)
        command()
    """)
    pid = child.expect("ready")["pid"]
    srv.kill9()
    child.send()
    down = child.expect("down")
    assert down["old"] == "DeviceError" and down["new"] == "DeviceError", down
    assert down["state"] == ck.CKS_RW_USER_FUNCTIONS  # the library still holds the session and the login
    srv.start()  # same port
    child.send()
    back = child.expect("back")
    assert back["pid"] == pid  # the host process was not restarted
    assert back["token_info"] == ck.CKR_OK
    assert back["who"] == "crypto1" and back["sign_new"] == "ok", back
    assert back["old_after"] == "DeviceError"  # documented: sessions of the old connection are gone
    assert back["state"] == ck.CKS_RW_USER_FUNCTIONS
    child.send()
    assert child.wait(30) == 0
    log = read_text(config_log(cfg))
    assert "connection lost" in log or "closed the connection" in log or "no longer holds this session" in log


def test_stopped_server_fails_after_reply_timeout(net, tmp_path, servers, children):
    srv = servers.new(net.state, str(tmp_path), name="sigstop")
    srv.start()
    cfg = identity_config(str(tmp_path / "fx.cfg"), srv, net.ident, connect_timeout=2, reply_timeout=2)
    child = children(cfg, """
        from integration_fixtures import LowLevel
        ll = LowLevel()
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        s = tok.open(rw=True)
        assert ll.login(s.handle, PIN) == 0
        s.generate_random(64)
        step("ready")
        command()
        t0 = time.time()
        try:
            s.generate_random(64)
            r = "ok"
        except pkcs11.PKCS11Error as e:
            r = errname(e)
        step("stalled", result=r, elapsed=time.time() - t0)
        command()
        with tok.open(rw=True) as s2:
            step("resumed", random=len(s2.generate_random(64)))
        command()
    """)
    child.expect("ready")
    srv.pause()
    try:
        child.send()
        m = child.expect("stalled", timeout=30)
    finally:
        srv.signal(signal.SIGCONT)
    assert m["result"] == "DeviceError" and 1.5 <= m["elapsed"] < 10, m
    assert "no reply within 2 s" in read_text(config_log(cfg))
    child.send()
    assert child.expect("resumed")["random"] == 8
    child.send()
    assert child.wait(30) == 0


# ------------------------------------------------------------------ more than one HSM

def test_two_hsm_blocks_are_two_slots(net, other, tmp_path):
    o = other.ident
    cfg = write_net_config(str(tmp_path / "fx.cfg"), [
        hsm_block(net.server.address, slot=0, label="First", ca=[net.ident.ca], cert=net.ident.cert,
                  key=net.ident.key),
        hsm_block(other.server.address, slot=1, label="Second", ca=[o.ca], cert=o.cert, key=o.key),
    ])
    r = run_child(cfg, """
        import os
        lib = pkcs11.lib(LIB)
        res = {"slots": [s.slot_id for s in lib.get_slots()]}
        label = "two-slots-%d" % os.getpid()
        for name in ("First", "Second"):
            tok = lib.get_token(token_label=name)
            with tok.open(rw=True, user_pin=PIN) as s:
                pub, priv = s.generate_keypair(KeyType.RSA, 2048)
                sig = priv.sign(b"x", mechanism=Mechanism.SHA256_RSA_PKCS)
                serial = tok.serial.decode() if isinstance(tok.serial, bytes) else tok.serial
                res[name] = {"serial": serial, "verified": pub.verify(b"x", sig, mechanism=Mechanism.SHA256_RSA_PKCS)}
                if name == "First":
                    key = s.generate_key(KeyType.AES, 128, label=label, store=True)
                    res["first_sees"] = len(list(s.get_objects({Attribute.LABEL: label})))
                else:
                    res["second_sees"] = len(list(s.get_objects({Attribute.LABEL: label})))
        with lib.get_token(token_label="First").open(rw=True, user_pin=PIN) as s:
            s.get_key(label=label).destroy()
        out(**res)
    """)
    assert r["slots"] == [0, 1]
    assert r["First"]["verified"] and r["Second"]["verified"]
    assert r["First"]["serial"] != r["Second"]["serial"]
    assert r["first_sees"] == 1 and r["second_sees"] == 0


def test_load_balance_over_two_servers_sharing_a_state(net, tmp_path, servers, children):
    a = servers.new(net.state, str(tmp_path), name="lb-a")
    b = servers.new(net.state, str(tmp_path), name="lb-b")
    a.start()
    b.start()
    cfg = identity_config(str(tmp_path / "fx.cfg"), [a, b], net.ident, load_balance=True, connect_timeout=3)
    child = children(cfg, """
        from integration_fixtures import LowLevel
        import fxpkcs11.state as fxstate
        from vhsm.excrypt import Tag
        ll = LowLevel()
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        port = lambda s: fxstate.lib.sessions[s.handle].channel.endpoint.port
        who = lambda s: fxstate.lib.sessions[s.handle].channel.call("PRMD", {Tag.USER: ""})[Tag.LOGGED_IN]
        def attempt(fn):
            try:
                return fn()
            except pkcs11.PKCS11Error as e:
                return errname(e)
        sessions = [tok.open(rw=True) for _ in range(4)]
        assert ll.login(sessions[0].handle, PIN) == 0
        ports = [port(s) for s in sessions]
        label = "balanced-%d" % os.getpid()
        first = sessions[0]
        other = next(s for s in sessions if port(s) != port(first))
        first.generate_key(KeyType.AES, 128, label=label, store=True)
        step("spread", ports=ports, found=len(list(other.get_objects({Attribute.LABEL: label}))),
             who=[who(s) for s in sessions])
        command()
        fresh = [tok.open(rw=True) for _ in range(3)]
        step("failover", ports=[port(s) for s in fresh],
             random=[attempt(lambda: len(s.generate_random(64))) for s in fresh],
             old=[attempt(lambda: len(s.generate_random(64))) for s in sessions])
        command()
        landed = []
        for _ in range(20):
            s = tok.open(rw=True)
            landed.append(port(s))
            if port(s) == ports[0]:
                break
            time.sleep(0.5)
        step("back", landed=landed, who=who(s), random=len(s.generate_random(64)))
        s.get_key(label=label).destroy()
        command()
    """)
    m = spread = child.expect("spread")
    assert set(m["ports"]) == {a.port, b.port}, m
    assert m["found"] == 1  # a token object made through one server, seen through the other
    assert m["who"] == ["crypto1"] * 4  # logged in on both servers
    for srv in (a, b):
        assert "connected (ProductionLink" in srv.log_text()
    down = a if m["ports"][0] == a.port else b
    up = b if down is a else a
    down.kill9()
    child.send()
    m = child.expect("failover")
    assert m["ports"] == [up.port] * 3 and m["random"] == [8] * 3, m
    for old, p in zip(m["old"], spread["ports"]):  # sessions on the killed server fail, the others go on
        assert old == ("DeviceError" if p == down.port else 8), m
    down.start()
    child.send()
    m = child.expect("back", timeout=60)
    assert m["landed"][-1] == down.port, m  # used again once its back-off ran out
    assert m["who"] == "crypto1" and m["random"] == 8
    child.send()
    assert child.wait(30) == 0


# ------------------------------------------------------------------ admin over the network

def test_admin_over_the_network_changes_a_running_partition(tmp_path, servers, children):
    from vhsm.commands.catalog import whitelistable
    state = str(tmp_path / "state")
    make_net_state(state, commands=[c for c in whitelistable() if c != "RAND"])
    ident = make_client_identity(state, str(tmp_path / "pki"))
    srv = servers.new(state, str(tmp_path), name="admin")
    srv.start()
    cfg = identity_config(str(tmp_path / "fx.cfg"), srv, ident)
    child = children(cfg, """
        from integration_fixtures import LowLevel
        ll = LowLevel()
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        s = tok.open(rw=True)
        assert ll.login(s.handle, PIN) == 0
        def rand():
            try:
                return len(s.generate_random(64))
            except pkcs11.PKCS11Error as e:
                return errname(e)
        step("before", random=rand())
        command()
        step("after", random=rand())
        command()
    """)
    assert child.expect("before")["random"] == "FunctionFailed"
    i = ident
    script = tmp_path / "remote.fxcli"
    script.write_text(f"connect tcp --host 127.0.0.1 --port {srv.admin_port} --ca {i.ca} --cert {i.cert} "
                      f"--key {i.key}\nlogin user -u Admin1 -p safest\nlogin user -u Admin2 -p safest\n"
                      "role modify --name App --add-perm Excrypt:RAND\n")
    elsewhere = str(tmp_path / "no-local-state")  # the shell must not need a local device
    p = vhsm(elsewhere, "-f", str(script))
    assert f"at 127.0.0.1:{srv.admin_port}" in p.stdout and "role App modified" in p.stdout, p.stdout
    assert not os.path.exists(os.path.join(elsewhere, "vhsm.db"))
    child.send()
    assert child.expect("after")["random"] == 8  # same session, same connection, no restart
    child.send()
    assert child.wait(30) == 0
    assert "RAND" in vhsm(state, "--output", "json", "role", "show", "--name", "App").stdout
    wait_log(srv, "connected (AdminLink, client certificate)")


def test_idle_timeout_keeps_a_logged_in_application_and_rejoins_spare_links(net, tmp_path, servers, children):
    """The server drops idle links only when that loses nothing; a session whose link it
    dropped joins its application again on the next call, transparently."""
    srv = servers.new(net.state, str(tmp_path), name="idle-keep", args=("--idle-timeout", "1"))
    srv.start()
    cfg = identity_config(str(tmp_path / "fx.cfg"), srv, net.ident)
    child = children(cfg, """
        import time
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        a = tok.open(rw=True, user_pin=PIN)
        b = tok.open(rw=True)
        key = a.generate_key(KeyType.AES, 128, store=False, label="session-object")
        time.sleep(3)  # both links idle past the timeout: one is spare, the last holds the login
        out = {}
        try:
            found = list(b.get_objects({Attribute.LABEL: "session-object"}))
            out["b_sees_object"] = len(found)
            out["a_encrypts"] = len(key.encrypt(b"0" * 16, mechanism=Mechanism.AES_ECB))
        except pkcs11.PKCS11Error as e:
            out["error"] = type(e).__name__
        step("done", **out)
        command()
    """)
    r = child.expect("done")
    assert r.get("error") is None, r
    assert r["b_sees_object"] == 1 and r["a_encrypts"] == 16
