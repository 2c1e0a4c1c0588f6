"""W4, Python peers: start one unit, run a function returning a value, join; per-unit
latency. threading.Thread, and multiprocessing.Process with the fork, forkserver and spawn
start methods (the value comes back through a Queue, as escala's comes back through its
handle). Output: JSON lines (see common.emit; "tasks" is the number of units, so
seconds / tasks is the latency per unit).

    python w4_unit_latency.py
"""

import multiprocessing as mp
import threading

from common import emit, log, quick, timed

UNITS = 300
RUNS = 3


def ident(x, q=None):
    if q is not None:
        q.put(x)
    return x


def threads(n):
    for i in range(n):
        t = threading.Thread(target=ident, args=(i,))
        t.start()
        t.join()


def processes(ctx, n):
    q = ctx.Queue()
    for i in range(n):
        p = ctx.Process(target=ident, args=(i, q))
        p.start()
        assert q.get() == i
        p.join()


def main():
    log(f"W4 python: {UNITS} units one after the other")
    emit("W4", "Python threading.Thread", UNITS, timed(lambda: threads(UNITS), RUNS))
    for method in ["fork", "forkserver", "spawn"]:
        # spawn costs ~0.1 s per process: fewer units, same per-unit latency.
        n = UNITS if method != "spawn" else 60
        n = max(10, n // 10) if quick() else n
        ctx = mp.get_context(method)
        processes(ctx, 2)  # start the fork server / warm the imports
        emit("W4", f"Python multiprocessing {method}", n, timed(lambda: processes(ctx, n), RUNS))


if __name__ == "__main__":
    main()
