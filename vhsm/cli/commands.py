"""The FXCLI commands the shell accepts, with FXCLI's flags and short forms.

Each command is a parser plus a function of (shell, args); the device rules themselves
live in vhsm/admin.py.
"""
from __future__ import annotations

import argparse
from typing import Callable

from vhsm.cli import local_files
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
        info = sh.connect().device_info()
        sh.say(f"connected to {info['serial']} at {info['state']}")
    return run


@command("connect tcp", "attach to a running `vhsm serve` through its management port", needs_device=False)
def _connect_tcp(p: Parser) -> Callable:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=9101)
    p.add_argument("--ca", action="append", default=[], help="CA certificate(s) the server is checked against")
    p.add_argument("--cert", help="client certificate (PEM)")
    p.add_argument("--key", help="client key: PEM, encrypted PKCS #8, or PKCS #12")
    p.add_argument("--key-pass")

    def run(sh: Shell, a: argparse.Namespace) -> None:
        from vhsm.cli.remote import RemoteAdminSession
        sh.close()
        sh.session = RemoteAdminSession(a.host, a.port, ca=a.ca, cert=a.cert, key=a.key, key_pass=a.key_pass)
        info = sh.session.device_info()
        sh.say(f"connected to {info['serial']} at {a.host}:{a.port}")
    return run


@command("init", "create a factory-fresh device in the state directory (no-op if it exists)")
def _init(p: Parser) -> Callable:
    def run(sh: Shell, a: argparse.Namespace) -> None:
        info = sh.connect().device_info()
        sh.say(f"device {info['serial']} ready at {info['state']}")
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

def _cards(sh: Shell, a: argparse.Namespace, count: int) -> tuple[str, list[str]]:
    folder = a.cards_dir or sh.ask("Folder for the cards: ")
    pins = list(a.card_pin)
    while len(pins) < count:
        pins.append(sh.ask(f"PIN for card {len(pins) + 1}: ", secret=True))
    return folder, pins


def _confirm_force(sh: Shell, a: argparse.Namespace) -> bool:
    """--force replaces an FTK that wraps stored keys; at the prompt it must be confirmed."""
    if a.force and sh.interactive and not a.yes:
        return sh.ask("Keys wrapped under the current FTK become unusable. Type YES to go on: ") == "YES"
    return a.force


@command("majorkey random", "generate a random major key (--ftk), optionally as M-of-N card fragments")
def _majorkey_random(p: Parser) -> Callable:
    p.add_argument("--ftk", action="store_true", required=True, help="the Futurex Key (FTK)")
    p.add_argument("-m", "--fragments-required", type=int, dest="m", metavar="M")
    p.add_argument("-n", "--fragments-total", type=int, dest="n", metavar="N")
    p.add_argument("--cards-dir", help="folder the card files are written to")
    p.add_argument("--card-pin", action="append", default=[], help="one per card, in card order")
    p.add_argument("--force", action="store_true", help="replace an FTK that wraps stored keys")
    p.add_argument("--yes", action="store_true", help="do not ask to confirm --force")

    def run(sh: Shell, a: argparse.Namespace) -> None:
        folder, pins = (None, [])
        if a.m is not None or a.n is not None:
            folder, pins = _cards(sh, a, a.n or 0)
            local_files.card_folder(folder)
        out = sh.session.generate_ftk(force=_confirm_force(sh, a), m=a.m, n=a.n, pins=pins)
        sh.say(out.text)
        if out.data["cards"]:
            for path in local_files.write_cards(folder, out.data["cards"]):
                sh.say(f"card written: {path}")
    return run


@command("majorkey recombine", "rebuild a major key from M of its card fragments")
def _majorkey_recombine(p: Parser) -> Callable:
    p.add_argument("--key", required=True, choices=["ftk"], type=str.lower)
    p.add_argument("--cards-dir", help="folder holding the card files")
    p.add_argument("--card-pin", action="append", default=[], help="one per card used, in card order")
    p.add_argument("--force", action="store_true", help="replace an FTK that wraps stored keys")
    p.add_argument("--yes", action="store_true", help="do not ask to confirm --force")

    def run(sh: Shell, a: argparse.Namespace) -> None:
        folder = a.cards_dir or sh.ask("Folder holding the cards: ")
        pins = list(a.card_pin)
        if not pins:
            count = int(sh.ask("How many cards will you insert? ") or "0")
            pins = [sh.ask(f"PIN for card {i + 1}: ", secret=True) for i in range(count)]
        cards = local_files.read_cards(folder, a.key)
        sh.say(sh.session.recombine_ftk(cards, pins, force=_confirm_force(sh, a)).text)
    return run


@command("majorkey load", "load a major key from XOR'd components, showing each one's KCV")
def _majorkey_load(p: Parser) -> Callable:
    p.add_argument("--key", required=True, choices=["ftk"], type=str.lower)
    p.add_argument("--component", action="append", default=[], help="hex, one per component")
    p.add_argument("--force", action="store_true", help="replace an FTK that wraps stored keys")
    p.add_argument("--yes", action="store_true", help="do not ask to confirm --force")

    def run(sh: Shell, a: argparse.Namespace) -> None:
        parts = list(a.component)
        if not parts:
            from vhsm.majorkeys import MajorKey
            count = int(sh.ask("Number of components: ") or "0")
            for i in range(count):
                text = sh.ask(f"Component {i + 1} (hex): ", secret=True)
                try:
                    sh.say(f"component {i + 1} KCV {MajorKey(bytes.fromhex(text)).kcv}")
                except ValueError:
                    raise UsageError(f"component {i + 1} is not 32 bytes of hex") from None
                parts.append(text)
        sh.say(sh.session.load_ftk_components(parts, force=_confirm_force(sh, a)).text)
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
    p.add_argument("--security-officer", action="store_true",
                   help="the partition's security officer (PKCS #11 CKU_SO), not a user of its keys")

    def run(sh: Shell, a: argparse.Namespace) -> None:
        password = a.password if a.password is not None else sh.ask("Password: ", secret=True)
        if a.security_officer:
            sh.say(sh.session.add_identity(a.name, a.role, password, security_officer=True).text)
        else:
            sh.say(sh.session.add_identity(a.name, a.role, password).text)
    return run


@command("identity unlock", "unlock an identity locked by wrong PINs (clears its failure count)")
def _identity_unlock(p: Parser) -> Callable:
    p.add_argument("--name", required=True)

    def run(sh: Shell, a: argparse.Namespace) -> None:
        sh.say(sh.session.unlock_identity(a.name).text)
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
                lambda d: _table(d, ["name", "role", "security_officer", "default_password", "failed_logins",
                                     "locked"]))
    return run


@command("role learn", "start or stop learn mode; --stop prints the whitelist the partition used")
def _role_learn(p: Parser) -> Callable:
    p.add_argument("--name", required=True)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--start", action="store_true")
    g.add_argument("--stop", action="store_true")

    def run(sh: Shell, a: argparse.Namespace) -> None:
        if a.start:
            sh.say(sh.session.learn_start(a.name).text)
            return
        out = sh.session.learn_stop(a.name)
        if sh.output == "json":
            sh.show(out.data, str)
            return
        sh.say(out.data["line"])
        if out.data["denied"]:
            sh.say("# refused while not learning: " + ", ".join(
                f"{c} ({n}x)" for c, n in sorted(out.data["denied"].items())))
    return run


# ------------------------------------------------------------------ audit and key table

@command("audit show", "show the audit log, optionally filtered")
def _audit_show(p: Parser) -> Callable:
    p.add_argument("--identity")
    p.add_argument("--role")
    p.add_argument("--command")
    p.add_argument("--result", choices=["ok", "refused", "denied"])
    p.add_argument("--since", metavar="ISO-TIME")
    p.add_argument("--limit", type=int)

    def run(sh: Shell, a: argparse.Namespace) -> None:
        rows = sh.session.audit(identity=a.identity, role=a.role, command=a.command, result=a.result,
                                since=a.since, limit=a.limit)
        sh.show(rows, lambda d: _table(d, ["seq", "time", "identity", "role", "command", "result", "text"]))
    return run


@command("audit verify", "check the audit log's hash chain")
def _audit_verify(p: Parser) -> Callable:
    def run(sh: Shell, a: argparse.Namespace) -> int:
        ok, text = sh.session.verify_audit()
        sh.show({"ok": ok, "text": text}, lambda d: d["text"])
        return 0 if ok else 1
    return run


@command("keytable list", "list the key table: slot, class, type, label, KCV, usage, owner")
def _keytable_list(p: Parser) -> Callable:
    p.add_argument("--owner", help="only this partition's keys")

    def run(sh: Shell, a: argparse.Namespace) -> None:
        sh.show(sh.session.key_table(a.owner),
                lambda d: _table(d, ["slot", "class", "type", "label", "kcv", "usage", "owner"]))
    return run


@command("keytable delete", "delete the key in a slot")
def _keytable_delete(p: Parser) -> Callable:
    p.add_argument("--slot", type=int, required=True)

    def run(sh: Shell, a: argparse.Namespace) -> None:
        sh.say(sh.session.delete_key(a.slot).text)
    return run


# ------------------------------------------------------------------ device keys, certificates, TLS

def _bool(text: str) -> bool:
    value = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}.get(text.lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, not {text!r}")
    return value


@command("generate", "generate a device key pair into the key table (e.g. a TLS CA)")
def _generate(p: Parser) -> Callable:
    p.add_argument("--algo", required=True)
    p.add_argument("--bits", type=int)
    p.add_argument("--usage", default="")
    p.add_argument("--name", required=True)
    p.add_argument("--slot", default="next", help="'next' or a slot number")

    def run(sh: Shell, a: argparse.Namespace) -> None:
        sh.say(sh.session.generate_key(algo=a.algo, bits=a.bits, usage=a.usage, name=a.name, slot=a.slot).text)
    return run


@command("x509 sign", "sign a certificate (self-signed, or for a CSR) with a device key")
def _x509_sign(p: Parser) -> Callable:
    p.add_argument("--private-slot", required=True, help="the signing key's name or slot")
    p.add_argument("--issuer", help="the signer's certificate (PEM); omit for self-signed")
    p.add_argument("--csr", help="the request to sign (PEM or DER)")
    p.add_argument("--key-usage", action="append", default=[])
    p.add_argument("--eku", action="append", default=[])
    p.add_argument("--ca", type=_bool, default=False, metavar="true|false")
    p.add_argument("--pathlen", type=int)
    p.add_argument("--dn", help="subject, e.g. 'O=Futurex\\CN=Root'")
    p.add_argument("--san", action="append", default=[], help="subject alternative name (DNS or IP)")
    p.add_argument("--days", type=int)
    p.add_argument("--out", required=True)

    def run(sh: Shell, a: argparse.Namespace) -> None:
        issuer = local_files.read(a.issuer) if a.issuer else None
        csr = local_files.read(a.csr) if a.csr else None
        local_files.check_writable(a.out)
        out = sh.session.x509_sign(private_slot=a.private_slot, dn=a.dn, issuer=issuer, csr=csr, ca=a.ca,
                                   pathlen=a.pathlen, key_usage=a.key_usage, eku=a.eku, san=a.san, days=a.days)
        local_files.write(a.out, out.data["pem"])
        sh.say(f"{out.text}, written to {a.out}")
    return run


@command("tls-ports request", "make a new key pair for a TLS port and write its CSR")
def _tls_request(p: Parser) -> Callable:
    p.add_argument("-p", "--pair", required=True, help='e.g. "Excrypt Port"')
    p.add_argument("--file", required=True)
    p.add_argument("--pki-algo", default="RSA")
    p.add_argument("--bits", type=int)
    p.add_argument("--dn")

    def run(sh: Shell, a: argparse.Namespace) -> None:
        local_files.check_writable(a.file)
        out = sh.session.tls_request(a.pair, algo=a.pki_algo, bits=a.bits, dn=a.dn)
        local_files.write(a.file, out.data["pem"])
        sh.say(f"{out.text}, CSR written to {a.file}")
    return run


@command("tls-ports set", "change a TLS port: enable, anonymous clients, its PKI")
def _tls_set(p: Parser) -> Callable:
    p.add_argument("-p", "--pair", required=True, help='e.g. "Excrypt Port"')
    e = p.add_mutually_exclusive_group()
    e.add_argument("--enable", dest="enable", action="store_const", const=True)
    e.add_argument("--disable", dest="enable", action="store_const", const=False)
    n = p.add_mutually_exclusive_group()
    n.add_argument("--anon", dest="anon", action="store_const", const=True)
    n.add_argument("--no-anon", dest="anon", action="store_const", const=False)
    p.add_argument("--pki-source", help="Generated (tls-ports request + x509 sign) or Futurex")
    p.add_argument("--clear-pki", action="store_true")
    p.add_argument("--ca", action="append", default=[], help="CA certificate file, repeatable")
    p.add_argument("--cert", help="the port's certificate file")

    def run(sh: Shell, a: argparse.Namespace) -> None:
        ca = [local_files.read(f) for f in a.ca]
        cert = local_files.read(a.cert) if a.cert else None
        sh.say(sh.session.tls_set(a.pair, enable=a.enable, anon=a.anon, pki_source=a.pki_source,
                                  clear_pki=a.clear_pki, ca=ca, cert=cert).text)
    return run


@command("tls-ports export", "write the CA certificate(s) clients must trust for a port")
def _tls_export(p: Parser) -> Callable:
    p.add_argument("-p", "--pair", required=True, help='e.g. "Excrypt Port"')
    p.add_argument("--ca-out", required=True)

    def run(sh: Shell, a: argparse.Namespace) -> None:
        out = sh.session.tls_export(a.pair)
        local_files.write(a.ca_out, out.data["pem"])
        sh.say(f"{out.text}, written to {a.ca_out}")
    return run


@command("tls-ports client-cert", "sign a client CSR with the port's device-made (Futurex) CA")
def _tls_client_cert(p: Parser) -> Callable:
    p.add_argument("-p", "--pair", required=True, help='e.g. "Excrypt Port"')
    p.add_argument("--csr", required=True)
    p.add_argument("--dn")
    p.add_argument("--days", type=int, default=730)
    p.add_argument("--out", required=True)

    def run(sh: Shell, a: argparse.Namespace) -> None:
        csr = local_files.read(a.csr)
        local_files.check_writable(a.out)
        out = sh.session.tls_client_cert(a.pair, csr=csr, dn=a.dn, days=a.days)
        local_files.write(a.out, out.data["pem"])
        sh.say(f"{out.text}, written to {a.out}")
    return run


@command("tls-ports list", "show the TLS ports' settings")
def _tls_list(p: Parser) -> Callable:
    def run(sh: Shell, a: argparse.Namespace) -> None:
        from vhsm.admin import TLS_PORTS, describe_tls
        rows = [{"port": name, **describe_tls(sh.session.tls_settings(name))} for name in TLS_PORTS]
        sh.show(rows, lambda d: _table(d, ["port", "enabled", "anon", "pki_source", "key_slot", "ca_certs",
                                           "cert"]))
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


@command("settings show", "show the device settings (login failures before a lock, RSA minimum size)")
def _settings_show(p: Parser) -> Callable:
    def run(sh: Shell, a: argparse.Namespace) -> None:
        from vhsm.settings import SETTINGS
        values = sh.session.settings()
        rows = [{"setting": name, "value": values.get(name), "default": s.default, "range": f"{s.low}-{s.high}",
                 "meaning": s.summary} for name, s in SETTINGS.items()]
        sh.show(values if sh.output == "json" else rows,
                lambda d: _table(d, ["setting", "value", "default", "range", "meaning"]))
    return run


@command("settings set", "change device settings: --max-login-failures N, --rsa-min-bits BITS")
def _settings_set(p: Parser) -> Callable:
    p.add_argument("--max-login-failures", metavar="N", help="wrong PINs in a row before an identity locks")
    p.add_argument("--rsa-min-bits", metavar="BITS", help="smallest RSA key generated (1024 to 4096)")

    def run(sh: Shell, a: argparse.Namespace) -> None:
        values = {name: v for name, v in (("max-login-failures", a.max_login_failures),
                                          ("rsa-min-bits", a.rsa_min_bits)) if v is not None}
        if not values:
            raise UsageError("give at least one setting: --max-login-failures N, --rsa-min-bits BITS")
        sh.say(sh.session.set_settings(values).text)
    return run


@command("command list", "list every Excrypt command with the PKCS #11 functions that need it",
         needs_device=False)
def _command_list(p: Parser) -> Callable:
    def run(sh: Shell, a: argparse.Namespace) -> None:
        rows = [{"command": c.code, "description": c.description, "pkcs11": " ".join(c.pkcs11) or "-",
                 "whitelist": "always" if c.session_control else "role"} for c in EXCRYPT_COMMANDS]
        sh.show(rows, lambda d: _table(d, ["command", "whitelist", "description", "pkcs11"]))
    return run




from vhsm.cli import cluster as _cluster_commands  # noqa: E402,F401 - registers `cluster init|join|status`
