"""W1, Python peers: tiny tasks (return the input integer) on a 2-worker
ThreadPoolExecutor, every result read through its own future, sum checked; and the same
through map. 200,000 tasks is W1's size; Python runs 20,000 per measurement (it does
~10^4-10^5 tasks/s): compare tasks/s. Output: JSON lines (see common.emit).

    python w1_tiny_tasks.py
"""

import concurrent.futures as cf

from common import emit, log, quick, timed

TASKS = 2_000 if quick() else 20_000
WORKERS = 2
RUNS = 3


def ident(x):
    return x


WANT = TASKS * (TASKS - 1) // 2


def submit(ex):
    futs = [ex.submit(ident, i) for i in range(TASKS)]
    assert sum(f.result() for f in futs) == WANT


def mapped(ex):
    assert sum(ex.map(ident, range(TASKS))) == WANT


def main():
    log(f"W1 python: {TASKS} tiny tasks, {WORKERS} workers")
    with cf.ThreadPoolExecutor(WORKERS) as ex:
        list(ex.map(ident, range(10)))
        emit("W1", "Python TPE submit", TASKS, timed(lambda: submit(ex), RUNS))
        emit("W1", "Python TPE map", TASKS, timed(lambda: mapped(ex), RUNS))


if __name__ == "__main__":
    main()
