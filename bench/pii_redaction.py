"""Recall and precision of the PII redactor per kind, on a synthetic corpus (issue 11).

    .venv/bin/python bench/pii_redaction.py [--samples 20000] [--seed 7]

The corpus is tests/pii_corpus.py: support-desk sentences (English, French, German, a JSON
tool result, an e-mail header, a CSV row, a log line) holding e-mail addresses, phone
numbers of 12 countries in international, E.164, 00-prefixed and national formats (with
spaces, dots, dashes or brackets, or digits alone after a word such as "tel."), card
numbers of 15 issuers (plain, grouped by spaces, dashes, dots or two spaces, Amex 4-6-5),
IBANs of 14 countries (compact, grouped, lower case) and IPv4/IPv6 addresses (with ports,
brackets, compressed, mapped), beside look-alikes that are not personal data: dates and
times in several forms, amounts, versions and build numbers, order, invoice, case,
tracking, ISBN, ISSN and EAN numbers, runs of years, git remotes, coordinates, unix times,
hashes, card numbers and IBANs that fail their check digit. Values are also planted
JSON-encoded, in repr'd exception text, with no-break and thin spaces, URL-encoded, glued
to words, and with invisible characters inside them (zero-width space, joiners, word joiner,
BOM, soft hyphen, Mongolian vowel separator: one value and one look-alike in ten), and
glued into ids by "-", "/", "." or "_" (one e-mail, phone, card or IP value in seven:
ticket-+14155552671, 2026-4111..., s-<card>-<IPv4>, user_10.0.0.1; phone numbers in
international form) beside ids that must stay as they are (one look-alike in seven:
versions that are not IPv4 addresses, dates, order numbers, UUIDs, hex ids, timestamps,
digit runs failing Luhn, 16-digit decimals, digits alone, serials of groups of four). A true
value counts as found only when findings of its kind mask all of it; a finding counts as
right when it overlaps a true value of its kind.

Prints one JSON line: per kind the true values, findings, recall and precision, and the
redactor's time per sample.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.pii_corpus import samples, score

from convoy.observability import Redactor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=7)
    a = ap.parse_args()
    if a.samples < 1:
        ap.error("--samples must be >= 1")
    corpus = samples(a.samples, seed=a.seed)
    redactor = Redactor(memo=0)
    t = time.perf_counter()
    scores = score(redactor, corpus)
    elapsed = time.perf_counter() - t
    print(json.dumps({
        "samples": a.samples, "seed": a.seed,
        "us_per_sample": round(elapsed / a.samples * 1e6, 1),
        "kinds": {k: {"true": s.true, "found": s.found, "recall": round(s.recall, 4),
                      "precision": round(s.precision, 4)} for k, s in scores.items()},
        "target": 0.95}))


if __name__ == "__main__":
    main()
