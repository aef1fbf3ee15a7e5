#!/usr/bin/env bash
# sweep-dlow.sh — the AoE reduced-rank ablation: AoE at several d_low (d_wide = 0, i.e.
# parameter-matched to the MoE by Eq.5) against MoE with and without the balancing loss, every
# point at each seed; then `aoe report` into OUT/dlow (table, d_low-vs-loss plot). docs/sweeps.md.
set -euo pipefail
# shellcheck disable=SC2034  # read by study-lib.sh
study_name=dlow
# shellcheck source=tools/study-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/study-lib.sh"

AOE_CONFIG=configs/aoe.json MOE_CONFIG=configs/moe.json DLOW=${DLOW:-16,32,48,64,96}
study_usage() {
    cat <<EOF
usage: tools/sweep-dlow.sh [options]

Runs (each at every seed) into OUT/runs, then aoe report into OUT/dlow:
  aoe-lb    AoE ($AOE_CONFIG, balancing loss 0.01) at each model.ffn.d_low, d_wide 0
  moe-lb    MoE ($MOE_CONFIG) with the balancing loss 0.01
  moe-nolb  MoE without balancing loss
  --dlow LIST        AoE ranks [DLOW, default $DLOW; each < d_model]
  --aoe-config FILE  AoE config (default $AOE_CONFIG)
  --moe-config FILE  config of the MoE baselines, run with model.ffn.type=moe (default
                     $MOE_CONFIG; the AoE config itself works); with other configs than the
                     defaults use another --out, since run names do not include the config
EOF
    study_usage_common
}
study_option() {
    case $1 in
    --dlow | --aoe-config | --moe-config)
        (($# >= 2)) || study_die "$1 needs a value"
        case $1 in --dlow) DLOW=$2 ;; --aoe-config) AOE_CONFIG=$2 ;; --moe-config) MOE_CONFIG=$2 ;; esac
        return 2 ;;
    esac
    return 0
}
study_parse "$@"
[[ $DLOW =~ ^[0-9]+(,[0-9]+)*$ ]] || study_die "--dlow: expected comma-separated integers, got '$DLOW'"
for f in "$AOE_CONFIG" "$MOE_CONFIG"; do [[ -f $f ]] || study_die "$f: no such config"; done

study_run aoe-lb "$AOE_CONFIG" "model.ffn.lb_coef=0.01 model.ffn.d_wide=0" "model.ffn.d_low=$DLOW"
# type=moe: an AoE config of the same size serves as the MoE baseline (a no-op for moe.json).
study_run moe-lb "$MOE_CONFIG" "model.ffn.type=moe model.ffn.lb_coef=0.01"
study_run moe-nolb "$MOE_CONFIG" "model.ffn.type=moe model.ffn.lb_coef=0"
study_report
