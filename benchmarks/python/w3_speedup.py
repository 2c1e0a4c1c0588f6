"""W3, Python peers: 400 x recursive fib(24), serial vs 2 workers: speed-up.

Peers: serial (a plain loop), concurrent.futures.ThreadPoolExecutor(2) and
ProcessPoolExecutor(2), one future per computation, every result read and the sum checked.
Each pool is built and warmed up before it is timed. The speed-up is serial / pool in the
same invocation. Output: one JSON line per peer on stdout (see common.emit).

    python w3_speedup.py
"""

import concurrent.futures as cf

from common import emit, log, timed

TASKS = 400
N = 24
WORKERS = 2
RUNS = 1


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


WANT = TASKS * fib(N)


def serial():
    assert sum(fib(N) for _ in range(TASKS)) == WANT


def on(ex):
    futs = [ex.submit(fib, N) for _ in range(TASKS)]
    assert sum(f.result() for f in futs) == WANT


def main():
    log(f"W3 python: {TASKS} x fib({N}), {WORKERS} workers")
    base = timed(serial, RUNS)
    emit("W3", "Python serial", TASKS, base)
    with cf.ThreadPoolExecutor(WORKERS) as ex:
        list(ex.map(fib, [10] * 4))
        emit("W3", "Python ThreadPoolExecutor 2", TASKS, timed(lambda: on(ex), RUNS))
    with cf.ProcessPoolExecutor(WORKERS) as ex:
        list(ex.map(fib, [10] * 4))
        emit("W3", "Python ProcessPoolExecutor 2", TASKS, timed(lambda: on(ex), RUNS))


if __name__ == "__main__":
    main()
