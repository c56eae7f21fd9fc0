"""Fuzz the Excrypt wire of a live `vhsm serve` over mutual TLS.

Valid frames (a corpus built against real keys) are mutated: tags, lengths, bad hex, huge
fields, missing brackets, binary junk, truncated and oversized frames, deep JSON; slow
clients drip frames a byte at a time and many connections open at once. Meanwhile a
python-pkcs11 client signs and verifies in its own process. The server must stay up, answer
every malformed frame with an error frame or a close (never a traceback), keep the signer
working with correct signatures, and keep its memory (VmRSS) bounded.

`tests/test_wire_hostile.py` runs `fuzz()` for about 30 s in CI; this file's main runs it
for minutes (`--budget long`) and writes its figures (tests/stress/common.py).
"""
from __future__ import annotations

import os
import random
import ssl
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
for p in (HERE, TESTS, os.path.dirname(TESTS)):
    if p not in sys.path:
        sys.path.insert(0, p)

from fxpkcs11 import ck  # noqa: E402
from net_support import (Child, ClientIdentity, RawTls, ServerProcess, fields, identity_config,  # noqa: E402
                         make_client_identity, read_text)
from support import PIN, make_state  # noqa: E402
from vhsm import wire  # noqa: E402
from vhsm.excrypt import Command  # noqa: E402

FUZZ_USER = "fuzz1"  # identity of partition Fuzz (slots 1000..1999); the signer is crypto1 in App
HARDENED_TP = ["ECHO", "PRMD", "RAND", "HASH", "GPKM", "GPKS", "GPKR"]  # guide 6.5.1
P256 = bytes.fromhex("06082a8648ce3d030107")

SIGNER = """
import select
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
with tok.open(rw=True, user_pin=PIN) as s:
    pub, priv = s.generate_keypair(KeyType.RSA, 2048)
    key = rsa.RSAPublicNumbers(int.from_bytes(pub[Attribute.PUBLIC_EXPONENT], "big"),
                               int.from_bytes(pub[Attribute.MODULUS], "big")).public_key()
    step("ready")
    ok = bad = errors = 0
    last_error, gap, last_ok = "", 0.0, time.monotonic()
    while not select.select([sys.stdin], [], [], 0)[0]:
        data = os.urandom(32)
        try:
            sig = priv.sign(data, mechanism=Mechanism.SHA256_RSA_PKCS)
            key.verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
            ok += 1
            now = time.monotonic()
            gap, last_ok = max(gap, now - last_ok), now
        except InvalidSignature:
            bad += 1
        except Exception as e:
            errors += 1
            last_error = repr(e)
        time.sleep(0.05)
    step("done", ok=ok, bad=bad, errors=errors, last_error=last_error,
         gap=max(gap, time.monotonic() - last_ok))
"""


def frame(code: str, **tags) -> bytes:
    return wire.encode_command(Command(code, tags))


# ------------------------------------------------------------------ the device under fuzz

@dataclass
class Target:
    base: str
    state: str
    ident: ClientIdentity
    server: ServerProcess
    cfg: str
    max_message: int
    restarts: int = 0

    def rss_kib(self) -> int:
        return _status_kib(self.server.pid, "VmRSS")

    def hwm_kib(self) -> int:
        return _status_kib(self.server.pid, "VmHWM")

    def ensure_up(self) -> None:
        """Restart a server that died (counted: the goal is none)."""
        if not self.server.alive():
            self.restarts += 1
            self.server.start()


def _status_kib(pid: int | None, name: str) -> int:
    for line in read_text(f"/proc/{pid}/status").splitlines():
        if line.startswith(name + ":"):
            return int(line.split()[1])
    return 0


def prepare(base: str, *, max_message: int = 65536, max_clients: int = 512) -> Target:
    """A device with partitions App (crypto1, the signer) and Fuzz (fuzz1), Transaction
    Processing hardened as in the guide, a client identity and a running server."""
    from vhsm.device import VirtualHSM
    from vhsm.factory import TRANSACTION_PROCESSING
    state = os.path.join(base, "state")
    make_state(state, partitions={"App": (0, 999), "Fuzz": (1000, 1999)})
    dev = VirtualHSM(state)
    try:
        tp = dev.store.get_role(TRANSACTION_PROCESSING)
        dev.store.put_role({**tp, "perms": ["Keys"], "key_ranges": [], "commands": list(HARDENED_TP)})
    finally:
        dev.close()
    ident = make_client_identity(state, os.path.join(base, "pki"))
    server = ServerProcess(state, base, name="fuzzed",
                           args=("--handshake-timeout", "3", "--max-message", str(max_message),
                                 "--idle-timeout", "60", "--max-clients", str(max_clients)))
    server.start()
    cfg = identity_config(os.path.join(base, "fxpkcs11.cfg"), server, ident)
    return Target(base, state, ident, server, cfg, max_message)


def login_frames() -> list[bytes]:
    return [frame("LOGI", UN=FUZZ_USER, PW=PIN), frame("SESO", SH=7, RW=True)]


def build_corpus(t: Target) -> list[bytes]:
    """Valid frames naming real token keys of partition Fuzz (made here, over the wire)."""
    c = RawTls(t.server.port, t.ident)
    try:
        for f in login_frames():
            assert fields(c.call(f))["AN"] == "Y"
        aes = int(fields(c.call(frame("GPGS", SH=7, RW=True, MC=ck.CKM_AES_KEY_GEN,
                                      TM={ck.CKA_VALUE_LEN: 32, ck.CKA_TOKEN: True, ck.CKA_LABEL: "fuzz-aes"})))["OB"])
        pair = fields(c.call(frame("GECC", SH=7, RW=True, MC=ck.CKM_EC_KEY_PAIR_GEN,
                                   PT={ck.CKA_EC_PARAMS: P256, ck.CKA_TOKEN: True},
                                   VT={ck.CKA_TOKEN: True, ck.CKA_LABEL: "fuzz-ec"})))
        pub, priv = int(pair["PB"]), int(pair["PV"])
    finally:
        c.close()
    return [
        frame("ECHO", AG="fuzz"), frame("RAND", LN=32), frame("HASH"), frame("PRMD"), frame("TIME"),
        frame("SESO", SH=8, RW=True), frame("SESC", SH=8),
        frame("GPKM", SH=7, TM={ck.CKA_LABEL: "fuzz-aes"}),
        frame("GPKR", OB=aes, AT=[ck.CKA_CLASS, ck.CKA_KEY_TYPE, ck.CKA_VALUE, ck.CKA_LABEL]),
        frame("GPKS", OB=aes, TM={ck.CKA_LABEL: "renamed"}),
        frame("GPSE", SH=7, OB=aes, MC=ck.CKM_AES_CBC_PAD, MP=bytes(16)),
        frame("GPSE", PH="F", CX=1, DA=b"some data to encrypt"),
        frame("GPAS", SH=7, OB=priv, MC=ck.CKM_ECDSA_SHA256),
        frame("GPAV", SH=7, OB=pub, MC=ck.CKM_ECDSA_SHA256),
        frame("GPAS", PH="F", CX=2, DA=b"data", SG=bytes(64)),
        frame("GPKW", SH=7, MC=ck.CKM_AES_KEY_WRAP, KW=aes, OB=priv),
        frame("GPKU", SH=7, MC=ck.CKM_AES_KEY_WRAP, KW=aes, WK=bytes(40),
              TM={ck.CKA_CLASS: ck.CKO_SECRET_KEY, ck.CKA_KEY_TYPE: ck.CKK_AES}),
        frame("GPGS", SH=7, MC=ck.CKM_AES_KEY_GEN, TM={ck.CKA_VALUE_LEN: 16}),
        frame("GPKX", SH=7, MC=ck.CKM_ECDH1_DERIVE, OB=priv, MP={"kdf": 1, "public": bytes(65)},
              TM={ck.CKA_CLASS: ck.CKO_SECRET_KEY, ck.CKA_KEY_TYPE: ck.CKK_GENERIC_SECRET}),
        frame("GPDG", PH="I", MC=ck.CKM_SHA256, DA=b"abc"),
        frame("GPKD", OB=999_999),
        frame("LOGI", UN="no-such-identity", PW="guess"),
        frame("APPN"), frame("APPJ", AI="0" * 32),
        frame("ADMN", MT="device_info"),
        # the binary envelope ({length,text length} and TAG#n# raw fields) the library may use
        wire.encode_command(Command("GPSE", {"PH": "F", "CX": 1, "DA": os.urandom(600)}), binary=True),
        wire.encode_command(Command("GPKU", {"SH": 7, "MC": ck.CKM_AES_KEY_WRAP, "KW": aes, "WK": os.urandom(264),
                                             "TM": {ck.CKA_CLASS: ck.CKO_SECRET_KEY}}), binary=True),
    ]


# ------------------------------------------------------------------ mutations

JUNK = [b";", b";;", b"[", b"]", b"<", b">", b"\x00", b"\xff\xfe", b"\r\n", b"ZZ", b"zz1", b"-", b"-1",
        b"9" * 40, b"0x10", b"Y", b"N", b"g", b"7b", b"5b5b5b", b"2c", b"\t", b"AO", b"AOECHO"]


def _mutate_bytes(rng: random.Random, f: bytes) -> bytes:
    b = bytearray(f)
    for _ in range(rng.randint(1, 5)):
        if not b:
            b = bytearray(b"[")
        i = rng.randrange(len(b))
        op = rng.randrange(7)
        if op == 0:
            b[i] = rng.randrange(256)
        elif op == 1:
            b[i] = rng.choice(b"0123456789abcdefABCDEF;[]-,YN")
        elif op == 2:
            del b[i:i + rng.randint(1, 12)]
        elif op == 3:
            b[i:i] = rng.choice(JUNK)
        elif op == 4:
            j = rng.randrange(len(b))
            b[i:i] = b[j:j + rng.randint(1, 20)]
        elif op == 5:  # swap a tag for another two letters
            k = b.find(b";", i)
            if 0 <= k < len(b) - 3:
                b[k + 1:k + 3] = bytes(rng.choice(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(2))
        else:
            b[i] = rng.choice(b"0123456789")
    # a frame with a ] inside would be two frames; keep what the kind says it is
    return bytes(b)


def _huge_field(rng: random.Random, t: Target) -> bytes:
    size = rng.choice([t.max_message // 4, t.max_message // 2 - 64, t.max_message - 64])
    tag = rng.choice(["DA", "AG", "TM", "MP", "WK", "AT", "UN"])
    body = rng.choice([b"a", b"0", b"1,", b"7b"]) * (size // 2)
    return b"[AO" + rng.choice([b"GPSE", b"ECHO", b"GPKU", b"GPKR"]) + b";" + tag.encode() + body[:size] + b";]"


def _deep_json(rng: random.Random, t: Target) -> bytes:
    depth = rng.choice([100, 1000, 5000, t.max_message // 8])
    text = (b"[" * depth + b"]" * depth) if rng.random() < 0.5 else (b'{"$d":' * depth + b"1" + b"}" * depth)
    return b"[AOGPSE;MP" + text.hex().encode()[: t.max_message - 32] + b";]"


def _bad_attrs(rng: random.Random, t: Target) -> bytes:
    raw = rng.choice([b"\x01" + b"\xff\xff\xff\xff", b"\x01\x00\x00\x00\x01" + bytes(8) + b"D" * 60,
                      b"\x02", b"", b"\x01" + os.urandom(rng.randint(1, 200))])
    return b"[AOGPGS;SH7;MC4224;TM" + raw.hex().encode() + b";]"


def _many_fields(rng: random.Random, t: Target) -> bytes:
    n = min(5000, t.max_message // 8)
    return b"[AOECHO;" + b"".join(b"Q%c%d;" % (65 + i % 26, i) for i in range(n))[: t.max_message - 16] + b"]"


GENERATED: dict[str, Callable[[random.Random, Target], bytes]] = {
    "huge field": _huge_field, "deep json": _deep_json, "bad attribute blob": _bad_attrs,
    "many fields": _many_fields,
}


@dataclass
class Mutant:
    kind: str
    data: bytes
    closes: bool = False   # the server is expected to close (garbage, oversized)
    unfinished: bool = False  # no ] at the end: no reply is due; the client hangs up
    may_wait: bool = False  # an envelope whose length was mutated: the server may wait for more


def mutants(rng: random.Random, corpus: list[bytes], t: Target) -> Iterator[Mutant]:
    while True:
        base = rng.choice(corpus)
        r = rng.random()
        if wire.is_envelope(base) and r < 0.6:
            yield Mutant("mutated envelope", _mutate_bytes(rng, base), may_wait=True)
        elif r < 0.55:
            data = _mutate_bytes(rng, base)
            inner = data[1:-1] if data[:1] == b"[" and data[-1:] == b"]" else None
            if inner is not None and b"]" not in inner and b"[" not in inner:
                yield Mutant("mutated frame", data)
            elif data.lstrip(b" \t\r\n")[:1] == b"[" and b"]" not in data:
                yield Mutant("missing ]", data, unfinished=True)  # the server waits for the rest
            else:
                yield Mutant("broken brackets", data, closes=data.lstrip(b" \t\r\n")[:1] != b"[")
        elif r < 0.65:
            name = rng.choice(list(GENERATED))
            yield Mutant(name, GENERATED[name](rng, t))
        elif r < 0.72:
            yield Mutant("binary junk", os.urandom(rng.randint(1, 512)).replace(b"[", b"\x00"), closes=True)
        elif r < 0.80:
            yield Mutant("binary inside a frame", b"[AOECHO;AG" + os.urandom(rng.randint(1, 64))
                         .replace(b"]", b"\x01").replace(b"[", b"\x02") + b";]")
        elif r < 0.88:
            yield Mutant("truncated", base[:rng.randrange(1, len(base) - 1)], unfinished=True)
        elif r < 0.93:
            yield Mutant("oversized", b"[AOECHO;AG" + b"A" * (t.max_message + rng.randint(1, 4096)) + b";]",
                         closes=True)
        else:
            yield Mutant("missing [", base[1:], closes=True)


# ------------------------------------------------------------------ the fuzzing client

@dataclass
class Tally:
    sent: int = 0
    accepted: int = 0
    refused: int = 0
    closed: int = 0
    unfinished: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    connections: int = 0

    def problem(self, text: str) -> None:
        if len(self.problems) < 50:
            self.problems.append(text)


class FuzzClient:
    """One connection at a time; reconnects (and logs in as fuzz1) after every close."""

    def __init__(self, t: Target, tally: Tally, login: bool) -> None:
        self.t, self.tally, self.login = t, tally, login
        self.c: RawTls | None = None

    def conn(self) -> RawTls:
        if self.c is None:
            self.c = RawTls(self.t.server.port, self.t.ident, timeout=20)
            self.tally.connections += 1
            if self.login:
                for f in login_frames():
                    self.c.call(f)
        return self.c

    def drop(self) -> None:
        if self.c is not None:
            self.c.close()
            self.c = None

    def send(self, m: Mutant) -> None:
        tally = self.tally
        tally.sent += 1
        tally.by_kind[m.kind] = tally.by_kind.get(m.kind, 0) + 1
        try:
            c = self.conn()
            c.send(m.data)
            if m.unfinished:
                tally.unfinished += 1
                self.drop()
                return
            reply = c.reply(timeout=2 if m.may_wait else 20)
        except (OSError, ssl.SSLError) as e:
            if m.may_wait and isinstance(e, TimeoutError):  # waiting for the length it was told
                tally.unfinished += 1
                self.drop()
                return
            tally.closed += 1
            self.drop()
            if not m.closes and not isinstance(e, (ConnectionError, ssl.SSLError)):
                tally.problem(f"{m.kind}: {e!r} on {m.data[:80]!r}")
            return
        except AssertionError as e:  # no reply in time on a frame that was whole
            if m.may_wait:
                tally.unfinished += 1
                self.drop()
                return
            tally.problem(f"{m.kind}: {e} on {m.data[:80]!r}")
            self.drop()
            return
        if reply is None:
            tally.closed += 1
            self.drop()
            if not m.closes and m.kind not in ("broken brackets", "mutated frame", "mutated envelope"):
                tally.problem(f"{m.kind}: closed without an error frame on {m.data[:80]!r}")
            return
        if m.kind == "mutated envelope":  # the answer may be an envelope: RawTls reads text frames only
            if ";ANN;" in reply:
                tally.refused += 1
            else:
                tally.accepted += 1
            self.drop()
            return
        try:
            r = wire.decode_reply(reply.encode("ascii"))
        except wire.WireError as e:
            tally.problem(f"{m.kind}: unreadable reply {reply[:120]!r}: {e}")
            self.drop()
            return
        if r.ok:
            tally.accepted += 1
        else:
            tally.refused += 1
            if "internal error" in r.error_text:
                tally.problem(f"{m.kind}: internal error for {m.data[:120]!r}")
        if m.closes or m.kind in ("broken brackets", "mutated envelope") or c.buf.strip():
            self.drop()  # the rest of a broken frame would be read as the next one


def slow_loris(t: Target, clients: int, seconds: float, tally: Tally, stop: threading.Event) -> None:
    """`clients` connections each drip one valid ECHO a byte at a time over `seconds`; each
    must be answered in full at the end."""
    conns: list[RawTls] = []
    payload = frame("ECHO", AG="slow-loris-" + "x" * 40)
    try:
        for _ in range(clients):
            conns.append(RawTls(t.server.port, t.ident, timeout=30))
        delay = seconds / len(payload)
        for i in range(len(payload)):
            if stop.is_set():
                return
            for c in conns:
                c.send(payload[i:i + 1])
            time.sleep(delay)
        for c in conns:
            r = c.reply(timeout=20)
            if r is None or fields(r).get("AG") != "slow-loris-" + "x" * 40:
                tally.problem(f"slow loris: reply {r!r}")
    except (OSError, AssertionError) as e:
        tally.problem(f"slow loris: {e!r}")
    finally:
        for c in conns:
            c.close()


def many_connections(t: Target, count: int, tally: Tally) -> int:
    """`count` connections open at once, each asks ECHO; returns how many were answered."""
    answered = 0
    lock = threading.Lock()

    def one(i: int) -> None:
        nonlocal answered
        try:
            c = RawTls(t.server.port, t.ident, timeout=60)
            try:
                ok = fields(c.call(frame("ECHO", AG=f"many{i}"), timeout=60)).get("AG") == f"many{i}"
            finally:
                c.close()
        except (OSError, AssertionError, TypeError) as e:
            tally.problem(f"many connections #{i}: {e!r}")
            return
        if ok:
            with lock:
                answered += 1
    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    return answered


@dataclass
class Outcome:
    tally: Tally
    seconds: float
    signer: dict
    rss_start_kib: int
    rss_max_kib: int
    rss_end_kib: int
    hwm_kib: int
    restarts: int
    tracebacks: int
    many_answered: int
    many_opened: int
    slow_clients: int
    rss_mid_kib: int  # just after the burst of simultaneous connections


def fuzz(t: Target, seconds: float, *, seed: int = 1, slow_clients: int = 10, many: int = 100,
         workers: int = 2) -> Outcome:
    """Fuzz for `seconds` with `workers` fuzzing connections, a slow-loris group, a burst of
    many connections and a python-pkcs11 signer running throughout."""
    corpus = build_corpus(t)
    signer = Child(t.cfg, SIGNER)
    tally = Tally()
    stop = threading.Event()
    try:
        signer.expect("ready", timeout=120)
        rss_start = t.rss_kib()
        rss_max = rss_start
        loris = threading.Thread(target=slow_loris, args=(t, slow_clients, min(seconds / 2, 60), tally, stop))
        loris.start()

        def work(n: int) -> None:
            rng = random.Random(seed * 1000 + n)
            client = FuzzClient(t, tally, login=n % 2 == 0)
            gen = mutants(rng, corpus, t)
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and not stop.is_set():
                client.send(next(gen))
            client.drop()
        fuzzers = [threading.Thread(target=work, args=(n,)) for n in range(workers)]
        t0 = time.monotonic()
        for th in fuzzers:
            th.start()
        many_answered, many_done, rss_mid = 0, False, 0
        while any(th.is_alive() for th in fuzzers):
            time.sleep(0.5)
            rss_max = max(rss_max, t.rss_kib())
            if not many_done and time.monotonic() - t0 > seconds / 3:
                many_answered, many_done = many_connections(t, many, tally), True
                rss_mid = t.rss_kib()
            if not t.server.alive():
                tally.problem("the server died")
                t.ensure_up()
        for th in fuzzers:
            th.join()
        stop.set()
        loris.join(120)
        elapsed = time.monotonic() - t0
        signer.send("stop")
        done = signer.expect("done", timeout=60)
    finally:
        stop.set()
        signer.close()
    text = t.server.log_text() + read_text(t.server.stderr_path)
    return Outcome(tally, elapsed, done, rss_start, rss_max, t.rss_kib(), t.hwm_kib(), t.restarts,
                   text.count("Traceback"), many_answered, many, slow_clients, rss_mid)


def check(o: Outcome, rss_slack_kib: int) -> list[str]:
    """What went wrong, as sentences (empty: all held)."""
    bad = list(o.tally.problems)
    s = o.signer
    if s["errors"] or s["bad"] or not s["ok"]:
        bad.append(f"signer: {s}")
    if s["gap"] > 20:
        bad.append(f"signer stalled for {s['gap']:.1f} s")
    if o.restarts:
        bad.append(f"server restarted {o.restarts} times")
    if o.tracebacks:
        bad.append(f"{o.tracebacks} tracebacks in the server log")
    if o.many_answered != o.many_opened:
        bad.append(f"only {o.many_answered} of {o.many_opened} simultaneous connections answered")
    if o.rss_max_kib - o.rss_start_kib > rss_slack_kib:
        bad.append(f"server RSS grew from {o.rss_start_kib} KiB to {o.rss_max_kib} KiB")
    if o.tally.refused == 0:
        bad.append(f"the fuzzer never saw a refusal: {o.tally}")
    return bad


def main() -> int:
    from common import parse_args, write_result
    args = parse_args(__doc__.splitlines()[0])
    long = args.budget == "long"
    seconds = 420 if long else 30
    max_message = (1 << 20) if long else 65536  # oversized frames cost the sender: 1 MiB keeps the run light
    with tempfile.TemporaryDirectory(prefix="fuzz-wire-") as base:
        t = prepare(base, max_message=max_message)
        try:
            o = fuzz(t, seconds, slow_clients=20 if long else 10, many=200 if long else 100, workers=2)
        finally:
            t.server.stop()
    slack = 400 * 1024 if long else 200 * 1024
    bad = check(o, slack)
    k = o.tally
    rows = [("duration (s)", f"{o.seconds:.0f}"), ("frames sent", k.sent), ("accepted (mutant still valid)", k.accepted),
            ("refused with an error frame", k.refused), ("closed by the server", k.closed),
            ("unfinished frames abandoned", k.unfinished), ("fuzzing connections", k.connections),
            ("slow-loris clients answered", o.slow_clients), ("simultaneous connections answered",
                                                                f"{o.many_answered}/{o.many_opened}"),
            ("signer: good signatures", o.signer["ok"]), ("signer: errors or bad signatures",
                                                          o.signer["errors"] + o.signer["bad"]),
            ("signer: longest gap (s)", f"{o.signer['gap']:.1f}"),
            ("server restarts (goal 0)", o.restarts), ("tracebacks in the server log", o.tracebacks),
            ("server RSS at start (MiB)", f"{o.rss_start_kib / 1024:.0f}"),
            ("server RSS after the connection burst (MiB)", f"{o.rss_mid_kib / 1024:.0f}"),
            ("server RSS max while fuzzing (MiB)", f"{o.rss_max_kib / 1024:.0f}"),
            ("server RSS at end (MiB)", f"{o.rss_end_kib / 1024:.0f}"),
            ("server VmHWM (MiB)", f"{o.hwm_kib / 1024:.0f}"),
            ("max frame (bytes)", max_message)]
    rows += [(f"kind: {kind}", n) for kind, n in sorted(k.by_kind.items())]
    write_result(args.out, "fuzz_wire", "Excrypt frames mutated against a live vhsm serve over mutual TLS",
                 rows, not bad, bad[:10])
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
