#!/usr/bin/env bash
# W5: parallel commands. (a) 2,000 x `true` with 2 slots; (b) 1,000 x `sleep 0.01` with
# 32 slots. Sides, interleaved in every repetition: `escala run` (release build), the
# minimal Rust runner (benches/src/bin/min_runner.rs: spawn + waitpid, the limit),
# `xargs -P`, GNU parallel, and a bash `wait -n` loop. Prints wall times (median and
# min-max over the repetitions) and escala's speed ratios, and writes them to
# benchmarks/results/w5-<date>.md.
#
#   benchmarks/w5_run.sh             # 3 repetitions (GNU parallel alone takes ~30 s each)
#   benchmarks/w5_run.sh --reps 5
#   benchmarks/w5_run.sh --reps 1 --scale 5   # a fifth of the jobs: a quick check, not a W5 figure
#
# Installs GNU parallel with apt-get when it is missing (as root).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
cd "$root"

reps=3
scale=1
while [ $# -gt 0 ]; do
    case "$1" in
        --reps) reps=$2; shift ;;
        --scale) scale=$2; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
    shift
done
na=$((2000 / scale))
nb=$((1000 / scale))

if ! command -v parallel >/dev/null; then
    echo "== installing GNU parallel" >&2
    apt-get install -y parallel >/dev/null || { apt-get update >/dev/null && apt-get install -y parallel >/dev/null; }
fi

echo "== building escala and min_runner (release)" >&2
cargo build --release -q -p escala-cli -p escala-benches --bin escala --bin min_runner
target=${CARGO_TARGET_DIR:-$root/target}
escala="$target/release/escala"
min="$target/release/min_runner"

# A bash runner: at most $slots background jobs, `wait -n` for any one to end.
bash_loop() {
    local n=$1 slots=$2 running=0 i
    shift 2
    for ((i = 0; i < n; i++)); do
        if ((running >= slots)); then
            wait -n
            running=$((running - 1))
        fi
        "$@" &
        running=$((running + 1))
    done
    wait
}

# Seconds (wall) that one side takes.
secs() {
    local t0=$EPOCHREALTIME
    "$@" >/dev/null
    awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.4f\n", b - a }'
}

# The programs, not bash's builtins (`true` is one): every side runs the same binary.
true_bin=$(type -P true)
sleep_bin=$(type -P sleep)

side() { # side WORKLOAD NAME: runs one side of one workload
    case "$1:$2" in
        a:escala) seq "$na" | "$escala" run -j2 -N0 "$true_bin" ;;
        a:min) "$min" "$na" 2 "$true_bin" ;;
        a:xargs) seq "$na" | xargs -P2 -n1 "$true_bin" ;;
        a:parallel) seq "$na" | parallel --will-cite -j2 -N0 "$true_bin" ;;
        a:bash) bash_loop "$na" 2 "$true_bin" ;;
        b:escala) seq "$nb" | "$escala" run -j32 -N0 "$sleep_bin" 0.01 ;;
        b:min) "$min" "$nb" 32 "$sleep_bin" 0.01 ;;
        b:xargs) seq "$nb" | xargs -P32 -I{} "$sleep_bin" 0.01 ;;
        b:parallel) seq "$nb" | parallel --will-cite -j32 -N0 "$sleep_bin" 0.01 ;;
        b:bash) bash_loop "$nb" 32 "$sleep_bin" 0.01 ;;
    esac
}

raw=$(mktemp)
trap 'rm -f "$raw"' EXIT
sides=(escala min xargs parallel bash)
for ((r = 1; r <= reps; r++)); do
    for w in a b; do
        for s in "${sides[@]}"; do
            load=$(cut -d' ' -f1 /proc/loadavg)
            t=$(secs side "$w" "$s")
            printf '%s %s %s %s %s\n' "$r" "$w" "$s" "$t" "$load" | tee -a "$raw" >&2
        done
    done
done

stamp=$(date +%Y-%m-%d-%H%M%S)
mkdir -p "$here/results"
out="$here/results/w5-$stamp.md"
python3 - "$raw" "$reps" "$na" "$nb" >"$out" <<'PY'
import statistics, sys
raw, reps, na, nb = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t = {}
loads = []
for line in open(raw):
    r, w, s, secs, load = line.split()
    t.setdefault((w, s), {})[int(r)] = float(secs)
    loads.append(float(load))
jobs = {"a": na, "b": nb}
names = {"a": f"(a) {na:,} x `true`, 2 slots", "b": f"(b) {nb:,} x `sleep 0.01`, 32 slots"}
def fmt(v):
    return f"{statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f})"
print(f"# W5: parallel commands ({reps} interleaved repetitions, load average {min(loads):.1f}-{max(loads):.1f})\n")
for w in "ab":
    print(f"## {names[w]}\n")
    print("| side | wall s, median (min-max) | jobs/s (median) | escala's speed vs it, median (min-max) |")
    print("|---|---|---|---|")
    for s in ["escala", "min", "xargs", "parallel", "bash"]:
        v = list(t[(w, s)].values())
        ratios = [t[(w, s)][r] / t[(w, "escala")][r] for r in t[(w, s)]]
        print(f"| {s} | {fmt(v)} | {jobs[w] / statistics.median(v):.0f} | {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |")
    print()
PY
cat "$out"
echo "written to $out" >&2
