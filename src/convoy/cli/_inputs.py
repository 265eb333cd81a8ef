"""Reading a JSONL input file: one workflow input per line, each checked on its own.

A line that is not JSON, or does not match the workflow's input type, is reported with its
line number and skipped; it never stops the other lines.

A session's identity comes from the line itself, never from the file's name, path or other
lines, so copying, renaming, reordering or growing the file runs only inputs not run before:

* with ``--id-field FIELD``, the session id is that field of the line's JSON object (a
  non-empty string, or an integer). A line without it, with an empty one, or repeating an
  id of an earlier line is reported and skipped;
* otherwise the id is ``<workflow>-<12 hex>``: a hash of the workflow's name and the line's
  canonical JSON (the input as validated and dumped by the workflow's input type, keys
  sorted), so key order, spacing and defaults spelled out do not matter. Identical lines are
  one session. For a tenant other than ``default`` the tenant is hashed too, so two tenants
  running the same line get a session each (and learn nothing of each other's); the id
  such a line had before Convoy hashed the tenant is kept as ``legacy_id``, so a session it
  already has is found again.
* with ``--subject NAME`` (and no ``--id-field``), the hash is keyed with a key derived from
  the subject's own key (:func:`with_subject_key`): the same line run again for the same
  subject finds the same session, but nobody can test a guess of a subject's input against
  the id, and once ``convoy erase`` destroys the key the ids left in logs and audit entries
  prove nothing. The unkeyed ids the line had before are kept as legacy ids, for a session
  of the subject an earlier Convoy made under one.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from convoy import UserError, Workflow
from convoy._files import read_stdin
from convoy._text import (
    TOO_DEEP,
    lone_surrogate,
    quoted,
    read_json,
    readable_validation_error,
    short,
    surrogate_problem,
    too_deep,
)
from convoy.engine._tenancy import DEFAULT_TENANT, check_session_id


@dataclass(slots=True, frozen=True)
class InputLine:
    line: int
    value: Any
    session_id: str
    #: Ids earlier Convoy versions gave the line (newest first): a session of this tenant
    #: (and of the run's subject, with one) under one of them is the line's.
    legacy_ids: tuple[str, ...] = ()
    #: The line's fields as it gives them (with an ``--id-field``: the ones it names),
    #: what an existing session of its id is compared on.
    given: frozenset[str] = frozenset()


@dataclass(slots=True, frozen=True)
class InvalidLine:
    line: int
    reason: str


@dataclass(slots=True)
class InputBatch:
    """The parsed file: valid inputs with their session ids, rejected lines, and lines
    identical to an earlier one (``(line, first line)``: one session for both)."""

    path: Path
    valid: list[InputLine] = field(default_factory=list)
    invalid: list[InvalidLine] = field(default_factory=list)
    identical: list[tuple[int, int]] = field(default_factory=list)


def content_id(wf: Workflow[Any, Any], value: Any, tenant: str = DEFAULT_TENANT, *,
               key: bytes | None = None) -> str:
    """The session id of a validated input without an id field: the workflow's short name
    and 12 hex digits of a hash of its full name and the input's canonical JSON (and of the
    tenant, for a tenant other than ``default``), keyed with ``key`` if given (a data
    subject's: :func:`with_subject_key`)."""
    canonical = json.dumps(json.loads(wf.input_adapter.dump_json(value)), sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False)
    h = hashlib.blake2b(digest_size=6) if key is None else \
        hashlib.blake2b(digest_size=6, key=key)
    if tenant != DEFAULT_TENANT:
        h.update(f"tenant {tenant}\n".encode())
    h.update(f"{wf.name}\n{canonical}".encode())
    short = re.sub(r"[^A-Za-z0-9_]+", "_", re.split(r"[:.]", wf.name)[-1]).strip("_")
    return f"{short or 'session'}-{h.hexdigest()}"


def _field_id(obj: Any, id_field: str) -> str:
    """The session id named by ``--id-field`` in a line's JSON, or raise ``ValueError``."""
    where = "(--id-field)"
    if not isinstance(obj, dict):
        raise ValueError(f"not a JSON object, so it has no {quoted(id_field, 40)} field {where}")
    if id_field not in obj:
        raise ValueError(f"no {quoted(id_field, 40)} field {where}")
    value = obj[id_field]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError(f"{quoted(id_field, 40)} must be a string or an integer, got "
                         f"{json.dumps(value)[:40]} {where}")
    sid = str(value)
    if not sid.strip():
        raise ValueError(f"empty {quoted(id_field, 40)} {where}")
    try:
        return check_session_id(sid)
    except UserError as e:
        raise ValueError(f"{e} {where}") from None


def input_bytes(path: Path) -> bytes:
    """The bytes of the input file ``path`` (``-``: standard input, read to its end).

    Raises:
        UserError: the file is missing or unreadable (nothing can run).
    """
    if str(path) == "-":  # standard input (``jq ... | convoy run WF -i -``)
        try:
            return read_stdin()
        except (OSError, AttributeError, ValueError) as e:  # (closed, or no bytes to read)
            raise UserError("cannot read the inputs from standard input: "
                            f"{getattr(e, 'strerror', None) or e}") from e
    if not path.exists():
        raise UserError(f"input file {quoted(str(path), 200)} does not exist (- reads "
                        "standard input)")
    if path.is_dir():  # (a pipe, /dev/stdin or <(...) is read as a file is)
        raise UserError(f"input {quoted(str(path), 200)} is a directory; pass a JSONL "
                        "file with one input per line")
    try:
        return path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read input file {quoted(str(path), 200)}: "
                        f"{e.strerror}") from e


def read_inputs(wf: Workflow[Any, Any], path: Path, *, id_field: str | None = None,
                tenant: str = DEFAULT_TENANT, data: bytes | None = None) -> InputBatch:
    """Parse and validate every non-blank line of ``path`` (or of ``data``, its bytes
    already read: :func:`input_bytes`) and give each its session id (content ids are
    ``tenant``'s).

    Raises:
        UserError: the file is missing or unreadable (nothing can run).
    """
    if data is None:
        data = input_bytes(path)
    batch = InputBatch(path=path)
    first_line: dict[str, int] = {}
    for number, raw in enumerate(data.splitlines(), start=1):
        result = parse_line(wf, raw, first=number == 1)
        if result is None:
            continue
        if isinstance(result, str):
            batch.invalid.append(InvalidLine(number, result))
            continue
        obj, value = result
        legacy: tuple[str, ...] = ()
        if id_field is None:
            sid = content_id(wf, value, tenant)
            if tenant != DEFAULT_TENANT:
                legacy = (content_id(wf, value),)
        else:
            try:
                sid = _field_id(obj, id_field)
            except ValueError as e:
                batch.invalid.append(InvalidLine(number, str(e)))
                continue
        seen = first_line.get(sid)
        if seen is not None:
            if id_field is None:
                batch.identical.append((number, seen))
            else:
                batch.invalid.append(InvalidLine(
                    number, f"duplicate {short(id_field, 40)} {quoted(sid)} (first on line "
                            f"{seen})"))
            continue
        first_line[sid] = number
        batch.valid.append(InputLine(number, value, sid, legacy, frozenset(obj) if
                                     id_field is not None and isinstance(obj, dict) else
                                     frozenset()))
    return batch


def with_subject_key(wf: Workflow[Any, Any], batch: InputBatch, tenant: str,
                     key: bytes) -> None:
    """Give ``batch``'s lines (content ids: no ``--id-field``) the ids keyed with a data
    subject's ``key`` (``SubjectKey.ids``); the unkeyed ones become their newest legacy ids.
    Identical lines stay identical (they had one id before, and have one now)."""
    batch.valid = [replace(item, session_id=content_id(wf, item.value, tenant, key=key),
                           legacy_ids=(item.session_id, *item.legacy_ids))
                   for item in batch.valid]


def parse_line(wf: Workflow[Any, Any], raw: bytes, *, first: bool = False
               ) -> tuple[Any, Any] | str | None:
    """``(json, value)`` for a valid line (its decoded JSON and the validated input), the
    reason for an invalid one, None for a blank one."""
    try:
        text = raw.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError as e:
        return f"not UTF-8 text: {e.reason} at byte {e.start + 1}"
    if not text.strip():
        return None
    try:
        obj = read_json(text)
    except json.JSONDecodeError as e:
        return f"invalid JSON: {e.msg.removesuffix(' at')} at column {e.colno}"
    except ValueError as e:  # nested deeper than the decoder goes, an integer too long
        return str(e)
    if too_deep(obj):
        return TOO_DEEP
    char = lone_surrogate(obj)
    if char is not None:
        return surrogate_problem(char)
    try:
        return obj, wf.input_adapter.validate_python(obj)
    except ValidationError as e:
        return readable_validation_error(e)
