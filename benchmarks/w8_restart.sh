#!/usr/bin/env bash
# W8: supervisor restart latency. SIGKILL the one worker, time until its replacement runs
# its first instruction (the worker reports CLOCK_MONOTONIC on a FIFO); 50 kills per run,
# p50/p99; 3 runs per supervisor, interleaved; medians of the runs are reported.
#
#   benchmarks/w8_restart.sh                      # 3 runs x 50 kills each (about 15 minutes)
#   benchmarks/w8_restart.sh --reps 1 --kills 20  # a quick look
#   W8_PEERS="restarter escala" benchmarks/w8_restart.sh   # some peers only
#
# Peers: `escala serve`, supervisord (apt package `supervisor`), cotyledon (pip, into
# benchmarks/.venv) and a minimal SIGCHLD restarter (benches/src/bin/w8_restarter.rs).
# All run the same worker, benches/src/bin/w8_worker.rs. Kills are 1.1 s apart so that no
# supervisor's crash-loop guard is engaged (cotyledon forks at most once a second per worker,
# else sleeps 5 s; escala: backoff.reset_after = 1s; supervisord: startsecs = 0).
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
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
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

# 2. A scratch directory with each peer's config and one FIFO per run.
work=$(mktemp -d)
peer_pid=""
stop_peer() { # the peer runs in its own session: TERM its process group, then KILL it
    [ -n "$peer_pid" ] || return 0
    kill -TERM -- "-$peer_pid" 2>/dev/null || true
    wait "$peer_pid" 2>/dev/null || true
    kill -KILL -- "-$peer_pid" 2>/dev/null || true
    peer_pid=""
}
cleanup() {
    stop_peer
    rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/services.toml" <<TOML
[services.w8]
command = ["$bin/w8_worker"]
backoff = { reset_after = "1s" }
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
CONF

peers=${W8_PEERS:-restarter escala cotyledon supervisord}
run() { # label, command...
    local label=$1; shift
    case " $peers " in *" $label "*) ;; *) return 0 ;; esac
    # A FIFO per run: a worker of an earlier peer can never report into this one.
    export W8_FIFO="$work/$label-$rep.fifo"
    mkfifo "$W8_FIFO"
    setsid "$@" >"$work/$label.out" 2>&1 &
    peer_pid=$!
    "$bin/w8_driver" --fifo "$W8_FIFO" --label "$label" --kills "$kills" --settle-ms 1100
    stop_peer
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
            l = order[k]
            if (!(l in p50)) continue
            m = median(p50[l])
            printf "| %s | %.2f | %.2f | %.2fx | %.1fx |\n", l, m, median(p99[l]), m / base, m / median(p50["escala"])
        }
    }' "$raw"
