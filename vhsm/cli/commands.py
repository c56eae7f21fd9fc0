"""The FXCLI commands the shell accepts, with FXCLI's flags and short forms.

Each command is a parser plus a function of (shell, args); the device rules themselves
live in vhsm/admin.py.
"""
from __future__ import annotations

import argparse
from typing import Callable

from vhsm import factory
from vhsm.cli.shell import Command, Parser, Shell, UsageError
from vhsm.commands.catalog import COMMANDS as EXCRYPT_COMMANDS

COMMANDS: list[Command] = []


def command(words: str, summary: str, *, needs_device: bool = True) -> Callable:
    def register(build: Callable[[Parser], Callable]) -> Callable:
        parser = Parser(words, summary)
        run = build(parser)
        COMMANDS.append(Command(tuple(words.split()), summary, parser, run, needs_device))
        return build
    return register


def _table(rows: list[dict], cols: list[str]) -> str:
    if not rows:
        return "(none)"
    widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in cols}
    lines = ["  ".join(c.ljust(widths[c]) for c in cols)]
    lines += ["  ".join(str(r.get(c, "")).ljust(widths[c]) for c in cols) for r in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------ connection and login

@command("connect usb", "attach to the local device (the state directory)")
def _connect_usb(p: Parser) -> Callable:
    def run(sh: Shell, a: argparse.Namespace) -> None:
        dev = sh.connect().device
        sh.say(f"connected to {dev.serial} at {dev.state_dir}")
    return run


@command("init", "create a factory-fresh device in the state directory (no-op if it exists)")
def _init(p: Parser) -> Callable:
    def run(sh: Shell, a: argparse.Namespace) -> None:
        dev = sh.connect().device
        sh.say(f"device {dev.serial} ready at {dev.state_dir}")
    return run


@command("login user", "log an identity in (prompts for name and password)")
def _login(p: Parser) -> Callable:
    p.add_argument("-u", "--username")
    p.add_argument("-p", "--password")

    def run(sh: Shell, a: argparse.Namespace) -> None:
        name = a.username or sh.ask("Username: ")
        password = a.password if a.password is not None else sh.ask("Password: ", secret=True)
        sh.say(sh.session.login(name, password).text)
    return run


@command("logout user", "log an identity out (the last one by default)")
def _logout(p: Parser) -> Callable:
    p.add_argument("-u", "--username")

    def run(sh: Shell, a: argparse.Namespace) -> None:
        sh.say(sh.session.logout(a.username).text)
    return run


@command("user change-password", "change an identity's password (prompts for the old and new one)")
def _change_password(p: Parser) -> Callable:
    p.add_argument("-u", "--username", required=True)
    p.add_argument("--old-password")
    p.add_argument("--new-password")

    def run(sh: Shell, a: argparse.Namespace) -> None:
        old = a.old_password if a.old_password is not None else sh.ask("Old password: ", secret=True)
        new = a.new_password
        if new is None:
            new = sh.ask("New password: ", secret=True)
            if sh.ask("Confirm new password: ", secret=True) != new:
                raise UsageError("the two new passwords differ")
        sh.say(sh.session.change_password(a.username, old, new).text)
    return run


# ------------------------------------------------------------------ major keys

@command("majorkey random", "generate a random major key (--ftk) and load it")
def _majorkey_random(p: Parser) -> Callable:
    p.add_argument("--ftk", action="store_true", required=True, help="the Futurex Key (FTK)")
    p.add_argument("--force", action="store_true", help="replace an FTK that wraps stored keys")

    def run(sh: Shell, a: argparse.Namespace) -> None:
        sh.say(sh.session.generate_ftk(force=a.force).text)
    return run


@command("majorkey status", "show which major keys are loaded and their KCVs")
def _majorkey_status(p: Parser) -> Callable:
    def run(sh: Shell, a: argparse.Namespace) -> None:
        sh.show(sh.session.ftk_status(), lambda d: "\n".join(
            f"{k}: {'loaded, KCV ' + v['kcv'] if v['loaded'] else 'not loaded'}" for k, v in d.items()))
    return run


# ------------------------------------------------------------------ roles

def _role_text(r: dict) -> str:
    ranges = ", ".join(f"({lo},{hi})" for lo, hi in r["key_ranges"]) or "none"
    return (f"Name: {r['name']}\nKind: {r['kind']}\nPermissions: {', '.join(r['perms']) or 'none'}\n"
            f"Key ranges: {ranges}\nCommands: {', '.join(r['commands']) or 'none'}")


@command("role add", "add an application partition")
def _role_add(p: Parser) -> Callable:
    p.add_argument("--name", required=True)
    p.add_argument("--application", action="store_true")
    p.add_argument("--key-range", action="append", default=[], metavar="(FIRST,LAST)")
    p.add_argument("--perm", action="append", default=[], metavar="PERMISSION")

    def run(sh: Shell, a: argparse.Namespace) -> None:
        if not a.application:
            raise UsageError("only application partitions can be added (--application)")
        sh.say(sh.session.add_role(a.name, application=True, ranges=a.key_range, perms=a.perm).text)
    return run


@command("role modify", "change a role's permissions, commands and key ranges")
def _role_modify(p: Parser) -> Callable:
    p.add_argument("--name", required=True)
    p.add_argument("--clear-perms", action="store_true")
    p.add_argument("--clear-key-ranges", action="store_true")
    p.add_argument("--add-perm", action="append", default=[], metavar="PERMISSION")
    p.add_argument("--del-perm", action="append", default=[], metavar="PERMISSION")
    p.add_argument("--add-key-range", action="append", default=[], metavar="(FIRST,LAST)")
    p.add_argument("--del-key-range", action="append", default=[], metavar="(FIRST,LAST)")

    def run(sh: Shell, a: argparse.Namespace) -> None:
        sh.say(sh.session.modify_role(a.name, clear_perms=a.clear_perms, clear_key_ranges=a.clear_key_ranges,
                                      add_perms=a.add_perm, del_perms=a.del_perm, add_ranges=a.add_key_range,
                                      del_ranges=a.del_key_range).text)
    return run


@command("role delete", "delete an application partition that has no identities")
def _role_delete(p: Parser) -> Callable:
    p.add_argument("--name", required=True)

    def run(sh: Shell, a: argparse.Namespace) -> None:
        sh.say(sh.session.delete_role(a.name).text)
    return run


@command("role list", "list the roles")
def _role_list(p: Parser) -> Callable:
    def run(sh: Shell, a: argparse.Namespace) -> None:
        rows = [{"name": r["name"], "kind": r["kind"],
                 "key_ranges": " ".join(f"({lo},{hi})" for lo, hi in r["key_ranges"]) or "-",
                 "commands": len(r["commands"])} for r in sh.session.list_roles()]
        sh.show(sh.session.list_roles() if sh.output == "json" else rows,
                lambda d: _table(d, ["name", "kind", "key_ranges", "commands"]))
    return run


@command("role show", "show one role")
def _role_show(p: Parser) -> Callable:
    p.add_argument("--name", required=True)

    def run(sh: Shell, a: argparse.Namespace) -> None:
        sh.show(sh.session.get_role(a.name), _role_text)
    return run


# ------------------------------------------------------------------ identities

@command("identity add", "add an identity to a role")
def _identity_add(p: Parser) -> Callable:
    p.add_argument("--name", required=True)
    p.add_argument("--role", required=True)
    p.add_argument("--password")

    def run(sh: Shell, a: argparse.Namespace) -> None:
        password = a.password if a.password is not None else sh.ask("Password: ", secret=True)
        sh.say(sh.session.add_identity(a.name, a.role, password).text)
    return run


@command("identity delete", "delete an identity")
def _identity_delete(p: Parser) -> Callable:
    p.add_argument("--name", required=True)

    def run(sh: Shell, a: argparse.Namespace) -> None:
        sh.say(sh.session.delete_identity(a.name).text)
    return run


@command("identity list", "list the identities")
def _identity_list(p: Parser) -> Callable:
    def run(sh: Shell, a: argparse.Namespace) -> None:
        sh.show(sh.session.list_identities(),
                lambda d: _table(d, ["name", "role", "default_password", "failed_logins"]))
    return run


# ------------------------------------------------------------------ device settings

@command("network interface modify", "set an interface's address (recorded)")
def _network(p: Parser) -> Callable:
    p.add_argument("--interface", default="Ethernet1")
    p.add_argument("--ip")
    p.add_argument("--netmask")
    p.add_argument("--gateway")

    def run(sh: Shell, a: argparse.Namespace) -> None:
        settings = {k: v for k, v in vars(a).items() if v is not None}
        sh.say(sh.session.record_network(settings).text)
    return run


@command("command list", "list every Excrypt command with the PKCS #11 functions that need it",
         needs_device=False)
def _command_list(p: Parser) -> Callable:
    def run(sh: Shell, a: argparse.Namespace) -> None:
        rows = [{"command": c.code, "description": c.description, "pkcs11": " ".join(c.pkcs11) or "-",
                 "whitelist": "always" if c.session_control else "role"} for c in EXCRYPT_COMMANDS]
        sh.show(rows, lambda d: _table(d, ["command", "whitelist", "description", "pkcs11"]))
    return run


