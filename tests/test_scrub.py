"""What leaves for span attributes and log fields is redacted before it is escaped as JSON
and before it is cut to its bound (the review of issue 11, item 8): an escape right
against a value, a number, a key, or a cut through a value does not let it out."""

from __future__ import annotations

import io
import json
import logging
import re
import sys

import pytest

import convoy
from convoy.observability import Tracing, json_logging

CARD = "4539148803436467"
EMAIL = "zoe.quinn@mail.example.org"
IP = "198.51.100.23"
UNICODE_EMAIL = "jörg.müller@example.com"


@pytest.mark.parametrize("value", [
    {"n": f"line one\n{CARD}"},                   # json.dumps writes \n right before it
    [f"\t{IP}", f"\r\n{EMAIL}"],
    {"to": UNICODE_EMAIL},                        # escaped as \u00f6 by default
    {CARD: "the key is a card"},
    {"card": int(CARD)},                          # a number
    {"nested": [[{"deep": f"x\n{EMAIL}"}]]},
])
def test_content_is_redacted_before_it_is_written_as_json(value: object) -> None:
    text = Tracing(exporters=()).text(value)
    for planted in (CARD, EMAIL, IP, UNICODE_EMAIL, "müller", "m\\u00fcller"):
        assert planted not in text, (planted, text)
    assert "[" in text and "]" in text  # masked, not dropped


@pytest.mark.parametrize("tail", [EMAIL, "GB82 WEST 1234 5698 7654 32", "+44 20 7946 0958"])
def test_a_cut_through_a_value_leaves_none_of_it(tail: str) -> None:
    tracing = Tracing(exporters=())
    text = tracing.text("x" * 4084 + " " + tail)
    assert len(text) <= 4096
    assert tail[:6] not in text and not text.endswith(tail[:11]), text
    error = tracing.error_text("y" * 490 + " " + tail)
    assert len(error) <= 500 and tail[:6] not in error, error


@pytest.mark.parametrize("at", [0, 100, 480, 500, 505, 511, 512, 520, 700, 1023, 1030])
def test_a_cut_after_masks_that_shorten_the_text_leaves_no_head_of_a_value(at: int) -> None:
    # Masks shorter than what they replace move what comes after them forward: a value
    # cut where the text is cut before it is redacted must not be pulled into what is
    # kept (the review of 2026-12-03: "... [EMAIL], [EMAIL], jane.doe.target+billi").
    tail = "jane.doe.target+billing@mail.example.co.uk"
    tracing = Tracing(exporters=())
    for limit, cut in ((500, tracing.error_text), (4096, tracing.text)):
        for within in (1, 8, 20, len(tail) - 2):
            start = limit + at - within  # where the address begins
            emails = [f"someone.{i:03d}.long.name@mail.example.org"
                      for i in range(start // 39)]
            head = " ".join(emails)
            text = head + " " * max(1, start - len(head)) + tail + " ok"
            out = cut(text)
            assert len(out) <= limit
            assert "jane" not in out and "someone." not in out and "@" not in out, \
                (limit, at, within, out[-60:])


@pytest.mark.parametrize("number", [4539148803436467.0, 4111111111111111.0, -4539148803436467.0])
def test_a_number_written_as_a_float_is_redacted_as_its_digits(number: float) -> None:
    text = Tracing(exporters=()).text({"card": number, "amount": 12.5, "big": 1e300})
    digits = str(int(abs(number)))
    assert digits not in text and "[" in text, text
    assert '"amount": 12.5' in text and "1e+300" in text, text
    stream = io.StringIO()
    handler = json_logging(stream=stream, logger_name="scrub.float")
    try:
        logging.getLogger("scrub.float").info("seen", extra={"n": number, "x": 0.25})
    finally:
        logging.getLogger("scrub.float").removeHandler(handler)
    assert digits not in stream.getvalue() and json.loads(stream.getvalue())["x"] == 0.25


def test_log_fields_are_redacted_numbers_and_keys_too() -> None:
    stream = io.StringIO()
    handler = json_logging(stream=stream, logger_name="scrub.test")
    try:
        logging.getLogger("scrub.test").info(
            "seen", extra={"card": int(CARD), "seen": {IP: 1}, "to": [f"\n{EMAIL}"],
                           "count": 3})
    finally:
        logging.getLogger("scrub.test").removeHandler(handler)
    line = stream.getvalue()
    for planted in (CARD, IP, EMAIL):
        assert planted not in line, (planted, line)
    record = json.loads(line)
    assert record["count"] == 3 and record["seen"] == {"[IP]": 1}


def _logged(extra: dict[str, object]) -> dict[str, object]:
    stream = io.StringIO()
    handler = json_logging(stream=stream, logger_name="scrub.keys")
    try:
        logging.getLogger("scrub.keys").info("seen", extra=extra)
    finally:
        logging.getLogger("scrub.keys").removeHandler(handler)
    line = stream.getvalue()
    for planted in (CARD, IP, EMAIL, "alice@example.com", "bob@example.com"):
        assert planted not in line, (planted, line)
    record: dict[str, object] = json.loads(line)
    return record


def test_a_top_level_extra_key_is_redacted_as_a_nested_one_is() -> None:
    record = _logged({"alice@example.com": 1, IP: "x", "count": 3})
    assert record["[EMAIL]"] == 1 and record["[IP]"] == "x" and record["count"] == 3


def test_keys_that_redact_alike_are_all_kept() -> None:
    """Two e-mail addresses redact to the same text: neither value is dropped, at the top
    level or nested."""
    record = _logged({"alice@example.com": 1, "bob@example.com": 2,
                      "seen": {"alice@example.com": 3, "bob@example.com": 4}})
    values = sorted(v for k, v in record.items() if k.startswith("[EMAIL]"))
    assert values == [1, 2], record
    nested = record["seen"]
    assert isinstance(nested, dict) and sorted(nested.values()) == [3, 4], nested
    assert len(nested) == 2


# A phone number written as digits alone is found only after a word that says it is one
# ("tel. 4155552671"): in a structured value that word is the key (review of stop 44: a
# tool's {"phone": "4155552671"} was masked as text and left whole as an argument, a
# result, or a log field).
@pytest.mark.parametrize(("value", "masked"), [
    ({"phone": "4155552671"}, {"phone": "[PHONE]"}),
    ({"customer": {"mobile_number": "4155552671", "id": "4155552671"}},
     {"customer": {"mobile_number": "[PHONE]", "id": "4155552671"}}),
    ({"mobile": 4915112345678}, {"mobile": "[PHONE]"}),
    ({"contactPhone": 4155552671}, {"contactPhone": "[PHONE]"}),
    ({"fax": "020 7946 0958"}, {"fax": "[PHONE]"}),
    ({"tel": "n/a", "phone": 3, "cell": "B7"}, {"tel": "n/a", "phone": 3, "cell": "B7"}),
    ({"telemetry": "4155552671", "hotel": 4155552671},        # no cue: ids
     {"telemetry": "4155552671", "hotel": 4155552671}),
    # (the review of this change: qualified and plural keys, an MSISDN; ids whose key
    # only holds such a word are left as they are, their type too)
    ({"phone_home": "4155552671", "phone_1": "4155552671", "phone2": "4155552671",
      "cellphone": "4155552671", "msisdn": "4915123456789", "phone": "447911123456"},
     {"phone_home": "[PHONE]", "phone_1": "[PHONE]", "phone2": "[PHONE]",
      "cellphone": "[PHONE]", "msisdn": "[PHONE]", "phone": "[PHONE]"}),
    ({"phones": ["4155552671", "020 7946 0958"]}, {"phones": ["[PHONE]", "[PHONE]"]}),
    # (the second review: sms, e164, plural "es"; and keys that only hold such letters)
    ({"sms": 4155552671, "phone_e164": 4155552671, "phoneE164": "4155552671",
      "faxes": ["4155552671"]},
     {"sms": "[PHONE]", "phone_e164": "[PHONE]", "phoneE164": "[PHONE]",
      "faxes": ["[PHONE]"]}),
    ({"microphone": 4155552671, "headphones": "4155552671", "cells": [4155552671]},
     {"microphone": 4155552671, "headphones": "4155552671", "cells": [4155552671]}),
    ({"cell_id": 8642795611, "sms_message_id": 8642795611, "fax_job_id": 4155552671,
      "mobile_app_build": 8642795611},
     {"cell_id": 8642795611, "sms_message_id": 8642795611, "fax_job_id": 4155552671,
      "mobile_app_build": 8642795611}),
])
def test_a_key_that_says_phone_makes_its_digits_a_phone_number(
        value: dict[str, object], masked: dict[str, object]) -> None:
    assert json.loads(Tracing(exporters=()).text(value)) == masked
    record = _logged(value)
    assert {k: record[k] for k in value} == masked, record


def test_every_line_is_json_a_strict_reader_takes() -> None:
    """NaN and the infinities are not JSON numbers (a strict reader, JavaScript's, refuses
    ``NaN``): they are written as text; nothing else changes."""
    record = _logged({"ratio": float("nan"), "limits": [float("inf"), -float("inf"), 1.5],
                      "deep": {"x": float("nan")}})

    def strict(text: str) -> None:
        raise ValueError(f"not JSON: {text}")

    stream = io.StringIO()
    handler = json_logging(stream=stream, logger_name="scrub.nan")
    try:
        logging.getLogger("scrub.nan").info("seen", extra={"r": float("nan")})
    finally:
        logging.getLogger("scrub.nan").removeHandler(handler)
    json.loads(stream.getvalue(), parse_constant=strict)
    assert record["ratio"] == "nan" and record["limits"] == ["inf", "-inf", 1.5]
    assert record["deep"] == {"x": "nan"}


def test_no_field_is_dropped_bytes_are_their_text_and_a_stack_is_kept() -> None:
    record = _logged({"tenant": "acme", "time": 5, "raw": EMAIL.encode(),
                      "phone": b"4155552671"})
    # (fields the formatter writes keep theirs; the call's own come next to them)
    assert record["tenant"] is None and record["tenant (2)"] == "acme"
    assert record["time (2)"] == 5 and record["raw"] == "[EMAIL]"
    assert record["phone"] == "[PHONE]"  # (bytes read as the text they hold, key and all)
    stream = io.StringIO()
    handler = json_logging(stream=stream, logger_name="scrub.stack")
    try:
        logging.getLogger("scrub.stack").info("seen %s", EMAIL, stack_info=True)
    finally:
        logging.getLogger("scrub.stack").removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["stack"].startswith("Stack (most recent call last)") and EMAIL not in line["stack"]
    assert line["message"] == "seen [EMAIL]"


def test_json_logging_called_twice_writes_each_record_once() -> None:
    """A new user's trial: calling ``json_logging()`` again (a second setup call, a
    reload) added a second handler, and every record was written twice. Again for the
    same logger and stream, it replaces its handler; another stream gets its own."""
    stream, other = io.StringIO(), io.StringIO()
    log = logging.getLogger("scrub.twice")
    handlers = [json_logging(stream=stream, logger_name="scrub.twice"),
                json_logging(stream=stream, logger_name="scrub.twice"),
                json_logging(stream=other, logger_name="scrub.twice")]
    try:
        log.info("once")
    finally:
        for handler in handlers:
            log.removeHandler(handler)
    assert [json.loads(x)["message"] for x in stream.getvalue().splitlines()] == ["once"]
    assert [json.loads(x)["message"] for x in other.getvalue().splitlines()] == ["once"]


def test_json_logging_to_stderr_follows_it_and_is_replaced_after_it_changed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A review: ``json_logging()`` without a stream kept the ``sys.stderr`` of its call,
    so a second call after ``sys.stderr`` was replaced (a test runner's capture, a
    redirect) added a second handler, and records went on to the old stream. The default
    handler writes to ``sys.stderr`` as it is when a record is written (as ``print``
    does), and a second call replaces it."""
    first, second = io.StringIO(), io.StringIO()
    log = logging.getLogger("scrub.stderr")
    monkeypatch.setattr(sys, "stderr", first)
    handlers = [json_logging(logger_name="scrub.stderr")]
    monkeypatch.setattr(sys, "stderr", second)
    handlers.append(json_logging(logger_name="scrub.stderr"))
    try:
        assert len(log.handlers) == 1, log.handlers
        log.info("once")
    finally:
        for handler in handlers:
            log.removeHandler(handler)
    assert first.getvalue() == ""
    assert [json.loads(x)["message"] for x in second.getvalue().splitlines()] == ["once"]
    # (a review: the stream given as sys.stderr, then none, or the other way round, made
    # two handlers)
    for calls in (({"stream": second}, {}), ({}, {"stream": second})):
        handlers = [json_logging(logger_name="scrub.stderr", **kw) for kw in calls]
        try:
            assert len(log.handlers) == 1, (calls, log.handlers)
        finally:
            for handler in handlers:
                log.removeHandler(handler)


class _Unprintable:
    """An object whose ``str()`` and ``repr()`` raise (a half-built ORM row, a proxy)."""

    def __str__(self) -> str:
        raise RuntimeError(f"no text for {EMAIL}")

    __repr__ = __str__


def test_a_field_whose_text_cannot_be_made_does_not_lose_the_record(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A new user's trial: one ``extra=`` value whose ``str()`` raised made the formatter
    raise, so the whole record was lost, and ``logging`` printed a traceback on stderr with
    the call's arguments as they were (an e-mail address, unredacted). The record is
    written, the field says what it was."""
    stream = io.StringIO()
    handler = json_logging(stream=stream, logger_name="scrub.unprintable")
    try:
        logging.getLogger("scrub.unprintable").info(
            "seen %s", EMAIL, extra={"row": _Unprintable(), "rows": {_Unprintable(): 1}})
    finally:
        logging.getLogger("scrub.unprintable").removeHandler(handler)
    assert capsys.readouterr().err == ""
    line = json.loads(stream.getvalue())
    assert line["message"] == "seen [EMAIL]"
    assert line["row"] == "<_Unprintable: str() raised RuntimeError>"
    assert line["rows"] == {"<_Unprintable: str() raised RuntimeError>": 1}
    assert EMAIL not in stream.getvalue()


def test_a_message_whose_arguments_do_not_fit_is_written_redacted(
        capsys: pytest.CaptureFixture[str]) -> None:
    """``log.info("%s %s", email)`` (one argument for two ``%s``): the record was lost and
    ``logging``'s error report printed the arguments, an e-mail address among them,
    unredacted on stderr. The record is written, its message and arguments redacted, with
    what did not fit."""
    stream = io.StringIO()
    handler = json_logging(stream=stream, logger_name="scrub.args")
    log = logging.getLogger("scrub.args")
    log.propagate = False  # (pytest's own capture handler would raise on it)
    try:
        log.info("to %s from %s", EMAIL)  # noqa: PLE1206 (the mistake under test)
    finally:
        log.removeHandler(handler)
        log.propagate = True
    assert capsys.readouterr().err == ""
    assert EMAIL not in stream.getvalue()
    line = json.loads(stream.getvalue())
    assert line["message"] == (
        "to %s from %s (its arguments did not fit the message: TypeError: not enough "
        "arguments for format string)")
    assert line["args"] == ["[EMAIL]"]


@pytest.mark.parametrize(("kw", "said"), [
    ({"level": "VERBOSE"}, "json_logging: unknown level 'VERBOSE'; use DEBUG, INFO, "
                           "WARNING, ERROR, CRITICAL or a number"),
    ({"level": None}, "json_logging: unknown level None"),
    ({"stream": 2}, "json_logging: stream=2 is not a text stream (it has no write())"),
])
def test_json_logging_refuses_a_bad_level_or_stream_and_installs_nothing(
        kw: dict[str, object], said: str) -> None:
    """A new user's trial: ``json_logging("VERBOSE")`` raised ``ValueError: Unknown level``
    after it had installed its handler (the call failed, its handler stayed and wrote every
    record); ``stream=2`` (a file descriptor) was taken, and each record failed as it was
    written. Both are refused in one line before anything is installed."""
    log = logging.getLogger("scrub.badsetup")
    before = list(log.handlers)
    with pytest.raises(convoy.UserError, match=re.escape(said)):
        json_logging(logger_name="scrub.badsetup", **kw)  # type: ignore[arg-type]
    assert log.handlers == before
