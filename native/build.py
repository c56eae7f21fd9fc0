"""Build libfxpkcs11.so with cffi's embedding API.

The exported C_* functions are generated here from native/functions.h: each is a small C
wrapper that applies the init guard in shim.c and calls a Python entry named fxp_C_*.
C_GetFunctionList, C_GetInterfaceList and C_GetInterface are written in C (shim.c).

    python native/build.py OUTDIR [--entry-module fxpkcs11._entry]
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import site
import sys
import sysconfig
import tempfile
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
LIBRARY_NAME = "libfxpkcs11.so"
NATIVE_MODULE = "_fxpkcs11_native"
C_ONLY = {"C_GetFunctionList", "C_GetInterfaceList", "C_GetInterface"}
# Entries that may run before C_Initialize or that move the init guard themselves.
GUARD_FREE = {"C_Initialize", "C_Finalize"}

_PROTO = re.compile(r"^\s*CK_RV\s+(C_\w+)\s*\((.*)\)\s*;\s*$")


@dataclass(frozen=True)
class Function:
    name: str
    params: str  # "CK_SLOT_ID slotID, CK_FLAGS flags"

    @property
    def arg_names(self) -> list[str]:
        if self.params.strip() in ("", "void"):
            return []
        return [p.strip().split()[-1].lstrip("*") for p in self.params.split(",")]


def read(name: str) -> str:
    with open(os.path.join(HERE, name), encoding="ascii") as f:
        return f.read()


def functions() -> list[Function]:
    out = []
    for line in read("functions.h").splitlines():
        m = _PROTO.match(line)
        if m:
            out.append(Function(m.group(1), m.group(2).strip()))
    return out


def _wrapper(fn: Function) -> str:
    args = ", ".join(fn.arg_names)
    call = f"fxp_{fn.name}({args})"
    if fn.name == "C_Initialize":
        return f"""
CK_RV {fn.name}({fn.params}) {{
  CK_RV rv;
  if (fxp_python_state < 0) return FXP_CKR_GENERAL_ERROR;
  pthread_rwlock_rdlock(&fxp_fork_lock);
  rv = {call};
  pthread_rwlock_unlock(&fxp_fork_lock);
  if (fxp_python_state != 1) {{
    fxp_note_start_failure();
    return FXP_CKR_GENERAL_ERROR;
  }}
  if (rv == FXP_CKR_OK) fxp_initialized = 1;
  return rv;
}}"""
    if fn.name == "C_Finalize":
        return f"""
CK_RV {fn.name}({fn.params}) {{
  CK_RV rv;
  if (!fxp_initialized) return FXP_CKR_CRYPTOKI_NOT_INITIALIZED;
  pthread_rwlock_rdlock(&fxp_fork_lock);
  rv = {call};
  pthread_rwlock_unlock(&fxp_fork_lock);
  if (rv == FXP_CKR_OK) fxp_initialized = 0;
  return rv;
}}"""
    return f"""
CK_RV {fn.name}({fn.params}) {{
  CK_RV rv;
  if (!fxp_initialized) return FXP_CKR_CRYPTOKI_NOT_INITIALIZED;
  pthread_rwlock_rdlock(&fxp_fork_lock);
  rv = {call};
  pthread_rwlock_unlock(&fxp_fork_lock);
  return rv;
}}"""


def _table_filler(fns: list[Function]) -> str:
    members_240 = [f.name for f in fns[:68]]
    lines = ["static void fxp_fill_tables(void) {"]
    for name in members_240:
        lines.append(f"  fxp_list_2_40.{name} = {name};")
    for f in fns:
        lines.append(f"  fxp_list_3_0.{f.name} = {f.name};")
    lines.append("}")
    return "\n".join(lines)


def _python_paths() -> list[str]:
    """Where a C host's interpreter must look for this project and its dependencies."""
    paths = []
    project_root = os.path.dirname(HERE)
    if os.path.isdir(os.path.join(project_root, "fxpkcs11")):
        paths.append(project_root)
    for key in ("purelib", "platlib"):
        p = sysconfig.get_paths()[key]
        if p not in paths:
            paths.append(p)
    for p in site.getsitepackages():
        if p not in paths:
            paths.append(p)
    return paths


def init_code(entry_module: str) -> str:
    paths = _python_paths()
    return f"""
import sys
for _p in reversed({paths!r}):
    if _p not in sys.path:
        sys.path.insert(0, _p)
        if _p.endswith("-packages"):
            import site
            site.addsitedir(_p)
try:
    import importlib
    from {NATIVE_MODULE} import ffi, lib
    importlib.import_module({entry_module!r}).bind(ffi, lib)
    lib.fxp_set_ready()
except BaseException:
    import os, traceback
    _text = "fxpkcs11: the provider failed to start:\\n" + traceback.format_exc()
    try:
        _dir = os.path.join(os.environ.get("XDG_STATE_HOME") or os.path.expanduser("~/.local/state"), "fxpkcs11")
        _log = os.environ.get("FXPKCS11_LOG") or os.path.join(_dir, "fxpkcs11.log")
        os.makedirs(os.path.dirname(_log) or ".", mode=0o700, exist_ok=True)
        with open(_log, "a") as _f:
            _f.write(_text)
    except OSError:
        pass
    raise
"""


def build(outdir: str, entry_module: str = "fxpkcs11._entry", verbose: bool = False) -> str:
    import cffi

    fns = functions()
    if len(fns) != 92:
        raise SystemExit(f"native/functions.h: expected 92 prototypes, found {len(fns)}")
    types = read("pkcs11.h")
    python_fns = [f for f in fns if f.name not in C_ONLY]

    ffi = cffi.FFI()
    ffi.cdef(types)
    ffi.cdef("void fxp_set_ready(void);")
    ffi.embedding_api("\n".join(f"CK_RV fxp_{f.name}({f.params});" for f in python_fns))
    home = sys.base_prefix.replace("\\", "\\\\").replace('"', '\\"')
    source = "\n".join(
        [
            types,
            f'#define FXP_PYTHON_HOME "{home}"',
            read("shim.c"),
            *(f"CK_RV fxp_{f.name}({f.params});" for f in python_fns),
            *(_wrapper(f) for f in python_fns),
            _table_filler(fns),
        ]
    )
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    ffi.set_source(
        NATIVE_MODULE,
        source,
        extra_compile_args=["-O2", "-Wno-deprecated-declarations"],
        extra_link_args=[f"-Wl,-rpath,{libdir}"] if libdir else [],
        libraries=["dl", "pthread"],
    )
    ffi.embedding_init_code(init_code(entry_module))
    os.makedirs(outdir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        built = ffi.compile(tmpdir=tmp, target=LIBRARY_NAME, verbose=verbose)
        dest = os.path.join(os.path.abspath(outdir), LIBRARY_NAME)
        tmp_dest = dest + ".tmp"
        shutil.copyfile(built, tmp_dest)
        os.chmod(tmp_dest, 0o755)
        os.replace(tmp_dest, dest)
    return dest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir")
    ap.add_argument("--entry-module", default="fxpkcs11._entry")
    ap.add_argument("-v", "--verbose", action="store_true")
    a = ap.parse_args()
    print(build(a.outdir, a.entry_module, a.verbose))


if __name__ == "__main__":
    main()
