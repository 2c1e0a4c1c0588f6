#!/usr/bin/env bash
# W6 and W7 (Redis): escala's RedisExecutor + 2 worker processes vs a batched raw Redis
# Streams loop in Python (redis-py), interleaved, 3 repetitions; prints the medians and
# ratios as a Markdown table.
#
#   benchmarks/w6_redis.sh            # 3 repetitions of W6 (both sides) and W7
#   benchmarks/w6_redis.sh --reps 1   # one repetition
#
# Needs cargo, python3 (with venv) and redis-server. Starts its own redis-server on a free
# loopback port in a temporary directory (no persistence) and stops it at the end.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

reps=3
tasks=20000
while [ $# -gt 0 ]; do
    case "$1" in
        --reps) reps=$2; shift ;;
        --tasks) tasks=$2; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
export PYTHONDONTWRITEBYTECODE=1

venv="$here/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/python/requirements-redis.txt"
cargo build --release --quiet -p escala-redis --example w6_w7
bin="$root/target/release/examples/w6_w7"

tmp=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$tmp" \
    --daemonize yes --pidfile "$tmp/redis.pid" --logfile "$tmp/redis.log"
trap 'kill "$(cat "$tmp/redis.pid" 2>/dev/null)" 2>/dev/null || true; rm -rf "$tmp"' EXIT
url="redis://127.0.0.1:$port"
until redis-cli -p "$port" ping >/dev/null 2>&1; do sleep 0.05; done

out="$tmp/results.jsonl"
for rep in $(seq "$reps"); do
    echo "== repetition $rep/$reps (load $(cut -d' ' -f1 /proc/loadavg))" >&2
    "$venv/bin/python" "$here/python/w6_raw_streams.py" "$url" "$tasks" | tee -a "$out" >&2
    "$bin" w6 "$url" "$tasks" | tee -a "$out" >&2
    "$bin" w7 "$url" "$tasks" | tee -a "$out" >&2
done

python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(side, key, wl="W6"):
    return statistics.median(r[key] for r in rows if r["side"] == side and r["workload"] == wl)
e, p = "escala", "raw-streams-python"
print(f"| W6 ({rows[0]['tasks']:,} tiny tasks, 2 workers) | escala | raw Streams, Python | ratio |")
print("|---|---|---|---|")
print(f"| throughput | {med(e,'tasks_per_s'):,.0f}/s | {med(p,'tasks_per_s'):,.0f}/s | **{med(e,'tasks_per_s')/med(p,'tasks_per_s'):.2f}×** |")
for k, label in (("rt_p50_ms", "round trip p50"), ("rt_p99_ms", "round trip p99")):
    print(f"| {label} | {med(e,k):.2f} ms | {med(p,k):.2f} ms | **{med(e,k)/med(p,k):.2f}×** of raw |")
w7 = [r for r in rows if r["workload"] == "W7"]
print()
print("| W7 run | seconds | lost | redelivered | duplicate results |")
print("|---|---|---|---|---|")
for i, r in enumerate(w7, 1):
    print(f"| {i} | {r['seconds']:.1f} | {r['lost']} | {r['redelivered']} | {r['duplicate_results']} |")
PY
