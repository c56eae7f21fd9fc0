"""Object management: create, destroy, attributes, find. Handles are device refs + 1."""
from __future__ import annotations

from fxpkcs11 import ck, state
from fxpkcs11.abi import marshal as m
from fxpkcs11.errors import CKRError
from vhsm.commands.catalog import load_command
from vhsm.excrypt import Tag

FIND_BATCH_MAX = 1 << 20


def ref(handle: int) -> int:
    if handle == ck.CK_INVALID_HANDLE:
        raise CKRError(ck.CKR_OBJECT_HANDLE_INVALID, "object handle 0 is never valid")
    return handle - 1


def key_ref(handle: int) -> int:
    """A key's device reference; handle 0 becomes -1, which the device refuses with the code
    of the key's role (CKR_KEY_HANDLE_INVALID, CKR_WRAPPING_KEY_HANDLE_INVALID ...)."""
    return -1 if handle == ck.CK_INVALID_HANDLE else handle - 1


def C_CreateObject(h_session, p_template, ul_count, ph_object) -> int:
    s = state.current().session(h_session)
    template = m.read_template(p_template, ul_count)
    m.need(ph_object, "phObject")
    cls = template.get(ck.CKA_CLASS)
    if cls is None:
        raise CKRError(ck.CKR_TEMPLATE_INCOMPLETE, "template has no CKA_CLASS")
    code = load_command(cls, template.get(ck.CKA_KEY_TYPE))
    if code is None:
        raise CKRError(ck.CKR_TEMPLATE_INCONSISTENT if ck.CKA_KEY_TYPE in template
                       else ck.CKR_TEMPLATE_INCOMPLETE, "this kind of object cannot be created")
    r = s.call(code, {Tag.TEMPLATE: template, Tag.READ_WRITE: s.rw, Tag.SESSION: s.handle})
    ph_object[0] = r[Tag.OBJECT] + 1
    return ck.CKR_OK


def C_CopyObject(h_session, h_object, p_template, ul_count, ph_new_object) -> int:
    """The device copies the object (key material included) with the template's changes;
    its rules decide what a copy may change (docs/device.md)."""
    s = state.current().session(h_session)
    obj = ref(h_object)
    template = m.read_template(p_template, ul_count)
    m.need(ph_new_object, "phNewObject")
    r = s.call("GPKC", {Tag.OBJECT: obj, Tag.TEMPLATE: template, Tag.READ_WRITE: s.rw, Tag.SESSION: s.handle})
    ph_new_object[0] = r[Tag.OBJECT] + 1
    return ck.CKR_OK


def C_GetObjectSize(h_session, h_object, pul_size) -> int:
    """The bytes the object takes in the device (its attributes and its wrapped key material)."""
    s = state.current().session(h_session)
    obj = ref(h_object)
    m.need(pul_size, "pulSize")
    r = s.call("GPKS", {Tag.OBJECT: obj, Tag.OBJECT_SIZE: True})
    pul_size[0] = r.get(Tag.OBJECT_SIZE, ck.CK_UNAVAILABLE_INFORMATION)
    return ck.CKR_OK


def C_DestroyObject(h_session, h_object) -> int:
    s = state.current().session(h_session)
    s.call("GPKD", {Tag.OBJECT: ref(h_object), Tag.READ_WRITE: s.rw, Tag.SESSION: s.handle})
    return ck.CKR_OK


def C_GetAttributeValue(h_session, h_object, p_template, ul_count) -> int:
    s = state.current().session(h_session)
    types = m.attribute_types(p_template, ul_count)
    r = s.call("GPKS", {Tag.OBJECT: ref(h_object), Tag.ATTR_TYPES: types})
    return m.fill_attributes(p_template, ul_count, r[Tag.ATTR_VALUES])


def C_SetAttributeValue(h_session, h_object, p_template, ul_count) -> int:
    s = state.current().session(h_session)
    template = m.read_template(p_template, ul_count)
    if not template:  # nothing to change, but the object must still be one this session sees
        s.call("GPKS", {Tag.OBJECT: ref(h_object), Tag.ATTR_TYPES: []})
        return ck.CKR_OK
    s.call("GPKS", {Tag.OBJECT: ref(h_object), Tag.TEMPLATE: template, Tag.READ_WRITE: s.rw})
    return ck.CKR_OK


def C_FindObjectsInit(h_session, p_template, ul_count) -> int:
    s = state.current().session(h_session)
    if s.find is not None:
        raise CKRError(ck.CKR_OPERATION_ACTIVE, "a search is already active")
    template = m.read_template(p_template, ul_count)
    r = s.call("GPKM", {Tag.TEMPLATE: template})
    found = [x + 1 for x in r[Tag.OBJECTS]]
    found.reverse()  # popped from the end
    s.find = found
    return ck.CKR_OK


def C_FindObjects(h_session, ph_object, ul_max, pul_count) -> int:
    s = state.current().session(h_session)
    if s.find is None:
        raise CKRError(ck.CKR_OPERATION_NOT_INITIALIZED, "no search is active")
    m.need(pul_count, "pulObjectCount")
    if ul_max:
        m.need(ph_object, "phObject")
    found = s.find
    n = min(ul_max, len(found), FIND_BATCH_MAX)
    for i in range(n):
        ph_object[i] = found.pop()
    pul_count[0] = n
    return ck.CKR_OK


def C_FindObjectsFinal(h_session) -> int:
    s = state.current().session(h_session)
    if s.find is None:
        raise CKRError(ck.CKR_OPERATION_NOT_INITIALIZED, "no search is active")
    s.find = None
    return ck.CKR_OK
