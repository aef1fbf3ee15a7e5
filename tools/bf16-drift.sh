#!/usr/bin/env bash
# bf16-drift.sh — issue 13's quality check: does training with bf16 products end at the validation
# loss fp32 reaches? For each config and seed it trains three runs of the same model on the same
# data in the same order:
#   fp32        train.precision=fp32
#   bf16        train.precision=bf16
#   fp32-accum  fp32 with each batch split into two micro-batches (batch_size/2, grad_accum=2): the
#               same mathematics (the gradient is the same sum), summed in another order, so the
#               runs differ only by fp32 rounding (tests/test_train: 3.5e-7 relative on one step).
# and prints each run's final validation loss and the differences bf16 − fp32 and fp32-accum −
# fp32. The control measures how far rounding-level differences alone carry a run by the end: a
# bf16 gap of the same size is not a cost of bf16. Then the mean, standard deviation and standard
# error of each column of differences.
#
# usage: tools/bf16-drift.sh [--seeds 1,2,3] [--steps N] [--jobs N] [--out DIR] [CONFIG.json ...]
#        (default: seeds 1-5, 600 steps, 2 jobs at 1 thread each, configs/{moe,aoe}.json,
#        runs under /tmp/aoe-bf16-drift; AOE=path to the binary). Needs data/prepared (make data).
set -u
seeds=1,2,3,4,5 steps=600 jobs=2 out=/tmp/aoe-bf16-drift cfgs=()
while [[ $# -gt 0 ]]; do
    case $1 in
        --seeds) seeds=$2; shift 2 ;;
        --steps) steps=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        -*) echo "bf16-drift.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) cfgs+=("$1"); shift ;;
    esac
done
[[ ${#cfgs[@]} -gt 0 ]] || cfgs=(configs/moe.json configs/aoe.json)
aoe=${AOE:-./aoe}
[[ -x $aoe ]] || { echo "bf16-drift.sh: $aoe: no aoe binary (build with make, or set AOE=...)" >&2; exit 2; }
for c in "${cfgs[@]}"; do [[ -f $c ]] || { echo "bf16-drift.sh: $c: no such config" >&2; exit 2; }; done
[[ $seeds =~ ^[0-9]+(,[0-9]+)*$ ]] || { echo "bf16-drift.sh: --seeds '$seeds': expected a comma-separated list of integers" >&2; exit 2; }
[[ $steps =~ ^[1-9][0-9]*$ && $jobs =~ ^[1-9][0-9]*$ ]] || { echo "bf16-drift.sh: --steps and --jobs take positive integers" >&2; exit 2; }
mkdir -p "$out" || exit 2

# The config's batch size (the dry run prints the resolved config): the control halves it.
batch_of() { "$aoe" train "$1" --dry-run 2>/dev/null | sed -n 's/^[[:space:]]*"batch_size":[[:space:]]*\([0-9]*\).*/\1/p' | head -n 1; }

# One training run: NAME CONFIG SEED OVERRIDES...; the run directory is $out/NAME.
train() {
    local name=$1 cfg=$2 seed=$3
    shift 3
    [[ -f $out/$name/done ]] && return 0  # a rerun of the script keeps finished runs
    rm -rf "${out:?}/$name"
    if "$aoe" train "$cfg" train.steps="$steps" train.eval_every=50 train.threads=1 train.seed="$seed" \
        run.out="$out/$name" "$@" >"$out/$name.log" 2>&1; then
        touch "$out/$name/done"
    else
        echo "bf16-drift.sh: $name failed (see $out/$name.log)" >&2
    fi
}

# Last validation loss of a run (metrics.jsonl), or "fail".
val_of() {
    local v
    v=$(grep -o '"val_loss": *[0-9.]*' "$out/$1/metrics.jsonl" 2>/dev/null | tail -n 1 | grep -o '[0-9.]*$')
    echo "${v:-fail}"
}

names=()
for c in "${cfgs[@]}"; do
    b=$(batch_of "$c")
    [[ $b =~ ^[0-9]+$ && $b -ge 2 && $((b % 2)) -eq 0 ]] || { echo "bf16-drift.sh: $c: batch_size '$b' cannot be split in two" >&2; exit 2; }
    for s in ${seeds//,/ }; do
        base=$(basename "$c" .json)-s$s
        names+=("$base")
        while [[ $(jobs -rp | wc -l) -ge $jobs ]]; do wait -n; done
        train "$base-fp32" "$c" "$s" train.precision=fp32 &
        while [[ $(jobs -rp | wc -l) -ge $jobs ]]; do wait -n; done
        train "$base-bf16" "$c" "$s" train.precision=bf16 &
        while [[ $(jobs -rp | wc -l) -ge $jobs ]]; do wait -n; done
        train "$base-fp32-accum" "$c" "$s" train.precision=fp32 train.batch_size=$((b / 2)) train.grad_accum=2 &
    done
done
wait

echo "bf16-drift: $steps steps, seeds $seeds, final validation loss, $(date -u +%FT%TZ)"
printf '%-12s %8s %8s %11s %9s %14s\n' run fp32 bf16 fp32-accum bf16-fp32 fp32accum-fp32
for n in "${names[@]}"; do
    printf '%s %s %s %s\n' "$n" "$(val_of "$n-fp32")" "$(val_of "$n-bf16")" "$(val_of "$n-fp32-accum")"
done | awk '
    function stats(tag, k,   i, m, s) {
        m = 0; for (i = 1; i <= cnt[k]; i++) m += d[k, i]; m /= cnt[k]
        s = 0; for (i = 1; i <= cnt[k]; i++) s += (d[k, i] - m) ^ 2
        s = cnt[k] > 1 ? sqrt(s / (cnt[k] - 1)) : 0
        printf "  %s %-14s mean %+.4f  sd %.4f  s.e. %.4f  max |d| %.4f  (%d seeds)\n", grp, tag, m, s, s / sqrt(cnt[k]), mx[k], cnt[k]
    }
    {
        split($1, p, "-s"); g = p[1]
        if ($2 == "fail" || $3 == "fail" || $4 == "fail") { printf "%-12s %8s %8s %11s   (a run failed)\n", $1, $2, $3, $4; next }
        a = $3 - $2; b = $4 - $2
        printf "%-12s %8.4f %8.4f %11.4f %+9.4f %+14.4f\n", $1, $2, $3, $4, a, b
        if (!(g in seen)) { seen[g] = 1; order[++ng] = g }
        d[g "b", ++cnt[g "b"]] = a; d[g "c", ++cnt[g "c"]] = b
        if (a < 0) a = -a; if (b < 0) b = -b
        if (a > mx[g "b"]) mx[g "b"] = a; if (b > mx[g "c"]) mx[g "c"] = b
    }
    END { for (i = 1; i <= ng; i++) { grp = order[i]; stats("bf16-fp32", grp "b"); stats("fp32accum-fp32", grp "c") } }'
