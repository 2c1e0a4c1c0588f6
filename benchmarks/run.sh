#!/usr/bin/env bash
# W1-W10: escala's benchmarks and their peers, interleaved, 3 times; medians and min-max
# of the ratios go to benchmarks/results/<date>.md (see README.md).
#
#   benchmarks/run.sh            # 3 repetitions of everything
#   benchmarks/run.sh --quick    # 1 repetition, shorter sampling, smaller W5/W6/W8, no
#                                # Celery/RQ/Dramatiq: about 5 minutes once built
#   benchmarks/run.sh --reps 5   # more repetitions
#
# W1-W4, W9, W10: criterion benches (benches/) and Python peers (python/), summarized by
# python/summarize.py. W5 (escala run), W6/W7 (Redis) and W8 (supervisors) have scripts of
# their own beside this one, which install their peers; their tables are appended.
# Needs cargo and python3 (with venv). The Python peers' packages go into benchmarks/.venv.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

quick=0
reps=3
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1; reps=1 ;;
        --reps) reps=$2; shift ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done

export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ beside the scripts

load() { cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?"; }
note() { printf '%s\n' "$*" >&2; }

# 1. The Python peers' packages, into a venv of our own.
venv="$here/.venv"
if [ ! -x "$venv/bin/python" ]; then
    note "== creating $venv"
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/python/requirements.txt"
py="$venv/bin/python"

# 2. Build the benchmarks once, so that no repetition pays for it.
benches=(w1_tiny_tasks w2_process_pool w3_speedup w4_unit_latency w9_scaling w10_memory)
build_args=()
for b in "${benches[@]}"; do build_args+=(--bench "$b"); done
note "== building ${benches[*]}"
cargo bench -p escala-benches "${build_args[@]}" --no-run

stamp=$(date +%Y-%m-%d-%H%M%S)
raw="$here/results/tmp/$stamp"
mkdir -p "$raw"
if [ "$quick" = 1 ]; then export ESCALA_BENCH_QUICK=1; fi

{
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "quick=$quick"
    echo "reps=$reps"
    echo "nproc=$(nproc)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "mem=$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "kernel=$(uname -r)"
    echo "rustc=$(rustc --version)"
    echo "python=$("$py" --version 2>&1)"
    echo "loky=$("$py" -c 'import loky; print(loky.__version__)' 2>/dev/null || echo none)"
    echo "commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    echo "dirty=$(git status --porcelain -- crates 2>/dev/null | awk '{print $2}' | tr '\n' ' ')"
} > "$raw/machine.txt"

# 3. Interleaved repetitions: each one runs every escala benchmark and every Python peer.
loads="$raw/loads.tsv"
printf 'rep\tstep\tload_before\tload_after\n' > "$loads"
step() { # step REP NAME OUT ERR COMMAND...: runs COMMAND (stdout to OUT, stderr to ERR),
         # noting the 1-minute load before and after it
    local rep=$1 name=$2 out=$3 err=$4 before after
    shift 4
    before=$(load)
    note "== rep $rep/$reps: $name (load $before)"
    "$@" > "$out" 2> "$err" || { note "failed: $name (see ${err#"$root"/})"; exit 1; }
    after=$(load)
    printf '%s\t%s\t%s\t%s\n' "$rep" "$name" "$before" "$after" >> "$loads"
}
for rep in $(seq 1 "$reps"); do
    out="$raw/rep$rep"
    mkdir -p "$out/criterion"
    for b in "${benches[@]}"; do
        step "$rep" "$b" "$out/$b.txt" "$out/$b.err" \
            env CRITERION_HOME="$out/criterion" cargo bench -q -p escala-benches --bench "$b"
        case "$b" in
            w1_tiny_tasks)
                step "$rep" "python w1" "$out/python_w1.jsonl" "$out/python_w1.err" \
                    "$py" "$here/python/w1_tiny_tasks.py" ;;
            w4_unit_latency)
                step "$rep" "python w4" "$out/python_w4.jsonl" "$out/python_w4.err" \
                    "$py" "$here/python/w4_unit_latency.py" ;;
            w10_memory)
                step "$rep" "python w10" "$out/python_w10.jsonl" "$out/python_w10.err" \
                    "$py" "$here/python/w10_memory.py" ;;
            w2_process_pool)
                step "$rep" "python w2" "$out/python_w2.jsonl" "$out/python_w2.err" \
                    "$py" "$here/python/w2_process_pool.py" ;;
            w3_speedup)
                step "$rep" "python w3" "$out/python_w3.jsonl" "$out/python_w3.err" \
                    "$py" "$here/python/w3_speedup.py" ;;
        esac
    done
done

# 4. Medians and min-max across the repetitions, as ratios.
day=$(date +%Y-%m-%d)
report="$here/results/$day.md"
[ -e "$report" ] && report="$here/results/$stamp.md"
python3 "$here/python/summarize.py" "$raw" > "$report"
cp "$raw/summary.json" "${report%.md}.json"

# 5. The workloads with scripts of their own; their Markdown goes at the end of the page.
if [ "$quick" = 1 ]; then
    # A fifth of W5's jobs, a quarter of W6's tasks, 5 kills: a check that all runs, in minutes.
    extra=("w5_run.sh --reps 1 --scale 5" "w6_redis.sh --reps 1 --no-peers --tasks 5000" "w8_restart.sh --reps 1 --kills 5")
else
    extra=("w5_run.sh --reps $reps" "w6_redis.sh --reps $reps" "w8_restart.sh --reps $reps")
fi
for cmd in "${extra[@]}"; do
    read -r -a argv <<< "$cmd"
    script="$here/${argv[0]}"
    [ -f "$script" ] || { note "== ${argv[0]}: not here, skipped"; continue; }
    before=$(load)
    note "== $cmd (load $before)"
    if bash "$script" "${argv[@]:1}" > "$raw/${argv[0]%.sh}.md" 2> "$raw/${argv[0]%.sh}.err"; then
        { echo; echo "## \`benchmarks/$cmd\` (load $before → $(load))"; echo; cat "$raw/${argv[0]%.sh}.md"; } >> "$report"
    else
        note "failed: $cmd (see ${raw#"$root"/}/${argv[0]%.sh}.err)"
        { echo; echo "## \`benchmarks/$cmd\`: FAILED (see the .err file in the raw folder)"; } >> "$report"
    fi
done
note "== wrote ${report#"$root"/} (raw data in ${raw#"$root"/})"
