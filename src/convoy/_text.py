"""Text that Convoy stores or shows: names without control characters, values without lone
surrogates.

* A name that identifies something (a session id, a signal name, a state namespace or key)
  is shown in tables, logs and commands to copy: a control character (Unicode category
  ``Cc``: ESC, CR, newline, NUL, ...) or a bidi override could clear a terminal, forge a row
  or make one name read as another, so such a name is refused where it enters.
* A lone surrogate (``"\\ud800"`` in JSON, half of a UTF-16 pair) is not text: UTF-8 cannot
  encode it, so no store can hold it and nothing could read it back. A value holding one is
  refused before it is stored.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError, from_json, to_json

from convoy._errors import UserError

#: Control characters (category ``Cc``) and the bidi embeddings, overrides and isolates.
_UNSHOWABLE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_SURROGATE = re.compile("[\ud800-\udfff]")
#: Shown escaped too, though a name may hold them: characters a terminal draws as nothing
#: (zero-width space, direction marks, line and paragraph separators, a byte-order mark),
#: so two ids that differ only by one look alike. (Not the zero-width joiners emoji use.)
_INVISIBLE = re.compile("[\u200b\u200e\u200f\u2028\u2029\u061c\ufeff]")


def check_name(name: str, what: str) -> str:
    """``name`` if it is not empty (nor only spaces) and holds no control character, bidi
    override or lone surrogate, else :class:`~convoy.UserError` saying so (``what``:
    ``"signal name"``, ...)."""
    if isinstance(name, str):
        if not name.strip():
            raise UserError(f"the {what} is {blank(name)}: name it with at least one "
                            "visible character")
        m = _UNSHOWABLE.search(name) or _SURROGATE.search(name)
        if m is not None:
            raise UserError(f"{what} '{_cut(escaped(name), 80)}' holds the character "
                            f"{_code(m.group())}, which cannot be shown as it is; use "
                            "printable characters only")
    return name


def check_storable_name(name: str, what: str) -> str:
    """``name`` if every store can hold it as text, else :class:`~convoy.UserError`: not
    text, or holding a NUL (PostgreSQL's text has none) or a lone surrogate (no UTF-8
    for it: a file name ``os.fsdecode`` made of bytes that are not UTF-8). A name
    journaled as it is (a step's), where :func:`check_name` would refuse more."""
    if not isinstance(name, str):
        raise UserError(f"the {what} must be text, got {type(name).__name__}")
    m = _NUL_OR_SURROGATE.search(name) if "\x00" in name or not name.isascii() else None
    if m is not None:
        raise UserError(f"{what} '{_cut(escaped(name), 80)}' holds the character "
                        f"{_code(m.group())}, which a store cannot hold as text; name it "
                        "without it (a file name: os.fsencode(name).decode('utf-8', "
                        "'replace'))")
    return name


_NUL_OR_SURROGATE = re.compile("[\x00\ud800-\udfff]")


def unshowable(text: str) -> str | None:
    """The first control character, bidi override or lone surrogate of ``text``, written
    as an escape (``\\x01``, ``\\u202e``), or ``None``."""
    m = _UNSHOWABLE.search(text) or _SURROGATE.search(text)
    return None if m is None else _code(m.group())


def blank(name: str) -> str:
    """How a message says that ``name`` (empty or only spaces) names nothing."""
    return "empty" if not name else f"empty (only spaces: {quoted(name, 40)})"


def lone_surrogate(value: Any) -> str | None:
    """The first lone surrogate in ``value`` (decoded JSON: its strings, keys included), or
    ``None``."""
    if isinstance(value, str):
        m = _SURROGATE.search(value)
        return None if m is None else m.group()
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, list | tuple):
        for item in value:
            found = lone_surrogate(item)
            if found is not None:
                return found
    return None


def surrogate_problem(char: str) -> str:
    """Why a value holding the lone surrogate ``char`` is refused, and what to do."""
    return (f"a lone surrogate {_code(char)} cannot be stored; it is half of a UTF-16 pair: "
            "write the character itself, or both halves of its pair")


#: How deep arrays and objects of a value to store may nest (the JSON encoder stops at
#: 255 levels; a stored value is sometimes wrapped in a few more).
MAX_DEPTH = 200
#: Why a value nested deeper than :data:`MAX_DEPTH` is refused, and what to do.
TOO_DEEP = (f"arrays and objects nest more than {MAX_DEPTH} levels deep, more than "
            "Convoy stores; flatten the value")


#: Why NaN and infinite numbers are refused where JSON is read.
NOT_FINITE = "NaN and infinite numbers are not JSON"


def huge_int() -> str:
    """Why an integer with more digits than Python converts (4300 unless
    ``sys.set_int_max_str_digits`` or ``PYTHONINTMAXSTRDIGITS`` says otherwise) is refused
    where JSON is read or stored, and what to do."""
    return (f"an integer with more than {sys.get_int_max_str_digits()} digits, more than "
            "Python reads as a number; write it as a string")


def read_json(text: str | bytes) -> Any:
    """``json.loads(text)``, but an integer with more digits than Python converts is a
    ``ValueError`` saying :func:`huge_int` (not Python's message, which names a function
    to call), and nesting past what the decoder reaches one saying :data:`TOO_DEEP` (not
    a ``RecursionError``). A ``json.JSONDecodeError`` says what else is wrong."""
    try:
        return json.loads(text, parse_int=json_int)
    except RecursionError:
        raise ValueError(TOO_DEEP) from None


def strict_json(text: str) -> Any:
    """:func:`read_json` as JSON is written: ``NaN``, ``Infinity`` and ``1e999`` (which
    Python's decoder reads, and no other reader does) are a ``ValueError`` saying
    :data:`NOT_FINITE` too."""
    try:
        return json.loads(text, parse_constant=_not_finite, parse_float=_finite,
                          parse_int=json_int)
    except RecursionError:
        raise ValueError(TOO_DEEP) from None


def json_int(token: str) -> int:
    """An integer of JSON (``json.loads``'s ``parse_int``): one with more digits than
    Python converts is a ``ValueError`` saying :func:`huge_int`."""
    try:
        return int(token)
    except ValueError:  # (the decoder matched digits: only too many of them)
        raise ValueError(huge_int()) from None


def _not_finite(token: str) -> Any:
    raise ValueError(NOT_FINITE)


def _finite(token: str) -> float:
    number = float(token)
    if not math.isfinite(number):  # 1e999
        raise ValueError(NOT_FINITE)
    return number


def undecodable_byte(text: str) -> int | None:
    """The first byte of ``text`` that was not UTF-8 where it came from (a command line,
    a file name: Python keeps each such byte as a lone surrogate U+DC80..U+DCFF), if any."""
    char = next((c for c in text if "\udc80" <= c <= "\udcff"), None)
    return None if char is None else ord(char) - 0xDC00


def json_type(value: Any) -> str:
    """What a decoded JSON value is, in JSON's words (``null``, ``an array``): for a message
    about a document of the wrong shape, which Python's type names (``NoneType``,
    ``list``) do not tell its author."""
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


def json_object(text: str | None) -> dict[str, Any]:
    """The JSON object ``text`` holds (a journaled result, an error record), ``{}`` if it
    holds none that can be read (not JSON, another type, nested past the decoder)."""
    try:
        value = from_json(text or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether decoded JSON ``value`` nests arrays and objects more than ``limit`` deep
    (without recursion: any depth is measured)."""
    level: list[Any] = [value]
    depth = 0
    while level:
        inner = [v for x in level if isinstance(x, dict | list | tuple)
                 for v in (x.values() if isinstance(x, dict) else x)]
        if not inner and not any(isinstance(x, dict | list | tuple) for x in level):
            return False
        depth += 1
        if depth > limit:
            return True
        level = inner
    return False


def check_storable(value: Any, what: str) -> Any:
    """``value`` (decoded JSON) if it holds no lone surrogate and does not nest too deep,
    else :class:`~convoy.UserError` (``what``: what the value is, e.g. ``"--payload"``)."""
    if too_deep(value):
        raise UserError(f"{what}: {TOO_DEEP}")
    char = lone_surrogate(value)
    if char is not None:
        raise UserError(f"{what}: {surrogate_problem(char)}")
    return value


def storable_json(value: Any, what: str,
                  dump: Callable[[Any], bytes] = to_json) -> bytes:
    """``dump(value)`` (JSON to store); a value with a lone surrogate (JSON has no UTF-8 for
    it), nested too deep, or holding an integer too long to read back (:func:`huge_int`)
    is a :class:`~convoy.UserError` naming ``what``, not pydantic's serialisation error
    (nor a value no reader decodes). Other serialisation errors propagate."""
    try:
        data = dump(value)
    except PydanticSerializationError as e:
        if "serialization depth exceeded" in str(e):
            raise UserError(f"{what}: {TOO_DEEP}") from None
        if "surrogates not allowed" not in str(e):
            raise
        m = re.search(r"\\u(d[89a-f][0-9a-f]{2})", str(e), re.IGNORECASE)
        char = chr(int(m.group(1), 16)) if m else "\ud800"
        raise UserError(f"{what}: {surrogate_problem(char)}") from None
    if holds_huge_int(data):
        raise UserError(f"{what}: {huge_int()}")
    return data


def holds_huge_int(data: str | bytes) -> bool:
    """Whether JSON ``data`` holds an integer with more digits than Python reads (the
    encoder writes one, no decoder reads it back). Only JSON with a run of that many
    digits is decoded to tell (a string of digits is no number)."""
    limit = sys.get_int_max_str_digits()
    if not limit or len(data) <= limit:
        return False
    # (a run is matched from its first digit only: linear however many runs)
    run = f"(?<![0-9])[0-9]{{{limit + 1}}}"
    found = (re.search(run.encode(), data) if isinstance(data, bytes)
             else re.search(run, data))
    if found is None:
        return False
    try:
        read_json(data)
    except ValueError as e:
        return str(e) == huge_int()
    return False


def escaped(text: str) -> str:
    """``text`` with its control characters, bidi overrides and lone surrogates written as
    escapes (``\\x1b``, ``\\n``, ``\\u202e``), for a terminal: what a name holds, shown
    rather than obeyed."""
    if _UNSHOWABLE.search(text) is None and _SURROGATE.search(text) is None and \
            _INVISIBLE.search(text) is None:
        return text
    for pattern in (_UNSHOWABLE, _INVISIBLE, _SURROGATE):
        text = pattern.sub(lambda m: _code(m.group()), text)
    return text


def short(text: str, width: int = 72) -> str:
    """``text`` on one line of at most ``width`` characters, escaped (what a terminal would
    obey, an ESC sequence in an error message, is shown instead)."""
    return _cut(escaped(" ".join(text.split())), width)


def quoted(name: str, width: int = 80) -> str:
    """``name`` (an id, a key, a value read back from the store) as a message quotes it:
    as ``repr`` does (so it reads as every ``{name!r}`` of the other messages, ``"' OR
    1=1 --"`` for a name with a quote in it; what a terminal would obey or draw as nothing
    is an escape), cut to ``width`` characters first: a 100,000-character id on the
    command line makes a short line, not a 100 KB one."""
    shown = repr(_cut(name, width))
    if len(shown) > 2 * width:  # escapes (tabs, emoji joined) stretched it: cut again
        shown = shown[:2 * width - 2].rstrip("\\") + "…" + shown[0]
    return shown


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def printable(text: str) -> str:
    """:func:`escaped`, but lines and tabs kept: text meant to be read (a question, a
    comment) with what a terminal would obey instead of show (ESC, a bidi override, a
    carriage return) written as escapes."""
    return "\n".join("\t".join(escaped(part) for part in line.split("\t"))
                     for line in text.split("\n"))


def _code(char: str) -> str:
    return f"\\u{ord(char):04x}" if ord(char) > 0xFF else repr(char)[1:-1]


def readable_validation_error(e: ValidationError) -> str:
    """``body: Field required; priority: Input should be 'low' or 'high'``: where and what,
    on one line, without the input values Pydantic attaches to its errors (a message can
    still quote part of one, a union's tag say, and a location can be a key of the input:
    a log line about personal data uses the error types alone)."""
    parts = []
    for err in e.errors(include_url=False):
        loc = ".".join(str(x) for x in err["loc"]) or "(input)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def validation_error_types(e: ValidationError) -> list[str]:
    """The error types of ``e`` (``missing``, ``int_parsing``), each once: what a message
    about personal data says of it (names of the code, never of the input)."""
    return list(dict.fromkeys(err["type"] for err in e.errors(include_url=False)))


def validation_error_kinds(e: ValidationError) -> str:
    """``1 error (bool_parsing)``, ``7 errors (missing, int_parsing, ... and 2 more)``: how
    many errors ``e`` holds, of which kinds (:func:`validation_error_types`), on one short
    line, for a log line about a value that may be personal data."""
    kinds = validation_error_types(e)
    shown = ", ".join(escaped(k[:40]) for k in kinds[:5])
    more = f" and {len(kinds) - 5} more" if len(kinds) > 5 else ""
    n = e.error_count()
    return f"{n} error{'s' if n != 1 else ''} ({shown}{more})"


__all__ = [
    "MAX_DEPTH",
    "NOT_FINITE",
    "TOO_DEEP",
    "blank",
    "check_name",
    "check_storable",
    "escaped",
    "holds_huge_int",
    "huge_int",
    "json_int",
    "lone_surrogate",
    "quoted",
    "read_json",
    "readable_validation_error",
    "short",
    "storable_json",
    "strict_json",
    "surrogate_problem",
    "too_deep",
    "undecodable_byte",
    "unshowable",
    "validation_error_kinds",
    "validation_error_types",
]


def a_word(word: str) -> str:
    """``word`` with its article: ``an int``, ``a str``, ``an approval``."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"


def plural(n: int, word: str, *, number: bool = True, many: str | None = None) -> str:
    """``1 step``, ``2 steps`` (``number=False``: the word alone; ``many``: the plural,
    when it is not the word and an ``s``)."""
    form = word if n == 1 else many or word + "s"
    return f"{n:,} {form}" if number else form


def import_failed(name: str, e: ImportError, what: str = "",
                  where: str = "Run from the directory that contains it, or put it on "
                               "PYTHONPATH") -> str:
    """The line for module ``name`` (``what``: `` for workflow 'x'``) that ``e`` kept from
    importing: the module itself not found (``where`` to look); a module it imports that
    is not found (a package not installed, or a module of one that is: looking for
    ``name`` elsewhere would not help); or an import in its code that failed (a name a
    module does not have, a circular import)."""
    import importlib.util

    if not isinstance(e, ModuleNotFoundError):  # (raised by the module's own code)
        return f"importing module {quoted(name)}{what} failed: ImportError: {short(str(e), 200)}"
    missing = e.name
    if not missing or missing == name or name.startswith(missing + "."):
        return f"cannot import module {quoted(name)}{what}: {short(str(e), 200)}. {where}"
    top = missing.partition(".")[0]
    try:
        found = top != missing and importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        found = False
    return (f"importing module {quoted(name)}{what} failed: a module it imports, "
            f"{quoted(missing)}, " + (f"cannot be found ({quoted(top)} is there, without "
                                      "it): check the name, or install what provides it "
                                      "(a namespace package's parts are installed apart)"
                                      if found else
                                      "cannot be found: install it in the environment "
                                      "convoy runs in (or put it on PYTHONPATH)"))
