"""One test (or more) per trap of the embedded provider; each fails if its trap reopens.

1. RTLD_LOCAL C hosts: libpython's symbols must be global before Python starts.
2. A failed embedded init: every entry returns an error, the cause is logged, stdout clean.
3. A C host from any directory without a virtualenv finds the project and its dependencies.
4. A Python host runs the provider in its own interpreter.
5. A Python exception never reaches C: it becomes a CKR and a logged traceback.
6. fork(): the child must call C_Initialize again; the parent is unaffected.
7. Thread safety: eight threads signing at once.

C hosts are tests/c/host.c, compiled here. Python-host tests load the library into this
process through python-pkcs11 with one configuration for the whole test session (the
`inproc` fixture); anything that needs another configuration runs in a subprocess.
"""
from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import uuid
from dataclasses import dataclass

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from integration_fixtures import p11_env, use_config  # noqa: E402,F401
from support import LIB, PIN, ROOT, child_env  # noqa: E402

if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

pkcs11 = pytest.importorskip("pkcs11")
from cryptography.exceptions import InvalidSignature  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa  # noqa: E402
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature  # noqa: E402
from cryptography.hazmat.primitives.serialization import load_der_public_key  # noqa: E402
from pkcs11 import Attribute, KeyType, Mechanism  # noqa: E402
from pkcs11.util.ec import encode_named_curve_parameters  # noqa: E402

HOST_SRC = os.path.join(ROOT, "tests", "c", "host.c")
BUILD = os.path.join(ROOT, "native", "build.py")
MISSING_ENTRY = "fxpkcs11._no_such_module"
LABEL = "Futurex"

CKR_FUNCTION_FAILED = 0x6
CKR_SESSION_HANDLE_INVALID = 0xB3
CKR_CRYPTOKI_NOT_INITIALIZED = 0x190
CKR_CRYPTOKI_ALREADY_INITIALIZED = 0x191
CKF_SERIAL_SESSION = 0x4

HOST_TIMEOUT = 240


# ---------------------------------------------------------------- helpers and fixtures

@pytest.fixture(scope="session")
def host(tmp_path_factory) -> str:
    """tests/c/host.c, compiled with warnings as errors."""
    out = str(tmp_path_factory.mktemp("host") / "host")
    r = subprocess.run(["cc", "-O1", "-Wall", "-Werror", "-o", out, HOST_SRC, "-ldl", "-lpthread"],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"cc failed:\n{r.stdout}{r.stderr}"
    return out


@pytest.fixture(scope="session")
def failing_module(tmp_path_factory) -> str:
    """A real build of the library whose embedded init code imports a missing entry module."""
    outdir = str(tmp_path_factory.mktemp("failing-build"))
    r = subprocess.run([sys.executable, BUILD, outdir, "--entry-module", MISSING_ENTRY],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, f"build failed:\n{r.stdout}{r.stderr}"
    path = os.path.join(outdir, "libfxpkcs11.so")
    assert os.path.exists(path)
    return path


def env_for(cfg: str, tmp_path, **extra: str) -> dict[str, str]:
    """A plain shell's environment (support.child_env) that keeps log files out of ~."""
    extra.setdefault("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    env = child_env(cfg, **extra)
    if "FXPKCS11_LOG" not in extra:
        env.pop("FXPKCS11_LOG", None)
    return env


def run(argv: list[str], env: dict[str, str], timeout: float = HOST_TIMEOUT) -> subprocess.CompletedProcess:
    """A C host, from the root directory."""
    return subprocess.run(argv, env=env, cwd="/", capture_output=True, text=True, timeout=timeout)


def run_python(script: str, env: dict[str, str], timeout: float = HOST_TIMEOUT) -> subprocess.CompletedProcess:
    """A fresh Python host (this venv's interpreter, for python-pkcs11), from the root directory."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, cwd="/",
                          capture_output=True, text=True, timeout=timeout)


def explain(r: subprocess.CompletedProcess) -> str:
    return f"exit status {r.returncode}\n--- stdout\n{r.stdout[-4000:]}\n--- stderr\n{r.stderr[-4000:]}"


def read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def ckr(module: str, name: str, *args) -> int:
    """Call one exported C_* function of an already loaded module; returns the raw CKR."""
    fn = getattr(ctypes.CDLL(module), name)
    fn.restype = ctypes.c_ulong
    return fn(*args)


def rsa_key(modulus: bytes, exponent: bytes) -> rsa.RSAPublicKey:
    return rsa.RSAPublicNumbers(int.from_bytes(exponent, "big"), int.from_bytes(modulus, "big")).public_key()


def ec_key(point: bytes) -> ec.EllipticCurvePublicKey:
    if len(point) == 67 and point[:2] == b"\x04\x41":  # CKA_EC_POINT as a DER OCTET STRING
        point = point[2:]
    return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)


def check_rsa(key: rsa.RSAPublicKey, msg: bytes, sig: bytes) -> None:
    assert len(sig) == 256
    key.verify(sig, msg, padding.PKCS1v15(), hashes.SHA256())


def check_ecdsa(key: ec.EllipticCurvePublicKey, msg: bytes, sig: bytes) -> None:
    assert len(sig) == 64  # r || s
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    key.verify(der, msg, ec.ECDSA(hashes.SHA256()))


def rsa_pair(session):
    return session.generate_keypair(KeyType.RSA, 2048, store=False)


def ec_pair(session):
    params = session.create_domain_parameters(
        KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters("secp256r1")}, local=True)
    return params.generate_keypair(store=False)


@dataclass
class InProcess:
    module: str
    cfg: str
    log: str
    lib: object
    token: object


@pytest.fixture(scope="module")
def inproc(p11_env):
    """The library loaded into this interpreter by python-pkcs11, running with the test
    session's one in-process configuration (integration_fixtures.p11_env; FXPKCS11_CFG is
    read at C_Initialize, use_config sets it first). A logged-in session stays open for the
    module: the login state belongs to the token, so the tests' sessions open without a PIN."""
    lib = use_config(p11_env.cfg)
    token = lib.get_token(token_label=LABEL)
    try:
        keeper = token.open(rw=True, user_pin=PIN)
    except pkcs11.exceptions.UserAlreadyLoggedIn:
        keeper = token.open(rw=True)
    yield InProcess(LIB, p11_env.cfg, p11_env.log, lib, token)
    try:
        keeper.close()
    except pkcs11.PKCS11Error:
        pass


# ---------------------------------------------------------------- trap 1: RTLD_LOCAL

def test_trap1_rtld_local_c_host_imports_extension_modules(host, module_path, config, tmp_path):
    """host.c dlopens with RTLD_NOW|RTLD_LOCAL; key generation and signing need
    _cffi_backend and cryptography, whose imports fail on undefined PyExc_* symbols unless
    the library made libpython global before Python started."""
    r = run([host, "basic", module_path, PIN], env_for(config, tmp_path))
    assert r.returncode == 0, explain(r)
    assert r.stdout.startswith("basic: ok"), explain(r)
    assert "signature=256 bytes" in r.stdout
    assert "undefined symbol" not in r.stderr
    log = read_text(os.path.join(os.path.dirname(config), "fxpkcs11.log"))
    assert "undefined symbol" not in log and "failed to start" not in log


def test_trap1_libpython_symbols_are_global_after_load(host, module_path, config, tmp_path):
    """After an RTLD_LOCAL load, libpython's symbols resolve from the global scope (what an
    extension module's own undefined PyExc_* references need)."""
    src = tmp_path / "probe.c"
    src.write_text(textwrap.dedent("""\
        #include <dlfcn.h>
        #include <stdio.h>
        int main(int argc, char **argv) {
          (void)argc;
          if (dlsym(RTLD_DEFAULT, "PyExc_TypeError")) { puts("global before load"); return 3; }
          if (!dlopen(argv[1], RTLD_NOW | RTLD_LOCAL)) { puts(dlerror()); return 2; }
          if (!dlsym(RTLD_DEFAULT, "PyExc_TypeError")) { puts("PyExc_TypeError is not global"); return 1; }
          puts("ok");
          return 0;
        }
        """))
    probe = str(tmp_path / "probe")
    c = subprocess.run(["cc", "-D_GNU_SOURCE", "-Wall", "-Werror", "-o", probe, str(src), "-ldl"],
                       capture_output=True, text=True)
    assert c.returncode == 0, c.stderr
    r = run([probe, module_path], env_for(config, tmp_path))
    assert r.returncode == 0 and r.stdout.strip() == "ok", explain(r)


# ---------------------------------------------------------------- trap 2: failed init

def test_trap2_uninitialized_entries_refuse(host, module_path, config, tmp_path):
    """Before C_Initialize (and after C_Finalize) every entry answers
    CKR_CRYPTOKI_NOT_INITIALIZED; the function-list entries answer at any time."""
    r = run([host, "uninit", module_path], env_for(config, tmp_path))
    assert r.returncode == 0, explain(r)
    lines = r.stdout.splitlines()
    refused = [ln for ln in lines if re.match(r"C_\w+=0x", ln) and not ln.startswith(("C_GetFunctionList",
                                                                                        "C_GetInterfaceList"))]
    assert len(refused) >= 24 and all(ln.endswith("=0x190") for ln in refused), r.stdout
    assert "C_GetFunctionList=0x0" in lines and "C_GetInterfaceList=0x0" in lines
    assert lines.count("sweep=ok (92 entries)") == 2
    assert lines[-1] == "uninit: ok"


@pytest.mark.parametrize("where", ["FXPKCS11_LOG", "FXPKCS11_LOG-new-dir", "XDG_STATE_HOME", "HOME",
                                   "FXPKCS11_LOG-unusable-state-home"])
def test_trap2_failed_init_c_host(host, failing_module, config, tmp_path, where):
    """A library whose embedded init code fails: C_Initialize -> CKR_GENERAL_ERROR (also
    when called again), every other entry -> CKR_CRYPTOKI_NOT_INITIALIZED, never CKR_OK;
    the cause goes to the log, nothing to stdout."""
    extra: dict[str, str] = {}
    if where == "FXPKCS11_LOG":
        log = str(tmp_path / "init.log")
        extra["FXPKCS11_LOG"] = log
    elif where == "FXPKCS11_LOG-new-dir":
        log = str(tmp_path / "not" / "yet" / "init.log")
        extra["FXPKCS11_LOG"] = log
    elif where == "XDG_STATE_HOME":
        extra["XDG_STATE_HOME"] = str(tmp_path / "xdg")
        log = str(tmp_path / "xdg" / "fxpkcs11" / "fxpkcs11.log")
    elif where == "HOME":  # neither variable: ~/.local/state/fxpkcs11/fxpkcs11.log
        extra["HOME"] = str(tmp_path / "home")
        log = str(tmp_path / "home" / ".local" / "state" / "fxpkcs11" / "fxpkcs11.log")
    else:  # the default log directory cannot be made, but FXPKCS11_LOG names a usable file
        (tmp_path / "a-file").write_text("")
        extra["XDG_STATE_HOME"] = str(tmp_path / "a-file")
        log = str(tmp_path / "init.log")
        extra["FXPKCS11_LOG"] = log
    env = env_for(config, tmp_path, **extra)
    if where == "HOME":
        env.pop("XDG_STATE_HOME")
        env.pop("FXPKCS11_LOG", None)
    r = run([host, "initfail", failing_module], env)
    assert r.returncode == 0, explain(r)
    assert r.stdout == "", explain(r)
    text = read_text(log)
    assert "the provider failed to start" in text, f"nothing logged at {log}\n{explain(r)}"
    assert "Traceback (most recent call last)" in text
    assert f"No module named '{MISSING_ENTRY}'" in text


def test_trap2_failed_init_python_host(failing_module, config, tmp_path):
    """The same library loaded by a Python host: python-pkcs11 sees CKR_GENERAL_ERROR,
    the other entries refuse, nothing reaches stdout and the cause is logged."""
    results = tmp_path / "results.txt"
    log = tmp_path / "py-init.log"
    script = f"""
        import ctypes, pkcs11
        out = []
        try:
            pkcs11.lib({failing_module!r})
            out.append("loaded")
        except pkcs11.exceptions.GeneralError:
            out.append("GeneralError")
        except Exception as e:
            out.append("other " + type(e).__name__)
        dll = ctypes.CDLL({failing_module!r})
        for name, args in [("C_Initialize", (None,)), ("C_GetInfo", (None,)),
                           ("C_GetSlotList", (0, None, None)), ("C_OpenSession", (0, 4, None, None, None)),
                           ("C_Finalize", (None,)), ("C_CloseAllSessions", (0,))]:
            fn = getattr(dll, name)
            fn.restype = ctypes.c_ulong
            out.append("%s=0x%x" % (name, fn(*args)))
        open({str(results)!r}, "w").write("\\n".join(out))
    """
    r = run_python(script, env_for(config, tmp_path, FXPKCS11_LOG=str(log)))
    assert r.returncode == 0, explain(r)
    assert r.stdout == "", explain(r)
    got = results.read_text().splitlines()
    assert got == ["GeneralError", "C_Initialize=0x5", "C_GetInfo=0x190", "C_GetSlotList=0x190",
                   "C_OpenSession=0x190", "C_Finalize=0x190", "C_CloseAllSessions=0x190"], got
    text = read_text(str(log))
    assert "the provider failed to start" in text and f"No module named '{MISSING_ENTRY}'" in text


# ---------------------------------------------------------------- trap 3: environment

def test_trap3_pkcs11_tool_without_virtualenv(module_path, config, tmp_path):
    """pkcs11-tool run from / with no virtualenv active lists the token, generates a key
    pair and signs; the signature verifies against the public key it reads back."""
    env = env_for(config, tmp_path)
    assert "VIRTUAL_ENV" not in env and "PYTHONPATH" not in env and ".venv" not in env["PATH"]
    tool = ["pkcs11-tool", "--module", module_path]
    r = run(tool + ["-L"], env)
    assert r.returncode == 0 and LABEL in r.stdout, explain(r)
    r = run(tool + ["--login", "--pin", PIN, "--keypairgen", "--key-type", "rsa:2048", "--id", "03",
                    "--label", "trap3"], env)
    assert r.returncode == 0, explain(r)
    data = tmp_path / "data"
    data.write_bytes(b"signed by pkcs11-tool from /")
    sig = tmp_path / "sig"
    r = run(tool + ["--login", "--pin", PIN, "--sign", "-m", "SHA256-RSA-PKCS", "--id", "03",
                    "-i", str(data), "-o", str(sig)], env)
    assert r.returncode == 0, explain(r)
    pub = tmp_path / "pub.der"
    r = run(tool + ["--login", "--pin", PIN, "--read-object", "--type", "pubkey", "--id", "03",
                    "-o", str(pub)], env)
    assert r.returncode == 0, explain(r)
    check_rsa(load_der_public_key(pub.read_bytes()), data.read_bytes(), sig.read_bytes())


def test_trap3_c_host_without_virtualenv(host, module_path, config, tmp_path):
    """Our own C host, same conditions, and with a HOME that holds nothing Python."""
    home = tmp_path / "home"
    home.mkdir()
    r = run([host, "basic", module_path, PIN], env_for(config, tmp_path, HOME=str(home)))
    assert r.returncode == 0 and r.stdout.startswith("basic: ok"), explain(r)


# ---------------------------------------------------------------- trap 4: Python host

def test_trap4_python_host_runs_provider_in_its_own_interpreter(inproc, monkeypatch):
    import fxpkcs11.state
    from fxpkcs11.library import Library

    assert "_fxpkcs11_native" in sys.modules
    native = sys.modules["_fxpkcs11_native"]
    assert hasattr(native.lib, "fxp_C_Initialize")
    li = fxpkcs11.state.lib
    assert isinstance(li, Library), li
    assert li.pid == os.getpid()
    assert li.config.path == inproc.cfg

    # A C call made by python-pkcs11 runs this interpreter's objects, on the calling thread.
    seen: list[int] = []
    original = Library.open_session

    def spy(self, token, rw):
        seen.append(threading.get_ident())
        return original(self, token, rw)

    monkeypatch.setattr(Library, "open_session", spy)
    with inproc.token.open() as s:
        assert len(s.generate_random(128)) == 16
    assert seen == [threading.get_ident()]

    # One libpython in the process.
    with open("/proc/self/maps") as f:
        libpythons = {ln.split()[-1] for ln in f if "libpython" in ln}
    assert len(libpythons) <= 1, libpythons


def test_trap4_fresh_python_host(module_path, config, tmp_path):
    """A fresh Python process (not pytest) loading the library: one interpreter, working."""
    script = f"""
        import os, sys, pkcs11
        from pkcs11 import KeyType, Mechanism
        lib = pkcs11.lib({module_path!r})
        import fxpkcs11.state
        from fxpkcs11.library import Library
        assert "_fxpkcs11_native" in sys.modules
        assert isinstance(fxpkcs11.state.lib, Library) and fxpkcs11.state.lib.pid == os.getpid()
        token = lib.get_token(token_label={LABEL!r})
        with token.open(rw=True, user_pin={PIN!r}) as s:
            pub, priv = s.generate_keypair(KeyType.RSA, 2048, store=False)
            sig = priv.sign(b"fresh host", mechanism=Mechanism.SHA256_RSA_PKCS)
            assert pub.verify(b"fresh host", sig, mechanism=Mechanism.SHA256_RSA_PKCS)
        print("fresh: ok")
    """
    r = run_python(script, env_for(config, tmp_path))
    assert r.returncode == 0 and r.stdout.strip() == "fresh: ok", explain(r)


# ---------------------------------------------------------------- trap 5: exceptions

def test_trap5_exception_becomes_ckr_and_logged_traceback(inproc, monkeypatch, capfd):
    from fxpkcs11.library import Library

    marker = f"trap5 {uuid.uuid4().hex}"

    def boom(self, token, rw):
        raise RuntimeError(marker)

    capfd.readouterr()
    monkeypatch.setattr(Library, "open_session", boom)
    with pytest.raises(pkcs11.exceptions.FunctionFailed):
        inproc.token.open()
    h = ctypes.c_ulong(0)
    rv = ckr(inproc.module, "C_OpenSession", ctypes.c_ulong(0), ctypes.c_ulong(CKF_SERIAL_SESSION),
             None, None, ctypes.byref(h))
    assert rv == CKR_FUNCTION_FAILED
    monkeypatch.undo()

    out = capfd.readouterr()
    assert out.out == "" and marker not in out.err
    text = read_text(inproc.log)
    assert text.count(f"RuntimeError: {marker}") == 2, text[-3000:]
    at = text.index(f"RuntimeError: {marker}")
    before = text[:at]
    entry = before.rindex("C_OpenSession: internal error")
    assert "Traceback (most recent call last)" in before[entry:]
    assert "in boom" in before[entry:]
    # and the library carries on
    with inproc.token.open() as s:
        assert len(s.generate_random(64)) == 8


def test_trap5_unconvertible_result_becomes_ckr(inproc, monkeypatch, capfd):
    """An error cffi itself meets (a result that is no CK_RV) is caught too."""
    import fxpkcs11.abi.marshal as marshal

    logged_before = read_text(inproc.log).count("callback error")
    capfd.readouterr()
    monkeypatch.setattr(marshal, "write_ulongs", lambda *a: "not a CK_RV")
    n = ctypes.c_ulong(0)
    rv = ckr(inproc.module, "C_GetSlotList", ctypes.c_ubyte(1), None, ctypes.byref(n))
    with pytest.raises(pkcs11.exceptions.FunctionFailed):
        inproc.lib.get_slots()
    monkeypatch.undo()
    assert rv == CKR_FUNCTION_FAILED
    out = capfd.readouterr()
    assert out.out == ""
    assert read_text(inproc.log).count("callback error") == logged_before + 2
    assert len(inproc.lib.get_slots()) == 1


def test_trap5_internal_error_in_initialize_is_general_error(module_path, config, tmp_path):
    """C_Initialize's own internal error is CKR_GENERAL_ERROR (a separate process: this one
    keeps its library initialised)."""
    log = os.path.join(os.path.dirname(config), "fxpkcs11.log")
    script = f"""
        import ctypes, sys
        sys.path.insert(0, {ROOT!r})
        import fxpkcs11.library
        def broken(self, cfg):
            raise ValueError("trap5 broken Library")
        fxpkcs11.library.Library.__init__ = broken
        import pkcs11
        try:
            pkcs11.lib({module_path!r})
            print("loaded")
        except pkcs11.exceptions.GeneralError:
            print("GeneralError")
        fn = ctypes.CDLL({module_path!r}).C_GetInfo
        fn.restype = ctypes.c_ulong
        print("C_GetInfo=0x%x" % fn(None))
    """
    r = run_python(script, env_for(config, tmp_path, FXPKCS11_LOG=log))
    assert r.returncode == 0, explain(r)
    assert r.stdout.split() == ["GeneralError", "C_GetInfo=0x190"], explain(r)
    text = read_text(log)
    assert "C_Initialize: internal error" in text
    assert "Traceback (most recent call last)" in text and "ValueError: trap5 broken Library" in text


# ---------------------------------------------------------------- trap 6: fork

def test_trap6_c_host_fork_with_busy_thread(host, module_path, config, tmp_path):
    """host.c forks eight times, each time just after a second thread entered a library
    call (mostly Python work, so the GIL is usually taken at the fork); each child sees
    CKR_CRYPTOKI_NOT_INITIALIZED until its C_Initialize, then signs; none hangs (a child
    ends itself with SIGALRM after 30 s); the parent keeps signing, the thread keeps going."""
    r = run([host, "fork", module_path, PIN], env_for(config, tmp_path))
    assert r.returncode == 0, explain(r)
    assert r.stdout.startswith("fork: ok 8 children"), explain(r)


PY_FORKS = 12


def test_trap6_python_host_fork(inproc, tmp_path):
    """os.fork() after loading with python-pkcs11, twelve times, while a second thread keeps
    calling the library through its own session. Each child sees CKR_CRYPTOKI_NOT_INITIALIZED
    until it calls C_Initialize, then opens a session, logs in and signs (exit status 0, or
    killed by its own SIGALRM if it hangs); the parent keeps signing with its session."""
    import fxpkcs11.state

    report = tmp_path / "child.txt"
    s = inproc.token.open(rw=True)
    parent_handle = s.handle
    stop = threading.Event()
    busy_rounds = [0]
    busy_errors: list[str] = []

    def busy() -> None:
        # Its own session and key: python-pkcs11 locks a session's operations, and a lock
        # the thread held at the fork would stay held in the child.
        try:
            with inproc.token.open(rw=True) as bs:
                bpub, bpriv = ec_pair(bs)
                while not stop.is_set():
                    inproc.token.slot.get_mechanisms()
                    bs.generate_random(64)
                    inproc.lib.get_token(token_label=LABEL)
                    list(bs.get_objects({Attribute.LABEL: "trap6 no such key"}))  # the database
                    if busy_rounds[0] % 8 == 0:
                        m = b"busy %d" % busy_rounds[0]
                        assert bpub.verify(m, bpriv.sign(m, mechanism=Mechanism.ECDSA_SHA256),
                                           mechanism=Mechanism.ECDSA_SHA256)
                    busy_rounds[0] += 1
        except BaseException:
            busy_errors.append(traceback.format_exc())

    thread = threading.Thread(target=busy, name="trap6-busy")
    try:
        pub, priv = rsa_pair(s)
        msg = b"signed in the parent"
        assert pub.verify(msg, priv.sign(msg, mechanism=Mechanism.SHA256_RSA_PKCS),
                          mechanism=Mechanism.SHA256_RSA_PKCS)
        thread.start()
        while busy_rounds[0] < 2 and not busy_errors:
            time.sleep(0.01)

        for fork in range(PY_FORKS):
            pid = os.fork()
            if pid == 0:  # the child: never return into pytest
                status = 1
                try:
                    signal.alarm(30)
                    status = _python_fork_child(inproc, s, priv, parent_handle, report)
                except BaseException:
                    with open(report, "a") as f:
                        f.write(traceback.format_exc())
                    status = 99
                finally:
                    os._exit(status)

            # The parent keeps signing with its existing session while the child works.
            for i in range(3):
                m = b"parent after fork %d.%d" % (fork, i)
                assert pub.verify(m, priv.sign(m, mechanism=Mechanism.SHA256_RSA_PKCS),
                                  mechanism=Mechanism.SHA256_RSA_PKCS)
            deadline = time.monotonic() + 120
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)
                    os.waitpid(pid, 0)
                    pytest.fail(f"forked child {fork} hung")
                time.sleep(0.02)
            if os.WIFSIGNALED(status):
                pytest.fail(f"forked child {fork} killed by signal {os.WTERMSIG(status)}"
                            f"{' (it hung)' if os.WTERMSIG(status) == signal.SIGALRM else ''}")
            assert os.WIFEXITED(status), f"child status {status:#x}"
            assert os.WEXITSTATUS(status) == 0, \
                f"child {fork} exit {os.WEXITSTATUS(status)}\n{read_text(str(report))}"
            assert not busy_errors, busy_errors[0]

        rounds = busy_rounds[0]
        while busy_rounds[0] == rounds and not busy_errors:
            time.sleep(0.01)  # the busy thread keeps going in the parent
        assert fxpkcs11.state.lib.pid == os.getpid()
        m = b"parent after the children"
        assert pub.verify(m, priv.sign(m, mechanism=Mechanism.SHA256_RSA_PKCS),
                          mechanism=Mechanism.SHA256_RSA_PKCS)
    finally:
        stop.set()
        if thread.is_alive():
            thread.join(timeout=60)
        s.close()
    assert not busy_errors, busy_errors[0]


def _python_fork_child(inproc, parent_session, parent_key, parent_handle, report) -> int:
    """Runs in the forked child; returns its exit status."""
    import fxpkcs11.state

    def note(text: str) -> None:
        with open(report, "a") as f:
            f.write(text + "\n")

    mod = inproc.module
    n = ctypes.c_ulong(0)
    h = ctypes.c_ulong(0)
    before = {
        "C_GetInfo": ckr(mod, "C_GetInfo", ctypes.create_string_buffer(256)),
        "C_GetSlotList": ckr(mod, "C_GetSlotList", ctypes.c_ubyte(1), None, ctypes.byref(n)),
        "C_OpenSession": ckr(mod, "C_OpenSession", ctypes.c_ulong(0), ctypes.c_ulong(CKF_SERIAL_SESSION),
                             None, None, ctypes.byref(h)),
        "C_GetSessionInfo": ckr(mod, "C_GetSessionInfo", ctypes.c_ulong(parent_handle),
                                ctypes.create_string_buffer(64)),
    }
    if any(rv != CKR_CRYPTOKI_NOT_INITIALIZED for rv in before.values()):
        note(f"before C_Initialize: {before}")
        return 10
    try:  # python-pkcs11 with the parent's session and key
        parent_key.sign(b"x", mechanism=Mechanism.SHA256_RSA_PKCS)
        note("the parent's key signed in the child")
        return 11
    except pkcs11.PKCS11Error as e:
        if "not initialized" not in str(e):
            note(f"parent's key: {type(e).__name__}: {e}")
            return 12
    try:
        inproc.lib.finalize()  # C_Finalize: refused too, and python-pkcs11 forgets its state
        note("C_Finalize succeeded in the child before C_Initialize")
        return 13
    except pkcs11.PKCS11Error as e:
        if "not initialized" not in str(e):
            note(f"C_Finalize: {type(e).__name__}: {e}")
            return 14
    inproc.lib.initialize()  # C_Initialize
    if ckr(mod, "C_Initialize", None) != CKR_CRYPTOKI_ALREADY_INITIALIZED:
        return 15
    if fxpkcs11.state.lib is None or fxpkcs11.state.lib.pid != os.getpid():
        return 16
    if ckr(mod, "C_GetSessionInfo", ctypes.c_ulong(parent_handle),
           ctypes.create_string_buffer(64)) != CKR_SESSION_HANDLE_INVALID:
        return 17
    token = inproc.lib.get_token(token_label=LABEL)
    with token.open(rw=True, user_pin=PIN) as s:
        pub, priv = ec_pair(s)
        msg = b"signed in the child %d" % os.getpid()
        sig = priv.sign(msg, mechanism=Mechanism.ECDSA_SHA256)
        check_ecdsa(ec_key(pub[Attribute.EC_POINT]), msg, sig)
    inproc.lib.finalize()
    return 0


# ---------------------------------------------------------------- trap 7: threads

THREADS = 8
ROUNDS = 4


def test_trap7_c_host_threads(host, module_path, config, tmp_path):
    r = run([host, "threads", module_path, PIN, str(THREADS)], env_for(config, tmp_path))
    assert r.returncode == 0, explain(r)
    rsa_lines = ec_lines = 0
    keys: dict[str, set[str]] = {"rsa": set(), "ec": set()}
    messages = set()
    for line in r.stdout.splitlines():
        kind, *fields = line.split()
        if kind == "rsa":
            _, mod, exp, msg, sig = fields
            check_rsa(rsa_key(bytes.fromhex(mod), bytes.fromhex(exp)), bytes.fromhex(msg), bytes.fromhex(sig))
            keys["rsa"].add(mod)
            messages.add(msg)
            rsa_lines += 1
        elif kind == "ec":
            _, point, msg, sig = fields
            check_ecdsa(ec_key(bytes.fromhex(point)), bytes.fromhex(msg), bytes.fromhex(sig))
            keys["ec"].add(point)
            ec_lines += 1
        else:
            pytest.fail(f"unexpected output line: {line[:80]}")
    assert rsa_lines == ec_lines == THREADS * ROUNDS
    assert len(keys["rsa"]) == len(keys["ec"]) == THREADS
    assert len(messages) == THREADS * ROUNDS


def test_trap7_python_threads(inproc):
    barrier = threading.Barrier(THREADS, timeout=120)
    errors: list[str] = []
    results: list[tuple[str, object, bytes, bytes]] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        try:
            with inproc.token.open(rw=True) as s:
                rpub, rpriv = rsa_pair(s)
                epub, epriv = ec_pair(s)
                rkey = rsa_key(rpub[Attribute.MODULUS], rpub[Attribute.PUBLIC_EXPONENT])
                ekey = ec_key(epub[Attribute.EC_POINT])
                barrier.wait()
                for r in range(ROUNDS):
                    msg = b"python thread %d round %d" % (i, r)
                    rsig = rpriv.sign(msg, mechanism=Mechanism.SHA256_RSA_PKCS)
                    esig = epriv.sign(msg, mechanism=Mechanism.ECDSA_SHA256)
                    assert rpub.verify(msg, rsig, mechanism=Mechanism.SHA256_RSA_PKCS)
                    assert epub.verify(msg, esig, mechanism=Mechanism.ECDSA_SHA256)
                    with lock:
                        results.append(("rsa", rkey, msg, rsig))
                        results.append(("ec", ekey, msg, esig))
        except BaseException:
            barrier.abort()
            with lock:
                errors.append(f"thread {i}:\n{traceback.format_exc()}")

    threads = [threading.Thread(target=work, args=(i,), name=f"trap7-{i}") for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    assert not any(t.is_alive() for t in threads), "a signing thread hung"
    assert not errors, "\n".join(errors)
    assert len(results) == 2 * THREADS * ROUNDS
    for kind, key, msg, sig in results:
        try:
            (check_rsa if kind == "rsa" else check_ecdsa)(key, msg, sig)
        except InvalidSignature:
            pytest.fail(f"{kind} signature of {msg!r} does not verify")
