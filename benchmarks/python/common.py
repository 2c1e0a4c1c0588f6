"""Shared helpers of the Python peers: timing, the machine's load, JSON-lines output."""

import json
import os
import platform
import statistics
import sys
import time


def loadavg():
    """The 1-minute load average, from /proc/loadavg (None where there is none)."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except OSError:
        return None


def timed(fn, runs):
    """Runs `fn` `runs` times; returns the seconds of each run."""
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def emit(workload, peer, tasks, seconds, **extra):
    """Prints one result as a JSON line: the median of `seconds` and the throughput."""
    med = statistics.median(seconds)
    rec = {
        "workload": workload,
        "peer": peer,
        "tasks": tasks,
        "seconds": med,
        "runs": seconds,
        "tasks_per_s": tasks / med,
        "load": loadavg(),
        "python": platform.python_version(),
    }
    rec.update(extra)
    print(json.dumps(rec), flush=True)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def quick():
    return os.environ.get("ESCALA_BENCH_QUICK") is not None
