"""The runtime workflow code sees: the context, the agent loop, patterns, limits."""
