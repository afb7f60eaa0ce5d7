#!/usr/bin/env python3
"""How long each job killed mid-run by scripts/chaos.sh's worker scenario waited before a
worker ran it again: for every kill, the video the killed worker had started last, and the
first `transcode started` of that video after the kill, in any worker's JSON log (stdlib only).

usage: scripts/chaos_takeovers.py KILLS LOG_DIR
  KILLS: lines "WORKER EPOCH_MS" (one per SIGKILL); LOG_DIR holds WORKER.log for each worker.
Prints one line per kill on stderr and {"takeover_s": [...]} on stdout (null: never re-run).
"""

import datetime
import glob
import json
import os
import sys


def epoch_ms(timestamp):
    """tracing's RFC 3339 UTC timestamp ("2026-12-05T17:20:01.123456789Z") in epoch ms."""
    whole, _, fraction = timestamp.rstrip("Z").partition(".")
    at = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.timezone.utc)
    return at.timestamp() * 1000 + float("0." + (fraction or "0")) * 1000


def starts(path):
    """(epoch ms, video id) of every `transcode started` in a worker's log."""
    found = []
    for line in open(path, errors="replace"):
        if '"transcode started"' not in line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        found.append((epoch_ms(event["timestamp"]), event["video.id"]))
    return found


def main():
    kills_path, log_dir = sys.argv[1], sys.argv[2]
    logs = {os.path.basename(p)[: -len(".log")]: starts(p) for p in glob.glob(os.path.join(log_dir, "worker-*.log"))}
    every = sorted(s for found in logs.values() for s in found)
    takeovers = []
    for line in open(kills_path):
        if not line.strip():
            continue
        worker, killed_at = line.split()[0], float(line.split()[1])
        before = [video for at, video in logs.get(worker, []) if at <= killed_at]
        if not before:
            print(f"{worker} killed before it started a job", file=sys.stderr)
            takeovers.append(None)
            continue
        video = before[-1]
        again = next((at for at, v in every if v == video and at > killed_at), None)
        delay = None if again is None else round((again - killed_at) / 1000, 1)
        print(f"{worker}: video {video} running again after {delay} s", file=sys.stderr)
        takeovers.append(delay)
    print(json.dumps({"takeover_s": takeovers}))


if __name__ == "__main__":
    main()
