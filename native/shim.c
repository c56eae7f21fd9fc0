/*
 * C side of libfxpkcs11.so: only what must be C.
 *
 * - The function tables (v2.40 list, 3.0 list, interfaces), answered without Python.
 * - The init guard: every entry except C_Initialize returns CKR_CRYPTOKI_NOT_INITIALIZED
 *   until a C_Initialize succeeded in this process; if Python cannot start, C_Initialize
 *   returns CKR_GENERAL_ERROR (cffi would otherwise hand back 0, which is CKR_OK).
 * - Pinning libpython with RTLD_GLOBAL before Python starts, so extension modules import
 *   in a C host that dlopened us with RTLD_LOCAL.
 * - Fork handling: a child starts uninitialized and must call C_Initialize again.
 *
 * This file is included into the cffi-generated source after the generated wrappers'
 * prototypes; build.py appends the wrappers themselves.
 */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define FXP_CKR_OK 0x0UL
#define FXP_CKR_GENERAL_ERROR 0x5UL
#define FXP_CKR_ARGUMENTS_BAD 0x7UL
#define FXP_CKR_FUNCTION_NOT_SUPPORTED 0x54UL
#define FXP_CKR_BUFFER_TOO_SMALL 0x150UL
#define FXP_CKR_CRYPTOKI_NOT_INITIALIZED 0x190UL

/* 0 = Python not started, 1 = running, -1 = its start failed (stays failed). */
static volatile int fxp_python_state = 0;
/* Set by a successful C_Initialize, cleared by C_Finalize and in a forked child. */
static volatile int fxp_initialized = 0;

/* Called by the embedded init code once the provider is importable and bound. */
static void fxp_set_ready(void) { fxp_python_state = 1; }

static void fxp_note_start_failure(void) {
  fxp_python_state = -1;
  fprintf(stderr, "fxpkcs11: the provider could not start; every call returns an error "
                  "(see fxpkcs11.log for the cause)\n");
}

/* Every call holds this lock's read side; a fork from a C host takes the write side, so
   no thread is inside the library (holding a SQLite, OpenSSL or provider lock that the
   child would inherit locked) at the moment of the fork. */
static pthread_rwlock_t fxp_fork_lock;
static int fxp_fork_took_lock = 0;

/* Python's own fork protocol, for hosts that fork from C while Python runs in them. */
static PyGILState_STATE fxp_fork_gil;
static int fxp_fork_took_gil = 0;

static void fxp_init_fork_lock(void) {
  pthread_rwlockattr_t attr;
  pthread_rwlockattr_init(&attr);
  /* Writer preference: a waiting fork is not starved by a stream of calls. */
  pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&fxp_fork_lock, &attr);
  pthread_rwlockattr_destroy(&attr);
}

static void fxp_before_fork(void) {
  fxp_fork_took_gil = 0;
  fxp_fork_took_lock = 0;
  if (fxp_python_state != 1 || !Py_IsInitialized()) return;
  /* A Python host forking with os.fork() holds the GIL here: waiting for other calls
     (which need the GIL to finish) would deadlock, and CPython runs its own protocol. */
  if (PyGILState_Check()) return;
  pthread_rwlock_wrlock(&fxp_fork_lock);
  fxp_fork_took_lock = 1;
  fxp_fork_gil = PyGILState_Ensure();
  PyOS_BeforeFork();
  fxp_fork_took_gil = 1;
}

static void fxp_after_fork_parent(void) {
  if (fxp_fork_took_gil) {
    PyOS_AfterFork_Parent();
    PyGILState_Release(fxp_fork_gil);
    fxp_fork_took_gil = 0;
  }
  if (fxp_fork_took_lock) {
    pthread_rwlock_unlock(&fxp_fork_lock);
    fxp_fork_took_lock = 0;
  }
}

static void fxp_after_fork_child(void) {
  fxp_initialized = 0;
  if (fxp_fork_took_gil) {
    PyOS_AfterFork_Child();
    PyGILState_Release(fxp_fork_gil);
    fxp_fork_took_gil = 0;
  }
  fxp_init_fork_lock();
  fxp_fork_took_lock = 0;
}

__attribute__((constructor)) static void fxp_load(void) {
  Dl_info info;
  /* A host that dlopened us RTLD_LOCAL left libpython's symbols private to us;
     extension modules (_cffi_backend, cryptography) need them global. */
  if (dladdr((void *)&Py_IsInitialized, &info) && info.dli_fname)
    dlopen(info.dli_fname, RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
  if (!Py_IsInitialized() && FXP_PYTHON_HOME[0]) {
    /* The host is not Python: make the interpreter find the stdlib it was built with,
       not whatever lies near the host executable. */
    static wchar_t home[4096];
    if (mbstowcs(home, FXP_PYTHON_HOME, 4095) != (size_t)-1) Py_SetPythonHome(home);
  }
  fxp_init_fork_lock();
  pthread_atfork(fxp_before_fork, fxp_after_fork_parent, fxp_after_fork_child);
}

/* ---- function tables, filled by build.py's generated fxp_fill_tables() ---- */
static CK_FUNCTION_LIST fxp_list_2_40;
static CK_FUNCTION_LIST_3_0 fxp_list_3_0;
static CK_INTERFACE fxp_interfaces[2];
static const char fxp_interface_name[] = "PKCS 11";
static pthread_once_t fxp_tables_once = PTHREAD_ONCE_INIT;
static void fxp_fill_tables(void);

static void fxp_tables(void) {
  fxp_list_2_40.version.major = 2;
  fxp_list_2_40.version.minor = 40;
  fxp_list_3_0.version.major = 3;
  fxp_list_3_0.version.minor = 0;
  fxp_fill_tables();
  fxp_interfaces[0].pInterfaceName = (CK_CHAR_PTR)fxp_interface_name;
  fxp_interfaces[0].pFunctionList = &fxp_list_3_0;
  fxp_interfaces[0].flags = 0;
  fxp_interfaces[1].pInterfaceName = (CK_CHAR_PTR)fxp_interface_name;
  fxp_interfaces[1].pFunctionList = &fxp_list_2_40;
  fxp_interfaces[1].flags = 0;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR ppFunctionList) {
  if (!ppFunctionList) return FXP_CKR_ARGUMENTS_BAD;
  pthread_once(&fxp_tables_once, fxp_tables);
  *ppFunctionList = &fxp_list_2_40;
  return FXP_CKR_OK;
}

CK_RV C_GetInterfaceList(CK_INTERFACE_PTR pInterfacesList, CK_ULONG_PTR pulCount) {
  if (!pulCount) return FXP_CKR_ARGUMENTS_BAD;
  pthread_once(&fxp_tables_once, fxp_tables);
  if (!pInterfacesList) {
    *pulCount = 2;
    return FXP_CKR_OK;
  }
  if (*pulCount < 2) {
    *pulCount = 2;
    return FXP_CKR_BUFFER_TOO_SMALL;
  }
  memcpy(pInterfacesList, fxp_interfaces, sizeof fxp_interfaces);
  *pulCount = 2;
  return FXP_CKR_OK;
}

CK_RV C_GetInterface(CK_UTF8CHAR_PTR pInterfaceName, CK_VERSION_PTR pVersion,
                     CK_INTERFACE_PTR_PTR ppInterface, CK_FLAGS flags) {
  if (!ppInterface) return FXP_CKR_ARGUMENTS_BAD;
  pthread_once(&fxp_tables_once, fxp_tables);
  if (pInterfaceName && strcmp((const char *)pInterfaceName, fxp_interface_name) != 0)
    return FXP_CKR_ARGUMENTS_BAD;
  for (int i = 0; i < 2; i++) {
    CK_VERSION *v = (CK_VERSION *)fxp_interfaces[i].pFunctionList;
    if (pVersion && (pVersion->major != v->major || pVersion->minor != v->minor)) continue;
    if ((flags & fxp_interfaces[i].flags) != flags) continue;
    *ppInterface = &fxp_interfaces[i];
    return FXP_CKR_OK;
  }
  return FXP_CKR_ARGUMENTS_BAD;
}
