#!/usr/bin/env python3
"""The load and fault suite's table (scripts/chaos.sh): one row per scenario, medians over its
runs, from the JSON lines flick-load appended (stdlib only).

usage: scripts/chaos_table.py SUMMARY.jsonl
"""

import json
import statistics
import sys

READS = ("feed", "search", "video", "related", "recommendedForMe", "profile")
WRITES = ("like", "unlike", "comment", "subscribe", "unsubscribe", "createVideo", "upload")


def worst(kinds, names, field):
    values = [kinds[n][field] for n in names if n in kinds]
    return max(values) if values else None


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, digits=0):
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) or digits else str(value)


def main():
    runs = {}
    kills = []
    for line in open(sys.argv[1]):
        if not line.strip():
            continue
        row = json.loads(line)
        if row["label"] == "worker-kills":
            kills.append(row)
            continue
        runs.setdefault(row["label"], []).append(row)

    print("\n| scenario | runs | users | req/s | read p50 / p99 ms (worst kind) | write p50 / p99 ms (worst kind) "
          "| failed by the platform (in fault window) | timeouts | lost writes | fault | recovery s | writes settled s | held |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for label, rows in runs.items():
        if label == "worker":
            settled = median([r["settled_s"] for r in rows])
            held = all(r["passed"] for r in rows)
            swept = kills and all(k["scratch_left"] == 0 for k in kills)
            # A job that never ran again counts as the longest wait there can be.
            waits = [max((t if t is not None else float("inf")) for t in k.get("takeover_s") or [None]) for k in kills]
            print(f"| worker | {len(rows)} | – | – | – | – | – | – | {median([r['problems'] for r in rows]):.0f} "
                  f"| {median([k['kills'] for k in kills]) if kills else '?'} worker SIGKILLs mid-job, {rows[0]['uploads']} uploads "
                  f"| killed job running again ≤ {fmt(median(waits), 1) + ' s' if all(w < float('inf') for w in waits) else 'never'} "
                  f"| all READY {fmt(settled, 1)} after the last upload "
                  f"| {'yes' if held and swept and waits and max(waits) <= 15 else 'NO'} |")
            continue
        m = lambda f: median([f(r) for r in rows])  # noqa: E731
        faults = rows[0]["faults"]
        fault = ", ".join(f"{f['name']} {f['seconds']:.0f} s" for f in faults) or "none"
        recovery = m(lambda r: max([f["recovery_s"] for f in r["faults"]], default=None))
        settled = m(lambda r: max(c["settled_s"] for c in r["checks"]))
        print(
            f"| {label} | {len(rows)} | {rows[0]['users']} | {fmt(m(lambda r: r['rps']), 0)} "
            f"| {fmt(m(lambda r: worst(r['kinds'], READS, 'p50_ms')))} / {fmt(m(lambda r: worst(r['kinds'], READS, 'p99_ms')))} "
            f"| {fmt(m(lambda r: worst(r['kinds'], WRITES, 'p50_ms')))} / {fmt(m(lambda r: worst(r['kinds'], WRITES, 'p99_ms')))} "
            f"| {fmt(m(lambda r: r['server_errors']))} ({fmt(m(lambda r: r['server_errors_tolerated']))}) "
            f"| {fmt(m(lambda r: r['timeouts']))} | {fmt(m(lambda r: r['lost_writes']))} | {fault} "
            f"| {fmt(recovery, 1)} | {fmt(settled, 1)} | {'yes' if all(r['passed'] for r in rows) else 'NO'} |"
        )


if __name__ == "__main__":
    main()
