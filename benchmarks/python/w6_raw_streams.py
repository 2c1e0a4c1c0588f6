"""W6 peer: the limit of Redis Streams from Python, a batched raw loop with redis-py.

A producer XADDs tasks in pipelines of 100; 2 worker processes XREADGROUP batches of 100,
compute x+1, and in one pipeline XADD the results to a reply stream and XACK; the producer
XREADs replies until it has every result. Then 1,000 sequential round trips (one XADD,
one blocking XREAD for the reply). Prints one JSON line like the escala side.

    python w6_raw_streams.py URL [TASKS]
"""

import json
import multiprocessing as mp
import os
import sys
import time

import redis

BATCH = 100


def worker(url, stream, group, reply, name):
    r = redis.Redis.from_url(url)
    while True:
        got = r.xreadgroup(group, name, {stream: ">"}, count=BATCH, block=1000)
        if not got:
            continue
        p = r.pipeline(transaction=False)
        ids = []
        for _, entries in got:
            for eid, fields in entries:
                x = int(fields[b"x"])
                p.xadd(reply, {"i": fields[b"i"], "y": x + 1})
                ids.append(eid)
        p.xack(stream, group, *ids)
        p.execute()


def main():
    url = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20000
    tag = f"{os.getpid()}"
    stream, reply, group = f"raw:q:{tag}", f"raw:r:{tag}", "g"
    r = redis.Redis.from_url(url)
    r.xgroup_create(stream, group, id="0", mkstream=True)
    procs = [mp.Process(target=worker, args=(url, stream, group, reply, f"w{i}")) for i in range(2)]
    for p in procs:
        p.start()
    last = "0-0"

    def run(count, start):
        nonlocal last
        for lo in range(0, count, BATCH):
            p = r.pipeline(transaction=False)
            for i in range(lo, min(lo + BATCH, count)):
                p.xadd(stream, {"i": start + i, "x": start + i})
            p.execute()
        seen = 0
        while seen < count:
            for _, entries in r.xread({reply: last}, count=1000, block=5000):
                for eid, fields in entries:
                    last = eid
                    assert int(fields[b"y"]) == int(fields[b"i"]) + 1
                    seen += 1

    run(200, 0)  # warm-up
    t = time.perf_counter()
    run(n, 1000)
    secs = time.perf_counter() - t
    rts = []
    for i in range(1000):
        t0 = time.perf_counter()
        r.xadd(stream, {"i": i, "x": i})
        got = r.xread({reply: last}, count=1, block=5000)
        last = got[0][1][0][0]
        rts.append(time.perf_counter() - t0)
    rts.sort()
    for p in procs:
        p.terminate()
        p.join()
    r.delete(stream, reply)
    print(json.dumps({
        "workload": "W6", "side": "raw-streams-python", "tasks": n, "seconds": round(secs, 3),
        "tasks_per_s": round(n / secs), "rt_p50_ms": round(rts[499] * 1e3, 3),
        "rt_p99_ms": round(rts[989] * 1e3, 3),
    }))


if __name__ == "__main__":
    main()
