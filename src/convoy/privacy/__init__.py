"""Data subjects: personal data sealed under per-subject keys, erasure, export, retention.

See ``docs/how-to/privacy.md``.
"""

from convoy.privacy._keys import MASTER_KEY_ENV, MASTER_KEY_FILE_ENV, KeyRing, MasterKey
from convoy.privacy._sealed_store import SealingStore, sealing
from convoy.privacy._subjects import erase_subject, export_subject, parse_age, purge_older_than

__all__ = ["MASTER_KEY_ENV", "MASTER_KEY_FILE_ENV", "KeyRing", "MasterKey", "SealingStore",
           "erase_subject", "export_subject", "parse_age", "purge_older_than", "sealing"]
