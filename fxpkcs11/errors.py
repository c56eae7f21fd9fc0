"""The provider's one error type: a CKR value with the reason it happened."""
from __future__ import annotations


class CKRError(Exception):
    __slots__ = ("rv", "text")

    def __init__(self, rv: int, text: str = "") -> None:
        super().__init__(text)
        self.rv = rv
        self.text = text
