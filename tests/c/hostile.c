/*
 * Hostile calls at the C ABI of libfxpkcs11.so, used by tests/test_hostile_abi.py and
 * tests/stress/hostile_abi.py.
 *
 *   hostile MODULE PIN [ROUNDS]
 *
 * FXPKCS11_CFG names a configuration with two slots on one device: slot 0 on one
 * partition, slot 1 on another, both logging in with PIN. Every entry of the 3.0 function
 * list is called with hostile arguments: null pointers, zero / huge / short lengths, stale,
 * foreign and random handles, bad mechanism parameters, bad templates and calls in the
 * wrong state. Each ROW below is one case: the call and the return codes the PKCS #11
 * v2.40 / 3.0 specification allows for it (CKR_OK and CKR_GENERAL_ERROR are never among
 * them for bad arguments). CHECK rows test what a call wrote back (lengths, handles).
 *
 * Output: one line per case ("ok" or "MISMATCH"), then a summary: calls made, every CKR seen
 * with its count, mismatches. Exit status 0 only when there is no mismatch. ROUNDS repeats
 * the whole table (the stress run); the Python side runs this under a timeout, so a hang
 * fails too, and a crash shows as a signal after the last case printed.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../native/pkcs11.h"

/* ------------------------------------------------------------------ constants (the spec's) */

#define CKR_OK 0x0UL
#define CKR_SLOT_ID_INVALID 0x3UL
#define CKR_GENERAL_ERROR 0x5UL
#define CKR_FUNCTION_FAILED 0x6UL
#define CKR_ARGUMENTS_BAD 0x7UL
#define CKR_NO_EVENT 0x8UL
#define CKR_CANT_LOCK 0xAUL
#define CKR_ATTRIBUTE_READ_ONLY 0x10UL
#define CKR_ATTRIBUTE_TYPE_INVALID 0x12UL
#define CKR_ATTRIBUTE_VALUE_INVALID 0x13UL
#define CKR_DATA_INVALID 0x20UL
#define CKR_DATA_LEN_RANGE 0x21UL
#define CKR_ENCRYPTED_DATA_INVALID 0x40UL
#define CKR_ENCRYPTED_DATA_LEN_RANGE 0x41UL
#define CKR_AEAD_DECRYPT_FAILED 0x42UL
#define CKR_FUNCTION_NOT_PARALLEL 0x51UL
#define CKR_FUNCTION_NOT_SUPPORTED 0x54UL
#define CKR_KEY_HANDLE_INVALID 0x60UL
#define CKR_KEY_SIZE_RANGE 0x62UL
#define CKR_KEY_TYPE_INCONSISTENT 0x63UL
#define CKR_KEY_NOT_NEEDED 0x64UL
#define CKR_KEY_INDIGESTIBLE 0x67UL
#define CKR_KEY_FUNCTION_NOT_PERMITTED 0x68UL
#define CKR_MECHANISM_INVALID 0x70UL
#define CKR_MECHANISM_PARAM_INVALID 0x71UL
#define CKR_OBJECT_HANDLE_INVALID 0x82UL
#define CKR_OPERATION_ACTIVE 0x90UL
#define CKR_OPERATION_NOT_INITIALIZED 0x91UL
#define CKR_PIN_INCORRECT 0xA0UL
#define CKR_PIN_INVALID 0xA1UL
#define CKR_PIN_LEN_RANGE 0xA2UL
#define CKR_SESSION_CLOSED 0xB0UL
#define CKR_SESSION_HANDLE_INVALID 0xB3UL
#define CKR_SESSION_PARALLEL_NOT_SUPPORTED 0xB4UL
#define CKR_SESSION_READ_ONLY 0xB5UL
#define CKR_SESSION_EXISTS 0xB6UL
#define CKR_SIGNATURE_INVALID 0xC0UL
#define CKR_SIGNATURE_LEN_RANGE 0xC1UL
#define CKR_TEMPLATE_INCOMPLETE 0xD0UL
#define CKR_TEMPLATE_INCONSISTENT 0xD1UL
#define CKR_UNWRAPPING_KEY_HANDLE_INVALID 0xF0UL
#define CKR_USER_ALREADY_LOGGED_IN 0x100UL
#define CKR_USER_NOT_LOGGED_IN 0x101UL
#define CKR_USER_TYPE_INVALID 0x103UL
#define CKR_USER_ANOTHER_ALREADY_LOGGED_IN 0x104UL
#define CKR_WRAPPED_KEY_INVALID 0x110UL
#define CKR_WRAPPED_KEY_LEN_RANGE 0x112UL
#define CKR_WRAPPING_KEY_HANDLE_INVALID 0x113UL
#define CKR_RANDOM_SEED_NOT_SUPPORTED 0x120UL
#define CKR_DOMAIN_PARAMS_INVALID 0x130UL
#define CKR_CURVE_NOT_SUPPORTED 0x140UL
#define CKR_BUFFER_TOO_SMALL 0x150UL
#define CKR_SAVED_STATE_INVALID 0x160UL
#define CKR_STATE_UNSAVEABLE 0x180UL
#define CKR_CRYPTOKI_NOT_INITIALIZED 0x190UL
#define CKR_CRYPTOKI_ALREADY_INITIALIZED 0x191UL

#define CK_UNAVAILABLE_INFORMATION (~0UL)
#define HUGE_LEN 0xFFFFFFFFFFFFFFF0UL
#define RANDOM_HANDLE 0x5A5A5A5AUL

#define CKF_OS_LOCKING_OK 0x2UL
#define CKF_RW_SESSION 0x2UL
#define CKF_SERIAL_SESSION 0x4UL
#define CKF_DONT_BLOCK 0x1UL
#define CKF_ALL_OPERATIONS 0x7FF00UL /* encrypt .. verify recover, find: C_SessionCancel */
#define CKU_SO 0UL
#define CKU_USER 1UL

#define CKO_DATA 0x0UL
#define CKO_SECRET_KEY 0x4UL
#define CKK_AES 0x1FUL
#define CKA_CLASS 0x0UL
#define CKA_TOKEN 0x1UL
#define CKA_PRIVATE 0x2UL
#define CKA_LABEL 0x3UL
#define CKA_APPLICATION 0x10UL
#define CKA_VALUE 0x11UL
#define CKA_KEY_TYPE 0x100UL
#define CKA_SENSITIVE 0x103UL
#define CKA_ENCRYPT 0x104UL
#define CKA_DECRYPT 0x105UL
#define CKA_WRAP 0x106UL
#define CKA_UNWRAP 0x107UL
#define CKA_SIGN 0x108UL
#define CKA_SIGN_RECOVER 0x109UL
#define CKA_VERIFY 0x10AUL
#define CKA_VERIFY_RECOVER 0x10BUL
#define CKA_DERIVE 0x10CUL
#define CKA_MODULUS_BITS 0x121UL
#define CKA_PUBLIC_EXPONENT 0x122UL
#define CKA_VALUE_LEN 0x161UL
#define CKA_EXTRACTABLE 0x162UL
#define CKA_EC_PARAMS 0x180UL
#define CKA_UNKNOWN 0x7FFF1234UL /* below CKA_VENDOR_DEFINED: no such attribute */

#define CKM_RSA_PKCS_KEY_PAIR_GEN 0x0UL
#define CKM_RSA_PKCS 0x1UL
#define CKM_RSA_PKCS_OAEP 0x9UL
#define CKM_RSA_PKCS_PSS 0xDUL
#define CKM_SHA256_RSA_PKCS 0x40UL
#define CKM_SHA256_RSA_PKCS_PSS 0x43UL
#define CKM_SHA_1 0x220UL
#define CKM_SHA256 0x250UL
#define CKM_SHA256_HMAC 0x251UL
#define CKM_GENERIC_SECRET_KEY_GEN 0x350UL
#define CKM_CONCATENATE_BASE_AND_DATA 0x362UL
#define CKM_EC_KEY_PAIR_GEN 0x1040UL
#define CKM_ECDSA 0x1041UL
#define CKM_ECDH1_DERIVE 0x1050UL
#define CKM_AES_KEY_GEN 0x1080UL
#define CKM_AES_ECB 0x1081UL
#define CKM_AES_CBC 0x1082UL
#define CKM_AES_CBC_PAD 0x1085UL
#define CKM_AES_GCM 0x1087UL
#define CKM_AES_KEY_WRAP 0x2109UL
#define CKM_UNKNOWN 0x7FFF0001UL
#define CKG_MGF1_SHA1 0x1UL
#define CKG_MGF1_SHA256 0x2UL
#define CKZ_DATA_SPECIFIED 0x1UL

/* ------------------------------------------------------------------ the table machinery */

static CK_FUNCTION_LIST *F;
static CK_FUNCTION_LIST_3_0 *F30;
static void *module;
static unsigned long calls, mismatches, checks;
static struct {
  CK_RV rv;
  unsigned long count;
} seen[128];
static size_t n_seen;

static const struct {
  CK_RV rv;
  const char *name;
} NAMES[] = {
    {CKR_OK, "OK"}, {CKR_SLOT_ID_INVALID, "SLOT_ID_INVALID"}, {CKR_GENERAL_ERROR, "GENERAL_ERROR"},
    {CKR_FUNCTION_FAILED, "FUNCTION_FAILED"}, {CKR_ARGUMENTS_BAD, "ARGUMENTS_BAD"},
    {CKR_NO_EVENT, "NO_EVENT"}, {CKR_CANT_LOCK, "CANT_LOCK"},
    {CKR_ATTRIBUTE_READ_ONLY, "ATTRIBUTE_READ_ONLY"},
    {CKR_ATTRIBUTE_TYPE_INVALID, "ATTRIBUTE_TYPE_INVALID"},
    {CKR_ATTRIBUTE_VALUE_INVALID, "ATTRIBUTE_VALUE_INVALID"}, {CKR_DATA_INVALID, "DATA_INVALID"},
    {CKR_DATA_LEN_RANGE, "DATA_LEN_RANGE"}, {CKR_ENCRYPTED_DATA_INVALID, "ENCRYPTED_DATA_INVALID"},
    {CKR_ENCRYPTED_DATA_LEN_RANGE, "ENCRYPTED_DATA_LEN_RANGE"},
    {CKR_AEAD_DECRYPT_FAILED, "AEAD_DECRYPT_FAILED"},
    {CKR_FUNCTION_NOT_PARALLEL, "FUNCTION_NOT_PARALLEL"},
    {CKR_FUNCTION_NOT_SUPPORTED, "FUNCTION_NOT_SUPPORTED"},
    {CKR_KEY_HANDLE_INVALID, "KEY_HANDLE_INVALID"}, {CKR_KEY_SIZE_RANGE, "KEY_SIZE_RANGE"},
    {CKR_KEY_TYPE_INCONSISTENT, "KEY_TYPE_INCONSISTENT"}, {CKR_KEY_NOT_NEEDED, "KEY_NOT_NEEDED"},
    {CKR_KEY_INDIGESTIBLE, "KEY_INDIGESTIBLE"},
    {CKR_KEY_FUNCTION_NOT_PERMITTED, "KEY_FUNCTION_NOT_PERMITTED"},
    {CKR_MECHANISM_INVALID, "MECHANISM_INVALID"},
    {CKR_MECHANISM_PARAM_INVALID, "MECHANISM_PARAM_INVALID"},
    {CKR_OBJECT_HANDLE_INVALID, "OBJECT_HANDLE_INVALID"}, {CKR_OPERATION_ACTIVE, "OPERATION_ACTIVE"},
    {CKR_OPERATION_NOT_INITIALIZED, "OPERATION_NOT_INITIALIZED"},
    {CKR_PIN_INCORRECT, "PIN_INCORRECT"}, {CKR_PIN_INVALID, "PIN_INVALID"},
    {CKR_PIN_LEN_RANGE, "PIN_LEN_RANGE"}, {CKR_SESSION_CLOSED, "SESSION_CLOSED"},
    {CKR_SESSION_HANDLE_INVALID, "SESSION_HANDLE_INVALID"},
    {CKR_SESSION_PARALLEL_NOT_SUPPORTED, "SESSION_PARALLEL_NOT_SUPPORTED"},
    {CKR_SESSION_READ_ONLY, "SESSION_READ_ONLY"}, {CKR_SESSION_EXISTS, "SESSION_EXISTS"},
    {CKR_SIGNATURE_INVALID, "SIGNATURE_INVALID"}, {CKR_SIGNATURE_LEN_RANGE, "SIGNATURE_LEN_RANGE"},
    {CKR_TEMPLATE_INCOMPLETE, "TEMPLATE_INCOMPLETE"},
    {CKR_TEMPLATE_INCONSISTENT, "TEMPLATE_INCONSISTENT"},
    {CKR_UNWRAPPING_KEY_HANDLE_INVALID, "UNWRAPPING_KEY_HANDLE_INVALID"},
    {CKR_USER_ALREADY_LOGGED_IN, "USER_ALREADY_LOGGED_IN"},
    {CKR_USER_NOT_LOGGED_IN, "USER_NOT_LOGGED_IN"}, {CKR_USER_TYPE_INVALID, "USER_TYPE_INVALID"},
    {CKR_USER_ANOTHER_ALREADY_LOGGED_IN, "USER_ANOTHER_ALREADY_LOGGED_IN"},
    {CKR_WRAPPED_KEY_INVALID, "WRAPPED_KEY_INVALID"},
    {CKR_WRAPPED_KEY_LEN_RANGE, "WRAPPED_KEY_LEN_RANGE"},
    {CKR_WRAPPING_KEY_HANDLE_INVALID, "WRAPPING_KEY_HANDLE_INVALID"},
    {CKR_RANDOM_SEED_NOT_SUPPORTED, "RANDOM_SEED_NOT_SUPPORTED"},
    {CKR_DOMAIN_PARAMS_INVALID, "DOMAIN_PARAMS_INVALID"},
    {CKR_CURVE_NOT_SUPPORTED, "CURVE_NOT_SUPPORTED"}, {CKR_BUFFER_TOO_SMALL, "BUFFER_TOO_SMALL"},
    {CKR_SAVED_STATE_INVALID, "SAVED_STATE_INVALID"}, {CKR_STATE_UNSAVEABLE, "STATE_UNSAVEABLE"},
    {CKR_CRYPTOKI_NOT_INITIALIZED, "CRYPTOKI_NOT_INITIALIZED"},
    {CKR_CRYPTOKI_ALREADY_INITIALIZED, "CRYPTOKI_ALREADY_INITIALIZED"},
};

static const char *ckr_name(CK_RV rv) {
  static char other[32];
  for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
    if (NAMES[i].rv == rv) return NAMES[i].name;
  snprintf(other, sizeof other, "0x%lx", rv);
  return other;
}

static void count(CK_RV rv) {
  for (size_t i = 0; i < n_seen; i++)
    if (seen[i].rv == rv) {
      seen[i].count++;
      return;
    }
  if (n_seen < sizeof seen / sizeof seen[0]) {
    seen[n_seen].rv = rv;
    seen[n_seen++].count = 1;
  }
}

/* One case: `rv` must be one of `want`. Returns 1 when it is. */
static int row(int line, const char *label, CK_RV rv, const CK_RV *want, size_t n_want) {
  int ok = 0;
  calls++;
  count(rv);
  for (size_t i = 0; i < n_want; i++) ok |= rv == want[i];
  printf("%s %4d %-64s %s", ok ? "ok      " : "MISMATCH", line, label, ckr_name(rv));
  if (!ok) {
    mismatches++;
    printf("  (allowed:");
    for (size_t i = 0; i < n_want; i++) printf(" %s", ckr_name(want[i]));
    printf(")");
  }
  printf("\n");
  fflush(stdout);
  return ok;
}

/* A fact about what a call wrote back. */
static int check(int line, const char *label, int cond, unsigned long got, unsigned long want) {
  checks++;
  printf("%s %4d %-64s %lu", cond ? "ok      " : "MISMATCH", line, label, got);
  if (!cond) {
    mismatches++;
    printf("  (expected %lu)", want);
  }
  printf("\n");
  fflush(stdout);
  return cond;
}

#define ROW(label, call, ...)                                                 \
  do {                                                                        \
    const CK_RV want_[] = {__VA_ARGS__};                                      \
    row(__LINE__, label, (call), want_, sizeof want_ / sizeof want_[0]);      \
  } while (0)
#define CHECK_EQ(label, got, want)                                            \
  check(__LINE__, label, (unsigned long)(got) == (unsigned long)(want), (unsigned long)(got), \
        (unsigned long)(want))

/* Setup steps are rows too (expected CKR_OK); a failed setup ends the run. */
#define SETUP(label, call)                                                    \
  do {                                                                        \
    const CK_RV want_[] = {CKR_OK};                                           \
    if (!row(__LINE__, label, (call), want_, 1)) return 0;                    \
  } while (0)

/* ------------------------------------------------------------------ fixtures */

static CK_BBOOL yes = 1, no = 0;
static CK_BYTE data16[16] = "0123456789abcdef";
static CK_BYTE data32[32] = "0123456789abcdef0123456789abcdef";
static CK_BYTE iv16[16], iv17[17];
static CK_BYTE buf[4096];
static const CK_BYTE P256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
static const char *pin;

typedef struct {
  CK_SESSION_HANDLE h, ro, foreign, dead;
  CK_OBJECT_HANDLE aes, aes_wrapped, hmac, rsa_pub, rsa_priv, foreign_key, dead_key;
} Fixture;

static CK_ULONG plen(void) { return (CK_ULONG)strlen(pin); }

typedef CK_RV (*any_fn)(CK_ULONG, CK_ULONG, CK_ULONG, CK_ULONG, CK_ULONG, CK_ULONG, CK_ULONG,
                        CK_ULONG, CK_ULONG);

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

static any_fn entry(size_t i) {
  any_fn fn;
  memcpy(&fn, (char *)F30 + offsetof(CK_FUNCTION_LIST_3_0, C_Initialize) + i * sizeof(void *),
         sizeof fn);
  return fn;
}

/* Entries whose first argument is not a session handle. */
static int sessionless(const char *name) {
  static const char *const list[] = {
      "C_Initialize", "C_Finalize", "C_GetInfo", "C_GetFunctionList", "C_GetSlotList",
      "C_GetSlotInfo", "C_GetTokenInfo", "C_GetMechanismList", "C_GetMechanismInfo",
      "C_InitToken", "C_OpenSession", "C_CloseAllSessions", "C_WaitForSlotEvent",
      "C_GetInterfaceList", "C_GetInterface"};
  for (size_t i = 0; i < sizeof list / sizeof list[0]; i++)
    if (!strcmp(name, list[i])) return 1;
  return 0;
}

static int message_based(const char *name) {
  return strstr(name, "Message") != NULL;
}

/* ------------------------------------------------------------------ mutex callbacks */

static CK_RV mx_create(CK_VOID_PTR_PTR pp) {
  pthread_mutex_t *m = malloc(sizeof *m);
  if (!m) return 0x2UL;
  pthread_mutex_init(m, NULL);
  *pp = m;
  return CKR_OK;
}
static CK_RV mx_destroy(CK_VOID_PTR p) {
  pthread_mutex_destroy(p);
  free(p);
  return CKR_OK;
}
static CK_RV mx_lock(CK_VOID_PTR p) { return pthread_mutex_lock(p) ? 0x1A0UL : CKR_OK; }
static CK_RV mx_unlock(CK_VOID_PTR p) { return pthread_mutex_unlock(p) ? 0x1A1UL : CKR_OK; }

/* ------------------------------------------------------------------ the cases */

/* Before C_Initialize and after C_Finalize: every entry but the stateless four refuses. */
static void uninitialized(const char *when) {
  char label[96];
  for (size_t i = 0; i < N_3_0; i++) {
    const char *name = NAMES_3_0[i];
    if (!strcmp(name, "C_Initialize") || !strcmp(name, "C_GetFunctionList") ||
        !strcmp(name, "C_GetInterfaceList") || !strcmp(name, "C_GetInterface"))
      continue;
    snprintf(label, sizeof label, "%s %s(1, 0...)", when, name);
    ROW(label, entry(i)(1, 0, 0, 0, 0, 0, 0, 0, 0), CKR_CRYPTOKI_NOT_INITIALIZED);
  }
}

static int lists(void) {
  CK_RV (*get_list)(CK_FUNCTION_LIST_PTR_PTR);
  CK_RV (*get_ifaces)(CK_INTERFACE_PTR, CK_ULONG_PTR);
  CK_RV (*get_iface)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS);
  CK_INTERFACE ifaces[4];
  CK_INTERFACE_PTR iface = NULL;
  CK_VERSION v99 = {9, 9};
  CK_ULONG n = 0;
  *(void **)&get_list = dlsym(module, "C_GetFunctionList");
  *(void **)&get_ifaces = dlsym(module, "C_GetInterfaceList");
  *(void **)&get_iface = dlsym(module, "C_GetInterface");
  ROW("C_GetFunctionList(NULL)", get_list(NULL), CKR_ARGUMENTS_BAD);
  ROW("C_GetInterfaceList(NULL, NULL)", get_ifaces(NULL, NULL), CKR_ARGUMENTS_BAD);
  ROW("C_GetInterfaceList(NULL, &n) length query", get_ifaces(NULL, &n), CKR_OK);
  CHECK_EQ("  count written", n, 2);
  n = 1;
  ROW("C_GetInterfaceList(buf, n=1) short", get_ifaces(ifaces, &n), CKR_BUFFER_TOO_SMALL);
  CHECK_EQ("  count needed written back", n, 2);
  ROW("C_GetInterfaceList(buf, n=2) retry", get_ifaces(ifaces, &n), CKR_OK);
  ROW("C_GetInterface(NULL, NULL, NULL, 0)", get_iface(NULL, NULL, NULL, 0), CKR_ARGUMENTS_BAD);
  ROW("C_GetInterface(\"bogus\")", get_iface((CK_UTF8CHAR_PTR) "bogus", NULL, &iface, 0),
      CKR_ARGUMENTS_BAD);
  ROW("C_GetInterface(version 9.9)", get_iface(NULL, &v99, &iface, 0), CKR_ARGUMENTS_BAD);
  ROW("C_GetInterface(flags ~0)", get_iface(NULL, NULL, &iface, ~0UL), CKR_ARGUMENTS_BAD);
  return 1;
}

static int initialize_args(void) {
  CK_C_INITIALIZE_ARGS a;
  CK_INFO info;
  memset(&a, 0, sizeof a);
  a.pReserved = &a;
  ROW("C_Initialize(pReserved non-null)", F->C_Initialize(&a), CKR_ARGUMENTS_BAD);
  ROW("  still uninitialized: C_GetInfo", F->C_GetInfo(&info), CKR_CRYPTOKI_NOT_INITIALIZED);
  memset(&a, 0, sizeof a);
  a.CreateMutex = mx_create;
  a.LockMutex = mx_lock;
  ROW("C_Initialize(2 of 4 mutex callbacks)", F->C_Initialize(&a), CKR_ARGUMENTS_BAD);
  memset(&a, 0, sizeof a);
  a.CreateMutex = mx_create;
  a.DestroyMutex = mx_destroy;
  a.LockMutex = mx_lock;
  a.flags = CKF_OS_LOCKING_OK;
  ROW("C_Initialize(3 of 4 mutex callbacks, OS locking)", F->C_Initialize(&a), CKR_ARGUMENTS_BAD);
  ROW("  still uninitialized: C_GetInfo", F->C_GetInfo(&info), CKR_CRYPTOKI_NOT_INITIALIZED);
  ROW("C_Finalize before C_Initialize", F->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
  /* All four callbacks and no OS-locking flag: the library uses them or says it cannot. */
  memset(&a, 0, sizeof a);
  a.CreateMutex = mx_create;
  a.DestroyMutex = mx_destroy;
  a.LockMutex = mx_lock;
  a.UnlockMutex = mx_unlock;
  CK_RV rv = F->C_Initialize(&a);
  ROW("C_Initialize(4 mutex callbacks)", rv, CKR_OK, CKR_CANT_LOCK);
  if (rv == CKR_OK) SETUP("C_Finalize", F->C_Finalize(NULL));
  return 1;
}

static int initialize(void) {
  CK_C_INITIALIZE_ARGS a;
  memset(&a, 0, sizeof a);
  a.flags = CKF_OS_LOCKING_OK;
  SETUP("C_Initialize(OS locking)", F->C_Initialize(&a));
  ROW("C_Initialize twice", F->C_Initialize(&a), CKR_CRYPTOKI_ALREADY_INITIALIZED);
  ROW("C_Initialize(NULL) twice", F->C_Initialize(NULL), CKR_CRYPTOKI_ALREADY_INITIALIZED);
  ROW("C_Finalize(pReserved non-null)", F->C_Finalize(&a), CKR_ARGUMENTS_BAD);
  return 1;
}

static int general(void) {
  CK_SLOT_ID slots[4];
  CK_SLOT_INFO si;
  CK_TOKEN_INFO ti;
  CK_MECHANISM_INFO mi;
  CK_MECHANISM_TYPE mechs[512];
  CK_ULONG n = 0, need;
  CK_SLOT_ID slot = 0;
  CK_UTF8CHAR label[32];
  memset(label, ' ', sizeof label);

  ROW("C_GetInfo(NULL)", F->C_GetInfo(NULL), CKR_ARGUMENTS_BAD);
  ROW("C_GetSlotList(NULL, NULL)", F->C_GetSlotList(1, NULL, NULL), CKR_ARGUMENTS_BAD);
  ROW("C_GetSlotList(NULL, &n) length query", F->C_GetSlotList(1, NULL, &n), CKR_OK);
  CHECK_EQ("  slot count", n, 2);
  n = 1;
  ROW("C_GetSlotList(buf, n=1) short", F->C_GetSlotList(1, slots, &n), CKR_BUFFER_TOO_SMALL);
  CHECK_EQ("  count needed written back", n, 2);
  n = 0;
  ROW("C_GetSlotList(buf, n=0) short", F->C_GetSlotList(0, slots, &n), CKR_BUFFER_TOO_SMALL);
  ROW("C_GetSlotList(buf, n=2) retry", F->C_GetSlotList(1, slots, &n), CKR_OK);
  CHECK_EQ("  slot ids 0, 1", slots[0] * 10 + slots[1], 1);

  ROW("C_GetSlotInfo(99)", F->C_GetSlotInfo(99, &si), CKR_SLOT_ID_INVALID);
  ROW("C_GetSlotInfo(huge id)", F->C_GetSlotInfo(HUGE_LEN, &si), CKR_SLOT_ID_INVALID);
  ROW("C_GetSlotInfo(0, NULL)", F->C_GetSlotInfo(0, NULL), CKR_ARGUMENTS_BAD);
  ROW("C_GetTokenInfo(99)", F->C_GetTokenInfo(99, &ti), CKR_SLOT_ID_INVALID);
  ROW("C_GetTokenInfo(0, NULL)", F->C_GetTokenInfo(0, NULL), CKR_ARGUMENTS_BAD);

  ROW("C_GetMechanismList(0, NULL, NULL)", F->C_GetMechanismList(0, NULL, NULL), CKR_ARGUMENTS_BAD);
  ROW("C_GetMechanismList(99)", F->C_GetMechanismList(99, NULL, &n), CKR_SLOT_ID_INVALID);
  ROW("C_GetMechanismList(NULL, &n) length query", F->C_GetMechanismList(slot, NULL, &n), CKR_OK);
  need = n;
  CHECK_EQ("  some mechanisms", n > 10 && n <= 512, 1);
  n = 3;
  ROW("C_GetMechanismList(buf, n=3) short", F->C_GetMechanismList(slot, mechs, &n),
      CKR_BUFFER_TOO_SMALL);
  CHECK_EQ("  count needed written back", n, need);
  ROW("C_GetMechanismList(buf, n) retry", F->C_GetMechanismList(slot, mechs, &n), CKR_OK);
  ROW("C_GetMechanismInfo(unknown mechanism)", F->C_GetMechanismInfo(0, CKM_UNKNOWN, &mi),
      CKR_MECHANISM_INVALID);
  ROW("C_GetMechanismInfo(0, AES_CBC, NULL)", F->C_GetMechanismInfo(0, CKM_AES_CBC, NULL),
      CKR_ARGUMENTS_BAD);
  ROW("C_GetMechanismInfo(99)", F->C_GetMechanismInfo(99, CKM_AES_CBC, &mi), CKR_SLOT_ID_INVALID);

  /* Never with good arguments: C_InitToken would empty the partition. */
  ROW("C_InitToken(99)", F->C_InitToken(99, (CK_UTF8CHAR_PTR)pin, plen(), label),
      CKR_SLOT_ID_INVALID);
  ROW("C_InitToken(NULL pin, len 6)", F->C_InitToken(0, NULL, 6, label), CKR_ARGUMENTS_BAD);
  ROW("C_InitToken(NULL label)", F->C_InitToken(0, (CK_UTF8CHAR_PTR)pin, plen(), NULL),
      CKR_ARGUMENTS_BAD);
  ROW("C_InitToken(pin len huge)", F->C_InitToken(0, (CK_UTF8CHAR_PTR)pin, HUGE_LEN, label),
      CKR_ARGUMENTS_BAD, CKR_PIN_LEN_RANGE, CKR_PIN_INCORRECT);

  ROW("C_WaitForSlotEvent(DONT_BLOCK, NULL)", F->C_WaitForSlotEvent(CKF_DONT_BLOCK, NULL, NULL),
      CKR_ARGUMENTS_BAD);
  ROW("C_WaitForSlotEvent(pReserved non-null)",
      F->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, (CK_VOID_PTR)&slot), CKR_ARGUMENTS_BAD);
  ROW("C_WaitForSlotEvent(DONT_BLOCK)", F->C_WaitForSlotEvent(CKF_DONT_BLOCK, &slot, NULL),
      CKR_NO_EVENT);
  return 1;
}

static int login(CK_SESSION_HANDLE h) {
  CK_RV rv = F->C_Login(h, CKU_USER, (CK_UTF8CHAR_PTR)pin, plen());
  if (rv == CKR_USER_ALREADY_LOGGED_IN) rv = CKR_OK;
  SETUP("C_Login(USER)", rv);
  return 1;
}

static int sessions(Fixture *x) {
  CK_SESSION_INFO si;
  CK_SESSION_HANDLE h = 0;
  ROW("C_OpenSession(99)", F->C_OpenSession(99, CKF_SERIAL_SESSION, NULL, NULL, &h),
      CKR_SLOT_ID_INVALID);
  ROW("C_OpenSession(no SERIAL flag)", F->C_OpenSession(0, CKF_RW_SESSION, NULL, NULL, &h),
      CKR_SESSION_PARALLEL_NOT_SUPPORTED);
  ROW("C_OpenSession(phSession NULL)", F->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, NULL),
      CKR_ARGUMENTS_BAD);
  CHECK_EQ("  no handle written by the refusals", h, 0);
  SETUP("C_OpenSession(0, RW)",
        F->C_OpenSession(0, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &x->h));
  SETUP("C_OpenSession(0, RO)", F->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &x->ro));
  SETUP("C_OpenSession(1, RW)",
        F->C_OpenSession(1, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &x->foreign));
  SETUP("C_OpenSession(0) to close",
        F->C_OpenSession(0, CKF_SERIAL_SESSION, NULL, NULL, &x->dead));
  SETUP("C_CloseSession", F->C_CloseSession(x->dead));
  ROW("C_CloseSession(closed)", F->C_CloseSession(x->dead), CKR_SESSION_HANDLE_INVALID,
      CKR_SESSION_CLOSED);
  ROW("C_CloseSession(0)", F->C_CloseSession(0), CKR_SESSION_HANDLE_INVALID);
  ROW("C_CloseSession(random)", F->C_CloseSession(RANDOM_HANDLE), CKR_SESSION_HANDLE_INVALID);
  ROW("C_CloseSession(huge)", F->C_CloseSession(HUGE_LEN), CKR_SESSION_HANDLE_INVALID);
  ROW("C_CloseAllSessions(99)", F->C_CloseAllSessions(99), CKR_SLOT_ID_INVALID);
  ROW("C_GetSessionInfo(h, NULL)", F->C_GetSessionInfo(x->h, NULL), CKR_ARGUMENTS_BAD);
  ROW("C_GetSessionInfo(closed)", F->C_GetSessionInfo(x->dead, &si), CKR_SESSION_HANDLE_INVALID,
      CKR_SESSION_CLOSED);
  ROW("C_GetSessionInfo(foreign slot's session)", F->C_GetSessionInfo(x->foreign, &si), CKR_OK);
  CHECK_EQ("  its slot is 1", si.slotID, 1);

  /* login */
  ROW("C_Login(NULL pin, len 6)", F->C_Login(x->h, CKU_USER, NULL, 6), CKR_ARGUMENTS_BAD);
  /* regression: huge lengths were read (MemoryError -> CKR_FUNCTION_FAILED) */
  ROW("C_Login(pin len huge)", F->C_Login(x->h, CKU_USER, (CK_UTF8CHAR_PTR)pin, HUGE_LEN),
      CKR_ARGUMENTS_BAD, CKR_PIN_INCORRECT, CKR_PIN_LEN_RANGE);
  ROW("C_Login(user type 77)", F->C_Login(x->h, 77, (CK_UTF8CHAR_PTR)pin, plen()),
      CKR_USER_TYPE_INVALID);
  ROW("C_Login(closed session)", F->C_Login(x->dead, CKU_USER, (CK_UTF8CHAR_PTR)pin, plen()),
      CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED);
  ROW("C_Login(wrong pin)", F->C_Login(x->h, CKU_USER, (CK_UTF8CHAR_PTR) "wrong-pin", 9),
      CKR_PIN_INCORRECT);
  ROW("C_Login(non-UTF-8 pin)", F->C_Login(x->h, CKU_USER, (CK_UTF8CHAR_PTR) "\xff\xfe\xfd", 3),
      CKR_PIN_INCORRECT, CKR_ARGUMENTS_BAD, CKR_PIN_INVALID);
  ROW("C_LoginUser(NULL username, len 5)",
      F30->C_LoginUser(x->h, CKU_USER, (CK_UTF8CHAR_PTR)pin, plen(), NULL, 5), CKR_ARGUMENTS_BAD);
  ROW("C_LoginUser(username len huge)",
      F30->C_LoginUser(x->h, CKU_USER, (CK_UTF8CHAR_PTR)pin, plen(), (CK_UTF8CHAR_PTR) "crypto1",
                       HUGE_LEN),
      CKR_ARGUMENTS_BAD, CKR_PIN_INCORRECT);
  ROW("C_Logout(not logged in)", F->C_Logout(x->h), CKR_USER_NOT_LOGGED_IN);
  if (!login(x->h)) return 0;
  ROW("C_Login again", F->C_Login(x->h, CKU_USER, (CK_UTF8CHAR_PTR)pin, plen()),
      CKR_USER_ALREADY_LOGGED_IN);
  ROW("C_Login(SO) while the user is in", F->C_Login(x->h, CKU_SO, (CK_UTF8CHAR_PTR)pin, plen()),
      CKR_USER_ANOTHER_ALREADY_LOGGED_IN);
  if (!login(x->foreign)) return 0;
  ROW("C_Logout(closed)", F->C_Logout(x->dead), CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED);

  /* PINs: never with good arguments */
  ROW("C_InitPIN(NULL, len 4)", F->C_InitPIN(x->h, NULL, 4), CKR_ARGUMENTS_BAD);
  ROW("C_InitPIN(not SO)", F->C_InitPIN(x->h, (CK_UTF8CHAR_PTR) "12345678", 8),
      CKR_USER_NOT_LOGGED_IN);
  ROW("C_InitPIN(closed)", F->C_InitPIN(x->dead, (CK_UTF8CHAR_PTR) "12345678", 8),
      CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED);
  ROW("C_SetPIN(NULL old, len 5)", F->C_SetPIN(x->h, NULL, 5, (CK_UTF8CHAR_PTR) "newpin", 6),
      CKR_ARGUMENTS_BAD);
  ROW("C_SetPIN(NULL new, len 6)", F->C_SetPIN(x->h, (CK_UTF8CHAR_PTR)pin, plen(), NULL, 6),
      CKR_ARGUMENTS_BAD);
  ROW("C_SetPIN(new len huge)",
      F->C_SetPIN(x->h, (CK_UTF8CHAR_PTR)pin, plen(), (CK_UTF8CHAR_PTR) "newpin", HUGE_LEN),
      CKR_ARGUMENTS_BAD, CKR_PIN_LEN_RANGE);
  ROW("C_SetPIN(read-only session)",
      F->C_SetPIN(x->ro, (CK_UTF8CHAR_PTR)pin, plen(), (CK_UTF8CHAR_PTR) "newpin", 6),
      CKR_SESSION_READ_ONLY);
  ROW("C_SetPIN(wrong old pin)",
      F->C_SetPIN(x->h, (CK_UTF8CHAR_PTR) "wrong-pin", 9, (CK_UTF8CHAR_PTR) "newpin", 6),
      CKR_PIN_INCORRECT);

  ROW("C_GetFunctionStatus", F->C_GetFunctionStatus(x->h), CKR_FUNCTION_NOT_PARALLEL);
  ROW("C_GetFunctionStatus(closed)", F->C_GetFunctionStatus(x->dead), CKR_SESSION_HANDLE_INVALID,
      CKR_SESSION_CLOSED, CKR_FUNCTION_NOT_PARALLEL);
  ROW("C_CancelFunction", F->C_CancelFunction(x->h), CKR_FUNCTION_NOT_PARALLEL);
  ROW("C_SessionCancel(closed)", F30->C_SessionCancel(x->dead, CKF_ALL_OPERATIONS),
      CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED);
  return 1;
}

static int keys(Fixture *x) {
  CK_MECHANISM aes_gen = {CKM_AES_KEY_GEN, NULL, 0};
  CK_MECHANISM secret_gen = {CKM_GENERIC_SECRET_KEY_GEN, NULL, 0};
  CK_MECHANISM rsa_gen = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0};
  CK_ULONG len16 = 16, len32 = 32, bits = 2048;
  CK_BYTE e[] = {1, 0, 1};
  CK_ATTRIBUTE aes_t[] = {{CKA_TOKEN, &no, 1},       {CKA_VALUE_LEN, &len16, sizeof len16},
                          {CKA_ENCRYPT, &yes, 1},    {CKA_DECRYPT, &yes, 1},
                          {CKA_WRAP, &yes, 1},       {CKA_UNWRAP, &yes, 1},
                          {CKA_EXTRACTABLE, &yes, 1}, {CKA_DERIVE, &yes, 1}};
  CK_ATTRIBUTE hmac_t[] = {{CKA_TOKEN, &no, 1}, {CKA_VALUE_LEN, &len32, sizeof len32},
                           {CKA_SIGN, &yes, 1}, {CKA_VERIFY, &yes, 1},
                           {CKA_SENSITIVE, &no, 1}, {CKA_EXTRACTABLE, &yes, 1}};
  CK_ATTRIBUTE pub_t[] = {{CKA_TOKEN, &no, 1},
                          {CKA_ENCRYPT, &yes, 1},
                          {CKA_VERIFY, &yes, 1},
                          {CKA_VERIFY_RECOVER, &yes, 1},
                          {CKA_MODULUS_BITS, &bits, sizeof bits},
                          {CKA_PUBLIC_EXPONENT, e, sizeof e}};
  CK_ATTRIBUTE priv_t[] = {{CKA_TOKEN, &no, 1}, {CKA_PRIVATE, &yes, 1}, {CKA_DECRYPT, &yes, 1},
                           {CKA_SIGN, &yes, 1}, {CKA_SIGN_RECOVER, &yes, 1}};
  SETUP("C_GenerateKey(AES-128)", F->C_GenerateKey(x->h, &aes_gen, aes_t, 8, &x->aes));
  SETUP("C_GenerateKey(AES-128, to wrap)",
        F->C_GenerateKey(x->h, &aes_gen, aes_t, 8, &x->aes_wrapped));
  SETUP("C_GenerateKey(generic secret)",
        F->C_GenerateKey(x->h, &secret_gen, hmac_t, 6, &x->hmac));
  SETUP("C_GenerateKeyPair(RSA-2048)",
        F->C_GenerateKeyPair(x->h, &rsa_gen, pub_t, 6, priv_t, 5, &x->rsa_pub, &x->rsa_priv));
  SETUP("C_GenerateKey(AES-128 in slot 1)",
        F->C_GenerateKey(x->foreign, &aes_gen, aes_t, 8, &x->foreign_key));
  SETUP("C_GenerateKey(AES-128 to destroy)",
        F->C_GenerateKey(x->h, &aes_gen, aes_t, 8, &x->dead_key));
  SETUP("C_DestroyObject", F->C_DestroyObject(x->h, x->dead_key));
  return 1;
}

static int objects(Fixture *x) {
  CK_OBJECT_CLASS data_class = CKO_DATA, secret = CKO_SECRET_KEY;
  CK_KEY_TYPE aes = CKK_AES;
  CK_OBJECT_HANDLE o = 0, found[4];
  CK_ULONG n = 0, size = 0, vlen = 0;
  CK_BYTE value[16] = {1, 2, 3};
  CK_BYTE flag4[4] = {1, 0, 0, 0};
  CK_ATTRIBUTE good[] = {{CKA_CLASS, &data_class, sizeof data_class},
                         {CKA_TOKEN, &no, 1},
                         {CKA_LABEL, "hostile", 7}};
  CK_ATTRIBUTE dup[] = {{CKA_CLASS, &data_class, sizeof data_class},
                        {CKA_TOKEN, &no, 1},
                        {CKA_CLASS, &data_class, sizeof data_class}};
  CK_ATTRIBUTE null_value[] = {{CKA_CLASS, &data_class, sizeof data_class},
                               {CKA_TOKEN, &no, 1},
                               {CKA_LABEL, NULL, 7}};
  CK_ATTRIBUTE absurd[] = {{CKA_CLASS, &data_class, sizeof data_class},
                           {CKA_TOKEN, &no, 1},
                           {CKA_LABEL, "hostile", HUGE_LEN}};
  CK_ATTRIBUTE unknown[] = {{CKA_CLASS, &data_class, sizeof data_class},
                            {CKA_TOKEN, &no, 1},
                            {CKA_UNKNOWN, value, 4}};
  CK_ATTRIBUTE no_class[] = {{CKA_TOKEN, &no, 1}, {CKA_LABEL, "hostile", 7}};
  CK_ATTRIBUTE bad_bool[] = {{CKA_CLASS, &data_class, sizeof data_class},
                             {CKA_TOKEN, flag4, sizeof flag4}};
  CK_ATTRIBUTE bad_ulong[] = {{CKA_CLASS, &data_class, 3}, {CKA_TOKEN, &no, 1}};
  CK_ATTRIBUTE key_no_value[] = {{CKA_CLASS, &secret, sizeof secret},
                                 {CKA_KEY_TYPE, &aes, sizeof aes},
                                 {CKA_TOKEN, &no, 1}};
  CK_ATTRIBUTE key_bad_value[] = {{CKA_CLASS, &secret, sizeof secret},
                                  {CKA_KEY_TYPE, &aes, sizeof aes},
                                  {CKA_TOKEN, &no, 1},
                                  {CKA_VALUE, value, 7}};

  ROW("C_CreateObject(NULL template, count 3)", F->C_CreateObject(x->h, NULL, 3, &o),
      CKR_ARGUMENTS_BAD);
  ROW("C_CreateObject(phObject NULL)", F->C_CreateObject(x->h, good, 3, NULL), CKR_ARGUMENTS_BAD);
  ROW("C_CreateObject(count huge)", F->C_CreateObject(x->h, good, HUGE_LEN, &o),
      CKR_ARGUMENTS_BAD, CKR_TEMPLATE_INCONSISTENT);
  ROW("C_CreateObject(duplicate CKA_CLASS)", F->C_CreateObject(x->h, dup, 3, &o),
      CKR_TEMPLATE_INCONSISTENT);
  ROW("C_CreateObject(NULL pValue, len 7)", F->C_CreateObject(x->h, null_value, 3, &o),
      CKR_ARGUMENTS_BAD, CKR_ATTRIBUTE_VALUE_INVALID);
  ROW("C_CreateObject(ulValueLen huge)", F->C_CreateObject(x->h, absurd, 3, &o),
      CKR_ARGUMENTS_BAD, CKR_ATTRIBUTE_VALUE_INVALID);
  ROW("C_CreateObject(unknown attribute type)", F->C_CreateObject(x->h, unknown, 3, &o),
      CKR_ATTRIBUTE_TYPE_INVALID);
  ROW("C_CreateObject(no CKA_CLASS)", F->C_CreateObject(x->h, no_class, 2, &o),
      CKR_TEMPLATE_INCOMPLETE);
  ROW("C_CreateObject(CK_BBOOL of 4 bytes)", F->C_CreateObject(x->h, bad_bool, 2, &o),
      CKR_ATTRIBUTE_VALUE_INVALID);
  ROW("C_CreateObject(CK_ULONG of 3 bytes)", F->C_CreateObject(x->h, bad_ulong, 2, &o),
      CKR_ATTRIBUTE_VALUE_INVALID);
  ROW("C_CreateObject(AES key without CKA_VALUE)", F->C_CreateObject(x->h, key_no_value, 3, &o),
      CKR_TEMPLATE_INCOMPLETE);
  ROW("C_CreateObject(AES key of 7 bytes)", F->C_CreateObject(x->h, key_bad_value, 4, &o),
      CKR_ATTRIBUTE_VALUE_INVALID, CKR_KEY_SIZE_RANGE);
  ROW("C_CreateObject(closed session)", F->C_CreateObject(x->dead, good, 3, &o),
      CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED);
  CHECK_EQ("  no handle written by the refusals", o, 0);
  ROW("C_CreateObject(data object)", F->C_CreateObject(x->h, good, 3, &o), CKR_OK);

  ROW("C_CopyObject(destroyed key)", F->C_CopyObject(x->h, x->dead_key, good + 1, 1, &n),
      CKR_OBJECT_HANDLE_INVALID);
  /* regression: slot 1's session object handle named a slot 0 object */
  ROW("C_CopyObject(other partition's key)",
      F->C_CopyObject(x->h, x->foreign_key, good + 1, 1, &n), CKR_OBJECT_HANDLE_INVALID);
  ROW("C_CopyObject(handle 0)", F->C_CopyObject(x->h, 0, good + 1, 1, &n),
      CKR_OBJECT_HANDLE_INVALID);
  ROW("C_CopyObject(random handle)", F->C_CopyObject(x->h, RANDOM_HANDLE, good + 1, 1, &n),
      CKR_OBJECT_HANDLE_INVALID);
  ROW("C_CopyObject(huge handle)", F->C_CopyObject(x->h, HUGE_LEN, good + 1, 1, &n),
      CKR_OBJECT_HANDLE_INVALID);
  ROW("C_CopyObject(phNewObject NULL)", F->C_CopyObject(x->h, o, good + 1, 1, NULL),
      CKR_ARGUMENTS_BAD);
  ROW("C_CopyObject(duplicate attributes)", F->C_CopyObject(x->h, o, dup, 3, &n),
      CKR_TEMPLATE_INCONSISTENT);

  ROW("C_GetObjectSize(pulSize NULL)", F->C_GetObjectSize(x->h, o, NULL), CKR_ARGUMENTS_BAD);
  ROW("C_GetObjectSize(destroyed key)", F->C_GetObjectSize(x->h, x->dead_key, &size),
      CKR_OBJECT_HANDLE_INVALID);
  ROW("C_GetObjectSize(other partition's key)", F->C_GetObjectSize(x->h, x->foreign_key, &size),
      CKR_OBJECT_HANDLE_INVALID);

  {
    CK_ATTRIBUTE q = {CKA_VALUE_LEN, NULL, 0};
    ROW("C_GetAttributeValue(NULL template, count 1)",
        F->C_GetAttributeValue(x->h, x->aes, NULL, 1), CKR_ARGUMENTS_BAD);
    /* regression: the template was read past its end (SIGSEGV) */
    ROW("C_GetAttributeValue(count huge)", F->C_GetAttributeValue(x->h, x->aes, &q, HUGE_LEN),
        CKR_ARGUMENTS_BAD);
    ROW("C_GetAttributeValue(VALUE_LEN) length query",
        F->C_GetAttributeValue(x->h, x->aes, &q, 1), CKR_OK);
    CHECK_EQ("  length is sizeof(CK_ULONG)", q.ulValueLen, sizeof(CK_ULONG));
    q.pValue = &vlen;
    q.ulValueLen = 4;
    ROW("C_GetAttributeValue(VALUE_LEN, 4-byte buffer)",
        F->C_GetAttributeValue(x->h, x->aes, &q, 1), CKR_BUFFER_TOO_SMALL);
    CHECK_EQ("  ulValueLen is CK_UNAVAILABLE_INFORMATION", q.ulValueLen,
             CK_UNAVAILABLE_INFORMATION);
    q.ulValueLen = sizeof vlen;
    ROW("C_GetAttributeValue(VALUE_LEN) retry", F->C_GetAttributeValue(x->h, x->aes, &q, 1),
        CKR_OK);
    CHECK_EQ("  the value", vlen, 16);
    q.type = CKA_UNKNOWN;
    q.pValue = NULL;
    q.ulValueLen = 0;
    ROW("C_GetAttributeValue(unknown type)", F->C_GetAttributeValue(x->h, x->aes, &q, 1),
        CKR_ATTRIBUTE_TYPE_INVALID);
    CHECK_EQ("  ulValueLen is CK_UNAVAILABLE_INFORMATION", q.ulValueLen,
             CK_UNAVAILABLE_INFORMATION);
    q.type = CKA_VALUE_LEN;
    ROW("C_GetAttributeValue(other partition's key)",
        F->C_GetAttributeValue(x->h, x->foreign_key, &q, 1), CKR_OBJECT_HANDLE_INVALID);
    ROW("C_GetAttributeValue(destroyed key)", F->C_GetAttributeValue(x->h, x->dead_key, &q, 1),
        CKR_OBJECT_HANDLE_INVALID);
    ROW("C_GetAttributeValue(closed session)", F->C_GetAttributeValue(x->dead, x->aes, &q, 1),
        CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED);
    ROW("C_GetAttributeValue(slot 1 session, slot 0 key)",
        F->C_GetAttributeValue(x->foreign, x->aes, &q, 1), CKR_OBJECT_HANDLE_INVALID);
  }

  ROW("C_SetAttributeValue(NULL template, count 1)", F->C_SetAttributeValue(x->h, o, NULL, 1),
      CKR_ARGUMENTS_BAD);
  ROW("C_SetAttributeValue(duplicate attributes)", F->C_SetAttributeValue(x->h, o, dup, 3),
      CKR_TEMPLATE_INCONSISTENT);
  ROW("C_SetAttributeValue(NULL pValue, len 7)",
      F->C_SetAttributeValue(x->h, o, null_value + 2, 1), CKR_ARGUMENTS_BAD,
      CKR_ATTRIBUTE_VALUE_INVALID);
  ROW("C_SetAttributeValue(ulValueLen huge)", F->C_SetAttributeValue(x->h, o, absurd + 2, 1),
      CKR_ARGUMENTS_BAD, CKR_ATTRIBUTE_VALUE_INVALID);
  ROW("C_SetAttributeValue(unknown type)", F->C_SetAttributeValue(x->h, o, unknown + 2, 1),
      CKR_ATTRIBUTE_TYPE_INVALID);
  ROW("C_SetAttributeValue(CKA_CLASS to secret key)",
      F->C_SetAttributeValue(x->h, o, key_no_value, 1), CKR_ATTRIBUTE_READ_ONLY,
      CKR_TEMPLATE_INCONSISTENT);
  /* regression (fuzzer): an empty template skipped the handle check and answered CKR_OK */
  ROW("C_SetAttributeValue(other partition's key, empty template)",
      F->C_SetAttributeValue(x->h, x->foreign_key, good, 0), CKR_OBJECT_HANDLE_INVALID);
  ROW("C_SetAttributeValue(destroyed key, empty template)",
      F->C_SetAttributeValue(x->h, x->dead_key, NULL, 0), CKR_OBJECT_HANDLE_INVALID);
  ROW("C_SetAttributeValue(destroyed key)",
      F->C_SetAttributeValue(x->h, x->dead_key, good + 2, 1), CKR_OBJECT_HANDLE_INVALID);
  ROW("C_SetAttributeValue(other partition's key)",
      F->C_SetAttributeValue(x->h, x->foreign_key, good + 2, 1), CKR_OBJECT_HANDLE_INVALID);

  ROW("C_FindObjects without init", F->C_FindObjects(x->h, found, 4, &n),
      CKR_OPERATION_NOT_INITIALIZED);
  ROW("C_FindObjectsFinal without init", F->C_FindObjectsFinal(x->h),
      CKR_OPERATION_NOT_INITIALIZED);
  ROW("C_FindObjectsInit(NULL template, count 2)", F->C_FindObjectsInit(x->h, NULL, 2),
      CKR_ARGUMENTS_BAD);
  ROW("C_FindObjectsInit(NULL pValue, len 7)", F->C_FindObjectsInit(x->h, null_value, 3),
      CKR_ARGUMENTS_BAD, CKR_ATTRIBUTE_VALUE_INVALID);
  ROW("C_FindObjectsInit(count huge)", F->C_FindObjectsInit(x->h, good, HUGE_LEN),
      CKR_ARGUMENTS_BAD, CKR_TEMPLATE_INCONSISTENT);
  {
    /* regression (fuzzer): a CK_ULONG above 2^63 reached SQLite and raised in the device */
    CK_ULONG big = ~0UL;
    CK_ATTRIBUTE cls[] = {{CKA_CLASS, &big, sizeof big}, {CKA_KEY_TYPE, &big, sizeof big}};
    ROW("C_FindObjectsInit(CKA_CLASS ~0)", F->C_FindObjectsInit(x->h, cls, 1), CKR_OK);
    n = 99;
    ROW("C_FindObjects", F->C_FindObjects(x->h, found, 4, &n), CKR_OK);
    CHECK_EQ("  nothing found", n, 0);
    ROW("C_FindObjectsFinal", F->C_FindObjectsFinal(x->h), CKR_OK);
    ROW("C_FindObjectsInit(CKA_KEY_TYPE ~0)", F->C_FindObjectsInit(x->h, cls + 1, 1), CKR_OK);
    ROW("C_FindObjectsFinal", F->C_FindObjectsFinal(x->h), CKR_OK);
  }
  ROW("C_FindObjectsInit(label)", F->C_FindObjectsInit(x->h, good + 2, 1), CKR_OK);
  ROW("C_FindObjectsInit again", F->C_FindObjectsInit(x->h, good + 2, 1), CKR_OPERATION_ACTIVE);
  ROW("C_FindObjects(NULL array, max 4)", F->C_FindObjects(x->h, NULL, 4, &n), CKR_ARGUMENTS_BAD);
  ROW("C_FindObjects(pulObjectCount NULL)", F->C_FindObjects(x->h, found, 4, NULL),
      CKR_ARGUMENTS_BAD);
  n = 99;
  ROW("C_FindObjects(max 0)", F->C_FindObjects(x->h, found, 0, &n), CKR_OK);
  CHECK_EQ("  none returned", n, 0);
  ROW("C_FindObjects(max 4)", F->C_FindObjects(x->h, found, 4, &n), CKR_OK);
  CHECK_EQ("  the data object found", n >= 1 && found[0] == o, 1);
  ROW("C_FindObjectsFinal", F->C_FindObjectsFinal(x->h), CKR_OK);
  ROW("C_FindObjectsFinal twice", F->C_FindObjectsFinal(x->h), CKR_OPERATION_NOT_INITIALIZED);

  ROW("C_DestroyObject(destroyed key)", F->C_DestroyObject(x->h, x->dead_key),
      CKR_OBJECT_HANDLE_INVALID);
  ROW("C_DestroyObject(other partition's key)", F->C_DestroyObject(x->h, x->foreign_key),
      CKR_OBJECT_HANDLE_INVALID);
  ROW("C_DestroyObject(handle 0)", F->C_DestroyObject(x->h, 0), CKR_OBJECT_HANDLE_INVALID);
  ROW("C_DestroyObject(random)", F->C_DestroyObject(x->h, RANDOM_HANDLE),
      CKR_OBJECT_HANDLE_INVALID);
  ROW("C_DestroyObject(closed session)", F->C_DestroyObject(x->dead, o),
      CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED);
  ROW("C_DestroyObject(data object)", F->C_DestroyObject(x->h, o), CKR_OK);
  ROW("C_DestroyObject(it again)", F->C_DestroyObject(x->h, o), CKR_OBJECT_HANDLE_INVALID);
  return 1;
}

static void cancel(CK_SESSION_HANDLE h) { F30->C_SessionCancel(h, CKF_ALL_OPERATIONS); }

/* Init with each bad parameter; never CKR_OK. `kind` is EncryptInit, DecryptInit or SignInit. */
static void bad_init_at(int line, const char *label,
                        CK_RV (*init)(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE),
                        CK_SESSION_HANDLE h, CK_MECHANISM *mech, CK_OBJECT_HANDLE key, CK_RV a,
                        CK_RV b) {
  CK_RV rv = init(h, mech, key);
  const CK_RV want[] = {a, b};
  row(line, label, rv, want, 2);
  if (rv == CKR_OK) cancel(h);
}
#define bad_init(...) bad_init_at(__LINE__, __VA_ARGS__)

static int ciphers(Fixture *x) {
  CK_MECHANISM cbc = {CKM_AES_CBC, iv16, 16}, cbc_pad = {CKM_AES_CBC_PAD, iv16, 16};
  CK_MECHANISM m;
  CK_GCM_PARAMS g;
  CK_BYTE iv12[12] = {0}, aad[8] = {0}, out[64];
  CK_ULONG n, ct_len;
  CK_BYTE ct[64];
  CK_RV (*enc_init)(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE) = F->C_EncryptInit;
  CK_RV (*dec_init)(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE) = F->C_DecryptInit;

  ROW("C_Encrypt without init", F->C_Encrypt(x->h, data16, 16, out, &n),
      CKR_OPERATION_NOT_INITIALIZED);
  ROW("C_EncryptUpdate without init", F->C_EncryptUpdate(x->h, data16, 16, out, &n),
      CKR_OPERATION_NOT_INITIALIZED);
  ROW("C_EncryptFinal without init", F->C_EncryptFinal(x->h, out, &n),
      CKR_OPERATION_NOT_INITIALIZED);
  ROW("C_Decrypt without init", F->C_Decrypt(x->h, data16, 16, out, &n),
      CKR_OPERATION_NOT_INITIALIZED);
  ROW("C_DecryptUpdate without init", F->C_DecryptUpdate(x->h, data16, 16, out, &n),
      CKR_OPERATION_NOT_INITIALIZED);
  ROW("C_DecryptFinal without init", F->C_DecryptFinal(x->h, out, &n),
      CKR_OPERATION_NOT_INITIALIZED);

  ROW("C_EncryptInit(NULL mechanism)", F->C_EncryptInit(x->h, NULL, x->aes), CKR_ARGUMENTS_BAD);
  m = (CK_MECHANISM){CKM_UNKNOWN, NULL, 0};
  bad_init("C_EncryptInit(unknown mechanism)", enc_init, x->h, &m, x->aes, CKR_MECHANISM_INVALID,
           CKR_MECHANISM_INVALID);
  m = (CK_MECHANISM){CKM_SHA256_RSA_PKCS, NULL, 0};
  bad_init("C_EncryptInit(a signing mechanism)", enc_init, x->h, &m, x->rsa_pub,
           CKR_MECHANISM_INVALID, CKR_MECHANISM_INVALID);
  m = (CK_MECHANISM){CKM_AES_CBC, NULL, 0};
  bad_init("C_EncryptInit(CBC, no IV)", enc_init, x->h, &m, x->aes, CKR_MECHANISM_PARAM_INVALID,
           CKR_MECHANISM_PARAM_INVALID);
  m = (CK_MECHANISM){CKM_AES_CBC, iv16, 8};
  bad_init("C_EncryptInit(CBC, 8-byte IV)", enc_init, x->h, &m, x->aes,
           CKR_MECHANISM_PARAM_INVALID, CKR_MECHANISM_PARAM_INVALID);
  m = (CK_MECHANISM){CKM_AES_CBC, iv17, 17};
  bad_init("C_EncryptInit(CBC, 17-byte IV)", enc_init, x->h, &m, x->aes,
           CKR_MECHANISM_PARAM_INVALID, CKR_MECHANISM_PARAM_INVALID);
  m = (CK_MECHANISM){CKM_AES_CBC, NULL, 16};
  bad_init("C_EncryptInit(CBC, NULL IV, len 16)", enc_init, x->h, &m, x->aes,
           CKR_MECHANISM_PARAM_INVALID, CKR_ARGUMENTS_BAD);
  m = (CK_MECHANISM){CKM_AES_CBC, iv16, HUGE_LEN};
  bad_init("C_EncryptInit(CBC, IV len huge)", enc_init, x->h, &m, x->aes,
           CKR_MECHANISM_PARAM_INVALID, CKR_ARGUMENTS_BAD);
  m = (CK_MECHANISM){CKM_AES_ECB, iv16, 16};
  bad_init("C_EncryptInit(ECB with a parameter)", enc_init, x->h, &m, x->aes,
           CKR_MECHANISM_PARAM_INVALID, CKR_MECHANISM_PARAM_INVALID);
  m = (CK_MECHANISM){CKM_AES_GCM, NULL, 0};
  bad_init("C_EncryptInit(GCM, no params)", enc_init, x->h, &m, x->aes,
           CKR_MECHANISM_PARAM_INVALID, CKR_MECHANISM_PARAM_INVALID);
  g = (CK_GCM_PARAMS){iv12, 12, 96, aad, 8, 128};
  m = (CK_MECHANISM){CKM_AES_GCM, &g, sizeof g - 8};
  bad_init("C_EncryptInit(GCM, short params)", enc_init, x->h, &m, x->aes,
           CKR_MECHANISM_PARAM_INVALID, CKR_MECHANISM_PARAM_INVALID);
  m = (CK_MECHANISM){CKM_AES_GCM, &g, sizeof g + 8};
  bad_init("C_EncryptInit(GCM, oversized params)", enc_init, x->h, &m, x->aes,
           CKR_MECHANISM_PARAM_INVALID, CKR_MECHANISM_PARAM_INVALID);
  m = (CK_MECHANISM){CKM_AES_GCM, &g, sizeof g};
  g.ulTagBits = 0;
  bad_init("C_EncryptInit(GCM, tag bits 0)", enc_init, x->h, &m, x->aes,
           CKR_MECHANISM_PARAM_INVALID, CKR_MECHANISM_PARAM_INVALID);
  g.ulTagBits = 130;
  bad_init("C_EncryptInit(GCM, tag bits 130)", enc_init, x->h, &m, x->aes,
           CKR_MECHANISM_PARAM_INVALID, CKR_MECHANISM_PARAM_INVALID);
  g.ulTagBits = 128;
  g.ulIvLen = 0;
  bad_init("C_EncryptInit(GCM, IV length 0)", enc_init, x->h, &m, x->aes,
           CKR_MECHANISM_PARAM_INVALID, CKR_MECHANISM_PARAM_INVALID);
  g.ulIvLen = 12;
  g.pIv = NULL;
  bad_init("C_EncryptInit(GCM, NULL IV, len 12)", enc_init, x->h, &m, x->aes,
           CKR_MECHANISM_PARAM_INVALID, CKR_ARGUMENTS_BAD);
  g.pIv = iv12;
  g.ulIvLen = HUGE_LEN;
  bad_init("C_EncryptInit(GCM, IV len huge)", enc_init, x->h, &m, x->aes,
           CKR_MECHANISM_PARAM_INVALID, CKR_ARGUMENTS_BAD);
  g.ulIvLen = 12;
  g.ulAADLen = HUGE_LEN;
  bad_init("C_EncryptInit(GCM, AAD len huge)", enc_init, x->h, &m, x->aes,
           CKR_MECHANISM_PARAM_INVALID, CKR_ARGUMENTS_BAD);
  g.pAAD = NULL;
  g.ulAADLen = 8;
  bad_init("C_EncryptInit(GCM, NULL AAD, len 8)", enc_init, x->h, &m, x->aes,
           CKR_MECHANISM_PARAM_INVALID, CKR_ARGUMENTS_BAD);
  g.pAAD = aad;
  m = (CK_MECHANISM){CKM_RSA_PKCS_OAEP, NULL, 0};
  bad_init("C_EncryptInit(OAEP on an AES key)", enc_init, x->h, &m, x->aes,
           CKR_KEY_TYPE_INCONSISTENT, CKR_MECHANISM_PARAM_INVALID);
  bad_init("C_EncryptInit(CBC on an RSA key)", enc_init, x->h, &cbc, x->rsa_pub,
           CKR_KEY_TYPE_INCONSISTENT, CKR_KEY_TYPE_INCONSISTENT);
  bad_init("C_EncryptInit(destroyed key)", enc_init, x->h, &cbc, x->dead_key,
           CKR_KEY_HANDLE_INVALID, CKR_KEY_HANDLE_INVALID);
  bad_init("C_EncryptInit(other partition's key)", enc_init, x->h, &cbc, x->foreign_key,
           CKR_KEY_HANDLE_INVALID, CKR_KEY_HANDLE_INVALID);
  /* regression: handle 0 answered CKR_OBJECT_HANDLE_INVALID */
  bad_init("C_EncryptInit(key handle 0)", enc_init, x->h, &cbc, 0, CKR_KEY_HANDLE_INVALID,
           CKR_KEY_HANDLE_INVALID);
  bad_init("C_EncryptInit(random key handle)", enc_init, x->h, &cbc, RANDOM_HANDLE,
           CKR_KEY_HANDLE_INVALID, CKR_KEY_HANDLE_INVALID);
  bad_init("C_EncryptInit(slot 1 session, slot 0 key)", enc_init, x->foreign, &cbc, x->aes,
           CKR_KEY_HANDLE_INVALID, CKR_KEY_HANDLE_INVALID);
  bad_init("C_DecryptInit(CBC, 8-byte IV)", dec_init, x->h, &(CK_MECHANISM){CKM_AES_CBC, iv16, 8},
           x->aes, CKR_MECHANISM_PARAM_INVALID, CKR_MECHANISM_PARAM_INVALID);
  bad_init("C_DecryptInit(destroyed key)", dec_init, x->h, &cbc, x->dead_key,
           CKR_KEY_HANDLE_INVALID, CKR_KEY_HANDLE_INVALID);
  bad_init("C_DecryptInit(HMAC key)", dec_init, x->h, &cbc, x->hmac, CKR_KEY_TYPE_INCONSISTENT,
           CKR_KEY_FUNCTION_NOT_PERMITTED);

  /* single part: length query, short buffer, retry; the operation ends after */
  SETUP("C_EncryptInit(CBC)", F->C_EncryptInit(x->h, &cbc, x->aes));
  ROW("C_EncryptInit again", F->C_EncryptInit(x->h, &cbc, x->aes), CKR_OPERATION_ACTIVE);
  ROW("C_Encrypt(pulLen NULL)", F->C_Encrypt(x->h, data32, 32, out, NULL), CKR_ARGUMENTS_BAD);
  cancel(x->h);
  SETUP("C_EncryptInit(CBC)", F->C_EncryptInit(x->h, &cbc, x->aes));
  ROW("C_Encrypt(NULL data, len 32)", F->C_Encrypt(x->h, NULL, 32, out, &n), CKR_ARGUMENTS_BAD);
  cancel(x->h);
  SETUP("C_EncryptInit(CBC)", F->C_EncryptInit(x->h, &cbc, x->aes));
  ROW("C_Encrypt(data len huge)", F->C_Encrypt(x->h, data32, HUGE_LEN, out, &n),
      CKR_ARGUMENTS_BAD, CKR_DATA_LEN_RANGE);
  cancel(x->h);
  SETUP("C_EncryptInit(CBC)", F->C_EncryptInit(x->h, &cbc, x->aes));
  ROW("C_Encrypt(15 bytes, CBC without padding)", F->C_Encrypt(x->h, data32, 15, out, &n),
      CKR_DATA_LEN_RANGE);
  cancel(x->h);
  SETUP("C_EncryptInit(CBC)", F->C_EncryptInit(x->h, &cbc, x->aes));
  ROW("C_Encrypt(NULL out) length query", F->C_Encrypt(x->h, data32, 32, NULL, &n), CKR_OK);
  CHECK_EQ("  length", n, 32);
  n = 16;
  ROW("C_Encrypt(16-byte buffer)", F->C_Encrypt(x->h, data32, 32, ct, &n), CKR_BUFFER_TOO_SMALL);
  CHECK_EQ("  length needed written back", n, 32);
  ROW("C_EncryptUpdate after single-part began", F->C_EncryptUpdate(x->h, data16, 16, out, &n),
      CKR_OPERATION_ACTIVE);
  n = 32;
  ROW("C_Encrypt retry (operation still active)", F->C_Encrypt(x->h, data32, 32, ct, &n), CKR_OK);
  CHECK_EQ("  length", n, 32);
  ct_len = n;
  ROW("C_Encrypt after it finished", F->C_Encrypt(x->h, data32, 32, out, &n),
      CKR_OPERATION_NOT_INITIALIZED);

  /* multi part, then single part mixed in */
  SETUP("C_EncryptInit(CBC)", F->C_EncryptInit(x->h, &cbc, x->aes));
  n = sizeof out;
  ROW("C_EncryptUpdate(16)", F->C_EncryptUpdate(x->h, data16, 16, out, &n), CKR_OK);
  ROW("C_Encrypt after C_EncryptUpdate", F->C_Encrypt(x->h, data16, 16, out, &n),
      CKR_OPERATION_ACTIVE);
  ROW("C_EncryptUpdate(NULL part, len 16)", F->C_EncryptUpdate(x->h, NULL, 16, out, &n),
      CKR_ARGUMENTS_BAD);
  cancel(x->h);
  SETUP("C_EncryptInit(CBC)", F->C_EncryptInit(x->h, &cbc, x->aes));
  ROW("C_EncryptUpdate(part len huge)", F->C_EncryptUpdate(x->h, data16, HUGE_LEN, out, &n),
      CKR_ARGUMENTS_BAD, CKR_DATA_LEN_RANGE);
  cancel(x->h);
  SETUP("C_EncryptInit(CBC)", F->C_EncryptInit(x->h, &cbc, x->aes));
  n = sizeof out;
  ROW("C_EncryptUpdate(16)", F->C_EncryptUpdate(x->h, data16, 16, out, &n), CKR_OK);
  ROW("C_EncryptFinal(pulLen NULL)", F->C_EncryptFinal(x->h, out, NULL), CKR_ARGUMENTS_BAD);
  cancel(x->h);
  SETUP("C_EncryptInit(CBC)", F->C_EncryptInit(x->h, &cbc, x->aes));
  n = sizeof out;
  ROW("C_EncryptUpdate(7)", F->C_EncryptUpdate(x->h, data16, 7, out, &n), CKR_OK);
  ROW("C_EncryptFinal(7 bytes left, no padding)", F->C_EncryptFinal(x->h, out, &n),
      CKR_DATA_LEN_RANGE);
  ROW("C_EncryptFinal after the error", F->C_EncryptFinal(x->h, out, &n),
      CKR_OPERATION_NOT_INITIALIZED);

  /* CBC-PAD final with a short buffer: retry gets the block */
  SETUP("C_EncryptInit(CBC_PAD)", F->C_EncryptInit(x->h, &cbc_pad, x->aes));
  n = sizeof out;
  ROW("C_EncryptUpdate(7)", F->C_EncryptUpdate(x->h, data16, 7, out, &n), CKR_OK);
  CHECK_EQ("  nothing out yet", n, 0);
  n = 0;
  ROW("C_EncryptFinal(NULL) length query", F->C_EncryptFinal(x->h, NULL, &n), CKR_OK);
  CHECK_EQ("  length", n, 16);
  n = 4;
  ROW("C_EncryptFinal(4-byte buffer)", F->C_EncryptFinal(x->h, out, &n), CKR_BUFFER_TOO_SMALL);
  CHECK_EQ("  length needed written back", n, 16);
  ROW("C_EncryptFinal retry", F->C_EncryptFinal(x->h, out, &n), CKR_OK);
  ROW("C_EncryptFinal after it finished", F->C_EncryptFinal(x->h, out, &n),
      CKR_OPERATION_NOT_INITIALIZED);

  /* decrypt */
  SETUP("C_DecryptInit(CBC)", F->C_DecryptInit(x->h, &cbc, x->aes));
  ROW("C_Decrypt(NULL data, len 32)", F->C_Decrypt(x->h, NULL, 32, out, &n), CKR_ARGUMENTS_BAD);
  cancel(x->h);
  SETUP("C_DecryptInit(CBC)", F->C_DecryptInit(x->h, &cbc, x->aes));
  ROW("C_Decrypt(17 bytes)", F->C_Decrypt(x->h, ct, 17, out, &n), CKR_ENCRYPTED_DATA_LEN_RANGE);
  SETUP("C_DecryptInit(CBC)", F->C_DecryptInit(x->h, &cbc, x->aes));
  ROW("C_Decrypt(data len huge)", F->C_Decrypt(x->h, ct, HUGE_LEN, out, &n), CKR_ARGUMENTS_BAD,
      CKR_ENCRYPTED_DATA_LEN_RANGE);
  cancel(x->h);
  SETUP("C_DecryptInit(CBC)", F->C_DecryptInit(x->h, &cbc, x->aes));
  ROW("C_Decrypt(NULL out) length query", F->C_Decrypt(x->h, ct, ct_len, NULL, &n), CKR_OK);
  CHECK_EQ("  length at least the plaintext", n >= 32, 1);
  n = 8;
  ROW("C_Decrypt(8-byte buffer)", F->C_Decrypt(x->h, ct, ct_len, out, &n), CKR_BUFFER_TOO_SMALL);
  CHECK_EQ("  length needed written back", n >= 32, 1);
  ROW("C_Decrypt retry", F->C_Decrypt(x->h, ct, ct_len, out, &n), CKR_OK);
  CHECK_EQ("  the plaintext", n == 32 && !memcmp(out, data32, 32), 1);
  SETUP("C_DecryptInit(CBC)", F->C_DecryptInit(x->h, &cbc, x->aes));
  n = sizeof out;
  ROW("C_DecryptUpdate(16)", F->C_DecryptUpdate(x->h, ct, 16, out, &n), CKR_OK);
  ROW("C_Decrypt after C_DecryptUpdate", F->C_Decrypt(x->h, ct, 16, out, &n),
      CKR_OPERATION_ACTIVE);
  ROW("C_DecryptFinal(pulLen NULL)", F->C_DecryptFinal(x->h, out, NULL), CKR_ARGUMENTS_BAD);
  cancel(x->h);

  /* GCM: a tag that does not match */
  g = (CK_GCM_PARAMS){iv12, 12, 96, aad, 8, 128};
  m = (CK_MECHANISM){CKM_AES_GCM, &g, sizeof g};
  SETUP("C_EncryptInit(GCM)", F->C_EncryptInit(x->h, &m, x->aes));
  n = sizeof ct;
  SETUP("C_Encrypt(GCM)", F->C_Encrypt(x->h, data16, 16, ct, &n));
  CHECK_EQ("  ciphertext and tag", n, 32);
  ct[n - 1] ^= 1;
  SETUP("C_DecryptInit(GCM)", F->C_DecryptInit(x->h, &m, x->aes));
  ct_len = n;
  n = sizeof out;
  ROW("C_Decrypt(GCM, bad tag)", F->C_Decrypt(x->h, ct, ct_len, out, &n),
      CKR_ENCRYPTED_DATA_INVALID, CKR_AEAD_DECRYPT_FAILED);
  SETUP("C_DecryptInit(GCM)", F->C_DecryptInit(x->h, &m, x->aes));
  n = sizeof out;
  ROW("C_Decrypt(GCM, shorter than the tag)", F->C_Decrypt(x->h, ct, 5, out, &n),
      CKR_ENCRYPTED_DATA_INVALID, CKR_ENCRYPTED_DATA_LEN_RANGE, CKR_AEAD_DECRYPT_FAILED);
  cancel(x->h);
  return 1;
}

static int rsa(Fixture *x) {
  CK_RSA_PKCS_OAEP_PARAMS oaep = {CKM_SHA256, CKG_MGF1_SHA256, CKZ_DATA_SPECIFIED, NULL, 0};
  CK_RSA_PKCS_PSS_PARAMS pss = {CKM_SHA256, CKG_MGF1_SHA256, 32};
  CK_MECHANISM m = {CKM_RSA_PKCS_OAEP, &oaep, sizeof oaep};
  CK_RV (*enc_init)(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE) = F->C_EncryptInit;
  CK_RV (*sign_init)(CK_SESSION_HANDLE, CK_MECHANISM_PTR, CK_OBJECT_HANDLE) = F->C_SignInit;
  CK_BYTE sig[512], rec[512];
  CK_ULONG n;

  m.ulParameterLen = sizeof oaep - 8;
  bad_init("C_EncryptInit(OAEP, short params)", enc_init, x->h, &m, x->rsa_pub,
           CKR_MECHANISM_PARAM_INVALID, CKR_MECHANISM_PARAM_INVALID);
  m.ulParameterLen = sizeof oaep;
  m.pParameter = NULL;
  bad_init("C_EncryptInit(OAEP, NULL params)", enc_init, x->h, &m, x->rsa_pub,
           CKR_MECHANISM_PARAM_INVALID, CKR_ARGUMENTS_BAD);
  m.pParameter = &oaep;
  oaep.ulSourceDataLen = 5;
  bad_init("C_EncryptInit(OAEP, NULL source data, len 5)", enc_init, x->h, &m, x->rsa_pub,
           CKR_MECHANISM_PARAM_INVALID, CKR_ARGUMENTS_BAD);
  oaep.pSourceData = data16;
  oaep.ulSourceDataLen = HUGE_LEN;
  bad_init("C_EncryptInit(OAEP, source data len huge)", enc_init, x->h, &m, x->rsa_pub,
           CKR_MECHANISM_PARAM_INVALID, CKR_ARGUMENTS_BAD);
  oaep.ulSourceDataLen = 0;
  oaep.source = 7;
  bad_init("C_EncryptInit(OAEP, source 7)", enc_init, x->h, &m, x->rsa_pub,
           CKR_MECHANISM_PARAM_INVALID, CKR_MECHANISM_PARAM_INVALID);
  oaep.source = CKZ_DATA_SPECIFIED;
  oaep.hashAlg = CKM_UNKNOWN;
  bad_init("C_EncryptInit(OAEP, unknown hash)", enc_init, x->h, &m, x->rsa_pub,
           CKR_MECHANISM_PARAM_INVALID, CKR_MECHANISM_PARAM_INVALID);
  oaep.hashAlg = CKM_SHA256;
  oaep.mgf = 99;
  bad_init("C_EncryptInit(OAEP, unknown MGF)", enc_init, x->h, &m, x->rsa_pub,
           CKR_MECHANISM_PARAM_INVALID, CKR_MECHANISM_PARAM_INVALID);

  m = (CK_MECHANISM){CKM_RSA_PKCS_PSS, NULL, 0};
  bad_init("C_SignInit(PSS, no params)", sign_init, x->h, &m, x->rsa_priv,
           CKR_MECHANISM_PARAM_INVALID, CKR_MECHANISM_PARAM_INVALID);
  m = (CK_MECHANISM){CKM_RSA_PKCS_PSS, &pss, sizeof pss + 1};
  bad_init("C_SignInit(PSS, oversized params)", sign_init, x->h, &m, x->rsa_priv,
           CKR_MECHANISM_PARAM_INVALID, CKR_MECHANISM_PARAM_INVALID);
  m.ulParameterLen = sizeof pss;
  pss.sLen = HUGE_LEN;
  bad_init("C_SignInit(PSS, salt huge)", sign_init, x->h, &m, x->rsa_priv,
           CKR_MECHANISM_PARAM_INVALID, CKR_MECHANISM_PARAM_INVALID);
  pss.sLen = 256 - 32 - 1; /* one more than a 2048-bit key takes with SHA-256 */
  bad_init("C_SignInit(PSS, salt one too long)", sign_init, x->h, &m, x->rsa_priv,
           CKR_MECHANISM_PARAM_INVALID, CKR_MECHANISM_PARAM_INVALID);
  pss.sLen = 32;
  m.mechanism = CKM_SHA256_RSA_PKCS_PSS;
  pss.hashAlg = CKM_SHA_1;
  pss.mgf = CKG_MGF1_SHA1;
  bad_init("C_SignInit(SHA256_RSA_PKCS_PSS, SHA-1 params)", sign_init, x->h, &m, x->rsa_priv,
           CKR_MECHANISM_PARAM_INVALID, CKR_MECHANISM_PARAM_INVALID);
  m = (CK_MECHANISM){CKM_ECDSA, NULL, 0};
  bad_init("C_SignInit(ECDSA on an RSA key)", sign_init, x->h, &m, x->rsa_priv,
           CKR_KEY_TYPE_INCONSISTENT, CKR_KEY_TYPE_INCONSISTENT);
  m = (CK_MECHANISM){CKM_SHA256_RSA_PKCS, NULL, 0};
  bad_init("C_SignInit(RSA on an AES key)", sign_init, x->h, &m, x->aes,
           CKR_KEY_TYPE_INCONSISTENT, CKR_KEY_TYPE_INCONSISTENT);
  bad_init("C_SignInit(with the public key)", sign_init, x->h, &m, x->rsa_pub,
           CKR_KEY_TYPE_INCONSISTENT, CKR_KEY_FUNCTION_NOT_PERMITTED);

  /* sign/verify */
  ROW("C_Sign without init", F->C_Sign(x->h, data16, 16, sig, &n), CKR_OPERATION_NOT_INITIALIZED);
  ROW("C_SignUpdate without init", F->C_SignUpdate(x->h, data16, 16),
      CKR_OPERATION_NOT_INITIALIZED);
  ROW("C_SignFinal without init", F->C_SignFinal(x->h, sig, &n), CKR_OPERATION_NOT_INITIALIZED);
  ROW("C_Verify without init", F->C_Verify(x->h, data16, 16, sig, 256),
      CKR_OPERATION_NOT_INITIALIZED);
  ROW("C_VerifyUpdate without init", F->C_VerifyUpdate(x->h, data16, 16),
      CKR_OPERATION_NOT_INITIALIZED);
  ROW("C_VerifyFinal without init", F->C_VerifyFinal(x->h, sig, 256),
      CKR_OPERATION_NOT_INITIALIZED);
  ROW("C_SignInit(NULL mechanism)", F->C_SignInit(x->h, NULL, x->rsa_priv), CKR_ARGUMENTS_BAD);
  SETUP("C_SignInit(SHA256_RSA_PKCS)", F->C_SignInit(x->h, &m, x->rsa_priv));
  ROW("C_SignInit again", F->C_SignInit(x->h, &m, x->rsa_priv), CKR_OPERATION_ACTIVE);
  ROW("C_Sign(NULL sig) length query", F->C_Sign(x->h, data16, 16, NULL, &n), CKR_OK);
  CHECK_EQ("  length", n, 256);
  n = 100;
  ROW("C_Sign(100-byte buffer)", F->C_Sign(x->h, data16, 16, sig, &n), CKR_BUFFER_TOO_SMALL);
  CHECK_EQ("  length needed written back", n, 256);
  ROW("C_Sign retry", F->C_Sign(x->h, data16, 16, sig, &n), CKR_OK);
  SETUP("C_VerifyInit", F->C_VerifyInit(x->h, &m, x->rsa_pub));
  ROW("C_Verify(NULL signature, len 256)", F->C_Verify(x->h, data16, 16, NULL, 256),
      CKR_ARGUMENTS_BAD);
  cancel(x->h);
  SETUP("C_VerifyInit", F->C_VerifyInit(x->h, &m, x->rsa_pub));
  ROW("C_Verify(signature len huge)", F->C_Verify(x->h, data16, 16, sig, HUGE_LEN),
      CKR_ARGUMENTS_BAD, CKR_SIGNATURE_LEN_RANGE);
  cancel(x->h);
  SETUP("C_VerifyInit", F->C_VerifyInit(x->h, &m, x->rsa_pub));
  ROW("C_Verify(signature of 255 bytes)", F->C_Verify(x->h, data16, 16, sig, 255),
      CKR_SIGNATURE_LEN_RANGE, CKR_SIGNATURE_INVALID);
  SETUP("C_VerifyInit", F->C_VerifyInit(x->h, &m, x->rsa_pub));
  sig[7] ^= 1;
  ROW("C_Verify(one bit flipped)", F->C_Verify(x->h, data16, 16, sig, 256),
      CKR_SIGNATURE_INVALID);
  sig[7] ^= 1;
  ROW("C_Verify after it finished", F->C_Verify(x->h, data16, 16, sig, 256),
      CKR_OPERATION_NOT_INITIALIZED);
  SETUP("C_VerifyInit", F->C_VerifyInit(x->h, &m, x->rsa_pub));
  ROW("C_VerifyUpdate(16)", F->C_VerifyUpdate(x->h, data16, 16), CKR_OK);
  ROW("C_Verify after C_VerifyUpdate", F->C_Verify(x->h, data16, 16, sig, 256),
      CKR_OPERATION_ACTIVE);
  ROW("C_VerifyFinal(NULL signature, len 256)", F->C_VerifyFinal(x->h, NULL, 256),
      CKR_ARGUMENTS_BAD);
  cancel(x->h);
  SETUP("C_VerifyInit", F->C_VerifyInit(x->h, &m, x->rsa_pub));
  ROW("C_VerifyUpdate(16)", F->C_VerifyUpdate(x->h, data16, 16), CKR_OK);
  ROW("C_VerifyFinal(good signature)", F->C_VerifyFinal(x->h, sig, 256), CKR_OK);
  SETUP("C_SignInit(SHA256_RSA_PKCS)", F->C_SignInit(x->h, &m, x->rsa_priv));
  ROW("C_SignUpdate(NULL part, len 16)", F->C_SignUpdate(x->h, NULL, 16), CKR_ARGUMENTS_BAD);
  cancel(x->h);
  SETUP("C_SignInit(SHA256_RSA_PKCS)", F->C_SignInit(x->h, &m, x->rsa_priv));
  ROW("C_SignUpdate(16)", F->C_SignUpdate(x->h, data16, 16), CKR_OK);
  ROW("C_Sign after C_SignUpdate", F->C_Sign(x->h, data16, 16, sig, &n), CKR_OPERATION_ACTIVE);
  ROW("C_SignFinal(pulLen NULL)", F->C_SignFinal(x->h, sig, NULL), CKR_ARGUMENTS_BAD);
  cancel(x->h);
  SETUP("C_SignInit(SHA256_RSA_PKCS)", F->C_SignInit(x->h, &m, x->rsa_priv));
  ROW("C_SignUpdate(16)", F->C_SignUpdate(x->h, data16, 16), CKR_OK);
  n = 10;
  ROW("C_SignFinal(10-byte buffer)", F->C_SignFinal(x->h, sig, &n), CKR_BUFFER_TOO_SMALL);
  CHECK_EQ("  length needed written back", n, 256);
  ROW("C_SignFinal retry", F->C_SignFinal(x->h, sig, &n), CKR_OK);

  /* recovery */
  m = (CK_MECHANISM){CKM_RSA_PKCS, NULL, 0};
  ROW("C_SignRecover without init", F->C_SignRecover(x->h, data16, 16, sig, &n),
      CKR_OPERATION_NOT_INITIALIZED);
  ROW("C_VerifyRecover without init", F->C_VerifyRecover(x->h, sig, 256, rec, &n),
      CKR_OPERATION_NOT_INITIALIZED);
  ROW("C_SignRecoverInit(NULL mechanism)", F->C_SignRecoverInit(x->h, NULL, x->rsa_priv),
      CKR_ARGUMENTS_BAD);
  bad_init("C_SignRecoverInit(HMAC)", F->C_SignRecoverInit, x->h,
           &(CK_MECHANISM){CKM_SHA256_HMAC, NULL, 0}, x->hmac, CKR_MECHANISM_INVALID,
           CKR_MECHANISM_INVALID);
  bad_init("C_SignRecoverInit(RSA on an AES key)", F->C_SignRecoverInit, x->h, &m, x->aes,
           CKR_KEY_TYPE_INCONSISTENT, CKR_KEY_TYPE_INCONSISTENT);
  bad_init("C_SignRecoverInit(destroyed key)", F->C_SignRecoverInit, x->h, &m, x->dead_key,
           CKR_KEY_HANDLE_INVALID, CKR_KEY_HANDLE_INVALID);
  SETUP("C_SignRecoverInit(RSA_PKCS)", F->C_SignRecoverInit(x->h, &m, x->rsa_priv));
  ROW("C_SignRecover(pulLen NULL)", F->C_SignRecover(x->h, data16, 16, sig, NULL),
      CKR_ARGUMENTS_BAD);
  cancel(x->h);
  SETUP("C_SignRecoverInit(RSA_PKCS)", F->C_SignRecoverInit(x->h, &m, x->rsa_priv));
  ROW("C_SignRecover(NULL) length query", F->C_SignRecover(x->h, data16, 16, NULL, &n), CKR_OK);
  CHECK_EQ("  length", n, 256);
  n = 1;
  ROW("C_SignRecover(1-byte buffer)", F->C_SignRecover(x->h, data16, 16, sig, &n),
      CKR_BUFFER_TOO_SMALL);
  CHECK_EQ("  length needed written back", n, 256);
  ROW("C_SignRecover retry", F->C_SignRecover(x->h, data16, 16, sig, &n), CKR_OK);
  SETUP("C_VerifyRecoverInit(RSA_PKCS)", F->C_VerifyRecoverInit(x->h, &m, x->rsa_pub));
  ROW("C_VerifyRecover(NULL signature, len 256)", F->C_VerifyRecover(x->h, NULL, 256, rec, &n),
      CKR_ARGUMENTS_BAD);
  cancel(x->h);
  SETUP("C_VerifyRecoverInit(RSA_PKCS)", F->C_VerifyRecoverInit(x->h, &m, x->rsa_pub));
  n = 4;
  ROW("C_VerifyRecover(4-byte buffer)", F->C_VerifyRecover(x->h, sig, 256, rec, &n),
      CKR_BUFFER_TOO_SMALL);
  CHECK_EQ("  length needed written back", n, 16);
  ROW("C_VerifyRecover retry", F->C_VerifyRecover(x->h, sig, 256, rec, &n), CKR_OK);
  CHECK_EQ("  the data recovered", n == 16 && !memcmp(rec, data16, 16), 1);
  SETUP("C_VerifyRecoverInit(RSA_PKCS)", F->C_VerifyRecoverInit(x->h, &m, x->rsa_pub));
  sig[0] ^= 0x80;
  n = sizeof rec;
  ROW("C_VerifyRecover(damaged signature)", F->C_VerifyRecover(x->h, sig, 256, rec, &n),
      CKR_SIGNATURE_INVALID, CKR_SIGNATURE_LEN_RANGE);
  return 1;
}

static int digests(Fixture *x) {
  CK_MECHANISM sha = {CKM_SHA256, NULL, 0}, hmac = {CKM_SHA256_HMAC, NULL, 0};
  CK_BYTE out[64], state[1024];
  CK_ULONG n, state_len;
  ROW("C_Digest without init", F->C_Digest(x->h, data16, 16, out, &n),
      CKR_OPERATION_NOT_INITIALIZED);
  ROW("C_DigestUpdate without init", F->C_DigestUpdate(x->h, data16, 16),
      CKR_OPERATION_NOT_INITIALIZED);
  ROW("C_DigestKey without init", F->C_DigestKey(x->h, x->hmac), CKR_OPERATION_NOT_INITIALIZED);
  ROW("C_DigestFinal without init", F->C_DigestFinal(x->h, out, &n),
      CKR_OPERATION_NOT_INITIALIZED);
  ROW("C_DigestInit(NULL)", F->C_DigestInit(x->h, NULL), CKR_ARGUMENTS_BAD);
  ROW("C_DigestInit(AES_CBC)", F->C_DigestInit(x->h, &(CK_MECHANISM){CKM_AES_CBC, iv16, 16}),
      CKR_MECHANISM_INVALID);
  /* the mechanism is refused before its parameter is read: a short IV is no digest's concern */
  ROW("C_DigestInit(AES_CBC, short IV)", F->C_DigestInit(x->h, &(CK_MECHANISM){CKM_AES_CBC, iv16, 4}),
      CKR_MECHANISM_INVALID);
  ROW("C_DigestInit(SHA256 with a parameter)",
      F->C_DigestInit(x->h, &(CK_MECHANISM){CKM_SHA256, iv16, 4}), CKR_MECHANISM_PARAM_INVALID);
  ROW("C_DigestInit(unknown)", F->C_DigestInit(x->h, &(CK_MECHANISM){CKM_UNKNOWN, NULL, 0}),
      CKR_MECHANISM_INVALID);
  SETUP("C_DigestInit(SHA256)", F->C_DigestInit(x->h, &sha));
  ROW("C_DigestInit again", F->C_DigestInit(x->h, &sha), CKR_OPERATION_ACTIVE);
  ROW("C_Digest(pulLen NULL)", F->C_Digest(x->h, data16, 16, out, NULL), CKR_ARGUMENTS_BAD);
  cancel(x->h);
  SETUP("C_DigestInit(SHA256)", F->C_DigestInit(x->h, &sha));
  ROW("C_Digest(data len huge)", F->C_Digest(x->h, data16, HUGE_LEN, out, &n), CKR_ARGUMENTS_BAD,
      CKR_DATA_LEN_RANGE);
  cancel(x->h);
  SETUP("C_DigestInit(SHA256)", F->C_DigestInit(x->h, &sha));
  ROW("C_Digest(NULL) length query", F->C_Digest(x->h, data16, 16, NULL, &n), CKR_OK);
  CHECK_EQ("  length", n, 32);
  n = 31;
  ROW("C_Digest(31-byte buffer)", F->C_Digest(x->h, data16, 16, out, &n), CKR_BUFFER_TOO_SMALL);
  CHECK_EQ("  length needed written back", n, 32);
  ROW("C_DigestUpdate after single-part began", F->C_DigestUpdate(x->h, data16, 16),
      CKR_OPERATION_ACTIVE);
  ROW("C_Digest retry", F->C_Digest(x->h, data16, 16, out, &n), CKR_OK);
  ROW("C_Digest after it finished", F->C_Digest(x->h, data16, 16, out, &n),
      CKR_OPERATION_NOT_INITIALIZED);

  SETUP("C_DigestInit(SHA256)", F->C_DigestInit(x->h, &sha));
  ROW("C_DigestUpdate(NULL part, len 16)", F->C_DigestUpdate(x->h, NULL, 16), CKR_ARGUMENTS_BAD);
  cancel(x->h);
  SETUP("C_DigestInit(SHA256)", F->C_DigestInit(x->h, &sha));
  ROW("C_DigestUpdate(16)", F->C_DigestUpdate(x->h, data16, 16), CKR_OK);
  ROW("C_Digest after C_DigestUpdate", F->C_Digest(x->h, data16, 16, out, &n),
      CKR_OPERATION_ACTIVE);

  /* operation state */
  ROW("C_GetOperationState(pulLen NULL)", F->C_GetOperationState(x->h, NULL, NULL),
      CKR_ARGUMENTS_BAD);
  ROW("C_GetOperationState(NULL) length query", F->C_GetOperationState(x->h, NULL, &state_len),
      CKR_OK);
  n = 3;
  ROW("C_GetOperationState(3-byte buffer)", F->C_GetOperationState(x->h, state, &n),
      CKR_BUFFER_TOO_SMALL);
  CHECK_EQ("  length needed written back", n, state_len);
  ROW("C_GetOperationState retry", F->C_GetOperationState(x->h, state, &n), CKR_OK);
  ROW("C_SetOperationState(NULL, len 30)", F->C_SetOperationState(x->h, NULL, 30, 0, 0),
      CKR_ARGUMENTS_BAD);
  ROW("C_SetOperationState(len huge)", F->C_SetOperationState(x->h, state, HUGE_LEN, 0, 0),
      CKR_ARGUMENTS_BAD, CKR_SAVED_STATE_INVALID);
  ROW("C_SetOperationState(garbage)", F->C_SetOperationState(x->h, data32, 32, 0, 0),
      CKR_SAVED_STATE_INVALID);
  ROW("C_SetOperationState(truncated)", F->C_SetOperationState(x->h, state, 9, 0, 0),
      CKR_SAVED_STATE_INVALID);
  ROW("C_SetOperationState(with a key)", F->C_SetOperationState(x->h, state, n, x->aes, 0),
      CKR_KEY_NOT_NEEDED);
  ROW("C_SetOperationState(saved)", F->C_SetOperationState(x->h, state, n, 0, 0), CKR_OK);
  n = 32;
  ROW("C_DigestFinal after the restore", F->C_DigestFinal(x->h, out, &n), CKR_OK);

  SETUP("C_DigestInit(SHA256)", F->C_DigestInit(x->h, &sha));
  ROW("C_DigestKey(destroyed key)", F->C_DigestKey(x->h, x->dead_key), CKR_KEY_HANDLE_INVALID);
  SETUP("C_DigestInit(SHA256)", F->C_DigestInit(x->h, &sha));
  ROW("C_DigestKey(key handle 0)", F->C_DigestKey(x->h, 0), CKR_KEY_HANDLE_INVALID);
  SETUP("C_DigestInit(SHA256)", F->C_DigestInit(x->h, &sha));
  ROW("C_DigestKey(other partition's key)", F->C_DigestKey(x->h, x->foreign_key),
      CKR_KEY_HANDLE_INVALID);
  SETUP("C_DigestInit(SHA256)", F->C_DigestInit(x->h, &sha));
  ROW("C_DigestKey(RSA private key)", F->C_DigestKey(x->h, x->rsa_priv), CKR_KEY_INDIGESTIBLE);
  cancel(x->h);
  ROW("C_GetOperationState(no operation)", F->C_GetOperationState(x->h, NULL, &n),
      CKR_OPERATION_NOT_INITIALIZED, CKR_STATE_UNSAVEABLE);

  /* HMAC: the length query and a short buffer */
  SETUP("C_SignInit(SHA256_HMAC)", F->C_SignInit(x->h, &hmac, x->hmac));
  ROW("C_Sign(NULL) length query", F->C_Sign(x->h, data16, 16, NULL, &n), CKR_OK);
  CHECK_EQ("  length", n, 32);
  n = 16;
  ROW("C_Sign(16-byte buffer)", F->C_Sign(x->h, data16, 16, out, &n), CKR_BUFFER_TOO_SMALL);
  CHECK_EQ("  length needed written back", n, 32);
  ROW("C_Sign retry", F->C_Sign(x->h, data16, 16, out, &n), CKR_OK);
  SETUP("C_VerifyInit(SHA256_HMAC)", F->C_VerifyInit(x->h, &hmac, x->hmac));
  ROW("C_Verify(empty MAC)", F->C_Verify(x->h, data16, 16, out, 0), CKR_SIGNATURE_LEN_RANGE,
      CKR_SIGNATURE_INVALID);
  return 1;
}

static int duals(Fixture *x) {
  CK_MECHANISM cbc = {CKM_AES_CBC, iv16, 16}, sha = {CKM_SHA256, NULL, 0};
  CK_MECHANISM hmac = {CKM_SHA256_HMAC, NULL, 0};
  CK_BYTE out[64];
  CK_ULONG n = sizeof out;
  ROW("C_DigestEncryptUpdate without operations",
      F->C_DigestEncryptUpdate(x->h, data16, 16, out, &n), CKR_OPERATION_NOT_INITIALIZED);
  ROW("C_DecryptDigestUpdate without operations",
      F->C_DecryptDigestUpdate(x->h, data16, 16, out, &n), CKR_OPERATION_NOT_INITIALIZED);
  ROW("C_SignEncryptUpdate without operations", F->C_SignEncryptUpdate(x->h, data16, 16, out, &n),
      CKR_OPERATION_NOT_INITIALIZED);
  ROW("C_DecryptVerifyUpdate without operations",
      F->C_DecryptVerifyUpdate(x->h, data16, 16, out, &n), CKR_OPERATION_NOT_INITIALIZED);
  SETUP("C_DigestInit(SHA256)", F->C_DigestInit(x->h, &sha));
  ROW("C_DigestEncryptUpdate without encryption",
      F->C_DigestEncryptUpdate(x->h, data16, 16, out, &n), CKR_OPERATION_NOT_INITIALIZED);
  ROW("C_DecryptDigestUpdate without decryption",
      F->C_DecryptDigestUpdate(x->h, data16, 16, out, &n), CKR_OPERATION_NOT_INITIALIZED);
  SETUP("C_EncryptInit(CBC)", F->C_EncryptInit(x->h, &cbc, x->aes));
  ROW("C_DigestEncryptUpdate(pulLen NULL)", F->C_DigestEncryptUpdate(x->h, data16, 16, out, NULL),
      CKR_ARGUMENTS_BAD);
  cancel(x->h);
  SETUP("C_DigestInit(SHA256)", F->C_DigestInit(x->h, &sha));
  SETUP("C_EncryptInit(CBC)", F->C_EncryptInit(x->h, &cbc, x->aes));
  ROW("C_DigestEncryptUpdate(NULL part, len 16)",
      F->C_DigestEncryptUpdate(x->h, NULL, 16, out, &n), CKR_ARGUMENTS_BAD);
  cancel(x->h);
  SETUP("C_DigestInit(SHA256)", F->C_DigestInit(x->h, &sha));
  SETUP("C_EncryptInit(CBC)", F->C_EncryptInit(x->h, &cbc, x->aes));
  n = 8;
  ROW("C_DigestEncryptUpdate(8-byte buffer)", F->C_DigestEncryptUpdate(x->h, data16, 16, out, &n),
      CKR_BUFFER_TOO_SMALL);
  CHECK_EQ("  length needed written back", n, 16);
  ROW("C_DigestEncryptUpdate retry", F->C_DigestEncryptUpdate(x->h, data16, 16, out, &n), CKR_OK);
  cancel(x->h);
  SETUP("C_SignInit(SHA256_HMAC)", F->C_SignInit(x->h, &hmac, x->hmac));
  SETUP("C_DecryptInit(CBC)", F->C_DecryptInit(x->h, &cbc, x->aes));
  ROW("C_DecryptVerifyUpdate without verification",
      F->C_DecryptVerifyUpdate(x->h, data16, 16, out, &n), CKR_OPERATION_NOT_INITIALIZED);
  n = sizeof out;
  ROW("C_SignEncryptUpdate without encryption", F->C_SignEncryptUpdate(x->h, data16, 16, out, &n),
      CKR_OPERATION_NOT_INITIALIZED);
  ROW("C_DecryptDigestUpdate(pulLen NULL)", F->C_DecryptDigestUpdate(x->h, data16, 16, out, NULL),
      CKR_ARGUMENTS_BAD, CKR_OPERATION_NOT_INITIALIZED);
  cancel(x->h);
  return 1;
}

static int keymgmt(Fixture *x) {
  CK_MECHANISM aes_gen = {CKM_AES_KEY_GEN, NULL, 0}, wrap = {CKM_AES_KEY_WRAP, NULL, 0};
  CK_MECHANISM rsa_gen = {CKM_RSA_PKCS_KEY_PAIR_GEN, NULL, 0}, ec_gen = {CKM_EC_KEY_PAIR_GEN, NULL, 0};
  CK_ULONG len16 = 16, len7 = 7, n, wrapped_len;
  CK_OBJECT_HANDLE k = 0, pub = 0, priv = 0;
  CK_BYTE wrapped[256], junk[24] = {1, 2, 3};
  CK_BYTE bad_curve[] = {0x06, 0x03, 0x2a, 0x03, 0x04};
  CK_ATTRIBUTE t[] = {{CKA_TOKEN, &no, 1}, {CKA_VALUE_LEN, &len16, sizeof len16},
                      {CKA_ENCRYPT, &yes, 1}, {CKA_EXTRACTABLE, &yes, 1}};
  CK_ATTRIBUTE t_dup[] = {{CKA_TOKEN, &no, 1}, {CKA_VALUE_LEN, &len16, sizeof len16},
                          {CKA_VALUE_LEN, &len16, sizeof len16}};
  CK_ATTRIBUTE t_len7[] = {{CKA_TOKEN, &no, 1}, {CKA_VALUE_LEN, &len7, sizeof len7}};
  CK_ATTRIBUTE t_nolen[] = {{CKA_TOKEN, &no, 1}};
  CK_ATTRIBUTE t_unknown[] = {{CKA_TOKEN, &no, 1}, {CKA_VALUE_LEN, &len16, sizeof len16},
                              {CKA_UNKNOWN, &yes, 1}};
  CK_ATTRIBUTE t_null[] = {{CKA_TOKEN, &no, 1}, {CKA_VALUE_LEN, NULL, sizeof len16}};
  CK_ATTRIBUTE pub_nobits[] = {{CKA_TOKEN, &no, 1}, {CKA_VERIFY, &yes, 1}};
  CK_ATTRIBUTE ec_bad[] = {{CKA_TOKEN, &no, 1}, {CKA_EC_PARAMS, bad_curve, sizeof bad_curve}};
  CK_ATTRIBUTE ec_garbage[] = {{CKA_TOKEN, &no, 1}, {CKA_EC_PARAMS, junk, 7}};
  CK_ATTRIBUTE ec_ok[] = {{CKA_TOKEN, &no, 1}, {CKA_EC_PARAMS, (void *)P256, sizeof P256}};
  CK_ATTRIBUTE priv_t[] = {{CKA_TOKEN, &no, 1}, {CKA_SIGN, &yes, 1}};
  CK_ATTRIBUTE unwrap_t[] = {{CKA_CLASS, &(CK_OBJECT_CLASS){CKO_SECRET_KEY}, sizeof(CK_ULONG)},
                             {CKA_KEY_TYPE, &(CK_KEY_TYPE){CKK_AES}, sizeof(CK_ULONG)},
                             {CKA_TOKEN, &no, 1}};

  ROW("C_GenerateKey(NULL mechanism)", F->C_GenerateKey(x->h, NULL, t, 4, &k), CKR_ARGUMENTS_BAD);
  ROW("C_GenerateKey(phKey NULL)", F->C_GenerateKey(x->h, &aes_gen, t, 4, NULL),
      CKR_ARGUMENTS_BAD);
  ROW("C_GenerateKey(AES_KEY_GEN with a parameter)",
      F->C_GenerateKey(x->h, &(CK_MECHANISM){CKM_AES_KEY_GEN, iv16, 16}, t, 4, &k),
      CKR_MECHANISM_PARAM_INVALID);
  ROW("C_GenerateKey(a key-pair mechanism)", F->C_GenerateKey(x->h, &rsa_gen, t, 4, &k),
      CKR_MECHANISM_INVALID);
  ROW("C_GenerateKey(duplicate CKA_VALUE_LEN)", F->C_GenerateKey(x->h, &aes_gen, t_dup, 3, &k),
      CKR_TEMPLATE_INCONSISTENT);
  ROW("C_GenerateKey(CKA_VALUE_LEN 7)", F->C_GenerateKey(x->h, &aes_gen, t_len7, 2, &k),
      CKR_ATTRIBUTE_VALUE_INVALID, CKR_KEY_SIZE_RANGE, CKR_TEMPLATE_INCONSISTENT);
  ROW("C_GenerateKey(no CKA_VALUE_LEN)", F->C_GenerateKey(x->h, &aes_gen, t_nolen, 1, &k),
      CKR_TEMPLATE_INCOMPLETE);
  ROW("C_GenerateKey(unknown attribute)", F->C_GenerateKey(x->h, &aes_gen, t_unknown, 3, &k),
      CKR_ATTRIBUTE_TYPE_INVALID);
  ROW("C_GenerateKey(NULL pValue, len 8)", F->C_GenerateKey(x->h, &aes_gen, t_null, 2, &k),
      CKR_ARGUMENTS_BAD, CKR_ATTRIBUTE_VALUE_INVALID);
  ROW("C_GenerateKey(count huge)", F->C_GenerateKey(x->h, &aes_gen, t, HUGE_LEN, &k),
      CKR_ARGUMENTS_BAD, CKR_TEMPLATE_INCONSISTENT);
  ROW("C_GenerateKey(read-only session, token key)",
      F->C_GenerateKey(x->ro, &aes_gen,
                       (CK_ATTRIBUTE[]){{CKA_TOKEN, &yes, 1}, {CKA_VALUE_LEN, &len16, 8}}, 2, &k),
      CKR_SESSION_READ_ONLY);
  CHECK_EQ("  no handle written by the refusals", k, 0);

  ROW("C_GenerateKeyPair(NULL mechanism)",
      F->C_GenerateKeyPair(x->h, NULL, pub_nobits, 2, priv_t, 2, &pub, &priv), CKR_ARGUMENTS_BAD);
  ROW("C_GenerateKeyPair(phPublicKey NULL)",
      F->C_GenerateKeyPair(x->h, &ec_gen, ec_ok, 2, priv_t, 2, NULL, &priv), CKR_ARGUMENTS_BAD);
  ROW("C_GenerateKeyPair(phPrivateKey NULL)",
      F->C_GenerateKeyPair(x->h, &ec_gen, ec_ok, 2, priv_t, 2, &pub, NULL), CKR_ARGUMENTS_BAD);
  ROW("C_GenerateKeyPair(a secret-key mechanism)",
      F->C_GenerateKeyPair(x->h, &aes_gen, pub_nobits, 2, priv_t, 2, &pub, &priv),
      CKR_MECHANISM_INVALID);
  ROW("C_GenerateKeyPair(RSA, no CKA_MODULUS_BITS)",
      F->C_GenerateKeyPair(x->h, &rsa_gen, pub_nobits, 2, priv_t, 2, &pub, &priv),
      CKR_TEMPLATE_INCOMPLETE);
  ROW("C_GenerateKeyPair(EC, unknown curve)",
      F->C_GenerateKeyPair(x->h, &ec_gen, ec_bad, 2, priv_t, 2, &pub, &priv),
      CKR_CURVE_NOT_SUPPORTED, CKR_DOMAIN_PARAMS_INVALID, CKR_ATTRIBUTE_VALUE_INVALID);
  ROW("C_GenerateKeyPair(EC, garbage CKA_EC_PARAMS)",
      F->C_GenerateKeyPair(x->h, &ec_gen, ec_garbage, 2, priv_t, 2, &pub, &priv),
      CKR_CURVE_NOT_SUPPORTED, CKR_DOMAIN_PARAMS_INVALID, CKR_ATTRIBUTE_VALUE_INVALID);
  ROW("C_GenerateKeyPair(private count huge)",
      F->C_GenerateKeyPair(x->h, &ec_gen, ec_ok, 2, priv_t, HUGE_LEN, &pub, &priv),
      CKR_ARGUMENTS_BAD, CKR_TEMPLATE_INCONSISTENT);
  ROW("C_GenerateKeyPair(NULL public template, count 2)",
      F->C_GenerateKeyPair(x->h, &ec_gen, NULL, 2, priv_t, 2, &pub, &priv), CKR_ARGUMENTS_BAD);
  CHECK_EQ("  no handles written by the refusals", pub + priv, 0);

  /* wrap */
  ROW("C_WrapKey(NULL mechanism)", F->C_WrapKey(x->h, NULL, x->aes, x->aes_wrapped, NULL, &n),
      CKR_ARGUMENTS_BAD);
  ROW("C_WrapKey(pulLen NULL)", F->C_WrapKey(x->h, &wrap, x->aes, x->aes_wrapped, wrapped, NULL),
      CKR_ARGUMENTS_BAD);
  ROW("C_WrapKey(destroyed wrapping key)",
      F->C_WrapKey(x->h, &wrap, x->dead_key, x->aes_wrapped, NULL, &n),
      CKR_WRAPPING_KEY_HANDLE_INVALID);
  ROW("C_WrapKey(wrapping key handle 0)", F->C_WrapKey(x->h, &wrap, 0, x->aes_wrapped, NULL, &n),
      CKR_WRAPPING_KEY_HANDLE_INVALID);
  ROW("C_WrapKey(other partition's wrapping key)",
      F->C_WrapKey(x->h, &wrap, x->foreign_key, x->aes_wrapped, NULL, &n),
      CKR_WRAPPING_KEY_HANDLE_INVALID);
  ROW("C_WrapKey(destroyed key)", F->C_WrapKey(x->h, &wrap, x->aes, x->dead_key, NULL, &n),
      CKR_KEY_HANDLE_INVALID);
  ROW("C_WrapKey(key handle 0)", F->C_WrapKey(x->h, &wrap, x->aes, 0, NULL, &n),
      CKR_KEY_HANDLE_INVALID);
  /* regression (fuzzer): the optional IV of AES key wrap was read with any length: SIGSEGV */
  ROW("C_WrapKey(AES_KEY_WRAP, IV len huge)",
      F->C_WrapKey(x->h, &(CK_MECHANISM){CKM_AES_KEY_WRAP, iv16, HUGE_LEN}, x->aes, x->aes_wrapped,
                   NULL, &n),
      CKR_MECHANISM_PARAM_INVALID, CKR_ARGUMENTS_BAD);
  ROW("C_UnwrapKey(AES_KEY_WRAP, IV len 2^33)",
      F->C_UnwrapKey(x->h, &(CK_MECHANISM){CKM_AES_KEY_WRAP, iv16, 1UL << 33}, x->aes, junk, 24,
                     unwrap_t, 3, &k),
      CKR_MECHANISM_PARAM_INVALID, CKR_ARGUMENTS_BAD);
  ROW("C_WrapKey(CBC, no IV)",
      F->C_WrapKey(x->h, &(CK_MECHANISM){CKM_AES_CBC, NULL, 0}, x->aes, x->aes_wrapped, NULL, &n),
      CKR_MECHANISM_PARAM_INVALID);
  ROW("C_WrapKey(NULL) length query", F->C_WrapKey(x->h, &wrap, x->aes, x->aes_wrapped, NULL, &n),
      CKR_OK);
  CHECK_EQ("  length", n, 24);
  n = 8;
  ROW("C_WrapKey(8-byte buffer)", F->C_WrapKey(x->h, &wrap, x->aes, x->aes_wrapped, wrapped, &n),
      CKR_BUFFER_TOO_SMALL);
  CHECK_EQ("  length needed written back", n, 24);
  ROW("C_WrapKey retry", F->C_WrapKey(x->h, &wrap, x->aes, x->aes_wrapped, wrapped, &n), CKR_OK);
  wrapped_len = n;

  /* unwrap */
  ROW("C_UnwrapKey(NULL mechanism)",
      F->C_UnwrapKey(x->h, NULL, x->aes, wrapped, wrapped_len, unwrap_t, 3, &k), CKR_ARGUMENTS_BAD);
  ROW("C_UnwrapKey(NULL wrapped, len 24)",
      F->C_UnwrapKey(x->h, &wrap, x->aes, NULL, 24, unwrap_t, 3, &k), CKR_ARGUMENTS_BAD);
  ROW("C_UnwrapKey(wrapped len huge)",
      F->C_UnwrapKey(x->h, &wrap, x->aes, wrapped, HUGE_LEN, unwrap_t, 3, &k), CKR_ARGUMENTS_BAD,
      CKR_WRAPPED_KEY_LEN_RANGE);
  ROW("C_UnwrapKey(phKey NULL)",
      F->C_UnwrapKey(x->h, &wrap, x->aes, wrapped, wrapped_len, unwrap_t, 3, NULL),
      CKR_ARGUMENTS_BAD);
  ROW("C_UnwrapKey(garbage)", F->C_UnwrapKey(x->h, &wrap, x->aes, junk, 24, unwrap_t, 3, &k),
      CKR_WRAPPED_KEY_INVALID, CKR_ENCRYPTED_DATA_INVALID);
  ROW("C_UnwrapKey(17 bytes)", F->C_UnwrapKey(x->h, &wrap, x->aes, junk, 17, unwrap_t, 3, &k),
      CKR_WRAPPED_KEY_LEN_RANGE, CKR_WRAPPED_KEY_INVALID);
  ROW("C_UnwrapKey(destroyed unwrapping key)",
      F->C_UnwrapKey(x->h, &wrap, x->dead_key, wrapped, wrapped_len, unwrap_t, 3, &k),
      CKR_UNWRAPPING_KEY_HANDLE_INVALID);
  ROW("C_UnwrapKey(unwrapping key handle 0)",
      F->C_UnwrapKey(x->h, &wrap, 0, wrapped, wrapped_len, unwrap_t, 3, &k),
      CKR_UNWRAPPING_KEY_HANDLE_INVALID);
  ROW("C_UnwrapKey(duplicate attributes)",
      F->C_UnwrapKey(x->h, &wrap, x->aes, wrapped, wrapped_len, t_dup, 3, &k),
      CKR_TEMPLATE_INCONSISTENT);
  CHECK_EQ("  no handle written by the refusals", k, 0);
  ROW("C_UnwrapKey", F->C_UnwrapKey(x->h, &wrap, x->aes, wrapped, wrapped_len, unwrap_t, 3, &k),
      CKR_OK);

  /* derive */
  {
    CK_ECDH1_DERIVE_PARAMS ecdh = {1, 0, NULL, 0, NULL};
    CK_KEY_DERIVATION_STRING_DATA sd = {NULL, 5};
    CK_MECHANISM m = {CKM_ECDH1_DERIVE, NULL, 0};
    ROW("C_DeriveKey(NULL mechanism)", F->C_DeriveKey(x->h, NULL, x->aes, t, 2, &k),
        CKR_ARGUMENTS_BAD);
    ROW("C_DeriveKey(ECDH, no params)", F->C_DeriveKey(x->h, &m, x->aes, t, 2, &k),
        CKR_MECHANISM_PARAM_INVALID);
    m.pParameter = &ecdh;
    m.ulParameterLen = sizeof ecdh;
    ROW("C_DeriveKey(ECDH, no public data)", F->C_DeriveKey(x->h, &m, x->aes, t, 2, &k),
        CKR_MECHANISM_PARAM_INVALID);
    ecdh.ulPublicDataLen = 65;
    ROW("C_DeriveKey(ECDH, NULL public data, len 65)", F->C_DeriveKey(x->h, &m, x->aes, t, 2, &k),
        CKR_MECHANISM_PARAM_INVALID, CKR_ARGUMENTS_BAD);
    ecdh.pPublicData = junk;
    ecdh.ulPublicDataLen = HUGE_LEN;
    ROW("C_DeriveKey(ECDH, public data len huge)", F->C_DeriveKey(x->h, &m, x->aes, t, 2, &k),
        CKR_MECHANISM_PARAM_INVALID, CKR_ARGUMENTS_BAD);
    m = (CK_MECHANISM){CKM_CONCATENATE_BASE_AND_DATA, &sd, sizeof sd};
    ROW("C_DeriveKey(string data NULL, len 5)", F->C_DeriveKey(x->h, &m, x->aes, t, 2, &k),
        CKR_MECHANISM_PARAM_INVALID, CKR_ARGUMENTS_BAD);
    sd.pData = junk;
    m.ulParameterLen = 3;
    ROW("C_DeriveKey(string data params short)", F->C_DeriveKey(x->h, &m, x->aes, t, 2, &k),
        CKR_MECHANISM_PARAM_INVALID);
    m.ulParameterLen = sizeof sd;
    ROW("C_DeriveKey(destroyed base key)", F->C_DeriveKey(x->h, &m, x->dead_key, t, 2, &k),
        CKR_KEY_HANDLE_INVALID);
    ROW("C_DeriveKey(base key handle 0)", F->C_DeriveKey(x->h, &m, 0, t, 2, &k),
        CKR_KEY_HANDLE_INVALID);
    ROW("C_DeriveKey(phKey NULL)", F->C_DeriveKey(x->h, &m, x->aes, t, 2, NULL),
        CKR_ARGUMENTS_BAD);
    ROW("C_DeriveKey(unknown mechanism)",
        F->C_DeriveKey(x->h, &(CK_MECHANISM){CKM_UNKNOWN, NULL, 0}, x->aes, t, 2, &k),
        CKR_MECHANISM_INVALID);
  }

  /* random */
  ROW("C_SeedRandom(NULL, len 8)", F->C_SeedRandom(x->h, NULL, 8), CKR_ARGUMENTS_BAD);
  ROW("C_SeedRandom(len huge)", F->C_SeedRandom(x->h, junk, HUGE_LEN), CKR_ARGUMENTS_BAD,
      CKR_RANDOM_SEED_NOT_SUPPORTED);
  ROW("C_SeedRandom(closed)", F->C_SeedRandom(x->dead, junk, 8), CKR_SESSION_HANDLE_INVALID,
      CKR_SESSION_CLOSED);
  ROW("C_GenerateRandom(NULL, len 16)", F->C_GenerateRandom(x->h, NULL, 16), CKR_ARGUMENTS_BAD);
  /* regression: 1 MiB chunks were written past the buffer */
  ROW("C_GenerateRandom(len huge)", F->C_GenerateRandom(x->h, buf, HUGE_LEN), CKR_ARGUMENTS_BAD);
  ROW("C_GenerateRandom(len 0)", F->C_GenerateRandom(x->h, buf, 0), CKR_OK);
  ROW("C_GenerateRandom(closed)", F->C_GenerateRandom(x->dead, buf, 16),
      CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED);
  return 1;
}

/* The 3.0 message-based functions are not supported: every one says so, whatever it gets. */
static void messages(Fixture *x) {
  char label[96];
  for (size_t i = 0; i < N_3_0; i++) {
    if (!message_based(NAMES_3_0[i])) continue;
    snprintf(label, sizeof label, "%s(h, NULL...)", NAMES_3_0[i]);
    ROW(label, entry(i)(x->h, 0, 0, 0, 0, 0, 0, 0, 0), CKR_FUNCTION_NOT_SUPPORTED);
  }
}

/* Every function that takes a session, with a stale, a random and a huge handle. */
static void stale_sweep(const char *what, CK_SESSION_HANDLE h) {
  char label[96];
  for (size_t i = 0; i < N_3_0; i++) {
    const char *name = NAMES_3_0[i];
    if (sessionless(name)) continue;
    snprintf(label, sizeof label, "%s(%s session, 0...)", name, what);
    if (message_based(name))
      ROW(label, entry(i)(h, 0, 0, 0, 0, 0, 0, 0, 0), CKR_FUNCTION_NOT_SUPPORTED,
          CKR_SESSION_HANDLE_INVALID);
    else
      ROW(label, entry(i)(h, 0, 0, 0, 0, 0, 0, 0, 0), CKR_SESSION_HANDLE_INVALID,
          CKR_SESSION_CLOSED, CKR_ARGUMENTS_BAD);
  }
}

static int finalize(Fixture *x) {
  CK_SESSION_INFO si;
  CK_C_INITIALIZE_ARGS a;
  ROW("C_CloseAllSessions(1)", F->C_CloseAllSessions(1), CKR_OK);
  ROW("  slot 1's session is gone", F->C_GetSessionInfo(x->foreign, &si),
      CKR_SESSION_HANDLE_INVALID, CKR_SESSION_CLOSED);
  SETUP("C_Finalize", F->C_Finalize(NULL));
  ROW("C_Finalize twice", F->C_Finalize(NULL), CKR_CRYPTOKI_NOT_INITIALIZED);
  uninitialized("after C_Finalize:");
  memset(&a, 0, sizeof a);
  a.flags = CKF_OS_LOCKING_OK;
  SETUP("C_Initialize again", F->C_Initialize(&a));
  ROW("  a session of the last life", F->C_GetSessionInfo(x->h, &si), CKR_SESSION_HANDLE_INVALID,
      CKR_SESSION_CLOSED);
  SETUP("C_Finalize", F->C_Finalize(NULL));
  return 1;
}

static int load(const char *path) {
  CK_RV (*get_list)(CK_FUNCTION_LIST_PTR_PTR);
  CK_RV (*get_iface)(CK_UTF8CHAR_PTR, CK_VERSION_PTR, CK_INTERFACE_PTR_PTR, CK_FLAGS);
  CK_INTERFACE_PTR iface = NULL;
  CK_VERSION v30 = {3, 0};
  module = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!module) {
    fprintf(stderr, "hostile: dlopen: %s\n", dlerror());
    return 0;
  }
  *(void **)&get_list = dlsym(module, "C_GetFunctionList");
  *(void **)&get_iface = dlsym(module, "C_GetInterface");
  if (!get_list || !get_iface || get_list(&F) != CKR_OK ||
      get_iface((CK_UTF8CHAR_PTR) "PKCS 11", &v30, &iface, 0) != CKR_OK) {
    fprintf(stderr, "hostile: no function lists\n");
    return 0;
  }
  F30 = (CK_FUNCTION_LIST_3_0 *)iface->pFunctionList;
  return 1;
}

static int round_(void) {
  Fixture x;
  memset(&x, 0, sizeof x);
  uninitialized("before C_Initialize:");
  if (!lists() || !initialize_args() || !initialize() || !general() || !sessions(&x) ||
      !keys(&x) || !objects(&x) || !ciphers(&x) || !rsa(&x) || !digests(&x) || !duals(&x) ||
      !keymgmt(&x))
    return 0;
  messages(&x);
  stale_sweep("closed", x.dead);
  stale_sweep("random", RANDOM_HANDLE);
  stale_sweep("huge", HUGE_LEN);
  stale_sweep("zero", 0);
  return finalize(&x);
}

int main(int argc, char **argv) {
  int rounds = 1, done = 0;
  if (argc < 3) {
    fprintf(stderr, "usage: hostile MODULE PIN [ROUNDS]\n");
    return 2;
  }
  pin = argv[2];
  if (argc > 3) rounds = atoi(argv[3]);
  for (size_t i = 0; i < sizeof iv17; i++) iv17[i] = (CK_BYTE)i;
  if (!load(argv[1])) return 2;
  for (int r = 0; r < rounds; r++) {
    if (!round_()) break;
    done++;
  }
  printf("summary: rounds=%d/%d calls=%lu checks=%lu mismatches=%lu\n", done, rounds, calls, checks,
         mismatches);
  printf("summary: ckrs");
  for (size_t i = 0; i < n_seen; i++) printf(" %s=%lu", ckr_name(seen[i].rv), seen[i].count);
  printf("\n");
  return (mismatches == 0 && done == rounds) ? 0 : 1;
}
