"""W10, Python peer: resident bytes per pending task while 1,000,000 tasks wait in a
ThreadPoolExecutor whose 2 workers are blocked (futures kept in a list, as escala keeps
handles in a Vec). Prints one JSON line (see common.emit; "seconds" is the time to submit them all)."""

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from common import emit, log, quick

# Python takes about a minute for 10^6; --quick measures 10^5 (bytes per task hardly move).
TASKS = 100_000 if quick() else 1_000_000


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def ident(i):
    return i


def main():
    log(f"W10 python: {TASKS} pending tasks on 2 blocked workers")
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
        t0 = time.perf_counter()
        for i in range(TASKS):
            futures[i] = ex.submit(ident, i)
        submit_s = time.perf_counter() - t0
        after = rss_bytes()
        gate.set()
        assert sum(f.result() for f in futures) == (TASKS - 1) * TASKS // 2
    emit("W10", "Python ThreadPoolExecutor", TASKS, [submit_s],
         bytes_per_task=(after - before) / TASKS, rss_mib=after / 2**20)


if __name__ == "__main__":
    main()
