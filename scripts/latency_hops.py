#!/usr/bin/env python3
"""Where a request's time goes, hop by hop: the latency histograms each process of the stack
exports (hive-router, every flick process; Traefik's buckets are too coarse), diffed between
two snapshots, as p50/p99 per hop (stdlib only). Used by scripts/chaos.sh around its mixed load.

usage: scripts/latency_hops.py snapshot NAME=URL... > BEFORE.json
       scripts/latency_hops.py report BEFORE.json AFTER.json
A percentile is the upper bound of the bucket it falls in (what a histogram can say).
"""

import json
import re
import sys
import urllib.request

HISTOGRAMS = {
    "http_server_request_duration_seconds": "served",  # hive-router: the whole query
    "http_client_request_duration_seconds": "to subgraphs",  # hive-router's subgraph calls
    "http_request_duration_seconds": "served",  # flick
    "grpc_request_duration_seconds": "gRPC served",  # flick
    "db_query_duration_seconds": "database statements",  # flick
}
LINE = re.compile(r'^(\w+)_bucket\{(.*)\} (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(url):
    buckets = {}
    with urllib.request.urlopen(url, timeout=5) as answer:
        for line in answer.read().decode().splitlines():
            m = LINE.match(line)
            if not m or m.group(1) not in HISTOGRAMS:
                continue
            labels = dict(LABEL.findall(m.group(2)))
            route = labels.get("route") or labels.get("http_route") or ""
            # one flick process may serve several services (the dev stack): keep them apart
            service = labels.get("service", "")
            key = f"{HISTOGRAMS[m.group(1)]} {service} {route}".replace("  ", " ").strip()
            le = labels["le"]
            per = buckets.setdefault(key, {})
            per[le] = per.get(le, 0.0) + float(m.group(3))
    return buckets


def percentile(buckets, q):
    bounds = sorted(((float("inf") if le == "+Inf" else float(le)), n) for le, n in buckets.items())
    total = bounds[-1][1] if bounds else 0
    for bound, n in bounds:
        if total and n >= q * total:
            return bound
    return None


def ms(bound):
    return "–" if bound is None else (">" if bound == float("inf") else f"{bound * 1000:g}")


def main():
    if sys.argv[1:2] == ["snapshot"]:
        out = {}
        for arg in sys.argv[2:]:
            name, url = arg.split("=", 1)
            try:
                out[name] = scrape(url)
            except OSError as e:
                print(f"latency_hops: {name}: {e}", file=sys.stderr)
        json.dump(out, sys.stdout)
        return
    if sys.argv[1:2] != ["report"]:
        sys.exit(__doc__)
    before, after = (json.load(open(p)) for p in sys.argv[2:4])
    print("| hop | requests | p50 ms ≤ | p99 ms ≤ |")
    print("|---|---|---|---|")
    for name, hops in after.items():
        for hop, buckets in sorted(hops.items()):
            start = before.get(name, {}).get(hop, {})
            delta = {le: n - start.get(le, 0.0) for le, n in buckets.items()}
            count = max(delta.values(), default=0)
            if count >= 1:
                print(f"| {name} {hop} | {count:.0f} | {ms(percentile(delta, 0.5))} | {ms(percentile(delta, 0.99))} |")


if __name__ == "__main__":
    main()
