"""The form of an answer: questions derived from a task's JSON schema (the answer type's,
a tool's arguments, an agent's output), asked one field at a time, or filled from
``--set FIELD=VALUE``. What it builds is checked against the schema by the inbox."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import typer

from convoy import UserError
from convoy._text import NOT_FINITE, check_storable, huge_int, strict_json

MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a form."""

    name: str
    schema: dict[str, Any]
    required: bool

    @property
    def kind(self) -> str:
        """``boolean``, ``integer``, ``number``, ``string``, ``choice``, ``const`` or
        ``json`` (anything else, typed as JSON)."""
        s = self.schema
        if "const" in s:
            return "const"
        if "enum" in s:
            return "choice"
        t = s.get("type")
        return t if t in ("boolean", "integer", "number", "string") else "json"

    @property
    def label(self) -> str:
        title = self.schema.get("title") or self.name
        hint = self.schema.get("description")
        return f"{title} ({hint})" if hint else str(title)

    @property
    def describe(self) -> str:
        """``integer, required``, ``one of 'a', 'b'``: for ``convoy inbox show``."""
        if self.kind == "choice":
            what = "one of " + ", ".join(json.dumps(v) for v in self.schema["enum"])
        elif self.kind == "const":
            what = f"always {json.dumps(self.schema['const'])}"
        else:
            what = self.kind
        if self.nullable:
            what += " or empty"
        for rule, says in _SAYS.items():
            if rule in self.schema:
                what += ", " + says.format(json.dumps(self.schema[rule]))
        default = self.schema.get("default", MISSING)
        if default is not MISSING:
            what += f", default {json.dumps(default)}"
        what += ", required" if self.required else ""
        hint = self.schema.get("description")
        return f"{what} ({hint})" if hint else what

    @property
    def nullable(self) -> bool:
        return bool(self.schema.get("nullable"))


#: How :attr:`Field.describe` says a rule of the field's schema.
_SAYS = {"minimum": "at least {}", "maximum": "at most {}", "exclusiveMinimum": "more than {}",
         "exclusiveMaximum": "less than {}", "multipleOf": "a multiple of {}",
         "minLength": "at least {} characters", "maxLength": "at most {} characters",
         "pattern": "matching {}", "format": "format {}"}


def _resolve(schema: Mapping[str, Any], root: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` with a ``$ref`` into ``$defs`` replaced, and ``X | None`` turned into
    ``X`` marked ``nullable``."""
    s = dict(schema)
    ref = s.pop("$ref", None)
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        s = {**root.get("$defs", {}).get(ref.rsplit("/", 1)[1], {}), **s}
    options = s.get("anyOf")
    if isinstance(options, list):
        real = [o for o in options if o.get("type") != "null"]
        if len(real) == 1 and len(options) == 2:
            merged = {**_resolve(real[0], root), **{k: v for k, v in s.items()
                                                    if k != "anyOf"}}
            merged["nullable"] = True
            return merged
    return s


def fields(schema: Mapping[str, Any] | None) -> list[Field] | None:
    """The fields of an object schema, in order; ``None`` for a schema that is not an
    object (a ``bool`` or ``str`` answer: one value)."""
    if not schema:
        return None
    s = _resolve(schema, schema)
    props = s.get("properties")
    if s.get("type") != "object" or not isinstance(props, dict):
        return None
    required = set(s.get("required", ()))
    return [Field(name, _resolve(p, schema), name in required) for name, p in props.items()]


#: The rules of a field's own schema a value is checked against as it is typed (the whole
#: answer is checked against the whole schema by the inbox).
_RULES = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
          "minLength", "maxLength", "pattern", "format")


def parse(field: Field, text: str) -> Any:
    """A field's value from what someone typed, checked against the field's own rules
    (``minimum``, ``maxLength``, ...): a form asks for it again at once, not after its
    last field."""
    value = _typed(field, text)
    rules = {k: v for k, v in field.schema.items() if k in _RULES}
    if rules and value is not None:
        import jsonschema

        from convoy.hitl._formats import format_checker

        try:
            jsonschema.validate(value, rules, format_checker=format_checker())
        except jsonschema.ValidationError as e:  # (its message would quote the value)
            raise UserError(f"{field.name}: its {e.validator!r} rule "
                            f"({json.dumps(e.validator_value)}) refuses it") from None
        except jsonschema.SchemaError:
            pass  # a rule the schema got wrong: the inbox's check of the answer says so
    return value


def _typed(field: Field, text: str) -> Any:
    """:func:`parse`, before the field's rules."""
    kind = field.kind
    if text == "" and field.nullable:
        return None
    # What was typed is not repeated in the error (it may be personal data): what the
    # field takes is.
    try:
        if kind == "boolean":
            low = text.strip().lower()
            if low in ("y", "yes", "true", "1"):
                return True
            if low in ("n", "no", "false", "0"):
                return False
            raise ValueError("answer yes or no")
        if kind == "integer":
            try:
                return int(text)
            except ValueError:
                digits = text.strip().lstrip("+-").replace("_", "")
                if digits.isdigit() and len(digits) > sys.get_int_max_str_digits():
                    raise ValueError(huge_int()) from None
                raise ValueError("write a whole number, such as 42") from None
        if kind == "number":
            try:
                number = float(text)
            except ValueError:
                raise ValueError("write a number, such as 4.5") from None
            if not math.isfinite(number):
                raise ValueError(f"{NOT_FINITE}; write a finite number")
            return number
        if kind == "string":
            return check_storable(text, field.name)
        if kind == "choice":
            for option in field.schema["enum"]:
                if text == str(option) or text == json.dumps(option):
                    return option
            raise ValueError("use one of " + ", ".join(map(str, field.schema["enum"])))
        try:
            value = strict_json(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"not JSON: {e.msg.removesuffix(' at')} at column "
                             f"{e.colno}") from None
        return check_storable(value, field.name)
    except ValueError as e:
        raise UserError(f"{field.name}: not a valid {kind}: {e}") from None



def from_sets(schema: Mapping[str, Any] | None, sets: list[str],
              start: Any = None) -> Any:
    """Values from ``--set FIELD=VALUE`` options, over ``start`` (a proposal to edit)."""
    form = fields(schema)
    by_name = {f.name: f for f in form or ()}
    value: dict[str, Any] = dict(start) if isinstance(start, dict) else {}
    for item in sets:
        name, sep, text = item.partition("=")
        if not sep:
            raise UserError(f"--set {item!r}: write FIELD=VALUE")
        field = by_name.get(name)
        if field is None:
            known = ", ".join(by_name) or "none: the answer is one value, give --value"
            raise UserError(f"--set {name!r}: the answer has no field {name!r} "
                            f"(fields: {known})")
        value[name] = parse(field, text)
    return value


def ask(schema: Mapping[str, Any] | None,
        prompt: Callable[..., Any] = typer.prompt,
        confirm: Callable[..., bool] = typer.confirm) -> Any:
    """Ask for an answer field by field (one question for a non-object answer)."""
    form = fields(schema)
    if form is None:
        whole = Field("answer", _resolve(schema or {}, schema or {}), True)
        return _ask_one(whole, prompt, confirm)
    out: dict[str, Any] = {}
    for f in form:
        got = _ask_one(f, prompt, confirm)
        if got is not MISSING:
            out[f.name] = got
    return out


def _ask_one(f: Field, prompt: Callable[..., Any], confirm: Callable[..., bool]) -> Any:
    default = f.schema.get("default", MISSING)
    if default is None:
        default = MISSING  # "none" is what an empty answer gives
    kind = f.kind
    if kind == "const":
        return f.schema["const"]
    if kind == "boolean":
        return confirm(f.label, default=None if default is MISSING else bool(default))
    optional = not f.required or f.nullable
    label = f.label
    if kind == "choice":
        label += " [" + "/".join(str(v) for v in f.schema["enum"]) + "]"
    elif optional and default is MISSING:
        label += " (empty: none)"
    shown = MISSING if default is MISSING else \
        (json.dumps(default) if kind == "json" else str(default))
    while True:
        text = prompt(label, default="" if shown is MISSING and optional else
                      (None if shown is MISSING else shown), show_default=shown is not MISSING)
        if text == "" and optional and default is MISSING:
            return None if f.nullable else MISSING
        try:
            return parse(f, text)
        except UserError as e:
            typer.echo(f"  {e}", err=True)  # ask again


__all__ = ["Field", "ask", "fields", "from_sets", "parse"]
