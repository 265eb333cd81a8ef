"""Runnable Convoy examples (``python -m examples.<name>.demo``)."""
