"""Checks of the hand-written Cryptoki declarations.

Covers native/pkcs11.h (accepted by cffi and by a C compiler, x86_64 layout),
native/functions.h (the 92 prototypes, in function-list order) and
fxpkcs11/ck.py (constant values, reverse lookup, attribute encodings).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

cffi = pytest.importorskip("cffi")

ROOT = Path(__file__).resolve().parents[2]
HEADER = ROOT / "native" / "pkcs11.h"
FUNCTIONS = ROOT / "native" / "functions.h"
CK_PY = ROOT / "fxpkcs11" / "ck.py"

PTR = 8  # pointer / CK_ULONG size on the target (Linux x86_64, LP64)

V30_FUNCTIONS = [
    "C_GetInterfaceList",
    "C_GetInterface",
    "C_LoginUser",
    "C_SessionCancel",
    "C_MessageEncryptInit",
    "C_EncryptMessage",
    "C_EncryptMessageBegin",
    "C_EncryptMessageNext",
    "C_MessageEncryptFinal",
    "C_MessageDecryptInit",
    "C_DecryptMessage",
    "C_DecryptMessageBegin",
    "C_DecryptMessageNext",
    "C_MessageDecryptFinal",
    "C_MessageSignInit",
    "C_SignMessage",
    "C_SignMessageBegin",
    "C_SignMessageNext",
    "C_MessageSignFinal",
    "C_MessageVerifyInit",
    "C_VerifyMessage",
    "C_VerifyMessageBegin",
    "C_VerifyMessageNext",
    "C_MessageVerifyFinal",
]

PROTO_RE = re.compile(r"^CK_RV (C_\w+)\((.*)\);$")


# ---------------------------------------------------------------------------
# helpers / fixtures
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def header_text() -> str:
    return HEADER.read_text()


@pytest.fixture(scope="module")
def ffi(header_text):
    f = cffi.FFI()
    f.cdef(header_text)
    return f


@pytest.fixture(scope="module")
def ck():
    # Load by path so the test does not depend on (or trigger) the package
    # __init__, which may build or load the native module.
    spec = importlib.util.spec_from_file_location("_ck_under_test", CK_PY)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _prototypes() -> list[tuple[str, str]]:
    out = []
    for line in FUNCTIONS.read_text().splitlines():
        m = PROTO_RE.match(line)
        if m:
            out.append((m.group(1), m.group(2)))
    return out


def _struct_members(text: str, struct_name: str) -> list[str]:
    m = re.search(r"struct\s+%s\s*\{(.*?)\};" % re.escape(struct_name), text, re.S)
    assert m, struct_name
    body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
    return re.findall(r"(\w+)\s*;", body)


def _struct_names(text: str) -> list[str]:
    return re.findall(r"typedef\s+struct\s+(\w+)\s*\{", text)


# ---------------------------------------------------------------------------
# native/pkcs11.h
# ---------------------------------------------------------------------------


def test_header_has_no_preprocessor(header_text):
    for n, line in enumerate(header_text.splitlines(), 1):
        assert not line.lstrip().startswith("#"), f"line {n}: {line!r}"
    assert "#" not in header_text


def test_cffi_accepts_header(ffi):
    # Spot check that a few declared types resolve.
    for t in ("CK_ULONG", "CK_RV", "CK_INTERFACE", "CK_C_INITIALIZE_ARGS",
              "CK_NOTIFY", "CK_C_GetFunctionList", "CK_FUNCTION_LIST_PTR_PTR",
              "CK_FUNCTION_LIST_3_0_PTR", "CK_INTERFACE_PTR_PTR"):
        ffi.typeof(t)


def test_basic_type_sizes(ffi):
    assert ffi.sizeof("CK_BYTE") == 1
    assert ffi.sizeof("CK_BBOOL") == 1
    assert ffi.sizeof("CK_CHAR") == 1
    assert ffi.sizeof("CK_UTF8CHAR") == 1
    assert ffi.sizeof("CK_ULONG") == 8
    assert ffi.sizeof("CK_LONG") == 8
    assert ffi.sizeof("CK_VOID_PTR") == 8
    assert ffi.typeof("CK_ULONG") is ffi.typeof("unsigned long")
    assert ffi.typeof("CK_LONG") is ffi.typeof("long")


# Sizes worked out by hand for x86_64 (8-byte CK_ULONG and pointers, natural
# alignment, no packing):
#   CK_FUNCTION_LIST     = CK_VERSION (2 bytes, padded to 8) + 68 * 8 = 552
#   CK_FUNCTION_LIST_3_0 = 8 + 92 * 8                                  = 744
#   CK_TOKEN_INFO        = 32+32+16+16 chars (96) + flags (8) -> 104,
#                          + 10 CK_ULONG (80) -> 184, + 2 CK_VERSION (4) -> 188,
#                          + utcTime[16] -> 204, tail padding -> 208
#   CK_MECHANISM         = type + pointer + length = 3 * 8            = 24
#   CK_ATTRIBUTE         = type + pointer + length = 3 * 8            = 24
#   CK_GCM_PARAMS        = pIv, ulIvLen, ulIvBits, pAAD, ulAADLen,
#                          ulTagBits = 6 * 8                           = 48
#   CK_RSA_PKCS_OAEP_PARAMS = hashAlg, mgf, source, pSourceData,
#                          ulSourceDataLen = 5 * 8                     = 40
#   CK_INFO              = version (2) + 32 chars -> 34, pad -> 40, flags -> 48,
#                          + 32 chars -> 80, + version (2) -> 82, pad  = 88
#   CK_SLOT_INFO         = 64 + 32 chars (96) + flags -> 104 + 2 versions
#                          (4) -> 108, pad                             = 112
#   CK_SESSION_INFO      = 4 * 8                                       = 32
#   CK_DATE              = 4 + 2 + 2 chars                             = 8
#   CK_C_INITIALIZE_ARGS = 4 function pointers + flags + pointer       = 48
#   CK_INTERFACE         = 2 pointers + flags                          = 24
#   CK_HKDF_PARAMS       = 2 bools padded to 8, then 7 * 8             = 64
#   CK_AES_CTR_PARAMS    = 8 + cb[16]                                  = 24
#   CK_SSL3_KEY_MAT_PARAMS = 3 * 8, bool padded to 8, RandomInfo (32),
#                          pointer                                     = 72
EXPECTED_SIZES = {
    "CK_VERSION": 2,
    "CK_FUNCTION_LIST": 8 + 68 * PTR,
    "CK_FUNCTION_LIST_3_0": 8 + 92 * PTR,
    "CK_TOKEN_INFO": 208,
    "CK_MECHANISM": 24,
    "CK_ATTRIBUTE": 24,
    "CK_GCM_PARAMS": 48,
    "CK_RSA_PKCS_OAEP_PARAMS": 40,
    "CK_INFO": 88,
    "CK_SLOT_INFO": 112,
    "CK_SESSION_INFO": 32,
    "CK_DATE": 8,
    "CK_MECHANISM_INFO": 24,
    "CK_C_INITIALIZE_ARGS": 48,
    "CK_INTERFACE": 24,
    "CK_HKDF_PARAMS": 64,
    "CK_EDDSA_PARAMS": 24,
    "CK_GCM_MESSAGE_PARAMS": 48,
    "CK_CCM_PARAMS": 48,
    "CK_RSA_PKCS_PSS_PARAMS": 24,
    "CK_ECDH1_DERIVE_PARAMS": 40,
    "CK_AES_CTR_PARAMS": 24,
    "CK_AES_CBC_ENCRYPT_DATA_PARAMS": 32,
    "CK_DES_CBC_ENCRYPT_DATA_PARAMS": 24,
    "CK_RC2_CBC_PARAMS": 16,
    "CK_SSL3_RANDOM_DATA": 32,
    "CK_SSL3_KEY_MAT_PARAMS": 72,
    "CK_PKCS5_PBKD2_PARAMS2": 72,
}


@pytest.mark.parametrize("name,size", sorted(EXPECTED_SIZES.items()))
def test_struct_sizes(ffi, name, size):
    assert ffi.sizeof(name) == size


def test_selected_offsets(ffi):
    assert ffi.offsetof("CK_TOKEN_INFO", "serialNumber") == 80
    assert ffi.offsetof("CK_TOKEN_INFO", "flags") == 96
    assert ffi.offsetof("CK_TOKEN_INFO", "ulFreePrivateMemory") == 176
    assert ffi.offsetof("CK_TOKEN_INFO", "hardwareVersion") == 184
    assert ffi.offsetof("CK_TOKEN_INFO", "utcTime") == 188
    assert ffi.offsetof("CK_INFO", "flags") == 40
    assert ffi.offsetof("CK_INFO", "libraryVersion") == 80
    assert ffi.offsetof("CK_GCM_PARAMS", "ulIvBits") == 16
    assert ffi.offsetof("CK_GCM_PARAMS", "ulTagBits") == 40
    assert ffi.offsetof("CK_FUNCTION_LIST", "C_Initialize") == 8
    assert ffi.offsetof("CK_FUNCTION_LIST", "C_WaitForSlotEvent") == 8 + 67 * PTR
    assert ffi.offsetof("CK_FUNCTION_LIST_3_0", "C_GetInterfaceList") == 8 + 68 * PTR
    assert ffi.offsetof("CK_FUNCTION_LIST_3_0", "C_MessageVerifyFinal") == 8 + 91 * PTR


def test_function_lists_are_prefix_compatible(header_text):
    v2 = _struct_members(header_text, "CK_FUNCTION_LIST")
    v3 = _struct_members(header_text, "CK_FUNCTION_LIST_3_0")
    assert v2[0] == "version" and v3[0] == "version"
    assert len(v2) == 1 + 68
    assert len(v3) == 1 + 92
    assert v3[: len(v2)] == v2
    assert v3[69:] == V30_FUNCTIONS


def test_function_list_member_types(ffi):
    for list_name in ("CK_FUNCTION_LIST", "CK_FUNCTION_LIST_3_0"):
        for fname, ftype in ffi.typeof(list_name).fields[1:]:
            assert ftype.type is ffi.typeof("CK_" + fname), (list_name, fname)


def test_function_pointer_typedefs_match_prototypes(header_text):
    typedefs = dict(re.findall(r"typedef CK_RV \(\*CK_(C_\w+)\)\((.*?)\);", header_text))
    protos = _prototypes()
    assert len(typedefs) == len(protos)
    for fname, params in protos:
        assert " ".join(typedefs[fname].split()) == " ".join(params.split()), fname


def test_interface_and_initialize_args_layout(ffi):
    iface = [f for f, _ in ffi.typeof("CK_INTERFACE").fields]
    assert iface == ["pInterfaceName", "pFunctionList", "flags"]
    assert ffi.typeof("CK_INTERFACE").fields[0][1].type is ffi.typeof("CK_CHAR_PTR")
    args = [f for f, _ in ffi.typeof("CK_C_INITIALIZE_ARGS").fields]
    assert args == ["CreateMutex", "DestroyMutex", "LockMutex", "UnlockMutex", "flags", "pReserved"]
    gcm = [f for f, _ in ffi.typeof("CK_GCM_PARAMS").fields]
    assert gcm == ["pIv", "ulIvLen", "ulIvBits", "pAAD", "ulAADLen", "ulTagBits"]


def test_every_struct_has_ptr_typedef(header_text, ffi):
    for s in _struct_names(header_text):
        assert ffi.typeof(s + "_PTR") is ffi.typeof(s + " *"), s


def test_cffi_accepts_prototypes_as_python_callbacks(header_text):
    f = cffi.FFI()
    f.cdef(header_text)
    lines = "".join(p + "\n" for p in FUNCTIONS.read_text().splitlines() if p.startswith("CK_RV "))
    f.cdef('extern "Python" {\n' + lines + "}")


def _cc():
    return shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


@pytest.mark.skipif(_cc() is None, reason="no C compiler")
def test_header_compiles_as_c(tmp_path, header_text, ffi):
    # Cross-check the compiler's layout against cffi's for every structure.
    asserts = []
    for s in _struct_names(header_text) + ["CK_FUNCTION_LIST", "CK_FUNCTION_LIST_3_0"]:
        asserts.append(f'_Static_assert(sizeof({s}) == {ffi.sizeof(s)}, "size of {s}");')
    src = tmp_path / "decls.c"
    src.write_text(
        '#include "pkcs11.h"\n'
        '#include "functions.h"\n'
        + "\n".join(asserts)
        + "\n"
        "static CK_FUNCTION_LIST list_v2;\n"
        "static CK_FUNCTION_LIST_3_0 list_v3;\n"
        "CK_RV probe(void);\n"
        "CK_RV probe(void) {\n"
        "    CK_INTERFACE iface;\n"
        "    iface.pInterfaceName = (CK_CHAR_PTR)\"PKCS 11\";\n"
        "    iface.pFunctionList = &list_v3;\n"
        "    iface.flags = 0;\n"
        "    list_v2.C_Initialize = C_Initialize;\n"
        "    list_v3.C_GetInterface = C_GetInterface;\n"
        "    list_v3.C_MessageVerifyFinal = C_MessageVerifyFinal;\n"
        "    return iface.flags + (CK_RV)(list_v2.C_Initialize != 0);\n"
        "}\n"
    )
    proc = subprocess.run(
        [_cc(), "-std=c11", "-c", "-Wall", "-Wextra", "-Werror",
         "-I", str(HEADER.parent), str(src), "-o", str(tmp_path / "decls.o")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr


# ---------------------------------------------------------------------------
# native/functions.h
# ---------------------------------------------------------------------------


def test_functions_file_format():
    for n, line in enumerate(FUNCTIONS.read_text().splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("/*"):
            assert line.rstrip().endswith("*/"), f"line {n}: comment must be one line"
            continue
        assert PROTO_RE.match(line), f"line {n}: {line!r}"


def test_functions_count_and_order(header_text):
    protos = _prototypes()
    names = [n for n, _ in protos]
    assert len(protos) == 92
    assert len(set(names)) == 92
    v2_members = _struct_members(header_text, "CK_FUNCTION_LIST")[1:]
    assert names[:68] == v2_members
    assert names[0] == "C_Initialize" and names[67] == "C_WaitForSlotEvent"
    assert "C_GetFunctionList" in names[:68]
    assert names[68:] == V30_FUNCTIONS


def test_every_parameter_is_named():
    for fname, params in _prototypes():
        for p in params.split(","):
            words = p.split()
            assert len(words) == 2, (fname, p)
            assert re.fullmatch(r"CK_\w+", words[0]), (fname, p)
            assert re.fullmatch(r"[A-Za-z_]\w*", words[1]), (fname, p)


def test_selected_signatures():
    protos = dict(_prototypes())
    assert protos["C_OpenSession"] == (
        "CK_SLOT_ID slotID, CK_FLAGS flags, CK_VOID_PTR pApplication, "
        "CK_NOTIFY Notify, CK_SESSION_HANDLE_PTR phSession")
    assert protos["C_GetInterface"] == (
        "CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion, "
        "CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags")
    assert protos["C_GetInterfaceList"] == "CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount"
    assert protos["C_LoginUser"] == (
        "CK_SESSION_HANDLE hSession, CK_USER_TYPE userType, CK_UTF8CHAR_PTR pPin, "
        "CK_ULONG ulPinLen, CK_UTF8CHAR_PTR pUsername, CK_ULONG ulUsernameLen")
    assert protos["C_GetFunctionList"] == "CK_FUNCTION_LIST_PTR_PTR ppFunctionList"
    assert protos["C_SessionCancel"] == "CK_SESSION_HANDLE hSession, CK_FLAGS flags"
    assert protos["C_MessageSignFinal"] == "CK_SESSION_HANDLE hSession"
    assert protos["C_EncryptMessageNext"].endswith("CK_ULONG_PTR pulCiphertextPartLen, CK_FLAGS flags")
    assert protos["C_VerifyMessage"].endswith("CK_BYTE_PTR pSignature, CK_ULONG ulSignatureLen")


# ---------------------------------------------------------------------------
# fxpkcs11/ck.py
# ---------------------------------------------------------------------------

SPEC_VALUES = {
    # return values
    "CKR_OK": 0x0,
    "CKR_ARGUMENTS_BAD": 0x7,
    "CKR_ATTRIBUTE_TYPE_INVALID": 0x12,
    "CKR_ACTION_PROHIBITED": 0x1B,
    "CKR_KEY_FUNCTION_NOT_PERMITTED": 0x68,
    "CKR_MECHANISM_INVALID": 0x70,
    "CKR_OBJECT_HANDLE_INVALID": 0x82,
    "CKR_PIN_INCORRECT": 0xA0,
    "CKR_PIN_LOCKED": 0xA4,
    "CKR_SESSION_HANDLE_INVALID": 0xB3,
    "CKR_SIGNATURE_INVALID": 0xC0,
    "CKR_TEMPLATE_INCOMPLETE": 0xD0,
    "CKR_USER_NOT_LOGGED_IN": 0x101,
    "CKR_BUFFER_TOO_SMALL": 0x150,
    "CKR_CRYPTOKI_NOT_INITIALIZED": 0x190,
    "CKR_CRYPTOKI_ALREADY_INITIALIZED": 0x191,
    "CKR_PUBLIC_KEY_INVALID": 0x1B9,
    "CKR_FUNCTION_REJECTED": 0x200,
    "CKR_TOKEN_RESOURCE_EXCEEDED": 0x201,
    "CKR_OPERATION_CANCEL_FAILED": 0x202,
    "CKR_VENDOR_DEFINED": 0x80000000,
    # attributes
    "CKA_CLASS": 0x0,
    "CKA_LABEL": 0x3,
    "CKA_UNIQUE_ID": 0x4,
    "CKA_VALUE": 0x11,
    "CKA_NAME_HASH_ALGORITHM": 0x8C,
    "CKA_KEY_TYPE": 0x100,
    "CKA_ID": 0x102,
    "CKA_VERIFY_RECOVER": 0x10B,
    "CKA_MODULUS_BITS": 0x121,
    "CKA_VALUE_LEN": 0x161,
    "CKA_KEY_GEN_MECHANISM": 0x166,
    "CKA_DESTROYABLE": 0x172,
    "CKA_EC_PARAMS": 0x180,
    "CKA_EC_POINT": 0x181,
    "CKA_ALWAYS_AUTHENTICATE": 0x202,
    "CKA_WRAP_TEMPLATE": 0x40000211,
    "CKA_UNWRAP_TEMPLATE": 0x40000212,
    "CKA_DERIVE_TEMPLATE": 0x40000213,
    "CKA_OTP_COUNTER": 0x22E,
    "CKA_OTP_TIME": 0x22F,
    "CKA_ALLOWED_MECHANISMS": 0x40000600,
    "CKA_PROFILE_ID": 0x601,
    "CKA_X2RATCHET_RK": 0x612,
    # classes, keys, certificates, hardware features, profiles
    "CKO_SECRET_KEY": 0x4,
    "CKO_OTP_KEY": 0x8,
    "CKO_PROFILE": 0x9,
    "CKK_EC": 0x3,
    "CKK_AES": 0x1F,
    "CKK_SHA256_HMAC": 0x2B,
    "CKK_EC_EDWARDS": 0x40,
    "CKK_EC_MONTGOMERY": 0x41,
    "CKK_HKDF": 0x42,
    "CKC_X_509": 0x0,
    "CKC_WTLS": 0x2,
    "CKH_USER_INTERFACE": 0x3,
    "CKP_BASELINE_PROVIDER": 0x1,
    "CKP_PUBLIC_CERTIFICATES_TOKEN": 0x4,
    "CKP_PKCS5_PBKD2_HMAC_SHA256": 0x4,
    # mechanisms
    "CKM_RSA_PKCS_KEY_PAIR_GEN": 0x0,
    "CKM_RSA_PKCS_OAEP": 0x9,
    "CKM_RSA_PKCS_PSS": 0xD,
    "CKM_SHA256_RSA_PKCS": 0x40,
    "CKM_SHA256_RSA_PKCS_PSS": 0x43,
    "CKM_SHA3_256_RSA_PKCS": 0x60,
    "CKM_SHA3_224_RSA_PKCS_PSS": 0x67,
    "CKM_SHA256": 0x250,
    "CKM_SHA256_HMAC": 0x251,
    "CKM_SHA3_256": 0x2B0,
    "CKM_SHA3_512_HMAC": 0x2D1,
    "CKM_GENERIC_SECRET_KEY_GEN": 0x350,
    "CKM_TLS12_KDF": 0x3D9,
    "CKM_SP800_108_COUNTER_KDF": 0x3AC,
    "CKM_EC_KEY_PAIR_GEN": 0x1040,
    "CKM_ECDSA": 0x1041,
    "CKM_ECDSA_SHA256": 0x1044,
    "CKM_ECDSA_SHA3_256": 0x1048,
    "CKM_ECDH1_DERIVE": 0x1050,
    "CKM_EC_EDWARDS_KEY_PAIR_GEN": 0x1055,
    "CKM_EC_MONTGOMERY_KEY_PAIR_GEN": 0x1056,
    "CKM_EDDSA": 0x1057,
    "CKM_AES_KEY_GEN": 0x1080,
    "CKM_AES_CBC_PAD": 0x1085,
    "CKM_AES_CTR": 0x1086,
    "CKM_AES_GCM": 0x1087,
    "CKM_AES_CMAC": 0x108A,
    "CKM_AES_GMAC": 0x108E,
    "CKM_AES_KEY_WRAP": 0x2109,
    "CKM_AES_KEY_WRAP_PAD": 0x210A,
    "CKM_AES_KEY_WRAP_KWP": 0x210B,
    "CKM_CHACHA20_POLY1305": 0x4021,
    "CKM_HKDF_DERIVE": 0x402A,
    "CKM_HKDF_DATA": 0x402B,
    "CKM_HKDF_KEY_GEN": 0x402C,
    "CKM_IKE1_EXTENDED_DERIVE": 0x4031,
    "CKM_VENDOR_DEFINED": 0x80000000,
    # flags
    "CKF_TOKEN_PRESENT": 0x1,
    "CKF_RNG": 0x1,
    "CKF_LOGIN_REQUIRED": 0x4,
    "CKF_TOKEN_INITIALIZED": 0x400,
    "CKF_USER_PIN_COUNT_LOW": 0x10000,
    "CKF_USER_PIN_LOCKED": 0x40000,
    "CKF_SO_PIN_LOCKED": 0x400000,
    "CKF_RW_SESSION": 0x2,
    "CKF_SERIAL_SESSION": 0x4,
    "CKF_HW": 0x1,
    "CKF_MESSAGE_ENCRYPT": 0x2,
    "CKF_ENCRYPT": 0x100,
    "CKF_SIGN": 0x800,
    "CKF_GENERATE_KEY_PAIR": 0x10000,
    "CKF_DERIVE": 0x80000,
    "CKF_EC_OID": 0x800000,
    "CKF_EC_CURVENAME": 0x4000000,
    "CKF_EXTENSION": 0x80000000,
    "CKF_OS_LOCKING_OK": 0x2,
    "CKF_DONT_BLOCK": 0x1,
    "CKF_ARRAY_ATTRIBUTE": 0x40000000,
    "CKF_INTERFACE_FORK_SAFE": 0x1,
    "CKF_END_OF_MESSAGE": 0x1,
    "CKF_HKDF_SALT_KEY": 0x4,
    # users, states, misc
    "CKU_SO": 0,
    "CKU_USER": 1,
    "CKU_CONTEXT_SPECIFIC": 2,
    "CKS_RW_SO_FUNCTIONS": 4,
    "CKN_OTP_CHANGED": 1,
    "CKG_MGF1_SHA1": 1,
    "CKG_MGF1_SHA224": 5,
    "CKG_MGF1_SHA3_512": 9,
    "CKG_GENERATE_RANDOM": 3,
    "CKZ_DATA_SPECIFIED": 1,
    "CKZ_SALT_SPECIFIED": 1,
    "CKD_NULL": 1,
    "CKD_SHA256_KDF": 6,
    "CKD_SHA3_256_KDF": 0xB,
    "CKD_SHA256_KDF_SP800": 0x10,
    "CK_UNAVAILABLE_INFORMATION": 0xFFFFFFFFFFFFFFFF,
    "CK_EFFECTIVELY_INFINITE": 0,
    "CK_INVALID_HANDLE": 0,
    "CK_TRUE": 1,
    "CK_FALSE": 0,
    "CRYPTOKI_VERSION_MAJOR": 3,
    "CRYPTOKI_VERSION_MINOR": 0,
}


@pytest.mark.parametrize("const,value", sorted(SPEC_VALUES.items()))
def test_spec_values(ck, const, value):
    assert getattr(ck, const) == value


def test_constants_are_plain_ints(ck):
    count = 0
    for k, v in vars(ck).items():
        if re.fullmatch(r"CK[A-Z]?_[A-Z0-9_]+|CRYPTOKI_\w+", k):
            assert type(v) is int, k
            assert v >= 0, k
            count += 1
    assert count > 800


def test_unavailable_information_fits_ulong(ck, ffi):
    assert ck.CK_UNAVAILABLE_INFORMATION == (1 << (8 * ffi.sizeof("CK_ULONG"))) - 1
    assert ffi.cast("CK_ULONG", -1) == ffi.cast("CK_ULONG", ck.CK_UNAVAILABLE_INFORMATION)


def test_no_conflicting_values_within_core_groups(ck):
    # Distinct names in these groups may only share a value when the
    # specification defines them as aliases.
    aliases = {
        ("CKK_ECDSA", "CKK_EC"), ("CKK_CAST5", "CKK_CAST128"),
        ("CKA_ECDSA_PARAMS", "CKA_EC_PARAMS"), ("CKA_SUBPRIME_BITS", "CKA_SUB_PRIME_BITS"),
        ("CKM_ECDSA_KEY_PAIR_GEN", "CKM_EC_KEY_PAIR_GEN"),
        ("CKM_DSA_PROBABLISTIC_PARAMETER_GEN", "CKM_DSA_PROBABILISTIC_PARAMETER_GEN"),
        ("CKM_PBE_MD5_CAST5_CBC", "CKM_PBE_MD5_CAST128_CBC"),
        ("CKM_PBE_SHA1_CAST5_CBC", "CKM_PBE_SHA1_CAST128_CBC"),
    }
    for prefix in ("CKR_", "CKA_", "CKM_", "CKK_", "CKO_", "CKD_", "CKC_", "CKS_", "CKU_"):
        seen: dict[int, str] = {}
        for k, v in vars(ck).items():
            if not (k.startswith(prefix) and type(v) is int):
                continue
            if v in seen:
                first = seen[v]
                ok = (first, k) in aliases or (
                    first.replace("CAST5", "CAST128") == k
                    or first.replace("_KEY_DERIVE", "_KEY_DERIVATION") == k)
                assert ok, (first, k)
            else:
                seen[v] = k


def test_name_reverse_lookup(ck):
    assert ck.name(0x0, "CKR_") == "CKR_OK"
    assert ck.name(0xA4, "CKR_") == "CKR_PIN_LOCKED"
    assert ck.name(0x1087, "CKM_") == "CKM_AES_GCM"
    assert ck.name(0x1040, "CKM_") == "CKM_ECDSA_KEY_PAIR_GEN"  # first defined wins
    assert ck.name(0x3, "CKK_") == "CKK_ECDSA"
    assert ck.name(0x40000600, "CKA_") == "CKA_ALLOWED_MECHANISMS"
    assert ck.name(0x4, "CKO_") == "CKO_SECRET_KEY"
    assert ck.name(1, "CKP_PKCS5_PBKD2_") == "CKP_PKCS5_PBKD2_HMAC_SHA1"
    assert ck.name(2, "CKG_MGF1_") == "CKG_MGF1_SHA256"
    assert ck.name(0x40000, "CKF_USER_") == "CKF_USER_PIN_LOCKED"
    unknown = ck.name(0x80001234, "CKR_")
    assert unknown.lower() == "0x80001234"
    assert ck.name(0x1087, "CKR_").lower() == "0x00001087"


def test_name_is_lazy(ck):
    spec = importlib.util.spec_from_file_location("_ck_fresh", CK_PY)
    fresh = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fresh)
    assert fresh._REVERSE == {}
    fresh.name(0, "CKR_")
    assert set(fresh._REVERSE) == {"CKR_"}


ATTR_KINDS = {"bool", "ulong", "date", "attrs", "mechs", "utf8", "bytes"}


def test_attr_kind_covers_every_attribute(ck):
    cka = {k: v for k, v in vars(ck).items() if k.startswith("CKA_") and type(v) is int}
    assert len(cka) > 100
    missing = sorted(k for k, v in cka.items() if v not in ck.ATTR_KIND)
    assert not missing
    assert set(ck.ATTR_KIND) <= set(cka.values())
    assert set(ck.ATTR_KIND.values()) <= ATTR_KINDS


def test_attr_kind_values(ck):
    kind = ck.ATTR_KIND
    expect = {
        "bool": ["CKA_TOKEN", "CKA_PRIVATE", "CKA_SENSITIVE", "CKA_ENCRYPT", "CKA_SIGN",
                 "CKA_EXTRACTABLE", "CKA_LOCAL", "CKA_NEVER_EXTRACTABLE", "CKA_MODIFIABLE",
                 "CKA_COPYABLE", "CKA_DESTROYABLE", "CKA_TRUSTED", "CKA_WRAP_WITH_TRUSTED",
                 "CKA_ALWAYS_AUTHENTICATE", "CKA_RESET_ON_INIT", "CKA_HAS_RESET", "CKA_COLOR",
                 "CKA_OTP_USER_FRIENDLY_MODE"],
        "ulong": ["CKA_CLASS", "CKA_KEY_TYPE", "CKA_CERTIFICATE_TYPE", "CKA_VALUE_LEN",
                  "CKA_MODULUS_BITS", "CKA_KEY_GEN_MECHANISM", "CKA_CERTIFICATE_CATEGORY",
                  "CKA_JAVA_MIDP_SECURITY_DOMAIN", "CKA_NAME_HASH_ALGORITHM",
                  "CKA_MECHANISM_TYPE", "CKA_HW_FEATURE_TYPE", "CKA_PIXEL_X", "CKA_PIXEL_Y",
                  "CKA_BITS_PER_PIXEL", "CKA_PRIME_BITS", "CKA_SUBPRIME_BITS",
                  "CKA_VALUE_BITS", "CKA_OTP_LENGTH", "CKA_OTP_FORMAT", "CKA_PROFILE_ID"],
        "date": ["CKA_START_DATE", "CKA_END_DATE"],
        "attrs": ["CKA_WRAP_TEMPLATE", "CKA_UNWRAP_TEMPLATE", "CKA_DERIVE_TEMPLATE"],
        "mechs": ["CKA_ALLOWED_MECHANISMS"],
        "utf8": ["CKA_LABEL", "CKA_APPLICATION", "CKA_URL", "CKA_UNIQUE_ID",
                 "CKA_CHAR_SETS", "CKA_MIME_TYPES", "CKA_OTP_USER_IDENTIFIER"],
        "bytes": ["CKA_ID", "CKA_VALUE", "CKA_MODULUS", "CKA_PUBLIC_EXPONENT", "CKA_EC_PARAMS",
                  "CKA_EC_POINT", "CKA_SUBJECT", "CKA_ISSUER", "CKA_SERIAL_NUMBER",
                  "CKA_CHECK_VALUE", "CKA_OBJECT_ID", "CKA_PUBLIC_KEY_INFO",
                  "CKA_SUPPORTED_CMS_ATTRIBUTES", "CKA_OTP_COUNTER"],
    }
    for k, names in expect.items():
        for n in names:
            assert kind[getattr(ck, n)] == k, n
    # Only the array attributes carry CKF_ARRAY_ATTRIBUTE.
    for attr, k in kind.items():
        is_array = bool(attr & ck.CKF_ARRAY_ATTRIBUTE) and attr != ck.CKA_VENDOR_DEFINED
        assert is_array == (k in ("attrs", "mechs")), ck.name(attr, "CKA_")


def test_ulong_encoding_roundtrip_with_header(ck, ffi):
    # A CK_ULONG attribute value is the native 8-byte little-endian integer.
    buf = ffi.new("CK_ULONG *", ck.CKO_SECRET_KEY)
    assert bytes(ffi.buffer(buf)) == struct.pack("<Q", ck.CKO_SECRET_KEY)
    date = ffi.new("CK_DATE *")
    assert ffi.sizeof(date[0]) == 8
