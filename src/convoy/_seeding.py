"""Seeded randomness that does not depend on scheduling order."""

from __future__ import annotations

import hashlib
import random


def seeded_rng(seed: int, *parts: object) -> random.Random:
    """A generator seeded by ``seed`` and the identity of one call (session, step key,
    attempt, agent...): the same call draws the same numbers whatever else runs beside it."""
    key = "|".join(str(p) for p in (seed, *parts)).encode()
    return random.Random(int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big"))
