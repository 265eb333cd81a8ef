"""results.jsonl (from bench/run.sh / the peers' run_all.sh) -> markdown tables of medians
with Convoy next to the peers, ratios to the fastest *peer* of the same run, and the
Convoy performance targets checked. Stdlib only.

usage: python3 bench/summarize.py bench/out/<ts>/results.jsonl [more.jsonl ...]

Targets (medians over repetitions):
  W1        Convoy µs/step        <= 1/5 of the fastest peer's
  W2 10000  Convoy: all sessions complete, no errors; sessions/s >= 5x the fastest peer's;
            RSS per session <= 40 KB
  W3        Convoy µs/session     <= 1/5 of the fastest peer's
Exit status: 0 always (the verdicts are in the output).
"""
from __future__ import annotations

import json
import statistics
import sys
from collections import defaultdict

US = "convoy"
ORDER = [US, "langgraph", "openai-agents", "pydantic-ai", "autogen-agentchat", "crewai"]
SPEEDUP = 5.0
RSS_KB_MAX = 40.0
W2_TARGET_N = 10_000


def load(paths):
    rows = []
    for p in paths:
        with open(p) as f:
            rows += [json.loads(line) for line in f if line.strip()]
    return rows


def nums(rs, key):
    return [r[key] for r in rs if isinstance(r.get(key), (int, float))]


def med(rs, key):
    xs = nums(rs, key)
    return statistics.median(xs) if xs else None


def rng(rs, key):
    xs = nums(rs, key)
    return f"{fmt(min(xs))}–{fmt(max(xs))}" if xs else "–"


def fmt(x, nd=0):
    if x is None or x != x:          # None or NaN
        return "–"
    if isinstance(x, float) and nd == 0 and abs(x) < 10:
        nd = 1 if abs(x) >= 1 else 2
    return f"{x:,.{nd}f}"


def fw_key(fw):
    return (ORDER.index(fw) if fw in ORDER else len(ORDER), fw)


def ok_runs(rs):
    return [r for r in rs if "error" not in r and not r.get("timed_out") and not r.get("errors")]


def name(fw):
    return f"**{fw}**" if fw == US else fw


def main() -> None:
    rows = load(sys.argv[1:])
    g = defaultdict(list)
    for r in rows:
        g[(r["workload"], r.get("framework"))].append(r)
    sizes = defaultdict(set)
    for r in rows:
        sizes[(r["workload"], r.get("framework"))].add(r.get("sessions"))
    out: list[str] = []
    verdicts: list[str] = []

    def seq_table(wl, metric, title, extra_cols):
        fws = sorted({k[1] for k in g if k[0] == wl}, key=fw_key)
        if not fws:
            return
        meds = {fw: med(ok_runs(g[(wl, fw)]), metric) for fw in fws}
        peers = {fw: m for fw, m in meds.items() if fw != US and m is not None}
        best_fw = min(peers, key=peers.get) if peers else None
        best = peers.get(best_fw) if best_fw else None
        out.append(f"### {title}\n")
        hdr = ["framework", "sessions", f"{metric} (median)", "min–max", "× fastest peer"]
        hdr += [c for c, _ in extra_cols] + ["runs ok"]
        out.append("| " + " | ".join(hdr) + " |")
        out.append("|---|" + "---:|" * (len(hdr) - 1))
        for fw in fws:
            rs = g[(wl, fw)]
            ok = ok_runs(rs)
            m = meds[fw]
            ratio = fmt(m / best, 2 if m / best < 1 else 1) if m and best else "–"
            cells = [name(fw), "/".join(str(s) for s in sorted(sizes[(wl, fw)])), fmt(m),
                     rng(ok, metric), ratio]
            cells += [fn(ok) for _, fn in extra_cols]
            cells.append(f"{len(ok)}/{len(rs)}")
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
        m = meds.get(US)
        if m is not None and best:
            met = m <= best / SPEEDUP
            verdicts.append(
                f"- {wl}: Convoy {fmt(m)} {metric} vs fastest peer {best_fw} {fmt(best)} → "
                f"{best / m:.1f}× faster (target ≥ {SPEEDUP:g}×): "
                f"**{'MET' if met else 'NOT MET'}**")
        elif US in meds:
            verdicts.append(f"- {wl}: no successful Convoy or peer run → **UNKNOWN**")

    commits = ("commits / session", lambda ok: fmt(med(ok, "commits_per_session"), 3)
               if med(ok, "commits_per_session") is not None else "–")
    seq_table("W1", "us_per_step",
              "W1 chain5-overhead (5 agents in sequence, latency 0) — µs per agent step",
              [("µs / session", lambda ok: fmt(med(ok, "us_per_session"))),
               ("p50 session µs", lambda ok: fmt(med(ok, "p50_session_us"))),
               ("p99 session µs", lambda ok: fmt(med(ok, "p99_session_us"))),
               ("peak RSS MB", lambda ok: fmt(med(ok, "peak_rss_mb"))),
               ("model calls / session", lambda ok: fmt(med(ok, "model_calls_per_session"), 1)),
               commits])

    # ---- W2
    for n in sorted({r["sessions"] for r in rows if r["workload"] == "W2"}):
        rs_n = [r for r in rows if r["workload"] == "W2" and r["sessions"] == n]
        fws = sorted({r["framework"] for r in rs_n}, key=fw_key)
        by = {fw: [r for r in rs_n if r["framework"] == fw] for fw in fws}
        # sessions/s of every run (completed / wall, as the harness reports it, also for a
        # run that fell over); the fastest peer is the one with the best median.
        rate = {fw: med(by[fw], "sessions_per_s") for fw in fws}
        peer_rates = {fw: v for fw, v in rate.items() if fw != US and v is not None}
        best_fw = max(peer_rates, key=peer_rates.get) if peer_rates else None
        best = peer_rates.get(best_fw) if best_fw else None
        out.append(f"### W2 chain5-concurrent, N = {n:,} sessions at once "
                   "(5 × 50 ms latency; ideal wall 0.25 s)\n")
        out.append("| framework | wall s | sessions/s | × fastest peer | p50 ms | p99 ms | CPU s | "
                   "peak RSS MB | RSS / session KB | completed | commits / session | runs ok |")
        out.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for fw in fws:
            rs = by[fw]
            ok = ok_runs(rs)
            use = ok or rs
            r = rate[fw]
            ratio = fmt(r / best, 1) if r is not None and best else ("∞" if r else "–")
            wall = fmt(med(use, "wall_s"), 2)
            if not ok:
                r0 = rs[0]
                err = str(r0.get("error") or r0.get("first_error"))
                if r0.get("timed_out"):
                    why = f"fell over: timed out at {r0.get('wall_s', 0):.0f} s"
                elif err.startswith("no JSON output") and (r0.get("process_s") or 0) >= 399:
                    why = (f"fell over: process killed by the driver's 400 s limit "
                           f"(at {r0['process_s']:.0f} s), no result")
                else:
                    why = "error: " + err[:60]
                wall = f"**{why}**"
            out.append(
                f"| {name(fw)} | {wall} | {fmt(r)} | {ratio} | {fmt(med(use, 'p50_ms'))} | "
                f"{fmt(med(use, 'p99_ms'))} | {fmt(med(use, 'cpu_s'), 1)} | "
                f"{fmt(med(use, 'peak_rss_mb'))} | "
                f"{fmt(med(use, 'rss_per_session_kb'), 1)} | {fmt(med(use, 'completed'))}/{n:,} | "
                f"{commits[1](use)} | {len(ok)}/{len(rs)} |")
        out.append("")
        if n == W2_TARGET_N and US in by:
            rs = by[US]
            all_done = all(r.get("completed") == n and not r.get("errors")
                           and not r.get("timed_out") and "error" not in r for r in rs)
            r = rate[US] or 0.0
            rss = med(rs, "rss_per_session_kb")
            fast = r >= SPEEDUP * (best or 0.0)
            small = rss is not None and rss <= RSS_KB_MAX
            peer_txt = (f"fastest peer {best_fw} {fmt(best)}/s" if best
                        else "no peer completed any")
            sp = f"{r / best:.1f}×" if best else "∞"
            verdicts.append(
                f"- W2 N={n:,}: all complete: **{'yes' if all_done else 'NO'}**; "
                f"Convoy {fmt(r)} sessions/s vs {peer_txt} → {sp} (target ≥ {SPEEDUP:g}×): "
                f"**{'MET' if fast else 'NOT MET'}**; RSS/session {fmt(rss, 1)} KB (target ≤ "
                f"{RSS_KB_MAX:g}): **{'MET' if small else 'NOT MET'}** → overall "
                f"**{'MET' if all_done and fast and small else 'NOT MET'}**")

    seq_table("W3", "us_per_session",
              "W3 supervisor (3 delegations + report, latency 0) — µs per session",
              [("p50 µs", lambda ok: fmt(med(ok, "p50_session_us"))),
               ("p99 µs", lambda ok: fmt(med(ok, "p99_session_us"))),
               ("peak RSS MB", lambda ok: fmt(med(ok, "peak_rss_mb"))),
               ("model calls / session", lambda ok: fmt(med(ok, "model_calls_per_session"), 1)),
               commits])

    # ---- import / versions
    fws = sorted({k[1] for k in g}, key=fw_key)
    versions = {r["framework"]: r.get("versions") for r in rows if r.get("versions")}
    out.append("### Import + setup (s, median over all runs)\n")
    out.append("| framework | import+setup s | versions |")
    out.append("|---|---:|---|")
    for fw in fws:
        rs = [r for k, v in g.items() if k[1] == fw for r in v]
        vs = ", ".join(f"{k} {v}" for k, v in (versions.get(fw) or {}).items())
        out.append(f"| {name(fw)} | {fmt(med(rs, 'import_setup_s'), 2)} | {vs} |")
    out.append("")
    dur = sorted({r.get("durability") for r in rows
                  if r.get("framework") == US and r.get("durability")})
    if dur:
        out.append(f"Convoy journal: SQLite file store, durability = {', '.join(dur)} "
                   "(\"process\" = WAL, synchronous=NORMAL).\n")
    if verdicts:
        out.append("### Targets (Convoy vs the fastest peer, medians)\n")
        out += verdicts
        out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
