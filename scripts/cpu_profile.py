#!/usr/bin/env python3
"""CPU time per component of the stack over a window, from /proc (stdlib only): where the
machine's cores went while scripts/chaos.sh ran its load.

usage: scripts/cpu_profile.py snapshot > BEFORE.json
       scripts/cpu_profile.py report BEFORE.json AFTER.json WALL_SECONDS
A component is a flick process's service (replicas summed: `flick accounts` x2), a worker, or
a program (traefik, hive-router, postgres, redis, rabbitmq, seaweedfs, flick-load, ffmpeg).
A process that started inside the window counts from zero; one that ended inside it is not
counted (the load's scenarios kill nothing).
"""

import json
import os
import sys

TICKS = os.sysconf("SC_CLK_TCK")
PROGRAMS = {
    "traefik": "traefik",
    "hive-router": "hive-router",
    "hive_router": "hive-router",
    "postgres": "postgres",
    "redis-server": "redis",
    "beam.smp": "rabbitmq",
    "weed": "seaweedfs",
    "flick-load": "flick-load (load generator)",
    "ffmpeg": "ffmpeg",
    "prometheus": "prometheus",
}


def label(pid):
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    if not argv:
        return None
    program = os.path.basename(argv[0])
    if program == "flick":
        if "--services" in argv:
            return "flick " + argv[argv.index("--services") + 1]
        return "flick " + (argv[1] if len(argv) > 1 else "")
    for name, component in PROGRAMS.items():
        if program.startswith(name):
            return component
    return "other"


def snapshot():
    seen = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            component = label(pid)
        except OSError:
            continue
        if component:
            # utime and stime are fields 14 and 15 of stat; `fields` starts at field 3.
            seen[pid] = [component, (int(fields[11]) + int(fields[12])) / TICKS]
    return seen


def report(before, after, wall):
    used = {}
    for pid, (component, seconds) in after.items():
        start = before.get(pid, [component, 0.0])[1]
        used[component] = used.get(component, 0.0) + max(seconds - start, 0.0)
    capacity = wall * os.cpu_count()
    total = sum(used.values())
    print(f"CPU over {wall:.0f} s on {os.cpu_count()} cores: {100 * total / capacity:.0f}% of the machine busy")
    print("| component | CPU s | share of the machine |")
    print("|---|---|---|")
    for component, seconds in sorted(used.items(), key=lambda kv: -kv[1]):
        if seconds >= 0.05:
            print(f"| {component} | {seconds:.1f} | {100 * seconds / capacity:.0f}% |")


def main():
    if sys.argv[1:2] == ["snapshot"]:
        json.dump(snapshot(), sys.stdout)
    elif sys.argv[1:2] == ["report"]:
        before, after = (json.load(open(p)) for p in sys.argv[2:4])
        report(before, after, float(sys.argv[4]))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
