"""W6/W7 peers over the same Redis: Celery (prefork), Dramatiq, RQ (SimpleWorker).

    python w6_peers.py URL PEER w6 [TASKS]   # throughput with 2 worker processes, then
                                             # p50/p99 of 200 sequential round trips
    python w6_peers.py URL PEER w7 [TASKS]   # TASKS x sleep(1 ms); SIGKILL one worker at
                                             # 2 s, restart it; count lost (no result 60 s after the kill)

PEER: celery, celery-acks-late, dramatiq, rq. Prints one JSON line.
"""

import json
import os
import signal
import subprocess
import sys
import time

here = os.path.dirname(os.path.abspath(__file__))
url, peer, mode = sys.argv[1], sys.argv[2], sys.argv[3]
n = int(sys.argv[4]) if len(sys.argv) > 4 else 2000
os.environ.update(W6_REDIS_URL=url, W6_PEER=peer, PYTHONPATH=here)
bindir = os.path.dirname(sys.executable)
queue = f"w6-{os.getpid()}"

import w6_peer_apps as apps  # noqa: E402


def start_worker():
    if peer.startswith("celery"):
        cmd = [f"{bindir}/celery", "-A", "w6_peer_apps", "worker", "--concurrency", "1", "-P", "prefork",
               "--loglevel", "WARNING", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    elif peer == "dramatiq":
        cmd = [f"{bindir}/dramatiq", "w6_peer_apps", "--processes", "1", "--threads", "1"]
    else:
        cmd = [f"{bindir}/rq", "worker", "--url", url, "-w", "rq.worker.SimpleWorker", "--quiet", queue]
    return subprocess.Popen(cmd, cwd=here, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def kill(p, sig):
    try:
        os.killpg(p.pid, sig)
    except ProcessLookupError:
        pass
    p.wait()


if peer == "rq":
    from redis import Redis
    from rq import Queue

    q = Queue(queue, connection=Redis.from_url(url))

    def send(fn, x):
        return q.enqueue(fn, x, result_ttl=3600)

    def get(job, timeout):
        r = job.latest_result(timeout=max(1, int(timeout)))  # whole seconds (XREAD BLOCK)
        if r is None or r.type != r.Type.SUCCESSFUL:
            raise TimeoutError
        return r.return_value
elif peer == "dramatiq":
    def send(fn, x):
        return (apps.tiny if fn is apps.tiny_fn else apps.sleepy).send(x)

    def get(msg, timeout):
        return msg.get_result(block=True, timeout=int(timeout * 1000))
else:
    def send(fn, x):
        return (apps.tiny if fn is apps.tiny_fn else apps.sleepy).delay(x)

    def get(res, timeout):
        return res.get(timeout=timeout)


workers = [start_worker(), start_worker()]
try:
    for h in [send(apps.tiny_fn, i) for i in range(20)]:  # warm-up: workers are up
        get(h, 60)
    if mode == "w6":
        t = time.perf_counter()
        hs = [send(apps.tiny_fn, i) for i in range(n)]
        for i, h in enumerate(hs):
            assert get(h, 600) == i + 1
        secs = time.perf_counter() - t
        rts = []
        for i in range(200):
            t0 = time.perf_counter()
            get(send(apps.tiny_fn, i), 60)
            rts.append(time.perf_counter() - t0)
        rts.sort()
        out = {"workload": "W6", "side": peer, "tasks": n, "seconds": round(secs, 3),
               "tasks_per_s": round(n / secs), "rt_p50_ms": round(rts[99] * 1e3, 3),
               "rt_p99_ms": round(rts[197] * 1e3, 3)}
    else:
        t = time.perf_counter()
        hs = [send(apps.sleep_fn, i) for i in range(n)]
        time.sleep(max(0.0, 2.0 - (time.perf_counter() - t)))  # the workload's schedule
        kill(workers[0], signal.SIGKILL)
        workers[0] = start_worker()
        lost = 0
        deadline = time.perf_counter() + 60  # one deadline for all: a lost task costs no more
        for i, h in enumerate(hs):
            try:
                assert get(h, max(0.2, deadline - time.perf_counter())) == i
            except Exception as e:  # noqa: BLE001 - any failure to get the value counts
                if lost == 0:
                    print(f"first lost task {i}: {e!r}", file=sys.stderr)
                lost += 1
        out = {"workload": "W7", "side": peer, "tasks": n, "seconds": round(time.perf_counter() - t, 3),
               "lost": lost}
    print(json.dumps(out))
finally:
    for w in workers:
        kill(w, signal.SIGTERM)
