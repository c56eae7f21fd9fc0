"""General-purpose, slot and token functions."""
from __future__ import annotations

import os

from fxpkcs11 import ck, config, log as logmod, mechs, state
from fxpkcs11.abi import marshal as m
from fxpkcs11.errors import CKRError
from fxpkcs11.library import LIBRARY_VERSION, MANUFACTURER, MODEL, Library, Token
from fxpkcs11.log import log
from vhsm.excrypt import Tag


def C_Initialize(p_init_args) -> int:
    if p_init_args != m.NULL:
        a = m.ffi.cast("CK_C_INITIALIZE_ARGS_PTR", p_init_args)[0]
        if a.pReserved != m.NULL:
            raise m.bad("CK_C_INITIALIZE_ARGS.pReserved must be null")
        given = [f != m.NULL for f in (a.CreateMutex, a.DestroyMutex, a.LockMutex, a.UnlockMutex)]
        if any(given) and not all(given):
            raise m.bad("the mutex functions must be supplied all together or not at all")
    with state.lock:
        if state.forked():
            from fxpkcs11.transport import forget_devices
            state.lib = None  # the parent's library is not ours: start afresh
            forget_devices()
        if state.lib is not None:
            return ck.CKR_CRYPTOKI_ALREADY_INITIALIZED
        try:
            cfg = config.load_config()
        except config.ConfigError as e:
            logmod.setup("ERROR", None)
            log.error("configuration: %s", e)
            return ck.CKR_GENERAL_ERROR
        logmod.setup(cfg.log_mode, cfg.log_file)
        for w in cfg.warnings:
            log.warning("configuration: %s", w)
        log.info("C_Initialize: config %s, %d slot(s), pid %d", cfg.path, len(cfg.hsms), os.getpid())
        li = Library(cfg)
        for token in li.tokens.values():
            if token.hsm.embedded:
                # The first C_Initialize creates a factory-fresh device; a damaged one is
                # reported here and again by every call on its slot.
                try:
                    token.transport
                except CKRError as e:
                    log.error("slot %d: %s", token.slot_id, e.text)
        state.lib = li
    return ck.CKR_OK


def C_Finalize(p_reserved) -> int:
    if p_reserved != m.NULL:
        raise m.bad("pReserved must be null")
    with state.lock:
        li = state.current()
        state.lib = None
    li.finalize()
    return ck.CKR_OK


def C_GetInfo(p_info) -> int:
    state.current()
    m.need(p_info, "pInfo")
    info = p_info[0]
    info.cryptokiVersion.major, info.cryptokiVersion.minor = 2, 40
    m.put_text(info.manufacturerID, MANUFACTURER, 32)
    info.flags = 0
    m.put_text(info.libraryDescription, "Futurex PKCS #11 (virtual HSM)", 32)
    info.libraryVersion.major, info.libraryVersion.minor = LIBRARY_VERSION
    return ck.CKR_OK


def C_GetSlotList(token_present, p_slot_list, pul_count) -> int:
    li = state.current()
    return m.write_ulongs(sorted(li.tokens), p_slot_list, pul_count)


DEFAULT_MIN_PIN, DEFAULT_MAX_PIN = 4, 64


def _ask(token: Token, code: str, fields: dict) -> dict:
    """Information commands: a partition that does not whitelist one still gets an answer
    from the other fields (the refusal is in the log)."""
    try:
        return token.call(code, fields)
    except CKRError as e:
        if e.rv != ck.CKR_FUNCTION_FAILED:
            raise
        return {}


def _firmware(token: Token) -> tuple[int, int]:
    text = _ask(token, "ECHO", {}).get(Tag.FIRMWARE) or "0.0"
    try:
        major, minor = (int(x) for x in text.split(".")[:2])
    except ValueError:
        return 0, 0
    return major, minor


def C_GetSlotInfo(slot_id, p_info) -> int:
    token = state.current().token(slot_id)
    m.need(p_info, "pInfo")
    info = p_info[0]
    where = "embedded" if token.hsm.embedded else ",".join(token.hsm.addresses)
    m.put_text(info.slotDescription, f"Futurex {MODEL} ({where})", 64)
    m.put_text(info.manufacturerID, MANUFACTURER, 32)
    info.hardwareVersion.major, info.hardwareVersion.minor = 1, 0
    if token.hsm.embedded:
        info.flags = ck.CKF_TOKEN_PRESENT | ck.CKF_HW_SLOT
        info.firmwareVersion.major, info.firmwareVersion.minor = _firmware(token)
        return ck.CKR_OK
    # A network HSM can be away: the slot stays, its token is reported absent meanwhile.
    info.flags = ck.CKF_HW_SLOT | ck.CKF_REMOVABLE_DEVICE
    try:
        info.firmwareVersion.major, info.firmwareVersion.minor = _firmware(token)
    except CKRError as e:
        if e.rv != ck.CKR_DEVICE_ERROR:
            raise
        info.firmwareVersion.major, info.firmwareVersion.minor = 0, 0
        return ck.CKR_OK
    info.flags |= ck.CKF_TOKEN_PRESENT
    return ck.CKR_OK


def pin_flags(limits: dict) -> int:
    """CKF_*_PIN_COUNT_LOW / FINAL_TRY / LOCKED from the device's wrong-PIN counts."""
    flags = 0
    limit = limits.get(Tag.MAX_FAILURES)
    for tag, low, final, locked in ((Tag.USER_FAILURES, ck.CKF_USER_PIN_COUNT_LOW, ck.CKF_USER_PIN_FINAL_TRY,
                                     ck.CKF_USER_PIN_LOCKED),
                                    (Tag.SO_FAILURES, ck.CKF_SO_PIN_COUNT_LOW, ck.CKF_SO_PIN_FINAL_TRY,
                                     ck.CKF_SO_PIN_LOCKED)):
        count = limits.get(tag) or 0
        if not count or not limit:
            continue
        if count >= limit:
            flags |= locked
        elif count == limit - 1:
            flags |= final | low
        else:
            flags |= low
    return flags


def C_GetTokenInfo(slot_id, p_info) -> int:
    li = state.current()
    token = li.token(slot_id)
    m.need(p_info, "pInfo")
    serial = _ask(token, "HASH", {}).get(Tag.SERIAL, "")
    user = token.identity if token.user == ck.CKU_USER and token.identity else token.hsm.crypto_opr
    limits = _ask(token, "PRMD", {Tag.USER: user or "", Tag.SO_USER: token.so_identity or ""})
    info = p_info[0]
    m.put_text(info.label, limits.get(Tag.TOKEN_LABEL) or token.hsm.label, 32)
    m.put_text(info.manufacturerID, MANUFACTURER, 32)
    m.put_text(info.model, MODEL, 16)
    m.put_text(info.serialNumber, serial, 16)
    flags = ck.CKF_RNG | ck.CKF_LOGIN_REQUIRED | ck.CKF_TOKEN_INITIALIZED
    if limits.get(Tag.IDENTITY_EXISTS, True) and limits.get(Tag.USER_PIN_SET, True):
        flags |= ck.CKF_USER_PIN_INITIALIZED
    info.flags = flags | pin_flags(limits)
    count = len(token.sessions)
    rw = sum(1 for h in token.sessions if li.sessions.get(h) is not None and li.sessions[h].rw)
    info.ulMaxSessionCount = ck.CK_EFFECTIVELY_INFINITE
    info.ulSessionCount = count
    info.ulMaxRwSessionCount = ck.CK_EFFECTIVELY_INFINITE
    info.ulRwSessionCount = rw
    info.ulMaxPinLen = limits.get(Tag.MAX_PIN, DEFAULT_MAX_PIN)
    info.ulMinPinLen = limits.get(Tag.MIN_PIN, DEFAULT_MIN_PIN)
    for f in ("ulTotalPublicMemory", "ulFreePublicMemory", "ulTotalPrivateMemory", "ulFreePrivateMemory"):
        setattr(info, f, ck.CK_UNAVAILABLE_INFORMATION)
    info.hardwareVersion.major, info.hardwareVersion.minor = 1, 0
    info.firmwareVersion.major, info.firmwareVersion.minor = _firmware(token)
    m.put_text(info.utcTime, "", 16)
    return ck.CKR_OK


def C_InitToken(slot_id, p_pin, ul_pin_len, p_label) -> int:
    """The partition's security officer (the SO PIN) empties the partition's key slots and
    labels its token. No session of this application may be open on the token."""
    li = state.current()
    token = li.token(slot_id)
    pin = m.read_bytes(p_pin, ul_pin_len)
    m.need(p_label, "pLabel")
    try:
        label = m.ffi.buffer(p_label, 32)[:].decode("utf-8").rstrip(" ")
    except UnicodeDecodeError:
        raise m.bad("pLabel is not 32 bytes of UTF-8") from None
    with token.login_lock:
        if token.sessions:
            raise CKRError(ck.CKR_SESSION_EXISTS, "close every session on the token before C_InitToken")
        name, password = token.identity_and_password(pin, ck.CKU_SO)
        token.transport.login(name, password, ck.CKU_SO)
        try:
            token.call("GPTI", {Tag.TOKEN_LABEL: label})
        finally:
            try:
                token.transport.logout()
            except CKRError as e:
                log.info("C_InitToken: logout: %s", e.text)
    return ck.CKR_OK


def C_WaitForSlotEvent(flags, p_slot, p_reserved) -> int:
    """Slots here never change (no removable tokens), so there is never an event: a
    non-blocking call answers CKR_NO_EVENT, and blocking, which would wait for ever, is not
    supported (the spec's answer for a library without slot events)."""
    state.current()
    if p_reserved != m.NULL:
        raise m.bad("pReserved must be null")
    m.need(p_slot, "pSlot")
    if flags & ck.CKF_DONT_BLOCK:
        return ck.CKR_NO_EVENT
    return ck.CKR_FUNCTION_NOT_SUPPORTED


def C_GetMechanismList(slot_id, p_list, pul_count) -> int:
    state.current().token(slot_id)
    return m.write_ulongs(mechs.MECHANISM_LIST, p_list, pul_count)


def C_GetMechanismInfo(slot_id, mech_type, p_info) -> int:
    state.current().token(slot_id)
    m.need(p_info, "pInfo")
    mech = mechs.get(mech_type)
    if mech is None:
        raise CKRError(ck.CKR_MECHANISM_INVALID, f"{ck.name(mech_type, 'CKM_')} is not supported")
    info = p_info[0]
    info.ulMinKeySize, info.ulMaxKeySize, info.flags = mech.min_size, mech.max_size, mech.flags
    return ck.CKR_OK
