"""Concurrency soak: 4 processes with 4 threads each run mixed operations on one state, embedded
(each process loads libfxpkcs11.so) and through one `vhsm serve` over mutual TLS.

Each thread works on its own objects: generate AES keys and P-256 pairs, sign and verify (every
signature is checked through PKCS #11 and again outside it), encrypt and decrypt (every
ciphertext decrypted and compared), find by label, change labels, destroy. At the end the
partition must hold exactly created - destroyed objects.

    .venv/bin/python tests/stress/soak.py [--budget ci|long] [--out result.json]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
for p in (HERE, TESTS, os.path.dirname(TESTS)):
    if p not in sys.path:
        sys.path.insert(0, p)

from support import LIB, PIN, child_env, make_state, write_config  # noqa: E402

PROCESSES, THREADS = 4, 4
LIVE_CAP = 12  # objects a thread keeps before it prefers destroying


# ------------------------------------------------------------------ one worker process

def ckr_name(exc: Exception) -> str:
    """The CKR a python-pkcs11 exception stands for (its class name names it)."""
    return type(exc).__name__


class ThreadWork:
    def __init__(self, session: Any, tag: str, seed: int, deadline: float) -> None:
        self.s, self.tag, self.rng, self.deadline = session, tag, random.Random(seed), deadline
        self.live: dict[str, dict] = {}  # label -> {"kind", "objs": [...], "point"}
        self.n = 0
        self.ops: Counter = Counter()
        self.errors: Counter = Counter()
        self.wrong: list[str] = []
        self.created = self.destroyed = 0

    def run(self) -> None:
        import pkcs11
        while time.monotonic() < self.deadline:
            op = self.pick()
            try:
                getattr(self, "op_" + op)()
                self.ops[op] += 1
            except pkcs11.PKCS11Error as e:
                self.errors[f"{op}: {ckr_name(e)}"] += 1
            except Exception as e:  # a wrong answer or a bug in the library: both count
                self.wrong.append(f"{op}: {type(e).__name__}: {e}")
                if len(self.wrong) > 20:
                    return

    def pick(self) -> str:
        aes = [k for k, v in self.live.items() if v["kind"] == "aes"]
        ec = [k for k, v in self.live.items() if v["kind"] == "ec"]
        choices = ["gen_aes", "gen_ec"] if len(self.live) < LIVE_CAP else ["destroy", "destroy"]
        if aes:
            choices += ["crypt", "crypt", "crypt"]
        if ec:
            choices += ["sign", "sign", "sign"]
        if self.live:
            choices += ["find", "find", "label", "destroy"]
        return self.rng.choice(choices)

    def label(self) -> str:
        self.n += 1
        return f"{self.tag}-{self.n}"

    def op_gen_aes(self) -> None:
        from pkcs11 import KeyType
        label = self.label()
        key = self.s.generate_key(KeyType.AES, 256, label=label, store=True)
        self.live[label] = {"kind": "aes", "objs": [key]}
        self.created += 1

    def op_gen_ec(self) -> None:
        from pkcs11 import Attribute, KeyType
        from pkcs11.util.ec import encode_named_curve_parameters
        label = self.label()
        params = self.s.create_domain_parameters(KeyType.EC, {
            Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
        pub, priv = params.generate_keypair(store=True, label=label)
        self.live[label] = {"kind": "ec", "objs": [priv, pub], "point": bytes(pub[Attribute.EC_POINT])}
        self.created += 2

    def op_crypt(self) -> None:
        from pkcs11 import Mechanism
        key = self.live[self.rng.choice([k for k, v in self.live.items() if v["kind"] == "aes"])]["objs"][0]
        data = os.urandom(self.rng.randrange(1, 300))
        iv = os.urandom(16)
        ct = key.encrypt(data, mechanism=Mechanism.AES_CBC_PAD, mechanism_param=iv)
        if key.decrypt(ct, mechanism=Mechanism.AES_CBC_PAD, mechanism_param=iv) != data:
            raise AssertionError("decrypt(encrypt(data)) != data")

    def op_sign(self) -> None:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
        from pkcs11 import Mechanism
        entry = self.live[self.rng.choice([k for k, v in self.live.items() if v["kind"] == "ec"])]
        priv, pub = entry["objs"]
        data = os.urandom(64)
        sig = priv.sign(data, mechanism=Mechanism.ECDSA_SHA256)
        if not pub.verify(data, sig, mechanism=Mechanism.ECDSA_SHA256):
            raise AssertionError("C_Verify refused a signature C_Sign just made")
        if pub.verify(data + b"x", sig, mechanism=Mechanism.ECDSA_SHA256):
            raise AssertionError("C_Verify accepted a signature over other data")
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), entry["point"][2:])
        key.verify(encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")), data,
                   ec.ECDSA(hashes.SHA256()))

    def op_find(self) -> None:
        from pkcs11 import Attribute
        label = self.rng.choice(list(self.live))
        found = list(self.s.get_objects({Attribute.LABEL: label}))
        if len(found) != len(self.live[label]["objs"]):
            raise AssertionError(f"find {label!r}: {len(found)} objects, expected {len(self.live[label]['objs'])}")

    def op_label(self) -> None:
        from pkcs11 import Attribute
        old = self.rng.choice(list(self.live))
        new = self.label()
        entry = self.live.pop(old)
        try:
            for o in entry["objs"]:
                o[Attribute.LABEL] = new
        except Exception:
            self.live[old] = entry  # the objects that were renamed are found by neither: a "find" says so
            raise
        self.live[new] = entry

    def op_destroy(self) -> None:
        label = self.rng.choice(list(self.live))
        entry = self.live[label]
        while entry["objs"]:
            entry["objs"][-1].destroy()
            entry["objs"].pop()
            self.destroyed += 1
        del self.live[label]


def worker_main(argv: list[str]) -> int:
    import pkcs11
    ap = argparse.ArgumentParser(prog="soak.py worker")
    ap.add_argument("--index", type=int, required=True)
    ap.add_argument("--seconds", type=float, required=True)
    a = ap.parse_args(argv)
    lib = pkcs11.lib(LIB)
    token = lib.get_token(token_label="Futurex")
    login = token.open(rw=True, user_pin=PIN)
    deadline = time.monotonic() + a.seconds
    works = []
    for t in range(THREADS):
        works.append(ThreadWork(token.open(rw=True), f"p{a.index}t{t}", a.index * 100 + t, deadline))
    threads = [threading.Thread(target=w.run) for w in works]
    for th in threads:
        th.start()
    for th in threads:
        th.join(a.seconds + 120)
    ops, errors = Counter(), Counter()
    for w in works:
        ops.update(w.ops)
        errors.update(w.errors)
    print(json.dumps({"ops": ops, "errors": errors, "wrong": [x for w in works for x in w.wrong],
                      "created": sum(w.created for w in works), "destroyed": sum(w.destroyed for w in works),
                      "hung": sum(th.is_alive() for th in threads)}), flush=True)
    if not any(th.is_alive() for th in threads):
        login.close()
    os._exit(0)  # a hung thread must not keep the process


COUNT = """
s = pkcs11.lib(LIB).get_token(token_label="Futurex").open(rw=True, user_pin=PIN)
out(objects=len(list(s.get_objects())))
"""


# ------------------------------------------------------------------ the driver

def run_soak(mode: str, base: str, seconds: float, say=print) -> dict:
    from integration_fixtures import run_child
    os.makedirs(base, exist_ok=True)
    state = os.path.join(base, "state")
    make_state(state)
    server = None
    if mode == "embedded":
        cfg = write_config(os.path.join(base, "fxpkcs11.cfg"), state, log_file=os.path.join(base, "fx.log"))
    else:
        from net_support import ServerProcess, identity_config, make_client_identity
        ident = make_client_identity(state, os.path.join(base, "pki"))
        server = ServerProcess(state, base, name="server")
        server.start()
        cfg = identity_config(os.path.join(base, "fxpkcs11.cfg"), server, ident, reply_timeout=60)
    try:
        t0 = time.monotonic()
        procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "worker", "--index", str(i),
                                   "--seconds", str(seconds)], cwd="/", env=child_env(cfg),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for i in range(PROCESSES)]
        results, crashed = [], []
        for p in procs:
            try:
                out, err = p.communicate(timeout=seconds + 180)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
            lines = [ln for ln in out.splitlines() if ln.startswith("{")]
            if p.returncode != 0 or not lines:
                crashed.append(f"exit {p.returncode}: {err[-1500:]}")
            else:
                results.append(json.loads(lines[-1]))
        elapsed = time.monotonic() - t0
        count = run_child(cfg, COUNT)["objects"]
        alive = server.alive() if server is not None else True
    finally:
        if server is not None:
            server.stop()
    ops, errors = Counter(), Counter()
    for r in results:
        ops.update(r["ops"])
        errors.update(r["errors"])
    created, destroyed = sum(r["created"] for r in results), sum(r["destroyed"] for r in results)
    return {"mode": mode, "seconds": elapsed, "ops": dict(ops), "total_ops": sum(ops.values()),
            "ops_per_s": sum(ops.values()) / max(elapsed, 1e-9), "errors": dict(errors),
            "wrong": [x for r in results for x in r["wrong"]], "crashed": crashed,
            "hung": sum(r["hung"] for r in results), "created": created, "destroyed": destroyed,
            "objects": count, "server_alive": alive}


def failures(fig: dict) -> list[str]:
    out = [f"wrong: {x}" for x in fig["wrong"][:10]] + [f"worker {x}" for x in fig["crashed"]]
    out += [f"error {k} x{v}" for k, v in fig["errors"].items()]
    if fig["hung"]:
        out.append(f"{fig['hung']} threads still running after the deadline")
    if fig["objects"] != fig["created"] - fig["destroyed"]:
        out.append(f"{fig['objects']} objects at the end, expected {fig['created']} - {fig['destroyed']}")
    if not fig["server_alive"]:
        out.append("the server died")
    return out


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        return worker_main(sys.argv[2:])
    from common import parse_args, write_result
    a = parse_args("4 processes x 4 threads of mixed operations on one state, embedded and over vhsm serve")
    seconds = 60.0 if a.budget == "long" else 10.0
    figs = []
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        for mode in ("embedded", "server"):
            figs.append(run_soak(mode, os.path.join(tmp, mode), seconds))
    rows: list[tuple[str, Any]] = []
    problems = []
    for f in figs:
        m = f["mode"]
        errs = ", ".join(f"{k} ×{v}" for k, v in sorted(f["errors"].items())) or "none"
        rows += [(f"{m}: operations ({PROCESSES} processes × {THREADS} threads, {f['seconds']:.0f} s)",
                  f["total_ops"]),
                 (f"{m}: operations per second", f"{f['ops_per_s']:.0f}"),
                 (f"{m}: errors by CKR", errs),
                 (f"{m}: wrong results", len(f["wrong"])),
                 (f"{m}: objects at the end / created − destroyed",
                  f"{f['objects']} / {f['created']} − {f['destroyed']} = {f['created'] - f['destroyed']}")]
        problems += [f"{m}: {p}" for p in failures(f)]
    notes = [f"{f['mode']}: " + ", ".join(f"{k} {v}" for k, v in sorted(f["ops"].items())) for f in figs]
    write_result(a.out, "soak", "concurrency soak, embedded and over vhsm serve", rows, not problems,
                 notes + problems[:20])
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
