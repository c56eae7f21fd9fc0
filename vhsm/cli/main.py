"""vhsm: the admin shell of the virtual Vectera Plus.

    vhsm [--state DIR] [--output json]               interactive prompt
    vhsm [--state DIR] [--output json] CMD ...       one command
    vhsm [--state DIR] [--output json] -f FILE       a script, one command per line
    vhsm [--state DIR] serve [--host H] [--port P]   the network HSM (vhsm serve --help)
"""
from __future__ import annotations

import argparse
import os
import sys

from fxpkcs11.config import default_vhsm_state
from vhsm.cli.shell import USAGE, Shell


def join_continuations(lines: list[str]) -> list[str]:
    """Script lines ending in a backslash continue on the next line, as in the guide."""
    out, pending = [], ""
    for line in lines:
        stripped = line.rstrip("\n")
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            out.append("")  # keep line numbers
            continue
        out.append(pending + stripped)
        pending = ""
    if pending:
        out.append(pending)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="vhsm", description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--state", default=None, help="state directory (default: $XDG_DATA_HOME/fxvhsm)")
    ap.add_argument("-f", "--file", help="run the commands in FILE")
    ap.add_argument("--output", choices=("text", "json"), default="text")
    ap.add_argument("--login", action="append", default=[], metavar="NAME[:PASSWORD]",
                    help="log in before the command (twice for dual control); without the password "
                         "it is asked at a terminal")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args(argv)
    state = os.path.abspath(os.path.expanduser(a.state)) if a.state else default_vhsm_state(os.environ)
    if a.command[:1] == ["serve"]:
        from vhsm.cli.serve import serve
        return serve(state, a.command[1:])
    shell = Shell(state, interactive=sys.stdin.isatty(), output=a.output)
    try:
        if a.file:
            if a.command:
                print("vhsm: give either -f FILE or a command, not both", file=sys.stderr)
                return USAGE
            try:
                with open(a.file) as f:
                    lines = join_continuations(f.readlines())
            except OSError as e:
                print(f"vhsm: cannot read {a.file}: {e.strerror}", file=sys.stderr)
                return USAGE
            return shell.run_script(lines, a.file)
        for who in a.login:
            name, sep, password = who.partition(":")
            argv = ["login", "user", "-u", name] + (["-p", password] if sep else [])
            status = shell.execute(argv)
            if status:
                return status
        if a.command:
            return shell.execute(a.command)
        return shell.repl(sys.stdin)
    finally:
        shell.close()


if __name__ == "__main__":
    sys.exit(main())
