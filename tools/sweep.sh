#!/usr/bin/env bash
# sweep.sh — train one run per point of a grid of config overrides, then evaluate each run.
# Rerunning the same command skips finished runs, resumes interrupted ones from their newest
# checkpoint and evaluates what is not evaluated yet. It does not run points in parallel (each
# `aoe train` already uses every thread). docs/sweeps.md has the details.
set -euo pipefail

prog=sweep.sh
usage() {
    cat <<'EOF'
usage: tools/sweep.sh [options] CONFIG [key=v1,v2,... | key=value ...]

Trains `aoe train CONFIG` once per point of the cartesian product of the key=v1,v2 axes, each in
its own run directory OUT/NAME_<key>-<value>... (axes only), then runs `aoe eval` on each finished run
(results in RUN/eval/). Rerun the same command to continue: finished runs (RUN/train.done) are
skipped, interrupted ones resume from their newest checkpoint (`aoe train --resume`), evaluations
that exist are kept. Ctrl-C (or SIGTERM to the script or to aoe train) lets the current step
finish, saves a checkpoint and stops the sweep; rerun to resume.

  CONFIG               JSON config (configs/*.json)
  key=v1,v2,...        an axis: config key (docs/config.md) and two or more values, part of the
                       run names (e.g. train.seed=1,2 model.ffn.d_low=32,64)
  key=value            one value: a fixed override like --set, not an axis, not in run names

options:
  --out DIR            parent of the run directories (default runs/sweep)
  --name NAME          run-name prefix (default: CONFIG's file name without .json)
  --set key=value      a fixed override for every point; the value is not split at commas and is
                       never part of run names (repeatable)
  --axis key=v1,...    an axis even with one value, so the value is in the run names (repeatable)
  --eval-tasks LIST    `aoe eval --tasks` list; `val` stands for the run's validation shards
                       (shards:<data.val>), `none` skips evaluation
                       (default val,arc_easy,piqa,winogrande,hellaswag,blimp)
  --eval-limit N       items per task (`aoe eval --limit`; default 200, 0 = all)
  --report DIR         afterwards, `aoe report` over this sweep's runs into DIR
  --dry-run            print the runs and what would happen to each, change nothing
  -h, --help           this help

environment: AOE (the aoe binary; default ./aoe next to tools/), OMP_NUM_THREADS (threads).
Each run directory gets train.log and eval.log (the commands' output), train.done when training
finished, eval/results.json and eval/report.md. Fixed overrides are not in run names: runs with
other --set values need another --out (a rerun into the same OUT stops, naming the difference).
Exit status: 0 all points done, 1 some point failed (the others still ran), 2 bad usage or input,
130 interrupted.
EOF
}

die() { echo "$prog: $*" >&2; exit 2; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
AOE=${AOE:-$here/../aoe}
out=runs/sweep name='' eval_tasks=val,arc_easy,piqa,winogrande,hellaswag,blimp eval_limit=200
report='' dry=0 config=''
sets=() axes=()  # axes in command-line order; --axis ones marked with a leading '!'
while (($#)); do
    case $1 in
    -h | --help) usage; exit 0 ;;
    --out | --name | --set | --axis | --eval-tasks | --eval-limit | --report)
        (($# >= 2)) || die "$1 needs a value (see --help)"
        case $1 in
        --out) out=$2 ;; --name) name=$2 ;; --set) sets+=("$2") ;; --axis) axes+=("!$2") ;;
        --eval-tasks) eval_tasks=$2 ;; --eval-limit) eval_limit=$2 ;; --report) report=$2 ;;
        esac
        shift 2 ;;
    --dry-run) dry=1; shift ;;
    --) shift; break ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) if [[ -z $config ]]; then config=$1; else axes+=("$1"); fi; shift ;;
    esac
done
for a in "$@"; do if [[ -z $config ]]; then config=$a; else axes+=("$a"); fi; done

[[ -n $config ]] || { usage >&2; exit 2; }
while [[ $out == */ && $out != / ]]; do out=${out%/}; done  # run.out is compared as text on reruns
[[ -f $config ]] || die "$config: no such config file"
[[ -x $AOE ]] || die "$AOE: no aoe binary (run make, or set AOE=/path/to/aoe)"
[[ $eval_limit =~ ^[0-9]+$ ]] || die "--eval-limit: expected a non-negative integer, got '$eval_limit'"
[[ -z $name || $name =~ ^[A-Za-z0-9._+-]+$ ]] || die "--name '$name': use letters, digits and . _ + - only"

# ---- parse the overrides: keys, values, names
keys=() vals=()   # axes: vals[i] is the comma list of keys[i]
fixed=()          # --set key=value
check_key() {     # key and where it came from
    [[ $1 =~ ^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$ ]] || die "$2: '$1' is not a config key like model.ffn.d_low"
    local k
    for k in "${keys[@]}" "${fixed[@]%%=*}"; do [[ $k != "$1" ]] || die "$2: $1 is given twice"; done
}
for s in "${sets[@]}"; do
    [[ $s == *=* ]] || die "--set '$s': expected key=value"
    check_key "${s%%=*}" "--set $s"
    [[ -n ${s#*=} ]] || die "--set $s: empty value"
    fixed+=("$s")
done
add_axis() {  # key=v1,v2,... and whether one value still makes an axis
    local a=$1 v=${1#*=}
    [[ $a == *=* ]] || die "'$a': expected key=v1,v2,... (an axis) or key=value after CONFIG"
    check_key "${a%%=*}" "axis $a"
    [[ -n $v && $v != ,* && $v != *, && $v != *,,* ]] || die "axis $a: empty value in the list"
    if [[ $v == *,* ]] || (($2)); then keys+=("${a%%=*}"); vals+=("$v"); else fixed+=("$a"); fi
}
for a in "${axes[@]}"; do if [[ $a == !* ]]; then add_axis "${a#!}" 1; else add_axis "$a" 0; fi; done

# name part of key=value: last key component (the full key if two keys share it), value with
# characters other than [A-Za-z0-9._+-] replaced by '-'
all_keys=("${keys[@]}")  # fixed overrides are never in names
short_key() {
    local k last=${1##*.} n=0
    for k in "${all_keys[@]}"; do [[ ${k##*.} != "$last" ]] || n=$((n + 1)); done
    if ((n > 1)); then echo "$1"; else echo "$last"; fi
}
name_part() { local v=${2//[^A-Za-z0-9._+-]/-}; echo "_$(short_key "$1")-$v"; }

[[ -n $name ]] || name=$(basename "$config" .json)

# ---- the grid: each point is a list of key=value lines (axes in command-line order)
points=("")
for i in "${!keys[@]}"; do
    IFS=, read -r -a vs <<<"${vals[$i]}"
    next=()
    for p in "${points[@]}"; do for v in "${vs[@]}"; do next+=("$p${keys[$i]}=$v"$'\n'); done; done
    points=("${next[@]}")
done

point_name() {
    local n=$name kv
    while IFS= read -r kv; do [[ -z $kv ]] || n+=$(name_part "${kv%%=*}" "${kv#*=}"); done <<<"$1"
    echo "$n"
}

# A scalar of the pretty JSON that `aoe train --dry-run` prints (one "key": value per line).
json_field() { sed -n "s/^[[:space:]]*\"$1\":[[:space:]]*\"\{0,1\}\([^\"]*[^\",]\)\"\{0,1\},\{0,1\}\$/\1/p" | head -n 1; }

# ---- signals: forward to the running aoe (it saves a checkpoint and exits), then stop
child='' stop=''
on_signal() {
    stop=$1
    if [[ -n $child ]]; then kill -TERM "$child" 2>/dev/null || true; fi
}
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM

# Runs a command in the background (so the traps fire while it runs) with output appended to a
# log; returns its exit status.
run_logged() {
    local log=$1 rc=0
    shift
    "$@" >>"$log" 2>&1 &
    child=$!
    while :; do
        wait "$child" && rc=0 || rc=$?
        kill -0 "$child" 2>/dev/null || break  # alive: wait returned early for a trapped signal
    done
    # A trapped signal can end wait (status 128+n) just before the child exits; bash keeps the
    # child's status, so wait once more to get it rather than the signal's.
    local again=0
    wait "$child" 2>/dev/null || again=$?
    ((again == 127)) || rc=$again
    child=
    return "$rc"
}

tail_log() { sed 's/^/    | /' <(tail -n 5 "$1") >&2; }

# ---- run every point
n=${#points[@]} k=0 failed=() trained=0 resumed=0 skipped=0 evaluated=0
runs=()
((dry)) || mkdir -p "$out" 2>/dev/null || die "$out: cannot create the output directory"
for p in "${points[@]}"; do
    k=$((k + 1))
    rn=$(point_name "$p")
    dir=$out/$rn
    runs+=("$dir")
    mapfile -t ovr < <(printf '%s' "$p")
    args=("$config" "${fixed[@]}" "${ovr[@]}" "run.out=$dir")
    resolved=$("$AOE" train "${args[@]}" --dry-run 2>&1) || die "point $rn: $(echo "$resolved" | tail -n 1)"
    resolved=$(grep -v -E '^(memory estimate|parameters|parameters and memory estimate): ' <<<"$resolved")  # stderr lines after the config JSON
    steps=$(json_field steps <<<"$resolved")
    [[ $steps =~ ^[0-9]+$ ]] || die "point $rn: cannot read train.steps from 'aoe train --dry-run'"
    tag="[$k/$n] $rn"

    # What to do with the training.
    if [[ -f $dir/train.done ]]; then action=skip
    elif [[ -e $dir/latest ]] || compgen -G "$dir/ckpt-*.aoec" >/dev/null; then action=resume
    else action=fresh; fi
    if [[ -f $dir/config.json ]] && [[ $action != fresh ]]; then
        # The run must be this point: same resolved config as CONFIG + overrides.
        if [[ $resolved != "$(cat "$dir/config.json")" ]]; then
            d=$(diff <(echo "$resolved") <(cat "$dir/config.json"; echo) | grep '^[<>]' | head -n 2 | tr -s '\t\n' '  ' | sed 's/[ ,]*$//' || true)
            die "$dir/config.json differs from $config + the overrides of point $rn ($d); fixed overrides are not in run names: move the run away or choose another --out"
        fi
    fi
    has_eval=0
    [[ -f $dir/eval/results.json ]] && has_eval=1
    if ((dry)); then
        ev="eval"; [[ $eval_tasks == none ]] && ev="no eval"; ((has_eval)) && ev="eval done"
        echo "$tag: $action train ($steps steps), $ev"
        continue
    fi
    mkdir -p "$dir"
    exec {lockfd}>"$dir/.lock"
    if ! flock -n "$lockfd"; then
        echo "$tag: busy (another sweep holds $dir/.lock), left alone" >&2
        failed+=("$rn"); exec {lockfd}>&-; continue
    fi

    t0=$SECONDS
    case $action in
    skip) echo "$tag: finished earlier, training skipped"; skipped=$((skipped + 1)) ;;
    resume | fresh)
        if [[ $action == fresh ]]; then
            # No checkpoint: logs of an attempt that died before its first checkpoint are stale.
            rm -f "$dir/metrics.jsonl" "$dir/load.jsonl"
            echo "$tag: training ($steps steps) ..."
            cmd=("$AOE" train "${args[@]}")
        else
            echo "$tag: resuming from $(cat "$dir/latest" 2>/dev/null || echo 'its newest checkpoint') ..."
            cmd=("$AOE" train --resume "$dir")
        fi
        echo "== $(date -u '+%F %T') ${cmd[*]}" >>"$dir/train.log"
        rc=0
        run_logged "$dir/train.log" "${cmd[@]}" || rc=$?
        if ((rc == 75)); then  # aoe train's "stopped by a signal, checkpoint saved"
            echo "$tag: stopped at $(cat "$dir/latest" 2>/dev/null || echo 'its newest checkpoint'); rerun to resume" >&2
            stop=${stop:-TERM (to aoe train)}
            exec {lockfd}>&-
            break
        fi
        if ((rc)); then
            echo "$tag: training failed (see $dir/train.log):" >&2
            tail_log "$dir/train.log"
            failed+=("$rn"); exec {lockfd}>&-
            [[ -z $stop ]] || break
            continue
        fi
        latest=$(cat "$dir/latest" 2>/dev/null || true)
        if [[ $latest != "ckpt-$steps.aoec" ]]; then
            exec {lockfd}>&-
            [[ -n $stop ]] && break
            echo "$tag: training stopped before step $steps (latest: ${latest:-none}); rerun to resume" >&2
            failed+=("$rn"); continue
        fi
        printf 'steps %s\nfinished %s\n' "$steps" "$(date -u '+%F %T')" >"$dir/train.done.tmp"
        mv "$dir/train.done.tmp" "$dir/train.done"
        [[ $action == fresh ]] && trained=$((trained + 1)) || resumed=$((resumed + 1))
        echo "$tag: trained in $((SECONDS - t0)) s: $(grep -o 'val [0-9.]*' "$dir/train.log" | tail -n 1)"
        ;;
    esac

    # Evaluation of the final checkpoint.
    if [[ $eval_tasks != none ]] && ((!has_eval)) && [[ -z $stop ]]; then
        val=$(json_field val <<<"$resolved")
        tasks=$(tr ',' '\n' <<<"$eval_tasks" | while IFS= read -r t; do
            if [[ $t == val ]]; then [[ -n $val ]] && echo "shards:$val"; else echo "$t"; fi
        done | paste -sd, -)
        [[ -n $tasks ]] || die "--eval-tasks '$eval_tasks': nothing to evaluate (the config has no data.val)"
        ecmd=("$AOE" eval "$dir" --tasks "$tasks" --out "$dir/eval.tmp")
        ((eval_limit > 0)) && ecmd+=(--limit "$eval_limit")
        t1=$SECONDS
        rm -rf "$dir/eval.tmp"
        echo "== $(date -u '+%F %T') ${ecmd[*]}" >>"$dir/eval.log"
        if run_logged "$dir/eval.log" "${ecmd[@]}" && [[ -f $dir/eval.tmp/results.json ]]; then
            rm -rf "$dir/eval" && mv "$dir/eval.tmp" "$dir/eval"
            evaluated=$((evaluated + 1))
            echo "$tag: evaluated in $((SECONDS - t1)) s"
        else
            rm -rf "$dir/eval.tmp"
            if [[ -z $stop ]]; then
                echo "$tag: evaluation failed (see $dir/eval.log):" >&2
                tail_log "$dir/eval.log"
            fi
            failed+=("$rn")
        fi
    fi
    exec {lockfd}>&-
    [[ -z $stop ]] || break
done

((dry)) && exit 0
if [[ -n $stop ]]; then
    echo "$prog: interrupted (SIG$stop); rerun the same command to continue" >&2
    exit 130
fi
echo "$prog: $n points: $trained trained, $resumed resumed, $skipped already trained, $evaluated evaluated, ${#failed[@]} failed"
if [[ -n $report ]]; then
    "$AOE" report "${runs[@]}" --out "$report" >/dev/null || { echo "$prog: aoe report failed" >&2; exit 1; }
    echo "$prog: report in $report/report.md"
fi
if ((${#failed[@]})); then
    echo "$prog: failed: ${failed[*]} (rerun to retry)" >&2
    exit 1
fi
