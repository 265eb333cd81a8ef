"""The ``kind`` label of a step in the metrics, where it is not the hook's own."""

from __future__ import annotations

from convoy.hitl._task import INBOX


def state_kind(namespace: str) -> str:
    """The ``kind`` of a shared-state operation's step: ``human`` in Convoy's human-task
    inbox (``ctx.ask_human``, approvals: their tasks are written and watched there),
    ``state`` in the workflow's own namespaces."""
    return "human" if namespace == INBOX else "state"
