"""`vhsm serve --workers 2`: one port, two worker processes, one application's links on both.

The server is real (`vhsm serve` on loopback, real TLS); clients are python-pkcs11 programs
in child processes. What the workers share is read back from the registry file
`run/apps.db` in the state directory.
"""
from __future__ import annotations

import os
import signal
import sqlite3
from types import SimpleNamespace

import pytest

from net_support import (RawTls, ServerProcess, fields, identity_config, make_client_identity, make_net_state, read_text,
                         wait_until)
from support import PIN, build_library
from vhsm import factory, wire
from vhsm.excrypt import Command, Tag

# One library instance, four sessions (links) plus the token's own link; the test reads the
# registry between steps.
CROSS = """
from pkcs11.exceptions import UserNotLoggedIn
tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
others = [tok.open(rw=True) for _ in range(3)]
first = tok.open(rw=True, user_pin=PIN)   # C_Login on the last link opened
step("open")
command()
# login applies to every session, whichever worker serves it
made = [s.generate_key(KeyType.AES, 256, label=f"mine{i}", store=False, capabilities=0) for i, s in enumerate(others)]
pub, priv = first.generate_keypair(KeyType.RSA, 2048, label="shared-pair", store=False)
step("made", n=len(made))
command()
results = []
for s in others:   # the pair made on `first` is found and used on every other session
    p = s.get_key(label="shared-pair", object_class=ObjectClass.PRIVATE_KEY)
    q = s.get_key(label="shared-pair", object_class=ObjectClass.PUBLIC_KEY)
    sig = p.sign(b"across workers", mechanism=Mechanism.SHA256_RSA_PKCS)
    results.append(pub.verify(b"across workers", sig, mechanism=Mechanism.SHA256_RSA_PKCS)
                   and q.verify(b"across workers", sig, mechanism=Mechanism.SHA256_RSA_PKCS))
others[-1].get_key(label="shared-pair", object_class=ObjectClass.PRIVATE_KEY).destroy()
left = [len(list(s.get_objects({Attribute.LABEL: "shared-pair"}))) for s in [first] + others]
step("used", verified=results, left=left)
command()
first.close()   # python-pkcs11 logs out as it closes the session it logged in on
after = []
for s in others:
    try:
        s.generate_key(KeyType.AES, 128, store=False, capabilities=0, template={Attribute.PRIVATE: True})
        after.append("ok")
    except UserNotLoggedIn:
        after.append("not logged in")
step("logged out", after=after)
command()
for s in others:
    s.close()
step("closed")
command()
"""


@pytest.fixture(scope="module")
def net(tmp_path_factory) -> SimpleNamespace:
    build_library()
    base = str(tmp_path_factory.mktemp("workers"))
    state = os.path.join(base, "state")
    make_net_state(state)
    ident = make_client_identity(state, os.path.join(base, "pki"))
    server = ServerProcess(state, base, name="workers", args=("--workers", "2"))
    server.start()
    cfg = identity_config(os.path.join(base, "fxpkcs11.cfg"), server, ident)
    yield SimpleNamespace(base=base, state=state, ident=ident, server=server, cfg=cfg)
    server.stop()


def registry(state: str, sql: str, params: tuple = ()) -> list[tuple]:
    """A query on the registry of the one server running on `state`."""
    names = [n for n in os.listdir(os.path.join(state, "run")) if n.startswith("apps-") and n.endswith(".db")]
    assert len(names) == 1, names
    db = sqlite3.connect(f"file:{os.path.join(state, 'run', names[0])}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def worker_pids(server: ServerProcess) -> set[int]:
    """The server's child processes (its workers), from /proc."""
    pids = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_text(f"/proc/{entry}/stat")
            if stat and int(stat.rsplit(")", 1)[1].split()[1]) == server.pid:
                pids.add(int(entry))
    return pids


def two_workers(server: ServerProcess, *, not_: int = 0, timeout: float = 20) -> set[int]:
    """The server's two worker pids, once it has two (none of them `not_`)."""
    def probe() -> set[int] | None:
        pids = worker_pids(server)
        return pids if len(pids) == 2 and not_ not in pids else None
    return wait_until(probe, timeout, what="two workers")


def app_links(state: str) -> dict[str, dict[int, int]]:
    out: dict[str, dict[int, int]] = {}
    for app, pid, count in registry(state, "SELECT app_id, pid, count FROM links"):
        out.setdefault(app, {})[pid] = count
    return out


def test_one_application_across_two_workers(net, children):
    workers = two_workers(net.server)
    c = children(net.cfg, CROSS)
    c.expect("open")
    links = app_links(net.state)
    assert len(links) == 1, links  # all links joined one application
    (app, per_worker), = links.items()
    assert set(per_worker) == workers, (per_worker, workers)  # ... on both workers
    # 4 sessions + the token's link: no worker holds all 4 sessions, so some session runs on
    # another worker than `first`, which the objects below are made on
    assert sum(per_worker.values()) >= 5 and max(per_worker.values()) <= 3, per_worker
    (identity, role), = registry(net.state, "SELECT identity, role FROM apps")
    assert identity == "crypto1" and role == "App"

    c.send()
    assert c.expect("made")["n"] == 3
    rows = registry(net.state, "SELECT ref, session, wrapped FROM session_objects WHERE app_id = ?", (app,))
    # three AES keys and the private half are wrapped; the public half has no secret
    assert len(rows) == 5 and sorted(w is None for _, _, w in rows) == [False] * 4 + [True], rows
    assert len({r for r, _, _ in rows}) == 5

    c.send()
    used = c.expect("used")
    assert used["verified"] == [True, True, True], used
    assert used["left"] == [1, 1, 1, 1], used  # the private key is gone everywhere, the public one stays

    c.send()
    after = c.expect("logged out")
    assert after["after"] == ["not logged in"] * 3, after
    assert registry(net.state, "SELECT identity, role FROM apps WHERE app_id = ?", (app,)) == \
        [(None, factory.TRANSACTION_PROCESSING)]

    c.send()
    c.expect("closed")
    c.send()
    assert c.wait() == 0, c.stderr()
    # the application ended with its last link: nothing of it is left in the registry
    wait_until(lambda: not registry(net.state, "SELECT 1 FROM apps WHERE app_id = ?", (app,)), 10,
               what="the application to end")
    assert registry(net.state, "SELECT COUNT(*) FROM session_objects WHERE app_id = ?", (app,)) == [(0,)]
    assert registry(net.state, "SELECT COUNT(*) FROM links WHERE app_id = ?", (app,)) == [(0,)]


SECRET = bytes(range(0x40, 0x60))  # an AES-256 value that must never reach a file in clear

HOLD_KEY = """
tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
with tok.open(rw=True, user_pin=PIN) as s:
    key = s.create_object({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
                           Attribute.VALUE: bytes(range(0x40, 0x60)), Attribute.TOKEN: False,
                           Attribute.ENCRYPT: True, Attribute.DECRYPT: True, Attribute.LABEL: "clear-check"})
    iv = bytes(16)
    ct = key.encrypt(b"sixteen byte msg", mechanism=Mechanism.AES_CBC, mechanism_param=iv)
    step("held", ct=ct.hex())
    command()
"""


def test_registry_holds_no_clear_key_and_is_owner_only(net, children):
    c = children(net.cfg, HOLD_KEY)
    held = c.expect("held")
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    enc = Cipher(algorithms.AES(SECRET), modes.CBC(bytes(16))).encryptor()
    assert bytes.fromhex(held["ct"]) == enc.update(b"sixteen byte msg") + enc.finalize()  # the key is in use
    (wrapped,), = registry(net.state, "SELECT wrapped FROM session_objects")
    assert wrapped is not None and len(wrapped) >= len(SECRET) + 16 and SECRET not in wrapped
    run = os.path.join(net.state, "run")
    assert os.stat(run).st_mode & 0o777 == 0o700
    names = os.listdir(run)
    assert f"apps-{net.server.pid}.db" in names, names
    for name in names:
        path = os.path.join(run, name)
        assert os.stat(path).st_mode & 0o077 == 0, name
        with open(path, "rb") as f:
            data = f.read()
        assert SECRET not in data and SECRET.hex().encode() not in data, name
    c.send()
    assert c.wait() == 0, c.stderr()


def raw_call(c: RawTls, code: str, **tags) -> dict[str, str]:
    reply = c.call(wire.encode_command(Command(code, tags)).decode())
    assert reply is not None, f"{code}: connection closed"
    return fields(reply)


def test_a_killed_worker_is_restarted_and_other_applications_live_on(net):
    workers = two_workers(net.server)
    conns = [RawTls(net.server.port, net.ident) for _ in range(4)]
    try:
        apps = [raw_call(c, "APPN")[Tag.APPLICATION] for c in conns]
        where = {app: set(pids) for app, pids in app_links(net.state).items()}
        assert all(len(where[a]) == 1 for a in apps) and set().union(*where.values()) == workers, where
        victim = next(iter(where[apps[0]]))
        survivor = (workers - {victim}).pop()
        # apps[0] gets a second link on the survivor; a lone app of the survivor stays untouched
        joined = None
        for _ in range(4):
            c = RawTls(net.server.port, net.ident)
            assert raw_call(c, "APPJ", **{Tag.APPLICATION: apps[0]})["AN"] == "Y"
            if survivor in app_links(net.state)[apps[0]]:
                joined = c
                break
            conns.append(c)
        assert joined is not None
        conns.append(joined)
        lone_victim = [a for a in apps[1:] if where[a] == {victim}]
        lone_survivor = [a for a in apps[1:] if where[a] == {survivor}]
        assert lone_victim and lone_survivor, where

        os.kill(victim, signal.SIGKILL)
        restarted = two_workers(net.server, not_=victim)
        assert survivor in restarted
        links = wait_until(lambda: (lambda l: victim not in {p for v in l.values() for p in v} and l)(
            app_links(net.state)), 10, what="the dead worker's links to go")
        assert apps[0] in links and links[apps[0]] == {survivor: 1}, links
        for a in lone_victim:
            assert a not in links and not registry(net.state, "SELECT 1 FROM apps WHERE app_id = ?", (a,))
        for a in lone_survivor:
            assert a in links

        # the application that kept a link works on, and so does one that never met the victim
        r = raw_call(joined, "LOGI", **{Tag.USER: "crypto1", Tag.PASSWORD: PIN})
        assert r["AN"] == "Y", r
        assert registry(net.state, "SELECT identity FROM apps WHERE app_id = ?", (apps[0],)) == [("crypto1",)]
        idx = apps.index(lone_survivor[0])
        assert raw_call(conns[idx], "LOGI", **{Tag.USER: "crypto1", Tag.PASSWORD: PIN})["AN"] == "Y"
        # and the restarted worker serves new links (two in a row: one lands on each worker)
        fresh = [RawTls(net.server.port, net.ident) for _ in range(2)]
        conns += fresh
        ids = [raw_call(c, "APPN")[Tag.APPLICATION] for c in fresh]
        now = app_links(net.state)
        assert {p for i in ids for p in now[i]} == restarted, now
    finally:
        for c in conns:
            c.close()


def test_sigterm_stops_every_worker_and_removes_the_registry(net):
    """A second server on the same state: its own registry, which leaves with it."""
    second = ServerProcess(net.state, net.base, name="second", args=("--workers", "2"))
    second.start()
    try:
        workers = two_workers(second)
        c = RawTls(second.port, net.ident)
        try:
            assert raw_call(c, "APPN")["AN"] == "Y"
        finally:
            c.close()
        run = os.path.join(net.state, "run")
        assert {f"apps-{second.pid}.db", f"apps-{net.server.pid}.db"} <= set(os.listdir(run))
        second.signal(signal.SIGTERM)
        assert second.wait(30) == 0
        assert not any(os.path.exists(f"/proc/{p}") for p in workers)
        assert not [n for n in os.listdir(run) if n.startswith(f"apps-{second.pid}.")]
        assert f"apps-{net.server.pid}.db" in os.listdir(run)  # the other server's applications stay
    finally:
        second.stop()
