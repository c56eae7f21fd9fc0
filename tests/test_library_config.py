"""The library's configuration and log, seen through a real consumer in a fresh process:
C_Initialize reads fxpkcs11.cfg, a bad file fails it with the file, line and tag logged,
<CRYPTO-OPR-PASS> logs in on session open, the log levels and what they show."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from integration_fixtures import run_child
from support import LIB, PIN, ROOT, child_env, make_state, write_config

CKR_GENERAL_ERROR = 0x5


def _initialize_rv(cfg: str, **env: str) -> int:
    """C_Initialize's CKR through ctypes (python-pkcs11 hides it behind exceptions)."""
    code = (
        "import ctypes, sys\n"
        f"lib = ctypes.CDLL({LIB!r})\n"
        "print(lib.C_Initialize(None))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=child_env(cfg, **env), cwd="/",
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return int(out.stdout.strip().splitlines()[-1])


def test_malformed_config_fails_initialize_and_logs_file_line_tag(tmp_path):
    log = tmp_path / "boot.log"
    cfg = tmp_path / "bad.cfg"
    cfg.write_text("<HSM>\n  <SLOT> 0 </SLOT>\n  <PROD-PORT> ninety </PROD-PORT>\n</HSM>\n")
    assert _initialize_rv(str(cfg), FXPKCS11_LOG=str(log)) == CKR_GENERAL_ERROR
    text = log.read_text()
    assert str(cfg) in text and ":3:" in text and "<PROD-PORT>" in text


def test_missing_config_named_by_env_fails_initialize(tmp_path):
    log = tmp_path / "boot.log"
    missing = tmp_path / "nowhere.cfg"
    assert _initialize_rv(str(missing), FXPKCS11_LOG=str(log)) == CKR_GENERAL_ERROR
    assert str(missing) in log.read_text()


def test_unknown_tag_is_a_warning_in_the_log(tmp_path):
    state = make_state(str(tmp_path / "state"))
    cfg = write_config(str(tmp_path / "fx.cfg"), state.dir, log_mode="WARN",
                       extra="<FANCY-FEATURE> on </FANCY-FEATURE>\n")
    r = run_child(cfg, "lib = pkcs11.lib(LIB); out(label=lib.get_token().label)")
    assert r["label"] == "Futurex"
    log = (tmp_path / "fxpkcs11.log").read_text()
    assert re.search(r"fx\.cfg:\d+: unknown tag <FANCY-FEATURE> ignored", log)


def test_label_and_slot_come_from_the_config(tmp_path):
    state = make_state(str(tmp_path / "state"))
    cfg = tmp_path / "fx.cfg"
    cfg.write_text(f"<HSM>\n <SLOT> 7 </SLOT>\n <LABEL> Payments HSM </LABEL>\n"
                   f" <VHSM-STATE> {state.dir} </VHSM-STATE>\n</HSM>\n")
    r = run_child(str(cfg), """
        lib = pkcs11.lib(LIB)
        out(slots=[s.slot_id for s in lib.get_slots()], label=lib.get_token().label)
    """)
    assert r["slots"] == [7] and r["label"] == "Payments HSM"


def test_crypto_opr_pass_logs_in_on_session_open(tmp_path):
    state = make_state(str(tmp_path / "state"))
    cfg = write_config(str(tmp_path / "fx.cfg"), state.dir, auto_login=PIN, log_mode="TRACE")
    r = run_child(cfg, """
        tok = pkcs11.lib(LIB).get_token()
        with tok.open(rw=True) as s:   # no PIN given: the configuration logs in
            key = s.generate_key(KeyType.AES, 128, label="auto", store=False)
            out(private=bool(key[Attribute.PRIVATE]))
    """)
    assert r["private"] is True
    log = (tmp_path / "fxpkcs11.log").read_text()
    assert "excrypt LOGI -> Y" in log
    assert PIN not in log  # the password never reaches the log, even at TRACE


def test_pin_is_identity_colon_password_without_crypto_opr(tmp_path):
    state = make_state(str(tmp_path / "state"))
    cfg = write_config(str(tmp_path / "fx.cfg"), state.dir, identity=None)
    r = run_child(cfg, f"""
        tok = pkcs11.lib(LIB).get_token()
        with tok.open(user_pin="{state.identity}:{PIN}") as s:
            out(ok=len(s.generate_random(16)) == 16)
        try:
            tok.open(user_pin="{PIN}")
            out(bare_pin="accepted")
        except pkcs11.PinIncorrect:
            out(bare_pin="refused")
    """)
    assert r["bare_pin"] == "refused"


def test_trace_shows_each_call_and_command_error_level_shows_neither(tmp_path):
    state = make_state(str(tmp_path / "state"))
    code = """
        tok = pkcs11.lib(LIB).get_token()
        with tok.open(user_pin=PIN) as s:
            s.generate_random(8)
        out(ok=True)
    """
    cfg = write_config(str(tmp_path / "trace.cfg"), state.dir, log_mode="TRACE",
                       log_file=str(tmp_path / "trace.log"))
    run_child(cfg, code)
    trace = (tmp_path / "trace.log").read_text()
    for line in ("C_Initialize -> CKR_OK", "C_OpenSession -> CKR_OK", "C_Login -> CKR_OK",
                 "excrypt RAND -> Y", "C_GenerateRandom -> CKR_OK"):
        assert line in trace
    cfg = write_config(str(tmp_path / "error.cfg"), state.dir, log_mode="ERROR",
                       log_file=str(tmp_path / "error.log"))
    run_child(cfg, code)
    assert "C_GenerateRandom" not in (tmp_path / "error.log").read_text()


def test_log_file_and_state_are_owner_only(tmp_path):
    state = make_state(str(tmp_path / "state"))
    cfg = write_config(str(tmp_path / "fx.cfg"), state.dir, log_file=str(tmp_path / "logs" / "fx.log"))
    run_child(cfg, "pkcs11.lib(LIB).get_token(); out(ok=True)")
    assert os.stat(tmp_path / "logs" / "fx.log").st_mode & 0o777 == 0o600
    assert os.stat(tmp_path / "logs").st_mode & 0o777 == 0o700
    assert os.stat(state.dir).st_mode & 0o777 == 0o700


def test_first_initialize_creates_a_factory_fresh_device_in_the_default_place(tmp_path):
    """No <VHSM-STATE>: the state goes to $XDG_DATA_HOME/fxvhsm and answers info calls."""
    cfg = tmp_path / "fx.cfg"
    cfg.write_text("<HSM>\n  <SLOT> 0 </SLOT>\n</HSM>\n<LOG-MODE> INFO </LOG-MODE>\n"
                   f"<LOG-FILE> {tmp_path / 'fx.log'} </LOG-FILE>\n")
    data = tmp_path / "xdg"
    r = run_child(str(cfg), """
        lib = pkcs11.lib(LIB)
        tok = lib.get_token()
        try:
            with tok.open(rw=True) as s:
                s.generate_key(KeyType.AES, 128, store=False)
            out(label=tok.label, keygen="worked")
        except pkcs11.PKCS11Error as e:
            out(label=tok.label, keygen=type(e).__name__)
    """, XDG_DATA_HOME=str(data))
    assert r["label"] == "Futurex"
    assert r["keygen"] == "DeviceError"  # no FTK on a factory-fresh device
    assert (data / "fxvhsm" / "vhsm.db").exists()
    assert "no FTK is loaded" in (tmp_path / "fx.log").read_text()


def test_module_path_command_prints_the_built_library():
    out = subprocess.run([sys.executable, "-m", "fxpkcs11", "module-path"], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == LIB and os.path.isabs(out.stdout.strip())


def test_every_function_is_exported_and_the_list_is_full():
    syms = subprocess.run(["nm", "-D", "--defined-only", LIB], capture_output=True, text=True, check=True).stdout
    exported = set(re.findall(r" T (C_\w+)$", syms, re.M))
    with open(os.path.join(ROOT, "native", "functions.h")) as f:
        declared = set(re.findall(r"CK_RV (C_\w+)\(", f.read()))
    assert len(declared) == 92 and declared <= exported
    import ctypes
    lib = ctypes.CDLL(LIB)
    pp = ctypes.POINTER(ctypes.c_void_p)()
    assert lib.C_GetFunctionList(ctypes.byref(pp)) == 0
    version = ctypes.cast(pp, ctypes.POINTER(ctypes.c_ubyte))
    assert (version[0], version[1]) == (2, 40)
    table = ctypes.cast(pp, ctypes.POINTER(ctypes.c_void_p))
    assert all(table[1 + i] for i in range(68))  # after the 8-byte version: 68 function pointers


@pytest.mark.parametrize("name", ["C_MessageEncryptInit", "C_SignMessage", "C_DecryptMessageNext",
                                  "C_MessageVerifyFinal"])
def test_functions_not_asked_for_yet_say_not_supported(tmp_path, name):
    state = make_state(str(tmp_path / "state"))
    cfg = write_config(str(tmp_path / "fx.cfg"), state.dir)
    code = (
        "import ctypes\n"
        f"lib = ctypes.CDLL({LIB!r})\n"
        "assert lib.C_Initialize(None) == 0\n"
        f"f = getattr(lib, {name!r})\n"
        "print(f(*([ctypes.c_ulong(0)] * 8)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=child_env(cfg), capture_output=True, text=True,
                         timeout=60, check=True)
    assert int(out.stdout.split()[-1]) == 0x54  # CKR_FUNCTION_NOT_SUPPORTED
