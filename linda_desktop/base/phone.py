"""The phone number for "Link with phone number instead": checked and normalised in one place
(the QR window, `run --phone`, the service and the page all use it).

WhatsApp wants the number in international form, digits only, without ``+`` or ``00``
(wa-js ``conn.genLinkDeviceCodeForPhoneNumber("31612345678")``). E.164 allows at most 15 digits
with the country code; the shortest numbers in use, with their country code, have 8.
"""

from __future__ import annotations

import re

from linda_desktop.base.errors import LindaError

MIN_DIGITS, MAX_DIGITS = 8, 15
_SEPARATORS = re.compile(r"[\s\-./()\u00a0]")


class PhoneNumberError(LindaError, ValueError):
    """What is wrong with the number, in words for the owner (one sentence, the fix included)."""


def normalize_phone(text: str) -> str:
    """``"+31 6 1234 5678"`` → ``"31612345678"``; raises :class:`PhoneNumberError` with a clear
    sentence otherwise."""
    raw = _SEPARATORS.sub("", text or "")
    if not raw:
        raise PhoneNumberError("Type your phone number, starting with the country code.")
    if raw.startswith("+"):
        raw = raw[1:]
    elif raw.startswith("00"):
        raw = raw[2:]
    elif raw.startswith("0"):
        raise PhoneNumberError("Start with the country code (for example +31 for the Netherlands), "
                               "not with 0.")
    if not raw.isdigit() or not raw.isascii():
        raise PhoneNumberError("A phone number has only digits (spaces, dashes and a + in front are fine).")
    if raw.startswith("0"):
        raise PhoneNumberError("A country code never starts with 0.")
    if len(raw) < MIN_DIGITS:
        raise PhoneNumberError(f"That is {len(raw)} digits: too short for a number with its country code "
                               f"({MIN_DIGITS} to {MAX_DIGITS} digits).")
    if len(raw) > MAX_DIGITS:
        raise PhoneNumberError(f"That is {len(raw)} digits: too long for a phone number "
                               f"({MIN_DIGITS} to {MAX_DIGITS} digits with the country code).")
    return raw


def format_phone(digits: str) -> str:
    """For display: ``"31612345678"`` → ``"+31612345678"``. Grouping needs each country's
    numbering plan, and wrong groups would mislead, so the digits stay together."""
    return "+" + digits


def format_pairing_code(code: str) -> str:
    """``"abcdefgh"`` or ``"ABCD-EFGH"`` → ``"ABCD-EFGH"`` (two groups of four, as the phone shows)."""
    plain = re.sub(r"[^0-9A-Za-z]", "", code or "").upper()
    if len(plain) == 8:
        return f"{plain[:4]}-{plain[4:]}"
    return plain
