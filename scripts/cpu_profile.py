#!/usr/bin/env python3
"""CPU time per component of the stack over a window, from /proc (stdlib only): where the
machine's cores went while scripts/chaos.sh ran its load.

usage: scripts/cpu_profile.py snapshot > BEFORE.json
       scripts/cpu_profile.py report BEFORE.json AFTER.json WALL_SECONDS [REQUESTS]
With REQUESTS (served in the window), each component's CPU per request too.
A component is a flick process's service (replicas summed: `flick accounts` x2), a worker, or
a program (traefik, hive-router, postgres, redis, rabbitmq, seaweedfs, flick-load, ffmpeg).
A process that started inside the window counts from zero. Short-lived processes (a worker's
ffmpeg runs, PostgreSQL's backends) end inside the window: their time is read from their
parent's reaped-children counters (a worker's go to "ffmpeg"). The machine's own busy time
(/proc/stat) is printed beside the sum, so what no process accounts for shows.
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
    "wrk": "wrk (load generator)",
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


def machine_busy():
    """Busy CPU seconds of the whole machine since boot (every core)."""
    with open("/proc/stat") as f:
        ticks = [int(t) for t in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks[:8]) - idle) / TICKS


def snapshot():
    seen = {"machine": machine_busy()}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            component = label(pid)
        except OSError:
            continue
        if component:
            # utime, stime, cutime, cstime are fields 14-17 of stat; `fields` starts at field 3.
            own = (int(fields[11]) + int(fields[12])) / TICKS
            reaped = (int(fields[13]) + int(fields[14])) / TICKS
            children = "ffmpeg" if component.startswith("flick worker") else component
            seen[pid] = [component, own, children, reaped]
    return seen


def report(before, after, wall, requests=None):
    used = {}
    for pid, (component, own, children, reaped) in ((p, v) for p, v in after.items() if p != "machine"):
        _, own_before, _, reaped_before = before.get(pid, [component, 0.0, children, 0.0])
        used[component] = used.get(component, 0.0) + max(own - own_before, 0.0)
        used[children] = used.get(children, 0.0) + max(reaped - reaped_before, 0.0)
    capacity = wall * os.cpu_count()
    total = sum(used.values())
    busy = after["machine"] - before["machine"]
    print(f"CPU over {wall:.0f} s on {os.cpu_count()} cores: {100 * busy / capacity:.0f}% of the machine busy "
          f"(/proc/stat), {100 * total / capacity:.0f}% accounted to the processes below")
    per = f" | ms per request ({requests} requests)" if requests else ""
    print(f"| component | CPU s | share of the machine{per} |")
    print("|---|---|---|" + ("---|" if requests else ""))
    for component, seconds in sorted(used.items(), key=lambda kv: -kv[1]):
        if seconds >= 0.05:
            cell = f" {1000 * seconds / requests:.3f} |" if requests else ""
            print(f"| {component} | {seconds:.1f} | {100 * seconds / capacity:.0f}% |{cell}")


def main():
    if sys.argv[1:2] == ["snapshot"]:
        json.dump(snapshot(), sys.stdout)
    elif sys.argv[1:2] == ["report"]:
        before, after = (json.load(open(p)) for p in sys.argv[2:4])
        report(before, after, float(sys.argv[4]), int(sys.argv[5]) if len(sys.argv) > 5 else None)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
