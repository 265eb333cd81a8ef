"""PII redaction of values glued into identifiers by ``-``, ``/``, ``.`` or ``_`` (session
ids, task ids, state keys, signal names), as a review found them missed: an E.164 number
after a separator or a letter, a Luhn-valid card number glued to other digits or followed
by ``-<IPv4>``, an IPv4 address after ``_`` or a word and a dot, an IPv6 address after or
before ``_`` or ``.``, an e-mail address before ``_``. Look-alikes of the same shapes (versions,
dates, order numbers, UUIDs, hex ids, decimals, digit runs that fail Luhn) stay as they
are."""

from __future__ import annotations

import pytest

from convoy.observability import Redactor


@pytest.mark.parametrize(("text", "masked"), [
    # a human task's id (session id, ":", step key), in a span, a signal's name
    ("p-jane.doe@example.com:0/2", "[EMAIL]:0/2"),
    ("convoy.state:convoy.inbox/jane@example.com:1/0", "convoy.state:convoy.inbox/[EMAIL]:1/0"),
    # the reviewer's examples
    ("jane@example.com.3", "[EMAIL].3"),  # (a domain's next label is never digits alone)
    ("bob@mail.example.co.uk.7", "[EMAIL].7"),
    ("ns/jane@example.com.3/key", "ns/[EMAIL].3/key"),
    ("ticket-+14155552671", "ticket-[PHONE]"),
    ("ticket/+14155552671", "ticket/[PHONE]"),
    ("a.+14155552671", "a.[PHONE]"),
    ("user_+442079460958", "user_[PHONE]"),
    ("s-+44 20 7946 0958", "s-[PHONE]"),
    ("2026-4111111111111111", "2026-[CARD]"),
    ("a-4111111111111111-203.0.113.45", "a-[CARD]-[IP]"),
    ("x-4111111111111111-y", "x-[CARD]-y"),
    ("s-jane.doe@example.com-4111111111111111-203.0.113.45", "[EMAIL]-[CARD]-[IP]"),
    ("cli-bob@example.com-+14155552671", "[EMAIL]-[PHONE]"),
    # the same shapes, other separators and forms
    ("ticket+14155552671", "ticket[PHONE]"),
    ("task-+33 6 12 34 56 78-retry", "task-[PHONE]-retry"),
    ("s-+14155552671-203.0.113.45", "s-[PHONE]-[IP]"),
    ("key/+44-20-7946-0958/state", "key/[PHONE]/state"),
    ("run-7-4539148803436467", "run-7-[CARD]"),
    ("order.2026.4539148803436467", "order.2026.[CARD]"),
    ("s_4539148803436467_3", "s_[CARD]_3"),
    ("a-4539 1488 0343 6467-203.0.113.45", "a-[CARD]-[IP]"),
    ("ORD-7-4539-1488-0343-6467", "ORD-7-[CARD]"),
    ("k/3782-822463-10005/7", "k/[CARD]/7"),
    ("id-4539.1488.0343.6467-10.0.0.1", "id-[CARD]-[IP]"),
    ("ORD-2026-5167 9239 3394 4846-retry", "ORD-2026-[CARD]-retry"),
    ("s/6759\u20091711\u20096711\u20097096\u2009748-124.75.101.127", "s/[CARD]-[IP]"),
    ("ORD-2026.6304504955105730-retry", "ORD-2026.[CARD]-retry"),
    ("2026.6011 1336 4784 7543", "2026.[CARD]"),
    ("run-7_+39 02 1234 5678-30.91.108.81", "run-7_[PHONE]-[IP]"),
    ("x +61 412 349 068-147.190.103.155", "x [PHONE]-[IP]"),
    ("user_10.0.0.1", "user_[IP]"),
    ("ticket_fe80::d19e:1532_3", "ticket_[IP]_3"),
    ("k.2001:db8::1.done", "k.[IP].done"),
    ("run-7-::ffff:26.74.191.26.done", "run-7-[IP].done"),
    ("ORD-2026.fc00:968b:cd9b:fae8:b8b3:23fa:fb31:c5cf-retry", "ORD-2026.[IP]-retry"),
    ("10.0.0.1_x", "[IP]_x"),
    ("s.203.0.113.45.done", "s.[IP].done"),
    ("user_jane@example.com_3", "[EMAIL]_3"),
    ("ticket/jane%40example.com_3", "ticket/[EMAIL]_3"),
    # a digit run that fails Luhn is left, the IP after it is not
    ("a-4111111111111112-203.0.113.45", "a-4111111111111112-[IP]"),
])
def test_values_glued_into_ids_are_masked(text: str, masked: str) -> None:
    assert Redactor()(text) == masked


@pytest.mark.parametrize("text", [
    # versions that are not IP addresses, dates, order and build numbers
    "v1.2.3.4.5", "release-1.2.300.4", "lib-10.0.19045.2965", "build_2026.12.03.1",
    "2026-12-03", "run-2026-12-03", "ORD-2026-48213", "order-2026-11-30-000123",
    # UUIDs and hex ids
    "s-550e8400-e29b-41d4-a716-446655440000", "task-9f86d081884c7d659a2feaa0c55ad015",
    "4539148803436467fe29b41d4a716446", "task-4539148803436467fe29b41d4a716446",
    # digit runs that fail Luhn, or with no card issuer's prefix
    "ticket-4111111111111112", "2026-4539148803436468",
    "order-1234567890123452", "ts-1733212800000", "ns-1733212800000000000",
    # five numbers with dots: a version, not which four of them are an address
    "ORD-2026.192.168.12.15", "lib.so.1.2.3.4.5",
    # colons that are not an IPv6 address
    "at 2026.12:30:45", "ns_ab::cd::ef", "a::b::c",
    # groups of four in a run longer than a card's: a serial or a key (even if one of its
    # windows is a valid card number, as 4539-1488-0343-6467 here)
    "2026-4539-1488-0343-6467", "sn-4539-1488-0343-6467-1234",
    # a decimal fraction is not a card glued to a number
    "ratio 0.4539148803436467", "x=-3.4539148803436467", "2026.6011850545261424",
    "ticket_0.5807059571354828", "session.0.3889537398485137",
    # a plus that is arithmetic or an exponent, too short for a phone number
    "n+1234", "1e+10", "v2+14",
    # a national number glued after a separator: an id as often as a phone number
    "ticket-4155552671",
])
def test_look_alikes_glued_into_ids_are_left_alone(text: str) -> None:
    assert Redactor()(text) == text


@pytest.mark.parametrize("hostile", [
    "+1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 " * 600, "a+12345678-" * 2000,
    "+1-415-555-2671-" * 1200,
])
def test_glued_numbers_in_hostile_input_are_bounded_work(hostile: str) -> None:
    found = Redactor(memo=0).find(hostile)
    assert all(0 <= f.start < f.end <= len(hostile) for f in found)
