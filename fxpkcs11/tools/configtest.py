"""configTest: check the configuration the library would read, and the HSM behind each slot.

    configTest [--config FILE] [--password PW]

The file is the one C_Initialize would read ($FXPKCS11_CFG, else /etc/fxpkcs11.cfg, else the
shipped default) unless --config names one. Each step prints one line, `PASS ...`,
`FAIL ... (fix: ...)`, or `SKIP ...` for a step the configuration gives nothing to test
(no <CRYPTO-OPR-PASS>: give --password); detail lines are indented. Exit status 0 when no
step failed, 1 otherwise.

Steps: the file parses (its warnings shown); then per <HSM> block
- network: per address, TCP connect within <CONNECT-TIMEOUT>; the TLS handshake with the
  <PROD-TLS-*> settings (the server's certificate chain with subjects and expiry dates); ECHO
  answers (firmware version); HASH (device serial); the FTK is loaded (PRMD); login as
  <CRYPTO-OPR> (LOGI); and, logged in, that the partition's whitelist holds what the library
  needs for basic use (ECHO, HASH, GPKM, GPKS).
- embedded: the state directory opens, the FTK is loaded, then the same ECHO, HASH, login
  and whitelist steps through the in-process device.
"""
from __future__ import annotations

import argparse
import datetime
import os
import socket
import ssl
import sys
import time
from typing import Any, Callable

from fxpkcs11.config import ConfigError, HsmConfig, find_config_path, load_config
from vhsm.excrypt import Command, Reply, Tag
from vhsm.tlsstream import TlsStream

# The Excrypt commands the library needs for basic use (C_GetTokenInfo, C_FindObjects,
# C_GetAttributeValue); a partition without them cannot even list its keys.
BASIC_COMMANDS = ("ECHO", "HASH", "GPKM", "GPKS")
REFUSED = 0x6  # CKR_FUNCTION_FAILED: the reason a whitelist refusal carries


class Report:
    def __init__(self, out=None) -> None:
        self.out = out or sys.stdout
        self.failures = 0

    def line(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def ok(self, what: str) -> None:
        self.line(f"PASS {what}")

    def fail(self, what: str, fix: str) -> None:
        self.failures += 1
        self.line(f"FAIL {what} (fix: {fix})")

    def skip(self, what: str) -> None:
        self.line(f"SKIP {what}")

    def detail(self, text: str) -> None:
        self.line(f"     {text}")


Call = Callable[[str, dict], Reply]


def _refused(reply: Reply) -> bool:
    return not reply.ok and reply.reason == REFUSED


def _enable(role: str, codes: list[str]) -> str:
    perms = " ".join(f"--add-perm Excrypt:{c}" for c in codes)
    return f'two administrators logged in, `vhsm role modify --name "{role}" {perms}`'


def check_device(report: Report, call: Call, hsm: HsmConfig, where: str, password: str | None,
                 ftk_step: Callable[[], None] | None = None) -> None:
    """ECHO, HASH, the FTK, login and the partition's whitelist, over `call`."""
    reply = call("ECHO", {Tag.ECHO_DATA: "configTest"})
    if reply.ok:
        report.ok(f"{where}: ECHO answers, firmware {reply.fields.get(Tag.FIRMWARE, '?')}")
    else:
        report.fail(f"{where}: ECHO refused: {reply.error_text}",
                    _enable("Transaction Processing", ["ECHO"]) if _refused(reply) else "see the HSM's log")
    reply = call("HASH", {})
    if reply.ok:
        report.ok(f"{where}: device serial (HASH) {reply.fields.get(Tag.SERIAL, '?')}")
    else:
        report.fail(f"{where}: HASH refused: {reply.error_text}",
                    _enable("Transaction Processing", ["HASH"]) if _refused(reply) else "see the HSM's log")
    if ftk_step is not None:
        ftk_step()
    else:
        reply = call("PRMD", {})
        if reply.ok and reply.fields.get(Tag.FTK_KCV):
            report.ok(f"{where}: FTK loaded, KCV {reply.fields[Tag.FTK_KCV]}")
        elif reply.ok:
            report.fail(f"{where}: no FTK loaded: key operations fail with CKR_DEVICE_ERROR",
                        "both administrators log in, then `vhsm majorkey random --ftk` (guide section 6.4)")
        else:
            report.skip(f"{where}: FTK state unknown: PRMD refused before login ({reply.error_text})")

    if not hsm.crypto_opr:
        report.skip(f"{where}: login: no <CRYPTO-OPR> (the PIN is then IDENTITY:PASSWORD)")
        return
    secret = password if password is not None else hsm.crypto_opr_pass
    if not secret:
        report.skip(f"{where}: login as {hsm.crypto_opr}: no <CRYPTO-OPR-PASS> (configTest --password PW tests it)")
        return
    reply = call("LOGI", {Tag.USER: hsm.crypto_opr, Tag.PASSWORD: secret})
    if not reply.ok:
        report.fail(f"{where}: login as {hsm.crypto_opr} failed: {reply.error_text}",
                    "check <CRYPTO-OPR> and its password (<CRYPTO-OPR-PASS> or --password); "
                    "`vhsm identity list` shows the identities")
        return
    role = reply.fields.get(Tag.ROLE, "?")
    report.ok(f"{where}: login as {hsm.crypto_opr} (partition {role})")
    try:
        missing = [code for code in BASIC_COMMANDS if _refused(call(code, {}))]
        if missing:
            report.fail(f"{where}: partition {role} lacks {', '.join(missing)} (the library needs "
                        f"{', '.join(BASIC_COMMANDS)} for basic use)", _enable(role, missing))
        else:
            report.ok(f"{where}: partition {role} whitelists {', '.join(BASIC_COMMANDS)}")
    finally:
        call("LOGO", {})


# ------------------------------------------------------------------ embedded

def check_embedded(report: Report, hsm: HsmConfig, password: str | None) -> None:
    where = f"slot {hsm.slot}"
    state = hsm.vhsm_state
    setup = f"set <VHSM-STATE> to a set-up device, or set one up: `vhsm --state {state} -f examples/vectera-setup.fxcli`"
    if not os.path.isdir(state):
        report.fail(f"{where}: state directory {state} does not exist (the library would start a factory-fresh "
                    "device without FTK or partition)", setup)
        return
    from fxpkcs11.errors import CKRError
    from fxpkcs11.transport import InProcessTransport
    try:
        transport = InProcessTransport(state)
    except (CKRError, OSError) as e:
        report.fail(f"{where}: state directory {state} does not open: {getattr(e, 'text', e)}", setup)
        return
    try:
        report.ok(f"{where}: embedded vHSM state directory {state} opens")

        def ftk() -> None:
            key = transport.device.ftk()
            if key is not None:
                report.ok(f"{where}: FTK loaded, KCV {key.kcv}")
            else:
                report.fail(f"{where}: no FTK loaded: key operations fail with CKR_DEVICE_ERROR",
                            f"both administrators log in, then `vhsm --state {state} majorkey random --ftk` "
                            "(guide section 6.4)")

        check_device(report, lambda code, fields: transport.conn.execute(Command(code, fields)), hsm, where,
                     password, ftk)
    finally:
        transport.close()


# ------------------------------------------------------------------ network

def _name(cert: Any) -> str:
    return cert.subject.rfc4514_string() or "(empty subject)"


def _show_chain(report: Report, sock: TlsStream) -> None:
    from cryptography import x509
    ders = sock.peer_chain()
    now = datetime.datetime.now(datetime.timezone.utc)
    for i, der in enumerate(ders):
        cert = x509.load_der_x509_certificate(der)
        expiry = cert.not_valid_after_utc
        left = (expiry - now).days
        role = "server" if i == 0 else "CA"
        report.detail(f"{role} certificate: {_name(cert)}; issuer {cert.issuer.rfc4514_string()}; "
                      f"expires {expiry:%Y-%m-%d} ({left} days)")


def _presented_issuer(host: str, port: int, timeout: float) -> str | None:
    """What the server presents, fetched without checking it (to say which CA to trust)."""
    from cryptography import x509
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            with ctx.wrap_socket(raw) as s:
                der = s.getpeercert(binary_form=True)
    except (OSError, ssl.SSLError):
        return None
    if not der:
        return None
    cert = x509.load_der_x509_certificate(der)
    return f"the server presents {_name(cert)}, issued by {cert.issuer.rfc4514_string()}"


def _tls_fix(error: str) -> str:
    upper = error.upper()
    if "CERTIFICATE_VERIFY_FAILED" in upper or "CERTIFICATE VERIFY FAILED" in upper:
        return ('set <PROD-TLS-CA> to the CA that issued the HSM\'s certificate, e.g. '
                '`vhsm tls-ports export -p "Excrypt Port" --ca-out ca.pem` (two administrators logged in)')
    if any(k in upper for k in ("UNKNOWN_CA", "CERTIFICATE_REQUIRED", "BAD_CERTIFICATE", "UNKNOWN CA",
                                "CERTIFICATE REQUIRED", "BAD CERTIFICATE", "HANDSHAKE_FAILURE")):
        return ('the HSM refused the client certificate: have <PROD-TLS-KEY>\'s certificate signed by the port\'s CA '
                '(`vhsm tls-ports client-cert -p "Excrypt Port" --csr client.csr --out client.pem`), '
                'or allow server-only TLS (`tls-ports set -p "Excrypt Port" --anon` and <PROD-TLS-ANONYMOUS> YES)')
    return "check that the address is a `vhsm serve` production port and the <PROD-TLS-*> settings"


def check_network(report: Report, hsm: HsmConfig, password: str | None) -> None:
    from fxpkcs11.link import Link, LinkError
    from fxpkcs11.tlsclient import ClientTls, TlsConfigError, client_context

    where = f"slot {hsm.slot}"
    if not hsm.prod_enabled:
        report.fail(f"{where}: <PROD-ENABLED> is NO: the slot has no connection", "set <PROD-ENABLED> YES")
        return
    if not hsm.prod_tls_enabled:
        report.fail(f"{where}: <PROD-TLS-ENABLED> is NO, but the production port requires TLS",
                    "set <PROD-TLS-ENABLED> YES")
        return
    try:
        endpoints = hsm.endpoints()
    except ValueError as e:
        report.fail(f"{where}: bad <ADDRESS>: {e}", "correct <ADDRESS>")
        return
    try:
        ctx = client_context(ClientTls(list(hsm.prod_tls_ca), hsm.prod_tls_cert, hsm.prod_tls_key,
                                       hsm.prod_tls_key_pass, hsm.prod_tls_anonymous))
        mode = "server-only (anonymous client)" if hsm.prod_tls_anonymous else "mutual"
        report.ok(f"{where}: TLS settings load ({mode} authentication)")
    except TlsConfigError as e:
        report.fail(f"{where}: TLS settings: {e}", "correct the <PROD-TLS-*> tags named")
        return
    for host, port in endpoints:
        at = f"{where} {host}:{port}"
        start = time.monotonic()
        try:
            with socket.create_connection((host, port), timeout=hsm.connect_timeout):
                pass
        except OSError as e:
            report.fail(f"{at}: no TCP connection within {hsm.connect_timeout:g} s: {e.strerror or e}",
                        "check <ADDRESS> and <PROD-PORT>, that `vhsm serve` runs there "
                        "(`vhsm --state DIR serve --host ... --port ...`) and that no firewall blocks the port")
            continue
        report.ok(f"{at}: TCP connect ({(time.monotonic() - start) * 1000:.0f} ms)")
        try:
            link = Link(host, port, ctx, connect_timeout=hsm.connect_timeout, reply_timeout=hsm.reply_timeout)
            # with TLS 1.3 the HSM checks the client certificate after the client's handshake
            # ends: a refusal shows on the first command, so the step includes one ECHO
            link.call(Command("ECHO", {Tag.ECHO_DATA: "configTest"}))
        except LinkError as e:
            text = str(e).removeprefix(f"{host}:{port}: ")
            presented = _presented_issuer(host, port, hsm.connect_timeout) if "VERIFY" in text.upper() else None
            report.fail(f"{at}: TLS handshake failed: {text}" + (f"; {presented}" if presented else ""),
                        _tls_fix(text))
            continue
        try:
            report.ok(f"{at}: TLS handshake ({link.sock.version()}, {link.sock.cipher()[0]})")
            _show_chain(report, link.sock)

            def call(code: str, fields: dict) -> Reply:
                return link.call(Command(code, fields))
            try:
                check_device(report, call, hsm, at, password)
            except LinkError as e:
                report.fail(f"{at}: the connection broke: {e}", "see the HSM's log")
        finally:
            link.close()


# ------------------------------------------------------------------ main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="configTest", description="Test fxpkcs11.cfg and the connection to each HSM.")
    ap.add_argument("--config", help="the file to test (default: the one the library reads: $FXPKCS11_CFG, "
                                     "else /etc/fxpkcs11.cfg, else the shipped default)")
    ap.add_argument("--password", help="the <CRYPTO-OPR> password to test login with "
                                       "(default: <CRYPTO-OPR-PASS>)")
    args = ap.parse_args(argv)
    report = Report()
    if args.config:
        path, origin = args.config, "--config"
    else:
        path = find_config_path()
        origin = "named by FXPKCS11_CFG" if os.environ.get("FXPKCS11_CFG") else \
            ("the system file" if path == "/etc/fxpkcs11.cfg" else "the shipped default")
    try:
        config = load_config(path)
    except ConfigError as e:
        where = e.path if e.line is None else f"{e.path}:{e.line}"
        report.fail(f"configuration {path} ({origin}): {e}", f"correct {where}")
        return 1
    report.ok(f"configuration {path} ({origin}) parses: {len(config.hsms)} slot(s), log {config.log_file or 'default'}"
              f" at {config.log_mode}")
    for warning in config.warnings:
        report.detail(f"warning: {warning}")
    for hsm in config.hsms:
        kind = f"network {', '.join(hsm.addresses)}" if not hsm.embedded else f"embedded vHSM {hsm.vhsm_state}"
        report.line(f"Slot {hsm.slot} ({hsm.label}): {kind}")
        try:
            if hsm.embedded:
                check_embedded(report, hsm, args.password)
            else:
                check_network(report, hsm, args.password)
        except Exception as e:  # a step that broke unexpectedly is a failure, never a traceback
            report.fail(f"slot {hsm.slot}: {type(e).__name__}: {e}", "report this; see fxpkcs11.log")
    report.line(f"{'All checks passed' if not report.failures else f'{report.failures} check(s) failed'}.")
    return 0 if not report.failures else 1


if __name__ == "__main__":
    sys.exit(main())
