"""Medians and ratios of W6/W7 runs (the JSON lines w6_redis.sh collects) as Markdown.
The k-th row of each side belongs to repetition k; ratios are computed within a
repetition, then the median and min-max across repetitions are shown.

    python w6_summarize.py RESULTS.jsonl
"""

import json
import statistics
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]


def runs(side, wl):
    return [r for r in rows if r["side"] == side and r["workload"] == wl]


def spread(values, fmt):
    return f"{fmt(statistics.median(values))} [{fmt(min(values))}–{fmt(max(values))}]"


esc = runs("escala", "W6")
print("| W6: tiny tasks, 2 worker processes | tasks | tasks/s | escala ÷ peer (throughput) | round trip p50 | p99 | escala p50 ÷ peer p50 |")
print("|---|---|---|---|---|---|---|")
ms = lambda v: f"{v:.2f} ms"  # noqa: E731
print(f"| escala `RedisExecutor` | {esc[0]['tasks']:,} | {spread([r['tasks_per_s'] for r in esc], lambda v: f'{v:,.0f}')} | — "
      f"| {spread([r['rt_p50_ms'] for r in esc], ms)} | {spread([r['rt_p99_ms'] for r in esc], ms)} | — |")
for side in ("raw-streams-python", "celery", "dramatiq", "rq"):
    peer = runs(side, "W6")
    if not peer:
        continue
    k = min(len(peer), len(esc))
    tput = [esc[i]["tasks_per_s"] / peer[i]["tasks_per_s"] for i in range(k)]
    p50 = [esc[i]["rt_p50_ms"] / peer[i]["rt_p50_ms"] for i in range(k)]
    print(f"| {side} | {peer[0]['tasks']:,} | {spread([r['tasks_per_s'] for r in peer], lambda v: f'{v:,.0f}')} "
          f"| **{spread(tput, lambda v: f'{v:.2f}×')}** | {spread([r['rt_p50_ms'] for r in peer], ms)} "
          f"| {spread([r['rt_p99_ms'] for r in peer], ms)} | {spread(p50, lambda v: f'{v:.2f}×')} |")
print()
print("| W7: sleep(1 ms) tasks, one of 2 workers SIGKILLed at 2 s and restarted | runs | tasks per run | lost per run | redelivered per run | duplicate results per run |")
print("|---|---|---|---|---|---|")
for side in ("escala", "celery", "celery-acks-late", "dramatiq", "rq"):
    w = runs(side, "W7")
    if w:
        col = lambda key: "/".join(str(r[key]) for r in w) if key in w[0] else "—"  # noqa: E731
        print(f"| {side} | {len(w)} | {w[0]['tasks']:,} | {col('lost')} | {col('redelivered')} | {col('duplicate_results')} |")
