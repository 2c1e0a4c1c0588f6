#!/usr/bin/env bash
# W6 and W7 (Redis): escala's RedisExecutor + 2 worker processes vs a batched raw Redis
# Streams loop in Python (redis-py), Celery (prefork), Dramatiq and RQ (SimpleWorker),
# interleaved, 3 repetitions; prints the medians and ratios as a Markdown table.
#
#   benchmarks/w6_redis.sh              # 3 repetitions, about 15 minutes on 2 cores
#   benchmarks/w6_redis.sh --reps 1     # one repetition
#   benchmarks/w6_redis.sh --no-peers   # escala and raw Streams only (a minute)
#
# escala and raw Streams run 20,000 tasks; Celery, Dramatiq and RQ (a few hundred tasks/s)
# run 2,000 for W6 and W7 (compare tasks/s).
#
# Needs cargo, python3 (with venv) and redis-server. Starts its own redis-server on a free
# loopback port in a temporary directory (no persistence) and stops it at the end.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

reps=3
tasks=20000
peer_tasks=2000
peers=1
while [ $# -gt 0 ]; do
    case "$1" in
        --reps) reps=$2; shift ;;
        --tasks) tasks=$2; shift ;;
        --no-peers) peers=0 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
export PYTHONDONTWRITEBYTECODE=1

venv="$here/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/python/requirements-redis.txt"
[ "$peers" = 0 ] || "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/python/requirements-peers.txt"
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
    if [ "$peers" = 1 ]; then
        for peer in celery dramatiq rq; do
            "$venv/bin/python" "$here/python/w6_peers.py" "$url" "$peer" w6 "$peer_tasks" | tee -a "$out" >&2
        done
        for peer in celery celery-acks-late dramatiq rq; do
            "$venv/bin/python" "$here/python/w6_peers.py" "$url" "$peer" w7 "$peer_tasks" | tee -a "$out" >&2
        done
    fi
done

mkdir -p "$here/results/tmp"
cp "$out" "$here/results/tmp/w6_w7.jsonl"  # raw figures, ignored by git
python3 "$here/python/w6_summarize.py" "$out"
