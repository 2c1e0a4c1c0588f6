"""W10, Python peer: resident bytes per pending task while 1,000,000 tasks wait in a
ThreadPoolExecutor whose 2 workers are blocked (futures kept in a list, as escala keeps
handles in a Vec). Prints one JSON line (see common.py)."""

import json
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from common import loadavg

TASKS = int(os.environ.get("W10_TASKS", "1000000"))


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def ident(i):
    return i


def main():
    started = threading.Barrier(3)
    gate = threading.Event()

    def block():
        started.wait()
        gate.wait()

    with ThreadPoolExecutor(2) as ex:
        ex.submit(block)
        ex.submit(block)
        started.wait()
        futures = [None] * TASKS
        before = rss_bytes()
        for i in range(TASKS):
            futures[i] = ex.submit(ident, i)
        after = rss_bytes()
        gate.set()
        assert sum(f.result() for f in futures) == (TASKS - 1) * TASKS // 2
    print(json.dumps({
        "workload": "W10",
        "peer": "Python ThreadPoolExecutor",
        "tasks": TASKS,
        "bytes_per_task": (after - before) / TASKS,
        "rss_mib": after / 2**20,
        "load": loadavg(),
        "python": sys.version.split()[0],
    }))


if __name__ == "__main__":
    main()
