"""configTest: the embedded default, a broken file, and network configurations against a real
`vhsm serve` (good, wrong CA, a partition without GPKM, nobody listening)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from types import SimpleNamespace

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from support import PIN, ROOT, build_library, child_env  # noqa: E402
from integration_fixtures import make_env  # noqa: E402
from net_support import (ServerProcess, free_port, hsm_block, make_client_identity, make_net_state,  # noqa: E402
                         make_test_ca, write_net_config)

SCRIPT = os.path.join(ROOT, ".venv", "bin", "configTest")


def config_test(cfg: str | None, *args: str, env_cfg: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    argv = [SCRIPT] if os.path.exists(SCRIPT) else [sys.executable, "-m", "fxpkcs11.tools.configtest"]
    if cfg:
        argv += ["--config", cfg]
    env = child_env(env_cfg or cfg or "")
    if not env_cfg and not cfg:
        env.pop("FXPKCS11_CFG")
    proc = subprocess.run(argv + list(args), cwd="/", env=env, capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    return proc


def steps(out: str) -> list[str]:
    return [ln for ln in out.splitlines() if re.match(r"(PASS|FAIL|SKIP) ", ln)]


def test_embedded_pass(tmp_path):
    build_library()
    env = make_env(str(tmp_path))
    with open(env.cfg, "a") as f:
        f.write("<FUTURE-TAG> x </FUTURE-TAG>\n")
    proc = config_test(None, env_cfg=env.cfg)              # found through FXPKCS11_CFG, as the library does
    assert proc.returncode == 0, proc.stdout
    out = proc.stdout
    assert f"PASS configuration {env.cfg} (named by FXPKCS11_CFG) parses" in out
    assert "warning: " in out and "unknown tag <FUTURE-TAG> ignored" in out
    assert f"PASS slot 0: embedded vHSM state directory {env.state} opens" in out
    assert re.search(r"PASS slot 0: FTK loaded, KCV [0-9A-F]{4}", out)
    assert re.search(r"PASS slot 0: ECHO answers, firmware \S+", out)
    assert re.search(r"PASS slot 0: device serial \(HASH\) \S+", out)
    assert "SKIP slot 0: login as crypto1: no <CRYPTO-OPR-PASS>" in out
    assert not [s for s in steps(out) if s.startswith("FAIL")]

    proc = config_test(env.cfg, "--password", PIN)
    assert proc.returncode == 0, proc.stdout
    assert "PASS slot 0: login as crypto1 (partition App)" in proc.stdout
    assert "PASS slot 0: partition App whitelists ECHO, HASH, GPKM, GPKS" in proc.stdout

    proc = config_test(env.cfg, "--password", "wrong")
    assert proc.returncode == 1
    assert re.search(r"FAIL slot 0: login as crypto1 failed: .*\(fix: check <CRYPTO-OPR>", proc.stdout)


def test_embedded_without_ftk_or_state(tmp_path):
    build_library()
    env = make_env(str(tmp_path / "noftk"), ftk=False)
    proc = config_test(env.cfg)
    assert proc.returncode == 1
    assert re.search(r"FAIL slot 0: no FTK loaded.*\(fix: .*majorkey random --ftk", proc.stdout)
    missing = make_env(str(tmp_path / "missing"), state_dir=str(tmp_path / "nowhere"), make=False)
    proc = config_test(missing.cfg)
    assert proc.returncode == 1
    assert re.search(r"FAIL slot 0: state directory .*nowhere does not exist.*\(fix: .*vectera-setup.fxcli", proc.stdout)
    assert not os.path.exists(tmp_path / "nowhere")  # checking creates nothing


def test_bad_file_fails_with_file_and_line(tmp_path):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text("<HSM>\n  <SLOT> 0 </SLOT>\n  <PROD-PORT> 9x </PROD-PORT>\n</HSM>\n")
    proc = config_test(str(cfg))
    assert proc.returncode == 1
    (line,) = steps(proc.stdout)
    assert line.startswith(f"FAIL configuration {cfg}")
    assert f"{cfg}:3: <PROD-PORT>" in line and f"(fix: correct {cfg}:3)" in line
    proc = config_test(str(tmp_path / "absent.cfg"))
    assert proc.returncode == 1 and "cannot read" in proc.stdout


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    build_library()
    base = str(tmp_path_factory.mktemp("configtest-net"))
    state = os.path.join(base, "state")
    make_net_state(state, partitions={"App": (0, 999), "Lean": (1000, 1999)})
    from vhsm.device import VirtualHSM
    dev = VirtualHSM(state)  # partition Lean: everything but GPKM
    role = dev.store.get_role("Lean")
    role["commands"] = [c for c in role["commands"] if c != "GPKM"]
    dev.store.put_role(role)
    dev.close()
    ident = make_client_identity(state, os.path.join(base, "pki"))
    server = ServerProcess(state, base, name="configtest").start()
    yield SimpleNamespace(base=base, state=state, ident=ident, server=server)
    server.stop()


def _cfg(net, name: str, **kw) -> str:
    kw.setdefault("ca", [net.ident.ca])
    kw.setdefault("cert", net.ident.cert)
    kw.setdefault("key", net.ident.key)
    addresses = kw.pop("addresses", [net.server.address])
    return write_net_config(os.path.join(net.base, name), hsm_block(addresses, **kw))


def test_network_pass_shows_chain_and_expiry(net):
    cfg = _cfg(net, "good.cfg", auto_login=PIN)
    proc = config_test(cfg)
    out = proc.stdout
    assert proc.returncode == 0, out
    at = f"slot 0 {net.server.address}"
    assert "PASS slot 0: TLS settings load (mutual authentication)" in out
    assert re.search(rf"PASS {at}: TCP connect \(\d+ ms\)", out)
    assert re.search(rf"PASS {at}: TLS handshake \(TLSv1\.[23], ", out)
    certs = re.findall(r"^\s+(server|CA) certificate: (.+); issuer (.+); expires (\d{4}-\d\d-\d\d) \((-?\d+) days\)$",
                       out, re.M)
    assert [c[0] for c in certs][:2] == ["server", "CA"], out
    assert all(int(c[4]) > 0 for c in certs)
    assert re.search(rf"PASS {at}: ECHO answers, firmware \S+", out)
    assert re.search(rf"PASS {at}: device serial \(HASH\) \S+", out)
    assert re.search(rf"PASS {at}: FTK loaded, KCV [0-9A-F]{{4}}", out)
    assert f"PASS {at}: login as crypto1 (partition App)" in out
    assert f"PASS {at}: partition App whitelists ECHO, HASH, GPKM, GPKS" in out


def test_network_wrong_ca_fails_the_tls_step(net, tmp_path):
    other = make_test_ca(str(tmp_path / "otherca"))
    cfg = _cfg(net, "wrongca.cfg", ca=[other.path])
    proc = config_test(cfg)
    assert proc.returncode == 1
    (fail,) = [s for s in steps(proc.stdout) if s.startswith("FAIL")]
    assert f"slot 0 {net.server.address}: TLS handshake failed" in fail
    assert "(fix: set <PROD-TLS-CA> to the CA that issued the HSM's certificate" in fail
    assert "tls-ports export" in fail and "the server presents" in fail
    assert f"PASS slot 0 {net.server.address}: TCP connect" in proc.stdout


def test_network_partition_without_gpkm(net):
    cfg = _cfg(net, "lean.cfg", identity="lean1", auto_login=PIN)
    proc = config_test(cfg)
    assert proc.returncode == 1
    (fail,) = [s for s in steps(proc.stdout) if s.startswith("FAIL")]
    assert "partition Lean lacks GPKM" in fail
    assert '`vhsm role modify --name "Lean" --add-perm Excrypt:GPKM`' in fail
    assert "PASS " in proc.stdout and "login as lean1 (partition Lean)" in proc.stdout


def test_network_unreachable_address(net):
    port = free_port()
    cfg = _cfg(net, "unreachable.cfg", addresses=[f"127.0.0.1:{port}", net.server.address], connect_timeout=2)
    proc = config_test(cfg)
    assert proc.returncode == 1
    fails = [s for s in steps(proc.stdout) if s.startswith("FAIL")]
    assert len(fails) == 1 and f"slot 0 127.0.0.1:{port}: no TCP connection within 2 s" in fails[0]
    assert "(fix: check <ADDRESS> and <PROD-PORT>, that `vhsm serve` runs there" in fails[0]
    assert f"PASS slot 0 {net.server.address}: ECHO answers" in proc.stdout  # the other address still checked


def test_network_client_refused(net, tmp_path):
    """A client certificate from another CA: the server refuses it (handshake or first command)."""
    other = make_test_ca(str(tmp_path / "clientca"))
    cert, key = other.issue("stranger")
    cfg = _cfg(net, "stranger.cfg", cert=cert, key=key)
    proc = config_test(cfg)
    assert proc.returncode == 1
    (fail,) = [s for s in steps(proc.stdout) if s.startswith("FAIL")]
    assert f"slot 0 {net.server.address}: TLS handshake failed" in fail, proc.stdout
    assert "(fix: the HSM refused the client certificate" in fail and "tls-ports client-cert" in fail
