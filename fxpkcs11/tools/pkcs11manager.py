"""PKCS11Manager: the vendor's menu program for testing the connection and managing keys,
over any PKCS #11 module (libfxpkcs11.so by default; `--module` for another, e.g. SoftHSMv2).

It is a plain PKCS #11 consumer: it loads the module through the C ABI (fxpkcs11/tools/p11.py,
ctypes) and uses only C_* functions. Answers come from the terminal, or from stdin line by
line when stdin is not a terminal (scripts); a bad answer is refused with a message and asked
again; end of input exits cleanly (status 0).

The object listing follows section 9.3 of the Vectera Plus / vSEC:CMS integration guide:

    Total number of found objects: N
    Object ID: 2
      Internal ID: 2
      Excrypt Board Slot: 1
      Class: CKO_SECRET_KEY
      Key Type: DES3
      Token: Yes
      ...

Choices made where the guide is silent (as the guide's example shows):
- `Key Type` is printed for secret and private keys, not for public keys (the guide's RSA
  public keys have no Key Type line); EC keys add `Curve:` where RSA keys show `Modulus Bits:`.
- `Label` and `ID` lines are left out when the object has none (the guide's public keys).
- `ID` is shown as text when every byte is printable ASCII (`VSEC0000`), else as `0x` + hex.
  IDs are typed the same way: text, or `0x` followed by hex.
- `Excrypt Board Slot` is the key table slot, the handle minus one, for token objects of the
  Futurex module (library manufacturer "Futurex"); session objects, and every object of
  another module, show `-`.
- `Internal ID` is the object handle, like `Object ID`.
- `KCV` follows fxpkcs11/kcv.py; `Usage` the letters of fxpkcs11/usage.py (`-` when none).
- Generated keys are token objects, private (CKA_PRIVATE) and, for secret and private keys,
  sensitive.
"""
from __future__ import annotations

import argparse
import getpass
import os
import string
import sys
from typing import Any, Callable

from fxpkcs11 import ck
from fxpkcs11.kcv import kcv
from fxpkcs11.tools.p11 import Module, P11Error, text, ulong

MAIN_MENU = """\
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

  0. Exit"""

USAGE_ATTRS = {"E": ck.CKA_ENCRYPT, "D": ck.CKA_DECRYPT, "S": ck.CKA_SIGN, "V": ck.CKA_VERIFY,
               "R": ck.CKA_SIGN_RECOVER, "C": ck.CKA_VERIFY_RECOVER, "W": ck.CKA_WRAP, "U": ck.CKA_UNWRAP,
               "X": ck.CKA_DERIVE}
USAGE_ORDER = "EDSVRCWUX"
# Which usage letters an object class carries.
CLASS_USAGES = {ck.CKO_SECRET_KEY: "EDSVWUX", ck.CKO_PUBLIC_KEY: "EVCWX", ck.CKO_PRIVATE_KEY: "DSRUX"}
PUBLIC_HALF, PRIVATE_HALF = "EVCW", "DSRUX"

KEY_TYPES = {ck.CKK_RSA: "RSA", ck.CKK_EC: "EC", ck.CKK_AES: "AES", ck.CKK_DES3: "DES3", ck.CKK_DES2: "DES2",
             ck.CKK_DES: "DES", ck.CKK_GENERIC_SECRET: "GENERIC_SECRET", ck.CKK_DSA: "DSA", ck.CKK_DH: "DH",
             ck.CKK_EC_EDWARDS: "EC_EDWARDS", ck.CKK_SHA256_HMAC: "SHA256_HMAC"}
CURVES = [("P-256", bytes.fromhex("06082a8648ce3d030107")), ("P-384", bytes.fromhex("06052b81040022")),
          ("P-521", bytes.fromhex("06052b81040023"))]
CURVE_NAMES = {der: name for name, der in CURVES}

LISTING_ATTRS = (ck.CKA_CLASS, ck.CKA_KEY_TYPE, ck.CKA_TOKEN, ck.CKA_PRIVATE, ck.CKA_SENSITIVE, ck.CKA_MODIFIABLE,
                 ck.CKA_MODULUS_BITS, ck.CKA_MODULUS, ck.CKA_PUBLIC_EXPONENT, ck.CKA_EC_PARAMS, ck.CKA_EC_POINT,
                 ck.CKA_VALUE_LEN, ck.CKA_LABEL, ck.CKA_ID, ck.CKA_CHECK_VALUE, ck.CKA_PUBLIC_KEY_INFO,
                 *USAGE_ATTRS.values())

SIGN_MECHS = {
    ck.CKK_RSA: [("CKM_SHA256_RSA_PKCS", ck.CKM_SHA256_RSA_PKCS), ("CKM_SHA384_RSA_PKCS", ck.CKM_SHA384_RSA_PKCS),
                 ("CKM_SHA512_RSA_PKCS", ck.CKM_SHA512_RSA_PKCS), ("CKM_SHA1_RSA_PKCS", ck.CKM_SHA1_RSA_PKCS),
                 ("CKM_SHA256_RSA_PKCS_PSS", ck.CKM_SHA256_RSA_PKCS_PSS)],
    ck.CKK_EC: [("CKM_ECDSA_SHA256", ck.CKM_ECDSA_SHA256), ("CKM_ECDSA_SHA384", ck.CKM_ECDSA_SHA384),
                ("CKM_ECDSA_SHA512", ck.CKM_ECDSA_SHA512), ("CKM_ECDSA (data is the hash)", ck.CKM_ECDSA)],
    ck.CKK_AES: [("CKM_AES_CMAC", ck.CKM_AES_CMAC)],
    ck.CKK_DES3: [("CKM_DES3_CMAC", ck.CKM_DES3_CMAC), ("CKM_DES3_MAC", ck.CKM_DES3_MAC)],
    ck.CKK_GENERIC_SECRET: [("CKM_SHA256_HMAC", ck.CKM_SHA256_HMAC), ("CKM_SHA384_HMAC", ck.CKM_SHA384_HMAC),
                            ("CKM_SHA512_HMAC", ck.CKM_SHA512_HMAC), ("CKM_SHA_1_HMAC", ck.CKM_SHA_1_HMAC)],
}


class Quit(Exception):
    """End of input or 0 at the main menu."""


def yes_no(value: Any) -> str:
    return "Yes" if value else "No"


def format_id(raw: bytes) -> str:
    if raw and all(chr(b) in string.printable and b >= 0x20 and b < 0x7F for b in raw):
        return raw.decode("ascii")
    return "0x" + raw.hex().upper()


def parse_id(value: str) -> bytes:
    """Text, or 0x followed by hex (ValueError for bad hex)."""
    if value[:2].lower() == "0x":
        return bytes.fromhex(value[2:])
    return value.encode("utf-8")


def key_type_name(kt: int) -> str:
    return KEY_TYPES.get(kt) or ck.name(kt, "CKK_").removeprefix("CKK_")


def describe(handle: int, attrs: dict[int, Any], *, board_slots: bool) -> list[str]:
    """The guide's listing of one object."""
    cls = attrs.get(ck.CKA_CLASS)
    token = bool(attrs.get(ck.CKA_TOKEN))
    lines = [f"Object ID: {handle}", f"  Internal ID: {handle}",
             f"  Excrypt Board Slot: {handle - 1 if token and board_slots else '-'}",
             f"  Class: {ck.name(cls, 'CKO_') if cls is not None else '?'}"]
    is_key = cls in (ck.CKO_SECRET_KEY, ck.CKO_PUBLIC_KEY, ck.CKO_PRIVATE_KEY)
    kt = attrs.get(ck.CKA_KEY_TYPE)
    if kt is not None and cls in (ck.CKO_SECRET_KEY, ck.CKO_PRIVATE_KEY):
        lines.append(f"  Key Type: {key_type_name(kt)}")
    lines += [f"  Token: {yes_no(token)}", f"  Private: {yes_no(attrs.get(ck.CKA_PRIVATE))}"]
    if is_key:
        lines.append(f"  Sensitive: {yes_no(attrs.get(ck.CKA_SENSITIVE))}")
    lines.append(f"  Modifiable: {yes_no(attrs.get(ck.CKA_MODIFIABLE, True))}")
    if kt == ck.CKK_RSA and cls in (ck.CKO_PUBLIC_KEY, ck.CKO_PRIVATE_KEY):
        bits = attrs.get(ck.CKA_MODULUS_BITS) or len(attrs.get(ck.CKA_MODULUS) or b"") * 8
        if bits:
            lines.append(f"  Modulus Bits: {bits}")
    elif kt == ck.CKK_EC and attrs.get(ck.CKA_EC_PARAMS):
        params = bytes(attrs[ck.CKA_EC_PARAMS])
        lines.append(f"  Curve: {CURVE_NAMES.get(params, '0x' + params.hex().upper())}")
    elif cls == ck.CKO_SECRET_KEY:
        size = attrs.get(ck.CKA_VALUE_LEN) or {ck.CKK_DES3: 24, ck.CKK_DES2: 16, ck.CKK_DES: 8}.get(kt)
        if size:
            lines += [f"  Value Len: {size}", f"  Value Bits: {size * 8}"]
    label = attrs.get(ck.CKA_LABEL)
    if label:
        lines.append(f"  Label: {bytes(label).decode('utf-8', 'replace')}")
    key_id = attrs.get(ck.CKA_ID)
    if key_id:
        lines.append(f"  ID: {format_id(bytes(key_id))}")
    if is_key:
        check = kcv(attrs)
        if check:
            lines.append(f"  KCV: {check}")
        letters = "".join(letter for letter in USAGE_ORDER if attrs.get(USAGE_ATTRS[letter]))
        lines.append(f"  Usage: {letters or '-'}")
    return lines


class Console:
    """Prompts on stdout, answers from stdin; EOF raises Quit."""

    def __init__(self, stdin=None, stdout=None) -> None:
        self.stdin = stdin or sys.stdin
        self.stdout = stdout or sys.stdout
        self.tty = self.stdin.isatty()

    def say(self, line: str = "") -> None:
        self.stdout.write(line + "\n")
        self.stdout.flush()

    def ask(self, prompt: str, *, hidden: bool = False) -> str:
        if hidden and self.tty:
            try:
                return getpass.getpass(prompt)
            except EOFError:
                raise Quit from None
        self.stdout.write(prompt)
        self.stdout.flush()
        line = self.stdin.readline()
        if not line:
            self.say()
            raise Quit
        if not self.tty:
            self.stdout.write("\n")  # the answer is not echoed: end the prompt's line
        return line.rstrip("\r\n").strip()

    def choose(self, title: str | None, options: list[str], *, back: bool = True, menu: str | None = None) -> int:
        """Show a numbered menu until a valid choice is made: 1..len(options), or 0 (back)."""
        while True:
            if menu is not None:
                self.say(menu)
            else:
                self.say(title or "")
                for i, option in enumerate(options, 1):
                    self.say(f"  {i}. {option}")
                if back:
                    self.say("  0. Back")
            answer = self.ask("Enter choice: ")
            if answer.isdigit() and (int(answer) <= len(options)) and (int(answer) > 0 or back):
                return int(answer)
            self.say(f"Invalid choice {answer!r}: enter one of the numbers shown.")

    def number(self, prompt: str, *, default: int | None = None, low: int = 1, high: int = 1 << 31) -> int | None:
        """A whole number in [low, high]; empty answer -> default (None when there is none)."""
        while True:
            answer = self.ask(prompt)
            if not answer and default is not None:
                return default
            try:
                value = int(answer, 0)
            except ValueError:
                value = None
            if value is not None and low <= value <= high:
                return value
            self.say(f"Invalid number {answer!r}: enter a whole number from {low} to {high}.")


class Manager:
    def __init__(self, module: Module, slot: int, console: Console) -> None:
        self.m, self.slot, self.io = module, slot, console
        self.session = module.open_session(slot)
        self.futurex = text(module.info().manufacturerID).lower().startswith("futurex")

    # ------------------------------------------------------------------ helpers
    def run(self, action: Callable[[], None]) -> None:
        try:
            action()
        except P11Error as e:
            self.io.say(f"Error: {e}")

    def read_attrs(self, handle: int) -> dict[int, Any]:
        return self.m.attributes(self.session, handle, LISTING_ATTRS)

    def ask_object(self, prompt: str = "Enter Object ID: ") -> tuple[int, dict[int, Any]] | None:
        while True:
            answer = self.io.ask(prompt)
            if not answer:
                return None
            try:
                handle = int(answer, 0)
            except ValueError:
                self.io.say(f"Invalid Object ID {answer!r}: enter a number (empty to go back).")
                continue
            try:
                attrs = self.m.attributes(self.session, handle, LISTING_ATTRS)
            except P11Error as e:
                if e.rv == ck.CKR_OBJECT_HANDLE_INVALID:
                    self.io.say(f"No object with Object ID {handle}.")
                    continue
                raise
            return handle, attrs

    def ask_usage(self, allowed: str, default: str) -> str:
        while True:
            answer = self.io.ask(f"Usage letters ({' '.join(allowed)}) [{default or '-'}]: ").upper().replace(" ", "")
            if not answer:
                return default
            if answer == "-":
                return ""
            bad = sorted(set(answer) - set(allowed))
            if not bad:
                return "".join(letter for letter in USAGE_ORDER if letter in answer)
            self.io.say(f"Invalid usage letter(s) {''.join(bad)}: use only {' '.join(allowed)} "
                        "(E encrypt, D decrypt, S sign, V verify, R sign-recover, C verify-recover, "
                        "W wrap, U unwrap, X derive).")

    def ask_id(self, prompt: str = "ID (text, or 0x followed by hex; empty for none): ") -> bytes:
        while True:
            answer = self.io.ask(prompt)
            try:
                return parse_id(answer)
            except ValueError:
                self.io.say(f"Invalid hex ID {answer!r}.")

    @staticmethod
    def usage_template(letters: str, allowed: str) -> list[tuple[int, bool]]:
        return [(USAGE_ATTRS[letter], letter in letters) for letter in USAGE_ORDER if letter in allowed]

    # ------------------------------------------------------------------ 1
    def print_info(self) -> None:
        info = self.m.info()
        say = self.io.say
        say("Library Info")
        say(f"  Module: {self.m.path}")
        say(f"  Cryptoki Version: {info.cryptokiVersion.major}.{info.cryptokiVersion.minor}")
        say(f"  Manufacturer: {text(info.manufacturerID)}")
        say(f"  Description: {text(info.libraryDescription)}")
        say(f"  Library Version: {info.libraryVersion.major}.{info.libraryVersion.minor}")
        slot = self.m.slot_info(self.slot)
        say(f"Slot {self.slot} Info")
        say(f"  Description: {text(slot.slotDescription)}")
        say(f"  Manufacturer: {text(slot.manufacturerID)}")
        say(f"  Hardware Version: {slot.hardwareVersion.major}.{slot.hardwareVersion.minor}")
        say(f"  Firmware Version: {slot.firmwareVersion.major}.{slot.firmwareVersion.minor}")
        tok = self.m.token_info(self.slot)
        say("Token Info")
        say(f"  Label: {text(tok.label)}")
        say(f"  Manufacturer: {text(tok.manufacturerID)}")
        say(f"  Model: {text(tok.model)}")
        say(f"  Serial Number: {text(tok.serialNumber)}")
        say(f"  Firmware Version: {tok.firmwareVersion.major}.{tok.firmwareVersion.minor}")
        flags = [name for bit, name in ((ck.CKF_RNG, "RNG"), (ck.CKF_LOGIN_REQUIRED, "LOGIN_REQUIRED"),
                                        (ck.CKF_USER_PIN_INITIALIZED, "USER_PIN_INITIALIZED"),
                                        (ck.CKF_TOKEN_INITIALIZED, "TOKEN_INITIALIZED")) if tok.flags & bit]
        say(f"  Flags: {' '.join(flags) or '-'}")
        say(f"  PIN Length: {tok.ulMinPinLen}-{tok.ulMaxPinLen}")
        state = self.m.session_info(self.session).state
        logged = state in (ck.CKS_RO_USER_FUNCTIONS, ck.CKS_RW_USER_FUNCTIONS, ck.CKS_RW_SO_FUNCTIONS)
        say(f"  Logged In: {yes_no(logged)}")

    # ------------------------------------------------------------------ 2
    def generate_key(self) -> None:
        kinds = ["RSA", "EC", "AES", "DES3", "Generic Secret"]
        choice = self.io.choose("Generate Key", kinds)
        if choice == 0:
            return
        kind = kinds[choice - 1]
        size: int | None = None
        curve: bytes | None = None
        if kind == "RSA":
            size = self.io.number("Modulus bits [2048]: ", default=2048, low=1024, high=16384)
        elif kind == "EC":
            c: int | None = None
            while c is None:
                answer = self.io.ask("Curve (1 P-256, 2 P-384, 3 P-521) [1]: ") or "1"
                if answer in ("1", "2", "3"):
                    c = int(answer)
                else:
                    self.io.say(f"Invalid choice {answer!r}: enter 1, 2 or 3.")
            curve = CURVES[c - 1][1]
        elif kind == "AES":
            while size is None:
                size = self.io.number("Key length in bytes (16, 24, 32) [32]: ", default=32, low=16, high=32)
                if size not in (16, 24, 32):
                    self.io.say(f"Invalid AES key length {size}: enter 16, 24 or 32.")
                    size = None
        elif kind == "Generic Secret":
            size = self.io.number("Key length in bytes [32]: ", default=32, low=1, high=512)
        label = self.io.ask("Label: ")
        key_id = self.ask_id()
        common: list[tuple[int, Any]] = [(ck.CKA_TOKEN, True), (ck.CKA_PRIVATE, True)]
        if label:
            common.append((ck.CKA_LABEL, label))
        if key_id:
            common.append((ck.CKA_ID, key_id))
        if kind in ("RSA", "EC"):
            allowed = "EDSVRCWUX" if kind == "RSA" else "SVX"
            letters = self.ask_usage(allowed, "EDSVWU" if kind == "RSA" else "SV")
            # every usage flag of each half is set, so no module default adds a usage not asked for
            public = common + self.usage_template(letters, PUBLIC_HALF)
            private = common + [(ck.CKA_SENSITIVE, True)] + self.usage_template(letters, PRIVATE_HALF)
            if kind == "RSA":
                public += [(ck.CKA_MODULUS_BITS, size), (ck.CKA_PUBLIC_EXPONENT, b"\x01\x00\x01")]
                mech = ck.CKM_RSA_PKCS_KEY_PAIR_GEN
            else:
                public.append((ck.CKA_EC_PARAMS, curve))
                mech = ck.CKM_EC_KEY_PAIR_GEN
            pub, priv = self.m.generate_key_pair(self.session, mech, public, private)
            self.io.say(f"Generated {kind} key pair: public key Object ID {pub}, private key Object ID {priv}")
            return
        defaults = {"AES": "EDWU", "DES3": "EDWU", "Generic Secret": "SV"}
        letters = self.ask_usage(CLASS_USAGES[ck.CKO_SECRET_KEY], defaults[kind])
        template = common + [(ck.CKA_CLASS, ck.CKO_SECRET_KEY), (ck.CKA_SENSITIVE, True)]
        template += self.usage_template(letters, CLASS_USAGES[ck.CKO_SECRET_KEY])
        if kind == "AES":
            template += [(ck.CKA_KEY_TYPE, ck.CKK_AES), (ck.CKA_VALUE_LEN, size)]
            mech = ck.CKM_AES_KEY_GEN
        elif kind == "DES3":
            template.append((ck.CKA_KEY_TYPE, ck.CKK_DES3))
            mech = ck.CKM_DES3_KEY_GEN
        else:
            template += [(ck.CKA_KEY_TYPE, ck.CKK_GENERIC_SECRET), (ck.CKA_VALUE_LEN, size)]
            mech = ck.CKM_GENERIC_SECRET_KEY_GEN
        handle = self.m.generate_key(self.session, mech, template)
        self.io.say(f"Generated {kind} key: Object ID {handle}")

    # ------------------------------------------------------------------ 3
    def find_objects(self) -> None:
        choice = self.io.choose("Find Objects", ["All", "By Class", "By Label", "By ID"])
        if choice == 0:
            return
        template: list[tuple[int, Any]] = []
        if choice == 2:
            classes = [("Public Key", ck.CKO_PUBLIC_KEY), ("Private Key", ck.CKO_PRIVATE_KEY),
                       ("Secret Key", ck.CKO_SECRET_KEY), ("Certificate", ck.CKO_CERTIFICATE),
                       ("Data", ck.CKO_DATA)]
            c = self.io.choose("Object Class", [name for name, _ in classes])
            if c == 0:
                return
            template.append((ck.CKA_CLASS, classes[c - 1][1]))
        elif choice == 3:
            template.append((ck.CKA_LABEL, self.io.ask("Label: ")))
        elif choice == 4:
            template.append((ck.CKA_ID, self.ask_id("ID (text, or 0x followed by hex): ")))
        handles = self.m.find(self.session, template)
        self.io.say(f"Total number of found objects: {len(handles)}")
        for handle in handles:
            for line in describe(handle, self.read_attrs(handle), board_slots=self.futurex):
                self.io.say(line)

    # ------------------------------------------------------------------ 4
    def modify_objects(self) -> None:
        picked = self.ask_object()
        if picked is None:
            return
        handle, attrs = picked
        if not attrs.get(ck.CKA_MODIFIABLE, True):
            self.io.say(f"Object {handle} is not modifiable (CKA_MODIFIABLE is false).")
            return
        choice = self.io.choose("Modify Object", ["Label", "ID", "Usage"])
        if choice == 0:
            return
        if choice == 1:
            template: list[tuple[int, Any]] = [(ck.CKA_LABEL, self.io.ask("New label: "))]
        elif choice == 2:
            template = [(ck.CKA_ID, self.ask_id("New ID (text, or 0x followed by hex): "))]
        else:
            allowed = CLASS_USAGES.get(attrs.get(ck.CKA_CLASS))
            if not allowed:
                self.io.say(f"Object {handle} is not a key: it has no usage flags.")
                return
            current = "".join(letter for letter in USAGE_ORDER if attrs.get(USAGE_ATTRS[letter]))
            letters = self.ask_usage(allowed, current)
            template = [(attr, value) for attr, value in self.usage_template(letters, allowed)
                        if bool(attrs.get(attr)) != value]
            if not template:
                self.io.say("Usage unchanged.")
                return
        self.m.set_attributes(self.session, handle, template)
        self.io.say(f"Object {handle} modified.")

    # ------------------------------------------------------------------ 5
    def delete_objects(self) -> None:
        picked = self.ask_object()
        if picked is None:
            return
        handle, attrs = picked
        label = bytes(attrs.get(ck.CKA_LABEL) or b"").decode("utf-8", "replace")
        while True:
            answer = self.io.ask(f"Delete object {handle}{f' ({label})' if label else ''}? (y/n): ").lower()
            if answer in ("y", "yes"):
                break
            if answer in ("n", "no"):
                self.io.say("Nothing deleted.")
                return
            self.io.say(f"Invalid answer {answer!r}: enter y or n.")
        self.m.destroy(self.session, handle)
        self.io.say(f"Object {handle} deleted.")

    # ------------------------------------------------------------------ 6
    def random_data(self) -> None:
        size = self.io.number("Number of bytes [32]: ", default=32, low=1, high=65536)
        data = self.m.random(self.session, size)
        self.io.say(f"Random data ({size} bytes):")
        self.io.say(data.hex().upper())

    # ------------------------------------------------------------------ 7
    def sign_data(self) -> None:
        picked = self.ask_object("Enter Object ID of the signing key: ")
        if picked is None:
            return
        handle, attrs = picked
        kt = attrs.get(ck.CKA_KEY_TYPE)
        cls = attrs.get(ck.CKA_CLASS)
        mechs = SIGN_MECHS.get(kt) if cls in (ck.CKO_PRIVATE_KEY, ck.CKO_SECRET_KEY) else None
        if not mechs:
            self.io.say(f"Object {handle} cannot sign: choose a private key (RSA, EC) or a secret key "
                        "(AES, DES3, generic secret).")
            return
        c = self.io.choose("Mechanism", [name for name, _ in mechs])
        if c == 0:
            return
        name, mech = mechs[c - 1]
        while True:
            answer = self.io.ask("Data to sign (text, or 0x followed by hex): ")
            try:
                data = parse_id(answer)
                break
            except ValueError:
                self.io.say(f"Invalid hex data {answer!r}.")
        param = None
        if mech == ck.CKM_SHA256_RSA_PKCS_PSS:
            param = ulong(ck.CKM_SHA256) + ulong(ck.CKG_MGF1_SHA256) + ulong(32)
        signature = self.m.sign(self.session, mech, handle, data, param)
        self.io.say(f"Signature ({name.split()[0]}, {len(signature)} bytes):")
        self.io.say(signature.hex().upper())

    # ------------------------------------------------------------------ 8, 9
    def login(self) -> None:
        mode = self.io.choose("Password input mode", ["Text", "Hidden"])
        if mode == 0:
            return
        pin = self.io.ask("Enter password: ", hidden=(mode == 2))
        try:
            self.m.login(self.session, pin)
        except P11Error as e:
            if e.rv == ck.CKR_USER_ALREADY_LOGGED_IN:
                self.io.say("Already logged in.")
                return
            raise
        self.io.say("Login successful.")

    def logout(self) -> None:
        try:
            self.m.logout(self.session)
        except P11Error as e:
            if e.rv == ck.CKR_USER_NOT_LOGGED_IN:
                self.io.say("Not logged in.")
                return
            raise
        self.io.say("Logout successful.")

    # ------------------------------------------------------------------ the loop
    def loop(self) -> None:
        actions = {1: self.print_info, 2: self.generate_key, 3: self.find_objects, 4: self.modify_objects,
                   5: self.delete_objects, 6: self.random_data, 7: self.sign_data, 8: self.login, 9: self.logout}
        while True:
            self.io.say()
            choice = self.io.choose(None, [""] * 9, menu=MAIN_MENU)
            if choice == 0:
                raise Quit
            self.run(actions[choice])

    def close(self) -> None:
        try:
            self.m.close_session(self.session)
        except P11Error:
            pass


def default_module() -> str | None:
    from fxpkcs11.paths import module_path
    return module_path()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="PKCS11Manager",
                                 description="Test the connection and manage keys through a PKCS #11 library.")
    ap.add_argument("--module", help="PKCS #11 library (default: libfxpkcs11.so, "
                                     "as `python -m fxpkcs11 module-path` prints)")
    ap.add_argument("--slot", type=int, help="slot ID (default: the first slot with a token)")
    args = ap.parse_args(argv)
    path = args.module or default_module()
    if not path:
        print("PKCS11Manager: libfxpkcs11.so is not built; run `make build` or give --module", file=sys.stderr)
        return 1
    if not os.path.exists(path):
        print(f"PKCS11Manager: {path}: no such file", file=sys.stderr)
        return 1
    io = Console()
    try:
        module = Module(path)
    except OSError as e:
        print(f"PKCS11Manager: cannot load {path}: {e}", file=sys.stderr)
        return 1
    manager = None
    try:
        module.initialize()
        slots = module.slots(token_present=True)
        if args.slot is None:
            if not slots:
                print("PKCS11Manager: no slot with a token", file=sys.stderr)
                return 1
            slot = slots[0]
        else:
            slot = args.slot
            if slot not in slots:
                listed = ", ".join(map(str, slots)) or "none"
                print(f"PKCS11Manager: slot {slot} has no token (slots with a token: {listed})", file=sys.stderr)
                return 1
        tok = module.token_info(slot)
        manager = Manager(module, slot, io)
        io.say(f"PKCS11Manager: {path}, slot {slot}, token {text(tok.label)!r}")
        manager.loop()
    except Quit:
        pass
    except P11Error as e:
        print(f"PKCS11Manager: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        io.say()
        return 130
    finally:
        if manager is not None:
            manager.close()
        module.finalize()
    return 0


if __name__ == "__main__":
    sys.exit(main())
