"""The FTK through the admin shell: M-of-N card fragments, XOR components, replacement
rules, and the prompts of guide sections 6.1 and 6.4 on a real (pseudo-)terminal.

Guide 6.4: `majorkey random --ftk -m M -n N` loads a random FTK and writes it to N cards,
any M of which rebuild it on a second HSM with `majorkey recombine --key ftk`. Here a card
is a file holding one Shamir share, encrypted under a key derived from the card's PIN.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import pty
import re
import secrets
import select
import shutil
import sqlite3
import subprocess
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fxpkcs11 import ck
from integration_fixtures import run_child
from support import ROOT, build_library, write_config

VHSM = os.path.join(ROOT, ".venv", "bin", "vhsm")
NEW = {"Admin1": "Admin1-Pass", "Admin2": "Admin2-Pass"}
# A factory-fresh device's first steps (guide 6.1): both admins log in with the default
# password and change it, which major keys need.
PREPARE = ("login user -u Admin1 -p safest\nlogin user -u Admin2 -p safest\n"
           "user change-password -u Admin1 --old-password safest --new-password Admin1-Pass\n"
           "user change-password -u Admin2 --old-password safest --new-password Admin2-Pass\n")
LOGIN = "login user -u Admin1 -p Admin1-Pass\nlogin user -u Admin2 -p Admin2-Pass\n"


# ------------------------------------------------------------------ helpers

def vhsm(state: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([VHSM, "--state", state, *argv], cwd=ROOT, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=180)


def script(state: str, text: str, *, prefix: str = LOGIN) -> subprocess.CompletedProcess:
    """Run commands as a `vhsm -f` script, after `prefix` (the two admin logins)."""
    folder = os.path.dirname(state)
    fd, path = tempfile_in(folder)
    with os.fdopen(fd, "w") as f:
        f.write(prefix + textwrap.dedent(text))
    return vhsm(state, "-f", path)


def tempfile_in(folder: str) -> tuple[int, str]:
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"script-{secrets.token_hex(4)}.fxcli")
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), path


def ok(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 0, f"status {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    return p.stdout


def refused(p: subprocess.CompletedProcess, rule: str) -> str:
    assert p.returncode == 1, f"status {p.returncode}\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
    assert f"refused by rule '{rule}'" in p.stderr, p.stderr
    return p.stderr


def fresh(base, name: str) -> str:
    """A factory-fresh device whose admins changed their default passwords; no FTK."""
    state = os.path.join(str(base), name, "state")
    ok(script(state, "", prefix=PREPARE))
    return state


def status(state: str) -> dict:
    return json.loads(ok(vhsm(state, "--output", "json", "majorkey", "status")))["FTK"]


def kcv_of(key: bytes) -> str:
    """The FTK's KCV, computed here: AES-ECB of a zero block, first two bytes in hex."""
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return (enc.update(bytes(16)) + enc.finalize())[:2].hex().upper()


def shown_kcv(text: str) -> str:
    m = re.search(r"FTK (?:loaded|recombined)[^\n]*KCV ([0-9A-F]{4})", text)
    assert m, text
    return m.group(1)


def card_files(folder: str) -> list[str]:
    return sorted(f for f in os.listdir(folder) if f.startswith("ftk-card-"))


def make_cards(state: str, folder: str, m: int, n: int, pins: list[str], *, long_forms: bool = False) -> str:
    flags = (f"--fragments-required {m} --fragments-total {n}" if long_forms else f"-m {m} -n {n}")
    pin_flags = " ".join(f"--card-pin {p}" for p in pins)
    out = ok(script(state, f"majorkey random --ftk {flags} --cards-dir {folder} {pin_flags}\n"))
    assert len(card_files(folder)) == n
    return shown_kcv(out)


def subset_folder(src: str, dst: str, indexes: tuple[int, ...]) -> str:
    os.makedirs(dst)
    for i in indexes:
        shutil.copy2(os.path.join(src, f"ftk-card-{i}.json"), dst)
    return dst


def recombine(state: str, folder: str, pins: list[str], extra: str = "") -> subprocess.CompletedProcess:
    pin_flags = " ".join(f"--card-pin {p}" for p in pins)
    return script(state, f"majorkey recombine --key ftk --cards-dir {folder} {pin_flags} {extra}\n")


def copy_db(src_state: str, dst_state: str) -> None:
    """Move the key table (and the rest of the database) from one device to another, as a
    cluster sync or a restored backup would; the destination keeps its own secure memory
    (its FTK). SQLite's backup reads through the WAL, which a plain file copy could miss."""
    dst = os.path.join(dst_state, "vhsm.db")
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(dst + suffix):
            os.remove(dst + suffix)
    src_con = sqlite3.connect(os.path.join(src_state, "vhsm.db"))
    dst_con = sqlite3.connect(dst)
    try:
        src_con.backup(dst_con)
    finally:
        dst_con.close()
        src_con.close()


def pins_for(n: int, tag: str = "") -> list[str]:
    return [f"pin{tag}{i}-{secrets.token_hex(2)}" for i in range(1, n + 1)]


# ------------------------------------------------------------------ M-of-N round trips

@pytest.mark.parametrize("m, n, long_forms", [(2, 3, False), (3, 5, True)])
def test_every_m_subset_rebuilds_the_ftk_on_a_fresh_device(tmp_path, m, n, long_forms):
    a = fresh(tmp_path, "A")
    cards = str(tmp_path / "cards")
    pins = pins_for(n)
    kcv = make_cards(a, cards, m, n, pins, long_forms=long_forms)
    assert status(a) == {"loaded": True, "kcv": kcv}
    # one file per card, owner-only, each under its own PIN (salt, nonce), shares all different
    docs = []
    for i, name in enumerate(card_files(cards), 1):
        path = os.path.join(cards, name)
        assert name == f"ftk-card-{i}.json"
        assert os.stat(path).st_mode & 0o077 == 0
        with open(path) as f:
            doc = json.load(f)
        assert (doc["kcv"], doc["m"], doc["n"], doc["index"]) == (kcv, m, n, i)
        docs.append(doc)
    assert len({d["share"] for d in docs}) == len({d["salt"] for d in docs}) == n

    def second_device(number: int, subset: tuple[int, ...]) -> tuple[str, str, dict]:
        """Only `subset`'s card files, copied to their own folder, on a fresh device."""
        folder = subset_folder(cards, str(tmp_path / f"subset{number}"), subset)
        b = fresh(tmp_path, f"B{number}")
        assert status(b) == {"loaded": False, "kcv": None}
        out = ok(recombine(b, folder, [pins[i - 1] for i in subset]))
        return shown_kcv(out), out, status(b)

    subsets = list(itertools.combinations(range(1, n + 1), m))
    assert len(subsets) == math.comb(n, m)
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(second_device, range(len(subsets)), subsets))
    for subset, (shown, out, st) in zip(subsets, results):
        assert shown == kcv, (subset, out)
        assert st == {"loaded": True, "kcv": kcv}
    # all N cards work too (the first M are used)
    c = fresh(tmp_path, "C")
    assert shown_kcv(ok(recombine(c, cards, pins))) == kcv


def test_keys_are_usable_on_a_second_device_only_with_the_same_ftk(tmp_path):
    build_library()
    a = fresh(tmp_path, "A")
    cards = str(tmp_path / "cards")
    pins = pins_for(3)
    kcv = make_cards(a, cards, 2, 3, pins)
    perms = " ".join(f"--add-perm Excrypt:{c}" for c in ("GRSA", "GPAS", "GPGS", "GPSE", "GPKM", "GPKS"))
    ok(script(a, f"""
        role add --name App --application --key-range (0,999)
        role modify --name App {perms}
        identity add --name crypto1 --role App --password safest
        """))
    made = run_child(write_config(str(tmp_path / "A" / "fxpkcs11.cfg"), a), """
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        with tok.open(rw=True, user_pin=PIN) as s:
            pub, priv = s.generate_keypair(KeyType.RSA, 2048, store=True, label="follows-ftk")
            aes = s.generate_key(KeyType.AES, 256, store=True, label="follows-ftk-aes")
            out(n=pub[Attribute.MODULUS].hex(), e=pub[Attribute.PUBLIC_EXPONENT].hex(),
                ct=aes.encrypt(bytes(32), mechanism=Mechanism.AES_ECB).hex())
    """)
    public = rsa.RSAPublicNumbers(int(made["e"], 16), int(made["n"], 16)).public_key()
    use = """
        from integration_fixtures import LowLevel
        tok = pkcs11.lib(LIB).get_token(token_label="Futurex")
        with tok.open(rw=True, user_pin=PIN) as s:
            priv = s.get_key(object_class=ObjectClass.PRIVATE_KEY, label="follows-ftk")
            aes = s.get_key(object_class=ObjectClass.SECRET_KEY, label="follows-ftk-aes")
            try:
                sig = priv.sign(b"on another device", mechanism=Mechanism.SHA256_RSA_PKCS).hex()
                ct = aes.encrypt(bytes(32), mechanism=Mechanism.AES_ECB).hex()
                error = None
            except pkcs11.PKCS11Error as e:
                sig = ct = None
                error = type(e).__name__
            rv = LowLevel().init("Sign", s.handle, 0x40, priv.handle)  # CKM_SHA256_RSA_PKCS
            out(sig=sig, ct=ct, error=error, rv=rv)
    """

    # B: the FTK recombined from cards 2 and 3; the key table copied from A
    b = fresh(tmp_path, "B")
    ok(recombine(b, subset_folder(cards, str(tmp_path / "b-cards"), (2, 3)), pins[1:]))
    copy_db(a, b)
    r = run_child(write_config(str(tmp_path / "B" / "fxpkcs11.cfg"), b), use)
    assert r["error"] is None and r["rv"] == ck.CKR_OK
    public.verify(bytes.fromhex(r["sig"]), b"on another device", padding.PKCS1v15(), hashes.SHA256())
    assert r["ct"] == made["ct"]  # the same AES key came back
    assert status(b)["kcv"] == kcv

    # C: another FTK; the same key table does not unwrap
    c = fresh(tmp_path, "C")
    other = shown_kcv(ok(script(c, "majorkey random --ftk\n")))
    assert other != kcv
    copy_db(a, c)
    r = run_child(write_config(str(tmp_path / "C" / "fxpkcs11.cfg"), c), use)
    assert r["error"] == "DeviceError" and r["rv"] == ck.CKR_DEVICE_ERROR
    assert r["sig"] is None


# ------------------------------------------------------------------ bad cards

@pytest.fixture
def two_of_three(tmp_path):
    a = fresh(tmp_path, "A")
    cards = str(tmp_path / "cards")
    pins = pins_for(3)
    kcv = make_cards(a, cards, 2, 3, pins)
    return cards, pins, kcv


def assert_unchanged(state: str) -> None:
    assert status(state) == {"loaded": False, "kcv": None}


def test_wrong_pin_is_refused_naming_the_card(tmp_path, two_of_three):
    cards, pins, kcv = two_of_three
    b = fresh(tmp_path, "B")
    err = refused(recombine(b, cards, [pins[0], "not-the-pin"]), "major key")
    assert "ftk-card-2" in err and "wrong PIN" in err
    assert "ftk-card-1" not in err
    # PINs in the wrong order: card 1 does not open with card 2's PIN
    err = refused(recombine(b, cards, [pins[1], pins[0]]), "major key")
    assert "ftk-card-1" in err
    assert_unchanged(b)
    rows = json.loads(ok(vhsm(b, "--output", "json", "audit", "show", "--command", "majorkey recombine")))
    assert [r["result"] for r in rows] == ["refused", "refused"]
    assert "ftk-card-2" in rows[0]["text"]


@pytest.mark.parametrize("damage", ["share", "header", "truncated", "not-json"])
def test_corrupted_card_is_refused(tmp_path, two_of_three, damage):
    cards, pins, kcv = two_of_three
    path = os.path.join(cards, "ftk-card-2.json")
    with open(path) as f:
        text = f.read()
    doc = json.loads(text)
    if damage == "share":  # flip one bit of the encrypted share
        raw = bytearray(bytes.fromhex(doc["share"]))
        raw[len(raw) // 2] ^= 0x01
        doc["share"] = raw.hex()
        text = json.dumps(doc)
    elif damage == "header":  # claim to be another card: the header is authenticated
        doc["index"] = 3
        text = json.dumps(doc)
    elif damage == "truncated":
        text = text[: len(text) // 2]
    else:
        text = "garbage"
    with open(path, "w") as f:
        f.write(text)
    b = fresh(tmp_path, "B")
    err = refused(recombine(b, cards, pins), "major key")
    assert "ftk-card-2" in err
    assert_unchanged(b)
    # the two good cards still do it
    good = subset_folder(cards, str(tmp_path / "good"), (1, 3))
    assert shown_kcv(ok(recombine(b, good, [pins[0], pins[2]]))) == kcv


@pytest.mark.parametrize("m, n", [(2, 3), (3, 5)])
def test_m_minus_one_cards_do_not_rebuild_the_ftk(tmp_path, m, n):
    a = fresh(tmp_path, "A")
    cards = str(tmp_path / "cards")
    pins = pins_for(n)
    make_cards(a, cards, m, n, pins)
    b = fresh(tmp_path, "B")
    # too few PINs for the folder
    err = refused(recombine(b, cards, pins[: m - 1]), "major key")
    assert f"{m - 1} card(s) read" in err and f"needs {m} of {n}" in err
    # too few cards in the folder, whatever the PINs
    few = subset_folder(cards, str(tmp_path / "few"), tuple(range(n - m + 2, n + 1)))
    err = refused(recombine(b, few, pins[n - m + 1:] + ["extra-pin"]), "major key")
    assert f"{m - 1} card(s) read" in err
    assert_unchanged(b)
    # an empty folder
    os.makedirs(tmp_path / "empty")
    refused(recombine(b, str(tmp_path / "empty"), pins[:m]), "major key")
    assert_unchanged(b)


def test_a_card_folder_that_cannot_be_written_refuses_before_the_ftk_changes(tmp_path):
    """The cards are the FTK's only backup: no folder for them, no new FTK."""
    state = fresh(tmp_path, "A")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    pins = " ".join(f"--card-pin {p}" for p in pins_for(3))
    err = refused(script(state, f"majorkey random --ftk -m 2 -n 3 --cards-dir {blocker}/cards {pins}\n"),
                  "major key")
    assert "cannot write the cards" in err
    assert_unchanged(state)
    assert not [r for r in json.loads(ok(vhsm(state, "--output", "json", "audit", "show")))
                if r["command"] == "majorkey random" and r["result"] == "ok"]


def test_cards_of_two_ftks_are_not_mixed(tmp_path):
    a1, a2 = fresh(tmp_path, "A1"), fresh(tmp_path, "A2")
    pins1, pins2 = pins_for(3, "x"), pins_for(3, "y")
    kcv1 = make_cards(a1, str(tmp_path / "cards1"), 2, 3, pins1)
    kcv2 = make_cards(a2, str(tmp_path / "cards2"), 2, 3, pins2)
    assert kcv1 != kcv2
    mixed = str(tmp_path / "mixed")
    os.makedirs(mixed)
    shutil.copy2(tmp_path / "cards1" / "ftk-card-1.json", mixed)
    shutil.copy2(tmp_path / "cards2" / "ftk-card-2.json", mixed)
    b = fresh(tmp_path, "B")
    err = refused(recombine(b, mixed, [pins1[0], pins2[1]]), "major key")
    assert "ftk-card-2" in err and "another FTK" in err and kcv2 in err
    assert_unchanged(b)


# ------------------------------------------------------------------ XOR components

def test_ftk_from_xor_components_shows_each_kcv(tmp_path):
    state = fresh(tmp_path, "A")
    parts = [secrets.token_bytes(32) for _ in range(3)]
    combined = bytes(a ^ b ^ c for a, b, c in zip(*parts))
    flags = " ".join(f"--component {p.hex()}" for p in parts)
    out = ok(script(state, f"majorkey load --key ftk {flags}\n"))
    for i, p in enumerate(parts, 1):
        assert f"component {i} KCV {kcv_of(p)}" in out, out
    assert shown_kcv(out) == kcv_of(combined)
    assert status(state) == {"loaded": True, "kcv": kcv_of(combined)}
    # the same FTK, entered as two components, with the hex written in groups
    other = fresh(tmp_path, "B")
    p1 = secrets.token_bytes(32)
    p2 = bytes(x ^ y for x, y in zip(p1, combined))
    grouped = " ".join(p2.hex()[i:i + 8] for i in range(0, 64, 8))
    out = ok(script(other, f'majorkey load --key ftk --component {p1.hex()} --component "{grouped}"\n'))
    assert shown_kcv(out) == kcv_of(combined)


@pytest.mark.parametrize("components, why", [
    (["00" * 32], "at least two components"),
    (["00" * 32, "11" * 31], "component 2 is 31 bytes"),
    (["zz" * 32, "11" * 32], "component 1 is not hexadecimal"),
])
def test_bad_components_are_refused(tmp_path, components, why):
    state = fresh(tmp_path, "A")
    flags = " ".join(f"--component {c}" for c in components)
    err = refused(script(state, f"majorkey load --key ftk {flags}\n"), "major key")
    assert why in err
    assert_unchanged(state)


def test_major_keys_need_dual_control_and_changed_passwords(tmp_path):
    state = str(tmp_path / "state")
    err = refused(script(state, "majorkey random --ftk\n", prefix="login user -u Admin1 -p safest\n"),
                  "dual control")
    assert "Admin1" in err
    err = refused(script(state, "majorkey load --key ftk --component {0} --component {0}\n".format("01" * 32),
                         prefix="login user -u Admin1 -p safest\nlogin user -u Admin2 -p safest\n"),
                  "default passwords")
    assert "Admin1" in err and "Admin2" in err
    assert_unchanged(state)


# ------------------------------------------------------------------ replacing the FTK

def test_replacing_an_ftk_that_wraps_keys_needs_force(tmp_path):
    state = fresh(tmp_path, "A")
    first = shown_kcv(ok(script(state, "majorkey random --ftk\n")))
    # an empty key table: replacing the FTK orphans nothing
    second = shown_kcv(ok(script(state, "majorkey random --ftk\n")))
    assert status(state)["kcv"] == second != first
    # a key in the table, wrapped under the FTK
    ok(script(state, "generate --algo RSA --bits 2048 --usage mak --name Wrapped --slot next\n"))
    table = json.loads(ok(vhsm(state, "--output", "json", "keytable", "list")))
    assert [r["label"] for r in table] == ["Wrapped"]
    slot = table[0]["slot"]
    comps = f"--component {'01' * 32} --component {'02' * 32}"
    cards = str(tmp_path / "cards")
    pins = pins_for(2)
    for command in ("majorkey random --ftk", f"majorkey load --key ftk {comps}",
                    f"majorkey random --ftk -m 2 -n 2 --cards-dir {cards} " + " ".join(f"--card-pin {p}" for p in pins)):
        err = refused(script(state, command + "\n"), "major key")
        assert "--force" in err and second in err
        assert status(state)["kcv"] == second
    assert not os.path.exists(cards) or not card_files(cards)
    # cards of another FTK, recombined over it: refused the same way
    other = fresh(tmp_path, "B")
    other_kcv = make_cards(other, cards, 2, 2, pins)
    refused(recombine(state, cards, pins), "major key")
    assert status(state)["kcv"] == second
    # --force --yes does it (--yes: no confirmation prompt)
    assert shown_kcv(ok(recombine(state, cards, pins, "--force --yes"))) == other_kcv
    assert status(state)["kcv"] == other_kcv
    third = shown_kcv(ok(script(state, "majorkey random --ftk --force --yes\n")))
    assert status(state)["kcv"] == third
    # deleting the key by slot empties the table: no --force needed any more
    out = ok(script(state, f"keytable delete --slot {slot}\n"))
    assert str(slot) in out
    assert json.loads(ok(vhsm(state, "--output", "json", "keytable", "list"))) == []
    err = refused(script(state, f"keytable delete --slot {slot}\n"), "key table")
    assert "empty" in err
    ok(script(state, f"majorkey load --key ftk {comps}\n"))
    assert status(state)["kcv"] == kcv_of(bytes([0x03] * 32))


# ------------------------------------------------------------------ prompts on a terminal

class Terminal:
    """`vhsm` on a pseudo-terminal: the child is a session leader whose controlling terminal
    is the pty, so getpass reads from it with echo off, as at a real prompt."""

    def __init__(self, *argv: str) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # child
            try:
                os.execv(VHSM, [VHSM, *argv])
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.pending = b""
        self.transcript = b""

    def _read(self, timeout: float) -> bytes:
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return b""
        try:
            chunk = os.read(self.fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            chunk = b""
        if not chunk:
            raise EOFError
        self.transcript += chunk
        return chunk

    def expect(self, text: str, timeout: float = 60) -> str:
        """Read until `text`; return what came before it (and it)."""
        want = text.encode()
        end = time.monotonic() + timeout
        while want not in self.pending:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {text!r} within {timeout}s; the terminal shows:\n"
                                     f"{self.transcript.decode(errors='replace')}")
            try:
                self.pending += self._read(left)
            except EOFError:
                raise AssertionError(f"vhsm ended before {text!r}; the terminal shows:\n"
                                     f"{self.transcript.decode(errors='replace')}") from None
        i = self.pending.index(want) + len(want)
        seen, self.pending = self.pending[:i], self.pending[i:]
        return seen.decode(errors="replace")

    def send(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\r")

    def answer(self, prompt: str, line: str) -> str:
        seen = self.expect(prompt)
        self.send(line)
        return seen

    def command(self, line: str) -> str:
        """Type a command at the `vhsm> ` prompt; the output comes with the next prompt."""
        self.send(line)
        return self.expect("vhsm> ")

    def close(self, timeout: float = 60) -> int:
        self.send("exit")
        end = time.monotonic() + timeout
        try:
            while time.monotonic() < end:
                self._read(1)
        except EOFError:
            pass
        _, st = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(st)

    def kill(self) -> None:
        try:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        try:
            os.close(self.fd)
        except OSError:
            pass


@pytest.fixture
def terminal():
    opened: list[Terminal] = []

    def start(*argv: str) -> Terminal:
        t = Terminal(*argv)
        opened.append(t)
        return t
    yield start
    for t in opened:
        t.kill()


def prompt_login(t: Terminal, name: str, password: str) -> str:
    t.send("login user")
    t.answer("Username: ", name)
    t.answer("Password: ", password)
    return t.expect("vhsm> ")


def prompt_change_password(t: Terminal, name: str, old: str, new: str, confirm: str | None = None) -> str:
    t.send(f"user change-password -u {name}")
    t.answer("Old password: ", old)
    t.answer("New password: ", new)
    t.answer("Confirm new password: ", new if confirm is None else confirm)
    return t.expect("vhsm> ")


def test_login_and_change_password_prompt_on_a_terminal(tmp_path, terminal):
    state = str(tmp_path / "state")
    t = terminal("--state", state)
    t.expect("vhsm> ")
    assert "connected to" in t.command("connect usb")
    # `login user`, run twice, logs both default administrators in (guide 6.1)
    assert "Admin1 logged in" in prompt_login(t, "Admin1", "safest")
    assert "Admin2 logged in" in prompt_login(t, "Admin2", "safest")
    assert "wrong identity name or password" in prompt_login(t, "Admin1", "not-it")
    # `user change-password -u NAME` asks for the old password and the new one twice
    assert "the two new passwords differ" in prompt_change_password(t, "Admin1", "safest", "Typed-0nce",
                                                                    "Typed-Twice")
    assert "the old password for 'Admin1' is wrong" in prompt_change_password(t, "Admin1", "wrong", "Abc-12345")
    assert "password of Admin1 changed" in prompt_change_password(t, "Admin1", "safest", NEW["Admin1"])
    assert "password of Admin2 changed" in prompt_change_password(t, "Admin2", "safest", NEW["Admin2"])
    # both are still logged in: dual-control work goes on in the same shell
    assert "FTK loaded" in t.command("majorkey random --ftk")
    assert t.close() == 0
    shown = t.transcript.decode(errors="replace")
    for secret in ("safest", "not-it", "Typed-0nce", "Typed-Twice", NEW["Admin1"], NEW["Admin2"]):
        assert secret not in shown, f"{secret!r} was echoed"  # passwords are read with echo off
    idents = {i["name"]: i for i in json.loads(ok(vhsm(state, "--output", "json", "identity", "list")))}
    assert not idents["Admin1"]["default_password"] and not idents["Admin2"]["default_password"]
    ok(script(state, "role list\n"))  # the new passwords log in
    assert script(state, "role list\n", prefix="login user -u Admin1 -p safest\n").returncode == 1


def test_majorkey_prompts_for_folder_and_pins_on_a_terminal(tmp_path, terminal):
    a = fresh(tmp_path, "A")
    cards = str(tmp_path / "cards")
    pins = pins_for(3)
    t = terminal("--state", a)
    t.expect("vhsm> ")
    prompt_login(t, "Admin1", NEW["Admin1"])
    prompt_login(t, "Admin2", NEW["Admin2"])
    t.send("majorkey random --ftk -m 2 -n 3")
    t.answer("Folder for the cards: ", cards)
    for i, pin in enumerate(pins, 1):
        t.answer(f"PIN for card {i}: ", pin)
    out = t.expect("vhsm> ")
    kcv = shown_kcv(out)
    assert "2-of-3" in out
    assert t.close() == 0
    assert not any(pin in t.transcript.decode(errors="replace") for pin in pins)
    assert card_files(cards) == ["ftk-card-1.json", "ftk-card-2.json", "ftk-card-3.json"]

    # the second device: `majorkey recombine --key ftk` asks for the folder, the count, the PINs
    b = fresh(tmp_path, "B")
    folder = subset_folder(cards, str(tmp_path / "b-cards"), (1, 3))
    t = terminal("--state", b)
    t.expect("vhsm> ")
    prompt_login(t, "Admin1", NEW["Admin1"])
    prompt_login(t, "Admin2", NEW["Admin2"])
    t.send("majorkey recombine --key ftk")
    t.answer("Folder holding the cards: ", folder)
    t.answer("How many cards will you insert? ", "2")
    t.answer("PIN for card 1: ", pins[0])
    t.answer("PIN for card 2: ", pins[2])
    assert shown_kcv(t.expect("vhsm> ")) == kcv
    assert t.close() == 0
    assert status(b) == {"loaded": True, "kcv": kcv}


def test_force_is_confirmed_at_the_prompt(tmp_path, terminal):
    state = fresh(tmp_path, "A")
    kcv = shown_kcv(ok(script(state, """
        majorkey random --ftk
        generate --algo RSA --bits 2048 --name Wrapped
        """)))
    t = terminal("--state", state)
    t.expect("vhsm> ")
    prompt_login(t, "Admin1", NEW["Admin1"])
    prompt_login(t, "Admin2", NEW["Admin2"])
    t.send("majorkey random --ftk --force")
    t.answer("Type YES to go on: ", "no")
    assert "refused by rule 'major key'" in t.expect("vhsm> ")
    t.send("majorkey random --ftk --force")
    t.answer("Type YES to go on: ", "YES")
    new = shown_kcv(t.expect("vhsm> "))
    assert t.close() == 0
    assert new != kcv and status(state)["kcv"] == new
