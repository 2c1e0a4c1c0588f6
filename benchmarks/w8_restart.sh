#!/usr/bin/env bash
# W8: supervisor restart latency. SIGKILL the one worker, time until its replacement runs
# its first instruction (the worker reports CLOCK_MONOTONIC on a FIFO); 50 kills per run,
# p50/p99; 3 runs per supervisor, interleaved; medians of the runs are reported.
#
#   benchmarks/w8_restart.sh              # 3 runs x 50 kills each (about 5 minutes)
#   benchmarks/w8_restart.sh --reps 1     # one run each
#
# Peers: `escala serve`, supervisord (apt package `supervisor`), cotyledon (pip, into
# benchmarks/.venv) and a minimal SIGCHLD restarter (benches/src/bin/w8_restarter.rs).
# All run the same worker, benches/src/bin/w8_worker.rs. Kills are 300 ms apart, so no
# supervisor sees a crash loop (escala: backoff.reset_after = 100ms; supervisord:
# startsecs = 0).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

reps=3
kills=50
while [ $# -gt 0 ]; do
    case "$1" in
        --reps) reps=$2; shift ;;
        --kills) kills=$2; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
note() { printf '%s\n' "$*" >&2; }

# 1. The peers.
if ! command -v supervisord >/dev/null 2>&1; then
    note "== installing supervisor"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq supervisor >/dev/null
fi
venv="$here/.venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check cotyledon
note "== building escala and the W8 helpers (release)"
cargo build --release --quiet -p escala-cli -p escala-benches \
    --bin escala --bin w8_worker --bin w8_driver --bin w8_restarter
bin="$root/target/release"

# 2. A scratch directory with the FIFO and each peer's config.
work=$(mktemp -d)
peer_pid=""
cleanup() {
    [ -n "$peer_pid" ] && kill -TERM "$peer_pid" 2>/dev/null && wait "$peer_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
fifo="$work/w8.fifo"
mkfifo "$fifo"
export W8_FIFO="$fifo"

cat >"$work/services.toml" <<TOML
[services.w8]
command = ["$bin/w8_worker"]
backoff = { reset_after = "100ms" }
crash_loop = { max = 0 }
TOML
cat >"$work/supervisord.conf" <<CONF
[supervisord]
nodaemon = true
logfile = $work/supervisord.log
pidfile = $work/supervisord.pid
[program:w8]
command = $bin/w8_worker
autorestart = true
startsecs = 0
startretries = 1000000
environment = W8_FIFO="$fifo"
CONF

run() { # label, command...
    local label=$1; shift
    "$@" >"$work/$label.out" 2>&1 &
    peer_pid=$!
    "$bin/w8_driver" --fifo "$fifo" --label "$label" --kills "$kills" --settle-ms 300
    kill -TERM "$peer_pid" 2>/dev/null || true
    wait "$peer_pid" 2>/dev/null || true
    peer_pid=""
}

# 3. Interleaved runs: label p50 p99 min max n, one line per run.
raw="$work/raw.txt"
for rep in $(seq 1 "$reps"); do
    note "== run $rep of $reps"
    run restarter "$bin/w8_restarter" "$bin/w8_worker" | tee -a "$raw"
    run escala "$bin/escala" serve "$work/services.toml" --socket "$work/ctl.sock" | tee -a "$raw"
    run cotyledon "$venv/bin/python" "$here/python/w8_cotyledon.py" "$bin/w8_worker" | tee -a "$raw"
    run supervisord supervisord -c "$work/supervisord.conf" | tee -a "$raw"
done

# 4. Medians over the runs, and ratios to the minimal restarter.
echo
echo "W8 restart latency, $kills kills per run, median of $reps runs ($(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg))"
awk '
    { p50[$1] = p50[$1] " " $2; p99[$1] = p99[$1] " " $3 }
    function median(s,   a, n, i, j, t) {
        n = split(s, a, " ")
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END {
        base = median(p50["restarter"])
        printf "| supervisor | p50 ms | p99 ms | p50 / minimal restarter | p50 / escala |\n|---|---|---|---|---|\n"
        split("restarter escala cotyledon supervisord", order, " ")
        for (k = 1; k <= 4; k++) {
            l = order[k]; m = median(p50[l])
            printf "| %s | %.2f | %.2f | %.2fx | %.1fx |\n", l, m, median(p99[l]), m / base, m / median(p50["escala"])
        }
    }' "$raw"
