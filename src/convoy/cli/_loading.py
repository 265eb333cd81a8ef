"""How commands say that a workflow cannot be loaded here, each with its own fix: the
library's error names no command, since only the command knows how it loads modules
(``--import MODULE``, a ``MODULE:WORKFLOW`` argument)."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Iterable
from typing import Any

from convoy import UserError, Workflow, load_workflow
from convoy._command import word
from convoy._text import quoted
from convoy.cli._common import fail
from convoy.definitions._workflow import WorkflowNotFound, registered_workflow, script_workflow

_EXAMPLE = "e.g. 'examples.approvals:expense'"

#: What a script's own code calls instead, by command (for a ``__main__:`` workflow).
_IN_SCRIPT = {"resume": "resume its sessions from that script (await engine.resume())",
              "retry": "retry its sessions from that script (await engine.retry(ID))",
              "replay": "replay its sessions from that script (await engine.replay(ID))"}


def cannot_load(e: UserError, command: str, again: str | None = None) -> str:
    """Why a stored session's workflow cannot be loaded, and how to load it with
    ``convoy COMMAND`` (which takes ``--import MODULE``); ``again``: that command as the
    user should run it (with their ``--db`` and tenant)."""
    if not isinstance(e, WorkflowNotFound) or _says_how(e):
        return str(e)  # a module that does not import, an attribute it lacks: said there
    if e.workflow.startswith("__main__:"):
        return script_workflow(e.workflow, _IN_SCRIPT.get(command))
    again = again or f"'convoy {command} --import MODULE'"
    return ("nothing imported here defines it (an explicit name does not say which module "
            f"does); run {again} with the module that defines it")


def _says_how(e: UserError) -> bool:
    """Whether the loader's error says itself how to load the workflow: every one but a
    name no imported module registered (an explicit one, or a script's ``__main__:NAME``),
    whose fix depends on how the command loads modules."""
    return not isinstance(e, WorkflowNotFound) or _by_reference(e.workflow)


def _by_reference(name: str) -> bool:
    """Whether ``name`` is a ``MODULE:WORKFLOW`` reference a process loads by itself (the
    name a workflow gets unless its decorator names it)."""
    module, sep, attr = name.partition(":")
    return bool(module and sep and attr) and module != "__main__"


def defining_module(name: str) -> str | None:
    """The module that defines workflow ``name``, where this process knows it: the one
    that registered it here, or the module of a ``MODULE:WORKFLOW`` name."""
    wf = registered_workflow(name)
    module = wf.fn.__module__ if wf is not None else name.partition(":")[0]
    return module if module and module != "__main__" and \
        (wf is not None or _by_reference(name)) else None


def import_option(name: str) -> str:
    """The ``--import MODULE`` a command that loads workflow ``name`` needs (``MODULE``
    where its module is not known here), or ``""`` for a ``MODULE:WORKFLOW`` reference,
    which loads by itself."""
    if _by_reference(name):
        return ""
    module = defining_module(name)
    return f"--import {'MODULE' if module is None else word(module)}"


#: Why no command runs a session of a workflow defined in a script run directly.
_NOBODY_ELSE = "no other process can import a script run directly"


def in_script(workflow: str) -> bool:
    """Whether ``workflow`` (``__main__:NAME``) was defined in a script run directly: no
    command can load it (not ``convoy worker``, ``resume`` nor ``retry``)."""
    return workflow.startswith("__main__:")


def from_script(workflow: str, what: str = "it", verb: str = "resume",
                call: str = "await engine.resume()") -> str:
    """``resume it from the script that defines workflow '__main__:NAME' (await
    engine.resume(); ...)``: what continues (``verb`` and ``call``: retries) a session of
    a workflow :func:`in_script`, as ``convoy resume`` and ``retry`` say for one
    (:func:`cannot_load`)."""
    return (f"{verb} {what} from the script that defines workflow {quoted(workflow, 120)} "
            f"({call}; {_NOBODY_ELSE})")


def script_engine(workflow: str) -> str:
    """The engine that runs a session of a workflow :func:`in_script` next, named."""
    return (f"that of the script that defines workflow {quoted(workflow, 120)}, as it "
            f"resumes its sessions: await engine.resume(); {_NOBODY_ELSE}")


def continues(workflow: str, cmd: Callable[[str], str], what: str = "it") -> str:
    """``'convoy worker MODULE' or 'convoy resume --import MODULE' continues WHAT`` (see
    :func:`continuing`), or, for a workflow :func:`in_script`, :func:`from_script`."""
    if in_script(workflow):
        return from_script(workflow, what)
    worker, resume, note = continuing([workflow], cmd)
    return f"{worker} or {resume} continues {what}{note}"


def continuing(workflows: Iterable[str], cmd: Callable[[str], str]) -> tuple[str, str, str]:
    """``'convoy worker MODULE...'``, ``'convoy resume'`` and a note: what continues
    sessions of ``workflows`` (``cmd``: a command with the user's ``--db`` and tenant). A
    worker serves the modules it names; a resume loads a workflow with an explicit name
    only from a module it imports (``--import``). A module not known here is ``MODULE``,
    and the note (else empty) says which module that is."""
    modules: list[str] = []
    imports: list[str] = []
    unknown: list[str] = []
    for name in sorted(set(workflows)):
        module = defining_module(name)
        if module is None:
            unknown.append(name)
        shown = "MODULE" if module is None else word(module)
        if shown not in modules:
            modules.append(shown)
        if not _by_reference(name) and f"--import {shown}" not in imports:
            imports.append(f"--import {shown}")
    note = "" if not unknown else (f" (MODULE: the module that defines workflow "
                                   f"{', '.join(quoted(n) for n in unknown)})")
    return cmd(" ".join(["worker", *modules])), cmd(" ".join(["resume", *imports])), note


def unloadable(names: Iterable[str], command: str, again: str | None = None
               ) -> dict[str, str]:
    """The workflows among ``names`` this process cannot load, with why and how to load
    them for ``convoy COMMAND`` (``again``: as :func:`cannot_load`)."""
    problems: dict[str, str] = {}
    for name in sorted(set(names)):
        if registered_workflow(name) is not None:
            continue
        try:
            load_workflow(name)
        except UserError as e:
            problems[name] = cannot_load(e, command, again)
    return problems


def workflow_argument(ref: str) -> Workflow[Any, Any]:
    """The workflow a ``MODULE:WORKFLOW`` argument names; one line and exit 2 for one
    that names none (other load errors are the caller's to report)."""
    try:
        return load_workflow(ref)
    except WorkflowNotFound as e:
        if _says_how(e):  # a module that does not import, an attribute it lacks
            raise
        fail(_not_a_reference(ref))


def _not_a_reference(ref: str) -> str:
    """What to write instead of ``ref``: a module's workflows if it is a module."""
    try:
        module = importlib.import_module(ref) if importlib.util.find_spec(ref) else None
    except Exception:  # not a module (or one that fails to import): say what the form is
        module = None
    if module is None:
        return (f"workflow {quoted(ref, 120)} is not a MODULE:WORKFLOW reference; name the "
                "module that "
                f"defines it and the workflow in it ({_EXAMPLE})")
    names = sorted(n for n, v in vars(module).items() if isinstance(v, Workflow))
    if not names:
        return (f"{quoted(ref, 120)} is a module that defines no workflow at top level; name "
                "a workflow "
                f"as MODULE:WORKFLOW ({_EXAMPLE})")
    return (f"{quoted(ref, 120)} is a module; name one of its workflows as MODULE:WORKFLOW: "
            f"{', '.join(f'{ref}:{n}' for n in names)}")
