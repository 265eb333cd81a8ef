"""Who owns a session: engine identities, and telling a dead local owner from a live one."""

from __future__ import annotations

import os
import socket
import uuid


def new_owner() -> str:
    """A unique engine identity, ``host:pid:random``: the host and pid let an engine on the
    same machine see that a session's owner died (its lease need not run out)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_is_dead(owner: str) -> bool:
    """The owner was a process on this machine that no longer exists. Owners on other
    machines (or of another form) are never assumed dead: their leases expire instead."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
