"""Redacting a value before it is written as JSON text (a span attribute, a log field).

Redaction runs on each string of the value *before* it is encoded: once encoded, an
escape (``\\n``, ``\\u00e9``) sits right against a value and hides it from patterns that
want a boundary there. Keys are strings like any other, a number may be a card or a phone
number (an ``int``, or a ``float`` with an integer's value: ``4539148803436467.0``), and an
object JSON does not know is redacted as the ``str()`` it would be written as. Text is
redacted before it is cut to its bound, so a cut cannot leave the head of a value that the
redactor would only recognise whole (see :func:`bounded`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from typing import Any

#: How far past a bound a text is still redacted before it is cut: longer than any value
#: the redactor finds (an e-mail address is at most 254 characters), so a value the cut
#: goes through is seen whole.
_MARGIN = 512
#: Nesting deeper than this is written as redacted text (and a cycle cannot recurse).
_DEPTH = 32
#: A key that says its value is a phone number (``phone``, ``mobile_number``,
#: ``contactPhone``, ``phone_2``, ``phone_e164``, ``cellphone``, ``phones``): its last
#: word, past words that only qualify it (a number, ``home``, ``work``, ``number``) and
#: trailing digits, is one of these. ``cell_id``, ``sms_message_id``, ``fax_job_id`` end in
#: another word; ``microphone``, ``cells`` are other things.
_PHONE_WORDS = frozenset({
    "phone", "phones", "tel", "tels", "telephone", "telephones", "mobile", "mobiles", "cell",
    "cellphone", "cellphones", "smartphone", "homephone", "workphone", "mobilephone", "fax",
    "faxes", "whatsapp", "sms", "msisdn", "msisdns"})
_QUALIFIERS = frozenset({"number", "numbers", "num", "no", "nr", "home", "work", "office",
                         "business", "personal", "private", "main", "primary", "secondary",
                         "alt", "other", "direct", "e164", "intl", "international",
                         "national"})
_WORDS = re.compile(r"[\W_]+|(?<=[a-z])(?=[A-Z])")


def _phone_key(key: object) -> bool:
    """Whether ``key`` says its value is a phone number."""
    if not isinstance(key, str):
        return False
    lowered = [w.lower() for w in _WORDS.sub(" ", key).split()]
    while lowered and (lowered[-1] in _QUALIFIERS or lowered[-1].isdigit()):
        lowered.pop()
    return bool(lowered) and lowered[-1].rstrip("0123456789") in _PHONE_WORDS


def scrub(value: Any, redact: Callable[[str], str], limit: int | None = None,
          _depth: int = 0) -> Any:
    """``value`` with every string in it (keys too) redacted; a number the redactor would
    change becomes its redacted text; another object its redacted ``str()``. ``limit``:
    strings longer than this are :func:`bounded` to it, since at most that much of any of
    them is kept."""
    if isinstance(value, str):
        return redact(value) if limit is None or len(value) <= limit + _MARGIN else \
            bounded(value, redact, limit)
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, float):
        if not (value.is_integer() and abs(value) >= 1e5):
            return value  # (an amount, a ratio: no card nor phone number)
        text = str(int(value))  # as the number it is: 4539148803436467.0 is a card
        masked = redact(text)
        return value if masked == text else masked
    if isinstance(value, int):
        text = str(value)
        masked = redact(text)
        return value if masked == text else masked
    if isinstance(value, bytes | bytearray):  # (its text, not ``b'...'``: what it says)
        return scrub(bytes(value).decode("utf-8", "replace"), redact, limit, _depth)
    if _depth < _DEPTH:
        if isinstance(value, dict):
            out: dict[str, Any] = {}
            for k, v in value.items():
                key = text_of(k)
                out[unique_key(scrub(key, redact, limit), out)] = \
                    scrub_item(key, v, redact, limit, _depth + 1)
            return out
        if isinstance(value, list | tuple):
            return [scrub(v, redact, limit, _depth + 1) for v in value]
    return scrub(text_of(value), redact, limit)


def text_of(value: object) -> str:
    """``str(value)``, or, when that raises (a half-built object, a proxy whose target is
    gone), a text that says so: one value that has no text does not lose what it is in
    (a log record, a span)."""
    try:
        return str(value)
    except Exception as e:  # (any: the caller writes the rest all the same)
        return f"<{type(value).__name__}: str() raised {type(e).__name__}>"


def scrub_item(key: str, value: Any, redact: Callable[[str], str], limit: int | None = None,
               _depth: int = 0) -> Any:
    """:func:`scrub` of ``value``, the value of ``key`` in a mapping (a log field, a tool's
    argument): under a key that says it is a phone number (:func:`_phone_key`), text or an
    integer the redactor leaves alone is read after the key's words (``phone:
    4155552671``), and digits alone in international form too (an integer cannot hold the
    ``+``; an MSISDN is written without it); so is each item of a list under it."""
    cue = _phone_key(key)
    if isinstance(value, bytes | bytearray):  # (its text, read as text is: under the key)
        value = bytes(value).decode("utf-8", "replace")
    if cue and isinstance(value, list | tuple) and _depth < _DEPTH:
        return [scrub_item(key, v, redact, limit, _depth + 1) for v in value]
    out = scrub(value, redact, limit, _depth)
    if not cue or type(value) not in (str, int) or type(out) is not type(value) \
            or out != value:
        return out
    head = "phone: "  # (the word the redactor reads as the cue, whatever the key's)
    digits = str(value)
    for text in (digits, "+" + digits) if digits.isdigit() else (digits,):
        masked = redact(head + text)
        if masked != head + text and masked.startswith(head):
            return masked[len(head):]
    return out


def unique_key(key: str, taken: Collection[str]) -> str:
    """``key``, or, when ``taken`` has it already (two keys that redact to the same text,
    such as two e-mail addresses), ``key (2)``, ``key (3)``, ...: no value is dropped."""
    if key not in taken:
        return key
    n = 2
    while f"{key} ({n})" in taken:
        n += 1
    return f"{key} ({n})"


def bounded(text: str, redact: Callable[[str], str], limit: int) -> str:
    """``text`` redacted, then cut to at most ``limit`` characters, with no part of a value
    the redactor would find in the whole text.

    A long text is redacted as two of its heads, the second longer than the first by more
    than any value the redactor finds. A value the first head's end cuts through is whole
    in the second, so the two redacted heads differ from where it begins (a mask in one,
    its digits in the other): only what they have in common is kept. (Redacting just past
    the bound is not enough: masks shorter than what they replace, ``[EMAIL]`` for a long
    address, pull what comes after them, a cut value included, under the bound.)"""
    if len(text) <= limit + _MARGIN:
        return redact(text)[:limit]
    first = redact(text[:limit + _MARGIN])[:limit]
    second = redact(text[:limit + 3 * _MARGIN])
    same = next((i for i, (a, b) in enumerate(zip(first, second, strict=False)) if a != b),
                min(len(first), len(second)))
    return first[:same]


__all__ = ["bounded", "scrub", "scrub_item", "text_of", "unique_key"]
