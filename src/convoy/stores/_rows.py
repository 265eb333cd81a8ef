"""What the SQLite and PostgreSQL stores build their statements from alike: journal row
parameters, the journal's write order, session-list filters (only the placeholder
differs), what a summary of the store counts, and how the values of a row read back are
checked: a row edited by hand (text where a number belongs, bytes where text does, JSON
that is not, or nests past what can be read) is a :class:`~convoy.JournalError` saying
which value of which row, in one line, not a ``TypeError`` wherever it is first used."""

from __future__ import annotations

import json
import math
import operator
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from convoy._errors import JournalError, SessionUnreadable, error_to_record
from convoy._text import MAX_DEPTH, huge_int, json_int, quoted, too_deep

if TYPE_CHECKING:
    from convoy.stores._protocol import SessionFilter, SessionOutcome


def next_seq(last: int, now: float) -> int:
    """The journal write order after ``last``: strictly increasing in this process, close
    to time order across processes (a session is written by one engine at a time)."""
    t = int(now * 1e6)
    return t if t > last else last + 1


def conditions(status: str | None, workflow: str | None, tenant: str | None, *,
               mark: str = "?") -> tuple[str, list[Any]]:
    """A ``WHERE`` clause (or nothing) for the given filters, and its parameters."""
    where, params = [], []
    for col, value in (("status", status), ("workflow", workflow), ("tenant", tenant)):
        if value is not None:
            where.append(f"{col}={mark}")
            params.append(value)
    return (" WHERE " + " AND ".join(where)) if where else "", params


def session_page(where: SessionFilter, *, mark: str = "?") -> tuple[str, list[Any]]:
    """The ``WHERE`` clause (or nothing) of a :class:`SessionFilter`, keyset paging
    (``after``) included, and its parameters."""
    cond, params = conditions(where.status, where.workflow, where.tenant, mark=mark)
    if where.after is not None:
        created, sid = where.after
        than = "<" if where.newest else ">"
        cond += (" AND " if cond else " WHERE ") + \
            f"(created {than} {mark} OR (created = {mark} AND id {than} {mark}))"
        params += [created, created, sid]
    if where.ended_since is not None:
        cond += (" AND " if cond else " WHERE ") + f"finished >= {mark}"
        params.append(where.ended_since)
    return cond, params


def outcome_counts(outcome: SessionOutcome | None, *,
                   mark: str = "?") -> tuple[str, tuple[Any, ...]]:
    """The ``SET`` assignments (each followed by ``, ``) that write a session's counts so
    far (steps, tokens, cost) from ``outcome``, and their parameters; nothing without
    one."""
    if outcome is None:
        return "", ()
    return (f"steps={mark}, input_tokens={mark}, output_tokens={mark}, cost={mark}, ",
            (outcome.steps, outcome.input_tokens, outcome.output_tokens, outcome.cost))


def session_order(where: SessionFilter) -> str:
    """The ``ORDER BY`` of a :class:`SessionFilter`'s page: oldest first, or newest."""
    return " ORDER BY created DESC, id DESC" if where.newest else " ORDER BY created, id"


#: Journal entries, state keys (not those of Convoy's own namespaces), human tasks (kept in
#: the state table, in :data:`~convoy.hitl._task.INBOX`) and tenants, in one query.
SUMMARY = ("SELECT (SELECT COUNT(*) FROM journal), "
           "(SELECT COUNT(*) FROM state WHERE substr(namespace, 1, 7) <> 'convoy.'), "
           "(SELECT COUNT(*) FROM state WHERE namespace = 'convoy.inbox'), "
           "(SELECT COUNT(*) FROM (SELECT tenant FROM sessions UNION SELECT tenant FROM state)"
           " t)")


#: What a message about a value read back from the store ends with.
DAMAGED = "the store was edited or damaged"
#: How deep a stored JSON value may nest and still be read (what Convoy writes nests at
#: most :data:`~convoy._text.MAX_DEPTH` levels, a few more where it wraps a value).
READ_DEPTH = 2 * MAX_DEPTH


class DamagedRow(JournalError):
    """A value read back from the store that Convoy did not write: ``what`` names the row
    (``session 'x' step '1/0'``), ``problem`` the value (``its stored cost 'nan' is not
    a number``)."""

    def __init__(self, message: str, *, what: str, problem: str) -> None:
        super().__init__(message)
        self.what = what
        self.problem = problem


def damaged(what: str, problem: str) -> DamagedRow:
    """The error for a value read back from the store that Convoy did not write (see
    :class:`DamagedRow`)."""
    return DamagedRow(f"{what}: {problem}; {DAMAGED}", what=what, problem=problem)


def meta_version(key: str, value: object) -> int:
    """The version the ``meta`` row ``key`` holds (``schema_version``, ``addon:NAME``); a
    value that is no number is a :class:`DamagedRow`, not a traceback."""
    try:
        return int(str(value))
    except ValueError:
        raise damaged(f"meta row {key!r}", f"it holds {quoted(str(value))}, not a version "
                      "number") from None


@dataclass(slots=True, frozen=True, kw_only=True)
class LeftOut:
    """A row a listing left out because it is damaged: ``row`` names it, ``problem`` says
    what is wrong (as :class:`DamagedRow` does)."""

    row: str
    problem: str


_R = TypeVar("_R")
_T = TypeVar("_T")


def readable(rows: Iterable[_R], read: Callable[[_R], _T],
             left_out: list[LeftOut] | None) -> list[_T]:
    """``read`` of every row. A damaged row raises :class:`DamagedRow`, or, when
    ``left_out`` is given, is left out and added to it (a listing shows the rest)."""
    if left_out is None:
        return [read(r) for r in rows]
    kept = []
    for r in rows:
        try:
            kept.append(read(r))
        except DamagedRow as e:
            left_out.append(LeftOut(row=e.what, problem=e.problem))
    return kept


def claimed_rows(rows: Iterable[_R], read: Callable[[_R], _T], id_of: Callable[[_R], str],
                 unreadable: list[tuple[str, str]]) -> list[_T]:
    """``read`` of every row a claim took. A damaged row is not returned: its session id
    and the error (JSON) that escalates it (:class:`~convoy.SessionUnreadable`) are added
    to ``unreadable``, for the store to write, fenced on the claim (the owner it was
    just claimed by): the other sessions run, and this one waits for a person, not
    claimed again and again."""
    kept = []
    for r in rows:
        try:
            kept.append(read(r))
        except DamagedRow as e:
            sid = id_of(r)
            unreadable.append((sid, json.dumps(error_to_record(SessionUnreadable.of(
                sid, f"{e}; repair the store")))))
    return kept


def shown(value: Any) -> str:
    """A value read back from the store as a message shows it (short, escaped)."""
    if isinstance(value, bytes | bytearray | memoryview):
        return f"(binary, {len(value):,} bytes)"
    return quoted(value, 40) if isinstance(value, str) else repr(value)


def row_name(value: Any) -> str:
    """An id or key naming a row read back from the store, as a message quotes it."""
    return quoted(value) if isinstance(value, str) else shown(value)


class RowCheck:
    """What the columns of a row read back must hold: a finite number (``numbers``), a
    whole number (``counts``), text (``texts``), each given as ``(index, name)``, any of
    them ``NULL`` (the schema says where one may be). SQLite keeps what it is given when
    it cannot convert it to the column's type (``'nan'`` in a ``REAL`` column, a ``BLOB``
    anywhere)."""

    __slots__ = ("_counts", "_numbers", "_texts", "counts", "numbers", "texts")

    def __init__(self, numbers: Sequence[tuple[int, str]], counts: Sequence[tuple[int, str]],
                 texts: Sequence[tuple[int, str]]) -> None:
        self.numbers, self.counts, self.texts = numbers, counts, texts
        # (Every row is checked: C-level getters and type sets; a loop over the columns
        # only to say what is wrong.)
        self._numbers = _getter(numbers)
        self._counts = _getter(counts)
        self._texts = _getter(texts)

    def __call__(self, r: Sequence[Any], what: Callable[[], str]) -> None:
        """Raise :func:`damaged` (``what()`` names the row) unless ``r`` holds what it
        must."""
        numbers = self._numbers(r)
        if _NUMBER_TYPES.issuperset(map(type, numbers)) and \
                math.isfinite(sum(filter(None, numbers))) and \
                _COUNT_TYPES.issuperset(map(type, self._counts(r))) and \
                _TEXT_TYPES.issuperset(map(type, self._texts(r))):
            return
        for i, name in self.numbers:
            v = r[i]
            t = type(v)
            if v is not None and not ((t is float and v - v == 0.0) or t is int):
                raise damaged(what(), f"its stored {name} {shown(v)} is not "
                              + ("a finite number" if t is float else "a number"))
        for i, name in self.counts:
            v = r[i]
            if v is not None and type(v) is not int:
                raise damaged(what(), f"its stored {name} {shown(v)} is not a whole number")
        for i, name in self.texts:
            v = r[i]
            if v is not None and type(v) is not str:
                raise damaged(what(), f"its stored {name} {shown(v)} is not text")


_NUMBER_TYPES = frozenset({int, float, type(None)})
_COUNT_TYPES = frozenset({int, type(None)})
_TEXT_TYPES = frozenset({str, type(None)})


def _getter(columns: Sequence[tuple[int, str]]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    get = operator.itemgetter(*(i for i, _ in columns))
    return (lambda r: (get(r),)) if len(columns) == 1 else get


def stored_json(text: str, what: str, name: str, *, or_text: bool = False,
                strict: bool = False) -> Any:
    """``text`` (a value of the store: the column ``name`` of the row ``what`` names)
    decoded, or :func:`damaged`: not JSON (``or_text``: then ``text`` itself; ``strict``:
    ``NaN`` and ``Infinity`` are not JSON either, for values Convoy refuses to write with
    them), holding an integer too long for Python to read (Convoy refuses to write one
    too), or nested deeper than :data:`READ_DEPTH`."""
    try:
        value = json.loads(text, parse_int=json_int,
                           parse_constant=_no_constant if strict else None)
    except RecursionError:
        value = None
    except ValueError as e:
        if or_text:
            return text
        if str(e) == huge_int():
            raise damaged(what, f"its stored {name} holds an integer with more than "
                          f"{sys.get_int_max_str_digits()} digits, more than Python "
                          "reads") from None
        raise damaged(what, f"its stored {name} {shown(text)} is not JSON") from None
    else:
        if not too_deep(value, READ_DEPTH):
            return value
    raise damaged(what, f"its stored {name} nests arrays and objects more than "
                  f"{READ_DEPTH} levels deep, more than Convoy writes")


def _no_constant(token: str) -> Any:
    raise ValueError(token)
