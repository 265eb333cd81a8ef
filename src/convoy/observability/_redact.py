"""Personal data found and masked offline, before text leaves for logs, span attributes and
metric labels.

Kinds: ``email``, ``phone`` (validated by ``phonenumbers``, Google's libphonenumber
metadata: a number in international form anywhere, a national number of one of
``regions``), ``card`` (13–19 digits with a known issuer prefix, or grouped 4-4-4-4 as
cards are printed, Luhn-checked by ``python-stdnum``), ``iban`` (country format and mod-97
checksum, ``python-stdnum``) and ``ip`` (IPv4 and IPv6, checked by :mod:`ipaddress`).
Candidates are found by regular expressions and kept only if they validate, so an order
number, a date or a version is left alone; cards, IBANs, e-mail addresses and IP addresses
are masked before phone numbers are looked for, so their digits are never taken for a phone
number. Escaped text (JSON, ``repr``; a URL's percent-escapes of ASCII, ``%2B``, ``%20``,
``%2540``; HTML's character references, ``&#64;``) is searched as what its escapes stand
for, and masked where they were. Groups of digits may be split by tabs and newlines (a
phone number's only after a word that says it is one), a card's by ``_``, ``/``, ``+`` or
`` - `` too; a card printed with spaces or dashes and an IBAN may be wrapped at a line
break (``4539 1488\\n0343 6467``, ``GB82 WEST 1234\\n5698 7654 32``); an IBAN's country
may stand apart from its check digits; a phone number may be
glued to its cue (``tel.4155552673``, ``tel=020+7946+0958``: a form's ``+`` is a space) or
have an extension glued on (``415-555-2672x12``). Characters that stand for ASCII
(fullwidth forms, Unicode dashes and spaces between digit groups:
``415\\u2013555\\u20132671``, ``\\uff14\\uff15\\uff13\\uff19``; the decimal digits of other scripts,
Arabic-Indic ``\\u0664\\u0661\\u0665``) are read as it.
Text with invisible characters in it (a zero-width space, a soft hyphen, any format
character) is searched with them and as if they were not there, so that
``ada\\u200b@example.org`` is found, and masked whole. Values glued into ids by ``-``,
``/``, ``.`` or ``_`` are found (``ticket-+14155552671``, ``2026-4111111111111111``,
``a-4111111111111111-203.0.113.45``), except a national phone number, which an id of
digits cannot be told from (``ticket-4155552671``).

Text with no digit and no ``@`` is returned as it is without any other work, and a
:class:`Redactor` remembers the strings it saw last (agent, model and tool names, session
ids), so redacting what telemetry repeats costs a dictionary lookup.
"""

from __future__ import annotations

import bisect
import ipaddress
import itertools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, get_args

from convoy._errors import UserError
from convoy.observability._unescape import invisible_at, unescape, visible

PiiKind = Literal["email", "phone", "card", "iban", "ip"]
#: Every kind a :class:`Redactor` finds, in the order it looks for them.
PII_KINDS: tuple[PiiKind, ...] = get_args(PiiKind)

_MAYBE = re.compile(r"[\d@\uff20\ufe6b]|&commat;")  # (``\d``: the decimal digits of every script)
# Characters that stand for the ASCII a value is written in, read as it, one for one (so
# a finding's place is the same in both): the fullwidth forms of ASCII (digits, letters,
# the at sign), Unicode's dashes and minus signs between digit groups (an en dash, the
# no-break hyphen of word processors), the spaces that separate groups (no-break, figure,
# thin, narrow no-break, ideographic) and the small commercial at.
# The decimal digits of the other scripts (Arabic-Indic, Persian, Devanagari, Bengali,
# Thai, ...: every Unicode ``Nd`` character) as the ASCII digit of the same value, looked
# up the first time one is met (the table remembers every character it has seen).


class _Lookalike(dict[int, int]):
    def __missing__(self, char: int) -> int:
        digit = unicodedata.decimal(chr(char), None)
        found = self[char] = char if digit is None else ord("0") + digit
        return found


_LOOKALIKE = _Lookalike({
    **{c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)},
    **dict.fromkeys((0x2010, 0x2011, 0x2012, 0x2013, 0x2014, 0x2015, 0x2212, 0xFE58,
                     0xFE63), ord("-")),
    **dict.fromkeys((0x00A0, *range(0x2000, 0x200B), 0x202F, 0x205F, 0x3000), ord(" ")),
    **dict.fromkeys((0x0085, 0x2028, 0x2029), ord("\n")),  # NEL, line and paragraph separators
    0xFE6B: ord("@")})
# One word of letters, digits and ``_`` (an id, a name): personal data in it can only be
# the whole of it (an IBAN, a phone number written without spaces) or a card number glued
# to letters, so a run of at least 12 digits.
_TOKEN = re.compile(r"\w+")
_LONG_DIGITS = re.compile(r"\d{12}|\d{4}(?:_\d{4}){2}")  # (or a card grouped by "_")
# Spaces that are not " " but separate groups of digits as well: no-break, thin, narrow
# no-break (what word processors and locales put between the groups of a number).
_SP = "\u00a0\u2009\u202f"
# A line break as values are wrapped at one: LF, CRLF or a bare CR, with the spaces or tabs
# that end the line and indent the next, and an e-mail's quote marks (``> ``) before it.
# Not a blank line: across a paragraph break, a number of the paragraph before made a card
# of the next paragraph's first groups, or a table of it (a review of stop 45).
_BREAK = r"[ \t]*(?:\r\n?|\n)[ \t]*(?:>[ \t]*)*"
# Every repetition below is bounded, so the work at each start position is bounded and a
# hostile text (100 KB of digits, spaces and @) costs linear time, not backtracking.
_EMAIL = re.compile(
    # a local part (apostrophes allowed: o'connor) or a quoted one ("john smith"), then
    # "@" or its URL encoding
    r"(?:(?<![\w.%+-])(?:[\w%+-][\w.%+'-]{0,62})?\w|(?<!\w)\"[^\"\\\r\n]{1,64}\")"
    r"(?:@|%40)"
    # a domain name, or an address literal ([192.0.2.1], [IPv6:2001:db8::1])
    r"(?:(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.){1,16}[^\W\d_]{2,63}"
    r"|\[(?:IPv6:)?[0-9A-Fa-f.:]{2,45}\])"
    # not the start of a longer name; not a git remote's host (git@github.com:org/repo;
    # not a task id's session either: ann@example.com:0/2, digits after the colon)
    # ("_" may follow, as in an id: user_ann@example.com_3; and "." with digits or a
    # separator, which no domain name's next label is: ann@example.com.3)
    r"(?![^\W_]|@|\.[^\W\d_]|:(?!\d)[\w~.-]{0,100}(?:/|\.git\b))")
# 13-19 digits, in groups separated by a dash, a dot, one or two spaces of any width, a tab,
# a newline, "_", "/", "+" (a form's space) or " - "; letters may touch it (card4539...,
# pan_4539...), more digits may not.
_CARD = re.compile(rf"(?<![\d+])(?<!\d[-._/+])\d(?:(?:[ {_SP}]{{1,2}}|[-._/+\t]|{_BREAK}| - )?"
                   r"\d){12,18}(?!\d|[-._/+]\d)")
_CARD_GROUP = re.compile(r"\d+")
# Digit groups joined by separators (2026-4111..., 4111...-203.0.113.45, a_4111..._3): where
# a card glued into an id is looked for when _CARD leaves it. (One pass, no backtracking:
# digits and separators do not overlap.)
_DIGIT_RUN = re.compile(rf"\d+(?:(?:[ {_SP}]{{1,2}}|[-./_:])\d+)*")
_MAYBE_CARD = re.compile(rf"\d{{13}}|\d{{4}}([ {_SP}]{{1,2}}|[-.])\d{{4,6}}\1\d{{2}}")
# How cards are printed: the widths of their groups, and what separates them.
_PRINTED = ([4, 4, 4, 4], [4, 4, 4, 4, 3], [4, 4, 4, 2], [4, 4, 4, 3], [4, 6, 5], [4, 6, 4])
_CARD_SEPS = frozenset({" ", "  ", "-", ".", *_SP, *(c + c for c in _SP)})
# Separators that part numbers in tables, sums and paths as well: digits they join are a
# card only grouped as cards are printed (_PRINTED).
_IBAN = re.compile(rf"(?<![A-Za-z0-9])[A-Za-z]{{2}}[ {_SP}.\t-]?\d{{2}}"
                   rf"(?:[ {_SP}.\t-]?[A-Za-z0-9]){{11,32}}(?![A-Za-z0-9])")
# A value wrapped at a line break (a model's formatted output, a terminal's width): its
# parts on two or more lines, each line's groups joined as the value's are. An IBAN so
# wrapped (GB82 WEST 1234\n5698 7654 32) counts only if it checks out; a card's groups
# (4539 1488\n0343 6467, 4539-1488-0343\n6467) are one run of digit groups joined by line
# breaks and one separator cards are printed with (one or two spaces of any width, "-",
# " - "; not a dot, which a column of decimal numbers has, nor a tab, which a table has).
_IBAN_WRAPPED = re.compile(rf"(?<![A-Za-z0-9])[A-Za-z]{{2}}[ {_SP}.\t-]?\d{{2}}"
                           rf"(?:(?:[ {_SP}.\t-]|{_BREAK})?[A-Za-z0-9]){{11,32}}")
_WRAPPED_RUN = re.compile(rf"\d+(?:(?:[ {_SP}]{{1,2}}|-| - |{_BREAK})\d+)*")
_ON_A_LINE = re.compile(rf"\d(?:[ {_SP}]{{1,2}}|-| - )\d")  # (a separator that is no line break)
# (an "_" joins it to an id, user_10.0.0.1, as "-" and "/" do, and so does a dot after a
# word, s.10.0.0.1; a letter or a digit would make it part of a longer word, a dot after a
# digit part of a longer version, 1.2.3.4.5)
_IPV4 = re.compile(r"(?<![^\W_])(?<![\d.]\.)(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}"
                   r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?![^\W_]|\.\d)")
# (after or before "_" or "." as well, in an id: ticket_fe80::1_3, k.2001:db8::1.done)
# Not inside a longer run of colon-separated groups, but after a word and a colon
# (ip:2001:db8::1, peer:, ipv6:, src:): a word whose last four characters hold one that is
# no hex digit, or that is longer than four characters (added:, decade:, node12345:; but
# not a number, a timestamp's: 20261205:10:30::, see _ipv6_span), is no group of an
# address.
_IPV6 = re.compile(r"(?<![^\W_])(?:(?<!:)|(?<=[G-Zg-z_]:)|(?<=[G-Zg-z_][0-9A-Fa-f]:)|"
                   r"(?<=[G-Zg-z_][0-9A-Fa-f]{2}:)|(?<=[G-Zg-z_][0-9A-Fa-f]{3}:)|"
                   r"(?<=\w{5}:))"
                   r"(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|"
                   r"(?:\d{1,3}\.){3}\d{1,3})?(?![^\W_]|:|\.\d)")
# A phone number: an optional international prefix, an optional area code in brackets,
# then 6 to 15 digits in groups separated by one space, dot, dash or slash; not a part of
# a longer run of digit groups (2026 2027 2028 2029, a card of an unknown issuer).
_PHONE = re.compile(
    rf"(?<![\w+@/.-])(?:\+\d{{1,3}}(?:[ {_SP}]{{1,2}}|[.-])?|"
    rf"(?<!\d[ {_SP}])(?:00\d{{1,3}}[ {_SP}.-]?)?)"
    rf"(?:\(\d{{1,5}}\)(?:[ {_SP}]{{1,2}}|[.-])?)?\d(?:(?:[ {_SP}./\t-]|\r?\n)?\d){{5,14}}"
    # (an extension may follow: 415-555-2672x12)
    rf"(?!(?!x\d{{1,5}}(?!\w))[\w@]|[.-]\d|[ {_SP}\t\n]\d)")
# A number in international form whose groups are two spaces apart (+44  20  7946  0958):
# only after its "+" (two spaces between digit groups are a table's columns otherwise).
_PHONE_SPACED = re.compile(
    rf"(?<![\w+@/.-])(?:\+|(?<!\d[ {_SP}])00)\d{{1,4}}"
    rf"(?:[ {_SP}]{{1,2}}\(\d{{1,5}}\)\d{{0,8}})?(?:[ {_SP}]{{1,2}}\d{{1,8}}){{1,6}}"
    rf"(?![\w@]|[ {_SP}]{{1,2}}\d)")
# The same after a cue glued to it (tel.4155552673, tel=020+7946+0958, a form's "+" for a
# space), where _PHONE's look-behind refuses a dot or a word: what follows the cue.
_CUED = re.compile(r"(?i)(?<![^\W_])(?:(?:tel|phone|ph|mob|mobile|cell|fax)[.:#=]|wa\.me/)")
# A national number right after a number and a space (suite 300 (415) 555-2671, room 12
# 415-555-2671), which _PHONE leaves (a run of digit groups, 2026 2027 2028): written so
# that it stands apart from the number before, its area code in brackets, or its groups
# joined by one dash or dot throughout.
_PHONE_AFTER_DIGITS = re.compile(
    rf"(?<=\d[ {_SP}])(?:\(\d{{1,5}}\)(?:[ {_SP}]|[.-])?\d{{2,5}}(?:[ {_SP}.-]\d{{2,5}}){{1,3}}"
    rf"|\d{{2,5}}([.-])\d{{2,5}}(?:\1\d{{2,5}}){{1,3}})(?![\w@]|[.-]\d|[ {_SP}]\d)")
_PHONE_AFTER_CUE = re.compile(
    rf"(?:\+\d{{1,3}}[ {_SP}.-]?)?(?:\(\d{{1,5}}\)[ {_SP}.-]?)?"
    rf"\d(?:[ {_SP}./+-]?\d){{5,14}}(?!(?!x\d{{1,5}}(?!\w))[\w@]|[.+-]\d|[ {_SP}]\d)")
# A number in international form glued into an id (ticket-+14155552671, user_+44...,
# a.+1..., ticket+1...): after a separator or a letter, which _PHONE does not look after,
# the "+" says what it is. Its digit groups as far as they go; the number is the longest
# run of whole groups from the start that is a valid number (what follows may be more of
# the id: s-+14155552671-203.0.113.45).
_PHONE_GLUED = re.compile(rf"(?<![\d+@])\+\d(?:[ {_SP}./-]?\d){{6,16}}")
_GROUP_END = re.compile(r"\d(?!\d)")
_GLUED_TRIES = 4
_SEPARATORS = re.compile(r"[^0-9A-Za-z]")
_SPACES = re.compile(f"(?:[ {_SP}\t]|\r?\n)+")
_TWO_SPACES = re.compile(f"\\d[ {_SP}]{{2}}\\d")  # (between digit groups)
#: Regions with a trunk prefix "0" whose numbers are often written without it (mobiles).
_TRUNK_OPTIONAL = frozenset({"IN"})
# Words that say the digits after them are a phone number.
_NAMES_A_PHONE = r"\b(?:phone|tel|telephone|call|mobile|cell|sms|whatsapp|fax|reach|ph|mob)\b"
_NUMBER_WORDS = r"number|no|nr|num"
# (a few short words may come between: "call me at", "reach us on")
_BETWEEN = r"(?:\W{1,4}(?:me|us|him|her|them|at|on|via|his|my%s)\b){0,3}"
_PHONE_CUE = re.compile(rf"(?i)(?:{_NAMES_A_PHONE}{_BETWEEN % ''}|\b(?:contact|{_NUMBER_WORDS})\b)"
                        r"\W{0,4}$|wa\.me/$")
# Of those, the words that name a phone (not "number", "no", "contact": an order's, an
# invoice's): after one, digits are read in every region (see Redactor._is_phone).
_STRONG_CUE = re.compile(rf"(?i){_NAMES_A_PHONE}{_BETWEEN % ('|' + _NUMBER_WORDS)}"
                         r"\W{0,4}$|wa\.me/$")
# Words that say they are not: a book or serial number (ISBN 0-306-40615-2, ISSN 0317-8471).
_NOT_PHONE_CUE = re.compile(r"(?i)\b(?:isbn|issn|ismn|ean|upc|gtin|doi)(?:-?1[03])?\W{0,3}$")
# An ISBN-13 written with its hyphens (978-0-306-40615-7), cue or not.
_ISBN13 = re.compile(r"97[89]-\d{1,5}-\d{1,7}-\d{1,7}-\d")
# Years one after another (2026 2027 2028).
_YEARS = re.compile(rf"(?:(?:19|20)\d\d[ {_SP},/-]{{1,2}})+(?:19|20)\d\d")
# What a date looks like (2026-11-30, 30/11/2026, 30.11.2026), or a year and a number
# (2026-402021): never a phone number.
_DATE = re.compile(r"\d{1,4}([./-])\d{1,2}\1\d{2,4}(?:[ T]\d{1,2})?|(?:19|20)\d\d[./-]\d{5,}")
# A date (or a year and a day of the year) that more digits follow: an order, ticket or
# batch number built on one (2026-11-30-000123, 2026.11.30.0042, 2026-113-0042).
_DATED = re.compile(r"(?:19|20)\d\d([./-])(?:(?:0?[1-9]|1[0-2])\1(?:0?[1-9]|[12]\d|3[01])"
                    r"|[0-3]\d\d)[./-]\d")
# A decimal number (72.03665): one dot between two runs of digits.
_DECIMAL = re.compile(r"\d+\.\d+")
# A hexadecimal word (a hash, a key): digits in it are not a card glued to letters.
_HEX = re.compile(r"[0-9A-Fa-f]*")

# Issuer prefixes (IIN ranges) of the card brands in circulation and their lengths: Visa,
# Mastercard, American Express, Discover, JCB, Diners Club, UnionPay, Maestro, Mir, Elo,
# RuPay, Troy, Verve, Dankort, InterPayment. Ranges may overlap (Elo's 4011 78 is Visa's 4).
_ANY = (12, 13, 14, 15, 16, 17, 18, 19)
_CARD_PREFIXES: tuple[tuple[int, int, tuple[int, ...]], ...] = (
    (4, 4, (16, 19)),  # (13-digit Visa numbers are no longer issued; EAN-13 codes are)
    (51, 55, (16,)), (2221, 2720, (16,)),
    (34, 34, (15,)), (37, 37, (15,)),
    (6011, 6011, (16, 19)), (644, 649, (16, 19)), (65, 65, (16, 19)),
    (3528, 3589, (16, 19)),
    (300, 305, (14, 16, 19)), (36, 36, (14, 16, 19)), (38, 39, (16, 19)),
    (62, 62, (16, 17, 18, 19)), (81, 82, (16, 17, 18, 19)),  # UnionPay, RuPay
    (50, 50, _ANY), (56, 58, _ANY), (67, 67, _ANY),  # Maestro, Elo, RuPay 508, Verve
    (6304, 6304, _ANY), (6390, 6390, _ANY),  # Maestro
    (636, 636, (16, 17, 18, 19)),  # InterPayment, Elo 636297 / 636368
    (60, 60, (16, 19)),  # RuPay
    (2200, 2204, (16, 17, 18, 19)),  # Mir
    (9792, 9792, (16,)),  # Troy
)


@dataclass(slots=True, frozen=True, kw_only=True)
class Found:
    """One piece of personal data in a text: its kind and where it is (``text[start:end]``)."""

    kind: PiiKind
    start: int
    end: int
    value: str


def _issuers_by_length() -> dict[int, tuple[tuple[int, frozenset[str]], ...]]:
    """:data:`_CARD_PREFIXES` by card length: each prefix width with the prefixes of it."""
    table: dict[int, dict[int, set[str]]] = {}
    for lo, hi, lengths in _CARD_PREFIXES:
        width = len(str(lo))
        for n in lengths:
            table.setdefault(n, {}).setdefault(width, set()).update(
                str(p) for p in range(lo, hi + 1))
    return {n: tuple((w, frozenset(p)) for w, p in sorted(by.items()))
            for n, by in table.items()}


_ISSUERS = _issuers_by_length()


def _card_issuer_ok(digits: str) -> bool:
    """Whether ``digits`` (ASCII) have a known issuer's prefix and a length it issues."""
    return any(digits[:width] in prefixes for width, prefixes in _ISSUERS.get(len(digits), ()))


class Redactor:
    """Finds personal data in text and masks it as ``[EMAIL]``, ``[PHONE]``, ``[CARD]``,
    ``[IBAN]`` or ``[IP]`` (``mask="{kind}"`` decides the form).

    Args:
        kinds: what to look for (default: every kind, :data:`PII_KINDS`); a string is
            one kind.
        regions: ISO country codes whose national phone formats are recognised besides
            the international ``+CC ...`` / ``00CC ...`` form, tried in order; a string
            is one region.
        mask: what replaces a finding; ``{kind}`` is its kind in capitals.
        memo: how many distinct strings to remember the answer for (0: none).
    """

    def __init__(self, *, kinds: Iterable[PiiKind] | PiiKind = PII_KINDS,
                 regions: Sequence[str] = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "IN"),
                 mask: str = "[{kind}]", memo: int = 4096) -> None:
        # (a string is the one kind or region it names, not a sequence of its letters)
        if kinds is None:
            raise UserError(f"Redactor: kinds must be a list of kinds "
                            f"({', '.join(PII_KINDS)}), got None")
        chosen = (kinds,) if isinstance(kinds, str) else tuple(kinds)
        regions = (regions,) if isinstance(regions, str) else regions
        if regions is None or not all(isinstance(r, str) for r in regions):
            raise UserError(f"Redactor: regions must be a list of ISO 3166 country codes, "
                            f"got {regions!r:.80}")
        if not isinstance(mask, str):  # (else each text redacted would raise)
            raise UserError(f"Redactor: mask must be text (such as '[{{kind}}]'), got "
                            f"{mask!r:.80}")
        if type(memo) is not int or memo < 0:
            raise UserError(f"Redactor: memo must be a whole number >= 0, got {memo!r:.80}")
        unknown = [k for k in chosen if k not in PII_KINDS]
        if unknown:
            raise UserError(f"Redactor: unknown kind {unknown[0]!r}; kinds: "
                            f"{', '.join(PII_KINDS)}")
        self.kinds: frozenset[PiiKind] = frozenset(chosen)
        self.regions = tuple(r.upper() for r in regions)
        self.mask = mask
        self._memo: dict[str, str] = {}
        self._memo_size = memo
        self._trunk_zero: dict[str, str] = {}  # (see below)
        if "phone" in self.kinds:
            try:
                import phonenumbers
            except ImportError:
                raise UserError("finding phone numbers needs the 'phonenumbers' package: "
                                "pip install 'convoy[pii]'") from None
            bad = [r for r in self.regions if r not in phonenumbers.SUPPORTED_REGIONS]
            if bad:
                raise UserError(f"Redactor: unknown phone region {bad[0]!r}; use ISO 3166 "
                                "country codes, such as 'US', 'GB' or 'DE'")
            # A region whose national numbers are written after a trunk prefix "0" (GB,
            # DE, FR, NL): digits without it, and no word before them that says they are
            # a phone number, are no national number of it (DE reads most pairs of four
            # digits, 6146 8628, as a local number: an order number, a table's row).
            # India's mobile numbers are written without it (98123 45678). By region: its
            # country code.
            self._trunk_zero = {
                r: str(phonenumbers.country_code_for_region(r)) for r in self.regions
                if r not in _TRUNK_OPTIONAL and getattr(
                    phonenumbers.PhoneMetadata.metadata_for_region(r), "national_prefix",
                    None) == "0"}
        if {"card", "iban"} & self.kinds:
            try:
                import stdnum  # noqa: F401
            except ImportError:
                raise UserError("checking card numbers and IBANs needs 'python-stdnum': "
                                "pip install 'convoy[pii]'") from None

    # -- finding ---------------------------------------------------------------------------

    def find(self, text: str) -> list[Found]:
        """Every piece of personal data in ``text``, in order, none overlapping.

        Escaped text (JSON, ``repr``) is searched as what it stands for: in
        ``"x\\n4539..."`` the card number follows a newline, not the letter ``n``. Invisible
        characters (``ada\\u200b@example.org``) are read as nothing, and a finding covers
        those inside it.
        """
        if not text or _MAYBE.search(text) is None:
            return []
        if _TOKEN.fullmatch(text) and not text.isdigit() and \
                _LONG_DIGITS.search(text) is None and not _IBAN.fullmatch(text):
            return []  # a uuid, a session id, a tool name: nothing in it can match
        read = unescape(text)
        plain = read.text if read is not None else text
        if not plain.isascii():
            plain = plain.translate(_LOOKALIKE)
        spans = self._first(plain)
        if not plain.isascii():
            hidden = visible(plain)
            if hidden is not None:
                # Read without its invisible characters as well, where one may hide a value
                # (ada\u200b@example.org). As it is, the text counts only for a value that one
                # separates from a word (IBAN\u200bDE89...): elsewhere, one in a look-alike
                # (ISBN 0-3\u200b06-40615-2) would leave part of it to look like a value.
                spans = _merged(
                    [f for f in spans if _set_apart(plain, f[0], f[1])]
                    + [(*hidden.span(s, e), kind) for s, e, kind in self._first(hidden.text)])
        found: list[Found] = []
        for s, e, kind in spans:
            a, b = read.span(s, e) if read is not None else (s, e)
            found.append(Found(kind=kind, start=a, end=b, value=text[a:b]))
        return found

    def _first(self, text: str) -> list[tuple[int, int, PiiKind]]:
        """The findings in ``text``, in order: of overlapping ones, the first and longest."""
        found: list[tuple[int, int, PiiKind]] = []
        last = -1
        for s, e, kind in sorted(self._spans(text), key=lambda t: (t[0], -t[1])):
            if s < last:
                continue  # the first (longest) finding wins
            last = e  # and one failing its check is not personal data, nor is any of it
            if kind is not None:
                found.append((s, e, kind))
        return found

    def _spans(self, text: str) -> list[tuple[int, int, PiiKind | None]]:
        kinds = self.kinds
        # (start, end, kind); kind None: card- or IBAN-shaped but failing its check, so not
        # personal data, and no part of it is to be read as another kind either.
        spans: list[tuple[int, int, PiiKind | None]] = []
        if "email" in kinds and ("@" in text or "%40" in text):
            spans += [(m.start(), m.end(), "email") for m in _EMAIL.finditer(text)]
        if "iban" in kinds:
            pos = 0
            while (m := _IBAN.search(text, pos)) is not None:
                end, valid = _iban_end(m.group())
                if end:
                    spans.append((m.start(), m.start() + end, "iban" if valid else None))
                    pos = m.start() + end
                else:  # (no IBAN starts here: one may start inside, "id 42 IBAN DE89...")
                    pos = m.start() + 1
            if _broken(text):
                wrapped = _wrapped_ibans(text, _Taken(s for s in spans if s[2] is not None))
                if wrapped:
                    # (what its first line alone looked like is no finding: GB82WEST1234\n...)
                    taken = _Taken(wrapped)
                    spans = [s for s in spans if s[2] is not None
                             or not taken.overlaps(s[0], s[1])] + wrapped
        if "card" in kinds:
            cards = [c for c in (_card_in(m, text) for m in _CARD.finditer(text))
                     if c is not None]
            # Then cards glued into ids, where what is found already is not looked at (a
            # card-shaped part that failed its check may be the start of a longer card:
            # 6759 1711 6711 7096 748-10.0.0.1, which _CARD cannot take whole).
            judged = _Taken([*spans, *(c for c in cards if c[2] is not None)])
            in_ids = [c for m in _DIGIT_RUN.finditer(text)
                      for c in _glued_cards(m, text, judged)]
            if in_ids:
                taken = _Taken(in_ids)
                cards = [c for c in cards if c[2] is not None or not taken.overlaps(c[0], c[1])]
            # Then cards wrapped at a line break (4539 1488\n0343 6467), where no card is
            # found already (a card on a line of its own keeps all its groups).
            wrapped_cards: list[tuple[int, int, PiiKind | None]] = []
            if _broken(text):
                judged = _Taken([*spans, *(c for c in cards + in_ids if c[2] is not None)])
                wrapped_cards = [c for m in _WRAPPED_RUN.finditer(text)
                                 for c in _wrapped_cards(m, text, judged)]
                if wrapped_cards:
                    taken = _Taken(wrapped_cards)
                    cards = [c for c in cards
                             if c[2] is not None or not taken.overlaps(c[0], c[1])]
            spans += cards + in_ids + wrapped_cards
        if "ip" in kinds:
            spans += [(m.start(), m.end(), "ip") for m in _IPV4.finditer(text)]
            if ":" in text:
                spans += filter(None, map(_ipv6_span, _IPV6.finditer(text)))
        if "phone" in kinds:
            for m in _PHONE.finditer(text):
                self._phone_at(m, text, spans)
            if "+" in text or "00" in text:
                for m in _PHONE_SPACED.finditer(text):
                    self._phone_at(m, text, spans)
            for m in _CUED.finditer(text):
                n = _PHONE_AFTER_CUE.match(text, m.end())
                if n is not None:
                    self._phone_at(n, text, spans)
            if "+" in text:
                taken = _Taken(spans)  # (the numbers found here do not overlap each other)
                for m in _PHONE_GLUED.finditer(text):
                    glued = self._glued_phone(m, text, taken)
                    if glued is not None:
                        spans.append(glued)
            # (last: a number glued after a "+" and a country code is the whole of it)
            for m in _PHONE_AFTER_DIGITS.finditer(text):
                self._phone_at(m, text, spans)
        return spans

    def _phone_at(self, m: re.Match[str], text: str,
                  spans: list[tuple[int, int, PiiKind | None]]) -> None:
        """Add the candidate ``m`` to ``spans`` as a phone number if no finding overlaps it
        and it is one (:meth:`_is_phone`, read after the words before it)."""
        a, b = m.span()
        if not any(a < e and s < b for s, e, _ in spans) and \
                self._is_phone(m.group(), text[max(0, a - 24):a]):
            spans.append((a, b, "phone"))

    def _glued_phone(self, m: re.Match[str], text: str, taken: _Taken
                     ) -> tuple[int, int, PiiKind] | None:
        """The number in international form at the start of ``m``: the longest run of its
        whole digit groups that no other finding overlaps, that no letter or digit follows
        and that is a valid number."""
        a = m.start()
        if taken.overlaps(a, a + 1):
            return None
        ends = [g.end() for g in _GROUP_END.finditer(text, a, m.end())]
        tries = 0
        for b in reversed(ends):
            if b < len(text) and (text[b].isdigit() or text[b] == "@"):
                continue
            if not 7 <= sum(ch.isdigit() for ch in text[a:b]) <= 15 or taken.overlaps(a, b):
                continue
            if self._is_phone(text[a:b], text[max(0, a - 24):a]):
                return a, b, "phone"
            tries += 1
            if tries == _GLUED_TRIES:
                break  # (a bound on libphonenumber's work for a hostile text)
        return None

    def _is_phone(self, candidate: str, before: str) -> bool:
        import phonenumbers

        digits = sum(ch.isdigit() for ch in candidate)
        if digits < 7 or digits > 15:
            return False
        text = candidate.strip()
        cued = _PHONE_CUE.search(before) is not None
        if ("\n" in text or "\t" in text) and not cued:
            return False  # (digits on lines or columns of their own: a table, not a number)
        if _TWO_SPACES.search(text) and not text.startswith(("+", "00")):
            # (groups two spaces apart: a table's columns, 212  555  1234; in
            # international form, +44  20  7946  0958, a number)
            return False
        text = _SPACES.sub(" ", text)
        if "+" in text[1:]:
            text = text[0] + text[1:].replace("+", " ")  # (a form's spaces: tel=020+7946...)
        if _DATE.fullmatch(text) or _DATED.match(text) or _DECIMAL.fullmatch(text) \
                or _ISBN13.fullmatch(text) \
                or _YEARS.fullmatch(text) or _NOT_PHONE_CUE.search(before) is not None:
            return False
        if text.startswith("00"):
            text = "+" + text[2:]
        elif before[-6:].lower() == "wa.me/" and text.isdigit():
            text = "+" + text  # (a WhatsApp link: the number in international form)
        international = text.startswith("+")
        if not international and text.isdigit() and not text.startswith("0") and \
                not cued:
            # A bare run of digits without a trunk prefix is an id, an amount or a
            # timestamp far more often than a phone number written without any spacing,
            # unless a word before it says it is one ("tel. 4155550132").
            return False
        regions: Sequence[str | None] = (None,) if international else self.regions
        if not international and not text.lstrip("(").startswith("0") and \
                _STRONG_CUE.search(before) is None:
            # (after a word that says it is a phone number, the region may read a country
            # code without its "+": Phone: 447911123456)
            # (but one that begins with the region's country code, its "+" left out, in a
            # number as long as an international one: 44 20 7946 0958, 49 151 12345678)
            long = sum(c.isdigit() for c in text) >= 10
            regions = [r for r in regions if r not in self._trunk_zero
                       or (long and text.lstrip("(").startswith(self._trunk_zero[r]))]
        # A number in international form written with its "+", or after a word that says
        # it is a phone number, is one when its length is possible for its country, valid
        # or not: a range not in service yet, a fictional one (+44 7700 900123), one newer
        # than libphonenumber's metadata.
        possible = international and (cued or candidate.lstrip().startswith("+"))
        for region in regions:
            try:
                number = phonenumbers.parse(text, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(number) or \
                    (possible and phonenumbers.is_possible_number(number)):
                return True
        return False

    # -- masking ---------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        """``text`` with every finding replaced by its mask. Text only: a ``TypeError``
        for anything else says so (logs and spans redact a structure's strings one by
        one)."""
        if type(text) is not str:  # (a subclass: as plain text; the memo keeps plain)
            if not isinstance(text, str):
                raise TypeError(f"Redactor takes text (a str), not {type(text).__name__}: "
                                "redact a structure's strings one by one (logs and spans "
                                "do)")
            text = str.__str__(text)
        memo = self._memo
        out = memo.get(text)
        if out is not None:
            return out
        found = self.find(text)
        if not found:
            out = text
        else:
            parts: list[str] = []
            pos = 0
            for f in found:
                parts.append(text[pos:f.start])
                parts.append(self.mask.replace("{kind}", f.kind.upper()))
                pos = f.end
            parts.append(text[pos:])
            out = "".join(parts)
        if self._memo_size:
            if len(memo) >= self._memo_size:
                memo.clear()  # a burst of distinct strings: start again, stay bounded
            memo[text] = out
        return out

    __call__ = redact


class _Taken:
    """Whether a range overlaps one of ``spans``, in logarithmic time (a hostile text has
    thousands of them)."""

    def __init__(self, spans: Iterable[tuple[int, int, object]]) -> None:
        ordered = sorted((s, e) for s, e, _ in spans)
        self._starts = [s for s, _ in ordered]
        self._reach: list[int] = []  # the furthest end of the spans up to each one
        reach = -1
        for _, e in ordered:
            reach = max(reach, e)
            self._reach.append(reach)

    def overlaps(self, start: int, end: int) -> bool:
        i = bisect.bisect_left(self._starts, end)  # the spans that start before ``end``
        return i > 0 and self._reach[i - 1] > start


def _merged(spans: list[tuple[int, int, PiiKind]]) -> list[tuple[int, int, PiiKind]]:
    """``spans`` in order, those that overlap made one (of the kind of the one that starts
    first, or the longest): all of each is masked."""
    out: list[tuple[int, int, PiiKind]] = []
    for s, e, kind in sorted(spans, key=lambda t: (t[0], -t[1])):
        if out and s < out[-1][1]:
            out[-1] = (out[-1][0], max(e, out[-1][1]), out[-1][2])
        else:
            out.append((s, e, kind))
    return out


def _set_apart(text: str, start: int, end: int) -> bool:
    """Whether invisible characters are all that set ``text[start:end]`` apart from a word
    (IBAN\u200bDE89..., 10.0.0.1\u200bfrom): read as nothing, they would join it to the
    word. Between two digits they join nothing that is not one number (4539\u200b1488...)."""
    a = start
    while invisible_at(text, a - 1):
        a -= 1
    b = end
    while invisible_at(text, b):
        b += 1
    return (0 < a < start and _joins(text[a - 1], text[start])) or \
        (end < b < len(text) and _joins(text[b], text[end - 1]))


def _joins(word: str, edge: str) -> bool:
    return (word.isalnum() or word == "_") and not (word.isdecimal() and edge.isdecimal())


def _card_in(m: re.Match[str], text: str) -> tuple[int, int, PiiKind | None] | None:
    """The card number in a card-shaped match: its longest run of whole digit groups with
    the length and prefix of a known issuer (or grouped 4-4-4-4(-3) as cards are), masked
    if it passes the Luhn check, marked as no finding (not a phone number either) if not."""
    match = m.group()
    groups = [(g.start(), g.end()) for g in _CARD_GROUP.finditer(match)]
    # Counted before group i, so that a window is judged without reading it when it cannot
    # be a card (most of the windows of up to 19 groups of one digit): the digits (fewer
    # than 13), the separators no card is printed with (only in a card's own groups,
    # _PRINTED: of 3 to 5).
    before = list(itertools.accumulate((b - a for a, b in groups), initial=0))
    gaps = [match[b:c] for (_, b), (c, _) in itertools.pairwise(groups)]
    odd = list(itertools.accumulate((g not in _CARD_SEPS for g in gaps), initial=0))
    base = m.start()
    shaped: tuple[int, int] | None = None
    for size in range(len(groups), 0, -1):
        for i in range(len(groups) - size + 1):
            if before[i + size] - before[i] < 13 or (size > 5 and odd[i + size - 1] > odd[i]):
                continue
            window = groups[i:i + size]
            digits = _SEPARATORS.sub("", match[window[0][0]:window[-1][1]])
            if not 13 <= len(digits) <= 19:  # (\d reads other scripts' digits too)
                continue
            seps = set(gaps[i:i + size - 1])
            if len(seps) > 1:
                continue  # a card is printed with one separator (5678-30.91.108.81 is not)
            # (read only where it may be one of _PRINTED's: of 3 to 5 groups)
            widths = [b - a for a, b in window] if 3 <= size <= 5 else None
            if seps and not seps <= _CARD_SEPS and widths not in _PRINTED:
                continue  # (a tab, a newline, "+", " - ": only in a card's own groups)
            if not _card_issuer_ok(digits) and (
                    digits[0] == "0" or widths not in ([4, 4, 4, 4], [4, 4, 4, 4, 3])
                    or _YEARS.fullmatch(match, window[0][0], window[-1][1]) is not None
                    or any(map(_broken, seps))):
                continue  # (of an unknown issuer: only grouped as a card is, on one line;
                # a column of numbers, one a line, is no card: 8080\n8443\n9090\n3000)
            start, end = base + window[0][0], base + window[-1][1]
            if _luhn_ok(digits):
                if _in_hex_word(text, start, end):
                    return None  # digits inside a hash or a key
                if size == 1 and _decimal_part(text, start, end):
                    return start, end, None  # the digits of a decimal number (0.4539...)
                return start, end, "card"
            shaped = shaped or (start, end)
    return (*shaped, None) if shaped is not None else None


def _glued_cards(m: re.Match[str], text: str, judged: _Taken
                 ) -> list[tuple[int, int, PiiKind | None]]:
    """The card numbers in a run of digit groups that ``_CARD`` leaves (glued by a
    separator to more digits: 2026-4111..., a-4111...-203.0.113.45): a whole group of 13-19
    digits, or whole groups as cards are printed (4-4-4-4, 4-4-4-4-3, 4-4-4-2, 4-6-5, 4-6-4,
    one separator throughout: a dash, a dot or spaces) that no other group of 4 digits
    continues (a longer serial or key), with a known issuer's prefix and a valid Luhn
    check digit; not in a hexadecimal word, not the digits of a decimal number, not after
    a ``+`` (a phone number's)."""
    if _MAYBE_CARD.search(m.group()) is None:
        return []  # no group of 13 digits, no three printed as a card's (most runs)
    base = m.start()
    groups = [(base + g.start(), base + g.end()) for g in _CARD_GROUP.finditer(m.group())]
    found: list[tuple[int, int, PiiKind | None]] = []
    i = 0
    while i < len(groups):
        for size in range(min(5, len(groups) - i), 0, -1):
            window = groups[i:i + size]
            start, end = window[0][0], window[-1][1]
            card = not judged.overlaps(start, end) and _glued_card(text, groups, i, size)
            if card:
                found.append((start, end, "card"))
                i += size
                break
        else:
            i += 1
    return found


def _glued_card(text: str, groups: list[tuple[int, int]], i: int, size: int) -> bool:
    window = groups[i:i + size]
    start, end = window[0][0], window[-1][1]
    widths = [b - a for a, b in window]
    if size == 1:
        if not 13 <= widths[0] <= 19:
            return False
    else:
        seps = {text[b:c] for (_, b), (c, _) in itertools.pairwise(window)}
        if len(seps) != 1 or widths not in _PRINTED:
            return False
        sep = seps.pop()
        if sep not in _CARD_SEPS and sep not in ("_", "/"):
            return False
        before = groups[i - 1] if i else None
        after = groups[i + size] if i + size < len(groups) else None
        if (before is not None and text[before[1]:start] == sep
                and before[1] - before[0] == 4) or \
                (after is not None and text[end:after[0]] == sep and after[1] - after[0] == 4):
            return False  # a serial or a key of more groups of four
    if start and text[start - 1] == "+":
        return False
    digits = _SEPARATORS.sub("", text[start:end])
    return _card_issuer_ok(digits) and _luhn_ok(digits) and \
        not _in_hex_word(text, start, end) and \
        not (size == 1 and _decimal_part(text, start, end))


def _wrapped_cards(m: re.Match[str], text: str, judged: _Taken
                   ) -> list[tuple[int, int, PiiKind]]:
    """The card numbers wrapped at a line break in a run of digit groups (4539 1488\\n0343
    6467, 4539\\n1488 0343 6467): whole groups as cards are printed (4-4-4-4, 4-4-4-4-3,
    4-4-4-2, 4-4-4-3, 4-6-5, 4-6-4), a line break between two of them at least and one other
    separator between the others (groups split by line breaks alone are ``_CARD``'s), no
    group of four continuing them on a line with that separator (a serial, a table of
    numbers) nor on the line above or below (a table's other rows), with a known issuer's
    prefix and a valid Luhn check digit, overlapping no
    card found already."""
    run = m.group()
    if not _broken(run) or _ON_A_LINE.search(run) is None:
        return []  # (most runs: no line break, or digits alone on their lines)
    base = m.start()
    groups = [(base + g.start(), base + g.end()) for g in _CARD_GROUP.finditer(run)]
    widths = [b - a for a, b in groups]
    gaps = [text[b:c] for (_, b), (c, _) in itertools.pairwise(groups)]
    found: list[tuple[int, int, PiiKind]] = []
    i = 0
    while i < len(groups):
        if widths[i] == 4:  # (every printed card starts with a group of four)
            for size in (5, 4, 3):
                if i + size <= len(groups) and widths[i:i + size] in _PRINTED and \
                        _wrapped_card(text, groups, widths, gaps, i, size):
                    start, end = groups[i][0], groups[i + size - 1][1]
                    if not judged.overlaps(start, end):
                        found.append((start, end, "card"))
                        i += size
                        break
            else:
                i += 1
        else:
            i += 1
    return found


def _broken(text: str) -> bool:
    """Whether ``text`` holds a line break (LF or CR: the others are read as LF)."""
    return "\n" in text or "\r" in text


def _wrapped_card(text: str, groups: list[tuple[int, int]], widths: list[int],
                  gaps: list[str], i: int, size: int) -> bool:
    inner = gaps[i:i + size - 1]
    seps = {g for g in inner if not _broken(g)}
    if len(seps) != 1 or all(g in seps for g in inner):
        return False  # (no line break, or not one other separator)
    sep = seps.pop()
    if (i and gaps[i - 1] == sep and widths[i - 1] == 4) or (
            i + size < len(groups) and gaps[i + size - 1] == sep and widths[i + size] == 4):
        return False  # more groups of four on the line: a serial, a table of numbers
    if (i > 1 and _broken(gaps[i - 1]) and gaps[i - 2] == sep
            and widths[i - 2] == widths[i - 1] == 4) or (
            i + size + 1 < len(groups) and _broken(gaps[i + size - 1])
            and gaps[i + size] == sep and widths[i + size] == widths[i + size + 1] == 4):
        return False  # a row of groups of four above it or below it: a table of numbers
    start, end = groups[i][0], groups[i + size - 1][1]
    if start and text[start - 1] == "+":
        return False
    digits = _SEPARATORS.sub("", text[start:end])
    return _card_issuer_ok(digits) and _luhn_ok(digits) and not _in_hex_word(text, start, end)


def _wrapped_ibans(text: str, judged: _Taken) -> list[tuple[int, int, PiiKind | None]]:
    """The IBANs wrapped at a line break (GB82 WEST 1234\\n5698 7654 32) that overlap no
    finding: only those that check out (an IBAN-shaped first line is left as it was)."""
    found: list[tuple[int, int, PiiKind | None]] = []
    pos = 0
    while (m := _IBAN_WRAPPED.search(text, pos)) is not None:
        start = pos = m.start()
        raw = m.group()
        length = _iban_length(raw[:2].upper()) if _broken(raw) else 0
        # (its country's length and the mod-97 check first, cheaply: most candidates fail)
        compact = _SEPARATORS.sub("", raw)[:length] if length else ""
        if len(compact) == length and length and _mod97_ok(compact):
            end, valid = _iban_end(raw)
            if valid and _broken(text[start:start + end]) and \
                    not judged.overlaps(start, start + end):
                found.append((start, start + end, "iban"))
                pos += end
                continue
        pos += 1  # (not the end of the match: an IBAN may start on its next line)
    return found


_IBAN_DIGITS = {ord(c): str(10 + i) for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZ")}


def _mod97_ok(compact: str) -> bool:
    """Whether an IBAN's characters pass its mod-97 check (ISO 13616)."""
    rearranged = (compact[4:] + compact[:4]).upper().translate(_IBAN_DIGITS)
    return rearranged.isdigit() and int(rearranged) % 97 == 1


def _decimal_part(text: str, start: int, end: int) -> bool:
    """Whether the run of digits ``text[start:end]`` is one side of a decimal number
    (0.4539..., s_0.4539..., -3.4539..., 4539....25): one dot between it and a run of
    digits that is 0 or not itself joined to a word or to more dotted digits
    (order.2026.4539..., ORD-2026.4539... and run-7.4539... are ids)."""
    if start >= 2 and text[start - 1] == "." and text[start - 2].isdigit():
        i = start - 2
        while i > 0 and text[i - 1].isdigit():
            i -= 1
        if text[i:start - 1] == "0":
            return True  # 0.4539...: a fraction, whatever is before it
        if i > 0 and text[i - 1] == "-":
            i -= 1  # a minus sign, unless it joins the digits to a word
        if i == 0 or not (text[i - 1].isalnum() or text[i - 1] in "._"):
            return True
    if end + 1 < len(text) and text[end] == "." and text[end + 1].isdigit():
        j = end + 1
        while j < len(text) and text[j].isdigit():
            j += 1
        if text[end + 1:j].strip("0") == "":
            return False  # (an integer written as a float: 4539148803436467.0 is its digits)
        if j == len(text) or not (text[j].isalnum() or text[j] == "_" or (
                text[j] == "." and j + 1 < len(text) and text[j + 1].isdigit())):
            return True
    return False


def _in_hex_word(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is part of a hexadecimal word (a hash, a key): glued to
    hex letters on both sides, or in a word as long as an MD5 hash. Glued to a word on one
    side (card4539..., pan_4539..., CC4539...) it is a card."""
    a = start
    while a > 0 and (text[a - 1].isalnum() or text[a - 1] == "_"):
        a -= 1
    b = end
    while b < len(text) and (text[b].isalnum() or text[b] == "_"):
        b += 1
    if a == start and b == end:
        return False
    return (b - a >= 32 or (a < start and b > end)) and \
        _HEX.fullmatch(text, a, start) is not None and _HEX.fullmatch(text, end, b) is not None


def _iban_end(raw: str) -> tuple[int, bool]:
    """How long the IBAN-shaped text at the start of ``raw`` is (its country fixes the
    length; 0 if no country has IBANs so, as in CC4539...), and whether it checks out."""
    from stdnum import iban

    length = _iban_length(raw[:2].upper())
    if not length:
        return 0, False
    n = 0
    for i, ch in enumerate(raw):
        if ch.isalnum():
            n += 1
            if n == length:
                if iban.is_valid(_SEPARATORS.sub("", raw[:i + 1]), check_country=False):
                    return i + 1, True
                break
    # Not an IBAN: as long as it is written like one (compact, or in groups of four), it is
    # not a card number or a phone number either; words after it may be.
    groups = _SEPARATORS.split(raw[:i + 1])
    if n == length and all(len(g) == 4 for g in groups[:-1]):
        return i + 1, False
    return len(groups[0]), False


_IBAN_LENGTHS: dict[str, int] = {}


def _iban_length(country: str) -> int:
    length = _IBAN_LENGTHS.get(country)
    if length is None:
        from stdnum import iban

        info = iban._ibandb.info(country)
        structure = info[0][1].get("bban", "") if info else ""
        length = 4 + sum(int(n) for n in re.findall(r"(\d+)!", structure)) if structure else 0
        _IBAN_LENGTHS[country] = length
    return length


def _luhn_ok(digits: str) -> bool:
    from stdnum import luhn

    return bool(luhn.is_valid(digits))


def _ipv6_span(m: re.Match[str]) -> tuple[int, int, PiiKind] | None:
    """The address ``m`` found (not after a number and a colon: a timestamp's groups,
    20261205:10:30::), or the one after the colon it starts with: after an id's "_"
    (user_:2001:db8::1) the run starts with an empty group, which no address has (not
    after another colon: ns::fe80::1 is a scope)."""
    text, start = m.group(), m.start()
    if start > 5 and m.string[start - 1] == ":" and \
            _NUMBER_BEFORE.search(m.string[max(0, start - 64):start]) is not None:
        return None
    if text.count(":") >= 2 and _is_ipv6(text):
        return start, m.end(), "ip"
    if text.startswith(":") and start and m.string[start - 1] == "_":
        rest = text[1:]
        if rest.count(":") >= 2 and _is_ipv6(rest):
            return start + 1, m.end(), "ip"
    return None


_NUMBER_BEFORE = re.compile(r"(?<!\w)\d{5,}:\Z")


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


__all__ = ["PII_KINDS", "Found", "PiiKind", "Redactor"]
