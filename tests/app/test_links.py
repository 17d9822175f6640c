"""pages/lab/links.py: every number in a shared link goes through one tolerant parser."""

import pytest

from pages.lab import links

# Values from the hardening run that crashed pages: inf, 1e309, a superscript digit, 5,000 digits.
HOSTILE = ["inf", "-inf", "nan", "1e309", "²", "٣", "9" * 5000, "", " ", "0x1f", "1_000", "1e", "--1", "7 7",
           "１２", None, "1e-400e", "½"]


@pytest.mark.parametrize("text", HOSTILE)
def test_hostile_values_are_none_not_exceptions(text):
    assert links.parse_int(text) is None
    assert links.parse_float(text) is None


@pytest.mark.parametrize("text,want", [("7", 7), ("+7", 7), ("-3", -3), (" 12 ", 12), ("7.0", 7), ("1e2", 100)])
def test_whole_numbers(text, want):
    assert links.parse_int(text) == want


def test_bounds_and_fractions():
    assert links.parse_int("7.5") is None
    assert links.parse_int("500", 0, 499) is None and links.parse_int("499", 0, 499) == 499
    assert links.parse_float("0.25", 0, 1) == 0.25 and links.parse_float("1.5", 0, 1) is None
    assert links.parse_float("-1e-3") == -0.001


def test_flags():
    assert links.parse_flag("1") and links.parse_flag("True") and not links.parse_flag("0")
    assert not links.parse_flag("²")
