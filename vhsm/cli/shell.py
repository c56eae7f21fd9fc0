"""The FXCLI-shaped shell: parses a command line, finds the command, runs it.

Commands are declared in vhsm/cli/commands.py; this module knows nothing of any one of
them. A bad command or flag prints the usage (and the nearest valid spelling) and gives
status 2 without touching the device; a refusal by a device rule gives status 1.
"""
from __future__ import annotations

import argparse
import difflib
import getpass
import json
import shlex
import sys
from dataclasses import dataclass
from typing import Any, Callable, TextIO

from vhsm.admin import AdminError, AdminSession

OK, REFUSED, USAGE = 0, 1, 2


class UsageError(Exception):
    def __init__(self, message: str, usage: str = "") -> None:
        super().__init__(message)
        self.usage = usage


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so a bad flag never ends the shell."""

    def __init__(self, prog: str, description: str = "") -> None:
        super().__init__(prog=prog, description=description, add_help=False, allow_abbrev=False,
                         exit_on_error=False)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message, self.format_usage())

    def parse_args(self, args=None, namespace=None):  # type: ignore[override]
        args = list(args or [])
        opts = [a for action in self._actions for a in action.option_strings]
        try:
            ns, extra = self.parse_known_args(args, namespace)
        except (UsageError, argparse.ArgumentError):
            # A misspelt flag usually also leaves a required one missing; argparse then
            # reports only the missing one, so name the misspelling and its fix first.
            unknown = [a for a in args if a.startswith("-") and a.split("=")[0] not in opts]
            if unknown:
                self._unrecognized(unknown, opts)
            raise
        if extra:
            self._unrecognized(extra, opts)
        return ns

    def _unrecognized(self, extra: list[str], opts: list[str]) -> None:
        hints = [m for word in extra for m in difflib.get_close_matches(word.split("=")[0], opts, n=1)]
        hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
        raise UsageError(f"unrecognized arguments: {' '.join(extra)}{hint}", self.format_usage())


def split_line(line: str) -> list[str]:
    """Split a command line as a POSIX shell does: a `#` starts a comment only at the start
    of a word, so a password such as `pa#ss` is kept whole (shlex's comments=True would
    silently cut it to `pa`)."""
    quote: str | None = None
    escaped, word_start = False, True
    for i, ch in enumerate(line):
        if escaped:
            escaped = False
        elif quote:
            if ch == quote:
                quote = None
            elif ch == "\\" and quote == '"':
                escaped = True
        elif ch == "\\":
            escaped, word_start = True, False
        elif ch in "'\"":
            quote, word_start = ch, False
        elif ch.isspace():
            word_start = True
        elif ch == "#" and word_start:
            line = line[:i]
            break
        else:
            word_start = False
    lex = shlex.shlex(line, posix=True)
    lex.whitespace_split = True
    lex.commenters = ""
    return list(lex)


@dataclass
class Command:
    words: tuple[str, ...]
    summary: str
    parser: Parser
    run: Callable[["Shell", argparse.Namespace], int | None]
    needs_device: bool = True

    @property
    def name(self) -> str:
        return " ".join(self.words)


class Shell:
    def __init__(self, state_dir: str, *, out: TextIO | None = None, err: TextIO | None = None,
                 interactive: bool = False, output: str = "text") -> None:
        from vhsm.cli.commands import COMMANDS
        self.state_dir = state_dir
        # Resolved when the shell is made, not when this module is imported, so a caller that
        # redirected sys.stdout/sys.stderr (tests, embedding) gets the output.
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.interactive = interactive
        self.output = output
        self.commands: list[Command] = COMMANDS
        self.session: AdminSession | None = None

    # ------------------------------------------------------------ device
    def connect(self) -> AdminSession:
        if self.session is None:
            from vhsm.device import VirtualHSM
            self.session = AdminSession(VirtualHSM(self.state_dir))
        return self.session

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
            self.session = None

    # ------------------------------------------------------------ io
    def say(self, text: str) -> None:
        print(text, file=self.out)

    def show(self, data: Any, text: Callable[[Any], str]) -> None:
        self.say(json.dumps(data, indent=2, default=str) if self.output == "json" else text(data))

    def ask(self, prompt: str, secret: bool = False) -> str:
        if not self.interactive:
            raise UsageError(f"{prompt.strip(': ')} is needed; give it as an option when not interactive")
        return getpass.getpass(prompt) if secret else input(prompt)

    # ------------------------------------------------------------ dispatch
    def find(self, argv: list[str]) -> tuple[Command, list[str]]:
        best: Command | None = None
        for c in self.commands:
            n = len(c.words)
            if tuple(argv[:n]) == c.words and (best is None or n > len(best.words)):
                best = c
        if best is None:
            raise self._unknown(argv)
        return best, argv[len(best.words):]

    def _unknown(self, argv: list[str]) -> UsageError:
        said = " ".join(argv[:2]) if argv else ""
        names = [c.name for c in self.commands]
        near = difflib.get_close_matches(said, names, n=3) or difflib.get_close_matches(
            argv[0] if argv else "", sorted({c.words[0] for c in self.commands}), n=3)
        hint = f"; did you mean: {', '.join(near)}?" if near else ""
        # The usage shown is that of the nearest command, when the nearest is a whole command.
        usage = next((c.parser.format_usage() for c in self.commands if near and c.name == near[0]), "")
        return UsageError(f"unknown command {said!r}{hint} (`help` lists the commands)", usage)

    def execute(self, argv: list[str]) -> int:
        if not argv:
            return OK
        cmd = None
        try:
            if argv[0] == "help":
                return self.help(argv[1:])
            cmd, rest = self.find(argv)
            rest = self._take_output_option(rest)
            if rest[-1:] == ["help"] or "--help" in rest or "-h" in rest:
                self.say(cmd.parser.format_help())
                return OK
            args = cmd.parser.parse_args(rest)
            if cmd.needs_device:
                self.connect()
            status = cmd.run(self, args)
            return OK if status is None else status
        except UsageError as e:
            print(f"vhsm: {e}", file=self.err)
            if e.usage:
                print(e.usage.rstrip(), file=self.err)
            return USAGE
        except argparse.ArgumentError as e:
            print(f"vhsm: {e}", file=self.err)
            if cmd is not None:
                print(cmd.parser.format_usage().rstrip(), file=self.err)
            return USAGE
        except AdminError as e:
            print(f"vhsm: refused by rule '{e.rule}': {e.text}", file=self.err)
            return REFUSED

    def _take_output_option(self, rest: list[str]) -> list[str]:
        """`--output json` may also follow the command, as in `role list --output json`."""
        for i, word in enumerate(rest):
            value = None
            if word == "--output" and i + 1 < len(rest):
                value, drop = rest[i + 1], 2
            elif word.startswith("--output="):
                value, drop = word.split("=", 1)[1], 1
            if value is not None:
                if value not in ("text", "json"):
                    raise UsageError(f"--output takes text or json, not {value!r}")
                self.output = value
                return rest[:i] + rest[i + drop:]
        return rest

    def execute_line(self, line: str) -> int:
        try:
            argv = split_line(line)
        except ValueError as e:
            print(f"vhsm: cannot parse line: {e}", file=self.err)
            return USAGE
        return self.execute(argv)

    def help(self, words: list[str]) -> int:
        if words:
            cmd, _ = self.find(words)
            self.say(cmd.parser.format_help())
            return OK
        width = max(len(c.name) for c in self.commands)
        for c in self.commands:
            self.say(f"  {c.name.ljust(width)}  {c.summary}")
        self.say("\n`help CMD` or `CMD help` shows a command's options.")
        return OK

    def run_script(self, lines: list[str], source: str) -> int:
        for number, line in enumerate(lines, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            status = self.execute_line(line.rstrip("\\\n"))
            if status != OK:
                print(f"vhsm: {source}:{number}: stopped (status {status})", file=self.err)
                return status
        return OK

    def repl(self, stdin: TextIO) -> int:
        status = OK
        while True:
            if self.interactive:
                try:
                    line = input("vhsm> ")
                except EOFError:
                    self.say("")
                    return status
            else:
                line = stdin.readline()
                if not line:
                    return status
            if line.strip() in ("exit", "quit"):
                return status
            status = self.execute_line(line)
