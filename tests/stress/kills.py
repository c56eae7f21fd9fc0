"""kill -9 during bursts of key creation, label changes and deletion; then check the state.

Two targets: an embedded host (a python-pkcs11 process with libfxpkcs11.so in-process, killed
itself) and `vhsm serve` (killed under a python-pkcs11 client over mutual TLS).

A worker process journals every call: an "intent" line before it and an "ok" line once it
returned CKR_OK, each fsync'd, with the key's KCV (AES: first 3 bytes of AES-ECB of a zero
block, computed through PKCS #11) or its public value. The next worker starts with the check:
C_Initialize and login on the state, every journaled key present once and working with its
KCV unchanged, labels as last changed, deletions still deleted, nothing in the partition
outside the journal except what the one call in flight created, and the audit log verified.
It records how the call in flight came out ("resolve"), then bursts until it is killed.

    .venv/bin/python tests/stress/kills.py [--budget ci|long] [--out result.json]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
for p in (HERE, TESTS, os.path.dirname(TESTS)):
    if p not in sys.path:
        sys.path.insert(0, p)

from support import LIB, PIN, child_env, make_state  # noqa: E402

GHOST_PIN = "ghost:no-such-identity"  # a failed login on the audit slot: one audit row, no lockout
BURST_SECONDS = 30.0  # a worker stops by itself after this (it is normally killed long before)

# ------------------------------------------------------------------ journal


class Journal:
    """Append-only JSON lines, each fsync'd before the call goes on."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def write(self, **entry: Any) -> None:
        os.write(self.fd, (json.dumps(entry, separators=(",", ":")) + "\n").encode())
        os.fsync(self.fd)


def read_journal(path: str) -> list[dict]:
    out = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.endswith("\n"):  # a line cut by the kill was never fsync'd as written
                    out.append(json.loads(line))
    except FileNotFoundError:
        pass
    return out


def replay(lines: list[dict]) -> tuple[dict[str, dict], dict | None, set[tuple[str, str]]]:
    """From the journal: the live objects by id (label, cls, kind, fp), the one call in flight
    (an intent with no ok or resolve after it) and the (label, cls) of every deleted object."""
    objs: dict[str, dict] = {}
    deleted: set[tuple[str, str]] = set()
    pending: dict | None = None
    for e in lines:
        t = e["t"]
        if t == "intent":
            pending = e
            continue
        if t not in ("ok", "resolve"):
            continue
        pending = None
        for oid, obj in e.get("set", {}).items():
            if obj is None:
                gone = objs.pop(oid, None)
                if gone:
                    deleted.add((gone["label"], gone["cls"]))
            else:
                objs.setdefault(oid, {}).update(obj)
    return objs, pending, deleted


# ------------------------------------------------------------------ worker (a PKCS #11 host)

def _write_config(path: str, blocks: list[str], log: str) -> str:
    with open(path, "w") as f:
        f.write("\n".join(blocks) + f"\n<LOG-MODE> INFO </LOG-MODE>\n<LOG-FILE> {log} </LOG-FILE>\n")
    return path


def embedded_config(path: str, state: str) -> str:
    """Slot 0 for crypto1; slot 1 without <CRYPTO-OPR>, where a wrong identity writes audit rows."""
    blocks = [f"<HSM>\n <SLOT> 0 </SLOT>\n <LABEL> Futurex </LABEL>\n <VHSM-STATE> {state} </VHSM-STATE>\n"
              f" <CRYPTO-OPR> crypto1 </CRYPTO-OPR>\n</HSM>",
              f"<HSM>\n <SLOT> 1 </SLOT>\n <LABEL> Audit </LABEL>\n <VHSM-STATE> {state} </VHSM-STATE>\n</HSM>"]
    return _write_config(path, blocks, path + ".log")


class Worker:
    def __init__(self, journal: str, state: str, rnd: int, seed: int) -> None:
        import pkcs11
        self.p = pkcs11
        self.journal_path = journal
        self.state = state
        self.round = rnd
        self.rng = random.Random(seed)
        self.lib = pkcs11.lib(LIB)
        token = self.lib.get_token(token_label="Futurex")
        self.session = token.open(rw=True, user_pin=PIN)
        try:
            self.audit_token = self.lib.get_token(token_label="Audit")
        except pkcs11.PKCS11Error:
            self.audit_token = None
        self.counter = 0

    # -- what a key is worth: its check value or public value, through PKCS #11
    def find(self, label: str, cls: str) -> list:
        from pkcs11 import Attribute, ObjectClass
        oc = {"secret": ObjectClass.SECRET_KEY, "priv": ObjectClass.PRIVATE_KEY, "pub": ObjectClass.PUBLIC_KEY}[cls]
        return list(self.session.get_objects({Attribute.LABEL: label, Attribute.CLASS: oc}))

    def kcv(self, key) -> str:
        return key.encrypt(bytes(16), mechanism=self.p.Mechanism.AES_ECB)[:3].hex()

    def public_value(self, pub, kind: str) -> str:
        from pkcs11 import Attribute
        if kind == "ec":
            return bytes(pub[Attribute.EC_POINT]).hex()
        return bytes(pub[Attribute.MODULUS]).hex() + ":" + bytes(pub[Attribute.PUBLIC_EXPONENT]).hex()

    def signs(self, priv, kind: str, public: str | None) -> bool:
        """The private key signs through PKCS #11; the signature checks under the journaled
        public value (when the journal has it)."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
        data = b"kill check %d" % self.round
        M = self.p.Mechanism
        sig = priv.sign(data, mechanism=M.ECDSA_SHA256 if kind == "ec" else M.SHA256_RSA_PKCS)
        if public is None:
            return bool(sig)
        try:
            if kind == "ec":
                point = bytes.fromhex(public)[2:]  # DER OCTET STRING header of a P-256 point
                key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
                half = len(sig) // 2
                der = encode_dss_signature(int.from_bytes(sig[:half], "big"), int.from_bytes(sig[half:], "big"))
                key.verify(der, data, ec.ECDSA(hashes.SHA256()))
            else:
                n, e = (int(x, 16) for x in public.split(":"))
                rsa.RSAPublicNumbers(e, n).public_key().verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True

    def check_object(self, handle, obj: dict) -> str | None:
        """None when the object works and matches its journaled value, else what is wrong."""
        try:
            if obj["cls"] == "secret":
                got = self.kcv(handle)
                return None if obj.get("fp") in (None, got) else f"KCV {got} != journal {obj['fp']}"
            if obj["cls"] == "pub":
                got = self.public_value(handle, obj["kind"])
                return None if obj.get("fp") in (None, got) else "public value differs from the journal"
            return None if self.signs(handle, obj["kind"], obj.get("fp")) else "signature does not verify"
        except self.p.PKCS11Error as e:
            return f"{type(e).__name__} using it"

    # -- the check at start
    def verify(self) -> dict:
        from pkcs11 import Attribute, ObjectClass
        journal = Journal(self.journal_path)
        objs, pending, deleted = replay(read_journal(self.journal_path))
        names = {ObjectClass.SECRET_KEY: "secret", ObjectClass.PRIVATE_KEY: "priv", ObjectClass.PUBLIC_KEY: "pub"}
        present: dict[tuple[str, str], list] = {}
        total = 0
        for o in self.session.get_objects():
            total += 1
            cls = names.get(o[Attribute.CLASS], "other")
            present.setdefault((o[Attribute.LABEL], cls), []).append(o)
        fig = {"objects": total, "journal_keys": len(objs), "lost": [], "damaged": [], "unknown": [],
               "resurrected": [], "inflight": None}
        # how the call in flight came out
        if pending is not None:
            fig["inflight"] = self._resolve(pending, objs, present, journal)
        by_key = {(o["label"], o["cls"]): oid for oid, o in objs.items()}
        for oid, obj in objs.items():
            found = present.get((obj["label"], obj["cls"]), [])
            if not found:
                fig["lost"].append(f"{oid} ({obj['label']})")
                continue
            if len(found) > 1:
                fig["unknown"].append(f"{len(found) - 1} extra objects labelled {obj['label']}")
            problem = self.check_object(found[0], obj)
            if problem:
                fig["damaged"].append(f"{oid}: {problem}")
        for (label, cls), found in present.items():
            if (label, cls) not in by_key:
                what = fig["resurrected"] if (label, cls) in deleted else fig["unknown"]
                what.append(f"{len(found)} x {cls} {label!r}")
        from vhsm.store import SQLiteStore
        with SQLiteStore(os.path.join(self.state, "vhsm.db")) as store:
            fig["audit_ok"], fig["audit_text"] = store.verify_audit()
        self.objs = objs
        return fig

    def _resolve(self, pending: dict, objs: dict, present: dict, journal: Journal) -> str:
        op = pending["op"]
        changes: dict[str, Any] = {}
        if op == "create":
            outcome = []
            for oid, obj in pending["objs"].items():
                found = present.get((obj["label"], obj["cls"]), [])
                if found:
                    obj = dict(obj)
                    if obj["cls"] == "pub" and obj.get("fp") is None:
                        obj["fp"] = self.public_value(found[0], obj["kind"])
                    if obj["cls"] == "secret" and obj.get("fp") is None:
                        obj["fp"] = self.kcv(found[0])
                    changes[oid] = obj
                    outcome.append(obj["cls"])
            result = ("created " + "+".join(outcome)) if outcome else "not created"
        elif op == "label":
            oid = pending["oid"]
            obj = objs[oid]
            if present.get((pending["new"], obj["cls"])):
                changes[oid] = {"label": pending["new"]}
                result = "label changed"
            else:
                result = "label unchanged"
        else:
            oid = pending["oid"]
            obj = objs[oid]
            if present.get((obj["label"], obj["cls"])):
                result = "not deleted"
            else:
                changes[oid] = None
                result = "deleted"
        journal.write(t="resolve", op=op, result=result, set=changes)
        for oid, obj in changes.items():
            if obj is None:
                objs.pop(oid, None)
            else:
                objs.setdefault(oid, {}).update(obj)
        return f"{op}: {result}"

    # -- the burst
    def step(self, journal: Journal) -> None:
        r = self.rng.random()
        live = list(self.objs)
        if len(live) > 150 and r < 0.52:  # keep the partition (and the check after a kill) bounded
            r = 0.8
        if r < 0.22:
            self._create(journal, "aes")
        elif r < 0.36:
            self._create(journal, "aes-import")
        elif r < 0.50:
            self._create(journal, "ec")
        elif r < 0.52:
            self._create(journal, "rsa")
        elif r < 0.72 and live:
            oid = self.rng.choice(live)
            obj = self.objs[oid]
            self.counter += 1
            new = f"{obj['label'].split('~')[0]}~{self.round}.{self.counter}"
            journal.write(t="intent", op="label", oid=oid, new=new)
            h = self.find(obj["label"], obj["cls"])[0]
            h[self.p.Attribute.LABEL] = new
            journal.write(t="ok", op="label", set={oid: {"label": new}})
            obj["label"] = new
        elif r < 0.96 and live:
            oid = self.rng.choice(live)
            obj = self.objs[oid]
            journal.write(t="intent", op="destroy", oid=oid)
            self.find(obj["label"], obj["cls"])[0].destroy()
            journal.write(t="ok", op="destroy", set={oid: None})
            del self.objs[oid]
        elif self.audit_token is not None:
            try:  # a refused login is written to the audit log
                self.audit_token.open(user_pin=GHOST_PIN).close()
            except self.p.PKCS11Error:
                pass

    def _create(self, journal: Journal, kind: str) -> None:
        from pkcs11 import Attribute, KeyType, ObjectClass
        self.counter += 1
        base = f"k{self.round}-{self.counter}"
        s = self.session
        if kind in ("aes", "aes-import"):
            value = os.urandom(32) if kind == "aes-import" else None
            fp = None
            if value is not None:
                from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
                enc = Cipher(algorithms.AES(value), modes.ECB()).encryptor()
                fp = (enc.update(bytes(16)) + enc.finalize())[:3].hex()
            obj = {"label": base, "cls": "secret", "kind": "aes", "fp": fp}
            journal.write(t="intent", op="create", objs={base: obj})
            if value is None:
                key = s.generate_key(KeyType.AES, 256, label=base, store=True)
            else:
                key = s.create_object({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES,
                                       Attribute.VALUE: value, Attribute.LABEL: base, Attribute.TOKEN: True,
                                       Attribute.ENCRYPT: True, Attribute.DECRYPT: True})
            got = self.kcv(key)
            if fp is not None and got != fp:
                raise SystemExit(f"imported key {base}: KCV {got} != {fp} right after C_CreateObject")
            obj["fp"] = got
            journal.write(t="ok", op="create", set={base: obj})
            self.objs[base] = obj
            return
        ec = kind == "ec"
        objs = {base + ".priv": {"label": base, "cls": "priv", "kind": kind, "fp": None},
                base + ".pub": {"label": base, "cls": "pub", "kind": kind, "fp": None}}
        journal.write(t="intent", op="create", objs=objs)
        if ec:
            from pkcs11.util.ec import encode_named_curve_parameters
            params = s.create_domain_parameters(KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(
                "secp256r1")}, local=True)
            pub, priv = params.generate_keypair(store=True, label=base)
        else:
            pub, priv = s.generate_keypair(KeyType.RSA, 2048, store=True, label=base)
        fp = self.public_value(pub, kind)
        for o in objs.values():
            o["fp"] = fp
        journal.write(t="ok", op="create", set=objs)
        self.objs.update(objs)


def worker_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="kills.py worker")
    ap.add_argument("--journal", required=True)
    ap.add_argument("--state", required=True)
    ap.add_argument("--round", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--verify-only", action="store_true")
    a = ap.parse_args(argv)

    def say(**kw: Any) -> None:
        print(json.dumps(kw), flush=True)
    try:
        w = Worker(a.journal, a.state, a.round, a.seed)
        fig = w.verify()
    except Exception as e:  # the state did not open or the check could not run: that is the finding
        say(step="verified", error=f"{type(e).__name__}: {e}")
        return 2
    say(step="verified", **fig)
    if a.verify_only:
        return 0
    journal = Journal(a.journal)
    deadline = time.monotonic() + BURST_SECONDS
    ops = 0
    try:
        while time.monotonic() < deadline:
            w.step(journal)
            ops += 1
    except w.p.PKCS11Error as e:  # the server went away under us: the intent stays open
        say(step="stopped", ops=ops, error=type(e).__name__)
        return 0
    say(step="stopped", ops=ops)
    return 0


# ------------------------------------------------------------------ the driver

class Target:
    """Where the state lives and what gets killed: the host itself, or `vhsm serve`."""

    def __init__(self, mode: str, base: str) -> None:
        self.mode, self.base = mode, base
        self.state = os.path.join(base, "state")
        self.journal = os.path.join(base, "journal.jsonl")
        make_state(self.state)
        self.server = None
        if mode == "embedded":
            self.cfg = embedded_config(os.path.join(base, "fxpkcs11.cfg"), self.state)
        else:
            from net_support import ServerProcess, hsm_block, make_client_identity, write_net_config
            ident = make_client_identity(self.state, os.path.join(base, "pki"))
            self.server = ServerProcess(self.state, base, name="server")
            self.server.start()
            tls = dict(ca=[ident.ca], cert=ident.cert, key=ident.key, reply_timeout=20)
            self.cfg = write_net_config(os.path.join(base, "fxpkcs11.cfg"), [
                hsm_block([self.server.address], **tls),
                hsm_block([self.server.address], slot=1, label="Audit", identity=None, **tls)])

    def worker(self, rnd: int, seed: int, verify_only: bool = False) -> subprocess.Popen:
        argv = [sys.executable, os.path.abspath(__file__), "worker", "--journal", self.journal,
                "--state", self.state, "--round", str(rnd), "--seed", str(seed)]
        if verify_only:
            argv.append("--verify-only")
        return subprocess.Popen(argv, cwd="/", env=child_env(self.cfg), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()


def _read_step(proc: subprocess.Popen, name: str, timeout: float) -> dict:
    """The worker's JSON line for step `name` (bounded wait)."""
    import select
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, min(1.0, deadline - time.monotonic())))
        if not ready:
            if proc.poll() is not None:
                break
            continue
        line = proc.stdout.readline()
        if not line:
            break
        if line.startswith("{"):
            msg = json.loads(line)
            if msg.get("step") == name:
                return msg
    proc.kill()
    proc.wait(10)
    return {"step": name, "error": f"no {name!r} line (exit {proc.returncode}): {proc.stderr.read()[-2000:]}"}


def _finish(proc: subprocess.Popen, timeout: float = 15) -> None:
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    for f in (proc.stdout, proc.stderr):
        f.close()


def run_rounds(mode: str, base: str, rounds: int, *, seed: int = 1, burst: tuple[float, float] = (0.05, 0.6),
               say=print) -> dict:
    """`rounds` kills of the target, each during a burst; a check after each kill."""
    rng = random.Random(seed)
    target = Target(mode, base)
    fig: dict[str, Any] = {"rounds": 0, "kills": 0, "survived": 0, "lost": [], "damaged": [], "unknown": [],
                           "resurrected": [], "audit_failures": [], "open_failures": [], "inflight": {},
                           "keys_checked": 0, "max_objects": 0}

    def absorb(rnd: int, check: dict) -> bool:
        if "error" in check:
            fig["open_failures"].append(f"round {rnd}: {check['error']}")
            return False
        fig["keys_checked"] += check["journal_keys"]
        fig["max_objects"] = max(fig["max_objects"], check["objects"])
        for k in ("lost", "damaged", "unknown", "resurrected"):
            fig[k] += [f"round {rnd}: {x}" for x in check[k]]
        if not check["audit_ok"]:
            fig["audit_failures"].append(f"round {rnd}: {check['audit_text']}")
        if check["inflight"]:
            fig["inflight"][check["inflight"]] = fig["inflight"].get(check["inflight"], 0) + 1
        return not any(check[k] for k in ("lost", "damaged", "unknown", "resurrected")) and check["audit_ok"]

    try:
        for rnd in range(1, rounds + 1):
            proc = target.worker(rnd, rng.randrange(1 << 30))
            check = _read_step(proc, "verified", 60)
            if rnd > 1 and absorb(rnd, check):
                fig["survived"] += 1
            if "error" in check:
                _finish(proc)
                say(f"{mode} round {rnd}: {check['error']}")
                break
            time.sleep(rng.uniform(*burst))
            if mode == "embedded":
                proc.kill()
            else:
                target.server.kill9()
            fig["kills"] += 1
            _finish(proc)
            if target.server is not None:
                target.server.start()
            fig["rounds"] = rnd
        proc = target.worker(rounds + 1, 0, verify_only=True)
        check = _read_step(proc, "verified", 60)
        _finish(proc)
        if absorb(rounds + 1, check):
            fig["survived"] += 1
        from net_support import vhsm
        cli = vhsm(target.state, "audit", "verify", check=False)
        fig["audit_cli"] = (cli.returncode, cli.stdout.strip() or cli.stderr.strip())
        fig["journal_lines"] = len(read_journal(target.journal))
    finally:
        target.close()
    return fig


def failures(fig: dict) -> list[str]:
    """Everything that breaks a promise, in words (empty when the run passed)."""
    out = []
    for k in ("open_failures", "lost", "damaged", "unknown", "resurrected", "audit_failures"):
        out += [f"{k}: {x}" for x in fig[k]]
    if fig["survived"] != fig["kills"]:
        out.append(f"{fig['kills']} kills but {fig['survived']} clean checks")
    if fig.get("audit_cli", (1,))[0] != 0:
        out.append(f"vhsm audit verify: {fig.get('audit_cli')}")
    return out


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        return worker_main(sys.argv[2:])
    from common import parse_args, write_result
    a = parse_args("kill -9 of an embedded host and of vhsm serve during bursts; check every key after")
    rounds = 200 if a.budget == "long" else 20
    t0 = time.monotonic()
    results = {}
    with tempfile.TemporaryDirectory(prefix="kills-") as tmp:
        for mode, n in (("embedded", rounds // 2), ("server", rounds - rounds // 2)):
            results[mode] = run_rounds(mode, os.path.join(tmp, mode), n, seed=len(mode))
    elapsed = time.monotonic() - t0
    problems = [f"{m}: {p}" for m, f in results.items() for p in failures(f)]
    rows: list[tuple[str, Any]] = []
    for mode, f in results.items():
        rows += [(f"{mode}: rounds (kill -9 of the {'host' if mode == 'embedded' else 'server'})", f["rounds"]),
                 (f"{mode}: kills survived (clean check after)", f"{f['survived']} of {f['kills']}"),
                 (f"{mode}: keys lost", len(f["lost"]) + len(f["damaged"])),
                 (f"{mode}: half-written or unknown objects found", len(f["unknown"]) + len(f["resurrected"])),
                 (f"{mode}: key checks (journaled keys checked after kills)", f["keys_checked"]),
                 (f"{mode}: audit log verified", "yes" if not f["audit_failures"] and f.get("audit_cli", (1,))[0] == 0
                  else "NO")]
    rows.append(("wall time", f"{elapsed:.0f} s"))
    notes = []
    for mode, f in results.items():
        outcomes = ", ".join(f"{k} ×{v}" for k, v in sorted(f["inflight"].items()))
        notes.append(f"{mode}: the call in flight at the kill: {outcomes or 'none'}")
    notes += problems[:20]
    write_result(a.out, "kills", "kill -9 during bursts of key creation, label changes and deletion",
                 rows, not problems, notes)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
