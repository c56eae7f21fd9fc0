"""Clusters: three `vhsm serve` nodes on loopback share one key table in a real PostgreSQL server.

The cluster is set up as docs/cluster.md says: `vhsm cluster init` on the first node, the
guide's set-up with the FTK split onto 2-of-3 cards, the TLS PKI of section 6.7.2 (in the
shared key table, so every node presents it), then `vhsm cluster join` and `majorkey
recombine` on the other two. Clients are libfxpkcs11.so in child processes (python-pkcs11,
p11bench). PostgreSQL comes from Debian's package (tests/pg_support.py); the tests skip only
when it cannot start, with the reason.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from types import SimpleNamespace

import pytest

from integration_fixtures import run_child
from net_support import ServerProcess, hsm_block, openssl, read_text, vhsm, wait_until, write_net_config
from pg_support import PgServer
from support import LIB, PIN, ROOT, build_library, child_env

ADMINS = (("Admin1", "Admin1-Pass"), ("Admin2", "Admin2-Pass"))
CARD_PINS = ("card-pin-1", "card-pin-2", "card-pin-3")
P11BENCH = os.environ.get("P11BENCH_DIR") or os.path.join(ROOT, "..", "shared", "tools", "p11bench")


def script(state: str, folder: str, body: str, name: str, *, admins=ADMINS, check: bool = True):
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write("".join(f"login user -u {u} -p {p}\n" for u, p in admins) + body)
    return vhsm(state, "-f", path, cwd=folder, check=check)


def first_node_setup(state: str, folder: str, cards: str) -> None:
    """Guide 6.1-6.6 with the FTK on 2-of-3 cards, a partition App whose whitelist is every
    command, identity crypto1; then the Generated TLS PKI of 6.7.2 and a client certificate."""
    from vhsm.commands.catalog import whitelistable
    perms = " ".join(f"--add-perm Excrypt:{c}" for c in whitelistable())
    pins = " ".join(f"--card-pin {p}" for p in CARD_PINS)
    script(state, folder, f"""\
user change-password -u Admin1 --old-password safest --new-password Admin1-Pass
user change-password -u Admin2 --old-password safest --new-password Admin2-Pass
majorkey random --ftk -m 2 -n 3 --cards-dir {cards} {pins}
role add --name App --application --key-range (0,999) --perm "Keys:Authorized"
role modify --name App --clear-perms {perms}
identity add --name crypto1 --role App --password {PIN}
""", "setup.fxcli", admins=(("Admin1", "safest"), ("Admin2", "safest")))
    tls = os.path.join(folder, "tls")
    os.makedirs(tls)
    vhsm(state, "-f", os.path.join(ROOT, "examples", "vectera-tls.fxcli"), cwd=tls)
    openssl("genrsa", "-traditional", "-out", "client.key", "2048", cwd=tls)
    openssl("req", "-new", "-key", "client.key", "-out", "client.csr", "-subj", "/O=Example/CN=cluster client",
            cwd=tls)
    script(state, tls, r"""x509 sign --private-slot TlsCaKeyPair --issuer TlsCa.pem --csr client.csr \
  --eku Client --key-usage DigitalSignature --key-usage KeyAgreement --dn 'O=Futurex\CN=Client' --out client.pem
""".replace("\\\n", ""), "client.fxcli")


def join_node(state: str, folder: str, url: str, cards: str) -> str:
    out = vhsm(state, "cluster", "join", "--store", url).stdout
    script(state, folder, f"majorkey recombine --key ftk --cards-dir {cards} "
                          f"--card-pin {CARD_PINS[0]} --card-pin {CARD_PINS[1]}\n", f"recombine-{os.path.basename(state)}.fxcli")
    return out


def store(url: str):
    from vhsm.pgstore import PgStore
    return PgStore(url)


@pytest.fixture(scope="module")
def pg():
    server = PgServer().setup()
    if server.problem:
        server.cleanup()
        pytest.skip(f"PostgreSQL cannot start here: {server.problem}")
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def cl(pg, tmp_path_factory) -> SimpleNamespace:
    """Three nodes of one cluster, each serving on its own loopback ports."""
    build_library()
    base = str(tmp_path_factory.mktemp("cluster"))
    url = pg.url()
    cards = os.path.join(base, "cards")
    states = [os.path.join(base, f"node{i}") for i in (1, 2, 3)]
    init = vhsm(states[0], "cluster", "init", "--store", url)
    assert "ready" in init.stdout, init.stdout
    first_node_setup(states[0], base, cards)
    joins = [join_node(s, base, url, cards) for s in states[1:]]
    nodes = [ServerProcess(s, base, name=f"node{i}", args=("--log-level", "INFO")) for i, s in enumerate(states, 1)]
    for n in nodes:
        n.start()
    tls = os.path.join(base, "tls")
    tlsargs = dict(ca=[os.path.join(tls, "TlsCa.pem")], cert=os.path.join(tls, "client.pem"),
                   key=os.path.join(tls, "client.key"), connect_timeout=2)
    cfg = write_net_config(os.path.join(base, "fxpkcs11.cfg"), hsm_block(
        [n.address for n in nodes], slot=0, label="Cluster", load_balance=True, **tlsargs))
    ns = SimpleNamespace(base=base, url=url, cards=cards, states=states, nodes=nodes, cfg=cfg, joins=joins,
                         tlsargs=tlsargs, pg=pg)
    yield ns
    for n in nodes:
        n.stop()


def node_config(cl, *numbers: int) -> str:
    """One slot per node named, labelled Node<n>, each on that node alone."""
    blocks = [hsm_block(cl.nodes[i - 1].address, slot=k, label=f"Node{i}", **cl.tlsargs)
              for k, i in enumerate(numbers)]
    return write_net_config(os.path.join(cl.base, "nodes-" + "".join(map(str, numbers)) + ".cfg"), blocks)


def sign_elsewhere(cl, maker: int, users: tuple[int, ...]) -> dict:
    """Generate a key pair through node `maker`; sign with it through each of `users`."""
    code = "import os\n" + SIGN_ELSEWHERE.replace("MAKER", f"Node{maker}").replace(
        "USERS", repr(tuple(f"Node{u}" for u in users)))
    return child(node_config(cl, maker, *users), code)["results"]


def child(cfg: str, code: str, timeout: float = 120) -> dict:
    return run_child(cfg, code, timeout=timeout)


def status(state: str) -> dict:
    return json.loads(vhsm(state, "cluster", "status", "--output", "json").stdout)


# ------------------------------------------------------------------ set-up

def test_nodes_joined_with_the_clusters_ftk_and_heartbeat(cl):
    for out in cl.joins:
        assert "joined cluster" in out, out
    s = wait_until(lambda: (lambda d: d if len(d["nodes"]) == 3 and all(n["state"] == "up" for n in d["nodes"])
                            else None)(status(cl.states[2])), 15, interval=0.3, what="three nodes up")
    assert {n["address"] for n in s["nodes"]} == {n.address for n in cl.nodes}
    assert all(n["ftk_kcv"] == s["ftk_kcv"] for n in s["nodes"]), s  # one FTK, recombined from cards
    assert re.fullmatch(r"[0-9A-F]{4}", s["ftk_kcv"])
    assert all(n["age"] < 5 for n in s["nodes"])
    text = vhsm(cl.states[0], "cluster", "status").stdout
    assert "FTK KCV" in text and all(n.address in text for n in cl.nodes), text
    # the key table holds wrapped values only: no clear key bytes in the database
    with store(cl.url) as st:
        tls_ca = [k for k in st.list_keys() if k.attrs.get(0x3) == "TlsCaKeyPair"]
    assert tls_ca and all(k.wrapped and k.wrapped[0] == 1 for k in tls_ca)


def test_bad_store_arguments_print_usage_or_a_reason(cl, tmp_path):
    p = vhsm(str(tmp_path / "x"), "cluster", "init", "--store", "mysql://nope", check=False)
    assert p.returncode == 2 and "postgresql://" in p.stderr, p.stderr
    p = vhsm(str(tmp_path / "x"), "cluster", "status", check=False)
    assert p.returncode == 2 and "not a cluster node" in p.stderr, p.stderr
    p = vhsm(str(tmp_path / "x"), "cluster", "joinn", check=False)
    assert p.returncode == 2 and "cluster join" in p.stderr, p.stderr
    empty = cl.pg.new_database("empty")
    p = vhsm(str(tmp_path / "y"), "cluster", "join", "--store", empty, check=False)
    assert p.returncode == 1 and "cluster init" in p.stderr, p.stderr


# ------------------------------------------------------------------ consistency

SIGN_ELSEWHERE = """
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
lib = pkcs11.lib(LIB)
label = "made-%d" % os.getpid()
with lib.get_token(token_label="MAKER").open(rw=True, user_pin=PIN) as s:
    pub, priv = s.generate_keypair(KeyType.RSA, 2048, label=label, store=True)
    n = int.from_bytes(pub[Attribute.MODULUS], "big")
results = {}
for other in USERS:
    with lib.get_token(token_label=other).open(user_pin=PIN) as s:
        key = s.get_key(label=label, object_class=ObjectClass.PRIVATE_KEY)
        sig = key.sign(b"made on one node", mechanism=Mechanism.SHA256_RSA_PKCS)
        rsa.RSAPublicNumbers(65537, n).public_key().verify(sig, b"made on one node", padding.PKCS1v15(), hashes.SHA256())
        results[other] = len(sig)
out(results=results)
"""


def test_generate_on_one_node_sign_on_another(cl):
    assert sign_elsewhere(cl, 1, (2, 3)) == {"Node2": 256, "Node3": 256}


def test_concurrent_key_creation_from_all_nodes_gives_no_duplicate_slot(cl):
    code = """
import os, sys
lib = pkcs11.lib(LIB)
tok = lib.get_token(token_label=TOKEN)
handles = []
with tok.open(rw=True, user_pin=PIN) as s:
    for i in range(15):
        k = s.generate_key(KeyType.AES, 128, label="%s-%d" % (TOKEN, i), store=True)
        handles.append(k.handle)
out(handles=handles)
"""
    procs = []
    for i in (1, 2, 3):
        procs.append(subprocess.Popen([os.path.join(ROOT, ".venv", "bin", "python"), "-c",
                                       f"TOKEN = 'Node{i}'\n" + _prelude() + code], cwd="/",
                                      env=child_env(node_config(cl, i)), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1])["handles"])
    with store(cl.url) as st:
        made = [k for k in st.find_keys("App") if str(k.attrs.get(0x3, "")).startswith("Node")
                and re.fullmatch(r"Node\d-\d+", k.attrs[0x3])]
    labels = sorted(k.attrs[0x3] for k in made)
    assert len(made) == 45 and len(set(labels)) == 45, labels  # every key stored, none overwritten
    assert len({k.slot for k in made}) == 45
    assert all(len(set(hs)) == 15 for hs in results)


def test_store_level_slot_allocation_from_three_connections_at_once(cl):
    """Three stores (as three nodes hold) insert into one range from 3x4 threads at once."""
    from vhsm.store import KeyRecord
    db = cl.pg.new_database("slots")
    from vhsm.pgstore import PgStore
    stores = [PgStore(db, create=True)] + [PgStore(db) for _ in range(2)]
    got: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker(st) -> None:
        for _ in range(20):
            try:
                rec = st.insert_key("P", [(100, 399)], lambda slot: KeyRecord(slot, "P", {0x3: f"k{slot}"}, b"w", 0))
                with lock:
                    got.append(rec.slot)
            except Exception as e:  # noqa: BLE001 - collected and asserted below
                errors.append(repr(e))
    threads = [threading.Thread(target=worker, args=(st,)) for st in stores for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors[:3]
    assert sorted(got) == list(range(100, 340)), sorted(got)  # each slot once, the range filled in order
    ok, msg = stores[0].verify_audit()
    assert ok, msg
    for st in stores:
        st.close()


def test_schema_version_is_recorded_and_a_newer_schema_is_refused(cl):
    import psycopg
    from vhsm.pgstore import SCHEMA_VERSION, PgStore
    from vhsm.store import StoreError
    db = cl.pg.new_database("versions")
    with PgStore(db, create=True) as st:
        assert st.schema_version() == SCHEMA_VERSION
    with PgStore(db, create=True) as st:  # init again: nothing to migrate, nothing lost
        assert st.schema_version() == SCHEMA_VERSION
    with psycopg.connect(db, autocommit=True) as c:
        c.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match=f"schema version {SCHEMA_VERSION + 1} is newer"):
        PgStore(db)


def _prelude() -> str:
    return (f"import json, sys\nsys.path.insert(0, {ROOT!r})\nimport pkcs11\n"
            "from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass\n"
            f"LIB = {LIB!r}\nPIN = {PIN!r}\n"
            "def out(**kw):\n    print(json.dumps(kw), flush=True)\n")


def test_whitelist_change_through_one_node_applies_on_every_node_within_a_second(cl):
    code = """
lib = pkcs11.lib(LIB)
sessions = {t: lib.get_token(token_label=t).open(user_pin=PIN) for t in ("Node2", "Node3")}
for s in sessions.values():
    s.generate_random(16)
step("ready")
command()
t0 = time.monotonic()
refused = {}
while len(refused) < 2 and time.monotonic() - t0 < 10:
    for t, s in sessions.items():
        if t in refused:
            continue
        try:
            s.generate_random(16)
        except pkcs11.PKCS11Error as e:
            refused[t] = [type(e).__name__, round(time.monotonic() - t0, 3)]
    time.sleep(0.02)
step("done", refused=refused)
"""
    from net_support import Child
    c = Child(node_config(cl, 2, 3), code)
    try:
        c.expect("ready")
        t0 = time.monotonic()
        script(cl.states[0], cl.base, "role modify --name App --del-perm Excrypt:RAND\n", "wl-off.fxcli")
        took = time.monotonic() - t0
        c.send()
        m = c.expect("done", timeout=30)
        assert c.wait(30) == 0
    finally:
        c.close()
        script(cl.states[0], cl.base, "role modify --name App --add-perm Excrypt:RAND\n", "wl-on.fxcli")
    refused = m["refused"]
    assert set(refused) == {"Node2", "Node3"}, m
    for name, (err, after) in refused.items():
        assert err == "FunctionFailed", m  # the whitelist refusal's CKR
        assert after < 1.0, (m, took)  # measured from when the change had been committed


# ------------------------------------------------------------------ failures

def _bench_binary(folder: str) -> str:
    exe = os.path.join(folder, "p11bench")
    if not os.path.exists(exe):
        subprocess.run(["cc", "-O2", "-o", exe, os.path.join(P11BENCH, "p11bench.c"), "-ldl", "-lpthread"],
                       check=True, timeout=120)
    return exe


def _served(cl) -> dict[str, int]:
    with store(cl.url) as st:
        return {n["address"]: n["commands"] for n in st.list_nodes()}


def test_kill_a_node_during_p11bench_then_restart_it(cl):
    if not os.path.isfile(os.path.join(P11BENCH, "p11bench.c")) or not shutil.which("cc"):
        pytest.skip("p11bench sources or cc missing")
    exe = _bench_binary(cl.base)
    with store(cl.url) as st:
        before = {k.slot: k.version for k in st.list_keys()}
    env = child_env(cl.cfg)
    bench = subprocess.Popen([exe, "--module", LIB, "--pin", PIN, "--slot", "0", "--threads", "3", "--seconds", "8",
                              "--ops", "rsa2048-sign", "--json"], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=cl.base)
    victim = cl.nodes[1]
    survivors = [n for n in cl.nodes if n is not victim]
    time.sleep(3.5)  # sessions are open and signing on every node
    mid = _served(cl)
    victim.kill9()
    killed_at = time.monotonic()
    out, err = bench.communicate(timeout=120)
    ran = time.monotonic() - killed_at
    failures = re.findall(r"returned CKR (0x[0-9a-f]+)", err)
    assert 1 <= len(failures) < 3, err  # only the sessions of the killed node failed
    assert set(failures) == {"0x30"}, err  # CKR_DEVICE_ERROR, as docs/network.md says
    assert ran > 2.5, ran  # the survivors went on signing to the end of the run
    time.sleep(1.5)
    after = _served(cl)
    for n in survivors:
        assert after[n.address] > mid[n.address] + 20, (mid, after)
    with store(cl.url) as st:
        now = {k.slot: k.version for k in st.list_keys()}
    assert all(now.get(slot) == v for slot, v in before.items()), "a token key was lost or changed"
    # restart: it rejoins, heartbeats, and serves keys made while it was down
    assert sign_elsewhere(cl, 3, (1,)) == {"Node1": 256}  # a key made while the node is down
    victim.start()
    s = wait_until(lambda: (lambda d: d if all(n["state"] == "up" and n["age"] < 2 for n in d["nodes"]) else None)(
        status(cl.states[0])), 15, interval=0.3, what="the restarted node's heartbeat")
    assert len(s["nodes"]) == 3
    assert sign_elsewhere(cl, 3, (2,)) == {"Node2": 256}


def test_node_with_a_different_ftk_is_refused(cl, tmp_path):
    from vhsm.majorkeys import SecureMemory, generate_ftk
    state = str(tmp_path / "stranger")
    own = generate_ftk()
    SecureMemory(state).store_ftk(own)  # a node that had its own FTK before joining
    out = vhsm(state, "cluster", "join", "--store", cl.url).stdout
    assert f"KCV {own.kcv}" in out and "refuse" in out, out
    # served: its TLS key is in the cluster's key table, which it cannot unwrap; it says why and exits
    node = ServerProcess(state, str(tmp_path), name="stranger")
    p = subprocess.run(node.argv(), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, (p.stdout, p.stderr)
    log = node.log_text()
    assert "cannot serve" in log and f"KCV {own.kcv}) is not the cluster's" in log and "Traceback" not in p.stderr, log
    # embedded (the library runs the node in process): key commands refused with the reason
    from support import write_config
    cfg = write_config(str(tmp_path / "embedded.cfg"), state, log_file=str(tmp_path / "embedded.log"))
    r = child(cfg, """
with pkcs11.lib(LIB).get_token(token_label="Futurex").open(rw=True, user_pin=PIN) as s:
    rnd = len(s.generate_random(128))
    try:
        s.generate_key(KeyType.AES, 128, store=True, label="never")
        made = "made"
    except pkcs11.PKCS11Error as e:
        made = type(e).__name__
out(rnd=rnd, made=made)
""")
    assert r["rnd"] == 16 and r["made"] == "DeviceError", r
    assert f"this node's FTK (KCV {own.kcv}) is not the cluster's" in read_text(str(tmp_path / "embedded.log"))
    # loading another FTK through the stranger would orphan the cluster's keys: refused
    p = script(state, str(tmp_path), "majorkey random --ftk\n", "replace.fxcli", check=False)
    assert p.returncode == 1 and "--force" in p.stderr, p.stderr
    # recombining the cluster's FTK from its cards makes it a working node
    script(state, str(tmp_path), f"majorkey recombine --key ftk --cards-dir {cl.cards} "
                                 f"--card-pin {CARD_PINS[0]} --card-pin {CARD_PINS[1]}\n", "fix.fxcli")
    node.start()
    try:
        cfg = write_net_config(str(tmp_path / "fx.cfg"), hsm_block(node.address, label="Stranger", **cl.tlsargs))
        r = child(cfg, """
with pkcs11.lib(LIB).get_token(token_label="Stranger").open(rw=True, user_pin=PIN) as s:
    k = s.generate_key(KeyType.AES, 128, store=True, label="joined-late")
    out(n=len(list(s.get_objects({Attribute.LABEL: "joined-late"}))))
    k.destroy()
""")
        assert r["n"] == 1
    finally:
        node.stop()
        with store(cl.url) as st:
            st.forget_node(node.address)


def test_audit_entries_from_all_nodes_form_one_verifiable_chain(cl):
    p = script(cl.states[1], cl.base, "audit verify\n", "verify.fxcli")
    assert "intact" in p.stdout, p.stdout
    with store(cl.url) as st:
        rows = st.audit_rows()
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    assert any(r["command"] == "majorkey recombine" for r in rows)  # written by nodes 2 and 3
    assert any(r["command"] == "majorkey random" for r in rows)  # written by node 1


def test_losing_the_database_gives_a_clear_ckr_and_the_node_recovers(cl):
    """Last: it stops the cluster's database."""
    from net_support import Child
    code = """
import time
lib = pkcs11.lib(LIB)
s = lib.get_token(token_label="Node1").open(rw=True, user_pin=PIN)
def attempt():
    try:
        return len(s.generate_key(KeyType.AES, 128, store=True, label="during").id or b"x")
    except pkcs11.PKCS11Error as e:
        return type(e).__name__
step("before", r=attempt())
command()
step("down", r=attempt())
command()
t0 = time.monotonic()
r = None
while time.monotonic() - t0 < 20:
    r = attempt()
    if r != "DeviceError":
        break
    time.sleep(0.2)
step("back", r=r, after=round(time.monotonic() - t0, 2))
"""
    cfg = node_config(cl, 1)
    c = Child(cfg, code)
    try:
        assert c.expect("before")["r"] == 1
        cl.pg.stop()
        assert not cl.pg.running()
        c.send()
        assert c.expect("down")["r"] == "DeviceError"
        log = read_text(cfg + ".log")
        assert re.search(r"PostgreSQL store postgresql://vhsm@127\.0\.0\.1:\d+/vhsm: database unreachable", log), \
            log[-2000:]
        assert "heartbeat failed" in wait_until(lambda: "heartbeat failed" in cl.nodes[0].log_text() and
                                                cl.nodes[0].log_text(), 10, what="heartbeat failure logged")
        assert cl.pg.start()
        c.send()
        m = c.expect("back", timeout=60)
        assert m["r"] == 1, m
        assert c.wait(30) == 0
    finally:
        c.close()
        if not cl.pg.running():
            cl.pg.start()
    wait_until(lambda: "heartbeat resumed" in cl.nodes[0].log_text(), 10, what="heartbeat resumed")


def test_a_node_with_workers_reports_each_worker(cl):
    state = os.path.join(cl.base, "node4")
    assert "joined cluster" in join_node(state, cl.base, cl.url, cl.cards)
    node = ServerProcess(state, cl.base, name="node4", args=("--workers", "2", "--log-level", "INFO"))
    node.start()
    try:
        wanted = {f"{node.address} worker 0", f"{node.address} worker 1"}
        s = wait_until(lambda: (lambda d: d if wanted <= {n["address"] for n in d["nodes"] if n["state"] == "up"}
                                else None)(status(cl.states[0])), 15, interval=0.3, what="both workers' heartbeats")
        workers = [n for n in s["nodes"] if n["address"] in wanted]
        assert all(n["ftk_kcv"] == s["ftk_kcv"] for n in workers), s
        cfg = write_net_config(os.path.join(cl.base, "node4.cfg"),
                               hsm_block(node.address, slot=0, label="Node4", **cl.tlsargs))
        r = child(cfg, "tok = pkcs11.lib(LIB).get_token(token_label='Node4')\n"
                       "with tok.open(user_pin=PIN) as s:\n"
                       "    out(n=len(s.generate_random(512)))\n")
        assert r["n"] == 64
    finally:
        node.stop()
