"""Reading a JSONL input file: one workflow input per line, each checked on its own.

A line that is not JSON, or does not match the workflow's input type, is reported with its
line number and skipped; it never stops the other lines. Session ids are derived from the
run (workflow, absolute path and file content) and the line number, so running the same
command twice addresses the same sessions instead of creating duplicates.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from convoy import UserError, Workflow
from convoy.definitions._tools import readable_validation_error


@dataclass(slots=True, frozen=True)
class InputLine:
    line: int
    value: Any


@dataclass(slots=True, frozen=True)
class InvalidLine:
    line: int
    reason: str


@dataclass(slots=True)
class InputBatch:
    """The parsed file: valid inputs, rejected lines and the run id they belong to."""

    path: Path
    run_id: str
    valid: list[InputLine] = field(default_factory=list)
    invalid: list[InvalidLine] = field(default_factory=list)

    def session_id(self, line: int) -> str:
        return session_id(self.run_id, line)


def run_id(workflow: str, path: Path, data: bytes) -> str:
    """12 hex digits naming one run: a workflow over one version of one input file."""
    h = hashlib.blake2b(digest_size=6)
    h.update(f"{workflow}\n{path.resolve()}\n".encode())
    h.update(data)
    return h.hexdigest()


def session_id(run: str, line: int) -> str:
    return f"{run}-{line}"


def read_inputs(wf: Workflow[Any, Any], path: Path) -> InputBatch:
    """Parse and validate every non-blank line of ``path``.

    Raises:
        UserError: the file is missing or unreadable (nothing can run).
    """
    if not path.exists():
        raise UserError(f"input file {str(path)!r} does not exist")
    if not path.is_file():
        raise UserError(f"input {str(path)!r} is not a file; pass a JSONL file with one "
                        "input per line")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read input file {str(path)!r}: {e.strerror}") from e
    batch = InputBatch(path=path, run_id=run_id(wf.name, path, data))
    for number, raw in enumerate(data.splitlines(), start=1):
        result = parse_line(wf, raw, first=number == 1)
        if isinstance(result, str):
            batch.invalid.append(InvalidLine(number, result))
        elif result is not None:
            batch.valid.append(InputLine(number, result[0]))
    return batch


def parse_line(wf: Workflow[Any, Any], raw: bytes, *, first: bool = False
               ) -> tuple[Any] | str | None:
    """``(value,)`` for a valid line, the reason for an invalid one, None for a blank one."""
    try:
        text = raw.decode("utf-8-sig" if first else "utf-8")
    except UnicodeDecodeError as e:
        return f"not UTF-8 text: {e.reason} at byte {e.start + 1}"
    if not text.strip():
        return None
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        return f"invalid JSON: {e.msg} at column {e.colno}"
    try:
        return (wf.input_adapter.validate_python(obj),)
    except ValidationError as e:
        return readable_validation_error(e)
