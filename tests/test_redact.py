"""PII redaction (issue 11, item 8): e-mail addresses, phone numbers, payment cards (Luhn),
IBANs (checksum) and IP addresses are found offline and masked; look-alikes are left alone.
Recall and precision per kind on the synthetic corpus of tests/pii_corpus.py."""

from __future__ import annotations

import re

import pytest

import convoy
from convoy.observability import PII_KINDS, Redactor

from .pii_corpus import KINDS, samples, score


def test_recall_and_precision_per_kind_on_the_synthetic_corpus() -> None:
    corpus = samples(1500, seed=3)
    scores = score(Redactor(), corpus)
    assert set(scores) == set(PII_KINDS) == set(KINDS)
    for kind, s in scores.items():
        assert s.true > 200, kind  # every kind is well represented
        assert s.recall >= 0.95, (kind, s)
        assert s.precision >= 0.95, (kind, s)


@pytest.mark.parametrize(("text", "masked"), [
    ("write to Anna.Smith+orders@mail.example.co.uk today",
     "write to [EMAIL] today"),
    ("call +1 (415) 555-0132 or 020 7946 0958.", "call [PHONE] or [PHONE]."),
    ("card 4111 1111 1111 1111, exp 12/27", "card [CARD], exp 12/27"),
    ("amex 3782-822463-10005", "amex [CARD]"),
    ("IBAN: DE89 3704 0044 0532 0130 00 thanks", "IBAN: [IBAN] thanks"),
    ("gb82west12345698765432", "[IBAN]"),
    ("from 203.0.113.7:8080 and [2001:db8::1]:443", "from [IP]:8080 and [[IP]]:443"),
    ('{"ip": "::1", "phone": "+33 6 12 34 56 78"}', '{"ip": "[IP]", "phone": "[PHONE]"}'),
])
def test_personal_data_is_masked(text: str, masked: str) -> None:
    assert Redactor().redact(text) == masked


@pytest.mark.parametrize("text", [
    "order ORD-2026-48213 shipped on 2026-11-30 at 12:30:45",
    "4111 1111 1111 1112 fails its check digit",
    "DE88 3704 0044 0532 0130 00 has a wrong checksum",
    "version 3.12.1, build 10.0.19045.2965, EAN 4006381333931",
    "total $1,234.56 for 3 x 12 cm; unix time 1732950000; 48.8566, 2.3522",
    "agent triage, model sim:, tool lookup_customer, key 0/3/1",
    "order 2026-11-30-000123, ticket 2026-113-0042, batch 2026.11.30.0042",
])
def test_look_alikes_are_left_alone(text: str) -> None:
    assert Redactor().redact(text) == text


def test_kinds_mask_and_memo() -> None:
    r = Redactor(kinds=["email"], mask="<{kind}>", memo=2)
    assert r("a@example.com, +44 20 7946 0958") == "<EMAIL>, +44 20 7946 0958"
    for i in range(5):  # the memo stays bounded
        r(f"x{i}@example.com")
    assert len(r._memo) <= 2
    with pytest.raises(convoy.UserError, match="unknown kind 'name'"):
        Redactor(kinds=["name"])  # type: ignore[list-item]
    # a region phonenumbers does not know would find no national number, silently
    with pytest.raises(convoy.UserError, match="unknown phone region 'XX'"):
        Redactor(regions=["US", "XX"])
    assert Redactor(kinds=["email"], regions=["XX"])("a@b.co") == "[EMAIL]"  # no phones


def test_findings_say_what_and_where() -> None:
    text = "mail li@example.com from 10.0.0.1"
    found = Redactor().find(text)
    assert [(f.kind, text[f.start:f.end]) for f in found] == \
        [("email", "li@example.com"), ("ip", "10.0.0.1")]


@pytest.mark.parametrize("value", [{"phone": "4155552671"}, ["a@example.com"], 4155552671,
                                   b"a@example.com"])
def test_what_is_not_text_is_refused_in_one_clear_line(value: object) -> None:
    """A dict gave ``TypeError: unhashable type: 'dict'`` from deep inside; a number, an
    error of another kind."""
    with pytest.raises(TypeError, match=r"^Redactor takes text \(a str\), not "
                       f"{type(value).__name__}: redact a structure's strings one by one"):
        Redactor()(value)  # type: ignore[arg-type]


def test_a_str_subclass_is_redacted_as_plain_text_and_never_handed_back() -> None:
    """The memo handed a subclass instance it had cached back for a later plain string
    (and an object equal to a cached string got its redaction, where another raised)."""
    class Name(str):
        pass

    redact = Redactor()
    first = redact(Name("hello there"))
    assert type(first) is str and first == "hello there"
    assert type(redact("hello there")) is str
    assert redact(Name("mail a@example.com")) == "mail [EMAIL]"


def test_one_kind_or_region_given_as_a_string_is_that_one() -> None:
    """A new user's trial: ``Redactor(regions="GB")`` said ``unknown phone region 'G'``,
    and ``kinds="email"`` ``unknown kind 'e'`` (a string is a sequence of its letters): a
    string is the one kind or region it names."""
    r = Redactor(kinds="phone", regions="GB")
    assert r.kinds == frozenset({"phone"}) and r.regions == ("GB",)
    assert r("call 020 7946 0958 or mail a@example.com") == "call [PHONE] or mail a@example.com"
    with pytest.raises(convoy.UserError, match="unknown phone region 'GBR'"):
        Redactor(regions="GBR")


@pytest.mark.parametrize(("kw", "said"), [
    ({"mask": None}, "Redactor: mask must be text (such as '[{kind}]'), got None"),
    ({"memo": "x"}, "Redactor: memo must be a whole number >= 0, got 'x'"),
    ({"memo": -1}, "Redactor: memo must be a whole number >= 0, got -1"),
    ({"kinds": None}, "Redactor: kinds must be a list of kinds (email, phone, card, iban, "
                      "ip), got None"),
    ({"regions": None}, "Redactor: regions must be a list of ISO 3166 country codes, got "
                        "None"),
    ({"regions": ["US", None]}, "Redactor: regions must be a list of ISO 3166 country "
                                "codes, got ['US', None]"),
])
def test_settings_of_the_wrong_type_are_refused_when_it_is_made(kw: dict[str, object],
                                                                said: str) -> None:
    """A new user's trial: ``Redactor(mask=None)`` and ``memo="x"`` were taken, and every
    text redacted after raised (``AttributeError``, ``TypeError``: in a JSON log handler,
    every record); ``kinds=None``, ``regions=None`` raised a bare ``TypeError``. Each is
    refused in one line as the redactor is made."""
    with pytest.raises(convoy.UserError, match=re.escape(said)):
        Redactor(**kw)  # type: ignore[arg-type]
