"""Excrypt command and reply objects: what every transport carries to the dispatcher.

A command is `[AOCODE;TAGvalue;...;]` on the wire; in process it is this object with the
same two-letter tags. Values are typed Python values (str, int, bytes, lists, dicts);
the wire codec (a later transport) turns them into text.
"""
from __future__ import annotations

from typing import Any

STATUS_OK = "Y"
STATUS_FAIL = "N"

# Reply tags shared by every command.
TAG_COMMAND = "AO"
TAG_STATUS = "AN"
TAG_ERROR_TEXT = "BB"
TAG_REASON = "ZR"  # the PKCS #11 return value that best describes a failure


class Command:
    __slots__ = ("code", "fields")

    def __init__(self, code: str, fields: dict[str, Any] | None = None) -> None:
        self.code = code
        self.fields = fields if fields is not None else {}

    def __repr__(self) -> str:
        return f"Command({self.code!r}, tags={sorted(self.fields)})"


class Reply:
    __slots__ = ("code", "status", "fields")

    def __init__(self, code: str, status: str = STATUS_OK, fields: dict[str, Any] | None = None) -> None:
        self.code = code
        self.status = status
        self.fields = fields if fields is not None else {}

    @property
    def ok(self) -> bool:
        return self.status == STATUS_OK

    @property
    def error_text(self) -> str:
        return self.fields.get(TAG_ERROR_TEXT, "")

    @property
    def reason(self) -> int:
        return self.fields.get(TAG_REASON, 0x6)  # CKR_FUNCTION_FAILED

    def __repr__(self) -> str:
        return f"Reply({self.code!r}, {self.status!r}, tags={sorted(self.fields)})"


class DeviceError(Exception):
    """A refusal or failure inside the device: a reason (a CKR value) and a text for logs."""

    def __init__(self, reason: int, text: str) -> None:
        super().__init__(text)
        self.reason = reason
        self.text = text

    def reply(self, code: str) -> Reply:
        return Reply(code, STATUS_FAIL, {TAG_ERROR_TEXT: self.text, TAG_REASON: self.reason})


class Tag:
    """Field tags of the commands this device defines (published commands keep theirs)."""
    ECHO_DATA = "AG"
    FIRMWARE = "BC"
    SERIAL = "SN"
    SESSION = "SH"
    READ_WRITE = "RW"
    OBJECT = "OB"
    TEMPLATE = "TM"
    PUBLIC_TEMPLATE = "PT"
    PRIVATE_TEMPLATE = "VT"
    MECHANISM = "MC"
    MECH_PARAM = "MP"
    DATA = "DA"
    RESULT = "RS"
    SIGNATURE = "SG"
    ATTR_TYPES = "AT"
    ATTR_VALUES = "AV"
    USER = "UN"
    PASSWORD = "PW"
    USER_TYPE = "UT"
    CONTEXT = "CX"
    PHASE = "PH"
    LENGTH = "LN"
    OBJECTS = "OL"
    PUBLIC_OBJECT = "PB"
    PRIVATE_OBJECT = "PV"
    WRAPPED = "WK"
    WRAPPING_KEY = "KW"
    ROLE = "RL"
    TIME = "TI"
    MIN_PIN = "ML"
    MAX_PIN = "XL"
    FTK_KCV = "FV"
    LOGGED_IN = "LI"
    IDENTITY_EXISTS = "IE"
    APPLICATION = "AI"
    ADMIN_METHOD = "MT"
    ADMIN_ARGS = "AA"
    ADMIN_RESULT = "AR"
    ADMIN_RULE = "AL"
    # token, PIN and object functions (C_InitToken, C_InitPIN, C_SetPIN, C_GetObjectSize)
    NEW_PASSWORD = "NP"
    SO_USER = "SU"
    TOKEN_LABEL = "TL"
    USER_FAILURES = "UF"
    SO_FAILURES = "SF"
    MAX_FAILURES = "MF"
    USER_PIN_SET = "UP"
    SO_EXISTS = "SE"
    OBJECT_SIZE = "OZ"
    DELETED = "KD"
    FRAMING = "FM"  # in APPN/APPJ replies: the server reads binary envelopes (vhsm/wire.py)


class Phase:
    INIT = "I"
    UPDATE = "U"
    FINAL = "F"
    ABORT = "A"
