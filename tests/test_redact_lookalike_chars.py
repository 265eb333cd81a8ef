"""PII redaction with characters that look like the ASCII a value is written in: text
pasted from a word processor or a phone carries Unicode dashes between digit groups
(``415–555–2671``, the no-break hyphen of ``555‑2671``), fullwidth forms typed on East
Asian keyboards (``４１１１ １１１１ …``, ``ａｄａ＠example.org``) and no-break or narrow
spaces between groups. Each hid the value from every pattern. They are read as the ASCII
they stand for, one character for one, so a value written with them is found and masked
as the same value written in ASCII would be, and text that is not personal data in ASCII
is not in look-alikes either."""

from __future__ import annotations

import pytest

from convoy.observability import Redactor

from .pii_corpus import samples

DASHES = ["\u2010", "\u2011", "\u2012", "\u2013", "\u2014", "\u2212", "\ufe63", "\uff0d"]
SPACES = ["\u00a0", "\u2007", "\u2009", "\u202f", "\u3000"]


def fullwidth(text: str) -> str:
    """``text`` with its printable ASCII (but the space) in fullwidth forms."""
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


@pytest.fixture(scope="module")
def redactor() -> Redactor:
    return Redactor()


@pytest.mark.parametrize("dash", DASHES)
@pytest.mark.parametrize("value,kind", [
    ("415-555-2671", "PHONE"), ("+1 415-555-2671", "PHONE"), ("020-7946-0958", "PHONE"),
    ("4539-1488-0343-6467", "CARD"), ("GB82-WEST-1234-5698-7654-32", "IBAN")])
def test_a_value_grouped_with_a_unicode_dash_is_masked(redactor: Redactor, dash: str,
                                                       value: str, kind: str) -> None:
    text = "call me at " + value.replace("-", dash) + " today"
    assert redactor.redact(text) == f"call me at [{kind}] today"


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("value,kind", [
    ("4539 1488 0343 6467", "CARD"), ("+44 20 7946 0958", "PHONE"),
    ("DE89 3704 0044 0532 0130 00", "IBAN")])
def test_a_value_grouped_with_a_unicode_space_is_masked(redactor: Redactor, space: str,
                                                        value: str, kind: str) -> None:
    text = "it is " + value.replace(" ", space) + "."
    assert redactor.redact(text) == f"it is [{kind}]."


@pytest.mark.parametrize("value,kind", [
    ("ada.lovelace@example.org", "EMAIL"), ("4539 1488 0343 6467", "CARD"),
    ("+44 20 7946 0958", "PHONE"), ("DE89 3704 0044 0532 0130 00", "IBAN"),
    ("192.168.1.10", "IP")])
def test_a_value_in_fullwidth_forms_is_masked(redactor: Redactor, value: str,
                                              kind: str) -> None:
    assert redactor.redact(f"value {fullwidth(value)} end") == f"value [{kind}] end"
    # (and half of it: a fullwidth @ in an ASCII address)
    if kind == "EMAIL":
        assert redactor.redact("mail ada\uff20example.org") == "mail [EMAIL]"


@pytest.mark.parametrize("text", ["2019–2023", "pages 12–34", "version 1.2.3–4",
                                  "ISBN 978‑3‑16‑148410‑0", "order №４５６７８",
                                  "１２:３０ on ２０２６‑１２‑０２", "total ＄１２３.４５",
                                  "4539 1488 0343 6468"])  # (a card failing Luhn)
def test_what_is_not_personal_data_in_ascii_is_not_in_look_alikes(redactor: Redactor,
                                                                    text: str) -> None:
    assert redactor.redact(text) == text


def test_the_corpus_in_look_alikes_is_found_as_in_ascii(redactor: Redactor) -> None:
    """Every sample of the synthetic corpus, its hyphens made en dashes and its spaces
    no-break ones: the same kinds are found at the same places."""
    for sample in samples(2000, seed=11):
        text = sample.text
        plain = [(f.kind, f.start, f.end) for f in redactor.find(text)]
        odd = text.replace("-", "\u2013").replace(" ", "\u00a0")
        assert [(f.kind, f.start, f.end) for f in redactor.find(odd)] == plain, text


#: The zeros of decimal digits of other scripts a customer may write a number in:
#: Arabic-Indic, Extended Arabic-Indic (Persian, Urdu), Devanagari, Bengali, Thai,
#: Myanmar, and the mathematical monospace digits of a styled paste.
SCRIPTS = [0x0660, 0x06F0, 0x0966, 0x09E6, 0x0E50, 0x1040, 0x1D7F6]


def in_script(text: str, zero: int) -> str:
    return "".join(chr(zero + int(c)) if "0" <= c <= "9" else c for c in text)


@pytest.mark.parametrize("zero", SCRIPTS, ids=hex)
@pytest.mark.parametrize("value,kind", [
    ("415-555-2671", "PHONE"), ("+44 20 7946 0958", "PHONE"),
    ("4539 1488 0343 6467", "CARD"), ("192.168.1.20", "IP"),
    ("DE89 3704 0044 0532 0130 00", "IBAN")])
def test_a_value_in_the_digits_of_another_script_is_masked(redactor: Redactor, zero: int,
                                                           value: str, kind: str) -> None:
    text = f"write to me at {in_script(value, zero)} please"
    assert redactor.redact(text) == f"write to me at [{kind}] please"


@pytest.mark.parametrize("zero", SCRIPTS, ids=hex)
def test_numbers_in_another_script_that_are_not_personal_data_are_kept(
        redactor: Redactor, zero: int) -> None:
    for text in ("order 12345 shipped", "4539 1488 0343 6468 (fails Luhn)", "version 1.2.3"):
        shown = in_script(text, zero)
        assert redactor.redact(shown) == shown
