"""PKCS11Manager driven through stdin as a subprocess: against libfxpkcs11.so on a configured
embedded state, and against SoftHSMv2 with --module on a throw-away token."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from support import PIN, ROOT, build_library, child_env  # noqa: E402
from integration_fixtures import make_env  # noqa: E402

SCRIPT = os.path.join(ROOT, ".venv", "bin", "PKCS11Manager")
SOFTHSM = "/usr/lib/softhsm/libsofthsm2.so"

GUIDE_MENU = """\
Main Menu
  1. Print Library/Token Info

  2. Generate Key

  3. Find Objects
  4. Modify Objects
  5. Delete Objects

  6. Generate Random Data

  7. Sign Data

  8. Login
  9. Logout

  0. Exit
"""

LOGIN = ["8", "1", PIN]


def command() -> list[str]:
    if os.path.exists(SCRIPT):
        return [SCRIPT]
    return [sys.executable, "-m", "fxpkcs11.tools.pkcs11manager"]


def manager(env: dict, answers: list[str], *args: str, eof: bool = False, timeout: float = 180) -> subprocess.CompletedProcess:
    """Run PKCS11Manager with `answers` on stdin (then 0 to exit, unless `eof`)."""
    lines = list(answers) + ([] if eof else ["0"])
    proc = subprocess.run(command() + list(args), input="\n".join(lines) + "\n", cwd="/", env=env,
                          capture_output=True, text=True, timeout=timeout)
    return proc


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc.stdout


_MENU_LINE = re.compile(r"^\s+\d+\. ")


def listings(out: str) -> list[tuple[int, list[dict]]]:
    """Every object listing in `out`: (the announced total, one dict per object: field -> value,
    plus "_lines", the object's lines as printed)."""
    result = []
    lines = out.splitlines()
    i = 0
    while i < len(lines):
        m = re.fullmatch(r"Total number of found objects: (\d+)", lines[i])
        i += 1
        if not m:
            continue
        objects: list[dict] = []
        while i < len(lines) and lines[i].startswith("Object ID: "):
            obj = {"Object ID": lines[i].split(": ", 1)[1], "_lines": [lines[i]]}
            i += 1
            while i < len(lines) and lines[i].startswith("  ") and not _MENU_LINE.match(lines[i]):
                key, _, value = lines[i].strip().partition(": ")
                obj[key] = value
                obj["_lines"].append(lines[i])
                i += 1
            objects.append(obj)
        result.append((int(m.group(1)), objects))
    return result


def last_listing(out: str) -> list[dict]:
    found = listings(out)
    assert found, out
    total, objects = found[-1]
    assert total == len(objects), out
    return objects


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    build_library()
    env = make_env(str(tmp_path_factory.mktemp("pkcs11manager")))
    return child_env(env.cfg)


def gen(kind: str, *answers: str) -> list[str]:
    return ["2", {"RSA": "1", "EC": "2", "AES": "3", "DES3": "4", "GENERIC": "5"}[kind], *answers]


def test_main_menu_is_the_guides(fx):
    out = ok(manager(fx, []))
    assert GUIDE_MENU in out


def test_generate_every_type_and_list_them_in_the_guides_format(fx):
    answers = LOGIN + gen("DES3", "CMS MK0", "VSEC0000", "ED") \
        + gen("RSA", "2048", "", "", "W") \
        + gen("EC", "1", "ec key", "0x0102ff", "SV") \
        + gen("AES", "32", "aes key", "AES1", "") \
        + gen("GENERIC", "20", "hmac key", "", "SV") \
        + ["3", "1"]
    out = ok(manager(fx, answers))
    assert "Login successful." in out
    assert out.count("Generated ") == 5, out
    objects = last_listing(out)
    by_label = {o.get("Label"): o for o in objects}

    des = by_label["CMS MK0"]
    n = int(des["Object ID"])
    assert re.fullmatch(r"[0-9A-F]{4}", des["KCV"])
    assert des["_lines"] == [
        f"Object ID: {n}", f"  Internal ID: {n}", f"  Excrypt Board Slot: {n - 1}",
        "  Class: CKO_SECRET_KEY", "  Key Type: DES3", "  Token: Yes", "  Private: Yes", "  Sensitive: Yes",
        "  Modifiable: Yes", "  Value Len: 24", "  Value Bits: 192", "  Label: CMS MK0", "  ID: VSEC0000",
        f"  KCV: {des['KCV']}", "  Usage: ED"]

    rsa_pub = next(o for o in objects if o["Class"] == "CKO_PUBLIC_KEY" and "Modulus Bits" in o)
    rsa_priv = next(o for o in objects if o["Class"] == "CKO_PRIVATE_KEY" and "Modulus Bits" in o)
    p = int(rsa_pub["Object ID"])
    assert rsa_pub["_lines"] == [   # the guide's RSA public key: no Key Type, no Label, no ID
        f"Object ID: {p}", f"  Internal ID: {p}", f"  Excrypt Board Slot: {p - 1}", "  Class: CKO_PUBLIC_KEY",
        "  Token: Yes", "  Private: Yes", "  Sensitive: No", "  Modifiable: Yes", "  Modulus Bits: 2048",
        f"  KCV: {rsa_pub['KCV']}", "  Usage: W"]
    assert rsa_priv["Key Type"] == "RSA" and rsa_priv["Usage"] == "-"
    assert rsa_priv["KCV"] == rsa_pub["KCV"]  # both halves: SHA-256 of the same SubjectPublicKeyInfo

    ec = [o for o in objects if o.get("Label") == "ec key"]
    assert {o["Class"] for o in ec} == {"CKO_PUBLIC_KEY", "CKO_PRIVATE_KEY"}
    for o in ec:
        assert o["Curve"] == "P-256" and o["ID"] == "0x0102FF"
    assert {o["Class"]: o["Usage"] for o in ec} == {"CKO_PUBLIC_KEY": "V", "CKO_PRIVATE_KEY": "S"}
    assert ec[0]["KCV"] == ec[1]["KCV"]

    aes = by_label["aes key"]
    assert (aes["Key Type"], aes["Value Len"], aes["Value Bits"], aes["ID"], aes["Usage"]) == \
        ("AES", "32", "256", "AES1", "EDWU")
    hmac = by_label["hmac key"]
    assert (hmac["Key Type"], hmac["Value Len"], hmac["Usage"]) == ("GENERIC_SECRET", "20", "SV")
    assert "ID" not in hmac


def test_find_by_class_label_and_id(fx):
    ok(manager(fx, LOGIN + gen("AES", "16", "findme", "FIND-ID", "ED")))
    out = ok(manager(fx, LOGIN + ["3", "2", "3"]))       # class: secret key
    objects = last_listing(out)
    assert objects and all(o["Class"] == "CKO_SECRET_KEY" for o in objects)
    out = ok(manager(fx, LOGIN + ["3", "2", "1"]))       # class: public key
    assert all(o["Class"] == "CKO_PUBLIC_KEY" and "Key Type" not in o for o in last_listing(out))
    out = ok(manager(fx, LOGIN + ["3", "3", "findme"]))
    (obj,) = last_listing(out)
    assert obj["ID"] == "FIND-ID" and obj["Value Len"] == "16"
    out = ok(manager(fx, LOGIN + ["3", "4", "FIND-ID"]))
    assert [o["Label"] for o in last_listing(out)] == ["findme"]
    out = ok(manager(fx, LOGIN + ["3", "4", "0x" + b"FIND-ID".hex()]))
    assert [o["Label"] for o in last_listing(out)] == ["findme"]
    out = ok(manager(fx, LOGIN + ["3", "3", "no such label"]))
    assert "Total number of found objects: 0" in out


def test_private_objects_need_login(fx):
    ok(manager(fx, LOGIN + gen("AES", "16", "private one", "", "")))
    out = ok(manager(fx, ["3", "3", "private one"]))
    assert "Total number of found objects: 0" in out


def _handle(fx, label: str) -> str:
    (obj,) = last_listing(ok(manager(fx, LOGIN + ["3", "3", label])))
    return obj["Object ID"]


def test_modify_label_id_and_usage(fx):
    ok(manager(fx, LOGIN + gen("AES", "32", "to modify", "", "ED")))
    h = _handle(fx, "to modify")
    out = ok(manager(fx, LOGIN + ["4", h, "1", "modified", "4", h, "2", "NEWID", "4", h, "3", "EDS"]))
    assert out.count(f"Object {h} modified.") == 3, out
    (obj,) = last_listing(ok(manager(fx, LOGIN + ["3", "3", "modified"])))
    assert (obj["Object ID"], obj["ID"], obj["Usage"]) == (h, "NEWID", "EDS")
    # a letter the class does not carry is refused and asked again
    out = ok(manager(fx, LOGIN + ["4", h, "3", "EC", "E"]))
    assert "Invalid usage letter(s) C" in out and f"Object {h} modified." in out
    (obj,) = last_listing(ok(manager(fx, LOGIN + ["3", "3", "modified"])))
    assert obj["Usage"] == "E"
    # what the device refuses is reported, and the program goes on
    out = ok(manager(fx, LOGIN + ["4", h, "3", "DW", "6", "4"]))
    assert "Error: C_SetAttributeValue failed: CKR_TEMPLATE_INCONSISTENT" in out
    assert "Random data (4 bytes):" in out


def test_delete(fx):
    ok(manager(fx, LOGIN + gen("DES3", "to delete", "", "")))
    h = _handle(fx, "to delete")
    out = ok(manager(fx, LOGIN + ["5", h, "maybe", "n", "5", h, "y", "3", "3", "to delete"]))
    assert "Invalid answer 'maybe'" in out and "Nothing deleted." in out and f"Object {h} deleted." in out
    assert last_listing(out) == []
    out = ok(manager(fx, LOGIN + ["5", h, ""]))
    assert f"No object with Object ID {h}." in out


def test_random(fx):
    out = ok(manager(fx, ["6", "abc", "0", "24"]))
    assert "Invalid number 'abc'" in out and "Invalid number '0'" in out
    m = re.search(r"Random data \(24 bytes\):\n([0-9A-F]+)\n", out)
    assert m and len(m.group(1)) == 48, out


def test_sign_with_each_kind_of_key(fx):
    ok(manager(fx, LOGIN + gen("RSA", "2048", "signer rsa", "", "SV") + gen("EC", "2", "signer ec", "", "SV")
               + gen("AES", "32", "signer aes", "", "SV") + gen("GENERIC", "32", "signer hmac", "", "SV")
               + gen("DES3", "signer des", "", "SV")))
    out = ok(manager(fx, LOGIN + ["3", "1"]))
    objects = last_listing(out)

    def handle(label: str, cls: str) -> str:
        return next(o["Object ID"] for o in objects if o.get("Label") == label and o["Class"] == cls)

    answers = LOGIN
    answers += ["7", handle("signer rsa", "CKO_PRIVATE_KEY"), "1", "hello"]
    answers += ["7", handle("signer rsa", "CKO_PRIVATE_KEY"), "5", "0x68656c6c6f"]
    answers += ["7", handle("signer ec", "CKO_PRIVATE_KEY"), "1", "hello"]
    answers += ["7", handle("signer aes", "CKO_SECRET_KEY"), "1", "hello"]
    answers += ["7", handle("signer hmac", "CKO_SECRET_KEY"), "1", "hello"]
    answers += ["7", handle("signer des", "CKO_SECRET_KEY"), "1", "hello"]
    answers += ["7", handle("signer rsa", "CKO_PUBLIC_KEY")]
    out = ok(manager(fx, answers))
    sigs = re.findall(r"Signature \((\S+), (\d+) bytes\):\n([0-9A-F]+)\n", out)
    assert [(name, int(size)) for name, size, _ in sigs] == [
        ("CKM_SHA256_RSA_PKCS", 256), ("CKM_SHA256_RSA_PKCS_PSS", 256), ("CKM_ECDSA_SHA256", 96),
        ("CKM_AES_CMAC", 16), ("CKM_SHA256_HMAC", 32), ("CKM_DES3_CMAC", 8)], out
    assert "cannot sign" in out


def test_bad_menu_input_reprompts(fx):
    out = ok(manager(fx, ["", "x", "42", "-1", "3", "9", "0", "9"]))
    for bad in ("''", "'x'", "'42'", "'-1'"):
        assert f"Invalid choice {bad}: enter one of the numbers shown." in out
    assert "Invalid choice '9'" in out  # Find Objects has 0..4
    assert "Not logged in." in out   # 9 at the main menu: Logout


def test_wrong_password_and_logout(fx):
    out = ok(manager(fx, ["8", "1", "wrong", "8", "2", PIN, "8", "1", PIN, "9", "9"]))
    assert "Error: C_Login failed: CKR_PIN_INCORRECT" in out
    assert "Login successful." in out and "Already logged in." in out
    assert "Logout successful." in out and "Not logged in." in out


@pytest.mark.parametrize("answers", [[], ["8"], ["8", "1"], ["2", "1", "2048", "label"], ["3"], ["6"]])
def test_eof_exits_cleanly(fx, answers):
    proc = manager(fx, answers, eof=True, timeout=60)
    ok(proc)


def test_unknown_slot_and_module(fx):
    proc = manager(fx, [], "--slot", "7")
    assert proc.returncode == 1 and "slot 7 has no token" in proc.stderr
    proc = manager(fx, [], "--module", "/nonexistent/lib.so")
    assert proc.returncode == 1 and "no such file" in proc.stderr


@pytest.mark.skipif(not (os.path.exists(SOFTHSM) and shutil.which("softhsm2-util")), reason="SoftHSMv2 not installed")
def test_against_softhsm(tmp_path):
    tokens = tmp_path / "tokens"
    tokens.mkdir()
    conf = tmp_path / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {tokens}\nobjectstore.backend = file\nlog.level = ERROR\n")
    env = child_env(str(tmp_path / "unused.cfg"), SOFTHSM2_CONF=str(conf))
    subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", "throwaway", "--pin", "1234",
                    "--so-pin", "5678"], env=env, check=True, capture_output=True, timeout=60)
    answers = ["1", "8", "1", "1234"] + gen("AES", "32", "soft aes", "SOFT1", "ED") \
        + gen("RSA", "2048", "soft rsa", "", "SV") + gen("EC", "1", "soft ec", "", "SV") \
        + gen("DES3", "soft des", "", "ED") + gen("GENERIC", "32", "soft hmac", "", "SV") + ["3", "1", "1"]
    out = ok(manager(env, answers, "--module", SOFTHSM))
    assert "token 'throwaway'" in out and "Manufacturer: SoftHSM" in out
    objects = last_listing(out)
    assert len(objects) == 7, out
    assert all(o["Excrypt Board Slot"] == "-" for o in objects)  # not a Futurex module
    aes = next(o for o in objects if o.get("Label") == "soft aes")
    assert (aes["Key Type"], aes["Value Len"], aes["ID"], aes["Usage"]) == ("AES", "32", "SOFT1", "ED")
    assert re.fullmatch(r"[0-9A-F]{4}", aes["KCV"])
    rsa = [o for o in objects if o.get("Label") == "soft rsa"]
    assert len({o["KCV"] for o in rsa}) == 1 and rsa[0]["KCV"]
    # SoftHSM numbers objects per process as it meets them: a new process finds them first
    with Interactive(command() + ["--module", SOFTHSM], env) as p:
        objects = last_listing(p.send("8", "1", "1234", "3", "1", menus=2))
        aes = next(o for o in objects if o.get("Label") == "soft aes")
        rsa_priv = next(o["Object ID"] for o in objects if o.get("Label") == "soft rsa"
                        and o["Class"] == "CKO_PRIVATE_KEY")
        h = aes["Object ID"]
        out = p.send("7", rsa_priv, "1", "hello", "4", h, "1", "renamed", "6", "8", "5", h, "y", "3", "3", "renamed",
                     menus=5)
    assert re.search(r"Signature \(CKM_SHA256_RSA_PKCS, 256 bytes\)", out), out
    assert f"Object {h} modified." in out and f"Object {h} deleted." in out
    assert re.search(r"Random data \(8 bytes\):\n[0-9A-F]{16}\n", out)
    assert last_listing(out) == []
    assert p.returncode == 0


class Interactive:
    """PKCS11Manager on pipes: send answers, read the output up to the next main menu prompt."""

    def __init__(self, argv: list[str], env: dict) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd="/", env=env)
        self.returncode: int | None = None
        self.read_until_menu()

    MENU = b"  0. Exit\nEnter choice: "

    def read_until_menu(self, menus: int = 1, timeout: float = 120) -> str:
        """The output up to the `menus`-th main menu prompt from now."""
        import select
        import time
        out = b""
        deadline = time.monotonic() + timeout
        while out.count(self.MENU) < menus:
            left = deadline - time.monotonic()
            assert left > 0, f"no main menu within {timeout} s: {out.decode()}"
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                assert chunk, f"PKCS11Manager exited: {out.decode()}"
                out += chunk
        return out.decode()

    def send(self, *answers: str, menus: int = 1) -> str:
        """Answers that go through `menus` main menu actions; the output up to the last prompt."""
        self.proc.stdin.write(("\n".join(answers) + "\n").encode())
        self.proc.stdin.flush()
        return self.read_until_menu(menus)

    def __enter__(self) -> "Interactive":
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.proc.stdin.write(b"0\n")
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.returncode = self.proc.wait(60)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
