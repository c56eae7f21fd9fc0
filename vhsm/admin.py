"""Administration of the device: identities, roles (application partitions), major keys.

The admin shell (vhsm/cli) parses FXCLI commands and calls these operations; each one
checks the device rules (dual control, default passwords changed, valid and disjoint key
ranges) and writes an audit entry, whether it succeeds or is refused.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

from vhsm import factory
from vhsm.commands.catalog import BY_CODE, whitelistable
from vhsm.device import VirtualHSM
from vhsm.majorkeys import generate_ftk
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

    def add_identity(self, name: str, role: str, password: str) -> Outcome:
        def act() -> Outcome:
            self.require_dual()
            if not name or len(name) > 64:
                raise AdminError("identity", "an identity name is 1 to 64 characters")
            if self.store.get_identity(name) is not None:
                raise AdminError("identity", f"identity {name!r} already exists")
            r = self.store.get_role(factory.canonical_role(role))
            if r is None:
                raise AdminError("identity", f"no role named {role!r}")
            check_password(password)
            self.store.put_identity({"name": name, "role": r["name"], "password_hash": hash_password(password),
                                     "flags": {}, "failed_logins": 0})
            return Outcome(f"identity {name} added to role {r['name']}")
        return self.run("identity add", act)

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
        return [{"name": i["name"], "role": i["role"],
                 "default_password": bool(i["flags"].get("default_password")),
                 "failed_logins": i.get("failed_logins", 0)} for i in self.store.list_identities()]

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

    def generate_ftk(self, *, force: bool = False) -> Outcome:
        def act() -> Outcome:
            self.require_dual()
            self._require_passwords_changed()
            current = self.device.ftk()
            if current is not None and self.store.count_keys() and not force:
                raise AdminError("major key", f"the key table holds {self.store.count_keys()} key(s) wrapped "
                                              f"under the loaded FTK (KCV {current.kcv}); replacing it makes them "
                                              "unusable. Repeat with --force to do it anyway")
            ftk = generate_ftk()
            self.device.load_ftk(ftk)
            return Outcome(f"FTK loaded, KCV {ftk.kcv}", {"kcv": ftk.kcv})
        return self.run("majorkey random", act)

    def ftk_status(self) -> dict:
        ftk = self.device.ftk()
        return {"FTK": {"loaded": ftk is not None, "kcv": ftk.kcv if ftk else None}}

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
