"""Least privilege for tools: scopes an agent must be granted, and approvals bound to a
call's exact arguments, checked by the tool guard every engine runs before a tool."""
