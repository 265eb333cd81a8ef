"""The identifiers an audit entry names that come from the application or from data (a state
write's ``OP NAMESPACE/KEY``, a ``ctx.step``'s name, a signal's name, a refusal's reason)
are written as spans write them: through the default PII redactor, personal values masked
(``[EMAIL]``, ``[CARD]``, ``[PHONE]``). The audit log is never erased, so a value written
there verbatim outlived ``convoy erase`` (issue 11: "the audit log holds only hashes and
references, never plaintext")."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic_core import to_json

import convoy
from convoy import MasterKey
from convoy._errors import error_to_record
from convoy.audit import AuditEvent, AuditInterceptor
from convoy.audit import _journal as journal
from convoy.audit._journal import entry_of
from convoy.audit._verify import verify_log
from convoy.stores import StepRecord

from .clikit import cli, workdir
from .conftest import STORE_KINDS, store_db

__all__ = ["workdir"]  # the autouse fixture: each test in its own directory

pytestmark = pytest.mark.usefixtures("workdir")

MAIL = "zelda.quuxfield@example.org"
CARD = "4539148803436467"
PHONE = "+44 20 7946 0321"
PLANTED = (MAIL, CARD, PHONE, "7946 0321", "quuxfield")
NAMESPACE = f"customer:{MAIL}"
KEY = f"card-{CARD}"
STEP = f"notify {PHONE}"


@convoy.workflow(name="audit.targets")
async def planted(ctx: convoy.Context, version: int) -> str:
    await ctx.state(NAMESPACE).set(KEY, {"card": CARD}, expected_version=version)
    await ctx.state(NAMESPACE).get(KEY)
    return str(await ctx.step(STEP, lambda: "sent"))


@pytest.fixture(params=STORE_KINDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str | Path]:
    yield from store_db(request.param, tmp_path)


async def _bodies(audit: AuditInterceptor, tenant: str = "default") -> list[bytes]:
    """The raw bodies of the tenant's log, as the store holds them."""
    await audit.sealed()
    store = audit.log.store
    size = await store.audit_size(tenant)
    return [bytes(r.body) for r in await store.audit_entries(tenant, 0, size)]


def _leaks(bodies: list[bytes]) -> list[str]:
    return [v for v in PLANTED for b in bodies if v.encode() in b]


async def test_no_planted_identifier_is_in_the_log_before_or_after_erasure(
        store: str | Path, tmp_path: Path) -> None:
    audit = AuditInterceptor(key_path=tmp_path / "audit.key")
    async with convoy.Engine(store, master_key=MasterKey.from_text(MasterKey.generate()),
                             interceptors=[audit]) as eng:
        mine = await eng.run(planted, 0, subject="customer-77")
        other = await eng.run(planted, 1)
        assert mine.ok and other.ok
        before = await _bodies(audit)
        events = [AuditEvent.decode(b) for b in before]
        targets = {(e.kind, e.target) for e in events if e.session_id in (mine.id, other.id)}
        assert {("state_write", "set customer:[EMAIL]/card-[CARD]"),
                ("state_read", "get customer:[EMAIL]/card-[CARD]"),
                ("effect", "notify [PHONE]")} <= targets
        assert _leaks(before) == []
        await eng.erase("customer-77")
        after = await _bodies(audit)
        assert after[:len(before)] == before and len(after) == len(before) + 1
        assert _leaks(after) == []
        assert (await verify_log(audit.log, "default")).size == len(after)


def test_convoy_audit_list_shows_the_masked_targets_and_the_log_verifies_after_erase(
        tmp_path: Path) -> None:
    assert cli("keygen", "m.key").code == 0
    env = {"CONVOY_MASTER_KEY_FILE": str(tmp_path / "m.key")}
    master = MasterKey.from_text((tmp_path / "m.key").read_text())

    async def run() -> None:
        async with convoy.Engine(tmp_path / "convoy.db", master_key=master,
                                 interceptors=[AuditInterceptor()]) as eng:
            assert (await eng.run(planted, 0, subject="c-77")).ok

    asyncio.run(run())
    listed = cli("audit", "list", "--db", "convoy.db", "--limit", "100", "--json")
    assert listed.code == 0, listed
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    shown = {(r["kind"], r.get("target")) for r in rows}
    assert ("state_write", "set customer:[EMAIL]/card-[CARD]") in shown
    assert ("effect", "notify [PHONE]") in shown
    table = cli("audit", "list", "--db", "convoy.db", "--limit", "100")
    assert table.code == 0 and "notify [PHONE]" in table.stdout
    assert not any(v in listed.stdout + table.stdout for v in PLANTED)
    assert cli("erase", "c-77", "--db", "convoy.db", env=env).code == 0
    verified = cli("audit", "verify", "--db", "convoy.db")
    assert verified.code == 0, verified
    again = cli("audit", "list", "--db", "convoy.db", "--limit", "100", "--json")
    assert again.code == 0 and not any(v in again.stdout for v in PLANTED)


# -- entry by entry ----------------------------------------------------------------------

AT = 1.8e9
MAC = b"k" * 32


def _entry(r: StepRecord, mac: bytes | None = None) -> AuditEvent:
    body = entry_of(r, "s", AT, mac=mac)
    assert body is not None
    assert not any(v.encode() in body for v in PLANTED)
    return AuditEvent.decode(body)


@pytest.mark.parametrize("mac", [None, MAC])
def test_each_identifier_of_the_application_is_masked_as_spans_mask_it(
        mac: bytes | None) -> None:
    """State targets (namespace and key, as spans redact them), a step's and a signal's
    name, a refusal's reason: masked the same way in a data subject's session (the mask
    has no key: an entry reads the same whoever seals it, before and after erasure)."""
    write = _entry(StepRecord(key="k", kind="state", target=f"set {NAMESPACE}/{KEY}",
                              status="completed", result='{"version":1}'), mac)
    assert (write.kind, write.target) == ("state_write", "set customer:[EMAIL]/card-[CARD]")
    odd = _entry(StepRecord(key="k", kind="state", target=f"set a/{MAIL}/b",
                            status="completed", result="1"), mac)
    assert odd.target == "set a/[EMAIL]/b"
    step = _entry(StepRecord(key="k", kind="effect", target=STEP, status="completed",
                             result="1"), mac)
    assert step.target == "notify [PHONE]"
    sig = _entry(StepRecord(key="k", kind="wait", target=f"reply-from {MAIL}",
                            status="completed", result='"x"'), mac)
    assert (sig.kind, sig.target) == ("signal", "reply-from [EMAIL]")
    refused = StepRecord(key="k", kind="tool", target="refund", status="failed", agent="desk",
                         result=to_json(error_to_record(convoy.ToolDenied(
                             "no", reason=f"blocked for {MAIL}"))).decode())
    e = _entry(refused, mac)
    assert (e.kind, e.status, e.target, e.actor) == (
        "policy_refusal", "blocked for [EMAIL]", "refund", "desk")
    failed = _entry(StepRecord(key="k", kind="effect", target=STEP, status="failed",
                               result=to_json(error_to_record(ValueError(MAIL))).decode()),
                    mac)
    assert (failed.status, failed.target) == ("ValueError", "notify [PHONE]")


def test_a_value_across_the_slash_of_a_state_target_is_masked() -> None:
    """``keys NAMESPACE`` has no key: a namespace holding a phone number written with a
    slash (``030/1234567``) was cut at it, and neither half was recognised (it was written
    as it is); so was a number split between a namespace and its key."""
    for target in ("keys customer:030/1234567", "keys +49 30/1234567",
                   "get tel:030/1234567"):
        entry = _entry(StepRecord(key="k", kind="state", target=target, status="completed",
                                  result="[]"))
        assert "1234567" not in (entry.target or ""), entry.target


def test_names_of_the_definitions_and_plain_identifiers_are_as_they_were() -> None:
    """What holds no personal value is written as before (the redactor leaves it): a
    definition's names (tools, agents: spans keep them too), a model's name, a state key
    of an id."""
    assert _entry(StepRecord(key="k", kind="state", target="set c:1/last",
                             status="completed", result="1")).target == "set c:1/last"
    assert _entry(StepRecord(key="k", kind="effect", target="charge-2026-11-30",
                             status="completed", result="1")).target == "charge-2026-11-30"
    tool = _entry(StepRecord(key="k", kind="tool", target="refund", status="completed",
                             result='"ok"', agent="billing"))
    assert (tool.actor, tool.target) == ("billing", "refund")
    answer = to_json({"model": "gpt-4o-2024-08-06", "in": 1, "out": 1, "text": MAIL}).decode()
    model = _entry(StepRecord(key="k", kind="model", target="desk", status="completed",
                              result=answer, input_hash="ab", input_tokens=1,
                              output_tokens=1))
    assert (model.actor, model.target) == ("desk", "gpt-4o-2024-08-06")


def test_the_mask_is_the_same_whoever_makes_the_entry() -> None:
    """An entry is a function of its record alone: a redactor made afresh (another
    process, a session sealed later from its journal) writes the same bytes."""
    r = StepRecord(key="k", kind="state", target=f"set {NAMESPACE}/{KEY}",
                   status="completed", result="1")
    first = entry_of(r, "s", AT)
    journal.name_redactor.cache_clear()
    assert entry_of(r, "s", AT) == first
