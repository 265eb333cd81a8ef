"""Definitions: agents, tools and workflows. Inert configuration an engine runs."""
