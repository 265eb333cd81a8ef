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
redactor's time per sample. With ``--hostile``, it also times the redactor on 100 KB texts
that make it work hardest (digits one by one, separated by newlines, tabs or spaces, where
every run of 13-19 is card-shaped), as the median of ``--runs`` CPU times, in seconds.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
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
    ap.add_argument("--hostile", action="store_true",
                    help="also time 100 KB texts that make the redactor work hardest")
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    if a.samples < 1 or a.runs < 1:
        ap.error("--samples and --runs must be >= 1")
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
        "target": 0.95,
        **({"hostile_s_per_100kb": hostile(a.seed, a.runs)} if a.hostile else {})}))


def hostile(seed: int, runs: int) -> dict[str, float]:
    """Median CPU seconds to redact each 100 KB text of :func:`hostile_texts`."""
    out = {}
    for name, text in hostile_texts(seed).items():
        times = []
        for _ in range(runs):
            redactor = Redactor(memo=0)
            t = time.process_time()
            redactor(text)
            times.append(time.process_time() - t)
        out[name] = round(statistics.median(times), 3)
    return out


def hostile_texts(seed: int) -> dict[str, str]:
    """100 KB texts of random digits, one by one or two by two, between separators."""
    rnd = random.Random(seed)

    def digits(sep: str, width: int) -> str:
        n = 100_000 // (width + len(sep))
        return sep.join(str(rnd.randrange(10 ** width)).zfill(width) for _ in range(n))

    return {"digits_by_newline": digits("\n", 1), "digits_by_tab": digits("\t", 1),
            "digits_by_space": digits(" ", 1), "pairs_by_space": digits(" ", 2),
            "one_long_number": digits("", 1)}


if __name__ == "__main__":
    main()
