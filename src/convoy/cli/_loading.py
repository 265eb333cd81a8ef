"""How commands say that a workflow cannot be loaded here, each with its own fix: the
library's error names no command, since only the command knows how it loads modules
(``--import MODULE``)."""

from __future__ import annotations

from collections.abc import Iterable

from convoy import UserError, load_workflow
from convoy.definitions._workflow import WorkflowNotFound, registered_workflow, script_workflow

#: What a script's own code calls instead, by command (for a ``__main__:`` workflow).
_IN_SCRIPT = {"resume": "resume its sessions from that script (await engine.resume())",
              "retry": "retry its sessions from that script (await engine.retry(ID))",
              "replay": "replay its sessions from that script (await engine.replay(ID))"}


def cannot_load(e: UserError, command: str) -> str:
    """Why a stored session's workflow cannot be loaded, and how to load it with
    ``convoy COMMAND`` (which takes ``--import MODULE``)."""
    if not isinstance(e, WorkflowNotFound):
        return str(e)  # a module that does not import, an attribute it lacks: said there
    if e.workflow.startswith("__main__:"):
        return script_workflow(e.workflow, _IN_SCRIPT.get(command))
    return ("nothing imported here defines it (an explicit name does not say which module "
            f"does); run 'convoy {command} --import MODULE' with the module that defines it")


def unloadable(names: Iterable[str], command: str) -> dict[str, str]:
    """The workflows among ``names`` this process cannot load, with why and how to load
    them for ``convoy COMMAND``."""
    problems: dict[str, str] = {}
    for name in sorted(set(names)):
        if registered_workflow(name) is not None:
            continue
        try:
            load_workflow(name)
        except UserError as e:
            problems[name] = cannot_load(e, command)
    return problems

