"""The rest of the cryptographic functions: C_DigestKey, signatures with message recovery,
and the four dual-function updates (composed from the single operations in crypto.py)."""
from __future__ import annotations

from typing import Any

from fxpkcs11 import ck, state
from fxpkcs11.abi import crypto
from fxpkcs11.abi import marshal as m
from fxpkcs11.abi.crypto import _init
from fxpkcs11.abi.objects import ref
from fxpkcs11.digest import DigestState
from fxpkcs11.errors import CKRError
from fxpkcs11.library import Session
from fxpkcs11.operations import MULTI, SINGLE
from vhsm.excrypt import Tag

# ------------------------------------------------------------------ C_DigestKey


def C_DigestKey(h_session, h_key) -> int:
    """Continue a digest with a secret key's value: the digest moves into the device, which
    adds the value (the key never reaches the library; a sensitive key works too)."""
    s = state.current().session(h_session)
    op = s.op("digest")
    if op.mode == SINGLE:
        raise CKRError(ck.CKR_OPERATION_ACTIVE, "a single-part digest is in progress")
    local = op.local
    if not isinstance(local, DigestState):
        raise CKRError(ck.CKR_FUNCTION_FAILED, "this digest cannot take a key")
    op.mode = MULTI
    try:
        key = ref(h_key)
    except CKRError:
        s.end("digest")
        raise CKRError(ck.CKR_KEY_HANDLE_INVALID, "key handle 0 is never valid") from None
    try:
        local.add_key(s, op, key)
    except CKRError:
        s.end("digest")
        raise
    return ck.CKR_OK


# ------------------------------------------------------------------ sign / verify with recovery

def _recover(h_session: int, kind: str, data_ptr: Any, data_len: int, buf: Any, plen: Any, tag: str) -> int:
    s = state.current().session(h_session)
    op = s.op(kind)
    data = m.read_bytes(data_ptr, data_len)
    m.need(plen, "output length pointer")
    if op.pending is not None and op.pending_in == data:
        out = op.pending
    else:
        if op.finished:
            s.ops.pop(kind, None)
            raise CKRError(ck.CKR_OPERATION_NOT_INITIALIZED, f"{kind}: the data changed after a length query")
        op.finished = True
        try:
            out = s.call(op.code, {Tag.PHASE: "F", Tag.CONTEXT: op.cid, tag: data}).get(Tag.RESULT, b"")
        except CKRError:
            s.ops.pop(kind, None)
            raise
        op.pending_in = data
    rv = m.write_out(out, buf, plen)
    if buf == m.NULL or rv == ck.CKR_BUFFER_TOO_SMALL:
        op.pending = out
        return rv
    s.ops.pop(kind, None)
    return rv


def C_SignRecoverInit(h_session, p_mechanism, h_key) -> int:
    return _init(h_session, p_mechanism, h_key, "sign_recover")


def C_SignRecover(h_session, p_data, ul_data_len, p_signature, pul_len) -> int:
    return _recover(h_session, "sign_recover", p_data, ul_data_len, p_signature, pul_len, Tag.DATA)


def C_VerifyRecoverInit(h_session, p_mechanism, h_key) -> int:
    return _init(h_session, p_mechanism, h_key, "verify_recover")


def C_VerifyRecover(h_session, p_signature, ul_sig_len, p_data, pul_len) -> int:
    return _recover(h_session, "verify_recover", p_signature, ul_sig_len, p_data, pul_len, Tag.SIGNATURE)


# ------------------------------------------------------------------ dual-function updates

def _second(s: Session, kind: str) -> None:
    """The operation a dual function feeds must be active and multi-part capable."""
    op = s.op(kind)
    if op.mode == SINGLE:
        raise CKRError(ck.CKR_OPERATION_ACTIVE, f"a single-part {kind} is in progress")


def _delivered(rv: int, buf: Any) -> bool:
    return rv == ck.CKR_OK and buf != m.NULL


def C_DigestEncryptUpdate(h_session, p_part, ul_part_len, p_encrypted, pul_len) -> int:
    s = state.current().session(h_session)
    _second(s, "digest")
    rv = crypto.C_EncryptUpdate(h_session, p_part, ul_part_len, p_encrypted, pul_len)
    if _delivered(rv, p_encrypted):  # a length query digests nothing: the next call will
        crypto.C_DigestUpdate(h_session, p_part, ul_part_len)
    return rv


def C_SignEncryptUpdate(h_session, p_part, ul_part_len, p_encrypted, pul_len) -> int:
    s = state.current().session(h_session)
    _second(s, "sign")
    rv = crypto.C_EncryptUpdate(h_session, p_part, ul_part_len, p_encrypted, pul_len)
    if _delivered(rv, p_encrypted):
        crypto.C_SignUpdate(h_session, p_part, ul_part_len)
    return rv


def C_DecryptDigestUpdate(h_session, p_encrypted, ul_len, p_part, pul_part_len) -> int:
    s = state.current().session(h_session)
    _second(s, "digest")
    rv = crypto.C_DecryptUpdate(h_session, p_encrypted, ul_len, p_part, pul_part_len)
    if _delivered(rv, p_part):
        crypto.C_DigestUpdate(h_session, p_part, pul_part_len[0])
    return rv


def C_DecryptVerifyUpdate(h_session, p_encrypted, ul_len, p_part, pul_part_len) -> int:
    s = state.current().session(h_session)
    _second(s, "verify")
    rv = crypto.C_DecryptUpdate(h_session, p_encrypted, ul_len, p_part, pul_part_len)
    if _delivered(rv, p_part):
        crypto.C_VerifyUpdate(h_session, p_part, pul_part_len[0])
    return rv
