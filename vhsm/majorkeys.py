"""Major keys: the FTK (Futurex Key) that wraps every stored key.

The FTK is an AES-256 key. Stored keys are wrapped with AES-256-GCM; the
caller binds each blob to its context (slot, owner, attributes) through the
associated data, so a blob copied to another slot or with edited attributes
fails to unwrap.

``SecureMemory`` stands in for the HSM's tamper-protected secure memory: a
real Vectera Plus keeps its major keys in battery-backed memory that is
erased on tamper. Here the FTK lives in ``<state_dir>/secure/ftk.bin``,
wrapped under a random per-device key in ``<state_dir>/secure/device.key``.
Both files are readable by the owner only; anyone who can read both can
recover the FTK, exactly as anyone who could read the real secure memory
could.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import threading

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

try:
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # older cryptography releases
    from cryptography.hazmat.primitives.ciphers.algorithms import TripleDES  # type: ignore[attr-defined,no-redef]

KEY_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16
WRAP_VERSION = 1
_HEADER = bytes([WRAP_VERSION])


class WrapError(ValueError):
    """A wrapped blob could not be unwrapped (bad format or failed authentication)."""


def _ecb_encrypt(algorithm: algorithms.BlockCipherAlgorithm, block: bytes) -> bytes:
    enc = Cipher(algorithm, modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def _kcv_hex(data: bytes) -> str:
    return data[:2].hex().upper()


class MajorKey:
    """An AES-256 major key. Key bytes never appear in repr/str."""

    __slots__ = ("_key", "_aead", "_kcv")

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_LEN:
            raise ValueError(f"a major key must be {KEY_LEN} bytes")
        self._key = bytes(key)
        self._aead = AESGCM(self._key)
        self._kcv: str | None = None

    @property
    def kcv(self) -> str:
        """Key check value: first 2 bytes of AES-ECB(key, zero block), 4 hex digits."""
        if self._kcv is None:
            self._kcv = _kcv_hex(_ecb_encrypt(algorithms.AES(self._key), bytes(16)))
        return self._kcv

    def key_bytes(self) -> bytes:
        """The clear key, for secure-memory storage and M-of-N fragmenting only."""
        return self._key

    def wrap(self, clear: bytes, aad: bytes) -> bytes:
        """Encrypt ``clear`` bound to ``aad``: version byte + nonce + ciphertext+tag."""
        nonce = os.urandom(NONCE_LEN)
        return _HEADER + nonce + self._aead.encrypt(nonce, bytes(clear), bytes(aad))

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        """Reverse ``wrap``; raises WrapError if the blob is malformed or not authentic."""
        if not isinstance(blob, (bytes, bytearray, memoryview)):
            raise WrapError("wrapped key is not bytes")
        blob = bytes(blob)
        if len(blob) < 1 + NONCE_LEN + TAG_LEN:
            raise WrapError("wrapped key is too short")
        if blob[0] != WRAP_VERSION:
            raise WrapError(f"unknown wrapped key format version {blob[0]}")
        nonce = blob[1:1 + NONCE_LEN]
        try:
            return self._aead.decrypt(nonce, blob[1 + NONCE_LEN:], bytes(aad))
        except Exception as exc:  # InvalidTag carries no message
            raise WrapError("wrapped key failed authentication (wrong key, context or tampered)") from exc

    def __repr__(self) -> str:
        return f"MajorKey(kcv={self.kcv})"

    __str__ = __repr__


def generate_ftk() -> MajorKey:
    """A fresh random FTK."""
    return MajorKey(os.urandom(KEY_LEN))


def kcv_of_secret(key_type: str, value: bytes) -> str:
    """4-hex-digit KCV of an application key.

    AES and DES-family keys use the usual "encrypt a zero block" check value;
    other secrets (generic, HMAC) have no cipher, so the first 2 bytes of
    SHA-256 of the value stand in.
    """
    kt = key_type.upper()
    value = bytes(value)
    if kt == "AES":
        if len(value) not in (16, 24, 32):
            raise ValueError(f"AES key must be 16, 24 or 32 bytes, not {len(value)}")
        return _kcv_hex(_ecb_encrypt(algorithms.AES(value), bytes(16)))
    if kt in ("DES", "DES2", "DES3"):
        if len(value) == 8:
            value = value * 3
        elif len(value) == 16:
            value = value + value[:8]
        elif len(value) != 24:
            raise ValueError(f"{kt} key must be 8, 16 or 24 bytes, not {len(value)}")
        return _kcv_hex(_ecb_encrypt(TripleDES(value), bytes(8)))
    return _kcv_hex(hashlib.sha256(value).digest())


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_private(path: str, data: bytes, *, exclusive: bool = False) -> bool:
    """Write ``data`` to ``path`` atomically with mode 0600.

    With ``exclusive`` an existing file is kept and False is returned, so two
    processes creating the device key at once agree on a single key.
    """
    directory = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            try:
                os.link(tmp, path)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EXDEV):
                    raise
                if os.path.exists(path):  # no hard links here: best effort
                    return False
                os.replace(tmp, path)
        else:
            os.replace(tmp, path)
        _fsync_dir(directory)
        return True
    finally:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass


class SecureMemory:
    """Emulated secure memory holding the FTK under a device key."""

    def __init__(self, state_dir: str) -> None:
        self.dir = os.path.join(os.fspath(state_dir), "secure")
        self.device_key_path = os.path.join(self.dir, "device.key")
        self.ftk_path = os.path.join(self.dir, "ftk.bin")
        self._lock = threading.Lock()
        self._device: MajorKey | None = None

    def _ensure_dir(self) -> None:
        if not os.path.isdir(self.dir):
            os.makedirs(self.dir, mode=0o700, exist_ok=True)
            os.chmod(self.dir, 0o700)

    def _read_device_key(self) -> MajorKey | None:
        try:
            with open(self.device_key_path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            return None
        try:
            return MajorKey(data)
        except ValueError:
            raise WrapError(f"device key file {self.device_key_path} is corrupt") from None

    def _device_key(self, create: bool) -> MajorKey | None:
        if self._device is None:
            self._ensure_dir()
            key = self._read_device_key()
            if key is None and create:
                _write_private(self.device_key_path, os.urandom(KEY_LEN), exclusive=True)
                key = self._read_device_key()
            self._device = key
        return self._device

    def store_ftk(self, ftk: MajorKey | None) -> None:
        """Persist ``ftk`` (or erase it when None)."""
        with self._lock:
            self._ensure_dir()
            if ftk is None:
                try:
                    os.unlink(self.ftk_path)
                except FileNotFoundError:
                    return
                _fsync_dir(self.dir)
                return
            device = self._device_key(create=True)
            assert device is not None
            _write_private(self.ftk_path, device.wrap(ftk.key_bytes(), b"FTK"))

    def load_ftk(self) -> MajorKey | None:
        """The stored FTK, None if none is loaded; WrapError if the file is corrupt."""
        with self._lock:
            try:
                with open(self.ftk_path, "rb") as fh:
                    blob = fh.read()
            except FileNotFoundError:
                return None
            device = self._device_key(create=False)
            if device is None:
                raise WrapError(
                    f"{self.ftk_path} exists but device key {self.device_key_path} is missing")
            try:
                return MajorKey(device.unwrap(blob, b"FTK"))
            except (WrapError, ValueError) as exc:
                raise WrapError(f"FTK file {self.ftk_path} is corrupt: {exc}") from None

    def store_blob(self, name: str, data: bytes) -> None:
        """Another secret the device keeps in secure memory (its factory TLS keys)."""
        with self._lock:
            self._ensure_dir()
            device = self._device_key(create=True)
            assert device is not None
            _write_private(os.path.join(self.dir, name + ".bin"), device.wrap(data, name.encode()))

    def load_blob(self, name: str) -> bytes | None:
        path = os.path.join(self.dir, name + ".bin")
        with self._lock:
            try:
                with open(path, "rb") as fh:
                    blob = fh.read()
            except FileNotFoundError:
                return None
            device = self._device_key(create=False)
            if device is None:
                raise WrapError(f"{path} exists but device key {self.device_key_path} is missing")
            try:
                return device.unwrap(blob, name.encode())
            except WrapError as exc:
                raise WrapError(f"{path} is corrupt: {exc}") from None
