"""The one table of Excrypt commands the virtual Vectera Plus knows.

Each row: the command code, what it does, which PKCS #11 operations need it, and how the
dispatcher treats it. The whitelist check, `vhsm command list`, the docs and the provider's
choice of command all read this table. Codes that Futurex publishes (ECHO, HASH, RAND,
GPKM, GPKS, GPKR, GRSA, LRSA, GPKD, GPKU, GPSE, TIME, GPGS, GECC, GPMC, PRMD) keep their
published meaning; the rest are named in the same style.
"""
from __future__ import annotations

from dataclasses import dataclass

from fxpkcs11 import ck


@dataclass(frozen=True)
class CommandInfo:
    code: str
    description: str
    pkcs11: tuple[str, ...]
    # Session control runs for every connection whatever its whitelist: a login cannot be
    # whitelisted away, and closing a session must always release its objects.
    session_control: bool = False
    # Needs the FTK loaded (every command that touches key material).
    needs_ftk: bool = False


COMMANDS: tuple[CommandInfo, ...] = (
    CommandInfo("ECHO", "Communication test; answers the firmware version",
                ("C_GetSlotInfo", "C_GetTokenInfo")),
    CommandInfo("HASH", "Retrieve the device serial number", ("C_GetTokenInfo",)),
    CommandInfo("PRMD", "Retrieve HSM restrictions (limits, PIN lengths, FTK state)", ("C_GetTokenInfo",)),
    CommandInfo("TIME", "Get the HSM internal clock", ()),
    CommandInfo("RAND", "Generate random data", ("C_GenerateRandom",)),
    CommandInfo("SEED", "Mix caller entropy into the HSM random generator", ("C_SeedRandom",)),
    CommandInfo("LOGI", "Log an identity in: the connection takes the identity's role",
                ("C_Login", "C_LoginUser", "C_InitToken"), session_control=True),
    CommandInfo("LOGO", "Log out: the connection returns to Transaction Processing",
                ("C_Logout", "C_InitToken"), session_control=True),
    CommandInfo("SESO", "Open a session on the connection", ("C_OpenSession",), session_control=True),
    CommandInfo("SESC", "Close a session and destroy its session objects",
                ("C_CloseSession", "C_CloseAllSessions"), session_control=True),
    CommandInfo("GPKM", "Retrieve key table information (find objects)",
                ("C_FindObjectsInit", "C_FindObjects"), needs_ftk=True),
    CommandInfo("GPKS", "General purpose key settings get/change (object attributes)",
                ("C_GetAttributeValue", "C_SetAttributeValue", "C_GetObjectSize"), needs_ftk=True),
    CommandInfo("GPKR", "General purpose key settings get, read-only", ("C_GetAttributeValue", "C_GetObjectSize"),
                needs_ftk=True),
    CommandInfo("GPKD", "General purpose key delete", ("C_DestroyObject",), needs_ftk=True),
    CommandInfo("GRSA", "Generate an RSA private and public key", ("C_GenerateKeyPair",), needs_ftk=True),
    CommandInfo("GECC", "Generate an EC or Edwards-curve (EdDSA) key pair", ("C_GenerateKeyPair",), needs_ftk=True),
    CommandInfo("GPGS", "Generate a symmetric key (AES, TDES, generic secret, HMAC, HKDF)", ("C_GenerateKey",), needs_ftk=True),
    CommandInfo("LRSA", "Load a key into the RSA key table", ("C_CreateObject",), needs_ftk=True),
    CommandInfo("LECC", "Load a key into the EC key table (EC and Edwards keys)", ("C_CreateObject",), needs_ftk=True),
    CommandInfo("GPKL", "General purpose key load (symmetric keys)", ("C_CreateObject",), needs_ftk=True),
    CommandInfo("GPDO", "Store a data object or certificate", ("C_CreateObject",), needs_ftk=True),
    CommandInfo("GPKW", "General purpose key wrap", ("C_WrapKey",), needs_ftk=True),
    CommandInfo("GPKU", "General purpose key unwrap", ("C_UnwrapKey",), needs_ftk=True),
    CommandInfo("GPSE", "General purpose symmetric encrypt",
                ("C_EncryptInit", "C_Encrypt", "C_EncryptUpdate", "C_EncryptFinal"), needs_ftk=True),
    CommandInfo("GPSD", "General purpose symmetric decrypt",
                ("C_DecryptInit", "C_Decrypt", "C_DecryptUpdate", "C_DecryptFinal"), needs_ftk=True),
    CommandInfo("GPMC", "General purpose MAC generate (HMAC, CMAC, CBC-MAC)",
                ("C_SignInit", "C_Sign", "C_SignUpdate", "C_SignFinal"), needs_ftk=True),
    CommandInfo("GPMV", "General purpose MAC verify (HMAC, CMAC, CBC-MAC)",
                ("C_VerifyInit", "C_Verify", "C_VerifyUpdate", "C_VerifyFinal"), needs_ftk=True),
    CommandInfo("GPAS", "General purpose asymmetric sign (RSA, ECDSA, DSA, EdDSA)",
                ("C_SignInit", "C_Sign", "C_SignUpdate", "C_SignFinal"), needs_ftk=True),
    CommandInfo("GPAV", "General purpose asymmetric verify (RSA, ECDSA, DSA, EdDSA)",
                ("C_VerifyInit", "C_Verify", "C_VerifyUpdate", "C_VerifyFinal"), needs_ftk=True),
    CommandInfo("GPAE", "General purpose asymmetric encrypt (RSA)",
                ("C_EncryptInit", "C_Encrypt"), needs_ftk=True),
    CommandInfo("GPAD", "General purpose asymmetric decrypt (RSA)",
                ("C_DecryptInit", "C_Decrypt"), needs_ftk=True),
    CommandInfo("GPKX", "General purpose key derive (ECDH, DH, HKDF, encryption of data, concatenation)",
                ("C_DeriveKey",), needs_ftk=True),
    CommandInfo("GDSA", "Generate a DSA key pair", ("C_GenerateKeyPair",), needs_ftk=True),
    CommandInfo("GDHK", "Generate a Diffie-Hellman key pair", ("C_GenerateKeyPair",), needs_ftk=True),
    CommandInfo("GPDP", "Generate DSA or Diffie-Hellman domain parameters", ("C_GenerateKey",), needs_ftk=True),
    CommandInfo("LDSA", "Load a DSA key or DSA domain parameters", ("C_CreateObject",), needs_ftk=True),
    CommandInfo("LDHK", "Load a Diffie-Hellman key or DH domain parameters", ("C_CreateObject",), needs_ftk=True),
    CommandInfo("GPKC", "General purpose key copy (copy an object with template changes)", ("C_CopyObject",),
                needs_ftk=True),
    CommandInfo("GPDG", "General purpose digest in the HSM (a digest that includes a key's value)",
                ("C_DigestKey", "C_DigestUpdate", "C_DigestFinal"), needs_ftk=True),
    CommandInfo("GPSR", "General purpose sign with message recovery (raw RSA)",
                ("C_SignRecoverInit", "C_SignRecover"), needs_ftk=True),
    CommandInfo("GPVR", "General purpose verify with message recovery (raw RSA)",
                ("C_VerifyRecoverInit", "C_VerifyRecover"), needs_ftk=True),
    CommandInfo("GPUI", "Set a user identity's password (the partition's security officer)", ("C_InitPIN",)),
    CommandInfo("GPUC", "Change an identity's own password (the old one must match)", ("C_SetPIN",)),
    CommandInfo("GPTI", "Initialise a partition's token: empty its key slots, set its label",
                ("C_InitToken",)),
)

BY_CODE: dict[str, CommandInfo] = {c.code: c for c in COMMANDS}

# Transaction Processing after the guide's hardening (section 6.5.1).
TRANSACTION_PROCESSING_COMMANDS = ("ECHO", "PRMD", "RAND", "HASH", "GPKM", "GPKS", "GPKR")
# The guide's vSEC:CMS partition (section 6.5.2).
VSEC_CMS_COMMANDS = ("ECHO", "GPKM", "GPKS", "HASH", "GRSA", "LRSA", "GPKD", "GPKU", "GPSE", "TIME")


# Which load command stores which kind of object: (class, key type) -> command.
LOAD_COMMANDS: dict[tuple[int, int | None], str] = {
    **{(cls, ck.CKK_RSA): "LRSA" for cls in (ck.CKO_PUBLIC_KEY, ck.CKO_PRIVATE_KEY)},
    **{(cls, ck.CKK_EC): "LECC" for cls in (ck.CKO_PUBLIC_KEY, ck.CKO_PRIVATE_KEY)},
    **{(ck.CKO_SECRET_KEY, kt): "GPKL" for kt in (ck.CKK_AES, ck.CKK_DES3, ck.CKK_DES2, ck.CKK_GENERIC_SECRET)},
    **{(cls, ck.CKK_EC_EDWARDS): "LECC" for cls in (ck.CKO_PUBLIC_KEY, ck.CKO_PRIVATE_KEY)},
    **{(cls, ck.CKK_DSA): "LDSA" for cls in (ck.CKO_PUBLIC_KEY, ck.CKO_PRIVATE_KEY, ck.CKO_DOMAIN_PARAMETERS)},
    **{(cls, ck.CKK_DH): "LDHK" for cls in (ck.CKO_PUBLIC_KEY, ck.CKO_PRIVATE_KEY, ck.CKO_DOMAIN_PARAMETERS)},
    **{(ck.CKO_SECRET_KEY, kt): "GPKL" for kt in (
        ck.CKK_HKDF, ck.CKK_SHA_1_HMAC, ck.CKK_SHA224_HMAC, ck.CKK_SHA256_HMAC, ck.CKK_SHA384_HMAC,
        ck.CKK_SHA512_HMAC, ck.CKK_SHA3_224_HMAC, ck.CKK_SHA3_256_HMAC, ck.CKK_SHA3_384_HMAC, ck.CKK_SHA3_512_HMAC)},
    (ck.CKO_DATA, None): "GPDO",
    (ck.CKO_CERTIFICATE, None): "GPDO",
}


def load_command(cls: int, key_type: int | None) -> str | None:
    """The command that stores an object of this class and key type (C_CreateObject)."""
    return LOAD_COMMANDS.get((cls, None if cls in (ck.CKO_DATA, ck.CKO_CERTIFICATE) else key_type))


def commands_for(operation: str) -> list[str]:
    """The commands a PKCS #11 function may send (e.g. 'C_Sign' -> ['GPMC', 'GPAS'])."""
    return [c.code for c in COMMANDS if operation in c.pkcs11]


def whitelistable() -> list[str]:
    return [c.code for c in COMMANDS if not c.session_control]


def markdown_table() -> str:
    """The command table as docs/device.md prints it (a test keeps the two equal)."""
    rows = ["| Command | Whitelist | What it does | PKCS #11 functions |", "|---|---|---|---|"]
    for c in COMMANDS:
        rows.append(f"| {c.code} | {'always' if c.session_control else 'role'} | {c.description} | "
                    f"{', '.join(f'`{f}`' for f in c.pkcs11) or '-'} |")
    return "\n".join(rows)
