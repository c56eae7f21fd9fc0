/*
 * A C host for libfxpkcs11.so, used by tests/test_traps.py.
 *
 *   host basic   MODULE PIN     initialize, token info, RSA-2048 key pair, sign, verify
 *   host uninit  MODULE         every entry refuses with CKR_CRYPTOKI_NOT_INITIALIZED
 *                               before C_Initialize; the function lists still work
 *   host initfail MODULE        a library whose Python side cannot start: C_Initialize
 *                               returns CKR_GENERAL_ERROR, everything else refuses
 *   host fork    MODULE PIN     fork() while a second thread is inside the library
 *   host threads MODULE PIN N   N threads sign at once (RSA and ECDSA); the signatures
 *                               and public keys go to stdout for an outside check
 *
 * The module is loaded with dlopen(RTLD_NOW | RTLD_LOCAL), as PKCS #11 hosts do.
 * Exit status 0 = pass; diagnostics go to stderr.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../../native/pkcs11.h"

#define CKR_OK 0x0UL
#define CKR_GENERAL_ERROR 0x5UL
#define CKR_FUNCTION_FAILED 0x6UL
#define CKR_ARGUMENTS_BAD 0x7UL
#define CKR_SESSION_HANDLE_INVALID 0xB3UL
#define CKR_SIGNATURE_INVALID 0xC0UL
#define CKR_USER_ALREADY_LOGGED_IN 0x100UL
#define CKR_CRYPTOKI_NOT_INITIALIZED 0x190UL
#define CKR_CRYPTOKI_ALREADY_INITIALIZED 0x191UL

#define CKF_OS_LOCKING_OK 0x2UL
#define CKF_RW_SESSION 0x2UL
#define CKF_SERIAL_SESSION 0x4UL
#define CKU_USER 1UL

#define CKO_PUBLIC_KEY 2UL
#define CKO_PRIVATE_KEY 3UL
#define CKA_CLASS 0x0UL
#define CKA_TOKEN 0x1UL
#define CKA_PRIVATE 0x2UL
#define CKA_LABEL 0x3UL
#define CKA_SIGN 0x108UL
#define CKA_VERIFY 0x10AUL
#define CKA_MODULUS 0x120UL
#define CKA_MODULUS_BITS 0x121UL
#define CKA_PUBLIC_EXPONENT 0x122UL
#define CKA_EC_PARAMS 0x180UL
#define CKA_EC_POINT 0x181UL

#define CKM_RSA_PKCS_KEY_PAIR_GEN 0x0UL
#define CKM_SHA256_RSA_PKCS 0x40UL
#define CKM_EC_KEY_PAIR_GEN 0x1040UL
#define CKM_ECDSA_SHA256 0x1044UL

static CK_FUNCTION_LIST *F;
static CK_FUNCTION_LIST_3_0 *F30;
static void *module_handle;
static CK_BBOOL yes = 1, no = 0;
static const CK_BYTE P256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};

/* An expression, so that `return FAIL(...), 0;` works. */
#define FAIL(...)                                                                   \
  (fprintf(stderr, "host: %s:%d: ", __func__, __LINE__), fprintf(stderr, __VA_ARGS__), \
   fprintf(stderr, "\n"))

/* Evaluate a call; on a result other than `want`, report and return 0 from the caller. */
#define EXPECT(call, want)                                                          \
  do {                                                                              \
    CK_RV rv_ = (call);                                                             \
    if (rv_ != (CK_RV)(want)) {                                                     \
      FAIL("%s returned 0x%lx, expected 0x%lx", #call, rv_, (CK_RV)(want));         \
      return 0;                                                                     \
    }                                                                               \
  } while (0)
#define OK(call) EXPECT(call, CKR_OK)

static int load(const char *path) {
  CK_RV (*get_list)(CK_FUNCTION_LIST_PTR_PTR);
  CK_RV (*get_iface)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS);
  CK_INTERFACE_PTR iface = NULL;
  CK_VERSION v30 = {3, 0};

  module_handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!module_handle) {
    FAIL("dlopen: %s", dlerror());
    return 0;
  }
  *(void **)&get_list = dlsym(module_handle, "C_GetFunctionList");
  *(void **)&get_iface = dlsym(module_handle, "C_GetInterface");
  if (!get_list || !get_iface) {
    FAIL("dlsym: %s", dlerror());
    return 0;
  }
  OK(get_list(&F));
  if (!F || F->version.major != 2 || !F->C_Initialize) {
    FAIL("bad CK_FUNCTION_LIST");
    return 0;
  }
  OK(get_iface((CK_UTF8CHAR_PTR) "PKCS 11", &v30, &iface, 0));
  F30 = (CK_FUNCTION_LIST_3_0 *)iface->pFunctionList;
  if (!F30 || F30->version.major != 3) {
    FAIL("bad CK_FUNCTION_LIST_3_0");
    return 0;
  }
  return 1;
}

static CK_RV initialize(void) {
  CK_C_INITIALIZE_ARGS args;
  memset(&args, 0, sizeof args);
  args.flags = CKF_OS_LOCKING_OK;
  return F->C_Initialize(&args);
}

static void hex(FILE *out, const CK_BYTE *p, CK_ULONG n) {
  for (CK_ULONG i = 0; i < n; i++) fprintf(out, "%02x", p[i]);
}

/* ------------------------------------------------------------------ keys and signatures */

static int open_user_session(CK_SLOT_ID slot, const char *pin, CK_SESSION_HANDLE *h) {
  CK_RV rv;
  OK(F->C_OpenSession(slot, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, h));
  rv = F->C_Login(*h, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
  /* The login state belongs to the token: another session may have logged in already. */
  if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
    FAIL("C_Login returned 0x%lx", rv);
    return 0;
  }
  return 1;
}

static int first_slot(CK_SLOT_ID *slot) {
  CK_SLOT_ID slots[16];
  CK_ULONG n = 0;
  OK(F->C_GetSlotList(1, NULL, &n));
  if (n < 1 || n > 16) {
    FAIL("C_GetSlotList counted %lu slots", n);
    return 0;
  }
  OK(F->C_GetSlotList(1, slots, &n));
  *slot = slots[0];
  return 1;
}

static int rsa_pair(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv) {
  CK_MECHANISM mech = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
  CK_ULONG bits = 2048;
  CK_BYTE e[] = {1, 0, 1};
  CK_ATTRIBUTE pt[] = {
      {CKA_TOKEN, &no, 1}, {CKA_VERIFY, &yes, 1},
      {CKA_MODULUS_BITS, &bits, sizeof bits}, {CKA_PUBLIC_EXPONENT, e, sizeof e},
  };
  CK_ATTRIBUTE kt[] = {{CKA_TOKEN, &no, 1}, {CKA_PRIVATE, &yes, 1}, {CKA_SIGN, &yes, 1}};
  OK(F->C_GenerateKeyPair(h, &mech, pt, 4, kt, 3, pub, priv));
  return 1;
}

static int ec_pair(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE *pub, CK_OBJECT_HANDLE *priv) {
  CK_MECHANISM mech = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
  CK_ATTRIBUTE pt[] = {{CKA_TOKEN, &no, 1}, {CKA_VERIFY, &yes, 1},
                       {CKA_EC_PARAMS, (void *)P256, sizeof P256}};
  CK_ATTRIBUTE kt[] = {{CKA_TOKEN, &no, 1}, {CKA_PRIVATE, &yes, 1}, {CKA_SIGN, &yes, 1}};
  OK(F->C_GenerateKeyPair(h, &mech, pt, 3, kt, 3, pub, priv));
  return 1;
}

/* Sign with a length query first, then verify the signature with the public key. */
static int sign_verify(CK_SESSION_HANDLE h, CK_MECHANISM_TYPE type, CK_OBJECT_HANDLE priv,
                       CK_OBJECT_HANDLE pub, const CK_BYTE *msg, CK_ULONG msg_len, CK_BYTE *sig,
                       CK_ULONG *sig_len) {
  CK_MECHANISM mech = {type, NULL, 0};
  CK_ULONG cap = *sig_len, n = 0;
  OK(F->C_SignInit(h, &mech, priv));
  OK(F->C_Sign(h, (CK_BYTE_PTR)msg, msg_len, NULL, &n));
  if (n == 0 || n > cap) {
    FAIL("signature length %lu (buffer %lu)", n, cap);
    return 0;
  }
  OK(F->C_Sign(h, (CK_BYTE_PTR)msg, msg_len, sig, &n));
  *sig_len = n;
  OK(F->C_VerifyInit(h, &mech, pub));
  OK(F->C_Verify(h, (CK_BYTE_PTR)msg, msg_len, sig, n));
  return 1;
}

static int get_attr(CK_SESSION_HANDLE h, CK_OBJECT_HANDLE obj, CK_ATTRIBUTE_TYPE type, CK_BYTE *buf,
                    CK_ULONG *len) {
  CK_ATTRIBUTE a = {type, NULL, 0};
  OK(F->C_GetAttributeValue(h, obj, &a, 1));
  if (a.ulValueLen > *len) {
    FAIL("attribute 0x%lx is %lu bytes", type, a.ulValueLen);
    return 0;
  }
  a.pValue = buf;
  OK(F->C_GetAttributeValue(h, obj, &a, 1));
  *len = a.ulValueLen;
  return 1;
}

/* ------------------------------------------------------------------ refusals */

/* Each entry point of the 3.0 list in order, as a plain pointer, with its name. */
static const char *const NAMES_3_0[] = {
    "C_Initialize", "C_Finalize", "C_GetInfo", "C_GetFunctionList", "C_GetSlotList",
    "C_GetSlotInfo", "C_GetTokenInfo", "C_GetMechanismList", "C_GetMechanismInfo", "C_InitToken",
    "C_InitPIN", "C_SetPIN", "C_OpenSession", "C_CloseSession", "C_CloseAllSessions",
    "C_GetSessionInfo", "C_GetOperationState", "C_SetOperationState", "C_Login", "C_Logout",
    "C_CreateObject", "C_CopyObject", "C_DestroyObject", "C_GetObjectSize", "C_GetAttributeValue",
    "C_SetAttributeValue", "C_FindObjectsInit", "C_FindObjects", "C_FindObjectsFinal",
    "C_EncryptInit", "C_Encrypt", "C_EncryptUpdate", "C_EncryptFinal", "C_DecryptInit",
    "C_Decrypt", "C_DecryptUpdate", "C_DecryptFinal", "C_DigestInit", "C_Digest",
    "C_DigestUpdate", "C_DigestKey", "C_DigestFinal", "C_SignInit", "C_Sign", "C_SignUpdate",
    "C_SignFinal", "C_SignRecoverInit", "C_SignRecover", "C_VerifyInit", "C_Verify",
    "C_VerifyUpdate", "C_VerifyFinal", "C_VerifyRecoverInit", "C_VerifyRecover",
    "C_DigestEncryptUpdate", "C_DecryptDigestUpdate", "C_SignEncryptUpdate",
    "C_DecryptVerifyUpdate", "C_GenerateKey", "C_GenerateKeyPair", "C_WrapKey", "C_UnwrapKey",
    "C_DeriveKey", "C_SeedRandom", "C_GenerateRandom", "C_GetFunctionStatus",
    "C_CancelFunction", "C_WaitForSlotEvent", "C_GetInterfaceList", "C_GetInterface",
    "C_LoginUser", "C_SessionCancel", "C_MessageEncryptInit", "C_EncryptMessage",
    "C_EncryptMessageBegin", "C_EncryptMessageNext", "C_MessageEncryptFinal",
    "C_MessageDecryptInit", "C_DecryptMessage", "C_DecryptMessageBegin", "C_DecryptMessageNext",
    "C_MessageDecryptFinal", "C_MessageSignInit", "C_SignMessage", "C_SignMessageBegin",
    "C_SignMessageNext", "C_MessageSignFinal", "C_MessageVerifyInit", "C_VerifyMessage",
    "C_VerifyMessageBegin", "C_VerifyMessageNext", "C_MessageVerifyFinal",
};
#define N_3_0 (sizeof NAMES_3_0 / sizeof NAMES_3_0[0])

/* Functions answered in C without any state: they must work at any time. */
static int stateless(const char *name) {
  return !strcmp(name, "C_Initialize") || !strcmp(name, "C_GetFunctionList") ||
         !strcmp(name, "C_GetInterfaceList") || !strcmp(name, "C_GetInterface");
}

typedef CK_RV (*any_fn)(CK_ULONG, CK_ULONG, CK_ULONG, CK_ULONG, CK_ULONG, CK_ULONG, CK_ULONG,
                        CK_ULONG);

/*
 * Every entry except C_Initialize and the list functions must answer `want` now, whatever
 * its arguments (all zero here: a refusing entry must not look at them). First a dozen
 * typed calls, then a sweep over the whole 3.0 list. Each CKR goes to `out`.
 */
static int refuses(CK_RV want, FILE *out) {
  CK_INFO info;
  CK_SLOT_INFO slot_info;
  CK_TOKEN_INFO token_info;
  CK_SESSION_INFO session_info;
  CK_MECHANISM_INFO mech_info;
  CK_MECHANISM mech = {CKM_SHA256_RSA_PKCS, NULL, 0};
  CK_SESSION_HANDLE h = 0;
  CK_ULONG n = 0;
  CK_BYTE buf[64];
  int good = 1;
  struct {
    const char *name;
    CK_RV rv;
  } typed[] = {
      {"C_GetInfo", F->C_GetInfo(&info)},
      {"C_GetSlotList", F->C_GetSlotList(0, NULL, &n)},
      {"C_GetSlotInfo", F->C_GetSlotInfo(0, &slot_info)},
      {"C_GetTokenInfo", F->C_GetTokenInfo(0, &token_info)},
      {"C_GetMechanismList", F->C_GetMechanismList(0, NULL, &n)},
      {"C_GetMechanismInfo", F->C_GetMechanismInfo(0, CKM_SHA256_RSA_PKCS, &mech_info)},
      {"C_OpenSession", F->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &h)},
      {"C_CloseSession", F->C_CloseSession(1)},
      {"C_CloseAllSessions", F->C_CloseAllSessions(0)},
      {"C_GetSessionInfo", F->C_GetSessionInfo(1, &session_info)},
      {"C_Login", F->C_Login(1, CKU_USER, (CK_UTF8CHAR_PTR) "1234", 4)},
      {"C_SignInit", F->C_SignInit(1, &mech, 1)},
      {"C_GenerateRandom", F->C_GenerateRandom(1, buf, sizeof buf)},
      {"C_WaitForSlotEvent", F->C_WaitForSlotEvent(1, NULL, NULL)},
      {"C_Finalize", F->C_Finalize(NULL)},
  };
  for (size_t i = 0; i < sizeof typed / sizeof typed[0]; i++) {
    fprintf(out, "%s=0x%lx\n", typed[i].name, typed[i].rv);
    if (typed[i].rv != want) {
      FAIL("%s returned 0x%lx, expected 0x%lx", typed[i].name, typed[i].rv, want);
      good = 0;
    }
  }
  if (h != 0) {
    FAIL("C_OpenSession wrote a handle while refusing");
    good = 0;
  }

  if ((sizeof *F30 - offsetof(CK_FUNCTION_LIST_3_0, C_Initialize)) / sizeof(void *) != N_3_0) {
    FAIL("CK_FUNCTION_LIST_3_0 does not hold %zu entries", (size_t)N_3_0);
    return 0;
  }
  for (size_t i = 0; i < N_3_0; i++) {
    any_fn fn;
    void *sym = dlsym(module_handle, NAMES_3_0[i]);
    memcpy(&fn, (char *)F30 + offsetof(CK_FUNCTION_LIST_3_0, C_Initialize) + i * sizeof(void *),
           sizeof fn);
    if (!fn || (void *)fn != sym) {
      FAIL("list entry %zu is not the exported %s", i, NAMES_3_0[i]);
      good = 0;
      continue;
    }
    if (stateless(NAMES_3_0[i])) continue;
    CK_RV rv = fn(0, 0, 0, 0, 0, 0, 0, 0);
    if (rv != want) {
      FAIL("%s(0...) returned 0x%lx, expected 0x%lx", NAMES_3_0[i], rv, want);
      good = 0;
    }
  }
  fprintf(out, "sweep=%s (%zu entries)\n", good ? "ok" : "FAILED", (size_t)N_3_0);
  return good;
}

static int lists_work(FILE *out) {
  CK_RV (*get_list)(CK_FUNCTION_LIST_PTR_PTR);
  CK_RV (*get_ifaces)(CK_INTERFACE_PTR, CK_ULONG_PTR);
  CK_FUNCTION_LIST_PTR fl = NULL;
  CK_INTERFACE ifaces[4];
  CK_ULONG n = 0;
  *(void **)&get_list = dlsym(module_handle, "C_GetFunctionList");
  *(void **)&get_ifaces = dlsym(module_handle, "C_GetInterfaceList");
  CK_RV rv = get_list(&fl);
  fprintf(out, "C_GetFunctionList=0x%lx\n", rv);
  if (rv != CKR_OK || fl != F) return FAIL("C_GetFunctionList: 0x%lx", rv), 0;
  rv = get_ifaces(NULL, &n);
  fprintf(out, "C_GetInterfaceList(count)=0x%lx count=%lu\n", rv, n);
  if (rv != CKR_OK || n != 2) return FAIL("C_GetInterfaceList count: 0x%lx %lu", rv, n), 0;
  rv = get_ifaces(ifaces, &n);
  fprintf(out, "C_GetInterfaceList=0x%lx\n", rv);
  if (rv != CKR_OK || strcmp((char *)ifaces[0].pInterfaceName, "PKCS 11") != 0)
    return FAIL("C_GetInterfaceList: 0x%lx", rv), 0;
  return 1;
}

/* ------------------------------------------------------------------ basic */

static int cmd_basic(const char *pin) {
  CK_INFO info;
  CK_TOKEN_INFO ti;
  CK_SLOT_ID slot;
  CK_SESSION_HANDLE h;
  CK_OBJECT_HANDLE pub, priv;
  CK_BYTE sig[512];
  CK_ULONG sig_len = sizeof sig;
  static const CK_BYTE msg[] = "the quick brown fox jumps over the lazy dog";

  OK(initialize());
  OK(F->C_GetInfo(&info));
  if (!first_slot(&slot)) return 0;
  OK(F->C_GetTokenInfo(slot, &ti));
  if (!open_user_session(slot, pin, &h)) return 0;
  if (!rsa_pair(h, &pub, &priv)) return 0;
  if (!sign_verify(h, CKM_SHA256_RSA_PKCS, priv, pub, msg, sizeof msg - 1, sig, &sig_len)) return 0;
  if (sig_len != 256) return FAIL("RSA-2048 signature of %lu bytes", sig_len), 0;
  sig[10] ^= 1;
  CK_MECHANISM mech = {CKM_SHA256_RSA_PKCS, NULL, 0};
  OK(F->C_VerifyInit(h, &mech, pub));
  EXPECT(F->C_Verify(h, (CK_BYTE_PTR)msg, sizeof msg - 1, sig, sig_len), CKR_SIGNATURE_INVALID);
  OK(F->C_Logout(h));
  OK(F->C_CloseSession(h));
  OK(F->C_Finalize(NULL));
  printf("basic: ok slot=%lu label=\"%.32s\" library=\"%.32s\" signature=%lu bytes\n", slot,
         (char *)ti.label, (char *)info.libraryDescription, sig_len);
  return 1;
}

/* ------------------------------------------------------------------ uninit */

static int cmd_uninit(void) {
  CK_INFO info;
  if (!lists_work(stdout)) return 0;
  if (!refuses(CKR_CRYPTOKI_NOT_INITIALIZED, stdout)) return 0;
  /* The guard lifts with C_Initialize and comes back with C_Finalize. */
  OK(initialize());
  OK(F->C_GetInfo(&info));
  EXPECT(initialize(), CKR_CRYPTOKI_ALREADY_INITIALIZED);
  OK(F->C_Finalize(NULL));
  printf("after C_Finalize:\n");
  if (!refuses(CKR_CRYPTOKI_NOT_INITIALIZED, stdout)) return 0;
  if (!lists_work(stdout)) return 0;
  printf("uninit: ok\n");
  return 1;
}

/* ------------------------------------------------------------------ initfail */

static int cmd_initfail(void) {
  EXPECT(initialize(), CKR_GENERAL_ERROR);
  if (!refuses(CKR_CRYPTOKI_NOT_INITIALIZED, stderr)) return 0;
  if (!lists_work(stderr)) return 0;
  EXPECT(initialize(), CKR_GENERAL_ERROR);
  EXPECT(F->C_Initialize(NULL), CKR_GENERAL_ERROR);
  if (!refuses(CKR_CRYPTOKI_NOT_INITIALIZED, stderr)) return 0;
  return 1;
}

/* ------------------------------------------------------------------ fork */

struct busy {
  const char *pin;
  CK_SLOT_ID slot;
  CK_OBJECT_HANDLE pub, priv;
  volatile int stop;
  volatile int in_call; /* set while the thread is inside a library call */
  volatile long rounds;
  volatile int failed;
};

/* Mostly calls that run Python code with the GIL held (token info is several device
   commands), so that a fork() from the other thread finds the GIL taken. */
static int busy_round(CK_SESSION_HANDLE h, struct busy *b, long i) {
  CK_TOKEN_INFO ti;
  CK_SESSION_INFO si;
  CK_MECHANISM_TYPE mechs[128];
  CK_ULONG n = 128;
  OK(F->C_GetTokenInfo(b->slot, &ti));
  OK(F->C_GetSessionInfo(h, &si));
  OK(F->C_GetMechanismList(b->slot, mechs, &n));
  if (i % 16 == 0) {
    CK_BYTE msg[64], sig[512];
    CK_ULONG sig_len = sizeof sig;
    int len = snprintf((char *)msg, sizeof msg, "busy thread round %ld", i);
    return sign_verify(h, CKM_SHA256_RSA_PKCS, b->priv, b->pub, msg, (CK_ULONG)len, sig, &sig_len);
  }
  return 1;
}

static void *busy_thread(void *arg) {
  struct busy *b = arg;
  CK_SESSION_HANDLE h;
  if (!open_user_session(b->slot, b->pin, &h)) {
    b->failed = 1;
    return NULL;
  }
  for (long i = 0; !b->stop; i++) {
    b->in_call = 1;
    int ok = busy_round(h, b, i);
    b->in_call = 0;
    if (!ok) {
      b->failed = 1;
      return NULL;
    }
    b->rounds = i + 1;
  }
  if (F->C_CloseSession(h) != CKR_OK) b->failed = 1;
  return NULL;
}

/* The child's checks; the return value is its exit status (0 = pass). */
static int fork_child(const char *pin, CK_SESSION_HANDLE parent_session, CK_OBJECT_HANDLE parent_key) {
  CK_INFO info;
  CK_ULONG n = 0;
  CK_SESSION_HANDLE h = 0;
  CK_SESSION_INFO si;
  CK_MECHANISM mech = {CKM_SHA256_RSA_PKCS, NULL, 0};
  CK_OBJECT_HANDLE pub, priv;
  CK_SLOT_ID slot;
  CK_BYTE sig[512];
  CK_ULONG sig_len = sizeof sig;
  static const CK_BYTE msg[] = "signed in the child";
  CK_RV rv;
  struct {
    const char *name;
    CK_RV rv;
  } before[8];
  size_t k = 0;
  before[k].name = "C_GetInfo", before[k++].rv = F->C_GetInfo(&info);
  before[k].name = "C_GetSlotList", before[k++].rv = F->C_GetSlotList(1, NULL, &n);
  before[k].name = "C_GetSessionInfo(parent)", before[k++].rv = F->C_GetSessionInfo(parent_session, &si);
  before[k].name = "C_SignInit(parent)", before[k++].rv = F->C_SignInit(parent_session, &mech, parent_key);
  before[k].name = "C_OpenSession",
  before[k++].rv = F->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &h);
  before[k].name = "C_Login(parent)",
  before[k++].rv = F->C_Login(parent_session, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
  before[k].name = "C_CloseSession(parent)", before[k++].rv = F->C_CloseSession(parent_session);
  before[k].name = "C_Finalize", before[k++].rv = F->C_Finalize(NULL);
  for (size_t i = 0; i < k; i++)
    if (before[i].rv != CKR_CRYPTOKI_NOT_INITIALIZED) {
      FAIL("child: %s returned 0x%lx before C_Initialize", before[i].name, before[i].rv);
      return 10;
    }
  rv = initialize();
  if (rv != CKR_OK) return FAIL("child: C_Initialize returned 0x%lx", rv), 11;
  rv = initialize();
  if (rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) return FAIL("child: second C_Initialize 0x%lx", rv), 12;
  /* The parent's sessions are not the child's. */
  rv = F->C_GetSessionInfo(parent_session, &si);
  if (rv != CKR_SESSION_HANDLE_INVALID) return FAIL("child: parent session answered 0x%lx", rv), 13;
  if (!first_slot(&slot)) return 14;
  if (!open_user_session(slot, pin, &h)) return 15;
  if (!rsa_pair(h, &pub, &priv)) return 16;
  if (!sign_verify(h, CKM_SHA256_RSA_PKCS, priv, pub, msg, sizeof msg - 1, sig, &sig_len)) return 17;
  if (F->C_CloseSession(h) != CKR_OK) return 18;
  if (F->C_Finalize(NULL) != CKR_OK) return 19;
  return 0;
}

enum { FORKS = 8 };

/* Fork FORKS times, each time while the busy thread is inside a library call. */
static int fork_rounds(const char *pin, CK_SESSION_HANDLE h, struct busy *b) {
  CK_BYTE sig[512];
  CK_ULONG sig_len;
  static const CK_BYTE msg[] = "signed in the parent";

  for (int i = 0; i < FORKS; i++) {
    long rounds_before;
    while (!b->in_call && !b->failed) /* spin: fork right after the thread entered a call */
      ;
    if (b->failed) return FAIL("the busy thread failed"), 0;
    pid_t pid = fork();
    if (pid < 0) return FAIL("fork"), 0;
    if (pid == 0) {
      alarm(30); /* a hang in the child ends it with SIGALRM, which the parent reports */
      _exit(fork_child(pin, h, b->priv));
    }
    rounds_before = b->rounds;
    /* The parent keeps working with its existing session while the child runs. */
    for (int k = 0; k < 3; k++) {
      sig_len = sizeof sig;
      if (!sign_verify(h, CKM_SHA256_RSA_PKCS, b->priv, b->pub, msg, sizeof msg - 1, sig, &sig_len))
        return FAIL("parent: signing after fork %d failed", i), 0;
    }
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return FAIL("waitpid"), 0;
    if (WIFSIGNALED(status))
      return FAIL("child %d killed by signal %d%s", i, WTERMSIG(status),
                  WTERMSIG(status) == SIGALRM ? " (it hung)" : ""), 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      return FAIL("child %d exited with status %d", i, WEXITSTATUS(status)), 0;
    /* The busy thread must still be making progress in the parent. */
    for (int waited = 0; b->rounds == rounds_before && !b->failed; waited++) {
      if (waited > 30000) return FAIL("the busy thread stopped after fork %d", i), 0;
      usleep(1000);
    }
  }
  sig_len = sizeof sig;
  return sign_verify(h, CKM_SHA256_RSA_PKCS, b->priv, b->pub, msg, sizeof msg - 1, sig, &sig_len);
}

static int cmd_fork(const char *pin) {
  CK_SLOT_ID slot;
  CK_SESSION_HANDLE h;
  static struct busy b; /* static: outlives this frame whatever happens */
  pthread_t thread;
  CK_BYTE sig[512];
  CK_ULONG sig_len = sizeof sig;
  static const CK_BYTE msg[] = "signed in the parent";
  int ok;

  b.pin = pin;
  OK(initialize());
  if (!first_slot(&slot)) return 0;
  b.slot = slot;
  if (!open_user_session(slot, pin, &h)) return 0;
  if (!rsa_pair(h, &b.pub, &b.priv)) return 0;
  if (!sign_verify(h, CKM_SHA256_RSA_PKCS, b.priv, b.pub, msg, sizeof msg - 1, sig, &sig_len)) return 0;

  if (pthread_create(&thread, NULL, busy_thread, &b) != 0) return FAIL("pthread_create"), 0;
  while (b.rounds < 1 && !b.failed) usleep(1000);
  ok = fork_rounds(pin, h, &b);
  b.stop = 1;
  pthread_join(thread, NULL);
  if (!ok) return 0;
  if (b.failed) return FAIL("the busy thread failed"), 0;
  OK(F->C_CloseSession(h));
  OK(F->C_Finalize(NULL));
  printf("fork: ok %d children, busy thread made %ld rounds\n", FORKS, b.rounds);
  return 1;
}

/* ------------------------------------------------------------------ threads */

enum { ROUNDS = 4, MAX_THREADS = 64 };

struct worker {
  int index;
  const char *pin;
  CK_SLOT_ID slot;
  pthread_barrier_t *barrier;
  int ok, at_barrier;
  CK_BYTE modulus[512], exponent[16], point[160];
  CK_ULONG modulus_len, exponent_len, point_len;
  CK_BYTE msg[ROUNDS][64];
  CK_ULONG msg_len[ROUNDS];
  CK_BYTE rsa_sig[ROUNDS][512], ec_sig[ROUNDS][160];
  CK_ULONG rsa_sig_len[ROUNDS], ec_sig_len[ROUNDS];
};

static int worker_run(struct worker *w) {
  CK_SESSION_HANDLE h;
  CK_OBJECT_HANDLE rsa_pub, rsa_priv, ec_pub, ec_priv;
  if (!open_user_session(w->slot, w->pin, &h)) return 0;
  if (!rsa_pair(h, &rsa_pub, &rsa_priv) || !ec_pair(h, &ec_pub, &ec_priv)) return 0;
  w->modulus_len = sizeof w->modulus;
  w->exponent_len = sizeof w->exponent;
  w->point_len = sizeof w->point;
  if (!get_attr(h, rsa_pub, CKA_MODULUS, w->modulus, &w->modulus_len) ||
      !get_attr(h, rsa_pub, CKA_PUBLIC_EXPONENT, w->exponent, &w->exponent_len) ||
      !get_attr(h, ec_pub, CKA_EC_POINT, w->point, &w->point_len))
    return 0;
  w->at_barrier = 1;
  pthread_barrier_wait(w->barrier); /* everybody signs at once */
  for (int r = 0; r < ROUNDS; r++) {
    w->msg_len[r] = (CK_ULONG)snprintf((char *)w->msg[r], sizeof w->msg[r],
                                       "thread %d round %d pid %ld", w->index, r, (long)getpid());
    w->rsa_sig_len[r] = sizeof w->rsa_sig[r];
    w->ec_sig_len[r] = sizeof w->ec_sig[r];
    if (!sign_verify(h, CKM_SHA256_RSA_PKCS, rsa_priv, rsa_pub, w->msg[r], w->msg_len[r],
                     w->rsa_sig[r], &w->rsa_sig_len[r]))
      return 0;
    if (!sign_verify(h, CKM_ECDSA_SHA256, ec_priv, ec_pub, w->msg[r], w->msg_len[r], w->ec_sig[r],
                     &w->ec_sig_len[r]))
      return 0;
  }
  OK(F->C_CloseSession(h));
  return 1;
}

static void *worker_thread(void *arg) {
  struct worker *w = arg;
  w->ok = worker_run(w);
  if (!w->ok) {
    FAIL("thread %d failed", w->index);
    /* Do not leave the others waiting at the barrier. */
    if (!w->at_barrier) pthread_barrier_wait(w->barrier);
  }
  return NULL;
}

static int cmd_threads(const char *pin, int n) {
  CK_SLOT_ID slot;
  CK_SESSION_HANDLE keeper;
  pthread_t threads[MAX_THREADS];
  static pthread_barrier_t barrier; /* static: outlives this frame whatever happens */
  struct worker *w;
  int good = 1;

  if (n < 1 || n > MAX_THREADS) return FAIL("thread count %d", n), 0;
  w = calloc((size_t)n, sizeof *w);
  if (!w) return 0;
  OK(initialize());
  if (!first_slot(&slot)) return 0;
  /* Keeps the token logged in while the workers come and go. */
  if (!open_user_session(slot, pin, &keeper)) return 0;
  pthread_barrier_init(&barrier, NULL, (unsigned)n);
  for (int i = 0; i < n; i++) {
    w[i].index = i;
    w[i].pin = pin;
    w[i].slot = slot;
    w[i].barrier = &barrier;
    if (pthread_create(&threads[i], NULL, worker_thread, &w[i]) != 0) return FAIL("pthread_create"), 0;
  }
  for (int i = 0; i < n; i++) pthread_join(threads[i], NULL);
  for (int i = 0; i < n; i++) {
    if (!w[i].ok) {
      good = 0;
      continue;
    }
    for (int r = 0; r < ROUNDS; r++) {
      printf("rsa %d ", i);
      hex(stdout, w[i].modulus, w[i].modulus_len);
      printf(" ");
      hex(stdout, w[i].exponent, w[i].exponent_len);
      printf(" ");
      hex(stdout, w[i].msg[r], w[i].msg_len[r]);
      printf(" ");
      hex(stdout, w[i].rsa_sig[r], w[i].rsa_sig_len[r]);
      printf("\nec %d ", i);
      hex(stdout, w[i].point, w[i].point_len);
      printf(" ");
      hex(stdout, w[i].msg[r], w[i].msg_len[r]);
      printf(" ");
      hex(stdout, w[i].ec_sig[r], w[i].ec_sig_len[r]);
      printf("\n");
    }
  }
  free(w);
  if (!good) return 0;
  OK(F->C_CloseSession(keeper));
  OK(F->C_Finalize(NULL));
  return 1;
}

int main(int argc, char **argv) {
  const char *cmd = argc > 1 ? argv[1] : "";
  int ok;
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 3) {
    fprintf(stderr, "usage: %s basic|uninit|initfail|fork|threads MODULE [PIN [N]]\n", argv[0]);
    return 2;
  }
  if (!load(argv[2])) return 1;
  if (!strcmp(cmd, "basic") && argc == 4)
    ok = cmd_basic(argv[3]);
  else if (!strcmp(cmd, "uninit") && argc == 3)
    ok = cmd_uninit();
  else if (!strcmp(cmd, "initfail") && argc == 3)
    ok = cmd_initfail();
  else if (!strcmp(cmd, "fork") && argc == 4)
    ok = cmd_fork(argv[3]);
  else if (!strcmp(cmd, "threads") && argc == 5)
    ok = cmd_threads(argv[3], atoi(argv[4]));
  else {
    fprintf(stderr, "host: unknown command or wrong arguments: %s\n", cmd);
    return 2;
  }
  if (!ok) fprintf(stderr, "host: %s FAILED\n", cmd);
  return ok ? 0 : 1;
}
