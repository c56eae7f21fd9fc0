"""Objects inside the device: token objects in the key table, session objects in memory.

Every object has one reference number. A token object's reference is its key table slot;
a session object's is SESSION_BASE + a counter. Secret material of token objects is
stored wrapped under the FTK with the slot, owner and attributes as associated data; the
unwrapped material is cached per (slot, version), bounded, and dropped with the FTK.
"""
from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from fxpkcs11 import ck
from vhsm import attrcodec
from vhsm.crypto import keys as keymat
from vhsm.excrypt import DeviceError
from vhsm.majorkeys import MajorKey, WrapError
from vhsm.store import KeyRecord, SlotsFull, StoreError, StoreFull

SESSION_BASE = 0x40000000
CACHE_LIMIT = 4096
# One numbering for the session objects of every connection in this process: a handle from
# one slot's session never names another slot's object.
_SESSION_REFS = itertools.count(SESSION_BASE + 1)


@dataclass
class P11Object:
    ref: int
    attrs: dict[int, Any]
    owner: str
    session: int = 0            # owning PKCS #11 session for session objects, 0 for token objects
    version: int = 0
    secret: bytes | None = None  # clear material of session objects only
    loaded: Any = field(default=None, repr=False)  # parsed key (cryptography object or bytes)

    @property
    def is_token(self) -> bool:
        return self.ref < SESSION_BASE

    @property
    def cls(self) -> int:
        return self.attrs[ck.CKA_CLASS]


def aad(slot: int, owner: str, attrs: dict[int, Any]) -> bytes:
    return b"FXKT1|%d|%s|" % (slot, owner.encode()) + attrcodec.encode_attrs(attrs)


def material(cls: int, secret: bytes) -> Any:
    """Parse secret material once: private keys become key objects, secrets stay bytes."""
    return keymat.load_private(secret) if cls == ck.CKO_PRIVATE_KEY else secret


class KeyCache:
    """Unwrapped token key material by (slot, version); bounded, oldest evicted first."""

    def __init__(self, limit: int = CACHE_LIMIT) -> None:
        self._items: OrderedDict[tuple[int, int], Any] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def get(self, slot: int, version: int) -> Any:
        return self._items.get((slot, version))

    def put(self, slot: int, version: int, value: Any) -> None:
        with self._lock:
            self._items[(slot, version)] = value
            while len(self._items) > self._limit:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class ObjectSpace:
    """Token objects (shared through the store) plus one connection's session objects."""

    def __init__(self, store: Any, ftk: Callable[[], MajorKey], cache: KeyCache) -> None:
        self.store = store
        self._ftk = ftk
        self.cache = cache
        self.session_objects: dict[int, P11Object] = {}
        self._ids = _SESSION_REFS
        self._lock = threading.Lock()

    # ------------------------------------------------------------ lookup
    def get(self, ref: int) -> P11Object | None:
        if ref >= SESSION_BASE:
            return self.session_objects.get(ref)
        try:
            rec = self.store.get_key(ref)
        except StoreError as e:
            raise DeviceError(ck.CKR_DEVICE_ERROR, f"key table: {e}") from None
        if rec is None:
            return None
        return P11Object(rec.slot, rec.attrs, rec.owner, 0, rec.version, None, _Wrapped(rec.wrapped))

    def load(self, obj: P11Object) -> Any:
        """The object's parsed secret material (private key object or secret bytes)."""
        if obj.ref >= SESSION_BASE:
            return obj.loaded
        wrapped = obj.loaded.blob if isinstance(obj.loaded, _Wrapped) else None
        cached = self.cache.get(obj.ref, obj.version)
        # A cache entry serves only the row it was unwrapped from: a row whose owner,
        # attributes or wrapping changed without a new version (edited behind the device's
        # back) unwraps again, and fails, instead of lending it the cached material.
        if cached is not None and cached[0] == wrapped and cached[1] == obj.owner and cached[2] == obj.attrs:
            return cached[3]
        if wrapped is None:
            raise DeviceError(ck.CKR_KEY_HANDLE_INVALID, f"slot {obj.ref} holds no key material")
        try:
            clear = self._ftk().unwrap(wrapped, aad(obj.ref, obj.owner, obj.attrs))
        except WrapError:
            raise DeviceError(ck.CKR_DEVICE_ERROR,
                              f"key in slot {obj.ref} does not unwrap under the loaded FTK "
                              "(wrong FTK, or the stored key was altered)") from None
        value = material(obj.cls, clear)
        self.cache.put(obj.ref, obj.version, (wrapped, obj.owner, dict(obj.attrs), value))
        return value

    def public_key(self, obj: P11Object) -> Any:
        cached = self.cache.get(-1 - obj.ref, obj.version) if obj.is_token else obj.loaded
        if cached is None:
            cached = keymat.public_from_attrs(obj.attrs)
            if obj.is_token:
                self.cache.put(-1 - obj.ref, obj.version, cached)
            else:
                obj.loaded = cached
        return cached

    # ------------------------------------------------------------ changes
    def create(self, attrs: dict[int, Any], secret: bytes | None, owner: str, ranges: list[tuple[int, int]],
               session: int) -> P11Object:
        return self.create_all([(attrs, secret)], owner, ranges, session)[0]

    def create_all(self, items: list[tuple[dict[int, Any], bytes | None]], owner: str,
                   ranges: list[tuple[int, int]], session: int) -> list[P11Object]:
        """The objects of one call (a key pair): the token objects go to the store in one
        transaction, so a failure (a full disk, a kill) leaves none of them behind."""
        token = [i for i, (attrs, _) in enumerate(items) if attrs.get(ck.CKA_TOKEN)]
        out: dict[int, P11Object] = {}
        if token:
            for i, rec in zip(token, self._insert(owner, ranges, [items[i] for i in token])):
                out[i] = P11Object(rec.slot, rec.attrs, rec.owner, 0, rec.version, None, _Wrapped(rec.wrapped))
        for i, (attrs, secret) in enumerate(items):
            if i not in out:
                ref = next(self._ids)
                out[i] = P11Object(ref, attrs, owner, session, 0, secret,
                                   material(attrs[ck.CKA_CLASS], secret) if secret is not None else None)
                with self._lock:
                    self.session_objects[ref] = out[i]
        return [out[i] for i in range(len(items))]

    def _insert(self, owner: str, ranges: list[tuple[int, int]],
                items: list[tuple[dict[int, Any], bytes | None]]) -> list[KeyRecord]:
        ftk = self._ftk()

        def builder(attrs: dict[int, Any], secret: bytes | None) -> Callable[[int], KeyRecord]:
            def build(slot: int) -> KeyRecord:
                wrapped = ftk.wrap(secret, aad(slot, owner, attrs)) if secret is not None else None
                return KeyRecord(slot, owner, attrs, wrapped, 0)
            return build
        builds = [builder(attrs, secret) for attrs, secret in items]
        try:
            insert_keys = getattr(self.store, "insert_keys", None)
            if insert_keys is not None:
                return insert_keys(owner, ranges, builds)
            return [self.store.insert_key(owner, ranges, b) for b in builds]
        except SlotsFull as e:
            raise DeviceError(ck.CKR_DEVICE_MEMORY, f"partition {owner!r}: {e}") from None
        except StoreFull as e:
            raise DeviceError(ck.CKR_DEVICE_MEMORY, f"key not stored, the disk is full: {e}") from None
        except StoreError as e:
            raise DeviceError(ck.CKR_DEVICE_ERROR, f"key table: {e}") from None

    def update(self, obj: P11Object, attrs: dict[int, Any]) -> None:
        if not obj.is_token:
            obj.attrs = attrs
            return
        wrapped = obj.loaded.blob if isinstance(obj.loaded, _Wrapped) else None
        if wrapped is not None:  # the attributes are bound into the wrapping: wrap again
            ftk = self._ftk()
            try:
                clear = ftk.unwrap(wrapped, aad(obj.ref, obj.owner, obj.attrs))
            except WrapError:
                raise DeviceError(ck.CKR_DEVICE_ERROR, f"key in slot {obj.ref} does not unwrap") from None
            wrapped = ftk.wrap(clear, aad(obj.ref, obj.owner, attrs))
        try:
            self.store.update_key(KeyRecord(obj.ref, obj.owner, attrs, wrapped, obj.version), obj.version)
        except StoreFull as e:
            raise DeviceError(ck.CKR_DEVICE_MEMORY, f"key not changed, the disk is full: {e}") from None
        except StoreError as e:
            raise DeviceError(ck.CKR_DEVICE_ERROR, f"key table: {e}") from None

    def destroy(self, obj: P11Object) -> None:
        if obj.is_token:
            try:
                self.store.delete_key(obj.ref)
            except StoreFull as e:
                raise DeviceError(ck.CKR_DEVICE_MEMORY, f"key not deleted, the disk is full: {e}") from None
            except StoreError as e:
                raise DeviceError(ck.CKR_DEVICE_ERROR, f"key table: {e}") from None
        else:
            with self._lock:
                self.session_objects.pop(obj.ref, None)

    def drop_session(self, session: int) -> None:
        with self._lock:
            for ref in [r for r, o in self.session_objects.items() if o.session == session]:
                del self.session_objects[ref]

    def drop_all_sessions(self) -> None:
        with self._lock:
            self.session_objects.clear()


class _Wrapped:
    __slots__ = ("blob",)

    def __init__(self, blob: bytes | None) -> None:
        self.blob = blob


def object_size(obj: P11Object) -> int:
    """C_GetObjectSize: the bytes the object takes in the device, its encoded attributes plus
    its key material as kept (wrapped under the FTK for token objects)."""
    if obj.is_token:
        blob = obj.loaded.blob if isinstance(obj.loaded, _Wrapped) else None
    else:
        blob = obj.secret
    return len(attrcodec.encode_attrs(obj.attrs)) + len(blob or b"")
