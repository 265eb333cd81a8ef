"""The input fingerprint of a step (its ``input_hash``) is a cryptographic digest, which
the audit log can keep as the hash of a prompt or of a tool's arguments; a session
journaled by an older release, whose records hold an 8-digit CRC-32, still resumes."""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import replace
from pathlib import Path

import convoy
from convoy.durability._executor import fingerprint
from convoy.stores import SQLiteStore

from .conftest import Classification, FakeClock

OK = {"label": "billing", "confidence": 0.9}
agent = convoy.Agent(name="classify", input_type=str, output_type=Classification, model="sim:")


@convoy.workflow(name="fp.flow")
async def flow(ctx: convoy.Context, text: str) -> str:
    first = await ctx.run(agent, text)
    reply = await ctx.wait_for("go", str)
    return f"{first.label} {reply}"


def test_the_fingerprint_is_blake2b_128() -> None:
    text = "refund alice@example.com"
    assert fingerprint(text) == hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    assert fingerprint(text) != fingerprint(text + " ")


async def test_a_session_journaled_with_crc32_fingerprints_resumes(db: Path) -> None:
    clock = FakeClock()
    sim = convoy.SimModel({"*": {"output": OK}})
    async with convoy.Engine(SQLiteStore(db, clock=clock), models={"sim:": sim}) as eng:
        res = await eng.run(flow, "help", session_id="s")
        assert res.status == "waiting"
        [model] = [r for r in await eng.journal("s") if r.kind == "model"]
        assert model.input_hash is not None and len(model.input_hash) == 32
        # What a release that fingerprinted with CRC-32 journaled for the same step.
        old = format(zlib.crc32(b"anything it was asked"), "08x")
        await eng.store.append("s", None, replace(model, input_hash=old))
        await eng.signal("s", "go", "now")
        [res] = await eng.resume()
        assert res.ok, res
        assert res.output == "billing now"


async def test_a_changed_input_is_still_found_on_replay(db: Path) -> None:
    sim = convoy.SimModel({"*": {"output": OK}})
    async with convoy.Engine(SQLiteStore(db, clock=FakeClock()), models={"sim:": sim}) as eng:
        assert (await eng.run(flow, "help", session_id="s")).status == "waiting"
        [model] = [r for r in await eng.journal("s") if r.kind == "model"]
        await eng.store.append("s", None, replace(model, input_hash=fingerprint("other")))
        await eng.signal("s", "go", "now")
        [res] = await eng.resume()
    assert res.status == "failed" and "different input" in str(res.error), res
