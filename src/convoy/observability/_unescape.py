"""Backslash escapes read as the characters they stand for, with a map back to the text
they were read from.

Telemetry carries text that was escaped on its way: JSON (``json.dumps`` writes a newline
as ``\\n`` and, by default, ``ö`` as ``\\u00f6``) and ``repr`` (an exception's message, a
dict of tool arguments). The redactor looks for personal data in the unescaped text, where
``x\\n4539...`` is ``x``, a newline and a card number rather than a word ``n4539...``, and
masks the escaped text the finding maps back to.
"""

from __future__ import annotations

import bisect
import re

# The escapes of JSON, Python's repr and C: one character each, except \\uXXXX (a UTF-16
# code unit), \\xXX and \\UXXXXXXXX.
_ESCAPE = re.compile(r"\\(?:u[0-9A-Fa-f]{4}|x[0-9A-Fa-f]{2}|U(?:000[0-9A-Fa-f]|0010)[0-9A-Fa-f]{4}|"
                     r"[ntrfbv\\\"'/])")
_SIMPLE = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "b": "\b", "v": "\v", "\\": "\\",
           '"': '"', "'": "'", "/": "/"}
# Text escaped twice (JSON in a JSON string) is read twice; more is not worth the work.
_DEPTH = 3


class Unescaped:
    """``text`` with its escapes read: :attr:`text` is what they stand for, and
    :meth:`span` maps a span of it back to the span of the original text it was read from
    (an escape is never cut: a span that ends inside what an escape stands for covers all
    of the escape)."""

    __slots__ = ("_escape", "_offset", "_origin", "_parent", "text")

    def __init__(self, text: str, parent: Unescaped | None = None) -> None:
        self._parent = parent
        # Pieces of the unescaped text, in order: where each starts in it (_offset), where
        # it starts in the text it was read from (_origin), and, for an escape, how long
        # the escape was there (_escape; 0 for a piece copied as it was).
        self._offset: list[int] = []
        self._origin: list[int] = []
        self._escape: list[int] = []
        parts: list[str] = []
        pos = out = 0
        for m in _ESCAPE.finditer(text):
            a, b = m.span()
            if a > pos:
                self._piece(out, pos, 0)
                parts.append(text[pos:a])
                out += a - pos
            body = m.group()[1:]
            char = _SIMPLE.get(body) or chr(int(body[1:], 16))
            self._piece(out, a, b - a)
            parts.append(char)
            out += 1
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


def unescape(text: str) -> Unescaped | None:
    """``text`` with its escapes read (up to three levels deep), or None if it has none."""
    if "\\" not in text or _ESCAPE.search(text) is None:
        return None
    read = Unescaped(text)
    for _ in range(_DEPTH - 1):
        if "\\" not in read.text or _ESCAPE.search(read.text) is None:
            break
        read = Unescaped(read.text, read)
    return read


__all__ = ["Unescaped", "unescape"]
