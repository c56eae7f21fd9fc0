"""Administration of the device: identities, roles (application partitions), major keys.

The admin shell (vhsm/cli) parses FXCLI commands and calls these operations; each one
checks the device rules (dual control, default passwords changed, valid and disjoint key
ranges) and writes an audit entry, whether it succeeds or is refused.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Callable

from vhsm import factory, pki, policy
from vhsm import settings as device_settings
from vhsm.commands.catalog import BY_CODE, whitelistable
from vhsm.device import VirtualHSM
from vhsm import shares
from vhsm.majorkeys import MajorKey, generate_ftk
from vhsm.passwords import hash_password, verify_password

MIN_PASSWORD = 4
MAX_PASSWORD = 64
RANGE = re.compile(r"^\(?\s*(\d+)\s*,\s*(\d+)\s*\)?$")
# Permissions the device knows besides Excrypt:<command>.
KNOWN_PERMS = {"Keys", "Keys:Authorized", "Keys:Import PKI", "Keys:No Usage Wrap", factory.ALL_SLOTS}
EXCRYPT = "Excrypt:"


class AdminError(Exception):
    """A refusal: `rule` names the device rule that refused, `text` says what to do."""

    def __init__(self, rule: str, text: str) -> None:
        super().__init__(f"{rule}: {text}")
        self.rule = rule
        self.text = text


def parse_range(text: str) -> tuple[int, int]:
    m = RANGE.match(text.strip())
    if not m:
        raise AdminError("key range", f"{text!r} is not a range; write it as (FIRST,LAST), e.g. (0,999)")
    lo, hi = int(m.group(1)), int(m.group(2))
    if lo > hi:
        raise AdminError("key range", f"({lo},{hi}) ends before it starts")
    if hi >= factory.KEY_TABLE_SLOTS:
        raise AdminError("key range", f"({lo},{hi}) goes past the last slot {factory.KEY_TABLE_SLOTS - 1}")
    return lo, hi


def split_perms(perms: list[str]) -> tuple[list[str], list[str]]:
    """FXCLI permissions -> (device permissions, whitelisted Excrypt commands)."""
    keys, commands = [], []
    for p in perms:
        if p.startswith(EXCRYPT):
            code = p[len(EXCRYPT):].upper()
            if code not in BY_CODE or BY_CODE[code].session_control:
                raise AdminError("permission", f"unknown Excrypt command {code!r}; `vhsm command list` shows them")
            commands.append(code)
        elif p in KNOWN_PERMS:
            keys.append(p)
        else:
            raise AdminError("permission", f"unknown permission {p!r}; known: {', '.join(sorted(KNOWN_PERMS))}, "
                                           "Excrypt:<COMMAND>")
    return keys, commands


@dataclass
class Outcome:
    text: str
    data: Any = None


class AdminSession:
    """One administrator connection: who is logged in, and the operations they may run."""

    def __init__(self, device: VirtualHSM, *, audit_source: str = "local") -> None:
        self.device = device
        self.store = device.store
        self.logged_in: list[str] = []
        self.source = audit_source

    def close(self) -> None:
        self.device.close()

    # ------------------------------------------------------------ audit and rules
    def _audit(self, command: str, result: str, text: str = "") -> None:
        who = ",".join(self.logged_in) or "-"
        roles = ",".join(sorted({(self.store.get_identity(n) or {}).get("role", "?") for n in self.logged_in})) or "-"
        self.store.append_audit({"identity": who, "role": roles, "command": command, "result": result,
                                 "text": f"[{self.source}] {text}" if text else f"[{self.source}]"})

    def run(self, command: str, action: Callable[[], Outcome]) -> Outcome:
        try:
            out = action()
        except AdminError as e:
            self._audit(command, "refused", str(e))
            raise
        self._audit(command, "ok", out.text)
        return out

    def admins_logged_in(self) -> list[str]:
        out = []
        for name in self.logged_in:
            ident = self.store.get_identity(name)
            if ident and ident["role"] == factory.ADMINISTRATOR:
                out.append(name)
        return out

    def require_dual(self) -> None:
        admins = self.admins_logged_in()
        if len(admins) < 2:
            have = ", ".join(admins) or "none"
            raise AdminError("dual control", f"this needs two administrators logged in (logged in: {have}); "
                                             "run `login user` for each")

    # ------------------------------------------------------------ identities
    def login(self, name: str, password: str) -> Outcome:
        def act() -> Outcome:
            ident = self.store.get_identity(name)
            if ident is None or not verify_password(password, ident["password_hash"]):
                raise AdminError("login", f"wrong identity name or password for {name!r}")
            if name in self.logged_in:
                raise AdminError("login", f"{name} is already logged in")
            self.logged_in.append(name)
            note = " (default password: change it before loading major keys)" \
                if ident["flags"].get("default_password") else ""
            return Outcome(f"{name} logged in{note}")
        return self.run("login user", act)

    def logout(self, name: str | None = None) -> Outcome:
        def act() -> Outcome:
            if not self.logged_in:
                raise AdminError("logout", "nobody is logged in")
            who = name or self.logged_in[-1]
            if who not in self.logged_in:
                raise AdminError("logout", f"{who} is not logged in")
            self.logged_in.remove(who)
            return Outcome(f"{who} logged out")
        return self.run("logout user", act)

    def change_password(self, name: str, old: str, new: str) -> Outcome:
        def act() -> Outcome:
            ident = self.store.get_identity(name)
            if ident is None or not verify_password(old, ident["password_hash"]):
                raise AdminError("password", f"the old password for {name!r} is wrong")
            check_password(new)
            if new == old:
                raise AdminError("password", "the new password must differ from the old one")
            ident["password_hash"] = hash_password(new)
            ident["flags"] = {**ident["flags"], "default_password": False}
            self.store.put_identity(ident)
            return Outcome(f"password of {name} changed")
        return self.run("user change-password", act)

    def add_identity(self, name: str, role: str, password: str, security_officer: bool = False) -> Outcome:
        """An identity of a role; with security_officer, the security officer of an application
        partition (PKCS #11 CKU_SO: C_InitToken, C_InitPIN, CKA_TRUSTED), not a user of its keys."""
        def act() -> Outcome:
            self.require_dual()
            if not name or len(name) > 64:
                raise AdminError("identity", "an identity name is 1 to 64 characters")
            if self.store.get_identity(name) is not None:
                raise AdminError("identity", f"identity {name!r} already exists")
            r = self.store.get_role(factory.canonical_role(role))
            if r is None:
                raise AdminError("identity", f"no role named {role!r}")
            if security_officer and r["kind"] != "application":
                raise AdminError("identity", f"a security officer belongs to an application partition, not to "
                                             f"role {r['name']!r}")
            check_password(password)
            flags = {"security_officer": True} if security_officer else {}
            self.store.put_identity({"name": name, "role": r["name"], "password_hash": hash_password(password),
                                     "flags": flags, "failed_logins": 0})
            what = "security officer of" if security_officer else "added to role"
            return Outcome(f"identity {name} {what} {r['name']}")
        return self.run("identity add", act)

    def unlock_identity(self, name: str) -> Outcome:
        """Clear an identity's wrong-PIN count: the only way to unlock a locked identity."""
        def act() -> Outcome:
            self.require_dual()
            ident = self.store.get_identity(name)
            if ident is None:
                raise AdminError("identity", f"no identity named {name!r}")
            count = int(ident.get("failed_logins") or 0)
            ident["failed_logins"] = 0
            self.store.put_identity(ident)
            return Outcome(f"identity {name} unlocked ({count} wrong PIN(s) cleared)")
        return self.run("identity unlock", act)

    def delete_identity(self, name: str) -> Outcome:
        def act() -> Outcome:
            self.require_dual()
            if name in factory.DEFAULT_ADMINS:
                raise AdminError("identity", f"{name} is a built-in administrator and cannot be deleted")
            if not self.store.delete_identity(name):
                raise AdminError("identity", f"no identity named {name!r}")
            return Outcome(f"identity {name} deleted")
        return self.run("identity delete", act)

    def list_identities(self) -> list[dict]:
        limit = device_settings.max_login_failures(self.store)
        return [{"name": i["name"], "role": i["role"],
                 "default_password": bool(i["flags"].get("default_password")),
                 "security_officer": bool(i["flags"].get("security_officer")),
                 "failed_logins": i.get("failed_logins", 0),
                 "locked": i["role"] != factory.ADMINISTRATOR and (i.get("failed_logins") or 0) >= limit}
                for i in self.store.list_identities()]

    # ------------------------------------------------------------ device settings
    def settings(self) -> dict:
        return device_settings.current(self.store)

    def set_settings(self, values: dict) -> Outcome:
        """Change device settings (names as `vhsm settings set` spells them, e.g. max-login-failures)."""
        def act() -> Outcome:
            self.require_dual()
            if not values:
                raise AdminError("settings", "name at least one setting to change; known: "
                                             + ", ".join(sorted(device_settings.SETTINGS)))
            parsed = {}
            for name, value in values.items():
                try:
                    parsed[name] = device_settings.parse(name, value)
                except ValueError as e:
                    raise AdminError("settings", str(e)) from None
            for name, value in parsed.items():
                device_settings.put(self.store, name, value)
            return Outcome(", ".join(f"{k} = {v}" for k, v in parsed.items()), device_settings.current(self.store))
        return self.run("settings set", act)

    # ------------------------------------------------------------ roles
    def _check_overlap(self, name: str, ranges: list[tuple[int, int]]) -> None:
        for other in self.store.list_roles():
            if other["name"] == name or other["kind"] != "application":
                continue
            for lo, hi in ranges:
                for olo, ohi in other["key_ranges"]:
                    if lo <= ohi and olo <= hi:
                        raise AdminError("key range", f"({lo},{hi}) overlaps ({olo},{ohi}) of partition "
                                                      f"{other['name']!r}")

    def add_role(self, name: str, *, application: bool, ranges: list[str], perms: list[str]) -> Outcome:
        def act() -> Outcome:
            self.require_dual()
            canonical = factory.canonical_role(name)
            if not name or self.store.get_role(canonical) is not None:
                raise AdminError("role", f"role {name!r} already exists" if name else "a role needs a name")
            parsed = [parse_range(r) for r in ranges]
            self._check_overlap(canonical, parsed)
            keys, commands = split_perms(perms)
            self.store.put_role({"name": canonical, "kind": "application" if application else "admin",
                                 "perms": sorted(set(keys)), "key_ranges": parsed,
                                 "commands": sorted(set(commands)), "settings": {"logins_required": 1}})
            return Outcome(f"role {canonical} added")
        return self.run("role add", act)

    def modify_role(self, name: str, *, clear_perms: bool = False, clear_key_ranges: bool = False,
                    add_perms: list[str] = (), del_perms: list[str] = (), add_ranges: list[str] = (),
                    del_ranges: list[str] = ()) -> Outcome:
        def act() -> Outcome:
            self.require_dual()
            role = self.store.get_role(factory.canonical_role(name))
            if role is None:
                raise AdminError("role", f"no role named {name!r}")
            if role["kind"] == "admin":
                raise AdminError("role", "the Administrator role cannot be modified")
            add_keys, add_cmds = split_perms(list(add_perms))
            del_keys, del_cmds = split_perms(list(del_perms))
            keys, cmds = set(role["perms"]), set(role["commands"])
            if clear_perms:
                # Alone, --clear-perms clears every permission. Beside --add-perm it clears
                # only the families being added (Excrypt commands, or key permissions), so
                # the guide's second `role modify --clear-perms --add-perm Excrypt:...` keeps
                # the key permissions that `role add --perm "Keys:..."` gave the partition.
                if not add_keys and not add_cmds:
                    keys, cmds = set(), set()
                else:
                    keys = set() if add_keys else keys
                    cmds = set() if add_cmds else cmds
            keys = (keys | set(add_keys)) - set(del_keys)
            cmds = (cmds | set(add_cmds)) - set(del_cmds)
            ranges = [] if clear_key_ranges else [tuple(r) for r in role["key_ranges"]]
            gone = {parse_range(r) for r in del_ranges}
            ranges = [r for r in ranges if r not in gone] + [parse_range(r) for r in add_ranges]
            if role["kind"] == "application":
                self._check_overlap(role["name"], ranges)
            role.update(perms=sorted(keys), commands=sorted(cmds), key_ranges=ranges)
            self.store.put_role(role)
            return Outcome(f"role {role['name']} modified")
        return self.run("role modify", act)

    def delete_role(self, name: str) -> Outcome:
        def act() -> Outcome:
            self.require_dual()
            role = self.store.get_role(factory.canonical_role(name))
            if role is None:
                raise AdminError("role", f"no role named {name!r}")
            if role["kind"] != "application":
                raise AdminError("role", f"the built-in role {role['name']!r} cannot be deleted")
            members = [i["name"] for i in self.store.list_identities() if i["role"] == role["name"]]
            if members:
                raise AdminError("role", f"role {role['name']!r} still has identities: {', '.join(members)}")
            self.store.delete_role(role["name"])
            return Outcome(f"role {role['name']} deleted")
        return self.run("role delete", act)

    def list_roles(self) -> list[dict]:
        return self.store.list_roles()

    def get_role(self, name: str) -> dict:
        role = self.store.get_role(factory.canonical_role(name))
        if role is None:
            raise AdminError("role", f"no role named {name!r}")
        return role

    # ------------------------------------------------------------ major keys
    def _require_passwords_changed(self) -> None:
        defaults = [i["name"] for i in self.store.list_identities()
                    if i["role"] == factory.ADMINISTRATOR and i["flags"].get("default_password")]
        if defaults:
            raise AdminError("default passwords", f"change the default passwords of {', '.join(defaults)} "
                                                  "before loading major keys (`user change-password -u NAME`)")

    def _install_ftk(self, ftk: MajorKey, force: bool) -> None:
        """Load an FTK, refusing to orphan stored keys unless forced."""
        current = self.device.ftk()
        # the KCV the key table was wrapped under: in a cluster, the other nodes' FTK, whatever this node holds
        kcv = self.store.get_meta("ftk_kcv") or (current.kcv if current is not None else None)
        if kcv is not None and kcv != ftk.kcv and self.store.count_keys() and not force:
            raise AdminError("major key", f"the key table holds {self.store.count_keys()} key(s) wrapped "
                                          f"under the loaded FTK (KCV {kcv}); replacing it makes them "
                                          "unusable. Repeat with --force to do it anyway")
        self.device.load_ftk(ftk)

    def generate_ftk(self, *, force: bool = False, m: int | None = None, n: int | None = None,
                     pins: list[str] = ()) -> Outcome:
        """A random FTK; with M-of-N, also N card files (returned as (name, content) in
        data["cards"]) of which any M rebuild it."""
        def act() -> Outcome:
            self.require_dual()
            self._require_passwords_changed()
            if (m is None) != (n is None):
                raise AdminError("major key", "give both -m (fragments required) and -n (fragments total)")
            if m is not None:
                if not 2 <= m <= n <= 9:
                    raise AdminError("major key", f"M-of-N needs 2 <= M <= N <= 9, not {m}-of-{n}")
                if len(pins) != n:
                    raise AdminError("major key", f"give one card PIN per card: {n} needed, {len(pins)} given")
                for pin in pins:
                    if len(pin) < MIN_PASSWORD:
                        raise AdminError("major key", f"a card PIN has at least {MIN_PASSWORD} characters")
            ftk = generate_ftk()
            self._install_ftk(ftk, force)
            cards = []
            if m is not None:
                for share, pin in zip(shares.split(ftk.key_bytes(), m, n), pins):
                    cards.append((shares.card_name("ftk", share[0]), shares.make_card("ftk", ftk.kcv, m, n, share, pin)))
            note = f", {m}-of-{n} fragments on {n} cards" if m is not None else ""
            return Outcome(f"FTK loaded, KCV {ftk.kcv}{note}", {"kcv": ftk.kcv, "cards": cards})
        return self.run("majorkey random", act)

    def recombine_ftk(self, cards: list[tuple[str, bytes]], pins: list[str], *, force: bool = False) -> Outcome:
        """Rebuild the FTK from M of its cards: the cards in order, one PIN each, as many
        cards as PINs are given."""
        def act() -> Outcome:
            self.require_dual()
            self._require_passwords_changed()
            if not cards:
                raise AdminError("major key", "no FTK cards were inserted")
            got, header = [], None
            for (name, data), pin in zip(cards, pins):
                try:
                    h, share = shares.open_card(data, pin, name)
                except shares.ShareError as e:
                    raise AdminError("major key", str(e)) from None
                if header is not None and (h["kcv"], h["m"], h["n"]) != (header["kcv"], header["m"], header["n"]):
                    raise AdminError("major key", f"{name} belongs to another FTK (KCV {h['kcv']})")
                header = h
                got.append(share)
            if header is None or len(got) < header["m"]:
                need = header["m"] if header else "M"
                raise AdminError("major key", f"{len(got)} card(s) read; this FTK needs {need} of "
                                              f"{header['n'] if header else 'N'}")
            try:
                ftk = MajorKey(shares.combine(got))
            except (shares.ShareError, ValueError) as e:
                raise AdminError("major key", f"the cards do not combine: {e}") from None
            if ftk.kcv != header["kcv"]:
                raise AdminError("major key", f"the cards rebuild KCV {ftk.kcv}, not the recorded {header['kcv']}")
            self._install_ftk(ftk, force)
            return Outcome(f"FTK recombined from {len(got)} of {header['n']} cards, KCV {ftk.kcv}",
                           {"kcv": ftk.kcv})
        return self.run("majorkey recombine", act)

    def load_ftk_components(self, components: list[str], *, force: bool = False) -> Outcome:
        """An FTK entered as XOR'd components (hex), each shown with its KCV."""
        def act() -> Outcome:
            self.require_dual()
            self._require_passwords_changed()
            if len(components) < 2:
                raise AdminError("major key", "an FTK is entered as at least two components")
            value = bytes(32)
            kcvs = []
            for i, text in enumerate(components, 1):
                try:
                    part = bytes.fromhex(text.replace(" ", ""))
                except ValueError:
                    raise AdminError("major key", f"component {i} is not hexadecimal") from None
                if len(part) != 32:
                    raise AdminError("major key", f"component {i} is {len(part)} bytes; an FTK component is 32")
                kcvs.append(MajorKey(part).kcv)
                value = bytes(a ^ b for a, b in zip(value, part))
            ftk = MajorKey(value)
            self._install_ftk(ftk, force)
            shown = ", ".join(f"component {i} KCV {k}" for i, k in enumerate(kcvs, 1))
            return Outcome(f"{shown}; FTK loaded, KCV {ftk.kcv}", {"kcv": ftk.kcv, "components": kcvs})
        return self.run("majorkey load", act)

    def device_info(self) -> dict:
        return {"serial": self.device.serial, "firmware": self.store.get_meta("firmware"),
                "state": self.device.state_dir}

    def ftk_status(self) -> dict:
        ftk = self.device.ftk()
        return {"FTK": {"loaded": ftk is not None, "kcv": ftk.kcv if ftk else None}}

    # ------------------------------------------------------------ learn mode
    def learn_start(self, name: str) -> Outcome:
        def act() -> Outcome:
            self.require_dual()
            role = self._application(name)
            epoch = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
            role["settings"] = {**role["settings"], policy.LEARN: epoch}
            self.store.put_role(role)
            return Outcome(f"role {role['name']} is learning: its commands run even when not whitelisted, "
                           "and each one used is recorded until `role learn --stop`")
        return self.run("role learn --start", act)

    def learn_stop(self, name: str) -> Outcome:
        """Leave learn mode; the outcome carries the whitelist the partition used, as one
        `role modify` line, and the commands refused while it was not learning."""
        def act() -> Outcome:
            self.require_dual()
            role = self._application(name)
            epoch = role["settings"].get(policy.LEARN)
            if not epoch:
                raise AdminError("learn mode", f"role {role['name']} is not learning (`role learn --start`)")
            prefix = f"learned:{role['name']}:{epoch}:"
            used = sorted(k[len(prefix):] for k in self.store.list_meta(prefix))
            for key in self.store.list_meta(f"learned:{role['name']}:"):
                self.store.set_meta(key, None)
            role["settings"] = {k: v for k, v in role["settings"].items() if k != policy.LEARN}
            self.store.put_role(role)
            # Refusals since the previous --stop (or ever): what the whitelist lacked outside learning.
            since = int(self.store.get_meta(f"learn-stopped:{role['name']}") or 0)
            denied: dict[str, int] = {}
            rows = self.store.audit_rows()
            for row in rows:
                if int(row["seq"]) > since and row["result"] == "denied" and row["role"] == role["name"]:
                    denied[row["command"]] = denied.get(row["command"], 0) + 1
            self.store.set_meta(f"learn-stopped:{role['name']}", str(rows[-1]["seq"]) if rows else "0")
            line = whitelist_line(role["name"], used)
            return Outcome(line, {"role": role["name"], "commands": used, "line": line, "denied": denied})
        return self.run("role learn --stop", act)

    def _application(self, name: str) -> dict:
        role = self.store.get_role(factory.canonical_role(name))
        if role is None:
            raise AdminError("role", f"no role named {name!r}")
        if role["kind"] == "admin":
            raise AdminError("role", "the Administrator role has no command whitelist")
        return role

    # ------------------------------------------------------------ audit and key table
    def audit(self, *, identity: str | None = None, role: str | None = None, command: str | None = None,
              result: str | None = None, since: str | None = None, limit: int | None = None) -> list[dict]:
        rows = []
        for row in self.store.audit_rows():
            if identity and identity not in (row["identity"] or "").split(","):
                continue
            if role and (row["role"] or "") != factory.canonical_role(role):
                continue
            if command and not (row["command"] or "").startswith(command):
                continue
            if result and row["result"] != result:
                continue
            if since and (row["time"] or "") < since:
                continue
            rows.append(row)
        return rows[-limit:] if limit else rows

    def verify_audit(self) -> tuple[bool, str]:
        return self.store.verify_audit()

    def key_table(self, owner: str | None = None) -> list[dict]:
        return [describe_key(rec) for rec in self.store.list_keys(
            factory.canonical_role(owner) if owner else None)]

    def delete_key(self, slot: int) -> Outcome:
        def act() -> Outcome:
            self.require_dual()
            if not self.store.delete_key(slot):
                raise AdminError("key table", f"slot {slot} is empty")
            return Outcome(f"slot {slot} deleted")
        return self.run("keytable delete", act)

    # ------------------------------------------------------------ device keys and certificates
    def _free_admin_ranges(self) -> list[tuple[int, int]]:
        """Slots outside every application partition: where the device's own keys go."""
        taken = sorted(tuple(r) for role in self.store.list_roles() if role["kind"] == "application"
                       for r in role["key_ranges"])
        out, start = [], 0
        for lo, hi in taken:
            if lo > start:
                out.append((start, lo - 1))
            start = max(start, hi + 1)
        if start < factory.KEY_TABLE_SLOTS:
            out.append((start, factory.KEY_TABLE_SLOTS - 1))
        return out

    def _store_device_key(self, key: Any, name: str, slot: str | int, usage: str) -> int:
        from fxpkcs11 import ck
        from vhsm.commands.keys import public_attrs_of
        from vhsm.crypto import keys as keymat
        from vhsm.objects import ObjectSpace
        from vhsm.p11 import attributes as rules

        kt = ck.CKK_RSA if isinstance(key, pki.rsa.RSAPrivateKey) else ck.CKK_EC
        mech = ck.CKM_RSA_PKCS_KEY_PAIR_GEN if kt == ck.CKK_RSA else ck.CKM_EC_KEY_PAIR_GEN
        attrs = rules.complete({ck.CKA_LABEL: name, ck.CKA_TOKEN: True, ck.CKA_SIGN: True, ck.CKA_DECRYPT: False,
                                ck.CKA_UNWRAP: False, ck.CKA_SIGN_RECOVER: False},
                               ck.CKO_PRIVATE_KEY, kt, local=True, mechanism=mech)
        attrs.update(public_attrs_of(key.public_key()))
        attrs.pop(ck.CKA_EC_POINT, None)
        if slot == "next":
            ranges = self._free_admin_ranges()
        else:
            n = int(slot)
            if any(lo <= n <= hi for role in self.store.list_roles() if role["kind"] == "application"
                   for lo, hi in role["key_ranges"]):
                raise AdminError("key table", f"slot {n} belongs to an application partition")
            ranges = [(n, n)]
        space = ObjectSpace(self.store, self.device.require_ftk, self.device.cache)
        try:
            obj = space.create(attrs, keymat.private_der(key), factory.ADMINISTRATOR, ranges, 0)
        except Exception as e:  # DeviceError: no FTK, slot taken
            raise AdminError("key table", getattr(e, "text", str(e))) from None
        self.store.set_meta(f"keyusage:{obj.ref}", usage)
        return obj.ref

    def _device_key(self, ref: str) -> tuple[int, Any]:
        """A device key by slot number or label (the Administrator's keys only)."""
        from fxpkcs11 import ck
        from vhsm.objects import ObjectSpace

        recs = [r for r in self.store.list_keys(factory.ADMINISTRATOR)
                if str(r.slot) == ref or r.attrs.get(ck.CKA_LABEL) == ref]
        if not recs:
            raise AdminError("key table", f"no device key named or in slot {ref!r}")
        space = ObjectSpace(self.store, self.device.require_ftk, self.device.cache)
        obj = space.get(recs[0].slot)
        try:
            return obj.ref, space.load(obj)
        except Exception as e:
            raise AdminError("key table", getattr(e, "text", str(e))) from None

    def generate_key(self, *, algo: str, bits: int | None, usage: str, name: str, slot: str) -> Outcome:
        def act() -> Outcome:
            self.require_dual()
            if not name:
                raise AdminError("key table", "a device key needs a --name")
            if any(r.attrs.get(0x3) == name for r in self.store.list_keys(factory.ADMINISTRATOR)):
                raise AdminError("key table", f"a device key named {name!r} exists")
            try:
                key = pki.new_key(algo, bits)
            except pki.PkiError as e:
                raise AdminError("key table", str(e)) from None
            ref = self._store_device_key(key, name, slot, usage)
            return Outcome(f"{algo.upper()} key pair {name} generated in slot {ref}", {"slot": ref})
        return self.run("generate", act)

    def x509_sign(self, *, private_slot: str, dn: str | None, issuer: bytes | None = None,
                  csr: bytes | None = None, ca: bool = False, pathlen: int | None = None,
                  key_usage: list[str] = (), eku: list[str] = (), san: list[str] = (),
                  days: int | None = None) -> Outcome:
        def act() -> Outcome:
            self.require_dual()
            _, signer = self._device_key(private_slot)
            try:
                issuer_cert = pki.load_certs(issuer)[0] if issuer else None
                if csr:
                    req = pki.load_csr(csr)
                    public, subject = req.public_key(), pki.parse_dn(dn) if dn else req.subject
                else:
                    if issuer_cert is not None:
                        raise AdminError("x509", "without --csr the certificate is self-signed: drop --issuer")
                    public, subject = signer.public_key(), pki.parse_dn(dn or "CN=Vectera Plus")
                cert = pki.sign(signer=signer, subject=subject, public_key=public, issuer=issuer_cert, ca=ca,
                                pathlen=pathlen, key_usage=list(key_usage), eku=list(eku), san=list(san),
                                days=days or (3650 if ca else 730))
            except pki.PkiError as e:
                raise AdminError("x509", str(e)) from None
            return Outcome(f"certificate for {cert.subject.rfc4514_string()} signed", {"pem": pki.pem(cert)})
        return self.run("x509 sign", act)

    def tls_request(self, port: str, *, algo: str = "RSA", bits: int | None = None,
                    dn: str | None = None) -> Outcome:
        def act() -> Outcome:
            self.require_dual()
            name = tls_port_name(port)
            settings = self.tls_settings(name)
            try:
                key = pki.new_key(algo, bits)
                request = pki.csr(key, pki.parse_dn(dn or f"O=Futurex\\CN=Vectera Plus {self.device.serial}"))
            except pki.PkiError as e:
                raise AdminError("tls-ports", str(e)) from None
            old = settings.get("key_slot")
            settings["key_slot"] = self._store_device_key(key, f"TLS {name} {len(self.store.list_keys())}",
                                                          "next", "tls")
            if old is not None:
                self.store.delete_key(old)
            settings.update(cert=None)
            self._put_tls(name, settings)
            return Outcome(f"{name}: new key pair in slot {settings['key_slot']}", {"pem": pki.pem(request)})
        return self.run("tls-ports request", act)

    def tls_set(self, port: str, *, enable: bool | None = None, anon: bool | None = None,
                pki_source: str | None = None, clear_pki: bool = False, ca: list[bytes] = (),
                cert: bytes | None = None) -> Outcome:
        def act() -> Outcome:
            self.require_dual()
            name = tls_port_name(port)
            settings = self.tls_settings(name)
            if clear_pki:
                settings.update(ca=[], cert=None)
            try:
                if ca:
                    settings["ca"] = [pki.pem(c).decode() for data in ca for c in pki.load_certs(data)]
                if cert:
                    certs = pki.load_certs(cert)
                    settings["cert"] = "".join(pki.pem(c).decode() for c in certs)
            except pki.PkiError as e:
                raise AdminError("tls-ports", str(e)) from None
            if pki_source is not None:
                source = {"generated": "Generated", "futurex": "Futurex"}.get(pki_source.lower())
                if source is None:
                    raise AdminError("tls-ports", f"--pki-source is Generated or Futurex, not {pki_source!r}")
                settings["pki_source"] = source
            if enable is not None:
                settings["enabled"] = enable
            if anon is not None:
                settings["anon"] = anon
            if settings["pki_source"] == "Generated":
                self._check_generated_pki(name, settings)
            self._put_tls(name, settings)
            return Outcome(f"{name}: " + ", ".join(f"{k}={v}" for k, v in describe_tls(settings).items()))
        return self.run("tls-ports set", act)

    def _check_generated_pki(self, name: str, settings: dict) -> None:
        if settings.get("key_slot") is None:
            raise AdminError("tls-ports", f"{name} has no key pair: run `tls-ports request` first")
        if not settings.get("cert") or not settings.get("ca"):
            raise AdminError("tls-ports", f"{name} needs --cert and --ca for --pki-source Generated")
        _, key = self._device_key(str(settings["key_slot"]))
        leaf = pki.load_certs(settings["cert"].encode())[0]
        if not pki.same_key(leaf.public_key(), key.public_key()):
            raise AdminError("tls-ports", "the certificate is not for the key pair `tls-ports request` made")
        cas = [c for pem_text in settings["ca"] for c in pki.load_certs(pem_text.encode())]
        if not any(leaf.issuer == c.subject and _signed_by(leaf, c) for c in cas):
            raise AdminError("tls-ports", "the certificate does not chain to the given --ca")

    def tls_export(self, port: str) -> Outcome:
        """The CA certificates a client must trust (<PROD-TLS-CA>) for a port."""
        from vhsm.tlsports import futurex_pki
        name = tls_port_name(port)
        settings = self.tls_settings(name)
        cas = settings["ca"] if settings["pki_source"] == "Generated" else [futurex_pki(self.device)["ca"]]
        return Outcome(f"{name}: {len(cas)} CA certificate(s)", {"pem": "".join(cas).encode()})

    def tls_client_cert(self, port: str, *, csr: bytes, dn: str | None = None, days: int = 730) -> Outcome:
        """Sign a client's CSR with the port's device-made ("Futurex") CA."""
        def act() -> Outcome:
            from cryptography.hazmat.primitives import serialization
            from vhsm.tlsports import futurex_pki
            self.require_dual()
            name = tls_port_name(port)
            if self.tls_settings(name)["pki_source"] != "Futurex":
                raise AdminError("tls-ports", f"{name} uses a Generated PKI: sign clients with `x509 sign`")
            doc = futurex_pki(self.device)
            ca = pki.load_certs(doc["ca"].encode())[0]
            signer = serialization.load_pem_private_key(doc["ca_key"].encode(), None)
            try:
                req = pki.load_csr(csr)
                cert = pki.sign(signer=signer, subject=pki.parse_dn(dn) if dn else req.subject,
                                public_key=req.public_key(), issuer=ca, key_usage=["DigitalSignature"],
                                eku=["Client"], days=days)
            except pki.PkiError as e:
                raise AdminError("tls-ports", str(e)) from None
            return Outcome(f"{name}: client certificate for {cert.subject.rfc4514_string()} signed",
                           {"pem": pki.pem(cert)})
        return self.run("tls-ports client-cert", act)

    def tls_settings(self, name: str) -> dict:
        raw = self.store.get_meta(f"tls:{name}")
        base = {"enabled": True, "anon": False, "pki_source": "Futurex", "key_slot": None, "ca": [], "cert": None}
        return {**base, **(json.loads(raw) if raw else {})}

    def _put_tls(self, name: str, settings: dict) -> None:
        self.store.set_meta(f"tls:{name}", json.dumps(settings, sort_keys=True))

    # ------------------------------------------------------------ settings
    def record_network(self, settings: dict[str, str]) -> Outcome:
        def act() -> Outcome:
            self.require_dual()
            name = settings.get("interface") or "Ethernet1"
            self.store.set_meta(f"network:{name}", ",".join(f"{k}={v}" for k, v in sorted(settings.items())))
            return Outcome(f"network interface {name} recorded (the virtual HSM listens where `vhsm serve` says)")
        return self.run("network interface modify", act)


def check_password(password: str) -> None:
    if not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise AdminError("password", f"a password is {MIN_PASSWORD} to {MAX_PASSWORD} characters")


def all_commands() -> list[str]:
    return whitelistable()


def whitelist_line(role: str, commands: list[str]) -> str:
    """A `role modify` line that whitelists exactly these commands; FXCLI accepts it too."""
    perms = " ".join(f"--add-perm Excrypt:{c}" for c in commands)
    return f'role modify --name "{role}" {perms}'.rstrip()


def describe_key(rec: Any) -> dict:
    from fxpkcs11 import ck
    from fxpkcs11.usage import usage_letters

    a = rec.attrs
    cls = a.get(ck.CKA_CLASS)
    check = a.get(ck.CKA_CHECK_VALUE)
    if check:
        kcv = check[:2].hex().upper()
    elif a.get(ck.CKA_PUBLIC_KEY_INFO):
        kcv = hashlib.sha256(a[ck.CKA_PUBLIC_KEY_INFO]).hexdigest()[:4].upper()
    else:
        kcv = ""
    kt = a.get(ck.CKA_KEY_TYPE)
    return {"slot": rec.slot, "class": ck.name(cls, "CKO_") if cls is not None else "?",
            "type": ck.name(kt, "CKK_") if kt is not None else "-", "label": a.get(ck.CKA_LABEL, ""),
            "kcv": kcv, "usage": usage_letters(a), "owner": rec.owner}


TLS_PORTS = ("Excrypt Port",)


def tls_port_name(port: str) -> str:
    for name in TLS_PORTS:
        if name.lower() == port.strip().lower():
            return name
    raise AdminError("tls-ports", f"unknown port pair {port!r}; known: {', '.join(TLS_PORTS)}")


def describe_tls(settings: dict) -> dict:
    return {"enabled": settings["enabled"], "anon": settings["anon"], "pki_source": settings["pki_source"],
            "key_slot": settings.get("key_slot"), "ca_certs": len(settings.get("ca") or []),
            "cert": bool(settings.get("cert"))}


def _signed_by(cert: Any, ca: Any) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except Exception:  # wrong issuer, bad signature, unsupported key: all mean "not signed by"
        return False
    return True


# The operations the management port accepts (`connect tcp`); everything else stays local.
REMOTE_METHODS = frozenset({
    "login", "logout", "change_password", "add_identity", "delete_identity", "list_identities", "add_role",
    "modify_role", "delete_role", "list_roles", "get_role", "generate_ftk", "recombine_ftk",
    "load_ftk_components", "ftk_status", "learn_start", "learn_stop", "audit", "verify_audit", "key_table",
    "delete_key", "generate_key", "x509_sign", "tls_request", "tls_set", "tls_settings", "tls_export",
    "tls_client_cert", "record_network", "device_info", "unlock_identity", "settings", "set_settings",
})
