"""The phone number for a pairing code: checked and normalised before anything is asked of WhatsApp."""

from __future__ import annotations

import pytest

from linda_desktop.base.phone import PhoneNumberError, format_pairing_code, format_phone, normalize_phone


@pytest.mark.parametrize("typed, digits", [
    ("+31 6 1234 5678", "31612345678"),
    ("0031 6 1234 5678", "31612345678"),
    ("+1 (555) 000-1234", "15550001234"),
    ("+49.151.23456789", "4915123456789"),
    ("31612345678", "31612345678"),
    ("+35 12 345 67", "351234567"),          # 9 digits
    ("+123456789012345", "123456789012345"),  # 15 digits: E.164's longest
])
def test_numbers_are_normalised_to_the_digits_whatsapp_wants(typed, digits):
    assert normalize_phone(typed) == digits


@pytest.mark.parametrize("typed, words", [
    ("", "Type your phone number, starting with the country code."),
    ("   ", "Type your phone number, starting with the country code."),
    ("06 1234 5678", "Start with the country code (for example +31 for the Netherlands), not with 0."),
    ("+0 612345678", "A country code never starts with 0."),
    ("+31 6 12a4 5678", "A phone number has only digits (spaces, dashes and a + in front are fine)."),
    ("+31 6 １２３４ 5678", "A phone number has only digits (spaces, dashes and a + in front are fine)."),
    ("++31612345678", "A phone number has only digits (spaces, dashes and a + in front are fine)."),
    ("+3161234", "That is 7 digits: too short for a number with its country code (8 to 15 digits)."),
    ("+1234567890123456", "That is 16 digits: too long for a phone number (8 to 15 digits with the country code)."),
])
def test_bad_numbers_get_one_clear_sentence(typed, words):
    with pytest.raises(PhoneNumberError) as caught:
        normalize_phone(typed)
    assert str(caught.value) == words


def test_display_forms():
    assert format_phone("31612345678") == "+31612345678"
    assert format_pairing_code("abcd efgh") == "ABCD-EFGH"
    assert format_pairing_code("ABCD-EFGH") == "ABCD-EFGH"
    assert format_pairing_code("K7QM2XWP") == "K7QM-2XWP"
