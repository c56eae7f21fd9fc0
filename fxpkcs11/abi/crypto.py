"""Encryption, decryption, digesting, signing and verification.

Each family has init / single-part / update / final. The device does the work (digests
excepted: they touch no key, so they run here).
"""
from __future__ import annotations

from typing import Any

from fxpkcs11 import ck, mechs, state
from fxpkcs11.abi import marshal as m
from fxpkcs11.abi.objects import key_ref
from fxpkcs11.abi.params import read_mechanism
from fxpkcs11.digest import DigestState
from fxpkcs11.errors import CKRError
from fxpkcs11.library import Session
from fxpkcs11.operations import MULTI, SINGLE, Operation
from vhsm.excrypt import Tag

FINAL = {Tag.PHASE: "F"}


def _init(h_session: int, p_mech: Any, h_key: int, kind: str) -> int:
    s = state.current().session(h_session)
    mech, param = read_mechanism(p_mech, kind)
    if kind in s.ops:
        raise CKRError(ck.CKR_OPERATION_ACTIVE, f"a {kind} operation is already active")
    code = mech.command(kind)
    r = s.call(code, {Tag.PHASE: "I", Tag.OBJECT: key_ref(h_key), Tag.MECHANISM: mech.code, Tag.MECH_PARAM: param,
                      Tag.SESSION: s.handle})
    s.ops[kind] = Operation(code, r[Tag.CONTEXT], mech.code)
    return ck.CKR_OK


def _run(s: Session, kind: str, op: Operation, fields: dict) -> bytes:
    """A device step that ends the operation on any error."""
    fields[Tag.CONTEXT] = op.cid
    try:
        r = s.call(op.code, fields)
    except CKRError:
        op.finished = fields.get(Tag.PHASE) == "F"
        s.ops.pop(kind, None)
        raise
    return r.get(Tag.RESULT, b"")


def _deliver(s: Session, kind: str, op: Operation, out: bytes, buf: Any, plen: Any, last: bool) -> int:
    rv = m.write_out(out, buf, plen)
    if buf == m.NULL or rv == ck.CKR_BUFFER_TOO_SMALL:
        op.pending = out  # the same bytes answer the next call
        return rv
    op.pending = op.pending_in = None
    if last:
        s.ops.pop(kind, None)
    return rv


def _refused(s: Session, kind: str, e: CKRError) -> CKRError:
    """A data call refused for its arguments still ends the operation (the spec: the call
    "always terminates the active operation" unless it returns CKR_OK or CKR_BUFFER_TOO_SMALL).
    Inline try/except at each call site: a context manager would cost a microsecond a call."""
    s.end(kind)
    return e


def _single(h_session: int, kind: str, data_ptr: Any, data_len: int, buf: Any, plen: Any) -> int:
    s = state.current().session(h_session)
    op = s.op(kind)
    if op.mode == MULTI:
        raise CKRError(ck.CKR_OPERATION_ACTIVE, f"a multi-part {kind} is in progress")
    try:
        data = m.read_view(data_ptr, data_len)
        m.need(plen, "output length pointer")
    except CKRError as e:
        raise _refused(s, kind, e)
    op.mode = SINGLE
    if op.pending is not None and op.pending_in == data:
        out = op.pending
    else:
        if op.finished:
            s.ops.pop(kind, None)
            raise CKRError(ck.CKR_OPERATION_NOT_INITIALIZED, f"{kind}: the data changed after a length query")
        out = _run(s, kind, op, {Tag.PHASE: "F", Tag.DATA: data})
        op.finished = True
        op.pending_in = data
    rv = _deliver(s, kind, op, out, buf, plen, True)
    if op.pending is not None and type(op.pending_in) is memoryview:
        op.pending_in = bytes(op.pending_in)  # kept past this call: the caller's buffer is not ours
    return rv


def _update(h_session: int, kind: str, data_ptr: Any, data_len: int, buf: Any, plen: Any) -> int:
    s = state.current().session(h_session)
    op = s.op(kind)
    if op.mode == SINGLE:
        raise CKRError(ck.CKR_OPERATION_ACTIVE, f"a single-part {kind} is in progress")
    try:
        data = m.read_bytes(data_ptr, data_len)
        if buf is not None:
            m.need(plen, "output length pointer")
    except CKRError as e:
        raise _refused(s, kind, e)
    op.mode = MULTI
    if buf is None:  # sign/verify: no output
        _run(s, kind, op, {Tag.PHASE: "U", Tag.DATA: data})
        return ck.CKR_OK
    if op.pending is not None and op.pending_in == data:
        out = op.pending
    else:
        out = _run(s, kind, op, {Tag.PHASE: "U", Tag.DATA: data})
        op.pending_in = data
    return _deliver(s, kind, op, out, buf, plen, False)


def _final(h_session: int, kind: str, buf: Any, plen: Any) -> int:
    s = state.current().session(h_session)
    op = s.op(kind)
    if op.mode == SINGLE:
        raise CKRError(ck.CKR_OPERATION_ACTIVE, f"a single-part {kind} is in progress")
    try:
        m.need(plen, "output length pointer")
    except CKRError as e:
        raise _refused(s, kind, e)
    op.mode = MULTI
    if op.pending is not None and op.finished:
        out = op.pending
    else:
        out = _run(s, kind, op, {Tag.PHASE: "F"})
        op.finished = True
    return _deliver(s, kind, op, out, buf, plen, True)


# ------------------------------------------------------------------ encrypt / decrypt

def C_EncryptInit(h_session, p_mechanism, h_key) -> int:
    return _init(h_session, p_mechanism, h_key, "encrypt")


def C_Encrypt(h_session, p_data, ul_data_len, p_encrypted, pul_len) -> int:
    return _single(h_session, "encrypt", p_data, ul_data_len, p_encrypted, pul_len)


def C_EncryptUpdate(h_session, p_part, ul_part_len, p_encrypted, pul_len) -> int:
    return _update(h_session, "encrypt", p_part, ul_part_len, p_encrypted, pul_len)


def C_EncryptFinal(h_session, p_last, pul_len) -> int:
    return _final(h_session, "encrypt", p_last, pul_len)


def C_DecryptInit(h_session, p_mechanism, h_key) -> int:
    return _init(h_session, p_mechanism, h_key, "decrypt")


def C_Decrypt(h_session, p_encrypted, ul_len, p_data, pul_data_len) -> int:
    return _single(h_session, "decrypt", p_encrypted, ul_len, p_data, pul_data_len)


def C_DecryptUpdate(h_session, p_part, ul_part_len, p_out, pul_len) -> int:
    return _update(h_session, "decrypt", p_part, ul_part_len, p_out, pul_len)


def C_DecryptFinal(h_session, p_last, pul_len) -> int:
    return _final(h_session, "decrypt", p_last, pul_len)


# ------------------------------------------------------------------ sign / verify

def C_SignInit(h_session, p_mechanism, h_key) -> int:
    return _init(h_session, p_mechanism, h_key, "sign")


def C_Sign(h_session, p_data, ul_data_len, p_signature, pul_len) -> int:
    return _single(h_session, "sign", p_data, ul_data_len, p_signature, pul_len)


def C_SignUpdate(h_session, p_part, ul_part_len) -> int:
    return _update(h_session, "sign", p_part, ul_part_len, None, None)


def C_SignFinal(h_session, p_signature, pul_len) -> int:
    return _final(h_session, "sign", p_signature, pul_len)


def C_VerifyInit(h_session, p_mechanism, h_key) -> int:
    return _init(h_session, p_mechanism, h_key, "verify")


def C_Verify(h_session, p_data, ul_data_len, p_signature, ul_sig_len) -> int:
    s = state.current().session(h_session)
    op = s.op("verify")
    if op.mode == MULTI:
        raise CKRError(ck.CKR_OPERATION_ACTIVE, "a multi-part verify is in progress")
    data = m.read_bytes(p_data, ul_data_len)
    sig = m.read_bytes(p_signature, ul_sig_len)
    s.ops.pop("verify", None)
    op.finished = True
    _run(s, "verify", op, {Tag.PHASE: "F", Tag.DATA: data, Tag.SIGNATURE: sig})
    return ck.CKR_OK


def C_VerifyUpdate(h_session, p_part, ul_part_len) -> int:
    return _update(h_session, "verify", p_part, ul_part_len, None, None)


def C_VerifyFinal(h_session, p_signature, ul_sig_len) -> int:
    s = state.current().session(h_session)
    op = s.op("verify")
    if op.mode == SINGLE:
        raise CKRError(ck.CKR_OPERATION_ACTIVE, "a single-part verify is in progress")
    sig = m.read_bytes(p_signature, ul_sig_len)
    s.ops.pop("verify", None)
    op.finished = True
    _run(s, "verify", op, {Tag.PHASE: "F", Tag.SIGNATURE: sig})
    return ck.CKR_OK


# ------------------------------------------------------------------ digest (local)

def C_DigestInit(h_session, p_mechanism) -> int:
    s = state.current().session(h_session)
    mech, _ = read_mechanism(p_mechanism, "digest")
    name = mechs.DIGESTS.get(mech.code)
    if name is None:
        raise CKRError(ck.CKR_MECHANISM_INVALID, f"{ck.name(mech.code, 'CKM_')} is not a digest")
    s.begin("digest", Operation("", 0, mech.code, DigestState(name, mech.code)))
    return ck.CKR_OK


def _digest_out(s: Session, op: Operation, h: Any, buf: Any, plen: Any) -> int:
    m.need(plen, "pulDigestLen")
    size = h.digest_size
    if buf == m.NULL:
        plen[0] = size
        return ck.CKR_OK
    if plen[0] < size:
        plen[0] = size
        return ck.CKR_BUFFER_TOO_SMALL
    s.ops.pop("digest", None)
    return m.write_out(h.digest(), buf, plen)


def C_Digest(h_session, p_data, ul_data_len, p_digest, pul_len) -> int:
    s = state.current().session(h_session)
    op = s.op("digest")
    if op.mode == MULTI:
        raise CKRError(ck.CKR_OPERATION_ACTIVE, "a multi-part digest is in progress")
    data = m.read_now(p_data, ul_data_len)
    op.mode = SINGLE
    state_ = op.local
    if p_digest != m.NULL and pul_len != m.NULL and pul_len[0] >= state_.digest_size:
        h = state_.hash  # the operation ends here: no copy needed
    else:
        h = state_.copy()  # a length query or a short buffer keeps the operation going
    h.update(data)
    return _digest_out(s, op, h, p_digest, pul_len)


def C_DigestUpdate(h_session, p_part, ul_part_len) -> int:
    s = state.current().session(h_session)
    op = s.op("digest")
    if op.mode == SINGLE:
        raise CKRError(ck.CKR_OPERATION_ACTIVE, "a single-part digest is in progress")
    op.mode = MULTI
    op.local.update(m.read_bytes(p_part, ul_part_len))
    return ck.CKR_OK


def C_DigestFinal(h_session, p_digest, pul_len) -> int:
    s = state.current().session(h_session)
    op = s.op("digest")
    if op.mode == SINGLE:
        raise CKRError(ck.CKR_OPERATION_ACTIVE, "a single-part digest is in progress")
    op.mode = MULTI
    return _digest_out(s, op, op.local, p_digest, pul_len)
