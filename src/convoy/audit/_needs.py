"""The optional dependency of signed checkpoints, named when it is missing."""

MISSING_CRYPTOGRAPHY = ("convoy.audit signs checkpoints with the 'cryptography' package, which "
                        "is not installed; install it with: pip install 'convoy[audit]'")
