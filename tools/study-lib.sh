# shellcheck shell=bash
# shellcheck disable=SC2154  # study_name is set by the sourcing script
# study-lib.sh — sourced by tools/sweep-dlow.sh and tools/compare-methods.sh: the options they
# share, one call of tools/sweep.sh per method (all runs of a study live in OUT/runs, named
# <method>_steps-<S>[_<axis>-<value>]_seed-<n>, so the two studies share identical runs), and the
# final `aoe report`. Not meant to be run on its own.

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
AOE=${AOE:-$here/../aoe}
export AOE

# Defaults (docs/sweeps.md, "Sizing"): about 60 minutes for both studies together on 2 cores.
STEPS=${STEPS:-600}
SEEDS=${SEEDS:-1,2}
OUT=${OUT:-runs/study}
EVAL_TASKS=${EVAL_TASKS:-val,arc_easy,piqa,winogrande,hellaswag,blimp}
EVAL_LIMIT=${EVAL_LIMIT:-200}
DRY=0
STUDY_SETS=()  # --set key=value: every run of the study

study_usage_common() {
    cat <<EOF
options (environment variable in brackets):
  --steps N          training steps of every run [STEPS, default $STEPS]
  --seeds LIST       comma-separated seeds, 2 or more for mean ± std [SEEDS, default $SEEDS];
                     to use both cores, run one process per seed at OMP_NUM_THREADS=1
  --out DIR          study directory: runs in DIR/runs, report in DIR/$study_name [OUT, default $OUT]
  --eval-tasks LIST  aoe eval tasks, 'val' = the validation shards, 'none' = no eval
                     [EVAL_TASKS, default $EVAL_TASKS]
  --eval-limit N     items per eval task [EVAL_LIMIT, default $EVAL_LIMIT]
  --set key=value    a config override for every run (repeatable), e.g. another corpus:
                     --set data.train='DIR/train-*.shard' --set data.val='DIR/val-*.shard'
                     --set data.tokenizer=DIR/tokenizer.bpe; never an axis, never in run names,
                     so runs with other --set values need another --out
  --dry-run          list the runs and what would happen to each
  -h, --help         this help
Rerun the same command to continue after an interruption: finished runs are skipped, interrupted
ones resume from their last checkpoint (every STEPS/6 steps), evaluations are kept.
EOF
}

study_die() { echo "$study_name: $*" >&2; exit 2; }

# Parses the shared options; a script's own options are handled by its study_option function
# (called with the remaining arguments; it returns how many it consumed, 0 if none).
study_parse() {
    while (($#)); do
        case $1 in
        -h | --help) study_usage; exit 0 ;;
        --steps | --seeds | --out | --eval-tasks | --eval-limit | --set)
            (($# >= 2)) || study_die "$1 needs a value (see --help)"
            case $1 in
            --steps) STEPS=$2 ;; --seeds) SEEDS=$2 ;; --out) OUT=$2 ;;
            --eval-tasks) EVAL_TASKS=$2 ;; --eval-limit) EVAL_LIMIT=$2 ;;
            --set)
                [[ $2 =~ ^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+=.+$ ]] ||
                    study_die "--set '$2': expected key=value with a config key like train.lr"
                STUDY_SETS+=("$2") ;;
            esac
            shift 2 ;;
        --dry-run) DRY=1; shift ;;
        *)
            local used=0
            if declare -F study_option >/dev/null; then study_option "$@" || used=$?; fi
            ((used > 0)) || study_die "unknown argument '$1' (see --help)"
            shift "$used" ;;
        esac
    done
    [[ $STEPS =~ ^[1-9][0-9]*$ ]] || study_die "--steps: expected a positive integer, got '$STEPS'"
    [[ $SEEDS =~ ^[0-9]+(,[0-9]+)*$ ]] || study_die "--seeds: expected comma-separated seeds, got '$SEEDS'"
    # one seed is allowed so that a study can be split over processes (one per core, seeds
    # disjoint); the report then has no spread until all seeds are done
    [[ $SEEDS == *,* ]] || echo "$study_name: one seed only: the report shows no spread between seeds" >&2
    [[ $EVAL_LIMIT =~ ^[0-9]+$ ]] || study_die "--eval-limit: expected a non-negative integer, got '$EVAL_LIMIT'"
    [[ -x $AOE ]] || study_die "$AOE: no aoe binary (run make, or set AOE=/path/to/aoe)"
    EVERY=$(((STEPS + 5) / 6))  # validation loss and checkpoint every STEPS/6 steps
    study_runs=() study_failed=() study_skipped=()
}

# study_run METHOD CONFIG "FIXED OVERRIDES" [AXIS ...]: every seed of one method (and each value
# of its axes) through tools/sweep.sh. A missing config (a method not in this tree) is skipped
# with a warning; a failed run is remembered and the study goes on. Steps, the axes and the seed
# are --axis (in run names even with one value, so both studies name shared runs alike); the
# study's and the user's fixed overrides are --set (never in names).
study_run() {
    local method=$1 config=$2 fixed=$3
    shift 3
    if [[ ! -f $config ]]; then
        echo "$study_name: skipping $method: $config not found" >&2
        study_skipped+=("$method")
        return 0
    fi
    local args=(--out "$OUT/runs" --name "$method" --eval-tasks "$EVAL_TASKS" --eval-limit "$EVAL_LIMIT"
        --set "train.ckpt_every=$EVERY" --set "train.eval_every=$EVERY")
    local s own=" train.steps train.seed train.ckpt_every train.eval_every "
    for s in $fixed "$@"; do own+="${s%%=*} "; done
    for s in $fixed; do args+=(--set "$s"); done
    for s in "${STUDY_SETS[@]}"; do
        [[ $own != *" ${s%%=*} "* ]] || study_die "--set $s: $method sets ${s%%=*} itself (use --steps/--seeds, or another study)"
        args+=(--set "$s")
    done
    args+=(--axis "train.steps=$STEPS")
    for s in "$@"; do args+=(--axis "$s"); done
    args+=(--axis "train.seed=$SEEDS" "$config")
    local names
    names=$("$here/sweep.sh" --dry-run "${args[@]}") || exit 2
    if ((DRY)); then echo "$names"; fi
    while IFS= read -r s; do
        [[ $s =~ ^\[[0-9]+/[0-9]+\]\ ([^:]+): ]] && study_runs+=("$OUT/runs/${BASH_REMATCH[1]}")
    done <<<"$names"
    ((DRY)) && return 0
    local rc=0
    "$here/sweep.sh" "${args[@]}" || rc=$?
    case $rc in
    0) ;;
    130) echo "$study_name: interrupted; rerun the same command to continue" >&2; exit 130 ;;
    2) exit 2 ;;
    *) study_failed+=("$method") ;;
    esac
}

# aoe report over the study's runs that have logged something; exit status 1 if a method failed.
study_report() {
    ((DRY)) && return 0
    local have=() r
    for r in "${study_runs[@]}"; do
        if [[ -s $r/metrics.jsonl ]]; then have+=("$r"); else echo "$study_name: $r has no metrics yet, left out of the report" >&2; fi
    done
    ((${#have[@]})) || study_die "no run has logged anything; nothing to report"
    "$AOE" report "${have[@]}" --out "$OUT/$study_name" || { echo "$study_name: aoe report failed" >&2; exit 1; }
    ((${#study_skipped[@]} == 0)) || echo "$study_name: skipped (config missing): ${study_skipped[*]}" >&2
    if ((${#study_failed[@]})); then
        echo "$study_name: some runs of ${study_failed[*]} failed; rerun to retry" >&2
        exit 1
    fi
}
