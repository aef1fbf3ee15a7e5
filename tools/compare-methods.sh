#!/usr/bin/env bash
# compare-methods.sh — expert-selection methods under one budget: MoE and AoE with and without the
# balancing loss, MoE + ERC loss, Top-P (MoE, AoE), expert choice (MoE, AoE) and ETR, every method
# at each seed; then `aoe report` into OUT/methods. Runs identical to sweep-dlow.sh's (MoE ± lb,
# AoE at d_low 48 with lb) are shared, not trained twice. docs/sweeps.md.
set -euo pipefail
# shellcheck disable=SC2034  # read by study-lib.sh
study_name=methods
# shellcheck source=tools/study-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/study-lib.sh"

AOE_DLOW=${AOE_DLOW:-48}
study_usage() {
    cat <<EOF
usage: tools/compare-methods.sh [options]

Runs (each at every seed) into OUT/runs, then aoe report into OUT/methods:
  moe-lb, moe-nolb     configs/moe.json, balancing loss 0.01 / 0
  aoe-lb, aoe-nolb     configs/aoe.json at d_low AOE_DLOW (default $AOE_DLOW), balancing loss 0.01 / 0
  moe-erc              configs/moe-erc.json (router MoE + expert-router coupling loss)
  moe-topp, aoe-topp   configs/moe-topp.json, configs/aoe-topp.json (Top-P selection)
  moe-ec, aoe-ec       configs/moe-ec.json, configs/aoe-ec.json (expert choice)
  etr                  configs/etr.json
A method whose config file is missing is skipped with a warning.
EOF
    study_usage_common
}
study_parse "$@"
[[ $AOE_DLOW =~ ^[0-9]+$ ]] || study_die "AOE_DLOW: expected an integer, got '$AOE_DLOW'"

study_run moe-lb configs/moe.json "model.ffn.lb_coef=0.01"
study_run moe-nolb configs/moe.json "model.ffn.lb_coef=0"
study_run aoe-lb configs/aoe.json "model.ffn.lb_coef=0.01 model.ffn.d_wide=0" "model.ffn.d_low=$AOE_DLOW"
study_run aoe-nolb configs/aoe.json "model.ffn.lb_coef=0 model.ffn.d_wide=0" "model.ffn.d_low=$AOE_DLOW"
study_run moe-erc configs/moe-erc.json ""
study_run moe-topp configs/moe-topp.json ""
study_run aoe-topp configs/aoe-topp.json ""
study_run moe-ec configs/moe-ec.json ""
study_run aoe-ec configs/aoe-ec.json ""
study_run etr configs/etr.json ""
study_report
