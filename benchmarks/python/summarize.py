"""Turns the raw output of benchmarks/run.sh into the results page (markdown on stdout).

    python summarize.py RAW_DIR [RAW_DIR...] > results/<date>.md

RAW_DIR holds machine.txt, loads.tsv and rep1/, rep2/, ...: each with criterion/ (the
CRITERION_HOME of that repetition), python_w{1,2,3,4,10}.jsonl and w10_memory.txt. Several RAW_DIRs
(runs of the same commit) are pooled into one set of repetitions. Every ratio is
computed within one repetition (escala and the peer ran minutes apart at most), then the
median and min-max of the per-repetition ratios are shown. A summary.json of all the
per-repetition figures is written into RAW_DIR as well. Standard library only.
"""

import json
import os
import statistics
import sys


def read_criterion(root):
    """{full_id: {"ns": median ns per iteration, "elements": n, "per_s": tasks/s}}."""
    out = {}
    for dirpath, _dirs, files in os.walk(root):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in files:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            bench = json.load(f)
        with open(os.path.join(dirpath, "estimates.json")) as f:
            ns = json.load(f)["median"]["point_estimate"]
        elements = (bench.get("throughput") or {}).get("Elements")
        rec = {"ns": ns, "elements": elements}
        if elements:
            rec["per_s"] = elements / (ns * 1e-9)
            rec["ns_per_task"] = ns / elements
        out[bench["full_id"]] = rec
    return out


def read_jsonl(path):
    out = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    rec = json.loads(line)
                    out[rec["peer"]] = rec
    return out


def read_w10(path):
    """{side: bytes per pending task} from the `W10\tside\tmedian\tmin\tmax\tMiB` lines."""
    out = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) == 6 and parts[0] == "W10":
                    out[parts[1]] = float(parts[2])
    return out


def read_loads(path):
    """{(rep, step): (before, after)}."""
    out = {}
    if os.path.exists(path):
        with open(path) as f:
            next(f, None)
            for line in f:
                parts = line.rstrip("\n").split("\t")
                if len(parts) == 4:
                    out[(int(parts[0]), parts[1])] = (parts[2], parts[3])
    return out


def stats(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "n": len(values)}


def fmt_ratio(v):
    if v is None:
        return "—"
    if v >= 100:
        return f"{v:.0f}×"
    if v >= 10:
        return f"{v:.1f}×"
    if v >= 0.1:
        return f"{v:.2f}×"
    return f"{v:.2g}×"


def fmt_rate(v):
    if v is None:
        return "—"
    if v >= 1e6:
        return f"{v / 1e6:.2f} M/s"
    if v >= 1e3:
        return f"{v / 1e3:.1f} k/s"
    return f"{v:.1f} /s"


def fmt_ns(v):
    if v is None:
        return "—"
    if v >= 1e6:
        return f"{v / 1e6:.2f} ms"
    if v >= 1e3:
        return f"{v / 1e3:.2f} µs"
    return f"{v:.0f} ns"


def fmt_s(v):
    if v is None:
        return "—"
    return f"{v * 1e3:.0f} ms" if v < 1 else f"{v:.2f} s"


def show(st, fmt):
    """`median [min–max]` (just the median when there is one repetition)."""
    if st is None:
        return "—"
    if st["n"] == 1:
        return f"**{fmt(st['median'])}**"
    return f"**{fmt(st['median'])}** [{fmt(st['min'])}–{fmt(st['max'])}]"


def plain(st, fmt):
    if st is None:
        return "—"
    if st["n"] == 1:
        return fmt(st["median"])
    return f"{fmt(st['median'])} [{fmt(st['min'])}–{fmt(st['max'])}]"


def met(st, ok):
    if st is None:
        return "—"
    return "**yes**" if ok(st["median"]) else "**no**"


def read_machine(raw):
    machine = {}
    with open(os.path.join(raw, "machine.txt")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            machine[k] = v
    return machine


def main():
    # One or more raw folders of the same commit: their repetitions are pooled, numbered
    # in order (rep 1..n of the first folder, then the next folder's).
    raws = sys.argv[1:]
    if not raws:
        sys.exit("usage: summarize.py RAW_DIR [RAW_DIR...] > results/<date>.md")
    raw = raws[0]
    machine = read_machine(raw)
    commits = [read_machine(r).get("commit") for r in raws]
    if len(set(commits)) > 1:
        sys.exit(f"the raw folders are of different commits: {commits}")
    reps, crit, pyw1, pyw2, pyw3, pyw4, pyw10, w10, loads = [], {}, {}, {}, {}, {}, {}, {}, {}
    for folder in raws:
        own = sorted(int(d[3:]) for d in os.listdir(folder) if d.startswith("rep") and d[3:].isdigit())
        own_loads = read_loads(os.path.join(folder, "loads.tsv"))
        for k in own:
            r = len(reps) + 1
            reps.append(r)
            base = os.path.join(folder, f"rep{k}")
            crit[r] = read_criterion(os.path.join(base, "criterion"))
            pyw1[r] = read_jsonl(os.path.join(base, "python_w1.jsonl"))
            pyw2[r] = read_jsonl(os.path.join(base, "python_w2.jsonl"))
            pyw4[r] = read_jsonl(os.path.join(base, "python_w4.jsonl"))
            pyw10[r] = read_jsonl(os.path.join(base, "python_w10.jsonl"))
            w10[r] = read_w10(os.path.join(base, "w10_memory.txt"))
            pyw3[r] = read_jsonl(os.path.join(base, "python_w3.jsonl"))
            for (kk, step), v in own_loads.items():
                if kk == k:
                    loads[(r, step)] = v
    if len(raws) > 1:
        machine["date"] += f" (+ {len(raws) - 1} later run(s) pooled)"

    def c(r, key, field="per_s"):
        return crit[r].get(key, {}).get(field)

    def p(table, r, peer, field="tasks_per_s"):
        return table[r].get(peer, {}).get(field)

    def ratio(a, b):
        return a / b if a and b else None

    summary = {"machine": machine, "reps": reps}
    L = []
    w = L.append
    w(f"# W1–W10 results — {machine.get('date', '?')}")
    w("")
    w("Produced by `benchmarks/run.sh" + (" --quick" if machine.get("quick") == "1" else "") + "`" +
      (f" ({len(raws)} runs pooled)" if len(raws) > 1 else "") + ". "
      f"{len(reps)} repetition(s), escala benchmarks and Python peers interleaved; every ratio is "
      "computed within one repetition, then **median [min–max]** across repetitions. "
      "Throughputs are criterion medians (10 samples) or medians of 3 runs (Python, 1 run for W3).")
    w("")
    w(f"- Machine: {machine.get('nproc')} CPUs, {machine.get('cpu')}, {machine.get('mem')}, "
      f"Linux {machine.get('kernel')}")
    w(f"- {machine.get('rustc')}; {machine.get('python')}; loky {machine.get('loky')}")
    dirty = machine.get("dirty", "").strip()
    w(f"- escala at commit `{machine.get('commit')}`" +
      (f"; uncommitted changes under crates/: {dirty}" if dirty else "; no uncommitted change under crates/"))
    w("")
    w("1-minute load (`/proc/loadavg`) before → after each step:")
    w("")
    steps = []
    for (r, s) in loads:
        if s not in steps:
            steps.append(s)
    w("| rep | " + " | ".join(steps) + " |")
    w("|---|" + "---|" * len(steps))
    for r in reps:
        cells = [f"{loads[(r, s)][0]} → {loads[(r, s)][1]}" if (r, s) in loads else "—" for s in steps]
        w(f"| {r} | " + " | ".join(cells) + " |")
    w("")

    # ---------------------------------------------------------------- W1
    g = "W1 tiny tasks/"
    e = {r: c(r, g + "escala ThreadPool submit+join") for r in reps}
    w("## W1 — 200,000 tiny tasks on a 2-worker pool, a handle per task")
    w("")
    w(f"escala `ThreadPool` submit + join per handle: {show(stats(e.values()), fmt_rate)}.")
    w("")
    w("| peer | peer throughput | escala ÷ peer (throughput) | target | met |")
    w("|---|---|---|---|---|")
    summary["W1"] = {"escala": e, "peers": {}}
    for label, peer, target, ok in [
        ("rayon spawn + channel per task", {r: c(r, g + "rayon spawn+channel") for r in reps}, "≥ 1.0×",
         lambda v: v >= 1.0),
        ("tokio spawn + `JoinHandle`", {r: c(r, g + "tokio spawn+JoinHandle") for r in reps}, "≥ 5×",
         lambda v: v >= 5),
        ("Python `ThreadPoolExecutor` submit (20,000 tasks)", {r: p(pyw1, r, "Python TPE submit") for r in reps},
         "≥ 100×", lambda v: v >= 100),
        ("Python `ThreadPoolExecutor` map (20,000 tasks)", {r: p(pyw1, r, "Python TPE map") for r in reps}, "—",
         None),
        ("rayon spawn + one shared channel (index)",
         {r: c(r, g + "rayon spawn+shared channel (index)") for r in reps}, "—", None),
        ("threadpool + channel (fire-and-forget, no handles)",
         {r: c(r, g + "threadpool+channel (fire-and-forget)") for r in reps}, "reference", None),
    ]:
        ratios = stats(ratio(e[r], peer[r]) for r in reps)
        summary["W1"]["peers"][label] = {"per_s": peer, "ratio": ratios}
        w(f"| {label} | {plain(stats(peer.values()), fmt_rate)} | {show(ratios, fmt_ratio)} | {target} | "
          f"{met(ratios, ok) if ok else '—'} |")
    w("")

    # ---------------------------------------------------------------- W2
    g = "W2 process pool/"
    e1 = {r: c(r, g + "escala submit+join") for r in reps}
    e2 = {r: c(r, g + "escala map_tasks") for r in reps}
    e3 = {r: c(r, g + "escala map_tasks map_window 1024 (diagnostic)") for r in reps}
    chunked = ["PPE map(chunksize=1000)", "mp.Pool imap_unordered(chunksize=1000)", "loky map(chunksize=1000)"]
    best_chunked = {r: max([v for v in (p(pyw2, r, x) for x in chunked) if v] or [None]) if pyw2[r] else None
                    for r in reps}
    # (label, escala side, {rep: peer tasks/s}, target text, target check)
    rows = [
        ("minimal pipe pool, one `write` per task (limit)", "one by one", e1,
         {r: c(r, g + "pipe pool one-by-one (limit)") for r in reps}, "≥ 0.8×", lambda v: v >= 0.8),
        ("Python `ProcessPoolExecutor` submit", "one by one", e1,
         {r: p(pyw2, r, "PPE submit") for r in reps}, "≥ 30×", lambda v: v >= 30),
        ("procspawn `Pool` spawn + join (5,000 tasks)", "one by one", e1,
         {r: c(r, g + "procspawn spawn+join (5k tasks)") for r in reps}, "—", None),
        ("loky submit", "one by one", e1, {r: p(pyw2, r, "loky submit") for r in reps}, "—", None),
        ("best Python chunked peer (max of the three below)", "`map_tasks`", e2, best_chunked,
         "≥ 1.5×", lambda v: v >= 1.5),
        ("Python PPE map(chunksize=1000)", "`map_tasks`", e2,
         {r: p(pyw2, r, "PPE map(chunksize=1000)") for r in reps}, "—", None),
        ("Python mp.Pool imap_unordered(chunksize=1000)", "`map_tasks`", e2,
         {r: p(pyw2, r, "mp.Pool imap_unordered(chunksize=1000)") for r in reps}, "—", None),
        ("loky map(chunksize=1000)", "`map_tasks`", e2,
         {r: p(pyw2, r, "loky map(chunksize=1000)") for r in reps}, "—", None),
        ("Python PPE map(chunksize=1)", "`map_tasks`", e2,
         {r: p(pyw2, r, "PPE map(chunksize=1)") for r in reps}, "—", None),
        ("Python mp.Pool imap_unordered(chunksize=1)", "`map_tasks`", e2,
         {r: p(pyw2, r, "mp.Pool imap_unordered(chunksize=1)") for r in reps}, "—", None),
        ("minimal pipe pool, chunks of 1,000 (limit)", "`map_tasks`", e2,
         {r: c(r, g + "pipe pool chunks of 1000 (limit)") for r in reps}, "reference", None),
        ("*diagnostic:* best Python chunked peer", "`map_tasks`, `map_window(1024)`", e3, best_chunked,
         "—", None),
        ("*diagnostic:* pipe pool, one `read` + one `write` per task on both sides", "one by one", e1,
         {r: c(r, g + "pipe pool one read+write per task (diagnostic)") for r in reps}, "—", None),
    ]
    w("## W2 — 100,000 tiny tasks `f(x)=x+1` on a 2-worker process pool")
    w("")
    w(f"escala one by one (`submit_task` + `join` per handle): {show(stats(e1.values()), fmt_rate)}; "
      f"escala `map_tasks` (no chunk size): {show(stats(e2.values()), fmt_rate)}; "
      f"*diagnostic:* `map_tasks` with `map_window(1024)`: {show(stats(e3.values()), fmt_rate)}.")
    w("")
    w("| peer | peer throughput | escala side | escala ÷ peer (throughput) | target | met |")
    w("|---|---|---|---|---|---|")
    summary["W2"] = {"escala submit+join": e1, "escala map_tasks": e2, "escala map_tasks window 1024": e3,
                     "peers": {}}
    for label, side, esc, peer, target, ok in rows:
        ratios = stats(ratio(esc[r], peer[r]) for r in reps)
        summary["W2"]["peers"][label] = {"per_s": peer, "ratio": ratios}
        w(f"| {label} | {plain(stats(peer.values()), fmt_rate)} | {side} | {show(ratios, fmt_ratio)} | "
          f"{target} | {met(ratios, ok) if ok else '—'} |")
    n_slow = {p(pyw2, r, "PPE submit", "tasks") for r in reps} - {None}
    w("")
    w(f"The Python one-task-per-message peers (PPE submit, map(1), imap_unordered(1), loky submit) ran "
      f"{', '.join(str(x) for x in sorted(n_slow)) or '?'} tasks per run, procspawn 5,000: compare tasks/s.")
    w("")

    # ---------------------------------------------------------------- W3
    g = "W3 fib speed-up/"
    serial = {r: c(r, g + "serial", "ns") for r in reps}
    w("## W3 — 400 × recursive fib(24), serial vs 2 workers: speed-up")
    w("")
    w(f"Serial (Rust): {show(stats(v * 1e-9 if v else None for v in serial.values()), fmt_s)} per 400.")
    w("")
    rayon = {r: c(r, g + "rayon 2 threads", "ns") for r in reps}
    w("| pool | time per 400 | speed-up (serial ÷ pool) | target | met | ÷ rayon's speed-up | "
      "load before → after, per rep |")
    w("|---|---|---|---|---|---|---|")
    summary["W3"] = {}
    load_w3 = "; ".join(f"{loads[(r, 'w3_speedup')][0]} → {loads[(r, 'w3_speedup')][1]}"
                        for r in reps if (r, "w3_speedup") in loads)
    load_py3 = "; ".join(f"{loads[(r, 'python w3')][0]} → {loads[(r, 'python w3')][1]}"
                         for r in reps if (r, "python w3") in loads)
    for label, key, target in [("escala ThreadPool, 2 workers", "escala ThreadPool 2 workers", True),
                               ("escala ProcessPool, 2 workers", "escala ProcessPool 2 workers", True),
                               ("rayon, 2 threads", "rayon 2 threads", False)]:
        t = {r: c(r, g + key, "ns") for r in reps}
        sp = stats(ratio(serial[r], t[r]) for r in reps)
        vs_rayon = stats(ratio(rayon[r], t[r]) for r in reps) if target else None
        summary["W3"][label] = {"ns": t, "speedup": sp, "vs_rayon": vs_rayon}
        w(f"| {label} | {plain(stats(v * 1e-9 if v else None for v in t.values()), fmt_s)} | "
          f"{show(sp, fmt_ratio)} | {'≥ 1.9×' if target else '—'} | "
          f"{met(sp, lambda v: v >= 1.9) if target else '—'} | {show(vs_rayon, fmt_ratio) if target else '—'} | "
          f"{load_w3} |")
    pser = {r: p(pyw3, r, "Python serial", "seconds") for r in reps}
    w(f"| Python serial | {plain(stats(pser.values()), fmt_s)} | 1 | — | — | — | {load_py3} |")
    for label in ["Python ThreadPoolExecutor 2", "Python ProcessPoolExecutor 2"]:
        t = {r: p(pyw3, r, label, "seconds") for r in reps}
        sp = stats(ratio(pser[r], t[r]) for r in reps)
        summary["W3"][label] = {"seconds": t, "speedup": sp}
        w(f"| {label} | {plain(stats(t.values()), fmt_s)} | {show(sp, fmt_ratio)} | — | — | — | {load_py3} |")
    w("")

    # ---------------------------------------------------------------- W4
    w("## W4 — start one unit, run a function returning a value, join: latency per unit")
    w("")
    w("| unit | escala per unit | peer | peer per unit | escala ÷ peer (time) | target | met |")
    w("|---|---|---|---|---|---|---|")
    summary["W4"] = {}

    def py_latency(r, peer):
        rec = pyw4[r].get(peer)
        return rec["seconds"] / rec["tasks"] * 1e9 if rec else None

    thread = {r: c(r, "W4 thread unit/escala::thread::spawn+join", "ns_per_task") for r in reps}
    proc = {r: c(r, "W4 process unit/escala::process::spawn+join", "ns_per_task") for r in reps}
    for unit, esc, label, peer, target, ok in [
        ("thread", thread, "`std::thread::spawn` + join",
         {r: c(r, "W4 thread unit/std::thread::spawn+join", "ns_per_task") for r in reps}, "≤ 1.1×",
         lambda v: v <= 1.1),
        ("thread", thread, "Python `threading.Thread`", {r: py_latency(r, "Python threading.Thread") for r in reps},
         "—", None),
        ("process", proc, "`Command` of `/bin/true`",
         {r: c(r, "W4 process unit/Command /bin/true", "ns_per_task") for r in reps}, "≤ 1.2×",
         lambda v: v <= 1.2),
        ("process", proc, "Python `multiprocessing` fork",
         {r: py_latency(r, "Python multiprocessing fork") for r in reps}, "≤ 0.25× (≥ 4× faster)",
         lambda v: v <= 0.25),
        ("process", proc, "Python `multiprocessing` forkserver",
         {r: py_latency(r, "Python multiprocessing forkserver") for r in reps}, "—", None),
        ("process", proc, "Python `multiprocessing` spawn",
         {r: py_latency(r, "Python multiprocessing spawn") for r in reps}, "—", None),
    ]:
        ratios = stats(ratio(esc[r], peer[r]) for r in reps)
        summary["W4"][f"{unit} vs {label}"] = {"escala_ns": esc, "peer_ns": peer, "ratio": ratios}
        w(f"| {unit} | {plain(stats(esc.values()), fmt_ns)} | {label} | {plain(stats(peer.values()), fmt_ns)} | "
          f"{show(ratios, fmt_ratio)} | {target} | {met(ratios, ok) if ok else '—'} |")
    w("")

    # ---------------------------------------------------------------- W9
    w("## W9 — scaling")
    w("")
    summary["W9"] = {}
    for pool in ["ThreadPool", "ProcessPool"]:
        g = f"W9 per-task cost {pool}/"
        sizes = sorted({int(k[len(g):]) for r in reps for k in crit[r] if k.startswith(g)})
        if not sizes:
            continue
        cost = {n: {r: c(r, g + str(n), "ns_per_task") for r in reps} for n in sizes}
        spread = {}
        for r in reps:
            vals = [cost[n][r] for n in sizes if cost[n][r]]
            spread[r] = max(vals) / min(vals) if len(vals) == len(sizes) else None
        sp = stats(spread.values())
        summary["W9"][f"per-task {pool}"] = {"ns_per_task": cost, "spread": sp}
        w(f"Per-task cost, escala {pool}, 2 workers, one by one (batch time ÷ batch size):")
        w("")
        w("| tasks | " + " | ".join(f"{n:,}" for n in sizes) + " | max ÷ min | target | met |")
        w("|---|" + "---|" * len(sizes) + "---|---|---|")
        w("| per task | " + " | ".join(plain(stats(cost[n].values()), fmt_ns) for n in sizes) +
          f" | {show(sp, lambda v: f'{v:.2f}×')} | ≤ 1.3× | {met(sp, lambda v: v <= 1.3)} |")
        w("")
    for pool, batch in [("ThreadPool", "W1 batch, 200,000 tasks"), ("ProcessPool", "W2 batch, 100,000 tasks")]:
        g = f"W9 workers {pool}/"
        ws = sorted({int(k[len(g):]) for r in reps for k in crit[r] if k.startswith(g)})
        if not ws:
            continue
        tp = {n: {r: c(r, g + str(n)) for r in reps} for n in ws}
        rel = {n: stats(ratio(tp[n][r], tp[ws[0]][r]) for r in reps) for n in ws}
        summary["W9"][f"workers {pool}"] = {"per_s": tp, "vs_1": rel}
        cores = int(machine.get("nproc") or 2)
        upto = [n for n in ws if n <= cores]
        steps = [stats(ratio(tp[b][r], tp[a][r]) for r in reps) for a, b in zip(upto, upto[1:])]
        ok = all(st and st["median"] >= 1.0 for st in steps)
        w(f"Throughput of escala {pool} by worker count ({batch}, one by one):")
        w("")
        w("| workers | " + " | ".join(str(n) for n in ws) + " | non-decreasing up to "
          f"{cores} cores (median of the per-rep ratios ≥ 1) |")
        w("|---|" + "---|" * len(ws) + "---|")
        w("| tasks/s | " + " | ".join(plain(stats(tp[n].values()), fmt_rate) for n in ws) +
          f" | {'**yes**' if ok else '**no**'} |")
        w(f"| ÷ {ws[0]} worker | " + " | ".join(show(rel[n], fmt_ratio) for n in ws) + " | |")
        w("")

    # ---------------------------------------------------------------- W10
    w("## W10 — memory: bytes per pending task, 1,000,000 tasks waiting on 2 blocked workers")
    w("")
    esc = {r: w10[r].get("escala ThreadPool") for r in reps}
    summary["W10"] = {"escala": esc, "peers": {}}
    w(f"escala `ThreadPool`: {show(stats(esc.values()), lambda v: f'{v:.0f} B')} per pending task "
      f"(target ≤ 128 B: {met(stats(esc.values()), lambda v: v <= 128)}), handle in the caller's `Vec` included.")
    w("")
    w("| peer | peer bytes per task | escala ÷ peer (memory) |")
    w("|---|---|---|")
    for label, peer in [
        ("tokio spawn + `JoinHandle`", {r: w10[r].get("tokio spawn + JoinHandle") for r in reps}),
        ("Python `ThreadPoolExecutor`", {r: p(pyw10, r, "Python ThreadPoolExecutor", "bytes_per_task") for r in reps}),
    ]:
        ratios = stats(ratio(esc[r], peer[r]) for r in reps)
        summary["W10"]["peers"][label] = {"bytes": peer, "ratio": ratios}
        w(f"| {label} | {plain(stats(peer.values()), lambda v: f'{v:.0f} B')} | {show(ratios, fmt_ratio)} |")
    w("")

    with open(os.path.join(raw, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1, default=str)
    print("\n".join(L))


if __name__ == "__main__":
    main()
