"""Hostile calls at the C ABI: tests/c/hostile.c dlopens the built library and calls every
entry of the 3.0 function list with null pointers, zero / huge / short lengths, stale,
foreign and random handles, bad mechanism parameters, bad templates and calls in the wrong
state; each row of its table names the codes the PKCS #11 specification allows. The
program runs under a timeout (a hang fails) and a crash shows as a signal."""
from __future__ import annotations

import os
import signal
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz"))
from abi_env import compile_hostile, make_two_slot_env, run_hostile  # noqa: E402

TIMEOUT = 120


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> str:
    return compile_hostile(str(tmp_path_factory.mktemp("hostile") / "hostile"))


@pytest.fixture(scope="module")
def two_slots(tmp_path_factory):
    return make_two_slot_env(str(tmp_path_factory.mktemp("hostile-env")))


@pytest.fixture(scope="module")
def result(hostile, two_slots):
    return run_hostile(hostile, two_slots, timeout=TIMEOUT)


def test_no_crash_no_hang(result):
    assert not result.timed_out, result.explain()
    if result.returncode < 0:
        pytest.fail(f"killed by {signal.Signals(-result.returncode).name}\n{result.explain()}")


def test_every_row_gets_an_allowed_code(result):
    assert result.returncode == 0, result.explain()
    assert result.mismatches == []
    s = result.summary()
    assert s["rounds_done"] == s["rounds"] == 1
    assert s["mismatches"] == 0


def test_the_table_is_whole(result):
    """Every entry of the 3.0 list was called, and the refusals span the spec's codes."""
    s = result.summary()
    assert s["calls"] >= 900 and s["checks"] >= 40, s
    lines = "\n".join(result.case_lines)
    names = [ln.split()[2].split("(")[0] for ln in result.case_lines if ln.split()[2].startswith("C_")]
    called = set(names)
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "native", "functions.h")) as f:
        declared = {ln.split("(")[0].split()[-1] for ln in f if ln.startswith("CK_RV C_")}
    declared |= {"C_GetFunctionList", "C_GetInterfaceList", "C_GetInterface"}
    assert declared - called == set(), f"never called: {sorted(declared - called)}"
    ckrs = result.ckrs()
    for code in ("ARGUMENTS_BAD", "SESSION_HANDLE_INVALID", "OBJECT_HANDLE_INVALID", "KEY_HANDLE_INVALID",
                 "MECHANISM_PARAM_INVALID", "OPERATION_NOT_INITIALIZED", "OPERATION_ACTIVE",
                 "TEMPLATE_INCONSISTENT", "ATTRIBUTE_TYPE_INVALID", "CRYPTOKI_NOT_INITIALIZED",
                 "CRYPTOKI_ALREADY_INITIALIZED", "BUFFER_TOO_SMALL"):
        assert ckrs[code] > 0, f"no row answered CKR_{code}"
    assert ckrs["GENERAL_ERROR"] == 0 and ckrs["FUNCTION_FAILED"] == 0, lines


# Rows that once failed, each a bug fixed in the provider or the device; the table keeps them.
REGRESSIONS = [
    "C_Login(pin len huge)",                          # FUNCTION_FAILED (MemoryError) -> ARGUMENTS_BAD
    "C_InitToken(pin len huge)",
    "C_SetPIN(new len huge)",
    "C_LoginUser(username len huge)",
    "C_GetAttributeValue(count huge)",                # read past the template: SIGSEGV
    "C_CreateObject(count huge)",
    "C_GenerateRandom(len huge)",                     # wrote 1 MiB chunks past the buffer
    "C_CopyObject(other partition's key)",            # slot 1's handle named slot 0's key
    "C_DestroyObject(other partition's key)",         # ... and destroyed it
    "C_EncryptInit(slot 1 session, slot 0 key)",
    "C_EncryptInit(key handle 0)",                    # OBJECT_HANDLE_INVALID -> KEY_HANDLE_INVALID
    "C_WrapKey(wrapping key handle 0)",               # -> WRAPPING_KEY_HANDLE_INVALID
    "C_UnwrapKey(unwrapping key handle 0)",           # -> UNWRAPPING_KEY_HANDLE_INVALID
    # found by tests/fuzz/entry_fuzzer.py
    "C_SetAttributeValue(other partition's key, empty template)",  # CKR_OK without a handle check
    "C_WrapKey(AES_KEY_WRAP, IV len huge)",           # optional IV read with any length: SIGSEGV
    "C_UnwrapKey(AES_KEY_WRAP, IV len 2^33)",
    "C_FindObjectsInit(CKA_CLASS ~0)",                # SQLite OverflowError -> CKR_DEVICE_ERROR
    "C_FindObjectsInit(CKA_KEY_TYPE ~0)",
]


@pytest.mark.parametrize("label", REGRESSIONS)
def test_regression_rows(result, label):
    rows = [ln for ln in result.case_lines if label in ln]
    assert rows, f"row {label!r} is gone from the table"
    assert all(ln.startswith("ok ") for ln in rows), "\n".join(rows)
