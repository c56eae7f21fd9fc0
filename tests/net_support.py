"""Helpers for the network tests: a configured state, Futurex-PKI client identities, `vhsm serve`
processes, network fxpkcs11.cfg files, raw TLS connections and child processes that talk in
JSON lines.

Every wait here is bounded in time (and loops in count); servers are real processes on
127.0.0.1 with real TLS, on ports found by binding to port 0.
"""
from __future__ import annotations

import datetime
import json
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from support import LIB, PIN, ROOT, child_env, make_state  # noqa: E402

VHSM = os.path.join(ROOT, ".venv", "bin", "vhsm")
PYTHON = sys.executable
DEFAULT_ADMINS = (("Admin1", "safest"), ("Admin2", "safest"))
PORT = "Excrypt Port"


# ------------------------------------------------------------------ small things

def free_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_until(predicate, timeout: float, interval: float = 0.05, what: str = "condition"):
    """predicate() until it is truthy, at most `timeout` seconds; returns its value or raises."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / interval) + 2):
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def run(argv: list[str], *, cwd: str | None = None, timeout: float = 120, check: bool = True,
        stdin: str | None = None) -> subprocess.CompletedProcess:
    p = subprocess.run(argv, cwd=cwd, input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


def vhsm(state: str, *argv: str, cwd: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    return run([VHSM, "--state", state, *argv], cwd=cwd or ROOT, check=check)


def vhsm_script(state: str, folder: str, body: str, *, name: str = "admin.fxcli", cwd: str | None = None,
                admins=DEFAULT_ADMINS, check: bool = True) -> subprocess.CompletedProcess:
    """`vhsm -f` a script: both administrators log in, then `body`."""
    path = os.path.join(folder, name)
    logins = "".join(f"login user -u {u} -p {p}\n" for u, p in admins)
    with open(path, "w") as f:
        f.write(logins + textwrap.dedent(body))
    return vhsm(state, "-f", path, cwd=cwd or folder, check=check)


def openssl(*argv: str, cwd: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["openssl", *argv], cwd=cwd, check=check)


# ------------------------------------------------------------------ state and client identities

def make_net_state(path: str, **kw):
    """support.make_state: FTK, partition App (0..999), identity crypto1 / PIN; factory admins."""
    return make_state(path, **kw)


@dataclass
class ClientIdentity:
    """A client key (PKCS #1, clear PEM), its certificate and the CA that checks the server."""
    dir: str
    ca: str
    cert: str
    key: str
    name: str = "client"

    def pkcs8(self, password: str) -> str:
        """The key as an encrypted PKCS #8 PEM."""
        out = os.path.join(self.dir, f"{self.name}.p8.pem")
        openssl("pkcs8", "-topk8", "-in", self.key, "-out", out, "-v2", "aes-256-cbc",
                "-passout", f"pass:{password}", cwd=self.dir)
        return out

    def pkcs12(self, password: str, *, with_ca: bool = True) -> str:
        """Key, certificate (and the CA) in a PKCS #12 file."""
        out = os.path.join(self.dir, f"{self.name}.p12")
        argv = ["pkcs12", "-export", "-inkey", self.key, "-in", self.cert, "-out", out,
                "-passout", f"pass:{password}"]
        if with_ca:
            argv += ["-certfile", self.ca]
        openssl(*argv, cwd=self.dir)
        return out


def client_key_and_csr(folder: str, name: str, cn: str | None = None) -> tuple[str, str]:
    """openssl genrsa (PKCS #1 clear PEM) and openssl req."""
    key = os.path.join(folder, f"{name}.key")
    csr = os.path.join(folder, f"{name}.csr")
    openssl("genrsa", "-traditional", "-out", key, "2048", cwd=folder)
    openssl("req", "-new", "-key", key, "-out", csr, "-subj", f"/O=Example/CN={cn or name}", cwd=folder)
    return key, csr


def make_client_identity(state: str, folder: str, name: str = "client", *, admins=DEFAULT_ADMINS,
                         days: int | None = None) -> ClientIdentity:
    """A client key made with OpenSSL and its certificate signed by the device's Futurex CA
    (`tls-ports client-cert`), plus that CA (`tls-ports export`)."""
    os.makedirs(folder, exist_ok=True)
    key, csr = client_key_and_csr(folder, name)
    ca = os.path.join(folder, "ca.pem")
    cert = os.path.join(folder, f"{name}.pem")
    extra = f" --days {days}" if days else ""
    vhsm_script(state, folder, f"""
        tls-ports export -p "{PORT}" --ca-out {ca}
        tls-ports client-cert -p "{PORT}" --csr {csr} --out {cert}{extra}
    """, name=f"pki-{name}.fxcli", admins=admins)
    return ClientIdentity(folder, ca, cert, key, name)


@dataclass
class OtherCA:
    """A CA made with `cryptography`, unrelated to any device."""
    dir: str
    key: object
    cert: object
    path: str

    def issue(self, name: str, *, not_before: datetime.datetime | None = None,
              not_after: datetime.datetime | None = None, client: bool = True) -> tuple[str, str]:
        """(certificate, PKCS #1 key) files for a new RSA key signed by this CA."""
        return issue_cert(self.dir, name, self.key, self.cert.subject, not_before=not_before, not_after=not_after,
                          client=client)


def issue_cert(folder: str, name: str, ca_key, ca_subject, *, not_before: datetime.datetime | None = None,
               not_after: datetime.datetime | None = None, client: bool = True) -> tuple[str, str]:
    """(certificate, PKCS #1 key) files in `folder` for a new RSA key signed by the CA key
    given; valid from a day ago for 30 days unless the dates say otherwise."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = rsa.generate_private_key(65537, 2048)
    now = datetime.datetime.now(datetime.timezone.utc)
    nb = not_before or now - datetime.timedelta(days=1)
    na = not_after or now + datetime.timedelta(days=30)
    eku = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(nb).not_valid_after(na)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    cert_path = os.path.join(folder, f"{name}.pem")
    key_path = os.path.join(folder, f"{name}.key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                  serialization.NoEncryption()))
    return cert_path, key_path


def make_test_ca(folder: str, name: str = "Test CA") -> OtherCA:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    os.makedirs(folder, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=3650)).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    path = os.path.join(folder, "test-ca.pem")
    with open(path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    return OtherCA(folder, key, cert, path)


# ------------------------------------------------------------------ vhsm serve

class ServerProcess:
    """`vhsm serve` in the foreground as a child process (or detached, with a pid file)."""

    def __init__(self, state: str, folder: str, *, name: str = "server", port: int | None = None,
                 admin_port: int | None = None, args: tuple[str, ...] = ()) -> None:
        self.state, self.folder, self.name = state, folder, name
        self.port = port or free_port()
        self.admin_port = admin_port or free_port()
        self.args = list(args)
        self.log = os.path.join(folder, f"{name}.log")
        self.stderr_path = os.path.join(folder, f"{name}.stderr")
        self.proc: subprocess.Popen | None = None
        self.detached_pid: int | None = None
        self.pid_file: str | None = None
        self._log_offset = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        return [VHSM, "--state", self.state, "serve", "--host", "127.0.0.1", "--port", str(self.port),
                "--admin-port", str(self.admin_port), "--log-file", self.log, *self.args]

    def start(self, timeout: float = 30) -> "ServerProcess":
        self._log_offset = len(read_text(self.log))
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         cwd=self.folder)
        self.wait_ready(timeout)
        return self

    def start_detached(self, timeout: float = 30) -> int:
        """--detach --pid-file: the command returns at once; the daemon writes the pid file."""
        self._log_offset = len(read_text(self.log))
        self.pid_file = os.path.join(self.folder, f"{self.name}.pid")
        with open(self.stderr_path, "ab") as err:
            p = subprocess.run(self.argv() + ["--detach", "--pid-file", self.pid_file], stdin=subprocess.DEVNULL,
                               stdout=err, stderr=err, cwd=self.folder, timeout=timeout)
        assert p.returncode == 0, read_text(self.stderr_path)
        text = wait_until(lambda: read_text(self.pid_file).strip(), timeout, what=f"pid file {self.pid_file}")
        self.detached_pid = int(text)
        self.wait_ready(timeout)
        return self.detached_pid

    @property
    def pid(self) -> int | None:
        return self.detached_pid if self.detached_pid is not None else (self.proc.pid if self.proc else None)

    def new_log(self) -> str:
        """The log since the last start."""
        return read_text(self.log)[self._log_offset:]

    def log_text(self) -> str:
        return read_text(self.log)

    def alive(self) -> bool:
        if self.proc is not None:
            return self.proc.poll() is None
        if self.detached_pid is not None:
            return pid_alive(self.detached_pid)
        return False

    def wait_ready(self, timeout: float = 30) -> None:
        """Until the log says it serves on our port (written after both ports listen)."""
        marker = f"on 127.0.0.1:{self.port} "

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"vhsm serve exited with {self.proc.returncode}:\n{self.new_log()}\n"
                                     f"{read_text(self.stderr_path)}")
            return marker in self.new_log()
        wait_until(ready, timeout, what=f"vhsm serve on port {self.port}")
        # and the port accepts (one plain TCP connection, closed at once)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5):
            pass

    def signal(self, sig: int) -> None:
        pid = self.pid
        if pid is not None and self.alive():
            os.kill(pid, sig)

    def wait(self, timeout: float) -> int | None:
        """The exit status (None for a detached server, which is not our child)."""
        if self.proc is not None:
            return self.proc.wait(timeout)
        wait_until(lambda: not self.alive(), timeout, what=f"pid {self.pid} to exit")
        return None

    def pause(self, timeout: float = 10) -> None:
        """SIGSTOP, then wait until every thread of the server is stopped."""
        pid = self.pid
        self.signal(signal.SIGSTOP)

        def stopped() -> bool:
            try:
                tasks = os.listdir(f"/proc/{pid}/task")
                return all(read_text(f"/proc/{pid}/task/{t}/stat").rsplit(")", 1)[1].split()[0] in ("T", "t")
                           for t in tasks)
            except (OSError, IndexError):
                return False
        wait_until(stopped, timeout, interval=0.02, what=f"pid {pid} to stop")

    def kill9(self) -> None:
        self.signal(signal.SIGKILL)
        self.wait(15)

    def stop(self, timeout: float = 20) -> int | None:
        """SIGCONT (in case it was stopped), SIGTERM, then SIGKILL if it does not exit."""
        if not self.alive():
            return self.proc.returncode if self.proc is not None else None
        try:
            self.signal(signal.SIGCONT)
            self.signal(signal.SIGTERM)
            return self.wait(timeout)
        except (AssertionError, subprocess.TimeoutExpired):
            self.signal(signal.SIGKILL)
            return self.wait(15)


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie nobody reaped counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# ------------------------------------------------------------------ fxpkcs11.cfg for the network

def hsm_block(addresses, *, slot: int = 0, label: str = "Futurex", identity: str | None = "crypto1",
              auto_login: str | None = None, prod_port: int | None = None, tls_enabled: bool | None = True,
              anonymous: bool | None = None, ca=(), cert: str | None = None, key: str | None = None,
              key_pass: str | None = None, load_balance: bool | None = None, connect_timeout: float | None = None,
              reply_timeout: float | None = None, extra: str = "") -> str:
    """One <HSM> block; None leaves a tag out."""
    yn = {True: "YES", False: "NO"}
    if isinstance(addresses, str):
        addresses = [addresses]
    lines = ["<HSM>", f"  <SLOT> {slot} </SLOT>", f"  <LABEL> {label} </LABEL>"]
    if identity:
        lines.append(f"  <CRYPTO-OPR> {identity} </CRYPTO-OPR>")
    if auto_login:
        lines.append(f"  <CRYPTO-OPR-PASS> {auto_login} </CRYPTO-OPR-PASS>")
    lines += [f"  <ADDRESS> {a} </ADDRESS>" for a in addresses]
    tags = [("PROD-PORT", prod_port), ("PROD-TLS-ENABLED", yn.get(tls_enabled)),
            ("PROD-TLS-ANONYMOUS", yn.get(anonymous))]
    tags += [("PROD-TLS-CA", c) for c in ([ca] if isinstance(ca, str) else ca)]
    tags += [("PROD-TLS-CERT", cert), ("PROD-TLS-KEY", key), ("PROD-TLS-KEY-PASS", key_pass),
             ("FX-LOAD-BALANCE", yn.get(load_balance)), ("CONNECT-TIMEOUT", connect_timeout),
             ("REPLY-TIMEOUT", reply_timeout)]
    lines += [f"  <{t}> {v} </{t}>" for t, v in tags if v is not None]
    if extra:
        lines.append(textwrap.indent(textwrap.dedent(extra).strip(), "  "))
    lines.append("</HSM>")
    return "\n".join(lines)


def write_net_config(path: str, blocks, *, log_file: str | None = None, log_mode: str = "INFO") -> str:
    """fxpkcs11.cfg with the given <HSM> block(s) and the log next to it (or `log_file`)."""
    if isinstance(blocks, str):
        blocks = [blocks]
    log_file = log_file or os.path.join(os.path.dirname(path), os.path.basename(path) + ".log")
    with open(path, "w") as f:
        f.write("\n".join(blocks) + f"\n<LOG-MODE> {log_mode} </LOG-MODE>\n<LOG-FILE> {log_file} </LOG-FILE>\n")
    return path


def config_log(cfg: str) -> str:
    """The log file write_net_config chose for `cfg` (unless it was given one)."""
    return cfg + ".log"


def identity_config(path: str, servers, ident: ClientIdentity, **kw) -> str:
    """Mutual TLS with `ident` (PKCS #1 key + certificate + CA) to one or more servers."""
    if isinstance(servers, ServerProcess):
        servers = [servers]
    block = hsm_block([s.address for s in servers], ca=kw.pop("ca", [ident.ca]), cert=kw.pop("cert", ident.cert),
                      key=kw.pop("key", ident.key), **kw)
    return write_net_config(path, block)


# ------------------------------------------------------------------ raw TLS connections

def tls_context(ident: ClientIdentity | None = None, *, ca: str | None = None, cert: str | None = None,
                key: str | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ca = ca or (ident.ca if ident else None)
    if ca:
        ctx.load_verify_locations(ca)
    else:
        ctx.verify_mode = ssl.CERT_NONE
    cert, key = cert or (ident.cert if ident else None), key or (ident.key if ident else None)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


class RawTls:
    """A TLS connection that sends whatever bytes it is given and reads frames back."""

    def __init__(self, port: int, ident: ClientIdentity | None = None, *, ctx: ssl.SSLContext | None = None,
                 timeout: float = 15) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.local_port = raw.getsockname()[1]
        self.sock = (ctx or tls_context(ident)).wrap_socket(raw)
        self.sock.settimeout(timeout)
        self.buf = b""

    @property
    def peer(self) -> str:
        """How the server's log names this connection."""
        return f"127.0.0.1:{self.local_port}"

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def reply(self, timeout: float = 15) -> str | None:
        """The next frame, or None when the server closed the connection first."""
        deadline = time.monotonic() + timeout
        for _ in range(10000):
            end = self.buf.find(b"]")
            if end >= 0:
                frame, self.buf = self.buf[:end + 1], self.buf[end + 1:]
                return frame.decode("ascii", "replace").strip()
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no reply within {timeout:g} s (have {self.buf[:80]!r})")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except (ssl.SSLError, ConnectionError):
                return None
            if not chunk:
                return None
            self.buf += chunk
        raise AssertionError("too many reads")

    def call(self, frame: str, timeout: float = 15) -> str | None:
        self.send(frame)
        return self.reply(timeout)

    def closed_by_server(self, timeout: float = 10) -> bool:
        """True when the server closes the connection (EOF or reset) within `timeout`."""
        deadline = time.monotonic() + timeout
        for _ in range(10000):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ssl.SSLError, ConnectionError, OSError):
                return True
            if not chunk:
                return True
            self.buf += chunk
        return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def fields(frame: str) -> dict[str, str]:
    """`[AOECHO;ANY;BC7.2;]` -> {"AO": "ECHO", "AN": "Y", "BC": "7.2"}."""
    inner = frame.strip()[1:-1]
    return {f[:2]: f[2:] for f in inner.split(";") if f}


# ------------------------------------------------------------------ PKCS #11 children

PRELUDE = textwrap.dedent(f"""
    import json, os, sys, time
    sys.path.insert(0, {ROOT!r})
    sys.path.insert(0, {HERE!r})
    import pkcs11
    from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
    LIB = {LIB!r}
    PIN = {PIN!r}
    def out(**kw):
        print(json.dumps(kw), flush=True)
    def step(name, **kw):
        print(json.dumps(dict(kw, step=name)), flush=True)
    def command():
        line = sys.stdin.readline()
        if not line:
            sys.exit(3)
        return line.strip()
    def errname(e):
        return type(e).__name__
""")


class Child:
    """A python-pkcs11 program in its own process, driven step by step: it prints JSON lines
    with "step" and reads commands (lines) from stdin."""

    def __init__(self, cfg: str, code: str, **extra_env: str) -> None:
        self.proc = subprocess.Popen([PYTHON, "-c", PRELUDE + textwrap.dedent(code)], cwd="/",
                                     env=child_env(cfg, **extra_env), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.lines: list[dict] = []

    def expect(self, name: str, timeout: float = 60) -> dict:
        """The next step line called `name` (earlier lines are kept in self.lines)."""
        deadline = time.monotonic() + timeout
        for _ in range(100000):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([self.proc.stdout], [], [], min(left, 1.0))
            if not ready:
                if self.proc.poll() is not None:
                    break
                continue
            line = self.proc.stdout.readline()
            if not line:
                break
            if not line.startswith("{"):
                continue
            msg = json.loads(line)
            self.lines.append(msg)
            if msg.get("step") == name:
                return msg
        self.kill()
        raise AssertionError(f"child gave no step {name!r} within {timeout:g} s (exit {self.proc.poll()}); "
                             f"lines {self.lines}\nstderr:\n{self.stderr()}")

    def send(self, line: str = "go") -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait(self, timeout: float = 60) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"child did not exit within {timeout:g} s; stderr:\n{self.stderr()}")

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return "(still running)"
        try:
            return self.proc.stderr.read()
        except (OSError, ValueError):
            return ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass

    def close(self) -> None:
        self.kill()
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except (OSError, ValueError):
                pass


# What a child can import: raw CKRs for a list of configurations, each in its own
# C_Initialize .. C_Finalize, so one process tries many TLS settings.
def probe(configs: list[str], *, login: bool = True) -> list[dict]:
    import ctypes

    dll = ctypes.CDLL(LIB)
    ul = ctypes.c_ulong
    results = []
    for cfg in configs:
        os.environ["FXPKCS11_CFG"] = cfg
        r: dict = {"cfg": cfg, "init": dll.C_Initialize(None)}
        h = ul()
        r["open"] = dll.C_OpenSession(ul(0), ul(0x6), None, None, ctypes.byref(h))
        if r["open"] == 0:
            if login:
                r["login"] = dll.C_Login(h, ul(1), PIN.encode(), ul(len(PIN)))
            buf = ctypes.create_string_buffer(16)
            r["random"] = dll.C_GenerateRandom(h, buf, ul(16))
            r["close"] = dll.C_CloseSession(h)
        r["final"] = dll.C_Finalize(None)
        results.append(r)
    return results

