"""W2, Python peers: tiny tasks f(x) = x + 1 on a 2-worker process pool, all results checked.

Peers: concurrent.futures.ProcessPoolExecutor submit (a future per task, each result read)
and map(chunksize=1, 1000); multiprocessing.Pool.imap_unordered(chunksize=1, 1000); loky's
reusable executor, submit and map(chunksize=1000).

The workload is 100,000 tasks. The peers that move one task per message (PPE submit and
map(1), imap_unordered(1), loky submit) run about 10^4 tasks/s, so they run 10,000 tasks
(2,000 with --quick): the figure to compare is tasks/s. Every pool is built and warmed up
(its workers started) before it is timed; each peer is timed 3 times, the median is printed.

Output: one JSON line per peer on stdout (see common.emit).

    python w2_process_pool.py [--quick]
"""

import concurrent.futures as cf
import multiprocessing as mp
import sys

from common import emit, log, quick, timed

WORKERS = 2
TASKS = 100_000
SLOW_TASKS = 2_000 if (quick() or "--quick" in sys.argv) else 10_000
RUNS = 3


def inc(x):
    return x + 1


def check_ordered(results, n):
    i = 0
    for v in results:
        if v != i + 1:
            raise AssertionError(f"task {i}: got {v}")
        i += 1
    if i != n:
        raise AssertionError(f"{i} results, expected {n}")


def check_unordered(results, n):
    seen = bytearray(n)
    for v in results:
        seen[v - 1] += 1
    if seen.count(1) != n:
        raise AssertionError("missing or duplicated results")


def submit_all(ex, n):
    futs = [ex.submit(inc, i) for i in range(n)]
    check_ordered((f.result() for f in futs), n)


def main():
    log(f"W2 python: {TASKS} tasks ({SLOW_TASKS} for one-task-per-message peers), {WORKERS} workers")
    mp_ctx = mp.get_context()
    start = mp_ctx.get_start_method()

    with cf.ProcessPoolExecutor(WORKERS) as ex:
        submit_all(ex, 1000)  # start the workers
        n = SLOW_TASKS
        emit("W2", "PPE submit", n, timed(lambda: submit_all(ex, n), RUNS), start=start)
        emit("W2", "PPE map(chunksize=1)", n,
             timed(lambda: check_ordered(ex.map(inc, range(n), chunksize=1), n), RUNS), start=start)
        n = TASKS
        emit("W2", "PPE map(chunksize=1000)", n,
             timed(lambda: check_ordered(ex.map(inc, range(n), chunksize=1000), n), RUNS), start=start)

    with mp_ctx.Pool(WORKERS) as pool:
        check_unordered(pool.imap_unordered(inc, range(1000), chunksize=1), 1000)
        n = SLOW_TASKS
        emit("W2", "mp.Pool imap_unordered(chunksize=1)", n,
             timed(lambda: check_unordered(pool.imap_unordered(inc, range(n), chunksize=1), n), RUNS),
             start=start)
        n = TASKS
        emit("W2", "mp.Pool imap_unordered(chunksize=1000)", n,
             timed(lambda: check_unordered(pool.imap_unordered(inc, range(n), chunksize=1000), n), RUNS),
             start=start)

    try:
        import loky
    except ImportError:
        log("loky is not installed: skipped (benchmarks/run.sh installs it into benchmarks/.venv)")
        return
    ex = loky.get_reusable_executor(max_workers=WORKERS)
    submit_all(ex, 1000)
    n = SLOW_TASKS
    emit("W2", "loky submit", n, timed(lambda: submit_all(ex, n), RUNS), loky=loky.__version__)
    n = TASKS
    emit("W2", "loky map(chunksize=1000)", n,
         timed(lambda: check_ordered(ex.map(inc, range(n), chunksize=1000), n), RUNS), loky=loky.__version__)
    ex.shutdown(wait=True)


if __name__ == "__main__":
    main()
