"""Backslash escapes read as the characters they stand for, and invisible characters read
as nothing, with a map back to the text they were read from.

Telemetry carries text that was escaped on its way: JSON (``json.dumps`` writes a newline
as ``\\n`` and, by default, ``ö`` as ``\\u00f6``) and ``repr`` (an exception's message, a
dict of tool arguments). The redactor looks for personal data in the unescaped text, where
``x\\n4539...`` is ``x``, a newline and a card number rather than a word ``n4539...``, and
masks the escaped text the finding maps back to.

A zero-width space, a soft hyphen or a byte order mark shows as nothing, yet inside a value
(``ada\\u200b@example.org``, ``4539\\u200b1488...``) it hides the value from every pattern;
:func:`visible` reads text without them, and a finding there maps back to all of the
value, the invisible characters in it included.
"""

from __future__ import annotations

import bisect
import re

# The escapes of JSON, Python's repr and C: one character each, except \\uXXXX (a UTF-16
# code unit; two, a surrogate pair, stand for one character beyond U+FFFF, as JSON writes
# one), \\xXX and \\UXXXXXXXX.
# Then the escapes of URLs (a percent-escape of an ASCII character: %40, %2B, %20; the
# bytes of other characters are left as they are) and HTML's character references (&#64;,
# &#x40;, &commat;, and the &nbsp; HTML puts between the groups of a number).
_ESCAPE = re.compile(r"\\(?:u[Dd][89ABab][0-9A-Fa-f]{2}\\u[Dd][C-Fc-f][0-9A-Fa-f]{2}|"
                     r"u[0-9A-Fa-f]{4}|x[0-9A-Fa-f]{2}|U(?:000[0-9A-Fa-f]|0010)[0-9A-Fa-f]{4}|"
                     r"[ntrfbv\\\"'/])|%[0-7][0-9A-Fa-f]|&#(?:[0-9]{1,6}|[xX][0-9A-Fa-f]{1,5});"
                     r"|&commat;|&nbsp;")
_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "b": "\b", "v": "\v", "\\": "\\",
           '"': '"', "'": "'", "/": "/"}
# Text escaped twice (JSON in a JSON string) is read twice; more is not worth the work.
_DEPTH = 3
# What shows as nothing: Unicode's format characters (category Cf, as of Unicode 15: zero-
# width space, non-joiner and joiner, word joiner, byte order mark, soft hyphen, bidi
# controls, tags) and its other default-ignorable code points that are not letters (the
# combining grapheme joiner, variation selectors; U+E0000-E0FFF is kept for more of them).
# None is a word character (\w): text that is one word has none in it.
_INVISIBLE = re.compile(
    "[\u00ad\u034f\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u17b4\u17b5"
    "\u180b-\u180f\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufe00-\ufe0f\ufeff\ufff0-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0000-\U000e0fff]+")


class Unescaped:
    """``text`` with its escapes read: :attr:`text` is what they stand for, and
    :meth:`span` maps a span of it back to the span of the original text it was read from
    (an escape is never cut: a span that ends inside what an escape stands for covers all
    of the escape). With ``drop``, ``text`` without its invisible characters instead: each
    run of them is an escape that stands for nothing, so a span across one covers it."""

    __slots__ = ("_escape", "_offset", "_origin", "_parent", "text")

    def __init__(self, text: str, parent: Unescaped | None = None, *,
                 drop: bool = False) -> None:
        self._parent = parent
        # Pieces of the unescaped text, in order: where each starts in it (_offset), where
        # it starts in the text it was read from (_origin), and, for an escape, how long
        # the escape was there (_escape; 0 for a piece copied as it was).
        self._offset: list[int] = []
        self._origin: list[int] = []
        self._escape: list[int] = []
        parts: list[str] = []
        pos = out = 0
        # A piece that stands for nothing starts where the next one does; a position is
        # looked up as in the last piece starting at or before it, so it is never that one.
        for m in (_INVISIBLE if drop else _ESCAPE).finditer(text):
            a, b = m.span()
            if a > pos:
                self._piece(out, pos, 0)
                parts.append(text[pos:a])
                out += a - pos
            char = "" if drop else _read(m.group())
            self._piece(out, a, b - a)
            parts.append(char)
            out += len(char)
            pos = b
        if pos < len(text):
            self._piece(out, pos, 0)
            parts.append(text[pos:])
        self.text = "".join(parts)

    def _piece(self, offset: int, origin: int, escape: int) -> None:
        self._offset.append(offset)
        self._origin.append(origin)
        self._escape.append(escape)

    def span(self, start: int, end: int) -> tuple[int, int]:
        """The span of the original text that ``self.text[start:end]`` was read from."""
        s, e = self._start(start), self._end(end)
        return self._parent.span(s, e) if self._parent is not None else (s, e)

    def _start(self, i: int) -> int:
        j = bisect.bisect_right(self._offset, i) - 1
        return self._origin[j] + (0 if self._escape[j] else i - self._offset[j])

    def _end(self, i: int) -> int:
        j = bisect.bisect_right(self._offset, i - 1) - 1
        escape = self._escape[j]
        return self._origin[j] + (escape if escape else i - self._offset[j])


def _read(escape: str) -> str:
    """The character an escape stands for."""
    lead = escape[0]
    if lead == "%":
        return chr(int(escape[1:], 16))
    if lead == "&":
        if escape == "&commat;":
            return "@"
        if escape == "&nbsp;":
            return "\u00a0"  # (between the groups of a number, as HTML writes it)
        number = escape[2:-1]
        return chr(int(number[1:], 16) if number[0] in "xX" else int(number))
    body = escape[1:]
    return _SIMPLE.get(body) or (chr(int(body[1:], 16)) if len(body) < 11 else _pair(body))


def _pair(body: str) -> str:
    """The character a surrogate pair (``uD8xx\\uDCxx``) stands for."""
    high, low = int(body[1:5], 16), int(body[7:], 16)
    return chr(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))


def unescape(text: str) -> Unescaped | None:
    """``text`` with its escapes read (up to three levels deep), or None if it has none."""
    if not _escaped(text):
        return None
    read = Unescaped(text)
    for _ in range(_DEPTH - 1):
        if not _escaped(read.text):
            break
        read = Unescaped(read.text, read)
    return read


def _escaped(text: str) -> bool:
    return ("\\" in text or "%" in text or "&" in text) and _ESCAPE.search(text) is not None


def visible(text: str, parent: Unescaped | None = None) -> Unescaped | None:
    """``text`` without its invisible characters, or None if it has none (``parent``: what
    ``text`` was read from, if it was). ASCII text, the common case, is not searched."""
    if text.isascii() or _INVISIBLE.search(text) is None:
        return None
    return Unescaped(text, parent, drop=True)


def invisible_at(text: str, i: int) -> bool:
    """Whether ``text[i]`` is an invisible character (False outside ``text``)."""
    return 0 <= i < len(text) and _INVISIBLE.match(text, i) is not None


__all__ = ["Unescaped", "invisible_at", "unescape", "visible"]
