"""Humans in the loop: typed questions (``ctx.ask_human``), approvals of tool calls and
escalations, all as tasks in a tenant's inbox that a session waits for durably. Tasks are
shared state in the tenant's reserved namespace ``convoy.inbox`` (no store table of their
own); ``engine.inbox`` / ``tenant.inbox`` and ``convoy inbox`` list and decide them."""
