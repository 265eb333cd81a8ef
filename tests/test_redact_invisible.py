"""PII redaction with invisible characters in the value: a zero-width space, joiner or
non-joiner, a word joiner, a byte order mark, a soft hyphen (any format character, Unicode
category Cf) inside an e-mail address, a card, phone number, IBAN or IP address hid it
from every pattern, and the value reached telemetry as it was. They are read as nothing,
in text as it is and in escaped text, and the whole value, invisible characters included,
is masked. Where such a character only separates a value from a word, the value is found
as before; between digits that are not personal data it makes none."""

from __future__ import annotations

import json
import sys
import unicodedata

import pytest

from convoy.observability import Redactor

ZW = "\u200b"
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e",
             "\u2062", "\u202e", "\U000e0041"]


def hidden(kind: str, z: str) -> list[str]:
    return {
        "email": [f"ada{z}@example.org", f"ada@exa{z}mple.org", f"a{z}da.lovelace@example.org",
                  f"ada@example{z}.org", f"ada%40{z}example.org", f"a{z}d{z}a@{z}example.org"],
        "card": [f"4539{z}148803436467", f"4539 1488{z} 0343 6467", f"453914880343646{z}7",
                 f"4{z}5{z}3{z}9 1488 0343 6467"],
        "phone": [f"+44 20 79{z}46 0958", f"+4420794{z}60958", f"+{z}44 20 7946 0958"],
        "iban": [f"DE89 3704 0044 05{z}32 0130 00", f"DE8937040044053{z}2013000",
                 f"D{z}E89370400440532013000"],
        "ip": [f"10.0.{z}0.1", f"192.168{z}.1.10", f"2001:db8::{z}1", f"fe80{z}::1"],
    }[kind]


CASES = [(kind, z, value) for z in INVISIBLE
         for kind in ("email", "card", "phone", "iban", "ip") for value in hidden(kind, z)]


@pytest.mark.parametrize(("kind", "z", "value"), CASES)
def test_an_invisible_character_inside_a_value_does_not_hide_it(kind: str, z: str,
                                                                value: str) -> None:
    redact = Redactor(memo=0)
    assert redact(f"write {value} now") == f"write [{kind.upper()}] now"
    found = redact.find(f"{value}")
    assert [(f.kind, f.value) for f in found] == [(kind, value)]  # all of it, z too


@pytest.mark.parametrize(("kind", "value"), [
    (k, v) for z in (ZW, "\u00ad", "\ufeff", "\U000e0041")
    for k in ("email", "card", "phone", "iban", "ip") for v in hidden(k, z)])
def test_escaped_invisible_characters_are_read_as_nothing(kind: str, value: str) -> None:
    mask = f"[{kind.upper()}]"
    redact = Redactor(memo=0)
    # json.dumps writes U+200B as the six characters \u200b (a tag character, U+E0041, as
    # the surrogate pair \udb40\udc41), repr as \u200b, \xad, \U000e0041
    assert redact(json.dumps({"v": value})) == json.dumps({"v": mask})
    assert redact(repr(value)) == repr(mask)
    assert redact(json.dumps(json.dumps({"v": value}))) == json.dumps(json.dumps({"v": mask}))
    assert redact(json.dumps({"v": value}, ensure_ascii=False)) == json.dumps({"v": mask})


def test_invisible_characters_around_a_value_are_left_as_they_are() -> None:
    redact = Redactor(memo=0)
    assert redact(f"{ZW}ada@example.org{ZW}") == f"{ZW}[EMAIL]{ZW}"
    assert redact(f"card {ZW}4539 1488 0343 6467{ZW}.") == f"card {ZW}[CARD]{ZW}."
    assert redact("\ufeff10.0.0.1\n") == "\ufeff[IP]\n"


@pytest.mark.parametrize(("text", "masked"), [
    # an invisible character between a word and a value: found as without it, not glued
    (f"IBAN{ZW}DE89370400440532013000", f"IBAN{ZW}[IBAN]"),
    (f"from{ZW}10.0.0.1", f"from{ZW}[IP]"),
    (f"tel{ZW}+44 20 7946 0958", f"tel{ZW}[PHONE]"),
    (f"card{ZW}4539148803436467", f"card{ZW}[CARD]"),
    # the word and the address read as one longer address: all of it is masked
    (f"mail{ZW}ada@example.org", "[EMAIL]"),
    (f"ada@example.org{ZW}, bob@example.org", f"[EMAIL]{ZW}, [EMAIL]"),
])
def test_an_invisible_separator_loses_nothing_found_without_it(text: str,
                                                               masked: str) -> None:
    assert Redactor(memo=0)(text) == masked


@pytest.mark.parametrize("text", [
    f"order 1234{ZW}5678", f"years 2026{ZW}2027{ZW}2028", f"4539{ZW}1488{ZW}0343{ZW}6468",
    f"DE88{ZW}3704{ZW}0044{ZW}0532{ZW}0130{ZW}00", f"v1{ZW}.2.3", f"ISBN 0-306-{ZW}40615-2",
    f"ada{ZW} at example dot org", f"{ZW}@ada", f"2026-{ZW}11-30 12:{ZW}30", f"{ZW}" * 50,
    f"sum 1{ZW}234.56{ZW} EUR", f"unix 17329{ZW}50000",
])
def test_invisible_characters_do_not_make_personal_data(text: str) -> None:
    assert Redactor(memo=0)(text) == text


@pytest.mark.parametrize("text", [
    # read as it is, each would leave part of a look-alike looking like a value
    f"ISBN 0-3{ZW}06-40615-2", "see 978-\ufeff0-306-40615-7", f"IS{ZW}BN 0-306-40615-2",
    f"years 2020 2021 202{ZW}2 2023", "case 20\u00ad26-382342", f"on 2027-03-0{ZW}7",
    f"git@github.com:or{ZW}g/repo.git", json.dumps({"r": f"ISBN-1{ZW}3 978-2-423-02172-5"}),
    # digits joined by one are one number, and a card glued to more digits is not one
    f"ref 4539148803436467{ZW}2", f"ref 9{ZW}4539148803436467",
])
def test_an_invisible_character_in_a_look_alike_leaves_no_part_of_it(text: str) -> None:
    assert Redactor(memo=0)(text) == text


def test_digits_joined_by_an_invisible_character_are_a_card_when_they_are_one() -> None:
    # what a reader sees is 4539148803436467: a Luhn-valid Visa number
    assert Redactor(memo=0)(f"ref 45391488{ZW}03436467 ok") == "ref [CARD] ok"


@pytest.mark.parametrize("hostile", [
    ZW * 100_000, (f"1{ZW}" * 50_000), (f"a{ZW}@" * 33_000), (f"4{ZW}" * 50_000),
    ("\\u200b1" * 16_000), (f"1.{ZW}" * 50_000),
])
def test_hostile_invisible_input_is_bounded_work(hostile: str) -> None:
    found = Redactor(memo=0).find(hostile)
    assert all(0 <= f.start < f.end <= len(hostile) for f in found)


def test_every_format_character_is_read_as_nothing() -> None:
    # every character of category Cf this Python's Unicode database knows
    cf = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"]
    assert len(cf) > 150
    redact = Redactor(memo=0, kinds=["card"])
    missed = [f"U+{ord(z):04X}" for z in cf
              if redact(f"card 4539{z}1488 0343 6467") != "card [CARD]"]
    assert missed == []
