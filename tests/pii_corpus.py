"""A synthetic corpus of support-desk text with personal data in varied formats, and text
that looks like it but is not (dates, times, amounts, order and tracking numbers, versions,
hashes, numbers that fail their checksum), each sample with its true findings.

Values are planted in clean sentences and in the shapes telemetry really carries: the
sentence JSON-encoded (``\\n`` and ``\\u00e9`` escapes right before a value) or as a
``repr``'d exception message, no-break and thin spaces between digit groups, URL-encoded,
quoted and address-literal e-mail addresses, card numbers glued to a word (``card4539...``,
``pan_4539...``), invisible characters inside a value (a zero-width space, a soft hyphen:
``ada\\u200b@example.org``, escaped too in the encoded shapes), values glued into ids
(``ticket-+14155552671``, ``2026-4111...``, ``s-<card>-<IPv4>``); look-alikes include
ISBN/ISSN numbers, runs of years and git remotes, invisible characters inside them too, and
ids that only look as if a value were glued in (versions, dates, UUIDs, hex ids, digit
runs failing Luhn, decimals).

``samples(n, seed)`` is deterministic; ``score(redactor, corpus)`` gives recall and
precision per kind: a true value counts as found only when the findings of its kind cover
all of it (a partial mask, or a mask of the wrong kind, is a miss), and a finding counts as
right when it overlaps a true value of its kind.
Used by tests/test_redact.py and bench/pii_redaction.py.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections.abc import Callable
from dataclasses import dataclass, field

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType
from stdnum import ean as _ean
from stdnum import iban as _iban
from stdnum import issn as _issn_mod
from stdnum import luhn

from convoy.observability import Found, Redactor

KINDS = ("email", "phone", "card", "iban", "ip")


@dataclass
class Sample:
    text: str
    truth: list[tuple[str, int, int]] = field(default_factory=list)  # (kind, start, end)


# -- values ---------------------------------------------------------------------------------

FIRST = ["anna", "jose", "li", "mohammed", "olga", "pierre", "sven", "chloe", "raj", "maria",
         "jean-luc", "o.brien", "ines", "kai", "zoe"]
LAST = ["smith", "garcia", "wang", "khan", "ivanova", "dubois", "larsen", "martin", "patel",
        "rossi", "mueller", "nguyen", "silva", "kowalski", "tanaka"]
DOMAINS = ["example.com", "mail.example.org", "corp.example.co.uk", "example.io",
           "post.example.de", "example-shop.fr", "uni.example.edu", "example.net"]


def email(r: random.Random) -> str:
    f, last = r.choice(FIRST), r.choice(LAST)
    local = r.choice([f"{f}.{last}", f"{f}{r.randint(1, 99)}", f"{f[0]}{last}",
                      f"{f}+{r.choice(['orders', 'news', 'x1'])}", f"{f}_{last}",
                      f"{last}.{f}.{r.randint(1970, 2005)}"])
    domain = r.choice(DOMAINS)
    shape = r.random()
    if shape < 0.06:  # URL-encoded, as in a query string or a logged URL
        return f"{local}%40{domain}"
    if shape < 0.09:  # an apostrophe, as names have
        return f"{r.choice(['o', 'd'])}'{r.choice(LAST)}@{domain}"
    if shape < 0.11:  # a quoted local part
        return f'"{f} {r.choice(LAST)}"@{domain}'
    if shape < 0.13:  # an address literal
        return f"{local}@[192.0.2.{r.randint(1, 254)}]"
    addr = f"{local}@{domain}"
    return addr.upper() if r.random() < 0.08 else addr


PHONE_REGIONS = ["US", "GB", "DE", "FR", "ES", "IT", "NL", "IN", "CA", "AU", "BR", "JP"]
NATIONAL_OK = {"US", "GB", "DE", "FR", "ES", "IT", "NL", "IN", "CA"}  # the redactor's regions


def _phone_number(r: random.Random, region: str) -> phonenumbers.PhoneNumber:
    kind = r.choice([PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE])
    example = phonenumbers.example_number_for_type(region, kind) or \
        phonenumbers.example_number(region)
    assert example is not None
    national = str(example.national_number)
    for _ in range(200):  # vary the subscriber digits, keep it valid
        keep = max(3, len(national) - 4)
        digits = national[:keep] + "".join(r.choice(string.digits)
                                           for _ in range(len(national) - keep))
        n = phonenumbers.parse("+" + str(example.country_code) + digits, None)
        if phonenumbers.is_valid_number(n):
            return n
    return example


def phone(r: random.Random) -> str:
    region = r.choice(PHONE_REGIONS)
    n = _phone_number(r, region)
    styles: list[Callable[[], str]] = [
        lambda: phonenumbers.format_number(n, PhoneNumberFormat.INTERNATIONAL),
        lambda: phonenumbers.format_number(n, PhoneNumberFormat.E164),
        lambda: phonenumbers.format_number(n, PhoneNumberFormat.INTERNATIONAL)
        .replace(" ", "-"),
        lambda: "00" + phonenumbers.format_number(n, PhoneNumberFormat.INTERNATIONAL)[1:],
    ]
    if region in ("US", "CA"):  # digits only, after a word that says what they are
        styles.append(lambda: "tel. " + str(n.national_number))
    if region in NATIONAL_OK:  # a number without its country code, in its own format
        styles += [
            lambda: phonenumbers.format_number(n, PhoneNumberFormat.NATIONAL),
            lambda: _dotted(phonenumbers.format_number(n, PhoneNumberFormat.NATIONAL)),
            lambda: phonenumbers.format_number(n, PhoneNumberFormat.NATIONAL)
            .replace("(", "").replace(") ", "-").replace(" ", "-"),
        ]
    return _spaces(r, r.choice(styles)())


# Spaces between digit groups as word processors and locales write them: no-break, thin,
# narrow no-break.
OTHER_SPACES = ["\u00a0", "\u2009", "\u202f"]


def _spaces(r: random.Random, value: str) -> str:
    return value.replace(" ", r.choice(OTHER_SPACES)) if r.random() < 0.15 else value


def _dotted(national: str) -> str:
    """Dots for spaces (06.12.34.56.78, 415.555.0132); one dot alone reads as a decimal
    number, so such a number keeps its space."""
    dotted = national.replace("(", "").replace(") ", " ").replace(" ", ".")
    return dotted if dotted.count(".") >= 2 else national


CARD_PREFIXES = [("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("2720", 16),
                 ("34", 15), ("37", 15), ("6011", 16), ("65", 16), ("3528", 16), ("36", 14),
                 ("62", 16), ("4", 19),
                 # Maestro, Elo, RuPay, Troy, UnionPay 19, Mir
                 ("6304", 16), ("6759", 19), ("5018", 16), ("636297", 16), ("504175", 16),
                 ("60", 16), ("81", 16), ("508", 16), ("9792", 16), ("62", 19), ("2200", 16)]


def card_digits(r: random.Random) -> str:
    prefix, length = r.choice(CARD_PREFIXES)
    body = prefix + "".join(r.choice(string.digits) for _ in range(length - len(prefix) - 1))
    return body + luhn.calc_check_digit(body)


def card(r: random.Random) -> str:
    d = card_digits(r)
    amex = len(d) == 15  # grouped 4-6-5
    groups = [d[:4], d[4:10], d[10:]] if amex else [d[i:i + 4] for i in range(0, len(d), 4)]
    sep = r.choice([" ", " ", "-", "  ", ".", *OTHER_SPACES])
    return r.choice([d, d, sep.join(groups)])


IBAN_COUNTRIES = ["DE", "GB", "FR", "ES", "IT", "NL", "BE", "CH", "AT", "PL", "IE", "PT",
                  "FI", "LU"]


def _bban(r: random.Random, structure: str) -> str:
    out = []
    for count, kind in _parse_structure(structure):
        pool = {"n": string.digits, "a": string.ascii_uppercase,
                "c": string.ascii_uppercase + string.digits}[kind]
        out.append("".join(r.choice(pool) for _ in range(count)))
    return "".join(out)


def _parse_structure(structure: str) -> list[tuple[int, str]]:
    return [(int(n), k) for n, k in re.findall(r"(\d+)!([nac])", structure)]


def iban_compact(r: random.Random) -> str:
    while True:
        cc = r.choice(IBAN_COUNTRIES)
        structure = _iban._ibandb.info(cc + "00")[0][1]["bban"]
        bban = _bban(r, structure)
        check = _iban.calc_check_digits(cc + "00" + bban)
        number = cc + check + bban
        if _iban.is_valid(number):
            return number


def iban(r: random.Random) -> str:
    n = iban_compact(r)
    groups = [n[i:i + 4] for i in range(0, len(n), 4)]
    grouped = r.choice([" ", " ", " ", "-", *OTHER_SPACES]).join(groups)
    return r.choice([n, grouped, grouped, grouped.lower() if r.random() < 0.2 else grouped])


def ip(r: random.Random) -> str:
    v4 = ".".join(str(r.randint(1 if i == 0 else 0, 255)) for i in range(4))
    groups = [format(r.randint(0, 0xFFFF), "x") for _ in range(8)]
    full = ":".join(groups)
    compressed = ":".join(groups[:3]) + "::" + ":".join(groups[6:])
    return r.choice([v4, v4, f"192.168.{r.randint(0, 255)}.{r.randint(1, 254)}",
                     f"10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}",
                     f"{v4}:{r.randint(1024, 65535)}", full, compressed, "::1",
                     f"fe80::{groups[0]}:{groups[1]}", f"[{compressed}]:443",
                     f"::ffff:{v4}"])


MAKERS: dict[str, Callable[[random.Random], str]] = {
    "email": email, "phone": phone, "card": card, "iban": iban, "ip": ip}


# -- look-alikes that are not personal data ---------------------------------------------------

def lookalike(r: random.Random) -> str:
    d = r.randint(1, 28)
    m = r.randint(1, 12)
    y = r.randint(2019, 2027)
    bad_card = card_digits(r)
    bad_card = bad_card[:-1] + str((int(bad_card[-1]) + 1) % 10)  # fails Luhn
    bad_iban = iban_compact(r)
    bad_iban = bad_iban[:2] + format((int(bad_iban[2:4]) + 1) % 97 + 2, "02d") + bad_iban[4:]
    choices = [
        f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}", f"{d}.{m}.{y}",
        f"{y}-{m:02d}-{d:02d}T{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:"
        f"{r.randint(0, 59):02d}Z",
        f"{r.randint(0, 23):02d}:{r.randint(0, 59):02d}",
        f"order #{r.randint(10000, 99999)}", f"ORD-{y}-{r.randint(10000, 99999)}",
        f"INV-{r.randint(10 ** 7, 10 ** 8 - 1)}", f"ticket {r.randint(100, 99999)}",
        f"${r.randint(1, 9999):,}.{r.randint(0, 99):02d}",
        f"{r.randint(1000, 999999):,}".replace(",", " ") + f",{r.randint(0, 99):02d} EUR",
        f"v{r.randint(0, 9)}.{r.randint(0, 20)}.{r.randint(0, 30)}",
        f"{r.randint(0, 3)}.{r.randint(0, 12)}.{r.randint(0, 9)}",
        f"1Z{r.randint(100, 999)}AA{r.randint(10 ** 9, 10 ** 10 - 1)}",
        f"{r.getrandbits(128):032x}", f"sha {r.getrandbits(64):016x}",
        f"{r.randint(1, 99)}%", f"zip {r.randint(10000, 99999)}",
        f"step {r.randint(1, 9)}/{r.randint(10, 20)}", "HTTP/1.1 404", "x86_64",
        f"{r.randint(1, 500)} kg", f"{r.randint(1_600_000_000, 1_800_000_000)} (unix time)",
        f"{bad_card} (a number that fails its check digit)",
        f"{bad_iban} (an IBAN with a wrong checksum)",
        f"@{r.choice(FIRST)}", f"{r.choice(FIRST)} at example dot com",
        f"room {r.randint(100, 999)}", f"{r.randint(2, 12)} x {r.randint(2, 12)} cm",
        f"ISBN 978-{r.randint(0, 9)}-{r.randint(10, 99)}-{r.randint(100000, 999999)}-"
        f"{r.randint(0, 9)}",
        f"EAN {r.randint(4 * 10 ** 12, 5 * 10 ** 12)}",
        f"build 10.0.{r.randint(10000, 30000)}.{r.randint(1000, 9999)}",
        f"{r.uniform(-90, 90):.4f}, {r.uniform(-180, 180):.4f}",
        f"{y}-{m:02d}-{d:02d} {r.randint(0, 23):02d}:{r.randint(0, 59):02d}:"
        f"{r.randint(0, 59):02d}",
        f"case {y}-{r.randint(100000, 999999)}", f"{r.uniform(0, 100):.5f}",
        f"qty {r.randint(1, 50)} @ {r.randint(1, 999)}.{r.randint(0, 99):02d}",
        f"account {r.randint(10 ** 5, 10 ** 6 - 1)}", f"PIN length {r.randint(4, 6)}",
        f"port {r.randint(1024, 65535)}", f"{r.randint(0, 255)}.{r.randint(0, 255)}",
        # near misses: book and serial numbers, runs of years, git remotes
        f"ISBN {_isbn10(r)}", f"ISBN-13 {_isbn13(r)}", f"see {_isbn13(r)}",
        f"ISSN {_issn(r)}", " ".join(str(y + i) for i in range(r.randint(2, 5))),
        f"git@github.com:{r.choice(LAST)}/{r.choice(FIRST)}.git",
        f"git@gitlab.example.com:{r.choice(LAST)}/app",
    ]
    return r.choice(choices)


def _isbn10(r: random.Random) -> str:
    body = "0" + "".join(r.choice(string.digits) for _ in range(8))
    check = sum((10 - i) * int(c) for i, c in enumerate(body)) % 11
    digit = "X" if (11 - check) % 11 == 10 else str((11 - check) % 11)
    return f"{body[0]}-{body[1:4]}-{body[4:9]}-{digit}"


def _isbn13(r: random.Random) -> str:
    body = "978" + "".join(r.choice(string.digits) for _ in range(9))
    return f"{body[:3]}-{body[3]}-{body[4:7]}-{body[7:12]}-{_ean.calc_check_digit(body)}"


def _issn(r: random.Random) -> str:
    body = "".join(r.choice(string.digits) for _ in range(7))
    return f"{body[:4]}-{body[4:]}{_issn_mod.calc_check_digit(body)}"


TEMPLATES = [
    "Hi, this is {a}. My contact is {x} and I was charged twice on {n}.",
    "Please refund the payment; the card was {x}. Reference {n}.",
    "Customer wrote from {x} about {n}: the parcel never arrived.",
    "Call back on {x} after {n}, or write to {y}.",
    "Wire it to {x} (see {n}). Thanks!",
    "login failed from {x} at {n}",
    "Contact: {x}; alt: {y}; note: {n}",
    "{x}",
    "Nothing personal here: {n} and {m}.",
    "Details -> {x}, {n}, {y}.",
    "tool result: {{\"email\": \"{x}\", \"ref\": \"{n}\"}}",
    "Le client {a} ({x}) a payé le {n}.",
    "From: {a} <{x}>\nSubject: {n}",
    "name,contact,ref\n{a},{x},{n}",
    "[{n}] WARN session s-{n}: upstream {x} refused; retry with {y}",
    "Der Kunde erreichte uns unter {x} wegen {n}.",
    "note from {a}:\n{x}\n\tref {n}",
    "field\t{x}\r\nnext: {y}",
    "José paid with {x} (réf. {n})",
]

# Text as telemetry carries it: (name, encode one piece of the text, before, after). Each
# encoding is character by character, so a value's place in the result is known.
ENCODINGS: list[tuple[str, Callable[[str], str], str, str]] = [
    ("json", lambda piece: json.dumps(piece)[1:-1], '{"message": "', '"}'),
    ("repr", lambda piece: piece.encode("unicode_escape").decode("ascii"),
     "KeyError('", "')"),
]
# Words a card number is glued to, in ids and logs.
GLUE = ["card", "pan_", "CC", "cc_", "no.", "ref:"]
# Characters that show as nothing, planted inside values and look-alikes: zero-width space,
# non-joiner, joiner, word joiner, byte order mark, soft hyphen, Mongolian vowel separator.
INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e"]


def _hide(r: random.Random, value: str) -> str:
    """``value`` with one or two invisible characters inside it (never at an end)."""
    for _ in range(r.randint(1, 2)):
        at = r.randint(1, len(value) - 1)
        value = value[:at] + r.choice(INVISIBLE) + value[at:]
    return value


# Ids that values are glued into (session, task and ticket ids, state keys, signal names),
# and what joins them: (prefix, separator), then what may follow the value.
ID_PREFIXES = ["s", "session", "ticket", "task", "user", "cli", "run-7", "2026", "ORD-2026",
               "k"]
ID_SEPARATORS = ["-", "/", ".", "_"]
ID_SUFFIXES = ["", "", "-retry", "/state", "_3", ".done", "-{ip}"]


def _international(r: random.Random) -> str:
    """A phone number in international form (the "+" says what it is, glued or not)."""
    n = _phone_number(r, r.choice(PHONE_REGIONS))
    return _spaces(r, r.choice([
        phonenumbers.format_number(n, PhoneNumberFormat.E164),
        phonenumbers.format_number(n, PhoneNumberFormat.E164),
        phonenumbers.format_number(n, PhoneNumberFormat.INTERNATIONAL),
        phonenumbers.format_number(n, PhoneNumberFormat.INTERNATIONAL).replace(" ", "-")]))


def _glued(r: random.Random, kind: str, value: str) -> tuple[str, str, str, str]:
    """``value`` glued into an id: (what goes before it, the value, what follows it, an IPv4
    address at the end of the id or ""). A phone number is glued in international form
    (a national one after a separator is an id as often as a phone number: not looked
    for), and after a letter with nothing between as well (ticket+14155552671)."""
    if kind == "phone":
        value = _international(r)
    prefix = r.choice(ID_PREFIXES)
    sep = r.choice([*ID_SEPARATORS, ""] if kind == "phone" and prefix[-1].isalpha()
                   else ID_SEPARATORS)
    suffix = r.choice(ID_SUFFIXES)
    address = ""
    if suffix == "-{ip}":
        address = ".".join(str(r.randint(1 if i == 0 else 0, 255)) for i in range(4))
        suffix = "-"
    return prefix + sep, value, suffix, address


def id_lookalike(r: random.Random) -> str:
    """Ids that look like ones with personal data glued in, but are not: versions that are
    not IPv4 addresses, dates, order and build numbers, UUIDs, hex ids, timestamps, digit
    runs that fail the Luhn check, decimals with 16 digits, digits alone after a separator
    (a ticket number, not a phone number), serials of groups of four."""
    bad_card = card_digits(r)
    bad_card = bad_card[:-1] + str((int(bad_card[-1]) + 1) % 10)  # fails Luhn
    y, m, d = r.randint(2019, 2027), r.randint(1, 12), r.randint(1, 28)
    prefix = r.choice(ID_PREFIXES) + r.choice(ID_SEPARATORS)
    return prefix + r.choice([
        f"{r.randint(0, 9)}.{r.randint(0, 20)}.{r.randint(0, 30)}.{r.randint(0, 9)}."
        f"{r.randint(0, 99)}",
        f"v{r.randint(0, 9)}.{r.randint(0, 20)}.{r.randint(256, 999)}.{r.randint(0, 9)}",
        f"{r.randint(10, 99)}.0.{r.randint(10000, 30000)}.{r.randint(1000, 9999)}",
        f"{y}-{m:02d}-{d:02d}", f"{y}.{m:02d}.{d:02d}", f"{y}-{m:02d}-{d:02d}T10:00:00Z",
        f"ORD-{y}-{r.randint(10000, 99999)}", f"{y}-{m:02d}-{d:02d}-{r.randint(1, 999999):06d}",
        f"inv/{y}/{r.randint(1, 999999):06d}",
        str(_uuid(r)), f"{r.getrandbits(128):032x}", f"{r.getrandbits(64):016x}",
        bad_card, f"{y}-{bad_card}", f"{bad_card}-retry",
        str(r.randint(10 ** 12, 2 * 10 ** 12)), str(r.randint(10 ** 18, 2 * 10 ** 18)),
        f"{r.randint(1_600_000_000, 1_800_000_000)}",
        f"0.{r.randint(10 ** 15, 10 ** 16 - 1)}",
        str(r.randint(2 * 10 ** 9, 10 ** 10 - 1)),
        "-".join(f"{r.randint(0, 9999):04d}" for _ in range(5)),
    ])


def _uuid(r: random.Random) -> str:
    h = f"{r.getrandbits(128):032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def samples(n: int, seed: int = 7) -> list[Sample]:
    r = random.Random(seed)
    # drawn apart, so the rest of a seed's corpus is what it was before they were planted
    hide = random.Random(seed + 1_000_003)
    glue_ids = random.Random(seed + 2_000_003)
    out: list[Sample] = []
    kinds = list(MAKERS)
    for i in range(n):
        template = TEMPLATES[i % len(TEMPLATES)]
        values: dict[str, tuple[str | None, str, str, str]] = {}
        tails: dict[str, str] = {}  # an IPv4 address that ends the id a value is glued into
        for slot in ("x", "y"):
            kind = kinds[(i + (slot == "y")) % len(kinds)] if r.random() < 0.9 else None
            value = MAKERS[kind](r) if kind else lookalike(r)
            glue = r.choice(GLUE) if kind == "card" and r.random() < 0.1 else ""
            # what is around a value but not personal data: "tel. ", brackets, a port
            around = _AROUND.fullmatch(value)
            if around is not None:
                glue += around.group(1) or ""
                value = around.group(2)
            after = (around.group(3) if around else "") or ""
            address = ""
            if glue_ids.random() < 0.15 and kind in ("email", "phone", "card", "ip") and \
                    not glue and not after:
                before, value, after, address = _glued(glue_ids, kind, value)
                glue = before
            if len(value) > 1 and hide.random() < 0.1:
                value = _hide(hide, value)
            values[slot] = (kind, value, glue, after)
            if address:
                tails[slot] = address
        for slot in ("n", "m"):
            value = lookalike(r)
            if glue_ids.random() < 0.15:
                value = id_lookalike(glue_ids)
            values[slot] = (None, _hide(hide, value) if hide.random() < 0.1 else value, "", "")
        values["a"] = (None, r.choice(FIRST).title(), "", "")
        shape = r.random()
        encoding = ENCODINGS[0] if shape < 0.2 else ENCODINGS[1] if shape < 0.3 else None
        text, truth = _fill(template, values, encoding, tails)
        out.append(Sample(text=text, truth=truth))
    return out


_AROUND = re.compile(r"(tel\.\s|\[)?(.+?)(\]:\d+|(?:(?<=\.\d)|(?<=\.\d\d)|(?<=\.\d\d\d)):\d+)?")


def _fill(template: str, values: dict[str, tuple[str | None, str, str, str]],
          encoding: tuple[str, Callable[[str], str], str, str] | None = None,
          tails: dict[str, str] | None = None) -> tuple[str, list[tuple[str, int, int]]]:
    enc: Callable[[str], str] = encoding[1] if encoding else (lambda piece: piece)
    text = encoding[2] if encoding else ""
    truth: list[tuple[str, int, int]] = []
    pos = 0
    for m in re.finditer(r"(?<!\{)\{([a-z])\}(?!\})", template):
        kind, value, before, after = values[m.group(1)]
        text += enc(template[pos:m.start()].replace("{{", "{").replace("}}", "}") + before)
        value = enc(value)
        if kind is not None:
            truth.append((kind, len(text), len(text) + len(value)))
        text += value + enc(after)
        tail = (tails or {}).get(m.group(1))
        if tail:
            tail = enc(tail)
            truth.append(("ip", len(text), len(text) + len(tail)))
            text += tail
        pos = m.end()
    text += enc(template[pos:].replace("{{", "{").replace("}}", "}"))
    text += encoding[3] if encoding else ""
    return text, truth


@dataclass
class Score:
    true: int = 0  # true values
    found: int = 0  # findings
    hits: int = 0  # true values found whole (findings of the kind cover all of them)
    right: int = 0  # findings that overlap a true value of their kind

    @property
    def recall(self) -> float:
        return self.hits / self.true if self.true else 1.0

    @property
    def precision(self) -> float:
        return self.right / self.found if self.found else 1.0


def _covered(found: list[Found], kind: str, start: int, end: int) -> bool:
    """Whether findings of ``kind`` mask all of ``start:end`` (findings do not overlap)."""
    pos = start
    for f in found:
        if f.kind == kind and f.start <= pos < f.end:
            pos = f.end
    return pos >= end


def score(redactor: Redactor, corpus: list[Sample]) -> dict[str, Score]:
    scores = {k: Score() for k in KINDS}
    for s in corpus:
        found = redactor.find(s.text)
        for kind, start, end in s.truth:
            scores[kind].true += 1
            if _covered(found, kind, start, end):
                scores[kind].hits += 1
        for f in found:
            scores[f.kind].found += 1
            if any(kind == f.kind and f.start < end and start < f.end
                   for kind, start, end in s.truth):
                scores[f.kind].right += 1
    return scores


def misses(redactor: Redactor, corpus: list[Sample], kind: str) -> list[str]:
    """Texts where a true value of ``kind`` was not found (to look at)."""
    out = []
    for s in corpus:
        found = redactor.find(s.text)
        for k, start, end in s.truth:
            if k == kind and not _covered(found, k, start, end):
                out.append(s.text[start:end])
    return out


def false_finds(redactor: Redactor, corpus: list[Sample], kind: str) -> list[str]:
    """Findings of ``kind`` that are not a true value of it (to look at)."""
    out = []
    for s in corpus:
        for f in redactor.find(s.text):
            if f.kind == kind and not any(k == kind and f.start < end and start < f.end
                                          for k, start, end in s.truth):
                out.append(f.value)
    return out
