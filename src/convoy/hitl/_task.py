"""Human tasks: what the inbox holds, and how an answer is checked.

A task is one value of shared state in the tenant's reserved namespace ``convoy.inbox``,
keyed by its id (``<session id>:<step key>``): every change is a compare-and-set, so a
task is answered exactly once, and the key's history is the audit of who did what. The
session that asked waits durably for a change of the key (a state watch), so an answer
wakes it in the same transaction that records it. No store table of its own: every store
that keeps shared state keeps tasks.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from convoy._errors import JournalError, UserError
from convoy._text import check_name, quoted, readable_validation_error

#: The namespace of every tenant's human tasks. Names starting ``convoy.`` are reserved:
#: workflow code, tools, ``engine.state`` and ``convoy state set`` cannot write them.
INBOX = "convoy.inbox"
RESERVED = "convoy."
#: The format of a stored task; a task of another format is refused, not misread.
TASK_FORMAT = 1

TaskKind = Literal["question", "approval", "escalation"]
TaskStatus = Literal["open", "answered", "expired", "used"]
Action = Literal["answer", "approve", "reject", "edit", "default", "expire"]
OnDeadline = Literal["fail", "default", "escalate"]
#: What a reviewer may do, by kind of task (a comment is always allowed).
ACTIONS: dict[str, tuple[Action, ...]] = {
    "question": ("answer",), "approval": ("approve", "reject", "edit"),
    "escalation": ("approve", "reject", "edit")}
#: Who decided when nobody did before the deadline.
DEADLINE = "convoy:deadline"


class Decision(BaseModel):
    """What a person decided on a task (or what its deadline decided)."""

    model_config = ConfigDict(frozen=True)

    action: Action
    value: Any = None
    by: str
    comment: str | None = None
    at: float


class Comment(BaseModel):
    """A remark on a task that decides nothing."""

    model_config = ConfigDict(frozen=True)

    by: str
    text: str
    at: float


class HumanTask(BaseModel):
    """One task in a tenant's inbox: a question, an approval of a tool call, or an
    escalated agent run.

    ``status`` is ``open`` until someone decides (``answered``), its deadline decides
    (``expired``), or an approved call consumes its approval (``used``). ``version`` is
    the task's version in the store (every change makes one; ``history`` lists them).
    """

    model_config = ConfigDict(frozen=True)

    format: int = TASK_FORMAT
    id: str
    tenant: str
    session_id: str
    kind: TaskKind
    prompt: str
    context: Any = None
    reason: str | None = None
    history: dict[str, Any] | None = None
    proposal: Any = None
    answer_schema: dict[str, Any] | None = None
    answer_type: str | None = None
    queue: str = "default"
    assignees: tuple[str, ...] = ()
    created_at: float
    deadline: float | None = None
    on_deadline: OnDeadline = "fail"
    default: Any = None
    escalate_to: str | None = None
    escalated: bool = False
    status: TaskStatus = "open"
    decision: Decision | None = None
    comments: tuple[Comment, ...] = ()
    error: str | None = None
    binding: str | None = None
    expires_after: float | None = None
    expires_at: float | None = None
    used_by: str | None = None
    version: int = Field(default=0, exclude=True)

    @property
    def actions(self) -> tuple[Action, ...]:
        """What a reviewer may do with this task (besides commenting)."""
        return ACTIONS[self.kind]

    @property
    def is_open(self) -> bool:
        """Whether the task still waits for a decision."""
        return self.status == "open"

    @property
    def standing(self) -> str:
        """Its status as a person reads it: an ``answered`` one says what was decided
        (``answered (rejected)``), so a rejected payment never reads as a paid one."""
        d = self.decision
        if self.status != "answered" or d is None or d.action == "answer":
            return self.status
        return f"answered ({_DECIDED.get(d.action, d.action)})"


#: How :attr:`HumanTask.standing` names a decision.
_DECIDED = {"approve": "approved", "edit": "approved with edits", "reject": "rejected",
            "default": "its deadline's default"}


_TASK: TypeAdapter[HumanTask] = TypeAdapter(HumanTask)


def load_task(text: str | bytes, version: int, key: str | None = None) -> HumanTask:
    """A stored task (the state key ``key``, named in the error of one that does not
    parse), with its store version; refuses a format this Convoy does not know."""
    try:
        task = _TASK.validate_json(text)
    except ValidationError as e:
        from convoy.privacy._seal import is_sealed

        if is_sealed(text if isinstance(text, str) else text.decode(errors="replace")):
            raise UserError("a human task is sealed (it holds a data subject's data): set "
                            "$CONVOY_MASTER_KEY_FILE (or $CONVOY_MASTER_KEY) to the master "
                            "key the engine ran with") from None
        from convoy.stores._rows import damaged, row_name

        raise damaged("a stored human task" if key is None else f"human task {row_name(key)}",
                      f"it does not parse: {readable_validation_error(e)}") from None
    if task.format != TASK_FORMAT:
        raise JournalError(f"human task {task.id!r} has format {task.format}; this Convoy "
                           f"reads format {TASK_FORMAT} (upgrade Convoy)")
    return task.model_copy(update={"version": version})


def task_id(session_id: str, step_key: str) -> str:
    """``<session id>:<step key>``: unique in a store, stable across restarts."""
    return f"{session_id}:{step_key}"


def session_of(task: str) -> str:
    """The session id in a task id (step keys hold no ``:``)."""
    sid, sep, key = task.rpartition(":")
    if not sep or not sid or not key:
        raise UserError(f"{quoted(task)} is not a task id (they look like '<session id>:<step>', "
                        "as 'convoy inbox list' shows them)")
    return sid


def check_namespace(namespace: str) -> str:
    """Refuse a reserved namespace to code outside the runtime (tasks must not be forged),
    and one that cannot be shown as it is (a control character)."""
    check_name(namespace, "state namespace")
    if isinstance(namespace, str) and namespace.startswith(RESERVED):
        raise UserError(f"the state namespace {namespace!r} is reserved for Convoy (human "
                        f"tasks live in {INBOX!r}): read tasks with 'convoy inbox' or "
                        "engine.inbox, and pick another namespace for your own state")
    return namespace


def type_name(tp: Any) -> str | None:
    """``module:qualname`` of a class an answer can be validated with in another process,
    or ``None``. A class of a script run directly is named by the module that script is
    when imported (``python desk.py``: ``desk``, not ``__main__``), as a process that
    serves its sessions (``--import desk``) knows it."""
    module, qual = getattr(tp, "__module__", None), getattr(tp, "__qualname__", None)
    if not isinstance(tp, type) or not module or not qual or "<locals>" in qual:
        return None
    if module == "__main__":
        module = _main_module() or module
    return f"{module}:{qual}"


def qualname_of(name: str) -> str:
    """The ``qualname`` of a :func:`type_name`: what names the class in any process (the
    module does not: a script's is ``__main__`` only where it runs directly)."""
    return name.rpartition(":")[2]


def _main_module() -> str | None:
    """The name the ``__main__`` module has when imported: its spec's (``python -m
    desk``), or its file's (``python desk.py``), if it has one."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None)
    if isinstance(name, str) and name and name != "__main__":
        return name
    file = getattr(main, "__file__", None)
    if not isinstance(file, str) or not file.endswith(".py"):
        return None
    stem = os.path.basename(file)[:-3]
    return stem if stem.isidentifier() and stem != "__main__" else None


def _loaded_type(name: str | None) -> Any:
    """The class ``module:qualname`` if its module is already imported (never imports:
    a stored name must not make the inbox run code; ``--import`` loads a module), also
    when the module is the script this process runs (``desk`` in ``python desk.py``)."""
    if not name:
        return None
    module, _, qual = name.partition(":")
    found = _attribute(sys.modules.get(module), qual)
    if found is None and module != "__main__" and module == _main_module():
        found = _attribute(sys.modules.get("__main__"), qual)
    return found


def _attribute(obj: Any, qual: str) -> Any:
    if obj is None:
        return None
    for part in qual.split("."):
        obj = getattr(obj, part, None)
    return obj if isinstance(obj, type) else None


def answer_checker(task: HumanTask) -> Callable[[Any], Any]:
    """How the inbox checks an answer (or edit) before recording it: the answer's Pydantic
    type when this process has it loaded, else its JSON schema. Returns the value as JSON
    values; raises :class:`UserError` saying what is wrong."""
    tp = _loaded_type(task.answer_type)
    schema = task.answer_schema
    if tp is not None:
        adapter: TypeAdapter[Any] = TypeAdapter(tp)

        def by_type(value: Any) -> Any:
            _no_unknown_field(tp, value)
            try:
                return adapter.dump_python(adapter.validate_python(value), mode="json")
            except ValidationError as e:
                raise UserError(f"the answer does not match {tp.__name__}: "
                                f"{readable_validation_error(e)}") from None

        return by_type

    def by_schema(value: Any) -> Any:
        if schema is None:
            return value
        import jsonschema

        from convoy.hitl._formats import format_checker

        try:
            jsonschema.validate(value, schema, format_checker=format_checker())
        except jsonschema.ValidationError as e:
            # The rule and what the schema asks, not jsonschema's message, which quotes
            # the value given (an answer may be personal data).
            where = ".".join(str(p) for p in e.absolute_path) or "(answer)"
            wants = json.dumps(e.validator_value, default=str)
            wants = wants if len(wants) <= 80 else wants[:77] + "..."
            said = e.message if e.validator == "required" else _extra_fields(e) or \
                f"its {e.validator!r} rule ({wants}) refuses it"  # (names from the schema)
            raise UserError(f"the answer does not match the task's schema: {where}: "
                            f"{said}") from None
        return value

    return by_schema


def _extra_fields(e: Any) -> str | None:
    """What an ``additionalProperties: false`` refusal says: the fields the answer has that
    the schema does not (names a person typed, not values), and the ones it has; ``None``
    for another refusal."""
    props = e.schema.get("properties") if isinstance(e.schema, dict) else None
    if e.validator != "additionalProperties" or not isinstance(e.instance, dict) or \
            not isinstance(props, dict):
        return None
    extra = [k for k in e.instance if k not in props]
    if not extra:
        return None
    named = ", ".join(quoted(str(k), 40) for k in extra[:5]) + (" ..." if len(extra) > 5
                                                                  else "")
    known = ", ".join(quoted(str(k), 40) for k in props) or "none"
    return (f"it has no field {named}" if len(extra) == 1 else
            f"it has no fields {named}") + f" (its fields: {known})"


def _no_unknown_field(tp: type, value: Any) -> None:
    """Refuse an answer with a field its type does not have (``{"aprove": true}``): a
    Pydantic model drops such a field by default, so a misspelt optional field was
    recorded as its default, in silence. Pydantic itself decides what the model takes
    (aliases, ``populate_by_name``), on its top level; a model that says what it does with
    more fields (``extra=...``) is left to say it, and so is a value that is not an
    object."""
    strict = _strict(tp)
    if strict is None or not isinstance(value, dict):
        return
    try:
        strict.validate_python(value)
    except ValidationError as e:
        extra = [str(err["loc"][0]) for err in e.errors()
                 if err["type"] == "extra_forbidden" and len(err["loc"]) == 1]
        if extra:
            fields = getattr(tp, "model_fields", {})
            known = [f.alias or name for name, f in fields.items()]
            raise UserError(f"the answer has a field {tp.__name__} does not have: "
                            f"{quoted(extra[0], 60)} (its fields: {', '.join(known)}); check "
                            "its name") from None


@lru_cache(maxsize=256)
def _strict(tp: type) -> TypeAdapter[Any] | None:
    """``tp`` refusing fields it does not have, if it is a Pydantic model that does not
    say what it does with them."""
    if not (isinstance(tp, type) and issubclass(tp, BaseModel)) or "extra" in tp.model_config:
        return None
    strict = type(tp.__name__, (tp,), {"model_config": ConfigDict(extra="forbid"),
                                        "__module__": tp.__module__})
    return TypeAdapter(strict)


__all__ = ["ACTIONS", "DEADLINE", "INBOX", "RESERVED", "TASK_FORMAT", "Action", "Comment",
           "Decision", "HumanTask", "OnDeadline", "TaskKind", "TaskStatus", "answer_checker",
           "check_namespace", "load_task", "qualname_of", "session_of", "task_id",
           "type_name"]
