#!/usr/bin/env bash
# ablate-erc.sh — the ERC paper's experiments at this machine's scale (docs/results.md, "ERC"):
# a router MoE without and with the ERC loss (α 1 and 0.5), every run logging ε per layer
# (model.ffn.erc_log); then, per finished run, the post-hoc coupling analysis of the paper's
# Table 2 (`aoe analyze erc`: ε, ERC loss over α from the clean router) and `aoe report`.
set -euo pipefail
# shellcheck disable=SC2034  # read by study-lib.sh
study_name=erc
STEPS=${STEPS:-400} EVAL_TASKS=${EVAL_TASKS:-val} OUT=${OUT:-runs/ablate}
# shellcheck source=tools/study-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/study-lib.sh"
# shellcheck source=tools/ablate-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/ablate-lib.sh"

ALPHAS=${ALPHAS:-0.5,0.75,1,2,5}
study_usage() {
    cat <<EOF
usage: tools/ablate-erc.sh [options]

Runs (each at every seed; the small model of tools/ablate-lib.sh unless ABLATE_FULL=1) into
OUT/runs, then OUT/erc/report.md (aoe report) and OUT/erc/analyze-erc.md:
  moe-lb         configs/moe.json, balancing loss 0.01, erc_log (ε logged, not trained on)
  moe-erc-a1     + ERC loss, weight 1, alpha 1 (the paper's 3B setting)
  moe-erc-a0.5   + ERC loss, weight 1, alpha 0.5 (the paper's 15B setting)
Each finished run gets RUN/analyze-erc.md: aoe analyze erc RUN --alpha ALPHAS [default $ALPHAS].
EOF
    study_usage_common
}
study_parse "$@"

study_run moe-lb configs/moe.json "model.ffn.lb_coef=0.01 model.ffn.erc_log=true"
study_run moe-erc-a1 configs/moe-erc.json "model.ffn.lb_coef=0.01 model.ffn.erc_alpha=1"
study_run moe-erc-a0.5 configs/moe-erc.json "model.ffn.lb_coef=0.01 model.ffn.erc_alpha=0.5"
ablate_each analyze-erc "$AOE" analyze erc {} --alpha "$ALPHAS"
ablate_table analyze-erc "ERC post-hoc coupling per layer (clean router), mean ± std over seeds"
study_report
