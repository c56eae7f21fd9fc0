"""Key management and random numbers."""
from __future__ import annotations

from fxpkcs11 import ck, state
from fxpkcs11.abi import marshal as m
from fxpkcs11.abi.objects import key_ref, ref
from fxpkcs11.abi.params import read_mechanism
from vhsm.excrypt import Tag

RANDOM_CHUNK = 1 << 20


def C_GenerateKey(h_session, p_mechanism, p_template, ul_count, ph_key) -> int:
    s = state.current().session(h_session)
    mech, _ = read_mechanism(p_mechanism, "generate")
    template = m.read_template(p_template, ul_count)
    m.need(ph_key, "phKey")
    r = s.call(mech.command("generate"), {Tag.MECHANISM: mech.code, Tag.TEMPLATE: template,
                                          Tag.READ_WRITE: s.rw, Tag.SESSION: s.handle})
    ph_key[0] = r[Tag.OBJECT] + 1
    return ck.CKR_OK


def C_GenerateKeyPair(h_session, p_mechanism, p_pub, ul_pub, p_priv, ul_priv, ph_pub, ph_priv) -> int:
    s = state.current().session(h_session)
    mech, _ = read_mechanism(p_mechanism, "generate_pair")
    pub = m.read_template(p_pub, ul_pub)
    priv = m.read_template(p_priv, ul_priv)
    m.need(ph_pub, "phPublicKey")
    m.need(ph_priv, "phPrivateKey")
    r = s.call(mech.command("generate_pair"), {Tag.MECHANISM: mech.code, Tag.PUBLIC_TEMPLATE: pub,
                                               Tag.PRIVATE_TEMPLATE: priv, Tag.READ_WRITE: s.rw,
                                               Tag.SESSION: s.handle})
    ph_pub[0] = r[Tag.PUBLIC_OBJECT] + 1
    ph_priv[0] = r[Tag.PRIVATE_OBJECT] + 1
    return ck.CKR_OK


def C_WrapKey(h_session, p_mechanism, h_wrapping, h_key, p_wrapped, pul_len) -> int:
    s = state.current().session(h_session)
    mech, param = read_mechanism(p_mechanism, "wrap")
    m.need(pul_len, "pulWrappedKeyLen")
    r = s.call("GPKW", {Tag.MECHANISM: mech.code, Tag.MECH_PARAM: param, Tag.WRAPPING_KEY: key_ref(h_wrapping),
                        Tag.OBJECT: key_ref(h_key)})
    return m.write_out(r[Tag.WRAPPED], p_wrapped, pul_len)


def C_UnwrapKey(h_session, p_mechanism, h_unwrapping, p_wrapped, ul_wrapped, p_template, ul_count, ph_key) -> int:
    s = state.current().session(h_session)
    mech, param = read_mechanism(p_mechanism, "unwrap")
    wrapped = m.read_bytes(p_wrapped, ul_wrapped)
    template = m.read_template(p_template, ul_count)
    m.need(ph_key, "phKey")
    r = s.call("GPKU", {Tag.MECHANISM: mech.code, Tag.MECH_PARAM: param, Tag.WRAPPING_KEY: key_ref(h_unwrapping),
                        Tag.WRAPPED: wrapped, Tag.TEMPLATE: template, Tag.READ_WRITE: s.rw,
                        Tag.SESSION: s.handle})
    ph_key[0] = r[Tag.OBJECT] + 1
    return ck.CKR_OK


def C_DeriveKey(h_session, p_mechanism, h_base_key, p_template, ul_count, ph_key) -> int:
    s = state.current().session(h_session)
    mech, param = read_mechanism(p_mechanism, "derive")
    template = m.read_template(p_template, ul_count)
    m.need(ph_key, "phKey")
    base = -1 if h_base_key == ck.CK_INVALID_HANDLE else ref(h_base_key)  # the device answers KEY_HANDLE_INVALID
    r = s.call(mech.command("derive"), {Tag.MECHANISM: mech.code, Tag.MECH_PARAM: param, Tag.OBJECT: base,
                                        Tag.TEMPLATE: template, Tag.READ_WRITE: s.rw, Tag.SESSION: s.handle})
    ph_key[0] = r[Tag.OBJECT] + 1
    return ck.CKR_OK


def C_SeedRandom(h_session, p_seed, ul_seed_len) -> int:
    s = state.current().session(h_session)
    s.call("SEED", {Tag.DATA: m.read_bytes(p_seed, ul_seed_len)})
    return ck.CKR_OK


def C_GenerateRandom(h_session, p_random, ul_len) -> int:
    s = state.current().session(h_session)
    if ul_len:
        m.need(p_random, "pRandomData")
    if ul_len > m.LENGTH_LIMIT:
        raise m.bad(f"ulRandomLen {ul_len} is absurd")
    done = 0
    while done < ul_len:
        n = min(RANDOM_CHUNK, ul_len - done)
        data = s.call("RAND", {Tag.LENGTH: n})[Tag.DATA]
        m.ffi.memmove(p_random + done if done else p_random, data, n)
        done += n
    return ck.CKR_OK
