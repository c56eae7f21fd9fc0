"""Reader for ``fxpkcs11.cfg``, the FXPKCS11 configuration file.

Where the file is found (:func:`find_config_path`)
    1. the file named by the environment variable ``FXPKCS11_CFG`` (even if it
       is missing: loading then fails with an error naming it);
    2. ``/etc/fxpkcs11.cfg`` if it exists;
    3. the shipped default, :data:`DEFAULT_CONFIG`.

Format rules
    * One item per line. A line is blank, a comment, a block marker
      (``<HSM>``, ``</HSM>``) or a setting ``<TAG> value </TAG>``.
    * ``#`` starts a comment when it is the first non-blank character of a
      line (so ``#<CRYPTO-OPR-PASS> x </CRYPTO-OPR-PASS>`` is a comment) or
      when it follows a closing tag or a block marker. Between the opening and
      the closing tag, ``#`` is part of the value (passwords may contain it).
    * Blanks around a value are stripped. Tag names are case-insensitive.
      An empty value (``<TAG></TAG>``) counts as if the tag were absent.
    * Booleans are ``YES``/``NO``; ``TRUE``/``FALSE`` and ``1``/``0`` are
      accepted too (any case). Anything else is an error.
    * ``<HSM>`` ... ``</HSM>`` blocks, each on lines of their own, describe one
      PKCS #11 slot each. ``<SLOT>`` defaults to the block's index (0, 1, ...);
      two blocks may not use the same slot. A file without any ``<HSM>``
      block describes one slot, built from its top-level settings.
    * A per-slot tag written outside every block is a default for every block;
      a block's own value wins. For repeatable tags (``<ADDRESS>``,
      ``<PROD-TLS-CA>``) a block that has any replaces the whole default list.
    * ``<LOG-FILE>`` and ``<LOG-MODE>`` are global. Written inside a block they
      still apply globally, with a warning.
    * Inside one block (or at top level) a tag may appear once, except the
      repeatable ``<ADDRESS>`` and ``<PROD-TLS-CA>`` (order kept).
      ``<ADDRESS>`` also takes several addresses separated by commas or blanks.
      An address is ``host``, ``host:port``, ``[ipv6]`` or ``[ipv6]:port``
      (a bare IPv6 literal without a port is also understood). Without a port,
      ``<PROD-PORT>`` (default 9100) applies. No address at all selects the
      embedded virtual HSM.
    * ``<LABEL>`` holds at most 32 bytes of UTF-8 (the token label field).
    * ``~`` and ``$VAR``/``${VAR}`` are expanded in path tags (``<VHSM-STATE>``,
      ``<PROD-TLS-CA>``, ``<PROD-TLS-CERT>``, ``<PROD-TLS-KEY>``,
      ``<LOG-FILE>``); unknown variables are left as written.
    * The whole file may be wrapped in ``<CONFIG>`` ... ``</CONFIG>`` or
      ``<FXPKCS11>`` ... ``</FXPKCS11>``.
    * Unknown tags are ignored with a warning (``Config.warnings``), never an
      error. An unknown tag alone on its line opens an unknown section, skipped
      up to its closing tag.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, NamedTuple

__all__ = [
    "ConfigError", "HsmConfig", "Config", "TagSpec", "TAGS", "DEFAULT_CONFIG",
    "SYSTEM_CONFIG", "ENV_CONFIG", "find_config_path", "parse_config",
    "load_config", "parse_address", "default_vhsm_state", "expand_path",
]

ENV_CONFIG = "FXPKCS11_CFG"
SYSTEM_CONFIG = "/etc/fxpkcs11.cfg"
DEFAULT_PORT = 9100
LABEL_MAX = 32
LOG_MODES = ("NONE", "ERROR", "WARN", "INFO", "DEBUG", "TRACE")
_LOG_ALIASES = {"OFF": "NONE", "WARNING": "WARN"}
_BOOLS = {"YES": True, "TRUE": True, "1": True, "NO": False, "FALSE": False, "0": False}
_BLOCK = "HSM"
_WRAPPERS = ("CONFIG", "FXPKCS11")


def _find_default_config() -> str:
    here = Path(__file__).resolve().parent
    in_repo = here.parent / "config" / "fxpkcs11.cfg"
    return str(in_repo if in_repo.exists() else here / "data" / "fxpkcs11.cfg")


DEFAULT_CONFIG: str = _find_default_config()


class ConfigError(Exception):
    """A configuration file that cannot be read or understood."""

    def __init__(self, path: str, line: int | None, tag: str | None, problem: str) -> None:
        super().__init__(path, line, tag, problem)
        self.path = path
        self.line = line
        self.tag = tag
        self.problem = problem

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}:{self.line}"
        parts = [where] + ([f"<{self.tag}>"] if self.tag is not None else []) + [self.problem]
        return ": ".join(parts)


# --- environment helpers ------------------------------------------------------

def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def _home(env: Mapping[str, str]) -> str:
    return env.get("HOME") or os.path.expanduser("~")


def default_vhsm_state(environ: Mapping[str, str] | None = None) -> str:
    """``$XDG_DATA_HOME/fxvhsm``, or ``~/.local/share/fxvhsm`` when it is unset."""
    env = _env(environ)
    base = env.get("XDG_DATA_HOME", "")
    if not os.path.isabs(base):  # unset, empty or relative: ignored, as XDG says
        base = os.path.join(_home(env), ".local", "share")
    return os.path.join(base, "fxvhsm")


_VAR = re.compile(r"\$(\w+|\{[^}]*\})")


def expand_path(value: str, environ: Mapping[str, str] | None = None) -> str:
    """Expand ``$VAR``, ``${VAR}`` (unknown ones stay as written) and a leading ``~``."""
    env = _env(environ)
    value = _VAR.sub(lambda m: env.get(m.group(1).strip("{}"), m.group(0)), value)
    if value == "~" or value.startswith("~/"):
        return _home(env) + value[1:]
    return os.path.expanduser(value) if value.startswith("~") else value


def _is_number(text: str) -> bool:
    return re.fullmatch(r"[0-9]+", text) is not None


def _port(text: str) -> int:
    if not _is_number(text) or not 1 <= int(text) <= 65535:
        raise ValueError(f"{text!r} is not a port number (1..65535)")
    return int(text)


def parse_address(address: str, default_port: int = DEFAULT_PORT) -> tuple[str, int]:
    """Split ``host``, ``host:port``, ``[v6]``, ``[v6]:port`` or a bare IPv6 literal."""
    port_text: str | None = None
    if address.startswith("["):
        end = address.find("]")
        if end < 0:
            raise ValueError(f"address {address!r}: missing ']'")
        host, rest = address[1:end], address[end + 1:]
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"address {address!r}: unexpected text after ']'")
            port_text = rest[1:]
    elif address.count(":") == 1:
        host, port_text = address.split(":")
    else:  # a name, an IPv4 address, or an IPv6 literal without brackets or port
        host = address
    if not host:
        raise ValueError(f"address {address!r}: empty host")
    port = default_port if port_text is None else _port(port_text)
    return host, port


# --- the data -----------------------------------------------------------------

@dataclass
class HsmConfig:
    """One ``<HSM>`` block: one PKCS #11 slot and the HSM behind it."""

    slot: int
    label: str = "Futurex"
    crypto_opr: str | None = None
    crypto_opr_pass: str | None = field(default=None, repr=False)
    so_opr: str | None = None  # the partition's security officer identity (CKU_SO)
    addresses: list[str] = field(default_factory=list)
    prod_port: int = DEFAULT_PORT
    prod_enabled: bool = True
    prod_tls_enabled: bool = True
    prod_tls_anonymous: bool = False
    prod_tls_ca: list[str] = field(default_factory=list)
    prod_tls_cert: str | None = None
    prod_tls_key: str | None = None
    prod_tls_key_pass: str | None = field(default=None, repr=False)
    fx_load_balance: bool = False
    keygroup_name: str | None = None
    vhsm_state: str = field(default_factory=default_vhsm_state)
    connect_timeout: float = 5.0
    reply_timeout: float = 30.0
    line: int = 0  # line of the <HSM> marker; 0 when the file has no block

    @property
    def embedded(self) -> bool:
        """True when no address is configured: the embedded virtual HSM serves the slot."""
        return not self.addresses

    def endpoints(self) -> list[tuple[str, int]]:
        """``(host, port)`` per address; the port comes from the address or ``prod_port``."""
        return [parse_address(a, self.prod_port) for a in self.addresses]


@dataclass
class Config:
    """The whole file: its slots, the global logging settings and the warnings."""

    path: str
    hsms: list[HsmConfig]
    log_file: str | None = None
    log_mode: str = "ERROR"
    warnings: list[str] = field(default_factory=list)

    def hsm_for_slot(self, slot: int) -> HsmConfig | None:
        return next((h for h in self.hsms if h.slot == slot), None)


# --- the tag table ------------------------------------------------------------

class TagSpec(NamedTuple):
    field: str
    kind: str               # key of _CONVERTERS
    repeatable: bool = False
    scope: str = "hsm"      # "hsm": per slot (top level = default); "global": Config


TAGS: dict[str, TagSpec] = {
    "SLOT": TagSpec("slot", "slot"),
    "LABEL": TagSpec("label", "label"),
    "CRYPTO-OPR": TagSpec("crypto_opr", "text"),
    "CRYPTO-OPR-PASS": TagSpec("crypto_opr_pass", "text"),
    "SO-OPR": TagSpec("so_opr", "text"),
    "ADDRESS": TagSpec("addresses", "address", repeatable=True),
    "PROD-PORT": TagSpec("prod_port", "port"),
    "PROD-ENABLED": TagSpec("prod_enabled", "bool"),
    "PROD-TLS-ENABLED": TagSpec("prod_tls_enabled", "bool"),
    "PROD-TLS-ANONYMOUS": TagSpec("prod_tls_anonymous", "bool"),
    "PROD-TLS-CA": TagSpec("prod_tls_ca", "path", repeatable=True),
    "PROD-TLS-CERT": TagSpec("prod_tls_cert", "path"),
    "PROD-TLS-KEY": TagSpec("prod_tls_key", "path"),
    "PROD-TLS-KEY-PASS": TagSpec("prod_tls_key_pass", "text"),
    "FX-LOAD-BALANCE": TagSpec("fx_load_balance", "bool"),
    "KEYGROUP-NAME": TagSpec("keygroup_name", "text"),
    "VHSM-STATE": TagSpec("vhsm_state", "path"),
    "CONNECT-TIMEOUT": TagSpec("connect_timeout", "timeout"),
    "REPLY-TIMEOUT": TagSpec("reply_timeout", "timeout"),
    "LOG-FILE": TagSpec("log_file", "path", scope="global"),
    "LOG-MODE": TagSpec("log_mode", "logmode", scope="global"),
}


def _to_slot(value: str) -> int:
    if not _is_number(value) or int(value) > 0xFFFFFFFF:
        raise ValueError(f"{value!r} is not a slot number (a whole number from 0)")
    return int(value)


def _to_label(value: str) -> str:
    size = len(value.encode("utf-8"))
    if size > LABEL_MAX:
        raise ValueError(f"label {value!r} is {size} bytes long; a token label holds at most {LABEL_MAX}")
    return value


def _to_bool(value: str) -> bool:
    try:
        return _BOOLS[value.upper()]
    except KeyError:
        raise ValueError(f"{value!r} is not a boolean (use YES or NO)") from None


def _to_timeout(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a timeout in seconds") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{value!r} is not a timeout in seconds (must be more than 0)")
    return seconds


def _to_logmode(value: str) -> str:
    mode = _LOG_ALIASES.get(value.upper(), value.upper())
    if mode not in LOG_MODES:
        raise ValueError(f"{value!r} is not a log mode (one of {', '.join(LOG_MODES)}; OFF = NONE)")
    return mode


def _to_addresses(value: str) -> list[str]:
    entries = [a for a in re.split(r"[,\s]+", value) if a]
    for entry in entries:
        parse_address(entry)  # validation only; the port is resolved later
    return entries


_CONVERTERS: dict[str, Callable[[str, Mapping[str, str]], Any]] = {
    "slot": lambda v, env: _to_slot(v),
    "port": lambda v, env: _port(v),
    "label": lambda v, env: _to_label(v),
    "text": lambda v, env: v,
    "path": expand_path,
    "bool": lambda v, env: _to_bool(v),
    "timeout": lambda v, env: _to_timeout(v),
    "logmode": lambda v, env: _to_logmode(v),
    "address": lambda v, env: _to_addresses(v),
}


# --- the parser ---------------------------------------------------------------

_OPENING = re.compile(r"<\s*(/?)\s*([A-Za-z][\w.-]*)\s*>")
_CLOSING = re.compile(r"(.*?)<\s*/\s*([A-Za-z][\w.-]*)\s*>\s*(?:#.*)?$")


def _blank_or_comment(text: str) -> bool:
    text = text.strip()
    return not text or text.startswith("#")


@dataclass
class _Scope:
    """Settings of the top level or of one <HSM> block."""

    line: int
    values: dict[str, Any] = field(default_factory=dict)
    seen: dict[str, int] = field(default_factory=dict)  # tag -> first line


class _Parser:
    def __init__(self, path: str, env: Mapping[str, str]) -> None:
        self.path, self.env = path, env
        self.top = _Scope(0)
        self.blocks: list[_Scope] = []
        self.block: _Scope | None = None
        self.wrapper: tuple[str, int] | None = None
        self.skipping: tuple[str, int] | None = None  # an unknown section
        self.warnings: list[str] = []

    def error(self, line: int | None, tag: str | None, problem: str) -> ConfigError:
        return ConfigError(self.path, line, tag, problem)

    def warn(self, line: int, message: str) -> None:
        self.warnings.append(f"{self.path}:{line}: {message}")

    def feed(self, lineno: int, raw: str) -> None:
        text = raw.strip()
        if self.skipping:
            m = _OPENING.match(text)
            if m and m.group(1) and m.group(2).upper() == self.skipping[0]:
                self.skipping = None
            return
        if _blank_or_comment(text):
            return
        m = _OPENING.match(text)
        if not m:
            raise self.error(lineno, None, f"expected <TAG> value </TAG>, a comment or a blank line, got {text!r}")
        name, rest = m.group(2).upper(), text[m.end():]
        if m.group(1):
            self.close(lineno, name, rest)
        elif name in TAGS or _CLOSING.match(rest) or not _blank_or_comment(rest):
            self.setting(lineno, name, rest)
        else:
            self.open(lineno, name)

    def open(self, lineno: int, name: str) -> None:
        if name == _BLOCK:
            if self.block:
                raise self.error(lineno, name, f"nested <HSM>: the block opened at line {self.block.line} is not closed")
            self.block = _Scope(lineno)
            self.blocks.append(self.block)
        elif name in _WRAPPERS:
            if self.block or self.wrapper:
                raise self.error(lineno, name, f"<{name}> must wrap the whole file")
            self.wrapper = (name, lineno)
        else:
            self.warn(lineno, f"unknown section <{name}> ignored")
            self.skipping = (name, lineno)

    def close(self, lineno: int, name: str, rest: str) -> None:
        if not _blank_or_comment(rest):
            raise self.error(lineno, name, f"unexpected text after </{name}>: {rest.strip()!r}")
        if name == _BLOCK:
            if not self.block:
                raise self.error(lineno, name, "</HSM> without an open <HSM> block")
            self.block = None
        elif name in _WRAPPERS:
            if self.block:
                raise self.error(lineno, name, f"</{name}> inside the <HSM> block opened at line {self.block.line}")
            if not self.wrapper or self.wrapper[0] != name:
                raise self.error(lineno, name, f"</{name}> without an opening <{name}>")
            self.wrapper = None
        elif name in TAGS:
            raise self.error(lineno, name, f"</{name}> without an opening <{name}> on the same line")
        else:
            self.warn(lineno, f"unknown tag </{name}> ignored")

    def setting(self, lineno: int, name: str, rest: str) -> None:
        m = _CLOSING.match(rest)
        if not m:
            if re.search(r"<\s*/", rest):
                raise self.error(lineno, name, f"unexpected text after the closing tag: {rest.strip()!r}")
            raise self.error(lineno, name, f"missing closing tag </{name}>")
        value, closing = m.group(1).strip(), m.group(2).upper()
        if closing != name:
            raise self.error(lineno, name, f"mismatched closing tag </{closing}>, expected </{name}>")
        if name == _BLOCK or name in _WRAPPERS:
            raise self.error(lineno, name, f"<{name}> and </{name}> must be on lines of their own")
        spec = TAGS.get(name)
        if spec is None:
            self.warn(lineno, f"unknown tag <{name}> ignored")
            return
        self.store(lineno, name, spec, value)

    def store(self, lineno: int, name: str, spec: TagSpec, value: str) -> None:
        scope = self.block or self.top
        if spec.scope == "global":
            if self.block:
                self.warn(lineno, f"<{name}> is a global setting; it applies to every slot")
            scope = self.top
        if not spec.repeatable and name in scope.seen:
            raise self.error(lineno, name, f"repeated <{name}> (first given at line {scope.seen[name]})")
        scope.seen.setdefault(name, lineno)
        if not value:
            return
        try:
            converted = _CONVERTERS[spec.kind](value, self.env)
        except ValueError as exc:
            raise self.error(lineno, name, str(exc)) from None
        if spec.repeatable:
            items = converted if isinstance(converted, list) else [converted]
            scope.values.setdefault(spec.field, []).extend(items)
        else:
            scope.values[spec.field] = converted

    def finish(self) -> Config:
        if self.skipping:
            name, line = self.skipping
            raise self.error(line, name, f"unknown section <{name}> is never closed")
        if self.block:
            raise self.error(self.block.line, _BLOCK, "unclosed <HSM> block: no </HSM> before the end of the file")
        if self.wrapper:
            name, line = self.wrapper
            raise self.error(line, name, f"unclosed <{name}>: no </{name}> before the end of the file")
        globals_ = {spec.field for spec in TAGS.values() if spec.scope == "global"}
        defaults = {k: v for k, v in self.top.values.items() if k not in globals_}
        hsms = [self.build(i, block, defaults) for i, block in enumerate(self.blocks or [_Scope(0)])]
        self.check_slots(hsms)
        return Config(
            path=self.path,
            hsms=hsms,
            log_file=self.top.values.get("log_file"),
            log_mode=self.top.values.get("log_mode", "ERROR"),
            warnings=self.warnings,
        )

    def build(self, index: int, block: _Scope, defaults: dict[str, Any]) -> HsmConfig:
        values = {"slot": index, "vhsm_state": default_vhsm_state(self.env), **defaults, **block.values}
        values = {k: list(v) if isinstance(v, list) else v for k, v in values.items()}
        return HsmConfig(line=block.line, **values)

    def check_slots(self, hsms: list[HsmConfig]) -> None:
        used: dict[int, HsmConfig] = {}
        for block, hsm in zip(self.blocks, hsms):
            if hsm.slot in used:
                line = block.seen.get("SLOT") or self.top.seen.get("SLOT") or block.line
                raise self.error(line, "SLOT", f"slot {hsm.slot} is already used by the <HSM> block at line {used[hsm.slot].line}")
            used[hsm.slot] = hsm


# --- the entry points ---------------------------------------------------------

def find_config_path(environ: Mapping[str, str] | None = None, *, system_path: str | None = None) -> str:
    """``$FXPKCS11_CFG`` if set, else the system file if it exists, else :data:`DEFAULT_CONFIG`."""
    env = _env(environ)
    if env.get(ENV_CONFIG):
        return env[ENV_CONFIG]
    system = SYSTEM_CONFIG if system_path is None else system_path
    return system if os.path.exists(system) else DEFAULT_CONFIG


def parse_config(text: str, path: str = "<string>", environ: Mapping[str, str] | None = None) -> Config:
    """Parse the text of a configuration file; ``path`` only names it in messages."""
    parser = _Parser(path, _env(environ))
    for lineno, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        parser.feed(lineno, raw)
    return parser.finish()


def load_config(path: str | os.PathLike[str] | None = None,
                environ: Mapping[str, str] | None = None) -> Config:
    """Read and parse a configuration file (found with :func:`find_config_path` if no path)."""
    env = _env(environ)
    origin = ""
    if path is None:
        path = find_config_path(env)
        if env.get(ENV_CONFIG):
            origin = f" (named by {ENV_CONFIG})"
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8-sig") as f:
            text = f.read()
    except OSError as exc:
        raise ConfigError(path, None, None, f"cannot read: {exc.strerror or exc}{origin}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(path, None, None, f"cannot read: not UTF-8 text (byte {exc.start})") from exc
    return parse_config(text, path, env)
